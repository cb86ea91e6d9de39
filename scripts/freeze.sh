#!/usr/bin/env bash
# Regenerate requirements/constraints.txt from the working .venv (after changing a pin).
set -euo pipefail
cd "$(dirname "$0")/.."
{ echo "# Transitive pins (pip freeze of a working environment); regenerate with scripts/freeze.sh"
  .venv/bin/pip freeze --exclude-editable | grep -v "^clothes-retrieval" | grep -v "^faiss-"; } \
  > requirements/constraints.txt.tmp
mv requirements/constraints.txt.tmp requirements/constraints.txt
{ echo "# DVC lives in its own tool environment (.venv/tools/dvc): its hydra-core/omegaconf pin"
  echo "# antlr4-python3-runtime==4.9.*, while Dagster's asset-selection parser needs 4.13."
  echo "# Regenerate: scripts/freeze.sh"
  .venv/tools/dvc/bin/pip freeze; } > requirements/dvc.txt.tmp
mv requirements/dvc.txt.tmp requirements/dvc.txt
