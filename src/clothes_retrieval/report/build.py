"""Write the evaluation report as Markdown (with PNG figures beside it) and as one
self-contained HTML page (figures embedded as base64), from plain tables and examples.

The report is data in, files out: callers compute the numbers (detection AP, WBF ablation,
Acc@k per model / ensemble / post-processing setting) and pass them as
:class:`ReportTable` objects, in the paper's layouts; this module only renders. Each table
may carry the paper's own figures as a reference column so our numbers sit beside them.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont, ImageOps

from clothes_retrieval.io import atomic_dir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

__all__ = [
    "NEAREST_NEIGHBOUR",
    "AccCurve",
    "ReportFigure",
    "ReportTable",
    "ExampleResult",
    "ExampleQuery",
    "ReportInputs",
    "acc_curves_figure",
    "confusion_figure",
    "example_grid",
    "figure_png",
    "fusion_ablation_figure",
    "grid_labels",
    "plot_acc_curves",
    "write_report",
]

# The post-processing label of plain nearest-neighbour search
# (``clothes_retrieval.search.rank.PostprocessConfig().label()``): drawn as solid lines.
NEAREST_NEIGHBOUR = "nearest neighbour"


@dataclass(frozen=True)
class ReportFigure:
    """A PNG figure: its file name beside the report, its title, its bytes."""

    name: str
    title: str
    png: bytes


@dataclass(frozen=True)
class ReportTable:
    """One table of the report: a title, a caption, the rows as a DataFrame, and figures
    drawn right after it."""

    title: str
    frame: pd.DataFrame
    caption: str = ""
    float_format: str = "{:.4f}"
    figures: Sequence[ReportFigure] = ()


@dataclass(frozen=True)
class AccCurve:
    """Acc@k of one experiment: which model or ensemble, on which boxes, with which
    post-processing (its label; :data:`NEAREST_NEIGHBOUR` for plain search)."""

    name: str
    box_source: str
    postprocess: str
    acc: Mapping[int, float]  # k -> Acc@k

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "box_source": self.box_source,
            "postprocess": self.postprocess,
            "acc": {str(k): v for k, v in sorted(self.acc.items())},
        }


@dataclass(frozen=True)
class ExampleResult:
    """One retrieved gallery entry: its image, its box, whether it is a correct match and
    its score in the ranking (the similarity to the query; None: not known)."""

    image_path: str
    box: tuple[float, float, float, float]
    hit: bool
    score: float | None = None


@dataclass(frozen=True)
class ExampleQuery:
    """A query crop and its top results, for the example grid."""

    image_path: str
    box: tuple[float, float, float, float]
    results: Sequence[ExampleResult]
    label: str = ""  # drawn under the query crop (its category name)


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows."""

    title: str
    headline: Mapping[str, float]
    tables: Sequence[ReportTable] = ()
    acc_curves: Sequence[AccCurve] = ()  # drawn one panel per box source
    examples: Sequence[ExampleQuery] = ()
    data_version: str = ""
    configs: Mapping[str, Any] = field(default_factory=dict)
    notes: Sequence[str] = ()


def _fmt(value: Any, float_format: str) -> str:
    if isinstance(value, float | np.floating):
        return "–" if np.isnan(value) else float_format.format(value)
    return str(value)


def _markdown_table(table: ReportTable) -> str:
    df = table.frame
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "---|" * len(df.columns)
    rows = [
        "| " + " | ".join(_fmt(v, table.float_format) for v in row) + " |"
        for row in df.itertuples(index=False)
    ]
    return "\n".join([header, sep, *rows])


def _html_table(table: ReportTable) -> str:
    df = table.frame
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(_fmt(v, table.float_format))}</td>" for v in row)
        + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# Post-processing settings other than nearest neighbour, in order of first appearance.
