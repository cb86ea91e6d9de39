"""The retrieval evaluator against an independent, plain-Python reading of the rules.

``reference_scores`` below is written from docs/deepfashion2.md ("Scoring, as the
official script does it") with loops over lists of dicts, none of the library's helpers:

1. denominator: every ground-truth user item with style > 0;
2. each submitted box goes to the user item of its image it overlaps most (no minimum
   IoU; style-0 items take part; ties go to the first item in ``item_index`` order, as
   ``np.argmax`` in the official script);
3. an item's query: among the boxes it got whose ``query_cls`` is its category, the one
   with the highest ``query_score`` (ties: the earliest record, ``np.argmax`` again);
4. correct gallery items: shop items with the query item's ``pair_id`` and ``style``;
5. hit at k: one of the first k gallery entries lies on an image holding a correct item,
   with IoU >= 0.5 against that item's box.

The library evaluator must agree with it on many random submissions: Acc@k for every k
from 1 to 20, and per item the record chosen as its query and the rank of its first hit.
Boxes sit on a small integer grid, so IoUs are exact fractions: ties in the assignment
(identical or equally overlapping items, boxes that overlap nothing) and gallery boxes at
exactly IoU 0.5 are frequent, and the rules' edge cases are exercised, not just the bulk
(``test_random_cases_exercise_every_rule`` checks that they are).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from clothes_retrieval.evaluation import (
    DEFAULT_KS,
    SUBMISSION_COLUMNS,
    evaluate_retrieval,
    evaluate_submission_json,
    ground_truth_gallery,
    ground_truth_queries,
    gt_box_submission,
    ranking_to_submission,
    write_submission_json,
)

KS = tuple(range(1, 21))
N_CATEGORIES = 3  # few categories: detections often have the right class, often not
STYLES = (0, 1, 1, 2, 3)  # style 0 about a fifth of the items
FAR = [40.0, 40.0, 45.0, 45.0]  # overlaps no ground-truth box (they lie in [0, 17])


# ---------------------------------------------------------------------------------------
# The reference: plain Python, straight from the protocol
# ---------------------------------------------------------------------------------------


def iou(a: list[float], b: list[float]) -> float:
    """Continuous IoU of two [x1, y1, x2, y2] boxes (no "+1" pixel); 0 for a zero union."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box(item: dict) -> list[float]:
    return [item["x1"], item["y1"], item["x2"], item["y2"]]


def key(item: dict) -> tuple[int, int]:
    return (item["image_id"], item["item_index"])


def first_hit(query: dict, entries: list[tuple[int, list[float]]], shop: list[dict]) -> int | None:
    """1-based rank of the first entry (gallery image id, box) that hits ``query`` (rules 4-5)."""
    correct = [s for s in shop if s["pair_id"] == query["pair_id"] and s["style"] == query["style"]]
    for rank, (image_id, gallery_box) in enumerate(entries, start=1):
        for s in correct:
            if s["image_id"] == image_id and iou(gallery_box, box(s)) >= 0.5:
                return rank
    return None


