// Does query-aware pruning keep what matters? On pages whose word boxes are known (`words.json`
// beside rendered pages, as `ziprerank render --document` writes it), the share of the merged
// visual tokens showing a query word that pruning keeps, per keep ratio. Blind selection keeps
// about the keep ratio of them; a model whose visual tokens live in its text-embedding space
// keeps more.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ziprerank/reranker.hpp"

namespace ziprerank {

struct PruningRecall {
  double keep_ratio = 0;
  double recall = 0;       ///< kept query-word tokens / query-word tokens, over all pages
  double kept_share = 0;   ///< kept tokens / all tokens (what blind selection would recall)
  double page_recall = 0;  ///< mean over pages of each page's recall
};

struct PruningRecallReport {
  std::vector<PruningRecall> rows;
  int64_t queries = 0;      ///< queries read
  int64_t pages = 0;        ///< relevant pages measured
  int64_t word_tokens = 0;  ///< merged tokens showing a query word, over those pages
  int64_t skipped = 0;      ///< relevant pages without word boxes or without a query word on them
};

/// Reads stage-2 style JSONL (query, candidates with images, relevant ids) and measures, on each
/// relevant page, which of its merged visual tokens pruning keeps at each keep ratio, with the
/// text tokens the model's config names (see `qi_early_text_mode`). Query words are compared
/// with page words case-folded, without surrounding punctuation, and only when at least
/// `min_word_length` characters long (short function words appear everywhere). At most `limit`
/// queries (0 = all).
PruningRecallReport measure_pruning_recall(const Reranker& reranker,
                                           const std::string& queries_path,
                                           const std::vector<double>& keep_ratios,
                                           int64_t limit = 0, size_t min_word_length = 4);

}  // namespace ziprerank
