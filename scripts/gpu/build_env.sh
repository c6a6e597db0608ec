#!/usr/bin/env bash
# Sourced by the GPU scripts: builds ziprerank against a CUDA PyTorch's libtorch on a machine that
# may lack Debian's -dev packages.
#
# What the build needs beside libtorch: OpenCV (core, imgproc, imgcodecs), libjpeg, FreeType,
# SentencePiece, poppler-cpp, spdlog + fmt, CLI11, nlohmann-json, cpp-httplib, pkg-config, CMake,
# a C++17 compiler (GoogleTest only for the test targets). Where the GPU machine has no package
# archive to install them from, fetch the .deb files here first (a Debian 12 machine with
# network):
#
#   scripts/gpu/build_env.sh --fetch-debs .gpu-debs     # then carry .gpu-debs to the GPU machine
#
# and the build unpacks them into a private prefix (dpkg -x, nothing installed system-wide) and
# points CMake, pkg-config and the loader at it (ZIPRERANK_DEBS, default .gpu-debs).
set -euo pipefail

ZR_DEB_PACKAGES=(
  libopencv-dev libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev
  libopencv-core406 libopencv-imgproc406 libopencv-imgcodecs406
  libjpeg-dev libjpeg62-turbo-dev libjpeg62-turbo libfreetype-dev libfreetype6 libpng-dev libpng16-16
  libsentencepiece-dev libsentencepiece0 libpoppler-cpp-dev libpoppler-cpp0v5 libpoppler126
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 libcli11-dev nlohmann-json3-dev
  libcpp-httplib-dev libcpp-httplib0.11 libtbb12 libopenjp2-7 liblcms2-2 libwebp7 libtiff6
  libgdcm3.0 libopenexr-3-1-30 libimath-3-1-29 libdeflate0 libjbig0 liblerc4 libnss3 libnspr4
  libprotobuf-lite32 pkg-config ninja-build
)

# The packages above and everything they depend on, less what any Linux system has (the C and C++
# runtimes, zlib): OpenCV's image codecs pull in GDAL and its libraries.
zr_fetch_debs() { # folder
  mkdir -p "$1"
  local all
  all=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "${ZR_DEB_PACKAGES[@]}" | grep '^[a-z0-9]' | sort -u |
    grep -v -x -E 'libc6|libgcc-s1|libstdc\+\+6|zlib1g|debconf|dpkg|perl-base|libcrypt1|gcc-12-base|tar')
  # shellcheck disable=SC2086
  (cd "$1" && apt-get download $all)
  echo "fetched $(ls "$1"/*.deb | wc -l) packages into $1 ($(du -sh "$1" | cut -f1))" >&2
}

# zr_gpu_args SCRIPT ARGS...: the GPU scripts' common command line. Sets `dry` (1 with
# --dry-run) and `out` (the one positional argument, else $OUT, else empty); --help prints the
# script's header comment and exits 0; an unknown option exits 2.
zr_gpu_args() {
  local script="$1" arg
  shift
  dry=0
  out="${OUT:-}"
  for arg in "$@"; do
    case "$arg" in
      --dry-run) dry=1 ;;
      -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
      -*)
        echo "$script: unknown option $arg" >&2
        exit 2
        ;;
      *) out="$arg" ;;
    esac
  done
}

# zr_build_cuda ROOT BUILD_DIR PYTHON LOG [targets...]: configures and builds against PYTHON's
# torch (its CUDA libtorch), unpacking ZIPRERANK_DEBS first where CMake would not find the rest.
zr_build_cuda() {
  local root="$1" build="$2" python="$3" log="$4"
  shift 4
  local prefix debs="${ZIPRERANK_DEBS:-$root/.gpu-debs}" extra=""
  prefix="$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
  if [ -d "$debs" ] && ls "$debs"/*.deb >/dev/null 2>&1; then
    local sysroot="$build/debs-root"
    mkdir -p "$sysroot"
    for f in "$debs"/*.deb; do dpkg -x "$f" "$sysroot"; done
    local arch=x86_64-linux-gnu
    export PKG_CONFIG_PATH="$sysroot/usr/lib/$arch/pkgconfig:$sysroot/usr/share/pkgconfig:${PKG_CONFIG_PATH:-}"
    export PKG_CONFIG_SYSROOT_DIR="$sysroot"
    export LD_LIBRARY_PATH="$sysroot/usr/lib/$arch:${LD_LIBRARY_PATH:-}"
    export PATH="$sysroot/usr/bin:$PATH"
    extra=";$sysroot/usr;$sysroot/usr/lib/$arch/cmake"
    export CPATH="$sysroot/usr/include:$sysroot/usr/include/opencv4:${CPATH:-}"
  fi
  local gen=()
  command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix$extra" >"$log" 2>&1 &&
    cmake --build "$build" -j "$(nproc)" --target "$@" >>"$log" 2>&1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    --fetch-debs) zr_fetch_debs "${2:-.gpu-debs}" ;;
    *)
      sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
      exit 2
      ;;
  esac
fi
