"""End to end with a real daemon: the retraining schedule of a tiny profile, set to every
minute, launches a run that retrains the model from scratch; the automation then rebuilds
the embeddings, index, report and publish after it. `dagster schedule list` shows it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from orchestration.defs.operations import RETRAIN_TAG, TRIGGER_TAG
from tests.orchestration.dagster_dev import DAGSTER, REPO, dagster_dev, dagster_env, run_once
from tests.orchestration.tiny_project import make_project

MODEL = "sample_lite0_gem"
SCHEDULE = "retrain_tiny"


def _scheduled_profile(root: Path) -> Path:
    profile = make_project(root, with_models=True)
    data = yaml.safe_load(profile.read_text())
    data["retrieval"]["models"] = [MODEL]
    data["search"]["ensembles"] = {}
    data["search"]["publish"] = {"name": MODEL, "box_source": "gt"}
    data["operations"] = {"schedule": {"cron": "* * * * *"}}
    profile.write_text(yaml.safe_dump(data, sort_keys=False))
    return profile


def _dagster(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(DAGSTER), *args, "-m", "orchestration.definitions"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.timeout(1500)
def test_the_schedule_retrains_and_the_automation_republishes(tmp_path: Path, capsys) -> None:
    profile = _scheduled_profile(tmp_path / "project")
    home = tmp_path / "dagster_home"
    env = dagster_env(home, profile)
    run_once(profile, home)
    capsys.readouterr()

    listed = _dagster(env, "schedule", "list")
    assert SCHEDULE in listed, listed

    started = time.time()
    log_path = tmp_path / "dagster_dev.log"
    with dagster_dev(env, log_path), dg.DagsterInstance.from_config(str(home)) as instance:
        # 124 s on an idle machine; a CI run with the machine loaded (the whole suite 2.4x
        # slower) was still republishing after 600 s
        deadline = time.time() + 1200
        # One tick is what this test follows: once it has launched, the schedule stops, or on
        # a slow machine every minute's new retraining would keep the republish waiting
        while not instance.get_runs(
            filters=dg.RunsFilter(tags={"dagster/schedule_name": SCHEDULE})
        ):
            assert time.time() < deadline, (
                "the schedule never ticked\n" + log_path.read_text()[-4000:]
            )
            time.sleep(2)
        _dagster(env, "schedule", "stop", SCHEDULE)
        scheduled = None
        while scheduled is None:
            runs = instance.get_runs(
                filters=dg.RunsFilter(
                    tags={"dagster/schedule_name": SCHEDULE},
                    statuses=[dg.DagsterRunStatus.SUCCESS],
                )
            )
            scheduled = runs[-1] if runs else None  # the first tick's run
            assert time.time() < deadline, (
                "no scheduled run finished\n" + log_path.read_text()[-4000:]
            )
            failed = instance.get_runs(
                filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE])
            )
            assert not failed, log_path.read_text()[-4000:]
            time.sleep(5)
        assert scheduled.tags[TRIGGER_TAG] == "schedule"
        assert RETRAIN_TAG in scheduled.tags
        trained = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(["model", MODEL]), after_timestamp=started),
            limit=1,
        ).records[-1]
        assert trained.run_id == scheduled.run_id
        metadata = trained.asset_materialization.metadata
        assert metadata["resumed"].value is False  # retrained from scratch, not resumed

        # the automation rebuilds what follows, up to the publish
        while True:
            published = instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey("published_index"), after_timestamp=trained.timestamp
                ),
                limit=1,
            ).records
            if published:
                break
            assert time.time() < deadline, "not republished\n" + log_path.read_text()[-4000:]
            time.sleep(5)
        republish = instance.get_run_by_id(published[0].run_id)
        assert republish.run_id != scheduled.run_id
        assert "dagster/schedule_name" not in republish.tags  # the automation's run
