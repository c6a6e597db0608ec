#!/usr/bin/env bash
# Parity on a GPU machine, in one go: builds ziprerank against that machine's CUDA PyTorch, makes
# the transformers parity fixture there (scripts/make_parity_fixture.py --device cuda: float32
# and bfloat16, eager and sdpa), runs the Parity tests with ziprerank on CUDA against it and
# against the committed CPU fixtures (transformers and the ZipRerank reference pipeline), runs the
# dtype tests (Dtypes/*: the building blocks and the whole model, with their CUDA cases), and
# writes a short report. Budget: under 8 minutes on a 16-core machine.
#
#   scripts/gpu/parity_check.sh [--dry-run] [OUT]
#
# OUT (default: $OUT, else build/gpu-parity) receives parity_report.md, the fixture made there
# and each step's log. Environment: PYTHON (a python with CUDA torch and transformers 4.57.6;
# default python3), BUILD_DIR (default build-gpu; with --dry-run, build), ZIPRERANK_DEBS (see
# build_env.sh).
#
# --dry-run, or a machine without CUDA: the same steps on the CPU with the existing build and the
# reference environment of scripts/reference_env.sh (the fixture step is skipped, with a line in
# the report, where that environment cannot be made). Exit status: 0 when every step passed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=build_env.sh
source "$root/scripts/gpu/build_env.sh"
zr_gpu_args parity_check "$@"
out="${out:-$root/build/gpu-parity}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
report="$out/parity_report.md"
start=$(date +%s)
failed=0
say() { echo "parity_check: $*" >&2; }
elapsed() { echo $(($(date +%s) - start)); }

python="${PYTHON:-python3}"
device=cuda
if [ "$dry" -eq 0 ] && ! "$python" -c 'import sys, torch, transformers; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  say "no CUDA PyTorch with transformers in $python: running the CPU dry run instead"
  dry=1
fi
have_python=1
if [ "$dry" -eq 1 ]; then
  device=cpu
  build="${BUILD_DIR:-$root/build}"
  rc=0
  python="$("$root/scripts/reference_env.sh")" || rc=$?
  if [ "$rc" -ne 0 ]; then have_python=0; fi
else
  build="${BUILD_DIR:-$root/build-gpu}"
fi

{
  echo "# ziprerank parity check ($device$([ "$dry" -eq 1 ] && echo ', dry run'))"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
  if [ "$have_python" -eq 1 ]; then
    echo "- $("$python" -c 'import torch, transformers; d = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"; print(f"torch {torch.__version__}, transformers {transformers.__version__}, device {d}")' 2>/dev/null)"
  fi
  echo
} >"$report"

# 1. Build (on the GPU machine only; the dry run uses the existing build).
if [ "$dry" -eq 0 ]; then
  say "building model_tests against $python's libtorch in $build"
  if zr_build_cuda "$root" "$build" "$python" "$out/build.log" model_tests; then
    echo "- build: ok in $(elapsed) s (log: build.log)" >>"$report"
  else
    echo "- build: FAILED (log: build.log)" >>"$report"
    tail -20 "$out/build.log" >&2
    exit 1
  fi
fi
tests="$build/tests/model_tests"
if [ ! -x "$tests" ]; then
  say "$tests is missing: build the model_tests target first"
  echo "- model_tests missing in $build" >>"$report"
  exit 1
fi

# 2. transformers on this device: the parity fixture made here.
fixture=""
if [ "$have_python" -eq 1 ]; then
  say "making the transformers fixture on $device"
  t0=$(date +%s)
  if timeout 300 "$python" "$root/scripts/make_parity_fixture.py" --device "$device" \
    "$out/fixture" >"$out/fixture.log" 2>&1; then
    fixture="$out/fixture"
    echo "- transformers fixture on $device: made in $(($(date +%s) - t0)) s (log: fixture.log)" >>"$report"
  else
    failed=1
    echo "- transformers fixture on $device: FAILED (log: fixture.log)" >>"$report"
  fi
else
  echo "- transformers fixture on $device: skipped (no reference environment here)" >>"$report"
fi

# 3. ziprerank on this device against it, and against the committed fixtures.
run_tests() { # name, fixture dir ("" = committed), gtest filter
  local name="$1" dir="$2" filter="$3" log="$out/$1.log" rc=0
  ZIPRERANK_PARITY_DIR="$dir" ZIPRERANK_PARITY_DEVICE="$device" timeout 300 "$tests" \
    --gtest_filter="$filter" >"$log" 2>&1 || rc=$?
  local passed skipped
  passed=$(grep -c '^\[       OK \]' "$log" || true)
  skipped=$(grep -c '^\[  SKIPPED \]' "$log" || true)
  {
    echo
    echo "## $name: $([ "$rc" -eq 0 ] && echo passed || echo FAILED) ($passed passed, $skipped skipped; log: $name.log)"
    echo
    echo '```'
    # Pixels as one line (every image under every processor), the other stages one line each.
    awk '/^\[parity\].* pixels / { n++; match($0, /level diff\| [0-9]+/)
                                    d = substr($0, RSTART + 12, RLENGTH - 12) + 0; if (d > m) m = d; next }
         /^\[parity\]/ { sub(/^\[parity\] /, ""); print }
         END { if (n) printf "pixels: %d image/processor pairs, largest difference %d levels\n", n, m }' "$log"
    grep '^\[  FAILED  \]' "$log" || true
    echo '```'
  } >>"$report"
  if [ "$rc" -ne 0 ]; then failed=1; fi
}
if [ -n "$fixture" ]; then
  run_tests "transformers-on-$device" "$fixture" 'Parity.*'
fi
run_tests "committed-fixtures" "" 'Parity*'
# The building blocks and the whole model in each dtype, with the CUDA cases this machine adds.
run_tests "dtypes-and-devices" "" 'Dtypes/*'

echo >>"$report"
echo "Total: $(elapsed) s; $([ "$failed" -eq 0 ] && echo 'every step passed' || echo 'FAILURES above')." >>"$report"
say "report: $report ($(elapsed) s)"
exit "$failed"
