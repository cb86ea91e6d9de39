"""Run the whole real street-to-shop benchmark: data -> detectors -> fused boxes ->
retrieval models -> Acc@k with ground-truth and detected boxes -> report.

Every step writes under ``output_dir`` and records its inputs; a second run with the same
inputs resumes a training run from its last checkpoint and reuses finished steps, changed
inputs start the step afresh (``clothes_retrieval.io.prepare_run_dir``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clothes_retrieval.config import dump_config
from clothes_retrieval.io import file_digest, prepare_run_dir, write_json, write_parquet
from clothes_retrieval.real_benchmark.config import RealBenchmarkConfig, repo_path
from clothes_retrieval.real_benchmark.steps import (
    BenchmarkData,
    config_record,
    evaluate_model,
    prepare_data,
    read_json,
)

__all__ = [
    "BenchmarkResult",
    "detect_queries",
    "evaluate_and_report",
    "load_models",
    "headline_line",
    "run_real_benchmark",
    "table_digest",
    "train_models",
]

log = logging.getLogger(__name__)

_DONE = "done.json"  # marks a finished step folder


def table_digest(table: pd.DataFrame, columns: tuple[str, ...] | None = None) -> str:
    """md5 of a table's content (the given columns), independent of file encoding."""
    cols = list(columns) if columns else [c for c in table.columns if table[c].dtype != object]
    hashed = pd.util.hash_pandas_object(table[cols].reset_index(drop=True), index=False)
    return hashlib.md5(hashed.to_numpy().tobytes()).hexdigest()


_KEY_COLUMNS = ("item_uid", "image_path", "split", "category_name", "x1", "y1", "x2", "y2")


def detect_queries(
    config: RealBenchmarkConfig, data: BenchmarkData, out_dir: Path, *, progress: bool = True
) -> pd.DataFrame:
    """Train each detector on the street training photos, detect on the query photos and
    fuse; returns (and writes ``fused.parquet``) the fused boxes of the query photos."""
    from clothes_retrieval.data.coco import export_coco
    from clothes_retrieval.detection.config import load_detector_config
    from clothes_retrieval.detection.inference import IMAGE_COLUMNS, run_detector
    from clothes_retrieval.detection.train import train_detector
    from clothes_retrieval.fusion import fuse_detections

    det = config.detection
    taxonomy = data.taxonomy
    out_dir.mkdir(parents=True, exist_ok=True)
    train_json = export_coco(
        data.street_train,
        "train",
        out_dir / "coco" / "train.json",
        sources=("user",),
        categories=taxonomy.category_ids,
    ).path
    images = data.queries.drop_duplicates("image_path")[list(IMAGE_COLUMNS)].reset_index(drop=True)
    frames = []
    for name in det.detectors:
        detector = load_detector_config(repo_path(det.configs) / f"{name}.yaml")
        work_dir = out_dir / name
        inputs = {
            "config": dump_config(detector),
            "profile": det.profile,
            "max_epochs": det.max_epochs,
            "classes": list(taxonomy.classes),
            "train": file_digest(train_json),
        }
        prepare_run_dir(work_dir, inputs)
        done = work_dir / _DONE
        if not done.is_file():
            result = train_detector(
                detector,
                det.profile,
                train_json,
                None,
                work_dir,
                max_epochs=det.max_epochs,
                cpu_threads=det.cpu_threads,
                classes=taxonomy.classes,
                progress=progress,
                tracker_group="real-benchmark",
            )
            write_json(done, {"checkpoint": str(result.checkpoint), "seconds": result.seconds})
        checkpoint = Path(read_json(done)["checkpoint"])
        query_key = {"queries": table_digest(images, ("image_path",)), "score_thr": det.score_thr}
        det_path = work_dir / "query_detections.parquet"
        key_path = work_dir / "query_detections.json"
        if det_path.is_file() and key_path.is_file() and read_json(key_path) == query_key:
            detections = pd.read_parquet(det_path)
        else:
            inference = run_detector(
                checkpoint,
                work_dir / "config.py",
                images,
                score_thr=det.score_thr,
                max_per_image=det.max_per_image,
                batch_size=det.batch_size,
                cpu_threads=det.cpu_threads,
                progress=progress,
                detector=name,
            )
            detections = inference.detections
            if len(inference.failures):
                log.warning("%s: %d query photos unreadable", name, len(inference.failures))
            write_parquet(det_path, detections)
            write_json(key_path, query_key)
        frames.append(detections)
    detections = pd.concat(frames, ignore_index=True)
    fused = fuse_detections(detections, det.fusion_config(), progress=progress)
    write_parquet(out_dir / "fused.parquet", fused)
    log.info(
        "fused boxes on %d query photos: %d (%s)",
        images["image_path"].nunique(),
        len(fused),
        "+".join(det.detectors),
    )
    return fused


def _training_crops(
    config: RealBenchmarkConfig, data: BenchmarkData, out_dir: Path, *, progress: bool
) -> pd.DataFrame:
    """Crops of the products' train split and the street training garments, identity =
    class, de-duplicated across both sources (``crops.dedup_scope``)."""
    from clothes_retrieval.data.crops import export_retrieval_crops

    items = pd.concat(
        [data.products[data.products["split"] == "train"], data.street_train],
        ignore_index=True,
    )
    items["split"] = "train"  # one training pool; item_uid keeps the dataset and origin
    inputs = {"crops": dump_config(config.crops), "items": table_digest(items, _KEY_COLUMNS)}
    key = out_dir.with_suffix(".json")
    if (out_dir / "crops.parquet").is_file() and key.is_file() and read_json(key) == inputs:
        return pd.read_parquet(out_dir / "crops.parquet")
    result = export_retrieval_crops(items, out_dir, config.crops, progress=progress)
    write_json(key, inputs)
    return result.crops


