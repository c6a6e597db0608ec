// batch's overlap: while the model ranks one query, the next query's first pages are decoded (PDF
// pages rendered) and preprocessed on a worker thread. Private to the pipeline module.
#pragma once

#include <climits>
#include <cstddef>
#include <future>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "ziprerank/reranker.hpp"

namespace ziprerank {

// Pages of one query decoded (PDFs rendered) and preprocessed ahead of its ranking.
struct PreparedAhead {
  size_t row = SIZE_MAX;  ///< the input row they belong to
  std::shared_ptr<std::map<std::string, PreprocessedImage>> pages;
};

/// Whether ZIPRERANK_BATCH_OVERLAP leaves the overlap on (anything but "0").
bool overlap_from_env();

/// Starts decoding and preprocessing the first window's pages of the query on `line` (leaving
/// out, with a vision cache, pages an earlier query showed); no future when there is nothing to
/// prepare or the line does not parse (its own turn reports that).
std::future<PreparedAhead> prepare_next_query(const Reranker& reranker, const std::string& line,
                                              size_t row, const std::string& base_dir,
                                              const std::string& input_name,
                                              const RerankOptions& rerank,
                                              const std::set<std::string>& shown);

}  // namespace ziprerank
