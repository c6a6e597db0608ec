// Tests of the byte-level BPE tokenizer: a small tokenizer.json written here (always runs), the
// Unicode internals, and the real Qwen3 tokenizer against ids from its reference encoder
// (skipped when scripts/fetch_qwen3_tokenizer.sh has not been run).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../../src/text/bpe_tokenizer_impl.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/tokenizer.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ziprerank::InputError;
using ziprerank::Tokenizer;
using Ids = std::vector<int64_t>;

const char* const kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Timing checks only mean something in an optimized build without sanitizers.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ZIPRERANK_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ZIPRERANK_TEST_SANITIZED 1
#endif
#if defined(NDEBUG) && !defined(ZIPRERANK_TEST_SANITIZED)
constexpr bool kOptimizedBuild = true;
#else
constexpr bool kOptimizedBuild = false;
#endif

// The source tree: the fixtures folder is tests/fixtures in it (an absolute path from the build).
fs::path repo_root() { return fs::path(ZIPRERANK_TEST_FIXTURES).parent_path().parent_path(); }

// The byte -> character map of byte-level BPE, written out independently of the library.
std::string byte_char(int b) {
  int code = b;
  const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
  if (!printable) {
    int n = 0;
    for (int x = 0; x < b; ++x) {
      if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) ++n;
    }
    code = 256 + n;
  }
  std::string s;
  if (code < 0x80) {
    s.push_back(static_cast<char>(code));
  } else {
    s.push_back(static_cast<char>(0xC0 | (code >> 6)));
    s.push_back(static_cast<char>(0x80 | (code & 0x3F)));
  }
  return s;
}

json added_token(int id, const std::string& content, bool special, bool normalized = false) {
  return {{"id", id},        {"content", content},       {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", normalized}, {"special", special}};
}

// A Qwen-shaped tokenizer.json with the 256 byte characters as ids 0..255 and a few merges.
json synthetic_tokenizer() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"},   {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"Ġ", "w"},    {"o", "r"},
      {"Ġw", "or"}, {"b", "c"}, {"a", "b"},   {"a", "a"},    {"Ġwor", "l"}, {"Ġworl", "d"}};
  json merge_list = json::array();
  int next_id = 256;
  for (const auto& [a, b] : merges) {
    merge_list.push_back({a, b});
    if (!vocab.contains(a + b)) vocab[a + b] = next_id++;
  }
  json added = json::array();
  added.push_back(added_token(300, "<|im_start|>", true));
  added.push_back(added_token(301, "<x>", false));
  added.push_back(added_token(302, "<|im", false));
  json lstrip = added_token(303, "[MASK]", true);
  lstrip["lstrip"] = true;
  added.push_back(lstrip);
  json rstrip = added_token(304, "<R>", true);
  rstrip["rstrip"] = true;
  added.push_back(rstrip);
  json single = added_token(305, "sw", false);
  single["single_word"] = true;
  added.push_back(single);
  added.push_back(added_token(306, "\xC3\xA9", false, /*normalized=*/true));  // é
  return {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers", json::array({{{"type", "Split"},
                                        {"pattern", {{"Regex", kQwen2Regex}}},
                                        {"behavior", "Isolated"},
                                        {"invert", false}},
                                       {{"type", "ByteLevel"},
                                        {"add_prefix_space", false},
                                        {"trim_offsets", false},
                                        {"use_regex", false}}})}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"byte_fallback", false},
        {"vocab", vocab},
        {"merges", merge_list}}},
  };
}

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("ziprerank_bpe_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    const fs::path p = path_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }

 private:
  fs::path path_;
};

std::unique_ptr<Tokenizer> load_synthetic(const TempDir& dir, const json& j) {
  return ziprerank::load_bpe_tokenizer(dir.write("tokenizer.json", j.dump()));
}

class SyntheticBpe : public ::testing::Test {
 protected:
  void SetUp() override { tok_ = load_synthetic(dir_, synthetic_tokenizer()); }
  int64_t id(const std::string& token) const { return tok_->token_to_id(token).value(); }

