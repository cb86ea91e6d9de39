"""Level 3: a tiny profile end to end through `clothes-retrieval run` (the main entry), as
one Dagster run in a persistent instance; then what follows from one run to the next:
the accuracy floor, a config change (Dagster's staleness), mixed data versions."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from clothes_retrieval.cli import main
from clothes_retrieval.versioning import read_dvc_hash, read_lineage
from orchestration.defs import build_definitions
from tests.orchestration.tiny_project import REPO, make_project

LINE = re.compile(
    r"tiny: gt acc@1 (\d\.\d{3}) acc@10 (\d\.\d{3}), detected acc@1 (\d\.\d{3}) acc@10 (\d\.\d{3})"
)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny project (two tiny detectors, two tiny models) run once by the CLI."""
    root = tmp_path_factory.mktemp("pipeline")
    profile = make_project(root / "project", with_models=True, with_detection=True)
    home = root / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_HOME", str(home))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["run", "--profile", str(profile)])
    out = buf.getvalue().strip().splitlines()
    yield {"profile": profile, "home": home, "code": code, "lines": out, "mp": mp}
    mp.undo()


def _instance(ran: dict) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(ran["home"]))


def test_the_whole_graph_runs_as_one_run_and_ends_with_the_line(ran: dict) -> None:
    assert ran["code"] == 0, "\n".join(ran["lines"])
    assert LINE.fullmatch(ran["lines"][-1]), ran["lines"][-1]
    project = ran["profile"].parents[1]
    with _instance(ran) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].job_name == "pipeline_job"
        # one run at a time on the instance: the automation's trainings queue
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1
        graph = build_definitions(str(ran["profile"])).resolve_asset_graph()
        for key in graph.materializable_asset_keys:
            assert instance.get_latest_materialization_event(key) is not None, key
        # every asset check of the run passed (the floor is 0 in the tiny profile)
        records = instance.get_records_for_run(
            runs[0].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        evaluations = {
            r.event_log_entry.dagster_event.event_specific_data.asset_check_key.name: (
                r.event_log_entry.dagster_event.event_specific_data.passed
            )
            for r in records
        }
        assert {"acc10_floor", "item_table_schema", "found_boxes", "finite_weights"} <= set(
            evaluations
        )
        assert all(evaluations.values()), evaluations
    # every artifact records the data version it was built from: the DVC hash of data/
    dvc_hash = read_dvc_hash(project / "data.dvc")
    out = project / "outputs" / "tiny"
    for folder in (
        "item_table",
        "coco_exports",
        "retrieval_crops",
        "detector/atss",
        "detections/centernet",
        "fused_boxes",
        "model/sample_lite0_gem",
        "embeddings/sample_lite0_gem_mac",
        "search_index",
        "evaluation_report",
        "published_index",
    ):
        assert read_lineage(out / folder) == dvc_hash, folder
    report = (out / "evaluation_report" / "report.md").read_text()
    assert "Table 3 layout" in report and "Table 5 layout" in report and "paper: atss" in report
    # the official submission JSON lies beside the report folder, as the README says
    readme = (REPO / "README.md").read_text()
    assert "beside it, `evaluation_report_submission.json`" in readme
    assert (out / "evaluation_report_submission.json").is_file()
    # whitening is fitted on the training split's ground-truth boxes, embedded for it
    assert "whiten-pca" in report
    train = pd.read_parquet(out / "embeddings" / "sample_lite0_gem" / "train" / "query.parquet")
    assert set(train["split"]) == {"train"} and len(train) > 8


def test_changing_one_models_config_makes_exactly_it_and_its_downstream_stale(
    ran: dict, tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(REPO / "configs" / "retrieval", registry)
    sample = yaml.safe_load((registry / "sample.yaml").read_text())
    entry = sample["models"]["sample_lite0_gem"]
    entry["optim"] = {**entry.get("optim", {}), "lr": 0.0123}
    (registry / "sample.yaml").write_text(yaml.safe_dump(sample, sort_keys=False))

    def stale(defs: dg.Definitions, instance) -> set[str]:
        graph = defs.resolve_asset_graph()
        assets = [
            a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition | dg.SourceAsset)
        ]
        resolver = get_stale_status_resolver(instance, assets)
        return {
            k.to_user_string()
            for k in graph.materializable_asset_keys
            if resolver.get_status(k) == StaleStatus.STALE
        }

    with _instance(ran) as instance:
        assert stale(build_definitions(str(ran["profile"])), instance) == set()
        changed = build_definitions(
            str(ran["profile"]), json.dumps({"retrieval": {"registry": str(registry)}})
        )
        # Dagster marks the changed model stale, and each downstream asset in turn once
        # what it reads is rebuilt; the other model and everything upstream stay fresh.
        seen: list[set[str]] = []
        while now := stale(changed, instance):
            seen.append(now)
            assert len(seen) < 8, seen
            _materialize(changed, instance, now)
        assert seen[0] == {"model/sample_lite0_gem"}
        assert set().union(*seen) == {
            "model/sample_lite0_gem",
            "embeddings/sample_lite0_gem",
            "search_index",  # the published ensemble holds the model
            "evaluation_report",
            "published_index",
        }


def _materialize(defs: dg.Definitions, instance, keys: set[str]) -> None:
    job = dg.define_asset_job("some", selection=sorted(keys))
    d = dg.Definitions(assets=list(defs.assets), jobs=[job], resources=dict(defs.resources))
    assert d.resolve_job_def("some").execute_in_process(instance=instance).success


def test_a_floor_above_the_achieved_acc10_blocks_publishing(ran: dict, capsys) -> None:
    out = ran["profile"].parents[1] / "outputs" / "tiny"
    achieved = json.loads((out / "evaluation_report" / "report.json").read_text())["headline"][
        "published Acc@10"
    ]
    assert achieved < 1.0, "the tiny gallery must leave room for a failing floor"
    published = (out / "published_index" / "bundle.json").stat().st_mtime_ns
    code = main(["run", "--profile", str(ran["profile"]), "--set", "search.acc10_floor=1.0"])
    assert code == 1
    assert "FAILED" in capsys.readouterr().out
    with _instance(ran) as instance:
        run = instance.get_runs(limit=1)[0]
        checks = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        floor = [
            r.event_log_entry.dagster_event.event_specific_data
            for r in checks
            if r.event_log_entry.dagster_event.event_specific_data.asset_check_key.name
            == "acc10_floor"
        ]
        assert [f.passed for f in floor] == [False]  # the override reached the asset check
        materialised = {
            r.event_log_entry.dagster_event.asset_key.to_user_string()
            for r in instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            ).records
        }
    assert "evaluation_report" in materialised and "published_index" not in materialised
    assert (out / "published_index" / "bundle.json").stat().st_mtime_ns == published


