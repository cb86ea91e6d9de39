"""Definitions of the code location, assembled in one place from the profile.

One graph for every profile: the asset factories make one asset per source, detector and
retrieval model the profile lists; nothing here knows which dataset it runs on.
"""

from __future__ import annotations

import dagster as dg

from orchestration.defs.checks import build_checks
from orchestration.defs.data_assets import build_data_assets
from orchestration.defs.detection_assets import build_detection_assets
from orchestration.defs.jobs import build_jobs
from orchestration.defs.operations import alert_on_failure, build_schedules, tag_trigger
from orchestration.defs.resources import build_resources, default_overrides, default_profile_path
from orchestration.defs.retrieval_assets import build_retrieval_assets
from orchestration.defs.search_assets import build_search_assets
from orchestration.defs.sensors import automation_sensor, data_version_sensor


def build_definitions(
    profile_path: str | None = None, overrides: str | None = None
) -> dg.Definitions:
    """Every asset, check, job, sensor and resource of the profile (default: the env's);
    ``overrides``: JSON of nested keys deep-merged into it (``run --set``)."""
    resources = build_resources(
        profile_path or default_profile_path(),
        overrides if overrides is not None else default_overrides(),
    )
    profile = resources["pipeline"].load()
    data = build_data_assets(profile)
    detection = build_detection_assets(profile) if profile.detection.detectors else []
    retrieval = build_retrieval_assets(profile)
    search = build_search_assets(profile) if profile.retrieval.models else []
    sources = [a.key for a in data if isinstance(a, dg.SourceAsset)]
    training = [
        key
        for a in [*detection, *retrieval]
        if isinstance(a, dg.AssetsDefinition)
        for key in a.keys
        if key.path[0] in ("detector", "model")
    ]
    retrain_jobs, schedules = build_schedules(profile, training)
    return dg.Definitions(
        assets=[*data, *detection, *retrieval, *search],
        asset_checks=build_checks(profile),
        jobs=[*build_jobs(sources), *retrain_jobs],
        schedules=schedules,
        sensors=[data_version_sensor, automation_sensor, tag_trigger, alert_on_failure],
        resources=resources,
        executor=dg.in_process_executor,  # one step at a time: training owns the cores
    )
