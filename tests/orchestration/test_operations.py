"""Operations: the gpu pool keeps trainings apart, retries, trigger tags, alerts, the
retraining schedule's definition (the daemon test runs it: test_daemon_schedule.py)."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from pathlib import Path

import dagster as dg
import pytest
import yaml

from clothes_retrieval.config import ConfigError
from clothes_retrieval.profile import load_profile
from orchestration.defs import build_definitions
from orchestration.defs.operations import (
    GPU_POOL,
    RETRAIN_TAG,
    TRIGGER_TAG,
    alert_on_failure,
    configure_instance,
    tag_trigger,
    trigger_of,
)
from orchestration.defs.resources import PipelineResource
from orchestration.run import dagster_home
from tests.orchestration.dagster_dev import DAGSTER, REPO, dagster_env
from tests.orchestration.tiny_project import make_project

MODELS = ("sample_lite0_gem", "sample_lite0_gem_mac")


def _edit(profile: Path, **sections) -> Path:
    data = yaml.safe_load(profile.read_text())
    for key, value in sections.items():
        data[key] = value
    profile.write_text(yaml.safe_dump(data, sort_keys=False))
    return profile


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ops") / "project"
    profile = make_project(root, with_models=True, with_detection=True)
    return _edit(
        profile,
        operations={
            "schedule": {"cron": "0 3 * * 0", "running": False},
            "gpu_slots": 1,
            "retries": {"max_retries": 3, "delay_s": 1, "backoff": "linear"},
        },
    )


def test_every_training_takes_a_gpu_slot_and_retries(project: Path) -> None:
    graph = build_definitions(str(project)).resolve_asset_graph()
    trainings = [k for k in graph.materializable_asset_keys if k.path[0] in ("detector", "model")]
    assert len(trainings) == 4  # two detectors, two models
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        if key in trainings:
            assert node.pools == {GPU_POOL}, key
            policy = node.assets_def.op.retry_policy
            assert (policy.max_retries, policy.delay) == (3, 1), key
            assert policy.backoff == dg.Backoff.LINEAR
        else:  # the pool is for trainings only: the rest never waits for a GPU slot
            assert GPU_POOL not in (node.pools or set()), key


def test_the_schedule_is_defined_from_the_profile(project: Path) -> None:
    defs = build_definitions(str(project))
    schedule = defs.resolve_schedule_def("retrain_tiny")
    assert schedule.cron_schedule == "0 3 * * 0"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED  # running: false
    job = defs.resolve_job_def("retrain_job")
    selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert selected == {
        "detector/atss",
        "detector/centernet",
        *(f"model/{m}" for m in MODELS),
    }
    request = schedule.evaluate_tick(
        dg.build_schedule_context(
            scheduled_execution_time=__import__("datetime").datetime(2026, 12, 6, 3)
        )
    ).run_requests[0]
    assert request.tags[TRIGGER_TAG] == "schedule"
    assert request.tags[RETRAIN_TAG].startswith("2026-12-06T03:00")


def test_no_schedule_by_default(tiny_project: Path) -> None:
    defs = build_definitions(str(tiny_project))
    assert list(defs.schedules or []) == []


def test_a_bad_cron_is_named(tmp_path: Path, tiny_project: Path) -> None:
    profile = tiny_project
    with pytest.raises(ConfigError, match=r"operations\.schedule\.cron.*5 fields"):
        load_profile(profile, {"operations": {"schedule": {"cron": "every sunday"}}})


@pytest.mark.parametrize(
    ("tags", "code_changed", "trigger"),
    [
        ({"dagster/schedule_name": "retrain_tiny"}, False, "schedule"),
        ({"dagster/sensor_name": "rebuild_on_data_change"}, False, "data change"),
        ({"dagster/from_automation_condition": "true"}, True, "config change"),
        ({}, False, "person"),
        ({TRIGGER_TAG: "schedule", "dagster/sensor_name": "x"}, True, "schedule"),
    ],
)
def test_trigger_of(tags: dict, code_changed: bool, trigger: str) -> None:
    assert trigger_of(tags, code_changed) == trigger


def _step_windows(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    start, end = {}, {}
    for record in instance.get_records_for_run(run_id).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            start[event.step_key] = record.event_log_entry.timestamp
        elif event.event_type in (
            dg.DagsterEventType.STEP_SUCCESS,
            dg.DagsterEventType.STEP_FAILURE,
        ):
            end[event.step_key] = record.event_log_entry.timestamp
    return {k: (start[k], end[k]) for k in start}


@pytest.mark.timeout(900)
def test_two_trainings_queued_on_a_one_slot_pool_run_one_after_the_other(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs start at once, each a real `dagster asset materialize` process training one
    model; the one-slot pool makes the second wait until the first training ends (without
    the pool both would train at once)."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    home = dagster_home(project.parents[1], "tiny")
    env = dagster_env(home, project)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert configure_instance(instance, load_profile(project)) == 1
    crops = "item_table,retrieval_crops"
    assert _materialize(crops, env, tmp_path / "crops.log").wait(timeout=600) == 0, (
        tmp_path / "crops.log"
    ).read_text()[-3000:]
    procs = [_materialize(f"model/{m}", env, tmp_path / f"{m}.log") for m in MODELS]
    for proc, model in zip(procs, MODELS, strict=True):
        assert proc.wait(timeout=800) == 0, (tmp_path / f"{model}.log").read_text()[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        windows = sorted(
            w
            for run in instance.get_runs()
            for step, w in _step_windows(instance, run.run_id).items()
            if step.startswith("model")
        )
        assert instance.event_log_storage.get_concurrency_info(GPU_POOL).slot_count == 1
    assert len(windows) == 2, windows
    (_, first_end), (second_start, _) = windows
    assert second_start >= first_end, f"the trainings overlapped: {windows}"


def _materialize(selection: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    command = [str(DAGSTER), "asset", "materialize", "-m", "orchestration.definitions"]
    return subprocess.Popen(
        [*command, "--select", selection],
        cwd=REPO,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def _failed_run(instance: dg.DagsterInstance):
    """A real failed run whose blocking check stopped the publish."""

    @dg.asset(
        check_specs=[dg.AssetCheckSpec("acc10_floor", asset="evaluation_report", blocking=True)]
    )
    def evaluation_report():
        yield dg.Output(1)
        yield dg.AssetCheckResult(check_name="acc10_floor", passed=False)

    @dg.asset(deps=[evaluation_report])
    def published_index():
        return 2

    result = dg.materialize(
        [evaluation_report, published_index], instance=instance, raise_on_error=False
    )
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    return run, failure


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_blocked_publish_raises_an_alert(tmp_path: Path, tiny_project: Path, caplog) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    alerts = tmp_path / "alerts"
    overrides = {
        "operations": {
            "alerts": {
                "dir": str(alerts),
                "webhook_url": f"http://127.0.0.1:{server.server_port}/hook",
            }
        }
    }
    pipeline = PipelineResource(
        profile_path=str(tiny_project),
        overrides=json.dumps(overrides),
    )
    try:
        with dg.instance_for_test() as instance:
            run, failure = _failed_run(instance)
            context = dg.build_run_status_sensor_context(
                sensor_name="alert_on_failure",
                dagster_event=failure,
                dagster_instance=instance,
                dagster_run=run,
                resources={"pipeline": pipeline},
            ).for_run_failure()
            with caplog.at_level("ERROR", logger="clothes_retrieval.alerts"):
                alert_on_failure(context)
    finally:
        server.shutdown()
    files = list(alerts.glob("*.json"))
    assert len(files) == 1
    alert = json.loads(files[0].read_text())
    assert alert["kind"] == "publish blocked"
    assert alert["blocking_checks_failed"] == ["evaluation_report:acc10_floor"]
    assert alert["run_id"] == run.run_id
    assert "ALERT publish blocked" in caplog.text
    assert [h["run_id"] for h in _Hook.received] == [run.run_id]
    assert "publish blocked" in _Hook.received[0]["text"]


def test_runs_are_tagged_with_their_trigger(tmp_path: Path) -> None:
    @dg.asset
    def thing():
        return 1

    with dg.instance_for_test() as instance:
        result = dg.materialize([thing], instance=instance)
        run = instance.get_run_by_id(result.run_id)
        start = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_START)
        context = dg.build_run_status_sensor_context(
            sensor_name="tag_trigger",
            dagster_event=start,
            dagster_instance=instance,
            dagster_run=run,
        )
        tag_trigger(context)
        assert instance.get_run_by_id(run.run_id).tags[TRIGGER_TAG] == "person"