def test_the_report_refuses_inputs_of_different_data_versions(ran: dict) -> None:
    out = ran["profile"].parents[1] / "outputs" / "tiny"
    lineage = out / "embeddings" / "sample_lite0_gem" / "lineage.json"
    kept = lineage.read_text()
    lineage.write_text(json.dumps({"data_version": "an-older-version", "sources": {}}))
    try:
        defs = build_definitions(str(ran["profile"]))
        job = dg.define_asset_job("report", selection=["evaluation_report", "published_index"])
        with _instance(ran) as instance:
            result = (
                dg.Definitions(assets=list(defs.assets), jobs=[job], resources=dict(defs.resources))
                .resolve_job_def("report")
                .execute_in_process(instance=instance, raise_on_error=False)
            )
        assert not result.success
        (failure,) = [e for e in result.all_events if e.is_step_failure]
        message = failure.step_failure_data.error.cause.message
        assert "different data versions" in message
        assert "an-older-version: embeddings/sample_lite0_gem" in message
    finally:
        lineage.write_text(kept)
    # and the publish refuses an index and a report of different data versions
    index_lineage = out / "search_index" / "lineage.json"
    kept = index_lineage.read_text()
    index_lineage.write_text(json.dumps({"data_version": "an-older-version", "sources": {}}))
    try:
        job = dg.define_asset_job("publish", selection=["published_index"])
        with _instance(ran) as instance:
            result = (
                dg.Definitions(assets=list(defs.assets), jobs=[job], resources=dict(defs.resources))
                .resolve_job_def("publish")
                .execute_in_process(instance=instance, raise_on_error=False)
            )
        (failure,) = [e for e in result.all_events if e.is_step_failure]
        assert "an-older-version: search_index" in failure.step_failure_data.error.cause.message
    finally:
        index_lineage.write_text(kept)


def test_bad_override_and_missing_data_exit_2(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    sample = str(REPO / "configs" / "pipeline" / "sample.yaml")
    assert main(["run", "--profile", sample, "--set", "search.exampels=2"]) == 2
    assert "search.exampels" in capsys.readouterr().err
    real = str(REPO / "configs" / "pipeline" / "real.yaml")
    nope = tmp_path / "nope"
    args = ["run", "--profile", real, "--set", f"data.sources.street_queries.root={nope}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"data.sources.street_queries: {nope} does not exist" in err
    assert main([*args, "--skip-missing"]) == 0
    assert "skipped" in capsys.readouterr().err
    assert not (tmp_path / "home").exists()  # nothing ran


def test_another_profile_is_refused_in_this_profiles_instance(ran: dict, capsys) -> None:
    """Every profile has the same asset keys: one instance holds one profile's history."""
    sample = str(REPO / "configs" / "pipeline" / "sample.yaml")
    assert main(["run", "--profile", sample]) == 2
    err = capsys.readouterr().err
    assert f"{ran['home']} holds profile 'tiny'" in err and "'sample'" in err
