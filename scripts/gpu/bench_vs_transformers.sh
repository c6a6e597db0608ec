#!/usr/bin/env bash
# ziprerank against transformers on one GPU, in one go: builds ziprerank against the machine's
# CUDA PyTorch (scripts/gpu/build_env.sh), makes a random model of Qwen3-VL-8B's dimensions
# (TEXT_LAYERS / VISION_LAYERS of them, default 12 / 9 with DeepStack after vision layers 2, 5, 8;
# 36 / 27 is the whole 8B), and runs scripts/bench_vs_transformers.py on a 20-page window: keep
# 1.0 / 0.5 / 0.25, logits and generate scoring, bfloat16, rounds interleaved. Writes the table to
# OUT/bench_vs_transformers.md (and .json). Budget: under 8 minutes on a 16-core H200 machine.
#
#   scripts/gpu/bench_vs_transformers.sh [--dry-run] [OUT]
#
# OUT defaults to $OUT, else build/gpu-bench. Environment: PYTHON (CUDA torch + transformers
# 4.57.6 + torchvision; default python3), BUILD_DIR (default build-gpu), PAGES (20), ROUNDS (2),
# TEXT_LAYERS, VISION_LAYERS, ZIPRERANK_DEBS (see build_env.sh).
#
# --dry-run, or no CUDA in PYTHON: the same steps on the CPU with the existing build/ziprerank and
# the reference environment (scripts/reference_env.sh), on ziprerank's tiny model and 3 small
# pages, in well under a minute; exit 3 (skip) where that environment cannot be made.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=build_env.sh
source "$root/scripts/gpu/build_env.sh"
zr_gpu_args bench_vs_transformers "$@"
out="${out:-$root/build/gpu-bench}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
start=$(date +%s)
say() { echo "bench_vs_transformers: $* ($(($(date +%s) - start)) s)" >&2; }

python="${PYTHON:-python3}"
if [ "$dry" -eq 0 ] && ! "$python" -c 'import sys, torch, transformers; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  say "no CUDA PyTorch with transformers in $python: running the CPU dry run instead"
  dry=1
fi
if [ "$dry" -eq 1 ]; then
  rc=0
  python="$("$root/scripts/reference_env.sh")" || rc=$?
  if [ "$rc" -eq 3 ]; then
    say "no reference environment here: skipped"
    exit 3
  fi
  [ "$rc" -eq 0 ] || exit "$rc"
  zr="${ZIPRERANK:-$root/build/ziprerank}"
  [ -x "$zr" ] || { say "no binary at $zr: build the ziprerank target first"; exit 1; }
  args=(--dry-run --scorings logits) # generate too on the GPU; on the CPU it only adds minutes
else
  build="${BUILD_DIR:-$root/build-gpu}"
  say "building ziprerank against $python's CUDA libtorch in $build"
  if ! zr_build_cuda "$root" "$build" "$python" "$out/build.log" ziprerank; then
    tail -20 "$out/build.log" >&2
    say "build FAILED (log: $out/build.log)"
    exit 1
  fi
  zr="$build/ziprerank"
  text_layers="${TEXT_LAYERS:-12}" vision_layers="${VISION_LAYERS:-9}"
  config="$out/config-8b-${text_layers}x${vision_layers}.json"
  "$python" - "$root/tests/fixtures/config/qwen3_vl_8b_config.json" "$config" "$text_layers" "$vision_layers" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
text, vision = int(sys.argv[3]), int(sys.argv[4])
c["text_config"]["num_hidden_layers"] = text
c["vision_config"]["depth"] = vision
# DeepStack taps as the 8B spaces them (after layers 8, 16, 24 of 27), scaled to the depth.
c["vision_config"]["deepstack_visual_indexes"] = sorted({min(vision - 1, (i * vision) // 27) for i in (8, 16, 24)})
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
  model="$out/model-8b-${text_layers}x${vision_layers}"
  if [ ! -f "$model/model.safetensors" ]; then
    say "making the random model ($text_layers text / $vision_layers vision layers, bfloat16)"
    "$zr" --log-level warn init --config "$config" --preprocessor \
      "$root/tests/fixtures/config/qwen3_vl_8b_preprocessor_config.json" --dtype bfloat16 \
      --out "$model" --force
  fi
  args=(--model "$model" --device cuda --pages "${PAGES:-20}" --rounds "${ROUNDS:-2}"
    --dtypes bfloat16 --keep-ratios 1.0,0.5,0.25 --scorings logits,generate --threads "$(nproc)")
fi
say "running scripts/bench_vs_transformers.py ${args[*]}"
{
  echo "# ziprerank against transformers ($([ "$dry" -eq 1 ] && echo 'CPU dry run' || echo 'GPU'))"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "- $("$python" -c 'import torch, transformers; d = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"; print(f"torch {torch.__version__}, transformers {transformers.__version__}, device {d}")' 2>/dev/null)"
  echo
  echo '```'
  "$python" "$root/scripts/bench_vs_transformers.py" --ziprerank "$zr" --workdir "$out/work" \
    --json "$out/bench_vs_transformers.json" "${args[@]}"
  echo '```'
} >"$out/bench_vs_transformers.md.part"
mv "$out/bench_vs_transformers.md.part" "$out/bench_vs_transformers.md"
cat "$out/bench_vs_transformers.md"
say "done: $out/bench_vs_transformers.md"
