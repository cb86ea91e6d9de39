"""CGD head: a combination of global descriptors (Jun et al. 2019, "Combination of
Multiple Global Descriptors for Image Retrieval"), as used by Ji et al. 2020.

For an ordered list of descriptors (any of SPoC, MAC, GeM) over the backbone's feature map::

    f_i = pool_i(x)                   # (B, C)        one global descriptor each
    e_i = normalize(W_i f_i)          # (B, dim / n)  linear projection, L2-normalised
    e   = normalize(concat(e_1..e_n)) # (B, dim)      the embedding that is retrieved

and an auxiliary classifier on the *first* descriptor only (the CGD paper's
"auxiliary classification loss"): ``logits = Linear(BatchNorm1d(f_1))`` (B, num_classes).
The classifier is used for training only; it is absent when ``num_classes == 0``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clothes_retrieval.retrieval.pooling import POOLS, create_pool

__all__ = ["CGDHead"]


class CGDHead(nn.Module):
    """Pools (B, C, H, W) features into an L2-normalised (B, dim) embedding (+ class logits)."""

    def __init__(
        self,
        in_channels: int,
        descriptors: Sequence[str] = ("gem",),
        dim: int = 1024,
        num_classes: int = 0,
        *,
        gem_p: float = 3.0,
        gem_learnable: bool = False,
    ) -> None:
        super().__init__()
        descriptors = tuple(descriptors)
        if not descriptors:
            raise ValueError("CGD head needs at least one descriptor")
        unknown = [d for d in descriptors if d not in POOLS]
        if unknown:
            raise ValueError(f"unknown descriptors {unknown}: use {sorted(POOLS)}")
        if len(set(descriptors)) != len(descriptors):
            raise ValueError(f"descriptors repeat: {list(descriptors)}")
        if dim % len(descriptors):
            raise ValueError(f"dim {dim} is not divisible by {len(descriptors)} descriptors")
        self.descriptors = descriptors
        self.dim = dim
        self.num_classes = num_classes
        part = dim // len(descriptors)
        self.pools = nn.ModuleList(
            create_pool(d, gem_p=gem_p, gem_learnable=gem_learnable) for d in descriptors
        )
        self.projections = nn.ModuleList(nn.Linear(in_channels, part) for _ in descriptors)
        self.classifier: nn.Module | None = None
        if num_classes > 0:
            self.classifier = nn.Sequential(
                nn.BatchNorm1d(in_channels), nn.Linear(in_channels, num_classes)
            )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, C, H, W) -> (embedding (B, dim), logits (B, num_classes) or None)."""
        parts = []
        logits = None
        for i, (pool, proj) in enumerate(zip(self.pools, self.projections, strict=True)):
            f = pool(x)  # (B, C), float32
            if i == 0 and self.classifier is not None:
                logits = self.classifier(f)  # (B, num_classes)
            parts.append(F.normalize(proj(f), dim=-1))  # (B, dim / n)
        embedding = F.normalize(torch.cat(parts, dim=-1), dim=-1)  # (B, dim)
        return embedding, logits
