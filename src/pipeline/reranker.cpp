#include "ziprerank/reranker.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <sstream>
#include <thread>

#include "pipeline/stages.hpp"
#include "pipeline/window_scoring.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/prompt.hpp"
#include "ziprerank/pruning.hpp"
#include "ziprerank/runtime.hpp"
#include "ziprerank/similarity.hpp"

namespace ziprerank {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Work on an accelerator is asynchronous; reading one value waits for it so stage timings are
// honest.
void wait_for(const at::Tensor& t) {
  if (t.defined() && !t.device().is_cpu() && t.numel() > 0) (void)t.reshape({-1})[0].item<float>();
}

// Softmax of the finite values (NaN stays NaN), shifted by their maximum so no exp overflows.
std::vector<double> softmax_finite(const std::vector<double>& x) {
  double top = -INFINITY;
  for (double v : x)
    if (std::isfinite(v)) top = std::max(top, v);
  std::vector<double> out(x.size(), NAN);
  double sum = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isfinite(x[i])) sum += out[i] = std::exp(x[i] - top);
  }
  for (double& v : out)
    if (std::isfinite(v)) v /= sum;
  return out;
}

}  // namespace

void RerankOptions::validate() const {
  if (!(keep_ratio > 0.0 && keep_ratio <= 1.0)) throw UsageError("--keep-ratio must be in (0, 1]");
  if (window < 1 || window > kMaxWindow) {
    throw UsageError("--window must be between 1 and " + std::to_string(kMaxWindow));
  }
  if (stride < 1) throw UsageError("--stride must be positive");
  if (max_query_tokens < 1) throw UsageError("--max-query-tokens must be positive");
  if (max_candidates < 1) throw UsageError("--max-candidates must be positive");
  if (vision_tile && *vision_tile < 0) throw UsageError("--vision-tile must not be negative");
  if (window > 1 && stride >= window) {
    // Windows that do not overlap leave pages between them unscored, and none could move up past
    // a window's edge.
    throw UsageError("--stride " + std::to_string(stride) + " must be smaller than --window " +
                     std::to_string(window) + " (windows must overlap; the default is --window " +
                     "20 --stride 10)");
  }
}

StageTiming& StageTiming::operator+=(const StageTiming& o) {
  decode += o.decode;
  preprocess += o.preprocess;
  vision += o.vision;
  prune += o.prune;
  llm += o.llm;
  total += o.total;
  return *this;
}

std::vector<int> sliding_window_order(
    int n, int window, int stride,
    const std::function<std::vector<int>(int, int, const std::vector<int>&)>& rank_window) {
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  if (n <= 0) return order;
  if (n <= window) {
    // As the reference: up to a window's worth of candidates is one window (its loop alone
    // would skip n = window - stride entirely).
    const std::vector<int> ranked = rank_window(0, n, order);
    std::vector<int> reordered;
    for (int pos : ranked) reordered.push_back(order[pos]);
    return reordered;
  }
  int end = n, start = n - window;
  // As the reference: back to front, until the window has covered the first position.
  while (end > 0 && start + stride != 0) {
    start = std::max(start, 0);
    const std::vector<int> ranked = rank_window(start, end, order);
    std::vector<int> reordered;
    for (int pos : ranked) reordered.push_back(order[start + pos]);
    std::copy(reordered.begin(), reordered.end(), order.begin() + start);
    end -= stride;
    start -= stride;
  }
  return order;
}

