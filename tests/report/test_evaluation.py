"""The evaluation report's own tracker run: its tables, headline numbers and files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clothes_retrieval.evaluation import evaluate_category_retrieval
from clothes_retrieval.profile import EvaluationConfig, SearchStageConfig
from clothes_retrieval.report import ReportTable
from clothes_retrieval.report.evaluation import (
    EvaluationSummary,
    log_evaluation,
    run_evaluation,
    track_evaluation,
    with_postprocess_verdicts,
)
from clothes_retrieval.report.paper import POSTPROCESS_FOUND
from clothes_retrieval.search.rank import PostprocessConfig
from clothes_retrieval.tracking import NullTracker
from tests.search import synthetic

GT_TITLE = "Retrieval models with ground-truth boxes (Table 3 layout)"


def _summary(out_dir: Path) -> EvaluationSummary:
    """A small report's summary, its files written to ``out_dir``."""
    out_dir.mkdir(parents=True)
    paths = {"markdown": out_dir / "report.md", "html": out_dir / "report.html"}
    for path in paths.values():
        path.write_text(f"the {path.suffix} report")
    experiments = pd.DataFrame(
        {
            "name": ["m0", "m1", "m0"],
            "models": ["m0", "m1", "m0"],
            "boxes": ["gt", "gt", "gt"],
            "post-processing": ["nn", "nn", "qe"],
            "Acc@1": [0.25, 0.5, 0.3],
            "Acc@10": [0.75, 0.8, float("nan")],
        }
    )
    gt = experiments.iloc[:2].drop(columns=["boxes", "post-processing"])
    headline = {"gt boxes, best single model (m1) Acc@10": 0.8, "published Acc@10": 0.75}
    return EvaluationSummary(
        paths=paths,
        headline=headline,
        published={"name": "m0", "box_source": "gt", "postprocess": "nn", "Acc@10": 0.75},
        table=experiments,
        line="tiny: gt acc@1 0.250 acc@10 0.750, detected acc@1 n/a acc@10 n/a",
        headline_scores={"gt": {1: 0.25, 10: 0.75}},
        tables=(ReportTable(GT_TITLE, gt),),
    )


def test_log_evaluation_logs_tables_numbers_and_files(tmp_path: Path) -> None:
    summary = _summary(tmp_path / "report")
    tracker = NullTracker()
    log_evaluation(tracker, summary, data_version="md5:42")
    assert list(tracker.tables) == [
        "tables/retrieval_models_with_ground_truth_boxes_table_3_layout",
        "tables/experiments",
    ]
    assert tracker.tables["tables/experiments"] is summary.table
    assert tracker.summary_values["published Acc@10"] == 0.75
    assert tracker.summary_values["published/name"] == "m0"
    (artifact,) = tracker.artifacts
    assert artifact["type"] == "report" and artifact["metadata"]["data_version"] == "md5:42"
    assert sorted(p.name for p in artifact["paths"]) == ["report.html", "report.md"]


def test_disabled_tracking_writes_nothing(tmp_path: Path) -> None:
    summary = _summary(tmp_path / "report")
    assert track_evaluation(summary, tmp_path / "runs", mode="disabled") is None
    assert not (tmp_path / "runs").exists()


def test_the_report_is_an_offline_run_with_its_tables(tmp_path: Path, monkeypatch) -> None:
    from tests.test_tracking import offline_env, read_run

    offline_env(monkeypatch, tmp_path)
    summary = _summary(tmp_path / "report")
    info = track_evaluation(
        summary,
        tmp_path / "runs",
        title="tiny",
        data_version="md5:42",
        config={"profile": {"title": "tiny"}},
    )
    (folder,) = (tmp_path / "runs" / "wandb").glob("offline-run-*")
    assert info is not None and info["dir"] == str(folder) and info["url"] is None
    run = read_run(folder)
    assert run.job_type == "evaluation" and run.run_id == info["id"]
    assert run.config["data_version"] == "md5:42" and run.config["profile"]["title"] == "tiny"

    table = run.table("tables/experiments")
    assert table["columns"] == list(summary.table.columns)
    assert [row[:2] for row in table["data"]] == [["m0", "m0"], ["m1", "m1"], ["m0", "m0"]]
    assert [row[4] for row in table["data"]] == pytest.approx([0.25, 0.5, 0.3])
    gt = run.table("tables/retrieval_models_with_ground_truth_boxes_table_3_layout")
    assert gt["columns"] == ["name", "models", "Acc@1", "Acc@10"] and len(gt["data"]) == 2

    assert run.summary["gt boxes, best single model (m1) Acc@10"] == 0.8
    assert run.summary["published/Acc@10"] == 0.75 and run.summary["line"] == summary.line
    report = run.artifacts["evaluation-report"]
    assert report["type"] == "report" and set(report["entries"]) == {"report.md", "report.html"}
    assert report["metadata"]["headline"] == summary.headline


