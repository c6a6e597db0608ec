#include "train/data.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/json_util.hpp"
#include "core/utf8.hpp"
#include "ziprerank/batch.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/prompt.hpp"

namespace ziprerank::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t npos = std::string::npos;

// Length in bytes of the UTF-8 sequence starting at s[i] (1 for a stray byte).
size_t cp_len(const std::string& s, size_t i) {
  char32_t cp = 0;
  const size_t len =
      detail::utf8_decode_one(reinterpret_cast<const unsigned char*>(s.data()), s.size(), i, &cp);
  return len ? len : 1;
}

// Python's whitespace (str.isspace, and \s in str patterns): passages scraped from the web carry
// no-break and ideographic spaces, and the reference's regexes treat them as whitespace.
bool is_py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Bytes of the whitespace character at s[i], 0 when it is not whitespace (or i is the end).
size_t space_len(const std::string& s, size_t i) {
  if (i >= s.size()) return 0;
  char32_t cp = 0;
  const size_t len =
      detail::utf8_decode_one(reinterpret_cast<const unsigned char*>(s.data()), s.size(), i, &cp);
  return len && is_py_space(cp) ? len : 0;
}

// Case-insensitive match of an ASCII literal at s[pos], as Python's re.IGNORECASE does it for
// str patterns: besides ASCII case, 's' also matches U+017F (long s) and 'k' U+212A (Kelvin).
// Returns the end of the match or npos.
size_t ci_match(const std::string& s, size_t pos, const char* literal) {
  size_t i = pos;
  for (const char* p = literal; *p; ++p) {
    if (i >= s.size()) return npos;
    const auto c = static_cast<unsigned char>(s[i]);
    const char pc = *p;
    if (pc >= 'a' && pc <= 'z') {
      if (c < 0x80 && static_cast<char>(c | 0x20) == pc) {
        ++i;
      } else if (pc == 's' && s.compare(i, 2, "\xC5\xBF") == 0) {
        i += 2;
      } else if (pc == 'k' && s.compare(i, 3, "\xE2\x84\xAA") == 0) {
        i += 3;
      } else {
        return npos;
      }
    } else {
      if (static_cast<char>(c) != pc) return npos;
      ++i;
    }
  }
  return i;
}

// `\s*\n` matches at `pos` iff the whitespace run starting there holds a newline.
bool whitespace_run_has_newline(const std::string& s, size_t pos) {
  while (const size_t len = space_len(s, pos)) {
    if (s[pos] == '\n') return true;
    pos += len;
  }
  return false;
}

// Python re.search(literal + r"\s*(.+?)\.?\s*\n", text, IGNORECASE), group 1, by following the
// backtracking order of the regex engine: leftmost start, greedy \s* (longest first), then the
// shortest group for which the tail matches.
bool match_query_regex(const std::string& s, const char* literal, std::string* group) {
  for (size_t p = 0; p < s.size(); p += cp_len(s, p)) {
    const size_t a = ci_match(s, p, literal);
    if (a == npos) continue;
    std::vector<size_t> starts = {a};
    for (size_t w = a; const size_t len = space_len(s, w);) {
      w += len;
      starts.push_back(w);
    }
    for (auto it = starts.rbegin(); it != starts.rend(); ++it) {
      const size_t g = *it;
      for (size_t e = g; e < s.size() && s[e] != '\n';) {
        e += cp_len(s, e);
        const bool tail = (e < s.size() && s[e] == '.' && whitespace_run_has_newline(s, e + 1)) ||
                          whitespace_run_has_newline(s, e);
        if (tail) {
          *group = s.substr(g, e - g);
          return true;
        }
      }
    }
  }
  return false;
}

bool is_identifier_at(const std::string& s, size_t i, char last) {
  return i + 2 < s.size() && s[i] == '[' && s[i + 1] >= 'A' && s[i + 1] <= last && s[i + 2] == ']';
}

std::string ranking_string(const std::vector<int64_t>& ranking) {
  std::string out;
  for (size_t k = 0; k < ranking.size(); ++k) {
    if (k) out += " > ";
    out += "[" + identifier(static_cast<int>(ranking[k])) + "]";
  }
  return out;
}

const json& require_array(const json& obj, const char* key, const std::string& origin) {
  const auto it = obj.find(key);
  if (it == obj.end()) throw InputError(origin + ": missing field '" + key + "'");
  if (!it->is_array())
    throw InputError(origin + ": field '" + std::string(key) + "' must be an array");
  return *it;
}

