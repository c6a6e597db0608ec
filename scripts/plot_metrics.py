#!/usr/bin/env python3
"""Loss curves of `ziprerank train --metrics FILE` runs as one SVG (no plotting library needed).

One panel per loss term present (gen_loss, rank_loss, candidate_loss, align_loss); each run is a
line, smoothed with a trailing moving average; runs are laid end to end on the step axis in the
order given (stages of one recipe), with a label at each run's start; --overlay starts every run
at step 0 instead, to compare runs.

Usage: scripts/plot_metrics.py --out curves.svg [--smooth 20] NAME=metrics.jsonl [NAME=metrics.jsonl ...]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from textlib import read_jsonl  # noqa: E402

TERMS = [("rank_loss", "ranking loss (final readout)"), ("candidate_loss", "per-candidate loss"),
         ("align_loss", "word-grounding loss"), ("gen_loss", "generation loss (per token)")]
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def smooth(values, k):
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > k:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--smooth", type=int, default=20, help="moving-average window in steps")
    ap.add_argument("--overlay", action="store_true",
                    help="start every run at step 0 (to compare runs) instead of end to end (stages)")
    ap.add_argument("runs", nargs="+", help="NAME=metrics.jsonl")
    args = ap.parse_args()
    runs = []
    for spec in args.runs:
        name, _, path = spec.partition("=")
        if not path:
            sys.exit(f"expected NAME=metrics.jsonl, got '{spec}'")
        # Step lines only: held-out measurements (--eval-data) are marked "eval" and left out.
        runs.append((name, [r for r in read_jsonl(path) if not r.get("eval")]))
    terms = [(k, label) for k, label in TERMS if any(r.get(k, 0) for _, rows in runs for r in rows)]
    if not terms:
        sys.exit("no loss values in the given files")
    width, panel_h, left, top, gap = 760, 190, 60, 30, 50
    height = top + len(terms) * (panel_h + gap)
    total = max(len(rows) for _, rows in runs) if args.overlay else sum(len(rows) for _, rows in runs)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">', f'<rect width="{width}" height="{height}" fill="white"/>']
    plot_w = width - left - 20
    for p, (key, label) in enumerate(terms):
        y0 = top + p * (panel_h + gap)
        series, offset = [], 0
        for i, (name, rows) in enumerate(runs):
            vals = [r.get(key, 0.0) for r in rows]
            if any(vals):
                series.append((name, offset, smooth(vals, args.smooth), COLORS[i % len(COLORS)]))
            offset += 0 if args.overlay else len(rows)
        lo = min(min(v) for _, _, v, _ in series)
        hi = max(max(v) for _, _, v, _ in series)
        if hi - lo < 1e-9:
            hi = lo + 1
        sx = lambda s: left + plot_w * s / max(1, total - 1)  # noqa: E731
        sy = lambda v: y0 + panel_h - panel_h * (v - lo) / (hi - lo)  # noqa: E731
        svg.append(f'<text x="{left}" y="{y0 - 8}" font-size="13">{label} '
                   f'(moving average of {args.smooth} steps)</text>')
        svg.append(f'<rect x="{left}" y="{y0}" width="{plot_w}" height="{panel_h}" fill="none" stroke="#999"/>')
        for t in range(5):
            v = lo + (hi - lo) * t / 4
            svg.append(f'<text x="{left - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
        for name, off, vals, color in series:
            pts = " ".join(f"{sx(off + j):.1f},{sy(v):.1f}" for j, v in enumerate(vals))
            svg.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.3"/>')
            label_y = y0 + 12 + (14 * len(series[:series.index((name, off, vals, color))]) if args.overlay else 0)
            svg.append(f'<text x="{sx(off) + 3:.1f}" y="{label_y}" fill="{color}">{name}</text>')
        svg.append(f'<text x="{left + plot_w}" y="{y0 + panel_h + 14}" text-anchor="end">'
                   f'optimizer step ({"longest run" if args.overlay else "all runs"}: {total})</text>')
    svg.append("</svg>")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(svg) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
