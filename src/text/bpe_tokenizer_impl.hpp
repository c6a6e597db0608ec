// Internals of the byte-level BPE tokenizer that unit tests exercise directly: UTF-8 decoding,
// Unicode classes, NFC and the pre-tokenizer split. Not part of the public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "unicode_tables.hpp"

namespace ziprerank::detail::bpe {

/// Bytes that are not valid UTF-8 are carried through as these pseudo code points (one per byte)
/// so that the byte-level model still sees, and decode restores, the exact input bytes.
constexpr uint32_t kRawByteBase = 0x110000;

/// Decodes `text` into code points; `offsets` (if given) receives the byte offset of each code
/// point plus a final entry equal to text.size().
void decode_utf8(std::string_view text, std::vector<uint32_t>& cps,
                 std::vector<uint32_t>* offsets = nullptr);
/// Appends the UTF-8 form of `cp` (a raw-byte pseudo code point appends its byte).
void append_utf8(uint32_t cp, std::string& out);

unicode::CharClass char_class(uint32_t cp);
uint8_t combining_class(uint32_t cp);

/// True when NFC could change a string containing `cp` (see kNfcCheckRanges).
bool nfc_relevant(uint32_t cp);

/// Unicode NFC of a code point sequence (raw-byte pseudo code points are left alone).
std::vector<uint32_t> nfc(const std::vector<uint32_t>& cps);
/// NFC of UTF-8 text.
std::string nfc_utf8(std::string_view text);

/// The pre-tokenizer regexes this tokenizer implements by hand. They differ only in how many
/// digits `\p{N}` takes at once.
enum class SplitPattern {
  kQwen2,   ///< ...|\p{N}|...       (Qwen2, Qwen2.5, Qwen3)
  kLlama3,  ///< ...|\p{N}{1,3}|...  (Llama 3 and derived checkpoints)
};

/// Splits code points into the matches of the pattern ("Isolated" behaviour: every code point
/// belongs to exactly one piece). Appends [begin, end) index pairs into `cps` to `pieces`.
void split_pieces(const std::vector<uint32_t>& cps, SplitPattern pattern,
                  std::vector<std::pair<uint32_t, uint32_t>>& pieces);

/// Convenience for tests: the pieces of UTF-8 text, as UTF-8 strings (no normalization).
std::vector<std::string> split_pieces_utf8(std::string_view text, SplitPattern pattern);

}  // namespace ziprerank::detail::bpe
