"""The real street-to-shop benchmark as assets (job ``real_benchmark_job``).

Sources (group ``real_benchmark_sources``), one asset per input root, each read by its
source adapter and mapped to the taxonomy: ``real_street_train_items``,
``real_query_items``, ``real_product_items``. Then (group ``real_benchmark``):
``real_fused_boxes`` (detectors trained on the street training photos, run and fused on
the query photos), ``real_retrieval_models`` (fine-tuned on the products' train split,
mixed with the street training garments per registry entry) and ``real_benchmark_report``
(Acc@k with ground-truth and detected boxes, for the zero-shot and fine-tuned models).

The source assets run on demand (the job, or the UI): they read folders outside DVC and the
whole benchmark takes about an hour on 2 CPU cores. Everything downstream of them rebuilds
eagerly when a source is re-read, like the sample pipeline's assets.

The data roots and settings come from :class:`RealBenchmarkResource` (default
``configs/real_benchmark.yaml`` with the shared data); the same library functions run
behind ``clothes-retrieval real-benchmark``.
"""

import os
from pathlib import Path

import dagster as dg
import pandas as pd

from clothes_retrieval.real_benchmark import load_benchmark_config
from clothes_retrieval.real_benchmark.config import RealBenchmarkConfig, repo_path
from clothes_retrieval.real_benchmark.run import (
    detect_queries,
    evaluate_and_report,
    headline_line,
    load_models,
    train_models,
)
from clothes_retrieval.real_benchmark.steps import read_data, read_role, write_role
from orchestration.defs.data_assets import EAGER

SOURCES_GROUP = "real_benchmark_sources"
GROUP = "real_benchmark"
CONFIG_ENV = "CLOTHES_RETRIEVAL_REAL_BENCHMARK"


class RealBenchmarkResource(dg.ConfigurableResource):
    """The benchmark config file and the three data roots (None: the config's, which
    default to the shared data)."""

    config_path: str | None = None
    street_train: str | None = None
    street_queries: str | None = None
    products: str | None = None
    output_dir: str | None = None

    def load(self) -> RealBenchmarkConfig:
        return load_benchmark_config(
            self.config_path or os.environ.get(CONFIG_ENV),
            {
                "street_train": self.street_train,
                "street_queries": self.street_queries,
                "products": self.products,
                "output_dir": self.output_dir,
            },
        )

    def out_dir(self) -> Path:
        return repo_path(self.load().output_dir)


def _source_asset(name: str, role: str, description: str):
    @dg.asset(
        name=name,
        group_name=SOURCES_GROUP,
        kinds={"parquet"},
        description=description,
    )
    def _asset(context: dg.AssetExecutionContext, real_benchmark: RealBenchmarkResource):
        config = real_benchmark.load()
        missing = config.missing_roots()
        if missing:
            raise dg.Failure(
                description="real benchmark data not found: " + "; ".join(missing),
                metadata={"fix": "set the resource's roots or CLOTHES_RETRIEVAL_SHARED_DATA"},
            )
        items, quarantine = read_role(config, role, progress=False)
        path = write_role(real_benchmark.out_dir() / "data", role, items, quarantine)
        counts = items["category_name"].value_counts().sort_index()
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(path)),
                "root": dg.MetadataValue.path(str(config.roots()[_ROOT[role]])),
                "items": len(items),
                "photos": int(items["image_path"].nunique()),
                "quarantined": len(quarantine),
                "items_per_class": dg.MetadataValue.json({k: int(v) for k, v in counts.items()}),
            }
        )

    return _asset


_ROOT = {"street_train": "street_train", "queries": "street_queries", "products": "products"}

real_street_train_items = _source_asset(
    "real_street_train_items",
    "street_train",
    "Garments of the street training photos (detector and mixed-model training).",
)
real_query_items = _source_asset(
    "real_query_items",
    "queries",
    "Garments of the query street photos: the benchmark's queries (never trained on).",
)
real_product_items = _source_asset(
    "real_product_items",
    "products",
    "Product photos: train/ (fine-tuning) and validation/ (the gallery).",
)