void require_query(const std::string& query, const std::string& origin) {
  if (query.find_first_not_of(" \t\r\n") == npos) throw InputError(origin + ": the query is empty");
}

void check_candidate_count(size_t n, const std::string& what, const std::string& origin) {
  if (n < 2) {
    throw InputError(origin + ": " + std::to_string(n) + " " + what +
                     "; a listwise sample needs at least 2");
  }
  if (n > static_cast<size_t>(kMaxWindow)) {
    throw InputError(origin + ": " + std::to_string(n) + " " + what + "; at most " +
                     std::to_string(kMaxWindow) + " fit in one prompt (identifiers A..Z)");
  }
}

// A full ranking of n candidates given as indices (or, with `ids`, as candidate ids).
std::vector<int64_t> parse_permutation(const json& arr, size_t n,
                                       const std::vector<std::string>* ids,
                                       const std::string& field, const std::string& origin) {
  std::vector<int64_t> ranking;
  std::vector<bool> seen(n, false);
  auto fail = [&](const std::string& why) {
    throw InputError(origin + ": " + field + " is not a permutation of the " + std::to_string(n) +
                     " candidates (" + why + ")");
  };
  for (const json& v : arr) {
    int64_t idx = -1;
    if (v.is_number_integer()) {
      idx = v.get<int64_t>();
      if (idx < 0 || idx >= static_cast<int64_t>(n))
        fail("index " + std::to_string(idx) + " out of range");
    } else if (v.is_string() && ids) {
      const auto it = std::find(ids->begin(), ids->end(), v.get<std::string>());
      if (it == ids->end()) fail("unknown candidate id '" + v.get<std::string>() + "'");
      idx = it - ids->begin();
    } else {
      fail(ids ? "entries must be candidate ids or indices" : "entries must be integer indices");
    }
    if (seen[idx]) fail("candidate " + std::to_string(idx) + " appears twice");
    seen[idx] = true;
    ranking.push_back(idx);
  }
  if (ranking.size() != n) fail(std::to_string(ranking.size()) + " entries");
  return ranking;
}

// The reference's stage-2 sanitation after cutting to the first `m` candidates: the first m
// ranking entries, those that are valid candidate positions (once each), then the missing
// positions in ascending order.
std::vector<int64_t> sanitize_ranking(const std::vector<int64_t>& raw, size_t m) {
  std::vector<int64_t> out;
  std::vector<bool> seen(m, false);
  for (size_t k = 0; k < raw.size() && k < m; ++k) {
    const int64_t idx = raw[k];
    if (idx >= 0 && idx < static_cast<int64_t>(m) && !seen[idx]) {
      seen[idx] = true;
      out.push_back(idx);
    }
  }
  for (size_t i = 0; i < m; ++i) {
    if (!seen[i]) out.push_back(static_cast<int64_t>(i));
  }
  return out;
}

void finish_stage2(TrainExample& ex, const std::vector<int64_t>& raw_ranking,
                   std::vector<int64_t> gt, const Stage2Options& options) {
  const size_t m = std::min(ex.pages.size(), static_cast<size_t>(options.max_candidates));
  const bool had_gt = !gt.empty();
  ex.pages.resize(m);
  check_candidate_count(m, "candidates", ex.origin);
  ex.ranking = sanitize_ranking(raw_ranking, m);
  gt.erase(
      std::remove_if(gt.begin(), gt.end(), [&](int64_t g) { return g >= static_cast<int64_t>(m); }),
      gt.end());
  if (options.force_gt_top1 && !gt.empty()) {
    ex.ranking.erase(std::find(ex.ranking.begin(), ex.ranking.end(), gt[0]));
    ex.ranking.insert(ex.ranking.begin(), gt[0]);
  }
  if (gt.empty() && had_gt) {
    // As the reference, the target then falls back to the teacher's first choice; say so, since
    // the label is probably wrong (order the candidates best first, or raise --max-candidates).
    spdlog::warn(
        "{}: every relevant page is beyond --max-candidates {}; using the teacher's first "
        "choice as ground truth",
        ex.origin, options.max_candidates);
  }
  ex.gt = gt.empty() ? std::vector<int64_t>{ex.ranking[0]} : gt;
  ex.target = ranking_string(ex.ranking);
  for (const PageRef& p : ex.pages) {
    if (!fs::is_regular_file(p.path)) {
      throw InputError(ex.origin + ": candidate '" + p.id + "': image file '" + p.path +
                       "' not found");
    }
  }
}

