// Commands of the reranking pipeline: rank, batch, bench.
#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli.hpp"
#include "pipeline/stages.hpp"
#include "ziprerank/batch.hpp"
#include "ziprerank/bench.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/pages.hpp"
#include "ziprerank/prompt.hpp"
#include "ziprerank/pruning_check.hpp"
#include "ziprerank/reranker.hpp"
#include "ziprerank/run_io.hpp"
#include "ziprerank/runtime.hpp"

namespace ziprerank::cli {

bool libtorch_threads_pay(const std::string& dir, const ModelOptions& mo) {
  // Products through libtorch (bfloat16 compute or products, on CPU) of a model wide enough to
  // split them: the embedded model's are too small to gain from more libtorch threads.
  return mo.device.is_cpu() && (mo.dtype != at::kFloat || mo.bf16_products) &&
         openblas_threads() > 1 && open_model_folder(dir).config.text.hidden_size >= 1024;
}

void settle_product_threads(const std::string& dir, const ModelOptions& mo) {
  if (!libtorch_threads_pay(dir, mo)) return;
  rerun_with_passive_openmp();
  give_threads_to_libtorch_products(true);
}

namespace {

struct PipelineArgs {
  CommonOptions common;
  std::string query;
  std::vector<std::string> pages;
  std::string input, output;
  std::string format = "jsonl";
  std::string scoring;  ///< empty: the model's own (ziprerank.scoring in config.json), else logits
  double keep_ratio = -1;  ///< < 0: the model's own (ziprerank.keep_ratio in config.json)
  /// Unset: the model's own (ziprerank.vision_tile in config.json).
  std::optional<int> vision_tile;
  int window = 20;
  int stride = 10;
  int max_query_tokens = RerankOptions{}.max_query_tokens;
  int max_candidates = RerankOptions{}.max_candidates;
  int top_k = 0;
  bool resume = false;
  bool force = false;
  bool strict = false;  ///< an unreadable page fails the ranking (the query, in batch)
  std::string run_tag = "ziprerank";
  std::string query_id = "1";  ///< rank's TREC output
  std::string shard;
  int vision_cache_mb = 1024;
};

// The TREC run tag is one whitespace-free field.
void check_run_tag(const std::string& tag) {
  if (tag.empty() || tag.find_first_of(" \t\r\n") != std::string::npos)
    throw UsageError("--run-tag must be one word without spaces (got '" + tag + "')");
}

// rank's -o: checked before the model loads; an existing file needs --force.
void check_rank_output(const PipelineArgs& a) {
  if (a.output == "-") return;
  std::error_code ec;
  if (std::filesystem::exists(a.output, ec) && !a.force) {
    throw UsageError("'" + a.output + "' already exists; pass --force to overwrite it");
  }
  check_batch_paths("-", a.output);  // its folder exists and can be written
}

// The settings left to the model folder where the flags do not give them.
RankingChoice ranking_choice(const PipelineArgs& a) {
  RankingChoice c;
  if (!a.scoring.empty()) c.scoring = parse_scoring(a.scoring);
  if (a.keep_ratio >= 0) c.keep_ratio = a.keep_ratio;
  c.vision_tile = a.vision_tile;
  return c;
}

// Checked before the model loads; the scoring and keep ratio are settled once it has.
RerankOptions rerank_options(const PipelineArgs& a) {
  RerankOptions o;
  if (a.keep_ratio >= 0) o.keep_ratio = a.keep_ratio;
  o.vision_tile = a.vision_tile;
  o.window = a.window;
  o.stride = a.stride;
  o.max_query_tokens = a.max_query_tokens;
  o.max_candidates = a.max_candidates;
  o.skip_unreadable = !a.strict;
  o.validate();
  return o;
}

std::unique_ptr<Reranker> load_reranker(const CommonOptions& common) {
  int workers = 1;
  const std::string dir = resolve_model(common, &workers);
  ModelOptions mo;
  mo.device = parse_device(common.device);
  mo.dtype = parse_dtype(common.dtype, mo.device);
  mo.bf16_products = parse_matmul(common.matmul, mo.device, mo.dtype);
  settle_product_threads(dir, mo);
  auto reranker = Reranker::load(dir, mo);
  reranker->set_encode_workers(workers);
  return reranker;
}

// The query must be UTF-8 text: a stray byte (a Latin-1 shell, a truncated paste) is refused
// rather than tokenised as something else.
void check_query_utf8(const std::string& query) {
  const size_t bad = invalid_utf8_offset(query);
  if (bad == std::string::npos) return;
  char byte[8];
  std::snprintf(byte, sizeof(byte), "0x%02X", static_cast<unsigned char>(query[bad]));
  throw InputError("the query is not valid UTF-8 at byte " + std::to_string(bad + 1) + " (" + byte +
                   "); give it as UTF-8 text");
}

std::string format_duration(double s);

int run_rank(const PipelineArgs& a) {
  RerankOptions options = rerank_options(a);
  check_query_utf8(a.query);
  if (a.format == "trec") check_run_tag(a.run_tag);
  check_rank_output(a);
  // Every page's file is checked before the model loads; without --strict an unreadable one
  // (or one that turns out corrupt when decoded) is skipped with a warning.
  std::vector<SkippedPage> skipped;
  std::vector<SkippedPage>* skip_to = a.strict ? nullptr : &skipped;
  const std::vector<PageRef> given = expand_page_inputs(a.pages, skip_to);
  if (given.empty()) {
    throw InputError("none of the given page(s) can be read (the first: " + skipped.front().reason +
                     ")");
  }
  const std::vector<PageRef> pages = check_page_files(given, skip_to);
  // What the ranking would refuse once the model has loaded, refused before it loads.
  if (a.query.find_first_not_of(" \t\r\n") == std::string::npos)
    throw InputError("the query is empty");
  if (pages.size() > static_cast<size_t>(options.max_candidates)) {
    throw InputError(std::to_string(pages.size()) + " candidates in one query, above the cap of " +
                     std::to_string(options.max_candidates) + " (raise it with --max-candidates)");
  }
  auto reranker = load_reranker(a.common);
  options = reranker->resolve(options, ranking_choice(a));
  spdlog::info("ranking {} page(s), {}", pages.size(), Reranker::describe(options));
  // Progress on long runs: a line redrawn on a terminal, one every 10 s otherwise (logs).
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  const auto t0 = std::chrono::steady_clock::now();
  double last_print = 0;
  bool drawn = false;
  options.progress = [&](const RankProgress& p) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double done = p.pages_encoded + p.windows_done, total = p.pages_total + p.windows_total;
    const double eta = done > 0 ? s * (total - done) / done : 0;
    if (tty && s > 1.0) {
      std::fprintf(stderr, "\rpages %d/%d (%.1f/s)  windows %d/%d  ETA %s   ", p.pages_encoded,
                   p.pages_total, p.pages_encoded / s, p.windows_done, p.windows_total,
                   format_duration(eta).c_str());
      std::fflush(stderr);
      drawn = true;
    } else if (!tty && s - last_print >= 10.0) {
      last_print = s;
      std::fprintf(stderr, "progress: pages %d/%d, windows %d/%d, ETA %s\n", p.pages_encoded,
                   p.pages_total, p.windows_done, p.windows_total, format_duration(eta).c_str());
    }
  };
  RerankResult r = reranker->rerank_pages(a.query, pages, options);
  if (drawn) std::fprintf(stderr, "\n");
  check_finite_scores(r, options.scoring);  // before any line: no ranking of null scores
  r.skipped.insert(r.skipped.begin(), skipped.begin(), skipped.end());
  const size_t shown = a.top_k > 0 ? std::min<size_t>(a.top_k, r.ranking.size()) : r.ranking.size();
  std::ostringstream text;
  if (a.format == "table") {
    char row[64];
    std::snprintf(row, sizeof(row), "%-5s %-12s %-9s ", "rank", "score", "relevance");
    text << row << "page\n";
    for (size_t i = 0; i < shown; ++i) {
      std::snprintf(row, sizeof(row), "%-5zu %-12.4f %-9.4f ", i + 1, r.ranking[i].score,
                    r.ranking[i].relevance);
      text << row << r.ranking[i].id << "\n";
    }
  } else if (a.format == "trec") {
    std::vector<std::pair<std::string, double>> ranking;
    for (size_t i = 0; i < shown; ++i) ranking.emplace_back(r.ranking[i].id, r.ranking[i].score);
    write_trec_run(text, a.query_id, ranking, a.run_tag);
  } else {
    std::map<std::string, const PageRef*> by_id;
    for (const PageRef& p : pages) by_id[p.id] = &p;
    for (size_t i = 0; i < shown; ++i) {
      nlohmann::json line = {{"rank", i + 1},
                             {"id", r.ranking[i].id},
                             {"score", r.ranking[i].score},
                             {"relevance", r.ranking[i].relevance}};
      if (const auto it = by_id.find(r.ranking[i].id); it != by_id.end()) {
        line["path"] = it->second->path;
        if (it->second->pdf_page > 0) line["page"] = it->second->pdf_page;
      }
      // A file name that is not UTF-8 becomes U+FFFD in the id instead of making dump() throw.
      text << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    }
  }
  if (a.output == "-") {
    std::cout << text.str();
    std::cout.flush();
  } else {
    std::ofstream out(a.output, std::ios::binary | std::ios::trunc);
    out << text.str();
    out.flush();
    if (!out) throw InputError("cannot write '" + a.output + "' (disk full?)");
  }
  if (!r.skipped.empty()) {
    std::string ids;
    for (size_t i = 0; i < r.skipped.size(); ++i) ids += (i ? ", " : "") + r.skipped[i].id;
    spdlog::warn("skipped {} page(s) that cannot be read: {} (--strict makes this an error)",
                 r.skipped.size(), ids);
  }
  spdlog::info(
      "{} window(s); visual tokens {} -> {}; {:.0f} ms (decode {:.0f}, preprocess {:.0f}, vision "
      "{:.0f}, "
      "prune {:.0f}, llm {:.0f})",
      r.windows, r.tokens.visual_before, r.tokens.visual_after, r.timing.total, r.timing.decode,
      r.timing.preprocess, r.timing.vision, r.timing.prune, r.timing.llm);
  return 0;
}

std::atomic<bool> g_stop{false};

extern "C" void on_stop_signal(int) {
  // First Ctrl-C or SIGTERM: stop the query in progress at its next window (it is rerun on
  // --resume), keep every finished one, exit 130. A second one ends the process at once.
  g_stop.store(true);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

std::string format_duration(double s) {
  char buf[32];
  const int t = static_cast<int>(s + 0.5);
  if (t >= 3600) {
    std::snprintf(buf, sizeof(buf), "%dh%02dm", t / 3600, (t / 60) % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%dm%02ds", t / 60, t % 60);
  }
  return buf;
}

int run_batch_command(const PipelineArgs& a) {
  BatchOptions o;
  o.input = a.input;
  o.output = a.output;
  o.resume = a.resume;
  o.force = a.force;
  o.format = a.format;
  o.run_tag = a.run_tag;
  if (a.format == "trec") check_run_tag(a.run_tag);
  if (a.resume && a.force) throw UsageError("--resume and --force exclude each other");
  if (a.resume && (a.input == "-" || a.output == "-")) {
    throw UsageError(
        "--resume needs the queries and the run as files (standard input cannot be read twice, "
        "standard output cannot be read back)");
  }
  if (a.resume && a.format == "table") {
    throw UsageError("--resume needs --format jsonl or trec (a table cannot be read back)");
  }
  if (a.vision_cache_mb < 0) throw UsageError("--vision-cache-mb must be >= 0");
  if (!a.shard.empty()) parse_shard(a.shard, o.shard_index, o.shard_count);
  check_batch_paths(o.input, o.output);  // before the model loads and anything is written
  o.rerank = rerank_options(a);
  auto reranker = load_reranker(a.common);
  o.rerank = reranker->resolve(o.rerank, ranking_choice(a));
  spdlog::info("{}", Reranker::describe(o.rerank));
  reranker->set_vision_cache(static_cast<size_t>(a.vision_cache_mb) << 20);

  const bool tty = ::isatty(STDERR_FILENO) == 1;
  double last_print = -1e9;
  auto progress = [&](const BatchProgress& p) {
    const double rate = p.elapsed_s > 0 ? p.done / p.elapsed_s : 0;
    const double eta = rate > 0 ? (p.total - p.done) / rate : 0;
    const bool last = p.done == p.total;
    if (tty) {
      const int width = 30;
      const int filled = p.total ? static_cast<int>(width * p.done / p.total) : width;
      std::fprintf(stderr, "\r[%s%s] %zu/%zu  %.2f q/s  ETA %s  failed %zu%s",
                   std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                   p.done, p.total, rate, format_duration(eta).c_str(), p.failed, last ? "\n" : "");
      std::fflush(stderr);
    } else if (last || p.elapsed_s - last_print >= 10.0) {
      last_print = p.elapsed_s;
      std::fprintf(stderr, "progress: %zu/%zu queries, %.2f q/s, ETA %s, failed %zu\n", p.done,
                   p.total, rate, format_duration(eta).c_str(), p.failed);
    }
  };
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  const BatchSummary s = run_batch(*reranker, o, g_stop, progress);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  spdlog::info("batch: {} ok, {} failed, {} skipped (already done) of {} in {}", s.ok, s.failed,
               s.skipped, s.in_shard, o.output);
  if (const VisionCache* cache = detail::Stages(*reranker).vision_cache()) {
    spdlog::info("vision cache: {} page(s) reused, {} encoded", cache->hits(), cache->misses());
  }
  if (s.interrupted) {
    spdlog::warn("interrupted: every finished query is saved; rerun with --resume to continue");
    return static_cast<int>(ExitCode::kInterrupted);
  }
  return s.failed ? static_cast<int>(ExitCode::kPartialFailure) : 0;
}

struct BenchArgs {
  CommonOptions common;
  std::string input;
  std::vector<std::string> pages;
  std::string query = "Which page reports the net revenue by year?";
  int num_pages = 20;
  std::string page_size = "791x1024";
  std::string keep_ratios = "1.0,0.5,0.25";
  std::string scorings = "logits,generate";
  std::string vision_tiles;  ///< empty: the model's own
  int repeats = 5;
  int warmup = 1;
  int window = 20;
  std::string format = "table";
  std::string pruning_recall;
  int limit = 0;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s + ",") {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (c != ' ') {
      cur += c;
    }
  }
  return out;
}

std::vector<double> parse_keep_ratios(const std::string& list) {
  std::vector<double> out;
  for (const auto& kr : split_list(list)) {
    double v = 0;
    try {
      v = std::stod(kr);
    } catch (const std::exception&) {
      throw UsageError("--keep-ratios: '" + kr + "' is not a number");
    }
    if (!(v > 0 && v <= 1)) throw UsageError("--keep-ratios values must be in (0, 1]");
    out.push_back(v);
  }
  return out;
}

int run_pruning_recall(const BenchArgs& a) {
  const std::vector<double> keeps = parse_keep_ratios(a.keep_ratios);
  auto reranker = load_reranker(a.common);
  const PruningRecallReport r = measure_pruning_recall(*reranker, a.pruning_recall, keeps, a.limit);
  if (r.pages == 0) {
    throw InputError("'" + a.pruning_recall +
                     "': no relevant page with word boxes (words.json) shows a query word");
  }
  if (a.format == "jsonl") {
    for (const PruningRecall& row : r.rows) {
      std::cout << nlohmann::json{{"keep_ratio", row.keep_ratio},
                                  {"recall", row.recall},
                                  {"page_recall", row.page_recall},
                                  {"kept_share", row.kept_share},
                                  {"pages", r.pages},
                                  {"word_tokens", r.word_tokens}}
                       .dump()
                << "\n";
    }
  } else {
    std::printf(
        "query-word tokens kept by pruning: %lld relevant pages of %lld queries, %lld "
        "tokens showing a query word (%lld pages skipped)\n",
        static_cast<long long>(r.pages), static_cast<long long>(r.queries),
        static_cast<long long>(r.word_tokens), static_cast<long long>(r.skipped));
    std::printf("%-6s %-8s %-12s %s\n", "keep", "recall", "page recall", "blind (kept share)");
    for (const PruningRecall& row : r.rows) {
      std::printf("%-6.2f %-8.3f %-12.3f %.3f\n", row.keep_ratio, row.recall, row.page_recall,
                  row.kept_share);
    }
  }
  return 0;
}

int run_bench_command(const BenchArgs& a) {
  if (!a.pruning_recall.empty()) return run_pruning_recall(a);
  BenchOptions o;
  o.repeats = a.repeats;
  o.warmup = a.warmup;
  o.window = a.window;
  std::vector<std::optional<int>> tiles;
  for (const auto& t : split_list(a.vision_tiles)) {
    try {
      size_t used = 0;
      const int tile = std::stoi(t, &used);
      if (used != t.size() || tile < 0) throw std::invalid_argument(t);
      tiles.push_back(tile);
    } catch (const std::exception&) {
      throw UsageError("--vision-tiles: '" + t + "' is not a tile size in pixels (0 = whole)");
    }
  }
  if (tiles.empty()) tiles.push_back(std::nullopt);  // the model's own
  for (const auto& sc : split_list(a.scorings)) {
    for (double keep : parse_keep_ratios(a.keep_ratios)) {
      for (const std::optional<int>& tile : tiles) {
        BenchConfig c;
        c.scoring = parse_scoring(sc);
        c.keep_ratio = keep;
        c.vision_tile = tile;
        o.configs.push_back(c);
      }
    }
  }
  if (o.configs.empty()) throw UsageError("nothing to benchmark: give --scoring and --keep-ratios");
  std::string query = a.query;
  std::vector<PageRef> pages;
  std::vector<Image> images;
  if (!a.input.empty()) {
    std::ifstream in(a.input);
    std::string line;
    while (std::getline(in, line) && line.find_first_not_of(" \t\r") == std::string::npos) {
    }
    if (line.empty()) throw InputError("'" + a.input + "' holds no query");
    const std::string base = std::filesystem::absolute(a.input).parent_path().string();
    const BatchQuery q = parse_batch_query(line, base, a.input + ":1");
    query = q.query;
    pages = q.candidates;
    if (static_cast<int>(pages.size()) > a.window) pages.resize(a.window);
  } else if (!a.pages.empty()) {
    pages = expand_page_inputs(a.pages);
    if (static_cast<int>(pages.size()) > a.window) pages.resize(a.window);
  } else {
    int w = 0, h = 0;
    char x = 0;
    std::istringstream ss(a.page_size);
    if (!(ss >> w >> x >> h) || x != 'x' || w < 32 || h < 32)
      throw UsageError("--page-size must look like 791x1024");
    images = synthetic_pages(a.num_pages, w, h, 7);
  }
  auto reranker = load_reranker(a.common);
  spdlog::info("bench: {} page(s) per window, {} warm-up + {} timed repeats per configuration",
               pages.empty() ? images.size() : pages.size(), a.warmup, a.repeats);
  const auto rows = run_bench(*reranker, query, pages, images, o);
  std::cout << (a.format == "jsonl" ? format_bench_jsonl(rows) : format_bench_table(rows));
  if (a.format != "jsonl") {
    std::cout << "model " << reranker->folder().name << ", device " << a.common.device
              << ", threads "
              << (openblas_threads() > 0 ? openblas_threads() : at::get_num_threads())
              << " (pages encoded " << reranker->encode_workers() << " at a time), peak RSS "
              << format_bytes(static_cast<double>(peak_rss_bytes())) << "\n";
  }
  return 0;
}

// -o/--output (required unless it has a default) and --force.
void add_output_options(CLI::App* cmd, PipelineArgs& a, const std::string& what) {
  auto* out = cmd->add_option("-o,--output", a.output, what);
  if (a.output.empty()) {
    out->required();
  } else {
    out->capture_default_str();
  }
  cmd->add_flag("--force", a.force, "Overwrite an existing --output");
}

// What rank and batch do with pages that cannot be read, and the TREC run tag.
void add_page_options(CLI::App* cmd, PipelineArgs& a) {
  cmd->add_flag("--strict", a.strict,
                "Fail (the query, in batch) on a page that cannot be read or decoded; default: "
                "skip it with a warning and rank the others");
  cmd->add_option("-t,--run-tag", a.run_tag, "With --format trec: the run tag column")
      ->capture_default_str();
}

void add_ranking_options(CLI::App* cmd, PipelineArgs& a) {
  add_model_options(cmd, a.common);
  cmd->add_option("--vision-tile", a.vision_tile,
                  "Read each page as tiles of at most this many pixels a side, each attending only "
                  "within itself (a multiple of 32 for Qwen3-VL; 0 = whole pages, as Qwen3-VL). "
                  "Default: the model's own (ziprerank.vision_tile in its config.json), else 0")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--keep-ratio", a.keep_ratio,
                  "Fraction of each page's visual tokens kept by query-aware pruning (1.0 = off). "
                  "Default: the model's own (ziprerank.keep_ratio, else the reference's "
                  "qi_early_enabled/qi_early_keep_ratio in its config.json), else 1.0")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--scoring", a.scoring,
                  "logits: one forward pass, one logit per candidate; generate: greedy decoding "
                  "of the ranking (slow baseline); similarity: no language model, each query "
                  "word's best match among a page's visual tokens, weighted by word length and "
                  "summed (how a model whose vision tower reads ranks). Default: the model's own "
                  "(ziprerank.scoring in its config.json), else logits")
      ->check(CLI::IsMember(scoring_names()));
  cmd->add_option("--window", a.window, "Candidates per forward pass (sliding window)")
      ->check(CLI::Range(1, kMaxWindow))
      ->capture_default_str();
  cmd->add_option("--stride", a.stride, "Sliding-window stride (smaller than --window)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-query-tokens", a.max_query_tokens,
                  "Refuse a query longer than this many tokens (every window repeats it)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-candidates", a.max_candidates,
                  "Refuse a query with more candidate pages than this")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

}  // namespace

