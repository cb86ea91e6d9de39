"""Data-stage assets: the raw dataset (observed), the item table, the extra training sources'
items, COCO exports, retrieval crops.

Each asset body loads its inputs, calls one library function and returns the artifact's
paths and metadata. Artifacts are files under the profile's output folder, written
atomically by the library, so an interrupted materialisation never leaves a half artifact.
"""

import dagster as dg
import pandas as pd

from clothes_retrieval.config import dump_config
from clothes_retrieval.data.coco import export_coco
from clothes_retrieval.data.crops import export_retrieval_crops
from clothes_retrieval.data.deepfashion2 import (
    ReadResult,
    read_deepfashion2,
    read_item_table,
    write_item_tables,
)
from clothes_retrieval.data.sources import read_training_sources
from clothes_retrieval.io import write_json
from clothes_retrieval.versioning import data_version
from orchestration.defs.resources import PipelineResource

DATA_GROUP = "data"
# Rebuild as soon as an upstream (ultimately: the DVC hash of the data) changes.
EAGER = dg.AutomationCondition.eager()


def markdown_table(df: pd.DataFrame, max_rows: int = 50) -> str:
    if df.empty:
        return "(none)"
    shown = df.head(max_rows)
    header = "| " + " | ".join(map(str, shown.columns)) + " |"
    sep = "|" + "---|" * len(shown.columns)
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    more = [f"\n… {len(df) - max_rows} more rows"] if len(df) > max_rows else []
    return "\n".join([header, sep, *rows, *more])


@dg.observable_source_asset(
    group_name=DATA_GROUP,
    description="The raw dataset in DeepFashion2 layout. Its data version is the DVC hash of "
    "the data root (data.dvc), so a `dvc add` of changed data makes everything downstream stale.",
)
def raw_dataset(pipeline: PipelineResource) -> dg.ObserveResult:
    profile = pipeline.load()
    version = data_version(profile.data.root, profile.data.dvc_file)
    return dg.ObserveResult(
        data_version=dg.DataVersion(version),
        metadata={
            "root": dg.MetadataValue.path(str(profile.data.root)),
            "dvc_file": str(profile.data.dvc_file),
            "data_version": version,
        },
    )


@dg.asset(
    deps=[raw_dataset],
    group_name=DATA_GROUP,
    automation_condition=EAGER,
    description="One row per garment item (parquet; schema in clothes_retrieval.data.schema) "
    "plus the quarantine table of rejected records with their reasons.",
)
def item_table(
    context: dg.AssetExecutionContext, pipeline: PipelineResource
) -> dg.MaterializeResult:
    profile = pipeline.load()
    out_dir = pipeline.artifact_dir("item_table")
    result = read_deepfashion2(profile.data.root, profile.reader, dataset=profile.data.dataset)
    paths = write_item_tables(result, out_dir)
    write_json(
        out_dir / "config.json",
        {"data": dump_config(profile.data), "reader": dump_config(profile.reader)},
    )
    items, quarantine = result.items, result.quarantine
    per_split = items.groupby(["split", "source"]).size().unstack(fill_value=0)
    reasons = quarantine["reason"].value_counts().to_dict() if len(quarantine) else {}
    context.log.info(
        "item table: %d items, %d quarantined records %s", len(items), len(quarantine), reasons
    )
    return dg.MaterializeResult(
        metadata={
            "items": len(items),
            "images": int(items[["split", "image_id"]].drop_duplicates().shape[0]),
            "quarantined": len(quarantine),
            "quarantine_reasons": dg.MetadataValue.json(
                {str(k): int(v) for k, v in reasons.items()}
            ),
            "items_per_split": dg.MetadataValue.md(markdown_table(per_split.reset_index())),
            "quarantine_table": dg.MetadataValue.md(markdown_table(quarantine)),
            "path": dg.MetadataValue.path(str(paths["items"])),
            "quarantine_path": dg.MetadataValue.path(str(paths["quarantine"])),
        }
    )


@dg.asset(
    deps=[item_table],
    group_name=DATA_GROUP,
    automation_condition=EAGER,
    description="COCO-format detection files per split (boxes and masks), for mmdetection.",
)
def coco_exports(
    context: dg.AssetExecutionContext, pipeline: PipelineResource
) -> dg.MaterializeResult:
    profile = pipeline.load()
    items = read_item_table(pipeline.artifact_dir("item_table") / "items.parquet")
    out_dir = pipeline.artifact_dir("coco_exports")
    metadata: dict[str, object] = {}
    for split in profile.reader.splits:
        summary = export_coco(items[items["split"] == split], split, out_dir / f"{split}.json")
        context.log.info("COCO %s: %s", split, summary)
        metadata[f"{split}_path"] = dg.MetadataValue.path(str(out_dir / f"{split}.json"))
        metadata[f"{split}_images"] = summary.images
        metadata[f"{split}_annotations"] = summary.annotations
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name=DATA_GROUP,
    automation_condition=EAGER,
    description="Items of the profile's extra training sources (Street2Shop, DARN, MVC, MPV, "
    "Zalando, ...; data.training_sources), read by their adapters and mapped to the main "
    "category set: training data for the retrieval crops. Empty when none are configured.",
)
def training_source_items(
    context: dg.AssetExecutionContext, pipeline: PipelineResource
) -> dg.MaterializeResult:
    profile = pipeline.load()
    out_dir = pipeline.artifact_dir("training_source_items")
    items, quarantine = read_training_sources(profile.data.training_sources, progress=False)
    paths = write_item_tables(ReadResult(items, quarantine), out_dir)
    per_source = items.groupby("dataset").size().to_dict() if len(items) else {}
    return dg.MaterializeResult(
        metadata={
            "items": len(items),
            "quarantined": len(quarantine),
            "items_per_source": dg.MetadataValue.json({k: int(v) for k, v in per_source.items()}),
            "path": dg.MetadataValue.path(str(paths["items"])),
        }
    )


@dg.asset(
    deps=[item_table, training_source_items],
    group_name=DATA_GROUP,
    automation_condition=EAGER,
    description="Item crops with identity labels (pair_id + style) for metric learning, "
    "near-duplicates removed by perceptual hash.",
)
def retrieval_crops(
    context: dg.AssetExecutionContext, pipeline: PipelineResource
) -> dg.MaterializeResult:
    profile = pipeline.load()
    items = read_item_table(pipeline.artifact_dir("item_table") / "items.parquet")
    extra = read_item_table(pipeline.artifact_dir("training_source_items") / "items.parquet")
    if len(extra):
        items = pd.concat([items, extra], ignore_index=True)
    out_dir = pipeline.artifact_dir("retrieval_crops")
    result = export_retrieval_crops(items, out_dir, profile.crops)
    write_json(out_dir.parent / "retrieval_crops.config.json", dump_config(profile.crops))
    crops = result.crops
    per_split = crops.groupby(["split", "source"]).size().unstack(fill_value=0).reset_index()
    return dg.MaterializeResult(
        metadata={
            "crops": len(crops),
            "identities": int(crops["identity"].nunique()),
            "removed_duplicates": result.removed_duplicates,
            "skipped_too_small": result.skipped_too_small,
            "skipped_unreadable": result.skipped_unreadable,
            "crops_per_split": dg.MetadataValue.md(markdown_table(per_split)),
            "path": dg.MetadataValue.path(str(out_dir / "crops.parquet")),
        }
    )
