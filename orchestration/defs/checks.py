"""Asset checks on the data artifacts: schema, valid boxes, non-empty splits, readable exports."""

import json

import dagster as dg

from clothes_retrieval.data.deepfashion2 import read_item_table
from clothes_retrieval.data.schema import ITEM_COLUMNS, validate_item_table
from orchestration.defs.data_assets import coco_exports, item_table, retrieval_crops
from orchestration.defs.resources import PipelineResource


@dg.asset_check(asset=item_table, description="Every documented column is present; uids unique.")
def item_table_schema(pipeline: PipelineResource) -> dg.AssetCheckResult:
    items = read_item_table(pipeline.artifact_dir("item_table") / "items.parquet")
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    dupes = int(items["item_uid"].duplicated().sum()) if "item_uid" in items else -1
    return dg.AssetCheckResult(
        passed=not missing and dupes == 0,
        metadata={"missing_columns": str(missing), "duplicate_uids": dupes},
    )


@dg.asset_check(asset=item_table, description="Boxes lie inside their images with positive area.")
def item_table_valid_boxes(pipeline: PipelineResource) -> dg.AssetCheckResult:
    items = read_item_table(pipeline.artifact_dir("item_table") / "items.parquet")
    problems = validate_item_table(items)
    return dg.AssetCheckResult(
        passed=not problems, metadata={"problems": "; ".join(problems) or "none"}
    )


@dg.asset_check(asset=item_table, description="Every configured split has consumer and shop items.")
def item_table_nonempty_splits(pipeline: PipelineResource) -> dg.AssetCheckResult:
    profile = pipeline.load()
    items = read_item_table(pipeline.artifact_dir("item_table") / "items.parquet")
    counts = {
        f"{split}/{source}": int(((items["split"] == split) & (items["source"] == source)).sum())
        for split in profile.reader.splits
        for source in ("user", "shop")
    }
    empty = [k for k, v in counts.items() if v == 0]
    return dg.AssetCheckResult(
        passed=not empty, metadata={"counts": dg.MetadataValue.json(counts), "empty": str(empty)}
    )


@dg.asset_check(
    asset=coco_exports,
    description="Each split's COCO file loads in pycocotools and matches the item table.",
)
def coco_exports_readable(pipeline: PipelineResource) -> dg.AssetCheckResult:
    from pycocotools.coco import COCO

    profile = pipeline.load()
    items = read_item_table(pipeline.artifact_dir("item_table") / "items.parquet")
    mismatches = {}
    for split in profile.reader.splits:
        path = pipeline.artifact_dir("coco_exports") / f"{split}.json"
        with open(path) as fh:
            n_ann = len(json.load(fh)["annotations"])
        coco = COCO(str(path))
        expected = int((items["split"] == split).sum())
        if len(coco.getAnnIds()) != expected or n_ann != expected:
            mismatches[split] = {"coco": len(coco.getAnnIds()), "items": expected}
    return dg.AssetCheckResult(
        passed=not mismatches, metadata={"mismatches": dg.MetadataValue.json(mismatches)}
    )


@dg.asset_check(
    asset=retrieval_crops,
    description="Each split has crops, and some identities have both a consumer and a shop crop.",
)
def retrieval_crops_have_pairs(pipeline: PipelineResource) -> dg.AssetCheckResult:
    import pandas as pd

    crops = pd.read_parquet(pipeline.artifact_dir("retrieval_crops") / "crops.parquet")
    pairs = {}
    for split, group in crops.groupby("split"):
        by_identity = group.groupby("identity")["source"].nunique()
        pairs[str(split)] = int((by_identity == 2).sum())
    return dg.AssetCheckResult(
        passed=bool(pairs) and all(v > 0 for v in pairs.values()),
        metadata={"identities_with_pairs": dg.MetadataValue.json(pairs)},
    )
