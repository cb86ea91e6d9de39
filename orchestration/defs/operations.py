"""Operating the graph: the retraining schedule, the ``gpu`` concurrency pool, retries, the
tags that say what triggered a run, and alerts on failure.

- Every training (``detector/*``, ``model/*``) takes a slot of the ``gpu`` pool, so two
  trainings never share a device however many runs the automation or a schedule starts;
  the pool's size is ``operations.gpu_slots`` (default: one per visible GPU, 1 without one),
  written into the instance by :func:`configure_instance`.
- Trainings retry with backoff (``operations.retries``): a lost worker or a full disk that
  was cleaned does not end the run; a bad config fails again and does.
- ``retrain_<profile>`` (``operations.schedule.cron``, off by default) retrains every
  detector and model on the current data version from scratch; the automation then
  rebuilds fusion, embeddings, index, report and the publish after them.
- ``tag_trigger`` tags every run with what started it (:data:`TRIGGER_TAG`: schedule, data
  change, config change or person); ``alert_on_failure`` reports a failed run or a blocked
  publish (a log line, a JSON file, a webhook when configured).
"""

from __future__ import annotations

import getpass
import json
import logging
import time
import urllib.request
from pathlib import Path
from typing import Any

import dagster as dg

from clothes_retrieval.io import write_json
from clothes_retrieval.operations import RetryConfig, visible_gpus
from clothes_retrieval.profile import PipelineProfile
from orchestration.defs.kubernetes import training_pod_tags
from orchestration.defs.resources import PipelineResource

logger = logging.getLogger("clothes_retrieval.alerts")

GPU_POOL = "gpu"
TRIGGER_TAG = "clothes_retrieval/trigger"
USER_TAG = "clothes_retrieval/user"
# Set by the retraining schedule: a training whose run carries it starts from scratch
# instead of resuming an identical finished run (the tag value is the tick's time).
RETRAIN_TAG = "clothes_retrieval/retrain"
RETRAIN_JOB = "retrain_job"
AUTOMATION_SENSOR = "rebuild_on_data_change"
TRIGGERS = ("schedule", "data change", "config change", "person")


def retry_policy(config: RetryConfig) -> dg.RetryPolicy | None:
    if config.max_retries == 0:
        return None
    return dg.RetryPolicy(
        max_retries=config.max_retries,
        delay=config.delay_s,
        backoff=dg.Backoff.EXPONENTIAL if config.backoff == "exponential" else dg.Backoff.LINEAR,
        jitter=dg.Jitter.PLUS_MINUS,
    )


def training_options(profile: PipelineProfile, world_size: int) -> dict[str, Any]:
    """``@asset`` keyword arguments every training shares: the pool, retries, pod tags."""
    return {
        "pool": GPU_POOL,
        "retry_policy": retry_policy(profile.operations.retries),
        "op_tags": training_pod_tags(profile, world_size),
    }


def retrain_requested(context: dg.AssetExecutionContext) -> bool:
    """The run asks to retrain from scratch (the schedule's runs): a finished training on
    the same inputs is not resumed. A retry of the step resumes what its first try did."""
    return bool(context.run.tags.get(RETRAIN_TAG)) and context.retry_number == 0


def gpu_slots(profile: PipelineProfile) -> int:
    return profile.operations.gpu_slots or max(visible_gpus(), 1)


def configure_instance(instance: dg.DagsterInstance, profile: PipelineProfile) -> int:
    """Size the instance's ``gpu`` pool for the profile; returns the slot count."""
    slots = gpu_slots(profile)
    instance.event_log_storage.set_concurrency_slots(GPU_POOL, slots)
    return slots


