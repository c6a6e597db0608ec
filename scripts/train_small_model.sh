#!/usr/bin/env bash
# Reproduces ziprerank's own small model from nothing, on public-domain text only:
#   fetch corpora -> SentencePiece tokenizer -> random init (small Qwen3-VL config written here)
#   -> stage-1 data -> stage-1 training (rendered text passages)
#   -> stage-2 data -> stage-2 training (rendered document pages)
#   -> batch + eval on the held-out documents at keep ratios 1.0 / 0.5 / 0.25 (and BM25 / random
#      baselines) -> copy the final model folder to models/ziprerank-small.
# Resumable: every step is skipped when its output exists; an interrupted training step continues
# with --resume from its newest checkpoint. To redo a step, delete its output under WORK and the
# outputs of the steps after it (outputs are not checked against their inputs). Run from anywhere:
#   scripts/train_small_model.sh
# Settings (environment, defaults in brackets):
#   WORK [.cache/small-model]  working folder          ZIPRERANK [build/ziprerank]  the binary
#   MODEL_OUT [models/ziprerank-small]                 DEVICE [cpu]  cpu, cuda or cuda:N
#   THREADS [1]  libtorch threads (OPENBLAS_NUM_THREADS follows it; 1 measured best on 2 cores)
#   STEPS  optimizer steps of both stages; S1_STEPS [2000] / S2_STEPS [1000] set one stage
#   LR     peak learning rate of both stages; S1_LR [3e-4] / S2_LR [1e-4] set one stage
#   S1_BATCH [8] S1_ACCUM [4] S1_WARMUP [100]   S2_BATCH [2] S2_ACCUM [8] S2_WARMUP [50]
#   S1_SAMPLES [20000] S1_EVAL_SAMPLES [500]    stage-1 samples
#   S2_DOCS [0 = all] S2_JOBS [2]               stage-2 documents, parallel renders
#   S2_MAX_CANDIDATES [10]                      pages per stage-2 training sample
#   EVAL_QUERIES [0 = all]                      held-out queries scored by batch/eval
#   SAVE_EVERY [100] VOCAB [8000] MAX_PIXELS [200704] SEED [7]
# Tiny dry run: WORK=.cache/small-dry MODEL_OUT=.cache/small-dry/out STEPS=2 S1_SAMPLES=40 S1_EVAL_SAMPLES=10 \
#   S2_DOCS=3 EVAL_QUERIES=4 scripts/train_small_model.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

WORK="${WORK:-.cache/small-model}"
ZR="${ZIPRERANK:-build/ziprerank}"
MODEL_OUT="${MODEL_OUT:-models/ziprerank-small}"
DEVICE="${DEVICE:-cpu}"
THREADS="${THREADS:-1}"
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-$THREADS}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$THREADS}"
S1_STEPS="${S1_STEPS:-${STEPS:-2000}}"
S2_STEPS="${S2_STEPS:-${STEPS:-1000}}"
S1_LR="${S1_LR:-${LR:-3e-4}}"
S2_LR="${S2_LR:-${LR:-1e-4}}"
S1_BATCH="${S1_BATCH:-8}" S1_ACCUM="${S1_ACCUM:-4}" S1_WARMUP="${S1_WARMUP:-100}"
S2_BATCH="${S2_BATCH:-2}" S2_ACCUM="${S2_ACCUM:-8}" S2_WARMUP="${S2_WARMUP:-50}"
S1_SAMPLES="${S1_SAMPLES:-20000}"
S1_EVAL_SAMPLES="${S1_EVAL_SAMPLES:-500}"
S2_DOCS="${S2_DOCS:-0}"
S2_JOBS="${S2_JOBS:-2}"
S2_MAX_CANDIDATES="${S2_MAX_CANDIDATES:-10}"
EVAL_QUERIES="${EVAL_QUERIES:-0}"
SAVE_EVERY="${SAVE_EVERY:-100}"
VOCAB="${VOCAB:-8000}"
MAX_PIXELS="${MAX_PIXELS:-200704}"
SEED="${SEED:-7}"
# Warm-up longer than the run (tiny dry runs) is cut to 0.
[ "$S1_WARMUP" -lt "$S1_STEPS" ] || S1_WARMUP=0
[ "$S2_WARMUP" -lt "$S2_STEPS" ] || S2_WARMUP=0

[ -x "$ZR" ] || { echo "no binary at $ZR: run scripts/build.sh or set ZIPRERANK" >&2; exit 1; }
mkdir -p "$WORK"
say() { echo "== $(date +%H:%M:%S) $*" >&2; }
step_start=0
begin() { step_start=$SECONDS; say "$1"; }
end() { say "$1 done in $((SECONDS - step_start)) s"; }

# 1. Corpora --------------------------------------------------------------------------------------
begin "corpora"
scripts/fetch_corpora.sh
end "corpora"

# 2. Tokenizer ------------------------------------------------------------------------------------
if [ -f "$WORK/tokenizer.model" ]; then
  say "tokenizer: $WORK/tokenizer.model exists, skipped"
