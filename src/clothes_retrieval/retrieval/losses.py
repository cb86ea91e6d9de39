"""Training losses: softmax cross-entropy, center, triplet and multi-similarity, combined.

Triplet and multi-similarity are pytorch-metric-learning's losses, each with a miner chosen
by name from config. :class:`RetrievalLoss` returns the weighted total and each weighted
part, so the parts logged add up to the total::

    total = w_softmax·CE(logits / T, y; smoothing) + w_center·center(e, y)
          + w_triplet·triplet(e, y; miner) + w_ms·MS(e, y; miner)

A part with weight 0 is not built at all (so no unused parameters, e.g. under DDP).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from torch import nn

from clothes_retrieval.retrieval.center_loss import CenterLoss
from clothes_retrieval.retrieval.config import LossConfig, MinerConfig

__all__ = ["LossOutput", "RetrievalLoss", "SoftmaxLoss", "build_miner", "softmax_loss"]


def softmax_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, smoothing: float = 0.0, temperature: float = 1.0
) -> torch.Tensor:
    """Cross-entropy of ``logits / temperature`` with label smoothing (the CGD classifier loss)."""
    return F.cross_entropy(logits.float() / temperature, labels, label_smoothing=smoothing)


class SoftmaxLoss(nn.Module):
    def __init__(self, smoothing: float = 0.1, temperature: float = 0.5) -> None:
        super().__init__()
        self.smoothing = smoothing
        self.temperature = temperature

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return softmax_loss(logits, labels, smoothing=self.smoothing, temperature=self.temperature)


def build_miner(config: MinerConfig) -> pml_miners.BaseMiner | None:
    """The pml miner named by ``config.name`` (None for ``"none"``: all pairs/triplets)."""
    if config.name == "none":
        return None
    if config.name == "batch_hard":
        return pml_miners.BatchHardMiner()
    if config.name == "triplet_margin":
        return pml_miners.TripletMarginMiner(
            margin=config.margin, type_of_triplets=config.type_of_triplets
        )
    if config.name == "multi_similarity":
        return pml_miners.MultiSimilarityMiner(epsilon=config.epsilon)
    raise ValueError(f"unknown miner {config.name!r}")


@dataclass
class LossOutput:
    total: torch.Tensor  # scalar, what is back-propagated
    parts: dict[str, torch.Tensor]  # weighted parts, summing to total


class _MinedLoss(nn.Module):
    def __init__(self, loss: nn.Module, miner: nn.Module | None) -> None:
        super().__init__()
        self.loss = loss
        self.miner = miner

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        tuples = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss(embeddings, labels, tuples)


class RetrievalLoss(nn.Module):
    """The weighted sum of the configured losses; holds the class centres (parameters)."""

    def __init__(self, config: LossConfig, num_classes: int, dim: int) -> None:
        super().__init__()
        self.weights: dict[str, float] = {}
        self.softmax: SoftmaxLoss | None = None
        self.center: CenterLoss | None = None
        self.triplet: _MinedLoss | None = None
        self.multi_similarity: _MinedLoss | None = None
        if config.softmax.weight > 0:
            self.softmax = SoftmaxLoss(config.softmax.label_smoothing, config.softmax.temperature)
            self.weights["softmax"] = config.softmax.weight
        if config.center.weight > 0:
            self.center = CenterLoss(num_classes, dim)
            self.weights["center"] = config.center.weight
        if config.triplet.weight > 0:
            self.triplet = _MinedLoss(
                pml_losses.TripletMarginLoss(margin=config.triplet.margin),
                build_miner(config.triplet.miner),
            )
            self.weights["triplet"] = config.triplet.weight
        ms = config.multi_similarity
        if ms.weight > 0:
            self.multi_similarity = _MinedLoss(
                pml_losses.MultiSimilarityLoss(alpha=ms.alpha, beta=ms.beta, base=ms.base),
                build_miner(ms.miner),
            )
            self.weights["multi_similarity"] = ms.weight

    @property
    def needs_logits(self) -> bool:
        return self.softmax is not None

    def forward(
        self, embeddings: torch.Tensor, logits: torch.Tensor | None, labels: torch.Tensor
    ) -> LossOutput:
        embeddings = embeddings.float()  # (B, D); metric losses in float32 under autocast
        parts: dict[str, torch.Tensor] = {}
        if self.softmax is not None:
            if logits is None:
                raise ValueError("softmax loss weight > 0 but the model has no classifier")
            parts["softmax"] = self.weights["softmax"] * self.softmax(logits, labels)
        if self.center is not None:
            parts["center"] = self.weights["center"] * self.center(embeddings, labels)
        if self.triplet is not None:
            parts["triplet"] = self.weights["triplet"] * self.triplet(embeddings, labels)
        if self.multi_similarity is not None:
            parts["multi_similarity"] = self.weights["multi_similarity"] * self.multi_similarity(
                embeddings, labels
            )
        total = torch.stack(list(parts.values())).sum()
        return LossOutput(total, parts)
