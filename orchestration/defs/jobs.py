"""Jobs: the whole graph as one run (what `clothes-retrieval run` and `make run` launch),
and the observation of the data sources (what the data-version sensor launches)."""

from __future__ import annotations

import dagster as dg

PIPELINE_JOB = "pipeline_job"
OBSERVE_SOURCES_JOB = "observe_sources"


def build_jobs(source_keys: list[dg.AssetKey]) -> list:
    sources = dg.AssetSelection.assets(*source_keys)
    return [
        dg.define_asset_job(
            PIPELINE_JOB,
            selection=dg.AssetSelection.all() | sources,
            description="Observe the data sources, then build every asset of the profile in "
            "dependency order: data, detectors, fusion, models, embeddings, index, report, "
            "publish (the blocking accuracy floor stops the last).",
        ),
        dg.define_asset_job(
            OBSERVE_SOURCES_JOB,
            selection=sources,
            description="Records each data source's current data version (DVC hash or "
            "fingerprint).",
        ),
    ]
