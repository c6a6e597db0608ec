#!/usr/bin/env bash
# Builds ziprerank against the other libtorch it supports, the one inside the PyTorch CPU wheel
# (MKL and oneDNN; the libtorch CUDA users build against), in build-wheel/, with warnings as
# errors, and runs the model and unit tests there (CTest labels "model" and "unit"). The default
# build (scripts/test.sh) uses Debian's libtorch 1.13. Skipped, with a message, where the
# reference environment that holds the wheel cannot be made (no package index:
# scripts/reference_env.sh exits 3).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
status=0
BUILD_DIR="$root/build" "$root/scripts/reference_env.sh" >/dev/null || status=$?
if [ "$status" -eq 3 ]; then
  echo "wheel build skipped: the reference environment (PyTorch CPU wheel) cannot be made here" >&2
  exit 0
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi
wheel_build="$root/build-wheel"
start=$(date +%s)
# Just the model and unit tests and the binary they run (the CLI tests are not run here).
BUILD_DIR="$wheel_build" BUILD_TARGETS="model_tests unit_tests ziprerank" ZIPRERANK_LIBTORCH=wheel \
  "$root/scripts/build.sh" -DZIPRERANK_WERROR=ON
echo "wheel build: $(($(date +%s) - start)) s" >&2
cd "$wheel_build"
ctest --output-on-failure -L "model|unit" -j "${JOBS:-2}" --timeout 1200
