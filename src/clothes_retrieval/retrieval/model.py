"""The retrieval model: a timm backbone and a CGD head, plus its preprocessing.

Preprocessing comes from the backbone's own data config
(:func:`timm.data.resolve_model_data_config`: mean, std, interpolation) with the input size
of the retrieval config. Evaluation squashes the whole crop to the input size (crop_pct 1,
``crop_mode="squash"``): a detection crop is already the object, and a centre crop would
cut garments off. With ``resize: letterbox`` the crop is first padded to the input's aspect
ratio (:class:`Letterbox`), so the squash keeps the garment's shape. Training uses timm's
training transform (random resized crop, flip, colour jitter) from
:class:`~clothes_retrieval.retrieval.config.AugmentConfig`, after the same padding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import create_transform, resolve_model_data_config
from torch import nn
from torchvision import transforms

from clothes_retrieval.retrieval.backbone import create_backbone
from clothes_retrieval.retrieval.config import AugmentConfig, ModelConfig
from clothes_retrieval.retrieval.head import CGDHead
from clothes_retrieval.retrieval.pooling import create_pool

__all__ = [
    "Letterbox",
    "PooledBackbone",
    "RetrievalModel",
    "build_model",
    "build_pooled_backbone",
    "create_eval_transform",
    "create_train_transform",
]


def eval_data_config(backbone: nn.Module, input_size: tuple[int, int]) -> dict[str, Any]:
    """The backbone's timm data config at ``input_size`` (H, W), whole crop squashed."""
    return resolve_model_data_config(
        backbone,
        args={"input_size": (3, *input_size), "crop_pct": 1.0, "crop_mode": "squash"},
    )


