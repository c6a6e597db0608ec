#include "ziprerank/batch.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/json_util.hpp"
#include "core/utf8.hpp"
#include "pipeline/batch_ahead.hpp"
#include "pipeline/stages.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/run_io.hpp"

namespace ziprerank {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Output JSON is dumped with invalid UTF-8 replaced by U+FFFD: a message or id holding a stray
// byte (a path from a non-UTF-8 folder name, say) must not make dump() throw and end the run.
std::string dump_line(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

// U+FFFF, a noncharacter no real text holds: stands in for a byte that is not UTF-8, so that a
// line can still be parsed to say which field holds the bad byte.
constexpr const char* kBadByteMark = "\xEF\xBF\xBF";

// `s` with its first byte that is not UTF-8 (every such byte when `all`) replaced by the mark,
// and the others by U+FFFD.
std::string mark_invalid_utf8(const std::string& s, bool all) {
  std::string out;
  out.reserve(s.size() + 8);
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  bool marked = false;
  for (size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    const size_t n = detail::utf8_decode_one(p, s.size(), i, &cp);
    if (n == 0) {
      out += all || !marked ? kBadByteMark : "\xEF\xBF\xBD";
      marked = true;
      ++i;
    } else {
      out.append(s, i, n);
      i += n;
    }
  }
  return out;
}

// A line that is not UTF-8 parsed with its bad bytes marked (null when even that fails).
json parse_marked(const std::string& line, bool all) {
  return json::parse(mark_invalid_utf8(line, all), nullptr, /*allow_exceptions=*/false);
}

// The string holding the mark: its field path ("query", "candidates[2].id") and the mark's byte
// offset in the decoded string. Looks no deeper than a batch record goes (a deeply nested line
// must not exhaust the stack).
bool find_marked(const json& v, const std::string& path, std::string* field, size_t* offset,
                 int depth = 0) {
  if (depth > 8) return false;
  if (v.is_string()) {
    const size_t at = v.get_ref<const std::string&>().find(kBadByteMark);
    if (at == std::string::npos) return false;
    *field = path.empty() ? "the line" : "'" + path + "'";
    *offset = at;
    return true;
  }
  if (v.is_object()) {
    for (const auto& [key, value] : v.items()) {
      if (const size_t at = key.find(kBadByteMark); at != std::string::npos) {
        *field = "a key in " + (path.empty() ? std::string("the line") : "'" + path + "'");
        *offset = at;
        return true;
      }
      const std::string sub = path.empty() ? key : path + "." + key;
      if (find_marked(value, sub, field, offset, depth + 1)) return true;
    }
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) {
      const std::string sub = path + "[" + std::to_string(i) + "]";
      if (find_marked(v[i], sub, field, offset, depth + 1)) return true;
    }
  }
  return false;
}

std::string hex_byte(unsigned char b) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%02X", b);
  return buf;
}

// "'query' is not valid UTF-8 at byte 7 (0xFF)" for a line that is not UTF-8, else "".
std::string utf8_problem(const std::string& line) {
  const size_t bad = invalid_utf8_offset(line);
  if (bad == std::string::npos) return "";
  const std::string byte = hex_byte(static_cast<unsigned char>(line[bad]));
  std::string field;
  size_t offset = 0;
  if (find_marked(parse_marked(line, /*all=*/false), "", &field, &offset)) {
    return field + " is not valid UTF-8 at byte " + std::to_string(offset + 1) + " (" + byte +
           "); the batch input must be UTF-8 text";
  }
  return "the line is not valid UTF-8 at byte " + std::to_string(bad + 1) + " (" + byte +
         "); the batch input must be UTF-8 text";
}

// Ids may be written as numbers; they are used as strings.
std::string require_id(const json& obj, const char* key, const std::string& origin) {
  auto it = obj.find(key);
  if (it != obj.end() && it->is_number_integer()) return std::to_string(it->get<int64_t>());
  return detail::require_string(obj, key, origin);
}

