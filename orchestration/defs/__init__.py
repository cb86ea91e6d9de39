"""Definitions of the code location, assembled in one place from the profile."""

import dagster as dg

from clothes_retrieval.profile import load_profile
from orchestration.defs import checks, data_assets
from orchestration.defs.detection_assets import build_detection_assets
from orchestration.defs.jobs import data_job, observe_raw_dataset_job, stage_jobs
from orchestration.defs.real_benchmark_assets import (
    REAL_BENCHMARK_ASSETS,
    RealBenchmarkResource,
    real_benchmark_job,
)
from orchestration.defs.resources import build_resources, default_profile_path
from orchestration.defs.retrieval_assets import build_retrieval_assets
from orchestration.defs.search_assets import build_search_assets
from orchestration.defs.sensors import automation_sensor, data_version_sensor


def build_definitions(profile_path: str | None = None) -> dg.Definitions:
    """All assets, checks, jobs, sensors and resources of the profile (default: the env's)."""
    profile_path = profile_path or default_profile_path()
    profile = load_profile(profile_path)
    assets: list = list(dg.load_assets_from_modules([data_assets]))
    detection, retrieval, search = [], [], []
    if profile.detection.detectors:
        detection = build_detection_assets(profile)
    if "fused" in profile.search.box_sources and not detection:
        raise ValueError(
            f"{profile_path}: search.box_sources has 'fused' but detection.detectors is empty; "
            "configure detectors or search on 'gt' boxes only"
        )
    if profile.retrieval.models:
        fused_key = dg.AssetKey("fused_boxes") if "fused" in profile.search.box_sources else None
        retrieval = build_retrieval_assets(profile, fused_key)
        search = build_search_assets(profile, retrieval[1], detection[-1:])
    assets += detection + retrieval + search + REAL_BENCHMARK_ASSETS

    def keys(defs_list: list) -> list[str]:
        return [a.key.to_user_string() for a in defs_list]

    jobs = [data_job, observe_raw_dataset_job, real_benchmark_job]
    jobs += stage_jobs(
        {
            "detection_job": keys(detection[:3]),
            "fusion_job": keys(detection[3:]),
            "retrieval_job": keys(retrieval),
            "search_job": keys(search),
        }
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=dg.load_asset_checks_from_modules([checks]),
        jobs=jobs,
        sensors=[data_version_sensor, automation_sensor],
        resources={**build_resources(profile_path), "real_benchmark": RealBenchmarkResource()},
    )