else
  begin "tokenizer ($VOCAB pieces)"
  scripts/train_tokenizer.sh "$WORK/tokenizer.tmp" "$VOCAB"
  mv "$WORK/tokenizer.tmp.model" "$WORK/tokenizer.model"
  end "tokenizer"
fi

# 3. Config, preprocessor, random init ------------------------------------------------------------
# The architecture is Qwen3-VL's at small dimensions, sized to train on a few CPU cores:
#  - vision: depth 4, width 256, 4 heads (head 64), patch 16, merge 2. Rendered pages are clean
#    black-on-white text, so a shallow tower suffices; deepstack taps after blocks 1 and 2 feed the
#    first two text layers as in the full model.
#  - text: 4 layers, width 384, 6 query / 2 key-value heads of 64 (grouped-query attention as
#    Qwen3), MLP 1152 (3x), untied 8000-piece embeddings.
#  About 21.5M parameters in all (input + output embeddings 6.1M, text layers 6.9M, vision blocks
#  and position table 3.7M, the merger and two deepstack mergers 4.3M; 82 MiB in float32): enough
#  to read phrases and headings off pages and compare them with the query, small enough for
#  thousands of steps on a few CPU cores.
#  - mrope_section [12, 10, 10] sums to head_dim / 2 = 32 (time, height, width), interleaved.
#  - the preprocessor caps pages at MAX_PIXELS (200704 = 196 x 32 x 32): a 1024-px A4/Letter page
#    becomes about 180-200 visual tokens, so 10 candidates fit in ~2000 tokens.
# Special-token ids are looked up in the trained tokenizer and written into the config.
if [ -f "$WORK/init/config.json" ]; then
  say "init: $WORK/init exists, skipped"
else
  begin "config + init"
  ids="$(for t in '<|endoftext|>' '<|im_end|>' '<|vision_start|>' '<|vision_end|>' '<|image_pad|>' '<|video_pad|>'; do
           printf '%s' "$t" | spm_encode --model="$WORK/tokenizer.model" --output_format=id; done | tr '\n' ' ')"
  python3 - "$WORK" "$VOCAB" "$MAX_PIXELS" $ids <<'PY'
import json, sys
work, vocab, max_pixels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ids = sys.argv[4:]
if len(ids) != 6 or not all(i.isdigit() for i in ids):
    sys.exit(f"special tokens are not single pieces of the tokenizer: {ids}")
endoftext, im_end, vstart, vend, image_pad, video_pad = map(int, ids)
config = {
    "architectures": ["Qwen3VLForConditionalGeneration"],
    "model_type": "qwen3_vl",
    "image_token_id": image_pad, "video_token_id": video_pad,
    "vision_start_token_id": vstart, "vision_end_token_id": vend,
    "pad_token_id": endoftext,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
    "text_config": {
        "model_type": "qwen3_vl_text", "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": endoftext, "eos_token_id": im_end,
        "hidden_act": "silu", "hidden_size": 384, "intermediate_size": 1152,
        "num_hidden_layers": 4, "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 64,
        "initializer_range": 0.02, "max_position_embeddings": 32768, "rms_norm_eps": 1e-06,
        "rope_scaling": {"mrope_interleaved": True, "mrope_section": [12, 10, 10], "rope_type": "default"},
        "rope_theta": 5000000.0, "tie_word_embeddings": False, "vocab_size": vocab,
    },
    "vision_config": {
        "model_type": "qwen3_vl", "depth": 4, "hidden_size": 256, "intermediate_size": 1024,
        "num_heads": 4, "hidden_act": "gelu_pytorch_tanh", "in_channels": 3, "initializer_range": 0.02,
        "num_position_embeddings": 2304, "out_hidden_size": 384, "patch_size": 16,
        "spatial_merge_size": 2, "temporal_patch_size": 2, "deepstack_visual_indexes": [1, 2],
    },
}
json.dump(config, open(f"{work}/small_config.json", "w"), indent=2)
pre = {
    "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "image_processor_type": "Qwen2VLImageProcessorFast", "merge_size": 2, "patch_size": 16,
    "resample": 3, "rescale_factor": 1 / 255, "temporal_patch_size": 2,
    "size": {"longest_edge": max_pixels, "shortest_edge": 65536},
}
json.dump(pre, open(f"{work}/small_preprocessor_config.json", "w"), indent=2)
PY
  "$ZR" init --config "$WORK/small_config.json" --preprocessor "$WORK/small_preprocessor_config.json" \
    --tokenizer "$WORK/tokenizer.model" --out "$WORK/init" --name ziprerank-small --seed "$SEED" --force
  end "config + init"
fi

