"""Weighted boxes fusion (Solovyev et al.), vectorised over many images at once.

This is a faithful re-implementation of ``ensemble_boxes.weighted_boxes_fusion`` 1.0.9
(ZFTurbo): the same prefilter, the same greedy clustering, the same float32 arithmetic in
the fused box, the same confidence rescaling and the same output order, so the fused
boxes, scores and labels are bit-for-bit those of the library (the tests assert it). Two
things it adds:

* **membership**: which input boxes formed each fused box (``FusedBoxes.cluster``); the
  library does not return it, and the label vote (``vote_labels``) needs it;
* **speed**: the clustering is sequential within one (image, label) "lane", but lanes are
  independent, so step ``t`` handles the ``t``-th box of every lane of a whole chunk of
  images in one numpy pass. Per step the cost is a handful of array operations over
  (active lanes, clusters) instead of Python work per box.

The reference algorithm, per image and per label, with boxes sorted by weighted score
``s = score * weight`` (descending):

1. the box is compared (IoU) with every current fused box of its label; the first one of
   highest IoU is its match if that IoU is ``> iou_thr``, otherwise it starts a new cluster
   whose fused box is the box itself (float64, untouched);
2. a fused box of two or more members is ``sum(s_i * box_i) / sum(s_i)``, accumulated in
   float32 (``ensemble_boxes.get_weighted_box``), with score ``sum(s_i) / n`` (``avg``) or
   ``max(s_i)`` (``max``), stored as float32;
3. after clustering, scores are rescaled (``avg``: ``* min(M, n) / sum(weights)``; ``max``:
   ``/ max(weights)``; ``box_and_model_avg`` and ``absent_model_aware_avg`` as in the
   library), and all fused boxes of the image are ordered by ``argsort(score)[::-1]``.

Ties between equal scores are ordered exactly as the library orders them (its
non-stable ``argsort`` is re-run on the lanes and images that have ties). One known limit:
with 8 or more detectors the library's ``np.sum`` of weights may group additions
differently from ours in the last bit; with fewer (the paper uses 5) they are identical.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["CONF_TYPES", "FusedBoxes", "vote_labels", "wbf_batch", "weighted_boxes_fusion"]

log = logging.getLogger(__name__)

CONF_TYPES = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")


@dataclass(frozen=True)
class FusedBoxes:
    """The fused boxes of a batch of images, and which input boxes formed each."""

    group: np.ndarray  # (K,) int64: the image (group id) of each fused box
    boxes: np.ndarray  # (K, 4) float64: x1, y1, x2, y2 in [0, 1]
    scores: np.ndarray  # (K,) float64
    labels: np.ndarray  # (K,) int64
    cluster: np.ndarray  # (N,) int64: fused box each input box joined; -1 = prefiltered out
    leader: np.ndarray  # (K,) int64: input index of each cluster's first (top-scoring) box

    def __len__(self) -> int:
        return len(self.scores)


def _prefilter(
    boxes: np.ndarray, scores: np.ndarray, skip_box_thr: float
) -> tuple[np.ndarray, np.ndarray]:
    """The library's box checks, vectorised: swap reversed corners, clip to [0, 1], drop
    boxes under ``skip_box_thr`` and boxes of zero area. Returns (clean boxes, kept mask)."""
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    clean = np.stack(
        [
            np.clip(np.minimum(x1, x2), 0.0, 1.0),
            np.clip(np.minimum(y1, y2), 0.0, 1.0),
            np.clip(np.maximum(x1, x2), 0.0, 1.0),
            np.clip(np.maximum(y1, y2), 0.0, 1.0),
        ],
        axis=1,
    )  # (N, 4)
    changed = int(np.count_nonzero(np.any(clean != boxes, axis=1)))
    if changed:
        log.debug("WBF: %d boxes had reversed corners or lay outside [0, 1]; fixed", changed)
    area = (clean[:, 2] - clean[:, 0]) * (clean[:, 3] - clean[:, 1])
    keep = ~(scores < skip_box_thr) & (area != 0.0)
    return clean, keep


def _runs(keys: np.ndarray) -> np.ndarray:
    """Start positions of the runs of equal values in a sorted key array, plus its length."""
    if len(keys) == 0:
        return np.zeros(1, dtype=np.int64)
    change = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    return np.concatenate([[0], change, [len(keys)]]).astype(np.int64)


def _desc_order_like_library(values: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Permutation sorting each segment ``seg[i]:seg[i+1]`` of ``values`` descending, as the
    library's ``values[seg].argsort()[::-1]`` does (identical whenever a segment has no
    ties; segments with ties are re-sorted with that exact call)."""
    seg_id = np.repeat(np.arange(len(seg) - 1), np.diff(seg))
    perm = np.lexsort((-values, seg_id))  # within each segment: descending value
    sv = values[perm]
    tied = np.flatnonzero((sv[1:] == sv[:-1]) & (seg_id[1:] == seg_id[:-1]))
    for s in np.unique(seg_id[tied]) if len(tied) else ():
        a, b = seg[s], seg[s + 1]
        perm[a:b] = a + np.argsort(values[a:b])[::-1]
    return perm


