#!/usr/bin/env bash
# Build mmcv 2.1.0 (with compiled ops) for torch 2.14.1 and cache the wheel.
#
# Why: no mmcv wheel exists on the package index for this platform, and mmcv 2.1.0's
# setup.py hard-codes -std=c++14 / -std=c++17 while torch 2.14's headers need C++20.
# Recipe (see ../shared/docs/stack-notes.md):
#   1. a throwaway build venv with torch, setuptools<70 (pkg_resources), wheel, ninja;
#   2. the mmcv source package, its sha256 checked against the pinned value below;
#   3. every -std=c++14 / -std=c++17 in setup.py rewritten to -std=c++20;
#   4. MMCV_WITH_OPS=1 FORCE_CUDA=<0|1> pip wheel --no-build-isolation.
# The wheel lands in a wheelhouse outside the repository, keyed by mmcv, torch, Python
# and the ops flavour (cpu / cuda), so later set-ups reuse it in seconds.
#
# Usage: scripts/build_mmcv_wheel.sh            (prints the wheel's path on the last line)
# Env:   CR_WHEELHOUSE  wheelhouse root (default ~/.cache/clothes-retrieval/wheelhouse)
#        FORCE_CUDA     1 to build the CUDA ops (default: 1 when nvidia-smi sees a GPU)
set -euo pipefail

MMCV_VERSION=2.1.0
MMCV_SHA256=d387bcab66b467479b6660310e23746cfc79c6e57acf04094680adb499a5cd3f
TORCH_VERSION=2.14.1
PY_TAG=$(python3 -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')

if [[ -z "${FORCE_CUDA:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then FORCE_CUDA=1; else FORCE_CUDA=0; fi
fi
FLAVOUR=$([[ "$FORCE_CUDA" == 1 ]] && echo cuda || echo cpu)
ROOT=${CR_WHEELHOUSE:-$HOME/.cache/clothes-retrieval/wheelhouse}
DEST="$ROOT/mmcv-$MMCV_VERSION-torch-$TORCH_VERSION-$PY_TAG-$FLAVOUR"

existing=$(ls "$DEST"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [[ -n "$existing" ]]; then
  echo "mmcv wheel cached: $existing"
  echo "$existing"
  exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mmcv-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
echo "building mmcv $MMCV_VERSION ($FLAVOUR ops) in $WORK; this takes about 15 minutes on 2 cores"

python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q "torch==$TORCH_VERSION" wheel ninja numpy packaging
# torch declares setuptools>=77, but mmcv's setup.py needs pkg_resources (setuptools<70).
# This venv is thrown away after the build, so the clash harms nothing (pip only warns).
"$WORK/venv/bin/pip" install -q "setuptools<70" 2>&1 | grep -v "requires setuptools" || true

"$WORK/venv/bin/pip" download -q --no-deps --no-build-isolation --no-binary :all: \
  "mmcv==$MMCV_VERSION" -d "$WORK/src"
SDIST="$WORK/src/mmcv-$MMCV_VERSION.tar.gz"
echo "$MMCV_SHA256  $SDIST" | sha256sum --check --strict -

tar -xzf "$SDIST" -C "$WORK/src"
cd "$WORK/src/mmcv-$MMCV_VERSION"
sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' setup.py
if grep -qE -- '-std=c\+\+1[47]' setup.py; then
  echo "setup.py still names an old C++ standard; the patch did not apply" >&2
  exit 1
fi

mkdir -p "$DEST.partial"
MMCV_WITH_OPS=1 FORCE_CUDA=$FORCE_CUDA MAX_JOBS=${MAX_JOBS:-$(nproc)} \
  "$WORK/venv/bin/pip" wheel -q --no-build-isolation --no-deps . -w "$DEST.partial"
# Publish atomically: a half-built wheelhouse never looks complete.
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
wheel=$(ls "$DEST"/mmcv-"$MMCV_VERSION"-*.whl)
echo "mmcv wheel built: $wheel"
echo "$wheel"
