"""Search-stage assets: the published index and the evaluation report.

``search_index`` concatenates the published configuration's embeddings and indexes the
gallery with faiss (manifest: models, dims, boxes, data version). ``evaluation_report``
runs every experiment of the profile and writes the report; its blocking check
``acc10_floor`` stops ``published_index`` when Acc@10 is below the configured floor.
"""

import json
import shutil

import dagster as dg
import pandas as pd

from clothes_retrieval.data.deepfashion2 import read_item_table
from clothes_retrieval.index import IndexManifest, build_index, concatenate_embeddings
from clothes_retrieval.io import atomic_dir
from clothes_retrieval.profile import PipelineProfile
from clothes_retrieval.report.evaluation import default_publish, ensemble_members, run_evaluation
from clothes_retrieval.search.experiments import load_embedding_set
from clothes_retrieval.versioning import data_version
from orchestration.defs.data_assets import EAGER, item_table
from orchestration.defs.resources import PipelineResource

SEARCH_GROUP = "search"


def _sets(pipeline: PipelineResource, profile: PipelineProfile) -> dict:
    root = pipeline.artifact_dir("embeddings")
    return {
        source: {m: load_embedding_set(root / m / source) for m in profile.retrieval.models}
        for source in profile.search.box_sources
    }


def build_search_assets(
    profile: PipelineProfile, embeddings: dg.AssetsDefinition, extra_report_deps: list
) -> list:
    @dg.asset(
        deps=[embeddings],
        group_name=SEARCH_GROUP,
        automation_condition=EAGER,
        kinds={"faiss"},
        description="faiss index over the published configuration's gallery embeddings, with a "
        "manifest (models, dims, box source, data version) that refuses mismatched queries.",
    )
    def search_index(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        prof = pipeline.load()
        models = list(prof.retrieval.models)
        publish = default_publish(prof.search, models)
        members, weights = ensemble_members(publish.name, prof.search, models)
        sets = {
            m: load_embedding_set(pipeline.artifact_dir("embeddings") / m / publish.box_source)
            for m in members
        }
        gallery = concatenate_embeddings({m: s.gallery for m, s in sets.items()}, weights=weights)
        manifest = IndexManifest(
            models=members,
            dims=tuple(sets[m].dim for m in members),
            box_source=publish.box_source,
            data_version=data_version(prof.data.root, prof.data.dvc_file),
            weights=tuple(float((weights or {}).get(m, 1.0)) for m in members),
            postprocess=prof.search.postprocess[publish.postprocess].steps(),
            extra={"published_name": publish.name},
        )
        out_dir = pipeline.artifact_dir("search_index")
        index = build_index(gallery, manifest, prof.search.index)
        index.save(out_dir)
        first = sets[members[0]]
        first.gallery_rows.to_parquet(out_dir / "gallery_rows.parquet")
        return dg.MaterializeResult(
            metadata={
                "vectors": index.ntotal,
                "dim": manifest.dim,
                "models": ", ".join(members),
                "box_source": publish.box_source,
                "factory": prof.search.index.factory,
                "data_version": manifest.data_version,
                "path": dg.MetadataValue.path(str(out_dir)),
            }
        )

    @dg.asset(
        deps=[search_index, embeddings, item_table, *extra_report_deps],
        group_name=SEARCH_GROUP,
        automation_condition=EAGER,
        kinds={"html"},
        check_specs=[dg.AssetCheckSpec("acc10_floor", asset="evaluation_report", blocking=True)],
        description="The evaluation report (Markdown + self-contained HTML): the paper's tables "
        "with our numbers, Acc@k curves, example queries; plus the official submission JSON.",
    )
    def evaluation_report(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        prof = pipeline.load()
        items = read_item_table(pipeline.artifact_dir("item_table") / "items.parquet")
        gt = items[items["split"] == prof.search.split]
        det_path = pipeline.artifact_dir("fused_boxes") / "detection_table.parquet"
        fus_path = pipeline.artifact_dir("fused_boxes") / "fusion_ablation.parquet"
        summary = run_evaluation(
            _sets(pipeline, prof),
            gt,
            prof.search,
            list(prof.retrieval.models),
            pipeline.artifact_dir("evaluation_report"),
            detection_table=pd.read_parquet(det_path) if det_path.is_file() else None,
            fusion_table=pd.read_parquet(fus_path) if fus_path.is_file() else None,
            data_version=data_version(prof.data.root, prof.data.dvc_file),
            configs={"profile": prof.dump()},
        )
        acc10 = float(summary.published["Acc@10"])
        context.log.info("published %s: Acc@10 %.4f", summary.published["name"], acc10)
        metadata = {k: dg.MetadataValue.float(v) for k, v in summary.headline.items()}
        metadata["report"] = dg.MetadataValue.path(str(summary.paths["html"]))
        metadata["markdown"] = dg.MetadataValue.path(str(summary.paths["markdown"]))
        metadata["submission"] = dg.MetadataValue.path(str(summary.paths["submission"]))
        metadata["published"] = dg.MetadataValue.json(summary.published)
        return dg.MaterializeResult(
            metadata=metadata,
            check_results=[
                dg.AssetCheckResult(
                    check_name="acc10_floor",
                    passed=acc10 >= prof.search.acc10_floor,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={"acc10": acc10, "floor": prof.search.acc10_floor},
                )
            ],
        )

    @dg.asset(
        deps=[evaluation_report, search_index],
        group_name=SEARCH_GROUP,
        automation_condition=EAGER,
        description="The index that passed the accuracy floor, copied for serving.",
    )
    def published_index(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        src = pipeline.artifact_dir("search_index")
        report = json.loads(
            (pipeline.artifact_dir("evaluation_report") / "report.json").read_text()
        )
        out = pipeline.artifact_dir("published_index")
        with atomic_dir(out) as tmp:
            for f in src.iterdir():
                shutil.copy2(f, tmp / f.name)
            (tmp / "evaluation.json").write_text(json.dumps(report["headline"], indent=2))
        return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(out))})

    return [search_index, evaluation_report, published_index]
