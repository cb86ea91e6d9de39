"""Level 1: the code location loads, in Python and through the dagster CLI."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

from orchestration.defs import build_definitions

EXPECTED_ASSETS = {"raw_dataset", "item_table", "coco_exports", "retrieval_crops"}


def test_definitions_load_with_expected_assets():
    from orchestration.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert EXPECTED_ASSETS <= keys
    checks = {c.name for c in defs.resolve_asset_graph().asset_check_keys}
    assert {"item_table_schema", "item_table_valid_boxes", "item_table_nonempty_splits"} <= checks
    assert defs.resolve_job_def("data_job") is not None
    assert defs.resolve_job_def("real_benchmark_job") is not None
    assert {"real_query_items", "real_benchmark_report"} <= keys
    assert (
        defs.resolve_sensor_def("data_version_sensor").default_status
        == dg.DefaultSensorStatus.RUNNING
    )
    assert (
        defs.resolve_sensor_def("rebuild_on_data_change").default_status
        == dg.DefaultSensorStatus.RUNNING
    )


def test_every_downstream_asset_rebuilds_eagerly():
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        if not node.parent_keys and key.to_user_string().startswith("real_"):
            # The real benchmark's sources read folders outside DVC: run on demand only.
            assert node.automation_condition is None, key
            continue
        assert node.automation_condition is not None, key


def test_library_never_imports_dagster():
    src = Path(__file__).resolve().parents[2] / "src" / "clothes_retrieval"
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
    # `asset list` shows materialisable assets (the observed source is not one).
    assert EXPECTED_ASSETS - {"raw_dataset"} <= set(proc.stdout.split())
