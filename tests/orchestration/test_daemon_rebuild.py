"""End to end: `dagster dev` running, the data changes, the whole graph rebuilds by itself.

A tiny profile (two tiny detectors, one tiny model) is run once by the main entry; then
`dagster dev` (webserver + daemon) starts on loopback in its own process group and a new
sample is generated and `dvc add`-ed. The data_version_sensor notices the new hash and
observes the source; the automation sensor then rebuilds every asset, detectors, model,
embeddings, index, report and publish, without a click. The test reads the order from the
event log: each asset rebuilt once, after everything it depends on; every artifact records
the new data version.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml

from orchestration.defs import build_definitions
from orchestration.defs.operations import TRIGGER_TAG
from tests.orchestration.dagster_dev import dagster_dev, dagster_env, run_once
from tests.orchestration.rebuild import assert_built_from, assert_in_dependency_order, new_data
from tests.orchestration.tiny_project import make_project

MODEL = "sample_lite0_gem"


def _one_model(profile: Path) -> None:
    data = yaml.safe_load(profile.read_text())
    data["retrieval"]["models"] = [MODEL]
    data["search"]["ensembles"] = {}
    data["search"]["publish"] = {"name": MODEL, "box_source": "fused"}
    profile.write_text(yaml.safe_dump(data, sort_keys=False))


def _rebuilt_since(instance, keys, since: float) -> dict[dg.AssetKey, float]:
    """key -> time of its materialisations after ``since`` (fails if one was built twice)."""
    out = {}
    for key in keys:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_timestamp=since), limit=10
        ).records
        assert len(records) <= 1, f"{key.to_user_string()} rebuilt {len(records)} times"
        if records:
            out[key] = records[0].timestamp
    return out


@pytest.mark.timeout(1200)
def test_dagster_dev_rebuilds_the_whole_graph_in_order(
    tmp_path: Path, capsys, instance_storage: str
) -> None:
    profile = make_project(tmp_path / "project", with_models=True, with_detection=True)
    _one_model(profile)
    project = profile.parents[1]
    home = tmp_path / "dagster_home"
    env = dagster_env(home, profile)
    run_once(profile, home)
    capsys.readouterr()
    if instance_storage == "sqlite":  # one machine: one run at a time
        assert "max_concurrent_runs: 1" in (home / "dagster.yaml").read_text()
    graph = build_definitions(str(profile)).resolve_asset_graph()
    keys = set(graph.materializable_asset_keys)

    log_path = tmp_path / "dagster_dev.log"
    with dagster_dev(env, log_path):
        time.sleep(15)  # let the sensors take their first look at the current data

        # New data, tracked by DVC: nothing else is done by hand from here on.
        changed_at = time.time()
        version = new_data(project)

        deadline = time.time() + 900
        with dg.DagsterInstance.from_config(str(home)) as instance:
            while True:
                built = _rebuilt_since(instance, keys, changed_at)
                if set(built) == keys:
                    break
                assert time.time() < deadline, (
                    f"not rebuilt: {sorted(k.to_user_string() for k in keys - set(built))}\n"
                    + log_path.read_text()[-4000:]
                )
                time.sleep(5)
            assert_in_dependency_order(graph, built)
            # nothing failed on the way
            failed = instance.get_runs(
                filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE])
            )
            assert failed == [], [r.job_name for r in failed]
            # every run since says what started it (tag_trigger tags them within seconds)
            after = dg.RunsFilter(created_after=datetime.fromtimestamp(changed_at, UTC))
            deadline = time.time() + 60
            while True:
                runs = instance.get_runs(filters=after)
                if all(TRIGGER_TAG in r.tags for r in runs) or time.time() > deadline:
                    break
                time.sleep(3)
            assert {r.tags.get(TRIGGER_TAG) for r in runs} == {"data change"}, [
                (r.job_name, r.tags) for r in runs
            ]
    assert_built_from(project / "outputs" / "tiny", (MODEL,), version)
