// Byte-level BPE tokenizer read from a Hugging Face `tokenizer.json` (Qwen2/Qwen3 and Llama 3
// style). The encoding pipeline reproduces the `tokenizers` library step by step:
//   1. added tokens are cut out of the raw text (leftmost-longest, like its Aho-Corasick pass);
//   2. each remaining segment is NFC-normalized (unicode_normalize.cpp);
//   3. the Split pre-tokenizer regex cuts it into pieces (hand-written matcher, pretokenize.cpp);
//   4. each piece's UTF-8 bytes are merged by BPE rank into vocabulary ids.
// Input that is not valid UTF-8 does not fail: each invalid byte is kept as a raw byte that the
// pre-tokenizer treats like a punctuation character and the byte-level model encodes as that
// byte, so decode() gives the original bytes back.
#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "bpe_tokenizer_impl.hpp"
#include "core/json_util.hpp"
#include "core/utf8.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/tokenizer.hpp"

namespace ziprerank {

namespace {

namespace bpe = detail::bpe;
using nlohmann::json;

constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Words longer than this are not cached: they rarely repeat and would crowd the cache.
constexpr size_t kMaxCachedWordBytes = 256;
constexpr size_t kCacheCapacity = 1 << 16;

// Token ids index dense per-id tables, so an id is refused when it lies far beyond the number of
// tokens the file defines: a 60-byte file naming id 2,000,000,000 would otherwise allocate 64 GB.
// Real files number their tokens densely (Qwen: 151,643 vocabulary ids, then the added tokens);
// twice the token count plus this slack leaves room for any gaps they have.
constexpr int64_t kIdSlack = 1 << 16;

// GPT-2's reversible byte -> code point map: printable bytes stand for themselves, the others
// are moved to U+0100 and up so that every token is printable text.
std::array<uint32_t, 256> make_byte_to_char() {
  std::array<uint32_t, 256> map{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable =
        (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    map[b] = printable ? b : next++;
  }
  return map;
}

const std::array<uint32_t, 256>& byte_to_char() {
  static const std::array<uint32_t, 256> map = make_byte_to_char();
  return map;
}

// Pair of ids -> (rank, merged id), open addressing: BPE looks up a pair for every candidate
// merge, so this lookup is the hot loop of encoding.
class MergeTable {
 public:
  struct Entry {
    uint64_t key;
    int32_t rank;
    int32_t merged;
  };

  void reserve(size_t n) {
    size_t cap = 16;
    int bits = 4;
    while (cap < n * 2) cap <<= 1, ++bits;
    slots_.assign(cap, Entry{kEmpty, 0, 0});
    mask_ = cap - 1;
    shift_ = 64 - bits;
  }

  // A repeated pair keeps its last rank, as a map built from the merges list in order does.
  void insert(int32_t a, int32_t b, int32_t rank, int32_t merged) {
    const uint64_t key = make_key(a, b);
    size_t i = slot(key);
    while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
    slots_[i] = Entry{key, rank, merged};
  }

  const Entry* find(int32_t a, int32_t b) const {
    const uint64_t key = make_key(a, b);
    size_t i = slot(key);
    while (true) {
      const Entry& e = slots_[i];
      if (e.key == key) return &e;
      if (e.key == kEmpty) return nullptr;
      i = (i + 1) & mask_;
    }
  }

 private:
  static constexpr uint64_t kEmpty = std::numeric_limits<uint64_t>::max();
  static uint64_t make_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  size_t slot(uint64_t key) const {
    return static_cast<size_t>((key * 0x9E3779B97F4A7C15ULL) >> shift_);
  }

  std::vector<Entry> slots_;
  size_t mask_ = 0;
  int shift_ = 60;
};

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

// Added tokens of one matching pass, indexed by first byte; each list is longest first so the
// first hit at a position is the leftmost-longest match.
struct AddedTokenIndex {
  std::array<std::vector<const AddedToken*>, 256> by_first_byte;
  bool empty = true;
};

struct AddedMatch {
  size_t begin;
  size_t end;
  int32_t id;
};

// Reads the code point before/after a byte position (invalid bytes count as one non-space).
uint32_t cp_before(std::string_view s, size_t pos, size_t* len) {
  size_t start = pos - 1;
  while (start > 0 && pos - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) {
    --start;
  }
  std::vector<uint32_t> cps;
  std::vector<uint32_t> offsets;
  bpe::decode_utf8(s.substr(start, pos - start), cps, &offsets);
  *len = pos - start - offsets[offsets.size() - 2];
  return cps.back();
}

uint32_t cp_after(std::string_view s, size_t pos, size_t* len) {
  std::vector<uint32_t> cps;
  std::vector<uint32_t> offsets;
  bpe::decode_utf8(s.substr(pos, std::min<size_t>(4, s.size() - pos)), cps, &offsets);
  *len = offsets[1];
  return cps.front();
}

// \w as the `tokenizers` single_word rule sees it, approximated by general categories.
bool is_word_char(uint32_t cp) {
  const auto c = bpe::char_class(cp);
  return c == detail::unicode::kLetter || c == detail::unicode::kNumber ||
         c == detail::unicode::kMark || c == detail::unicode::kConnector;
}

bool is_space_char(uint32_t cp) { return bpe::char_class(cp) == detail::unicode::kSpace; }

std::string describe_type(const json& j) {
  return j.is_string() ? "\"" + j.get<std::string>() + "\"" : std::string(j.type_name());
}

class BpeTokenizer final : public Tokenizer {
 public:
  /// `json_text` is the content of a tokenizer.json; `origin` names it in error messages.
  BpeTokenizer(const std::string& json_text, const std::string& origin) { load(json_text, origin); }

  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int64_t> ids;
    ids.reserve(text.size() / 3 + 4);
    std::vector<AddedMatch> matches;
    find_added(text, raw_index_, matches);
    size_t pos = 0;
    for (const auto& m : matches) {
      if (m.begin > pos) encode_segment(std::string_view(text).substr(pos, m.begin - pos), ids);
      ids.push_back(m.id);
      pos = m.end;
    }
    if (pos < text.size()) encode_segment(std::string_view(text).substr(pos), ids);
    return ids;
  }

  // Unknown ids are skipped, as `tokenizers` does: generation can emit ids of the embedding's
  // padding rows, which have no text. Raw bytes are returned as they are (no U+FFFD), so the
  // concatenation of decoded parts equals the decoded whole.
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::string out;
    for (int64_t id : ids) {
      if (id < 0 || id >= static_cast<int64_t>(id_text_.size())) continue;
      out += id_text_[static_cast<size_t>(id)];
    }
    return out;
  }

