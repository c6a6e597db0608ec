#!/usr/bin/env bash
# Installs what is missing, builds, and ranks the sample pages in data/ with the embedded model.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/scripts/build.sh" >&2
query="${1:-Amendments proposed by two thirds of both Houses}"
"$build/ziprerank" rank --query "$query" --pages "$root/data/samples/pages" --format table