class _Clusters:
    """Per-lane cluster state, (lanes, capacity) arrays grown on demand."""

    def __init__(self, n_lanes: int, cap: int) -> None:
        self.n = np.zeros(n_lanes, dtype=np.int64)  # clusters per lane
        f64 = ("x1", "y1", "x2", "y2", "area", "conf", "cmax", "wsum")
        self.f64 = {k: np.zeros((n_lanes, cap)) for k in f64}
        # float32 running sums of s * coordinate: the library's get_weighted_box
        self.f32 = {k: np.zeros((n_lanes, cap), dtype=np.float32) for k in ("s1", "s2", "s3", "s4")}
        self.count = np.zeros((n_lanes, cap), dtype=np.int64)
        self.models = np.zeros((n_lanes, cap), dtype=np.int64)  # bit mask of detectors
        self.leader = np.zeros((n_lanes, cap), dtype=np.int64)  # processing position

    @property
    def cap(self) -> int:
        return self.count.shape[1]

    def grow(self) -> None:
        def pad(a: np.ndarray) -> np.ndarray:
            return np.concatenate([a, np.zeros_like(a)], axis=1)

        self.f64 = {k: pad(v) for k, v in self.f64.items()}
        self.f32 = {k: pad(v) for k, v in self.f32.items()}
        self.count, self.models, self.leader = (
            pad(self.count),
            pad(self.models),
            pad(self.leader),
        )


