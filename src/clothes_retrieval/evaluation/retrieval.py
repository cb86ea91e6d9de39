"""DeepFashion2 consumer-to-shop retrieval scoring (Acc@k), as the official script does it.

Protocol (DeepFashion2 ``deepfashion2_retrieval_test.py``; see docs/deepfashion2.md):

1. **Denominator**: every ground-truth query item (``source == "user"``) with ``style > 0``.
   Query images without any detection still count: their items are misses.
2. **Assignment**: every detected box of a query image is assigned to the ground-truth item
   *of that image* (any style, style 0 included) it overlaps most by IoU. There is no
   minimum IoU. Ties, including a box that overlaps no item at all (all IoUs 0), go to the
   first item of the image, as ``np.argmax`` does in the official script; "first" means the
   smallest ``item_index`` (the order of ``item1 … itemN`` in the annotation, which is the
   order of the official ``query_gt.json``). Detections on images that hold no
   ground-truth query item are ignored.
3. **Query selection**: for each ground-truth item with ``style > 0``, among the detections
   assigned to it whose ``query_cls`` equals its ``category_id``, the one with the highest
   ``query_score`` is its query (ties: the earliest record of the submission, again as
   ``np.argmax``). None means a miss. All other detections are ignored.
4. **Correct gallery items**: ground-truth shop items with the query item's ``pair_id`` and
   ``style``.
5. **Hit at k**: among the first k gallery entries of the query, one whose gallery image
   holds a correct item and whose box has IoU >= 0.5 with that item's box.
   ``Acc@k = hits / denominator``.

IoU is the continuous box IoU of pycocotools (``x2 - x1`` widths, no "+1" pixel).

Deviations from the official script (Python 2, and a ``gellery_box`` typo stops it before
it scores anything):

- Each query item uses its own ``pair_id``; the script takes the image's ``pair_id`` and
  asserts that all items of an image share it. Where the assertion holds the two agree.
- A query item with no correct gallery item cannot be hit but still counts in the
  denominator (a warning gives the count); the script stops on an assertion.
- A record with fewer gallery entries than k is scored on the entries it has (missing
  entries are never hits); the script crashes on fewer than 20.
  :func:`~clothes_retrieval.evaluation.submission.ranking_to_submission` always writes 20.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "GT_COLUMNS",
    "SUBMISSION_COLUMNS",
    "DEFAULT_KS",
    "HIT_IOU",
    "GroundTruthError",
    "SubmissionError",
    "RetrievalScores",
    "box_iou",
    "evaluate_retrieval",
]

log = logging.getLogger(__name__)

#: Item-table columns the evaluator reads (one row per ground-truth garment of the split).
GT_COLUMNS: tuple[str, ...] = (
    "image_id",
    "source",
    "pair_id",
    "style",
    "category_id",
    "x1",
    "y1",
    "x2",
    "y2",
    "item_index",
)
#: Submission columns (one row per detected query box); also the official JSON keys.
SUBMISSION_COLUMNS: tuple[str, ...] = (
    "query_image_id",
    "query_bbox",
    "query_cls",
    "query_score",
    "gallery_image_id",
    "gallery_bbox",
)
DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 15, 20)
HIT_IOU = 0.5  # the official ``thresh``: a gallery box is right when IoU >= 0.5


class GroundTruthError(ValueError):
    """The ground-truth item table cannot be scored against; the message says what to fix."""


class SubmissionError(ValueError):
    """A submission (DataFrame or JSON) is malformed; the message names the record and key."""


@dataclass(frozen=True)
class RetrievalScores:
    """Acc@k of a submission, with one row of detail per ground-truth query item.

    ``details`` columns: ``image_id``, ``item_index``, ``pair_id``, ``style``,
    ``category_id`` (the ground-truth query item); ``detection`` (row of the submission
    chosen as its query, ``<NA>`` for a miss); ``query_score``; ``n_correct_gallery``
    (ground-truth shop items that would count as a hit); ``first_hit_rank`` (1-based rank of
    the first hit among the entries scored, NaN when none).
    """

    accuracy: dict[int, float]
    n_queries: int  # the denominator: ground-truth query items with style > 0
    n_detected: int  # of those, items that got a query detection
    details: pd.DataFrame = field(repr=False)

    def __getitem__(self, k: int) -> float:
        return self.accuracy[k]

    def as_dict(self) -> dict[str, float | int]:
        """Flat metrics for a report or a tracker (``acc@1``, ..., ``n_queries``, ...)."""
        out: dict[str, float | int] = {f"acc@{k}": v for k, v in self.accuracy.items()}
        out["n_queries"] = self.n_queries
        out["n_detected"] = self.n_detected
        return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of paired boxes ``a[i]`` and ``b[i]`` ([x1, y1, x2, y2]), as pycocotools computes it.

    Broadcasts over leading axes; a zero union gives 0, not NaN.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


# ---------------------------------------------------------------------------------------
# Input checking and conversion to arrays
# ---------------------------------------------------------------------------------------


def _check_gt(gt_items: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in GT_COLUMNS if c not in gt_items.columns]
    if missing:
        raise GroundTruthError(
            f"ground-truth item table lacks columns {missing}; pass the split's item table "
            f"(columns {list(GT_COLUMNS)})"
        )
    bad_source = set(gt_items["source"].unique()) - {"user", "shop"}
    if bad_source:
        raise GroundTruthError(
            f"ground-truth 'source' has values {sorted(map(str, bad_source))}; "
            "expected only 'user' and 'shop'"
        )
    gt = gt_items[list(GT_COLUMNS)]
    if gt.isna().any().any():
        cols = gt.columns[gt.isna().any()].tolist()
        raise GroundTruthError(f"ground-truth columns {cols} contain missing values")
    if gt.duplicated(["image_id", "item_index"]).any():
        raise GroundTruthError(
            "ground-truth has duplicate (image_id, item_index) rows; pass one split's items once"
        )
    return gt


@dataclass(frozen=True)
class _Submission:
    image_id: np.ndarray  # (S,) int64
    box: np.ndarray  # (S, 4) float64
    cls: np.ndarray  # (S,) int64
    score: np.ndarray  # (S,) float64
    gallery_image_id: np.ndarray  # (S, E) int64, -1 where a record has fewer entries
    gallery_box: np.ndarray  # (S, E, 4) float64


def _as_int_array(values: pd.Series, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values.to_numpy(), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SubmissionError(f"submission column '{name}' must hold integers: {exc}") from None
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))[0])
        raise SubmissionError(
            f"submission record {bad}, key '{name}': expected an integer, got {values.iloc[bad]!r}"
        )
    return arr.astype(np.int64)


def _submission_arrays(submission: pd.DataFrame, n_entries: int) -> _Submission:
    """Convert the submission DataFrame into fixed-shape arrays (first ``n_entries`` entries)."""
    missing = [c for c in SUBMISSION_COLUMNS if c not in submission.columns]
    if missing:
        raise SubmissionError(
            f"submission lacks columns {missing}; expected {list(SUBMISSION_COLUMNS)}"
        )
    n = len(submission)
    image_id = _as_int_array(submission["query_image_id"], "query_image_id")
    cls = _as_int_array(submission["query_cls"], "query_cls")
    try:
        score = np.asarray(submission["query_score"].to_numpy(), dtype=np.float64)
        box = np.asarray(submission["query_bbox"].tolist(), dtype=np.float64).reshape(n, 4)
    except (TypeError, ValueError) as exc:
        raise SubmissionError(
            f"submission 'query_score' must be numbers and 'query_bbox' lists of 4 numbers: {exc}"
        ) from None

    gallery_image_id = np.full((n, n_entries), -1, dtype=np.int64)
    gallery_box = np.zeros((n, n_entries, 4), dtype=np.float64)
    ids = submission["gallery_image_id"].tolist()
    boxes = submission["gallery_bbox"].tolist()
    for r, (gid, gbox) in enumerate(zip(ids, boxes, strict=True)):
        if len(gid) != len(gbox):
            raise SubmissionError(
                f"submission record {r}: 'gallery_image_id' has {len(gid)} entries but "
                f"'gallery_bbox' has {len(gbox)}; they must pair up"
            )
        m = min(len(gid), n_entries)
        if m == 0:
            continue
        try:
            gallery_image_id[r, :m] = np.asarray(gid[:m], dtype=np.int64)
            gallery_box[r, :m] = np.asarray(gbox[:m], dtype=np.float64).reshape(m, 4)
        except (TypeError, ValueError) as exc:
            raise SubmissionError(
                f"submission record {r}: gallery entries must be integer image ids and "
                f"[x1, y1, x2, y2] boxes: {exc}"
            ) from None
    return _Submission(image_id, box, cls, score, gallery_image_id, gallery_box)


def _first_per_group(group: np.ndarray) -> np.ndarray:
    """Positions of the first element of each run of equal values in a sorted ``group``."""
    if len(group) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, group[1:] != group[:-1]])


# ---------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------


def evaluate_retrieval(
    gt_items: pd.DataFrame,
    submission: pd.DataFrame,
    ks: Sequence[int] = DEFAULT_KS,
) -> RetrievalScores:
    """Score a consumer-to-shop submission by the DeepFashion2 rules (module docstring).

    ``gt_items``: the split's item table (columns :data:`GT_COLUMNS`; user and shop items).
    ``submission``: one row per detected query box (columns :data:`SUBMISSION_COLUMNS`;
    boxes [x1, y1, x2, y2], gallery lists of up to 20 entries).
    """
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    max_k = max(ks)
    gt = _check_gt(gt_items)
    sub = _submission_arrays(submission, max_k)

    # Ground-truth query items, ordered by (image_id, item_index): the official order.
    users = gt[gt["source"] == "user"].sort_values(["image_id", "item_index"], kind="stable")
    u_image = users["image_id"].to_numpy(np.int64)
    u_box = users[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)
    u_style = users["style"].to_numpy(np.int64)
    u_cat = users["category_id"].to_numpy(np.int64)
    u_pair = users["pair_id"].to_numpy(np.int64)
    n_users = len(users)

    # 2. assignment: pair every detection with every GT query item of its image.
    start = np.searchsorted(u_image, sub.image_id, side="left")
    stop = np.searchsorted(u_image, sub.image_id, side="right")
    counts = stop - start  # (S,) GT items in the detection's image
    det = np.repeat(np.arange(len(sub.image_id)), counts)  # (P,)
    offsets = np.arange(len(det)) - np.repeat(np.cumsum(counts) - counts, counts)
    item = np.repeat(start, counts) + offsets  # (P,) positions in `users`
    iou = box_iou(sub.box[det], u_box[item])
    # per detection: highest IoU first, then the smallest item position (np.argmax's tie rule)
    order = np.lexsort((item, -iou, det))
    first = order[_first_per_group(det[order])]
    assigned_det, assigned_item = det[first], item[first]
    n_unmatched_images = int(np.sum(counts == 0))
    if n_unmatched_images:
        log.info(
            "%d detections lie on images without ground-truth query items; ignored",
            n_unmatched_images,
        )

    # 3. query selection: right category, style > 0, highest score (ties: earliest record).
    keep = (u_style[assigned_item] > 0) & (sub.cls[assigned_det] == u_cat[assigned_item])
    cand_det, cand_item = assigned_det[keep], assigned_item[keep]
    order = np.lexsort((cand_det, -sub.score[cand_det], cand_item))
    first = order[_first_per_group(cand_item[order])]
    query_det = np.full(n_users, -1, dtype=np.int64)
    query_det[cand_item[first]] = cand_det[first]

    # 4. correct gallery items, counted per query item (same pair_id and style).
    shops = gt[gt["source"] == "shop"]
    shop_key = pd.MultiIndex.from_arrays([shops["pair_id"], shops["style"]])
    n_correct_by_key = pd.Series(1, index=shop_key).groupby(level=[0, 1]).sum()
    user_key = pd.MultiIndex.from_arrays([u_pair, u_style])
    n_correct = n_correct_by_key.reindex(user_key).fillna(0).to_numpy(np.int64)

    # 5. hits: join every (query, rank) entry with the correct items of its gallery image.
    q_item = np.flatnonzero((query_det >= 0) & (u_style > 0))  # (M,) items with a query
    q_det = query_det[q_item]
    n_e = sub.gallery_image_id.shape[1]
    entries = pd.DataFrame(
        {
            "q": np.repeat(np.arange(len(q_item)), n_e),
            "rank": np.tile(np.arange(n_e), len(q_item)),
            "image_id": sub.gallery_image_id[q_det].ravel(),
            "pair_id": np.repeat(u_pair[q_item], n_e),
            "style": np.repeat(u_style[q_item], n_e),
        }
    )
    shop_boxes = pd.DataFrame(
        {
            "image_id": shops["image_id"].to_numpy(np.int64),
            "pair_id": shops["pair_id"].to_numpy(np.int64),
            "style": shops["style"].to_numpy(np.int64),
            "shop_row": np.arange(len(shops)),
        }
    )
    joined = entries.merge(shop_boxes, on=["image_id", "pair_id", "style"], how="inner")
    jq = joined["q"].to_numpy(np.int64)
    jrank = joined["rank"].to_numpy(np.int64)
    entry_box = sub.gallery_box[q_det[jq], jrank]
    item_box = shops[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)[joined["shop_row"].to_numpy()]
    hit = box_iou(entry_box, item_box) >= HIT_IOU
    first_hit = np.full(len(q_item), np.inf)
    np.minimum.at(first_hit, jq[hit], jrank[hit].astype(np.float64))

    first_hit_rank = np.full(n_users, np.nan)
    first_hit_rank[q_item] = np.where(np.isfinite(first_hit), first_hit + 1, np.nan)

    # Denominator and per-item details (style > 0 items only).
    is_query = u_style > 0
    n_queries = int(is_query.sum())
    if n_queries == 0:
        raise GroundTruthError(
            "ground truth has no query items (source 'user' with style > 0); nothing to score"
        )
    no_correct = int(np.sum(is_query & (n_correct == 0)))
    if no_correct:
        log.warning(
            "%d query items have no correct gallery item (same pair_id and style); they count "
            "as misses (the official script would stop on an assertion)",
            no_correct,
        )
    ranks = first_hit_rank[is_query]
    accuracy = {k: float(np.sum(ranks <= k)) / n_queries for k in ks}
    det_col = pd.array(np.where(query_det >= 0, query_det, 0), dtype="Int64")
    det_col[query_det < 0] = pd.NA
    query_score = np.full(n_users, np.nan)  # indexed only where there is a query: an empty
    query_score[query_det >= 0] = sub.score[query_det[query_det >= 0]]  # submission has none
    details = pd.DataFrame(
        {
            "image_id": u_image,
            "item_index": users["item_index"].to_numpy(np.int64),
            "pair_id": u_pair,
            "style": u_style,
            "category_id": u_cat,
            "detection": det_col,
            "query_score": query_score,
            "n_correct_gallery": n_correct,
            "first_hit_rank": first_hit_rank,
        }
    )[is_query].reset_index(drop=True)
    n_detected = int(details["detection"].notna().sum())
    log.info(
        "retrieval: %d query items, %d with a query detection, %s",
        n_queries,
        n_detected,
        ", ".join(f"Acc@{k} {v:.4f}" for k, v in accuracy.items()),
    )
    return RetrievalScores(
        accuracy=accuracy, n_queries=n_queries, n_detected=n_detected, details=details
    )