// The id a run line carries for input line `row` (0-based): its query_id when readable (numbers as
// strings, as require_id), otherwise "line-N". Used for skipping, error records and ordering.
// A line that is not UTF-8 is read with its bad bytes marked, so that its error record still
// carries its query_id (unless the bad byte is in the id itself).
std::string row_query_id(const std::string& line, size_t row) {
  const std::string fallback = "line-" + std::to_string(row + 1);
  const json obj = invalid_utf8_offset(line) == std::string::npos
                       ? json::parse(line, nullptr, /*allow_exceptions=*/false)
                       : parse_marked(line, /*all=*/true);
  if (obj.is_object()) {
    auto it = obj.find("query_id");
    if (it != obj.end() && it->is_string()) {
      const std::string& id = it->get_ref<const std::string&>();
      if (!id.empty() && id.find(kBadByteMark) == std::string::npos) return id;
    }
    if (it != obj.end() && it->is_number_integer()) return std::to_string(it->get<int64_t>());
  }
  return fallback;
}

struct OutputLine {
  std::string query_id;
  std::string text;  // with its newline
  bool error = false;
};

// Complete lines of an output file; a torn last line (a crash mid-write) is dropped, and cut from
// the file when `repair` is set.
std::vector<OutputLine> read_output_lines(const std::string& path, const std::string& format,
                                          bool repair) {
  std::vector<OutputLine> out;
  if (!fs::exists(path)) return out;
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t complete = text.empty() ? 0 : text.rfind('\n') + 1;
  if (complete < text.size()) {
    spdlog::warn("{}: dropping a torn last line ({} bytes) left by an interrupted run", path,
                 text.size() - complete);
    if (repair) fs::resize_file(path, complete);
    text.resize(complete);
  }
  std::istringstream lines(text);
  std::string line;
  size_t lineno = 0;
  while (std::getline(lines, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    OutputLine l;
    l.text = line + "\n";
    if (format == "trec") {
      // qid Q0 docno rank score tag
      std::istringstream ls(line);
      std::vector<std::string> fields;
      for (std::string f; ls >> f;) fields.push_back(f);
      if (fields.size() != 6 || fields[1] != "Q0") {
        throw InputError(path + ":" + std::to_string(lineno) +
                         ": not a TREC run line (a JSONL run?); resume it with the --format it "
                         "was written in, or choose another --output");
      }
      l.query_id = fields[0];
    } else {
      try {
        const json obj = json::parse(line);
        l.error = obj.contains("error");
        l.query_id = obj.at("query_id").get<std::string>();
      } catch (const json::exception&) {
        throw InputError(path + ":" + std::to_string(lineno) +
                         ": not a JSONL run line (a TREC run?); resume it with the --format it "
                         "was written in, or choose another --output");
      }
    }
    out.push_back(std::move(l));
  }
  return out;
}

}  // namespace

std::string trec_errors_path(const std::string& output) { return output + ".errors.jsonl"; }

namespace {

// Replaces a file's content durably: write a temporary file, sync it, rename it over the original.
void replace_file(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << content;
    f.flush();
    if (!f) throw InputError("cannot write '" + tmp + "' (disk full?)");
  }
  const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  fs::rename(tmp, path);
}

std::string resolve(const std::string& path, const std::string& base_dir) {
  const fs::path p(path);
  return p.is_absolute() ? p.string() : (fs::path(base_dir) / p).lexically_normal().string();
}