void register_pipeline_commands(CLI::App& app, Handler& handler) {
  {
    auto a = std::make_shared<PipelineArgs>();
    auto* cmd =
        app.add_subcommand("rank", "Rank the pages of image files, folders or PDFs for one query");
    // Required flags first: --help lists options in the order they are added.
    cmd->add_option("-q,--query", a->query, "The search query")->required();
    cmd->add_option("-p,--pages", a->pages, "Image files, folders of images, or PDF files")
        ->required();
    a->output = "-";
    add_output_options(cmd, *a, "The ranking to write; - = standard output");
    cmd->add_option("--format", a->format,
                    "Output: jsonl (rank, id, score, relevance, path), table, or trec (qid Q0 "
                    "docid rank score tag)")
        ->check(CLI::IsMember({"jsonl", "table", "trec"}))
        ->capture_default_str();
    cmd->add_option("--top-k", a->top_k, "Print only the best K pages (0 = all)")
        ->check(CLI::Range(0, 1 << 30))
        ->capture_default_str();
    cmd->add_option("--query-id", a->query_id, "With --format trec: the query id column")
        ->capture_default_str();
    add_page_options(cmd, *a);
    add_ranking_options(cmd, *a);
    cmd->callback([a, &handler] { handler = [a] { return run_rank(*a); }; });
  }
  {
    auto a = std::make_shared<PipelineArgs>();
    auto* cmd =
        app.add_subcommand("batch", "Rerank many queries from a JSONL file (resumable, shardable)");
    cmd->add_option("-i,--input", a->input, "Queries JSONL; - = standard input")->required();
    add_output_options(cmd, *a, "Run file to write; - = standard output (no --resume)");
    cmd->add_flag("--resume", a->resume, "Skip queries already finished in --output");
    cmd->add_option(
        "--shard", a->shard,
        "Run the K-th of N contiguous slices of the input (K/N, 1-based); the N outputs "
        "concatenated in order equal the full run");
    cmd->add_option("--vision-cache-mb", a->vision_cache_mb,
                    "Memory for reusing pages' vision features across queries (exact; 0 = off)")
        ->capture_default_str();
    cmd->add_option("--format", a->format,
                    "Output: jsonl (run JSONL), trec (qid Q0 docid rank score tag; failed queries "
                    "in OUTPUT.errors.jsonl) or table (qid, rank, score, relevance, page; not "
                    "resumable)")
        ->check(CLI::IsMember({"jsonl", "trec", "table"}))
        ->capture_default_str();
    add_page_options(cmd, *a);
    add_ranking_options(cmd, *a);
    cmd->callback([a, &handler] { handler = [a] { return run_batch_command(*a); }; });
  }
  {
    auto a = std::make_shared<BenchArgs>();
    auto* cmd = app.add_subcommand(
        "bench",
        "Per-stage latency (decode, preprocess, vision, pruning, LLM) of one window across scoring "
        "modes and keep ratios; median and spread after warm-up");
    add_model_options(cmd, a->common);
    cmd->add_option("-i,--input", a->input, "Batch JSONL: benchmark its first query's pages");
    cmd->add_option("-p,--pages", a->pages, "Image files, folders or PDFs to benchmark on");
    cmd->add_option("-q,--query", a->query, "Query text")->capture_default_str();
    cmd->add_option("--num-pages", a->num_pages, "Synthetic pages when no --input/--pages")
        ->capture_default_str();
    cmd->add_option("--page-size", a->page_size, "Synthetic page size WxH")->capture_default_str();
    cmd->add_option("--keep-ratios", a->keep_ratios, "Comma-separated keep ratios")
        ->capture_default_str();
    cmd->add_option("--scoring", a->scorings,
                    "Comma-separated scoring modes (logits, generate, similarity)")
        ->capture_default_str();
    cmd->add_option("--vision-tiles", a->vision_tiles,
                    "Comma-separated vision tiles in pixels to compare (0 = whole pages); "
                    "default: the model's own (ziprerank.vision_tile)");
    cmd->add_option("--repeats", a->repeats, "Timed repeats per configuration")
        ->capture_default_str();
    cmd->add_option("--warmup", a->warmup, "Untimed warm-up runs per configuration")
        ->capture_default_str();
    cmd->add_option("--window", a->window, "Pages per window (extra pages are dropped)")
        ->check(CLI::Range(1, kMaxWindow))
        ->capture_default_str();
    cmd->add_option("--format", a->format, "Output: table or jsonl")
        ->check(CLI::IsMember({"table", "jsonl"}))
        ->capture_default_str();
    cmd->add_option("--pruning-recall", a->pruning_recall,
                    "Instead of timing: on the relevant pages of this batch JSONL whose word "
                    "boxes are known (words.json beside rendered pages), the share of visual "
                    "tokens showing a query word that pruning keeps at each --keep-ratios value");
    cmd->add_option("--limit", a->limit,
                    "With --pruning-recall: at most this many queries (0 = all)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    cmd->callback([a, &handler] { handler = [a] { return run_bench_command(*a); }; });
  }
}

}  // namespace ziprerank::cli
