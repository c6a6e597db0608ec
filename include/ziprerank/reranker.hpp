// The reranking pipeline: pages -> preprocessing -> vision tower -> query-aware pruning ->
// sequence assembly -> one language-model pass -> one logit per candidate (or, as the slow
// baseline, greedy generation of the ranking), with the reference's sliding window on top.
#pragma once

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ziprerank/image.hpp"
#include "ziprerank/model.hpp"
#include "ziprerank/model_folder.hpp"
#include "ziprerank/pages.hpp"
#include "ziprerank/tokenizer.hpp"
#include "ziprerank/vision_cache.hpp"

namespace ziprerank {

/// The key of a page in RerankOptions::prepared: its path and PDF page.
std::string prepared_page_key(const PageRef& page);

/// Where a ranking is: pages encoded (read, preprocessed and through the vision tower, or found
/// in the vision cache) and windows scored, each out of its total.
struct RankProgress {
  int pages_encoded = 0, pages_total = 0;
  int windows_done = 0, windows_total = 0;
};

struct RerankOptions {
  double keep_ratio = 1.0;  ///< fraction of visual tokens kept per page; >= 1 disables pruning
  Scoring scoring = Scoring::kLogits;
  int window = 20;
  int stride = 10;
  bool page_preresize = true;  ///< shrink pages to longest side 1024 first, as the reference
  /// Windowed vision attention: tile side in pixels, 0 = whole pages. Unset = the model's own
  /// (ziprerank.vision_tile in its config.json, see ModelFolder::vision_tile), as
  /// Reranker::resolve settles it.
  std::optional<int> vision_tile;
  /// Pages already decoded and preprocessed with these options, by prepared_page_key() (batch
  /// prepares the next query's pages while the model computes the current one's); the
  /// others are read as usual. Optional.
  std::shared_ptr<const std::map<std::string, PreprocessedImage>> prepared;
  /// Caps on one request, each a clear InputError above it: the query's tokens (a query is a
  /// question, not a document; every window repeats it) and the candidates of one query.
  int max_query_tokens = 1024;
  int max_candidates = 2000;
  /// A page that cannot be read or decoded (a corrupt image or PDF page, a file that went away):
  /// false = the ranking fails with its InputError; true = the page is left out, recorded in
  /// RerankResult::skipped and logged, and the others are ranked as if it had not been given.
  /// A ranking none of whose pages can be read fails either way.
  bool skip_unreadable = false;
  /// Called after each group of pages is encoded and after each window is scored (optional).
  std::function<void(const RankProgress&)> progress;
  /// Asked between page groups and windows; true stops the ranking with Interrupted (optional).
  std::function<bool()> should_stop;
  void validate() const;
};

/// The settings a command may leave to the model folder: each one unset takes the folder's own
/// (ziprerank.scoring, ziprerank.keep_ratio, ziprerank.vision_tile in its config.json; see
/// ModelFolder). Reranker::resolve settles them in one place.
struct RankingChoice {
  std::optional<Scoring> scoring;
  std::optional<double> keep_ratio;
  std::optional<int> vision_tile;  ///< 0 = whole pages
};

/// Milliseconds spent per stage. What each covers: decode = reading files and rendering PDFs;
/// preprocess = resizing, normalising, patchifying; vision = vision tower; prune = selection and
/// sequence assembly; llm = language model (and decoding in generate mode).
struct StageTiming {
  double decode = 0, preprocess = 0, vision = 0, prune = 0, llm = 0, total = 0;
  StageTiming& operator+=(const StageTiming& o);
};

struct TokenCounts {
  int64_t input = 0;          ///< tokens fed to the language model, summed over windows
  int64_t visual_before = 0;  ///< visual tokens before pruning, summed over windows
  int64_t visual_after = 0;
  int64_t generated = 0;  ///< generate mode only
};

struct RankedPage {
  std::string id;
  /// similarity scoring: the page's own score; logits scoring with one window: the identifier
  /// logit; otherwise n - rank (as the reference)
  double score = 0;
  double logit = NAN;  ///< the identifier logit from the last window that scored this page
  /// A relevance in [0, 1], higher = more relevant. logits: the page's softmax share among the
  /// identifier logits of the last window that scored it (one window: the whole list, summing to
  /// 1); similarity: (score / sum of the query words' weights + 1) / 2, the weighted mean cosine
  /// mapped from [-1, 1]; generate: (n - rank + 1) / n for 1-based rank among n pages.
  double relevance = NAN;
};

struct RerankResult {
  std::vector<RankedPage> ranking;   ///< best first; pages that could not be read are not in it
  std::vector<SkippedPage> skipped;  ///< pages left out (RerankOptions::skip_unreadable)
  StageTiming timing;
  TokenCounts tokens;
  int windows = 0;
};

namespace detail {
class Stages;
}

/// A loaded model that ranks pages for a query: load a model folder, settle the options
/// (resolve), rank (rerank_pages; run_batch in batch.hpp for a file of queries). The pipeline's
/// stages one at a time (preprocessing, the vision tower, one window's scores) are the library's
/// own, reached through detail::Stages (src/pipeline/stages.hpp), not part of this API.
class Reranker {
 public:
  static std::unique_ptr<Reranker> load(const std::string& model_dir, const ModelOptions& options);
  /// A reranker over a model already in memory (a trainer's, for instance).
  Reranker(ModelFolder folder, std::shared_ptr<const Qwen3VLModel> model,
           std::shared_ptr<const Tokenizer> tokenizer);

