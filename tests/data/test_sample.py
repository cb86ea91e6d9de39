"""Tests of the synthetic DeepFashion2-layout sample generator (tiny configs, CPU, seconds)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from clothes_retrieval.config import ConfigError, validate_config
from clothes_retrieval.data import ReaderConfig, read_deepfashion2
from clothes_retrieval.data import sample as sample_mod
from clothes_retrieval.data.garments import GARMENTS
from clothes_retrieval.data.sample import (
    DEFECT_KINDS,
    MANIFEST_NAME,
    TEST_INFO_FILES,
    SampleDataConfig,
    generate_sample_data,
)
from clothes_retrieval.data.schema import CATEGORIES, QUARANTINE_REASONS
from clothes_retrieval.evaluation import read_test_split

SPLITS = ("train", "validation")
ITEM_FIELDS = {
    "category_id", "category_name", "style", "bounding_box", "landmarks", "segmentation",
    "scale", "occlusion", "zoom_in", "viewpoint",
}  # fmt: skip


def tiny_config(**overrides) -> SampleDataConfig:
    """13 groups per split (every category), small photos, many duplicates and defects."""
    data = {
        "seed": 3,
        "groups": {"train": 13, "validation": 13},
        "near_duplicate_fraction": 0.5,
        "consumer": {"long_side": 96, "photos_per_group_min": 1, "photos_per_group_max": 2},
        "shop": {"long_side": 80, "photos_per_style_max": 1, "duplicate_fraction": 0.4},
        "defects": 3,
    }
    data.update(overrides)
    return SampleDataConfig.model_validate(data)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "df2"
    summary = generate_sample_data(tiny_config(), out, progress=False)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    return out, summary, manifest


def defect_files(manifest) -> set[tuple[str, str]]:
    return {(d["split"], d["annotation_file"]) for d in manifest["defects"]}


def clean_records(out: Path, manifest):
    """(split, annotation path, record, image size) of every record that is not a defect."""
    bad = defect_files(manifest)
    for split in SPLITS:
        for path in sorted((out / split / "annos").glob("*.json")):
            if (split, path.name) in bad:
                continue
            with Image.open(out / split / "image" / f"{path.stem}.jpg") as im:
                size = im.size
            yield split, path, json.loads(path.read_text()), size


def items_of(record):
    return [v for k, v in record.items() if k.startswith("item")]


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_and_counts(sample):
    out, summary, manifest = sample
    assert summary.out_dir == out
    for split in SPLITS:
        annos = sorted((out / split / "annos").glob("*.json"))
        ids = [int(p.stem) for p in annos]
        assert all(len(p.stem) == 6 for p in annos)
        assert ids == list(range(1, len(ids) + 1))  # 1-based, contiguous, per split
        images = {p.stem for p in (out / split / "image").glob("*.jpg")}
        missing = {d["image_file"] for d in manifest["defects"]
                   if d["split"] == split and d["kind"] == "missing_image"}  # fmt: skip
        assert images == {p.stem for p in annos} - {m[:-4] for m in missing}
        s = summary.splits[split]
        assert s.images == len(annos)
        assert s.user_images + s.shop_images + s.defects == s.images
        assert manifest["splits"][split]["counts"]["images"] == s.images
    assert manifest["config"] == json.loads(tiny_config().model_dump_json())


def test_every_field_present_and_in_range(sample):
    out, _, manifest = sample
    n = 0
    for _, path, rec, (w, h) in clean_records(out, manifest):
        assert rec["source"] in ("user", "shop"), path
        assert isinstance(rec["pair_id"], int) and rec["pair_id"] >= 1
        items = items_of(rec)
        assert [k for k in rec if k.startswith("item")] == [
            f"item{i}" for i in range(1, len(items) + 1)
        ]
        for it in items:
            n += 1
            assert set(it) == ITEM_FIELDS, path
            cat = it["category_id"]
            assert cat in CATEGORIES and it["category_name"] == CATEGORIES[cat]
            assert isinstance(it["style"], int) and it["style"] >= 0
            for key in ("scale", "occlusion", "zoom_in"):
                assert it[key] in (1, 2, 3), (path, key)
            assert it["viewpoint"] == 1 if rec["source"] == "shop" else it["viewpoint"] in (2, 3)
            lm = it["landmarks"]
            assert len(lm) == 3 * len(GARMENTS[cat].landmarks)
            for x, y, v in zip(lm[::3], lm[1::3], lm[2::3], strict=True):
                assert v in (0, 1, 2)
                if v == 0:
                    assert x == y == 0
                else:
                    assert 0 <= x < w and 0 <= y < h
            assert it["segmentation"] and all(
                len(p) >= 6 and len(p) % 2 == 0 for p in it["segmentation"]
            )
    assert n > 50


def test_boxes_inside_image_and_tight_around_segmentation(sample):
    out, _, manifest = sample
    for _, path, rec, (w, h) in clean_records(out, manifest):
        for it in items_of(rec):
            x1, y1, x2, y2 = it["bounding_box"]
            assert all(isinstance(c, int) for c in it["bounding_box"])
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, path
            pts = np.concatenate([np.reshape(p, (-1, 2)) for p in it["segmentation"]])
            assert pts[:, 0].min() >= 0 and pts[:, 0].max() <= w
            assert pts[:, 1].min() >= 0 and pts[:, 1].max() <= h
            tight = [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]
            assert np.allclose(it["bounding_box"], tight, atol=2.0), (path, tight)


def test_garment_pixels_lie_inside_their_box(sample):
    """Pixels and annotations agree: a shop photo differs from its background in the box."""
    out, _, manifest = sample
    checked = 0
    for split, path, rec, _ in clean_records(out, manifest):
        if rec["source"] != "shop":
            continue
        img = np.asarray(Image.open(out / split / "image" / f"{path.stem}.jpg"), np.float32)
        x1, y1, x2, y2 = rec["item1"]["bounding_box"]
        bg = np.median(img[:3, :3].reshape(-1, 3), axis=0)  # a background corner
        far = np.abs(img - bg).max(-1) > 40
        outside = far.copy()
        outside[max(y1 - 5, 0) : y2 + 6, max(x1 - 5, 0) : x2 + 6] = False  # 5 px: shadow
        assert far[y1:y2, x1:x2].mean() > 0.3 and outside.mean() < 0.01, path
        checked += 1
    assert checked > 10


def test_every_category_in_every_split(sample):
    out, _, manifest = sample
    seen: dict[str, set[int]] = {s: set() for s in SPLITS}
    for split, _, rec, _ in clean_records(out, manifest):
        seen[split] |= {it["category_id"] for it in items_of(rec) if it["style"] > 0}
    assert seen == {s: set(CATEGORIES) for s in SPLITS}


def test_shop_and_consumer_photos(sample):
    out, _, manifest = sample
    n_items = {"user": set(), "shop": set()}
    for _, _, rec, _ in clean_records(out, manifest):
        items = items_of(rec)
        n_items[rec["source"]].add(len(items))
        if rec["source"] == "shop":
            assert items[0]["style"] > 0 and items[0]["occlusion"] == 1
    # one garment per shop photo, one to three (and not always the same) per consumer photo
    assert n_items["shop"] == {1}
    assert n_items["user"] <= {1, 2, 3} and len(n_items["user"]) >= 2


def test_every_consumer_item_has_a_positive_shop_pair(sample):
    out, _, manifest = sample
    for split in SPLITS:
        recs = [r for s, _, r, _ in clean_records(out, manifest) if s == split]
        gallery = {(r["pair_id"], r["item1"]["style"]) for r in recs if r["source"] == "shop"}
        queries = [
            (r["pair_id"], it["style"])
            for r in recs
            if r["source"] == "user"
            for it in items_of(r)
            if it["style"] > 0
        ]
        assert queries and all(q in gallery for q in queries), split
        assert any(it["style"] == 0 for r in recs for it in items_of(r))  # distractors


def test_defects_are_injected_as_listed(sample):
    out, summary, manifest = sample
    defects = manifest["defects"]
    assert len(defects) == 3 * len(SPLITS) == sum(s.defects for s in summary.splits.values())
    assert {d["kind"] for d in defects} == set(DEFECT_KINDS)
    for d in defects:
        image = out / d["split"] / "image" / d["image_file"]
        anno = out / d["split"] / "annos" / d["annotation_file"]
        kind = d["kind"]
        if kind == "corrupt_image":
            with pytest.raises(OSError), Image.open(image) as im:
                im.load()
            continue
        if kind == "malformed_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(anno.read_text())
            continue
        rec = json.loads(anno.read_text())
        items = items_of(rec)
        if kind == "missing_image":
            assert anno.exists() and not image.exists()
            continue
        with Image.open(image) as im:
            im.load()
            w, h = im.size
        if kind == "bad_box":
            assert any(
                b[2] <= b[0] or b[3] <= b[1] or b[0] >= w or b[2] > w
                for b in (it["bounding_box"] for it in items)
            )
        elif kind == "unknown_category":
            assert any(it["category_id"] not in CATEGORIES for it in items)
        elif kind == "missing_field":
            assert "source" not in rec or any("style" not in it for it in items)


# Each way the generator breaks a record (its defect ``detail``) -> the row the reader must
# write for it: (defect kind = quarantine reason, item_index, file named, message fragment).
QUARANTINE_OF_DEFECT = {
    "JPEG truncated to its first 30% of bytes": (
        "corrupt_image",
        None,
        "image",
        "image cannot be decoded",
    ),
    "annotation JSON truncated half way": ("malformed_json", None, "annos", "not readable as JSON"),
    "item1 bounding_box outside the image": ("bad_box", 1, "annos", "lies outside the"),
    "item1 bounding_box of zero area": ("bad_box", 1, "annos", "has area 0 px²"),
    "item1 category_id 14": ("unknown_category", 1, "annos", "item1.category_id is 14"),
    "image-level 'source' removed": ("missing_field", None, "annos", "'source' is absent"),
    "item1 'style' removed": ("missing_field", 1, "annos", "item1.style is absent"),
    "image file not written": ("missing_image", None, "annos", "annotation has no image"),
}


@pytest.fixture(scope="module")
def defect_sample(tmp_path_factory):
    """Few clean photos, six defects per split: every defect kind in both splits, so each
    variant (even / odd occurrence of a kind) is injected once."""
    out = tmp_path_factory.mktemp("defects") / "df2"
    cfg = tiny_config(groups={"train": 2, "validation": 2}, defects=len(DEFECT_KINDS))
    summary = generate_sample_data(cfg, out, progress=False)
    return out, summary, json.loads((out / MANIFEST_NAME).read_text())


def test_each_injected_defect_is_quarantined_with_its_reason(defect_sample):
    out, summary, manifest = defect_sample
    defects = manifest["defects"]
    assert {d["kind"] for d in defects} == set(DEFECT_KINDS)
    assert {d["detail"] for d in defects} == set(QUARANTINE_OF_DEFECT)  # every variant
    result = read_deepfashion2(out, ReaderConfig(), progress=False)
    q = result.quarantine

    # One quarantine row per defect, none for a clean record.
    rows = {(r["split"], r["image_id"]): r for r in q.to_dict("records")}
    assert len(rows) == len(q) == len(defects), q[["split", "image_id", "reason"]]
    assert set(rows) == {(d["split"], d["image_id"]) for d in defects}
    extra_items = 0
    for d in defects:
        row = rows[(d["split"], d["image_id"])]
        kind, item_index, folder, fragment = QUARANTINE_OF_DEFECT[d["detail"]]
        assert d["kind"] == kind and row["reason"] == kind and kind in QUARANTINE_REASONS, d
        name = d["image_file"] if folder == "image" else d["annotation_file"]
        assert row["path"] == str(out.absolute() / d["split"] / folder / name), d
        assert fragment in row["message"], (d, row["message"])
        if item_index is None:
            assert pd.isna(row["item_index"]), d
        else:
            assert row["item_index"] == item_index, d
            anno = json.loads((out / d["split"] / "annos" / d["annotation_file"]).read_text())
            extra_items += len(items_of(anno)) - 1  # the photo's other garments are good

    # The clean items all survive, plus the good garments of item-level defects.
    assert len(result.items) == summary.items + extra_items
    uids = set(result.items["item_uid"])
    for d in defects:
        assert f"deepfashion2/{d['split']}/{d['image_id']:06d}/1" not in uids, d


def test_near_duplicate_products(sample):
    _, summary, manifest = sample
    products = {}
    for split in SPLITS:
        part = manifest["splits"][split]
        products = {(p["pair_id"], p["style"]): p for p in part["products"]}
        for nd in part["near_duplicates"]:
            src = products[(nd["of_pair_id"], nd["of_style"])]
            assert nd["pair_id"] != nd["of_pair_id"]
            assert nd["category_id"] == src["category_id"]
        assert len(part["near_duplicates"]) == summary.splits[split].near_duplicate_products
    assert sum(len(manifest["splits"][s]["near_duplicates"]) for s in SPLITS) > 0


def test_shop_duplicates_are_near_identical(sample):
    out, _, manifest = sample
    seen = set()
    for split in SPLITS:
        for dup in manifest["splits"][split]["shop_duplicates"]:
            a = np.asarray(Image.open(out / split / "image" / dup["duplicate_of"]), np.float32)
            b = np.asarray(Image.open(out / split / "image" / dup["image_file"]), np.float32)
            if dup["kind"] == "shift":
                a, b = a[:, :-1], b[:, 1:]
            assert a.shape == b.shape and np.abs(a - b).mean() < 8.0, dup  # JPEG noise only
            ra = json.loads(
                (out / split / "annos" / (dup["duplicate_of"][:-4] + ".json")).read_text()
            )
            rb = json.loads(
                (out / split / "annos" / (dup["image_file"][:-4] + ".json")).read_text()
            )
            assert (ra["pair_id"], ra["item1"]["style"]) == (rb["pair_id"], rb["item1"]["style"])
            seen.add(dup["kind"])
    assert seen == {"requality", "shift"}


def test_deterministic_by_seed(tmp_path):
    cfg = tiny_config(groups={"train": 2, "validation": 1}, defects=2)
    generate_sample_data(cfg, tmp_path / "a", progress=False)
    generate_sample_data(cfg, tmp_path / "b", progress=False)
    first = tree_hashes(tmp_path / "a")
    assert first == tree_hashes(tmp_path / "b")
    generate_sample_data(cfg.model_copy(update={"seed": 4}), tmp_path / "c", progress=False)
    other = tree_hashes(tmp_path / "c")
    assert other != first
    jpgs = [k for k in first if k.endswith(".jpg") and k in other]
    assert any(first[k] != other[k] for k in jpgs)


def test_publish_replaces_out_dir_whole(tmp_path):
    out = tmp_path / "df2"
    (out / "train" / "annos").mkdir(parents=True)
    (out / "stale.txt").write_text("old")
    cfg = tiny_config(groups={"train": 1, "validation": 1}, defects=0)
    generate_sample_data(cfg, out, progress=False)
    assert not (out / "stale.txt").exists()
    assert (out / MANIFEST_NAME).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["df2"]  # no temp leftovers


def test_interrupted_run_leaves_previous_dataset(tmp_path, monkeypatch):
    out = tmp_path / "df2"
    out.mkdir()
    (out / "keep.txt").write_text("previous dataset")
    original = sample_mod._write_split

    def failing(config, split_index, split, root, progress):
        if split == "validation":
            raise KeyboardInterrupt
        return original(config, split_index, split, root, progress)

    monkeypatch.setattr(sample_mod, "_write_split", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_sample_data(tiny_config(groups={"train": 1, "validation": 1}), out,
                             progress=False)  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["df2"]


def test_config_defaults_and_validation():
    cfg = SampleDataConfig()
    assert cfg.seed == 0 and cfg.defects == 3 and cfg.consumer.max_items == 3
    assert cfg.groups.train >= 13 and cfg.groups.validation >= 13  # every category
    with pytest.raises(ConfigError, match=r"consumer\.max_items"):
        validate_config(SampleDataConfig, {"consumer": {"max_items": 4}})
    with pytest.raises(ConfigError, match="unknown key"):
        validate_config(SampleDataConfig, {"sed": 1})
    with pytest.raises(ConfigError, match="photos_per_style_min"):
        validate_config(SampleDataConfig, {"shop": {"photos_per_style_min": 3}})


def contact_sheet(tiles: list[Image.Image], columns: int = 4, cell: int = 100) -> Image.Image:
    """Tiles pasted row by row into ``cell`` x ``cell`` squares on black, ``columns`` wide."""
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * cell, rows * cell))
    for i, im in enumerate(tiles):
        sheet.paste(im, ((i % columns) * cell, (i // columns) * cell))
    return sheet


def annotated(im: Image.Image, rec) -> Image.Image:
    """The photo with its boxes in red and its polygons in green."""
    im = im.convert("RGB")
    draw = ImageDraw.Draw(im)
    for it in items_of(rec):
        for poly in it["segmentation"]:
            pts = list(zip(poly[::2], poly[1::2], strict=True))
            draw.line(pts + pts[:1], fill=(0, 255, 0))
        draw.rectangle(it["bounding_box"], outline=(255, 0, 0))
    return im


def test_contact_sheet(sample, tmp_path):
    """Render a few photos with their boxes and outlines for a person to look at."""
    out, _, manifest = sample
    photos, tiles = [], []
    for split, path, rec, _ in clean_records(out, manifest):
        with Image.open(out / split / "image" / f"{path.stem}.jpg") as im:
            photos.append(im.convert("RGB"))
        tiles.append(annotated(photos[-1], rec))
        if len(tiles) == 12:
            break
    assert len(tiles) == 12 and all(t.width <= 100 and t.height <= 100 for t in tiles)
    contact_sheet(tiles).save(tmp_path / "contact_sheet.png")

    with Image.open(tmp_path / "contact_sheet.png") as im:
        sheet = np.asarray(im.convert("RGB"))
    assert sheet.shape == (3 * 100, 4 * 100, 3)  # the 4 x 3 grid of 100 px cells
    red, green = np.array([255, 0, 0]), np.array([0, 255, 0])
    cells = []
    for i, (photo, tile) in enumerate(zip(photos, tiles, strict=True)):
        x0, y0 = (i % 4) * 100, (i // 4) * 100
        cell = sheet[y0 : y0 + 100, x0 : x0 + 100]
        w, h = tile.size
        # The cell holds its own annotated photo, pixel for pixel (PNG is lossless), on black.
        assert np.array_equal(cell[:h, :w], np.asarray(tile)), i
        assert not cell[h:].any() and not cell[:, w:].any(), i
        # ... which is the photo itself plus the drawing: a box outline and a polygon.
        drawn = (cell[:h, :w] != np.asarray(photo)).any(-1)
        assert 0.005 < drawn.mean() < 0.5, i
        assert (cell[:h, :w][drawn] == red).all(-1).sum() >= 8, i
        assert (cell[:h, :w][drawn] == green).all(-1).sum() >= 8, i
        assert cell[:h, :w].std() > 10, i  # a photo, not a flat colour
        cells.append(cell[:h, :w].tobytes())
    assert len(set(cells)) == 12  # twelve different photos


# -- the unannotated test split ----------------------------------------------------------
# sha256 over the sorted (path, file sha256) pairs of TEST_SPLIT_BASE's sample as the
# generator wrote it before the test split existed: groups.test = 0 keeps every byte (the
# JPEGs too: baseline encoding is a pure function of the pixels for a given libjpeg; should
# a Pillow upgrade change them, regenerate with the previous code before updating this).
BYTES_BEFORE_TEST_SPLIT = "0ea553cef15fc26b1ae7f9a4cf44c2f3b5dfa70355ec3034f5e6b951a8e32f7a"
TEST_SPLIT_BASE = {"groups": {"train": 2, "validation": 1}, "defects": 2}


def tree_digest(root: Path) -> str:
    return hashlib.sha256(json.dumps(sorted(tree_hashes(root).items())).encode()).hexdigest()


def test_without_a_test_split_the_sample_is_unchanged(tmp_path):
    cfg = tiny_config(**TEST_SPLIT_BASE)
    assert cfg.groups.test == 0 and "test" not in cfg.model_dump()["groups"]
    generate_sample_data(cfg, tmp_path / "df2", progress=False)
    assert not (tmp_path / "df2" / "test").exists()
    assert tree_digest(tmp_path / "df2") == BYTES_BEFORE_TEST_SPLIT


@pytest.fixture(scope="module")
def with_test(tmp_path_factory):
    """TEST_SPLIT_BASE plus a three-group test split, its ground truth written apart."""
    root = tmp_path_factory.mktemp("with_test")
    groups = {**TEST_SPLIT_BASE["groups"], "test": 3}
    cfg = tiny_config(**{**TEST_SPLIT_BASE, "groups": groups})
    summary = generate_sample_data(
        cfg, root / "df2", progress=False, test_ground_truth=root / "truth"
    )
    return root, cfg, summary


def test_the_test_split_has_images_and_info_files_only(with_test):
    root, cfg, summary = with_test
    test = root / "df2" / "test"
    assert sorted(p.name for p in test.iterdir()) == sorted(["image", *TEST_INFO_FILES.values()])
    images = sorted(test.glob("image/*.jpg"))
    ids = [int(p.stem) for p in images]
    assert ids == list(range(1, len(ids) + 1))  # 1-based, contiguous, as the other splits
    info = {s: json.loads((test / n).read_text())["images"] for s, n in TEST_INFO_FILES.items()}
    listed = {r["id"]: (s, r) for s, recs in info.items() for r in recs}
    assert sorted(listed) == ids and len(listed) == sum(len(r) for r in info.values())
    truth = root / "truth"
    for image_id, (source, rec) in listed.items():
        assert rec["file_name"] == f"{image_id:06d}.jpg"
        with Image.open(test / "image" / rec["file_name"]) as im:
            assert im.size == (rec["width"], rec["height"])
        anno = json.loads((truth / "annos" / f"{image_id:06d}.json").read_text())
        assert anno["source"] == source  # consumer photos in the consumer file, shop in shop
        assert items_of(anno)
    s = summary.splits["test"]
    assert (s.groups, s.defects) == (3, 0)  # no defects: there is nothing to quarantine
    assert (s.user_images, s.shop_images, s.images) == (
        len(info["user"]), len(info["shop"]), len(ids)
    )  # fmt: skip
    assert {"user", "shop"} == {source for source, _ in listed.values()}

    # The dataset's manifest has the test split's counts only; the truth lies apart.
    manifest = json.loads((root / "df2" / MANIFEST_NAME).read_text())
    assert manifest["splits"]["test"] == {"counts": s.__dict__}
    assert manifest["config"]["groups"]["test"] == 3
    assert not any(p.suffix == ".json" and p.parent.name == "annos" for p in test.rglob("*"))
    queries, gallery = read_test_split(root / "df2")  # what the submission reads
    assert queries["image_id"].tolist() == sorted(r["id"] for r in info["user"])
    assert gallery["image_id"].tolist() == sorted(r["id"] for r in info["shop"])
    truth_manifest = json.loads((truth / "test_ground_truth.json").read_text())
    assert len(truth_manifest["products"]) == s.products
    assert len(list((truth / "annos").glob("*.json"))) == len(ids)


def test_the_test_split_changes_no_other_split(with_test, tmp_path):
    root, cfg, _ = with_test
    generate_sample_data(tiny_config(**TEST_SPLIT_BASE), tmp_path / "df2", progress=False)
    without = tree_hashes(tmp_path / "df2")
    with_ = tree_hashes(root / "df2")
    assert {k: v for k, v in with_.items() if not k.startswith("test/")} | {
        MANIFEST_NAME: without[MANIFEST_NAME]
    } == without
    manifest = json.loads((root / "df2" / MANIFEST_NAME).read_text())
    del manifest["config"]["groups"]["test"], manifest["splits"]["test"]
    assert manifest == json.loads((tmp_path / "df2" / MANIFEST_NAME).read_text())
    # Its own photos (its own generators): none is a copy of another split's, even where
    # the splits have as many groups.
    same = tmp_path / "same"
    generate_sample_data(tiny_config(groups={"train": 1, "validation": 1, "test": 1}), same,
                         progress=False)  # fmt: skip
    photos = {
        s: {v for k, v in tree_hashes(same).items() if k.startswith(f"{s}/image/")}
        for s in (*SPLITS, "test")
    }
    assert photos["test"] and not photos["test"] & (photos["train"] | photos["validation"])
    # Deterministic, and independent of the defects injected into the annotated splits.
    rerun = tmp_path / "again"
    generate_sample_data(cfg.model_copy(update={"defects": 0}), rerun, progress=False)
    assert {k: v for k, v in tree_hashes(rerun).items() if k.startswith("test/")} == {
        k: v for k, v in with_.items() if k.startswith("test/")
    }


def test_the_test_split_ground_truth_stays_out_of_the_dataset(tmp_path):
    cfg = tiny_config(groups={"train": 1, "validation": 1, "test": 1})
    with pytest.raises(ValueError, match="inside the dataset"):
        generate_sample_data(cfg, tmp_path / "df2", test_ground_truth=tmp_path / "df2" / "gt")
    with pytest.raises(ValueError, match="groups.test is 0"):
        generate_sample_data(tiny_config(), tmp_path / "df2", test_ground_truth=tmp_path / "gt")
    assert not (tmp_path / "df2").exists()
    with pytest.raises(ConfigError, match=r"groups\.test"):
        validate_config(SampleDataConfig, {"groups": {"test": -1}})
