"""The real street-to-shop benchmark's config: data roots, split, detectors, models.

Three data roots are separate so that any can point at another copy (e.g. a held-out set):

- ``street_train``: street photos the detectors (and the mixed retrieval model) train on;
- ``street_queries``: street photos whose garments are the queries;
- ``products``: product photos, ``train/<class>/`` to fine-tune on and ``validation/<class>/``
  as the gallery.

Each defaults to the shared data (``$CLOTHES_RETRIEVAL_SHARED_DATA``, else ``../shared/data``
beside the repository). When ``street_train`` and ``street_queries`` are the same folder,
its photos are split by number (``street_split``); the two parts must not overlap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from clothes_retrieval.config import ConfigError, FrozenConfig, load_yaml, validate_config
from clothes_retrieval.data.crops import CropConfig
from clothes_retrieval.fusion.config import FusionConfig
from clothes_retrieval.search.rank import PostprocessConfig

__all__ = [
    "REPO_ROOT",
    "RealBenchmarkConfig",
    "check_models",
    "load_benchmark_config",
    "shared_data_root",
]

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_DATA_ENV = "CLOTHES_RETRIEVAL_SHARED_DATA"
DEFAULT_CONFIG = REPO_ROOT / "configs" / "real_benchmark.yaml"


def shared_data_root() -> Path:
    """``$CLOTHES_RETRIEVAL_SHARED_DATA``, else ``../shared/data`` beside the repository."""
    env = os.environ.get(SHARED_DATA_ENV)
    return Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data"


class StreetSplit(FrozenConfig):
    """Photo-number ranges (inclusive) of the training and query parts of one folder."""

    train: tuple[int, int] = (1, 300)
    queries: tuple[int, int] = (301, 500)

    @model_validator(mode="after")
    def _check(self) -> StreetSplit:
        for name, (lo, hi) in (("train", self.train), ("queries", self.queries)):
            if lo > hi:
                raise ValueError(f"{name}: range {lo}..{hi} is empty")
        if self.train[0] <= self.queries[1] and self.queries[0] <= self.train[1]:
            raise ValueError(
                f"train {self.train} and queries {self.queries} overlap: query photos must "
                "not be used for training"
            )
        return self


class BenchmarkDetection(FrozenConfig):
    configs: str = "configs/detectors"  # relative to the repository root, or absolute
    detectors: tuple[str, ...] = ("atss",)
    profile: str = "real"
    max_epochs: int | None = Field(None, ge=1)  # None: the profile's epochs
    score_thr: float = Field(0.05, ge=0, le=1)
    max_per_image: int = Field(20, ge=1)
    batch_size: int = Field(8, ge=1)
    cpu_threads: int | None = Field(2, ge=1)
    fusion: dict[str, Any] = Field(default_factory=dict)  # FusionConfig keys but detectors
    match_iou: float = Field(0.5, gt=0, le=1)  # a detection answers a query at IoU >= this

    def fusion_config(self) -> FusionConfig:
        return validate_config(
            FusionConfig,
            {**self.fusion, "detectors": list(self.detectors)},
            source="real benchmark detection.fusion",
        )


class EnsembleConfig(FrozenConfig):
    """Models whose L2-normalised embeddings are concatenated (weighted), as in the paper."""

    models: tuple[str, ...] = Field(min_length=2)
    weights: tuple[float, ...] | None = None  # one per model; None: all 1

    @model_validator(mode="after")
    def _check(self) -> EnsembleConfig:
        if self.weights is not None and len(self.weights) != len(self.models):
            raise ValueError(f"weights: {len(self.weights)} for {len(self.models)} models")
        if self.weights is not None and any(w <= 0 for w in self.weights):
            raise ValueError("weights: must be > 0")
        return self


class BenchmarkRetrieval(FrozenConfig):
    registry: str = "configs/retrieval"
    zero_shot: str = "real_lite0_zero_shot"  # a registry entry, used untrained (pooled)
    fine_tuned: tuple[str, ...] = ("real_lite0_mixed",)  # registry entries, trained here
    headline: str = "real_lite0_mixed"  # the model of the last printed line
    # Deep-merged into every fine-tuned entry (e.g. {train: {epochs: 1}} for a smoke test).
    overrides: dict[str, Any] = Field(default_factory=dict)
    # Name -> models (zero_shot and/or fine_tuned) concatenated, also evaluated.
    ensembles: dict[str, EnsembleConfig] = Field(default_factory=dict)
    # The paper's search-side steps (whitening, DBA, alpha-QE, k-reciprocal re-ranking),
    # applied to every model's search; all off by default.
    postprocess: PostprocessConfig = PostprocessConfig()
    device: str | None = None  # None: CUDA when available
    torch_threads: int | None = Field(2, ge=1)
    embed_batch_size: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _check(self) -> BenchmarkRetrieval:
        known = (self.zero_shot, *self.fine_tuned)
        for name, ens in self.ensembles.items():
            if name in known:
                raise ValueError(f"ensembles: {name!r} is also a model's name")
            missing = [m for m in ens.models if m not in known]
            if missing:
                raise ValueError(
                    f"ensembles.{name}: {missing} are neither zero_shot nor fine_tuned"
                )
        if self.headline not in (*known, *self.ensembles):
            raise ValueError(
                f"headline: {self.headline!r} is not zero_shot, one of fine_tuned "
                f"{list(self.fine_tuned)} or an ensemble"
            )
        return self


class RealBenchmarkConfig(FrozenConfig):
    """Everything one run of the real street-to-shop benchmark depends on."""

    street_train: str | None = None  # None: <shared data>/ccp
    street_queries: str | None = None  # None: <shared data>/ccp
    products: str | None = None  # None: <shared data>/clothing-small
    street_source: str = "ccp"  # registered source adapter of the street folders
    product_source: str = "product_folders"
    street_split: StreetSplit = StreetSplit()
    # --tuning: settings are chosen on this split of the training part (both ranges inside
    # street_split.train, so the query photos stay unseen), then measured once on the queries.
    # None: the first two thirds of street_split.train to train on, the last third to query.
    tuning_split: StreetSplit | None = None
    tuning_output_dir: str = "outputs/real_benchmark_tuning"
    tuning: bool = False  # set by for_tuning(); this config runs on the tuning split
    min_pixels: int = Field(1500, ge=1)  # CCP regions smaller than this are noise
    taxonomy: str = "product10"
    crops: CropConfig = CropConfig(
        max_side=256, identity="category", dedup=True, dedup_scope="global", max_hamming=4
    )
    detection: BenchmarkDetection = BenchmarkDetection()
    retrieval: BenchmarkRetrieval = BenchmarkRetrieval()
    ks: tuple[int, ...] = (1, 5, 10, 20)
    max_queries: int | None = Field(None, ge=1)  # cap (first N query photos): smoke tests
    max_train_photos: int | None = Field(None, ge=1)  # cap street training photos: smoke tests
    max_products_per_class: int | None = Field(None, ge=1)  # cap per class and split
    targets: dict[str, float] = Field(
        default_factory=lambda: {"gt_acc@1": 0.65, "detected_acc@1": 0.55}
    )
    output_dir: str = "outputs/real_benchmark"

    @model_validator(mode="after")
    def _check(self) -> RealBenchmarkConfig:
        if 1 not in self.ks or 10 not in self.ks:
            raise ValueError(f"ks: must include 1 and 10 (the headline), got {list(self.ks)}")
        if self.crops.identity != "category":
            raise ValueError("crops.identity: the benchmark is category-level; use 'category'")
        if self.tuning_split is not None and not self.tuning:  # (a tuning run is inside)
            lo, hi = self.street_split.train
            for name, (a, b) in self.tuning_split.model_dump().items():
                if not lo <= a <= b <= hi:
                    raise ValueError(
                        f"tuning_split.{name}: {a}..{b} is not inside street_split.train "
                        f"{lo}..{hi}; tuning must not see the query photos"
                    )
        return self

    def tuning_ranges(self) -> StreetSplit:
        """``tuning_split``, or the default: street_split.train cut at two thirds."""
        if self.tuning_split is not None:
            return self.tuning_split
        lo, hi = self.street_split.train
        if hi - lo < 1:
            raise ValueError(
                f"street_split.train {lo}..{hi}: too few photos to hold out a tuning part; "
                "give tuning_split"
            )
        cut = min(hi - 1, lo + round((hi - lo + 1) * 2 / 3) - 1)
        return StreetSplit(train=(lo, cut), queries=(cut + 1, hi))

    def for_tuning(self) -> RealBenchmarkConfig:
        """This config on the tuning split: both street roles from the ``street_train`` root,
        split by ``tuning_split``, written to ``tuning_output_dir``. Choose settings with it,
        then run the plain config once: the query photos are never used to tune."""
        if self.tuning:
            return self
        data = self.model_dump(mode="json")
        data.update(
            street_split=self.tuning_ranges().model_dump(mode="json"),
            street_queries=self.street_train,  # None: the same shared folder as street_train
            output_dir=self.tuning_output_dir,
            tuning=True,
        )
        return validate_config(RealBenchmarkConfig, data, source="tuning config")

    def roots(self) -> dict[str, Path]:
        """The three data roots, defaults filled in from the shared data."""
        shared = shared_data_root()
        return {
            "street_train": Path(self.street_train or shared / "ccp").expanduser(),
            "street_queries": Path(self.street_queries or shared / "ccp").expanduser(),
            "products": Path(self.products or shared / "clothing-small").expanduser(),
        }

    def missing_roots(self) -> list[str]:
        """Messages for data roots that do not exist (empty: all present)."""
        return [f"{k}: {v} does not exist" for k, v in self.roots().items() if not v.is_dir()]


def repo_path(path: str | Path) -> Path:
    """``path`` as given when absolute, else relative to the repository root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def load_benchmark_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> RealBenchmarkConfig:
    """The config in ``path`` (default ``configs/real_benchmark.yaml``) with ``overrides``."""
    from clothes_retrieval.config import deep_merge

    path = Path(path) if path is not None else DEFAULT_CONFIG
    data = load_yaml(path)
    if overrides:
        data = deep_merge(data, {k: v for k, v in overrides.items() if v is not None})
    config = validate_config(RealBenchmarkConfig, data, source=str(path))
    check_models(config)
    return config


def check_models(config: RealBenchmarkConfig) -> None:
    """Resolve every registry entry the config names (zero-shot and fine-tuned, with the
    overrides): a misspelt or invalid entry fails when the config loads (CLI and Dagster
    alike), not after the detector has trained."""
    from clothes_retrieval.retrieval.config import load_registry, with_overrides

    ret = config.retrieval
    registry = load_registry(repo_path(ret.registry))
    for key, names in (("zero_shot", [ret.zero_shot]), ("fine_tuned", ret.fine_tuned)):
        unknown = [n for n in names if n not in registry]
        if unknown:
            raise ConfigError(
                f"retrieval.{key}: no retrieval model {unknown} in {ret.registry}; "
                f"known: {sorted(registry)}"
            )
    for name in ret.fine_tuned:
        with_overrides(registry[name], ret.overrides, source=f"overrides of {name}")
