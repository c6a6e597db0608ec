#!/usr/bin/env bash
# Builds ziprerank against the other libtorch it supports, Debian's libtorch 1.13 (OpenBLAS), in
# build-debian/, with warnings as errors, and runs the model and unit tests there (CTest labels
# "model" and "unit"). The default build (scripts/test.sh, build/) uses the PyTorch 2.13 CPU
# wheel's libtorch; where that could not be had, build/ is Debian's already and this says so and
# stops.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$(cat "$root/build/.ziprerank-libtorch" 2>/dev/null)" = debian ]; then
  echo "Debian libtorch build skipped: build/ is built against it already (scripts/test.sh)" >&2
  exit 0
fi
debian_build="$root/build-debian"
start=$(date +%s)
# Just the model and unit tests and the binary they run (the CLI tests run in build/).
BUILD_DIR="$debian_build" BUILD_TARGETS="model_tests unit_tests ziprerank" ZIPRERANK_LIBTORCH=debian \
  "$root/scripts/build.sh" -DZIPRERANK_WERROR=ON
echo "Debian libtorch build: $(($(date +%s) - start)) s" >&2
cd "$debian_build"
ctest --output-on-failure -L "model|unit" -j "${JOBS:-2}" --timeout 1200
