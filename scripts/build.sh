#!/usr/bin/env bash
# Installs missing system packages, configures and builds ziprerank (Release-with-debug-info).
# Usage: scripts/build.sh [extra cmake -D options]   (BUILD_DIR overrides the build folder;
#        BUILD_TARGETS="a b" builds just those targets and what they need, default: all)
#
# ZIPRERANK_LIBTORCH=wheel builds against the libtorch inside the PyTorch CPU wheel of the
# reference environment (scripts/reference_env.sh) instead of Debian's libtorch, in build-wheel/
# by default (PERFORMANCE.md compares the two); ZIPRERANK_LIBTORCH=/path/to/share/cmake takes any
# other libtorch's CMake folder (a CUDA one, for instance).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
libtorch="${ZIPRERANK_LIBTORCH:-debian}"
extra=()
case "$libtorch" in
  debian) build="${BUILD_DIR:-$root/build}" ;;
  wheel)
    build="${BUILD_DIR:-$root/build-wheel}"
    python="$(BUILD_DIR="$root/build" "$root/scripts/reference_env.sh")"
    extra=(-DCMAKE_PREFIX_PATH="$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')")
    ;;
  *)
    build="${BUILD_DIR:-$root/build-libtorch}"
    extra=(-DCMAKE_PREFIX_PATH="$libtorch")
    ;;
esac
"$root/scripts/install_deps.sh"
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ -f "$build/CMakeCache.txt" ] && ! grep -q "CMAKE_GENERATOR:INTERNAL=${generator[1]:-Unix Makefiles}" "$build/CMakeCache.txt"; then
  rm -rf "$build"  # generator changed
fi
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${extra[@]}" "$@"
jobs="${JOBS:-$(nproc)}"
targets=()
[ -n "${BUILD_TARGETS:-}" ] && targets=(--target ${BUILD_TARGETS})
cmake --build "$build" -j "$jobs" "${targets[@]}"