_POST_STYLES = (("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1, 1, 1)), "v"), ((0, (1, 3)), "P"))


def acc_curves_figure(curves: Sequence[AccCurve]) -> Figure:
    """Acc@k against k: one panel per box source (shared y axis), one colour per model or
    ensemble (the same in every panel), one line style per post-processing setting
    (nearest neighbour solid), and one legend for the whole figure."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    sources = list(dict.fromkeys(c.box_source for c in curves)) or ["(none)"]
    names = list(dict.fromkeys(c.name for c in curves))
    posts = list(dict.fromkeys(c.postprocess for c in curves))
    others = [p for p in posts if p != NEAREST_NEIGHBOUR]
    palette = _palette(len(names))
    colour = {n: palette[i] for i, n in enumerate(names)}
    style = {NEAREST_NEIGHBOUR: ("-", "o")}
    style.update({p: _POST_STYLES[i % len(_POST_STYLES)] for i, p in enumerate(others)})

    fig = Figure(figsize=(4.2 * len(sources) + 2.6, 4.0), dpi=110, layout="constrained")
    axes = fig.subplots(1, len(sources), sharey=True, squeeze=False)[0]
    for ax, source in zip(axes, sources, strict=True):
        for c in curves:
            if c.box_source != source:
                continue
            ks = sorted(c.acc)
            line, marker = style[c.postprocess]
            ax.plot(
                ks,
                [c.acc[k] for k in ks],
                color=colour[c.name],
                linestyle=line,
                marker=marker,
                markersize=4,
                linewidth=1.8 if c.postprocess == NEAREST_NEIGHBOUR else 1.3,
            )
        ax.set_title(f"{source} boxes")
        ax.set_xticks(sorted({k for c in curves if c.box_source == source for k in c.acc}))
        ax.set_xlabel("k")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Acc@k")
    handles = [Line2D([], [], color=colour[n], linewidth=2.5, label=n) for n in names]
    if len(posts) > 1:
        handles += [Line2D([], [], color="none", label="")]  # a gap between the two keys
        handles += [
            Line2D([], [], color="0.35", linestyle=style[p][0], marker=style[p][1], label=p)
            for p in [NEAREST_NEIGHBOUR, *others]
            if p in posts
        ]
    if handles:
        fig.legend(
            handles=handles, loc="outside right upper", fontsize=8, frameon=False, handlelength=3.5
        )
    fig.suptitle("Consumer-to-shop retrieval accuracy")
    return fig


def fusion_ablation_figure(
    frame: pd.DataFrame, paper_ap50: Sequence[float], *, paper_label: str = "paper (Table 5, WBF)"
) -> Figure:
    """AP50 against the number of fused detectors n: ours (the fusion method over the first
    n detectors, its n = 1 the first detector alone), NMS over all of them as a reference,
    and the paper's ``paper_ap50`` (n = 1, 2, ...), all fractions on one 0..1 axis.

    ``frame``: the Table 5 layout (columns method, num_detectors, AP50; method ``"none"``
    is the unfused first detector, ``"nms"`` the reference)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 3.4), dpi=110, layout="constrained")
    ax = fig.subplots()
    nms = frame[frame["method"] == "nms"].sort_values("num_detectors")
    ours = frame[frame["method"] != "nms"].sort_values("num_detectors")
    fused = sorted(set(ours["method"]) - {"none"})
    series = [
        (
            f"ours: {', '.join(fused) or 'first detector'}",
            ours["num_detectors"],
            ours["AP50"],
            "tab:blue",
            "-",
            "o",
            5,
        ),
        (
            "ours: nms (reference)",
            nms["num_detectors"],
            nms["AP50"],
            "tab:gray",
            "none",
            "X",
            -11,  # its value under the point, clear of the fused line's
        ),
        (
            paper_label,
            range(1, len(paper_ap50) + 1),
            list(paper_ap50),
            "tab:orange",
            "--",
            "s",
            5,
        ),
    ]
    for label, xs, ys, colour, line, marker, text_dy in series:
        xs, ys = list(xs), [float(y) for y in ys]
        if not xs:
            continue
        ax.plot(xs, ys, color=colour, linestyle=line, marker=marker, label=label)
        for x, y in zip(xs, ys, strict=True):
            if not np.isnan(y):
                ax.annotate(
                    f"{y:.3f}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(0, text_dy),
                    ha="center",
                    fontsize=7,
                    color=colour,
                )
    n_max = max([len(paper_ap50), *[int(n) for n in frame["num_detectors"]]], default=1)
    ax.set_xticks(range(1, n_max + 1))
    ax.set_xlabel("detectors fused (n)")
    ax.set_ylabel("AP50")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("WBF over n detectors: AP50", fontsize=10)
    return fig


