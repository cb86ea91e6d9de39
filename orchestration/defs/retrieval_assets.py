"""Retrieval-stage assets, one partition per model of the profile's registry selection.

``retrieval_model`` trains (or resumes) a model on the retrieval crops; ``embeddings``
embeds the search split's query and gallery boxes (ground-truth and/or fused) with it.
Adding a model is a registry entry plus a name in the profile, not code.
"""

import time

import dagster as dg
import pandas as pd
import torch

from clothes_retrieval.config import dump_config
from clothes_retrieval.data.deepfashion2 import read_item_table
from clothes_retrieval.io import file_digest, prepare_run_dir
from clothes_retrieval.profile import PipelineProfile
from clothes_retrieval.retrieval import load_trained_model, train_retrieval_model
from clothes_retrieval.retrieval.config import get_model_config
from clothes_retrieval.search.experiments import build_embedding_set, save_embedding_set
from orchestration.defs.data_assets import EAGER, item_table, retrieval_crops
from orchestration.defs.resources import PipelineResource

RETRIEVAL_GROUP = "retrieval"


def model_partitions(profile: PipelineProfile) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(list(profile.retrieval.models))


def _threads(profile: PipelineProfile) -> None:
    if profile.retrieval.torch_threads:
        torch.set_num_threads(profile.retrieval.torch_threads)


def build_retrieval_assets(profile: PipelineProfile, fused_boxes_key: dg.AssetKey | None) -> list:
    partitions = model_partitions(profile)

    @dg.asset(
        partitions_def=partitions,
        deps=[retrieval_crops],
        group_name=RETRIEVAL_GROUP,
        automation_condition=EAGER,
        kinds={"pytorch"},
        check_specs=[
            dg.AssetCheckSpec("finite_weights", asset="retrieval_model"),
            dg.AssetCheckSpec("recall_above_chance", asset="retrieval_model"),
        ],
        description="A trained metric-learning model (timm backbone + CGD head); resumable.",
    )
    def retrieval_model(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        name = context.partition_key
        prof = pipeline.load()
        _threads(prof)
        config = get_model_config(name, prof.retrieval.registry, prof.retrieval.overrides)
        crops_path = pipeline.artifact_dir("retrieval_crops") / "crops.parquet"
        crops = pd.read_parquet(crops_path)
        out_dir = pipeline.artifact_dir("retrieval_model") / name
        inputs = {"config": dump_config(config), "crops": file_digest(crops_path)}
        resumed = prepare_run_dir(out_dir, inputs)
        context.log.info("%s %s in %s", "resuming" if resumed else "training", name, out_dir)
        start = time.time()
        result = train_retrieval_model(
            config,
            crops,
            crops[crops["split"] == prof.search.split],
            out_dir,
            device=prof.retrieval.device,
        )
        seconds = time.time() - start
        weights = torch.load(result.model_path, map_location="cpu", weights_only=True)["state_dict"]
        finite = all(
            torch.isfinite(t).all().item() for t in weights.values() if t.is_floating_point()
        )
        val = crops[crops["split"] == prof.search.split]
        n_gallery_ids = max(int(val.loc[val["source"] == "shop", "identity"].nunique()), 1)
        chance = 1.0 / n_gallery_ids
        r1 = result.val_recall_at_1
        return dg.MaterializeResult(
            metadata={
                "val_recall_at_1": r1 if r1 is not None else float("nan"),
                "val_map_at_r": result.val_map_at_r
                if result.val_map_at_r is not None
                else float("nan"),
                "chance_recall_at_1": chance,
                "epochs": result.epochs,
                "training_seconds": round(seconds, 1),
                "seconds_per_epoch": round(seconds / max(result.epochs, 1), 1),
                "train_images_per_s": round(result.train_images_per_s, 1),
                "resumed": resumed,
                "model_path": dg.MetadataValue.path(result.model_path),
                "config": dg.MetadataValue.json(dump_config(config)),
            },
            check_results=[
                dg.AssetCheckResult(check_name="finite_weights", passed=finite),
                dg.AssetCheckResult(
                    check_name="recall_above_chance",
                    passed=r1 is not None and r1 > chance,
                    metadata={
                        "recall_at_1": r1 if r1 is not None else float("nan"),
                        "chance": chance,
                    },
                ),
            ],
        )

    deps = [retrieval_model, item_table]
    if fused_boxes_key is not None:
        deps.append(fused_boxes_key)

    @dg.asset(
        partitions_def=partitions,
        deps=deps,
        group_name=RETRIEVAL_GROUP,
        automation_condition=EAGER,
        kinds={"numpy"},
        description="Query (consumer) and gallery (shop) embeddings of the search split, per "
        "box source (ground-truth and/or fused boxes), N×D L2-normalised float32.",
    )
    def embeddings(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        name = context.partition_key
        prof = pipeline.load()
        _threads(prof)
        model, _ = load_trained_model(
            pipeline.artifact_dir("retrieval_model") / name, device=prof.retrieval.device
        )
        items = read_item_table(pipeline.artifact_dir("item_table") / "items.parquet")
        items = items[items["split"] == prof.search.split]
        fused = None
        if "fused" in prof.search.box_sources:
            fused = pd.read_parquet(pipeline.artifact_dir("fused_boxes") / "fused.parquet")
            fused = fused[fused["split"] == prof.search.split]
        metadata: dict[str, object] = {}
        for source in prof.search.box_sources:
            es = build_embedding_set(
                model,
                name,
                source,
                items,
                fused,
                batch_size=prof.retrieval.embed_batch_size,
                device=prof.retrieval.device,
            )
            save_embedding_set(es, pipeline.artifact_dir("embeddings") / name / source)
            metadata[f"{source}_queries"] = len(es.query_rows)
            metadata[f"{source}_gallery"] = len(es.gallery_rows)
            metadata["dim"] = es.dim
        metadata["path"] = dg.MetadataValue.path(str(pipeline.artifact_dir("embeddings") / name))
        return dg.MaterializeResult(metadata=metadata)

    return [retrieval_model, embeddings]
