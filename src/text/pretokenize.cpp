// The Split pre-tokenizer of Qwen2/Qwen3 and Llama 3 tokenizers, written by hand: the pieces
// their regex cuts a code point sequence into, each code point in exactly one piece.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bpe_tokenizer_impl.hpp"

namespace ziprerank::detail::bpe {

namespace {

bool is_newline(uint32_t cp) { return cp == '\r' || cp == '\n'; }

}  // namespace

void split_pieces(const std::vector<uint32_t>& cps, SplitPattern pattern,
                  std::vector<std::pair<uint32_t, uint32_t>>& pieces) {
  using unicode::kLetter;
  using unicode::kNumber;
  using unicode::kSpace;
  const size_t n = cps.size();
  if (n == 0) return;
  std::vector<uint8_t> cls(n);
  for (size_t i = 0; i < n; ++i) cls[i] = char_class(cps[i]);
  const size_t max_digits = pattern == SplitPattern::kLlama3 ? 3 : 1;

  // `(?i:...)` also lets U+017F (long s) match 's', as Oniguruma's case folding does.
  auto folded = [&](size_t k) -> uint32_t {
    const uint32_t cp = cps[k];
    if (cp >= 'A' && cp <= 'Z') return cp + ('a' - 'A');
    if (cp == 0x17F) return 's';
    return cp;
  };
  auto letter = [&](size_t k) { return cls[k] == kLetter; };
  auto space = [&](size_t k) { return cls[k] == kSpace; };
  // [^\s\p{L}\p{N}]
  auto symbol = [&](size_t k) {
    return cls[k] != kSpace && cls[k] != kLetter && cls[k] != kNumber;
  };

  // Each alternative of the pattern is tried in order at `i`, as a backtracking regex engine
  // does; the first that matches wins. Returns the match length.
  auto match_at = [&](size_t i) -> size_t {
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if (cps[i] == '\'' && i + 1 < n) {
      const uint32_t a = folded(i + 1);
      if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
      if (i + 2 < n) {
        const uint32_t b = folded(i + 2);
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
      }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    {
      size_t j = i;
      if (!letter(j) && cls[j] != kNumber && !is_newline(cps[j]) && j + 1 < n && letter(j + 1)) {
        ++j;
      }
      if (letter(j)) {
        while (j < n && letter(j)) ++j;
        return j - i;
      }
    }
    // \p{N} or \p{N}{1,3}
    if (cls[i] == kNumber) {
      size_t j = i + 1;
      while (j < n && j - i < max_digits && cls[j] == kNumber) ++j;
      return j - i;
    }
    // " ?[^\s\p{L}\p{N}]+[\r\n]*"
    {
      size_t j = cps[i] == ' ' ? i + 1 : i;
      if (j < n && symbol(j)) {
        while (j < n && symbol(j)) ++j;
        while (j < n && is_newline(cps[j])) ++j;
        return j - i;
      }
    }
    if (space(i)) {
      size_t end = i;
      while (end < n && space(end)) ++end;
      // \s*[\r\n]+ : the whitespace run up to and including its last line break.
      for (size_t k = end; k > i; --k) {
        if (is_newline(cps[k - 1])) return k - i;
      }
      // \s+(?!\S) : the run, less its last character when a non-space follows it.
      if (end == n) return end - i;
      if (end - i > 1) return end - 1 - i;
      // \s+
      return end - i;
    }
    return 1;  // unreachable: every code point is a letter, number, space or symbol
  };

  size_t i = 0;
  while (i < n) {
    const size_t len = match_at(i);
    pieces.emplace_back(static_cast<uint32_t>(i), static_cast<uint32_t>(i + len));
    i += len;
  }
}

std::vector<std::string> split_pieces_utf8(std::string_view text, SplitPattern pattern) {
  std::vector<uint32_t> cps;
  decode_utf8(text, cps);
  std::vector<std::pair<uint32_t, uint32_t>> pieces;
  split_pieces(cps, pattern, pieces);
  std::vector<std::string> out;
  for (const auto& [b, e] : pieces) {
    std::string s;
    for (uint32_t k = b; k < e; ++k) append_utf8(cps[k], s);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace ziprerank::detail::bpe
