#!/usr/bin/env bash
# One-command, idempotent set-up of the project's environment in .venv (pip only).
#
# 1. .venv with Python 3.11 (pip finds the machine's local torch wheels; uv/poetry would not);
# 2. mmcv 2.1.0 from the wheelhouse, built once by scripts/build_mmcv_wheel.sh (~15 min cold);
# 3. torch 2.14.1 + torchvision 0.29.1, then the project (editable) with every dependency
#    pinned (pyproject.toml + requirements/constraints.txt); faiss-cpu, or faiss-gpu when
#    nvidia-smi sees a GPU (never both);
# 4. DVC 3.67.1 in its own tool environment (.venv/tools/dvc, linked as .venv/bin/dvc): its
#    hydra-core pins antlr4 4.9 while Dagster's asset-selection parser needs 4.13; DVC is
#    used as a command, so a separate environment costs nothing. Analytics off.
# 5. Debian's chromium (apt, ~20 s) for the browser test of the web page (Playwright drives
#    it; no browser is downloaded).
# A stamp (hash of the inputs above) makes a second run with nothing changed a no-op that
# finishes in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=.venv
STAMP="$VENV/.setup-stamp"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  FLAVOUR=gpu
else
  FLAVOUR=cpu
fi
want=$(cat pyproject.toml requirements/constraints.txt requirements/dvc.txt scripts/setup.sh scripts/build_mmcv_wheel.sh \
  | sha256sum | cut -c1-32)-$FLAVOUR

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] \
   && "$VENV/bin/python" -c "import mmcv.ops, mmdet, torch, faiss, dagster, clothes_retrieval" 2>/dev/null \
   && "$VENV/bin/dvc" --version >/dev/null 2>&1 \
   && command -v chromium >/dev/null 2>&1; then
  echo "set-up: environment up to date ($VENV)"
  exit 0
fi

start=$(date +%s)
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/pip" --disable-pip-version-check)

wheel=$(scripts/build_mmcv_wheel.sh | tail -n1)
wheeldir=$(dirname "$wheel")

"${PIP[@]}" install -q -c requirements/constraints.txt torch==2.14.1 torchvision==0.29.1
"${PIP[@]}" install -q -c requirements/constraints.txt --find-links "$wheeldir" \
  -e ".[$FLAVOUR,dev]"
DVC_VENV="$VENV/tools/dvc"
[[ -x "$DVC_VENV/bin/python" ]] || "$PY" -m venv "$DVC_VENV"
"$DVC_VENV/bin/pip" --disable-pip-version-check install -q -r requirements/dvc.txt
ln -sf "$(cd "$DVC_VENV/bin" && pwd)/dvc" "$VENV/bin/dvc"
"$VENV/bin/dvc" config --global core.analytics false >/dev/null 2>&1 || true
"$VENV/bin/python" -c "import mmcv.ops, mmdet, torch, faiss, dagster, clothes_retrieval"
"$VENV/bin/dvc" --version >/dev/null

if ! command -v chromium >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
  else
    echo "set-up: chromium is missing (apt-get install chromium as root); the page test will skip" >&2
  fi
fi

echo "$want" > "$STAMP"
echo "set-up: done in $(( $(date +%s) - start )) s ($VENV, $FLAVOUR)"