def build_schedules(profile: PipelineProfile, training: list[dg.AssetKey]) -> tuple[list, list]:
    """The retraining job and schedule of the profile (none without a cron or trainings)."""
    cron = profile.operations.schedule
    if cron.cron is None or not training:
        return [], []
    job = dg.define_asset_job(
        RETRAIN_JOB,
        selection=dg.AssetSelection.assets(*training),
        description="Retrain every detector and retrieval model from scratch on the current "
        "data version; the automation rebuilds what follows.",
    )

    @dg.schedule(
        name=f"retrain_{profile.name}",
        cron_schedule=cron.cron,
        execution_timezone=cron.timezone,
        job=job,
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if cron.running else dg.DefaultScheduleStatus.STOPPED
        ),
        description=f"Retrains the detectors and models of profile {profile.name} "
        f"({cron.cron}, {cron.timezone}).",
    )
    def retrain(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        tick = context.scheduled_execution_time.isoformat()
        return dg.RunRequest(run_key=tick, tags={TRIGGER_TAG: "schedule", RETRAIN_TAG: tick})

    return [job], [retrain]


def trigger_of(tags: dict[str, str], code_changed: bool) -> str:
    """What started a run, from its tags: a schedule, the automation (after a config change
    when any asset's code version differs from its last materialisation, else after a data
    change), the data sensor (data change), or a person (the CLI, the UI's launchpad)."""
    if TRIGGER_TAG in tags:
        return tags[TRIGGER_TAG]
    if "dagster/schedule_name" in tags:
        return "schedule"
    if "dagster/sensor_name" in tags or tags.get("dagster/from_automation_condition"):
        return "config change" if code_changed else "data change"
    return "person"


def _code_changed(context: dg.RunStatusSensorContext) -> bool:
    run = context.dagster_run
    repo = context.repository_def
    if repo is None or not run.asset_selection:
        return False
    graph = repo.asset_graph
    for key in run.asset_selection:
        if not graph.has(key):
            continue
        current = graph.get(key).code_version
        event = context.instance.get_latest_materialization_event(key)
        if event is None or event.asset_materialization is None:
            continue
        last = (
            event.asset_materialization.tags.get("dagster/code_version")
            if (event.asset_materialization.tags)
            else None
        )
        if current is not None and last is not None and last != current:
            return True
    return False


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.STARTED,
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=5,
    description="Tags each run with what started it (clothes_retrieval/trigger: schedule, "
    "data change, config change or person).",
)
def tag_trigger(context: dg.RunStatusSensorContext) -> dg.SkipReason | None:
    run = context.dagster_run
    if TRIGGER_TAG in run.tags:
        return dg.SkipReason(f"run {run.run_id} already tagged {run.tags[TRIGGER_TAG]}")
    trigger = trigger_of(dict(run.tags), _code_changed(context))
    context.instance.add_run_tags(run.run_id, {TRIGGER_TAG: trigger})
    return None


def person_tags() -> dict[str, str]:
    """Tags of a run a person starts from the command line."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = "unknown"
    return {TRIGGER_TAG: "person", USER_TAG: user}


def alert_dir(profile: PipelineProfile) -> Path:
    return profile.operations.alerts.dir or profile.output_dir / "alerts"


def send_alert(profile: PipelineProfile, alert: dict[str, Any]) -> Path:
    """Log the alert at ERROR, write it as JSON under the alert folder and POST it to the
    webhook when one is configured (a webhook that fails is logged, never raised)."""
    folder = alert_dir(profile)
    path = folder / f"{time.strftime('%Y%m%dT%H%M%S')}-{alert['run_id']}.json"
    write_json(path, alert)
    logger.error("ALERT %s: %s (%s)", alert["kind"], alert["message"], path)
    url = profile.operations.alerts.webhook_url
    if url:
        body = json.dumps(
            {"text": f"clothes-retrieval {alert['kind']}: {alert['message']}", **alert}
        ).encode()
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=profile.operations.alerts.timeout_s):
                pass
        except OSError as err:
            logger.error("alert webhook %s failed: %s (the alert is in %s)", url, err, path)
    return path


def _failure_alert(context: dg.RunFailureSensorContext, profile: PipelineProfile) -> dict:
    run = context.dagster_run
    failed = [event.step_key for event in context.get_step_failure_events()]
    blocked = []
    for record in context.instance.get_records_for_run(run.run_id).records:
        entry = record.event_log_entry
        evaluation = entry.dagster_event and entry.dagster_event.event_type_value == (
            "ASSET_CHECK_EVALUATION"
        )
        if evaluation:
            data = entry.dagster_event.event_specific_data
            if not data.passed and data.severity == dg.AssetCheckSeverity.ERROR:
                blocked.append(f"{data.asset_key.to_user_string()}:{data.check_name}")
    publish = [k for k in failed if "published_index" in k]
    kind = "publish blocked" if blocked or publish else "run failed"
    message = (
        f"run {run.run_id} of {run.job_name} failed"
        + (f"; steps {failed}" if failed else "")
        + (f"; blocking checks failed: {blocked} (the publish did not run)" if blocked else "")
    )
    return {
        "kind": kind,
        "message": message,
        "run_id": run.run_id,
        "job": run.job_name,
        "profile": profile.name,
        "failed_steps": failed,
        "blocking_checks_failed": blocked,
        "trigger": run.tags.get(TRIGGER_TAG),
        "error": context.failure_event.message if context.failure_event else None,
    }


@dg.run_failure_sensor(
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=5,
    description="Reports a failed run or a blocked publish: an ERROR log line, a JSON file "
    "under operations.alerts.dir, and a POST to operations.alerts.webhook_url when set.",
)
def alert_on_failure(context: dg.RunFailureSensorContext, pipeline: PipelineResource) -> None:
    profile = pipeline.load()
    path = send_alert(profile, _failure_alert(context, profile))
    context.log.info("alert written to %s", path)