  TempDir dir_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(SyntheticBpe, MergesFollowRank) {
  EXPECT_EQ(tok_->encode("hello"), Ids({id("hello")}));
  EXPECT_EQ(tok_->encode("hello world"), Ids({id("hello"), id("Ġworld")}));
  // "bc" ranks before "ab", so "abc" is a + bc, not ab + c.
  EXPECT_EQ(tok_->encode("abc"), Ids({'a', id("bc")}));
  EXPECT_EQ(tok_->encode("abab"), Ids({id("ab"), id("ab")}));
  // Equal ranks merge leftmost first.
  EXPECT_EQ(tok_->encode("aaa"), Ids({id("aa"), 'a'}));
  EXPECT_EQ(tok_->encode("aaaa"), Ids({id("aa"), id("aa")}));
  EXPECT_EQ(tok_->encode(""), Ids{});
}

TEST_F(SyntheticBpe, UnseenBytesFallBackToByteTokens) {
  // No merge covers these bytes: each byte becomes its own token.
  const std::string euro = "\xE2\x82\xAC";
  EXPECT_EQ(tok_->encode(euro), Ids({0xE2, 0x82, 0xAC}));
  EXPECT_EQ(tok_->decode(tok_->encode(euro)), euro);
  EXPECT_EQ(tok_->encode("\t"), Ids({'\t'}));
}

TEST_F(SyntheticBpe, AddedTokensAreSplitOutFirst) {
  EXPECT_EQ(tok_->encode("<|im_start|>hello"), Ids({300, id("hello")}));
  // Leftmost-longest: the full special token wins over its prefix "<|im".
  EXPECT_EQ(tok_->encode("<|im_start|><|im_end"), Ids({300, 302, '_', 'e', 'n', 'd'}));
  EXPECT_EQ(tok_->encode("a<x>b"), Ids({'a', 301, 'b'}));
  // lstrip swallows the whitespace before the token, rstrip the whitespace after it.
  EXPECT_EQ(tok_->encode("a [MASK] b"), Ids({'a', 303, id("Ġ"), 'b'}));
  EXPECT_EQ(tok_->encode("x<R>  \n y"), Ids({'x', 304, 'y'}));
  // single_word: only matched when not inside a word.
  EXPECT_EQ(tok_->encode("a sw b"), Ids({'a', id("Ġ"), 305, id("Ġ"), 'b'}));
}

TEST_F(SyntheticBpe, SingleWordTokenInsideWordIsText) {
  const Ids ids = tok_->encode("swing");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 305), 0);
  EXPECT_EQ(tok_->decode(ids), "swing");
}

TEST_F(SyntheticBpe, NormalizedAddedTokenMatchesAfterNfc) {
  // "e" + combining acute is NFC-composed to "é" before normalized added tokens are matched.
  EXPECT_EQ(tok_->encode("e\xCC\x81"), Ids({306}));
  EXPECT_EQ(tok_->encode("caf\xC3\xA9"), Ids({'c', 'a', 'f', 306}));
}

TEST_F(SyntheticBpe, DecodeRoundTrips) {
  for (const std::string s : {"hello world", "  spaces\n\n\ttabs", "<|im_start|>user\nhi",
                              "caf\xC3\xA9 \xF0\x9F\x98\x80", "DON'T stop", "12345 abc"}) {
    EXPECT_EQ(tok_->decode(tok_->encode(s)), s) << s;
  }
  EXPECT_EQ(tok_->decode({id("hello"), 300, 999999, -5}), "hello<|im_start|>");
}

TEST_F(SyntheticBpe, InvalidUtf8IsKeptAsBytes) {
  const std::string bad =
      std::string("ok \xFF\xFE x \xC3(", 9) + std::string("\xED\xA0\x80\xC0\xAF", 5);
  const Ids ids = tok_->encode(bad);
  EXPECT_FALSE(ids.empty());
  EXPECT_EQ(tok_->decode(ids), bad);
  const std::string truncated = "abc\xE2\x82";
  EXPECT_EQ(tok_->decode(tok_->encode(truncated)), truncated);
}

TEST_F(SyntheticBpe, VocabularyQueries) {
  EXPECT_EQ(tok_->vocab_size(), 307);
  EXPECT_EQ(tok_->token_to_id("hello"), id("hello"));
  EXPECT_EQ(tok_->token_to_id("<|im_start|>"), 300);
  EXPECT_FALSE(tok_->token_to_id("no such token").has_value());
  EXPECT_EQ(tok_->id_to_token(id("Ġworld")), "Ġworld");
  EXPECT_EQ(tok_->id_to_token(300), "<|im_start|>");
  EXPECT_THROW(tok_->id_to_token(307), InputError);
  EXPECT_THROW(tok_->id_to_token(-1), InputError);
  EXPECT_THROW(tok_->id_to_token(280), InputError);  // a gap between vocabulary and added ids
  EXPECT_EQ(tok_->kind(), "byte-level BPE (tokenizer.json)");
}

