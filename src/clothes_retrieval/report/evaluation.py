"""Run the report's retrieval experiments and write the evaluation report.

Experiments, per box source of the profile (``gt`` = the paper's Table 3 setting,
``fused`` = Tables 6 and 7):

1. every model alone, nearest-neighbour search;
2. every configured ensemble (concatenated embeddings), nearest neighbour;
3. the published configuration under every configured post-processing setting.

Scored by the profile's protocol (``evaluation.protocol``): ``deepfashion2`` (the official
rules; the published configuration's submission is also written in the official JSON
format beside the report) or ``category`` (:mod:`clothes_retrieval.evaluation.category`,
with a per-class table). The run ends with one line, :func:`headline_line`.

The report is also a tracker run of its own (job type ``evaluation``,
:func:`track_evaluation`): every table of the report and the table of all experiments as
``wandb.Table``\ s, the headline numbers as its summary, the report files as an artifact of
type ``report``. Offline by default, in ``<report dir>_runs/`` beside the report (the report
folder itself is replaced on every run); nothing under ``WANDB_MODE=disabled``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clothes_retrieval.data.schema import CATEGORIES
from clothes_retrieval.evaluation import HIT_IOU, box_iou, write_submission_json
from clothes_retrieval.profile import EvaluationConfig, PublishConfig, SearchStageConfig
from clothes_retrieval.report.build import (
    AccCurve,
    ExampleQuery,
    ExampleResult,
    ReportFigure,
    ReportInputs,
    ReportTable,
    confusion_figure,
    figure_png,
    fusion_ablation_figure,
    write_report,
)
from clothes_retrieval.report.paper import (
    POSTPROCESS_FOUND,
    TABLE2_DETECTION_AP,
    TABLE3_ACC10_GT,
    TABLE5_WBF_AP50,
    TABLE7_BOX_COUNTS,
    TABLE7_RERANK,
)
from clothes_retrieval.search.budget import BoxBudgetConfig, apply_box_budget
from clothes_retrieval.search.experiments import (
    EmbeddingSet,
    Experiment,
    ExperimentResult,
    run_experiment,
)
from clothes_retrieval.search.rank import PostprocessConfig, RerankConfig
from clothes_retrieval.tracking import Mode, Tracker, artifact_name, create_tracker

logger = logging.getLogger(__name__)

__all__ = [
    "EvaluationSummary",
    "default_publish",
    "box_budget_table",
    "ensemble_members",
    "fusion_report_table",
    "with_postprocess_verdicts",
    "headline_line",
    "log_evaluation",
    "run_evaluation",
    "track_evaluation",
]

TRACKER_PROJECT = "clothes-retrieval"


@dataclass(frozen=True)
class EvaluationSummary:
    paths: dict[str, Path]
    headline: dict[str, float]
    published: dict[str, Any]  # name, box_source, postprocess, Acc@k
    table: pd.DataFrame  # every experiment's row
    line: str  # the run's last line (headline_line)
    headline_scores: dict[str, dict[int, float]]  # box source -> Acc@k of the headline config
    tables: tuple[ReportTable, ...] = ()  # the report's tables, in order
    tracking: dict[str, str | None] | None = None  # the tracker run (None: disabled)

    def missed_targets(self, targets: Mapping[str, float]) -> dict[str, dict[str, float]]:
        """Targets (``'<gt|fused> Acc@<k>'`` -> value) the headline configuration missed."""
        missed = {}
        for key, want in targets.items():
            box, _, metric = key.partition(" ")
            got = self.headline_scores.get(box, {}).get(int(metric.removeprefix("Acc@")))
            if got is None or got < want:
                missed[key] = {"target": want, "achieved": float("nan") if got is None else got}
        return missed


def headline_line(title: str, scores: Mapping[str, Mapping[int, float]]) -> str:
    """``<title>: gt acc@1 A acc@10 B, detected acc@1 C acc@10 D`` (``n/a`` for a box source
    not evaluated); ``scores``: box source (gt, fused) -> Acc@k."""

    def fmt(source: str, k: int) -> str:
        value = scores.get(source, {}).get(k)
        return "n/a" if value is None else f"{value:.3f}"

    return (
        f"{title}: gt acc@1 {fmt('gt', 1)} acc@10 {fmt('gt', 10)}, "
        f"detected acc@1 {fmt('fused', 1)} acc@10 {fmt('fused', 10)}"
    )


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


def _per_class(result: ExperimentResult) -> pd.DataFrame:
    """Acc@1 and Acc@10 per query class (category protocol)."""
    d = result.scores.details
    rank = d["first_hit_rank"]
    table = (
        d.assign(**{"Acc@1": rank <= 1, "Acc@10": rank <= 10})
        .groupby("category_name")
        .agg(
            queries=("item_uid", "size"),
            **{"Acc@1": ("Acc@1", "mean"), "Acc@10": ("Acc@10", "mean")},
        )
        .reset_index()
        .rename(columns={"category_name": "class"})
    )
    return table.sort_values("Acc@1", ascending=False).reset_index(drop=True)


NO_ANSWER = "no box"


def confusion_table(result: ExperimentResult, names: Mapping[int, str]) -> pd.DataFrame:
    """Where each class's queries go (category protocol): one row per query class, its
    number of queries, and per class the queries whose first result is of that class (the
    diagonal: hits at 1); ``no box`` counts the queries no box answered (detected boxes)."""
    d = result.scores.details
    query = d["category_id"].astype(int).to_numpy()
    top1 = d["top1_category_id"].astype(int).to_numpy()
    ids = sorted(set(query.tolist()) | set(result.gallery_rows["category_id"].astype(int)))
    label = {i: names.get(i, f"category {i}") for i in ids}
    frame = pd.crosstab(
        pd.Categorical([label[i] for i in query], categories=[label[i] for i in ids]),
        pd.Categorical(
            [label.get(i, NO_ANSWER) for i in top1],
            categories=[label[i] for i in ids] + [NO_ANSWER],
        ),
        dropna=False,
    )
    frame = frame.loc[frame.sum(axis=1) > 0]  # gallery-only classes have no row
    if not frame[NO_ANSWER].any():
        frame = frame.drop(columns=NO_ANSWER)
    frame.insert(0, "queries", frame.sum(axis=1))
    frame = frame.rename_axis(index="class", columns=None).reset_index()
    frame["class"] = frame["class"].astype(str)
    frame.columns = [str(c) for c in frame.columns]
    return frame


def confusion_report_table(result: ExperimentResult, names: Mapping[int, str]) -> ReportTable:
    """:func:`confusion_table` of ``result`` with its heatmap."""
    e = result.experiment
    frame = confusion_table(result, names)
    title = f"Confusion: {e.name}, {e.box_source} boxes"
    figure = ReportFigure(
        f"confusion_{re.sub(r'[^a-z0-9]+', '_', f'{e.name}_{e.box_source}'.lower())}.png",
        f"{title}: the class of each query's first result",
        figure_png(confusion_figure(frame, title=title)),
    )
    return ReportTable(
        title,
        frame,
        "Rows: the query's class; columns: the class of its first result (the diagonal are "
        "the hits at 1); 'no box': no detected box answered the query.",
        float_format="{:.0f}",
        figures=(figure,),
    )


def _category_name(row: pd.Series, names: Mapping[int, str]) -> str:
    """The class name of a query row: its own ``category_name``, else by its id."""
    name = row.get("category_name")
    if isinstance(name, str) and name:
        return name
    cid = row.get("category_id")
    if cid is None or pd.isna(cid):
        return "?"
    return names.get(int(cid), f"category {int(cid)}")


def _category_names(gt_items: pd.DataFrame | None) -> dict[int, str]:
    """category_id -> name: DeepFashion2's, then the split's own (which may add classes)."""
    names = dict(CATEGORIES)
    if gt_items is not None and {"category_id", "category_name"} <= set(gt_items.columns):
        pairs = gt_items[["category_id", "category_name"]].dropna().drop_duplicates()
        names.update({int(i): str(n) for i, n in pairs.itertuples(index=False)})
    return names


def _example(
    result: ExperimentResult, qi: int, hit: Callable, names: Mapping[int, str]
) -> ExampleQuery:
    """Query row ``qi`` (labelled with its class) with its top 5, each with its score in
    the ranking; ``hit(gallery_row)`` says which entries are right."""
    q = result.query_rows.iloc[qi]
    entries = []
    for gi, score in zip(result.ranking[qi, :5], result.similarities[qi, :5], strict=True):
        if gi < 0:
            break
        g = result.gallery_rows.iloc[int(gi)]
        box = (g["x1"], g["y1"], g["x2"], g["y2"])
        entries.append(ExampleResult(str(g["image_path"]), box, bool(hit(g)), float(score)))
    return ExampleQuery(
        str(q["image_path"]),
        (q["x1"], q["y1"], q["x2"], q["y2"]),
        entries,
        _category_name(q, names),
    )


def _category_examples(
    result: ExperimentResult, n: int, gt_items: pd.DataFrame | None = None
) -> list[ExampleQuery]:
    """The first ``n`` answered queries; an entry is a hit when its gallery item is of the
    query's class."""
    names = _category_names(gt_items)
    out = []
    for qi in range(min(n, len(result.query_rows))):
        q = result.query_rows.iloc[qi]
        out.append(_example(result, qi, lambda g, q=q: g["category_id"] == q["category_id"], names))
    return out


