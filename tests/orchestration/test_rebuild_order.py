"""New data rebuilds the whole graph by itself, in order: the automation conditions
evaluated tick by tick (as the daemon does), each tick's requests then run."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from clothes_retrieval.cli import main
from clothes_retrieval.versioning import read_dvc_hash
from orchestration.defs import build_definitions
from orchestration.defs.resources import PipelineResource
from tests.orchestration.rebuild import assert_built_from, assert_in_dependency_order, new_data
from tests.orchestration.tiny_project import make_project

MODELS = ("sample_lite0_gem", "sample_lite0_gem_mac")


def _requested(tick) -> set[dg.AssetKey]:
    return {r.key for r in tick.results if isinstance(r.key, dg.AssetKey) and r.true_subset.size}


def _materialize(defs: dg.Definitions, instance, keys: set[dg.AssetKey]) -> None:
    job = dg.define_asset_job("tick", selection=dg.AssetSelection.assets(*keys))
    d = dg.Definitions(assets=list(defs.assets), jobs=[job], resources=dict(defs.resources))
    assert d.resolve_job_def("tick").execute_in_process(instance=instance).success


@pytest.mark.timeout(900)
def test_new_data_rebuilds_every_asset_once_after_its_ancestors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    profile = make_project(tmp_path / "project", with_models=True, with_detection=True)
    project = profile.parents[1]
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert main(["run", "--profile", str(profile)]) == 0
    capsys.readouterr()
    defs = build_definitions(str(profile))
    graph = defs.resolve_asset_graph()
    sensor = defs.resolve_sensor_def("data_version_sensor")
    resources = {"pipeline": PipelineResource(profile_path=str(profile))}
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert _requested(tick) == set()  # everything is fresh
        first = read_dvc_hash(project / "data.dvc")
        with dg.build_sensor_context(instance=instance, cursor=first, resources=resources) as ctx:
            assert not sensor(ctx).run_requests  # same hash: nothing to observe

        version = new_data(project)
        with dg.build_sensor_context(instance=instance, cursor=first, resources=resources) as ctx:
            assert [r.run_key for r in sensor(ctx).run_requests] == [version]
        assert defs.resolve_job_def("observe_sources").execute_in_process(instance=instance).success

        built: dict[dg.AssetKey, float] = {}
        waves = []
        for step in range(20):
            tick = dg.evaluate_automation_conditions(
                defs=defs, instance=instance, cursor=tick.cursor
            )
            wave = _requested(tick)
            if not wave:
                break
            assert not wave & set(built), f"rebuilt twice: {wave & set(built)}"
            waves.append(sorted(k.to_user_string() for k in wave))
            _materialize(defs, instance, wave)
            built.update({k: float(step) for k in wave})
        # The item table alone first; the report and the publish only after the last model
        # and the last detector of the new data; each asset once.
        assert waves[0] == ["item_table"], waves
        assert_in_dependency_order(graph, built)
    assert_built_from(project / "outputs" / "tiny", MODELS, version)
