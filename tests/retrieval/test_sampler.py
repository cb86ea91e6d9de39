from collections import Counter

import numpy as np
import pytest

from clothes_retrieval.retrieval.sampler import ClassBalancedSampler

LABELS = np.repeat(np.arange(12), 3)  # 12 identities × 3 crops


def batches(sampler, batch_size):
    idx = [i for i, _ in sampler]
    return [idx[k : k + batch_size] for k in range(0, len(idx), batch_size)]


def test_m_per_class_batches_and_epoch_determinism():
    s = ClassBalancedSampler(LABELS, m_per_class=2, batch_size=8, seed=3, iterations=5)
    first = list(s)
    assert len(first) == len(s) == 40
    for batch in batches(s, 8):
        assert set(Counter(LABELS[batch]).values()) == {2}
    assert list(s) == first  # same epoch, same draw whatever happened before
    s.set_epoch(1)
    assert list(s) != first
    again = ClassBalancedSampler(LABELS, m_per_class=2, batch_size=8, seed=3, iterations=5)
    again.set_epoch(1)
    assert list(again) == list(s)


def test_ranks_take_their_slice_of_each_global_batch():
    full = ClassBalancedSampler(LABELS, 2, 8, num_replicas=1, seed=0, iterations=4)
    shards = [ClassBalancedSampler(LABELS, 2, 4, num_replicas=2, rank=r, seed=0, iterations=4)
              for r in range(2)]  # fmt: skip
    assert [len(s) for s in shards] == [16, 16]
    b0, b1 = batches(shards[0], 4), batches(shards[1], 4)
    for g, whole in enumerate(batches(full, 8)):
        assert b0[g] + b1[g] == whole
        assert set(Counter(LABELS[b0[g]]).values()) == {2}


def test_too_few_identities_is_a_clear_error():
    with pytest.raises(ValueError, match="identities"):
        ClassBalancedSampler(np.array([0, 0, 1, 1]), 2, 8)