  const ModelFolder& folder() const { return folder_; }

  /// `options` with its scoring, keep ratio and vision tile settled: as `asked`, else the model
  /// folder's own. A tile asked for is checked against the vision tower (UsageError); a scoring
  /// the folder says it was not trained for logs a warning. The result is validated.
  RerankOptions resolve(RerankOptions options, const RankingChoice& asked) const;
  /// "keep ratio 0.5, logits scoring, vision tiles of 320 px": settled options as logs name them.
  static std::string describe(const RerankOptions& options);

  /// Loads, preprocesses and reranks page files (through the vision cache when one is set).
  RerankResult rerank_pages(const std::string& query, const std::vector<PageRef>& pages,
                            const RerankOptions& options) const;

  /// Keeps vision features of up to `max_bytes` for reuse by later rerank_pages calls (0 = off).
  void set_vision_cache(size_t max_bytes);

  /// On CPU, pages are encoded by up to `workers` threads, each encoding its share with one
  /// thread (libtorch and OpenBLAS single-threaded meanwhile; OpenBLAS's count is put back
  /// after): whole cores per page instead of threads per matrix product, which small vision
  /// matrices leave half idle. The features are those of one worker, whichever library
  /// multiplies (OpenBLAS, or MKL through libtorch's pool). On other devices pages are encoded
  /// one chunk after another. 1 (the default) = off. rerank_pages() also decodes and
  /// preprocesses its pages on these workers.
  void set_encode_workers(int workers);
  int encode_workers() const { return encode_workers_; }

 private:
  friend class detail::Stages;  // pipeline/stages.hpp: the stages, inside the library

  ModelFolder folder_;
  std::shared_ptr<const Qwen3VLModel> model_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::unique_ptr<VisionCache> cache_;
  int encode_workers_ = 1;
};

/// Reference sliding window: up to `window` candidates are one window; more are ranked in windows
/// of `window` from the back to the front, moving by `stride` (< window); `rank_window(begin, end)`
/// returns the best-first order of positions [begin, end) of the current list. Returns the final
/// order of the original indices.
std::vector<int> sliding_window_order(
    int n, int window, int stride,
    const std::function<std::vector<int>(int, int, const std::vector<int>&)>& rank_window);

}  // namespace ziprerank