def wbf_batch(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    models: np.ndarray,
    groups: np.ndarray,
    *,
    weights: Sequence[float],
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    conf_type: str = "avg",
    allows_overflow: bool = False,
) -> FusedBoxes:
    """Weighted boxes fusion of every image (``groups`` value) in one batch.

    ``boxes`` (N, 4) are x1, y1, x2, y2 normalised to [0, 1]; ``models`` (N,) is each box's
    detector index into ``weights`` (one weight per detector, all detectors counted even
    when one found nothing in an image, as when the library is given an empty list for it).
    Within one image and detector, boxes keep their input order (it decides ties).
    Output: fused boxes grouped by image (ascending group id), each image's boxes in the
    library's order (descending score).
    """
    if conf_type not in CONF_TYPES:
        raise ValueError(f"conf_type must be one of {CONF_TYPES}, got {conf_type!r}")
    w = np.asarray(weights, dtype=np.float64)  # (M,)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    models = np.asarray(models).astype(np.int64)
    groups = np.asarray(groups).astype(np.int64)
    n_in = len(scores)
    if not (len(boxes) == len(labels) == len(models) == len(groups) == n_in):
        raise ValueError("boxes, scores, labels, models and groups must have the same length")
    if n_in and (models.min() < 0 or models.max() >= len(w)):
        raise ValueError(f"model indices must lie in [0, {len(w)}) (one weight per detector)")
    if len(w) > 62:
        raise ValueError("at most 62 detectors (cluster membership is a 64-bit mask)")

    clean, keep = _prefilter(boxes, scores, skip_box_thr)
    s_all = scores * w[models] if n_in else scores.copy()  # the library's weighted score

    # Filtered boxes in the library's visiting order: image, then detector, then input order.
    order = np.lexsort((models, groups))
    f = order[keep[order]]  # (F,) input indices
    cluster_of_input = np.full(n_in, -1, dtype=np.int64)
    if len(f) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return FusedBoxes(empty, np.zeros((0, 4)), np.zeros(0), empty, cluster_of_input, empty)

    # Lanes = (image, label), each lane's boxes in visiting order (stable sort).
    by_lane = np.lexsort((labels[f], groups[f]))
    f = f[by_lane]
    g_f, l_f = groups[f], labels[f]
    brk = np.flatnonzero((g_f[1:] != g_f[:-1]) | (l_f[1:] != l_f[:-1])) + 1
    lane_seg = np.concatenate([[0], brk, [len(f)]]).astype(np.int64)
    n_lanes = len(lane_seg) - 1
    lane_len = np.diff(lane_seg)
    # Within each lane: descending weighted score, exactly as the library sorts.
    e = f[_desc_order_like_library(s_all[f], lane_seg)]  # (F,) input index in processing order
    # The lane's first box in visiting order decides where its label comes in the output.
    pos_in_visit = np.empty(n_in, dtype=np.int64)
    pos_in_visit[order[keep[order]]] = np.arange(len(f))
    lane_first = np.minimum.reduceat(pos_in_visit[e], lane_seg[:-1])

    bx = clean[e]  # (F, 4)
    bar = (bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1])  # (F,) areas
    bs = s_all[e]
    bw = w[models[e]]
    bbit = np.left_shift(1, models[e]).astype(np.int64)

    # Lane slots sorted by length (longest first) so that the lanes still active at step t
    # are a prefix 0..n_t-1 of the slots.
    slot_lane = np.argsort(-lane_len, kind="stable")
    slot_start = lane_seg[:-1][slot_lane]
    slot_len = lane_len[slot_lane]
    steps = int(slot_len[0])
    n_active = np.searchsorted(-slot_len, -np.arange(steps), side="left")  # len > t
    member_slot = np.empty(len(f), dtype=np.int64)  # per processing position
    member_c = np.empty(len(f), dtype=np.int64)

    st = _Clusters(n_lanes, cap=min(8, steps))
    x1, y1, x2, y2 = (st.f64[k] for k in ("x1", "y1", "x2", "y2"))
    for t in range(steps):
        n = int(n_active[t])
        rows = np.arange(n)
        pos = slot_start[:n] + t  # (n,) processing positions of this step's boxes
        nb = bx[pos]  # (n, 4)
        k = int(st.n[:n].max())
        if k == st.cap:
            st.grow()
            x1, y1, x2, y2 = (st.f64[k_] for k_ in ("x1", "y1", "x2", "y2"))
        if k > 0:
            # IoU with every cluster of the lane, as find_matching_box_fast computes it;
            # unused slots hold a zero box, whose IoU is 0 and so never wins.
            xa = np.maximum(x1[:n, :k], nb[:, 0:1])
            ya = np.maximum(y1[:n, :k], nb[:, 1:2])
            xb = np.minimum(x2[:n, :k], nb[:, 2:3])
            yb = np.minimum(y2[:n, :k], nb[:, 3:4])
            inter = np.maximum(xb - xa, 0) * np.maximum(yb - ya, 0)
            iou = inter / (st.f64["area"][:n, :k] + bar[pos][:, None] - inter)  # (n, k)
            best = iou.argmax(axis=1)
            matched = ~(iou[rows, best] <= iou_thr)
        else:
            best = np.zeros(n, dtype=np.int64)
            matched = np.zeros(n, dtype=bool)

        # Join an existing cluster: update the running sums, recompute the fused box.
        r, c, p = rows[matched], best[matched], pos[matched]
        if len(r):
            sp = bs[p]
            conf = st.f64["conf"][r, c] + sp
            st.f64["conf"][r, c] = conf
            st.f64["cmax"][r, c] = np.maximum(st.f64["cmax"][r, c], sp)
            st.f64["wsum"][r, c] += bw[p]
            st.count[r, c] += 1
            st.models[r, c] |= bbit[p]
            fused = []
            for j, key in enumerate(("s1", "s2", "s3", "s4")):
                acc = st.f32[key][r, c] + sp * bx[p, j]  # float32 + float64 -> float64
                st.f32[key][r, c] = acc  # rounded to float32, as the library's in-place add
                fused.append((st.f32[key][r, c] / conf).astype(np.float32).astype(np.float64))
            x1[r, c], y1[r, c], x2[r, c], y2[r, c] = fused
            st.f64["area"][r, c] = (fused[2] - fused[0]) * (fused[3] - fused[1])
            member_slot[p], member_c[p] = r, c

        # Start a new cluster: its fused box is the box itself (float64).
        r, p = rows[~matched], pos[~matched]
        if len(r):
            c = st.n[r]
            st.n[r] += 1
            sp = bs[p]
            x1[r, c], y1[r, c], x2[r, c], y2[r, c] = bx[p].T
            st.f64["area"][r, c] = bar[p]
            st.f64["conf"][r, c] = sp
            st.f64["cmax"][r, c] = sp
            st.f64["wsum"][r, c] = bw[p]
            for j, key in enumerate(("s1", "s2", "s3", "s4")):
                st.f32[key][r, c] = sp * bx[p, j]
            st.count[r, c] = 1
            st.models[r, c] = bbit[p]
            st.leader[r, c] = p
            member_slot[p], member_c[p] = r, c

    # ---- scores, as weighted_boxes_fusion rescales them -------------------------------
    valid = np.arange(st.cap)[None, :] < st.n[:, None]  # (lanes, cap)
    sl, cl = np.nonzero(valid)  # clusters, slot-major
    cnt = st.count[sl, cl]
    single = cnt == 1
    if conf_type == "max":
        raw = st.f64["cmax"][sl, cl]
    else:
        raw = st.f64["conf"][sl, cl] / cnt
    score = np.where(single, st.f64["conf"][sl, cl], raw.astype(np.float32).astype(np.float64))
    wsum = st.f64["wsum"][sl, cl]
    wbox = np.where(single, wsum, wsum.astype(np.float32).astype(np.float64))
    fcnt = cnt.astype(np.float64)
    if conf_type == "box_and_model_avg":
        present = _mask_sums(st.models[sl, cl], w, present=True)
        score = score * fcnt / wbox
        score = score * present / w.sum()
    elif conf_type == "absent_model_aware_avg":
        absent = _mask_sums(st.models[sl, cl], w, present=False)
        score = score * fcnt / (wbox + absent)
    elif conf_type == "max":
        score = score / w.max()
    elif not allows_overflow:
        score = score * np.minimum(len(w), cnt).astype(np.float64) / w.sum()
    else:
        score = score * fcnt / w.sum()
    fused_boxes = np.stack([st.f64[k][sl, cl] for k in ("x1", "y1", "x2", "y2")], axis=1)

    # ---- output order: per image, labels in order of first appearance, clusters in
    # creation order (the library's concatenation), then argsort(score)[::-1] ------------
    lane = slot_lane[sl]
    lane_group = groups[e[lane_seg[:-1]]]
    lane_label = labels[e[lane_seg[:-1]]]
    concat = np.lexsort((cl, lane_first[lane], lane_group[lane]))
    g_sorted = lane_group[lane][concat]
    final = concat[_desc_order_like_library(score[concat], _runs(g_sorted))]
    sl, cl = sl[final], cl[final]

    # Membership: cluster id of each input box in the final order.
    cid = np.full((n_lanes, st.cap), -1, dtype=np.int64)
    cid[sl, cl] = np.arange(len(final))
    cluster_of_input[e] = cid[member_slot, member_c]
    return FusedBoxes(
        group=lane_group[slot_lane[sl]],
        boxes=fused_boxes[final],
        scores=score[final],
        labels=lane_label[slot_lane[sl]],
        cluster=cluster_of_input,
        leader=e[st.leader[sl, cl]],
    )


