"""Detection-stage assets, made per detector of the profile, then their fusion.

For each detector ``<name>`` of ``detection.detectors``: ``detector/<name>`` trains (or
resumes) it on the COCO export; ``detections/<name>`` runs it on the search split's photos
and scores COCO AP there (Table 2). ``fused_boxes`` fuses every detector's boxes with WBF
(Table 5 ablation beside it). The lineage shows each detector feeding the fusion; adding a
detector is a config file plus a name in the profile, not code.
"""

import json

import dagster as dg
import pandas as pd

from clothes_retrieval.config import config_digest, dump_config
from clothes_retrieval.data.deepfashion2 import read_item_table
from clothes_retrieval.detection.inference import IMAGE_COLUMNS, check_detections, run_detector
from clothes_retrieval.detection.metrics import coco_metrics, metrics_table
from clothes_retrieval.fusion import fuse_detectors, fusion_ablation
from clothes_retrieval.io import file_digest, prepare_run_dir, write_json, write_parquet
from clothes_retrieval.profile import PipelineProfile
from clothes_retrieval.versioning import common_data_version, read_lineage, write_lineage
from clothes_retrieval.weights import detector_config
from orchestration.defs.automation import REBUILD
from orchestration.defs.data_assets import COCO_EXPORTS, ITEM_TABLE, markdown_table
from orchestration.defs.operations import retrain_requested, training_options
from orchestration.defs.resources import PipelineResource
from orchestration.defs.tracking import wandb_run_metadata
from orchestration.defs.training import train_detector

DETECTION_GROUP = "detection"
FUSED_BOXES = dg.AssetKey("fused_boxes")


def detector_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["detector", name])


def detections_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["detections", name])