std::unique_ptr<Reranker> Reranker::load(const std::string& model_dir,
                                         const ModelOptions& options) {
  ModelFolder folder = open_model_folder(model_dir);
  const auto& vc = folder.config.vision;
  const auto& pc = folder.preprocessor;
  if (pc.patch_size != vc.patch_size || pc.merge_size != vc.spatial_merge_size ||
      pc.temporal_patch_size != vc.temporal_patch_size) {
    throw InputError(model_dir + ": preprocessor_config.json (patch " +
                     std::to_string(pc.patch_size) + ", merge " + std::to_string(pc.merge_size) +
                     ") disagrees with config.json (patch " + std::to_string(vc.patch_size) +
                     ", merge " + std::to_string(vc.spatial_merge_size) + ")");
  }
  std::shared_ptr<const Tokenizer> tok = load_tokenizer(model_dir);
  for (const std::string& d : chat_template_differences(read_chat_template(model_dir))) {
    spdlog::warn(
        "{}: the model's chat template differs from the built-in Qwen3-VL format ziprerank "
        "ranks with: {}",
        model_dir, d);
  }
  std::shared_ptr<const Qwen3VLModel> model = Qwen3VLModel::load(model_dir, options);
  spdlog::info("model {} ({}), {}{} on {}, tokenizer {}", folder.name, model_dir,
               c10::toString(options.dtype),
               model->options().bf16_products ? " with bfloat16 products" : "",
               options.device.str(), tok->kind());
  if (folder.random_init) {
    spdlog::warn("model '{}' is RANDOMLY INITIALISED (untrained): its rankings are meaningless",
                 folder.name);
  }
  return std::make_unique<Reranker>(std::move(folder), std::move(model), std::move(tok));
}

Reranker::Reranker(ModelFolder folder, std::shared_ptr<const Qwen3VLModel> model,
                   std::shared_ptr<const Tokenizer> tokenizer)
    : folder_(std::move(folder)), model_(std::move(model)), tokenizer_(std::move(tokenizer)) {}

RerankOptions Reranker::resolve(RerankOptions options, const RankingChoice& asked) const {
  options.scoring = asked.scoring ? *asked.scoring : folder_.scoring;
  if (const std::string w = untrained_scoring_warning(folder_, options.scoring); !w.empty())
    spdlog::warn("{}", w);
  options.keep_ratio = asked.keep_ratio ? *asked.keep_ratio : folder_.keep_ratio;
  if (asked.vision_tile) {
    check_vision_tile(*asked.vision_tile, model_->config().vision, "--vision-tile");
    options.vision_tile = *asked.vision_tile;
  } else {
    options.vision_tile = model_->vision_tile();
  }
  options.validate();
  return options;
}

std::string Reranker::describe(const RerankOptions& o) {
  std::ostringstream out;
  out << "keep ratio " << o.keep_ratio << ", " << scoring_name(o.scoring) << " scoring";
  if (o.vision_tile.value_or(0) > 0) out << ", vision tiles of " << *o.vision_tile << " px";
  return out.str();
}