def test_the_confusion_table_counts_each_query_s_first_result() -> None:
    from clothes_retrieval.report.evaluation import confusion_report_table
    from clothes_retrieval.search.experiments import Experiment, run_experiment

    items = synthetic.items()
    es = synthetic.embedding_set(items)
    result = run_experiment(
        Experiment("m0", ("m0",), "gt"), {"m0": es}, items, protocol="category", ks=(1, 10)
    )
    table = confusion_report_table(result, synthetic.CLASSES)
    frame = table.frame.set_index("class")
    # by hand: each query's class against its first result's class
    expected: dict[tuple[str, str], int] = {}
    for qi in range(len(result.query_rows)):
        q = synthetic.CLASSES[result.query_rows.iloc[qi]["category_id"]]
        g = synthetic.CLASSES[result.gallery_rows.iloc[int(result.ranking[qi, 0])]["category_id"]]
        expected[q, g] = expected.get((q, g), 0) + 1
    assert len(set(expected.values())) > 1 and any(q != g for q, g in expected)  # not trivial
    for q in frame.index:
        for g in frame.columns.drop("queries"):
            assert frame.loc[q, g] == expected.get((q, g), 0), (q, g)
        assert frame.loc[q, "queries"] == frame.loc[q].drop("queries").sum()
    hits = sum(frame.loc[c, c] for c in frame.index)
    assert hits / frame["queries"].sum() == pytest.approx(result.scores.accuracy[1])
    assert "no box" not in frame.columns  # every query has its ground-truth box
    assert table.figures[0].png.startswith(b"\x89PNG")

    # a query no box answers is counted under "no box", not under a class
    answered = result.query_rows.iloc[1:].reset_index(drop=True)
    missed = dataclasses.replace(
        result,
        scores=evaluate_category_retrieval(
            items, answered, result.gallery_rows, result.ranking[1:], (1, 10)
        ),
    )
    frame = confusion_report_table(missed, synthetic.CLASSES).frame.set_index("class")
    first = synthetic.CLASSES[result.query_rows.iloc[0]["category_id"]]
    assert frame.loc[first, "no box"] == 1 and frame["no box"].sum() == 1


def test_examples_carry_the_class_and_the_ranking_s_scores() -> None:
    from clothes_retrieval.report.evaluation import _category_examples
    from clothes_retrieval.search.experiments import Experiment, run_experiment

    items = synthetic.items()
    es = synthetic.embedding_set(items)
    result = run_experiment(
        Experiment("m0", ("m0",), "gt"), {"m0": es}, items, protocol="category", ks=(1, 10)
    )
    # The row's own class name is used; without it, the name comes from the split's items.
    result = dataclasses.replace(result, query_rows=result.query_rows.drop(columns="category_name"))
    examples = _category_examples(result, 4, items)
    assert len(examples) == 4
    for qi, ex in enumerate(examples):
        cid = result.query_rows.iloc[qi]["category_id"]
        assert ex.label == synthetic.CLASSES[cid]
        assert len(ex.results) == 5
        assert [r.score for r in ex.results] == pytest.approx(result.similarities[qi, :5].tolist())
        for r, gi in zip(ex.results, result.ranking[qi, :5], strict=True):
            g = result.gallery_rows.iloc[int(gi)]
            assert r.hit == (g["category_id"] == cid)
            assert r.score == pytest.approx(float(es.gallery[gi] @ es.query[qi]), abs=1e-5)


