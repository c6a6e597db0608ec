#!/usr/bin/env python3
"""Generates src/text/unicode_tables.cpp: the Unicode data the byte-level BPE tokenizer needs.

Usage: python3 scripts/gen_unicode_tables.py [OUTPUT]   (default: src/text/unicode_tables.cpp)

The data comes from Python's `unicodedata`, so the Unicode version is the one of the Python that
runs this script (it is written into the output). Use Python >= 3.13 (Unicode 15.1), the closest to
what the Hugging Face `tokenizers` library links (Oniguruma and unicode-normalization, Unicode 15).

Tables written (the declarations are in src/text/unicode_tables.hpp):
  * kClassRuns: the regex classes of the Qwen2 pre-tokenizer pattern as runs over all code points:
    \\p{L} (Lu Ll Lt Lm Lo), \\p{N} (Nd Nl No), \\s (the White_Space property, which is what
    Oniguruma's \\s and Rust's char::is_whitespace test), marks (M*) and connector punctuation (Pc);
    marks and Pc only matter for the "single_word" rule of added tokens (a \\w approximation).
  * kCccRanges: canonical combining classes that are not 0.
  * kDecompositions / kDecompositionPool: full (recursively applied) canonical decompositions,
    Hangul syllables excluded (they are decomposed arithmetically).
  * kCompositionPairs: (first, second) -> primary composite, for canonical composition.
  * kNfcCheckRanges: code points that can make NFC change a string (they have a decomposition, a
    non-zero combining class, or can be the second half of a composition). A string with none of
    them is already in NFC, which lets the tokenizer skip normalization for most text.
"""

import os
import sys
import unicodedata

# PropList.txt White_Space; unchanged since Unicode 6.3 (U+180E left the set then).
WHITE_SPACE = (
    list(range(0x09, 0x0E))
    + [0x20, 0x85, 0xA0, 0x1680]
    + list(range(0x2000, 0x200B))
    + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)

CLASS_OTHER, CLASS_LETTER, CLASS_NUMBER, CLASS_SPACE, CLASS_MARK, CLASS_CONNECTOR = range(6)
CLASS_NAMES = ["kOther", "kLetter", "kNumber", "kSpace", "kMark", "kConnector"]

MAX_CP = 0x110000
S_BASE, S_COUNT = 0xAC00, 11172


def char_class(cp, white):
    if cp in white:
        return CLASS_SPACE
    cat = unicodedata.category(chr(cp))
    if cat[0] == "L":
        return CLASS_LETTER
    if cat[0] == "N":
        return CLASS_NUMBER
    if cat[0] == "M":
        return CLASS_MARK
    if cat == "Pc":
        return CLASS_CONNECTOR
    return CLASS_OTHER


def canonical_decomposition(cp):
    d = unicodedata.decomposition(chr(cp))
    if not d or d.startswith("<"):
        return None
    return [int(x, 16) for x in d.split()]


def full_decomposition(cp):
    d = canonical_decomposition(cp)
    if d is None:
        return [cp]
    out = []
    for x in d:
        out.extend(full_decomposition(x))
    return out


def runs(values):
    """Yields (first, value) at each change of value over 0..MAX_CP-1."""
    prev = None
    for cp, v in enumerate(values):
        if v != prev:
            yield cp, v
            prev = v


