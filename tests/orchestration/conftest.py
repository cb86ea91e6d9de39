"""Fixtures: a tiny project shared by the orchestration tests; on the PostgreSQL pass
(tests/orchestration/postgres.py) every test's instances live in a database of its own."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration.run import INSTANCE_TEMPLATE_ENV
from tests.orchestration import postgres
from tests.orchestration.tiny_project import make_project


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only tiny project shared by the tests that do not change its data."""
    return make_project(tmp_path_factory.mktemp("tiny") / "project")


@pytest.fixture(autouse=True)
def instance_storage(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``sqlite`` (default), or ``postgres`` with a fresh database for this test."""
    if not postgres.ENABLED:
        yield "sqlite"
        return
    with postgres.fresh_database() as name:
        monkeypatch.setenv(INSTANCE_TEMPLATE_ENV, str(postgres.TEAM_INSTANCE))
        monkeypatch.setenv("DAGSTER_PG_DB", name)
        yield "postgres"
