"""Search-stage assets: the index, the evaluation report and the published index.

``search_index`` concatenates the published configuration's embeddings and indexes the
gallery with faiss (manifest: models, dims, boxes, data version). ``evaluation_report``
runs every experiment of the profile, scored by its protocol, and writes the report; its
blocking check ``acc10_floor`` stops ``published_index`` when Acc@10 is below the floor,
and ``targets`` warns when the headline misses the profile's targets.
"""

import dagster as dg
import pandas as pd

from clothes_retrieval.config import config_digest
from clothes_retrieval.data.deepfashion2 import read_item_table
from clothes_retrieval.evaluation.test_split import submit_test_split
from clothes_retrieval.index import (
    IndexManifest,
    build_index,
    concatenate_embeddings,
)
from clothes_retrieval.profile import PipelineProfile
from clothes_retrieval.report.evaluation import (
    default_publish,
    ensemble_members,
    run_evaluation,
)
from clothes_retrieval.search.experiments import TRAINING, load_embedding_set
from clothes_retrieval.service import BundleError, publish_bundle, validate_bundle
from clothes_retrieval.versioning import common_data_version, write_lineage
from orchestration.defs.automation import REBUILD
from orchestration.defs.data_assets import ITEM_TABLE
from orchestration.defs.detection_assets import FUSED_BOXES
from orchestration.defs.resources import PipelineResource
from orchestration.defs.retrieval_assets import embeddings_key
from orchestration.defs.tracking import wandb_run_metadata

SEARCH_GROUP = "search"
SEARCH_INDEX = dg.AssetKey("search_index")
EVALUATION_REPORT = dg.AssetKey("evaluation_report")
PUBLISHED_INDEX = dg.AssetKey("published_index")
TEST_SUBMISSION = dg.AssetKey("test_submission")


