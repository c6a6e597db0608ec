#!/usr/bin/env bash
# Reproduces ziprerank's own small model from nothing, on public-domain text only:
#   fetch corpora -> SentencePiece tokenizer -> random init (small Qwen3-VL config written here,
#   first-layer token-matching heads, spelling-coded word embeddings, silent DeepStack) -> stage-2
#   data (rendered documents, held-out documents set aside) -> reading: the vision tower learns to
#   map each merged visual token to the embeddings of the words drawn under it, on windows of the
#   training pages (--align-only --align-crop), then a second pass at a lower learning rate on
#   other windows -> the shipped folder ranks by similarity (each query word's best match among
#   a page's visual tokens, weighted by its length; pruning compares with the query's tokens
#   alone) -> batch + eval on held-out rendered documents, groff PDFs and PDF volumes next to
#   BM25 / OCR + BM25 / random, what pruning keeps per keep ratio -> loss curves -> copy to
#   models/ziprerank-small. LLM_STAGES=1 also trains the language-model stages (text warm-up,
#   re-alignment, stage 2 on pages); they do not rank held-out pages above chance yet and are not
#   part of the shipped model (models/README.md).
# Resumable: every step is skipped when its output exists; an interrupted training step continues
# with --resume from its newest checkpoint. To redo a step, delete its output under WORK and the
# outputs of the steps after it (outputs are not checked against their inputs). Run from anywhere:
#   scripts/train_small_model.sh
# Settings (environment, defaults in brackets):
#   WORK [.cache/small-model]  working folder          ZIPRERANK [build/ziprerank]  the binary
#   MODEL_OUT [models/ziprerank-small]                 DEVICE [cpu]  cpu, cuda or cuda:N
#   THREADS [1]  libtorch threads (OPENBLAS_NUM_THREADS follows it; 1 measured best on 2 cores)
#   WT_STEPS [500] WV_STEPS [12000] RA_STEPS [300]   warm-ups: text-token ranking / reading
#     (one sample = its pages' crops per step) / re-alignment to the warmed-up embeddings
#   WV2_STEPS [9000] WV2_LR [5e-4]   reading, second pass (0: none)
#   S2_STEPS [1000]  stage 2 (pages, tower frozen)   LLM_STAGES [0]  1: train the language-model stages
#   WT_LR [3e-4] WV_LR [1e-3] S2_LR [3e-4]   peak learning rates
#   BATCH [8]  samples per step (text warm-up and stage 2; gradient accumulation 1)
#   CLIP [1.0] gradient norm; CROP [320] reading-window side in pixels
#   SPELLING [0.8] weight of the spelling code in word embeddings at init
#   KEEP [0.5] keep ratio (query-aware pruning) during stage 2
#   S1_SAMPLES [12000] S1_CANDIDATES [3]   stage-1 samples and passages per sample
#   S2_DOCS [0 = all] S2_JOBS [2] S2_MAX_CANDIDATES [4]   stage-2 documents, renders, pages per sample
#   MATCH_HEADS [2]  first-layer token-matching heads at init
#   EVAL_QUERIES [0 = all]  held-out queries scored per set; OCR [1]  run the Tesseract baseline
#   SAVE_EVERY [50] VOCAB [8000] MAX_PIXELS [1048576] SEED [7]
# Tiny dry run: WORK=.cache/small-dry MODEL_OUT=.cache/small-dry/out WT_STEPS=2 WV_STEPS=2 WV2_STEPS=2 RA_STEPS=2 \
#   S2_STEPS=2 S1_SAMPLES=40 S2_DOCS=3 EVAL_QUERIES=4 OCR=0 scripts/train_small_model.sh
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
WT_STEPS="${WT_STEPS:-500}" WV_STEPS="${WV_STEPS:-12000}" RA_STEPS="${RA_STEPS:-300}" S2_STEPS="${S2_STEPS:-1000}"
WT_LR="${WT_LR:-3e-4}" WV_LR="${WV_LR:-1e-3}" S2_LR="${S2_LR:-3e-4}"
WV2_STEPS="${WV2_STEPS:-9000}" WV2_LR="${WV2_LR:-5e-4}"
BATCH="${BATCH:-8}"
CLIP="${CLIP:-1.0}"
CROP="${CROP:-320}"
SPELLING="${SPELLING:-0.8}"
KEEP="${KEEP:-0.5}"
S1_SAMPLES="${S1_SAMPLES:-12000}"
S1_CANDIDATES="${S1_CANDIDATES:-3}"
S2_DOCS="${S2_DOCS:-0}"
S2_JOBS="${S2_JOBS:-2}"
S2_MAX_CANDIDATES="${S2_MAX_CANDIDATES:-4}"
MATCH_HEADS="${MATCH_HEADS:-2}"
LLM_STAGES="${LLM_STAGES:-0}"
EVAL_QUERIES="${EVAL_QUERIES:-0}"
OCR="${OCR:-1}"
SAVE_EVERY="${SAVE_EVERY:-50}"
VOCAB="${VOCAB:-8000}"
MAX_PIXELS="${MAX_PIXELS:-1048576}"
SEED="${SEED:-7}"

