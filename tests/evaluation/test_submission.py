"""Submission building (rankings, ground-truth boxes) and the official JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clothes_retrieval.evaluation import (
    N_GALLERY_ENTRIES,
    SubmissionError,
    evaluate_retrieval,
    evaluate_submission_json,
    ground_truth_gallery,
    ground_truth_queries,
    gt_box_submission,
    ranking_to_submission,
    read_submission_json,
    write_submission_json,
)


@pytest.fixture
def gt() -> pd.DataFrame:
    rows = []
    for i in range(6):  # user images 0..5, pair i; shop images 100+i, pair i
        for source, image in (("user", i), ("shop", 100 + i)):
            rows.append(
                dict(image_id=image, source=source, pair_id=i, style=1, category_id=1 + i % 3,
                     x1=1.0 * i, y1=0.0, x2=10.0 + i, y2=12.0, item_index=1)
            )  # fmt: skip
    rows.append(
        dict(image_id=3, source="user", pair_id=3, style=0, category_id=5,
             x1=50.0, y1=50.0, x2=60.0, y2=60.0, item_index=2)
    )  # fmt: skip
    return pd.DataFrame(rows)


def test_gt_box_mode_with_perfect_and_shifted_rankings(gt):
    q, g = ground_truth_queries(gt), ground_truth_gallery(gt)
    assert len(q) == 6 and (q["style"] > 0).all() and len(g) == 6
    perfect = np.arange(6)[:, None]  # query i -> shop item i, then padding
    sub = gt_box_submission(q, g, perfect)
    assert sub["query_score"].eq(1.0).all()
    assert (sub["query_cls"].to_numpy() == q["category_id"].to_numpy()).all()
    assert all(len(x) == N_GALLERY_ENTRIES for x in sub["gallery_image_id"])
    assert evaluate_retrieval(gt, sub).accuracy[1] == 1.0
    shifted = np.stack([(np.arange(6) + 1) % 6, np.arange(6)], axis=1)  # right one second
    s = evaluate_retrieval(gt, gt_box_submission(q, g, shifted))
    assert s.accuracy[1] == 0.0 and s.accuracy[5] == 1.0


def test_ranking_to_submission_pads_cuts_and_rejects(gt):
    q = ground_truth_queries(gt).assign(score=0.5)
    g = ground_truth_gallery(gt)
    ranking = np.full((6, 3), -1)
    ranking[:, 0] = 5
    ranking[:, 1] = np.arange(6)
    sub = ranking_to_submission(q, g, ranking)
    assert sub.loc[0, "gallery_image_id"].tolist() == [105] + [100] * 19  # last valid repeated
    long = ranking_to_submission(q, g, np.tile(np.arange(6), (6, 5)))
    assert all(len(x) == 20 for x in long["gallery_bbox"])
    with pytest.raises(ValueError, match="no gallery entry"):
        ranking_to_submission(q, g, np.full((6, 2), -1))
    with pytest.raises(ValueError, match="outside"):
        ranking_to_submission(q, g, np.full((6, 2), 6))
    with pytest.raises(ValueError, match="tail"):
        ranking_to_submission(q, g, np.array([[-1, 1]] * 6))


def test_json_round_trip_scores_the_same(gt, tmp_path):
    q, g = ground_truth_queries(gt), ground_truth_gallery(gt)
    rng = np.random.default_rng(1)
    ranking = np.argsort(rng.random((6, 6)), axis=1)
    sub = gt_box_submission(q, g, ranking)
    path = write_submission_json(tmp_path / "sub.json", sub)
    records = json.loads(path.read_text())
    assert set(records[0]) == {
        "query_image_id", "query_bbox", "query_cls", "query_score",
        "gallery_image_id", "gallery_bbox",
    }  # fmt: skip
    assert type(records[0]["query_image_id"]) is int and type(records[0]["query_score"]) is float
    assert type(records[0]["gallery_bbox"][0][0]) is float
    back = read_submission_json(path)
    assert back["gallery_image_id"].tolist() == [list(x) for x in sub["gallery_image_id"]]
    assert evaluate_submission_json(path, gt).accuracy == evaluate_retrieval(gt, sub).accuracy
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file


def test_writer_refuses_fewer_than_20_entries(gt, tmp_path):
    sub = gt_box_submission(
        ground_truth_queries(gt), ground_truth_gallery(gt), np.zeros((6, 1), int)
    )
    sub["gallery_image_id"] = [list(x[:3]) for x in sub["gallery_image_id"]]
    sub["gallery_bbox"] = [list(x[:3]) for x in sub["gallery_bbox"]]
    with pytest.raises(SubmissionError, match="exactly 20"):
        write_submission_json(tmp_path / "s.json", sub)
    assert not (tmp_path / "s.json").exists()


def _good_record():
    return {
        "query_image_id": 1, "query_bbox": [0, 0, 1, 1], "query_cls": 1, "query_score": 0.5,
        "gallery_image_id": [2] * 20, "gallery_bbox": [[0, 0, 1, 1]] * 20,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("query_cls"), r"record 1: missing keys \['query_cls'\]"),
        (lambda r: r.update(extra=1), r"record 1: unknown keys \['extra'\]"),
        (lambda r: r.update(query_image_id="7"), r"record 1, key 'query_image_id'"),
        (lambda r: r.update(query_bbox=[0, 0, 1]), r"record 1, key 'query_bbox'"),
        (lambda r: r.update(query_score=True), r"record 1, key 'query_score'"),
        (lambda r: r.update(gallery_image_id=[2.5] * 20), r"record 1, key 'gallery_image_id'"),
        (lambda r: r.update(gallery_bbox=[[0, 0, 1, 1]] * 19), r"record 1: 'gallery_image_id'"),
    ],
)
def test_malformed_records_are_named(tmp_path, change, message):
    bad = _good_record()
    change(bad)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([_good_record(), bad]))
    with pytest.raises(SubmissionError, match=message):
        read_submission_json(path)


def test_malformed_files(tmp_path):
    (tmp_path / "a.json").write_text('{"query_image_id": 1}')
    with pytest.raises(SubmissionError, match="JSON list"):
        read_submission_json(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("[{")
    with pytest.raises(SubmissionError, match="not valid JSON"):
        read_submission_json(tmp_path / "b.json")
    (tmp_path / "c.json").write_text("[3]")
    with pytest.raises(SubmissionError, match="record 0: expected an object"):
        read_submission_json(tmp_path / "c.json")
    with pytest.raises(FileNotFoundError):
        read_submission_json(tmp_path / "missing.json")
