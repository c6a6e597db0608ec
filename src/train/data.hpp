// Training data: the JSONL formats of both stages, parsed and checked line by line, and a cache
// of rendered passages. Private to the library.
//
// Stage 1, one sample per line, either
//   {"query": "...", "passages": ["text", ...], "ranking": [2, 0, 1]}        (indices, best first)
// or the rank_zephyr conversation format of the reference data
//   {"conversations": [{"value": system}, {"value": "...[A] text\n[B] text...Search Query: ..."},
//                      {"value": "[B] > [A] > ..."}]}
// Stage 2, either
//   {"query_id": "...", "query": "...", "candidates": [{"id": "...", "image": "path"}, ...],
//    "relevant": ["id", ...], "ranking": ["id" or index, ...]}          (paths relative to the
//    file)
// or the reference's distillation rows
//   {"query_id", "query", "doc_name", "candidate_page_ids", "gt_page_ids", "openai_ranking"}
// with page images under --pages-dir as {doc}/{page}.{png,jpg,jpeg,webp} or {doc}_{page}.{ext}
// ({doc} = doc_name, or doc_name without a ".pdf" suffix).
#pragma once

#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ziprerank/image.hpp"
#include "ziprerank/pages.hpp"
#include "ziprerank/render.hpp"

namespace ziprerank::train {

/// One training sample, resolved to what the model is shown and taught.
struct TrainExample {
  std::string origin;  ///< "file:line" for error messages
  std::string query;
  std::vector<std::string> passages;  ///< stage 1: texts to render, in identifier order
  std::vector<PageRef> pages;         ///< stage 2: page files, in identifier order
  std::vector<int64_t> ranking;       ///< teacher order: candidate indices, best first
  std::vector<int64_t> gt;            ///< stage 2: ground-truth candidates (never empty)
  std::string target;                 ///< the ranking as the model should write it: "[B] > [A]"
  size_t size() const { return passages.empty() ? pages.size() : passages.size(); }
};

/// Shows the candidates in another order: new candidate j is old candidate order[j] (`order` a
/// permutation of the candidates). The teacher ranking, ground truth and target follow them.
void reorder_candidates(TrainExample& ex, const std::vector<int64_t>& order);

/// rank_of[i] = position of candidate i in `ranking` (ranking must be a permutation).
std::vector<int64_t> rank_positions(const std::vector<int64_t>& ranking);

// The reference's regular expressions on the rank_zephyr user turn, reproduced exactly
// (Python `re` semantics, including Unicode whitespace and case folding).

/// `passages.+(?=Search Query:|Rank the)` (DOTALL | IGNORECASE, greedy): the text from the first
/// "passages" to the last "Search Query:" / "Rank the"; the whole text when there is no match.
std::string rank_zephyr_passage_section(const std::string& text);
/// findall(`\[([A-T])\]\s+(.*?)(?=\n\[([A-T])\]|\Z)`, DOTALL) on the section, each text stripped:
/// (letter, text) pairs in order. The last item keeps any trailing text of the section.
std::vector<std::pair<char, std::string>> rank_zephyr_items(const std::string& section);
/// `search query:\s*(.+?)\.?\s*\n` (IGNORECASE), then `query:\s*(.+?)\.?\s*\n`; group 1 stripped.
/// Returns false when neither matches.
bool rank_zephyr_query(const std::string& text, std::string* query);
/// Python str.strip(): removes Unicode whitespace at both ends.
std::string python_strip(const std::string& text);

/// Stage-2 knobs that shape the sample.
struct Stage2Options {
  std::string pages_dir;
  int max_candidates = 10;
  bool force_gt_top1 = false;
};

/// Parses one line; throws InputError naming `origin` and the field at fault.
TrainExample parse_stage1_line(const std::string& line, const std::string& origin);
TrainExample parse_stage2_line(const std::string& line, const std::string& base_dir,
                               const Stage2Options& options, const std::string& origin);

/// A JSONL training file: every line is parsed and checked up front (so a bad line fails the
/// run before any training), only line offsets are kept; samples are re-read when needed.
class TrainDataset {
 public:
  TrainDataset(const std::string& path, int stage, Stage2Options stage2);

  size_t size() const { return lines_.size(); }
  TrainExample get(size_t index) const;
  /// FNV-1a 64 of the file's bytes: a resumed run refuses a changed data file.
  uint64_t content_hash() const { return hash_; }
  const std::string& path() const { return path_; }

 private:
  struct Line {
    uint64_t offset;
    uint32_t length;
    uint32_t number;
  };
  TrainExample parse(const std::string& text, uint32_t number) const;

  std::string path_;
  std::string base_dir_;
  int stage_;
  Stage2Options stage2_;
  std::vector<Line> lines_;
  uint64_t hash_ = 0;
};

/// Rendered passages keyed by their text, least recently used dropped past a byte budget.
class RenderCache {
 public:
  RenderCache(size_t max_bytes, PassageRenderOptions options)
      : max_bytes_(max_bytes), options_(std::move(options)) {}
  Image get(const std::string& text);
  size_t hits() const { return hits_; }
  size_t misses() const { return misses_; }

 private:
  using Entry = std::pair<std::string, Image>;
  size_t max_bytes_;
  PassageRenderOptions options_;
  std::list<Entry> lru_;  // front = most recent
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  size_t bytes_ = 0, hits_ = 0, misses_ = 0;
};

}  // namespace ziprerank::train