namespace detail {

int Stages::vision_tile(const RerankOptions& options) const {
  return options.vision_tile.value_or(r_.model_->vision_tile());
}

PreprocessedImage Stages::prepare(const Image& image, const RerankOptions& options,
                                  StageTiming* timing) const {
  const auto t0 = Clock::now();
  PreprocessedImage p = preprocess_image(image, r_.folder_.preprocessor, options.page_preresize);
  if (timing) timing->preprocess += ms_since(t0);
  return p;
}

WindowScores Stages::score_window(const std::string& query,
                                  const std::vector<const VisionFeatures*>& pages,
                                  const std::vector<ImageGrid>& grids, const RerankOptions& options,
                                  StageTiming& timing, TokenCounts& tokens) const {
  c10::InferenceMode guard;
  const Qwen3VLModel& model = *r_.model_;
  const Tokenizer& tokenizer = *r_.tokenizer_;
  const ModelConfig& c = model.config();
  auto t0 = Clock::now();
  if (options.scoring == Scoring::kSimilarity) {
    WindowScores out = similarity_window(model, tokenizer, query, pages, options, tokens);
    timing.prune += ms_since(t0);
    return out;
  }
  const size_t levels = c.vision.deepstack_visual_indexes.size();
  for (const VisionFeatures* page : pages) {
    if (page->deepstack.size() != levels) {
      throw InternalError(
          "a page was encoded without DeepStack features (as for similarity "
          "scoring), which the language model needs");
    }
  }
  const VisionFeatures vf = concat_vision_features(pages);
  const PromptTokens prompt = build_ranking_prompt(tokenizer, c, query, vf.tokens_per_image);
  AssembledSequence seq =
      assemble_sequence(model, prompt.ids, grids, vf, options.keep_ratio, pruning_text(c, prompt));
  wait_for(seq.input.embeds);
  const int64_t positions = seq.input.position_ids.max().item<int64_t>() + 1;
  if (positions > c.text.max_position_embeddings) {
    throw InputError("this window's sequence reaches position " + std::to_string(positions) +
                     ", past the model's max_position_embeddings (" +
                     std::to_string(c.text.max_position_embeddings) +
                     "): use a smaller --window or --keep-ratio, or smaller pages");
  }
  timing.prune += ms_since(t0);
  tokens.input += seq.input.embeds.size(1);
  tokens.visual_before += seq.visual_before;
  tokens.visual_after += seq.visual_after;

  WindowScores out;
  const int n = static_cast<int>(pages.size());
  t0 = Clock::now();
  if (options.scoring == Scoring::kLogits) {
    const at::Tensor hidden = model.forward(seq.input);
    const at::Tensor last = hidden.select(1, hidden.size(1) - 1);  // the "[" position
    const at::Tensor ids = at::tensor(prompt.identifier_ids, at::kLong);
    const at::Tensor logits = model.logits(last, ids).to(at::kCPU, at::kDouble).reshape({-1});
    out.logits.assign(logits.data_ptr<double>(), logits.data_ptr<double>() + logits.numel());
    out.order = stable_order_desc(out.logits);
  } else {
    // Greedy decoding of "A] > [C] > ...", at most 5 tokens per candidate, as the reference,
    // with what the model's generation_config.json asks of greedy decoding.
    const std::vector<int64_t> generated =
        greedy_generate(model, r_.folder_.generation, seq.input, prompt.ids, 5 * n);
    tokens.generated += static_cast<int64_t>(generated.size());
    out.generated = tokenizer.decode(generated);
    out.order = parse_generated_ranking(out.generated, n);
  }
  timing.llm += ms_since(t0);
  return out;
}

}  // namespace detail

void Reranker::set_vision_cache(size_t max_bytes) {
  cache_ = max_bytes > 0 ? std::make_unique<VisionCache>(max_bytes) : nullptr;
}

void Reranker::set_encode_workers(int workers) {
  if (workers < 1) throw UsageError("encode workers must be at least 1");
  encode_workers_ = workers;
}

namespace detail {

size_t Stages::page_workers() const {
  return r_.model_->options().device.is_cpu() ? static_cast<size_t>(r_.encode_workers_) : 1;
}

}  // namespace detail