def _detector_assets(name: str, profile: PipelineProfile) -> list:
    det = profile.detection
    config = detector_config(profile, name, check=False)  # the file is checked when it trains
    trained = config_digest(
        config,
        det.profile,
        det.max_epochs,
        det.max_train_images,
        det.validate_during_training,
        profile.data.taxonomy,
        det.world_size > 1 and (det.world_size, det.scale_lr),
    )

    @dg.asset(
        key=detector_key(name),
        deps=[COCO_EXPORTS],
        group_name=DETECTION_GROUP,
        automation_condition=REBUILD,
        code_version=trained,
        kinds={"pytorch"},
        description=f"The trained mmdetection detector {name} (resumable), with its resolved "
        "mmdet config.",
        **training_options(profile, det.world_size),
    )
    def detector(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        prof = pipeline.load()
        stage = prof.detection
        coco_dir = pipeline.artifact_dir("coco_exports")
        version = read_lineage(coco_dir)
        train_json = coco_dir / "train.json"
        val_json = (
            coco_dir / f"{prof.search.split}.json" if stage.validate_during_training else None
        )
        taxonomy = prof.data.load_taxonomy()
        work_dir = pipeline.artifact_dir("detector", name)
        resolved = detector_config(prof, name)  # MissingWeightsError names a missing file
        inputs = {
            "config": dump_config(resolved),
            "profile": stage.profile,
            "max_epochs": stage.max_epochs,
            "max_train_images": stage.max_train_images,
            "world_size": stage.world_size,
            "classes": list(taxonomy.classes) if taxonomy else None,
            "train": file_digest(train_json),
            "val": file_digest(val_json) if val_json else None,
        }
        resumed = prepare_run_dir(work_dir, inputs, fresh=retrain_requested(context))
        # With world_size > 1: torchrun through Dagster Pipes; rank 0 reports the metadata.
        result, trained = train_detector(
            context,
            stage.world_size,
            detector=resolved,
            profile=stage.profile,
            train_json=train_json,
            val_json=val_json,
            work_dir=work_dir,
            device=stage.device,
            max_epochs=stage.max_epochs,
            max_train_images=stage.max_train_images,
            amp=stage.amp,
            scale_lr=stage.scale_lr,
            cpu_threads=stage.cpu_threads,
            classes=taxonomy.classes if taxonomy else None,
            progress=False,
            data_version=version,
        )
        write_lineage(work_dir, version)
        return dg.MaterializeResult(
            metadata={
                # checkpoint, mmdet_config, epochs, training_seconds, device, world_size,
                # val_metrics: what the training reported
                **trained,
                "resumed": resumed,
                "data_version": version,
                **wandb_run_metadata(result.tracking),
            }
        )

    @dg.asset(
        key=detections_key(name),
        deps=[detector_key(name), ITEM_TABLE, COCO_EXPORTS],
        group_name=DETECTION_GROUP,
        automation_condition=REBUILD,
        code_version=config_digest(det.score_thr, det.max_per_image, det.photo_sources),
        check_specs=[
            dg.AssetCheckSpec("boxes_inside_images", asset=detections_key(name)),
            dg.AssetCheckSpec("scores_in_unit_interval", asset=detections_key(name)),
            dg.AssetCheckSpec("found_boxes", asset=detections_key(name)),
        ],
        description=f"{name}'s boxes on the search split's photos, and its COCO bbox AP, "
        "AP50, AP75, APs, APm, APl there (Table 2).",
    )
    def detections(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        prof = pipeline.load()
        stage = prof.detection
        work_dir = pipeline.artifact_dir("detector", name)
        version = common_data_version(
            {"item_table": pipeline.artifact_dir("item_table"), f"detector/{name}": work_dir}
        )
        items = read_item_table(pipeline.artifact_dir("item_table") / "items.parquet")
        images = (
            items[
                (items["split"] == prof.search.split)
                & items["source"].isin(list(stage.photo_sources))
            ]
            .drop_duplicates("image_path")[list(IMAGE_COLUMNS)]
            .reset_index(drop=True)
        )
        result = run_detector(
            work_dir / "latest.pth",
            work_dir / "config.py",
            images,
            score_thr=stage.score_thr,
            max_per_image=stage.max_per_image,
            batch_size=stage.batch_size,
            device=stage.device,
            detector=name,
            cpu_threads=stage.cpu_threads,
            progress=False,
        )
        det_table = result.detections
        metrics = coco_metrics(
            det_table, pipeline.artifact_dir("coco_exports") / f"{prof.search.split}.json"
        )
        out_dir = pipeline.artifact_dir("detections", name)
        write_parquet(out_dir / "detections.parquet", det_table)
        write_parquet(out_dir / "failures.parquet", result.failures)
        write_json(out_dir / "metrics.json", metrics)
        write_lineage(out_dir, version)
        checks = check_detections(det_table)
        return dg.MaterializeResult(
            metadata={
                "boxes": len(det_table),
                "images": len(images),
                "failed_images": len(result.failures),
                "boxes_per_image": round(len(det_table) / max(len(images), 1), 2),
                **{k: dg.MetadataValue.float(float(v)) for k, v in metrics.items()},
                "data_version": version,
                "path": dg.MetadataValue.path(str(out_dir / "detections.parquet")),
            },
            check_results=[
                dg.AssetCheckResult(check_name=check, passed=passed)
                for check, passed in checks.items()
            ],
        )

    return [detector, detections]


def build_detection_assets(profile: PipelineProfile) -> list:
    names = list(profile.detection.detectors)
    assets = [a for name in names for a in _detector_assets(name, profile)]

    @dg.asset(
        key=FUSED_BOXES,
        deps=[detections_key(n) for n in names] + [COCO_EXPORTS],
        group_name=DETECTION_GROUP,
        automation_condition=REBUILD,
        code_version=config_digest(profile.detection.fusion_config()),
        description="Weighted boxes fusion of every detector's boxes (best first), plus the "
        "Table 2 (per detector) and Table 5 (WBF over the first n) tables.",
    )
    def fused_boxes(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        prof = pipeline.load()
        dirs = {f"detections/{n}": pipeline.artifact_dir("detections", n) for n in names}
        version = common_data_version(dirs)
        det = pd.concat(
            [pd.read_parquet(d / "detections.parquet") for d in dirs.values()], ignore_index=True
        )
        result = fuse_detectors(det, prof.detection.fusion_config(), progress=False)
        out_dir = pipeline.artifact_dir("fused_boxes")
        write_parquet(out_dir / "fused.parquet", result.fused)
        coco = pipeline.artifact_dir("coco_exports") / f"{prof.search.split}.json"
        ablation = fusion_ablation(det, result.config, coco)
        write_parquet(out_dir / "fusion_ablation.parquet", ablation)
        per_detector = {
            n: json.loads((d / "metrics.json").read_text())
            for n, d in zip(names, dirs.values(), strict=True)
        }
        table = metrics_table(per_detector)
        write_parquet(out_dir / "detection_table.parquet", table)
        write_json(out_dir / "config.json", dump_config(result.config))
        write_lineage(out_dir, version)
        return dg.MaterializeResult(
            metadata={
                "fused_boxes": len(result.fused),
                "input_boxes": len(det),
                "detectors_without_boxes": ", ".join(result.silent) or "none",
                "detection_table": dg.MetadataValue.md(markdown_table(table)),
                "fusion_ablation": dg.MetadataValue.md(markdown_table(ablation)),
                "data_version": version,
                "path": dg.MetadataValue.path(str(out_dir / "fused.parquet")),
            }
        )

    return [*assets, fused_boxes]