std::string json_scalar_text(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

std::string find_page_image(const std::string& pages_dir, const std::string& doc,
                            const std::string& page) {
  std::vector<std::string> docs = {doc};
  if (doc.size() > 4 && doc.compare(doc.size() - 4, 4, ".pdf") == 0)
    docs.push_back(doc.substr(0, doc.size() - 4));
  for (const std::string& d : docs) {
    for (const char* ext : {".png", ".jpg", ".jpeg", ".webp"}) {
      for (const fs::path& p :
           {fs::path(pages_dir) / d / (page + ext), fs::path(pages_dir) / (d + "_" + page + ext)}) {
        if (fs::is_regular_file(p)) return p.string();
      }
    }
  }
  return "";
}

TrainExample parse_reference_stage2(const json& obj, const Stage2Options& options,
                                    const std::string& origin) {
  TrainExample ex;
  ex.origin = origin;
  ex.query = detail::require_string(obj, "query", origin);
  require_query(ex.query, origin);
  const std::string doc = detail::require_string(obj, "doc_name", origin);
  const json& cands = require_array(obj, "candidate_page_ids", origin);
  const json& teacher = require_array(obj, "openai_ranking", origin);
  if (options.pages_dir.empty()) {
    throw InputError(origin +
                     ": rows with 'candidate_page_ids' take their page images from --pages-dir");
  }
  const size_t m = std::min(cands.size(), static_cast<size_t>(options.max_candidates));
  std::set<std::string> gt_pages;
  if (const auto it = obj.find("gt_page_ids"); it != obj.end() && !it->is_null()) {
    if (!it->is_array()) throw InputError(origin + ": field 'gt_page_ids' must be an array");
    for (const json& g : *it) gt_pages.insert(json_scalar_text(g));
  }
  std::vector<int64_t> gt;
  for (size_t i = 0; i < m; ++i) {
    const json& c = cands[i];
    if (!c.is_number_integer() && !c.is_string()) {
      throw InputError(origin + ": candidate_page_ids[" + std::to_string(i) +
                       "] must be a page number");
    }
    const std::string page = json_scalar_text(c);
    PageRef ref;
    ref.id = doc + "#" + page;
    ref.path = find_page_image(options.pages_dir, doc, page);
    if (ref.path.empty()) {
      throw InputError(origin + ": no image for document '" + doc + "' page " + page + " under '" +
                       options.pages_dir + "' (expected " + doc + "/" + page + ".png or " + doc +
                       "_" + page + ".png; .jpg, .jpeg, .webp also work)");
    }
    if (gt_pages.count(page)) gt.push_back(static_cast<int64_t>(i));
    ex.pages.push_back(ref);
  }
  // The reference drops teacher entries that are not candidate positions (strings, floats, ...).
  std::vector<int64_t> raw;
  for (const json& v : teacher) raw.push_back(v.is_number_integer() ? v.get<int64_t>() : -1);
  finish_stage2(ex, raw, gt, options);
  return ex;
}

TrainExample parse_our_stage2(const std::string& line, const json& obj, const std::string& base_dir,
                              const Stage2Options& options, const std::string& origin) {
  const BatchQuery q = parse_batch_query(line, base_dir, origin);
  TrainExample ex;
  ex.origin = origin;
  ex.query = q.query;
  ex.pages = q.candidates;
  std::vector<std::string> ids;
  for (const PageRef& p : q.candidates) ids.push_back(p.id);
  const std::vector<int64_t> ranking = parse_permutation(require_array(obj, "ranking", origin),
                                                         ids.size(), &ids, "'ranking'", origin);
  std::vector<int64_t> gt;
  const std::set<std::string> relevant(q.relevant.begin(), q.relevant.end());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (relevant.count(ids[i])) gt.push_back(static_cast<int64_t>(i));
  }
  finish_stage2(ex, ranking, gt, options);
  return ex;
}

}  // namespace

void reorder_candidates(TrainExample& ex, const std::vector<int64_t>& order) {
  const size_t n = ex.size();
  std::vector<int64_t> new_index(n, -1);
  if (order.size() != n) throw InternalError("reorder_candidates: the order has another length");
  for (size_t j = 0; j < n; ++j) {
    const int64_t old = order[j];
    if (old < 0 || old >= static_cast<int64_t>(n) || new_index[static_cast<size_t>(old)] >= 0)
      throw InternalError("reorder_candidates: the order is not a permutation");
    new_index[static_cast<size_t>(old)] = static_cast<int64_t>(j);
  }
  if (ex.passages.empty()) {
    std::vector<PageRef> pages(n);
    for (size_t j = 0; j < n; ++j) pages[j] = ex.pages[static_cast<size_t>(order[j])];
    ex.pages = std::move(pages);
  } else {
    std::vector<std::string> passages(n);
    for (size_t j = 0; j < n; ++j) passages[j] = ex.passages[static_cast<size_t>(order[j])];
    ex.passages = std::move(passages);
  }
  for (int64_t& r : ex.ranking) r = new_index[static_cast<size_t>(r)];
  for (int64_t& g : ex.gt) g = new_index[static_cast<size_t>(g)];
  ex.target = ranking_string(ex.ranking);
}

