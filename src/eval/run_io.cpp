#include "ziprerank/run_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "core/json_util.hpp"
#include "ziprerank/errors.hpp"

namespace ziprerank {

namespace {

using nlohmann::json;

struct Line {
  int number;  // 1-based
  std::string text;
};

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c) != 0; });
}

// Splits on '\n' and drops a trailing '\r' so that files written on Windows read the same.
std::vector<Line> non_blank_lines(const std::string& text) {
  std::vector<Line> lines;
  size_t start = 0;
  int number = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++number;
    std::string line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!is_blank(line)) lines.push_back({number, std::move(line)});
    if (end == text.size()) break;
    start = end + 1;
  }
  return lines;
}

std::string where(const std::string& origin, int line) {
  return origin + ":" + std::to_string(line);
}

bool first_line_is_json(const std::vector<Line>& lines) {
  if (lines.empty()) return true;
  const std::string& s = lines.front().text;
  const size_t p = s.find_first_not_of(" \t");
  return p != std::string::npos && s[p] == '{';
}

std::vector<std::string> split_ws(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> fields;
  std::string f;
  while (in >> f) fields.push_back(f);
  return fields;
}

// Query and page ids are strings in our formats; integers are accepted too because many
// collections number their queries, and they mean the same as their decimal text.
std::string id_text(const json& v, const std::string& at, const std::string& what) {
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s.empty()) throw InputError(at + ": " + what + " is an empty string");
    return s;
  }
  if (v.is_number_integer()) return v.dump();
  throw InputError(at + ": " + what + " must be a string (got " + std::string(v.type_name()) + ")");
}

json parse_object(const Line& line, const std::string& origin) {
  const std::string at = where(origin, line.number);
  json obj = detail::parse_json(line.text, at);
  if (!obj.is_object()) {
    throw InputError(at + ": expected one JSON object per line (got " +
                     std::string(obj.type_name()) + ")");
  }
  return obj;
}

std::string required_query_id(const json& obj, const std::string& at) {
  auto it = obj.find("query_id");
  if (it == obj.end() || it->is_null()) throw InputError(at + ": missing \"query_id\"");
  return id_text(*it, at, "\"query_id\"");
}

long parse_long(const std::string& s, const std::string& at, const std::string& what) {
  long v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) {
    throw InputError(at + ": " + what + " must be an integer (got '" + s + "')");
  }
  return v;
}

double parse_score(const std::string& s, const std::string& at) {
  // strtod rather than from_chars: it also reads the "1e+05" and "-inf" forms other tools write.
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || s.empty()) {
    throw InputError(at + ": score must be a number (got '" + s + "')");
  }
  return v;
}

void check_unique_query(std::unordered_map<std::string, int>& seen, const std::string& qid,
                        int line, const std::string& origin) {
  const auto [it, inserted] = seen.emplace(qid, line);
  if (!inserted) {
    throw InputError(where(origin, line) + ": query_id '" + qid + "' already appeared on line " +
                     std::to_string(it->second));
  }
}

Run parse_jsonl_run(const std::vector<Line>& lines, const std::string& origin) {
  Run run;
  run.origin = origin;
  std::unordered_map<std::string, int> seen;
  for (const Line& line : lines) {
    const std::string at = where(origin, line.number);
    const json obj = parse_object(line, origin);
    RunEntry e;
    e.query_id = required_query_id(obj, at);
    e.line = line.number;
    check_unique_query(seen, e.query_id, line.number, origin);
    auto err = obj.find("error");
    if (err != obj.end() && !err->is_null()) {
      e.failed = true;
      e.error = err->is_string() ? err->get<std::string>() : err->dump();
      run.queries.push_back(std::move(e));
      continue;
    }
    auto ranking = obj.find("ranking");
    if (ranking == obj.end() || ranking->is_null()) {
      throw InputError(at + ": missing \"ranking\" (and no \"error\") for query '" + e.query_id +
                       "'");
    }
    if (!ranking->is_array()) throw InputError(at + ": \"ranking\" must be an array");
    std::unordered_set<std::string> ids;
    for (size_t i = 0; i < ranking->size(); ++i) {
      const json& item = (*ranking)[i];
      const std::string what = "ranking[" + std::to_string(i) + "]";
      if (!item.is_object()) throw InputError(at + ": " + what + " must be an object");
      auto id = item.find("id");
      if (id == item.end() || id->is_null()) throw InputError(at + ": " + what + " has no \"id\"");
      std::string doc = id_text(*id, at, what + ".id");
      // A repeated page would be counted as two hits and could push recall above 1.
      if (!ids.insert(doc).second) {
        throw InputError(at + ": page '" + doc + "' appears twice in the ranking of query '" +
                         e.query_id + "'");
      }
      double score = std::numeric_limits<double>::quiet_NaN();
      auto s = item.find("score");
      if (s != item.end() && !s->is_null()) {
        if (!s->is_number()) throw InputError(at + ": " + what + ".score must be a number");
        score = s->get<double>();
      }
      e.ids.push_back(std::move(doc));
      e.scores.push_back(score);
    }
    run.queries.push_back(std::move(e));
  }
  return run;
}

