"""Validation retrieval metrics with pytorch-metric-learning's AccuracyCalculator.

Protocol: the queries are the validation consumer crops (``source`` user/consumer) and
the reference set the validation shop crops, when both exist; only queries whose identity
has at least one shop crop count. Otherwise every validation crop is a query against all
the others (``ref_includes_query``: a crop never retrieves itself), counting only
identities with at least two crops. Nearest neighbours by cosine similarity (the
embeddings are L2-normalised), exact, in torch (no faiss needed).

Recall@1 is pml's ``precision_at_1`` (the same number for one retrieved item); MAP@R is
``mean_average_precision_at_r`` (Musgrave et al. 2020), R = the query's number of relevant
references.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN

from clothes_retrieval.retrieval.data import QUERY_SOURCES, REFERENCE_SOURCES

__all__ = ["RetrievalMetrics", "chance_recall_at_1", "retrieval_metrics", "validation_protocol"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrievalMetrics:
    recall_at_1: float
    map_at_r: float
    n_queries: int
    n_references: int
    protocol: str  # "consumer-to-shop" or "all-vs-all"


def validation_protocol(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(query row positions, reference row positions, protocol) for a validation table,
    or None when no query has a relevant reference."""
    identity = table["identity"].astype(str).to_numpy()
    source = table["source"].astype(str).to_numpy() if "source" in table.columns else None
    if source is not None:
        is_query = np.isin(source, QUERY_SOURCES)
        is_ref = np.isin(source, REFERENCE_SOURCES)
        if is_query.any() and is_ref.any():
            ref_ids = set(identity[is_ref])
            queries = np.flatnonzero(is_query & np.isin(identity, list(ref_ids)))
            if len(queries):
                return queries, np.flatnonzero(is_ref), "consumer-to-shop"
    counts = pd.Series(identity).value_counts()
    queries = np.flatnonzero(np.isin(identity, counts.index[counts >= 2]))
    if len(queries) == 0:
        return None
    return queries, np.arange(len(table)), "all-vs-all"


def retrieval_metrics(
    embeddings: np.ndarray | torch.Tensor, table: pd.DataFrame
) -> RetrievalMetrics | None:
    """Recall@1 and MAP@R of ``embeddings`` (N×D, rows of ``table``) under the protocol above;
    None (and a warning) when the table has no query with a relevant reference."""
    chosen = validation_protocol(table)
    if chosen is None:
        log.warning("validation: no identity has two crops; Recall@1 / MAP@R not computed")
        return None
    queries, refs, protocol = chosen
    emb = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
    labels = torch.as_tensor(pd.factorize(table["identity"].astype(str))[0], dtype=torch.long)
    calc = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
        knn_func=CustomKNN(CosineSimilarity(), batch_size=4096),
    )
    if protocol == "all-vs-all":
        # pml wants the queries first in the reference set when ref_includes_query.
        order = np.concatenate([queries, np.setdiff1d(refs, queries)])
        q = torch.as_tensor(queries)
        result = calc.get_accuracy(
            emb[q], labels[q], emb[order], labels[order], ref_includes_query=True
        )
    else:
        q, r = torch.as_tensor(queries), torch.as_tensor(refs)
        result = calc.get_accuracy(emb[q], labels[q], emb[r], labels[r], ref_includes_query=False)
    return RetrievalMetrics(
        recall_at_1=float(result["precision_at_1"]),
        map_at_r=float(result["mean_average_precision_at_r"]),
        n_queries=len(queries),
        n_references=len(refs),
        protocol=protocol,
    )


def chance_recall_at_1(val_crops: pd.DataFrame) -> float:
    """Recall@1 of a random ranking on validation crops: 1 / the gallery's identities.

    A trained model's validation Recall@1 must beat it (the ``recall_above_chance`` check)."""
    gallery = val_crops.loc[val_crops["source"] == "shop", "identity"]
    return 1.0 / max(int(gallery.nunique()), 1)