std::vector<int64_t> rank_positions(const std::vector<int64_t>& ranking) {
  std::vector<int64_t> rank_of(ranking.size(), -1);
  for (size_t k = 0; k < ranking.size(); ++k) rank_of[ranking[k]] = static_cast<int64_t>(k);
  return rank_of;
}

std::string python_strip(const std::string& text) {
  size_t begin = 0;
  while (const size_t len = space_len(text, begin)) begin += len;
  size_t end = text.size();
  while (end > begin) {
    // Step back to the start of the last character.
    size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    if (space_len(text, start) != end - start) break;
    end = start;
  }
  return text.substr(begin, end - begin);
}

std::string rank_zephyr_passage_section(const std::string& s) {
  size_t start = npos, after = npos;
  for (size_t i = 0; i < s.size(); i += cp_len(s, i)) {
    after = ci_match(s, i, "passages");
    if (after != npos) {
      start = i;
      break;
    }
  }
  // A later "passages" could only see fewer lookahead positions, so the first decides.
  if (start == npos || after >= s.size()) return s;
  size_t last = npos;
  for (size_t q = after + cp_len(s, after); q < s.size(); q += cp_len(s, q)) {
    if (ci_match(s, q, "search query:") != npos || ci_match(s, q, "rank the") != npos) last = q;
  }
  return last == npos ? s : s.substr(start, last - start);
}

std::vector<std::pair<char, std::string>> rank_zephyr_items(const std::string& s) {
  std::vector<std::pair<char, std::string>> items;
  size_t pos = 0;
  while (pos < s.size()) {
    if (is_identifier_at(s, pos, 'T') && space_len(s, pos + 3) > 0) {
      size_t body = pos + 3;
      while (const size_t len = space_len(s, body)) body += len;
      // Lazy body: up to the first "\n[X]" (X in A..T) or the end of the section.
      size_t end = body;
      while (end < s.size() && !(s[end] == '\n' && is_identifier_at(s, end + 1, 'T'))) ++end;
      items.emplace_back(s[pos + 1], python_strip(s.substr(body, end - body)));
      pos = end;
    } else {
      pos += cp_len(s, pos);
    }
  }
  return items;
}

bool rank_zephyr_query(const std::string& text, std::string* query) {
  std::string group;
  if (!match_query_regex(text, "search query:", &group) &&
      !match_query_regex(text, "query:", &group)) {
    return false;
  }
  *query = python_strip(group);
  return true;
}

TrainExample parse_stage1_line(const std::string& line, const std::string& origin) {
  const json obj = detail::parse_json_object(line, origin);
  TrainExample ex;
  ex.origin = origin;
  if (const auto conv = obj.find("conversations"); conv != obj.end()) {
    if (!conv->is_array() || conv->size() < 3) {
      throw InputError(origin + ": 'conversations' must hold 3 turns (system, user, ranking)");
    }
    std::vector<std::string> turns;
    for (size_t i = 0; i < 3; ++i) {
      const json& t = (*conv)[i];
      if (!t.is_object() || !t.contains("value") || !t["value"].is_string()) {
        throw InputError(origin + ": conversations[" + std::to_string(i) +
                         "] needs a string 'value'");
      }
      turns.push_back(t["value"].get<std::string>());
    }
    const std::string& user = turns[1];
    const auto items = rank_zephyr_items(rank_zephyr_passage_section(user));
    if (items.empty()) throw InputError(origin + ": no passages ('[A] text') in conversations[1]");
    for (size_t i = 0; i < items.size(); ++i) {
      if (items[i].first != 'A' + static_cast<char>(i)) {
        throw InputError(origin + ": conversations[1]: passage " + std::to_string(i + 1) +
                         " is labelled [" + std::string(1, items[i].first) + "], expected [" +
                         identifier(static_cast<int>(i)) +
                         "] (identifiers must run A, B, C, ... in order)");
      }
      ex.passages.push_back(items[i].second);
    }
    check_candidate_count(ex.passages.size(), "passages", origin);
    if (!rank_zephyr_query(user, &ex.query)) {
      throw InputError(origin + ": conversations[1] has no 'Search Query: ...' line");
    }
    require_query(ex.query, origin);
    ex.target = turns[2];
    if (ex.target.empty() || ex.target[0] != '[') {
      throw InputError(origin + ": conversations[2] (the ranking) must start with '['");
    }
    std::vector<int64_t> letters;
    for (size_t i = 0; i + 2 < ex.target.size(); ++i) {
      if (is_identifier_at(ex.target, i, 'Z')) letters.push_back(ex.target[i + 1] - 'A');
    }
    const json arr = letters;
    ex.ranking = parse_permutation(arr, ex.passages.size(), nullptr,
                                   "the ranking in conversations[2]", origin);
    return ex;
  }
  if (!obj.contains("passages")) {
    throw InputError(origin +
                     ": missing field 'passages' (or 'conversations' for the rank_zephyr format)");
  }
  ex.query = detail::require_string(obj, "query", origin);
  require_query(ex.query, origin);
  const json& passages = require_array(obj, "passages", origin);
  for (size_t i = 0; i < passages.size(); ++i) {
    if (!passages[i].is_string())
      throw InputError(origin + ": passages[" + std::to_string(i) + "] must be a string");
    ex.passages.push_back(passages[i].get<std::string>());
  }
  check_candidate_count(ex.passages.size(), "passages", origin);
  ex.ranking = parse_permutation(require_array(obj, "ranking", origin), ex.passages.size(), nullptr,
                                 "'ranking'", origin);
  ex.target = ranking_string(ex.ranking);
  return ex;
}

