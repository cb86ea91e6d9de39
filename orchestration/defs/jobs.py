"""Jobs, one per stage; `make run` (orchestration/main.py) runs them in order.

A Dagster run has one partition key, so stages partitioned differently (detectors,
retrieval models) are separate jobs; main.py runs each partition of each in turn, all in
the same persistent instance, so the UI shows one lineage.
"""

import dagster as dg

from orchestration.defs.data_assets import raw_dataset

DATA_ASSETS = ["item_table", "training_source_items", "coco_exports", "retrieval_crops"]

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


STAGE_DESCRIPTIONS = {
    "detection_job": "Train, run and evaluate one detector (a partition).",
    "fusion_job": "Fuse every detector's boxes (WBF) and report detection.",
    "retrieval_job": "Train one retrieval model (a partition) and embed the search split.",
    "search_job": "Index, evaluate (report) and publish if above the floor.",
}


def stage_jobs(stage_assets: dict[str, list[str]]) -> list:
    """One asset job per stage that has assets (``stage_assets``: job name -> asset keys)."""
    return [
        dg.define_asset_job(
            name, selection=dg.AssetSelection.keys(*keys), description=STAGE_DESCRIPTIONS[name]
        )
        for name, keys in stage_assets.items()
        if keys
    ]
