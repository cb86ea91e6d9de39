from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from clothes_retrieval.report import (
    ExampleQuery,
    ExampleResult,
    ReportInputs,
    ReportTable,
    write_report,
)


def _image(path: Path, colour: tuple[int, int, int]) -> str:
    Image.new("RGB", (40, 30), colour).save(path)
    return str(path)


def test_report_has_tables_figures_and_is_self_contained(tmp_path: Path):
    q = _image(tmp_path / "q.jpg", (0, 0, 255))
    g = _image(tmp_path / "g.jpg", (0, 255, 0))
    inputs = ReportInputs(
        title="Evaluation",
        headline={"Acc@1 (gt boxes)": 0.5, "Acc@10 (gt boxes)": 0.9},
        tables=[
            ReportTable(
                "Retrieval", pd.DataFrame({"model": ["m0"], "Acc@10": [0.9], "paper": [0.868]})
            ),
            ReportTable("Empty value", pd.DataFrame({"model": ["x"], "AP": [np.nan]})),
        ],
        acc_curves={"m0": {1: 0.5, 5: 0.8, 10: 0.9}},
        examples=[
            ExampleQuery(
                q,
                (0, 0, 20, 20),
                [
                    ExampleResult(g, (5, 5, 30, 25), True),
                    ExampleResult(str(tmp_path / "missing.jpg"), (0, 0, 5, 5), False),
                ],
            )
        ],
        data_version="abc.dir",
        configs={"profile": {"name": "tiny"}},
    )
    paths = write_report(inputs, tmp_path / "report")
    md = paths["markdown"].read_text()
    assert "| m0 | 0.9000 | 0.8680 |" in md
    assert "| x | – |" in md  # a missing number is shown as missing, never as 0
    assert "abc.dir" in md and "acc_at_k.png" in md
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 2  # both figures embedded
    assert "<table>" in html
    grid = Image.open(paths["examples.png"])
    assert grid.size[0] > grid.size[1]


def test_rewriting_replaces_the_whole_report(tmp_path: Path):
    out = tmp_path / "r"
    write_report(ReportInputs(title="a", headline={}, acc_curves={"x": {1: 0.1}}), out)
    write_report(ReportInputs(title="b", headline={}), out)
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]
