import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import to_hex
from PIL import Image

from clothes_retrieval.report import (
    AccCurve,
    ExampleQuery,
    ExampleResult,
    ReportInputs,
    ReportTable,
    write_report,
)
from clothes_retrieval.report.build import (
    NEAREST_NEIGHBOUR,
    acc_curves_figure,
    example_grid,
    grid_labels,
)
from clothes_retrieval.search.rank import PostprocessConfig


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
        acc_curves=[AccCurve("m0", "gt", NEAREST_NEIGHBOUR, {1: 0.5, 5: 0.8, 10: 0.9})],
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
    write_report(
        ReportInputs(title="a", headline={}, acc_curves=[AccCurve("x", "gt", "qe", {1: 0.1})]),
        out,
    )
    write_report(ReportInputs(title="b", headline={}), out)
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]


ACC = {1: 0.2, 5: 0.5, 10: 0.7, 20: 0.8}


def _curves() -> list[AccCurve]:
    """Three models and an ensemble on two box sources; the ensemble also post-processed."""
    out = [
        AccCurve(name, source, NEAREST_NEIGHBOUR, ACC)
        for source in ("gt", "fused")
        for name in ("m0", "m1", "m2", "m0+m1")
    ]
    out += [
        AccCurve("m0+m1", source, post, ACC)
        for source in ("gt", "fused")
        for post in ("whiten-pca", "qe", "rerank")
    ]
    return out


def _lines_by_colour(ax) -> dict[str, list]:
    out: dict[str, list] = {}
    for line in ax.get_lines():
        out.setdefault(to_hex(line.get_color()), []).append(line)
    return out


def test_acc_figure_has_a_panel_per_box_source_and_a_colour_per_model():
    fig = acc_curves_figure(_curves())
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["gt boxes", "fused boxes"]
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
    for ax in axes:
        assert len(ax.get_lines()) == 7  # 4 nearest-neighbour lines, 3 post-processed
        by_colour = _lines_by_colour(ax)
        assert len(by_colour) == 4  # one colour per model or ensemble
        # The ensemble's colour holds its 4 settings, each in its own line style,
        # nearest neighbour solid.
        (ensemble,) = [lines for lines in by_colour.values() if len(lines) == 4]
        assert len({str(line.get_linestyle()) for line in ensemble}) == 4
        assert ensemble[0].get_linestyle() == "-"
        assert all(
            line.get_linestyle() == "-" for lines in by_colour.values() for line in lines[:1]
        )
    # The same model has the same colour in both panels.
    colours = [[to_hex(line.get_color()) for line in ax.get_lines()] for ax in axes]
    assert colours[0] == colours[1]
    # One legend for the figure, none per panel; it names every model and setting once.
    assert all(ax.get_legend() is None for ax in axes)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    for label in ("m0", "m1", "m2", "m0+m1", NEAREST_NEIGHBOUR, "whiten-pca", "qe", "rerank"):
        assert labels.count(label) == 1


def test_acc_figure_colours_follow_the_model_not_the_order():
    """A model missing from one panel does not shift the colours of the others."""
    curves = [
        AccCurve("a", "gt", NEAREST_NEIGHBOUR, ACC),
        AccCurve("b", "gt", NEAREST_NEIGHBOUR, ACC),
    ]
    curves.append(AccCurve("b", "fused", NEAREST_NEIGHBOUR, ACC))
    gt, fused = acc_curves_figure(curves).axes
    assert to_hex(fused.get_lines()[0].get_color()) == to_hex(gt.get_lines()[1].get_color())
    assert to_hex(gt.get_lines()[0].get_color()) != to_hex(gt.get_lines()[1].get_color())


def test_nearest_neighbour_label_is_the_search_config_s():
    assert PostprocessConfig().label() == NEAREST_NEIGHBOUR


def test_report_json_keeps_the_curves_structured(tmp_path: Path):
    import json

    curves = [AccCurve("m0", "fused", "qe", {10: 0.7, 1: 0.2})]
    paths = write_report(ReportInputs(title="t", headline={}, acc_curves=curves), tmp_path / "r")
    assert json.loads(paths["json"].read_text())["acc_curves"] == [
        {"name": "m0", "box_source": "fused", "postprocess": "qe", "acc": {"1": 0.2, "10": 0.7}}
    ]
    png = Image.open(paths["acc_at_k.png"])
    assert png.size[0] > png.size[1]


def _grid_example(tmp_path: Path, label: str, scores: list[float | None]) -> ExampleQuery:
    q = _image(tmp_path / "q.jpg", (0, 0, 255))
    g = _image(tmp_path / "g.jpg", (0, 255, 0))
    return ExampleQuery(
        q, (0, 0, 40, 30), [ExampleResult(g, (0, 0, 40, 30), True, s) for s in scores], label
    )


def test_grid_captions_are_the_class_and_the_scores(tmp_path: Path):
    ex = _grid_example(tmp_path, "trousers", [0.91234, 0.5, None])
    assert grid_labels(ex) == ["trousers", "0.912", "0.500", ""]
    assert grid_labels(ex, top=1) == ["trousers", "0.912"]


def test_grid_draws_the_captions_under_the_tiles(tmp_path: Path):
    tile, pad = 96, 6
    plain = np.asarray(
        Image.open(io.BytesIO(example_grid([_grid_example(tmp_path, "", [None, None])])))
    )
    labelled = np.asarray(
        Image.open(io.BytesIO(example_grid([_grid_example(tmp_path, "skirt", [0.8, None])])))
    )
    assert plain.shape == labelled.shape
    band = slice(pad + tile + 2, pad + tile + 16)  # the strip under the first row's tiles

    def columns(c: int) -> slice:
        return slice(pad + c * (tile + pad), pad + c * (tile + pad) + tile)

    differs = [
        bool((plain[band, columns(c)] != labelled[band, columns(c)]).any()) for c in range(3)
    ]
    assert differs == [True, True, False]  # query label, first score; no score: no text
    tiles = slice(pad, pad + tile)
    assert (plain[tiles] == labelled[tiles]).all()  # the crops themselves are untouched
