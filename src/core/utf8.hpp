// Decoding one UTF-8 sequence: the single primitive behind the tokenizer, the renderer and the
// training-data parser, which differ only in what they do with a malformed byte; and whole-string
// conversion to and from code points (the renderer, similarity scoring's word lengths); ASCII
// case folding that leaves every other byte (UTF-8 sequences included) as it is; and byte-wise
// prefix and suffix tests.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ziprerank::detail {

/// Decodes the sequence starting at s[i] (i < n) into *cp and returns its length in bytes. Returns
/// 0 for a malformed sequence (bad lead or continuation byte, truncated, overlong, surrogate, or
/// past U+10FFFF); the caller decides what the byte s[i] stands for.
inline size_t utf8_decode_one(const unsigned char* s, size_t n, size_t i, char32_t* cp) {
  const unsigned char b = s[i];
  if (b < 0x80) {
    *cp = b;
    return 1;
  }
  size_t len = 0;
  char32_t v = 0, min = 0;
  if ((b & 0xE0) == 0xC0) {
    len = 2, v = b & 0x1F, min = 0x80;
  } else if ((b & 0xF0) == 0xE0) {
    len = 3, v = b & 0x0F, min = 0x800;
  } else if ((b & 0xF8) == 0xF0) {
    len = 4, v = b & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > n) return 0;
  for (size_t k = 1; k < len; ++k) {
    const unsigned char c = s[i + k];
    if ((c & 0xC0) != 0x80) return 0;
    v = (v << 6) | (c & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

/// UTF-8 to code points; bytes that do not form valid UTF-8 become U+FFFD (one per byte).
inline std::u32string utf8_to_u32(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    char32_t cp = 0;
    const size_t len = detail::utf8_decode_one(s, n, i, &cp);
    out.push_back(len ? cp : char32_t{0xFFFD});  // a malformed byte becomes U+FFFD
    i += len ? len : 1;
  }
  return out;
}

/// Appends the UTF-8 form of `c` (at most U+10FFFF) to `out`.
inline void utf8_append(char32_t c, std::string& out) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

inline std::string u32_to_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) utf8_append(c, out);
  return out;
}

/// `text` with ASCII letters in lower case; every other byte kept.
inline std::string ascii_lower(std::string text) {
  for (char& ch : text) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  return text;
}

/// Whether `text` begins (ends) with `part`, byte for byte.
inline bool starts_with(std::string_view text, std::string_view part) {
  return text.substr(0, part.size()) == part;
}
inline bool ends_with(std::string_view text, std::string_view part) {
  return text.size() >= part.size() && text.substr(text.size() - part.size()) == part;
}

}  // namespace ziprerank::detail
