#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang-14, ASan + UBSan) in their own build folder and runs
# each one for a bounded time, one after another, then prints a table: executions, exec/s,
# coverage and the crash/leak/timeout/OOM inputs found. See fuzz/README.md.
#
# Usage: scripts/fuzz.sh [target...]        (default: every target; names with or without fuzz_)
# Environment:
#   FUZZ_SECONDS    seconds per target (default 60); FUZZ_SECONDS_<TARGET> overrides one target,
#                   e.g. FUZZ_SECONDS_PDF=300
#   FUZZ_BUILD_DIR  build folder (default build-fuzz)
#   FUZZ_ARGS       extra libFuzzer flags for every target (e.g. "-seed=1")
#   JOBS            build parallelism (default 2)
# Findings are written to $FUZZ_BUILD_DIR/findings/<target>/ (crash-*, leak-*, timeout-*, oom-*);
# the corpus a run grows stays in $FUZZ_BUILD_DIR/corpus/<target>/ and is reused by the next run
# (the seeds in fuzz/corpus/ are only read). Exit status: 0 when nothing was found, 1 otherwise.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
seconds="${FUZZ_SECONDS:-60}"
jobs="${JOBS:-2}"

ALL_TARGETS=(safetensors config preprocessor_config tokenizer batch_record run qrels image pdf
             sentencepiece)

# --- toolchain (idempotent: only what is missing is installed) -----------------------------------
PKGS=(clang-14 libclang-rt-14-dev lld-14 cmake ninja-build pkg-config nlohmann-json3-dev
      libspdlog-dev libopencv-dev libpoppler-cpp-dev libsentencepiece-dev libtorch-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "fuzz.sh: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- build ---------------------------------------------------------------------------------------
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ ! -f "$build/CMakeCache.txt" ]; then
  CXX=clang++-14 cmake -S "$root" -B "$build" "${generator[@]}" -DZIPRERANK_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=Debug >/dev/null
fi
cmake --build "$build" -j "$jobs"

# --- run -----------------------------------------------------------------------------------------
targets=("$@")
explicit=1
[ ${#targets[@]} -eq 0 ] && targets=("${ALL_TARGETS[@]}") && explicit=0

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$root/fuzz/lsan.supp:print_suppressions=0}"
# The targets' scratch files (inputs of path-only parsers) go to RAM when possible: on ext4, a file
# rewritten for every input is flushed to disk each time it is closed.
shm=()
[ -d /dev/shm ] && [ -w /dev/shm ] && shm=(-p /dev/shm)
scratch="$(mktemp -d "${shm[@]}")"
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch"

# libFuzzer stops at the first finding; the target is then restarted for the time left (at most
# 10 times), so one run can report several findings and the execution count covers the whole time.
rows=()
found_any=0
for t in "${targets[@]}"; do
  t="${t#fuzz_}"
  bin="$build/fuzz/fuzz_$t"
  if [ ! -x "$bin" ]; then
    built=$(ls "$build/fuzz" | grep '^fuzz_' | grep -v '\.' | tr '\n' ' ')
    echo "fuzz.sh: no target fuzz_$t (built: $built)" >&2
    [ "$explicit" -eq 1 ] && exit 2
    continue  # e.g. fuzz_sentencepiece without libsentencepiece-dev
  fi
  var="FUZZ_SECONDS_$(echo "$t" | tr '[:lower:]' '[:upper:]')"
  budget="${!var:-$seconds}"
  corpus="$build/corpus/$t"
  findings="$build/findings/$t"
  mkdir -p "$corpus" "$findings"
  dict=()
  [ -f "$root/fuzz/dict/$t.dict" ] && dict=(-dict="$root/fuzz/dict/$t.dict")
  before=$(ls "$findings" | grep -vc '\.log$' || true)
  execs=0
  cov=0
  start=$(date +%s)
  for attempt in $(seq 1 10); do
    left=$((budget - ($(date +%s) - start)))
    [ "$left" -ge 1 ] || break
    log="$build/findings/$t.log"
    set +e
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$left" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$findings/" "${dict[@]}" ${FUZZ_ARGS:-} "$corpus" "$root/fuzz/corpus/$t" \
      >"$log" 2>&1
    rc=$?
    set -e
    n=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | awk '{print $2}')
    execs=$((execs + ${n:-0}))
    c=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    [ -n "$c" ] && [ "$c" -gt "$cov" ] && cov=$c
    if [ "$rc" -ne 0 ]; then
      echo "fuzz.sh: fuzz_$t stopped on a finding (exit $rc); log: $log" >&2
      grep -m1 -E 'ERROR: |runtime error|fuzz invariant failed|terminate called' "$log" >&2 || true
      cp "$log" "$findings/$(date +%s)-$attempt.log"
    else
      break
    fi
  done
  elapsed=$(( $(date +%s) - start ))
  [ "$elapsed" -gt 0 ] || elapsed=1
  new=$(ls "$findings" | grep -vc '\.log$' || true)
  new=$((new - before))
  [ "$new" -lt 0 ] && new=0
  kinds=""
  if [ "$new" -gt 0 ]; then
    found_any=1
    kinds=$( (ls -t "$findings" | grep -v '\.log$' | head -"$new" | sed 's/-.*//' | sort |
              uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}') || true)
  fi
  rows+=("$(printf '| fuzz_%s | %s | %s | %s | %s | %s |' "$t" "$execs" "$((execs / elapsed))" \
            "$elapsed" "$cov" "${new}${kinds:+ ($kinds)}")")
done

echo
echo "| target | executions | exec/s | seconds | coverage | findings |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
printf '%s\n' "${rows[@]}"
echo
echo "findings (if any): $build/findings/<target>/"
exit "$found_any"
