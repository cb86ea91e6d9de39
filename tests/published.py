"""The tiny project's published bundle, built once per test session (tests/conftest.py's
``published`` fixture) for every test that needs a real bundle: the service tests and the
test-split submission."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest


@dataclass(frozen=True)
class Published:
    bundle: Path  # the published_index folder
    project: Path
    items: pd.DataFrame  # the tiny project's item table
    home: Path  # its Dagster instance

    def photos(self, source: str) -> list[Path]:
        rows = self.items[(self.items["split"] == "validation") & (self.items["source"] == source)]
        return [Path(p) for p in rows["image_path"].drop_duplicates()]


def build_published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    """The tiny project (two tiny detectors, two tiny models) run once by `clothes-retrieval
    run`; its published bundle is read-only for the tests (copy it to change it)."""
    from clothes_retrieval.cli import main
    from tests.orchestration.tiny_project import make_project

    root = tmp_path_factory.mktemp("service")
    profile = make_project(root / "project", with_models=True, with_detection=True)
    home = root / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_HOME", str(home))
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", "--profile", str(profile)])
    mp.undo()
    assert code == 0, "the tiny pipeline failed: see the captured log"
    out = root / "project" / "outputs" / "tiny"
    items = pd.read_parquet(out / "item_table" / "items.parquet")
    return Published(out / "published_index", root / "project", items, home)
