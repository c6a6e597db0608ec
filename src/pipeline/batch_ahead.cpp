#include "pipeline/batch_ahead.hpp"

#include <cstdlib>
#include <exception>
#include <vector>

#include "pipeline/stages.hpp"
#include "ziprerank/batch.hpp"
#include "ziprerank/pages.hpp"

namespace ziprerank {

namespace {

// One page at a time, each on this one thread, as the ranking would prepare it; a page that
// fails is left to the ranking, which reports it as usual.
PreparedAhead prepare_ahead(const Reranker& reranker, size_t row, std::vector<PageRef> pages,
                            const RerankOptions& options) {
  PreparedAhead out;
  out.row = row;
  out.pages = std::make_shared<std::map<std::string, PreprocessedImage>>();
  const detail::Stages stages(reranker);
  for (const PageRef& p : pages) {
    try {
      (*out.pages)[prepared_page_key(p)] = stages.prepare(load_page(p), options);
    } catch (const std::exception&) {
    }
  }
  return out;
}

}  // namespace

bool overlap_from_env() {
  const char* v = std::getenv("ZIPRERANK_BATCH_OVERLAP");
  return !v || std::string(v) != "0";
}

std::future<PreparedAhead> prepare_next_query(const Reranker& reranker, const std::string& line,
                                              size_t row, const std::string& base_dir,
                                              const std::string& input_name,
                                              const RerankOptions& rerank,
                                              const std::set<std::string>& shown) {
  std::vector<PageRef> pages;
  try {
    const BatchQuery q = parse_batch_query(line, base_dir, input_name);
    for (const PageRef& p : q.candidates) {
      if (static_cast<int>(pages.size()) >= rerank.window) break;
      if (!detail::Stages(reranker).vision_cache() || !shown.count(prepared_page_key(p)))
        pages.push_back(p);
    }
  } catch (const std::exception&) {
    pages.clear();
  }
  if (pages.empty()) return {};
  return std::async(std::launch::async, prepare_ahead, std::cref(reranker), row, std::move(pages),
                    rerank);
}

}  // namespace ziprerank
