// Unicode for the byte-level BPE tokenizer: UTF-8 decoding that keeps invalid bytes as raw-byte
// pseudo code points, character classes from the generated tables, and NFC normalization.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "bpe_tokenizer_impl.hpp"
#include "core/utf8.hpp"

namespace ziprerank::detail::bpe {

namespace {

constexpr uint8_t kClassMask = 0x7F;
constexpr uint8_t kNfcFlag = 0x80;
constexpr uint32_t kBmpSize = 0x10000;

// Class and NFC-relevance of every BMP code point in one byte each, so that the common case is a
// single load instead of a binary search over the generated run tables.
const uint8_t* bmp_table() {
  static const std::vector<uint8_t> table = [] {
    std::vector<uint8_t> t(kBmpSize, 0);
    for (size_t r = 0; r < unicode::kClassRunCount; ++r) {
      const uint32_t first = unicode::kClassRuns[r].first;
      if (first >= kBmpSize) break;
      const uint32_t end = r + 1 < unicode::kClassRunCount
                               ? std::min(unicode::kClassRuns[r + 1].first, kBmpSize)
                               : kBmpSize;
      std::fill(t.begin() + first, t.begin() + end, unicode::kClassRuns[r].cls);
    }
    for (size_t r = 0; r < unicode::kNfcCheckRangeCount; ++r) {
      const auto& range = unicode::kNfcCheckRanges[r];
      for (uint32_t cp = range.first; cp <= range.last && cp < kBmpSize; ++cp) t[cp] |= kNfcFlag;
    }
    return t;
  }();
  return table.data();
}

// Hangul syllable arithmetic from the Unicode standard (section 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr uint32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

void decompose_into(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const auto* begin = unicode::kDecompositions;
  const auto* end = begin + unicode::kDecompositionCount;
  const auto* it = std::lower_bound(
      begin, end, cp, [](const unicode::Decomposition& d, uint32_t v) { return d.cp < v; });
  if (it != end && it->cp == cp) {
    out.insert(out.end(), unicode::kDecompositionPool + it->offset,
               unicode::kDecompositionPool + it->offset + it->length);
  } else {
    out.push_back(cp);
  }
}

// The primary composite of (a, b), or 0 when there is none.
uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const auto* begin = unicode::kCompositionPairs;
  const auto* end = begin + unicode::kCompositionPairCount;
  const auto* it = std::lower_bound(
      begin, end, std::make_pair(a, b),
      [](const unicode::CompositionPair& p, const std::pair<uint32_t, uint32_t>& v) {
        return p.first < v.first || (p.first == v.first && p.second < v.second);
      });
  if (it != end && it->first == a && it->second == b) return it->composite;
  return 0;
}

}  // namespace

void decode_utf8(std::string_view text, std::vector<uint32_t>& cps,
                 std::vector<uint32_t>* offsets) {
  cps.clear();
  if (offsets) offsets->clear();
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    if (offsets) offsets->push_back(static_cast<uint32_t>(i));
    char32_t cp = 0;
    const size_t len = ziprerank::detail::utf8_decode_one(s, n, i, &cp);
    if (len) {
      cps.push_back(static_cast<uint32_t>(cp));
      i += len;
    } else {  // a malformed byte stays a raw byte, so decode(encode(x)) == x
      cps.push_back(kRawByteBase + s[i]);
      ++i;
    }
  }
  if (offsets) offsets->push_back(static_cast<uint32_t>(n));
}

void append_utf8(uint32_t cp, std::string& out) {
  if (cp >= kRawByteBase) {
    out.push_back(static_cast<char>(cp - kRawByteBase));
  } else {
    detail::utf8_append(cp, out);
  }
}

unicode::CharClass char_class(uint32_t cp) {
  if (cp < kBmpSize) return static_cast<unicode::CharClass>(bmp_table()[cp] & kClassMask);
  if (cp >= kRawByteBase) return unicode::kOther;
  const auto* begin = unicode::kClassRuns;
  const auto* end = begin + unicode::kClassRunCount;
  const auto* it = std::upper_bound(
      begin, end, cp, [](uint32_t v, const unicode::ClassRun& r) { return v < r.first; });
  return static_cast<unicode::CharClass>((it - 1)->cls);
}