  int64_t vocab_size() const override { return static_cast<int64_t>(id_token_.size()); }

  std::optional<int64_t> token_to_id(const std::string& token) const override {
    auto a = added_by_content_.find(token);
    if (a != added_by_content_.end()) return a->second;
    auto v = vocab_.find(token);
    if (v != vocab_.end()) return v->second;
    return std::nullopt;
  }

  std::string id_to_token(int64_t id) const override {
    if (id < 0 || id >= vocab_size() || !id_known_[static_cast<size_t>(id)]) {
      throw InputError("token id " + std::to_string(id) + " is out of range for the tokenizer '" +
                       path_ + "' (vocabulary size " + std::to_string(vocab_size()) + ")");
    }
    return id_token_[static_cast<size_t>(id)];
  }

  std::string kind() const override { return "byte-level BPE (tokenizer.json)"; }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw InputError(path_ + ": " + what); }

  std::string id_too_large(const std::string& where, int64_t id) const {
    return where + " has id " + std::to_string(id) + ", far beyond the " +
           std::to_string((id_limit_ - kIdSlack) / 2) +
           " tokens the file defines (ids must be below " + std::to_string(id_limit_) + ")";
  }

  void load(const std::string& text, const std::string& origin) {
    path_ = origin;
    const json root = detail::parse_json(text, origin);
    if (!root.is_object()) fail("the top level is not a JSON object");
    auto model_it = root.find("model");
    if (model_it == root.end() || !model_it->is_object()) fail("missing \"model\" object");
    auto added_it = root.find("added_tokens");
    const size_t added = added_it != root.end() && added_it->is_array() ? added_it->size() : 0;
    auto vocab_it = model_it->find("vocab");
    const size_t vocab = vocab_it != model_it->end() ? vocab_it->size() : 0;
    id_limit_ = 2 * static_cast<int64_t>(vocab + added) + kIdSlack;
    try {
      load_model(*model_it);
      load_added_tokens(root);
      load_normalizer(root);
      load_pre_tokenizer(root);
    } catch (const json::exception& e) {
      // A field of an unexpected JSON type that the checks above did not name.
      fail(std::string("unexpected content (") + e.what() + ")");
    }
    // The decoder is always byte-level; a file that declares another one is not byte-level BPE
    // and was already rejected by the pre-tokenizer check.
  }