def _fusion_table() -> pd.DataFrame:
    """Our Table 5 layout (fusion.ablation's columns) for three detectors."""
    return pd.DataFrame(
        {
            "boxes": ["atss", "+ cascade", "+ centernet", "nms over all 3"],
            "method": ["none", "wbf", "wbf", "nms"],
            "num_detectors": [1, 2, 3, 3],
            "AP50": [0.30, 0.35, 0.37, 0.33],
            "num_detections": [10, 12, 13, 11],
        }
    )


def test_fusion_table_has_the_paper_s_ap50_by_n() -> None:
    from clothes_retrieval.report.evaluation import with_paper_fusion_column

    table = with_paper_fusion_column(_fusion_table())
    # n = 1 is the first detector alone, the paper's "ATSS alone"; NMS has no paper value.
    assert table["paper AP50"].tolist()[:3] == [0.836, 0.840, 0.849]
    assert np.isnan(table["paper AP50"].iloc[3])


def test_fusion_figure_plots_ours_nms_and_the_paper_on_one_scale() -> None:
    from clothes_retrieval.report.build import fusion_ablation_figure
    from clothes_retrieval.report.paper import TABLE5_WBF_AP50

    fig = fusion_ablation_figure(_fusion_table(), TABLE5_WBF_AP50)
    (ax,) = fig.axes  # one axis: the paper's fractions and ours share the 0..1 scale
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 1
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"ours: wbf", "ours: nms (reference)", "paper (Table 5, WBF)"}
    ours, nms, paper = (
        lines["ours: wbf"],
        lines["ours: nms (reference)"],
        lines["paper (Table 5, WBF)"],
    )
    assert list(ours.get_xdata()) == [1, 2, 3]
    assert list(ours.get_ydata()) == pytest.approx([0.30, 0.35, 0.37])
    assert list(nms.get_xdata()) == [3] and list(nms.get_ydata()) == pytest.approx([0.33])
    assert list(paper.get_xdata()) == [1, 2, 3, 4, 5]
    assert list(paper.get_ydata()) == pytest.approx(TABLE5_WBF_AP50)
    assert all(0 < y < 1 for y in paper.get_ydata())  # fractions, not the paper's percents


def test_fusion_figure_sits_right_after_its_table(tmp_path: Path) -> None:
    from clothes_retrieval.report import ReportInputs, write_report
    from clothes_retrieval.report.evaluation import fusion_report_table

    after = ReportTable("Next table", pd.DataFrame({"x": [1]}))
    inputs = ReportInputs(
        title="t", headline={}, tables=[fusion_report_table(_fusion_table()), after]
    )
    paths = write_report(inputs, tmp_path / "report")
    assert paths["wbf_ap50.png"].read_bytes().startswith(b"\x89PNG")
    md = paths["markdown"].read_text()
    last_row = md.index("| nms over all 3 |")
    image = md.index("(wbf_ap50.png)")
    assert last_row < image < md.index("## Next table")
    assert md[last_row:image].count("\n## ") == 0
    page = paths["html"].read_text()
    table_end = page.index("</table>")  # the fusion table is the first
    img = page.index("<img alt='AP50 against the number of fused detectors")
    assert table_end < img < page.index("<h2>Next table</h2>")


def _post(**steps) -> PostprocessConfig:
    return PostprocessConfig.model_validate(steps)


NN = PostprocessConfig()
PCA = _post(whitening={"mode": "pca"})
QE = _post(query_expansion={"enabled": True})
DBA = _post(dba={"enabled": True})
RERANK = _post(rerank={"enabled": True})


