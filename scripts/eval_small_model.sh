#!/usr/bin/env bash
# Evaluates a model folder on held-out sets next to its baselines and writes a Markdown table.
#   scripts/eval_small_model.sh MODEL OUT SET...        SET = NAME=QUERIES.jsonl
# For each set: `ziprerank batch` at keep ratios 1.0, 0.5 and 0.25 (KEEPS), then `ziprerank eval`
# (Recall@1/3/5, nDCG@5, MRR@5). Baselines are read from files beside the queries when present:
#   <prefix>bm25_run.jsonl    BM25 over the true page text          (written by the data scripts)
#   <prefix>ocr_run.jsonl     Tesseract OCR + BM25 on the same pixels (scripts/ocr_bm25_baseline.py)
#   <prefix>random_run.jsonl  a random order
# where <prefix> is the queries file name without "queries.jsonl"/".jsonl" plus "_" (eval.jsonl ->
# eval_bm25_run.jsonl) or nothing (queries.jsonl -> bm25_run.jsonl).
# Settings: ZIPRERANK [build/ziprerank], KEEPS ["1.0 0.5 0.25"], THREADS [2], LIMIT [0 = all queries],
#   MATMUL [auto]: `batch --matmul` (float32 or bfloat16 matrix products at float32 compute),
#   SHUFFLE [1]: the model sees each query's candidates in a seeded random order. The sets list
#   candidates in their first stage's (BM25's) order, which puts the right page first for most
#   queries: a model that prefers early identifiers would otherwise score BM25's quality without
#   reading. SHUFFLE=0 measures the model as deployed behind that first stage.
# Runs resume (`batch --resume`), so an interrupted evaluation continues where it stopped.
# Output: OUT/<set>/run_keep<k>.jsonl, OUT/<set>/metrics_<system>.json, OUT/summary.md (stdout too).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ZR="${ZIPRERANK:-$root/build/ziprerank}"
KEEPS="${KEEPS:-1.0 0.5 0.25}"
THREADS="${THREADS:-2}"
LIMIT="${LIMIT:-0}"
SHUFFLE="${SHUFFLE:-1}"
MATMUL="${MATMUL:-auto}"
[ $# -ge 3 ] || { sed -n 2,14p "$0" >&2; exit 2; }
model="$1" out="$2"
shift 2
[ -x "$ZR" ] || { echo "no binary at $ZR: run scripts/build.sh or set ZIPRERANK" >&2; exit 1; }
mkdir -p "$out"
say() { echo "== $(date +%H:%M:%S) $*" >&2; }

rows=()
for set in "$@"; do
  name="${set%%=*}" queries="${set#*=}"
  [ -f "$queries" ] || { echo "no queries file '$queries' for set '$name'" >&2; exit 1; }
  dir="$out/$name"
  mkdir -p "$dir"
  qdir="$(dirname "$queries")" qbase="$(basename "$queries")"
  case "$qbase" in
    queries.jsonl) prefix="" ;;
    *) prefix="${qbase%.jsonl}_" ;;
  esac
  if [ "$LIMIT" -gt 0 ]; then  # a prefix of the set, kept beside the original so paths resolve
    head -n "$LIMIT" "$queries" > "$qdir/.limit_$qbase"
    queries="$qdir/.limit_$qbase"
  fi
  if [ "$SHUFFLE" = 1 ]; then  # seeded per query id: every run and keep ratio sees one order
    python3 - "$queries" "$qdir/.shuffled_$qbase" <<'PY'
import hashlib, json, random, sys
with open(sys.argv[1]) as src, open(sys.argv[2], "w") as dst:
    for line in src:
        if not line.strip():
            continue
        q = json.loads(line)
        seed = int(hashlib.sha256(str(q.get("query_id", "")).encode()).hexdigest()[:16], 16)
        random.Random(seed).shuffle(q["candidates"])
        dst.write(json.dumps(q) + "\n")
PY
    queries="$qdir/.shuffled_$qbase"
  fi
  for keep in $KEEPS; do
    say "$name: ranking at keep $keep"
    "$ZR" --log-level warn batch --model "$model" -i "$queries" -o "$dir/run_keep$keep.jsonl" --resume \
      --keep-ratio "$keep" --threads "$THREADS" --matmul "$MATMUL"
    "$ZR" --log-level warn eval --run "$dir/run_keep$keep.jsonl" --qrels "$queries" --k 1,3,5 --format json \
      > "$dir/metrics_keep$keep.json"
    rows+=("$name|model keep $keep|$dir/metrics_keep$keep.json")
  done
  for base in bm25 ocr random; do
    run="$qdir/${prefix}${base}_run.jsonl"
    if [ -f "$run" ]; then
      "$ZR" --log-level error eval --run "$run" --qrels "$queries" --k 1,3,5 --format json \
        > "$dir/metrics_$base.json" 2>/dev/null
      rows+=("$name|$base|$dir/metrics_$base.json")
    else
      say "$name: no $run, baseline '$base' left out"
    fi
  done
done

python3 - "$out/summary.md" "${rows[@]}" <<'PY'
import json, sys
labels = {"bm25": "BM25 on the true text", "ocr": "Tesseract OCR + BM25", "random": "random order"}
lines = ["| set | system | queries | R@1 | R@3 | R@5 | nDCG@5 | MRR@5 |", "|---|---|---:|---:|---:|---:|---:|---:|"]
for row in sys.argv[2:]:
    name, system, path = row.split("|")
    m = json.load(open(path))["micro"]
    v = m["values"]
    label = labels.get(system, system)
    lines.append(f"| {name} | {label} | {m['queries']} | " + " | ".join(
        f"{100 * v[k]:.1f}" for k in ("R@1", "R@3", "R@5", "nDCG@5", "MRR@5")) + " |")
text = "\n".join(lines) + "\n"
open(sys.argv[1], "w").write(text)
print(text, end="")
PY
