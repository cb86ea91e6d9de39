from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clothes_retrieval.config import ConfigError, validate_config
from clothes_retrieval.data import (
    CROP_COLUMNS,
    CropConfig,
    ReaderConfig,
    export_retrieval_crops,
    near_duplicates,
    read_deepfashion2,
)
from clothes_retrieval.data.sources import read_source

EXACT = CropConfig(max_side=None, jpeg_quality=100)


def items_of(builder):
    splits = tuple(sorted(p.name for p in builder.root.iterdir()))
    return read_deepfashion2(builder.root, ReaderConfig(splits=splits), progress=False).items


def export(items, out_dir, config=EXACT):
    return export_retrieval_crops(items, out_dir, config, progress=False)


def pixels(path, box=None) -> np.ndarray:
    """Luma only: JPEG's chroma subsampling blurs colour at crop borders."""
    with Image.open(path) as im:
        im = im.convert("L")
        return np.asarray(im.crop(box) if box else im, dtype=np.float64)


def test_crop_pixels_equal_the_source_region(good_df2, tmp_path):
    items = items_of(good_df2)
    result = export(items, tmp_path / "crops")
    assert list(result.crops.columns) == list(CROP_COLUMNS)
    # style > 0 only: 5 of the 7 items (image 1 item2 has style 0)
    assert (result.total, result.written) == (6, 6)
    by_uid = items.set_index("item_uid")
    for row in result.crops.itertuples():
        src = by_uid.loc[row.item_uid]
        box = (int(src.x1), int(src.y1), int(src.x2), int(src.y2))
        assert (row.x1, row.y1, row.x2, row.y2) == box
        crop = pixels(row.crop_path)
        assert crop.shape == (box[3] - box[1], box[2] - box[0]) == (row.height, row.width)
        region = pixels(src.image_path, box)
        assert np.abs(crop - region).mean() < 1.0  # JPEG round trip only
        shifted = pixels(src.image_path, (box[0] + 3, box[1] + 3, box[2] + 3, box[3] + 3))
        if shifted.shape == crop.shape:
            assert np.abs(crop - shifted).mean() > 5.0  # the check can tell regions apart
        assert row.crop_path == str(
            tmp_path / "crops" / row.split / row.source / (row.item_uid.replace("/", "_") + ".jpg")
        )
    written = sorted(p.name for p in (tmp_path / "crops").rglob("*.jpg"))
    assert len(written) == 6
    assert sorted(p.name for p in (tmp_path / "crops").iterdir()) == [
        "crop_config.json",
        "crops.parquet",
        "removed_duplicates.parquet",
        "skipped.parquet",
        "train",
        "validation",
    ]
    assert json.loads((tmp_path / "crops" / "crop_config.json").read_text())["max_side"] is None
    pd.testing.assert_frame_equal(
        pd.read_parquet(result.crops_path).astype(CROP_COLUMNS), result.crops
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_margin_is_clipped_and_large_crops_downscaled(good_df2, tmp_path):
    items = items_of(good_df2)
    result = export(items, tmp_path / "crops", CropConfig(margin=0.5, max_side=16))
    row = result.crops.set_index("item_uid").loc["deepfashion2/validation/000004/1"]
    # box (4, 6, 44, 46) in an 80x60 image, +20 px on each side, clipped
    assert (row.x1, row.y1, row.x2, row.y2) == (0.0, 0.0, 64.0, 60.0)
    assert (row.width, row.height) == (16, 15)  # 64x60 scaled to a longest side of 16
    with Image.open(row.crop_path) as im:
        assert im.size == (16, 15)


def test_small_crops_are_skipped_and_counted(good_df2, item_factory, tmp_path):
    good_df2.record("validation", 5, "shop", 2, [item_factory(7, 1, (30, 30, 35, 50))])
    result = export(items_of(good_df2), tmp_path / "crops")
    assert (result.total, result.written, result.skipped_too_small) == (7, 6, 1)
    assert result.skipped["reason"].tolist() == ["too_small"]
    assert result.skipped["item_uid"].tolist() == ["deepfashion2/validation/000005/1"]


def test_labels_follow_pair_id_and_style(good_df2, tmp_path):
    crops = export(items_of(good_df2), tmp_path / "crops").crops.set_index("item_uid")
    uid = "deepfashion2/validation/{:06d}/{}".format
    # positive consumer/shop pairs share the identity and the label
    assert crops.loc[uid(1, 1), "identity"] == crops.loc[uid(2, 1), "identity"]
    assert crops.loc[uid(1, 1), "identity"] == "deepfashion2/validation/1/1"
    assert crops.loc[uid(3, 1), "label"] == crops.loc[uid(4, 1), "label"]
    assert crops.loc[uid(1, 1), "label"] == crops.loc[uid(2, 1), "label"]
    # same pair, other style: another identity
    assert crops.loc[uid(4, 2), "label"] != crops.loc[uid(4, 1), "label"]
    for _, split in crops.groupby("split"):
        # dense per split, in sorted identity order
        idents = sorted(split["identity"].unique())
        assert sorted(split["label"].unique()) == list(range(len(idents)))
        assert all(
            split.loc[split["identity"] == i, "label"].eq(k).all() for k, i in enumerate(idents)
        )
        assert (split.groupby("label")["identity"].nunique() == 1).all()
    assert crops.loc["deepfashion2/train/000001/1", "label"] == 0


def test_style_zero_items_are_singleton_identities(good_df2, item_factory, tmp_path):
    good_df2.record("validation", 5, "shop", 1, [item_factory(8, 0, (5, 5, 40, 50))])
    result = export(items_of(good_df2), tmp_path / "crops", CropConfig(include_style_zero=True))
    crops = result.crops.set_index("item_uid")
    assert result.total == 8
    a, b = (
        crops.loc["deepfashion2/validation/000001/2"],
        crops.loc["deepfashion2/validation/000005/1"],
    )
    assert a["identity"] == "deepfashion2/validation/1/0/000001/2"
    assert a["label"] != b["label"]


def _add_duplicates(b, item_factory):
    """Image 5: image 2 re-encoded at quality 40 (same item); image 6: an exact copy of
    image 2 under another pair id (another identity)."""
    with Image.open(b.image_path("validation", 2)) as im:
        picture = im.convert("RGB")
    box = (20, 10, 70, 60)  # image 2's item
    b.image("validation", 5, picture=picture, quality=40)
    b.anno("validation", 5, {"source": "shop", "pair_id": 1, "item1": item_factory(1, 1, box)})
    b.image("validation", 6, picture=picture, quality=95)
    b.anno("validation", 6, {"source": "shop", "pair_id": 7, "item1": item_factory(1, 1, box)})


def test_near_duplicate_is_removed_and_a_different_garment_is_not(good_df2, item_factory, tmp_path):
    _add_duplicates(good_df2, item_factory)
    result = export(items_of(good_df2), tmp_path / "crops", CropConfig())
    assert (result.total, result.written, result.removed_duplicates) == (8, 7, 1)
    removed = result.removed.iloc[0]
    assert removed["item_uid"] == "deepfashion2/validation/000005/1"
    assert removed["duplicate_of"] == "deepfashion2/validation/000002/1"
    assert 0 <= removed["hamming"] <= 4
    kept = set(result.crops["item_uid"])
    assert "deepfashion2/validation/000005/1" not in kept
    # images 3 and 4 hold different garments of one identity: both kept
    assert {"deepfashion2/validation/000003/1", "deepfashion2/validation/000004/1"} <= kept
    assert not (tmp_path / "crops/validation/shop/deepfashion2_validation_000005_1.jpg").exists()
    assert len(list((tmp_path / "crops").rglob("*.jpg"))) == 7
    back = pd.read_parquet(result.removed_path)
    assert back["item_uid"].tolist() == ["deepfashion2/validation/000005/1"]

    off = export(items_of(good_df2), tmp_path / "crops", CropConfig(dedup=False))
    assert (off.written, off.removed_duplicates) == (8, 0)


def test_identity_scope_keeps_identical_crops_of_other_identities_global_removes_them(
    good_df2, item_factory, tmp_path
):
    _add_duplicates(good_df2, item_factory)
    items = items_of(good_df2)
    identity = export(items, tmp_path / "a", CropConfig(dedup_scope="identity"))
    assert "deepfashion2/validation/000006/1" in set(identity.crops["item_uid"])

    glob = export(items, tmp_path / "b", CropConfig(dedup_scope="global"))
    assert glob.removed_duplicates == 2
    assert dict(zip(glob.removed["item_uid"], glob.removed["duplicate_of"], strict=True)) == {
        "deepfashion2/validation/000005/1": "deepfashion2/validation/000002/1",
        "deepfashion2/validation/000006/1": "deepfashion2/validation/000002/1",
    }
    # labels stay dense after an identity disappears
    val = glob.crops[glob.crops["split"] == "validation"]
    assert sorted(val["label"].unique()) == list(range(val["identity"].nunique()))


def test_unreadable_image_is_skipped_and_counted(good_df2, tmp_path):
    items = items_of(good_df2)
    good_df2.image_path("validation", 4).write_bytes(b"garbage" * 10)
    result = export(items, tmp_path / "crops")
    assert (result.skipped_unreadable, result.unreadable_images) == (2, 1)
    assert result.written == 4 and result.total == 6
    assert set(result.skipped["reason"]) == {"unreadable_image"}
    assert not result.crops["item_uid"].str.contains("000004").any()


def test_rerun_replaces_the_output_dir(good_df2, tmp_path):
    items = items_of(good_df2)
    (tmp_path / "crops").mkdir()
    (tmp_path / "crops" / "stale.jpg").write_bytes(b"old")
    export(items, tmp_path / "crops")
    assert not (tmp_path / "crops" / "stale.jpg").exists()


@pytest.mark.parametrize("max_hamming", [0, 3, 12, 70])
def test_near_duplicates_matches_a_brute_force_loop(max_hamming):
    rng = np.random.default_rng(max_hamming)
    base = rng.integers(0, 2, size=(40, 64)).astype(bool)
    # near copies: flip a few bits of random earlier rows
    rows = [base[i] for i in range(40)]
    for _ in range(80):
        row = rows[rng.integers(len(rows))].copy()
        row[rng.choice(64, size=rng.integers(0, 8), replace=False)] ^= True
        rows.append(row)
    bits = np.stack(rows)
    groups = rng.integers(0, 3, size=len(bits)).tolist()

    expected, kept = [], []
    for i in range(len(bits)):
        best = None
        for j in kept:
            d = int((bits[i] != bits[j]).sum())
            if groups[j] == groups[i] and d <= max_hamming and (best is None or d < best[1]):
                best = (j, d)
        if best is None:
            kept.append(i)
        else:
            expected.append((i, *best))
    assert near_duplicates(bits, groups, max_hamming) == expected


def test_crop_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="dedup_scope"):
        validate_config(CropConfig, {"dedup_scope": "planet"})
    with pytest.raises(ConfigError, match="hash_size"):
        validate_config(CropConfig, {"hash_size": 1})