def test_postprocess_verdicts_compare_with_nearest_neighbour_on_the_same_boxes() -> None:
    frame = pd.DataFrame(
        {
            "boxes": ["gt", "gt", "gt", "gt", "fused", "fused", "fused"],
            # Display names mislead on purpose: the paper's finding follows the config.
            "post-processing": ["plain", "a", "b", "c", "plain", "d", "e"],
            "Acc@1": [0.50, 0.40, 0.50, 0.52, 0.20, 0.30, 0.20],
            "Acc@10": [0.80, 0.81, 0.80, 0.80, 0.60, 0.55, 0.60000001],
        }
    )
    posts = [
        NN,
        PCA,
        QE,
        DBA,
        NN,
        RERANK,
        _post(whitening={"mode": "pca"}, rerank={"enabled": True}),
    ]
    out = with_postprocess_verdicts(frame, posts, NN)
    assert out["helped here"].tolist() == [
        "reference",
        "yes",  # Acc@10 up, though Acc@1 down: the verdict is Acc@10's
        "same",  # both tie
        "yes",  # Acc@10 ties, Acc@1 decides
        "reference",
        "no",  # fused: against the fused nearest-neighbour row, not the gt one
        "same",  # equal to the report's 4 decimals
    ]
    found = out["paper found"].tolist()
    assert found[0] == found[4] == "–"
    assert found[1] == found[2] == found[3] == "did not help"
    assert found[5] == POSTPROCESS_FOUND["rerank"] and "reduced box set" in found[5]
    assert found[6] == (
        f"whiten-pca: {POSTPROCESS_FOUND['whiten-pca']}; rerank: {POSTPROCESS_FOUND['rerank']}"
    )
    assert list(out.columns[:4]) == list(frame.columns)


def test_the_paper_has_a_finding_for_every_step() -> None:
    every = _post(
        whitening={"mode": "pca"},
        dba={"enabled": True},
        query_expansion={"enabled": True},
        rerank={"enabled": True},
    )
    assert set(every.steps()) < set(POSTPROCESS_FOUND)
    assert _post(whitening={"mode": "learned"}).steps()[0] in POSTPROCESS_FOUND


def _search(**extra) -> SearchStageConfig:
    return SearchStageConfig.model_validate(
        {
            "box_sources": ["gt"],
            "ensembles": {"m0+m1": {"models": ["m0", "m1"]}},
            "postprocess": {
                "nearest neighbour": {},
                "query expansion": {"query_expansion": {"enabled": True, "k": 2}},
                "k-reciprocal re-ranking": {"rerank": {"enabled": True, "k1": 4, "k2": 2}},
            },
            "publish": {"name": "m0+m1", "box_source": "gt"},
            "examples": 2,
            **extra,
        }
    )


def _evaluate(tmp_path: Path, search: SearchStageConfig, sets=None, items=None, **kwargs):
    """run_evaluation on the synthetic split (category protocol, tracking off); by default
    two noisy models on ground-truth boxes, where re-ranking changes Acc@1."""
    items = synthetic.items(n_user=6, n_shop=8) if items is None else items
    sets = sets or {
        "gt": {
            m: synthetic.embedding_set(items, m, seed=i, noise=1.5)
            for i, m in enumerate(("m0", "m1"))
        }
    }
    return run_evaluation(
        sets,
        items,
        search,
        ["m0", "m1"],
        tmp_path / "report",
        evaluation=EvaluationConfig(protocol="category", ks=(1, 5, 10)),
        tracker_mode="disabled",
        **kwargs,
    )


def test_the_table_7_layout_says_what_helped_here_and_what_the_paper_found(tmp_path: Path):
    summary = _evaluate(tmp_path, _search())
    (table,) = [t for t in summary.tables if t.title.startswith("Post-processing on m0+m1")]
    frame = table.frame
    assert frame["post-processing"].tolist() == ["nearest neighbour", "qe", "rerank"]
    assert frame["helped here"].iloc[0] == "reference"
    assert frame["helped here"].tolist()[1:] == ["same", "no"]  # this data's outcome
    ref = frame.iloc[0]
    for _, row in frame.iloc[1:].iterrows():
        ours = (round(row["Acc@10"], 4), round(row["Acc@1"], 4))  # Acc@10 first, then Acc@1
        base = (round(ref["Acc@10"], 4), round(ref["Acc@1"], 4))
        assert row["helped here"] == ("yes" if ours > base else "no" if ours < base else "same")
    assert frame["paper found"].tolist() == [
        "–",
        POSTPROCESS_FOUND["qe"],
        POSTPROCESS_FOUND["rerank"],
    ]
    assert "by Acc@10" in table.caption
    md = summary.paths["markdown"].read_text()
    assert "| helped here | paper found |" in md


