"""Class-balanced batches (pml's MPerClassSampler), deterministic per epoch and shardable.

pytorch-metric-learning's ``MPerClassSampler`` draws, for each batch, ``batch_size / m``
classes and ``m`` samples of each (with replacement when a class has fewer). It draws from
the module-level ``NUMPY_RANDOM`` and shuffles its label list in place, so two runs agree
only if the whole process history agrees. :class:`ClassBalancedSampler` runs it with the
label list reset and ``NUMPY_RANDOM`` set to a ``RandomState`` seeded by (seed, epoch), so
an epoch's batches depend on nothing else: a resumed run draws what an uninterrupted one
would, and every DDP rank draws the same *global* batches.

Like ``DistributedSampler`` it takes ``num_replicas``/``rank`` and ``set_epoch``: it draws
global batches of ``batch_size × num_replicas`` and rank r keeps the r-th slice of
``batch_size`` of each; with ``batch_size`` a multiple of m every rank's batch is itself
m per class, and the ranks' batches are disjoint draws.

It yields ``(index, sample_seed)`` pairs: the seed makes each sample's augmentation
reproducible whichever worker process decodes it (see ``CropDataset``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from pytorch_metric_learning.samplers import MPerClassSampler
from pytorch_metric_learning.utils import common_functions as pml_common
from torch.utils.data import Sampler

__all__ = ["ClassBalancedSampler"]


class ClassBalancedSampler(Sampler[tuple[int, int]]):
    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        m_per_class: int,
        batch_size: int,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        iterations: int | None = None,
    ) -> None:
        labels = np.asarray(labels)
        if batch_size % m_per_class:
            raise ValueError(
                f"batch_size {batch_size} is not a multiple of m_per_class {m_per_class}"
            )
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        n_classes = len(np.unique(labels))
        global_batch = batch_size * num_replicas
        if n_classes * m_per_class < global_batch:
            raise ValueError(
                f"{n_classes} identities × m_per_class {m_per_class} < global batch {global_batch} "
                f"({batch_size} × {num_replicas} processes): lower batch_size or raise m_per_class"
            )
        if iterations is None:  # about one pass over the samples per epoch
            iterations = max(1, len(labels) // global_batch)
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.iterations = iterations
        self.epoch = 0
        self._inner = MPerClassSampler(
            labels,
            m_per_class,
            batch_size=global_batch,
            length_before_new_iter=iterations * global_batch,
        )
        self._label_order = list(self._inner.labels)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.iterations * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.RandomState(
            np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)
        )
        saved = pml_common.NUMPY_RANDOM
        self._inner.labels = list(self._label_order)
        pml_common.NUMPY_RANDOM = rng
        try:
            indices = np.fromiter(iter(self._inner), dtype=np.int64)
        finally:
            pml_common.NUMPY_RANDOM = saved
        seeds = rng.randint(0, 2**31 - 1, size=len(indices), dtype=np.int64)
        global_batch = self.batch_size * self.num_replicas
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        for start in range(0, len(indices) - global_batch + 1, global_batch):
            for i in range(start + lo, start + hi):
                yield int(indices[i]), int(seeds[i])
