"""Pipeline profiles: one YAML file per scale (the embedded sample, full DeepFashion2).

A profile names the data root and holds one section per stage; each section validates into
that stage's frozen config, so a misspelt key fails at load time with its full path
(``crops.max_hamming``) and the file's name. Relative paths in a profile are resolved
against the project root (the nearest ancestor of the profile file holding
``pyproject.toml``), so the same profile works from any working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from clothes_retrieval.config import FrozenConfig, dump_config, load_yaml, validate_config
from clothes_retrieval.data.crops import CropConfig
from clothes_retrieval.data.deepfashion2 import ReaderConfig
from clothes_retrieval.data.sample import SampleDataConfig
from clothes_retrieval.index import IndexConfig
from clothes_retrieval.search import PostprocessConfig

__all__ = [
    "DataConfig",
    "PipelineProfile",
    "TrainingSourceConfig",
    "load_profile",
    "project_root_of",
]


class TrainingSourceConfig(FrozenConfig):
    """One extra training dataset read by its source adapter (data/sources/)."""

    source: str = Field(description="a registered source adapter, e.g. street2shop")
    root: Path = Field(description="the dataset folder in the source's native layout")
    splits: tuple[str, ...] = Field(
        default=("train",), description="the source's splits read; all become training crops"
    )
    taxonomy: str | None = Field(
        default="deepfashion2",
        description="configs/taxonomy/<name>.yaml its categories are mapped through (unmapped "
        "categories dropped); None keeps the source's own categories",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword arguments of the adapter"
    )

    @field_validator("source")
    @classmethod
    def _registered(cls, v: str) -> str:
        from clothes_retrieval.data.sources import SOURCES

        if v not in SOURCES:
            raise ValueError(f"unknown source {v!r}; registered: {sorted(SOURCES)}")
        return v


class DataConfig(FrozenConfig):
    """Where the raw data lives and how its version is read."""

    root: Path = Field(description="dataset root in DeepFashion2 layout (<split>/image, annos)")
    dvc_file: Path | None = Field(
        default=Path("data.dvc"),
        description=".dvc file that tracks the data root (or a parent); its md5 is the data "
        "version. None or a missing file: fingerprint the folder instead.",
    )
    generate_sample: bool = Field(
        default=False,
        description="the main job writes the synthetic sample into `root` (then `dvc add`)",
    )
    dataset: str = "deepfashion2"
    # Other datasets whose garments join the retrieval crops as training data (the paper's
    # Table 1; a registry entry's data.training_sources picks which it trains on). Not used
    # for detection or evaluation.
    training_sources: tuple[TrainingSourceConfig, ...] = ()

    @model_validator(mode="after")
    def _distinct_sources(self) -> DataConfig:
        names = [s.source for s in self.training_sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"training_sources: {dup} listed twice")
        if self.dataset in names:
            raise ValueError(f"training_sources: {self.dataset!r} is the main dataset already")
        return self


class DetectionStageConfig(FrozenConfig):
    """Which detectors this profile trains (one partition each) and how their boxes fuse."""

    configs: Path = Field(default=Path("configs/detectors"), description="detector config folder")
    detectors: tuple[str, ...] = Field(
        default=(), description="detector config names, best first: the order WBF fuses in"
    )
    profile: Literal["paper", "sample"] = "sample"
    device: str | None = Field(default=None, description="None: cuda when available, else cpu")
    max_epochs: int | None = Field(default=None, ge=1, description="cap epochs (smoke runs)")
    splits: tuple[str, ...] = Field(
        default=("validation",), description="splits whose images the detectors run on"
    )
    score_thr: float = Field(default=0.05, ge=0, le=1)
    max_per_image: int = Field(default=100, ge=1)
    batch_size: int = Field(default=8, ge=1)
    cpu_threads: int | None = Field(default=None, ge=1)
    fusion: dict[str, Any] = Field(
        default_factory=dict,
        description="FusionConfig keys (iou_thr, skip_box_thr, conf_type, label_mode, weights, "
        "...); the detector order comes from `detectors`",
    )

    @model_validator(mode="after")
    def _fusion_validates(self) -> DetectionStageConfig:
        if self.detectors:
            self.fusion_config()
        return self

    def fusion_config(self) -> Any:
        """The validated :class:`~clothes_retrieval.fusion.FusionConfig` of this stage."""
        from clothes_retrieval.fusion import FusionConfig

        data = {**self.fusion, "detectors": list(self.detectors)}
        return validate_config(FusionConfig, data, source="profile", prefix="detection.fusion")


class RetrievalStageConfig(FrozenConfig):
    """Which retrieval models of the registry this profile trains (one partition each)."""

    registry: Path = Field(default=Path("configs/retrieval"), description="registry folder")
    models: tuple[str, ...] = Field(default=(), description="registry entries to train")
    device: str | None = Field(default=None, description="None: cuda when available, else cpu")
    torch_threads: int | None = Field(default=None, ge=1, description="CPU threads for torch")
    embed_batch_size: int = Field(default=64, ge=1)
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="deep-merged into every model's registry entry (e.g. train.epochs for a "
        "smoke run); the merged config is validated again",
    )


class EnsembleConfig(FrozenConfig):
    """A concatenation of several models' embeddings (the paper's Table 6)."""

    models: tuple[str, ...] = Field(min_length=1)
    weights: dict[str, float] | None = None


class PublishConfig(FrozenConfig):
    """The configuration whose index is published (after the accuracy floor check)."""

    name: str = Field(description="a model of retrieval.models or an ensemble name")
    box_source: str = Field(default="gt", pattern="^(gt|fused)$")
    postprocess: str = Field(default="nearest neighbour", description="a key of search.postprocess")


class SearchStageConfig(FrozenConfig):
    """Embedding sets, the index, the experiments of the report and the publishing floor."""

    split: str = "validation"
    box_sources: tuple[str, ...] = Field(default=("gt",), description="gt and/or fused")
    ensembles: dict[str, EnsembleConfig] = Field(default_factory=dict)
    index: IndexConfig = IndexConfig()
    postprocess: dict[str, PostprocessConfig] = Field(
        default_factory=lambda: {"nearest neighbour": PostprocessConfig()},
        description="post-processing settings compared in the report (name -> setting)",
    )
    publish: PublishConfig | None = None
    acc10_floor: float = Field(
        default=0.0, ge=0, le=1, description="publish only above this Acc@10"
    )
    examples: int = Field(default=8, ge=0, description="example queries drawn in the report")
    paper_reference: dict[str, str] = Field(
        default_factory=dict, description="our model -> the paper's model (m0..m17) shown beside it"
    )


class PipelineProfile(FrozenConfig):
    """Everything one pipeline run needs, validated."""

    name: str
    data: DataConfig
    output_root: Path = Path("outputs")
    sample: SampleDataConfig = SampleDataConfig()
    reader: ReaderConfig = ReaderConfig()
    crops: CropConfig = CropConfig()
    detection: DetectionStageConfig = DetectionStageConfig()
    retrieval: RetrievalStageConfig = RetrievalStageConfig()
    search: SearchStageConfig = SearchStageConfig()

    @property
    def output_dir(self) -> Path:
        """Root of this profile's artifacts: ``<output_root>/<name>``."""
        return self.output_root / self.name

    def resolved(self, project_root: Path) -> PipelineProfile:
        """A copy with every relative path made absolute against ``project_root``."""

        def fix(p: Path | None) -> Path | None:
            if p is None:
                return None
            return p if p.is_absolute() else (project_root / p).resolve()

        sources = tuple(
            s.model_copy(update={"root": fix(s.root)}) for s in self.data.training_sources
        )
        data = self.data.model_copy(
            update={
                "root": fix(self.data.root),
                "dvc_file": fix(self.data.dvc_file),
                "training_sources": sources,
            }
        )
        retrieval = self.retrieval.model_copy(update={"registry": fix(self.retrieval.registry)})
        detection = self.detection.model_copy(update={"configs": fix(self.detection.configs)})
        return self.model_copy(
            update={
                "data": data,
                "output_root": fix(self.output_root),
                "retrieval": retrieval,
                "detection": detection,
            }
        )

    def dump(self) -> dict:
        return dump_config(self)


def project_root_of(path: Path) -> Path:
    """Nearest ancestor of ``path`` that holds ``pyproject.toml`` (else the current directory)."""
    for parent in [path.resolve().parent, *path.resolve().parents]:
        if (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


def load_profile(path: str | Path) -> PipelineProfile:
    """Load and validate a profile; relative paths become absolute (see module docstring)."""
    path = Path(path)
    profile = validate_config(PipelineProfile, load_yaml(path), source=str(path))
    return profile.resolved(project_root_of(path))
