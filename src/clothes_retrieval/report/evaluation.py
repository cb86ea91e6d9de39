"""Run the report's retrieval experiments and write the evaluation report.

Experiments, per box source of the profile (``gt`` = the paper's Table 3 setting,
``fused`` = Tables 6 and 7):

1. every model alone, nearest-neighbour search;
2. every configured ensemble (concatenated embeddings), nearest neighbour;
3. the published configuration under every configured post-processing setting.

The published configuration's submission is also written in the official DeepFashion2
JSON format beside the report.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clothes_retrieval.evaluation import HIT_IOU, box_iou, write_submission_json
from clothes_retrieval.profile import PublishConfig, SearchStageConfig
from clothes_retrieval.report.build import (
    ExampleQuery,
    ExampleResult,
    ReportInputs,
    ReportTable,
    write_report,
)
from clothes_retrieval.report.paper import TABLE2_DETECTION_AP, TABLE3_ACC10_GT, TABLE5_WBF_AP50
from clothes_retrieval.search.experiments import (
    EmbeddingSet,
    Experiment,
    ExperimentResult,
    run_experiment,
)

logger = logging.getLogger(__name__)

__all__ = ["EvaluationSummary", "default_publish", "ensemble_members", "run_evaluation"]


@dataclass(frozen=True)
class EvaluationSummary:
    paths: dict[str, Path]
    headline: dict[str, float]
    published: dict[str, Any]  # name, box_source, postprocess, Acc@k
    table: pd.DataFrame  # every experiment's row


def default_publish(search: SearchStageConfig, models: list[str]) -> PublishConfig:
    """The configured publish target, else the first ensemble (or model) on the first box source."""
    if search.publish is not None:
        return search.publish
    name = next(iter(search.ensembles), None) or models[0]
    return PublishConfig(
        name=name, box_source=search.box_sources[0], postprocess=next(iter(search.postprocess))
    )


def ensemble_members(
    name: str, search: SearchStageConfig, models: list[str]
) -> tuple[tuple[str, ...], dict | None]:
    if name in search.ensembles:
        e = search.ensembles[name]
        return tuple(e.models), e.weights
    if name in models:
        return (name,), None
    raise KeyError(
        f"{name!r} is neither a model of retrieval.models nor an ensemble of search.ensembles"
    )


def _examples(result: ExperimentResult, gt_items: pd.DataFrame, n: int) -> list[ExampleQuery]:
    """The first ``n`` scored queries with their top 5; an entry is a hit by the official
    rule: its gallery image holds a correct item (same pair_id and style as the query's
    ground-truth item) whose box overlaps the entry's box with IoU >= 0.5."""
    details = result.scores.details
    rows = details[details["detection"].notna()].head(n)
    shop = gt_items[gt_items["source"] == "shop"]
    out = []
    for _, d in rows.iterrows():
        qi = int(d["detection"])
        q = result.query_rows.iloc[qi]
        correct = shop[(shop["pair_id"] == d["pair_id"]) & (shop["style"] == d["style"])]
        entries = []
        for gi in result.ranking[qi, :5]:
            if gi < 0:
                break
            g = result.gallery_rows.iloc[int(gi)]
            same_image = correct[correct["image_id"] == g["image_id"]]
            box = np.array([[g["x1"], g["y1"], g["x2"], g["y2"]]], dtype=np.float64)
            hit = bool(
                len(same_image)
                and (
                    box_iou(box, same_image[["x1", "y1", "x2", "y2"]].to_numpy(np.float64))
                    >= HIT_IOU
                ).any()
            )
            entries.append(
                ExampleResult(str(g["image_path"]), (g["x1"], g["y1"], g["x2"], g["y2"]), hit)
            )
        label = f"image {int(q['image_id'])}"
        out.append(
            ExampleQuery(str(q["image_path"]), (q["x1"], q["y1"], q["x2"], q["y2"]), entries, label)
        )
    return out


def with_paper_detection_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Append the paper's Table 2 row of every detector in ``table`` (column ``model``)."""
    metric_cols = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    rows = [
        {
            "model": f"paper: {name}",
            **dict(zip(metric_cols, TABLE2_DETECTION_AP[name], strict=True)),
        }
        for name in table["model"]
        if name in TABLE2_DETECTION_AP
    ]
    return pd.concat([table, pd.DataFrame(rows)], ignore_index=True) if rows else table