def _examples(result: ExperimentResult, gt_items: pd.DataFrame, n: int) -> list[ExampleQuery]:
    """The first ``n`` scored queries with their top 5; an entry is a hit by the official
    rule: its gallery image holds a correct item (same pair_id and style as the query's
    ground-truth item) whose box overlaps the entry's box with IoU >= 0.5."""
    details = result.scores.details
    rows = details[details["detection"].notna()].head(n)
    shop = gt_items[gt_items["source"] == "shop"]
    names = _category_names(gt_items)
    out = []
    for _, d in rows.iterrows():
        qi = int(d["detection"])
        correct = shop[(shop["pair_id"] == d["pair_id"]) & (shop["style"] == d["style"])]

        def hit(g: pd.Series, correct: pd.DataFrame = correct) -> bool:
            same_image = correct[correct["image_id"] == g["image_id"]]
            box = np.array([[g["x1"], g["y1"], g["x2"], g["y2"]]], dtype=np.float64)
            boxes = same_image[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)
            return bool(len(same_image) and (box_iou(box, boxes) >= HIT_IOU).any())

        out.append(_example(result, qi, hit, names))
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


def with_paper_fusion_column(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (Table 5 layout) with the column ``paper AP50``: the paper's WBF over the
    first n detectors for our WBF rows, its first detector alone (ATSS, 0.836) for our
    unfused first row (method ``none``, n = 1); NaN for NMS and other methods."""

    def paper(method: str, n: int) -> float:
        if (method == "wbf" or (method == "none" and n == 1)) and 0 < n <= len(TABLE5_WBF_AP50):
            return TABLE5_WBF_AP50[n - 1]
        return np.nan

    return table.assign(
        **{
            "paper AP50": [
                paper(m, int(n))
                for m, n in zip(table["method"], table["num_detectors"], strict=True)
            ]
        }
    )


def fusion_report_table(fusion_table: pd.DataFrame) -> ReportTable:
    """The Table 5 layout with the paper's column, and its figure: AP50 against n, ours
    and the paper's."""
    table = with_paper_fusion_column(fusion_table)
    figure = ReportFigure(
        "wbf_ap50.png",
        "AP50 against the number of fused detectors: ours and the paper's Table 5",
        figure_png(fusion_ablation_figure(table, TABLE5_WBF_AP50)),
    )
    return ReportTable(
        "Weighted boxes fusion over detectors (Table 5 layout)",
        table,
        "AP50 of WBF over the first n detectors (n = 1: the first detector alone), NMS over "
        "the same boxes as reference; 'paper AP50': the paper's WBF over its first n "
        "detectors (ATSS, Cascade Mask R-CNN, CenterNet, RetinaNet-R101, RetinaNet-X101), "
        "matched by n, not by detector.",
        figures=(figure,),
    )


def _paper_found(post: PostprocessConfig) -> str:
    steps = post.steps()
    if not steps:
        return "–"
    if len(steps) == 1:
        return POSTPROCESS_FOUND[steps[0]]
    return "; ".join(f"{k}: {POSTPROCESS_FOUND[k]}" for k in steps)


VERDICT_DECIMALS = 4  # the report's precision: "same" means the same printed numbers


def _verdict(row: pd.Series, ref: pd.Series) -> str:
    """yes / no / same: ``row`` against ``ref`` by Acc@10, a tie decided by Acc@1."""
    for metric in ("Acc@10", "Acc@1"):
        ours, base = round(row[metric], VERDICT_DECIMALS), round(ref[metric], VERDICT_DECIMALS)
        if ours != base:
            return "yes" if ours > base else "no"
    return "same"


def with_postprocess_verdicts(
    frame: pd.DataFrame, posts: Sequence[PostprocessConfig], reference: PostprocessConfig
) -> pd.DataFrame:
    """``frame`` (Table 7 layout: columns boxes, Acc@1, Acc@10, ...; row i searched with
    ``posts[i]``) with two columns: ``helped here``, each row against the ``reference``
    (nearest-neighbour) row of the same boxes (:func:`_verdict`; ``reference`` on that
    row itself), and ``paper found``, what the paper reports for the steps the row enables
    (:data:`~clothes_retrieval.report.paper.POSTPROCESS_FOUND`)."""
    if len(posts) != len(frame):
        raise ValueError(f"{len(frame)} rows but {len(posts)} post-processing settings")
    frame = frame.reset_index(drop=True)
    is_ref = [p == reference for p in posts]
    refs = {b: frame.iloc[i] for i, b in enumerate(frame["boxes"]) if is_ref[i]}
    helped = []
    for i, row in frame.iterrows():
        if is_ref[i]:
            helped.append("reference")
        elif row["boxes"] in refs:
            helped.append(_verdict(row, refs[row["boxes"]]))
        else:
            helped.append("–")  # no nearest-neighbour row on these boxes to compare with
    return frame.assign(**{"helped here": helped, "paper found": [_paper_found(p) for p in posts]})


def rerank_setting(search: SearchStageConfig) -> tuple[str, PostprocessConfig]:
    """(name, setting): the first configured post-processing setting that only re-ranks,
    else the default re-ranking (:class:`~clothes_retrieval.search.rank.RerankConfig`)."""
    for name, post in search.postprocess.items():
        if post.steps() == ("rerank",):
            return name, post
    return "default k-reciprocal re-ranking", PostprocessConfig(rerank=RerankConfig(enabled=True))


def _box_count(es: EmbeddingSet) -> int:
    return len(es.query_rows) + len(es.gallery_rows)


def box_budget_table(
    results: Sequence[ExperimentResult],
    fused: Mapping[str, EmbeddingSet],
    gt_items: pd.DataFrame,
    search: SearchStageConfig,
    name: str,
    members: tuple[str, ...],
    weights: Mapping[str, float] | None,
    budget: BoxBudgetConfig,
    *,
    protocol: str = "deepfashion2",
    ks: Sequence[int] = (1, 10),
    training: Mapping[str, EmbeddingSet] | None = None,
) -> ReportTable:
    """The paper's Table 7 on our data: ``name`` (the published configuration) on all
    fused boxes and on the boxes ``budget`` keeps, each with nearest neighbour and with
    k-reciprocal re-ranking, then the paper's three rows (m4 on WBF_5 boxes).

    ``results``: experiments already run; a full-set row is taken from them when there.
    Under the ``category`` protocol only the query boxes are reduced (the gallery is the
    ground truth)."""
    nn_post = next(iter(search.postprocess.values()))
    rerank_name, rerank_post = rerank_setting(search)
    sides = ("query",) if protocol == "category" else ("query", "gallery")
    reduced = {m: apply_box_budget(fused[m], budget, sides) for m in members}
    full_count, reduced_count = _box_count(fused[members[0]]), _box_count(reduced[members[0]])
    rows = []
    for boxes, sets_, count in (
        ("fused, all boxes", fused, full_count),
        (f"fused, {budget.describe()}", reduced, reduced_count),
    ):
        for search_label, post in (
            (nn_post.label(), nn_post),
            ("k-reciprocal re-ranking", rerank_post),
        ):
            done = next(
                (
                    r
                    for r in results
                    if sets_ is fused
                    and r.experiment.name == name
                    and r.experiment.box_source == "fused"
                    and r.experiment.post == post
                ),
                None,
            )
            result = done or run_experiment(
                Experiment(name, members, "fused", post, weights),
                sets_,
                gt_items,
                index_config=search.index,
                training=training,
                protocol=protocol,
                ks=ks,
            )
            rows.append(
                {
                    "boxes": boxes,
                    "search": search_label,
                    "box count": count,
                    "Acc@1": result.scores.accuracy[1],
                    "Acc@10": result.scores.accuracy[10],
                }
            )
    for label, (acc1, acc10) in TABLE7_RERANK.items():
        boxes, _, search_label = label.partition(", ")
        rows.append(
            {
                "boxes": f"paper (m4): {boxes}",
                "search": search_label,
                "box count": TABLE7_BOX_COUNTS[boxes],
                "Acc@1": acc1,
                "Acc@10": acc10,
            }
        )
    side_text = "query boxes" if protocol == "category" else "query and gallery boxes"
    return ReportTable(
        f"Box budget and re-ranking on {name} (Table 7 layout)",
        pd.DataFrame(rows),
        f"{name} on all fused boxes and on a reduced set (of the {side_text}, the "
        f"{budget.describe()} (fusion score); {reduced_count} of {full_count} boxes), with "
        f"nearest neighbour and with re-ranking ({rerank_name!r}). The paper's rows: m4 "
        "alone on its WBF_5 boxes of DeepFashion2 validation, reduced from 590k to 126k "
        "boxes by a rule it does not give.",
    )


def run_evaluation(
    sets: Mapping[str, Mapping[str, EmbeddingSet]],
    gt_items: pd.DataFrame,
    search: SearchStageConfig,
    models: list[str],
    out_dir: str | Path,
    *,
    evaluation: EvaluationConfig | None = None,
    title: str = "evaluation",
    detection_table: pd.DataFrame | None = None,
    fusion_table: pd.DataFrame | None = None,
    data_version: str = "",
    configs: Mapping[str, Any] | None = None,
    tuning_of: str | None = None,
    training: Mapping[str, EmbeddingSet] | None = None,
    tracker_mode: Mode | None = None,
    tracker_dir: str | Path | None = None,
) -> EvaluationSummary:
    """``sets[box_source][model]`` -> the report in ``out_dir`` and its headline numbers.

    ``training``: model -> its training-split set, which whitening steps are fitted on.

    ``tuning_of``: this is a tuning run of that profile (said at the top of the report).

    ``search.box_budget`` (enabled): the published configuration also searches a reduced set of
    fused boxes, with nearest neighbour and with k-reciprocal re-ranking, beside the full
    set (:func:`box_budget_table`, the paper's Table 7).

    The report is then logged as a tracker run (:func:`track_evaluation`) in ``tracker_dir``
    (default: ``<out_dir>_runs`` beside it); ``tracker_mode`` None follows ``WANDB_MODE``."""
    out_dir = Path(out_dir)
    evaluation = evaluation or EvaluationConfig()
    protocol, ks = evaluation.protocol, evaluation.ks
    publish = default_publish(search, models)
    results: list[ExperimentResult] = []
    published: ExperimentResult | None = None
    nn_name, nn_post = next(iter(search.postprocess.items()))
    members, weights = ensemble_members(publish.name, search, models)
    for source in search.box_sources:
        if source not in sets:
            raise KeyError(
                f"no embeddings for box source {source!r}; materialise the embeddings first"
            )
        experiments = [Experiment(m, (m,), source, nn_post) for m in models]
        experiments += [
            Experiment(name, tuple(ens.models), source, nn_post, ens.weights)
            for name, ens in search.ensembles.items()
        ]
        experiments += [
            Experiment(publish.name, members, source, post, weights)
            for post_name, post in search.postprocess.items()
            if post_name != nn_name
        ]
        results += [
            run_experiment(
                e,
                sets[source],
                gt_items,
                index_config=search.index,
                training=training,
                protocol=protocol,
                ks=ks,
            )
            for e in experiments
        ]
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
        tables.append(fusion_report_table(fusion_table))
    for source, table_title in (
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
            tables.append(ReportTable(table_title, rows.reset_index(drop=True)))
    post_results = [r for r in results if r.experiment.name == publish.name]
    if len({r.experiment.post.label() for r in post_results}) > 1:
        post_rows = pd.DataFrame([r.row() for r in post_results])
        tables.append(
            ReportTable(
                f"Post-processing on {publish.name} (Table 7 layout)",
                with_postprocess_verdicts(
                    post_rows[["boxes", "post-processing", *acc_cols]],
                    [r.experiment.post for r in post_results],
                    nn_post,
                ),
                f"helped here: against {nn_post.label()} on the same boxes, by Acc@10 (to "
                f"{VERDICT_DECIMALS} decimals; a tie is decided by Acc@1, 'same' when both "
                "tie). paper found: what the paper reports for the step on DeepFashion2.",
            )
        )

    box_budget = search.box_budget
    if box_budget.enabled:
        if "fused" not in search.box_sources:
            raise ValueError(
                "a box budget reduces the fused boxes: add 'fused' to search.box_sources "
                "or leave the budget unset"
            )
        tables.append(
            box_budget_table(
                results,
                sets["fused"],
                gt_items,
                search,
                publish.name,
                members,
                weights,
                box_budget,
                protocol=protocol,
                ks=ks,
                training=training,
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

    # The run's last line: the headline configuration (evaluation.headline, else the
    # published one) with nearest-neighbour search, per box source.
    head_name = evaluation.headline or publish.name
    head = {
        r.experiment.box_source: r
        for r in results
        if r.experiment.name == head_name and r.experiment.post == nn_post
    }
    head_scores = {source: dict(r.scores.accuracy) for source, r in head.items()}
    line = headline_line(title, head_scores)
    for source, acc in head_scores.items():
        for k in (1, 10):
            headline[f"{source} boxes, headline {head_name} Acc@{k}"] = float(acc[k])
    if protocol == "category":
        names = _category_names(gt_items)
        for source in search.box_sources:
            result = head[source]
            tables.append(
                ReportTable(
                    f"Acc@k per class: {head_name}, {source} boxes",
                    _per_class(result),
                    "A query is a hit at k when a gallery photo of its class is among its first k.",
                )
            )
            tables.append(confusion_report_table(result, names))

    curves = [
        AccCurve(
            r.experiment.name,
            r.experiment.box_source,
            r.experiment.post.label(),
            dict(r.scores.accuracy),
        )
        for r in results
    ]
    protocol_note = (
        "Acc@k follows the official DeepFashion2 rules (see clothes_retrieval.evaluation)."
        if protocol == "deepfashion2"
        else "Acc@k by class (clothes_retrieval.evaluation.category): a query is a hit at k "
        "when a gallery photo of its class is among the first k; with detected boxes each "
        f"query is answered by its best fused box of IoU >= {evaluation.match_iou}, else missed."
    )
    tuning = (
        [
            f"TUNING RUN of {tuning_of}: queries are training photos of that profile; "
            "choose settings here, then run that profile once."
        ]
        if tuning_of
        else []
    )
    inputs = ReportInputs(
        title=f"Clothes retrieval: evaluation report ({title})",
        headline=headline,
        tables=tables,
        acc_curves=curves,
        examples=(
            _examples(published, gt_items, search.examples)
            if protocol == "deepfashion2"
            else _category_examples(published, search.examples, gt_items)
        ),
        data_version=data_version,
        configs=dict(configs or {}),
        notes=[
            *tuning,
            line,
            f"Published: {publish.name} on {publish.box_source} boxes with {publish.postprocess}; "
            f"Acc@10 {published.scores.accuracy[10]:.4f} (floor {search.acc10_floor}).",
            protocol_note,
        ],
    )
    paths = write_report(inputs, out_dir)
    if published.submission is not None:
        paths["submission"] = write_submission_json(
            out_dir.with_name(out_dir.name + "_submission.json"), published.submission
        )
    summary = EvaluationSummary(
        paths=paths,
        headline=headline,
        published={
            "name": publish.name,
            "box_source": publish.box_source,
            "postprocess": publish.postprocess,
            **{f"Acc@{k}": v for k, v in published.scores.accuracy.items()},
        },
        table=table,
        line=line,
        headline_scores=head_scores,
        tables=tuple(tables),
    )
    tracking = track_evaluation(
        summary,
        tracker_dir if tracker_dir is not None else out_dir.with_name(out_dir.name + "_runs"),
        title=title,
        data_version=data_version,
        config=configs,
        mode=tracker_mode,
    )
    return dataclasses.replace(summary, tracking=tracking)


def _table_key(title: str) -> str:
    """``tables/<title as lower_snake_case>``: a W&B key for a report table."""
    return "tables/" + re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def log_evaluation(tracker: Tracker, summary: EvaluationSummary, data_version: str = "") -> None:
    """Log ``summary`` to ``tracker``: each report table and every experiment's row
    (``tables/experiments``) as tables, the headline and published numbers as the summary,
    the report's files as an artifact of type ``report``."""
    for table in summary.tables:
        tracker.log_table(_table_key(table.title), table.frame)
    tracker.log_table("tables/experiments", summary.table)
    published = {f"published/{k}": v for k, v in summary.published.items()}
    tracker.summary({**summary.headline, **published, "line": summary.line})
    tracker.log_artifact(
        artifact_name("evaluation-report"),
        "report",
        sorted(summary.paths.values()),
        {
            "data_version": data_version,
            "line": summary.line,
            "headline": summary.headline,
            "published": summary.published,
        },  # fmt: skip
    )


def track_evaluation(
    summary: EvaluationSummary,
    directory: str | Path,
    *,
    title: str = "evaluation",
    data_version: str = "",
    config: Mapping[str, Any] | None = None,
    mode: Mode | None = None,
    project: str = TRACKER_PROJECT,
) -> dict[str, str | None] | None:
    """Log the report as a run of its own (job type ``evaluation``, in ``directory``) and
    return where it is (``Tracker.info``; None when tracking is disabled)."""
    tracker = create_tracker(
        project,
        f"evaluation-{title}",
        {"data_version": data_version, **(config or {})},
        mode=mode,
        directory=directory,
        group="evaluation",
        job_type="evaluation",
    )
    try:
        log_evaluation(tracker, summary, data_version)
    finally:
        tracker.finish()
    return tracker.info