def test_no_eligible_items_gives_empty_typed_tables(good_df2, tmp_path):
    items = items_of(good_df2)
    result = export(items[items["style"] == 0], tmp_path / "crops")
    assert (result.total, result.written) == (0, 0)
    assert list(result.crops.columns) == list(CROP_COLUMNS) and result.crops.empty
    assert pd.read_parquet(result.crops_path).empty


def test_duplicate_item_uids_are_rejected(good_df2, tmp_path):
    items = items_of(good_df2)
    with pytest.raises(ValueError, match="more than once"):
        export(pd.concat([items, items.iloc[:1]]), tmp_path / "crops")


def _product_items(good_df2, tmp_path):
    """Style-0 whole-photo items of two product datasets made of good_df2's pictures.

    shop_a: skirt/same.jpg (validation image 3), top/a.jpg (validation image 1);
    shop_b: dress/odd.jpg (a copy of shop_a's top photo), skirt/same.jpg (a copy of
    shop_a's skirt photo), top/b.jpg (validation image 2)."""
    layout = {
        "shop_a": {"skirt/same.jpg": 3, "top/a.jpg": 1},
        "shop_b": {"dress/odd.jpg": 1, "skirt/same.jpg": 3, "top/b.jpg": 2},
    }
    tables = []
    for dataset, files in layout.items():
        for rel, image_id in files.items():
            dest = tmp_path / dataset / "train" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(good_df2.image_path("validation", image_id), dest)
        tables.append(
            read_source(
                "product_folders",
                tmp_path / dataset,
                splits=("train",),
                dataset=dataset,
                progress=False,
            ).items
        )
    items = pd.concat(tables, ignore_index=True)
    assert (items["style"] == 0).all() and len(items) == 5
    return items


