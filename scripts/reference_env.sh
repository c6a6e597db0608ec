#!/usr/bin/env bash
# Makes (once) the Python environment that scripts/make_parity_fixture.py runs in: PyTorch (CPU)
# and Hugging Face transformers at pinned versions, in a virtual environment under the build
# folder. Prints the environment's python on stdout; progress and timing go to stderr.
#
#   scripts/reference_env.sh            # -> build/reference-venv/bin/python
#   BUILD_DIR=/some/build scripts/reference_env.sh
#
# Exit status: 0 ready; 3 the environment cannot be made here (no package index, or no local CPU
# wheel of torch), with one line saying so: callers treat that as "skip", never as a failure;
# anything else is a real error.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
venv="$build/reference-venv"
python="${PYTHON:-python3}"

# torch comes only from a local wheel (pip's find-links): PyPI's torch for Linux is the multi-GB
# CUDA build, which this never downloads. torchvision is what transformers' fast Qwen2-VL image
# processor resizes with (its small PyPI wheel works next to the CPU torch; see
# scripts/make_parity_fixture.py).
torch_req="torch==2.13.0"
reqs=(transformers==4.57.6 torchvision==0.28.0 safetensors==0.8.0 numpy==2.4.6 pillow==13.0.0)
stamp_text="$torch_req ${reqs[*]}"
unavailable=3

start=$(date +%s)
mkdir -p "$build"
exec 9>"$build/reference-venv.lock"
flock 9 # two callers at once: the second waits and then finds the environment ready

if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.ziprerank-stamp" 2>/dev/null)" = "$stamp_text" ]; then
  echo "$venv/bin/python"
  exit 0
fi

say_unavailable() {
  echo "reference environment unavailable: $1 (parity fixtures are checked as committed)" >&2
  exit "$unavailable"
}

# pip's messages go to a log, shown only when the failure is a real one.
log="$build/reference-venv.log"
quiet_pip() {
  "$venv/bin/python" -m pip "$@" >>"$log" 2>&1
}

index_reachable() {
  local url
  url="${PIP_INDEX_URL:-$("$python" -m pip config get global.index-url 2>/dev/null || true)}"
  url="${url:-https://pypi.org/simple}"
  case "$url" in file:*) return 0 ;; esac
  "$python" - "$url" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/transformers/", timeout=15).read(1)
EOF
}

index_reachable || say_unavailable "the package index does not answer"
echo "reference environment: making $venv ($stamp_text)" >&2
rm -rf "$venv"
: >"$log"
"$python" -m venv "$venv"
if ! quiet_pip install -q --no-index --no-deps "$torch_req"; then
  rm -rf "$venv"
  say_unavailable "no local CPU wheel of $torch_req in pip's find-links"
fi
# torch is installed by now, so this fetches only its dependencies and the rest.
if ! quiet_pip install -q "$torch_req" "${reqs[@]}"; then
  grep -v -e "^WARNING: Location '" "$log" | tail -20 >&2
  echo "reference environment: pip install ${reqs[*]} failed (log: $log)" >&2
  exit 1
fi
echo "$stamp_text" >"$venv/.ziprerank-stamp"
echo "reference environment: ready in $(($(date +%s) - start)) s" >&2
echo "$venv/bin/python"