  void load_model(const json& model) {
    auto type_it = model.find("type");
    if (type_it != model.end() && !(type_it->is_string() && type_it->get<std::string>() == "BPE")) {
      fail("model type " + describe_type(*type_it) + " is not supported (only \"BPE\")");
    }
    auto opt_string = [&](const char* key) {
      auto it = model.find(key);
      if (it == model.end() || it->is_null()) return std::string();
      if (!it->is_string()) fail(std::string("model.") + key + " is not a string");
      return it->get<std::string>();
    };
    auto opt_bool = [&](const char* key) {
      auto it = model.find(key);
      if (it == model.end() || it->is_null()) return false;
      if (!it->is_boolean()) fail(std::string("model.") + key + " is not a boolean");
      return it->get<bool>();
    };
    if (auto it = model.find("dropout"); it != model.end() && !it->is_null()) {
      if (!it->is_number() || it->get<double>() != 0.0) {
        fail("BPE dropout is not supported (encoding must be deterministic)");
      }
    }
    if (!opt_string("continuing_subword_prefix").empty() ||
        !opt_string("end_of_word_suffix").empty()) {
      fail("BPE continuing_subword_prefix / end_of_word_suffix are not supported");
    }
    const std::string unk_token = opt_string("unk_token");
    byte_fallback_ = opt_bool("byte_fallback");
    fuse_unk_ = opt_bool("fuse_unk");
    ignore_merges_ = opt_bool("ignore_merges");

    load_vocab(model);

    // Raw bytes of each token, for decode.
    std::array<int, 0x200> char_to_byte;
    char_to_byte.fill(-1);
    for (int b = 0; b < 256; ++b) char_to_byte[byte_to_char()[b]] = b;
    id_text_.assign(id_token_.size(), std::string());
    std::vector<uint32_t> cps;
    for (size_t id = 0; id < id_token_.size(); ++id) {
      bpe::decode_utf8(id_token_[id], cps);
      std::string& text = id_text_[id];
      for (uint32_t cp : cps) {
        // A character outside the byte alphabet can only come from a hand-made vocabulary; it
        // decodes to itself.
        if (cp < char_to_byte.size() && char_to_byte[cp] >= 0) {
          text.push_back(static_cast<char>(char_to_byte[cp]));
        } else {
          bpe::append_utf8(cp, text);
        }
      }
    }

    fallback_id_.fill(-1);
    for (int b = 0; b < 256; ++b) {
      std::string s;
      bpe::append_utf8(byte_to_char()[b], s);
      auto it = vocab_.find(s);
      byte_id_[b] = it == vocab_.end() ? -1 : it->second;
      if (byte_fallback_) {
        static const char* kHex = "0123456789ABCDEF";
        const std::string name = std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">";
        auto f = vocab_.find(name);
        fallback_id_[b] = f == vocab_.end() ? -1 : f->second;
      }
    }
    if (!unk_token.empty()) {
      auto it = vocab_.find(unk_token);
      if (it == vocab_.end()) fail("unk_token \"" + unk_token + "\" is not in model.vocab");
      unk_id_ = it->second;
    }

    load_merges(model);
  }

