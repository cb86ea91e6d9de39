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

import pytest
import yaml

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
# The changed config: the model's registry entry trains with another learning rate (its
# code version changes; the other model's entry is as it was). The profile also gets a
# schedule, to see it listed.
CHANGED_LR = 0.04

GRAPH = """
{ assetNodes { assetKey { path } dependencyKeys { path } isMaterializable } }
"""
STALE = """
query Stale($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      opVersion staleStatus staleCauses { reason category }
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
    """`dagster dev` on a copy of the published project with the changed config; its port."""
    root = tmp_path_factory.mktemp("audit")
    project, home = root / "project", root / "home"
    shutil.copytree(published.project, project, symlinks=True)
    shutil.copytree(published.home, home, symlinks=True)
    # The UI's first-visit dialog (a newsletter sign-up) is marked as seen, as after a
    # person's first visit: it would cover the pages.
    (home / ".nux").mkdir(exist_ok=True)
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    registry = project / "configs" / "retrieval"
    shutil.copytree(REPO / "configs" / "retrieval", registry)
    entries = yaml.safe_load((registry / "sample.yaml").read_text())
    entries["models"][MODEL]["optim"] = {"lr": CHANGED_LR}
    (registry / "sample.yaml").write_text(yaml.safe_dump(entries, sort_keys=False))
    overrides = {
        "retrieval": {"registry": str(registry)},
        "operations": {"schedule": {"cron": "0 3 * * 0", "running": False}},
    }
    env = dagster_env(
        home, project / "configs" / "tiny.yaml", CLOTHES_RETRIEVAL_OVERRIDES=json.dumps(overrides)
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


def _open(page, port: int, path: str, *texts: str) -> None:
    """Open ``path`` and wait until every one of ``texts`` is visible on it."""
    page.goto(f"http://127.0.0.1:{port}{path}")
    for text in texts:
        page.get_by_text(text, exact=False).first.wait_for()


def _shot(page, name: str) -> str:
    """Keep a screenshot of the page; its text."""
    page.screenshot(path=str(artifact_dir("ui-audit") / f"{name}.png"), full_page=True)
    return page.inner_text("body")


def _reached(nodes: list[dict]) -> tuple[set[str], set[str], set[str]]:
    """(every asset, the source assets, what the sources reach downstream)."""
    keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
    edges = {
        ("/".join(d["path"]), "/".join(n["assetKey"]["path"]))
        for n in nodes
        for d in n["dependencyKeys"]
    }
    sources = {"/".join(n["assetKey"]["path"]) for n in nodes if not n["isMaterializable"]}
    reached, frontier = set(sources), list(sources)
    while frontier:
        key = frontier.pop()
        for a, b in edges:
            if a == key and b not in reached:
                reached.add(b)
                frontier.append(b)
    return keys, sources, reached


def test_the_global_lineage_is_one_graph_from_the_sources_to_the_report(page, ui: int) -> None:
    keys, sources, reached = _reached(graphql(ui, GRAPH)["assetNodes"])
    assert sources == {"source/deepfashion2"}
    assert reached == keys, f"not reached from the sources: {sorted(keys - reached)}"
    assert {"evaluation_report", "published_index", f"model/{MODEL}"} <= keys

    # Every group expanded (what the graph's "Expand all groups" does).
    groups = ",".join(f"global@global:{g}" for g in ("data", "detection", "retrieval", "search"))
    _open(page, ui, f"/asset-groups?expanded={groups}", "evaluation_report")
    text = _shot(page, "global-lineage")
    names = ("deepfashion2", "item_table", "coco_exports", "fused_boxes", "retrieval_crops",
             "search_index", "evaluation_report", "published_index")  # fmt: skip
    for name in names:
        assert name in text, f"{name} is not drawn in the global lineage"


def test_an_asset_page_shows_metadata_data_and_code_version(page, ui: int) -> None:
    node = graphql(ui, STALE, {"key": {"path": ["model", MODEL]}})["assetNodeOrError"]
    (materialization,) = node["assetMaterializations"]
    tags = {t["key"]: t["value"] for t in materialization["tags"]}

    _open(page, ui, f"/assets/model/{MODEL}", "val_recall_at_1")
    text = _shot(page, "asset-overview")
    for label in ("val_recall_at_1", "val_map_at_r", "training_seconds", "model_path",
                  f"model/{MODEL}/model.pt", "data_version"):  # fmt: skip
        assert label in text, f"{label} is not on the asset page"

    _open(page, ui, f"/assets/model/{MODEL}?view=events", "Materialized in run")
    page.get_by_text("Show tags").first.click()
    page.get_by_text("Hide tags").first.wait_for()
    text = _shot(page, "asset-events")
    assert "val_recall_at_1" in text
    # The materialisation's code version (of the config it trained with) and data version.
    assert re.search(rf"code_version\s+{tags['dagster/code_version']}", text), text[-2000:]
    assert re.search(rf"data_version\s+{tags['dagster/data_version']}", text), text[-2000:]


def test_a_changed_config_shows_the_model_as_stale(page, ui: int) -> None:
    node = graphql(ui, STALE, {"key": {"path": ["model", MODEL]}})["assetNodeOrError"]
    assert node["staleStatus"] == "STALE"
    assert any(c["category"] == "CODE" for c in node["staleCauses"]), node["staleCauses"]
    (materialization,) = node["assetMaterializations"]
    old = {t["key"]: t["value"] for t in materialization["tags"]}["dagster/code_version"]
    assert node["opVersion"] != old
    # The other model's config did not change.
    other = graphql(ui, STALE, {"key": {"path": ["model", "sample_lite0_gem_mac"]}})
    assert other["assetNodeOrError"]["staleStatus"] == "FRESH"

    _open(page, ui, f"/assets/model/{MODEL}", "Unsynced")
    page.get_by_text("Unsynced").first.hover()
    page.get_by_text("has a new code version").first.wait_for()
    text = _shot(page, "asset-stale")
    assert "code version change" in text


def test_the_schedule_and_sensors_are_listed(page, ui: int) -> None:
    names = ("retrain_tiny", AUTOMATION_SENSOR, "data_version_sensor", "tag_trigger",
             "alert_on_failure")  # fmt: skip
    # The schedule's cron as the UI says it comes with the schedule's state, a moment later.
    _open(page, ui, "/automation", *names, "only on Sunday")
    text = _shot(page, "automation")
    for name in names:
        assert name in text, f"{name} is not listed"
