"""The real benchmark's report: Acc@k per model and box source, per-class Acc@1, curves,
and example queries with their top product photos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from clothes_retrieval.real_benchmark.config import RealBenchmarkConfig
from clothes_retrieval.real_benchmark.steps import BenchmarkData, config_record

__all__ = ["write_report"]


def _examples(data: BenchmarkData, ranked_path: Path, n: int) -> list:
    from clothes_retrieval.report.build import ExampleQuery, ExampleResult

    ranked = pd.read_parquet(ranked_path)
    ranked = ranked[ranked["boxes"] == "gt"].reset_index(drop=True)
    queries = data.queries.set_index("item_uid")
    gallery = data.gallery
    # Spread the examples over the classes: the first query of each class, then more.
    order = ranked.groupby("query_class", sort=True).cumcount().sort_values(kind="stable")
    examples = []
    for idx in order.index[:n]:
        row = ranked.loc[idx]
        q = queries.loc[row["item_uid"]]
        results = []
        for g in row["top_rows"]:
            if g < 0:
                continue
            item = gallery.iloc[int(g)]
            results.append(
                ExampleResult(
                    str(item["image_path"]),
                    (0.0, 0.0, float(item["image_width"]), float(item["image_height"])),
                    item["category_name"] == row["query_class"],
                )
            )
        examples.append(
            ExampleQuery(
                str(q["image_path"]),
                (float(q["x1"]), float(q["y1"]), float(q["x2"]), float(q["y2"])),
                results,
                label=str(row["query_class"]),
            )
        )
    return examples


def write_report(
    out_dir: Path,
    results: dict[str, dict[str, Any]],
    data: BenchmarkData,
    config: RealBenchmarkConfig,
    *,
    headline: str,
    examples: int = 10,
) -> Path:
    """Write ``out_dir/report/`` (Markdown, HTML, JSON, figures); returns the Markdown path."""
    from clothes_retrieval.real_benchmark.run import headline_line
    from clothes_retrieval.report.build import ReportInputs, ReportTable
    from clothes_retrieval.report.build import write_report as render

    rows, curves = [], {}
    for name, res in results.items():
        for boxes in ("gt", "detected"):
            if boxes not in res:
                continue
            accs = {int(k.split("@")[1]): v for k, v in res[boxes].items() if k.startswith("acc@")}
            rows.append(
                {
                    "model": name,
                    "boxes": "ground truth" if boxes == "gt" else "detected (fused)",
                    **{f"Acc@{k}": accs[k] for k in sorted(accs)},
                    "box recall": res[boxes].get("box_recall", 1.0),
                }
            )
            curves[f"{name} ({boxes})"] = accs
    per_class = pd.DataFrame(
        {
            name: {c: v["acc@1"] for c, v in res["gt_per_class"].items()}
            for name, res in results.items()
        }
    )
    per_class.insert(0, "queries", pd.Series(data.queries["category_name"].value_counts()))
    per_class = per_class.reset_index(names="class")
    head = results[headline]
    summary = data.summary()
    targets = config.targets
    notes = [
        "Queries: garments of the query street photos (ground-truth boxes, or the highest-"
        f"scored fused box with IoU >= {config.detection.match_iou}; none: a miss). Gallery: "
        "the product photos' validation split. Hit at k: a gallery photo of the query's class "
        "among the first k.",
        f"Search: {config.retrieval.postprocess.label()} over L2-normalised embeddings.",
        "Reference (data README, all 1,004 CCP photos vs a 372-photo product split, GT boxes): "
        "zero-shot ImageNet EfficientNet-Lite0 Acc@1 0.506, Acc@10 0.812.",
        f"Targets: GT Acc@1 >= {targets.get('gt_acc@1')}, detected Acc@1 >= "
        f"{targets.get('detected_acc@1')} (model {headline}).",
        headline_line(head),
    ]
    if config.tuning:
        lo, hi = config.street_split.queries
        notes.insert(
            0,
            f"TUNING RUN: the queries are street training-part photos {lo}-{hi}, not the "
            "benchmark's query photos. Choose settings here; measure once without --tuning.",
        )
    inputs = ReportInputs(
        title="Real street-to-shop benchmark (category level)",
        headline={
            "gt Acc@1": head["gt"]["acc@1"],
            "gt Acc@10": head["gt"]["acc@10"],
            **(
                {
                    "detected Acc@1": head["detected"]["acc@1"],
                    "detected Acc@10": head["detected"]["acc@10"],
                }
                if "detected" in head
                else {}
            ),
        },
        tables=[
            ReportTable("Acc@k by model and boxes", pd.DataFrame(rows)),
            ReportTable(
                "Acc@1 per class (ground-truth boxes)",
                per_class,
                caption="A class with few queries has a noisy accuracy.",
            ),
            ReportTable(
                "Data",
                pd.DataFrame(
                    [{"what": k, "count": v} for k, v in summary.items() if isinstance(v, int)]
                ),
                float_format="{:.0f}",
            ),
        ],
        acc_curves=curves,
        examples=_examples(data, out_dir / "evaluation" / headline / "ranked.parquet", examples),
        configs=config_record(config),
        notes=notes,
    )
    paths = render(inputs, out_dir / "report")
    return paths["markdown"]