TEST(BpeTokenizerErrors, MalformedFilesNameTheFileAndTheProblem) {
  TempDir dir;
  auto expect_error = [&](const std::string& text, const std::string& needle) {
    const std::string path = dir.write("bad.json", text);
    try {
      ziprerank::load_bpe_tokenizer(path);
      ADD_FAILURE() << "no error for: " << text.substr(0, 200);
    } catch (const InputError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(path), std::string::npos) << what;
      EXPECT_NE(what.find(needle), std::string::npos) << what;
    }
  };
  expect_error("{not json", "invalid JSON");
  expect_error("[1, 2]", "not a JSON object");
  expect_error(R"({"added_tokens": []})", "\"model\"");

  json j = synthetic_tokenizer();
  j["model"]["type"] = "WordPiece";
  expect_error(j.dump(), "WordPiece");

  j = synthetic_tokenizer();
  j["model"]["merges"].push_back({"h", "zzz"});
  expect_error(j.dump(), "zzz");

  j = synthetic_tokenizer();
  j["model"]["merges"].push_back("no-space-here");
  expect_error(j.dump(), "merges entry 12");

  j = synthetic_tokenizer();
  j["model"]["merges"].push_back(42);
  expect_error(j.dump(), "merges entry 12");

  j = synthetic_tokenizer();
  j["model"]["merges"].push_back({"a", "c"});  // "ac" is not in the vocabulary
  expect_error(j.dump(), "\"ac\"");

  j = synthetic_tokenizer();
  j["model"].erase("vocab");
  expect_error(j.dump(), "model.vocab");

  j = synthetic_tokenizer();
  j["model"]["vocab"]["dup"] = 5;
  expect_error(j.dump(), "id 5");

  j = synthetic_tokenizer();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+";
  expect_error(j.dump(), "Split pattern");

  j = synthetic_tokenizer();
  j["normalizer"] = {{"type", "NFKC"}};
  expect_error(j.dump(), "NFKC");

  j = synthetic_tokenizer();
  j["added_tokens"][0].erase("id");
  expect_error(j.dump(), "added_tokens[0]");

  EXPECT_THROW(ziprerank::load_bpe_tokenizer(
                   (fs::temp_directory_path() / "ziprerank_no_such" / "tokenizer.json").string()),
               InputError);
}

TEST(BpeTokenizerFormats, OldStyleMergesAndByteFallback) {
  TempDir dir;
  json j = synthetic_tokenizer();
  json merges = json::array();
  for (const auto& m : j["model"]["merges"]) {
    merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  }
  j["model"]["merges"] = merges;
  const auto tok = load_synthetic(dir, j);
  EXPECT_EQ(tok->encode("hello"), Ids({tok->token_to_id("hello").value()}));

  // A vocabulary without the byte for "!" (0x21) but with <0x21>: byte fallback uses it.
  json k = synthetic_tokenizer();
  k["model"]["vocab"].erase("!");
  k["model"]["vocab"]["<0x21>"] = 400;
  k["model"]["byte_fallback"] = true;
  const auto fb = load_synthetic(dir, k);
  EXPECT_EQ(fb->encode("a!"), Ids({'a', 400}));
  // Without byte fallback or an unknown token the byte is dropped, as `tokenizers` does.
  k["model"]["byte_fallback"] = false;
  const auto drop = load_synthetic(dir, k);
  EXPECT_EQ(drop->encode("a!"), Ids({'a'}));
}

// ----- Unicode internals ------------------------------------------------------------------------

using ziprerank::detail::bpe::nfc_utf8;
using ziprerank::detail::bpe::split_pieces_utf8;
using ziprerank::detail::bpe::SplitPattern;
using Pieces = std::vector<std::string>;

