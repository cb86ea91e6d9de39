"""run_experiment keeps the ranking's scores beside the ranking."""

import numpy as np

from clothes_retrieval.search.experiments import Experiment, run_experiment
from tests.search import synthetic


def test_similarities_are_the_ranked_inner_products():
    items = synthetic.items()
    es = synthetic.embedding_set(items)
    result = run_experiment(
        Experiment("m0", ("m0",), "gt"), {"m0": es}, items, protocol="category", ks=(1, 10)
    )
    assert result.similarities.shape == result.ranking.shape
    for qi, row in enumerate(result.ranking):
        ranked = row[row >= 0]
        assert len(ranked) == len(es.gallery)  # a gallery of 12 < k: the rest is -1
        expected = es.gallery[ranked] @ es.query[qi]
        np.testing.assert_allclose(result.similarities[qi, : len(ranked)], expected, atol=1e-5)
        assert np.all(np.diff(result.similarities[qi, : len(ranked)]) <= 1e-6)  # best first
