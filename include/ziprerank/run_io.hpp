// Reading runs and relevance judgements for `ziprerank eval`, and writing TREC run lines.
//
// A run is either our run JSONL (one object per query: `query_id` plus a best-first `ranking`, or
// an `error` record) or a TREC run file (`qid Q0 docid rank score tag`). Judgements are either our
// batch JSONL (`query_id`, `relevant`, `domain`, optionally `candidates`) or TREC qrels
// (`qid 0 docid rel`). Malformed input throws InputError naming the file and line.
#pragma once

#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

namespace ziprerank {

enum class RunFormat { kAuto, kJsonl, kTrec };
enum class QrelsFormat { kAuto, kJsonl, kTrec };

/// One query of a run. `ids` is best first, exactly in the run's order: the run's order decides
/// ties, scores are never re-sorted.
struct RunEntry {
  std::string query_id;
  std::vector<std::string> ids;
  std::vector<double> scores;  ///< parallel to `ids`; NaN where a JSONL ranking item has no score
  bool failed = false;         ///< an `{"query_id": ..., "error": ...}` record
  std::string error;           ///< the error message of a failed query
  int line = 0;                ///< 1-based line of the record (first line for TREC)
};

struct Run {
  std::string origin;             ///< file name, for messages
  std::string tag;                ///< a TREC run's tag (its first line's last field); else empty
  std::vector<RunEntry> queries;  ///< in order of first appearance
};

/// Judgements for one query.
struct QrelsEntry {
  std::string query_id;
  std::vector<std::string> relevant;    ///< deduplicated, in first-seen order
  std::string domain;                   ///< empty when unknown
  std::vector<std::string> candidates;  ///< candidate ids of a batch JSONL line (else empty)
  bool has_candidates = false;
  int line = 0;
};

struct Qrels {
  std::string origin;
  std::vector<QrelsEntry> queries;  ///< in order of first appearance
};

/// Parses run text. `origin` names the source in error messages ("run.jsonl" -> "run.jsonl:3:").
/// kAuto picks JSONL when the first non-blank line starts with '{', TREC otherwise.
Run parse_run(const std::string& text, const std::string& origin,
              RunFormat format = RunFormat::kAuto);
/// Reads a file or an anonymous pipe (`<(zcat run.gz)`, /dev/stdin); a folder, a named FIFO
/// (which could wait forever for a writer), a socket, a device or a symlink loop is an InputError
/// naming the path, given before anything is opened. read_qrels likewise.
Run read_run(const std::string& path, RunFormat format = RunFormat::kAuto);

Qrels parse_qrels(const std::string& text, const std::string& origin,
                  QrelsFormat format = QrelsFormat::kAuto);
Qrels read_qrels(const std::string& path, QrelsFormat format = QrelsFormat::kAuto);

/// Writes `qid Q0 docid rank score tag` and a newline. The score is written in the shortest form
/// that reads back to the same double. Throws InputError when an id or the tag is empty or holds
/// whitespace (TREC fields are whitespace-separated, so such a line could not be read back) or
/// when the score is not finite.
void write_trec_run_line(std::ostream& out, const std::string& query_id, const std::string& doc_id,
                         int rank, double score, const std::string& tag);

/// Writes a whole best-first ranking with ranks 1..n.
void write_trec_run(std::ostream& out, const std::string& query_id,
                    const std::vector<std::pair<std::string, double>>& ranking,
                    const std::string& tag);

}  // namespace ziprerank