uint8_t combining_class(uint32_t cp) {
  const auto* begin = unicode::kCccRanges;
  const auto* end = begin + unicode::kCccRangeCount;
  const auto* it = std::upper_bound(
      begin, end, cp, [](uint32_t v, const unicode::CccRange& r) { return v < r.first; });
  if (it == begin) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

bool nfc_relevant(uint32_t cp) {
  if (cp < kBmpSize) return (bmp_table()[cp] & kNfcFlag) != 0;
  if (cp >= kRawByteBase) return false;
  const auto* begin = unicode::kNfcCheckRanges;
  const auto* end = begin + unicode::kNfcCheckRangeCount;
  const auto* it = std::upper_bound(
      begin, end, cp, [](uint32_t v, const unicode::CodePointRange& r) { return v < r.first; });
  return it != begin && cp <= (it - 1)->last;
}

namespace {

// Full NFC of [begin, end), appended to `out`.
void nfc_span(const uint32_t* begin, const uint32_t* end, std::vector<uint32_t>& out) {
  std::vector<uint32_t> d;
  d.reserve(static_cast<size_t>(end - begin) + 8);
  for (const uint32_t* p = begin; p != end; ++p) {
    if (nfc_relevant(*p)) {
      decompose_into(*p, d);
    } else {
      d.push_back(*p);
    }
  }
  std::vector<uint8_t> ccc(d.size());
  for (size_t i = 0; i < d.size(); ++i) ccc[i] = nfc_relevant(d[i]) ? combining_class(d[i]) : 0;
  // Canonical ordering: a stable sort of each run of non-starters by combining class. Runs are
  // short, so insertion sort.
  for (size_t i = 1; i < d.size(); ++i) {
    if (ccc[i] == 0) continue;
    for (size_t j = i; j > 0 && ccc[j - 1] > ccc[j]; --j) {
      std::swap(ccc[j - 1], ccc[j]);
      std::swap(d[j - 1], d[j]);
    }
  }
  // Canonical composition: a character combines with the last starter unless something between
  // them blocks it (a character of equal or higher class, or a starter).
  constexpr size_t kNone = std::numeric_limits<size_t>::max();
  size_t starter = kNone;
  uint8_t last_ccc = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    const uint32_t cp = d[i];
    const uint8_t c = ccc[i];
    if (starter != kNone) {
      const bool adjacent = out.size() - 1 == starter;
      if (adjacent || last_ccc < c) {
        if (uint32_t composite = compose(out[starter], cp)) {
          out[starter] = composite;
          continue;
        }
      }
    }
    if (c == 0) starter = out.size();
    last_ccc = c;
    out.push_back(cp);
  }
}

}  // namespace

// A code point that is not NFC-relevant is a starter that nothing decomposes into or composes
// onto from the left, so NFC never looks across it: only the stretches around relevant code
// points (each with the starter just before it) need the full algorithm.
std::vector<uint32_t> nfc(const std::vector<uint32_t>& cps) {
  std::vector<uint32_t> out;
  out.reserve(cps.size() + 8);
  const size_t n = cps.size();
  size_t i = 0;
  while (i < n) {
    if (!nfc_relevant(cps[i])) {
      out.push_back(cps[i++]);
      continue;
    }
    size_t begin = i;
    if (begin > 0) {
      --begin;  // the preceding starter may compose with what follows
      out.pop_back();
    }
    size_t end = i + 1;
    while (end < n && nfc_relevant(cps[end])) ++end;
    nfc_span(cps.data() + begin, cps.data() + end, out);
    i = end;
  }
  return out;
}

std::string nfc_utf8(std::string_view text) {
  std::vector<uint32_t> cps;
  decode_utf8(text, cps);
  std::string out;
  out.reserve(text.size());
  for (uint32_t cp : nfc(cps)) append_utf8(cp, out);
  return out;
}

}  // namespace ziprerank::detail::bpe
