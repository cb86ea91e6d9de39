"""The orchestration tests on PostgreSQL (scripts/test.sh's second pass): with
``CLOTHES_RETRIEVAL_TEST_POSTGRES=1`` and the ``DAGSTER_PG_*`` variables of
``scripts/postgres.sh start``, every new instance starts from deploy/dagster.yaml and each
test gets a database of its own (created before, dropped after)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEAM_INSTANCE = REPO / "deploy" / "dagster.yaml"
ENABLED = os.environ.get("CLOTHES_RETRIEVAL_TEST_POSTGRES") == "1"


def _admin():
    import psycopg2

    conn = psycopg2.connect(
        host=os.environ["DAGSTER_PG_HOST"],
        port=int(os.environ["DAGSTER_PG_PORT"]),
        user=os.environ["DAGSTER_PG_USERNAME"],
        password=os.environ["DAGSTER_PG_PASSWORD"],
        dbname="postgres",
    )
    conn.autocommit = True
    return conn


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new empty database (its name); dropped, with its connections, afterwards."""
    name = f"cr_test_{uuid.uuid4().hex[:12]}"
    with contextlib.closing(_admin()) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with contextlib.closing(_admin()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
