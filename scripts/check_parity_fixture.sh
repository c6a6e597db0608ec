#!/usr/bin/env bash
# Regenerates the parity fixtures (tests/fixtures/parity) in a temporary folder with the pinned
# reference environment and compares them with the committed ones. Fails on any difference.
#   1. transformers' fixture (scripts/make_parity_fixture.py): ids, grids, configs and image pixels
#      exactly, tensors within 1e-6;
#   2. the ZipRerank reference pipeline's fixture (scripts/make_reference_fixture.py, in
#      tests/fixtures/parity/reference): its own code run from a checkout, ZIPRERANK_REFERENCE_DIR
#      when set, else a clone of github.com/dukesun99/ZipRerank.
# Where the reference environment cannot be made (no package index) or the reference code cannot
# be fetched (offline), the step says so and skips: the Parity tests still check ziprerank against
# the committed fixtures.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
start=$(date +%s)
rc=0
python="$("$root/scripts/reference_env.sh")" || rc=$?
if [ "$rc" -eq 3 ]; then
  echo "parity fixture check skipped: no reference environment" >&2
  exit 0
elif [ "$rc" -ne 0 ]; then
  echo "parity fixture check: the reference environment failed (exit $rc)" >&2
  exit "$rc"
fi
"$python" "$root/scripts/make_parity_fixture.py" --check "$root/tests/fixtures/parity"
echo "parity fixture check passed in $(($(date +%s) - start)) s" >&2

start=$(date +%s)
reference=()
if [ -n "${ZIPRERANK_REFERENCE_DIR:-}" ]; then reference=(--reference "$ZIPRERANK_REFERENCE_DIR"); fi
rc=0
"$python" "$root/scripts/make_reference_fixture.py" --check "${reference[@]}" \
  "$root/tests/fixtures/parity/reference" || rc=$?
if [ "$rc" -eq 3 ]; then
  echo "reference fixture check skipped: the reference code cannot be fetched here" >&2
  exit 0
elif [ "$rc" -ne 0 ]; then
  exit "$rc"
fi
echo "reference fixture check passed in $(($(date +%s) - start)) s" >&2
