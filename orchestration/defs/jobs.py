"""Jobs, one per stage; `make run` (orchestration/main.py) runs them in order.

A Dagster run has one partition key, so stages partitioned differently (detectors,
retrieval models) are separate jobs; main.py runs each partition of each in turn, all in
the same persistent instance, so the UI shows one lineage.
"""

import dagster as dg

from orchestration.defs.data_assets import raw_dataset

DATA_ASSETS = ["item_table", "coco_exports", "retrieval_crops"]

observe_raw_dataset_job = dg.define_asset_job(
    "observe_raw_dataset",
    selection=dg.AssetSelection.keys(raw_dataset.key),
    description="Records the current data version (DVC hash) of the raw dataset.",
)

data_job = dg.define_asset_job(
    "data_job",
    selection=dg.AssetSelection.keys(*DATA_ASSETS) | dg.AssetSelection.keys(raw_dataset.key),
    description="Observe the raw data, then build the item table, COCO exports and crops.",
)


def stage_jobs(
    detector_assets: list[str],
    retrieval_assets: list[str],
    search_assets: list[str],
    fusion_assets: list[str],
) -> list:
    jobs = []
    if detector_assets:
        jobs.append(
            dg.define_asset_job(
                "detection_job",
                selection=dg.AssetSelection.keys(*detector_assets),
                description="Train, run and evaluate one detector (a partition).",
            )
        )
    if fusion_assets:
        jobs.append(
            dg.define_asset_job(
                "fusion_job",
                selection=dg.AssetSelection.keys(*fusion_assets),
                description="Fuse every detector's boxes (WBF) and report detection.",
            )
        )
    if retrieval_assets:
        jobs.append(
            dg.define_asset_job(
                "retrieval_job",
                selection=dg.AssetSelection.keys(*retrieval_assets),
                description="Train one retrieval model (a partition) and embed the search split.",
            )
        )
    if search_assets:
        jobs.append(
            dg.define_asset_job(
                "search_job",
                selection=dg.AssetSelection.keys(*search_assets),
                description="Index, evaluate (report) and publish if above the floor.",
            )
        )
    return jobs