def run_evaluation(
    sets: Mapping[str, Mapping[str, EmbeddingSet]],
    gt_items: pd.DataFrame,
    search: SearchStageConfig,
    models: list[str],
    out_dir: str | Path,
    *,
    detection_table: pd.DataFrame | None = None,
    fusion_table: pd.DataFrame | None = None,
    data_version: str = "",
    configs: Mapping[str, Any] | None = None,
) -> EvaluationSummary:
    """``sets[box_source][model]`` -> the report in ``out_dir`` and its headline numbers."""
    out_dir = Path(out_dir)
    publish = default_publish(search, models)
    results: list[ExperimentResult] = []
    published: ExperimentResult | None = None
    for source in search.box_sources:
        if source not in sets:
            raise KeyError(
                f"no embeddings for box source {source!r}; materialise the embeddings first"
            )
        nn_name, nn_post = next(iter(search.postprocess.items()))
        for m in models:
            results.append(
                run_experiment(
                    Experiment(m, (m,), source, nn_post),
                    sets[source],
                    gt_items,
                    index_config=search.index,
                )
            )
        for name, ens in search.ensembles.items():
            results.append(
                run_experiment(
                    Experiment(name, tuple(ens.models), source, nn_post, ens.weights),
                    sets[source],
                    gt_items,
                    index_config=search.index,
                )
            )
        members, weights = ensemble_members(publish.name, search, models)
        for post_name, post in search.postprocess.items():
            if post_name == nn_name:
                continue
            results.append(
                run_experiment(
                    Experiment(publish.name, members, source, post, weights),
                    sets[source],
                    gt_items,
                    index_config=search.index,
                )
            )
    for r in results:
        post_name = next((k for k, v in search.postprocess.items() if v == r.experiment.post), None)
        if (
            r.experiment.name == publish.name
            and r.experiment.box_source == publish.box_source
            and post_name == publish.postprocess
        ):
            published = r
    if published is None:
        raise KeyError(
            f"the publish target {publish.model_dump()} matches no experiment; check search.publish"
        )

    table = pd.DataFrame([r.row() for r in results])
    acc_cols = [c for c in table.columns if c.startswith("Acc@")]
    tables: list[ReportTable] = []
    if detection_table is not None and len(detection_table):
        detection_table = with_paper_detection_rows(detection_table)
        tables.append(
            ReportTable(
                "Detection on validation (Table 2 layout)",
                detection_table,
                "COCO bbox AP of each detector on our validation split; the paper's figures "
                "(full DeepFashion2, paper-scale detectors) in the 'paper:' rows.",
            )
        )
    if fusion_table is not None and len(fusion_table):
        fusion_table = fusion_table.assign(
            **{
                "paper AP50": [
                    TABLE5_WBF_AP50[n - 1]
                    if m == "wbf" and 0 < n <= len(TABLE5_WBF_AP50)
                    else np.nan
                    for m, n in zip(
                        fusion_table["method"], fusion_table["num_detectors"], strict=True
                    )
                ]
            }
        )
        tables.append(
            ReportTable(
                "Weighted boxes fusion over detectors (Table 5 layout)",
                fusion_table,
                "AP50 of WBF over the first n detectors, NMS over the same boxes as reference.",
            )
        )
    nn_post = next(iter(search.postprocess.values()))
    for source, title in (
        ("gt", "Retrieval models with ground-truth boxes (Table 3 layout)"),
        ("fused", "Retrieval with fused boxes (Table 6 layout)"),
    ):
        rows = table[(table["boxes"] == source) & (table["post-processing"] == nn_post.label())]
        if len(rows):
            rows = rows.drop(columns=["boxes", "post-processing"]).copy()
            if source == "gt" and search.paper_reference:
                rows["paper model"] = [search.paper_reference.get(n, "") for n in rows["name"]]
                rows["paper Acc@10"] = [
                    TABLE3_ACC10_GT.get(search.paper_reference.get(n, ""), np.nan)
                    for n in rows["name"]
                ]
            tables.append(ReportTable(title, rows.reset_index(drop=True)))
    post_rows = table[table["name"] == publish.name]
    if post_rows["post-processing"].nunique() > 1:
        tables.append(
            ReportTable(
                f"Post-processing on {publish.name} (Table 7 layout)",
                post_rows[["boxes", "post-processing", *acc_cols]].reset_index(drop=True),
            )
        )

    headline: dict[str, float] = {}
    for source in search.box_sources:
        single = table[
            (table["boxes"] == source)
            & table["name"].isin(models)
            & (table["post-processing"] == nn_post.label())
        ]
        if len(single):
            best = single.sort_values("Acc@10", ascending=False).iloc[0]
            headline[f"{source} boxes, best single model ({best['name']}) Acc@1"] = float(
                best["Acc@1"]
            )
            headline[f"{source} boxes, best single model ({best['name']}) Acc@10"] = float(
                best["Acc@10"]
            )
        for name in search.ensembles:
            ens = table[
                (table["boxes"] == source)
                & (table["name"] == name)
                & (table["post-processing"] == nn_post.label())
            ]
            if len(ens):
                headline[f"{source} boxes, ensemble {name} Acc@1"] = float(ens.iloc[0]["Acc@1"])
                headline[f"{source} boxes, ensemble {name} Acc@10"] = float(ens.iloc[0]["Acc@10"])
    headline["published Acc@10"] = float(published.scores.accuracy[10])

    curves = {
        f"{r.experiment.name} ({r.experiment.box_source}, {r.experiment.post.label()})": dict(
            r.scores.accuracy
        )
        for r in results
    }
    inputs = ReportInputs(
        title="Clothes retrieval: evaluation report",
        headline=headline,
        tables=tables,
        acc_curves=curves,
        examples=_examples(published, gt_items, search.examples),
        data_version=data_version,
        configs=dict(configs or {}),
        notes=[
            f"Published: {publish.name} on {publish.box_source} boxes with {publish.postprocess}; "
            f"Acc@10 {published.scores.accuracy[10]:.4f} (floor {search.acc10_floor}).",
            "Acc@k follows the official DeepFashion2 rules (see clothes_retrieval.evaluation).",
        ],
    )
    paths = write_report(inputs, out_dir)
    paths["submission"] = write_submission_json(
        out_dir.with_name(out_dir.name + "_submission.json"), published.submission
    )
    return EvaluationSummary(
        paths=paths,
        headline=headline,
        published={
            "name": publish.name,
            "box_source": publish.box_source,
            "postprocess": publish.postprocess,
            **{f"Acc@{k}": v for k, v in published.scores.accuracy.items()},
        },
        table=table,
    )