def reference_scores(
    gt: list[dict], records: list[dict], ks: tuple[int, ...], events: Counter | None = None
) -> tuple[dict[int, float], dict[tuple[int, int], tuple[int | None, int | None]]]:
    """Acc@k, and per query item (image_id, item_index): (chosen record, first hit rank).

    ``events`` (optional) counts how often each rule's edge case came up.
    """
    events = Counter() if events is None else events
    users = [g for g in gt if g["source"] == "user"]
    shop = [g for g in gt if g["source"] == "shop"]

    # Rule 2: every record to the user item of its image that it overlaps most.
    assigned: dict[tuple[int, int], list[int]] = {}
    for r, rec in enumerate(records):
        same_image = [g for g in users if g["image_id"] == rec["query_image_id"]]
        best, best_iou, n_best = None, -1.0, 0
        for g in sorted(same_image, key=lambda g: g["item_index"]):
            v = iou(rec["query_bbox"], box(g))
            if v > best_iou:  # strict: a tie keeps the earlier item
                best, best_iou, n_best = g, v, 1
            elif v == best_iou:
                n_best += 1
        if best is None:
            events["record on an image without user items"] += 1
            continue
        events["assignment tie"] += n_best > 1
        events["assigned with IoU 0"] += best_iou == 0.0
        events["assigned to a style-0 item"] += best["style"] == 0
        assigned.setdefault(key(best), []).append(r)

    # Rules 1 and 3-5, per item of the denominator.
    per_item: dict[tuple[int, int], tuple[int | None, int | None]] = {}
    queries = [g for g in users if g["style"] > 0]
    for g in queries:
        chosen = None
        for r in assigned.get(key(g), []):
            if records[r]["query_cls"] != g["category_id"]:
                events["record of the wrong class"] += 1
                continue
            if chosen is None or records[r]["query_score"] > records[chosen]["query_score"]:
                chosen = r
            elif records[r]["query_score"] == records[chosen]["query_score"]:
                events["score tie"] += 1
        rank = None
        if chosen is None:
            events["miss: no query"] += 1
        else:
            rec = records[chosen]
            entries = list(zip(rec["gallery_image_id"], rec["gallery_bbox"], strict=True))
            entries = entries[:20]  # the script reads 20 entries per record
            rank = first_hit(g, entries, shop)
            events["hit"] += rank is not None
            events["first hit at rank 15-20"] += rank is not None and rank >= 15
            events["first hit at rank 20"] += rank == 20
            if rank is not None:  # the hit only just made the threshold
                image_id, gallery_box = entries[rank - 1]
                best = max(
                    iou(gallery_box, box(s))
                    for s in shop
                    if s["image_id"] == image_id
                    and (s["pair_id"], s["style"]) == (g["pair_id"], g["style"])
                )
                events["hit at IoU exactly 0.5"] += best == 0.5
        per_item[key(g)] = (chosen, rank)
    accuracy = {
        k: sum(1 for _, rank in per_item.values() if rank is not None and rank <= k) / len(queries)
        for k in ks
    }
    return accuracy, per_item


def reference_gt_box_mode(
    gt: list[dict], rankings: dict[tuple[int, int], list[dict]], ks: tuple[int, ...]
) -> tuple[dict[int, float], dict[tuple[int, int], tuple[int | None, int | None]]]:
    """Ground-truth-box mode: each query item is its own query, each ranked gallery item
    offers its own box; rules 1, 4 and 5 as above. ``rankings``: query key -> gallery items.
    """
    shop = [g for g in gt if g["source"] == "shop"]
    queries = [g for g in gt if g["source"] == "user" and g["style"] > 0]
    per_item = {}
    for g in queries:
        entries = [(s["image_id"], box(s)) for s in rankings[key(g)][:20]]
        per_item[key(g)] = (key(g), first_hit(g, entries, shop))
    accuracy = {
        k: sum(1 for _, rank in per_item.values() if rank is not None and rank <= k) / len(queries)
        for k in ks
    }
    return accuracy, per_item


# ---------------------------------------------------------------------------------------
# Random ground truths and submissions
# ---------------------------------------------------------------------------------------


def grid_box(rng: np.random.Generator) -> list[float]:
    x1, y1 = (int(v) for v in rng.integers(0, 10, 2))
    w, h = (int(v) for v in rng.integers(1, 8, 2))
    return [float(x1), float(y1), float(x1 + w), float(y1 + h)]


def jitter(rng: np.random.Generator, b: list[float]) -> list[float]:
    """``b`` with each side moved by -1, 0 or +1 (still a box of positive area)."""
    x1, y1, x2, y2 = (v + float(d) for v, d in zip(b, rng.integers(-1, 2, 4), strict=True))
    return [x1, y1, max(x2, x1 + 1.0), max(y2, y1 + 1.0)]


