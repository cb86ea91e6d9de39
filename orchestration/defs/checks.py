"""Asset checks on the data artifacts: schema, valid boxes, non-empty splits, readable exports."""

import json

import dagster as dg
import pandas as pd

from clothes_retrieval.data.deepfashion2 import read_item_table
from clothes_retrieval.data.schema import ITEM_COLUMNS, validate_item_table
from clothes_retrieval.profile import PipelineProfile
from orchestration.defs.data_assets import COCO_EXPORTS, ITEM_TABLE, RETRIEVAL_CROPS, coco_splits
from orchestration.defs.resources import PipelineResource


def _items(pipeline: PipelineResource) -> pd.DataFrame:
    return read_item_table(pipeline.artifact_dir("item_table") / "items.parquet")


@dg.asset_check(asset=ITEM_TABLE, description="Every documented column is present; uids unique.")
def item_table_schema(pipeline: PipelineResource) -> dg.AssetCheckResult:
    items = _items(pipeline)
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    dupes = int(items["item_uid"].duplicated().sum()) if "item_uid" in items else -1
    return dg.AssetCheckResult(
        passed=not missing and dupes == 0,
        metadata={"missing_columns": str(missing), "duplicate_uids": dupes},
    )


@dg.asset_check(
    asset=ITEM_TABLE,
    description="Boxes lie inside their images with positive area; categories are the taxonomy's.",
)
def item_table_valid_boxes(pipeline: PipelineResource) -> dg.AssetCheckResult:
    profile = pipeline.load()
    taxonomy = profile.data.load_taxonomy()
    problems = (
        validate_item_table(_items(pipeline), taxonomy.category_ids)
        if taxonomy
        else validate_item_table(_items(pipeline))
    )
    return dg.AssetCheckResult(
        passed=not problems, metadata={"problems": "; ".join(problems) or "none"}
    )


@dg.asset_check(
    asset=ITEM_TABLE,
    description="The training split has items; the search split has queries (consumer "
    "photos) and a gallery (shop photos).",
)
def item_table_nonempty_splits(pipeline: PipelineResource) -> dg.AssetCheckResult:
    profile = pipeline.load()
    items = _items(pipeline)
    split = profile.search.split
    counts = {
        "train": int((items["split"] == "train").sum()),
        f"{split}/user": int(((items["split"] == split) & (items["source"] == "user")).sum()),
        f"{split}/shop": int(((items["split"] == split) & (items["source"] == "shop")).sum()),
    }
    empty = [k for k, v in counts.items() if v == 0]
    return dg.AssetCheckResult(
        passed=not empty, metadata={"counts": dg.MetadataValue.json(counts), "empty": str(empty)}
    )


@dg.asset_check(
    asset=RETRIEVAL_CROPS,
    description="Each split has crops, and some identities have both a consumer and a shop crop.",
)
def retrieval_crops_have_pairs(pipeline: PipelineResource) -> dg.AssetCheckResult:
    crops = pd.read_parquet(pipeline.artifact_dir("retrieval_crops") / "crops.parquet")
    pairs = {}
    for split, group in crops.groupby("split"):
        by_identity = group.groupby("identity")["source"].nunique()
        pairs[str(split)] = int((by_identity == 2).sum())
    return dg.AssetCheckResult(
        passed=bool(pairs) and all(v > 0 for v in pairs.values()),
        metadata={"identities_with_pairs": dg.MetadataValue.json(pairs)},
    )


@dg.asset_check(
    asset=COCO_EXPORTS,
    description="Each COCO file loads in pycocotools and holds every item of the photos the "
    "detectors use.",
)
def coco_exports_readable(pipeline: PipelineResource) -> dg.AssetCheckResult:
    from pycocotools.coco import COCO

    profile = pipeline.load()
    det = profile.detection
    items = _items(pipeline)
    items = items[items["source"].isin(list(det.photo_sources))]
    if det.datasets is not None:
        items = items[items["dataset"].isin(list(det.datasets))]
    mismatches = {}
    for split in coco_splits(profile):
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


def build_checks(profile: PipelineProfile) -> list:
    checks = [
        item_table_schema,
        item_table_valid_boxes,
        item_table_nonempty_splits,
        retrieval_crops_have_pairs,
    ]
    return [*checks, coco_exports_readable] if profile.detection.detectors else checks
