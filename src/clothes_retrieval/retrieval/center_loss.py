"""Center loss (Wen et al. 2016) on retrieval embeddings; pytorch-metric-learning has none.

    L_center = 0.5 · mean_i ||e_i - c_{y_i}||²

``e_i`` the (L2-normalised) embedding of sample i, ``c_y`` a learnable centre per class.
Weighting choices (the paper is silent on both): the mean over the batch rather than
Wen et al.'s sum, so the term does not grow with the batch size; the 0.5 of the original
formulation (its gradient is then ``e_i - c_y``). The centres are ordinary parameters trained
by the model's optimizer (no weight decay), rather than Wen et al.'s separate update rule,
so that they are checkpointed, resumed and all-reduced under DDP like everything else.
The loss weight is :attr:`~clothes_retrieval.retrieval.config.CenterConfig.weight`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CenterLoss", "center_loss"]


def center_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor
) -> torch.Tensor:
    """``0.5 · mean_i ||embeddings_i - centers[labels_i]||²``; (B, D), (B,), (K, D) -> scalar."""
    diff = embeddings.float() - centers.float()[labels]  # (B, D)
    return 0.5 * diff.pow(2).sum(dim=1).mean()


class CenterLoss(nn.Module):
    """Learnable (num_classes, dim) centres, initialised N(0, 1/dim) (about unit norm)."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"center loss needs num_classes >= 1, got {num_classes}")
        self.centers = nn.Parameter(torch.randn(num_classes, dim) / dim**0.5)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return center_loss(embeddings, labels, self.centers)