@dg.asset(
    deps=[real_street_train_items, real_query_items],
    group_name=GROUP,
    automation_condition=EAGER,
    kinds={"pytorch"},
    description="Detectors trained on the street training photos; their fused boxes on the "
    "query photos.",
)
def real_fused_boxes(context: dg.AssetExecutionContext, real_benchmark: RealBenchmarkResource):
    config = real_benchmark.load()
    out = real_benchmark.out_dir()
    data = read_data(out / "data", config)
    fused = detect_queries(config, data, out / "detection", progress=False)
    photos = data.queries["image_path"].nunique()
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(out / "detection" / "fused.parquet")),
            "detectors": ", ".join(config.detection.detectors),
            "boxes": len(fused),
            "boxes_per_photo": round(len(fused) / max(photos, 1), 2),
        }
    )


@dg.asset(
    deps=[real_street_train_items, real_product_items],
    group_name=GROUP,
    automation_condition=EAGER,
    kinds={"pytorch"},
    description="Fine-tuned retrieval models (registry entries of the benchmark config).",
)
def real_retrieval_models(context: dg.AssetExecutionContext, real_benchmark: RealBenchmarkResource):
    config = real_benchmark.load()
    out = real_benchmark.out_dir()
    runs = train_models(config, read_data(out / "data", config), out / "retrieval", progress=False)
    return dg.MaterializeResult(
        metadata={name: dg.MetadataValue.path(str(path)) for name, path in runs.items()}
    )


@dg.asset(
    deps=[real_fused_boxes, real_retrieval_models, real_query_items, real_product_items],
    group_name=GROUP,
    automation_condition=EAGER,
    kinds={"markdown"},
    check_specs=[dg.AssetCheckSpec("real_benchmark_targets", asset="real_benchmark_report")],
    description="Acc@k (GT and detected boxes) of the zero-shot and fine-tuned models; report.",
)
def real_benchmark_report(context: dg.AssetExecutionContext, real_benchmark: RealBenchmarkResource):
    config = real_benchmark.load()
    out = real_benchmark.out_dir()
    data = read_data(out / "data", config)
    fused_path = out / "detection" / "fused.parquet"
    fused = pd.read_parquet(fused_path) if fused_path.is_file() else None
    results, report = evaluate_and_report(
        config, data, fused, load_models(config, out / "retrieval"), out, progress=False
    )
    head = results[config.retrieval.headline]
    line = headline_line(head)
    context.log.info(line)
    gt1 = head["gt"]["acc@1"]
    det1 = head.get("detected", {}).get("acc@1")
    want_gt = config.targets.get("gt_acc@1", 0.0)
    want_det = config.targets.get("detected_acc@1", 0.0)
    passed = gt1 >= want_gt and (det1 is None or det1 >= want_det)
    yield dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(str(report)),
            "line": line,
            "headline_model": config.retrieval.headline,
            **{
                f"{name} {boxes} acc@{k}": res[boxes][f"acc@{k}"]
                for name, res in results.items()
                for boxes in ("gt", "detected")
                if boxes in res
                for k in (1, 10)
            },
        }
    )
    yield dg.AssetCheckResult(
        check_name="real_benchmark_targets",
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "gt_acc@1": gt1,
            "gt_target": want_gt,
            "detected_acc@1": det1 if det1 is not None else float("nan"),
            "detected_target": want_det,
        },
        description="the headline model reaches the configured Acc@1 targets",
    )


REAL_BENCHMARK_ASSETS = [
    real_street_train_items,
    real_query_items,
    real_product_items,
    real_fused_boxes,
    real_retrieval_models,
    real_benchmark_report,
]

real_benchmark_job = dg.define_asset_job(
    "real_benchmark_job",
    selection=dg.AssetSelection.groups(SOURCES_GROUP, GROUP),
    description="The real street-to-shop benchmark: street photos -> product photos, Acc@k.",
)