def ranges(cps):
    """Merges a sorted list of code points into inclusive (first, last) ranges."""
    out = []
    for cp in cps:
        if out and out[-1][1] + 1 == cp:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def fmt_rows(items, per_line):
    lines = []
    for i in range(0, len(items), per_line):
        lines.append("    " + " ".join(items[i : i + per_line]))
    return "\n".join(lines)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.join(here, "..", "src", "text", "unicode_tables.cpp")
    out_path = os.path.normpath(sys.argv[1] if len(sys.argv) > 1 else default_out)
    if tuple(int(x) for x in unicodedata.unidata_version.split(".")) < (15, 1, 0):
        print(
            "warning: this Python has Unicode %s; the committed tables use 15.1 (Python 3.13)"
            % unicodedata.unidata_version,
            file=sys.stderr,
        )
    white = set(WHITE_SPACE)
    surrogates = range(0xD800, 0xE000)

    classes = [char_class(cp, white) for cp in range(MAX_CP)]
    class_runs = list(runs(classes))

    ccc_values = [unicodedata.combining(chr(cp)) for cp in range(MAX_CP)]
    ccc_ranges = []
    for cp, v in enumerate(ccc_values):
        if v == 0:
            continue
        if ccc_ranges and ccc_ranges[-1][1] + 1 == cp and ccc_ranges[-1][2] == v:
            ccc_ranges[-1][1] = cp
        else:
            ccc_ranges.append([cp, cp, v])

    decompositions = []  # (cp, offset, length)
    pool = []
    pairs = []  # (first, second, composite)
    seconds = set()
    for cp in range(MAX_CP):
        if cp in surrogates or S_BASE <= cp < S_BASE + S_COUNT:
            continue
        d = canonical_decomposition(cp)
        if d is None:
            continue
        full = full_decomposition(cp)
        decompositions.append((cp, len(pool), len(full)))
        pool.extend(full)
        # A two-element canonical decomposition is a primary composite unless it is excluded from
        # composition; the excluded ones are exactly those that NFC does not leave unchanged.
        if len(d) == 2 and unicodedata.normalize("NFC", chr(cp)) == chr(cp):
            pairs.append((d[0], d[1], cp))
            seconds.add(d[1])
    pairs.sort()
    assert len(pool) < 65536 and max(n for _, _, n in decompositions) < 256

    check = set(cp for cp, _, _ in decompositions)
    check.update(cp for cp in range(MAX_CP) if ccc_values[cp] != 0)
    check.update(seconds)
    check.update(range(0x1161, 0x1176))  # Hangul vowel jamo: compose with a leading jamo
    check.update(range(0x11A8, 0x11C3))  # Hangul trailing jamo: compose with an LV syllable
    check_ranges = ranges(sorted(check))

    # Every table must agree with unicodedata's own NFC on the composition rules it relies on.
    for first, second, comp in pairs:
        assert unicodedata.normalize("NFC", chr(first) + chr(second)) == chr(comp), hex(comp)

    parts = []
    parts.append(
        "// Generated by scripts/gen_unicode_tables.py from Python's unicodedata (Unicode %s).\n"
        "// Do not edit by hand; rerun the script instead.\n"
        "// clang-format off\n"
        '#include "unicode_tables.hpp"\n\n'
        "namespace ziprerank::detail::unicode {\n\n"
        'const char* const kUnicodeVersion = "%s";\n' % (unicodedata.unidata_version,
                                                          unicodedata.unidata_version)
    )
    parts.append(
        "\nconst ClassRun kClassRuns[] = {\n%s\n};\nconst size_t kClassRunCount = %d;\n"
        % (
            fmt_rows(["{0x%X, %d}," % (cp, v) for cp, v in class_runs], 8),
            len(class_runs),
        )
    )
    parts.append(
        "\nconst CccRange kCccRanges[] = {\n%s\n};\nconst size_t kCccRangeCount = %d;\n"
        % (
            fmt_rows(["{0x%X, 0x%X, %d}," % tuple(r) for r in ccc_ranges], 6),
            len(ccc_ranges),
        )
    )
    parts.append(
        "\nconst Decomposition kDecompositions[] = {\n%s\n};\n"
        "const size_t kDecompositionCount = %d;\n"
        % (
            fmt_rows(["{0x%X, %d, %d}," % d for d in decompositions], 6),
            len(decompositions),
        )
    )
    parts.append(
        "\nconst uint32_t kDecompositionPool[] = {\n%s\n};\n"
        % fmt_rows(["0x%X," % cp for cp in pool], 12)
    )
    parts.append(
        "\nconst CompositionPair kCompositionPairs[] = {\n%s\n};\n"
        "const size_t kCompositionPairCount = %d;\n"
        % (
            fmt_rows(["{0x%X, 0x%X, 0x%X}," % p for p in pairs], 5),
            len(pairs),
        )
    )
    parts.append(
        "\nconst CodePointRange kNfcCheckRanges[] = {\n%s\n};\n"
        "const size_t kNfcCheckRangeCount = %d;\n"
        % (
            fmt_rows(["{0x%X, 0x%X}," % tuple(r) for r in check_ranges], 8),
            len(check_ranges),
        )
    )
    parts.append("\n}  // namespace ziprerank::detail::unicode\n")

    with open(out_path, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(parts))
    print(
        "wrote %s: Unicode %s, %d class runs, %d ccc ranges, %d decompositions (%d pool), "
        "%d composition pairs, %d nfc-check ranges"
        % (
            out_path,
            unicodedata.unidata_version,
            len(class_runs),
            len(ccc_ranges),
            len(decompositions),
            len(pool),
            len(pairs),
            len(check_ranges),
        )
    )


if __name__ == "__main__":
    main()