Run parse_trec_run(const std::vector<Line>& lines, const std::string& origin) {
  Run run;
  run.origin = origin;
  std::unordered_map<std::string, size_t> index;
  std::vector<std::vector<long>> ranks;
  std::unordered_map<std::string, int> seen_pairs;  // "qid\tdocid" -> line
  for (const Line& line : lines) {
    const std::string at = where(origin, line.number);
    const std::vector<std::string> f = split_ws(line.text);
    if (f.size() != 6) {
      throw InputError(at + ": a TREC run line has 6 fields (qid Q0 docid rank score tag), got " +
                       std::to_string(f.size()));
    }
    const long rank = parse_long(f[3], at, "rank");
    const double score = parse_score(f[4], at);
    const auto [pair, fresh] = seen_pairs.emplace(f[0] + '\t' + f[2], line.number);
    if (!fresh) {
      throw InputError(at + ": page '" + f[2] + "' of query '" + f[0] +
                       "' already appeared on line " + std::to_string(pair->second));
    }
    if (run.tag.empty()) run.tag = f[5];
    auto [it, inserted] = index.emplace(f[0], run.queries.size());
    if (inserted) {
      RunEntry e;
      e.query_id = f[0];
      e.line = line.number;
      run.queries.push_back(std::move(e));
      ranks.emplace_back();
    }
    RunEntry& e = run.queries[it->second];
    e.ids.push_back(f[2]);
    e.scores.push_back(score);
    ranks[it->second].push_back(rank);
  }
  // The rank column states the order; a stable sort keeps file order where ranks are equal.
  // Scores are deliberately not consulted, so evaluation sees the order the run claims.
  for (size_t q = 0; q < run.queries.size(); ++q) {
    RunEntry& e = run.queries[q];
    std::vector<size_t> order(e.ids.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return ranks[q][a] < ranks[q][b]; });
    std::vector<std::string> ids;
    std::vector<double> scores;
    for (size_t i : order) {
      ids.push_back(std::move(e.ids[i]));
      scores.push_back(e.scores[i]);
    }
    e.ids = std::move(ids);
    e.scores = std::move(scores);
  }
  return run;
}

std::vector<std::string> id_list(const json& v, const std::string& at, const std::string& key) {
  if (!v.is_array()) throw InputError(at + ": \"" + key + "\" must be an array of ids");
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    out.push_back(id_text(v[i], at, key + "[" + std::to_string(i) + "]"));
  }
  return out;
}

Qrels parse_jsonl_qrels(const std::vector<Line>& lines, const std::string& origin) {
  Qrels qrels;
  qrels.origin = origin;
  std::unordered_map<std::string, int> seen;
  for (const Line& line : lines) {
    const std::string at = where(origin, line.number);
    const json obj = parse_object(line, origin);
    QrelsEntry e;
    e.query_id = required_query_id(obj, at);
    e.line = line.number;
    check_unique_query(seen, e.query_id, line.number, origin);
    auto rel = obj.find("relevant");
    if (rel != obj.end() && !rel->is_null()) {
      std::unordered_set<std::string> unique;
      for (std::string& id : id_list(*rel, at, "relevant")) {
        if (unique.insert(id).second) e.relevant.push_back(std::move(id));
      }
    }
    auto dom = obj.find("domain");
    if (dom != obj.end() && !dom->is_null()) {
      if (!dom->is_string()) throw InputError(at + ": \"domain\" must be a string");
      e.domain = dom->get<std::string>();
    }
    auto cands = obj.find("candidates");
    if (cands != obj.end() && !cands->is_null()) {
      if (!cands->is_array()) throw InputError(at + ": \"candidates\" must be an array");
      e.has_candidates = true;
      for (size_t i = 0; i < cands->size(); ++i) {
        const json& c = (*cands)[i];
        const std::string what = "candidates[" + std::to_string(i) + "]";
        if (!c.is_object()) throw InputError(at + ": " + what + " must be an object");
        auto id = c.find("id");
        if (id == c.end() || id->is_null()) throw InputError(at + ": " + what + " has no \"id\"");
        e.candidates.push_back(id_text(*id, at, what + ".id"));
      }
    }
    qrels.queries.push_back(std::move(e));
  }
  return qrels;
}

