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
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageOps

from clothes_retrieval.io import atomic_dir

logger = logging.getLogger(__name__)

__all__ = ["ReportTable", "ExampleResult", "ExampleQuery", "ReportInputs", "write_report"]


@dataclass(frozen=True)
class ReportTable:
    """One table of the report: a title, a caption, and the rows as a DataFrame."""

    title: str
    frame: pd.DataFrame
    caption: str = ""
    float_format: str = "{:.4f}"


@dataclass(frozen=True)
class ExampleResult:
    """One retrieved gallery entry: its image, its box and whether it is a correct match."""

    image_path: str
    box: tuple[float, float, float, float]
    hit: bool


@dataclass(frozen=True)
class ExampleQuery:
    """A query crop and its top results, for the example grid."""

    image_path: str
    box: tuple[float, float, float, float]
    results: Sequence[ExampleResult]
    label: str = ""


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows."""

    title: str
    headline: Mapping[str, float]
    tables: Sequence[ReportTable] = ()
    # label -> {k: Acc@k}; drawn as curves.
    acc_curves: Mapping[str, Mapping[int, float]] = field(default_factory=dict)
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


def plot_acc_curves(curves: Mapping[str, Mapping[int, float]]) -> bytes:
    """Acc@k against k, one line per setting; PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for label, points in curves.items():
        ks = sorted(points)
        ax.plot(ks, [points[k] for k in ks], marker="o", label=label)
    ax.set_xlabel("k")
    ax.set_ylabel("Acc@k")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title("Consumer-to-shop retrieval accuracy")
    if curves:
        ax.legend(fontsize=8, loc="lower right")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


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


def example_grid(examples: Sequence[ExampleQuery], *, tile: int = 96, top: int = 5) -> bytes:
    """Rows: a query crop (blue frame), then its top results; hits framed green, misses red."""
    rows = max(len(examples), 1)
    pad = 6
    width = (top + 1) * (tile + pad) + pad
    height = rows * (tile + pad) + pad
    sheet = Image.new("RGB", (width, height), (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    for r, ex in enumerate(examples):
        y = pad + r * (tile + pad)
        tiles = [(_crop(ex.image_path, ex.box, tile), (40, 90, 220))]
        for res in list(ex.results)[:top]:
            tiles.append(
                (_crop(res.image_path, res.box, tile), (30, 160, 60) if res.hit else (210, 50, 50))
            )
        for c, (img, colour) in enumerate(tiles):
            x = pad + c * (tile + pad)
            sheet.paste(img, (x, y))
            draw.rectangle([x - 2, y - 2, x + tile + 1, y + tile + 1], outline=colour, width=3)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def write_report(inputs: ReportInputs, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, the figures and ``report.json`` into ``out_dir``.

    The folder is published atomically: a reader never sees half a report.
    """
    out_dir = Path(out_dir)
    figures: dict[str, bytes] = {}
    if inputs.acc_curves:
        figures["acc_at_k.png"] = plot_acc_curves(inputs.acc_curves)
    if inputs.examples:
        figures["examples.png"] = example_grid(inputs.examples)

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
    for name, data in figures.items():
        title = (
            "Acc@k curves"
            if name.startswith("acc")
            else "Example queries (blue) and top results (green: hit, red: miss)"
        )
        md += [f"## {title}", "", f"![{title}]({name})", ""]
        b64 = base64.b64encode(data).decode()
        alt = html.escape(title)
        htm.append(f"<h2>{alt}</h2><img alt='{alt}' src='data:image/png;base64,{b64}'>")
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
        "acc_curves": {
            k: {str(kk): vv for kk, vv in v.items()} for k, v in inputs.acc_curves.items()
        },
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
