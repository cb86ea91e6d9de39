"""The audit a reviewer does in the Dagster UI, in headless chromium against a real
`dagster dev` on the tiny project after its run (a copy of the session's ``published``
project): the global lineage is one connected graph from the sources to the report, an
asset's page shows its metadata, data version and code version, a changed config shows
the model as stale, and the retraining schedule and the sensors are listed. Screenshots go
to ``test-artifacts/ui-audit/``.

The automation sensor is stopped in the copy before the daemon starts, so the changed config
stays visible as stale instead of being rebuilt at once (test_daemon_rebuild.py tests the
rebuild)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration.defs.operations import AUTOMATION_SENSOR
from tests.browser import artifact_dir, launch_browser, needs_chromium
from tests.orchestration import postgres
from tests.orchestration.dagster_dev import DAGSTER, REPO, dagster_dev, dagster_env, graphql
from tests.published import Published

pytestmark = [
    needs_chromium,
    pytest.mark.skipif(
        postgres.ENABLED, reason="the audit reads the session's SQLite-instance project"
    ),
]

TIMEOUT_MS = 90_000
MODEL = "sample_lite0_gem"
# The changed config: the model trains one more epoch (its code version changes).
OVERRIDES = {
    "retrieval": {"overrides": {"train": {"epochs": 2}}},
    "operations": {"schedule": {"cron": "0 3 * * 0", "running": False}},
}

GRAPH = """
{ assetNodes { assetKey { path } dependencyKeys { path } isMaterializable } }
"""
STALE = """
query Stale($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      codeVersion staleStatus staleCauses { reason category }
      assetMaterializations(limit: 1) {
        tags { key value }
        metadataEntries { label }
      }
    }
  }
}
"""


@pytest.fixture(scope="module")
def ui(published: Published, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dagster dev` on a copy of the published project with the changed config; its URL."""
    root = tmp_path_factory.mktemp("audit")
    project, home = root / "project", root / "home"
    shutil.copytree(published.project, project, symlinks=True)
    shutil.copytree(published.home, home, symlinks=True)
    env = dagster_env(
        home, project / "configs" / "tiny.yaml", CLOTHES_RETRIEVAL_OVERRIDES=json.dumps(OVERRIDES)
    )
    stop = [str(DAGSTER), "sensor", "stop", AUTOMATION_SENSOR, "-m", "orchestration.definitions"]
    subprocess.run(stop, cwd=REPO, env=env, check=True, capture_output=True, text=True)
    with dagster_dev(env, root / "dagster.log") as port:
        yield port


@pytest.fixture(scope="module")
def page(ui: int) -> Iterator:
    for browser in launch_browser():
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        yield context.new_page()
        context.close()


def _open(page, port: int, path: str, shot: str, *texts: str) -> str:
    """Open ``path``, wait until every one of ``texts`` is on it, keep a screenshot; the
    page's text."""
    page.goto(f"http://127.0.0.1:{port}{path}")
    for text in texts:
        page.get_by_text(text, exact=False).first.wait_for()
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(artifact_dir("ui-audit") / f"{shot}.png"), full_page=True)
    return page.inner_text("body")


def test_the_global_lineage_is_one_graph_from_the_sources_to_the_report(page, ui: int) -> None:
    nodes = graphql(ui, GRAPH)["assetNodes"]
    keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
    edges = {
        ("/".join(d["path"]), "/".join(n["assetKey"]["path"]))
        for n in nodes
        for d in n["dependencyKeys"]
    }
    sources = {"/".join(n["assetKey"]["path"]) for n in nodes if not n["isMaterializable"]}
    assert sources, "no source assets"
    reached, frontier = set(sources), list(sources)
    while frontier:
        key = frontier.pop()
        for a, b in edges:
            if a == key and b not in reached:
                reached.add(b)
                frontier.append(b)
    assert reached == keys, f"not reached from the sources: {sorted(keys - reached)}"
    assert {"evaluation_report", "published_index", f"model/{MODEL}"} <= keys

    text = _open(page, ui, "/asset-groups", "lineage", "evaluation_report", "item_table")
    for name in ("item_table", "retrieval_crops", "fused_boxes", "evaluation_report"):
        assert name in text, f"{name} is not drawn in the global lineage"


def test_an_asset_page_shows_metadata_data_and_code_version(page, ui: int) -> None:
    key = {"path": ["model", MODEL]}
    node = graphql(ui, STALE, {"key": key})["assetNodeOrError"]
    (materialization,) = node["assetMaterializations"]
    tags = {t["key"]: t["value"] for t in materialization["tags"]}
    labels = {e["label"] for e in materialization["metadataEntries"]}
    assert {"val_recall_at_1", "data_version", "model_path", "training_seconds"} <= labels
    data_version = tags["dagster/data_version"]
    old_code_version = tags["dagster/code_version"]

    text = _open(page, ui, f"/assets/model/{MODEL}", "asset", "val_recall_at_1")
    for label in ("val_recall_at_1", "training_seconds", "model_path"):
        assert label in text, f"{label} is not on the asset page"
    assert data_version[:8] in text, "the data version is not on the asset page"
    text = _open(page, ui, f"/assets/model/{MODEL}?view=definition", "asset-definition", "Code version")
    assert node["codeVersion"] in text, "the current code version is not on the definition tab"
    assert old_code_version != node["codeVersion"]


def test_a_changed_config_shows_the_model_as_stale(page, ui: int) -> None:
    node = graphql(ui, STALE, {"key": {"path": ["model", MODEL]}})["assetNodeOrError"]
    assert node["staleStatus"] == "STALE"
    assert any(c["category"] == "CODE" for c in node["staleCauses"]), node["staleCauses"]
    # The other model's config did not change.
    other = graphql(ui, STALE, {"key": {"path": ["model", "sample_lite0_gem_mac"]}})
    assert other["assetNodeOrError"]["staleStatus"] == "FRESH"

    text = _open(page, ui, f"/assets/model/{MODEL}", "stale", "Unsynced")
    assert re.search(r"code version", text, re.IGNORECASE), "no code-version cause shown"


def test_the_schedule_and_sensors_are_listed(page, ui: int) -> None:
    names = ("retrain_tiny", AUTOMATION_SENSOR, "data_version_sensor", "tag_trigger",
             "alert_on_failure")  # fmt: skip
    text = _open(page, ui, "/automation", "automation", *names)
    for name in names:
        assert name in text, f"{name} is not listed"
