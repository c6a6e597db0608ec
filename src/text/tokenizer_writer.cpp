// Writing a byte-level BPE tokenizer.json from scratch (the tokenizer of a randomly initialised
// model folder when no tokenizer is given).
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/utf8.hpp"
#include "ziprerank/errors.hpp"
#include "ziprerank/tokenizer.hpp"

namespace ziprerank {

using nlohmann::json;

namespace {

// The Qwen2/Qwen3 pre-tokenizer pattern (as written in their tokenizer.json).
constexpr const char* kQwenSplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// GPT-2's byte -> printable character table: printable Latin-1 bytes map to themselves, the
// rest to U+0100 onwards. The id of a byte is its index in this order.
std::vector<std::pair<int, int>> byte_unicode_order() {
  std::vector<std::pair<int, int>> order;  // (byte, code point)
  std::vector<bool> taken(256, false);
  auto range = [&](int lo, int hi) {
    for (int b = lo; b <= hi; ++b) {
      order.emplace_back(b, b);
      taken[b] = true;
    }
  };
  range('!', '~');
  range(0xA1, 0xAC);
  range(0xAE, 0xFF);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    if (!taken[b]) order.emplace_back(b, next++);
  }
  return order;
}

std::string utf8(int cp) {
  std::string s;
  detail::utf8_append(static_cast<char32_t>(cp), s);
  return s;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text << "\n";
  if (!out) throw InputError("cannot write '" + path + "'");
}

}  // namespace

SpecialTokenIds write_byte_level_tokenizer(const std::string& path) {
  json vocab = json::object();
  const auto order = byte_unicode_order();
  for (size_t i = 0; i < order.size(); ++i) vocab[utf8(order[i].second)] = i;
  const int64_t base = static_cast<int64_t>(order.size());
  const std::vector<std::string> specials = {"<|endoftext|>",    "<|im_start|>",   "<|im_end|>",
                                             "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                                             "<|video_pad|>"};
  json added = json::array();
  for (size_t i = 0; i < specials.size(); ++i) {
    added.push_back({{"id", base + static_cast<int64_t>(i)},
                     {"content", specials[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  json tok = {{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", added},
              {"normalizer", {{"type", "NFC"}}},
              {"pre_tokenizer",
               {{"type", "Sequence"},
                {"pretokenizers", json::array({{{"type", "Split"},
                                                {"pattern", {{"Regex", kQwenSplitPattern}}},
                                                {"behavior", "Isolated"},
                                                {"invert", false}},
                                               {{"type", "ByteLevel"},
                                                {"add_prefix_space", false},
                                                {"trim_offsets", false},
                                                {"use_regex", false}}})}}},
              {"post_processor", nullptr},
              {"decoder",
               {{"type", "ByteLevel"},
                {"add_prefix_space", false},
                {"trim_offsets", false},
                {"use_regex", false}}},
              {"model",
               {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", ""},
                {"end_of_word_suffix", ""},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", json::array()}}}};
  write_file(path, tok.dump(1));
  return SpecialTokenIds{base, base + 1, base + 2, base + 3, base + 4, base + 5, base + 6};
}

}  // namespace ziprerank
