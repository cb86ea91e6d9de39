"""Data-stage assets: one observed source per profile source, the item table, COCO exports,
retrieval crops.

Each asset body loads its inputs, calls one library function and returns the artifact's
paths and metadata. Artifacts are files under the profile's output folder, written
atomically by the library, so an interrupted materialisation never leaves a half artifact;
each records the data version it was built from (``lineage.json``).
"""

import dagster as dg
import pandas as pd

from clothes_retrieval.config import config_digest, dump_config
from clothes_retrieval.data.coco import export_coco
from clothes_retrieval.data.crops import export_retrieval_crops
from clothes_retrieval.data.deepfashion2 import ReadResult, read_item_table, write_item_tables
from clothes_retrieval.data.sources import read_sources
from clothes_retrieval.io import write_json
from clothes_retrieval.profile import PipelineProfile
from clothes_retrieval.versioning import (
    combine_versions,
    data_version,
    read_lineage,
    source_versions,
    write_lineage,
)
from orchestration.defs.automation import REBUILD
from orchestration.defs.resources import PipelineResource

DATA_GROUP = "data"
ITEM_TABLE = dg.AssetKey("item_table")
COCO_EXPORTS = dg.AssetKey("coco_exports")
RETRIEVAL_CROPS = dg.AssetKey("retrieval_crops")


def source_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["source", name])


def markdown_table(df: pd.DataFrame, max_rows: int = 50) -> str:
    if df.empty:
        return "(none)"
    shown = df.head(max_rows)
    header = "| " + " | ".join(map(str, shown.columns)) + " |"
    sep = "|" + "---|" * len(shown.columns)
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    more = [f"\n… {len(df) - max_rows} more rows"] if len(df) > max_rows else []
    return "\n".join([header, sep, *rows, *more])


def coco_splits(profile: PipelineProfile) -> tuple[str, ...]:
    """The COCO files the detectors use: train, and the search split they are scored on."""
    return tuple(dict.fromkeys(("train", profile.search.split)))


def _item_table(pipeline: PipelineResource) -> tuple[pd.DataFrame, str]:
    """The item table and the data version it was built from."""
    folder = pipeline.artifact_dir("item_table")
    return read_item_table(folder / "items.parquet"), read_lineage(folder)


def _source_asset(name: str, spec_desc: str) -> dg.SourceAsset:
    @dg.observable_source_asset(
        key=source_key(name),
        group_name=DATA_GROUP,
        description=f"Data source {name!r} ({spec_desc}). Its data version is the DVC hash "
        "of its folder when tracked, else a fingerprint of the folder: a change (and `dvc "
        "add`) makes everything downstream stale.",
    )
    def _observe(pipeline: PipelineResource) -> dg.ObserveResult:
        spec = pipeline.load().data.sources[name]
        version = data_version(spec.root, spec.dvc_file)
        return dg.ObserveResult(
            data_version=dg.DataVersion(version),
            metadata={
                "root": dg.MetadataValue.path(str(spec.root)),
                "source": spec.source,
                "role": spec.role,
                "dvc_file": str(spec.dvc_file),
                "data_version": version,
            },
        )

    return _observe