TrainExample parse_stage2_line(const std::string& line, const std::string& base_dir,
                               const Stage2Options& options, const std::string& origin) {
  const json obj = detail::parse_json_object(line, origin);
  if (obj.contains("candidate_page_ids")) return parse_reference_stage2(obj, options, origin);
  if (obj.contains("candidates")) return parse_our_stage2(line, obj, base_dir, options, origin);
  throw InputError(
      origin + ": missing field 'candidates' (or 'candidate_page_ids' for the reference format)");
}

TrainDataset::TrainDataset(const std::string& path, int stage, Stage2Options stage2)
    : path_(path), stage_(stage), stage2_(std::move(stage2)) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot open training data '" + path + "'");
  base_dir_ = fs::absolute(path).parent_path().string();
  uint64_t hash = 1469598103934665603ull;
  uint64_t offset = 0;
  uint32_t number = 0;
  std::string line;
  while (std::getline(in, line)) {
    ++number;
    for (const char c : line + "\n") {
      hash ^= static_cast<unsigned char>(c);
      hash *= 1099511628211ull;
    }
    const uint64_t here = offset;
    offset += line.size() + 1;
    if (line.find_first_not_of(" \t\r") == npos) continue;
    if (line.size() > UINT32_MAX)
      throw InputError(path + ":" + std::to_string(number) + ": line too long");
    parse(line, number);  // every line is checked before training starts
    lines_.push_back(Line{here, static_cast<uint32_t>(line.size()), number});
  }
  hash_ = hash;
  if (lines_.empty()) throw InputError("training data '" + path + "' holds no samples");
}

TrainExample TrainDataset::parse(const std::string& text, uint32_t number) const {
  const std::string origin = path_ + ":" + std::to_string(number);
  return stage_ == 1 ? parse_stage1_line(text, origin)
                     : parse_stage2_line(text, base_dir_, stage2_, origin);
}

TrainExample TrainDataset::get(size_t index) const {
  const Line& l = lines_.at(index);
  std::ifstream in(path_, std::ios::binary);
  std::string text(l.length, '\0');
  in.seekg(static_cast<std::streamoff>(l.offset));
  if (!in.read(text.data(), l.length)) {
    throw InputError(path_ + ":" + std::to_string(l.number) +
                     ": the training data file changed while training");
  }
  return parse(text, l.number);
}

Image RenderCache::get(const std::string& text) {
  if (const auto it = index_.find(text); it != index_.end()) {
    ++hits_;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
  }
  ++misses_;
  Image img = render_passage(text, options_);
  lru_.emplace_front(text, img);
  index_[text] = lru_.begin();
  bytes_ += text.size() + img.rgb.size();
  while (bytes_ > max_bytes_ && lru_.size() > 1) {
    const Entry& old = lru_.back();
    bytes_ -= old.first.size() + old.second.rgb.size();
    index_.erase(old.first);
    lru_.pop_back();
  }
  return img;
}

}  // namespace ziprerank::train
