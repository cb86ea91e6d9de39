#!/usr/bin/env bash
# A local PostgreSQL for the team instance (deploy/dagster.yaml) and the tests that run the
# orchestration tests on it: `scripts/postgres.sh start` installs Debian's postgresql when
# it is missing (as root, apt), starts the cluster (no systemd needed), creates the role
# and database `dagster` (password `dagster`, CREATEDB for the tests' per-test databases),
# and prints the DAGSTER_PG_* variables deploy/dagster.yaml reads. Idempotent.
# `scripts/postgres.sh stop` stops the cluster. Exit 3: PostgreSQL cannot be had here.
set -euo pipefail
# Only the exports go to stdout (callers eval it): everything else, pg_ctlcluster's
# "Removed stale pid file" included, goes to stderr. The server must not inherit fd 3, or
# a caller's $(...) would wait on it for as long as the server runs.
exec 3>&1 1>&2

action=${1:-start}
if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "postgres: installing Debian's postgresql (apt)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }
  else
    echo "postgres: not installed and cannot install it (needs root and apt-get install postgresql)" >&2
    exit 3
  fi
fi
version=$(ls /etc/postgresql | sort -V | tail -n1)

if [[ $action == stop ]]; then
  pg_ctlcluster "$version" main stop 3>&- || true
  exit 0
fi

pg_ctlcluster "$version" main status >/dev/null 2>&1 3>&- || pg_ctlcluster "$version" main start 3>&-
for _ in $(seq 30); do
  pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 1
done
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "postgres: the server did not come up" >&2; exit 1; }

psql_admin() { (cd / && su postgres -c "psql -v ON_ERROR_STOP=1 -qtAc \"$1\""); }
if [[ -z $(psql_admin "SELECT 1 FROM pg_roles WHERE rolname='dagster'") ]]; then
  psql_admin "CREATE ROLE dagster LOGIN PASSWORD 'dagster' CREATEDB"
fi
if [[ -z $(psql_admin "SELECT 1 FROM pg_database WHERE datname='dagster'") ]]; then
  psql_admin "CREATE DATABASE dagster OWNER dagster"
fi
cat >&3 <<VARS
export DAGSTER_PG_HOST=127.0.0.1
export DAGSTER_PG_PORT=5432
export DAGSTER_PG_USERNAME=dagster
export DAGSTER_PG_PASSWORD=dagster
export DAGSTER_PG_DB=dagster
VARS
