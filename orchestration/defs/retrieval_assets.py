"""Retrieval-stage assets, made per model of the profile's registry selection.

For each model ``<name>`` of ``retrieval.models``: ``model/<name>`` trains (or resumes) it
on the retrieval crops (a zero-shot entry is saved as its pretrained network);
``embeddings/<name>`` embeds the search split's query and gallery boxes (ground-truth
and/or fused) with it. Adding a model is a registry entry plus a name in the profile.
"""

import time

import dagster as dg
import pandas as pd
import torch

from clothes_retrieval.config import config_digest, dump_config
from clothes_retrieval.data.deepfashion2 import read_item_table
from clothes_retrieval.data.sources.combine import TRAIN_SPLIT
from clothes_retrieval.io import file_digest, prepare_run_dir
from clothes_retrieval.profile import PipelineProfile
from clothes_retrieval.retrieval import load_trained_model
from clothes_retrieval.retrieval.embed import weights_are_finite
from clothes_retrieval.retrieval.metrics import chance_recall_at_1
from clothes_retrieval.search.experiments import build_embedding_sets, save_embedding_set
from clothes_retrieval.versioning import common_data_version, read_lineage, write_lineage
from clothes_retrieval.weights import model_config
from orchestration.defs.automation import REBUILD
from orchestration.defs.data_assets import ITEM_TABLE, RETRIEVAL_CROPS
from orchestration.defs.detection_assets import FUSED_BOXES
from orchestration.defs.operations import retrain_requested, training_options
from orchestration.defs.resources import PipelineResource
from orchestration.defs.tracking import wandb_run_metadata
from orchestration.defs.training import train_retrieval

RETRIEVAL_GROUP = "retrieval"


def model_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["model", name])


def embeddings_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["embeddings", name])


def _threads(profile: PipelineProfile) -> None:
    if profile.retrieval.torch_threads:
        torch.set_num_threads(profile.retrieval.torch_threads)


def _training_inputs(config) -> dict:
    """What a trained model depends on: its config without the prose."""
    return {k: v for k, v in dump_config(config).items() if k != "description"}


