"""Level 2: asset functions called directly on a tiny sample."""

from pathlib import Path

import dagster as dg
import pandas as pd

from clothes_retrieval.data.deepfashion2 import read_item_table
from orchestration.defs.data_assets import coco_exports, item_table, retrieval_crops
from orchestration.defs.resources import PipelineResource


def test_assets_called_directly(tiny_project: Path, tmp_path: Path):
    # Write outputs to a private folder so other tests sharing the project are unaffected.
    profile_text = tiny_project.read_text().replace(
        "output_root: outputs", f"output_root: {tmp_path}"
    )
    profile = tiny_project.with_name("direct.yaml")
    profile.write_text(profile_text)
    pipeline = PipelineResource(profile_path=str(profile))

    result = item_table(context=dg.build_asset_context(), pipeline=pipeline)
    items = read_item_table(Path(result.metadata["path"].value))
    assert result.metadata["items"] == len(items) > 0
    quarantine = pd.read_parquet(Path(result.metadata["quarantine_path"].value))
    # The sample injects broken records on purpose: each is quarantined, none kills the run.
    assert result.metadata["quarantined"] == len(quarantine) > 0
    assert set(items["split"]) == {"train", "validation"}

    coco = coco_exports(context=dg.build_asset_context(), pipeline=pipeline)
    assert coco.metadata["train_annotations"] == int((items["split"] == "train").sum())

    crops = retrieval_crops(context=dg.build_asset_context(), pipeline=pipeline)
    table = pd.read_parquet(Path(crops.metadata["path"].value))
    assert crops.metadata["crops"] == len(table) > 0
    assert all(Path(p).is_file() for p in table["crop_path"])
