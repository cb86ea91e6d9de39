"""The unannotated DeepFashion2 test split: reading its info files (tiny hand-made folders),
and its official submission from a real published bundle (a sample test split)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clothes_retrieval.data.sample import SampleDataConfig, generate_sample_data
from clothes_retrieval.detection.inference import IMAGE_COLUMNS, InferenceResult
from clothes_retrieval.evaluation import (
    N_GALLERY_ENTRIES,
    SplitInfoError,
    read_submission_json,
    read_test_split,
    submit_test_split,
)
from clothes_retrieval.evaluation.test_split import INFO_FILES
from clothes_retrieval.service import BundleError

CONSUMER, SHOP = INFO_FILES["user"], INFO_FILES["shop"]


# -- reading the split ------------------------------------------------------------------
def make_split(
    root: Path, consumer: dict[int, tuple[int, int]], shop: dict[int, tuple[int, int]]
) -> Path:
    """``root/test`` with one JPEG per id (id -> (width, height)) and both info files."""
    image_dir = root / "test" / "image"
    image_dir.mkdir(parents=True)
    for name, ids in ((CONSUMER, consumer), (SHOP, shop)):
        records = []
        for image_id, (w, h) in ids.items():
            file_name = f"{image_id:06d}.jpg"
            Image.new("RGB", (w, h), (image_id * 20 % 255, 90, 140)).save(image_dir / file_name)
            records.append({"file_name": file_name, "id": image_id, "height": h, "width": w})
        (root / "test" / name).write_text(json.dumps({"images": records}))
    return root


@pytest.fixture
def split_root(tmp_path: Path) -> Path:
    return make_split(tmp_path / "df2", {3: (40, 30), 1: (32, 48)}, {2: (50, 50), 5: (36, 44)})


def test_read_test_split_gives_image_tables(split_root: Path) -> None:
    queries, gallery = read_test_split(split_root)
    for table, ids, source in ((queries, [1, 3], "user"), (gallery, [2, 5], "shop")):
        assert list(table.columns) == list(IMAGE_COLUMNS)
        assert table["image_id"].tolist() == ids  # by id, whatever the file's order
        assert (table["source"] == source).all() and (table["split"] == "test").all()
        assert table.attrs["skipped"] == []
        for row in table.itertuples():
            path = Path(row.image_path)
            assert path.is_absolute() and path == (split_root / "test" / "image").absolute() / (
                f"{row.image_id:06d}.jpg"
            )
            with Image.open(path) as im:
                assert im.size == (row.image_width, row.image_height)
    assert queries["image_width"].tolist() == [32, 40]


def test_bare_lists_without_sizes_and_wrong_sizes(split_root: Path, caplog) -> None:
    """A bare list of records is accepted; sizes come from the files (a wrong one in the
    info file is logged)."""
    info = split_root / "test" / CONSUMER
    records = json.loads(info.read_text())["images"]
    records[0] = {k: v for k, v in records[0].items() if k not in ("height", "width")}
    records[1]["width"] = 999
    info.write_text(json.dumps(records))
    with caplog.at_level(logging.WARNING, logger="clothes_retrieval.evaluation.test_split"):
        queries, _ = read_test_split(split_root)
    assert queries[["image_id", "image_width", "image_height"]].values.tolist() == [
        [1, 32, 48],
        [3, 40, 30],
    ]
    assert "000001.jpg is 32x48, the info file says 999x48" in caplog.text


def test_missing_and_unreadable_images_are_skipped_and_reported(split_root: Path, caplog) -> None:
    image_dir = split_root / "test" / "image"
    (image_dir / "000003.jpg").unlink()
    (image_dir / "000005.jpg").write_bytes(b"not a jpeg")
    with caplog.at_level(logging.WARNING, logger="clothes_retrieval.evaluation.test_split"):
        queries, gallery = read_test_split(split_root)
    assert queries["image_id"].tolist() == [1] and gallery["image_id"].tolist() == [2]
    assert queries.attrs["skipped"] == [
        {"image_path": str((image_dir / "000003.jpg").absolute()), "reason": "missing"}
    ]
    [bad] = gallery.attrs["skipped"]
    assert bad["image_path"].endswith("000005.jpg") and bad["reason"].startswith("unreadable")
    assert f"{CONSUMER}: 1 of 2 listed images are skipped" in caplog.text
    assert f"{SHOP}: 1 of 2 listed images are skipped" in caplog.text


def _no_image_folder(root: Path) -> None:
    shutil.rmtree(root / "test" / "image")


def _no_info_file(root: Path) -> None:
    (root / "test" / SHOP).unlink()


def _bad_json(root: Path) -> None:
    info = root / "test" / CONSUMER
    info.write_text(info.read_text()[:-7])


def _no_images_list(root: Path) -> None:
    (root / "test" / SHOP).write_text(json.dumps({"annotations": []}))


def _empty(root: Path) -> None:
    (root / "test" / SHOP).write_text(json.dumps({"images": []}))


def _repeated_id(root: Path) -> None:
    info = root / "test" / CONSUMER
    records = json.loads(info.read_text())["images"]
    records.append({**records[0], "file_name": "000002.jpg"})
    info.write_text(json.dumps(records))


def _repeated_file(root: Path) -> None:
    info = root / "test" / SHOP
    records = json.loads(info.read_text())["images"]
    records.append({**records[0], "id": 9})
    info.write_text(json.dumps(records))


def _id_in_both_files(root: Path) -> None:
    info = root / "test" / SHOP
    records = json.loads(info.read_text())["images"]
    records[1]["id"] = 1  # a shop photo with a consumer photo's id
    info.write_text(json.dumps(records))


def _record_without_id(root: Path) -> None:
    info = root / "test" / CONSUMER
    records = json.loads(info.read_text())["images"]
    del records[1]["id"]
    info.write_text(json.dumps(records))


def _no_listed_image_on_disk(root: Path) -> None:
    for name in ("000002.jpg", "000005.jpg"):
        (root / "test" / "image" / name).unlink()


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (_no_image_folder, FileNotFoundError, r"test/image not found.*unpack the test split"),
        (_no_info_file, FileNotFoundError, rf"{SHOP} not found.*put them in"),
        (_bad_json, SplitInfoError, rf"{CONSUMER} is not valid JSON"),
        (_no_images_list, SplitInfoError, r"without an 'images' list"),
        (_empty, SplitInfoError, rf"{SHOP} lists no images"),
        (_repeated_id, SplitInfoError, r"image id 3 is listed twice \(records 0 and 2\)"),
        (_repeated_file, SplitInfoError, r"file 000002.jpg is listed twice"),
        (_id_in_both_files, SplitInfoError, r"image ids \[1\] are listed as consumer photos"),
        (_record_without_id, SplitInfoError, r"record 1 is .*needs a 'file_name'"),
        (_no_listed_image_on_disk, FileNotFoundError, r"none of the 2 images listed in"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_read_test_split_errors_say_what_to_do(split_root, damage, error, message) -> None:
    damage(split_root)
    with pytest.raises(error, match=message):
        read_test_split(split_root)


# -- the submission: errors found before any model runs ---------------------------------
def fake_bundle(root: Path, *, detectors: bool = True) -> Path:
    """A bundle manifest (and its index manifest) without weights: enough for the checks
    that run before a model is loaded."""
    root.mkdir(parents=True)
    (root / "index").mkdir()
    (root / "index" / "manifest.json").write_text(
        json.dumps(
            {"manifest": {"models": ["m"], "dims": [8], "box_source": "fused", "data_version": "v"}}
        )
    )
    manifest = {
        "format": 1,
        "bundle_id": "fake",
        "detectors": [{"name": "d", "checkpoint": "d.pth", "config": "d.py"}] if detectors else [],
        "detection": {"score_thr": 0.1, "max_per_image": 5},
        "fusion": {"detectors": ["d"]} if detectors else None,
        "models": [{"name": "m", "path": "models/m/model.pt", "weight": 1.0}],
    }
    (root / "bundle.json").write_text(json.dumps(manifest))
    return root


def test_a_bundle_without_detectors_is_refused(split_root: Path, tmp_path: Path) -> None:
    bundle = fake_bundle(tmp_path / "bundle", detectors=False)
    with pytest.raises(BundleError, match="has no detectors"):
        submit_test_split(bundle, split_root, tmp_path / "sub.json", progress=False)


def test_no_gallery_box_is_a_clear_error(split_root: Path, tmp_path: Path, monkeypatch) -> None:
    """Detectors that find garments on the consumer photos only: nothing to rank."""
    from clothes_retrieval.detection import inference

    def consumer_boxes_only(checkpoint, config, images, **kwargs) -> InferenceResult:
        users = images[images["source"] == "user"]
        found = [
            inference.detection_rows(kwargs["detector"], np.array([[2, 2, 20, 20, 0.9, 1]]), row)
            for _, row in users.iterrows()
        ]
        failures = pd.DataFrame(columns=list(inference.FAILURE_COLUMNS))
        return InferenceResult(pd.concat(found, ignore_index=True), failures)

    monkeypatch.setattr(inference, "run_detector", consumer_boxes_only)
    out = tmp_path / "sub.json"
    bundle = fake_bundle(tmp_path / "bundle")
    with pytest.raises(ValueError, match="no box on any of the 2 shop photos"):
        submit_test_split(bundle, split_root, out, progress=False)
    assert not out.exists()


# -- the submission from a real bundle --------------------------------------------------
def sample_test_split(root: Path) -> tuple[int, int]:
    """A sample with a two-group test split, one garment per shop photo and no duplicated
    shop photo; the first consumer photo is then replaced by a copy of the first shop
    photo. Returns (that consumer id, that shop id)."""
    config = SampleDataConfig.model_validate(
        {
            "seed": 5,
            "groups": {"train": 1, "validation": 1, "test": 2},
            "max_products_per_group": 1,
            "defects": 0,
            "consumer": {"long_side": 128, "photos_per_group_min": 1, "photos_per_group_max": 2},
            "shop": {"long_side": 96, "photos_per_style_max": 1, "duplicate_fraction": 0.0},
        }
    )
    generate_sample_data(config, root, progress=False)
    split = root / "test"
    consumer = json.loads((split / CONSUMER).read_text())
    shop = json.loads((split / SHOP).read_text())["images"]
    query, original = consumer["images"][0], shop[0]
    shutil.copyfile(split / "image" / original["file_name"], split / "image" / query["file_name"])
    query.update(height=original["height"], width=original["width"])
    (split / CONSUMER).write_text(json.dumps(consumer))
    return query["id"], original["id"]


@pytest.fixture(scope="module")
def submission(published, tmp_path_factory):
    """The submission of the sample test split by a copy of the published bundle that fuses
    its ATSS boxes only: the tiny bundle's one-epoch CenterNet scores flat boxes (a pixel or
    two high) highest, which then fill the fused top 5 and are dropped as too small."""
    tmp = tmp_path_factory.mktemp("test_split")
    bundle = shutil.copytree(published.bundle, tmp / "bundle")
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["fusion"] = {**manifest["fusion"], "detectors": ["atss"], "weights": None}
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    root = tmp / "df2"
    copy_id, shop_id = sample_test_split(root)
    out = tmp / "submission" / "test_submission.json"
    summary = submit_test_split(bundle, root, out, batch_size=4, progress=False)
    queries, gallery = read_test_split(root)
    return summary, out, queries, gallery, copy_id, shop_id


def test_the_submission_has_one_record_per_consumer_box(submission) -> None:
    summary, out, queries, gallery, _, _ = submission
    records = json.loads(out.read_text())
    assert summary["query_images"] == len(queries) and summary["gallery_images"] == len(gallery)
    assert summary["records"] == summary["query_boxes"] == len(records) > 0
    assert summary["skipped_images"] == summary["unreadable_images"] == 0
    assert summary["seconds"] > 0 and sorted(p.name for p in out.parent.iterdir()) == [out.name]
    back = read_submission_json(out)  # the official format, re-read and validated
    assert len(back) == len(records)
    for rec in records:
        assert len(rec["gallery_image_id"]) == len(rec["gallery_bbox"]) == N_GALLERY_ENTRIES
        assert 1 <= rec["query_cls"] <= 13 and 0.0 <= rec["query_score"] <= 1.0
    # Queries are consumer photos (every one has a box: the bundle's score_thr is 0), the
    # gallery entries shop photos.
    assert {r["query_image_id"] for r in records} == set(queries["image_id"])
    assert {g for r in records for g in r["gallery_image_id"]} <= set(gallery["image_id"])


def test_every_box_lies_inside_its_photo(submission) -> None:
    _, out, queries, gallery, _, _ = submission
    size = {
        row.image_id: (row.image_width, row.image_height)
        for row in pd.concat([queries, gallery]).itertuples()
    }

    def inside(image_id: int, box: list[float]) -> bool:
        w, h = size[image_id]
        x1, y1, x2, y2 = box
        return 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h

    for rec in json.loads(out.read_text()):
        assert inside(rec["query_image_id"], rec["query_bbox"]), rec
        for image_id, box in zip(rec["gallery_image_id"], rec["gallery_bbox"], strict=True):
            assert inside(image_id, box), rec


def test_the_whole_small_gallery_is_ranked_then_padded(submission) -> None:
    """The gallery has fewer than 20 boxes: each record ranks every gallery box once, then
    repeats the last one up to 20 entries."""
    summary, out, *_ = submission
    n = summary["gallery_boxes"]
    assert 0 < n < N_GALLERY_ENTRIES  # two shop photos, at most 5 fused boxes each
    everything = None
    for rec in json.loads(out.read_text()):
        entries = [
            (g, tuple(b)) for g, b in zip(rec["gallery_image_id"], rec["gallery_bbox"], strict=True)
        ]
        assert len(set(entries[:n])) == n, rec  # every gallery box, once
        assert set(entries[n:]) == {entries[n - 1]}, rec  # then the last one repeated
        everything = everything or set(entries)
        assert set(entries) == everything  # the same gallery boxes for every query


def test_a_copy_of_a_shop_photo_finds_that_photo_first(submission) -> None:
    """The consumer photo that is a copy of a shop photo gets that photo's boxes: each of
    them ranks its identical box in the shop photo first."""
    _, out, _, _, copy_id, shop_id = submission
    records = [r for r in json.loads(out.read_text()) if r["query_image_id"] == copy_id]
    assert records
    for rec in records:
        assert rec["gallery_image_id"][0] == shop_id, rec
        assert np.allclose(rec["gallery_bbox"][0], rec["query_bbox"], atol=0.5), rec
