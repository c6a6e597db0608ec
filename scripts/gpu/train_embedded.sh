#!/usr/bin/env bash
# Trains the embedded model's stages on one GPU, in one go: builds ziprerank against the machine's
# CUDA PyTorch (scripts/gpu/build_env.sh), then runs scripts/train_small_model.sh on CUDA with
# the language-model stages on (LLM_STAGES=1: the text warm-up and the ranking stages that stay at
# chance on CPU budgets), step counts sized to the budget, and writes the model folder and its
# held-out numbers (eval/summary.md: the trained model beside BM25 / random on held-out rendered
# pages, groff PDFs and PDF volumes, and what pruning keeps). Budget: under 8 minutes on a
# 16-core H200 machine.
#
#   scripts/gpu/train_embedded.sh [--dry-run] [OUT]
#
# OUT (default $OUT, else build/gpu-train) receives model/ (the folder), train.md (the held-out
# summary and each step's time) and train.log. The GPU machine cannot reach the network: carry
# the corpora (scripts/fetch_corpora.sh fills .cache/corpora) and the .deb files build_env.sh
# fetches. Environment: PYTHON (a python with CUDA torch; default python3), BUILD_DIR (default
# build-gpu), and any of train_small_model.sh's settings (WT_STEPS, WV_STEPS, S2_STEPS, ...),
# which override the sizes below.
#
# --dry-run, or no CUDA: the same pipeline on the CPU with the existing build/ziprerank and a few
# steps of each stage on a handful of documents, in well under a minute.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=build_env.sh
source "$root/scripts/gpu/build_env.sh"
zr_gpu_args train_embedded "$@"
out="${out:-$root/build/gpu-train}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
start=$(date +%s)
say() { echo "train_embedded: $* ($(($(date +%s) - start)) s)" >&2; }

python="${PYTHON:-python3}"
if [ "$dry" -eq 0 ] && ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  say "no CUDA PyTorch in $python: running the CPU dry run instead"
  dry=1
fi
if ! "$root/scripts/fetch_corpora.sh" >/dev/null 2>&1; then
  say "no corpora in .cache/corpora and none could be fetched (scripts/fetch_corpora.sh): skipped"
  exit 3
fi

# Sizes: the GPU run's fit its 8 minutes with the build (about 2 of them on 16 cores); the dry
# run's only check that every stage runs and writes what the next one reads.
if [ "$dry" -eq 1 ]; then
  zr="${ZIPRERANK:-$root/build/ziprerank}"
  [ -x "$zr" ] || { say "no binary at $zr: build the ziprerank target first"; exit 1; }
  export DEVICE=cpu THREADS="${THREADS:-2}"
  defaults=(WT_STEPS=2 WV_STEPS=2 WV2_STEPS=2 RA_STEPS=2 S2_STEPS=2 S1_SAMPLES=24 S2_DOCS=2
    S2_MAX_CANDIDATES=2 EVAL_QUERIES=2 OCR=0 SAVE_EVERY=1 BATCH=2 MAX_PIXELS=262144)
else
  build="${BUILD_DIR:-$root/build-gpu}"
  say "building ziprerank against $python's CUDA libtorch in $build"
  if ! zr_build_cuda "$root" "$build" "$python" "$out/build.log" ziprerank; then
    tail -20 "$out/build.log" >&2
    say "build FAILED (log: $out/build.log)"
    exit 1
  fi
  zr="$build/ziprerank"
  export DEVICE=cuda THREADS="${THREADS:-$(nproc)}"
  defaults=(WT_STEPS=400 WV_STEPS=3000 WV2_STEPS=1500 RA_STEPS=200 S2_STEPS=400 S1_SAMPLES=6000
    S2_DOCS=60 EVAL_QUERIES=100 OCR=0 BATCH=16 SAVE_EVERY=200 LLM_STAGES=1)
fi
for kv in "${defaults[@]}"; do
  name="${kv%%=*}"
  [ -n "${!name:-}" ] || export "$kv"
done
export LLM_STAGES="${LLM_STAGES:-1}" ZIPRERANK="$zr" WORK="$out/work" MODEL_OUT="$out/model"
[ "$dry" -eq 0 ] || rm -rf "$WORK" "$MODEL_OUT" # each dry run runs every step again
if [ "$dry" -eq 1 ] && [ -f "$root/models/ziprerank-small/tokenizer.model" ]; then
  # The dry run borrows the shipped tokenizer (training one takes a third of its minute).
  mkdir -p "$WORK"
  [ -f "$WORK/tokenizer.model" ] || cp "$root/models/ziprerank-small/tokenizer.model" "$WORK/"
fi
say "scripts/train_small_model.sh on $DEVICE (${defaults[*]})"
rc=0
"$root/scripts/train_small_model.sh" >"$out/train.log" 2>&1 || rc=$?
{
  echo "# Embedded model's stages trained on $DEVICE$([ "$dry" -eq 1 ] && echo ' (dry run)')"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'); wall $(($(date +%s) - start)) s; exit status $rc"
  echo "- settings: LLM_STAGES=$LLM_STAGES ${defaults[*]}"
  echo
  echo "## Steps"
  echo
  grep -E '^== .* done in ' "$out/train.log" | sed 's/^== /- /' || true
  echo
  if [ -f "$out/model/eval/summary.md" ]; then
    echo "## Held-out numbers"
    echo
    cat "$out/model/eval/summary.md"
  else
    echo "No held-out numbers: the run stopped early (train.log)."
  fi
} >"$out/train.md"
[ "$rc" -eq 0 ] || { tail -30 "$out/train.log" >&2; say "FAILED (log: $out/train.log)"; exit "$rc"; }
say "done: model in $out/model, numbers in $out/train.md"
