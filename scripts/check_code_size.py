#!/usr/bin/env python3
"""Checks the size rules of the hand-written C++ sources: no file over 800 lines and no function
over 120 lines (generated tables excepted). Prints every breach and exits 1 if there is one.

Usage: scripts/check_code_size.py [--max-file N] [--max-function N] [--list N] [paths...]
       (default paths: src include examples; --list N prints the N longest functions)

Functions are found by brace matching on the source with comments, strings and character
literals blanked out: a brace that opens at namespace or class scope after a parenthesised
parameter list is a function body; lambdas and blocks inside it count towards it.
"""
import argparse
import pathlib
import re
import sys

GENERATED = {"src/text/unicode_tables.cpp"}
SUFFIXES = {".cpp", ".hpp", ".h", ".cc"}


def blank_literals(text):
    """Replaces comments, string and character literals by spaces, keeping newlines."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "R" and text.startswith('R"', i) and (i == 0 or not text[i - 1].isalnum()):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            if not m:
                out.append(c)
                i += 1
                continue
            end = text.find(")" + m.group(1) + '"', i)
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c in "\"'":
            if c == "'" and i > 0 and text[i - 1].isalnum():  # digit separator 1'000
                out.append(" ")
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(" " * (j - i))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


SCOPE_RE = re.compile(r"\b(namespace|class|struct|union|enum)\b")
FUNC_TAIL_RE = re.compile(
    r"\)\s*(const|override|final|noexcept(\s*\([^)]*\))?|mutable|->\s*[\w:<>,\s\*&]+|\s)*$")


def functions(path):
    """Yields (name, first line, last line) of every function body at namespace/class scope."""
    text = blank_literals(path.read_text(encoding="utf-8", errors="replace"))
    text = re.sub(r"^\s*#.*$", "", text, flags=re.M)  # preprocessor lines
    stack = []  # entries: (kind, name, start line)
    last_stop = 0
    line = 1
    for i, c in enumerate(text):
        if c == "\n":
            line += 1
        elif c in ";":
            last_stop = i + 1
        elif c == "{":
            head = text[last_stop:i]
            inside_function = any(kind == "function" for kind, _, _ in stack)
            kind = "block"
            name = ""
            if not inside_function:
                stripped = " ".join(head.split())
                # Constructor initialiser lists: "X::X(...) : a_(b), c_{d}" -- cut at " : ".
                sig = re.split(r"\)\s*:(?!:)", stripped, maxsplit=1)
                if len(sig) == 2:
                    stripped = sig[0] + ")"
                if SCOPE_RE.search(stripped) and "(" not in stripped:
                    kind = "scope"
                elif "(" in stripped and FUNC_TAIL_RE.search(stripped):
                    kind = "function"
                    m = re.search(r"([\w:~<>]+)\s*\($", stripped[: stripped.find("(") + 1])
                    name = m.group(1) if m else stripped[:40]
                elif stack and stack[-1][0] == "scope" and "=" not in stripped and "(" in stripped:
                    kind = "function"
                    name = stripped[:40]
            first = line - head.lstrip("\n ").count("\n") if head.strip() else line
            stack.append((kind, name, first))
            last_stop = i + 1
        elif c == "}":
            if stack:
                kind, name, first = stack.pop()
                if kind == "function":
                    yield name, first, line
            last_stop = i + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", default=["src", "include", "examples"])
    ap.add_argument("--max-file", type=int, default=800)
    ap.add_argument("--max-function", type=int, default=120)
    ap.add_argument("--list", type=int, default=0, help="print the N longest functions")
    args = ap.parse_args()
    root = pathlib.Path(__file__).resolve().parent.parent
    files = []
    for p in args.paths:
        p = (root / p) if not pathlib.Path(p).is_absolute() else pathlib.Path(p)
        files += [f for f in sorted(p.rglob("*")) if f.suffix in SUFFIXES] if p.is_dir() else [p]
    breaches = []
    all_funcs = []
    for f in files:
        rel = f.relative_to(root).as_posix()
        if rel in GENERATED:
            continue
        n = f.read_text(encoding="utf-8", errors="replace").count("\n")
        if n > args.max_file:
            breaches.append(f"{rel}: {n} lines (max {args.max_file})")
        for name, first, last in functions(f):
            length = last - first + 1
            all_funcs.append((length, f"{rel}:{first}", name))
            if length > args.max_function:
                breaches.append(f"{rel}:{first}: function {name} is {length} lines "
                                f"(max {args.max_function})")
    for length, where, name in sorted(all_funcs, reverse=True)[: args.list]:
        print(f"{length:5d}  {where}  {name}")
    for b in breaches:
        print(b, file=sys.stderr)
    print(f"checked {len(files)} files, {len(all_funcs)} functions: {len(breaches)} breach(es)",
          file=sys.stderr)
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
