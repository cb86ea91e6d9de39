#!/usr/bin/env bash
# The README's test command (`make test`, which .ci/run calls): the whole suite on the
# default SQLite instances, then the orchestration tests again on PostgreSQL, the team
# instance of deploy/dagster.yaml (scripts/postgres.sh installs and starts the server;
# each test gets a database of its own). CLOTHES_RETRIEVAL_SKIP_POSTGRES=1 skips that part
# (a machine where PostgreSQL cannot be installed).
set -euo pipefail
cd "$(dirname "$0")/.."
export WANDB_MODE=disabled
.venv/bin/python -m pytest "$@"
if [[ ${CLOTHES_RETRIEVAL_SKIP_POSTGRES:-} == 1 ]]; then
  echo "test: CLOTHES_RETRIEVAL_SKIP_POSTGRES=1: the orchestration tests on PostgreSQL skipped" >&2
elif vars=$(scripts/postgres.sh start); then
  if grep -qv '^export DAGSTER_PG_[A-Z]*=' <<<"$vars"; then
    echo "test: scripts/postgres.sh printed more than its exports on stdout:" >&2
    echo "$vars" >&2
    exit 1
  fi
  eval "$vars"
  echo "test: the orchestration tests again, on PostgreSQL (deploy/dagster.yaml)"
  CLOTHES_RETRIEVAL_TEST_POSTGRES=1 .venv/bin/python -m pytest tests/orchestration "$@"
else
  echo "test: PostgreSQL cannot be had here (see above); CLOTHES_RETRIEVAL_SKIP_POSTGRES=1 skips" \
    "the orchestration tests on it" >&2
  exit 1
fi