// Appends text and makes it durable before returning: a finished query must survive a crash.
class DurableAppender {
 public:
  explicit DurableAppender(const std::string& path) : path_(path) {
    if (path == "-") {  // standard output: records go out as they finish, nothing to sync
      path_ = "standard output";
      fd_ = ::dup(STDOUT_FILENO);
      if (fd_ < 0)
        throw InputError(std::string("cannot write to standard output: ") + std::strerror(errno));
      return;
    }
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw InputError("cannot open '" + path + "' for writing: " + std::strerror(errno));
  }
  ~DurableAppender() {
    if (fd_ >= 0) ::close(fd_);
  }
  void write(const std::string& text) {
    const off_t before = ::lseek(fd_, 0, SEEK_END);
    size_t off = 0;
    while (off < text.size()) {
      const ssize_t n = ::write(fd_, text.data() + off, text.size() - off);
      if (n < 0) {
        if (errno == EINTR) continue;
        const std::string why = std::strerror(errno);
        // Take back the part of the record that made it: the file keeps whole records only.
        if (before >= 0 && ::ftruncate(fd_, before) == 0) ::fdatasync(fd_);
        throw InputError("cannot write '" + path_ + "': " + why +
                         "; every finished record before it is kept: free space and rerun "
                         "with --resume");
      }
      off += static_cast<size_t>(n);
    }
    if (::fdatasync(fd_) != 0 && errno != EINVAL && errno != EROFS) {
      const std::string why = std::strerror(errno);
      if (before >= 0 && ::ftruncate(fd_, before) == 0) ::fdatasync(fd_);
      throw InputError("cannot write '" + path_ + "': " + why);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// batch --format table: a header, then a row per ranked page.
constexpr const char* kTableHeader = "query_id      rank  score        relevance  page\n";
std::string table_row(const std::string& query_id, size_t rank, const RankedPage& p) {
  char nums[64];
  std::snprintf(nums, sizeof(nums), " %-5zu %-12.4f %-9.4f  ", rank, p.score, p.relevance);
  std::string id = query_id;
  if (id.size() < 12) id.resize(12, ' ');
  return id + nums + p.id + "\n";
}

std::string format_run_line(const BatchOptions& o, const std::string& query_id,
                            const RerankResult& r) {
  if (o.format == "trec") {
    std::ostringstream out;
    std::vector<std::pair<std::string, double>> ranking;
    for (const auto& p : r.ranking) ranking.emplace_back(p.id, p.score);
    write_trec_run(out, query_id, ranking, o.run_tag);
    return out.str();
  }
  if (o.format == "table") {
    std::string rows;
    for (size_t i = 0; i < r.ranking.size(); ++i) rows += table_row(query_id, i + 1, r.ranking[i]);
    return rows;
  }
  json ranking = json::array();
  for (const auto& p : r.ranking) {
    json item = {{"id", p.id}, {"score", p.score}};
    if (std::isfinite(p.relevance)) item["relevance"] = p.relevance;
    ranking.push_back(std::move(item));
  }
  json line = {{"query_id", query_id},
               {"ranking", ranking},
               {"timing_ms",
                {{"decode", r.timing.decode},
                 {"preprocess", r.timing.preprocess},
                 {"vision", r.timing.vision},
                 {"prune", r.timing.prune},
                 {"llm", r.timing.llm},
                 {"total", r.timing.total}}},
               {"tokens",
                {{"input", r.tokens.input},
                 {"visual_before", r.tokens.visual_before},
                 {"visual_after", r.tokens.visual_after}}},
               {"windows", r.windows}};
  if (!r.skipped.empty()) {
    json skipped = json::array();
    for (const SkippedPage& p : r.skipped) skipped.push_back({{"id", p.id}, {"error", p.reason}});
    line["skipped"] = std::move(skipped);
  }
  return dump_line(line);
}

std::string format_error_line(const std::string& query_id, const std::string& error) {
  return dump_line(json{{"query_id", query_id}, {"error", error}});
}

// A 1-based page number that fits an int, else 0. JSON numbers beyond it must not wrap
// (4294967297 read as page 1, 2^40 as 0 = "an image file").
int pdf_page_number(const json& v) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    return u >= 1 && u <= static_cast<uint64_t>(INT_MAX) ? static_cast<int>(u) : 0;
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    return i >= 1 && i <= INT_MAX ? static_cast<int>(i) : 0;
  }
  if (v.is_number_float()) {  // 3.0 is a whole number; 2.5, 1e300, NaN are not
    const double d = v.get<double>();
    return d >= 1 && d <= INT_MAX && d == std::trunc(d) ? static_cast<int>(d) : 0;
  }
  return 0;
}

}  // namespace

