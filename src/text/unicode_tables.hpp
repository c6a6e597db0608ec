// Unicode data for the byte-level BPE tokenizer: regex character classes and NFC tables. The
// definitions are generated into unicode_tables.cpp by scripts/gen_unicode_tables.py.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ziprerank::detail::unicode {

/// The classes the Qwen2 pre-tokenizer regex distinguishes (\p{L}, \p{N}, \s), plus the extra
/// ones the added-token "single_word" rule needs to approximate \w.
enum CharClass : uint8_t {
  kOther = 0,
  kLetter = 1,
  kNumber = 2,
  kSpace = 3,
  kMark = 4,
  kConnector = 5,
};

/// A class holds from `first` up to the next run's `first` (the last run reaches U+10FFFF).
struct ClassRun {
  uint32_t first;
  uint8_t cls;
};

struct CccRange {
  uint32_t first;
  uint32_t last;
  uint8_t ccc;
};

/// Full canonical decomposition of `cp`: `length` code points at `offset` in kDecompositionPool.
struct Decomposition {
  uint32_t cp;
  uint16_t offset;
  uint8_t length;
};

/// Sorted by (first, second).
struct CompositionPair {
  uint32_t first;
  uint32_t second;
  uint32_t composite;
};

struct CodePointRange {
  uint32_t first;
  uint32_t last;
};

extern const char* const kUnicodeVersion;
extern const ClassRun kClassRuns[];
extern const size_t kClassRunCount;
extern const CccRange kCccRanges[];
extern const size_t kCccRangeCount;
extern const Decomposition kDecompositions[];
extern const size_t kDecompositionCount;
extern const uint32_t kDecompositionPool[];
extern const CompositionPair kCompositionPairs[];
extern const size_t kCompositionPairCount;
extern const CodePointRange kNfcCheckRanges[];
extern const size_t kNfcCheckRangeCount;

}  // namespace ziprerank::detail::unicode
