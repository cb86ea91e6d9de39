"""Embedding sets and the search experiments the evaluation report shows.

An *embedding set* is one model's vectors for one split and one box source: the query
boxes (consumer photos) and the gallery boxes (shop photos), each with its rows (image,
box, category, score). Which boxes they are depends on the evaluation protocol.

``deepfashion2`` (the official instance rules):

- ``gt``: ground-truth boxes (the paper's Table 3): queries are consumer items with
  style > 0, the gallery every shop item (style-0 items stay as distractors);
- ``fused``: the system's own boxes after weighted boxes fusion (Tables 6 and 7): every
  fused box on a consumer photo is a query, every fused box on a shop photo a gallery
  entry.

``category`` (:mod:`clothes_retrieval.evaluation.category`): the gallery is every shop
item with its annotated box (a product photo: the whole photo); ``gt`` queries are every
consumer item, ``fused`` queries the best fused box matched to each consumer item (IoU >=
``match_iou``), carrying that item's uid and class.

An *experiment* ranks the gallery for the queries with one model or a concatenated
ensemble and one post-processing setting and scores the ranking by the protocol (for
``deepfashion2``: as submission records, with the official rules).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clothes_retrieval.evaluation import (
    DEFAULT_KS,
    RetrievalScores,
    category_queries,
    evaluate_category_retrieval,
    evaluate_retrieval,
    ground_truth_gallery,
    ground_truth_queries,
    match_detections,
    ranking_to_submission,
)
from clothes_retrieval.index import IndexConfig, concatenate_embeddings
from clothes_retrieval.io import atomic_dir
from clothes_retrieval.search.rank import PostprocessConfig, rank_gallery

logger = logging.getLogger(__name__)

__all__ = [
    "BOX_COLUMNS",
    "EmbeddingSet",
    "Experiment",
    "ExperimentResult",
    "box_rows",
    "build_embedding_sets",
    "run_experiment",
    "training_pairs",
    "TRAINING",
    "experiments_table",
    "save_embedding_set",
    "load_embedding_set",
]

MIN_BOX_SIDE = 4  # pixels; smaller fused boxes are dropped before embedding
BOX_COLUMNS = ["image_id", "image_path", "x1", "y1", "x2", "y2", "category_id", "score"]


PROTOCOLS = ("deepfashion2", "category")


def _category_rows(
    box_source: str, items: pd.DataFrame, fused: pd.DataFrame | None, match_iou: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    queries = category_queries(items).assign(score=1.0)
    gallery = ground_truth_gallery(items).assign(score=1.0)
    if box_source == "gt":
        return queries, gallery
    matched = match_detections(queries, fused, match_iou)
    ok = matched["x1"].notna()
    logger.info(
        "fused boxes answer %d of %d queries (IoU >= %.2f)", int(ok.sum()), len(ok), match_iou
    )
    answered = queries[ok].copy()
    for col in ("x1", "y1", "x2", "y2", "score"):
        answered[col] = matched.loc[ok, col]
    return answered.reset_index(drop=True), gallery


def box_rows(
    box_source: str,
    items: pd.DataFrame,
    fused: pd.DataFrame | None = None,
    *,
    protocol: str = "deepfashion2",
    match_iou: float = 0.5,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(query rows, gallery rows) of one split for ``box_source`` (``gt`` or ``fused``)
    under ``protocol`` (module docstring).

    ``items`` is the split's item table; ``fused`` the split's fused boxes (needed for
    ``fused``). Rows carry :data:`BOX_COLUMNS` (ground-truth rows also keep item fields).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: use one of {PROTOCOLS}")
    if box_source not in ("gt", "fused"):
        raise ValueError(f"unknown box source {box_source!r}: use 'gt' or 'fused'")
    if box_source == "fused" and fused is None:
        raise ValueError("box source 'fused' needs the fused boxes: run the detection stage first")
    if protocol == "category":
        return _category_rows(box_source, items, fused, match_iou)
    if box_source == "gt":
        queries = ground_truth_queries(items).assign(score=1.0)
        gallery = ground_truth_gallery(items).assign(score=1.0)
        return queries, gallery
    if box_source == "fused":
        # Boxes under MIN_BOX_SIDE pixels cannot be cropped into a meaningful image.
        keep = ((fused["x2"] - fused["x1"]) >= MIN_BOX_SIDE) & (
            (fused["y2"] - fused["y1"]) >= MIN_BOX_SIDE
        )
        if (~keep).any():
            logger.info(
                "dropping %d fused boxes smaller than %d px", int((~keep).sum()), MIN_BOX_SIDE
            )
        fused = fused[keep]
        queries = fused[fused["source"] == "user"].sort_values(
            ["image_id", "score"], ascending=[True, False]
        )
        gallery = fused[fused["source"] == "shop"].sort_values(
            ["image_id", "score"], ascending=[True, False]
        )
        return queries[BOX_COLUMNS].reset_index(drop=True), gallery[BOX_COLUMNS].reset_index(
            drop=True
        )
    raise ValueError(f"unknown box source {box_source!r}: use 'gt' or 'fused'")


@dataclass(frozen=True)
class EmbeddingSet:
    """One model's query and gallery vectors for one box source (rows aligned with vectors)."""

    model: str
    box_source: str
    query: np.ndarray  # (Q, D) float32, L2-normalised
    gallery: np.ndarray  # (G, D)
    query_rows: pd.DataFrame
    gallery_rows: pd.DataFrame

    @property
    def dim(self) -> int:
        return int(self.query.shape[1]) if self.query.ndim == 2 else 0