size_t invalid_utf8_offset(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < text.size();) {
    char32_t cp = 0;
    const size_t n = detail::utf8_decode_one(p, text.size(), i, &cp);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

void check_finite_scores(const RerankResult& result, Scoring scoring) {
  for (const RankedPage& p : result.ranking) {
    // Generate mode has no logits (NaN by design); its scores are ranks.
    if (!std::isfinite(p.score) || (scoring != Scoring::kGenerate && !std::isfinite(p.logit))) {
      throw InputError(
          "the model produced non-finite scores (NaN/Inf): check the weights with `ziprerank "
          "inspect`");
    }
  }
}

void check_batch_paths(const std::string& input, const std::string& output) {
  std::error_code ec;
  if (output == "-") return;  // standard output
  if (input == output || (input != "-" && fs::equivalent(input, output, ec))) {
    throw UsageError("--output '" + output + "' is the input file '" + input +
                     "'; the run would overwrite its own queries: choose another --output");
  }
  // Before the model loads: a folder that is missing or cannot be written (read-only, no
  // permission) fails here, not after the first query.
  const fs::path dir = fs::absolute(output).parent_path();
  if (!fs::is_directory(dir, ec)) {
    throw InputError("--output '" + output + "': the folder '" + dir.string() + "' does not exist");
  }
  if (::access(dir.c_str(), W_OK) != 0 ||
      (fs::exists(output, ec) && ::access(output.c_str(), W_OK) != 0)) {
    throw InputError("--output '" + output + "' cannot be written: " + std::strerror(errno));
  }
}

BatchQuery parse_batch_query(const std::string& line, const std::string& base_dir,
                             const std::string& origin) {
  // Before parsing: the parser's own message would quote the bad byte and name no field.
  if (const std::string bad = utf8_problem(line); !bad.empty())
    throw InputError(origin + ": " + bad);
  const json obj = detail::parse_json_object(line, origin);
  BatchQuery q;
  q.query_id = require_id(obj, "query_id", origin);
  if (q.query_id.empty()) throw InputError(origin + ": 'query_id' is empty");
  q.query = detail::require_string(obj, "query", origin);
  if (q.query.find_first_not_of(" \t\r\n") == std::string::npos) {
    throw InputError(origin + ": query '" + q.query_id + "' has an empty 'query'");
  }
  auto cands = obj.find("candidates");
  if (cands == obj.end() || !cands->is_array())
    throw InputError(origin + ": missing 'candidates' array");
  if (cands->empty()) throw InputError(origin + ": query '" + q.query_id + "' has zero candidates");
  std::set<std::string> seen;
  for (size_t i = 0; i < cands->size(); ++i) {
    const json& c = (*cands)[i];
    const std::string where = origin + ": candidate " + std::to_string(i);
    if (!c.is_object()) throw InputError(where + " is not an object");
    PageRef p;
    p.id = require_id(c, "id", where);
    if (!seen.insert(p.id).second)
      throw InputError(origin + ": duplicate candidate id '" + p.id + "'");
    const bool has_image = c.contains("image"), has_pdf = c.contains("pdf");
    if (has_image == has_pdf)
      throw InputError(where + " ('" + p.id + "') needs exactly one of 'image' or 'pdf'");
    if (has_image) {
      p.path = resolve(detail::require_string(c, "image", where), base_dir);
    } else {
      p.path = resolve(detail::require_string(c, "pdf", where), base_dir);
      auto page = c.find("page");
      if (page == c.end()) {
        throw InputError(where + " ('" + p.id +
                         "'): a 'pdf' candidate needs a 1-based integer 'page'");
      }
      p.pdf_page = pdf_page_number(*page);
      if (p.pdf_page == 0) {
        std::string shown = page->dump(-1, ' ', false, json::error_handler_t::replace);
        if (shown.size() > 40) shown = shown.substr(0, 37) + "...";
        throw InputError(where + " ('" + p.id + "'): 'page' must be a whole number from 1 to " +
                         std::to_string(INT_MAX) + " (got " + shown + ")");
      }
    }
    q.candidates.push_back(std::move(p));
  }
  if (auto rel = obj.find("relevant"); rel != obj.end() && rel->is_array()) {
    for (const auto& r : *rel) {
      if (r.is_string()) q.relevant.push_back(r.get<std::string>());
    }
  }
  if (auto d = obj.find("domain"); d != obj.end() && d->is_string())
    q.domain = d->get<std::string>();
  return q;
}

void parse_shard(const std::string& text, int& index, int& count) {
  int k = 0, n = 0;
  char slash = 0;
  std::istringstream ss(text);
  if (!(ss >> k >> slash >> n) || slash != '/' || !ss.eof() || n < 1 || k < 1 || k > n) {
    throw UsageError("--shard must look like K/N with 1 <= K <= N (got '" + text + "')");
  }
  index = k;
  count = n;
}

std::vector<std::string> finished_query_ids(const std::string& path, const std::string& format,
                                            bool repair) {
  std::vector<std::string> ids;
  std::set<std::string> seen;
  for (const OutputLine& l : read_output_lines(path, format, repair)) {
    if (!l.error && seen.insert(l.query_id).second) ids.push_back(l.query_id);
  }
  return ids;
}

namespace {

// The options' checks that need no file opened.
void check_batch_options(const BatchOptions& o) {
  if (o.format != "jsonl" && o.format != "trec" && o.format != "table")
    throw UsageError("--format must be jsonl, trec or table");
  if (o.format == "table" && o.resume) throw UsageError("--resume needs --format jsonl or trec");
  o.rerank.validate();
  check_batch_paths(o.input, o.output);
  const bool from_stdin = o.input == "-", to_stdout = o.output == "-";
  if (o.resume && o.force) throw UsageError("--resume and --force exclude each other");
  if (o.resume && (from_stdin || to_stdout)) {
    throw UsageError(std::string("--resume needs the queries and the run as files: ") +
                     (from_stdin ? "standard input cannot be read a second time"
                                 : "standard output cannot be read back"));
  }
}

// The input's lines (standard input for "-").
std::vector<std::string> read_query_lines(const std::string& input) {
  std::vector<std::string> lines;
  if (input == "-") {
    for (std::string line; std::getline(std::cin, line);) lines.push_back(line);
  } else {
    std::ifstream in(input, std::ios::binary);
    if (!in) throw InputError("cannot open '" + input + "'");
    for (std::string line; std::getline(in, line);) lines.push_back(line);
  }
  return lines;
}

// Readies the output file: emptied with --force, continued with --resume (error records dropped
// so their queries run again); refused when it exists otherwise. Returns the finished query ids.
std::set<std::string> prepare_output(const BatchOptions& o) {
  std::set<std::string> finished;
  const bool to_stdout = o.output == "-";
  if (!to_stdout && fs::exists(o.output) && o.force) {
    replace_file(o.output, "");
  } else if (!to_stdout && fs::exists(o.output)) {
    if (!o.resume) {
      throw UsageError("'" + o.output +
                       "' already exists; pass --resume to continue it, --force to overwrite it, "
                       "or choose another --output");
    }
    // Error records are dropped so that their queries run again and keep one line each.
    const auto existing = read_output_lines(o.output, o.format, /*repair=*/true);
    std::string kept;
    size_t dropped = 0;
    for (const OutputLine& l : existing) {
      if (l.error) {
        ++dropped;
        continue;
      }
      kept += l.text;
      finished.insert(l.query_id);
    }
    if (dropped) {
      spdlog::info("resuming: retrying {} failed quer{}", dropped, dropped == 1 ? "y" : "ies");
      replace_file(o.output, kept);
    }
  }
  return finished;
}

// Retried queries were appended at the end: restores input order. Each input line takes the
// next unclaimed record of its query_id (one JSONL line, or a query's run of TREC lines), so a
// duplicate query_id's error record stays on its own line's place.
void restore_input_order(const BatchOptions& o, const std::vector<std::string>& lines,
                         const std::vector<size_t>& rows, size_t lo, size_t hi) {
  const auto written = read_output_lines(o.output, o.format, /*repair=*/false);
  std::map<std::string, std::deque<std::string>> records;
  std::vector<std::string> first_seen;
  std::string current;
  for (size_t i = 0; i < written.size(); ++i) {
    const OutputLine& l = written[i];
    current += l.text;
    std::deque<std::string>& q = records[l.query_id];
    if (q.empty()) first_seen.push_back(l.query_id);
    const bool same_query = o.format == "trec" && i > 0 && written[i - 1].query_id == l.query_id;
    if (same_query) {
      q.back() += l.text;
    } else {
      q.push_back(l.text);
    }
  }
  std::string ordered;
  for (size_t r = lo; r < hi; ++r) {
    auto it = records.find(row_query_id(lines[rows[r]], rows[r]));
    if (it == records.end() || it->second.empty()) continue;
    ordered += it->second.front();
    it->second.pop_front();
  }
  for (const std::string& id : first_seen) {  // lines of queries not in this input stay, last
    for (const std::string& text : records[id]) ordered += text;
    records[id].clear();
  }
  if (ordered != current) replace_file(o.output, ordered);
}

std::vector<size_t> nonblank_rows(const std::vector<std::string>& lines) {
  std::vector<size_t> rows;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find_first_not_of(" \t\r") != std::string::npos) rows.push_back(i);
  }
  return rows;
}

