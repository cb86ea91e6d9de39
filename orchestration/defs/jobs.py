"""Jobs: the main job (everything, on the profile's data) and the raw-data observation."""

import dagster as dg

from orchestration.defs.data_assets import raw_dataset

# The main job: observe the data, then materialise every asset (later stages join as
# their issues land). `make run` executes it on the embedded sample.
main_job = dg.define_asset_job(
    "main_job",
    selection=dg.AssetSelection.all() | dg.AssetSelection.keys(raw_dataset.key),
    description="The whole pipeline on the profile's data, ending in the evaluation report.",
)

observe_raw_dataset_job = dg.define_asset_job(
    "observe_raw_dataset",
    selection=dg.AssetSelection.keys(raw_dataset.key),
    description="Records the current data version (DVC hash) of the raw dataset.",
)