def confusion_figure(frame: pd.DataFrame, *, title: str = "") -> Figure:
    """A confusion table (:func:`clothes_retrieval.report.evaluation.confusion_table`'s
    layout: ``class``, ``queries``, then one count column per first-result class) as a
    heatmap: each row shaded by its fraction of the row's queries, each cell its count."""
    from matplotlib.figure import Figure

    classes = list(frame["class"])
    columns = [c for c in frame.columns if c not in ("class", "queries")]
    counts = frame[columns].to_numpy(np.float64)
    totals = frame["queries"].to_numpy(np.float64)
    fractions = counts / np.maximum(totals, 1)[:, None]
    fig = Figure(
        figsize=(1.2 + 0.55 * len(columns), 1.0 + 0.4 * len(classes)), dpi=110, layout="constrained"
    )
    ax = fig.subplots()
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(len(classes)):
        for j in range(len(columns)):
            if counts[i, j]:
                dark = fractions[i, j] > 0.55
                ax.text(
                    j,
                    i,
                    f"{int(counts[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(
        range(len(classes)),
        [f"{c} ({int(n)})" for c, n in zip(classes, totals, strict=True)],
        fontsize=8,
    )
    ax.set_xlabel("class of the first result")
    ax.set_ylabel("query class (queries)")
    fig.colorbar(image, ax=ax, fraction=0.04, label="share of the row's queries")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def _palette(n: int) -> list:
    """``n`` distinct colours (tab10, then tab20, then evenly spaced hues)."""
    from matplotlib import colormaps

    if n <= 10:
        return list(colormaps["tab10"].colors[:n])
    if n <= 20:
        return list(colormaps["tab20"].colors[:n])
    return [colormaps["hsv"](i / n) for i in range(n)]


def figure_png(fig: Figure) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plot_acc_curves(curves: Sequence[AccCurve]) -> bytes:
    """:func:`acc_curves_figure` as PNG bytes."""
    return figure_png(acc_curves_figure(curves))


def _crop(path: str, box: Sequence[float], size: int) -> Image.Image:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
            crop = im.crop((x1, y1, x2, y2))
    except (OSError, ValueError) as exc:
        logger.warning(
            "report: cannot read %s for the example grid (%s); drawing a blank", path, exc
        )
        crop = Image.new("RGB", (size, size), (200, 200, 200))
    return ImageOps.pad(crop, (size, size), color=(255, 255, 255))


