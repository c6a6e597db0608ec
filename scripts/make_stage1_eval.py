#!/usr/bin/env python3
"""Held-out stage-1 samples (scripts/make_stage1_data.py's eval.jsonl) as a batch set of rendered
passage images, so `ziprerank batch` and `ziprerank eval` measure how well a model trained on
rendered passages ranks passages of documents it never saw, at any keep ratio.

Each passage is drawn by `ziprerank render --input` (the stage-1 renderer the trainer uses) and
the queries are written in the batch format with the true passage as the relevant candidate;
candidates keep the sample's order (shuffled when the data was made). Baseline runs beside it:
BM25 over the true passage text (over each sample's candidates) and a random order.

Output folder: passages/<sample>-<k>.png, queries.jsonl, bm25_run.jsonl, random_run.jsonl.
Usage: scripts/make_stage1_eval.py --eval .cache/small-model/stage1-c3/eval.jsonl --out DIR [--limit 300]
"""
import argparse
import json
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from textlib import BM25, tokens  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval", required=True, help="stage-1 eval.jsonl")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ziprerank", default="build/ziprerank")
    ap.add_argument("--limit", type=int, default=0, help="samples to use (0 = all)")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    samples = [json.loads(line) for line in open(args.eval, encoding="utf-8") if line.strip()]
    if args.limit > 0:
        samples = samples[: args.limit]
    os.makedirs(args.out, exist_ok=True)
    listing = os.path.join(args.out, "render_input.jsonl")
    with open(listing, "w", encoding="utf-8") as f:
        for i, s in enumerate(samples):
            for k, text in enumerate(s["passages"]):
                f.write(json.dumps({"id": f"s{i:04d}-{k}", "text": text}) + "\n")
    subprocess.run([args.ziprerank, "--log-level", "warn", "render", "--input", listing,
                    "--out", os.path.join(args.out, "passages"), "--threads", "2"], check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(args.out, "queries.jsonl"), "w", encoding="utf-8") as q, \
            open(os.path.join(args.out, "bm25_run.jsonl"), "w", encoding="utf-8") as b, \
            open(os.path.join(args.out, "random_run.jsonl"), "w", encoding="utf-8") as r:
        for i, s in enumerate(samples):
            ids = [f"s{i:04d}-{k}" for k in range(len(s["passages"]))]
            qid = f"s{i:04d}"
            q.write(json.dumps({"query_id": qid, "query": s["query"], "kind": s.get("kind", ""),
                                "candidates": [{"id": c, "image": f"passages/{c}.png"} for c in ids],
                                "relevant": [ids[s["ranking"][0]]]}) + "\n")
            bm25 = BM25([tokens(p) for p in s["passages"]])
            order = bm25.order(tokens(s["query"]))
            b.write(json.dumps({"query_id": qid, "ranking": [
                {"id": ids[k], "score": float(len(ids) - n)} for n, k in enumerate(order)]}) + "\n")
            shuffled = list(range(len(ids)))
            rng.shuffle(shuffled)
            r.write(json.dumps({"query_id": qid, "ranking": [
                {"id": ids[k], "score": float(len(ids) - n)} for n, k in enumerate(shuffled)]}) + "\n")
    os.remove(listing)
    print(f"{len(samples)} queries in {args.out}/queries.jsonl", file=sys.stderr)


if __name__ == "__main__":
    main()
