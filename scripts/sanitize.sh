#!/usr/bin/env bash
# Builds ziprerank with AddressSanitizer + UndefinedBehaviorSanitizer (-DZIPRERANK_SANITIZE=ON) in
# its own build folder and runs the whole test suite under them. Any report fails the run.
# Usage: scripts/sanitize.sh [extra ctest arguments]   (SANITIZE_BUILD_DIR overrides the folder)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${SANITIZE_BUILD_DIR:-$root/build-asan}"
# Against Debian's libtorch unless ZIPRERANK_LIBTORCH says otherwise: libtorch is not instrumented
# in either build, so the checks cover ziprerank's own code the same way, and this one needs no
# reference environment.
BUILD_DIR="$build" ZIPRERANK_LIBTORCH="${ZIPRERANK_LIBTORCH:-debian}" "$root/scripts/build.sh" -DZIPRERANK_SANITIZE=ON
# libtorch is not instrumented: leak reports from its allocator caches are noise, so leaks are
# checked in the fuzz targets (fuzz/) instead; every other report halts the process.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_odr_violation=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
cd "$build"
ctest --output-on-failure -j "${JOBS:-2}" --timeout 1800 "$@"