namespace {

// Encodes pages[begin, end) a few at a time into out[begin, end).
void encode_range(const Qwen3VLModel& model, const std::vector<PreprocessedImage>& pages,
                  size_t begin, size_t end, int vision_tile, bool deepstack,
                  std::vector<std::shared_ptr<const EncodedPage>>& out) {
  c10::InferenceMode guard;
  // One page at a time, on every device. A page's features must not depend on which other pages
  // were encoded with it (the vision cache, resumed and sharded runs change that grouping): the
  // products' row counts would differ, and BLAS libraries pick kernels and blockings by shape, so
  // a joined batch is not bit-identical to the pages alone. On CPU the tower works through about
  // 2048 rows a page anyway.
  for (size_t i = begin; i < end; ++i) {
    const auto& thw = pages[i].grid_thw;
    const ImageGrid grid{thw[0], thw[1], thw[2]};
    VisionFeatures vf = model.encode_images(pages[i].pixel_values, {grid}, vision_tile, deepstack);
    wait_for(vf.embeds);
    auto page = std::make_shared<EncodedPage>();
    page->grid = grid;
    page->features = std::move(vf);
    out[i] = std::move(page);
  }
}

// Runs fn(0) .. fn(workers - 1) on as many threads, each with one libtorch thread; the first
// exception is rethrown after all have finished.
template <class F>
void run_workers(size_t workers, F fn) {
  std::vector<std::exception_ptr> errors(workers);
  std::vector<std::thread> pool;
  for (size_t w = 0; w < workers; ++w) {
    pool.emplace_back([&, w] {
      try {
        c10::InferenceMode guard;
        at::set_num_threads(1);
        fn(w);
      } catch (...) {
        errors[w] = std::current_exception();
      }
    });
  }
  for (auto& t : pool) t.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// Restores OpenBLAS's thread count when it goes out of scope.
struct OpenBlasThreads {
  int saved = openblas_threads();
  explicit OpenBlasThreads(int n) {
    if (saved > 0) set_openblas_threads(n);
  }
  ~OpenBlasThreads() {
    if (saved > 0) set_openblas_threads(saved);
  }
};

}  // namespace

namespace detail {

std::vector<std::shared_ptr<const EncodedPage>> Stages::encode(
    const std::vector<PreprocessedImage>& pages, StageTiming& timing, int vision_tile,
    bool deepstack) const {
  std::vector<std::shared_ptr<const EncodedPage>> out(pages.size());
  const auto t0 = Clock::now();
  const Qwen3VLModel& model = *r_.model_;
  if (!model.options().device.is_cpu()) {
    encode_range(model, pages, 0, pages.size(), vision_tile, deepstack, out);
  } else {
    // Each worker takes a contiguous share of the pages and runs single-threaded (libtorch and
    // OpenBLAS), and so does a lone page: BLAS results can depend on the thread count (OpenBLAS's
    // Haswell and Zen kernels split rows into differently handled tails), and a page must get
    // the same features whether it is encoded with others (a cold run) or alone (one page not
    // yet in the vision cache). A lone page leaves the other cores idle; that is the price.
    const size_t workers = std::max<size_t>(1, std::min(pages.size(), page_workers()));
    const OpenBlasThreads single(1);
    run_workers(workers, [&](size_t w) {
      encode_range(model, pages, pages.size() * w / workers, pages.size() * (w + 1) / workers,
                   vision_tile, deepstack, out);
    });
  }
  timing.vision += ms_since(t0);
  return out;
}

}  // namespace detail

namespace {

void check_request(const std::string& query, size_t pages, const RerankOptions& options,
                   const Tokenizer& tokenizer) {
  options.validate();
  if (pages == 0) throw InputError("no candidate pages to rank");
  if (query.find_first_not_of(" \t\r\n") == std::string::npos)
    throw InputError("the query is empty");
  if (pages > static_cast<size_t>(options.max_candidates)) {
    throw InputError(std::to_string(pages) + " candidates in one query, above the cap of " +
                     std::to_string(options.max_candidates) + " (raise it with --max-candidates)");
  }
  // Cheap bound first: a token is at least one byte.
  if (query.size() > static_cast<size_t>(options.max_query_tokens)) {
    const size_t n = tokenizer.encode(query).size();
    if (n > static_cast<size_t>(options.max_query_tokens)) {
      throw InputError("the query is " + std::to_string(n) + " tokens (" +
                       std::to_string(query.size()) + " bytes), above the cap of " +
                       std::to_string(options.max_query_tokens) +
                       " (raise it with --max-query-tokens)");
    }
  }
}

// How many windows ranking n candidates takes: the sliding window's own loop, counted (similarity
// scoring goes through the pages a window's worth at a time).
int window_count(int n, const RerankOptions& o) {
  if (o.scoring == Scoring::kSimilarity) return (n + o.window - 1) / o.window;
  int count = 0;
  sliding_window_order(n, o.window, o.stride,
                       [&count](int begin, int end, const std::vector<int>&) {
                         ++count;
                         std::vector<int> same(static_cast<size_t>(end - begin));
                         std::iota(same.begin(), same.end(), 0);
                         return same;
                       });
  return count;
}

}  // namespace

namespace {

double similarity_weight_sum(const Tokenizer& tokenizer, const std::string& query) {
  double weights = 0;
  for (const SimilarityWord& w : similarity_words(tokenizer, query)) weights += w.weight;
  return weights;
}

// Called once the ranking is done: a ranking of no readable page is an error either way.
void check_some_readable(const RerankResult& result, int n) {
  if (!result.ranking.empty()) return;
  throw InputError("none of the " + std::to_string(n) + " page(s) can be read (the first: " +
                   (result.skipped.empty() ? std::string("?") : result.skipped.front().reason) +
                   ")");
}

// The readable pages sorted by their own scores (per-page scoring: no sliding window).
void rank_by_own_score(const std::vector<std::string>& ids, const std::vector<char>& unreadable,
                       const std::vector<double>& last_logit,
                       const std::vector<double>& last_relevance, RerankResult& result) {
  std::vector<int> readable;
  for (int i = 0; i < static_cast<int>(ids.size()); ++i)
    if (!unreadable[static_cast<size_t>(i)]) readable.push_back(i);
  std::stable_sort(readable.begin(), readable.end(), [&](int a, int b) {
    return last_logit[static_cast<size_t>(a)] > last_logit[static_cast<size_t>(b)];
  });
  for (const int idx : readable) {
    RankedPage page;
    page.id = ids[static_cast<size_t>(idx)];
    page.logit = page.score = last_logit[static_cast<size_t>(idx)];
    page.relevance = last_relevance[static_cast<size_t>(idx)];
    result.ranking.push_back(page);
  }
}

// The readable pages in the sliding window's final order. One window of logits keeps its logits
// as scores; otherwise a page scores n - rank (n counting only the pages read), as the
// reference's evaluation does.
void rank_in_window_order(const std::vector<int>& order, const std::vector<std::string>& ids,
                          const std::vector<char>& unreadable,
                          const std::vector<double>& last_logit,
                          const std::vector<double>& last_relevance, Scoring scoring,
                          RerankResult& result) {
  const bool single_logit_window = result.windows == 1 && scoring != Scoring::kGenerate;
  const int ranked = static_cast<int>(ids.size()) - static_cast<int>(result.skipped.size());
  for (int idx : order) {
    if (unreadable[static_cast<size_t>(idx)]) continue;
    RankedPage page;
    page.id = ids[idx];
    page.logit = last_logit[idx];
    const double from_end = static_cast<double>(ranked - static_cast<int>(result.ranking.size()));
    page.score = single_logit_window ? last_logit[idx] : from_end;
    // Generate scoring has no logits: relevance falls linearly with rank, 1 for the first.
    page.relevance = scoring == Scoring::kGenerate ? from_end / ranked : last_relevance[idx];
    result.ranking.push_back(page);
  }
}

}  // namespace

namespace detail {

RerankResult Stages::rank_lazily(const std::string& query, const std::vector<std::string>& ids,
                                 const PageFetch& fetch, const RerankOptions& options) const {
  c10::InferenceMode guard;
  check_request(query, ids.size(), options, *r_.tokenizer_);
  RerankResult result;
  const auto t_start = Clock::now();
  const int n = static_cast<int>(ids.size());
  RankProgress progress;
  progress.pages_total = n;
  progress.windows_total = window_count(n, options);
  const auto check_stop = [&] {
    if (options.should_stop && options.should_stop()) throw Interrupted("ranking interrupted");
  };
  // Pages are encoded when a window first needs them and dropped once no later window can see
  // them, so memory follows the window, not the document.
  std::vector<std::shared_ptr<const EncodedPage>> held(ids.size());
  // Pages found unreadable when a window first needed them: left out of every window from then
  // on (skip_unreadable), so each window ranks the pages it can see.
  std::vector<char> unreadable(ids.size(), 0);
  const auto need = [&](const std::vector<int>& idx) {
    std::vector<size_t> missing;
    for (int i : idx) {
      const size_t u = static_cast<size_t>(i);
      if (!held[u] && !unreadable[u]) missing.push_back(u);
    }
    if (missing.empty()) return;
    check_stop();
    std::vector<std::string> errors(missing.size());
    const auto got = fetch(missing, result.timing, errors);
    if (got.size() != missing.size() || errors.size() != missing.size())
      throw InternalError("rerank: pages fetched out of step");
    for (size_t k = 0; k < missing.size(); ++k) {
      if (got[k]) {
        held[missing[k]] = got[k];
        continue;
      }
      if (errors[k].empty()) throw InternalError("rerank: a page fetched as nothing, no reason");
      if (!options.skip_unreadable) throw InputError(errors[k]);
      unreadable[missing[k]] = 1;
      result.skipped.push_back(SkippedPage{ids[missing[k]], errors[k]});
      spdlog::warn("skipping page '{}', which cannot be read: {}", ids[missing[k]], errors[k]);
    }
    progress.pages_encoded += static_cast<int>(missing.size());
    if (options.progress) options.progress(progress);
  };
  // Scores the readable pages of a window; the unreadable ones get NaN and come last in its order.
  const auto score = [&](const std::vector<int>& idx) {
    need(idx);
    check_stop();
    std::vector<size_t> live;  // positions in idx of readable pages
    for (size_t k = 0; k < idx.size(); ++k)
      if (!unreadable[static_cast<size_t>(idx[k])]) live.push_back(k);
    WindowScores out;
    out.logits.assign(idx.size(), NAN);
    if (!live.empty()) {
      std::vector<const VisionFeatures*> win;
      std::vector<ImageGrid> grids;
      for (size_t k : live) {
        win.push_back(&held[static_cast<size_t>(idx[k])]->features);
        grids.push_back(held[static_cast<size_t>(idx[k])]->grid);
      }
      WindowScores ws = score_window(query, win, grids, options, result.timing, result.tokens);
      ++result.windows;
      progress.windows_done = result.windows;
      if (options.progress) options.progress(progress);
      for (size_t m = 0; m < ws.logits.size(); ++m) out.logits[live[m]] = ws.logits[m];
      for (int m : ws.order) out.order.push_back(static_cast<int>(live[static_cast<size_t>(m)]));
      out.generated = std::move(ws.generated);
    }
    for (size_t k = 0; k < idx.size(); ++k)
      if (unreadable[static_cast<size_t>(idx[k])]) out.order.push_back(static_cast<int>(k));
    return out;
  };
  std::vector<double> last_logit(ids.size(), NAN);
  std::vector<double> last_relevance(ids.size(), NAN);

  if (options.scoring == Scoring::kSimilarity) {
    // The score is a sum of cosines weighted by word length: over the weights' sum it is a
    // weighted mean cosine in [-1, 1], mapped linearly onto [0, 1].
    const double weights = similarity_weight_sum(*r_.tokenizer_, query);
    // Each page scores on its own: no sliding window, the pages are sorted by their scores
    // (scored a window's worth at a time, in input order).
    for (int begin = 0; begin < n; begin += options.window) {
      std::vector<int> idx(static_cast<size_t>(std::min(n, begin + options.window) - begin));
      std::iota(idx.begin(), idx.end(), begin);
      const WindowScores ws = score(idx);
      for (size_t k = 0; k < idx.size(); ++k) {
        const size_t i = static_cast<size_t>(idx[k]);
        last_logit[i] = ws.logits[k];
        last_relevance[i] = std::clamp((ws.logits[k] / std::max(weights, 1e-12) + 1) / 2, 0.0, 1.0);
        held[i].reset();
      }
    }
    rank_by_own_score(ids, unreadable, last_logit, last_relevance, result);
    check_some_readable(result, n);
    result.timing.total = ms_since(t_start);
    return result;
  }

  const std::vector<int> order = sliding_window_order(
      n, options.window, options.stride, [&](int begin, int end, const std::vector<int>& current) {
        // Positions from `end` on are final: no later window reaches them.
        for (int p = end; p < n; ++p) held[static_cast<size_t>(current[p])].reset();
        const std::vector<int> idx(current.begin() + begin, current.begin() + end);
        const WindowScores ws = score(idx);
        // Relevance of logits scoring: each page's share of the softmax over the identifier
        // logits of the last window that scored it.
        const std::vector<double> share = softmax_finite(ws.logits);
        for (size_t k = 0; k < ws.logits.size(); ++k) {
          last_logit[static_cast<size_t>(idx[k])] = ws.logits[k];
          last_relevance[static_cast<size_t>(idx[k])] = share[k];
        }
        return ws.order;
      });

  rank_in_window_order(order, ids, unreadable, last_logit, last_relevance, options.scoring, result);
  check_some_readable(result, n);
  result.timing.total = ms_since(t_start);
  return result;
}

RerankResult Stages::rank_encoded(const std::string& query, const std::vector<std::string>& ids,
                                  const std::vector<std::shared_ptr<const EncodedPage>>& pages,
                                  const RerankOptions& options) const {
  if (ids.size() != pages.size()) throw InternalError("rerank: ids and pages differ in length");
  return rank_lazily(
      query, ids,
      [&](const std::vector<size_t>& idx, StageTiming&, std::vector<std::string>&) {
        std::vector<std::shared_ptr<const EncodedPage>> out;
        for (size_t i : idx) out.push_back(pages[i]);
        return out;
      },
      options);
}

RerankResult Stages::rerank(const std::string& query, const std::vector<std::string>& ids,
                            const std::vector<PreprocessedImage>& pages,
                            const RerankOptions& options) const {
  if (ids.size() != pages.size()) throw InternalError("rerank: ids and pages differ in length");
  const int tile = vision_tile(options);
  const bool deepstack = options.scoring != Scoring::kSimilarity;
  return rank_lazily(
      query, ids,
      [&](const std::vector<size_t>& idx, StageTiming& timing, std::vector<std::string>&) {
        std::vector<PreprocessedImage> some;
        for (size_t i : idx) some.push_back(pages[i]);
        return encode(some, timing, tile, deepstack);
      },
      options);
}

}  // namespace detail

namespace {
std::string cache_key(const PageRef& p, const RerankOptions& o, int vision_tile, bool deepstack) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(p.path, ec);
  const auto mtime = std::filesystem::last_write_time(p.path, ec).time_since_epoch().count();
  return p.path + "#" + std::to_string(p.pdf_page) + "|" + std::to_string(size) + "|" +
         std::to_string(mtime) + (o.page_preresize ? "" : "|raw") + "|tile" +
         std::to_string(vision_tile) + (deepstack ? "" : "|no-deepstack");
}
}  // namespace

