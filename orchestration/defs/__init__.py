"""Definitions of the code location, assembled in one place."""

from __future__ import annotations

import dagster as dg

from orchestration.defs import checks, data_assets
from orchestration.defs.jobs import main_job, observe_raw_dataset_job
from orchestration.defs.resources import build_resources
from orchestration.defs.sensors import automation_sensor, data_version_sensor


def build_definitions(profile_path: str | None = None) -> dg.Definitions:
    """All assets, checks, jobs, sensors and resources; ``profile_path`` overrides the profile."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules([data_assets]),
        asset_checks=dg.load_asset_checks_from_modules([checks]),
        jobs=[main_job, observe_raw_dataset_job],
        sensors=[data_version_sensor, automation_sensor],
        resources=build_resources(profile_path),
    )
