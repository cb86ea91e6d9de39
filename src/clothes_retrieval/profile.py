"""Pipeline profiles: one YAML file per dataset and scale, all run by the same asset graph.

A profile names its data sources (``data.sources``: adapter, folder, role), the taxonomy
they are seen through, one section per stage and the evaluation protocol. Each section
validates into that stage's frozen config, so a misspelt key fails at load time with its
full path (``crops.max_hamming``) and the file's name; the retrieval models and detectors
it names are resolved then too, so a misspelt entry fails before anything trains.
Relative paths are resolved against the project root (the nearest ancestor of the profile
file holding ``pyproject.toml``), and ``${shared_data}`` stands for the shared photos
(:func:`shared_data_root`), so the same profile works from any working directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from clothes_retrieval.config import (
    ConfigError,
    FrozenConfig,
    deep_merge,
    dump_config,
    load_yaml,
    validate_config,
)
from clothes_retrieval.data.crops import CropConfig
from clothes_retrieval.data.sample import SampleDataConfig
from clothes_retrieval.data.sources.combine import SourceConfig
from clothes_retrieval.index import IndexConfig
from clothes_retrieval.operations import OperationsConfig
from clothes_retrieval.search import BoxBudgetConfig, PostprocessConfig
from clothes_retrieval.service.config import ServeConfig
from clothes_retrieval.weights import WeightsConfig

__all__ = [
    "DataConfig",
    "EvaluationConfig",
    "PipelineProfile",
    "load_profile",
    "parse_overrides",
    "project_root_of",
    "shared_data_root",
]


class DataConfig(FrozenConfig):
    """The profile's data sources (name -> adapter, folder, role) and their one taxonomy."""

    sources: dict[str, SourceConfig] = Field(
        min_length=1, description="name -> source; see clothes_retrieval.data.sources.combine"
    )
    taxonomy: str | None = Field(
        default=None,
        description="configs/taxonomy/<name>.yaml every source is mapped through (unmapped "
        "categories dropped); None keeps the sources' own categories",
    )
    generate_sample: bool = Field(
        default=False,
        description="the main job writes the synthetic sample (DeepFashion2 layout) into the "
        "root of the first source (then `dvc add`s it)",
    )

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.generate_sample and self.sample_source.source != "deepfashion2":
            raise ValueError(
                "generate_sample: the sample is written into the first source, which must use "
                "the deepfashion2 adapter"
            )
        for q_name, q in self.sources.items():
            if q.role != "queries":
                continue
            for t_name, t in self.sources.items():
                if t.role in ("training", "splits") and q.overlaps(t):
                    raise ValueError(
                        f"sources.{q_name} (queries) and sources.{t_name} ({t.role}) read the "
                        "same photos: query photos must never be trained on; give them "
                        "disjoint `photos` ranges or folders"
                    )
        return self

    @property
    def sample_source(self) -> SourceConfig:
        return next(iter(self.sources.values()))

    def load_taxonomy(self) -> Any:
        """The :class:`~clothes_retrieval.data.taxonomy.Taxonomy` every source is mapped
        through, or None (the sources' own categories)."""
        from clothes_retrieval.data.taxonomy import load_taxonomy

        return load_taxonomy(self.taxonomy) if self.taxonomy else None


class TrainingProcesses(FrozenConfig):
    """How a stage's trainings spread over GPUs: one process each (torchrun; detectors through
    mmengine's pytorch launcher, retrieval models with DDP). Batch sizes are per process."""

    world_size: int = Field(default=1, ge=1, description="training processes, one per GPU")
    scale_lr: bool = Field(
        default=True, description="with world_size > 1, LR × world_size (linear scaling rule)"
    )


