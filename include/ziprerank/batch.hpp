// `ziprerank batch`: many queries from a JSONL file, reranked one after another into a run file.
//
// Every finished query is written and flushed before the next starts, so a crash or Ctrl-C loses
// nothing; --resume skips the query ids already in the output (a torn last line is dropped) and
// appends. --shard K/N takes the K-th of N contiguous slices of the input, so the N outputs
// concatenated in shard order equal the unsharded run.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "ziprerank/pages.hpp"
#include "ziprerank/reranker.hpp"

namespace ziprerank {

/// One input line, parsed and checked.
struct BatchQuery {
  std::string query_id;
  std::string query;
  std::vector<PageRef>
      candidates;  ///< id = the candidate's id; path resolved against the file's folder
  std::vector<std::string> relevant;
  std::string domain;
};

/// Parses one JSONL line. `base_dir` resolves relative paths. Throws InputError naming `origin`
/// (e.g. "queries.jsonl:12") and the field at fault: a line that is not UTF-8 (naming the field
/// and byte), a missing or mistyped field, a PDF `page` that is not a whole number from 1 to
/// INT_MAX.
BatchQuery parse_batch_query(const std::string& line, const std::string& base_dir,
                             const std::string& origin);

struct BatchOptions {
  std::string input;   ///< "-" = standard input (relative page paths: the current folder)
  std::string output;  ///< "-" = standard output (no --resume then)
  bool resume = false;
  bool force = false;                 ///< overwrite an existing output instead of refusing it
  int shard_index = 1;                ///< K of --shard K/N (1-based)
  int shard_count = 1;                ///< N
  std::string format = "jsonl";       ///< jsonl, trec or table
  std::string run_tag = "ziprerank";  ///< the last field of TREC run lines
  RerankOptions rerank;
  /// Decode and preprocess the next query's pages while the model computes the current one
  /// (the same results either way); ZIPRERANK_BATCH_OVERLAP=0 also turns it off.
  bool overlap = true;
};

/// Parses "K/N"; throws UsageError.
void parse_shard(const std::string& text, int& index, int& count);

/// Throws UsageError when `output` is the `input` file (the same path, or another name for the
/// same file: a symbolic or hard link). Checked before anything is written.
void check_batch_paths(const std::string& input, const std::string& output);

/// Throws InputError when a score (or, outside generate mode, a logit) is NaN or infinite: the
/// weights hold NaN/Inf, which `ziprerank inspect` names.
void check_finite_scores(const RerankResult& result, Scoring scoring);

/// Byte offset of the first byte of `text` that is not part of valid UTF-8; npos when it all is.
size_t invalid_utf8_offset(std::string_view text);

struct BatchProgress {
  size_t done = 0;   ///< queries finished in this run (ok or failed)
  size_t total = 0;  ///< queries this run has to do
  size_t failed = 0;
  double elapsed_s = 0;
};

struct BatchSummary {
  size_t in_shard = 0;  ///< queries in the selected shard
  size_t skipped = 0;   ///< already in the output (--resume)
  size_t ok = 0;
  size_t failed = 0;
  bool interrupted = false;
};

/// Where `batch --format trec` writes its failed queries' error records (JSONL, one a line):
/// OUTPUT.errors.jsonl.
std::string trec_errors_path(const std::string& output);

/// Runs the batch. `stop` is polled between queries. `progress` is called after each query.
BatchSummary run_batch(const Reranker& reranker, const BatchOptions& options,
                       const std::atomic<bool>& stop,
                       const std::function<void(const BatchProgress&)>& progress);

/// Query ids already finished in an output file (JSONL or TREC). A torn final line (a crash
/// mid-write) is removed from the file when `repair` is set.
std::vector<std::string> finished_query_ids(const std::string& path, const std::string& format,
                                            bool repair);

}  // namespace ziprerank