def _mask_sums(masks: np.ndarray, w: np.ndarray, *, present: bool) -> np.ndarray:
    """Sum of the weights of the detectors present in (or absent from) each bit mask,
    each computed with ``np.sum`` over the weights in detector order, as the library does."""
    uniq, inv = np.unique(masks, return_inverse=True)
    bits = (uniq[:, None] >> np.arange(len(w))[None, :]) & 1  # (U, M)
    sel = bits.astype(bool) if present else ~bits.astype(bool)
    sums = np.array([w[row].sum() for row in sel], dtype=np.float64)
    return sums[inv]


def vote_labels(
    fused: FusedBoxes,
    labels: np.ndarray,
    scores: np.ndarray,
    models: np.ndarray,
    weights: Sequence[float],
) -> np.ndarray:
    """Score-weighted majority label of the boxes that formed each fused box.

    Each member votes for its own label with its weighted score (``score * weight`` of its
    detector, the quantity WBF averages); a tie goes to the label of the cluster's
    top-scoring box (its leader).
    """
    k = len(fused)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    labels = np.asarray(labels).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64) * np.asarray(weights, dtype=np.float64)[models]
    member = fused.cluster >= 0
    codes, inv = np.unique(labels, return_inverse=True)
    votes = np.zeros((k, len(codes)))  # (K, labels)
    np.add.at(votes, (fused.cluster[member], inv[member]), s[member])
    lead = inv[fused.leader]
    best = votes.argmax(axis=1)
    lead_ties = votes[np.arange(k), lead] == votes[np.arange(k), best]
    return codes[np.where(lead_ties, lead, best)]