# Runs one training stage, or continues it from its newest checkpoint.
#   train_stage NAME STAGE DATA INIT STEPS LR BATCH ACCUM WARMUP [extra train flags...]
train_stage() {
  local name="$1" stage="$2" data="$3" init="$4" steps="$5" lr="$6" batch="$7" accum="$8" warmup="$9"
  shift 9
  local dir="$WORK/$name"
  if [ -f "$dir/done" ]; then say "$name: $dir/model exists, skipped"; return; fi
  begin "$name ($steps steps, lr $lr)"
  mkdir -p "$dir/checkpoints"
  local last from
  last="$(ls -d "$dir"/checkpoints/step-* 2>/dev/null | grep -v '\.partial$' | sort | tail -n 1 || true)"
  if [ -n "$last" ]; then
    say "$name: resuming from $last"
    from=(--resume "$last")
  else
    from=(--init "$init")
  fi
  "$ZR" train --stage "$stage" --data "$data" "${from[@]}" -o "$dir/model" --force \
    --checkpoint-dir "$dir/checkpoints" --keep-checkpoints 2 --save-every "$SAVE_EVERY" \
    --metrics "$dir/metrics.jsonl" --max-steps "$steps" --lr "$lr" --warmup "$warmup" \
    --batch-size "$batch" --grad-accum "$accum" --seed "$SEED" --device "$DEVICE" --threads "$THREADS" \
    --name ziprerank-small "$@" 2>&1 | tee -i -a "$dir/train.log" >&2  # -i: Ctrl-C reaches train (which checkpoints), not tee
  touch "$dir/done"
  end "$name"
}

# 4. Stage 1: rendered text passages --------------------------------------------------------------
if [ -f "$WORK/stage1-data/stats.json" ]; then
  say "stage-1 data: exists, skipped"
else
  begin "stage-1 data ($S1_SAMPLES samples)"
  python3 scripts/make_stage1_data.py --out "$WORK/stage1-data" --samples "$S1_SAMPLES" \
    --eval-samples "$S1_EVAL_SAMPLES" --seed "$SEED"
  end "stage-1 data"
fi
train_stage stage1 1 "$WORK/stage1-data/train.jsonl" "$WORK/init" "$S1_STEPS" "$S1_LR" \
  "$S1_BATCH" "$S1_ACCUM" "$S1_WARMUP"

# 5. Stage 2: document pages ----------------------------------------------------------------------
if [ -f "$WORK/stage2-data/stats.json" ]; then
  say "stage-2 data: exists, skipped"
else
  begin "stage-2 data (docs: ${S2_DOCS/#0/all})"
  python3 scripts/make_stage2_data.py --out "$WORK/stage2-data" --ziprerank "$ZR" --docs "$S2_DOCS" \
    --jobs "$S2_JOBS" --train-candidates "$S2_MAX_CANDIDATES" --seed "$SEED"
  end "stage-2 data"
fi
train_stage stage2 2 "$WORK/stage2-data/train.jsonl" "$WORK/stage1/model" "$S2_STEPS" "$S2_LR" \
  "$S2_BATCH" "$S2_ACCUM" "$S2_WARMUP" --max-candidates "$S2_MAX_CANDIDATES"

# 6. Held-out evaluation --------------------------------------------------------------------------
ev="$WORK/eval"
mkdir -p "$ev"
queries="$WORK/stage2-data/eval.jsonl"
if [ "$EVAL_QUERIES" -gt 0 ]; then
  # A prefix of the eval set, kept next to the pages so image paths stay valid.
  head -n "$EVAL_QUERIES" "$queries" > "$WORK/stage2-data/eval_subset.jsonl"
  queries="$WORK/stage2-data/eval_subset.jsonl"
fi
for keep in 1.0 0.5 0.25; do
  if [ -f "$ev/metrics_keep$keep.json" ]; then say "eval keep $keep: exists, skipped"; continue; fi
  begin "eval keep $keep"
  "$ZR" batch --model "$WORK/stage2/model" -i "$queries" -o "$ev/run_keep$keep.jsonl" --resume \
    --keep-ratio "$keep" --device "$DEVICE" --threads "$THREADS"
  "$ZR" eval --run "$ev/run_keep$keep.jsonl" --qrels "$queries" --k 1,3,5 >&2
  "$ZR" eval --run "$ev/run_keep$keep.jsonl" --qrels "$queries" --k 1,3,5 --format json \
    > "$ev/metrics_keep$keep.json"
  end "eval keep $keep"
done
for base in bm25 random; do  # baselines over the same queries (runs written by make_stage2_data.py)
  "$ZR" eval --run "$WORK/stage2-data/eval_${base}_run.jsonl" --qrels "$queries" --k 1,3,5 --format json \
    > "$ev/metrics_$base.json" 2> "$ev/metrics_$base.log"
done
say "metrics in $ev: metrics_keep{1.0,0.5,0.25}.json, metrics_bm25.json, metrics_random.json"

# 7. The shipped folder ---------------------------------------------------------------------------
begin "copy to $MODEL_OUT"
rm -rf "$MODEL_OUT.tmp"
mkdir -p "$MODEL_OUT.tmp/eval"
for f in "$WORK/stage2/model"/*; do
  [ -f "$f" ] && cp "$f" "$MODEL_OUT.tmp/"
done
cp "$ev"/metrics_*.json "$MODEL_OUT.tmp/eval/"
"$ZR" inspect --model "$MODEL_OUT.tmp" >&2
rm -rf "$MODEL_OUT"
mv "$MODEL_OUT.tmp" "$MODEL_OUT"
end "copy to $MODEL_OUT"
