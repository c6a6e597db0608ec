#!/usr/bin/env bash
# Trains the SentencePiece tokenizer of ziprerank's own small model on the public-domain corpora
# (scripts/fetch_corpora.sh) plus the ranking prompt, so prompt words are whole pieces.
#   scripts/train_tokenizer.sh OUT_PREFIX [VOCAB_SIZE]     -> OUT_PREFIX.model
# The chat/vision special tokens and the brackets around identifiers are user-defined pieces:
# "[" and "]" always stand alone, so the identifier letter after "[" is its own piece, which is
# what listwise scoring reads. No dummy prefix, so "A" at the start of a target is the piece "A".
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
prefix="${1:?usage: train_tokenizer.sh OUT_PREFIX [VOCAB_SIZE]}"
vocab="${2:-8000}"
"$root/scripts/fetch_corpora.sh" >&2
corpus="$(mktemp)"
trap 'rm -f "$corpus"' EXIT
python3 - "$root/.cache/corpora" > "$corpus" <<'PY'
import glob, json, os, re, sys
cache = sys.argv[1]
files = sorted(glob.glob(os.path.join(cache, "sotu/package/data/*.json"))) + \
        sorted(glob.glob(os.path.join(cache, "moby-dick/package/data/chapter_*.json")))
for path in files:
    d = json.load(open(path))
    for s in re.split(r"(?<=[.!?])\s+", d["text"]):
        if s.strip():
            print(s.strip())
prompt = ("You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query.\n"
          "I will provide you with 20 passages as images.\nRank the passages based on their relevance to the search query.\n"
          "The images are provided in order: Picture 1 is passage [A], Picture 2 is passage [B].\nSearch Query:\n"
          "Rank the passages above based on their relevance to the search query.\n"
          "The passages should be listed in descending order using identifiers.\n"
          "The most relevant passages should be listed first.\nThe output format should be [A] > [B], etc.\n"
          "Only output the ranking results, do not say anything else.\n")
for _ in range(200):
    print(prompt)
PY
spm_train --input="$corpus" --model_prefix="$prefix" --vocab_size="$vocab" --model_type=unigram \
  --character_coverage=1.0 --byte_fallback=true --add_dummy_prefix=false \
  --normalization_rule_name=identity --split_digits=true \
  --pad_id=-1 --bos_id=-1 --eos_id=-1 --unk_id=0 \
  --user_defined_symbols='<|endoftext|>,<|im_start|>,<|im_end|>,<|vision_start|>,<|vision_end|>,<|image_pad|>,<|video_pad|>,[,]' \
  --input_sentence_size=2000000 --shuffle_input_sentence=true --random_seed=7 --num_threads=2 --minloglevel=1
rm -f "$prefix.vocab"
echo "wrote $prefix.model ($vocab pieces)" >&2