def grid_labels(example: ExampleQuery, top: int = 5) -> list[str]:
    """The captions of one row of :func:`example_grid`: the query's label, then each
    result's score (``""`` where there is none)."""
    scores = ["" if r.score is None else f"{r.score:.3f}" for r in list(example.results)[:top]]
    return [example.label, *scores]


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """``text``, cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def example_grid(examples: Sequence[ExampleQuery], *, tile: int = 96, top: int = 5) -> bytes:
    """Rows: a query crop (blue frame) captioned with its label, then its top results
    captioned with their scores; hits framed green, misses red."""
    font = ImageFont.load_default()
    rows = max(len(examples), 1)
    pad, band = 6, 14  # band: the caption strip under each tile
    row_h = tile + band + pad
    width = (top + 1) * (tile + pad) + pad
    height = rows * row_h + pad
    sheet = Image.new("RGB", (width, height), (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    for r, ex in enumerate(examples):
        y = pad + r * row_h
        tiles = [(_crop(ex.image_path, ex.box, tile), (40, 90, 220))]
        for res in list(ex.results)[:top]:
            tiles.append(
                (_crop(res.image_path, res.box, tile), (30, 160, 60) if res.hit else (210, 50, 50))
            )
        for c, ((img, colour), text) in enumerate(zip(tiles, grid_labels(ex, top), strict=True)):
            x = pad + c * (tile + pad)
            sheet.paste(img, (x, y))
            draw.rectangle([x - 2, y - 2, x + tile + 1, y + tile + 1], outline=colour, width=3)
            if text:
                draw.text(
                    (x + tile // 2, y + tile + 2 + band // 2),
                    _fit(draw, text, font, tile),
                    fill=(20, 20, 20),
                    font=font,
                    anchor="mm",
                )
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def _html_image(title: str, png: bytes) -> str:
    b64 = base64.b64encode(png).decode()
    return f"<img alt='{html.escape(title)}' src='data:image/png;base64,{b64}'>"


def write_report(inputs: ReportInputs, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, the figures and ``report.json`` into ``out_dir``.

    The folder is published atomically: a reader never sees half a report.
    """
    out_dir = Path(out_dir)
    figures: dict[str, bytes] = {}
    for table in inputs.tables:
        for fig in table.figures:
            if fig.name in figures:
                raise ValueError(f"two report figures are named {fig.name!r}; rename one")
            figures[fig.name] = fig.png
    tail_figures: dict[str, bytes] = {}
    if inputs.acc_curves:
        tail_figures["acc_at_k.png"] = plot_acc_curves(inputs.acc_curves)
    if inputs.examples:
        tail_figures["examples.png"] = example_grid(inputs.examples)
    if clash := set(figures) & set(tail_figures):
        raise ValueError(f"a table figure takes a reserved name {sorted(clash)}; rename it")
    figures.update(tail_figures)

    md: list[str] = [f"# {inputs.title}", ""]
    htm: list[str] = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(inputs.title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}th{background:#f0f0f0}td:first-child{text-align:left}"
        ".caption{color:#555;font-size:0.9em}pre{background:#f7f7f7;padding:1em;overflow:auto}</style>",
        f"</head><body><h1>{html.escape(inputs.title)}</h1>",
    ]
    if inputs.data_version:
        md += [f"Data version: `{inputs.data_version}`", ""]
        htm.append(f"<p>Data version: <code>{html.escape(inputs.data_version)}</code></p>")
    if inputs.headline:
        md += ["## Headline", ""]
        md += [f"- **{k}**: {_fmt(v, '{:.4f}')}" for k, v in inputs.headline.items()]
        md.append("")
        items = "".join(
            f"<li><b>{html.escape(k)}</b>: {html.escape(_fmt(v, '{:.4f}'))}</li>"
            for k, v in inputs.headline.items()
        )
        htm.append(f"<h2>Headline</h2><ul>{items}</ul>")
    for table in inputs.tables:
        md += [f"## {table.title}", ""]
        if table.caption:
            md += [table.caption, ""]
        md += [_markdown_table(table), ""]
        htm.append(f"<h2>{html.escape(table.title)}</h2>")
        if table.caption:
            htm.append(f"<p class='caption'>{html.escape(table.caption)}</p>")
        htm.append(_html_table(table))
        for fig in table.figures:
            md += [f"![{fig.title}]({fig.name})", ""]
            htm.append(_html_image(fig.title, fig.png))
    for name, data in tail_figures.items():
        title = (
            "Acc@k curves"
            if name.startswith("acc")
            else "Example queries (blue, with their class) and top results (green: hit, "
            "red: miss; the number: similarity to the query)"
        )
        md += [f"## {title}", "", f"![{title}]({name})", ""]
        htm.append(f"<h2>{html.escape(title)}</h2>" + _html_image(title, data))
    if inputs.notes:
        md += ["## Notes", ""] + [f"- {n}" for n in inputs.notes] + [""]
        htm.append(
            "<h2>Notes</h2><ul>"
            + "".join(f"<li>{html.escape(n)}</li>" for n in inputs.notes)
            + "</ul>"
        )
    if inputs.configs:
        text = json.dumps(inputs.configs, indent=2, default=str)
        md += ["## Configuration", "", "```json", text, "```", ""]
        htm.append(f"<h2>Configuration</h2><pre>{html.escape(text)}</pre>")
    htm.append("</body></html>")

    summary = {
        "title": inputs.title,
        "headline": dict(inputs.headline),
        "data_version": inputs.data_version,
        "tables": {t.title: t.frame.to_dict(orient="records") for t in inputs.tables},
        "acc_curves": [c.to_json() for c in inputs.acc_curves],
    }
    with atomic_dir(out_dir) as tmp:
        (tmp / "report.md").write_text("\n".join(md))
        (tmp / "report.html").write_text("\n".join(htm))
        (tmp / "report.json").write_text(json.dumps(summary, indent=2, default=str))
        for name, data in figures.items():
            (tmp / name).write_bytes(data)
    paths = {
        "markdown": out_dir / "report.md",
        "html": out_dir / "report.html",
        "json": out_dir / "report.json",
    }
    paths.update({name: out_dir / name for name in figures})
    return paths