def _model_assets(name: str, profile: PipelineProfile) -> list:
    config = model_config(profile, name, check=False)  # the weight file is checked in the body
    validating = profile.crops.splits is None or profile.search.split in profile.crops.splits
    checks = [dg.AssetCheckSpec("finite_weights", asset=model_key(name))]
    if validating and not config.zero_shot:
        checks.append(dg.AssetCheckSpec("recall_above_chance", asset=model_key(name)))

    @dg.asset(
        key=model_key(name),
        deps=[RETRIEVAL_CROPS],
        group_name=RETRIEVAL_GROUP,
        automation_condition=REBUILD,
        code_version=config_digest(
            _training_inputs(config),
            profile.retrieval.world_size > 1
            and (profile.retrieval.world_size, profile.retrieval.scale_lr),
        ),
        kinds={"pytorch"},
        check_specs=checks,
        description=(config.description or f"retrieval model {name}")
        + " (timm backbone + CGD head; resumable)",
        **training_options(profile, profile.retrieval.world_size),
    )
    def model(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        prof = pipeline.load()
        _threads(prof)
        cfg = model_config(prof, name)  # MissingWeightsError names a missing weight file
        crops_dir = pipeline.artifact_dir("retrieval_crops")
        version = read_lineage(crops_dir)
        crops = pd.read_parquet(crops_dir / "crops.parquet")
        out_dir = pipeline.artifact_dir("model", name)
        world = prof.retrieval.world_size
        inputs = {
            "config": _training_inputs(cfg),
            "crops": file_digest(crops_dir / "crops.parquet"),
            "world_size": world,
        }
        resumed = prepare_run_dir(out_dir, inputs, fresh=retrain_requested(context))
        context.log.info("%s %s in %s", "resuming" if resumed else "training", name, out_dir)
        val = crops[crops["split"] == prof.search.split]
        start = time.time()
        # With world > 1: torchrun through Dagster Pipes; rank 0 reports the metadata.
        result, trained = train_retrieval(
            context,
            world,
            cfg,
            crops,
            val if len(val) else None,
            out_dir,
            device=prof.retrieval.device,
            scale_lr=prof.retrieval.scale_lr,
        )
        seconds = time.time() - start
        write_lineage(out_dir, version)
        chance = chance_recall_at_1(val)
        r1 = result.val_recall_at_1
        check_results = [
            dg.AssetCheckResult(
                check_name="finite_weights", passed=weights_are_finite(result.model_path)
            )
        ]
        if len(checks) > 1:
            check_results.append(
                dg.AssetCheckResult(
                    check_name="recall_above_chance",
                    passed=r1 is not None and r1 > chance,
                    metadata={
                        "recall_at_1": r1 if r1 is not None else float("nan"),
                        "chance": chance,
                    },
                )
            )
        return dg.MaterializeResult(
            metadata={
                # val_recall_at_1, val_map_at_r, epochs, train_images_per_s, world_size,
                # model_path: what the training reported
                **trained,
                "zero_shot": cfg.zero_shot,
                "chance_recall_at_1": chance,
                "training_seconds": round(seconds, 1),
                "seconds_per_epoch": round(seconds / max(result.epochs, 1), 1),
                "resumed": resumed,
                "data_version": version,
                "config": dg.MetadataValue.json(dump_config(cfg)),
                **wandb_run_metadata(result.tracking),
            },
            check_results=check_results,
        )

    search, ev = profile.search, profile.evaluation
    deps = [model_key(name), ITEM_TABLE]
    if "fused" in search.box_sources:
        deps.append(FUSED_BOXES)

    @dg.asset(
        key=embeddings_key(name),
        deps=deps,
        group_name=RETRIEVAL_GROUP,
        automation_condition=REBUILD,
        code_version=config_digest(
            search.split,
            search.box_sources,
            ev.protocol,
            ev.match_iou,
            search.whitens() and search.whitening_train_max,
        ),
        kinds={"numpy"},
        description=f"Query (consumer) and gallery (shop) embeddings of the search split by "
        f"{name}, per box source (ground-truth and/or fused), N×D L2-normalised float32; "
        "when a post-processing setting whitens, also the training split's ground-truth boxes "
        "(train/) that the whitening is fitted on.",
    )
    def embeddings(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        prof = pipeline.load()
        _threads(prof)
        inputs = {
            "item_table": pipeline.artifact_dir("item_table"),
            f"model/{name}": pipeline.artifact_dir("model", name),
        }
        fused = None
        if "fused" in prof.search.box_sources:
            inputs["fused_boxes"] = pipeline.artifact_dir("fused_boxes")
            fused = pd.read_parquet(pipeline.artifact_dir("fused_boxes") / "fused.parquet")
            fused = fused[fused["split"] == prof.search.split]
        version = common_data_version(inputs)
        trained, _ = load_trained_model(
            pipeline.artifact_dir("model", name), device=prof.retrieval.device
        )
        all_items = read_item_table(pipeline.artifact_dir("item_table") / "items.parquet")
        items = all_items[all_items["split"] == prof.search.split]
        # Whitening is fitted on the training split's ground-truth boxes, never the gallery.
        training = all_items[all_items["split"] == TRAIN_SPLIT] if prof.search.whitens() else None
        out_root = pipeline.artifact_dir("embeddings", name)
        metadata: dict[str, object] = {"data_version": version}
        sets = build_embedding_sets(
            trained,
            name,
            prof.search.box_sources,
            items,
            fused,
            protocol=prof.evaluation.protocol,
            match_iou=prof.evaluation.match_iou,
            training_items=training,
            training_max=prof.search.whitening_train_max,
            batch_size=prof.retrieval.embed_batch_size,
            device=prof.retrieval.device,
            progress=False,
        )
        for source, es in sets.items():
            save_embedding_set(es, out_root / source)
            metadata[f"{source}_queries"] = len(es.query_rows)
            metadata[f"{source}_gallery"] = len(es.gallery_rows)
            metadata["dim"] = es.dim
        write_lineage(out_root, version)
        metadata["path"] = dg.MetadataValue.path(str(out_root))
        return dg.MaterializeResult(metadata=metadata)

    return [model, embeddings]


def build_retrieval_assets(profile: PipelineProfile) -> list:
    return [a for name in profile.retrieval.models for a in _model_assets(name, profile)]