  // model.vocab: token -> id, and the tables by id.
  void load_vocab(const json& model) {
    auto vocab_it = model.find("vocab");
    if (vocab_it == model.end() || !vocab_it->is_object()) fail("missing \"model.vocab\" object");
    vocab_.reserve(vocab_it->size());
    int64_t max_id = -1;
    for (auto it = vocab_it->begin(); it != vocab_it->end(); ++it) {
      if (!it->is_number_integer() || it->get<int64_t>() < 0 ||
          it->get<int64_t>() >= std::numeric_limits<int32_t>::max()) {
        fail("model.vocab entry \"" + it.key() + "\" does not map to a valid id");
      }
      const int64_t id = it->get<int64_t>();
      if (id >= id_limit_) fail(id_too_large("model.vocab entry \"" + it.key() + "\"", id));
      vocab_.emplace(it.key(), static_cast<int32_t>(id));
      max_id = std::max(max_id, id);
    }
    id_token_.assign(static_cast<size_t>(max_id + 1), std::string());
    id_known_.assign(static_cast<size_t>(max_id + 1), false);
    for (const auto& [token, id] : vocab_) {
      if (id_known_[id]) {
        fail("model.vocab gives id " + std::to_string(id) + " to both \"" + id_token_[id] +
             "\" and \"" + token + "\"");
      }
      id_token_[id] = token;
      id_known_[id] = true;
    }
  }