def random_ground_truth(
    rng: np.random.Generator, *, distinct_user_boxes: bool = False
) -> list[dict]:
    """User images 1..n and shop images 101..; 1-3 items each; one pair_id per image."""
    n_pairs = int(rng.integers(2, 6))
    gt = []
    for source, first_id, n_images in (
        ("user", 1, int(rng.integers(3, 9))),
        ("shop", 101, int(rng.integers(4, 13))),
    ):
        for image_id in range(first_id, first_id + n_images):
            pair_id = int(rng.integers(1, n_pairs + 1))
            boxes: list[list[float]] = []
            for _ in range(int(rng.integers(1, 4))):
                b = grid_box(rng)
                if boxes and rng.random() < 0.15:
                    b = list(boxes[-1])  # an identical box: the assignment ties
                while distinct_user_boxes and source == "user" and b in boxes:
                    b = grid_box(rng)
                boxes.append(b)
            for index, b in enumerate(boxes, start=1):
                gt.append(
                    dict(
                        image_id=image_id,
                        source=source,
                        pair_id=pair_id,
                        style=int(rng.choice(STYLES)),
                        category_id=int(rng.integers(1, N_CATEGORIES + 1)),
                        x1=b[0],
                        y1=b[1],
                        x2=b[2],
                        y2=b[3],
                        item_index=index,
                    )
                )
    if not any(g["source"] == "user" and g["style"] > 0 for g in gt):
        gt[0]["style"] = 1  # something to score
    order = rng.permutation(len(gt))  # the table's row order must not matter
    return [gt[i] for i in order]


def random_gallery_entry(
    rng: np.random.Generator, gt: list[dict], pair_id: int | None
) -> tuple[int, list[float]]:
    """A gallery (image id, box), often on a shop image of ``pair_id`` near one of its items."""
    shop_images = sorted({g["image_id"] for g in gt if g["source"] == "shop"})
    same_pair = sorted(
        {g["image_id"] for g in gt if g["source"] == "shop" and g["pair_id"] == pair_id}
    )
    u = rng.random()
    if u < 0.05:
        image_id = 999  # an image the ground truth does not have
    elif u < 0.5 and same_pair:
        image_id = int(rng.choice(same_pair))
    else:
        image_id = int(rng.choice(shop_images))
    items = [g for g in gt if g["image_id"] == image_id]
    u = rng.random()
    if items and u < 0.8:
        x1, y1, x2, y2 = box(items[int(rng.integers(len(items)))])
        if u < 0.2:
            return image_id, [x1, y1, x2, y2]
        if u < 0.35:  # twice as wide: IoU exactly 0.5, a hit
            return image_id, [x1, y1, 2 * x2 - x1, y2]
        if u < 0.45:  # and one more: IoU just under 0.5, not a hit
            return image_id, [x1, y1, 2 * x2 - x1 + 1, y2]
        return image_id, jitter(rng, [x1, y1, x2, y2])
    return image_id, grid_box(rng)


def random_query_box(rng: np.random.Generator, items: list[dict]) -> tuple[list[float], int]:
    """A query box and class: near an item of the image (often its class), or anywhere."""
    u = rng.random()
    if items and u < 0.85:
        g = items[int(rng.integers(len(items)))]
        b = list(box(g)) if rng.random() < 0.3 else jitter(rng, box(g))
        cls = g["category_id"] if rng.random() < 0.7 else int(rng.integers(1, N_CATEGORIES + 1))
        return b, cls
    b = FAR if u > 0.9 else grid_box(rng)
    return list(b), int(rng.integers(1, N_CATEGORIES + 1))


def random_score(rng: np.random.Generator) -> float:
    # mostly from a few values, so that equal scores compete for the same item
    return float(rng.choice([0.4, 0.6, 0.8])) if rng.random() < 0.8 else float(rng.random())


def query_image(rng: np.random.Generator, gt: list[dict]) -> int:
    users = sorted({g["image_id"] for g in gt if g["source"] == "user"})
    u = rng.random()
    if u < 0.05:
        return 999  # no such image
    if u < 0.1:
        return int(rng.choice(sorted({g["image_id"] for g in gt if g["source"] == "shop"})))
    return int(rng.choice(users))


