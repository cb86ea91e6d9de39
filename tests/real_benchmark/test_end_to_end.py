"""The real benchmark end to end on a handful of the shared real photos, through the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from clothes_retrieval.cli import main

LINE = re.compile(
    r"real benchmark: gt acc@1 (\d\.\d{3}) acc@10 (\d\.\d{3}), "
    r"detected acc@1 (\d\.\d{3}) acc@10 (\d\.\d{3})"
)


@pytest.mark.real_data
def test_cli_runs_the_benchmark_and_prints_the_line_last(
    smoke_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["real-benchmark", "--config", str(smoke_config), "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    m = LINE.fullmatch(lines[-1])
    assert m, lines[-1]
    gt1, gt10, det1, det10 = (float(v) for v in m.groups())
    assert 0 <= gt1 <= gt10 <= 1 and 0 <= det1 <= det10 <= 1

    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["line"] == lines[-1]
    assert set(summary["results"]) == {"real_lite0_zero_shot", "real_lite0_mixed"}
    # Query photos are never training photos; the gallery is the validation split only.
    train = pd.read_parquet(out / "data" / "street_train.parquet")
    queries = pd.read_parquet(out / "data" / "queries.parquet")
    products = pd.read_parquet(out / "data" / "products.parquet")
    assert set(train["image_path"]).isdisjoint(queries["image_path"])
    assert sorted(queries["image_id"].unique()) == [301, 302, 303, 304]
    assert summary["data"]["gallery"] == int((products["split"] == "validation").sum())
    crops = pd.read_parquet(out / "retrieval" / "crops" / "crops.parquet")
    assert set(crops["dataset"]) == {"ccp", "products"}
    assert not crops["crop_path"].str.contains("/validation/").any()
    # Every query is scored with both box sources, and the report is there.
    ranked = pd.read_parquet(out / "evaluation" / "real_lite0_mixed" / "ranked.parquet")
    assert ranked.groupby("boxes").size().to_dict() == {
        "detected": len(queries),
        "gt": len(queries),
    }
    report = (out / "report" / "report.md").read_text()
    assert "Acc@k by model and boxes" in report and (out / "report" / "examples.png").is_file()

    # A second run reuses the trained detector and model (no retraining) and agrees.
    before = (out / "retrieval" / "real_lite0_mixed" / "model.pt").stat().st_mtime_ns
    assert main(["real-benchmark", "--config", str(smoke_config), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == lines[-1]
    assert (out / "retrieval" / "real_lite0_mixed" / "model.pt").stat().st_mtime_ns == before


@pytest.mark.real_data
def test_cli_tuning_run_queries_training_photos_with_gt_boxes_only(
    smoke_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "tuning"
    args = ["real-benchmark", "--config", str(smoke_config), "--no-progress"]
    assert main([*args, "--tuning", "--gt-only", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "tuning run" in captured.err
    line = captured.out.strip().splitlines()[-1]
    assert re.fullmatch(
        r"real benchmark: gt acc@1 \d\.\d{3} acc@10 \d\.\d{3}, "
        r"detected acc@1 n/a acc@10 n/a",
        line,
    ), line
    # the smoke config trains on photos 1-8: tuning trains on 1-5 and queries 6-8
    train = pd.read_parquet(out / "data" / "street_train.parquet")
    queries = pd.read_parquet(out / "data" / "queries.parquet")
    assert set(train["image_id"]) <= set(range(1, 6))
    assert set(queries["image_id"]) <= {6, 7, 8} and len(queries) > 0
    assert not (out / "detection").exists()  # --gt-only: no detector trained
    assert not (tmp_path / "out").exists()  # the benchmark's own output folder is untouched


def test_cli_skips_cleanly_without_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["real-benchmark", "--street-train", str(tmp_path / "nope"), "--products", str(tmp_path)]
    assert main([*args, "--skip-missing"]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "street_train" in err and str(tmp_path / "nope") in err
    assert main(args) == 2