// A TREC run's side file for error records, emptied: a resumed run starts it afresh.
std::unique_ptr<DurableAppender> open_errors_file(const std::string& path) {
  replace_file(path, "");
  return std::make_unique<DurableAppender>(path);
}

// The queries of rows [lo, hi) to run: those not finished yet. A query_id seen on an earlier line
// of the slice makes a line a duplicate: an error record of its own, whatever became of the first
// (so a resumed run writes the same records).
struct QueryPlan {
  std::vector<size_t> todo;               ///< rows to run, in order
  std::map<size_t, size_t> first_row_of;  ///< duplicate row -> the row that first used its id
  size_t skipped = 0;                     ///< finished already
};
QueryPlan plan_queries(const std::vector<std::string>& lines, const std::vector<size_t>& rows,
                       size_t lo, size_t hi, const std::set<std::string>& finished) {
  QueryPlan plan;
  std::map<std::string, size_t> id_row;
  for (size_t r = lo; r < hi; ++r) {
    // A cheap look at the id decides skipping; full validation happens when the query runs.
    const std::string id = row_query_id(lines[rows[r]], rows[r]);
    const auto [first, fresh] = id_row.emplace(id, rows[r]);
    if (!fresh) {
      plan.first_row_of[rows[r]] = first->second;
    } else if (finished.count(id)) {
      ++plan.skipped;
      continue;
    }
    plan.todo.push_back(rows[r]);
  }
  return plan;
}

