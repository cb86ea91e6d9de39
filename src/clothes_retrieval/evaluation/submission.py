"""Building, writing and reading DeepFashion2 retrieval submissions.

A submission is one record per detected query box::

    {"query_image_id": int, "query_bbox": [x1, y1, x2, y2], "query_cls": int,
     "query_score": float, "gallery_image_id": [20 ints], "gallery_bbox": [[x1, y1, x2, y2] x 20]}

In memory it is a DataFrame with those six columns (lists in the list-valued ones). The
official script reads exactly 20 gallery entries per record and crashes on fewer, so
:func:`ranking_to_submission` pads a shorter ranking by repeating its last entry (a
repeated entry can never add a hit, so the scores are unchanged) and
:func:`write_submission_json` refuses records with fewer than 20 entries.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clothes_retrieval.evaluation.retrieval import (
    DEFAULT_KS,
    SUBMISSION_COLUMNS,
    RetrievalScores,
    SubmissionError,
    evaluate_retrieval,
)
from clothes_retrieval.io import write_json

__all__ = [
    "N_GALLERY_ENTRIES",
    "ranking_to_submission",
    "ground_truth_queries",
    "ground_truth_gallery",
    "gt_box_submission",
    "submission_to_records",
    "records_to_submission",
    "write_submission_json",
    "read_submission_json",
    "evaluate_submission_json",
]

log = logging.getLogger(__name__)

N_GALLERY_ENTRIES = 20  # entries per record that the official script reads
_BOX = ["x1", "y1", "x2", "y2"]


def ranking_to_submission(
    queries: pd.DataFrame,
    gallery: pd.DataFrame,
    ranking: np.ndarray,
    n_entries: int = N_GALLERY_ENTRIES,
) -> pd.DataFrame:
    """Turn query boxes and a ranking of gallery boxes into submission records.

    ``queries``: one row per query box, columns ``image_id``, ``x1``, ``y1``, ``x2``, ``y2``,
    ``category_id`` and ``score``. ``gallery``: one row per gallery (shop) box, columns
    ``image_id``, ``x1``, ``y1``, ``x2``, ``y2``. ``ranking``: (Q, k) row positions into
    ``gallery``, best first; -1 marks "no more results" (as faiss returns) and may only
    trail. Each record gets exactly ``n_entries`` entries: longer rankings are cut, shorter
    ones padded by repeating the last entry (the official script crashes on fewer than 20).
    """
    ranking = np.asarray(ranking)
    if ranking.ndim != 2 or ranking.shape[0] != len(queries):
        raise ValueError(
            f"ranking must be (Q, k) with Q = {len(queries)} query rows, got shape {ranking.shape}"
        )
    if not np.issubdtype(ranking.dtype, np.integer):
        raise ValueError(f"ranking must hold integer row positions, got dtype {ranking.dtype}")
    for name, df, cols in (
        ("queries", queries, ["image_id", *_BOX, "category_id", "score"]),
        ("gallery", gallery, ["image_id", *_BOX]),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"{name} lacks columns {missing}; expected {cols}")
    if n_entries < 1:
        raise ValueError(f"n_entries must be >= 1, got {n_entries}")
    n_q, k = ranking.shape
    if k == 0:
        raise ValueError("ranking has no columns; every query needs at least one gallery entry")
    if ranking.max(initial=-1) >= len(gallery) or ranking.min(initial=0) < -1:
        raise ValueError(
            f"ranking holds positions outside [-1, {len(gallery) - 1}] (the gallery has "
            f"{len(gallery)} rows)"
        )
    valid = ranking >= 0
    n_valid = valid.sum(axis=1)  # (Q,)
    if np.any(n_valid == 0):
        raise ValueError(
            f"query rows {np.flatnonzero(n_valid == 0)[:10].tolist()} have no gallery entry"
        )
    if np.any(valid[:, 1:] & ~valid[:, :-1]):
        raise ValueError("ranking has -1 before a valid entry; -1 may only fill the tail of a row")

    # (Q, n_entries) positions: cut, then pad each row with its last valid entry.
    cols = np.minimum(np.arange(n_entries)[None, :], (n_valid - 1)[:, None])
    pos = np.take_along_axis(ranking, cols, axis=1)
    g_image = gallery["image_id"].to_numpy(np.int64)
    g_box = gallery[_BOX].to_numpy(np.float64)
    q_box = queries[_BOX].to_numpy(np.float64)
    out = pd.DataFrame(
        {
            "query_image_id": queries["image_id"].to_numpy(np.int64),
            "query_bbox": list(q_box),
            "query_cls": queries["category_id"].to_numpy(np.int64),
            "query_score": queries["score"].to_numpy(np.float64),
            "gallery_image_id": list(g_image[pos]),
            "gallery_bbox": list(g_box[pos]),
        }
    )
    padded = int(np.sum(n_valid < n_entries))
    if padded:
        log.info(
            "%d of %d records had fewer than %d gallery entries; padded with their last entry",
            padded,
            n_q,
            n_entries,
        )
    return out


def ground_truth_queries(gt_items: pd.DataFrame) -> pd.DataFrame:
    """The query items scored in ground-truth-box mode: user items with style > 0.

    Ordered by (image_id, item_index); the rows of a ranking for :func:`gt_box_submission`
    follow this order.
    """
    q = gt_items[(gt_items["source"] == "user") & (gt_items["style"] > 0)]
    return q.sort_values(["image_id", "item_index"], kind="stable").reset_index(drop=True)


def ground_truth_gallery(gt_items: pd.DataFrame) -> pd.DataFrame:
    """The gallery in ground-truth-box mode: every shop item (style 0 ones are distractors).

    Ordered by (image_id, item_index); ranking positions refer to this order.
    """
    g = gt_items[gt_items["source"] == "shop"]
    return g.sort_values(["image_id", "item_index"], kind="stable").reset_index(drop=True)


def gt_box_submission(
    query_items: pd.DataFrame,
    gallery_items: pd.DataFrame,
    ranking: np.ndarray,
    n_entries: int = N_GALLERY_ENTRIES,
) -> pd.DataFrame:
    """Submission for ground-truth-box mode (the paper's Table 3).

    Each query item is its own query box (``query_score`` 1, ``query_cls`` its category);
    ``ranking`` (Q, k) holds row positions into ``gallery_items`` whose own boxes are the
    gallery boxes. Usually ``query_items = ground_truth_queries(gt)`` and
    ``gallery_items = ground_truth_gallery(gt)``.
    """
    queries = query_items[["image_id", *_BOX, "category_id"]].assign(score=1.0)
    return ranking_to_submission(queries, gallery_items, ranking, n_entries=n_entries)


# ---------------------------------------------------------------------------------------
# JSON records
# ---------------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


def _is_box(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 4 and all(_is_number(x) for x in v)


def _record_errors(i: int, rec: Any) -> list[str]:
    """Everything wrong with record ``i`` (empty when it is valid)."""
    if not isinstance(rec, dict):
        return [f"record {i}: expected an object with keys {list(SUBMISSION_COLUMNS)}, got "
                f"{type(rec).__name__}"]  # fmt: skip
    errs = []
    missing = [k for k in SUBMISSION_COLUMNS if k not in rec]
    extra = [k for k in rec if k not in SUBMISSION_COLUMNS]
    if missing:
        errs.append(f"record {i}: missing keys {missing}")
    if extra:
        errs.append(f"record {i}: unknown keys {extra} (allowed: {list(SUBMISSION_COLUMNS)})")
    checks = {
        "query_image_id": (_is_int, "an integer"),
        "query_bbox": (_is_box, "a list of 4 finite numbers [x1, y1, x2, y2]"),
        "query_cls": (_is_int, "an integer category id"),
        "query_score": (_is_number, "a finite number"),
        "gallery_image_id": (
            lambda v: isinstance(v, list) and len(v) > 0 and all(_is_int(x) for x in v),
            "a non-empty list of integers",
        ),
        "gallery_bbox": (
            lambda v: isinstance(v, list) and len(v) > 0 and all(_is_box(x) for x in v),
            "a non-empty list of [x1, y1, x2, y2] boxes",
        ),
    }
    for key, (ok, what) in checks.items():
        if key in rec and not ok(rec[key]):
            errs.append(f"record {i}, key '{key}': expected {what}, got {rec[key]!r:.80}")
    gid, gbox = rec.get("gallery_image_id"), rec.get("gallery_bbox")
    if isinstance(gid, list) and isinstance(gbox, list) and len(gid) != len(gbox):
        errs.append(
            f"record {i}: 'gallery_image_id' has {len(gid)} entries, 'gallery_bbox' {len(gbox)}"
        )
    return errs


def records_to_submission(records: Any) -> pd.DataFrame:
    """Validate official submission records and return them as a submission DataFrame.

    Raises :class:`SubmissionError` listing the bad records (index and key), at most 20.
    """
    if not isinstance(records, list):
        raise SubmissionError(
            f"a submission must be a JSON list of records, got {type(records).__name__}"
        )
    errors: list[str] = []
    for i, rec in enumerate(records):
        errors.extend(_record_errors(i, rec))
        if len(errors) >= 20:
            break
    if errors:
        raise SubmissionError("invalid submission:\n  " + "\n  ".join(errors[:20]))
    short = sum(len(r["gallery_image_id"]) < N_GALLERY_ENTRIES for r in records)
    if short:
        log.warning(
            "%d records have fewer than %d gallery entries (the official script would crash; "
            "missing entries are scored as misses)",
            short,
            N_GALLERY_ENTRIES,
        )
    return pd.DataFrame({c: [r[c] for r in records] for c in SUBMISSION_COLUMNS})


def submission_to_records(submission: pd.DataFrame) -> list[dict[str, Any]]:
    """Submission DataFrame -> official records with JSON-native ints and floats."""
    missing = [c for c in SUBMISSION_COLUMNS if c not in submission.columns]
    if missing:
        raise SubmissionError(f"submission lacks columns {missing}")
    cols = {c: submission[c].tolist() for c in SUBMISSION_COLUMNS}
    records = []
    for i in range(len(submission)):
        try:
            records.append(
                {
                    "query_image_id": int(cols["query_image_id"][i]),
                    "query_bbox": [float(x) for x in cols["query_bbox"][i]],
                    "query_cls": int(cols["query_cls"][i]),
                    "query_score": float(cols["query_score"][i]),
                    "gallery_image_id": [int(x) for x in cols["gallery_image_id"][i]],
                    "gallery_bbox": [[float(x) for x in b] for b in cols["gallery_bbox"][i]],
                }
            )
        except (TypeError, ValueError) as exc:
            raise SubmissionError(f"submission record {i} cannot be converted: {exc}") from None
    return records


def write_submission_json(path: str | Path, submission: pd.DataFrame) -> Path:
    """Write the official submission JSON atomically, after validating every record.

    Every record must have exactly 20 gallery entries (the official script's format);
    build it with :func:`ranking_to_submission`, which pads.
    """
    records = submission_to_records(submission)
    records_to_submission(records)  # same checks as the reader
    wrong = [i for i, r in enumerate(records) if len(r["gallery_image_id"]) != N_GALLERY_ENTRIES]
    if wrong:
        raise SubmissionError(
            f"records {wrong[:10]} do not have exactly {N_GALLERY_ENTRIES} gallery entries; "
            "build the submission with ranking_to_submission (it pads and cuts to 20)"
        )
    log.info("writing %d submission records to %s", len(records), path)
    return write_json(path, records, indent=None)


def read_submission_json(path: str | Path) -> pd.DataFrame:
    """Read and validate an official submission JSON into a submission DataFrame."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"submission file not found: {path}")
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SubmissionError(f"{path}: not valid JSON: {exc}") from None
    try:
        return records_to_submission(records)
    except SubmissionError as exc:
        raise SubmissionError(f"{path}: {exc}") from None


def evaluate_submission_json(
    path: str | Path, gt_items: pd.DataFrame, ks: Sequence[int] = DEFAULT_KS
) -> RetrievalScores:
    """Read an official submission JSON and score it against ``gt_items``."""
    return evaluate_retrieval(gt_items, read_submission_json(path), ks=ks)