  // model.merges, in rank order.
  void load_merges(const json& model) {
    auto merges_it = model.find("merges");
    if (merges_it == model.end() || !merges_it->is_array()) fail("missing \"model.merges\" array");
    const json& merges = *merges_it;
    merges_.reserve(merges.size());
    std::string left, right;
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const json& m = merges[rank];
      // Two spellings exist: "a b" (older files) and ["a", "b"] (tokenizers >= 0.20).
      if (m.is_string()) {
        const std::string& s = m.get_ref<const std::string&>();
        const size_t space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
          fail("model.merges entry " + std::to_string(rank) + " (\"" + s +
               "\") is not two tokens separated by one space");
        }
        left = s.substr(0, space);
        right = s.substr(space + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        left = m[0].get<std::string>();
        right = m[1].get<std::string>();
      } else {
        fail("model.merges entry " + std::to_string(rank) +
             " is neither \"a b\" nor a pair of strings");
      }
      auto a = vocab_.find(left);
      auto b = vocab_.find(right);
      auto merged = vocab_.find(left + right);
      for (const auto* part : {&left, &right}) {
        if (vocab_.find(*part) == vocab_.end()) {
          fail("model.merges entry " + std::to_string(rank) + " uses the token \"" + *part +
               "\", which is not in model.vocab");
        }
      }
      if (merged == vocab_.end()) {
        fail("model.merges entry " + std::to_string(rank) + " makes \"" + left + right +
             "\", which is not in model.vocab");
      }
      merges_.insert(a->second, b->second, static_cast<int32_t>(rank), merged->second);
    }
  }

  void load_added_tokens(const json& root) {
    auto it = root.find("added_tokens");
    if (it == root.end() || it->is_null()) return;
    if (!it->is_array()) fail("\"added_tokens\" is not an array");
    added_.reserve(it->size());
    for (size_t i = 0; i < it->size(); ++i) {
      const json& t = (*it)[i];
      const std::string where = "added_tokens[" + std::to_string(i) + "]";
      if (!t.is_object()) fail(where + " is not an object");
      auto id = t.find("id");
      auto content = t.find("content");
      if (id == t.end() || !id->is_number_integer() || id->get<int64_t>() < 0 ||
          id->get<int64_t>() >= std::numeric_limits<int32_t>::max()) {
        fail(where + " has no valid \"id\"");
      }
      if (content == t.end() || !content->is_string() || content->get<std::string>().empty()) {
        fail(where + " has no valid \"content\"");
      }
      if (id->get<int64_t>() >= id_limit_) fail(id_too_large(where, id->get<int64_t>()));
      AddedToken token;
      token.id = static_cast<int32_t>(id->get<int64_t>());
      token.content = content->get<std::string>();
      auto flag = [&](const char* key, bool fallback) {
        auto f = t.find(key);
        if (f == t.end() || f->is_null()) return fallback;
        if (!f->is_boolean()) fail(where + "." + key + " is not a boolean");
        return f->get<bool>();
      };
      token.special = flag("special", false);
      token.lstrip = flag("lstrip", false);
      token.rstrip = flag("rstrip", false);
      token.single_word = flag("single_word", false);
      token.normalized = flag("normalized", !token.special);
      added_.push_back(std::move(token));
    }
    for (const auto& token : added_) {
      const size_t id = static_cast<size_t>(token.id);
      if (id >= id_token_.size()) {
        id_token_.resize(id + 1);
        id_known_.resize(id + 1, false);
        id_text_.resize(id + 1);
      }
      id_token_[id] = token.content;
      id_known_[id] = true;
      id_text_[id] = token.content;
      added_by_content_[token.content] = token.id;
      AddedTokenIndex& index = token.normalized ? normalized_index_ : raw_index_;
      index.by_first_byte[static_cast<unsigned char>(token.content[0])].push_back(&token);
      index.empty = false;
    }
    for (AddedTokenIndex* index : {&raw_index_, &normalized_index_}) {
      for (auto& list : index->by_first_byte) {
        std::stable_sort(list.begin(), list.end(), [](const AddedToken* a, const AddedToken* b) {
          return a->content.size() > b->content.size();
        });
      }
    }
  }

  void load_normalizer(const json& root) {
    auto it = root.find("normalizer");
    if (it == root.end() || it->is_null()) return;
    auto check = [&](const json& n) {
      if (!n.is_object() || n.value("type", "") != "NFC") {
        fail("normalizer " + describe_type(n.is_object() && n.contains("type") ? n["type"] : n) +
             " is not supported (only \"NFC\")");
      }
      nfc_ = true;
    };
    if (it->is_object() && it->value("type", "") == "Sequence") {
      auto list = it->find("normalizers");
      if (list == it->end() || !list->is_array()) fail("normalizer Sequence without a list");
      for (const json& n : *list) check(n);
    } else {
      check(*it);
    }
  }

  void load_pre_tokenizer(const json& root) {
    auto it = root.find("pre_tokenizer");
    if (it == root.end() || it->is_null()) fail("no pre_tokenizer (a byte-level one is required)");
    std::vector<const json*> steps;
    if (it->is_object() && it->value("type", "") == "Sequence") {
      auto list = it->find("pretokenizers");
      if (list == it->end() || !list->is_array()) fail("pre_tokenizer Sequence without a list");
      for (const json& p : *list) steps.push_back(&p);
    } else {
      steps.push_back(&*it);
    }
    bool have_split = false, have_byte_level = false;
    for (const json* p : steps) {
      const std::string type = p->is_object() ? p->value("type", "") : "";
      if (type == "Split" && !have_split && !have_byte_level) {
        const json* pattern = p->contains("pattern") ? &(*p)["pattern"] : nullptr;
        const std::string regex = pattern && pattern->is_object() && pattern->contains("Regex") &&
                                          (*pattern)["Regex"].is_string()
                                      ? (*pattern)["Regex"].get<std::string>()
                                      : std::string();
        if (regex == kQwen2Pattern) {
          pattern_ = bpe::SplitPattern::kQwen2;
        } else if (regex == kLlama3Pattern) {
          pattern_ = bpe::SplitPattern::kLlama3;
        } else {
          fail("pre_tokenizer Split pattern is not one of the supported (Qwen2, Llama 3) regexes");
        }
        if (p->value("behavior", "") != "Isolated" || p->value("invert", false)) {
          fail("pre_tokenizer Split must have behavior \"Isolated\" and invert false");
        }
        have_split = true;
      } else if (type == "ByteLevel" && !have_byte_level) {
        if (p->value("add_prefix_space", false)) {
          fail("ByteLevel add_prefix_space is not supported");
        }
        if (p->value("use_regex", true)) {
          fail("ByteLevel use_regex (the GPT-2 split) is not supported; only a Split regex");
        }
        have_byte_level = true;
      } else {
        fail("pre_tokenizer step " +
             describe_type(p->is_object() && p->contains("type") ? (*p)["type"] : *p) +
             " is not supported (expected Split then ByteLevel)");
      }
    }
    if (!have_split || !have_byte_level) {
      fail("pre_tokenizer must be a Sequence of a Split regex and ByteLevel");
    }
  }

  // Leftmost-longest matches of the tokens in `index`, non-overlapping, with the
  // single_word / lstrip / rstrip rules of `tokenizers`.
  static void find_added(std::string_view text, const AddedTokenIndex& index,
                         std::vector<AddedMatch>& out) {
    out.clear();
    if (index.empty) return;
    const size_t n = text.size();
    size_t last_end = 0;
    size_t i = 0;
    while (i < n) {
      const auto& candidates = index.by_first_byte[static_cast<unsigned char>(text[i])];
      const AddedToken* hit = nullptr;
      for (const AddedToken* t : candidates) {
        if (t->content.size() <= n - i &&
            std::memcmp(text.data() + i, t->content.data(), t->content.size()) == 0) {
          hit = t;
          break;
        }
      }
      if (!hit) {
        ++i;
        continue;
      }
      size_t begin = i, end = i + hit->content.size();
      i = end;
      size_t len = 0;
      if (hit->single_word) {
        const bool word_before = begin > 0 && is_word_char(cp_before(text, begin, &len));
        const bool word_after = end < n && is_word_char(cp_after(text, end, &len));
        if (word_before || word_after) continue;
      }
      if (hit->lstrip) {
        while (begin > last_end && is_space_char(cp_before(text, begin, &len))) begin -= len;
        begin = std::max(begin, last_end);
      }
      if (hit->rstrip) {
        while (end < n && is_space_char(cp_after(text, end, &len))) end += len;
        i = end;
      }
      out.push_back(AddedMatch{begin, end, hit->id});
      last_end = end;
    }
  }

  void encode_segment(std::string_view segment, std::vector<int64_t>& ids) const {
    std::vector<uint32_t> cps;
    std::string normalized;
    if (nfc_) {
      bpe::decode_utf8(segment, cps);
      if (std::any_of(cps.begin(), cps.end(), bpe::nfc_relevant)) {
        for (uint32_t cp : bpe::nfc(cps)) bpe::append_utf8(cp, normalized);
        segment = normalized;
      }
    }
    if (normalized_index_.empty) {
      encode_normalized(segment, ids);
      return;
    }
    std::vector<AddedMatch> matches;
    find_added(segment, normalized_index_, matches);
    size_t pos = 0;
    for (const auto& m : matches) {
      if (m.begin > pos) encode_normalized(segment.substr(pos, m.begin - pos), ids);
      ids.push_back(m.id);
      pos = m.end;
    }
    if (pos < segment.size()) encode_normalized(segment.substr(pos), ids);
  }

  void encode_normalized(std::string_view text, std::vector<int64_t>& ids) const {
    std::vector<uint32_t> cps, offsets;
    bpe::decode_utf8(text, cps, &offsets);
    std::vector<std::pair<uint32_t, uint32_t>> pieces;
    bpe::split_pieces(cps, pattern_, pieces);
    for (const auto& [b, e] : pieces) {
      encode_word(text.substr(offsets[b], offsets[e] - offsets[b]), ids);
    }
  }

  void encode_word(std::string_view word, std::vector<int64_t>& ids) const {
    if (word.size() == 1 && byte_id_[static_cast<unsigned char>(word[0])] >= 0) {
      ids.push_back(byte_id_[static_cast<unsigned char>(word[0])]);
      return;
    }
    if (ignore_merges_) {
      std::string mapped;
      for (char c : word) bpe::append_utf8(byte_to_char()[static_cast<unsigned char>(c)], mapped);
      auto it = vocab_.find(mapped);
      if (it != vocab_.end()) {
        ids.push_back(it->second);
        return;
      }
    }
    const bool cacheable = word.size() <= kMaxCachedWordBytes;
    std::string key;
    if (cacheable) {
      key.assign(word);
      std::shared_lock lock(cache_mutex_);
      auto it = cache_.find(key);
      if (it != cache_.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> result;
    merge_word(word, result);
    ids.insert(ids.end(), result.begin(), result.end());
    if (cacheable) {
      std::unique_lock lock(cache_mutex_);
      if (cache_.size() >= kCacheCapacity) cache_.clear();
      cache_.emplace(std::move(key), std::move(result));
    }
  }

  // Initial symbols of a word: one per byte. A byte missing from the vocabulary (only possible
  // in a hand-made one) becomes byte-fallback tokens, else the unknown token, else nothing —
  // the order `tokenizers` tries them in.
  void initial_symbols(std::string_view word, std::vector<int32_t>& ids) const {
    bool pending_unk = false;
    for (char ch : word) {
      const auto b = static_cast<unsigned char>(ch);
      if (byte_id_[b] >= 0) {
        if (pending_unk) ids.push_back(unk_id_), pending_unk = false;
        ids.push_back(byte_id_[b]);
        continue;
      }
      if (byte_fallback_) {
        // The fallback spells the UTF-8 bytes of the byte's stand-in character.
        std::string c;
        bpe::append_utf8(byte_to_char()[b], c);
        bool all = true;
        for (char cb : c) all = all && fallback_id_[static_cast<unsigned char>(cb)] >= 0;
        if (all) {
          if (pending_unk) ids.push_back(unk_id_), pending_unk = false;
          for (char cb : c) ids.push_back(fallback_id_[static_cast<unsigned char>(cb)]);
          continue;
        }
      }
      if (unk_id_ >= 0) {
        if (fuse_unk_) {
          pending_unk = true;
        } else {
          ids.push_back(unk_id_);
        }
      }
    }
    if (pending_unk) ids.push_back(unk_id_);
  }

  // Applies merges lowest rank first, leftmost first among equal ranks, with a heap of candidate
  // pairs over a linked list of symbols. Stale heap entries are recognised on pop because the
  // pair at their position no longer has their rank.
  void merge_word(std::string_view word, std::vector<int32_t>& out) const {
    std::vector<int32_t> id;
    id.reserve(word.size());
    initial_symbols(word, id);
    const size_t n = id.size();
    if (n < 2) {
      out = std::move(id);
      return;
    }
    std::vector<int32_t> prev(n), next(n);
    std::vector<bool> alive(n, true);
    for (size_t i = 0; i < n; ++i) {
      prev[i] = static_cast<int32_t>(i) - 1;
      next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
    }
    std::vector<uint64_t> heap;
    heap.reserve(n);
    auto push = [&](int32_t pos) {
      const auto* m = merges_.find(id[pos], id[next[pos]]);
      if (!m) return;
      heap.push_back((static_cast<uint64_t>(m->rank) << 32) | static_cast<uint32_t>(pos));
      std::push_heap(heap.begin(), heap.end(), std::greater<uint64_t>());
    };
    for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), std::greater<uint64_t>());
      const uint64_t top = heap.back();
      heap.pop_back();
      const auto rank = static_cast<int32_t>(top >> 32);
      const auto pos = static_cast<int32_t>(top & 0xFFFFFFFFu);
      if (!alive[pos] || next[pos] < 0) continue;
      const auto* m = merges_.find(id[pos], id[next[pos]]);
      if (!m || m->rank != rank) continue;
      const int32_t right = next[pos];
      id[pos] = m->merged;
      alive[right] = false;
      next[pos] = next[right];
      if (next[pos] >= 0) prev[next[pos]] = pos;
      if (prev[pos] >= 0) push(prev[pos]);
      if (next[pos] >= 0) push(pos);
    }
    out.clear();
    for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(id[i]);
  }

  std::string path_;
  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_token_;  // token string per id (vocabulary form)
  std::vector<bool> id_known_;
  std::vector<std::string> id_text_;  // decoded bytes per id
  std::array<int32_t, 256> byte_id_{};
  std::array<int32_t, 256> fallback_id_{};
  int32_t unk_id_ = -1;
  int64_t id_limit_ = kIdSlack;  // ids at or above this are refused (see kIdSlack)
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  MergeTable merges_;

  std::vector<AddedToken> added_;
  std::unordered_map<std::string, int32_t> added_by_content_;
  AddedTokenIndex raw_index_;         // normalized == false: matched in the raw text
  AddedTokenIndex normalized_index_;  // normalized == true: matched after normalization

  bool nfc_ = false;
  bpe::SplitPattern pattern_ = bpe::SplitPattern::kQwen2;

  mutable std::shared_mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> parse_bpe_tokenizer(const std::string& json_text,
                                               const std::string& origin) {
  return std::make_unique<BpeTokenizer>(json_text, origin);
}

std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::string& tokenizer_json_path) {
  return parse_bpe_tokenizer(detail::read_text_file(tokenizer_json_path), tokenizer_json_path);
}

}  // namespace ziprerank