[ -x "$ZR" ] || { echo "no binary at $ZR: run scripts/build.sh or set ZIPRERANK" >&2; exit 1; }
mkdir -p "$WORK"
say() { echo "== $(date +%H:%M:%S) $*" >&2; }
step_start=0
begin() { step_start=$SECONDS; say "$1"; }
end() { say "$1 done in $((SECONDS - step_start)) s"; }
# Warm-up longer than the run (tiny dry runs) is cut to 0.
warmup_for() { if [ "$2" -lt "$1" ]; then echo "$2"; else echo 0; fi; }

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
# The architecture is Qwen3-VL's at small dimensions, sized to train on two CPU cores:
#  - vision: depth 3, width 192, 3 heads of 64, MLP 768, patch 16, merge 2, one DeepStack tap
#    (after block 1) feeding the first text layer as in the full model.
#  - text: 4 layers, width 256, 4 query / 2 key-value heads of 64 (grouped-query attention as
#    Qwen3), MLP 768, untied 8000-piece embeddings.
#  About 10.9M parameters (input + output embeddings 4.1M); 21 MiB in bfloat16.
#  - mrope_section [12, 10, 10] sums to head_dim / 2 = 32 (time, height, width), interleaved.
#  - the preprocessor caps pages at MAX_PIXELS (1048576 = 1024 x 1024): a 1024-px A4/Letter page
#    keeps its input scale (about 750-800 visual tokens), since body text shrunk further is too
#    small for a tower this size to read; pruning then cuts what the language model sees.
#  - MATCH_HEADS first-layer query heads start as token-matching heads (`init --match-heads`): a
#    randomly initialised model otherwise sits at chance on listwise ranking for hundreds of
#    steps, since nothing lets a word on a page find the same word in the query.
#  - word-piece embeddings start with a spelling code (`init --spelling-embeddings`): the reading
#    warm-up then earns credit for partly read words instead of having to name each word exactly.
#  - the DeepStack mergers start silent (`init --zero-deepstack`): the language model warms up on
#    text tokens without DeepStack features, and stage 2 keeps the tower (mergers included) frozen.
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
    "ziprerank": {"pruning_text": "query"},
    "model_type": "qwen3_vl",
    "image_token_id": image_pad, "video_token_id": video_pad,
    "vision_start_token_id": vstart, "vision_end_token_id": vend,
    "pad_token_id": endoftext,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
    "text_config": {
        "model_type": "qwen3_vl_text", "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": endoftext, "eos_token_id": im_end,
        "hidden_act": "silu", "hidden_size": 256, "intermediate_size": 768,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
        "initializer_range": 0.02, "max_position_embeddings": 32768, "rms_norm_eps": 1e-06,
        "rope_scaling": {"mrope_interleaved": True, "mrope_section": [12, 10, 10], "rope_type": "default"},
        "rope_theta": 5000000.0, "tie_word_embeddings": False, "vocab_size": vocab,
    },
    "vision_config": {
        "model_type": "qwen3_vl", "depth": 3, "hidden_size": 192, "intermediate_size": 768,
        "num_heads": 3, "hidden_act": "gelu_pytorch_tanh", "in_channels": 3, "initializer_range": 0.02,
        "num_position_embeddings": 2304, "out_hidden_size": 256, "patch_size": 16,
        "spatial_merge_size": 2, "temporal_patch_size": 2, "deepstack_visual_indexes": [1],
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
    --tokenizer "$WORK/tokenizer.model" --out "$WORK/init" --name ziprerank-small --seed "$SEED" \
    --match-heads "$MATCH_HEADS" --spelling-embeddings "$SPELLING" --zero-deepstack --force
  end "config + init"
fi

# Runs one training stage, or continues it from its newest checkpoint.
#   train_stage NAME STAGE DATA INIT STEPS LR [extra train flags...]
train_stage() {
  local name="$1" stage="$2" data="$3" init="$4" steps="$5" lr="$6"
  shift 6
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
    --metrics "$dir/metrics.jsonl" --max-steps "$steps" --lr "$lr" --warmup "$(warmup_for "$steps" 50)" \
    --batch-size "${STAGE_BATCH:-$BATCH}" --grad-accum 1 --max-grad-norm "$CLIP" --seed "${STAGE_SEED:-$SEED}" --device "$DEVICE" \
    --threads "$THREADS" --name ziprerank-small "$@" 2>&1 | tee -i -a "$dir/train.log" >&2  # -i: Ctrl-C reaches train (which checkpoints), not tee
  touch "$dir/done"
  end "$name"
}

# 4. Stage-2 data: held-out documents are decided here (by document) -----------------------------
if [ -f "$WORK/stage2-data/stats.json" ]; then
  say "stage-2 data: exists, skipped"
else
  begin "stage-2 data (docs: ${S2_DOCS/#0/all})"
  python3 scripts/make_stage2_data.py --out "$WORK/stage2-data" --ziprerank "$ZR" --docs "$S2_DOCS" \
    --jobs "$S2_JOBS" --train-candidates "$S2_MAX_CANDIDATES" --seed "$SEED"
  end "stage-2 data"
fi

# 5. Reading: the shipped model ------------------------------------------------------------------
# The vision tower learns to read (no language model): each merged visual token is pulled toward
# the embeddings of the words drawn under it, on CROP-pixel windows of the training pages at
# their input scale (a window costs a fraction of a page; reading is local). The shipped model
# ranks with this tower alone (similarity scoring); its language model stays as initialised.
STAGE_BATCH=1 train_stage warmup-vision 2 "$WORK/stage2-data/train.jsonl" "$WORK/init" \
  "$WV_STEPS" "$WV_LR" --align-only --align-weight 1 --align-crop "$CROP" \
  --max-candidates "$S2_MAX_CANDIDATES" --save-dtype bfloat16
reading="$WORK/warmup-vision"
# A second pass from the first one's weights, at a lower peak learning rate, on other windows
# (another seed): the first pass's loss was still falling when its schedule ended.
if [ "$WV2_STEPS" -gt 0 ]; then
  STAGE_BATCH=1 STAGE_SEED=$((SEED + 1)) train_stage warmup-vision2 2 "$WORK/stage2-data/train.jsonl" \
    "$WORK/warmup-vision/model" "$WV2_STEPS" "$WV2_LR" --align-only --align-weight 1 \
    --align-crop "$CROP" --max-candidates "$S2_MAX_CANDIDATES" --save-dtype bfloat16
  reading="$WORK/warmup-vision2"
fi

# 6. Language-model stages (LLM_STAGES=1; not in the shipped model: see models/README.md) ---------
if [ "$LLM_STAGES" = 1 ]; then
  for kind in random hard; do
    d="$WORK/stage1-$kind"
    if [ -f "$d/stats.json" ]; then say "stage-1 data ($kind): exists, skipped"; continue; fi
    begin "stage-1 data ($kind negatives, $S1_SAMPLES samples)"
    python3 scripts/make_stage1_data.py --out "$d" --samples "$S1_SAMPLES" --eval-samples 300 \
      --candidates "$S1_CANDIDATES" --negatives "$kind" --seed "$SEED"
    python3 scripts/make_stage1_eval.py --eval "$d/eval.jsonl" --out "$d/eval-set" --ziprerank "$ZR"
    end "stage-1 data ($kind)"
  done
  # The language model learns to rank passages shown as their text tokens on the visual-token
  # grid (no vision tower): a per-candidate loss pooled over each passage's tokens.
  train_stage warmup-text 1 "$WORK/stage1-random/train.jsonl" "$WORK/init" "$WT_STEPS" "$WT_LR" \
    --text-candidates --candidate-weight 1
  # The text warm-up moved the embeddings the tower points at: the joined model re-aligns the
  # tower to them (language model from the text warm-up, tower from the reading stage).
  STAGE_BATCH=1 train_stage realign 2 "$WORK/stage2-data/train.jsonl" "$WORK/warmup-text/model" \
    "$RA_STEPS" "$WV_LR" --init-vision "$reading/model" --align-only --align-weight 1 \
    --align-crop "$CROP" --max-candidates "$S2_MAX_CANDIDATES"
  # Stage 2: document pages, tower frozen (each page encoded once), pruning on.
  train_stage stage2 2 "$WORK/stage2-data/train.jsonl" "$WORK/realign/model" "$S2_STEPS" "$S2_LR" \
    --max-candidates "$S2_MAX_CANDIDATES" --freeze-vision --keep-ratio "$KEEP" --candidate-weight 1 \
    --save-dtype bfloat16
fi

# 7. The candidate folder: the reading stage's model, ranking by similarity -----------------------
cand="$WORK/candidate"
rm -rf "$cand"
mkdir -p "$cand"
for f in "$reading/model"/*; do
  [ -f "$f" ] && cp "$f" "$cand/"
done
python3 - "$cand/config.json" "$CROP" <<'PY'
import json, sys
path, crop = sys.argv[1], int(sys.argv[2])
config = json.load(open(path))
config.pop("qi_early_text_mode", None)
note = config.setdefault("ziprerank", {})
note["pruning_text"] = "query"
note["name"] = "ziprerank-small"
note["scoring"] = "similarity"
# Only the tower is trained: `rank --scoring logits` with this model warns that its rankings are
# not meaningful.
note["trained_scorings"] = ["similarity"]
note["keep_ratio"] = 1.0  # scoring costs nothing next to reading; every kept token helps it
# The tower learned to read on crop-sized windows: it reads pages as tiles of that size, which
# costs far less than attention across a whole page.
note["vision_tile"] = crop
json.dump(config, open(path, "w"), indent=2)
PY

# 8. Held-out evaluation --------------------------------------------------------------------------
# Sets: held-out documents laid out by `ziprerank render`; the same documents typeset by GNU troff
# as PDFs; and those PDFs bound into volumes of 24+ pages, so each query has 20 candidates.
if [ ! -f "$WORK/pdf-eval/volumes/stats.json" ]; then
  begin "PDF evaluation sets (groff)"
  python3 scripts/make_pdf_eval.py --stage2 "$WORK/stage2-data" --out "$WORK/pdf-eval" --volume-pages 24
  end "PDF evaluation sets"
fi
if [ "$OCR" = 1 ]; then
  for q in "$WORK/stage2-data/eval.jsonl:$WORK/stage2-data/eval_ocr_run.jsonl" \
           "$WORK/pdf-eval/queries.jsonl:$WORK/pdf-eval/ocr_run.jsonl" \
           "$WORK/pdf-eval/volumes/queries.jsonl:$WORK/pdf-eval/volumes/ocr_run.jsonl"; do
    [ -f "${q#*:}" ] || python3 scripts/ocr_bm25_baseline.py --queries "${q%%:*}" --out "${q#*:}" --jobs 2
  done
fi
begin "evaluation"
# Keep ratios 1.0, 0.5 and 0.25: similarity scoring reads the visual tokens pruning keeps.
LIMIT="$EVAL_QUERIES" ZIPRERANK="$ZR" scripts/eval_small_model.sh "$cand" "$WORK/eval" \
  "pages=$WORK/stage2-data/eval.jsonl" "groff-pdf=$WORK/pdf-eval/queries.jsonl" \
  "groff-volumes=$WORK/pdf-eval/volumes/queries.jsonl"
# What pruning keeps: the share of tokens showing a query word kept at each ratio.
"$ZR" --log-level warn bench --model "$cand" --threads "$THREADS" --keep-ratios 0.5,0.25,0.1 \
  --limit "$EVAL_QUERIES" --pruning-recall "$WORK/stage2-data/eval.jsonl" | tee "$WORK/eval/pruning_recall.txt" >&2
{ echo; echo '```'; cat "$WORK/eval/pruning_recall.txt"; echo '```'; } >> "$WORK/eval/summary.md"
curves=("reading=$WORK/warmup-vision/metrics.jsonl")
[ "$WV2_STEPS" -gt 0 ] && curves+=("reading, second pass=$WORK/warmup-vision2/metrics.jsonl")
if [ "$LLM_STAGES" = 1 ]; then
  curves+=("warm-up text=$WORK/warmup-text/metrics.jsonl" "re-align=$WORK/realign/metrics.jsonl"
           "stage 2=$WORK/stage2/metrics.jsonl")
fi
python3 scripts/plot_metrics.py --out "$WORK/eval/loss_curves.svg" "${curves[@]}"
end "evaluation"

# 9. The shipped folder ---------------------------------------------------------------------------
begin "copy to $MODEL_OUT"
rm -rf "$MODEL_OUT.tmp"
mkdir -p "$MODEL_OUT.tmp/eval"
for f in "$cand"/*; do
  [ -f "$f" ] && cp "$f" "$MODEL_OUT.tmp/"
done
cp "$WORK/eval/summary.md" "$WORK/eval/loss_curves.svg" "$MODEL_OUT.tmp/eval/"
"$ZR" inspect --model "$MODEL_OUT.tmp" >&2
rm -rf "$MODEL_OUT"
mv "$MODEL_OUT.tmp" "$MODEL_OUT"
end "copy to $MODEL_OUT"
