// Commands of the reranking pipeline and training. Their flags are declared here so that --help
// documents the full interface; each command reports plainly when this build cannot run it yet.
#include <memory>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "ziprerank/batch.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/pages.hpp"
#include "ziprerank/prompt.hpp"
#include "ziprerank/reranker.hpp"
#include "ziprerank/runtime.hpp"

namespace ziprerank::cli {

namespace {

struct PipelineArgs {
  CommonOptions common;
  std::string query;
  std::vector<std::string> pages;
  std::string input, output, run, qrels;
  std::string format = "jsonl";
  std::string scoring = "logits";
  double keep_ratio = 0.5;
  int window = 20;
  int stride = 10;
  int top_k = 0;
  bool resume = false;
  std::string shard;
};

[[noreturn]] void unavailable(const std::string& command) {
  throw Error(ExitCode::kInternal, "`ziprerank " + command +
                                       "` is not implemented in this version yet; see README.md "
                                       "for the commands available now");
}

RerankOptions rerank_options(const PipelineArgs& a) {
  RerankOptions o;
  o.keep_ratio = a.keep_ratio;
  o.scoring = parse_scoring(a.scoring);
  o.window = a.window;
  o.stride = a.stride;
  o.validate();
  return o;
}

std::unique_ptr<Reranker> load_reranker(const CommonOptions& common) {
  const std::string dir = resolve_model(common);
  ModelOptions mo;
  mo.device = parse_device(common.device);
  mo.dtype = parse_dtype(common.dtype, mo.device);
  return Reranker::load(dir, mo);
}

int run_rank(const PipelineArgs& a) {
  const RerankOptions options = rerank_options(a);
  const std::vector<PageRef> pages = expand_page_inputs(a.pages);
  auto reranker = load_reranker(a.common);
  spdlog::info("ranking {} page(s), keep ratio {}, {} scoring", pages.size(), options.keep_ratio, a.scoring);
  const RerankResult r = reranker->rerank_pages(a.query, pages, options);
  const size_t shown = a.top_k > 0 ? std::min<size_t>(a.top_k, r.ranking.size()) : r.ranking.size();
  if (a.format == "table") {
    std::printf("%-5s %-12s %s\n", "rank", "score", "page");
    for (size_t i = 0; i < shown; ++i) {
      std::printf("%-5zu %-12.4f %s\n", i + 1, r.ranking[i].score, r.ranking[i].id.c_str());
    }
  } else {
    for (size_t i = 0; i < shown; ++i) {
      nlohmann::json line = {{"rank", i + 1}, {"id", r.ranking[i].id}, {"score", r.ranking[i].score}};
      std::cout << line.dump() << "\n";
    }
  }
  std::cout.flush();
  spdlog::info("{} window(s); visual tokens {} -> {}; {:.0f} ms (decode {:.0f}, preprocess {:.0f}, vision {:.0f}, "
               "prune {:.0f}, llm {:.0f})",
               r.windows, r.tokens.visual_before, r.tokens.visual_after, r.timing.total, r.timing.decode,
               r.timing.preprocess, r.timing.vision, r.timing.prune, r.timing.llm);
  return 0;
}

std::atomic<bool> g_stop{false};

extern "C" void on_stop_signal(int) {
  // First Ctrl-C: finish the current query, save it, stop. A second one ends the process.
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
  o.format = a.format;
  if (!a.shard.empty()) parse_shard(a.shard, o.shard_index, o.shard_count);
  o.rerank = rerank_options(a);
  auto reranker = load_reranker(a.common);

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
                   std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(), p.done,
                   p.total, rate, format_duration(eta).c_str(), p.failed, last ? "\n" : "");
      std::fflush(stderr);
    } else if (last || p.elapsed_s - last_print >= 10.0) {
      last_print = p.elapsed_s;
      std::fprintf(stderr, "progress: %zu/%zu queries, %.2f q/s, ETA %s, failed %zu\n", p.done, p.total, rate,
                   format_duration(eta).c_str(), p.failed);
    }
  };
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  const BatchSummary s = run_batch(*reranker, o, g_stop, progress);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  spdlog::info("batch: {} ok, {} failed, {} skipped (already done) of {} in {}", s.ok, s.failed, s.skipped,
               s.in_shard, o.output);
  if (s.interrupted) {
    spdlog::warn("interrupted: every finished query is saved; rerun with --resume to continue");
    return static_cast<int>(ExitCode::kInterrupted);
  }
  return s.failed ? static_cast<int>(ExitCode::kPartialFailure) : 0;
}

