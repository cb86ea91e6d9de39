"""Detection-stage assets, one partition per detector of the profile, then their fusion.

``detector_checkpoint`` trains (or resumes) a detector on the COCO export;
``detections`` runs it on every image of the configured splits; ``detection_metrics``
scores it with COCO AP on the validation split (Table 2); ``fused_boxes`` fuses all
detectors' boxes with WBF and writes the Table 5 ablation. Adding a detector is a config
file plus a name in the profile, not code.
"""

import json

import dagster as dg
import pandas as pd

from clothes_retrieval.config import dump_config
from clothes_retrieval.data.deepfashion2 import read_item_table
from clothes_retrieval.detection.config import detector_config_path, load_detector_config
from clothes_retrieval.detection.inference import run_detector
from clothes_retrieval.detection.metrics import coco_metrics, metrics_table
from clothes_retrieval.detection.train import train_detector
from clothes_retrieval.fusion import fuse_detections, fusion_ablation
from clothes_retrieval.io import file_digest, prepare_run_dir, write_json, write_parquet
from clothes_retrieval.profile import PipelineProfile
from orchestration.defs.data_assets import EAGER, coco_exports, item_table, markdown_table
from orchestration.defs.resources import PipelineResource

DETECTION_GROUP = "detection"
EVAL_SPLIT = "validation"