class DetectionStageConfig(TrainingProcesses):
    """Which detectors this profile trains (one asset each) and how their boxes fuse."""

    configs: Path = Field(default=Path("configs/detectors"), description="detector config folder")
    detectors: tuple[str, ...] = Field(
        default=(), description="detector config names, best first: the order WBF fuses in"
    )
    profile: str = Field(default="sample", description="the detector YAMLs' profile (paper, ...)")
    device: str | None = Field(default=None, description="None: cuda when available, else cpu")
    amp: bool = Field(default=True, description="mixed precision on CUDA (AmpOptimWrapper)")
    max_epochs: int | None = Field(default=None, ge=1, description="cap epochs (smoke runs)")
    max_train_images: int | None = Field(
        default=None, ge=1, description="train on the first N images only (smoke runs)"
    )
    photo_sources: tuple[Literal["user", "shop"], ...] = Field(
        default=("user", "shop"),
        min_length=1,
        description="photos the detectors train on and run on: consumer (user) and/or shop",
    )
    datasets: tuple[str, ...] | None = Field(
        default=None,
        description="datasets (item `dataset`) the detectors train on; None: every source",
    )
    validate_during_training: bool = Field(
        default=True, description="score COCO AP on the search split after each epoch"
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


class RetrievalStageConfig(TrainingProcesses):
    """Which retrieval models of the registry this profile trains (one asset each)."""

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
    box_budget: BoxBudgetConfig = Field(
        default_factory=BoxBudgetConfig,
        description="a reduced fused-box set searched beside the full one (Table 7); off: none",
    )
    whitening_train_max: int = Field(
        default=20000,
        ge=2,
        description="training-split boxes embedded to fit whitening (a seeded sample above it)",
    )
    paper_reference: dict[str, str] = Field(
        default_factory=dict, description="our model -> the paper's model (m0..m17) shown beside it"
    )

    def whitens(self) -> bool:
        """Whether a compared post-processing setting fits a whitening (on training vectors)."""
        return any(p.whitening.mode != "none" for p in self.postprocess.values())


class EvaluationConfig(FrozenConfig):
    """How the search split is scored, and the line the run ends with."""

    protocol: Literal["deepfashion2", "category"] = Field(
        default="deepfashion2",
        description="deepfashion2: the official consumer-to-shop instance rules; category: a "
        "gallery photo of the query's class is a hit, a query answered by its best fused box "
        "of IoU >= match_iou (clothes_retrieval.evaluation)",
    )
    match_iou: float = Field(default=0.5, gt=0, le=1, description="category: box match rule")
    ks: tuple[int, ...] = Field(default=(1, 5, 10, 20), description="Acc@k reported (1, 10 kept)")
    title: str | None = Field(default=None, description="the last line's prefix (None: the name)")
    headline: str | None = Field(
        default=None, description="model or ensemble of the last line (None: search.publish)"
    )
    test_split: str | None = Field(
        default=None,
        description="a split folder of the deepfashion2 source with images and the retrieval "
        "info files but no annotations (DeepFashion2's test): the published system's "
        "submission JSON for it (asset test_submission); None: none",
    )
    targets: dict[str, float] = Field(
        default_factory=dict,
        description="'<gt|fused> Acc@<k>' -> the value the headline must reach (a warning "
        "check on evaluation_report)",
    )

    @model_validator(mode="after")
    def _check(self) -> EvaluationConfig:
        if 1 not in self.ks or 10 not in self.ks:
            raise ValueError(f"ks: must include 1 and 10 (the headline), got {list(self.ks)}")
        for key in self.targets:
            box, _, metric = key.partition(" ")
            if box not in ("gt", "fused") or not metric.startswith("Acc@"):
                raise ValueError(f"targets: {key!r} is not '<gt|fused> Acc@<k>'")
        return self


class PipelineProfile(FrozenConfig):
    """Everything one pipeline run needs, validated."""

    name: str
    data: DataConfig
    output_root: Path = Path("outputs")
    # A tuning profile: settings are chosen on it, then the profile it tunes is run once.
    # Its YAML is deep-merged over that profile's, and its query photos must lie inside
    # that profile's training photos (checked on load).
    tuning_of: Path | None = None
    sample: SampleDataConfig = SampleDataConfig()
    crops: CropConfig = CropConfig()
    detection: DetectionStageConfig = DetectionStageConfig()
    retrieval: RetrievalStageConfig = RetrievalStageConfig()
    search: SearchStageConfig = SearchStageConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    serve: ServeConfig = ServeConfig()
    weights: WeightsConfig = WeightsConfig()
    operations: OperationsConfig = OperationsConfig()

    @model_validator(mode="after")
    def _check(self) -> PipelineProfile:
        if "fused" in self.search.box_sources and not self.detection.detectors:
            raise ValueError(
                "search.box_sources has 'fused' but detection.detectors is empty; configure "
                "detectors or search on 'gt' boxes only"
            )
        if not any(s.role in ("training", "splits") for s in self.data.sources.values()):
            raise ValueError("data.sources: no source has a training role (training or splits)")
        for name, ens in self.search.ensembles.items():
            unknown = [m for m in ens.models if m not in self.retrieval.models]
            if unknown:
                raise ValueError(
                    f"search.ensembles.{name}: {unknown} are not in retrieval.models "
                    f"{list(self.retrieval.models)}"
                )
        if self.evaluation.test_split and not any(
            s.source == "deepfashion2" for s in self.data.sources.values()
        ):
            raise ValueError(
                "evaluation.test_split: needs a source with the deepfashion2 adapter (the "
                "split is a folder of its root)"
            )
        known = (*self.retrieval.models, *self.search.ensembles)
        for what, name in (
            ("evaluation.headline", self.evaluation.headline),
            ("search.publish.name", self.search.publish.name if self.search.publish else None),
        ):
            if name is not None and self.retrieval.models and name not in known:
                raise ValueError(f"{what}: {name!r} is neither a model nor an ensemble {known}")
        return self

    @property
    def output_dir(self) -> Path:
        """Root of this profile's artifacts: ``<output_root>/<name>``."""
        return self.output_root / self.name

    @property
    def title(self) -> str:
        return self.evaluation.title or self.name

    def resolved(self, project_root: Path) -> PipelineProfile:
        """A copy with every relative path made absolute against ``project_root`` and
        ``${shared_data}`` replaced by :func:`shared_data_root`."""

        def fix(p: Path | None) -> Path | None:
            if p is None:
                return None
            text = str(p).replace(SHARED_DATA, str(shared_data_root(project_root)))
            p = Path(text).expanduser()
            return p if p.is_absolute() else (project_root / p).resolve()

        sources = {
            name: s.model_copy(update={"root": fix(s.root), "dvc_file": fix(s.dvc_file)})
            for name, s in self.data.sources.items()
        }
        retrieval = self.retrieval.model_copy(update={"registry": fix(self.retrieval.registry)})
        detection = self.detection.model_copy(update={"configs": fix(self.detection.configs)})
        serve = self.serve.model_copy(
            update={
                "token_file": fix(self.serve.token_file),
                "gallery_state": fix(self.serve.gallery_state),
            }
        )
        weights = self.weights.model_copy(update={"dir": fix(self.weights.dir)})
        return self.model_copy(
            update={
                "weights": weights,
                "data": self.data.model_copy(update={"sources": sources}),
                "output_root": fix(self.output_root),
                "tuning_of": fix(self.tuning_of),
                "retrieval": retrieval,
                "detection": detection,
                "serve": serve,
            }
        )

    def dump(self) -> dict:
        return dump_config(self)


SHARED_DATA = "${shared_data}"
SHARED_DATA_ENV = "CLOTHES_RETRIEVAL_SHARED_DATA"


def shared_data_root(project_root: Path) -> Path:
    """``$CLOTHES_RETRIEVAL_SHARED_DATA``, else ``../shared/data`` beside the project: what
    ``${shared_data}`` in a profile's paths stands for."""
    env = os.environ.get(SHARED_DATA_ENV)
    return Path(env).expanduser() if env else project_root.parent / "shared" / "data"


def project_root_of(path: Path) -> Path:
    """Nearest ancestor of ``path`` that holds ``pyproject.toml`` (else the current directory)."""
    for parent in [path.resolve().parent, *path.resolve().parents]:
        if (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["a.b=1", "c=[x, y]"]`` -> ``{"a": {"b": 1}, "c": ["x", "y"]}`` (values are YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: use dotted.key=value")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {pair!r}: the value is not YAML ({exc})") from exc
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {pair!r}: {part} is set twice")
        node[parts[-1]] = parsed
    return out


def _check_tuning(profile: PipelineProfile, path: Path) -> None:
    """A tuning profile's queries must be photos its parent trains on: the parent's own
    query photos are never used to choose a setting."""
    if profile.tuning_of is None:
        return
    parent = load_profile(profile.tuning_of)
    if parent.tuning_of is not None:
        raise ConfigError(f"{path}: tuning_of {profile.tuning_of} is itself a tuning profile")
    training = [s for s in parent.data.sources.values() if s.role in ("training", "splits")]
    for name, spec in profile.data.sources.items():
        if spec.role != "queries":
            continue
        if not any(t.contains(spec) for t in training):
            raise ConfigError(
                f"{path}: data.sources.{name}: the tuning queries ({spec.source} {spec.root}, "
                f"photos {spec.photos}) are not inside the training photos of "
                f"{profile.tuning_of}; tuning must not see that profile's query photos"
            )
    if profile.output_dir == parent.output_dir:
        raise ConfigError(f"{path}: a tuning profile needs its own name (output folder)")


def _read_extended(path: Path) -> dict[str, Any]:
    """A profile's YAML; with ``extends: <profile>`` (relative to the project root), that
    profile's YAML with this one deep-merged over it (one base, no chains; ``_delete_:
    true`` in a mapping replaces the base's)."""
    data = load_yaml(path)
    base = data.pop("extends", None)
    if not base:
        return data
    base_path = Path(base)
    if not base_path.is_absolute():
        base_path = project_root_of(path) / base_path
    if not base_path.is_file():
        raise ConfigError(f"{path}: extends: no profile at {base_path}")
    base_data = load_yaml(base_path)
    if "extends" in base_data:
        raise ConfigError(f"{path}: extends {base_path}, which extends another: one base only")
    return deep_merge(base_data, data)


def load_profile(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineProfile:
    """Load and validate a profile, ``overrides`` (nested keys, e.g. from
    :func:`parse_overrides`) deep-merged in first; relative paths become absolute (see
    the module docstring). A tuning profile is checked against the profile it tunes."""
    path = Path(path)
    data = _read_extended(path)
    parent = data.get("tuning_of")
    if parent:
        parent_path = Path(parent)
        if not parent_path.is_absolute():
            parent_path = project_root_of(path) / parent_path
        if not parent_path.is_file():
            raise ConfigError(f"{path}: tuning_of: no profile at {parent_path}")
        data = deep_merge(_read_extended(parent_path), data)
    if overrides:
        data = deep_merge(data, overrides)
    profile = validate_config(PipelineProfile, data, source=str(path))
    profile = profile.resolved(project_root_of(path))
    _check_entries(profile, path)
    _check_tuning(profile, path)
    return profile


def _check_entries(profile: PipelineProfile, path: Path) -> None:
    """Every retrieval model (with the overrides) and detector the profile names resolves."""
    from clothes_retrieval.config import with_overrides
    from clothes_retrieval.detection.config import detector_config_path, load_detector_config
    from clothes_retrieval.retrieval.config import load_registry

    ret = profile.retrieval
    if ret.models:
        registry = load_registry(ret.registry)
        unknown = [n for n in ret.models if n not in registry]
        if unknown:
            raise ConfigError(
                f"{path}: retrieval.models: no retrieval model {unknown} in {ret.registry}; "
                f"known: {sorted(registry)}"
            )
        datasets = {s.dataset for s in profile.data.sources.values()}
        for name in ret.models:
            cfg = with_overrides(
                registry[name], ret.overrides, source=f"{path}: retrieval.overrides"
            )
            absent = [d for d in cfg.data.training_sources if d not in datasets]
            if absent and not cfg.zero_shot:  # a zero-shot entry trains on nothing
                raise ConfigError(
                    f"{path}: retrieval model {name} trains on {absent}, which no data source "
                    f"reads (datasets here: {sorted(datasets)}); add those sources under "
                    "data.sources or drop the model"
                )
    det = profile.detection
    for name in det.detectors:
        config_path = detector_config_path(name, det.configs)
        if not config_path.is_file():
            known = sorted(p.stem for p in Path(det.configs).glob("*.yaml"))
            raise ConfigError(
                f"{path}: detection.detectors: no detector {name!r} in {det.configs}; "
                f"known: {known}"
            )
        try:
            load_detector_config(config_path).profile(det.profile)
        except (ValueError, AttributeError) as exc:
            raise ConfigError(f"{path}: detection.profile: {name}: {exc}") from exc
    from clothes_retrieval.weights import declared_needs

    declared_needs(profile, source=str(path))


def describe_profile(profile: PipelineProfile) -> str:
    """Every stage of ``profile`` in a few lines: what `check-config` shows a person (the
    detectors and models resolved from their configs, the weights, the search settings)."""
    from clothes_retrieval.detection.config import (
        backbone_name,
        detector_config_path,
        load_detector_config,
    )
    from clothes_retrieval.weights import declared_needs, model_config

    data, det, ret, search, ev = (
        profile.data,
        profile.detection,
        profile.retrieval,
        profile.search,
        profile.evaluation,
    )
    lines = [f"{profile.name}: every stage resolves"]
    sources = ", ".join(f"{n} ({s.source}, {s.role})" for n, s in data.sources.items())
    lines.append(f"  data        {sources}; taxonomy {data.taxonomy or 'none'}")
    lines.append(
        f"  crops       max side {profile.crops.max_side}, dedup "
        f"{profile.crops.dedup and profile.crops.dedup_scope}"
    )
    if det.detectors:
        lines.append(
            f"  detection   {len(det.detectors)} detectors, profile {det.profile}, "
            f"{det.world_size} process(es), device {det.device or 'auto'}, AMP {det.amp}"
        )
        for name in det.detectors:
            config = load_detector_config(detector_config_path(name, det.configs))
            p = config.profile(det.profile)
            epochs = det.max_epochs or p.epochs
            lines.append(
                f"    {name:<18} {backbone_name(config, det.profile):<18} "
                f"{p.input_size[0]}x{p.input_size[1]}  {epochs} epochs  batch {p.batch_size}"
                f"/process  lr {p.lr}"
            )
        fusion = det.fusion_config()
        lines.append(
            f"  fusion      {fusion.method.upper()} over {', '.join(fusion.detectors)} "
            f"(iou {fusion.iou_thr}, labels {fusion.label_mode})"
        )
    if ret.models:
        lines.append(
            f"  retrieval   {len(ret.models)} models, {ret.world_size} process(es), "
            f"device {ret.device or 'auto'}"
        )
        for name in ret.models:
            cfg = model_config(profile, name, check=False)
            m = cfg.model
            lines.append(
                f"    {name:<18} {m.backbone:<18} {m.input_size[0]}x{m.input_size[1]}  "
                f"{'+'.join(m.descriptors)} {m.dim}-d  {cfg.train.epochs} epochs  "
                f"lr {cfg.optim.lr}  on {', '.join(cfg.data.training_sources)}"
            )
    needs = declared_needs(profile)
    files = {n.path for n in needs if n.path is not None}
    missing = {n.path for n in needs if n.path is not None and not n.exists}
    randoms = sorted({n.backbone for n in needs if n.source == "random"})
    lines.append(
        f"  weights     {len(files)} file(s), {len(missing)} missing"
        + (f"; random: {', '.join(randoms)}" if randoms else "")
        + " (clothes-retrieval weights --profile ...)"
    )
    lines.append(
        f"  search      split {search.split}, boxes {', '.join(search.box_sources)}; "
        f"{len(search.ensembles)} ensemble(s): {', '.join(search.ensembles) or 'none'}"
    )
    lines.append(f"  postprocess {', '.join(search.postprocess)}")
    if search.publish is not None:
        p = search.publish
        lines.append(f"  publish     {p.name} ({p.box_source} boxes, {p.postprocess})")
    submission = ev.protocol == "deepfashion2"
    lines.append(
        f"  evaluation  {ev.protocol} protocol, Acc@{', '.join(map(str, ev.ks))}"
        + (f"; submission JSON for {search.split}" if submission else "")
        + (f" and the {ev.test_split} split" if ev.test_split else "")
    )
    return "\n".join(lines)