def weighted_boxes_fusion(
    boxes_list: Sequence[np.ndarray],
    scores_list: Sequence[np.ndarray],
    labels_list: Sequence[np.ndarray],
    weights: Sequence[float] | None = None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    conf_type: str = "avg",
    allows_overflow: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One image, with ``ensemble_boxes.weighted_boxes_fusion``'s arguments.

    Returns (boxes, scores, labels, cluster): the library's three outputs, then for every
    input box (detectors concatenated in order) the index of the fused box it joined
    (-1 if prefiltered out).
    """
    n_models = len(boxes_list)
    if weights is None:
        weights = np.ones(n_models)
    if len(weights) != n_models:
        raise ValueError(f"{len(weights)} weights for {n_models} detectors")
    sizes = [len(s) for s in scores_list]
    fused = wbf_batch(
        np.concatenate([np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in boxes_list])
        if n_models
        else np.zeros((0, 4)),
        np.concatenate([np.asarray(s, dtype=np.float64) for s in scores_list])
        if n_models
        else np.zeros(0),
        np.concatenate([np.asarray(lab).reshape(-1) for lab in labels_list])
        if n_models
        else np.zeros(0),
        np.repeat(np.arange(n_models), sizes),
        np.zeros(sum(sizes), dtype=np.int64),
        weights=weights,
        iou_thr=iou_thr,
        skip_box_thr=skip_box_thr,
        conf_type=conf_type,
        allows_overflow=allows_overflow,
    )
    return fused.boxes, fused.scores, fused.labels.astype(np.float64), fused.cluster
