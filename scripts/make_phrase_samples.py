#!/usr/bin/env python3
"""Stage-2 training samples for the language model's warm-up: phrase queries over easy candidates.

Each sample asks for a run of 2-5 consecutive words (at least one of 5 letters or more) drawn from
the text of one training page (body, headings, list items, table cells, captions, as the page's
words.json records them), against 3 pages of other documents. The teacher ranking puts the page
first; the candidates are shown in a random order. Only the documents of one split are used:
those of the stage-2 training file (--split train), or of its held-out file (--split eval: a
held-out measurement for `train --eval-data`).

Usage: scripts/make_phrase_samples.py --data-dir STAGE2_DATA --out FILE [--split train|eval]
         [--samples N] [--seed S]
  STAGE2_DATA is the folder written by make_stage2_data.py (train.jsonl, pages/DOC/words.json);
  FILE is written inside it (image paths are relative to it), e.g. STAGE2_DATA/train_phrases.jsonl.
"""
import argparse
import collections
import json
import os
import random
import sys

ROLES = ("body", "heading", "list_item", "table_cell", "caption")


def strip(word):
    return word.strip(".,;:!?()\"'")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--negatives", type=int, default=3)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--split", choices=("train", "eval"), default="train")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    train = os.path.join(args.data_dir, args.split + ".jsonl")
    if not os.path.exists(train):
        sys.exit(f"no {train}: run scripts/make_stage2_data.py first")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if os.path.abspath(out_dir) != os.path.abspath(args.data_dir):
        sys.exit("--out must be inside --data-dir (image paths are relative to it)")
    with open(train) as f:
        docs = sorted({json.loads(line)["query_id"].split("/")[0] for line in f if line.strip()})
    pages = []  # (document, 0-based page, words)
    for doc in docs:
        with open(os.path.join(args.data_dir, "pages", doc, "words.json")) as f:
            layout = json.load(f)
        by_page = collections.defaultdict(list)
        for w in layout["words"]:
            if w["role"] in ROLES:
                by_page[w["page"]].append(w["text"])
        for p in layout["pages"]:
            words = by_page.get(p["index"], [])
            if len(words) >= 20:
                pages.append((doc, p["index"], words))
    if len({d for d, _, _ in pages}) <= args.negatives:
        sys.exit("too few documents with text for the negatives")
    written = 0
    with open(args.out, "w") as out:
        while written < args.samples:
            doc, index, words = pages[rng.randrange(len(pages))]
            n = rng.randint(2, 5)
            start = rng.randrange(0, len(words) - n)
            run = [strip(w) for w in words[start:start + n]]
            if not any(len(w) >= 5 for w in run):
                continue
            negatives = set()
            while len(negatives) < args.negatives:
                other = pages[rng.randrange(len(pages))]
                if other[0] != doc:
                    negatives.add((other[0], other[1]))
            chosen = [(doc, index)] + sorted(negatives)
            ranking = [f"{d}#{i + 1}" for d, i in chosen]
            rng.shuffle(chosen)
            out.write(json.dumps({
                "query_id": f"{doc}/phrase{written:05d}",
                "query": " ".join(w for w in run if w),
                "candidates": [{"id": f"{d}#{i + 1}", "image": f"pages/{d}/page_{i:03d}.png"} for d, i in chosen],
                "relevant": [ranking[0]],
                "ranking": ranking,
            }) + "\n")
            written += 1
    print(f"{written} samples from {len(pages)} pages of {len(docs)} documents -> {args.out}")


if __name__ == "__main__":
    main()
