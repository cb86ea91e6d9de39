#!/usr/bin/env bash
# make test-gpu: the tests marked `gpu` (CUDA training with mixed precision, detector
# inference, faiss on the GPU). Without a CUDA device they are skipped, and this says so.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "test-gpu: no CUDA device on this machine (torch.cuda.is_available() is False):" \
       "every gpu test is skipped, nothing is checked on a GPU here"
fi
WANDB_MODE=disabled exec "$PY" -m pytest -m gpu "$@"