TRAINING = "train"  # the EmbeddingSet of training-split GT boxes that whitening is fitted on


def training_pairs(es: EmbeddingSet, protocol: str = "deepfashion2") -> np.ndarray:
    """(P, 2) row indices into ``vstack([es.query, es.gallery])`` of matching (consumer,
    shop) boxes of a training :class:`EmbeddingSet`: the same ``pair_id`` and ``style``
    (> 0) under ``deepfashion2``; under ``category`` each query paired with one gallery box
    of its class (taken in turn)."""
    q, g = es.query_rows.reset_index(drop=True), es.gallery_rows.reset_index(drop=True)
    offset = len(q)
    pairs: list[tuple[int, int]] = []
    if protocol == "category":
        by_class = g.groupby("category_id").indices
        for i, cat in enumerate(q["category_id"]):
            rows = by_class.get(cat)
            if rows is not None and len(rows):
                pairs.append((i, offset + int(rows[i % len(rows)])))
    else:
        key = list(zip(g["pair_id"], g["style"], strict=True))
        index: dict[tuple, list[int]] = {}
        for j, kj in enumerate(key):
            index.setdefault(kj, []).append(j)
        for i, kq in enumerate(zip(q["pair_id"], q["style"], strict=True)):
            if kq[1] > 0:
                pairs += [(i, offset + j) for j in index.get(kq, [])]
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def _sample_rows(rows: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    return rows if len(rows) <= n else rows.sample(n=n, random_state=seed).sort_index()


def build_embedding_sets(
    model: object,
    name: str,
    box_sources: Sequence[str],
    items: pd.DataFrame,
    fused: pd.DataFrame | None = None,
    *,
    protocol: str = "deepfashion2",
    match_iou: float = 0.5,
    training_items: pd.DataFrame | None = None,
    training_max: int = 20000,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, EmbeddingSet]:
    """Embed one split's query and gallery boxes of each box source with a trained model.

    Boxes already embedded for an earlier box source are not embedded again (under the
    category protocol both box sources search the same ground-truth gallery). With
    ``training_items`` (the training split's item table) the result also holds
    :data:`TRAINING`: its ground-truth boxes (at most ``training_max``, a seeded sample
    split between consumer and shop), which whitening is fitted on."""
    from clothes_retrieval.retrieval import embed_crops

    done: list[tuple[pd.DataFrame, np.ndarray]] = []  # (boxes, their embeddings)

    def embed(rows: pd.DataFrame) -> np.ndarray:
        boxes = rows[["image_path", "x1", "y1", "x2", "y2"]].reset_index(drop=True)
        for seen, vectors in done:
            if seen.equals(boxes):
                return vectors
        items_ = [(p, (x1, y1, x2, y2)) for p, x1, y1, x2, y2 in boxes.itertuples(index=False)]
        vectors = embed_crops(  # type: ignore[arg-type]
            model, items_, batch_size=batch_size, device=device, progress=progress
        )
        done.append((boxes, vectors))
        return vectors

    sets = {}
    for source in box_sources:
        q_rows, g_rows = box_rows(source, items, fused, protocol=protocol, match_iou=match_iou)
        sets[source] = EmbeddingSet(name, source, embed(q_rows), embed(g_rows), q_rows, g_rows)
    if training_items is not None:
        q_rows, g_rows = box_rows("gt", training_items, protocol=protocol)
        half = max(training_max // 2, 1)
        q_rows = _sample_rows(q_rows, half).reset_index(drop=True)
        g_rows = _sample_rows(g_rows, training_max - len(q_rows)).reset_index(drop=True)
        sets[TRAINING] = EmbeddingSet(name, TRAINING, embed(q_rows), embed(g_rows), q_rows, g_rows)
    return sets


def save_embedding_set(es: EmbeddingSet, out_dir: str | Path) -> Path:
    """Write ``query.npy``, ``gallery.npy`` and their row tables atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        np.save(tmp / "query.npy", es.query)
        np.save(tmp / "gallery.npy", es.gallery)
        es.query_rows[[c for c in es.query_rows.columns if c in _KEEP]].to_parquet(
            tmp / "query.parquet"
        )
        es.gallery_rows[[c for c in es.gallery_rows.columns if c in _KEEP]].to_parquet(
            tmp / "gallery.parquet"
        )
        (tmp / "meta.txt").write_text(f"{es.model}\n{es.box_source}\n")
    return out_dir


_KEEP = set(BOX_COLUMNS) | {
    "item_uid",
    "pair_id",
    "style",
    "item_index",
    "source",
    "split",
    "category_name",
    "dataset",
}


def load_embedding_set(in_dir: str | Path) -> EmbeddingSet:
    in_dir = Path(in_dir)
    if not (in_dir / "meta.txt").is_file():
        raise FileNotFoundError(
            f"{in_dir} holds no embedding set; materialise the embeddings asset first"
        )
    model, box_source = (in_dir / "meta.txt").read_text().split("\n")[:2]
    return EmbeddingSet(
        model=model,
        box_source=box_source,
        query=np.load(in_dir / "query.npy"),
        gallery=np.load(in_dir / "gallery.npy"),
        query_rows=pd.read_parquet(in_dir / "query.parquet"),
        gallery_rows=pd.read_parquet(in_dir / "gallery.parquet"),
    )


@dataclass(frozen=True)
class Experiment:
    """A row of the report: which models, which boxes, which post-processing."""

    name: str
    models: tuple[str, ...]
    box_source: str
    post: PostprocessConfig = PostprocessConfig()
    weights: Mapping[str, float] | None = None


@dataclass(frozen=True)
class ExperimentResult:
    experiment: Experiment
    scores: RetrievalScores
    submission: pd.DataFrame | None  # DeepFashion2 records (None for the category protocol)
    ranking: np.ndarray  # (Q, k) gallery row positions, -1 = none
    # (Q, k) the ranking's scores (rank_gallery's: similarities, or negated re-ranked
    # distances after k-reciprocal re-ranking; -inf where ranking is -1)
    similarities: np.ndarray
    query_rows: pd.DataFrame
    gallery_rows: pd.DataFrame

    def row(self) -> dict[str, object]:
        e = self.experiment
        out: dict[str, object] = {
            "name": e.name,
            "models": " + ".join(e.models),
            "boxes": e.box_source,
            "post-processing": e.post.label(),
        }
        out.update({f"Acc@{k}": v for k, v in self.scores.accuracy.items()})
        return out


def run_experiment(
    experiment: Experiment,
    sets: Mapping[str, EmbeddingSet],
    gt_items: pd.DataFrame,
    *,
    k: int = 20,
    index_config: IndexConfig | None = None,
    training: Mapping[str, EmbeddingSet] | None = None,
    protocol: str = "deepfashion2",
    ks: Sequence[int] = DEFAULT_KS,
) -> ExperimentResult:
    """Rank and score by ``protocol`` (``sets``: model -> its set for the boxes); for
    ``deepfashion2`` through the submission records and the official rules. ``training``:
    model -> its :data:`TRAINING` set, which a whitening step is fitted on."""
    chosen = [sets[m] for m in experiment.models]
    first = chosen[0]
    for es in chosen[1:]:
        if len(es.query_rows) != len(first.query_rows) or len(es.gallery_rows) != len(
            first.gallery_rows
        ):
            raise ValueError(
                f"models {experiment.models} embedded different boxes; "
                "re-embed them on the same boxes"
            )
    query = concatenate_embeddings(
        {es.model: es.query for es in chosen}, weights=experiment.weights
    )
    gallery = concatenate_embeddings(
        {es.model: es.gallery for es in chosen}, weights=experiment.weights
    )
    training_vectors = None
    whitens = experiment.post.whitening.mode != "none"  # only whitening reads training
    if whitens and training is not None and all(m in training for m in experiment.models):
        chosen_train = [training[m] for m in experiment.models]
        training_vectors = (
            concatenate_embeddings(
                {es.model: np.vstack([es.query, es.gallery]) for es in chosen_train},
                weights=experiment.weights,
            ),
            training_pairs(chosen_train[0], protocol),
        )
    k = max(k, *ks)
    if len(query) == 0 and protocol == "category":
        # No box answered any query: every query is a miss (a score, not an error).
        ranking = np.zeros((0, k), dtype=np.int64)
        similarities = np.zeros((0, k), dtype=np.float32)
    elif len(query) == 0:
        raise ValueError(f"experiment {experiment.name!r} has no query boxes")
    else:
        ranking, similarities = rank_gallery(
            query,
            gallery,
            experiment.post,
            k=k,
            index_config=index_config,
            training=training_vectors,
        )
    if protocol == "category":
        submission = None
        scores = evaluate_category_retrieval(
            gt_items, first.query_rows, first.gallery_rows, ranking, ks
        )
    else:
        submission = ranking_to_submission(
            first.query_rows, first.gallery_rows, ranking, n_entries=k
        )
        scores = evaluate_retrieval(gt_items, submission, ks)
    logger.info(
        "%s (%s boxes, %s): %s",
        experiment.name,
        experiment.box_source,
        experiment.post.label(),
        {f"Acc@{k}": round(v, 4) for k, v in scores.accuracy.items()},
    )
    return ExperimentResult(
        experiment,
        scores,
        submission,
        ranking=ranking,
        similarities=similarities,
        query_rows=first.query_rows,
        gallery_rows=first.gallery_rows,
    )


def experiments_table(results: Sequence[ExperimentResult]) -> pd.DataFrame:
    return pd.DataFrame([r.row() for r in results])
