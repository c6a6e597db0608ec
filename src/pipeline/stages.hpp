// The reranker's stages one at a time: preprocessing, the vision tower, one window's scores, the
// sliding window over pages already in memory. The library's own (bench, batch, the server,
// pruning_check, the command line) and the tests reach them here; a program embedding the library
// sees Reranker's public API (ziprerank/reranker.hpp) alone. Not installed.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ziprerank/image.hpp"
#include "ziprerank/model.hpp"
#include "ziprerank/pages.hpp"
#include "ziprerank/reranker.hpp"
#include "ziprerank/tokenizer.hpp"
#include "ziprerank/vision_cache.hpp"

namespace ziprerank {

/// Scores of one window, in candidate order, and the order they imply (best first).
struct WindowScores {
  std::vector<double> logits;  ///< empty in generate mode
  std::vector<int> order;
  std::string generated;  ///< generate mode: the decoded text
};

namespace detail {

/// The one door to a Reranker's stages: `Stages(reranker).encode(...)`. Holds a reference to the
/// reranker, which must outlive it.
class Stages {
 public:
  explicit Stages(const Reranker& reranker) : r_(reranker) {}

  const Qwen3VLModel& model() const { return *r_.model_; }
  const Tokenizer& tokenizer() const { return *r_.tokenizer_; }
  /// The vision cache set by Reranker::set_vision_cache; null when off.
  const VisionCache* vision_cache() const { return r_.cache_.get(); }

  /// The vision tile `options` ask for, settled: theirs when set, else the model's own (>= 0).
  int vision_tile(const RerankOptions& options) const;

  /// Decodes and preprocesses one page (timed into `timing`).
  PreprocessedImage prepare(const Image& image, const RerankOptions& options,
                            StageTiming* timing = nullptr) const;

  /// prepare() for every image, on the page workers as rerank_pages() prepares page files;
  /// `timing.preprocess` gets the wall-clock time.
  std::vector<PreprocessedImage> prepare_all(const std::vector<Image>& images,
                                             const RerankOptions& options,
                                             StageTiming* timing = nullptr) const;

  /// Reranks preprocessed pages (ids parallel to pages) with the sliding window.
  RerankResult rerank(const std::string& query, const std::vector<std::string>& ids,
                      const std::vector<PreprocessedImage>& pages,
                      const RerankOptions& options) const;

  /// Reranker::rerank_pages.
  RerankResult rerank_pages(const std::string& query, const std::vector<PageRef>& pages,
                            const RerankOptions& options) const;

  /// Runs the vision tower over preprocessed pages on the page workers (see
  /// Reranker::set_encode_workers); adds the time to `timing.vision`. `vision_tile`: settled, as
  /// vision_tile() gives it. Without `deepstack` the pages get no DeepStack features: enough for
  /// Scoring::kSimilarity, refused by the language-model scorings.
  std::vector<std::shared_ptr<const EncodedPage>> encode(
      const std::vector<PreprocessedImage>& pages, StageTiming& timing, int vision_tile,
      bool deepstack = true) const;

  /// Ranks encoded pages with the sliding window.
  RerankResult rank_encoded(const std::string& query, const std::vector<std::string>& ids,
                            const std::vector<std::shared_ptr<const EncodedPage>>& pages,
                            const RerankOptions& options) const;

  /// One forward pass over one window whose vision features are already computed.
  WindowScores score_window(const std::string& query,
                            const std::vector<const VisionFeatures*>& pages,
                            const std::vector<ImageGrid>& grids, const RerankOptions& options,
                            StageTiming& timing, TokenCounts& tokens) const;

  /// The workers encode() and rerank_pages() use here: Reranker::encode_workers() on CPU, else
  /// 1.
  size_t page_workers() const;

 private:
  /// Encoded pages for the given candidate indices (decoding, preprocessing and encoding them as
  /// needed), in that order; stage times go into the StageTiming. A page that cannot be read is
  /// null, with its error at its position in the strings (sized to the indices by the caller).
  using PageFetch = std::function<std::vector<std::shared_ptr<const EncodedPage>>(
      const std::vector<size_t>&, StageTiming&, std::vector<std::string>&)>;
  /// Ranks n = ids.size() candidates, fetching each page when the first window that shows it
  /// comes and dropping it once no later window can: memory follows the window, not the
  /// number of pages.
  RerankResult rank_lazily(const std::string& query, const std::vector<std::string>& ids,
                           const PageFetch& fetch, const RerankOptions& options) const;
  /// Runs fn(k, timing) for k in [0, n) on the page workers (inline with one); the decode and
  /// preprocess times the calls add up go into `timing` scaled to the wall-clock time taken.
  void for_each_page(size_t n, const std::function<void(size_t, StageTiming&)>& fn,
                     StageTiming& timing) const;

  const Reranker& r_;
};

}  // namespace detail

}  // namespace ziprerank