def train_models(
    config: RealBenchmarkConfig, data: BenchmarkData, out_dir: Path, *, progress: bool = True
) -> dict[str, Path]:
    """Train (or resume, or reuse) each fine-tuned model; their run folders by name."""
    from clothes_retrieval.retrieval.config import get_model_config
    from clothes_retrieval.retrieval.train import train_retrieval_model

    ret = config.retrieval
    registry = repo_path(ret.registry)
    _set_threads(config)
    runs: dict[str, Path] = {}
    if not ret.fine_tuned:
        return runs
    crops = _training_crops(config, data, out_dir / "crops", progress=progress)
    for name in ret.fine_tuned:
        cfg = get_model_config(name, registry, ret.overrides)
        run_dir = out_dir / name
        inputs = {
            "config": dump_config(cfg),
            "crops": table_digest(crops, ("crop_path", "identity", "phash")),
        }
        prepare_run_dir(run_dir, inputs)
        if not (run_dir / "model.pt").is_file():
            train_retrieval_model(cfg, crops, None, run_dir, device=ret.device, progress=progress)
        runs[name] = run_dir
    return runs


def _set_threads(config: RealBenchmarkConfig) -> None:
    import torch

    if config.retrieval.torch_threads is not None:
        torch.set_num_threads(config.retrieval.torch_threads)


def load_models(config: RealBenchmarkConfig, out_dir: Path) -> dict[str, Any]:
    """The zero-shot embedder, each trained fine-tuned model (from ``out_dir``) and each
    ensemble (a list of ``(model, weight)``), by name."""
    from clothes_retrieval.retrieval.config import get_model_config
    from clothes_retrieval.retrieval.embed import load_trained_model
    from clothes_retrieval.retrieval.model import build_pooled_backbone

    ret = config.retrieval
    _set_threads(config)
    zero_shot = get_model_config(ret.zero_shot, repo_path(ret.registry)).model
    models: dict[str, Any] = {ret.zero_shot: build_pooled_backbone(zero_shot)}
    for name in ret.fine_tuned:
        models[name], _ = load_trained_model(out_dir / name, device=ret.device)
    for name, ens in ret.ensembles.items():
        weights = ens.weights or (1.0,) * len(ens.models)
        models[name] = [(models[m], w) for m, w in zip(ens.models, weights, strict=True)]
    return models


def evaluate_and_report(
    config: RealBenchmarkConfig,
    data: BenchmarkData,
    fused: pd.DataFrame | None,
    models: dict[str, Any],
    out: Path,
    *,
    progress: bool = True,
) -> tuple[dict[str, dict[str, Any]], Path]:
    """Acc@k of every model (GT and detected boxes), the report and ``summary.json``."""
    from clothes_retrieval.real_benchmark.report import write_report

    results = {}
    cache: dict = {}  # each model embeds the gallery and queries once, ensembles reuse it
    for name, model in models.items():
        results[name] = evaluate_model(
            name,
            model,
            data,
            fused,
            config,
            out / "evaluation" / name,
            progress=progress,
            cache=cache,
        )
        log.info("%s: %s", name, headline_line(results[name]))
    headline = config.retrieval.headline
    report = write_report(out, results, data, config, headline=headline)
    write_json(
        out / "summary.json",
        {
            "headline_model": headline,
            "line": headline_line(results[headline]),
            "results": results,
            "data": data.summary(),
        },
    )
    return results, report


@dataclass(frozen=True)
class BenchmarkResult:
    results: dict[str, dict[str, Any]]  # per model
    headline: dict[str, Any]
    report_path: Path
    data_summary: dict[str, Any]
    seconds: float

    @property
    def line(self) -> str:
        return headline_line(self.headline)


def headline_line(result: dict[str, Any]) -> str:
    """``real benchmark: gt acc@1 A acc@10 B, detected acc@1 C acc@10 D``."""
    gt, det = result["gt"], result.get("detected", {})

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    return (
        f"real benchmark: gt acc@1 {fmt(gt['acc@1'])} acc@10 {fmt(gt['acc@10'])}, "
        f"detected acc@1 {fmt(det.get('acc@1'))} acc@10 {fmt(det.get('acc@10'))}"
    )


def run_real_benchmark(
    config: RealBenchmarkConfig, *, progress: bool = True, detect: bool = True
) -> BenchmarkResult:
    """Run every step (resuming finished ones) and write the report."""
    start = time.perf_counter()
    out = repo_path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", config_record(config))
    data = prepare_data(config, out / "data", progress=progress)
    fused = detect_queries(config, data, out / "detection", progress=progress) if detect else None
    train_models(config, data, out / "retrieval", progress=progress)
    models = load_models(config, out / "retrieval")
    results, report = evaluate_and_report(config, data, fused, models, out, progress=progress)
    seconds = time.perf_counter() - start
    headline = results[config.retrieval.headline]
    return BenchmarkResult(results, headline, report, data.summary(), seconds)
