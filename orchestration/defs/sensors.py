"""Sensors: notice new data (a new DVC hash or fingerprint) and let declarative automation
rebuild.

``data_version_sensor`` reads every source's data version every ``DATA_SENSOR_INTERVAL_S``
seconds and, when any differs from the last ones seen, launches an observation of the
sources (run_key = the combined version, so each version is observed once). The new
observed data version makes the downstream assets stale; the automation sensor (running by
default) then materialises them, in order (``orchestration.defs.automation``). No one has
to click.
"""

import os

import dagster as dg

from clothes_retrieval.versioning import combine_versions, source_versions
from orchestration.defs.jobs import OBSERVE_SOURCES_JOB
from orchestration.defs.resources import PipelineResource

# Seconds between evaluations of each sensor (an end-to-end test shortens them).
DATA_SENSOR_INTERVAL_S = int(os.environ.get("CLOTHES_RETRIEVAL_SENSOR_INTERVAL_S", "30"))


@dg.sensor(
    job_name=OBSERVE_SOURCES_JOB,
    minimum_interval_seconds=DATA_SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Observes the data sources whenever the data version of any changes.",
)
def data_version_sensor(
    context: dg.SensorEvaluationContext, pipeline: PipelineResource
) -> dg.SensorResult:
    version = combine_versions(source_versions(pipeline.load().data.sources))
    if version == context.cursor:
        return dg.SensorResult(skip_reason=f"data version unchanged ({version})")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=version)], cursor=version)


automation_sensor = dg.AutomationConditionSensorDefinition(
    "rebuild_on_data_change",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=DATA_SENSOR_INTERVAL_S,
    description="Evaluates automation conditions (rebuild after an upstream change, each "
    "asset after all of its ancestors).",
)