void add_ranking_options(CLI::App* cmd, PipelineArgs& a) {
  add_model_options(cmd, a.common);
  cmd->add_option("--keep-ratio", a.keep_ratio,
                  "Fraction of each page's visual tokens kept by query-aware pruning (1.0 = off)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--scoring", a.scoring,
                  "logits: one forward pass, one logit per candidate; generate: greedy decoding "
                  "of the ranking (slow baseline)")
      ->check(CLI::IsMember({"logits", "generate"}))
      ->capture_default_str();
  cmd->add_option("--window", a.window, "Candidates per forward pass (sliding window)")
      ->check(CLI::Range(1, kMaxWindow))
      ->capture_default_str();
  cmd->add_option("--stride", a.stride, "Sliding-window stride")->check(CLI::PositiveNumber)->capture_default_str();
}

}  // namespace

void register_pipeline_commands(CLI::App& app, Handler& handler) {
  {
    auto a = std::make_shared<PipelineArgs>();
    auto* cmd = app.add_subcommand("rank", "Rank the pages of image files, folders or PDFs for one query");
    add_ranking_options(cmd, *a);
    cmd->add_option("-q,--query", a->query, "The search query")->required();
    cmd->add_option("-p,--pages", a->pages, "Image files, folders of images, or PDF files")->required();
    cmd->add_option("--format", a->format, "Output: jsonl or table")
        ->check(CLI::IsMember({"jsonl", "table"}))
        ->capture_default_str();
    cmd->add_option("--top-k", a->top_k, "Print only the best K pages (0 = all)")->capture_default_str();
    cmd->callback([a, &handler] { handler = [a] { return run_rank(*a); }; });
  }
  {
    auto a = std::make_shared<PipelineArgs>();
    auto* cmd = app.add_subcommand("batch", "Rerank many queries from a JSONL file (resumable, shardable)");
    add_ranking_options(cmd, *a);
    cmd->add_option("-i,--input", a->input, "Queries JSONL")->required();
    cmd->add_option("-o,--output", a->output, "Run JSONL to write")->required();
    cmd->add_flag("--resume", a->resume, "Skip queries already finished in --output");
    cmd->add_option("--shard", a->shard,
                    "Run the K-th of N contiguous slices of the input (K/N, 1-based); the N outputs "
                    "concatenated in order equal the full run");
    cmd->add_option("--format", a->format, "Output: jsonl (run JSONL) or trec (qid Q0 docid rank score tag)")
        ->check(CLI::IsMember({"jsonl", "trec"}))
        ->capture_default_str();
    cmd->callback([a, &handler] { handler = [a] { return run_batch_command(*a); }; });
  }
  {
    auto a = std::make_shared<PipelineArgs>();
    auto* cmd = app.add_subcommand("eval", "Recall, nDCG, MRR, MAP and Precision of a run against qrels");
    cmd->add_option("--run", a->run, "Run JSONL (or TREC run file)")->required();
    cmd->add_option("--qrels", a->qrels, "Queries JSONL with `relevant` ids (or TREC qrels)")->required();
    cmd->add_option("--format", a->format, "Output: table or json")->capture_default_str();
    cmd->callback([&handler] { handler = [] { unavailable("eval"); return 0; }; });
  }
  {
    auto* cmd = app.add_subcommand("render", "Render text passages or documents to page images");
    cmd->callback([&handler] { handler = [] { unavailable("render"); return 0; }; });
  }
  {
    auto* cmd = app.add_subcommand(
        "train", "Train: stage 1 (rendered-text listwise pretraining) or stage 2 (page distillation)");
    cmd->callback([&handler] { handler = [] { unavailable("train"); return 0; }; });
  }
  {
    auto a = std::make_shared<PipelineArgs>();
    auto* cmd = app.add_subcommand("bench", "Per-stage latency across scoring modes and keep ratios");
    add_model_options(cmd, a->common);
    cmd->callback([&handler] { handler = [] { unavailable("bench"); return 0; }; });
  }
}

}  // namespace ziprerank::cli