class Letterbox:
    """Pad a PIL image, centred, with ``fill`` to the aspect ratio of ``size`` (H, W), so
    that resizing it to ``size`` afterwards keeps the content's shape. Picklable (data
    loader workers)."""

    def __init__(self, size: tuple[int, int], fill: tuple[int, int, int] = (255, 255, 255)):
        self.size = (int(size[0]), int(size[1]))
        self.fill = tuple(int(c) for c in fill)

    def __call__(self, img: Image.Image) -> Image.Image:
        h, w = self.size
        iw, ih = img.size
        if iw * h > ih * w:  # wider than the target: pad top and bottom
            new = (iw, max(ih, round(iw * h / w)))
        else:  # taller (or equal): pad left and right
            new = (max(iw, round(ih * w / h)), ih)
        if new == (iw, ih):
            return img
        canvas = Image.new(img.mode, new, self.fill if img.mode == "RGB" else 0)
        canvas.paste(img, ((new[0] - iw) // 2, (new[1] - ih) // 2))
        return canvas

    def __repr__(self) -> str:
        return f"Letterbox(size={self.size}, fill={self.fill})"


class _Resizing:
    """How a model turns images into its input size (see ``ModelConfig.resize``)."""

    resize: str = "squash"
    letterbox_fill: tuple[int, int, int] = (255, 255, 255)

    def _set_resizing(self, resize: str, letterbox_fill: tuple[int, int, int]) -> None:
        if resize not in ("squash", "letterbox"):
            raise ValueError(f"resize: 'squash' or 'letterbox', got {resize!r}")
        self.resize = resize
        self.letterbox_fill = tuple(letterbox_fill)


class RetrievalModel(_Resizing, nn.Module):
    """Backbone + CGD head. ``forward`` returns (embedding (B, dim), logits or None)."""

    def __init__(
        self,
        backbone: nn.Module,
        head: CGDHead,
        input_size: tuple[int, int],
        *,
        resize: str = "squash",
        letterbox_fill: tuple[int, int, int] = (255, 255, 255),
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.input_size = tuple(input_size)  # (H, W)
        self.data_config = eval_data_config(backbone, self.input_size)
        self._set_resizing(resize, letterbox_fill)

    @property
    def dim(self) -> int:
        return self.head.dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.backbone(x)  # (B, C, h, w)
        if features.ndim != 4:
            raise ValueError(
                f"backbone output has shape {tuple(features.shape)}; the CGD head needs a "
                "(B, C, H, W) feature map (use a convolutional timm model)"
            )
        return self.head(features)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised (B, dim) embeddings, float32 (call in eval mode)."""
        return self(x)[0].float()


class PooledBackbone(_Resizing, nn.Module):
    """A zero-shot embedder: ImageNet backbone features pooled (no head, no training).

    ``embed`` is the L2-normalised (B, C) pooled feature map, so cosine similarity of the
    backbone's own features is the baseline every fine-tuned model is measured against.
    Same interface as :class:`RetrievalModel` for embedding (``embed``, ``dim``,
    ``data_config``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        pool: nn.Module,
        input_size: tuple[int, int],
        *,
        resize: str = "squash",
        letterbox_fill: tuple[int, int, int] = (255, 255, 255),
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pool = pool
        self.input_size = tuple(input_size)  # (H, W)
        self.data_config = eval_data_config(backbone, self.input_size)
        self._set_resizing(resize, letterbox_fill)

    @property
    def dim(self) -> int:
        return int(self.backbone.num_features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        pooled = self.pool(self.backbone(x))  # (B, C, h, w) -> (B, C)
        return F.normalize(pooled.flatten(1), dim=1), None

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)[0].float()


def build_pooled_backbone(config: ModelConfig, *, load_weights: bool = True) -> PooledBackbone:
    """The zero-shot embedder of ``config``: its backbone and weights, pooled with the
    first of its descriptors (``dim`` and the head are not used). ``load_weights=False``
    skips the initial weights (a saved state dict is loaded right after)."""
    backbone = create_backbone(
        config.backbone,
        weights=config.weights if load_weights else "none",
        weights_path=config.weights_path if load_weights else None,
    )
    pool = create_pool(config.descriptors[0], gem_p=config.gem_p, gem_learnable=False)
    return PooledBackbone(
        backbone,
        pool,
        config.input_size,
        resize=config.resize,
        letterbox_fill=config.letterbox_fill,
    ).eval()


def build_model(
    config: ModelConfig, num_classes: int = 0, *, load_weights: bool = True
) -> RetrievalModel:
    """The model for ``config``; ``num_classes`` > 0 adds the auxiliary classifier.

    ``load_weights=False`` skips the backbone's initial weights (used when a trained state
    dict is loaded right after).
    """
    backbone = create_backbone(
        config.backbone,
        weights=config.weights if load_weights else "none",
        weights_path=config.weights_path if load_weights else None,
    )
    head = CGDHead(
        backbone.num_features,
        config.descriptors,
        config.dim,
        num_classes,
        gem_p=config.gem_p,
        gem_learnable=config.gem_learnable,
    )
    return RetrievalModel(
        backbone,
        head,
        config.input_size,
        resize=config.resize,
        letterbox_fill=config.letterbox_fill,
    )


def _with_resizing(model: RetrievalModel | PooledBackbone, transform: Callable) -> Callable:
    if model.resize != "letterbox":
        return transform
    return transforms.Compose([Letterbox(model.input_size, model.letterbox_fill), transform])


def create_eval_transform(model: RetrievalModel | PooledBackbone) -> Callable:
    """PIL image -> normalised (3, H, W) float tensor, from the model's data config (the
    image letterboxed first when the model's ``resize`` is ``letterbox``)."""
    return _with_resizing(model, create_transform(**model.data_config, is_training=False))


def create_train_transform(model: RetrievalModel, augment: AugmentConfig) -> Callable:
    """PIL image -> augmented, normalised (3, H, W) tensor (the eval transform when disabled)."""
    if not augment.enabled:
        return create_eval_transform(model)
    cfg = model.data_config
    return _with_resizing(
        model,
        create_transform(
            input_size=cfg["input_size"],
            is_training=True,
            scale=augment.scale,
            ratio=augment.ratio,
            hflip=augment.hflip,
            vflip=0.0,
            color_jitter=augment.color_jitter if augment.color_jitter > 0 else None,
            interpolation=cfg["interpolation"],
            mean=cfg["mean"],
            std=cfg["std"],
        ),
    )
