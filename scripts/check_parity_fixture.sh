#!/usr/bin/env bash
# Regenerates the transformers parity fixture (tests/fixtures/parity) in a temporary folder with
# the pinned reference environment and compares it with the committed one: ids, grids, configs
# and image pixels exactly, tensors within 1e-6. Fails on any difference. Where the reference
# environment cannot be made (no package index), it says so and skips: the Parity tests still
# check ziprerank against the committed fixture.
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