def build_detection_assets(profile: PipelineProfile) -> list:
    partitions = dg.StaticPartitionsDefinition(list(profile.detection.detectors))

    @dg.asset(
        partitions_def=partitions,
        deps=[coco_exports],
        group_name=DETECTION_GROUP,
        automation_condition=EAGER,
        kinds={"pytorch"},
        description="A trained mmdetection detector (resumable), with its resolved config.",
    )
    def detector_checkpoint(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        name = context.partition_key
        prof = pipeline.load()
        stage = prof.detection
        config = load_detector_config(detector_config_path(name, stage.configs))
        coco_dir = pipeline.artifact_dir("coco_exports")
        train_json, val_json = coco_dir / "train.json", coco_dir / f"{EVAL_SPLIT}.json"
        work_dir = pipeline.artifact_dir("detector_checkpoint") / name
        inputs = {
            "config": dump_config(config),
            "profile": stage.profile,
            "max_epochs": stage.max_epochs,
            "train": file_digest(train_json),
            "val": file_digest(val_json),
        }
        resumed = prepare_run_dir(work_dir, inputs)
        result = train_detector(
            config,
            stage.profile,
            train_json,
            val_json,
            work_dir,
            device=stage.device,
            max_epochs=stage.max_epochs,
        )
        return dg.MaterializeResult(
            metadata={
                "checkpoint": dg.MetadataValue.path(str(result.checkpoint)),
                "mmdet_config": dg.MetadataValue.path(str(result.config_path)),
                "epochs": result.epochs,
                "resumed": resumed,
                "training_seconds": round(result.seconds, 1),
                "device": result.device,
                "val_metrics": dg.MetadataValue.json(result.metrics),
            }
        )

    @dg.asset(
        partitions_def=partitions,
        deps=[detector_checkpoint, item_table],
        group_name=DETECTION_GROUP,
        automation_condition=EAGER,
        check_specs=[
            dg.AssetCheckSpec("boxes_inside_images", asset="detections"),
            dg.AssetCheckSpec("scores_in_unit_interval", asset="detections"),
            dg.AssetCheckSpec("boxes_on_validation", asset="detections"),
        ],
        description="One detector's boxes on every consumer and shop image of the splits.",
    )
    def detections(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        name = context.partition_key
        prof = pipeline.load()
        stage = prof.detection
        items = read_item_table(pipeline.artifact_dir("item_table") / "items.parquet")
        images = (
            items[items["split"].isin(stage.splits)]
            .drop_duplicates(["split", "image_id"])[
                ["split", "image_id", "image_path", "image_width", "image_height", "source"]
            ]
            .reset_index(drop=True)
        )
        work_dir = pipeline.artifact_dir("detector_checkpoint") / name
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
        )
        out_dir = pipeline.artifact_dir("detections") / name
        det = result.detections
        write_parquet(out_dir / "detections.parquet", det)
        write_parquet(out_dir / "failures.parquet", result.failures)
        inside = bool(
            (
                (det["x1"] >= 0)
                & (det["y1"] >= 0)
                & (det["x2"] <= det["image_width"])
                & (det["y2"] <= det["image_height"])
                & (det["x2"] > det["x1"])
                & (det["y2"] > det["y1"])
            ).all()
        )
        unit = bool(det["score"].between(0, 1).all())
        n_val = int((det["split"] == EVAL_SPLIT).sum())
        return dg.MaterializeResult(
            metadata={
                "boxes": len(det),
                "images": len(images),
                "failed_images": len(result.failures),
                "boxes_per_image": round(len(det) / max(len(images), 1), 2),
                "path": dg.MetadataValue.path(str(out_dir / "detections.parquet")),
            },
            check_results=[
                dg.AssetCheckResult(check_name="boxes_inside_images", passed=inside),
                dg.AssetCheckResult(check_name="scores_in_unit_interval", passed=unit),
                dg.AssetCheckResult(
                    check_name="boxes_on_validation",
                    passed=n_val > 0,
                    metadata={"validation_boxes": n_val},
                ),
            ],
        )

    @dg.asset(
        partitions_def=partitions,
        deps=[detections, coco_exports],
        group_name=DETECTION_GROUP,
        automation_condition=EAGER,
        description="COCO bbox AP, AP50, AP75, APs, APm, APl of one detector on validation "
        "(Table 2).",
    )
    def detection_metrics(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        name = context.partition_key
        det = pd.read_parquet(pipeline.artifact_dir("detections") / name / "detections.parquet")
        det = det[det["split"] == EVAL_SPLIT]
        metrics = coco_metrics(det, pipeline.artifact_dir("coco_exports") / f"{EVAL_SPLIT}.json")
        write_json(pipeline.artifact_dir("detection_metrics") / f"{name}.json", metrics)
        return dg.MaterializeResult(
            metadata={k: dg.MetadataValue.float(float(v)) for k, v in metrics.items()}
        )

    @dg.asset(
        deps=[detections, detection_metrics],
        group_name=DETECTION_GROUP,
        automation_condition=EAGER,
        description="Weighted boxes fusion of every detector's boxes (best first), plus the "
        "Table 2 (per detector) and Table 5 (WBF over the first n) tables.",
    )
    def fused_boxes(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        prof = pipeline.load()
        names = list(prof.detection.detectors)
        fusion = prof.detection.fusion_config()
        det = pd.concat(
            [
                pd.read_parquet(pipeline.artifact_dir("detections") / n / "detections.parquet")
                for n in names
            ],
            ignore_index=True,
        )
        # A detector that found nothing (e.g. undertrained) must not sink the fusion: fuse the
        # others and say so; only no boxes at all is an error.
        present = [n for n in names if (det["detector"] == n).any()]
        silent = [n for n in names if n not in present]
        if silent:
            context.log.warning("detectors without boxes, left out of the fusion: %s", silent)
        if not present:
            raise ValueError(f"no detector produced a box ({names}); check the detection_metrics")
        fusion = fusion.for_detectors(present)
        fused = fuse_detections(det, fusion)
        out_dir = pipeline.artifact_dir("fused_boxes")
        write_parquet(out_dir / "fused.parquet", fused)
        val = det[det["split"] == EVAL_SPLIT]
        ablation = fusion_ablation(
            val, fusion, pipeline.artifact_dir("coco_exports") / f"{EVAL_SPLIT}.json"
        )
        write_parquet(out_dir / "fusion_ablation.parquet", ablation)
        per_detector = {
            n: json.loads((pipeline.artifact_dir("detection_metrics") / f"{n}.json").read_text())
            for n in names
        }
        table = metrics_table(per_detector)
        write_parquet(out_dir / "detection_table.parquet", table)
        write_json(out_dir / "config.json", dump_config(fusion))
        return dg.MaterializeResult(
            metadata={
                "fused_boxes": len(fused),
                "input_boxes": len(det),
                "detectors_without_boxes": ", ".join(silent) or "none",
                "detection_table": dg.MetadataValue.md(markdown_table(table)),
                "fusion_ablation": dg.MetadataValue.md(markdown_table(ablation)),
                "path": dg.MetadataValue.path(str(out_dir / "fused.parquet")),
            }
        )

    return [detector_checkpoint, detections, detection_metrics, fused_boxes]
