// libFuzzer target: tokenizer.json (byte-level BPE). Loading must only ever fail with an
// InputError. A tokenizer that loads must encode any text (valid UTF-8 or not) without throwing,
// into ids it knows, and decode any ids.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/tokenizer.hpp"

namespace {

// Texts that reach the pre-tokenizer's branches, NFC, added-token matching and raw bytes.
const char* const kSamples[] = {
    "Hello world! It's 2024, isn't it?\n\n  tabs\tand   spaces  ",
    "<|im_start|>user\nquery<|im_end|>\n<|vision_start|><|image_pad|><|vision_end|>",
    "caf\xC3\xA9 cafe\xCC\x81 \xE1\x84\x80\xE1\x85\xA1 \xEA\xB0\x80 \xE2\x84\xAB 12345 \xD9\xA3",
    "\xF0\x9F\x98\x80 \xE4\xBD\xA0\xE5\xA5\xBD \xFF\xFE\x80 \xC3 \xE2\x82 \xF0\x9F\x98",
    "[MASK] x [MASK]y <R>   z sw swx xsw \xC3\xA9\xC3\xA9 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
    "",
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<ziprerank::Tokenizer> tok;
  try {
    tok = ziprerank::parse_bpe_tokenizer(text, "fuzz");
  } catch (const ziprerank::InputError&) {
    return 0;
  }
  const int64_t vocab = tok->vocab_size();
  FUZZ_CHECK(vocab >= 0);
  std::vector<std::string> texts(std::begin(kSamples), std::end(kSamples));
  texts.push_back(text.substr(0, 512));  // the input's own bytes: arbitrary, often invalid UTF-8
  for (const std::string& s : texts) {
    const std::vector<int64_t> ids = tok->encode(s);
    for (int64_t id : ids) {
      FUZZ_CHECK(id >= 0 && id < vocab);
      const std::string token = tok->id_to_token(id);  // throws (a finding) for an unknown id
      const auto back = tok->token_to_id(token);
      FUZZ_CHECK(back.has_value());
    }
    tok->decode(ids);
  }
  // Ids from anywhere, including out of range, decode without failing.
  tok->decode({-1, 0, 1, vocab - 1, vocab, vocab + 1000, INT64_MAX, INT64_MIN});
  for (int64_t id : {int64_t{-1}, int64_t{0}, vocab - 1, vocab}) {
    try {
      tok->id_to_token(id);
    } catch (const ziprerank::InputError&) {
    }
  }
  return 0;
}