namespace detail {

void Stages::for_each_page(size_t n, const std::function<void(size_t, StageTiming&)>& fn,
                           StageTiming& timing) const {
  const size_t workers = std::min(n, page_workers());
  if (workers <= 1) {
    for (size_t k = 0; k < n; ++k) fn(k, timing);
    return;
  }
  // On the encoding workers, one thread each. The stage times stay wall-clock times: the
  // workers' sums are scaled to the time the whole step took.
  const auto t0 = Clock::now();
  std::vector<StageTiming> part(workers);
  run_workers(workers, [&](size_t w) {
    for (size_t k = w; k < n; k += workers) fn(k, part[w]);
  });
  double decode = 0, preprocess = 0;
  for (const StageTiming& t : part) decode += t.decode, preprocess += t.preprocess;
  const double wall = ms_since(t0), sum = decode + preprocess;
  timing.decode += sum > 0 ? wall * decode / sum : 0;
  timing.preprocess += sum > 0 ? wall * preprocess / sum : 0;
}

std::vector<PreprocessedImage> Stages::prepare_all(const std::vector<Image>& images,
                                                   const RerankOptions& options,
                                                   StageTiming* timing) const {
  std::vector<PreprocessedImage> out(images.size());
  StageTiming t;
  for_each_page(
      images.size(),
      [&](size_t k, StageTiming& part) { out[k] = prepare(images[k], options, &part); }, t);
  if (timing) timing->preprocess += t.preprocess;
  return out;
}

RerankResult Stages::rerank_pages(const std::string& query, const std::vector<PageRef>& pages,
                                  const RerankOptions& options) const {
  // rank_lazily checks the request before any page is read.
  std::vector<std::string> ids;
  for (const PageRef& p : pages) ids.push_back(p.id);
  // Pages read with another tile have other features: the tile is part of the cache key.
  const int tile = vision_tile(options);
  // Similarity scoring reads the merged tokens alone: the DeepStack mergers are skipped.
  const bool deepstack = options.scoring != Scoring::kSimilarity;
  std::mutex pdf;  // PDF pages are drawn one at a time (the PDF library keeps shared state)
  const auto fetch = [&](const std::vector<size_t>& idx, StageTiming& timing,
                         std::vector<std::string>& errors) {
    std::vector<std::shared_ptr<const EncodedPage>> out(idx.size());
    std::vector<std::string> keys(idx.size());
    std::vector<size_t> missing;  // positions in idx
    for (size_t k = 0; k < idx.size(); ++k) {
      if (r_.cache_) {
        keys[k] = cache_key(pages[idx[k]], options, tile, deepstack);
        out[k] = r_.cache_->get(keys[k]);
        if (out[k]) continue;
      }
      missing.push_back(k);
    }
    if (missing.empty()) return out;
    std::vector<PreprocessedImage> prepared(missing.size());
    for_each_page(
        missing.size(),
        [&](size_t m, StageTiming& part) {
          const PageRef& ref = pages[idx[missing[m]]];
          if (options.prepared) {
            const auto ahead = options.prepared->find(prepared_page_key(ref));
            if (ahead != options.prepared->end()) {
              prepared[m] = ahead->second;
              return;
            }
          }
          const auto td = Clock::now();
          try {
            std::unique_lock<std::mutex> lock(pdf, std::defer_lock);
            if (ref.pdf_page > 0) lock.lock();
            const Image img = load_page(ref);
            if (lock.owns_lock()) lock.unlock();
            part.decode += ms_since(td);
            prepared[m] = prepare(img, options, &part);
          } catch (const InputError& e) {
            // rank_lazily decides: skip the page or fail the ranking.
            errors[missing[m]] = e.what();
          }
        },
        timing);
    std::vector<size_t> readable;  // positions in `missing`
    std::vector<PreprocessedImage> ready;
    for (size_t m = 0; m < missing.size(); ++m) {
      if (!errors[missing[m]].empty()) continue;
      readable.push_back(m);
      ready.push_back(std::move(prepared[m]));
    }
    const auto fresh = encode(ready, timing, tile, deepstack);
    for (size_t r = 0; r < readable.size(); ++r) {
      const size_t k = missing[readable[r]];
      out[k] = fresh[r];
      if (r_.cache_) r_.cache_->put(keys[k], fresh[r]);
    }
    return out;
  };
  return rank_lazily(query, ids, fetch, options);
}

}  // namespace detail

std::string prepared_page_key(const PageRef& page) {
  return page.path + "#" + std::to_string(page.pdf_page);
}

RerankResult Reranker::rerank_pages(const std::string& query, const std::vector<PageRef>& pages,
                                    const RerankOptions& options) const {
  return detail::Stages(*this).rerank_pages(query, pages, options);
}

}  // namespace ziprerank
