#!/usr/bin/env bash
# Build KenLM's `lmplz` (5-gram estimation) and `build_binary` (ARPA -> binary) into the
# virtualenv's bin/, once. The pip `kenlm` module can only *query* models; `datapipe train-lm`
# needs these two programs to train one.
#
#   tools/build_kenlm.sh            # skip if both programs are already there
#   FORCE=1 tools/build_kenlm.sh    # rebuild
#
# Source: the kenlm source distribution from PyPI (the same version as the pip module),
# fetched with pip, so only PyPI and Debian apt are needed. Build deps (Debian): cmake, g++,
# Boost (program_options, system, thread, test), zlib, bz2, lzma headers; missing ones are
# installed with apt-get (as root, or through sudo).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
BIN=$VENV/bin
PY=${PYTHON:-$BIN/python}
KENLM_VERSION=${KENLM_VERSION:-0.3.0}
WORK=${KENLM_BUILD_DIR:-$ROOT/build/kenlm}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

if [[ -z "${FORCE:-}" && -x "$BIN/lmplz" && -x "$BIN/build_binary" ]]; then
  echo "kenlm: lmplz and build_binary already in $BIN (FORCE=1 to rebuild)"
  exit 0
fi

# -- system packages ------------------------------------------------------------------
pkgs=(cmake g++ make libboost-program-options-dev libboost-system-dev libboost-thread-dev
      libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "kenlm: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# -- source ---------------------------------------------------------------------------
mkdir -p "$WORK"
SDIST="$WORK/kenlm-$KENLM_VERSION.tar.gz"
if [[ ! -f "$SDIST" ]]; then
  # --no-binary for kenlm only: `:all:` would also compile its build deps (cmake) from source
  "$PY" -m pip download --no-binary kenlm --no-deps "kenlm==$KENLM_VERSION" -d "$WORK"
fi
SRC="$WORK/kenlm-$KENLM_VERSION"
rm -rf "$SRC"
tar -xzf "$SDIST" -C "$WORK"

# -- build only the two programs we need ----------------------------------------------
cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=6 >/dev/null
cmake --build "$SRC/build" --target lmplz build_binary -j "$JOBS"
install -m 755 "$SRC/build/bin/lmplz" "$SRC/build/bin/build_binary" "$BIN/"
rm -rf "$SRC"
echo "kenlm: installed $BIN/lmplz and $BIN/build_binary"
