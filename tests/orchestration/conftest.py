"""Fixtures: a tiny project shared by the orchestration tests."""

from pathlib import Path

import pytest

from tests.orchestration.tiny_project import make_project


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only tiny project shared by the tests that do not change its data."""
    return make_project(tmp_path_factory.mktemp("tiny") / "project")
