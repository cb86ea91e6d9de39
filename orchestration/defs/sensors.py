"""Sensors: notice new data (a new DVC hash) and let declarative automation rebuild.

``data_version_sensor`` reads the data version every ``DATA_SENSOR_INTERVAL_S`` seconds and,
when it differs from the last one seen, launches an observation of ``raw_dataset``
(run_key = the hash, so each version is observed once). The new observed data version
makes the downstream assets stale; the automation sensor (running by default) then
materialises them through their ``AutomationCondition.eager()``. No one has to click.
"""

import dagster as dg

from clothes_retrieval.versioning import data_version
from orchestration.defs.jobs import observe_raw_dataset_job
from orchestration.defs.resources import PipelineResource

DATA_SENSOR_INTERVAL_S = 30


@dg.sensor(
    job=observe_raw_dataset_job,
    minimum_interval_seconds=DATA_SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Observes raw_dataset whenever the DVC hash of the data changes.",
)
def data_version_sensor(
    context: dg.SensorEvaluationContext, pipeline: PipelineResource
) -> dg.SensorResult:
    profile = pipeline.load()
    version = data_version(profile.data.root, profile.data.dvc_file)
    if version == context.cursor:
        return dg.SensorResult(skip_reason=f"data version unchanged ({version})")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=version)], cursor=version)


automation_sensor = dg.AutomationConditionSensorDefinition(
    "rebuild_on_data_change",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates automation conditions (eager: rebuild after an upstream change).",
)
