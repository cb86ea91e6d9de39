"""The real profile end to end on a handful of the shared real photos, through the CLI
(skipped cleanly when the photos are absent)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clothes_retrieval.cli import main
from clothes_retrieval.profile import load_profile, shared_data_root

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "configs" / "pipeline"
LINE = re.compile(
    r"real benchmark: gt acc@1 (\d\.\d{3}) acc@10 (\d\.\d{3}), "
    r"detected acc@1 (\d\.\d{3}) acc@10 (\d\.\d{3})"
)
# 8 street photos to train on, 4 query photos, 4 product photos per class and split, one
# epoch of everything at 64 px: the whole graph in about a minute on 2 cores.
SMOKE = [
    "data.sources.street_train.photos=[1, 8]",
    "data.sources.street_queries.photos=[301, 304]",
    "data.sources.products.max_per_class=4",
    "detection.max_epochs=1",
    "detection.score_thr=0.0",
    "search.acc10_floor=0.0",
    "retrieval.overrides={train: {epochs: 1, batch_size: 16, m_per_class: 2, "
    "iterations_per_epoch: null}, "
    "model: {input_size: [64, 64]}}",
]


@pytest.fixture
def real_data() -> Path:
    root = shared_data_root(REPO)
    if not (root / "ccp").is_dir() or not (root / "clothing-small").is_dir():
        pytest.skip(f"real photos not found under {root}")
    return root


def _category_acc(embeddings: Path, n_queries: int) -> tuple[float, float]:
    """Acc@1 and Acc@10 of the category protocol recomputed here from the saved vectors
    with plain loops: a query is a hit at k when one of its k most similar gallery photos
    has its class; queries that no box answered (absent from the set) are misses."""
    q, g = np.load(embeddings / "query.npy"), np.load(embeddings / "gallery.npy")
    q_cat = pd.read_parquet(embeddings / "query.parquet")["category_id"].tolist()
    g_cat = pd.read_parquet(embeddings / "gallery.parquet")["category_id"].tolist()
    first_hit = []
    for i in range(len(q)):
        sims = (g @ q[i]).tolist()
        order = sorted(range(len(g)), key=lambda j: -sims[j])
        ranks = [r for r, j in enumerate(order) if g_cat[j] == q_cat[i]]
        first_hit.append(ranks[0] if ranks else len(g))
    return (
        sum(r < 1 for r in first_hit) / n_queries,
        sum(r < 10 for r in first_hit) / n_queries,
    )


def _run(profile: str, out: Path, extra: list[str]) -> int:
    sets = [f"output_root={out}", *SMOKE, *extra]
    return main(
        ["run", "--profile", str(PROFILES / profile), *[a for s in sets for a in ("--set", s)]]
    )


@pytest.mark.real_data
def test_real_profile_runs_on_real_photos_and_prints_the_line_last(
    real_data: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    out = tmp_path / "out"
    assert _run("real.yaml", out, []) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    m = LINE.fullmatch(lines[-1])
    assert m, lines[-1]
    gt1, gt10, det1, det10 = (float(v) for v in m.groups())
    real = out / "real"
    name = load_profile(PROFILES / "real.yaml").evaluation.headline
    # the printed numbers are the headline model's, recomputed here from its vectors
    headline = real / "embeddings" / name
    n_queries = len(pd.read_parquet(headline / "gt" / "query.parquet"))
    assert (gt1, gt10) == pytest.approx(_category_acc(headline / "gt", n_queries), abs=5e-4)
    assert (det1, det10) == pytest.approx(_category_acc(headline / "fused", n_queries), abs=5e-4)

    items = pd.read_parquet(real / "item_table" / "items.parquet")
    street = items[items["dataset"] == "ccp"]
    train, queries = street[street["split"] == "train"], street[street["split"] == "validation"]
    # Query photos are never training photos; the gallery is the products' validation split.
    assert set(train["image_path"]).isdisjoint(queries["image_path"])
    assert sorted(queries["image_id"].unique()) == [301, 302, 303, 304]
    gallery = items[(items["split"] == "validation") & (items["source"] == "shop")]
    assert set(gallery["dataset"]) == {"products"}
    crops = pd.read_parquet(real / "retrieval_crops" / "crops.parquet")
    assert set(crops["dataset"]) == {"ccp", "products"} and set(crops["split"]) == {"train"}
    # the detectors learnt from the street photos only
    coco = json.loads((real / "coco_exports" / "train.json").read_text())
    assert len(coco["images"]) == train["image_path"].nunique() == 8
    report = (real / "evaluation_report" / "report.md").read_text()
    assert "Acc@k per class" in report and "category" in report
    for boxes in ("gt", "fused"):  # per box source: where each class's queries go
        assert f"Confusion: {name}, {boxes} boxes" in report
        assert (real / "evaluation_report" / f"confusion_{name}_{boxes}.png").is_file()

    # A second run reuses the trained detector and model (no retraining) and agrees.
    model = real / "model" / name / "model.pt"
    before = model.stat().st_mtime_ns
    assert _run("real.yaml", out, []) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == lines[-1]
    assert model.stat().st_mtime_ns == before


@pytest.mark.real_data
def test_tuning_profile_queries_training_photos_with_gt_boxes_only(
    real_data: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    out = tmp_path / "out"
    tuning = [
        "data.sources.street_train.photos=[1, 5]",
        "data.sources.street_queries.photos=[6, 8]",
    ]
    assert _run("real_tuning.yaml", out, tuning) == 0
    captured = capsys.readouterr()
    assert "tuning run of" in captured.err
    assert re.fullmatch(
        r"real benchmark \(TUNING RUN\): gt acc@1 \d\.\d{3} acc@10 \d\.\d{3}, "
        r"detected acc@1 n/a acc@10 n/a",
        captured.out.strip().splitlines()[-1],
    )
    items = pd.read_parquet(out / "real_tuning" / "item_table" / "items.parquet")
    queries = items[(items["split"] == "validation") & (items["source"] == "user")]
    assert set(queries["image_id"]) <= {6, 7, 8} and len(queries) > 0
    assert not (out / "real_tuning" / "detector").exists()  # ground-truth boxes only
    assert not (out / "real").exists()  # the benchmark's own outputs are untouched
    report = (out / "real_tuning" / "evaluation_report" / "report.md").read_text()
    assert "TUNING RUN" in report
