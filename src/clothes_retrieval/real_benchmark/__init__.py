"""The real street-to-shop benchmark: street photos' garments (CCP) as queries, product
photos (clothing-dataset-small) as the gallery, category-level hits; with ground-truth
boxes and with the system's own detected and fused boxes; zero-shot and fine-tuned models.

``clothes-retrieval real-benchmark`` runs it; the Dagster job ``real_benchmark_job`` runs
the same steps as assets.
"""

from clothes_retrieval.real_benchmark.config import (
    RealBenchmarkConfig,
    load_benchmark_config,
    shared_data_root,
)
from clothes_retrieval.real_benchmark.run import (
    BenchmarkResult,
    detect_queries,
    headline_line,
    run_real_benchmark,
    train_models,
)
from clothes_retrieval.real_benchmark.steps import (
    BenchmarkData,
    category_accuracy,
    evaluate_model,
    match_detections,
    prepare_data,
)

__all__ = [
    "BenchmarkData",
    "BenchmarkResult",
    "RealBenchmarkConfig",
    "category_accuracy",
    "detect_queries",
    "evaluate_model",
    "headline_line",
    "load_benchmark_config",
    "match_detections",
    "prepare_data",
    "run_real_benchmark",
    "shared_data_root",
    "train_models",
]