def random_records(rng: np.random.Generator, gt: list[dict], *, full_lists: bool) -> list[dict]:
    """Submission records: 0-8 per user image; 20 entries each or 1-25."""
    n_user_images = len({g["image_id"] for g in gt if g["source"] == "user"})
    records = []
    for _ in range(int(rng.integers(0, 8 * n_user_images + 1))):
        image_id = query_image(rng, gt)
        items = [g for g in gt if g["image_id"] == image_id and g["source"] == "user"]
        qbox, cls = random_query_box(rng, items)
        pair_id = items[0]["pair_id"] if items else None
        n_entries = 20 if full_lists else int(rng.integers(1, 26))
        entries = [random_gallery_entry(rng, gt, pair_id) for _ in range(n_entries)]
        if rng.random() < 0.3:  # a run of sure misses first: first hits late, up to rank 20
            late = int(rng.integers(n_entries // 2, n_entries))
            entries[:late] = [(999, FAR)] * late
        records.append(
            dict(
                query_image_id=image_id,
                query_bbox=qbox,
                query_cls=cls,
                query_score=random_score(rng),
                gallery_image_id=[e[0] for e in entries],
                gallery_bbox=[e[1] for e in entries],
            )
        )
    return records


def library_per_item(details: pd.DataFrame) -> dict[tuple[int, int], tuple[int | None, int | None]]:
    out = {}
    for row in details.itertuples():
        det = None if pd.isna(row.detection) else int(row.detection)
        rank = None if np.isnan(row.first_hit_rank) else int(row.first_hit_rank)
        out[(int(row.image_id), int(row.item_index))] = (det, rank)
    return out


def assert_same(scores, ref_accuracy, ref_items, compare_chosen: bool = True) -> None:
    lib_items = library_per_item(scores.details)
    if compare_chosen:
        assert lib_items == ref_items
    else:  # ground-truth-box mode: compare the hit ranks only
        assert {k: v[1] for k, v in lib_items.items()} == {k: v[1] for k, v in ref_items.items()}
    assert scores.accuracy == ref_accuracy  # exact: both are (integer count) / (integer count)
    assert scores.n_queries == len(ref_items)
    assert scores.n_detected == sum(v[0] is not None for v in ref_items.values())


# ---------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("full_lists", [True, False], ids=["20-entries", "1-25-entries"])
@pytest.mark.parametrize("seed", range(25))
def test_detected_boxes_match_reference(seed, full_lists):
    rng = np.random.default_rng(seed)
    gt = random_ground_truth(rng)
    records = random_records(rng, gt, full_lists=full_lists)
    submission = pd.DataFrame(records, columns=list(SUBMISSION_COLUMNS))
    scores = evaluate_retrieval(pd.DataFrame(gt), submission, ks=KS)
    assert_same(scores, *reference_scores(gt, records, KS))


@pytest.mark.parametrize("seed", range(10))
def test_ranking_submission_through_json_matches_reference(seed, tmp_path):
    """The pipeline's path: detected query and gallery boxes, a ranking, the official JSON."""
    rng = np.random.default_rng(100 + seed)
    gt = random_ground_truth(rng)
    records = random_records(rng, gt, full_lists=True)
    # One gallery table of detected shop boxes; each record's entries become row positions.
    gallery_rows: list[tuple[int, list[float]]] = []
    ranking = np.full((len(records), 25), -1, dtype=np.int64)
    n_valid = rng.integers(1, 26, len(records))  # short rows are padded, long ones cut
    for q, rec in enumerate(records):
        for j in range(int(n_valid[q])):
            if j < 20:
                entry = (rec["gallery_image_id"][j], rec["gallery_bbox"][j])
            else:  # beyond the 20 the official script reads
                entry = random_gallery_entry(rng, gt, None)
            ranking[q, j] = len(gallery_rows)
            gallery_rows.append(entry)
    queries = pd.DataFrame(
        {
            "image_id": [r["query_image_id"] for r in records],
            "x1": [r["query_bbox"][0] for r in records],
            "y1": [r["query_bbox"][1] for r in records],
            "x2": [r["query_bbox"][2] for r in records],
            "y2": [r["query_bbox"][3] for r in records],
            "category_id": [r["query_cls"] for r in records],
            "score": [r["query_score"] for r in records],
        }
    )
    gallery = pd.DataFrame(
        [(i, *b) for i, b in gallery_rows], columns=["image_id", "x1", "y1", "x2", "y2"]
    )
    path = write_submission_json(
        tmp_path / "submission.json", ranking_to_submission(queries, gallery, ranking)
    )
    scores = evaluate_submission_json(path, pd.DataFrame(gt), ks=KS)
    # What the reference scores: each record's own first n_valid (at most 20) entries.
    expected = [
        dict(
            rec,
            gallery_image_id=[gallery_rows[p][0] for p in ranking[q, : min(n_valid[q], 20)]],
            gallery_bbox=[gallery_rows[p][1] for p in ranking[q, : min(n_valid[q], 20)]],
        )
        for q, rec in enumerate(records)
    ]
    assert_same(scores, *reference_scores(gt, expected, KS))


@pytest.mark.parametrize("seed", range(20))
def test_gt_box_mode_matches_reference(seed):
    """Table 3's mode: ground-truth query items and gallery items, each with its own box.

    Within a user image the items' boxes are distinct here, so "each query item is its own
    query" (the reference) and "submit the items' boxes and apply rule 2" (the library)
    cannot differ by an assignment tie.
    """
    rng = np.random.default_rng(200 + seed)
    gt = random_ground_truth(rng, distinct_user_boxes=True)
    queries = sorted((g for g in gt if g["source"] == "user" and g["style"] > 0), key=key)
    gallery = sorted((g for g in gt if g["source"] == "shop"), key=key)
    gt_df = pd.DataFrame(gt)
    q_df, g_df = ground_truth_queries(gt_df), ground_truth_gallery(gt_df)
    # The documented order of the ranking's rows and positions: (image_id, item_index).
    assert list(zip(q_df["image_id"], q_df["item_index"], strict=True)) == [key(g) for g in queries]
    assert list(zip(g_df["image_id"], g_df["item_index"], strict=True)) == [key(g) for g in gallery]

    width = int(rng.choice([3, 20, 30]))  # shorter than 20 (padded), exactly 20, longer (cut)
    ranking = np.stack([rng.permutation(max(len(gallery), width))[:width] % len(gallery)
                        for _ in queries])  # fmt: skip
    for q, g in enumerate(queries):  # often put a correct item somewhere in the list
        correct = [p for p, s in enumerate(gallery)
                   if s["pair_id"] == g["pair_id"] and s["style"] == g["style"]]  # fmt: skip
        if correct and rng.random() < 0.7:
            ranking[q, int(rng.integers(width))] = int(rng.choice(correct))
        if rng.random() < 0.2:  # "no more results" in the tail (faiss's -1)
            ranking[q, int(rng.integers(1, width + 1)) :] = -1
    scores = evaluate_retrieval(gt_df, gt_box_submission(q_df, g_df, ranking), ks=KS)
    rankings = {key(g): [gallery[p] for p in ranking[q] if p >= 0] for q, g in enumerate(queries)}
    assert_same(scores, *reference_gt_box_mode(gt, rankings, KS), compare_chosen=False)
    assert scores.n_detected == len(queries)  # every item is its own query


def test_default_ks_match_reference():
    rng = np.random.default_rng(7)
    gt = random_ground_truth(rng)
    records = random_records(rng, gt, full_lists=True)
    scores = evaluate_retrieval(
        pd.DataFrame(gt), pd.DataFrame(records, columns=list(SUBMISSION_COLUMNS))
    )
    assert tuple(scores.accuracy) == DEFAULT_KS == (1, 5, 10, 15, 20)
    assert scores.accuracy == reference_scores(gt, records, DEFAULT_KS)[0]


def test_random_cases_exercise_every_rule():
    """The random submissions above hit each rule's edge cases, not only the easy bulk."""
    events: Counter = Counter()
    accuracies = []
    for seed in range(25):
        for full_lists in (True, False):
            rng = np.random.default_rng(seed)
            gt = random_ground_truth(rng)
            records = random_records(rng, gt, full_lists=full_lists)
            accuracies.append(reference_scores(gt, records, KS, events)[0][20])
    for event in (
        "record on an image without user items",
        "assignment tie",
        "assigned with IoU 0",
        "assigned to a style-0 item",
        "record of the wrong class",
        "score tie",
        "miss: no query",
        "hit",
        "hit at IoU exactly 0.5",
        "first hit at rank 15-20",
    ):
        assert events[event] >= 10, (event, events)
    assert events["first hit at rank 20"] >= 2, events  # Acc@20 differs from Acc@19
    assert 0.1 < np.mean(accuracies) < 0.9  # neither all hits nor all misses