// What a failed query leaves in the run: its error record in JSONL, nothing in a TREC run (the
// record goes to the side file) or a table (logged only).
std::string error_record(const BatchOptions& o, DurableAppender* errors, const std::string& qid,
                         const std::string& error) {
  if (errors) {
    errors->write(format_error_line(qid, error));
    return {};
  }
  if (o.format != "jsonl") return {};  // a table, or TREC on standard output: logged only
  return format_error_line(qid, error);
}

void log_throughput(size_t done, double wall_s, double model_ms, size_t pages_ahead, bool overlap,
                    double waited_ms) {
  if (done == 0 || wall_s <= 0) return;
  spdlog::debug(
      "batch: {} queries in {:.1f} s ({:.3f} queries/s); the model computed {:.0f}% of the "
      "wall time; {} pages decoded and preprocessed ahead (overlap {}), {:.1f} s waited for them",
      done, wall_s, static_cast<double>(done) / wall_s, model_ms / 10 / wall_s, pages_ahead,
      overlap ? "on" : "off", waited_ms / 1000);
}

}  // namespace

BatchSummary run_batch(const Reranker& reranker, const BatchOptions& o,
                       const std::atomic<bool>& stop,
                       const std::function<void(const BatchProgress&)>& progress) {
  check_batch_options(o);
  const bool from_stdin = o.input == "-", to_stdout = o.output == "-";
  const std::vector<std::string> lines = read_query_lines(o.input);
  // Relative page paths are resolved against the input's folder (the current one for stdin).
  const std::string base_dir =
      from_stdin ? fs::current_path().string() : fs::absolute(o.input).parent_path().string();
  const std::string input_name = from_stdin ? "<stdin>" : o.input;

  // Non-blank lines, numbered as in the file, then the shard's contiguous slice [lo, hi).
  const std::vector<size_t> rows = nonblank_rows(lines);
  const size_t lo =
      rows.size() * static_cast<size_t>(o.shard_index - 1) / static_cast<size_t>(o.shard_count);
  const size_t hi =
      rows.size() * static_cast<size_t>(o.shard_index) / static_cast<size_t>(o.shard_count);

  BatchSummary summary;
  summary.in_shard = hi - lo;
  const std::set<std::string> finished = prepare_output(o);
  DurableAppender out(o.output);
  if (o.format == "table") out.write(kTableHeader);
  // A TREC run has no room for error records: they go, as JSONL, to a file beside it, which a
  // resumed run starts afresh (its failed queries run again).
  // Written to standard output, they are logged only (as every failed query is).
  std::unique_ptr<DurableAppender> errors;
  if (o.format == "trec" && !to_stdout) errors = open_errors_file(trec_errors_path(o.output));

  QueryPlan plan = plan_queries(lines, rows, lo, hi, finished);
  summary.skipped = plan.skipped;
  const std::vector<size_t>& todo = plan.todo;
  if (summary.skipped)
    spdlog::info("resuming: {} of {} queries already done", summary.skipped, summary.in_shard);

  BatchProgress prog;
  prog.total = todo.size();
  // A stop request also ends the query in progress, between its windows: a query of thousands
  // of candidates must not hold a SIGTERM for minutes. It is rerun on --resume.
  RerankOptions rerank = o.rerank;
  rerank.should_stop = [&stop] { return stop.load(); };
  const auto t0 = std::chrono::steady_clock::now();
  // While the model computes one query, a worker decodes (renders) and preprocesses the pages
  // of the next query's first window, what its ranking reads first; with a vision cache, pages
  // an earlier query showed are left out (their features are likely cached). The pages are
  // the same either way, so are the results. Off: BatchOptions::overlap or
  // ZIPRERANK_BATCH_OVERLAP=0.
  const bool overlap = o.overlap && overlap_from_env();
  std::future<PreparedAhead> ahead;
  std::set<std::string> shown;  // pages of earlier queries (vision cache on)
  double model_ms = 0, waited_ms = 0;
  size_t pages_ahead = 0;
  for (size_t next = 0; next < todo.size(); ++next) {
    const size_t row = todo[next];
    RerankOptions query_options = rerank;
    if (ahead.valid()) {
      const auto tw = std::chrono::steady_clock::now();
      PreparedAhead a = ahead.get();
      waited_ms +=
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - tw).count();
      if (a.row == row && !a.pages->empty()) {
        pages_ahead += a.pages->size();
        query_options.prepared = a.pages;
      }
    }
    if (overlap && next + 1 < todo.size() && !stop.load()) {
      ahead = prepare_next_query(reranker, lines[todo[next + 1]], todo[next + 1], base_dir,
                                 input_name, rerank, shown);
    }
    if (stop.load()) {
      summary.interrupted = true;
      break;
    }
    const std::string origin = input_name + ":" + std::to_string(row + 1);
    std::string qid = row_query_id(lines[row], row);  // names error records too
    std::string record;
    try {
      BatchQuery q = parse_batch_query(lines[row], base_dir, origin);
      qid = q.query_id;
      if (auto dup = plan.first_row_of.find(row); dup != plan.first_row_of.end()) {
        throw InputError(origin + ": duplicate query_id '" + qid + "' (first on line " +
                         std::to_string(dup->second + 1) + "); each query needs its own id");
      }
      // Every page's file is checked before any page of the query is decoded; pages that turn
      // out unreadable when decoded are skipped (or fail the query) as these.
      std::vector<SkippedPage> skipped;
      q.candidates = check_page_files(q.candidates, rerank.skip_unreadable ? &skipped : nullptr);
      if (detail::Stages(reranker).vision_cache()) {
        for (const PageRef& p : q.candidates) shown.insert(prepared_page_key(p));
      }
      RerankResult r = reranker.rerank_pages(q.query, q.candidates, query_options);
      model_ms += r.timing.vision + r.timing.prune + r.timing.llm;
      check_finite_scores(r, o.rerank.scoring);
      r.skipped.insert(r.skipped.begin(), skipped.begin(), skipped.end());
      record = format_run_line(o, qid, r);
      ++summary.ok;
    } catch (const Interrupted&) {
      summary.interrupted = true;  // nothing of this query is written
      break;
    } catch (const std::exception& e) {
      // One bad query (missing image, corrupt PDF page, ...) must not stop the run.
      spdlog::error("query '{}' failed: {}", qid, e.what());
      ++summary.failed;
      ++prog.failed;
      record = error_record(o, errors.get(), qid, e.what());
    }
    out.write(record);
    ++prog.done;
    prog.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (progress) progress(prog);
  }
  if (ahead.valid()) ahead.wait();
  log_throughput(prog.done,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                 model_ms, pages_ahead, overlap, waited_ms);
  if (!summary.interrupted && !to_stdout && (summary.skipped > 0 || o.resume)) {
    restore_input_order(o, lines, rows, lo, hi);
  }
  return summary;
}

}  // namespace ziprerank