def build_data_assets(profile: PipelineProfile) -> list:
    """The data stage of ``profile``: its sources, the item table, crops (and COCO exports
    when it has detectors)."""
    sources = [
        _source_asset(name, f"{spec.source} adapter, role {spec.role}")
        for name, spec in profile.data.sources.items()
    ]

    @dg.asset(
        key=ITEM_TABLE,
        deps=[s.key for s in sources],
        group_name=DATA_GROUP,
        automation_condition=REBUILD,
        code_version=config_digest(
            profile.data.model_dump(exclude={"generate_sample"}), profile.search.split
        ),
        description="One row per garment item of every source, read by its adapter, mapped "
        "to the taxonomy and placed by its role (parquet; schema in "
        "clothes_retrieval.data.schema), plus the quarantine table of rejected records.",
    )
    def item_table(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        prof = pipeline.load()
        out_dir = pipeline.artifact_dir("item_table")
        versions = source_versions(prof.data.sources)
        taxonomy = prof.data.load_taxonomy()
        result = read_sources(
            prof.data.sources, taxonomy, search_split=prof.search.split, progress=False
        )
        paths = write_item_tables(ReadResult(result.items, result.quarantine), out_dir)
        write_json(out_dir / "config.json", dump_config(prof.data))
        version = combine_versions(versions)
        write_lineage(out_dir, version, versions)
        items, quarantine = result.items, result.quarantine
        per_split = items.groupby(["split", "source"]).size().unstack(fill_value=0)
        reasons = quarantine["reason"].value_counts().to_dict() if len(quarantine) else {}
        context.log.info(
            "item table: %d items %s, %d quarantined %s",
            len(items),
            result.per_source,
            len(quarantine),
            reasons,
        )
        return dg.MaterializeResult(
            metadata={
                "items": len(items),
                "items_per_source": dg.MetadataValue.json(result.per_source),
                "images": int(items[["split", "image_path"]].drop_duplicates().shape[0]),
                "quarantined": len(quarantine),
                "quarantine_reasons": dg.MetadataValue.json(
                    {str(k): int(v) for k, v in reasons.items()}
                ),
                "items_per_split": dg.MetadataValue.md(markdown_table(per_split.reset_index())),
                "quarantine_table": dg.MetadataValue.md(markdown_table(quarantine)),
                "data_version": version,
                "source_versions": dg.MetadataValue.json(versions),
                "path": dg.MetadataValue.path(str(paths["items"])),
                "quarantine_path": dg.MetadataValue.path(str(paths["quarantine"])),
            }
        )

    @dg.asset(
        key=RETRIEVAL_CROPS,
        deps=[ITEM_TABLE],
        group_name=DATA_GROUP,
        automation_condition=REBUILD,
        code_version=config_digest(profile.crops),
        description="Item crops with identity labels (pair_id + style, or the class) for "
        "metric learning, near-duplicates removed by perceptual hash.",
    )
    def retrieval_crops(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        prof = pipeline.load()
        items, version = _item_table(pipeline)
        out_dir = pipeline.artifact_dir("retrieval_crops")
        result = export_retrieval_crops(items, out_dir, prof.crops, progress=False)
        write_json(out_dir / "config.json", dump_config(prof.crops))
        write_lineage(out_dir, version)
        crops = result.crops
        per_split = crops.groupby(["split", "dataset"]).size().unstack(fill_value=0).reset_index()
        return dg.MaterializeResult(
            metadata={
                "crops": len(crops),
                "identities": int(crops["identity"].nunique()),
                "removed_duplicates": result.removed_duplicates,
                "skipped_too_small": result.skipped_too_small,
                "skipped_unreadable": result.skipped_unreadable,
                "crops_per_split": dg.MetadataValue.md(markdown_table(per_split)),
                "data_version": version,
                "path": dg.MetadataValue.path(str(out_dir / "crops.parquet")),
            }
        )

    assets: list = [*sources, item_table, retrieval_crops]
    if not profile.detection.detectors:
        return assets

    det = profile.detection

    @dg.asset(
        key=COCO_EXPORTS,
        deps=[ITEM_TABLE],
        group_name=DATA_GROUP,
        automation_condition=REBUILD,
        code_version=config_digest(
            det.photo_sources, det.datasets, profile.data.taxonomy, coco_splits(profile)
        ),
        description="COCO-format detection files (boxes and masks) of the photos the "
        "detectors train on (train) and are scored on (the search split), for mmdetection.",
    )
    def coco_exports(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        prof = pipeline.load()
        items, version = _item_table(pipeline)
        if prof.detection.datasets is not None:
            items = items[items["dataset"].isin(list(prof.detection.datasets))]
        taxonomy = prof.data.load_taxonomy()
        out_dir = pipeline.artifact_dir("coco_exports")
        metadata: dict[str, object] = {"data_version": version}
        for split in coco_splits(prof):
            summary = export_coco(
                items,
                split,
                out_dir / f"{split}.json",
                sources=tuple(prof.detection.photo_sources),
                categories=taxonomy.category_ids if taxonomy else None,
            )
            context.log.info("COCO %s: %s", split, summary)
            metadata[f"{split}_path"] = dg.MetadataValue.path(str(out_dir / f"{split}.json"))
            metadata[f"{split}_images"] = summary.images
            metadata[f"{split}_annotations"] = summary.annotations
        write_lineage(out_dir, version)
        return dg.MaterializeResult(metadata=metadata)

    return [*assets, coco_exports]