Qrels parse_trec_qrels(const std::vector<Line>& lines, const std::string& origin) {
  Qrels qrels;
  qrels.origin = origin;
  std::unordered_map<std::string, size_t> index;
  std::unordered_map<std::string, int> seen_pairs;
  for (const Line& line : lines) {
    const std::string at = where(origin, line.number);
    const std::vector<std::string> f = split_ws(line.text);
    if (f.size() != 4) {
      throw InputError(at + ": a TREC qrels line has 4 fields (qid iter docid relevance), got " +
                       std::to_string(f.size()));
    }
    const long rel = parse_long(f[3], at, "relevance");
    const auto [pair, fresh] = seen_pairs.emplace(f[0] + '\t' + f[2], line.number);
    if (!fresh) {
      throw InputError(at + ": page '" + f[2] + "' of query '" + f[0] +
                       "' is already judged on line " + std::to_string(pair->second));
    }
    auto [it, inserted] = index.emplace(f[0], qrels.queries.size());
    if (inserted) {
      QrelsEntry e;
      e.query_id = f[0];
      e.line = line.number;
      qrels.queries.push_back(std::move(e));
    }
    // Binary relevance: judged non-relevant lines (rel <= 0) only make the query known.
    if (rel > 0) qrels.queries[it->second].relevant.push_back(f[2]);
  }
  return qrels;
}

// Reads a run or qrels file. A named FIFO, a socket or a device is refused before it is opened
// (opening a FIFO for reading waits for a writer that may never come); an anonymous pipe, as
// `--run <(zcat run.gz)` or `--run /dev/stdin` give, already has its writer and is read.
std::string read_input_file(const std::string& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ELOOP) {
      throw InputError("'" + path + "' is a loop of symbolic links (too many levels), not " + what);
    }
    return detail::read_text_file(path);  // says it cannot be opened
  }
  if (S_ISREG(st.st_mode)) return detail::read_text_file(path);
  if (S_ISDIR(st.st_mode)) throw InputError("'" + path + "' is a directory, not " + what);
  const std::string only =
      ", not a regular file; ziprerank reads " + what + " only from a " + "regular file or a pipe";
  if (!S_ISFIFO(st.st_mode)) {
    throw InputError("'" + path + "' is a " + (S_ISSOCK(st.st_mode) ? "socket" : "device") + only);
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);  // never waits
  if (fd < 0) throw InputError("cannot open '" + path + "' for reading");
  struct statfs fs {};
  constexpr long kPipeFsMagic = 0x50495045;  // PIPEFS_MAGIC: an anonymous pipe
  if (::fstatfs(fd, &fs) != 0 || static_cast<long>(fs.f_type) != kPipeFsMagic) {
    ::close(fd);
    throw InputError("'" + path + "' is a FIFO (named pipe)" + only);
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  std::string text;
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      throw InputError("error while reading '" + path + "'");
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

void check_trec_field(const std::string& value, const char* what) {
  if (value.empty()) throw InputError(std::string("TREC run output: empty ") + what);
  for (unsigned char c : value) {
    if (std::isspace(c)) {
      throw InputError(std::string("TREC run output: ") + what + " '" + value +
                       "' contains whitespace, which the TREC format cannot represent");
    }
  }
}

}  // namespace

Run parse_run(const std::string& text, const std::string& origin, RunFormat format) {
  const std::vector<Line> lines = non_blank_lines(text);
  if (format == RunFormat::kAuto) {
    format = first_line_is_json(lines) ? RunFormat::kJsonl : RunFormat::kTrec;
  }
  return format == RunFormat::kJsonl ? parse_jsonl_run(lines, origin)
                                     : parse_trec_run(lines, origin);
}

Run read_run(const std::string& path, RunFormat format) {
  return parse_run(read_input_file(path, "a run file"), path, format);
}

Qrels parse_qrels(const std::string& text, const std::string& origin, QrelsFormat format) {
  const std::vector<Line> lines = non_blank_lines(text);
  if (format == QrelsFormat::kAuto) {
    format = first_line_is_json(lines) ? QrelsFormat::kJsonl : QrelsFormat::kTrec;
  }
  return format == QrelsFormat::kJsonl ? parse_jsonl_qrels(lines, origin)
                                       : parse_trec_qrels(lines, origin);
}

Qrels read_qrels(const std::string& path, QrelsFormat format) {
  return parse_qrels(read_input_file(path, "a qrels file"), path, format);
}

void write_trec_run_line(std::ostream& out, const std::string& query_id, const std::string& doc_id,
                         int rank, double score, const std::string& tag) {
  check_trec_field(query_id, "query id");
  check_trec_field(doc_id, "page id");
  check_trec_field(tag, "run tag");
  if (!std::isfinite(score)) {
    throw InputError("TREC run output: score of page '" + doc_id + "' (query '" + query_id +
                     "') is not a finite number");
  }
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), score);
  out << query_id << " Q0 " << doc_id << ' ' << rank << ' ' << std::string(buf, res.ptr) << ' '
      << tag << '\n';
}

void write_trec_run(std::ostream& out, const std::string& query_id,
                    const std::vector<std::pair<std::string, double>>& ranking,
                    const std::string& tag) {
  int rank = 1;
  for (const auto& [id, score] : ranking)
    write_trec_run_line(out, query_id, id, rank++, score, tag);
}

}  // namespace ziprerank
