"""Global descriptors: GeM, MAC and SPoC pooling of a (B, C, H, W) feature map to (B, C).

Each is a functional form plus an ``nn.Module``. With ``x_k`` the k-th channel's H×W
activations (non-negative after a ReLU backbone) and ``|x_k|`` their count:

- SPoC (sum-pooled convolutional features, Babenko & Lempitsky 2015):
  ``f_k = 1/|x_k| · Σ x``  (average pooling)
- MAC (maximum activations of convolutions, Tolias et al. 2016):
  ``f_k = max x``
- GeM (generalised mean, Radenović et al. 2018):
  ``f_k = (1/|x_k| · Σ x^p)^(1/p)``; p = 1 is SPoC, p → ∞ tends to MAC.

Pooling runs in float32 even under autocast: ``x^p`` overflows float16 for p = 3 and
activations above ~40.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["gem", "mac", "spoc", "GeM", "MAC", "SPoC", "create_pool", "POOLS"]


def spoc(x: torch.Tensor) -> torch.Tensor:
    """SPoC: ``f_k = mean(x_k)`` over the spatial positions. (B, C, H, W) -> (B, C)."""
    return x.float().mean(dim=(-2, -1))


def mac(x: torch.Tensor) -> torch.Tensor:
    """MAC: ``f_k = max(x_k)`` over the spatial positions. (B, C, H, W) -> (B, C)."""
    return x.float().amax(dim=(-2, -1))


def gem(x: torch.Tensor, p: torch.Tensor | float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """GeM: ``f_k = mean(clamp(x_k, eps)^p)^(1/p)``. (B, C, H, W) -> (B, C).

    Activations are clamped at ``eps`` so that ``x^p`` is defined for fractional p and the
    gradient with respect to p (``log x``) stays finite.
    """
    x = x.float().clamp(min=eps)
    if isinstance(p, torch.Tensor):
        p = p.float()
    return F.avg_pool2d(x.pow(p), (x.size(-2), x.size(-1))).pow(1.0 / p).flatten(1)


class SPoC(nn.Module):
    """Average pooling to a (B, C) descriptor; see :func:`spoc`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spoc(x)


class MAC(nn.Module):
    """Max pooling to a (B, C) descriptor; see :func:`mac`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mac(x)


class GeM(nn.Module):
    """Generalised-mean pooling to a (B, C) descriptor; see :func:`gem`.

    ``p`` is one scalar shared by all channels. ``learnable=True`` makes it an
    ``nn.Parameter`` trained with the network (Radenović et al. learn it; p ≈ 3 is their
    usual result and the common fixed choice); otherwise it is a buffer (saved, not trained).
    """

    def __init__(self, p: float = 3.0, learnable: bool = False, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM p must be > 0, got {p}")
        self.eps = eps
        self.learnable = learnable
        p_tensor = torch.full((1,), float(p))
        if learnable:
            self.p = nn.Parameter(p_tensor)
        else:
            self.register_buffer("p", p_tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.4f}, learnable={self.learnable}, eps={self.eps}"


# Descriptor names as they appear in configs (the CGD paper's S, M, G).
POOLS: dict[str, type[nn.Module]] = {"spoc": SPoC, "mac": MAC, "gem": GeM}


def create_pool(name: str, *, gem_p: float = 3.0, gem_learnable: bool = False) -> nn.Module:
    """The pooling module for a descriptor name: ``"spoc"``, ``"mac"`` or ``"gem"``."""
    if name not in POOLS:
        raise ValueError(f"unknown descriptor {name!r}: use one of {sorted(POOLS)}")
    if name == "gem":
        return GeM(gem_p, learnable=gem_learnable)
    return POOLS[name]()
