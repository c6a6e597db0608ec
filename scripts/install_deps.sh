#!/usr/bin/env bash
# Installs every system package ziprerank needs to build, test and run, from Debian 12's archive.
# Idempotent: packages already present are left alone; safe to run again.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config ccache mold git
  libtorch-dev libopenblas0-pthread libopenblas-pthread-dev
  libopencv-dev libfreetype-dev libjpeg-dev  # libjpeg: CMYK JPEGs as PIL decodes them
  libsentencepiece-dev sentencepiece
  libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libcpp-httplib-dev  # the rerank server (ziprerank serve)
  libgtest-dev libgmock-dev libbenchmark-dev
  libpoppler-cpp-dev poppler-utils
  fonts-dejavu-core fonts-liberation2 fonts-noto-core fonts-lmodern
  python3-numpy python3-venv  # python3-venv: the transformers reference environment (scripts/reference_env.sh)
  # the small model's recipe and evaluation: PDFs typeset by GNU troff, the OCR baseline
  groff ghostscript tesseract-ocr tesseract-ocr-eng
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install_deps: installing ${#missing[@]} package(s): ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install_deps: all packages present" >&2
fi

# libtorch from Debian calls whatever libblas.so.3 the alternatives system points at; the netlib
# reference BLAS is ~60x slower than OpenBLAS. Point the alternative at OpenBLAS explicitly.
arch=$(dpkg --print-architecture)
triplet=$(gcc -dumpmachine 2>/dev/null || echo "${arch}-linux-gnu")
for name in "libblas.so.3-${triplet}" "liblapack.so.3-${triplet}"; do
  if update-alternatives --query "$name" >/dev/null 2>&1; then
    alt=$(update-alternatives --query "$name" | awk '/^Alternative:/ {print $2}' | grep -m1 openblas-pthread || true)
    if [ -n "$alt" ]; then
      cur=$(update-alternatives --query "$name" | awk '/^Value:/ {print $2}')
      if [ "$cur" != "$alt" ]; then
        $SUDO update-alternatives --set "$name" "$alt" >/dev/null
        echo "install_deps: $name -> $alt" >&2
      fi
    fi
  fi
done
