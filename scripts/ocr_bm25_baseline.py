#!/usr/bin/env python3
"""OCR + BM25 baseline: reads the pixels of every candidate page with Tesseract, then ranks each
query's candidates by Okapi BM25 over the recognised text. An honest "reads the pixels" reference
for the small model: it sees the same page images (PDF pages rendered at the same 1024-px longest
side as `ziprerank` does), not the true text.

Input: a batch JSONL as `ziprerank batch` reads it (FORMATS.md): {"query_id", "query",
"candidates": [{"id", "image"} or {"id", "pdf", "page"}]}; paths relative to the file.
Output: a run JSONL as `ziprerank batch` writes it ({"query_id", "ranking": [{"id", "score"}]}),
which `ziprerank eval --run RUN --qrels QUERIES` scores.

BM25 statistics come from the pages of one document (all candidates that share an image folder or
a PDF file), as the true-text BM25 baseline of scripts/make_stage2_data.py computes them.
Recognised text is cached per page under --cache (Tesseract is slow: about 1-3 s a page).

Needs the Debian packages tesseract-ocr (with tesseract-ocr-eng) and poppler-utils (pdftoppm).
Usage: scripts/ocr_bm25_baseline.py --queries eval.jsonl --out run_ocr.jsonl [--cache DIR] [--jobs 2]
"""
import argparse
import collections
import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from textlib import BM25, read_jsonl, tokens  # noqa: E402


def page_key(base, cand):
    if "image" in cand:
        path = os.path.join(base, cand["image"])
        return ("image", os.path.abspath(path), 0), os.path.dirname(os.path.abspath(path))
    path = os.path.abspath(os.path.join(base, cand["pdf"]))
    return ("pdf", path, int(cand.get("page", 1))), path


def ocr_page(key, cache):
    kind, path, page = key
    st = os.stat(path)
    h = hashlib.sha1(f"{path}|{page}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    out = os.path.join(cache, h + ".txt")
    if os.path.exists(out):
        return open(out, encoding="utf-8").read()
    with tempfile.TemporaryDirectory() as tmp:
        image = path
        if kind == "pdf":
            subprocess.run(["pdftoppm", "-png", "-r", "150", "-scale-to", "1024", "-f", str(page), "-l", str(page),
                            "-singlefile", path, os.path.join(tmp, "page")], check=True)
            image = os.path.join(tmp, "page.png")
        res = subprocess.run(["tesseract", image, "stdout", "-l", "eng", "--psm", "3"],
                             check=True, capture_output=True, env={**os.environ, "OMP_THREAD_LIMIT": "1"})
        text = res.stdout.decode("utf-8", "replace")
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(out + ".tmp", out)
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", required=True, help="batch JSONL with candidates")
    ap.add_argument("--out", required=True, help="run JSONL to write")
    ap.add_argument("--cache", default=None, help="OCR text cache (default: .cache/ocr beside the repo)")
    ap.add_argument("--jobs", type=int, default=2, help="Tesseract processes in parallel")
    args = ap.parse_args()
    for tool in ("tesseract", "pdftoppm"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: apt-get install tesseract-ocr tesseract-ocr-eng poppler-utils")
    cache = args.cache or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".cache", "ocr")
    os.makedirs(cache, exist_ok=True)
    base = os.path.dirname(os.path.abspath(args.queries))
    rows = read_jsonl(args.queries)
    pages, docs = {}, collections.defaultdict(set)
    for row in rows:
        for cand in row["candidates"]:
            key, doc = page_key(base, cand)
            pages[key] = None
            docs[doc].add(key)
    keys = sorted(pages)
    print(f"OCR of {len(keys)} pages ({args.jobs} jobs, cache {cache})", file=sys.stderr)
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for i, (key, text) in enumerate(zip(keys, pool.map(lambda k: ocr_page(k, cache), keys)), 1):
            pages[key] = tokens(text)
            if i % 25 == 0 or i == len(keys):
                print(f"[{i}/{len(keys)}] pages read", file=sys.stderr, flush=True)
    index = {}
    for doc, members in docs.items():
        members = sorted(members)
        bm25 = BM25([pages[k] for k in members])
        index[doc] = (bm25, {k: i for i, k in enumerate(members)})
    with open(args.out + ".tmp", "w", encoding="utf-8") as out:
        for row in rows:
            q = tokens(row["query"])
            scored = []
            for pos, cand in enumerate(row["candidates"]):
                key, doc = page_key(base, cand)
                bm25, where = index[doc]
                scored.append((bm25.score(q, where[key]), -pos, cand["id"]))
            scored.sort(reverse=True)  # ties keep the input (first-stage) order
            out.write(json.dumps({"query_id": row["query_id"],
                                  "ranking": [{"id": c, "score": round(s, 6)} for s, _, c in scored]}) + "\n")
    os.replace(args.out + ".tmp", args.out)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