def test_the_box_budget_table_sets_reduced_boxes_beside_the_full_set(tmp_path: Path):
    from clothes_retrieval.report.paper import TABLE7_RERANK
    from clothes_retrieval.search.budget import BoxBudgetConfig, apply_box_budget
    from clothes_retrieval.search.experiments import Experiment, run_experiment

    items = synthetic.items(n_user=6, n_shop=8)
    scores = np.linspace(0.9, 0.1, 18)  # the fused query boxes' scores: best first
    sets = {
        source: {
            m: synthetic.embedding_set(
                items, m, source, seed=i, noise=1.5, query_scores=scores[::-1]
            )
            for i, m in enumerate(("m0", "m1"))
        }
        for source in ("gt", "fused")
    }
    budget = BoxBudgetConfig(fraction=0.5)
    search = _search(
        box_sources=["gt", "fused"],
        publish={"name": "m0+m1", "box_source": "fused"},
        box_budget=budget.model_dump(),
    )
    summary = _evaluate(tmp_path, search, sets, items)
    (table,) = [t for t in summary.tables if t.title.startswith("Box budget")]
    frame = table.frame
    assert frame["boxes"].tolist() == [
        "fused, all boxes",
        "fused, all boxes",
        "fused, top 50% by score",
        "fused, top 50% by score",
        *[f"paper (m4): {k.partition(', ')[0]}" for k in TABLE7_RERANK],
    ]
    assert frame["search"].tolist()[:2] == ["nearest neighbour", "k-reciprocal re-ranking"]
    # Category protocol: the 18 queries are halved, the 24 gallery photos kept.
    assert frame["box count"].tolist()[:4] == [42, 42, 33, 33]
    assert frame["box count"].tolist()[4:] == [590_000, 126_000, 126_000]
    assert frame[["Acc@1", "Acc@10"]].iloc[4:].to_numpy().tolist() == [
        list(v) for v in TABLE7_RERANK.values()
    ]
    # The full-set rows are the report's own fused rows of the published ensemble.
    exp = summary.table
    fused = exp[(exp["name"] == "m0+m1") & (exp["boxes"] == "fused")].set_index("post-processing")
    assert frame["Acc@1"].iloc[0] == fused.loc["nearest neighbour", "Acc@1"]
    assert frame["Acc@10"].iloc[1] == fused.loc["rerank", "Acc@10"]
    # The reduced rows search only the kept (highest-scoring) query boxes.
    reduced = {m: apply_box_budget(sets["fused"][m], budget, ("query",)) for m in ("m0", "m1")}
    assert reduced["m0"].query_rows["score"].min() >= np.median(scores)
    post = search.postprocess["k-reciprocal re-ranking"]
    direct = run_experiment(
        Experiment("m0+m1", ("m0", "m1"), "fused", post),
        reduced,
        items,
        protocol="category",
        ks=(1, 5, 10),
    )
    assert frame["Acc@1"].iloc[3] == pytest.approx(direct.scores.accuracy[1])
    assert frame["Acc@10"].iloc[3] == pytest.approx(direct.scores.accuracy[10])
    # Half the queries are unanswered: a miss each, so the budget cannot raise Acc@10 here.
    assert frame["Acc@10"].iloc[2] <= 0.5 + 1e-9
    assert "33 of 42 boxes" in table.caption
    assert "## Box budget and re-ranking on m0+m1 (Table 7 layout)" in (
        summary.paths["markdown"].read_text()
    )


def test_no_budget_no_budget_table(tmp_path: Path):
    summary = _evaluate(tmp_path, _search())
    assert not [t for t in summary.tables if t.title.startswith("Box budget")]


def test_a_budget_needs_fused_boxes(tmp_path: Path):
    with pytest.raises(ValueError, match="add 'fused' to search.box_sources"):
        _evaluate(tmp_path, _search(box_budget={"per_image": 2}))