TEST(BpePreTokenizer, SplitsLikeTheQwen2Regex) {
  auto split = [](const std::string& s) { return split_pieces_utf8(s, SplitPattern::kQwen2); };
  EXPECT_EQ(split("Hello world"), Pieces({"Hello", " world"}));
  EXPECT_EQ(split("don't DON'T"), Pieces({"don", "'t", " DON", "'T"}));
  EXPECT_EQ(split("we'RE they've I'm"), Pieces({"we", "'RE", " they", "'ve", " I", "'m"}));
  EXPECT_EQ(split("12345"), Pieces({"1", "2", "3", "4", "5"}));
  EXPECT_EQ(split("x  \n\n  y"), Pieces({"x", "  \n\n", " ", " y"}));
  EXPECT_EQ(split("a  "), Pieces({"a", "  "}));
  EXPECT_EQ(split("  hello"), Pieces({" ", " hello"}));
  EXPECT_EQ(split("foo(); \n"), Pieces({"foo", "();", " \n"}));
  EXPECT_EQ(split(" !!!\n\nx"), Pieces({" !!!\n\n", "x"}));
  EXPECT_EQ(split("\thello"), Pieces({"\thello"}));
  EXPECT_EQ(split("\nhello"), Pieces({"\n", "hello"}));
  EXPECT_EQ(split("3rd"), Pieces({"3", "rd"}));
  EXPECT_EQ(split("\xE4\xBD\xA0\xE5\xA5\xBD!"), Pieces({"\xE4\xBD\xA0\xE5\xA5\xBD", "!"}));
  // Onig's \s is the White_Space property: U+0085 is a space, U+FEFF is not.
  EXPECT_EQ(split("!\xC2\x85"), Pieces({"!", "\xC2\x85"}));
  EXPECT_EQ(split("!\xEF\xBB\xBF"), Pieces({"!\xEF\xBB\xBF"}));
  // Case-insensitive matching folds U+017F (long s) to 's'.
  EXPECT_EQ(split("'\xC5\xBFt"), Pieces({"'\xC5\xBF", "t"}));
  EXPECT_EQ(split(""), Pieces{});
}

TEST(BpePreTokenizer, Llama3GroupsThreeDigits) {
  EXPECT_EQ(split_pieces_utf8("1234567", SplitPattern::kLlama3), Pieces({"123", "456", "7"}));
}

TEST(BpeNfc, ComposesReordersAndKeepsExclusions) {
  EXPECT_EQ(nfc_utf8("cafe\xCC\x81"), "caf\xC3\xA9");
  EXPECT_EQ(nfc_utf8("caf\xC3\xA9"), "caf\xC3\xA9");
  // Hangul jamo compose arithmetically: U+1100 U+1161 U+11A8 -> U+AC01.
  EXPECT_EQ(nfc_utf8("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");
  // a + acute + dot below: reordered (dot below first), then composed to U+1EA1 + acute.
  EXPECT_EQ(nfc_utf8("a\xCC\x81\xCC\xA3"), "\xE1\xBA\xA1\xCC\x81");
  // U+0958 is a composition exclusion: it stays decomposed.
  EXPECT_EQ(nfc_utf8("\xE0\xA5\x98"), "\xE0\xA4\x95\xE0\xA4\xBC");
  // Singletons: ANGSTROM SIGN -> U+00C5, OHM SIGN -> U+03A9.
  EXPECT_EQ(nfc_utf8("\xE2\x84\xAB\xE2\x84\xA6"), "\xC3\x85\xCE\xA9");
  // Compatibility characters are left alone by NFC.
  EXPECT_EQ(nfc_utf8("\xEF\xAC\x81\xE2\x91\xA0"), "\xEF\xAC\x81\xE2\x91\xA0");
  // Invalid bytes pass through untouched.
  EXPECT_EQ(nfc_utf8(std::string("e\xFF\xCC\x81", 4)), std::string("e\xFF\xCC\x81", 4));
}

// ----- The real Qwen3 tokenizer -----------------------------------------------------------------

fs::path qwen3_tokenizer_path() {
  if (const char* env = std::getenv("ZIPRERANK_QWEN3_TOKENIZER"); env && *env) return env;
  return repo_root() / ".cache" / "qwen3-tokenizer" / "package" / "models" / "tokenizer.json";
}

class Qwen3Tokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const fs::path path = qwen3_tokenizer_path();
    if (!fs::exists(path)) return;
    const auto t0 = std::chrono::steady_clock::now();
    tok_ = ziprerank::load_bpe_tokenizer(path.string()).release();
    load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "[ info ] loaded " << path.string() << " in " << load_seconds_ << " s\n";
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (!tok_) {
      GTEST_SKIP() << "Qwen3 tokenizer.json not found at " << qwen3_tokenizer_path().string()
                   << "; run scripts/fetch_qwen3_tokenizer.sh (or set ZIPRERANK_QWEN3_TOKENIZER)";
    }
  }

  static Tokenizer* tok_;
  static double load_seconds_;
};

Tokenizer* Qwen3Tokenizer::tok_ = nullptr;
double Qwen3Tokenizer::load_seconds_ = 0;

struct FixtureCase {
  std::string text;
  Ids ids;
};

