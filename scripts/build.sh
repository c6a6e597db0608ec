#!/usr/bin/env bash
# Installs missing system packages, configures and builds ziprerank (Release-with-debug-info).
# Usage: scripts/build.sh [extra cmake -D options]   (BUILD_DIR overrides the build folder;
#        BUILD_TARGETS="a b" builds just those targets and what they need, default: all)
#
# Which libtorch (ZIPRERANK_LIBTORCH):
#   auto (default)  the libtorch inside the PyTorch 2.13 CPU wheel (MKL, oneDNN) of the reference
#                   environment (scripts/reference_env.sh, about a minute the first time), the
#                   faster of the two on every host measured (PERFORMANCE.md, "Two libtorch
#                   builds"); Debian's libtorch 1.13 where that environment cannot be made (no
#                   package index, no local CPU wheel), saying so. Folder: build/.
#   wheel           the wheel's libtorch, or an error where it cannot be had. Folder: build/.
#   debian          Debian's libtorch 1.13 (OpenBLAS). Folder: build-debian/.
#   /path/to/share/cmake   any other libtorch's CMake folder (a CUDA one). Folder: build-libtorch/.
# A build folder configured against another libtorch is configured afresh (its objects rebuilt).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
libtorch="${ZIPRERANK_LIBTORCH:-auto}"

wheel_prefix() {  # the wheel's CMake prefix on stdout; exit status as scripts/reference_env.sh's
  local python
  python="$(BUILD_DIR="$root/build" "$root/scripts/reference_env.sh")" || return $?
  "$python" -c 'import torch; print(torch.utils.cmake_prefix_path)'
}

prefix=""
case "$libtorch" in
  auto | wheel)
    build="${BUILD_DIR:-$root/build}"
    status=0
    prefix="$(wheel_prefix)" || status=$?
    if [ "$status" -eq 3 ] && [ "$libtorch" = auto ]; then
      echo "build: the PyTorch wheel's libtorch cannot be had here (above); building against" \
        "Debian's libtorch 1.13 instead" >&2
      prefix=""
    elif [ "$status" -ne 0 ]; then
      exit "$status"
    fi
    ;;
  debian) build="${BUILD_DIR:-$root/build-debian}" ;;
  *)
    build="${BUILD_DIR:-$root/build-libtorch}"
    prefix="$libtorch"
    ;;
esac
"$root/scripts/install_deps.sh"

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ -f "$build/CMakeCache.txt" ] && ! grep -q "CMAKE_GENERATOR:INTERNAL=${generator[1]:-Unix Makefiles}" "$build/CMakeCache.txt"; then
  rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"  # generator changed
fi
# The libtorch the folder was configured against is kept beside its cache; another one means a
# fresh configuration (CMake would otherwise keep the cached Torch_DIR). The reference
# environment under build/ is kept.
stamp="$build/.ziprerank-libtorch"
want="${prefix:-debian}"
if [ -f "$build/CMakeCache.txt" ] && [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "build: $build was configured against another libtorch; configuring it afresh" >&2
  rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"
fi
extra=()
if [ -n "$prefix" ]; then
  # The libtorch's own root too (its share/cmake's grandparent), so that its lib/ is searched
  # before the system's: TorchConfig looks libtorch.so up by name, and Debian's is on the
  # system's path where Debian's libtorch is installed.
  extra=(-DCMAKE_PREFIX_PATH="$prefix;$(cd "$prefix/../.." && pwd)")
fi
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${extra[@]}" "$@"
echo "$want" >"$stamp"
jobs="${JOBS:-$(nproc)}"
targets=()
[ -n "${BUILD_TARGETS:-}" ] && targets=(--target ${BUILD_TARGETS})
cmake --build "$build" -j "$jobs" "${targets[@]}"