def test_category_identity_is_shared_across_datasets(good_df2, tmp_path):
    items = _product_items(good_df2, tmp_path)
    # pair identities need style > 0: none of these items is eligible
    assert export(items, tmp_path / "pairs").total == 0

    result = export(items, tmp_path / "all", CropConfig(identity="category", dedup=False))
    assert (result.total, result.written) == (5, 5)
    crops = result.crops.set_index("item_uid")
    assert crops["identity"].to_dict() == {
        "shop_a/train/000001/1": "category/skirt",
        "shop_a/train/000002/1": "category/top",
        "shop_b/train/000001/1": "category/dress",
        "shop_b/train/000002/1": "category/skirt",
        "shop_b/train/000003/1": "category/top",
    }
    assert crops["dataset"].to_dict() == {
        uid: uid.split("/")[0] for uid in crops.index
    }  # each crop keeps its source
    # one label per category, whatever the dataset: dress 0, skirt 1, top 2
    assert crops["label"].tolist() == [1, 2, 0, 1, 2]
    assert (crops["style"] == 0).all()
    back = pd.read_parquet(result.crops_path)
    assert back["dataset"].tolist() == ["shop_a", "shop_a", "shop_b", "shop_b", "shop_b"]


def test_category_identity_dedups_across_datasets(good_df2, tmp_path):
    items = _product_items(good_df2, tmp_path)
    # identity scope: the skirt photo of both datasets shares category/skirt -> removed once;
    # the same picture as a shop_b dress is another identity -> kept
    scoped = export(items, tmp_path / "a", CropConfig(identity="category"))
    assert dict(zip(scoped.removed["item_uid"], scoped.removed["duplicate_of"], strict=True)) == {
        "shop_b/train/000002/1": "shop_a/train/000001/1",
    }
    assert scoped.written == 4 and "shop_b/train/000001/1" in set(scoped.crops["item_uid"])

    # global scope: every copy of a picture goes, across datasets and categories
    glob = export(items, tmp_path / "b", CropConfig(identity="category", dedup_scope="global"))
    assert dict(zip(glob.removed["item_uid"], glob.removed["duplicate_of"], strict=True)) == {
        "shop_b/train/000001/1": "shop_a/train/000002/1",
        "shop_b/train/000002/1": "shop_a/train/000001/1",
    }
    assert glob.removed["hamming"].tolist() == [0, 0]  # byte-identical photos
    crops = glob.crops.set_index("item_uid")
    assert crops["dataset"].to_dict() == {
        "shop_a/train/000001/1": "shop_a",
        "shop_a/train/000002/1": "shop_a",
        "shop_b/train/000003/1": "shop_b",
    }
    # the dress identity disappeared: labels stay dense (skirt 0, top 1)
    assert crops["label"].tolist() == [0, 1, 1]
    assert len(list((tmp_path / "b").rglob("*.jpg"))) == 3
