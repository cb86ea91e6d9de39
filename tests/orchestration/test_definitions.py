"""Level 1: the code location loads for every profile, as one connected graph."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from orchestration.defs import build_definitions
from orchestration.defs.automation import REBUILD

REPO = Path(__file__).resolve().parents[2]
PROFILES = sorted((REPO / "configs" / "pipeline").glob("*.yaml"))


def _graph(profile: Path):
    return build_definitions(str(profile)).resolve_asset_graph()


def _ancestors(graph, key: dg.AssetKey) -> set[dg.AssetKey]:
    seen, todo = set(), [key]
    while todo:
        for parent in graph.get(todo.pop()).parent_keys:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_each_profile_is_one_graph_from_its_sources_to_the_report(profile: Path) -> None:
    graph = _graph(profile)
    keys = set(graph.get_all_asset_keys())
    report = dg.AssetKey("evaluation_report")
    upstream = _ancestors(graph, report)
    # every asset but the publishing end feeds the report ...
    assert keys - upstream - {report} <= {
        dg.AssetKey("published_index"),
        dg.AssetKey("search_index"),
        dg.AssetKey("test_submission"),
    }
    # ... and every source of the profile is observed at the top of the same graph
    sources = {k for k in keys if k.path[0] == "source"}
    assert sources and sources <= upstream
    assert all(not graph.get(k).parent_keys for k in sources)


def test_the_paper_profile_is_every_detector_and_model_and_a_test_submission():
    graph = _graph(REPO / "configs" / "pipeline" / "deepfashion2.yaml")
    keys = set(graph.get_all_asset_keys())
    assert {k.path[1] for k in keys if k.path[0] == "detector"} == {
        "atss", "cascade_mask_rcnn", "centernet", "retinanet_r101", "retinanet_x101"}  # fmt: skip
    assert {k.path[1] for k in keys if k.path[0] == "model"} == {f"m{i}" for i in range(18)}
    published = dg.AssetKey("published_index")
    assert graph.get(dg.AssetKey("test_submission")).parent_keys == {published}
    index_models = {k.path[1] for k in _ancestors(graph, dg.AssetKey("search_index"))
                    if k.path[0] == "model"}  # fmt: skip
    assert index_models == {f"m{i}" for i in range(1, 17)}  # the published m1-16
    sample = set(_graph(REPO / "configs" / "pipeline" / "sample.yaml").get_all_asset_keys())
    assert dg.AssetKey("test_submission") not in sample  # only with evaluation.test_split


def test_sample_lineage_shows_each_detector_and_model():
    graph = _graph(REPO / "configs" / "pipeline" / "sample.yaml")
    fused = graph.get(dg.AssetKey("fused_boxes")).parent_keys
    detectors = ["atss", "cascade_mask_rcnn", "centernet", "retinanet_r101", "retinanet_x101"]
    assert {dg.AssetKey(["detections", d]) for d in detectors} <= fused
    for d in detectors:
        assert dg.AssetKey(["detector", d]) in graph.get(dg.AssetKey(["detections", d])).parent_keys
    report = graph.get(dg.AssetKey("evaluation_report")).parent_keys
    for m in ("sample_lite0_gem", "sample_lite0_gem_mac"):
        assert dg.AssetKey(["embeddings", m]) in report
        assert dg.AssetKey(["model", m]) in graph.get(dg.AssetKey(["embeddings", m])).parent_keys
    assert (
        dg.AssetKey(["source", "deepfashion2"]) in graph.get(dg.AssetKey("item_table")).parent_keys
    )


def test_real_profile_reads_three_sources_and_scores_by_class():
    graph = _graph(REPO / "configs" / "pipeline" / "real.yaml")
    items = graph.get(dg.AssetKey("item_table")).parent_keys
    assert items == {
        dg.AssetKey(["source", n]) for n in ("street_train", "street_queries", "products")
    }
    assert dg.AssetKey(["model", "real_lite0_zero_shot"]) in graph.get_all_asset_keys()
    assert dg.AssetKey(["detector", "atss"]) in graph.get_all_asset_keys()


def test_definitions_load_with_jobs_sensors_and_checks():
    from orchestration.definitions import defs

    checks = {c.name for c in defs.resolve_asset_graph().asset_check_keys}
    assert {"item_table_schema", "item_table_valid_boxes", "acc10_floor"} <= checks
    job = defs.resolve_job_def("pipeline_job")
    assert dg.AssetKey("published_index") in job.asset_layer.executable_asset_keys
    for name in ("data_version_sensor", "rebuild_on_data_change"):
        assert defs.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING


def test_every_asset_rebuilds_after_its_ancestors():
    graph = _graph(REPO / "configs" / "pipeline" / "sample.yaml")
    for key in graph.materializable_asset_keys:
        assert graph.get(key).automation_condition == REBUILD, key


def test_library_never_imports_dagster():
    src = REPO / "src" / "clothes_retrieval"
    offenders = [
        str(p)
        for p in src.rglob("*.py")
        if "import dagster" in p.read_text() or "from dagster" in p.read_text()
    ]
    assert offenders == []


def test_dagster_cli_lists_assets():
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run(
        [str(dagster), "asset", "list", "-m", "orchestration.definitions"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    listed = set(proc.stdout.split())
    assert {"item_table", "detector/atss", "model/sample_lite0_gem", "evaluation_report"} <= listed