def build_search_assets(profile: PipelineProfile) -> list:
    models = list(profile.retrieval.models)
    publish = default_publish(profile.search, models)
    members, _ = ensemble_members(publish.name, profile.search, models)
    fused = "fused" in profile.search.box_sources

    @dg.asset(
        key=SEARCH_INDEX,
        deps=[embeddings_key(m) for m in members],
        group_name=SEARCH_GROUP,
        automation_condition=REBUILD,
        code_version=config_digest(
            profile.search.index,
            publish,
            profile.search.ensembles.get(publish.name),
            profile.search.postprocess[publish.postprocess],
        ),
        kinds={"faiss"},
        description="faiss index over the published configuration's gallery embeddings, with a "
        "manifest (models, dims, box source, data version) that refuses mismatched queries.",
    )
    def search_index(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        prof = pipeline.load()
        version = common_data_version(
            {f"embeddings/{m}": pipeline.artifact_dir("embeddings", m) for m in members}
        )
        target = default_publish(prof.search, models)
        _, weights = ensemble_members(target.name, prof.search, models)
        sets = {
            m: load_embedding_set(pipeline.artifact_dir("embeddings", m, target.box_source))
            for m in members
        }
        gallery = concatenate_embeddings({m: s.gallery for m, s in sets.items()}, weights=weights)
        manifest = IndexManifest(
            models=tuple(members),
            dims=tuple(sets[m].dim for m in members),
            box_source=target.box_source,
            data_version=version,
            weights=tuple(float((weights or {}).get(m, 1.0)) for m in members),
            postprocess=prof.search.postprocess[target.postprocess].steps(),
            extra={"published_name": target.name},
        )
        out_dir = pipeline.artifact_dir("search_index")
        index = build_index(gallery, manifest, prof.search.index)
        index.save(out_dir)
        sets[members[0]].gallery_rows.to_parquet(out_dir / "gallery_rows.parquet")
        write_lineage(out_dir, version)
        return dg.MaterializeResult(
            metadata={
                "vectors": index.ntotal,
                "dim": manifest.dim,
                "models": ", ".join(members),
                "box_source": target.box_source,
                "factory": prof.search.index.factory,
                "data_version": version,
                "path": dg.MetadataValue.path(str(out_dir)),
            }
        )

    report_deps = [embeddings_key(m) for m in models] + [ITEM_TABLE]
    if fused:
        report_deps.append(FUSED_BOXES)
    checks = [dg.AssetCheckSpec("acc10_floor", asset=EVALUATION_REPORT, blocking=True)]
    if profile.evaluation.targets:
        checks.append(dg.AssetCheckSpec("targets", asset=EVALUATION_REPORT))

    @dg.asset(
        key=EVALUATION_REPORT,
        deps=report_deps,
        group_name=SEARCH_GROUP,
        automation_condition=REBUILD,
        # The floor and the targets judge the report; they do not change it.
        code_version=config_digest(
            profile.search.model_dump(exclude={"acc10_floor"}),
            profile.evaluation.model_dump(exclude={"targets"}),
        ),
        kinds={"html"},
        check_specs=checks,
        description="The evaluation report (Markdown + self-contained HTML): the paper's tables "
        "with our numbers, Acc@k curves, example queries; for the deepfashion2 protocol also "
        "the official submission JSON (beside the report folder).",
    )
    def evaluation_report(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        prof = pipeline.load()
        inputs = {f"embeddings/{m}": pipeline.artifact_dir("embeddings", m) for m in models}
        inputs["item_table"] = pipeline.artifact_dir("item_table")
        if fused:
            inputs["fused_boxes"] = pipeline.artifact_dir("fused_boxes")
        version = common_data_version(inputs)
        items = read_item_table(pipeline.artifact_dir("item_table") / "items.parquet")
        gt = items[items["split"] == prof.search.split]
        sets = {
            source: {
                m: load_embedding_set(pipeline.artifact_dir("embeddings", m, source))
                for m in models
            }
            for source in prof.search.box_sources
        }
        training = (
            {
                m: load_embedding_set(pipeline.artifact_dir("embeddings", m, TRAINING))
                for m in models
            }
            if prof.search.whitens()
            else None
        )
        fused_dir = pipeline.artifact_dir("fused_boxes")
        det_path, fus_path = (
            fused_dir / "detection_table.parquet",
            fused_dir / "fusion_ablation.parquet",
        )
        out_dir = pipeline.artifact_dir("evaluation_report")
        summary = run_evaluation(
            sets,
            gt,
            prof.search,
            models,
            out_dir,
            evaluation=prof.evaluation,
            title=prof.title,
            detection_table=pd.read_parquet(det_path) if fused and det_path.is_file() else None,
            fusion_table=pd.read_parquet(fus_path) if fused and fus_path.is_file() else None,
            data_version=version,
            configs={"profile": prof.dump()},
            tuning_of=str(prof.tuning_of) if prof.tuning_of else None,
            training=training,
        )
        write_lineage(out_dir, version)
        acc10 = float(summary.published["Acc@10"])
        context.log.info(summary.line)
        metadata = {k: dg.MetadataValue.float(v) for k, v in summary.headline.items()}
        metadata["line"] = summary.line
        metadata["data_version"] = version
        metadata["report"] = dg.MetadataValue.path(str(summary.paths["html"]))
        metadata["markdown"] = dg.MetadataValue.path(str(summary.paths["markdown"]))
        if "submission" in summary.paths:
            metadata["submission"] = dg.MetadataValue.path(str(summary.paths["submission"]))
        metadata["published"] = dg.MetadataValue.json(summary.published)
        metadata.update(wandb_run_metadata(summary.tracking))
        results = [
            dg.AssetCheckResult(
                check_name="acc10_floor",
                passed=acc10 >= prof.search.acc10_floor,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"acc10": acc10, "floor": prof.search.acc10_floor},
            )
        ]
        if prof.evaluation.targets:
            missed = summary.missed_targets(prof.evaluation.targets)
            results.append(
                dg.AssetCheckResult(
                    check_name="targets",
                    passed=not missed,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "missed": dg.MetadataValue.json(missed),
                        "targets": dg.MetadataValue.json(prof.evaluation.targets),
                    },
                    description="the headline configuration reaches the profile's targets",
                )
            )
        return dg.MaterializeResult(metadata=metadata, check_results=results)

    # The bundle also copies the models' and detectors' files; they reach it through
    # search_index (embeddings -> model) and evaluation_report (fused_boxes -> detections ->
    # detector). Direct edges would make it stale, and rebuilt, as soon as a model is, before
    # the index of that model exists (the bundle check would then refuse it).
    @dg.asset(
        key=PUBLISHED_INDEX,
        deps=[EVALUATION_REPORT, SEARCH_INDEX],
        group_name=SEARCH_GROUP,
        automation_condition=REBUILD,
        check_specs=[dg.AssetCheckSpec("bundle_loads", asset=PUBLISHED_INDEX, blocking=True)],
        description="The published bundle a server answers street photos from: the index that "
        "passed the accuracy floor, its gallery photos and table, the ensemble's models, the "
        "detectors and fusion settings, the evaluation numbers (clothes_retrieval.service). "
        "It is loaded and queried before it replaces the previous one.",
    )
    def published_index(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        prof = pipeline.load()
        src = pipeline.artifact_dir("search_index")
        report = pipeline.artifact_dir("evaluation_report")
        version = common_data_version({"search_index": src, "evaluation_report": report})
        out = pipeline.artifact_dir("published_index")
        stage = prof.detection
        try:
            manifest = publish_bundle(
                out,
                index_dir=src,
                report_dir=report,
                models={m: pipeline.artifact_dir("model", m) for m in members},
                data_version=version,
                profile=prof.name,
                detectors={d: pipeline.artifact_dir("detector", d) for d in stage.detectors},
                detection={"score_thr": stage.score_thr, "max_per_image": stage.max_per_image},
                fusion=stage.fusion_config().model_dump(mode="json") if stage.detectors else None,
                items=read_item_table(pipeline.artifact_dir("item_table") / "items.parquet"),
                validate=validate_bundle,
            )
            passed, facts = True, manifest["validated"]
        except BundleError as e:  # not published: the previous bundle keeps serving
            raise dg.Failure(
                description=f"the bundle was not published: {e}",
                metadata={"kept": dg.MetadataValue.path(str(out))},
            ) from e
        command = f"clothes-retrieval serve --bundle {out}"
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(out)),
                "data_version": version,
                "bundle_id": manifest["bundle_id"],
                "gallery_items": manifest["gallery"]["items"],
                "models": ", ".join(m["name"] for m in manifest["models"]),
                "detectors": ", ".join(d["name"] for d in manifest["detectors"]) or "none",
                "serve": dg.MetadataValue.md(
                    f"Start a server on this bundle:\n\n```\n{command}\n```\n\n"
                    f"(or `clothes-retrieval serve --profile <this profile>`); search from "
                    f"the command line with `clothes-retrieval search PHOTO --bundle {out}`."
                ),
                "search_ms": facts["search_ms"],
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="bundle_loads",
                    passed=passed,
                    metadata={k: v for k, v in facts.items() if isinstance(v, int | float | str)},
                    description="the staged bundle loaded and found its own gallery item first",
                )
            ],
        )

    if not profile.evaluation.test_split:
        return [search_index, evaluation_report, published_index]

    @dg.asset(
        key=TEST_SUBMISSION,
        deps=[PUBLISHED_INDEX],
        group_name=SEARCH_GROUP,
        automation_condition=REBUILD,
        code_version=config_digest(profile.evaluation.test_split),
        kinds={"json"},
        description="The official submission JSON for DeepFashion2's test split (images and "
        "info files, no annotations): the published bundle's detectors, fusion and models "
        "answer its consumer photos among its shop photos; only the challenge server scores "
        "it.",
    )
    def test_submission(context: dg.AssetExecutionContext, pipeline: PipelineResource):
        prof = pipeline.load()
        bundle = pipeline.artifact_dir("published_index")
        version = common_data_version({"published_index": bundle})
        root = next(s.root for s in prof.data.sources.values() if s.source == "deepfashion2")
        out_dir = pipeline.artifact_dir("test_submission")
        summary = submit_test_split(
            bundle,
            root,
            out_dir / "submission.json",
            split=prof.evaluation.test_split,
            batch_size=prof.detection.batch_size,
            device=prof.serve.device,
            progress=False,
        )
        write_lineage(out_dir, version)
        return dg.MaterializeResult(
            metadata={
                **{k: v for k, v in summary.items() if isinstance(v, int | float | str)},
                "data_version": version,
                "path": dg.MetadataValue.path(str(out_dir / "submission.json")),
            }
        )

    return [search_index, evaluation_report, published_index, test_submission]