std::vector<FixtureCase> load_fixture() {
#ifdef ZIPRERANK_TEST_FIXTURES
  const fs::path fixtures = ZIPRERANK_TEST_FIXTURES;
#else
  const fs::path fixtures = repo_root() / "tests" / "fixtures";
#endif
  const fs::path path = fixtures / "tokenizer" / "qwen3_encode.jsonl";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  std::vector<FixtureCase> cases;
  std::string line;
  // Lines end at '\n' only: U+2028 inside the JSON strings is not a line break here.
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const json j = json::parse(line);
    if (j.contains("meta")) continue;
    cases.push_back({j.at("text").get<std::string>(), j.at("ids").get<Ids>()});
  }
  return cases;
}

TEST_F(Qwen3Tokenizer, KnownIds) {
  EXPECT_EQ(tok_->vocab_size(), 151669);
  EXPECT_EQ(tok_->encode("Search Query: hello world"), Ids({5890, 11361, 25, 23811, 1879}));
  EXPECT_EQ(tok_->encode("[A]"), Ids({22519, 60}));
  EXPECT_EQ(tok_->encode("<|im_start|>"), Ids({151644}));
  EXPECT_EQ(tok_->encode("<|im_end|>"), Ids({151645}));
  EXPECT_EQ(tok_->encode("["), Ids({58}));
  EXPECT_EQ(tok_->encode("A"), Ids({32}));
  EXPECT_EQ(tok_->encode("T"), Ids({51}));
  EXPECT_EQ(tok_->token_to_id("<|im_start|>"), 151644);
  EXPECT_EQ(tok_->token_to_id("<|im_end|>"), 151645);
  EXPECT_EQ(tok_->token_to_id("["), 58);
  EXPECT_EQ(tok_->token_to_id("A"), 32);
  EXPECT_EQ(tok_->token_to_id("T"), 51);
  EXPECT_EQ(tok_->id_to_token(151668), "</think>");
  EXPECT_EQ(tok_->id_to_token(1879), "\xC4\xA0world");  // "Ġworld"
  EXPECT_THROW(tok_->id_to_token(151669), InputError);
  // Checked against Hugging Face `tokenizers`: U+0085 is whitespace there.
  EXPECT_EQ(tok_->encode("!\xC2\x85"), Ids({0, 126, 227}));
  if (kOptimizedBuild) {
    EXPECT_LT(load_seconds_, 2.0) << "loading tokenizer.json should take well under 2 s";
  }
}

TEST_F(Qwen3Tokenizer, MatchesReferenceFixture) {
  const std::vector<FixtureCase> cases = load_fixture();
  ASSERT_GE(cases.size(), 10000u);
  size_t mismatches = 0;
  size_t total_bytes = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& c : cases) {
    total_bytes += c.text.size();
    const Ids got = tok_->encode(c.text);
    if (got != c.ids) {
      if (++mismatches <= 10) {
        ADD_FAILURE() << "mismatch for " << json(c.text).dump() << "\n  expected "
                      << json(c.ids).dump() << "\n  got      " << json(got).dump();
      }
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[ info ] " << cases.size() << " fixture strings, " << mismatches
            << " mismatches; encoded " << total_bytes << " bytes in " << seconds << " s\n";
  EXPECT_EQ(mismatches, 0u);

  // The reference ids decode to the NFC form of each text.
  size_t decode_mismatches = 0;
  for (const auto& c : cases) {
    if (tok_->decode(c.ids) != nfc_utf8(c.text) && ++decode_mismatches <= 5) {
      ADD_FAILURE() << "decode mismatch for " << json(c.text).dump();
    }
  }
  EXPECT_EQ(decode_mismatches, 0u);
}

TEST_F(Qwen3Tokenizer, ConcurrentEncodesAgree) {
  const std::vector<FixtureCase> cases = load_fixture();
  std::atomic<size_t> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < cases.size(); i += 2) {
        if (tok_->encode(cases[i].text) != cases[i].ids) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0u);
}

TEST_F(Qwen3Tokenizer, EncodeThroughput) {
  // Varied text with few repeats, so that the word cache does not do all the work.
  std::string text;
  for (const auto& c : load_fixture()) text += c.text + "\n";
  const auto t0 = std::chrono::steady_clock::now();
  const Ids ids = tok_->encode(text);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[ info ] one " << text.size() << "-byte string -> " << ids.size() << " ids in "
            << seconds << " s (" << text.size() / seconds / 1e6 << " MB/s)\n";
  EXPECT_EQ(tok_->decode(ids), nfc_utf8(text));
}

}  // namespace
