#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "ziprerank/errors.hpp"
#include "ziprerank/tokenizer.hpp"

using namespace ziprerank;

namespace {
const std::string kSpm = std::string(ZIPRERANK_TEST_FIXTURES) + "/spm";

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}
}  // namespace

TEST(SentencePiece, MatchesCommandLineEncoderInTheSameProcessAsLibtorch) {
  std::string why;
  if (!sentencepiece_available(&why)) GTEST_SKIP() << why;
  auto tok = load_sentencepiece_tokenizer(kSpm + "/tiny.model");
  EXPECT_EQ(tok->kind(), "SentencePiece (tokenizer.model)");
  EXPECT_EQ(tok->vocab_size(), 120);
  const auto texts = lines_of(kSpm + "/samples.txt");
  const auto ids = lines_of(kSpm + "/samples.ids");
  ASSERT_EQ(texts.size(), ids.size());
  ASSERT_FALSE(texts.empty());
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<int64_t> expected;
    std::istringstream ss(ids[i]);
    for (int64_t id; ss >> id;) expected.push_back(id);
    EXPECT_EQ(tok->encode(texts[i]), expected) << texts[i];
  }
}

TEST(SentencePiece, SpecialTokensArePieces) {
  std::string why;
  if (!sentencepiece_available(&why)) GTEST_SKIP() << why;
  auto tok = load_sentencepiece_tokenizer(kSpm + "/tiny.model");
  const auto im_start = tok->token_to_id("<|im_start|>");
  ASSERT_TRUE(im_start.has_value());
  EXPECT_EQ(tok->id_to_token(*im_start), "<|im_start|>");
  EXPECT_FALSE(tok->token_to_id("definitely-not-a-piece").has_value());
  EXPECT_TRUE(tok->token_to_id("<unk>").has_value());
  EXPECT_EQ(tok->decode(tok->encode("Call me Ishmael.")), "Call me Ishmael.");
  EXPECT_THROW(tok->id_to_token(100000), InputError);
  EXPECT_THROW(tok->decode({-1}), InputError);
}

TEST(SentencePiece, MalformedModelIsAnInputError) {
  std::string why;
  if (!sentencepiece_available(&why)) GTEST_SKIP() << why;
  EXPECT_THROW(load_sentencepiece_tokenizer(kSpm + "/corpus.txt"), InputError);
  EXPECT_THROW(load_sentencepiece_tokenizer(kSpm + "/does-not-exist.model"), InputError);
}

TEST(Tokenizer, FolderWithoutTokenizerIsAnInputError) {
  try {
    load_tokenizer(std::string(ZIPRERANK_TEST_FIXTURES) + "/config");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no tokenizer.json or tokenizer.model"),
              std::string::npos);
  }
}
