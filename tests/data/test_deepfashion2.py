from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from clothes_retrieval.config import ConfigError, validate_config
from clothes_retrieval.data import (
    ReaderConfig,
    read_deepfashion2,
    read_item_table,
    read_quarantine_table,
    write_item_tables,
)
from clothes_retrieval.data.schema import (
    ITEM_COLUMNS,
    QUARANTINE_COLUMNS,
    QUARANTINE_REASONS,
    validate_item_table,
)

BOTH = ReaderConfig(splits=("train", "validation"))


def read(root: Path, config: ReaderConfig = BOTH):
    return read_deepfashion2(root, config, progress=False)


def test_good_dataset_reads_into_the_exact_schema(good_df2):
    result = read(good_df2.root)
    items = result.items
    assert list(items.columns) == list(ITEM_COLUMNS)
    assert {c: str(t) for c, t in items.dtypes.items()} == {
        c: str(pd.Series(dtype=t).dtype) for c, t in ITEM_COLUMNS.items()
    }
    assert len(items) == 7
    assert result.quarantine.empty
    assert list(result.quarantine.columns) == list(QUARANTINE_COLUMNS)
    assert validate_item_table(items) == []
    # Ordered by split (config order), image id, item index.
    assert items["item_uid"].tolist() == [
        "deepfashion2/train/000001/1",
        "deepfashion2/validation/000001/1",
        "deepfashion2/validation/000001/2",
        "deepfashion2/validation/000002/1",
        "deepfashion2/validation/000003/1",
        "deepfashion2/validation/000004/1",
        "deepfashion2/validation/000004/2",
    ]


def test_good_dataset_values(good_df2):
    items = read(good_df2.root).items.set_index("item_uid")
    row = items.loc["deepfashion2/validation/000001/2"]
    image = good_df2.image_path("validation", 1)
    assert row["image_path"] == str(image.absolute()) and Path(row["image_path"]).is_absolute()
    assert (row["dataset"], row["split"], row["image_id"]) == ("deepfashion2", "validation", 1)
    assert (row["image_width"], row["image_height"]) == (80, 60)
    assert (row["source"], row["pair_id"], row["style"], row["item_index"]) == ("user", 1, 0, 2)
    assert (row["category_id"], row["category_name"]) == (8, "trousers")
    assert (row["x1"], row["y1"], row["x2"], row["y2"]) == (5.0, 30.0, 40.0, 58.0)
    assert row["segmentation"] == [[22.5, 30.0, 40.0, 44.0, 22.5, 58.0, 5.0, 44.0]]
    assert all(isinstance(v, float) for v in row["segmentation"][0] + row["landmarks"])
    assert row["landmarks"] == [22.5, 44.0, 2.0, 6.0, 31.0, 1.0]
    assert (row["scale"], row["occlusion"], row["zoom_in"], row["viewpoint"]) == (2, 1, 1, 2)
    # The size comes from the image file, not the annotation.
    assert tuple(
        items.loc["deepfashion2/validation/000002/1", ["image_width", "image_height"]]
    ) == (
        90,
        70,
    )


def _truncated_jpg(b, mk):
    path = b.image("validation", 10)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    b.anno("validation", 10, {"source": "user", "pair_id": 9, "item1": mk()})


def _garbage_jpg(b, mk):
    b.ensure_split("validation")
    b.image_path("validation", 10).write_bytes(b"this is not a jpeg" * 20)
    b.anno("validation", 10, {"source": "user", "pair_id": 9, "item1": mk()})


def _truncated_json(b, mk):
    b.image("validation", 10)
    b.anno("validation", 10, '{"source": "user", "pair_id": 9, "item1": {"category_id": 1')


def _non_dict_json(b, mk):
    b.image("validation", 10)
    b.anno("validation", 10, "[1, 2, 3]")


def _missing_source(b, mk):
    b.image("validation", 10)
    b.anno("validation", 10, {"pair_id": 9, "item1": mk()})


def _bad_source(b, mk):
    b.image("validation", 10)
    b.anno("validation", 10, {"source": "street", "pair_id": 9, "item1": mk()})


def _two_items(b, mk, bad_item):
    b.record("validation", 10, "shop", 9, [mk(), bad_item])


def _missing_style(b, mk):
    bad = mk()
    del bad["style"]
    _two_items(b, mk, bad)


def _mistyped_box(b, mk):
    _two_items(b, mk, mk(bounding_box="10,10,20,20"))


def _negative_style(b, mk):
    _two_items(b, mk, mk(style=-1))


def _box_outside(b, mk):
    _two_items(b, mk, mk(box=(10, 10, 200, 40)))


def _zero_area_box(b, mk):
    _two_items(b, mk, mk(box=(10, 10, 10, 40)))


def _category_14(b, mk):
    _two_items(b, mk, mk(category_id=14))


def _json_without_image(b, mk):
    b.anno("validation", 10, {"source": "user", "pair_id": 9, "item1": mk()})


def _image_without_json(b, mk):
    b.image("validation", 10)


def _no_items(b, mk):
    b.image("validation", 10)
    b.anno("validation", 10, {"source": "user", "pair_id": 9})


def _image_level(**anno):
    """A writer of one image whose annotation has these image-level fields (and one item)."""

    def write(b, mk):
        b.image("validation", 10)
        b.anno("validation", 10, {**anno, "item1": mk()})

    return write


def _bad_item(**overrides):
    """A writer of one image: a good item1 and item2 with these field overrides."""

    def write(b, mk):
        _two_items(b, mk, mk(**overrides))

    return write


def _item_without(field):
    def write(b, mk):
        bad = mk()
        del bad[field]
        _two_items(b, mk, bad)

    return write


def _item_not_an_object(b, mk):
    b.image("validation", 10)
    b.anno("validation", 10, {"source": "shop", "pair_id": 9, "item1": mk(), "item2": [1, 2]})


_NAN = float("nan")  # json.dumps writes NaN / Infinity, and json.loads reads them back

# (writer, reason, item_index of the quarantined row or None, offending file kind,
#  a fragment of the message that says which rule fired)
CASES = {
    "truncated_jpg": (_truncated_jpg, "corrupt_image", None, "image", "cannot be decoded"),
    "garbage_jpg": (_garbage_jpg, "corrupt_image", None, "image", "cannot be decoded"),
    "truncated_json": (_truncated_json, "malformed_json", None, "anno", "not readable as JSON"),
    "non_dict_json": (_non_dict_json, "malformed_json", None, "anno", "got list"),
    "missing_source": (_missing_source, "missing_field", None, "anno", "'source' is absent"),
    "mistyped_source": (
        _image_level(source=1, pair_id=9),
        "missing_field",
        None,
        "anno",
        "'source' is a int",
    ),
    "bad_source": (_bad_source, "bad_value", None, "anno", "'source' is 'street'"),
    "missing_pair_id": (
        _image_level(source="user"),
        "missing_field",
        None,
        "anno",
        "'pair_id' is absent",
    ),
    "mistyped_pair_id": (
        _image_level(source="user", pair_id="9"),
        "missing_field",
        None,
        "anno",
        "'pair_id' is '9'",
    ),
    "fractional_pair_id": (
        _image_level(source="user", pair_id=9.5),
        "missing_field",
        None,
        "anno",
        "'pair_id' is 9.5",
    ),
    "negative_pair_id": (
        _image_level(source="user", pair_id=-1),
        "bad_value",
        None,
        "anno",
        "'pair_id' is -1",
    ),
    "no_items": (_no_items, "missing_field", None, "anno", "no 'itemN' entries"),
    "item_not_an_object": (
        _item_not_an_object,
        "missing_field",
        2,
        "anno",
        "item2 is a list, expected an object",
    ),
    **{
        f"missing_{field}": (
            _item_without(field),
            "missing_field",
            2,
            "anno",
            f"item2.{field} is absent",
        )
        for field in (
            "category_id",
            "style",
            "bounding_box",
            "segmentation",
            "landmarks",
            "scale",
            "occlusion",
            "zoom_in",
            "viewpoint",
        )
    },
    "mistyped_category": (
        _bad_item(category_id="1"),
        "missing_field",
        2,
        "anno",
        "item2.category_id is '1'",
    ),
    "fractional_scale": (_bad_item(scale=2.5), "missing_field", 2, "anno", "item2.scale is 2.5"),
    "boolean_zoom_in": (_bad_item(zoom_in=True), "missing_field", 2, "anno", "item2.zoom_in is"),
    "mistyped_box": (
        _mistyped_box,
        "missing_field",
        2,
        "anno",
        "item2.bounding_box is '10,10,20,20'",
    ),
    "three_number_box": (
        _bad_item(bounding_box=[10, 10, 20]),
        "missing_field",
        2,
        "anno",
        "item2.bounding_box",
    ),
    "flat_segmentation": (
        _bad_item(segmentation=[10, 10, 20, 10, 20, 20]),
        "missing_field",
        2,
        "anno",
        "item2.segmentation",
    ),
    "mistyped_landmarks": (
        _bad_item(landmarks=[10, 10, "2"]),
        "missing_field",
        2,
        "anno",
        "item2.landmarks",
    ),
    "negative_style": (_negative_style, "bad_value", 2, "anno", "item2.style is -1"),
    # scale / occlusion / zoom_in / viewpoint: each field just below and just above 1..3
    **{
        f"{field}_{value}": (
            _bad_item(**{field: value}),
            "bad_value",
            2,
            "anno",
            f"item2.{field} is {value}, expected 1..3",
        )
        for field in ("scale", "occlusion", "zoom_in", "viewpoint")
        for value in (0, 4)
    },
    "nan_in_box": (
        _bad_item(bounding_box=[10, 10, _NAN, 40]),
        "bad_value",
        2,
        "anno",
        "NaN or infinite",
    ),
    "infinite_landmark": (
        _bad_item(landmarks=[20, 20, 2, float("inf"), 12, 1]),
        "bad_value",
        2,
        "anno",
        "NaN or infinite",
    ),
    "nan_in_segmentation": (
        _bad_item(segmentation=[[30, 10, 50, _NAN, 30, 40, 10, 24]]),
        "bad_value",
        2,
        "anno",
        "NaN or infinite",
    ),
    "odd_length_polygon": (
        _bad_item(segmentation=[[30, 10, 50, 24, 30, 40, 10, 24], [30, 10, 50, 24, 30]]),
        "bad_value",
        2,
        "anno",
        "segmentation[1] has 5 numbers",
    ),
    "landmarks_not_triples": (
        _bad_item(landmarks=[20, 20, 2, 11, 9]),
        "bad_value",
        2,
        "anno",
        "landmarks must be [x, y, v] triples",
    ),
    "landmark_visibility_3": (
        _bad_item(landmarks=[20, 20, 2, 11, 9, 3]),
        "bad_value",
        2,
        "anno",
        "landmarks must be [x, y, v] triples",
    ),
    "box_outside": (_box_outside, "bad_box", 2, "anno", "lies outside the 80x60 image"),
    "box_left_of_image": (
        _bad_item(box=(-2, 10, 20, 40)),
        "bad_box",
        2,
        "anno",
        "lies outside the 80x60 image",
    ),
    "zero_area_box": (_zero_area_box, "bad_box", 2, "anno", "has area 0 px²"),
    "inverted_box_x": (_bad_item(box=(50, 10, 10, 40)), "bad_box", 2, "anno", "has area 0 px²"),
    "inverted_box_y": (_bad_item(box=(10, 40, 50, 10)), "bad_box", 2, "anno", "has area 0 px²"),
    "box_below_min_area": (
        _bad_item(box=(10, 10, 10.5, 11)),
        "bad_box",
        2,
        "anno",
        "has area 0.5 px² inside",
    ),
    "category_14": (_category_14, "unknown_category", 2, "anno", "category_id is 14"),
    "category_0": (_bad_item(category_id=0), "unknown_category", 2, "anno", "category_id is 0"),
    "json_without_image": (
        _json_without_image,
        "missing_image",
        None,
        "anno",
        "annotation has no image",
    ),
    "image_without_json": (
        _image_without_json,
        "missing_annotation",
        None,
        "image",
        "image has no annotation",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_record_is_quarantined_and_the_rest_survive(good_df2, item_factory, case):
    writer, reason, item_index, kind, fragment = CASES[case]
    writer(good_df2, item_factory)
    result = read(good_df2.root)

    q = result.quarantine
    assert len(q) == 1, q.to_dict("records")
    row = q.iloc[0]
    assert row["reason"] == reason and reason in QUARANTINE_REASONS
    assert (row["dataset"], row["split"], row["image_id"]) == ("deepfashion2", "validation", 10)
    if item_index is None:
        assert pd.isna(row["item_index"])
    else:
        assert row["item_index"] == item_index
    path = (
        good_df2.image_path("validation", 10)
        if kind == "image"
        else good_df2.anno_path("validation", 10)
    )
    assert row["path"] == str(path.absolute())
    assert str(path.name) in row["message"]  # names the file ...
    assert fragment in row["message"]  # ... and the rule it breaks ...
    assert any(
        w in row["message"] for w in ("fix", "delete", "restore", "re-")
    )  # ... and what to do

    # Every good item survives; an item-level problem keeps the image's good item.
    survivors = set(result.items["item_uid"])
    assert len(result.items) == 7 + (1 if item_index is not None else 0)
    if item_index is not None:
        assert "deepfashion2/validation/000010/1" in survivors
    assert validate_item_table(result.items) == []


def test_non_integer_file_name_is_quarantined(good_df2, item_factory):
    good_df2.image("validation", 10)
    good_df2.anno("validation", 10, {"source": "user", "pair_id": 9, "item1": item_factory()})
    image = good_df2.image_path("validation", 10).rename(good_df2.root / "validation/image/a10.jpg")
    good_df2.anno_path("validation", 10).rename(good_df2.root / "validation/annos/a10.json")
    result = read(good_df2.root)
    q = result.quarantine
    assert len(q) == 1, q.to_dict("records")
    row = q.iloc[0]
    assert (row["reason"], row["split"], row["path"]) == ("bad_value", "validation", str(image))
    assert pd.isna(row["image_id"]) and pd.isna(row["item_index"])
    assert "file name 'a10' is not an integer image id" in row["message"]
    assert len(result.items) == 7


def test_min_box_area_is_configurable_and_applies_after_clipping(df2, item_factory):
    # 6x5 = 30 px² as annotated; 5x5 = 25 px² once clipped to the image (x1 -1 -> 0).
    df2.record("validation", 1, "user", 1, [item_factory(box=(-1, 10, 5, 15))])
    df2.record("validation", 2, "user", 2, [item_factory(box=(10, 10, 16, 15))])  # 30 px²
    default = read(df2.root, ReaderConfig(splits=("validation",)))
    assert default.quarantine.empty and len(default.items) == 2
    strict = read(df2.root, ReaderConfig(splits=("validation",), min_box_area=28))
    assert strict.items["image_id"].tolist() == [2]
    assert strict.quarantine["reason"].tolist() == ["bad_box"]
    assert strict.quarantine["image_id"].tolist() == [1]
    assert "has area 25 px² inside the image (minimum 28" in strict.quarantine["message"][0]


@pytest.mark.parametrize("box", [(10, 10, 10, 40), (10, 10, 40, 10), (40, 10, 10, 40)])
def test_empty_or_inverted_box_is_bad_even_without_a_minimum_area(df2, item_factory, box):
    df2.record("validation", 1, "user", 1, [item_factory(box=box)])
    df2.record("validation", 2, "user", 2, [item_factory(box=(10, 10, 10.5, 10.5))])
    result = read(df2.root, ReaderConfig(splits=("validation",), min_box_area=0))
    assert result.items["image_id"].tolist() == [2]  # a tiny box passes with no minimum
    assert result.quarantine["reason"].tolist() == ["bad_box"]
    assert "x2 must exceed x1 and y2 exceed y1" in result.quarantine["message"][0]


@pytest.mark.parametrize(
    ("overrides", "reason", "fragment"),
    [
        # a missing field is reported before any value check
        ({"category_id": 14, "scale": None}, "missing_field", "item1.scale is None"),
        # the category before the ranges, the ranges before the coordinates
        ({"category_id": 14, "scale": 9}, "unknown_category", "category_id is 14"),
        ({"scale": 9, "bounding_box": [10, 8, _NAN, 40]}, "bad_value", "item1.scale is 9"),
        # coordinates are checked before the box
        ({"box": (10, 8, 500, 40), "landmarks": [1, 1, 5]}, "bad_value", "landmarks must be"),
    ],
    ids=["field_before_category", "category_before_range", "range_before_nan", "lm_before_box"],
)
def test_the_first_problem_decides_the_reason(df2, item_factory, overrides, reason, fragment):
    df2.record("validation", 1, "user", 1, [item_factory(**overrides)])
    q = read(df2.root, ReaderConfig(splits=("validation",))).quarantine
    assert q["reason"].tolist() == [reason]
    assert fragment in q["message"][0]


def test_all_bad_records_at_once_do_not_sink_the_run(good_df2, item_factory, caplog):
    for image_id, name in enumerate(CASES, start=10):
        writer = CASES[name][0]
        sub = type(good_df2)(good_df2.root / "tmp")
        writer(sub, item_factory)  # write under a scratch root, then move to this image id
        for kind in ("image", "annos"):
            for f in (sub.root / "validation" / kind).glob("*"):
                suffix = f.suffix
                f.rename(good_df2.root / "validation" / kind / f"{image_id:06d}{suffix}")
    caplog.set_level(logging.INFO, logger="clothes_retrieval.data.deepfashion2")
    result = read(good_df2.root)
    assert len(result.quarantine) == len(CASES)
    expected = sorted(reason for _, reason, _, _, _ in CASES.values())
    assert sorted(result.quarantine["reason"]) == expected
    assert len(result.items) == 7 + sum(1 for _, _, idx, _, _ in CASES.values() if idx is not None)
    assert f"quarantined {len(CASES)} records" in caplog.text


def test_box_exceeding_by_at_most_tolerance_is_clipped(df2, item_factory):
    df2.record("validation", 1, "user", 1, [item_factory(box=(-0.5, 2, 80.8, 60.0))])
    df2.record("validation", 2, "user", 1, [item_factory(box=(-1.5, 2, 50, 40))])
    result = read(df2.root, ReaderConfig(splits=("validation",)))
    row = result.items.iloc[0]
    assert (row["x1"], row["y1"], row["x2"], row["y2"]) == (0.0, 2.0, 80.0, 60.0)
    assert result.quarantine["reason"].tolist() == ["bad_box"]
    assert result.quarantine["image_id"].tolist() == [2]


def test_check_images_off_reads_only_the_header(good_df2, item_factory):
    _truncated_jpg(good_df2, item_factory)
    result = read(good_df2.root, ReaderConfig(check_images=False))
    assert result.quarantine.empty and len(result.items) == 8


def test_workers_give_the_same_result(good_df2, item_factory):
    _box_outside(good_df2, item_factory)
    one = read(good_df2.root)
    two = read(good_df2.root, ReaderConfig(workers=2))
    pd.testing.assert_frame_equal(one.items, two.items)
    pd.testing.assert_frame_equal(one.quarantine, two.quarantine)


def test_missing_split_dir_raises_naming_it(good_df2):
    with pytest.raises(FileNotFoundError, match=r"split 'test'.*df2/test does not exist"):
        read(good_df2.root, ReaderConfig(splits=("validation", "test")))


def test_empty_split_is_allowed(df2):
    df2.ensure_split("test")
    result = read(df2.root, ReaderConfig(splits=("test",)))
    assert result.items.empty and result.quarantine.empty
    assert list(result.items.columns) == list(ITEM_COLUMNS)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="splitz"):
        validate_config(ReaderConfig, {"splitz": ["train"]})
    with pytest.raises(ConfigError, match="workers"):
        validate_config(ReaderConfig, {"workers": 0})
    assert validate_config(ReaderConfig, {"splits": ["validation"]}).splits == ("validation",)


def test_parquet_round_trip_keeps_list_columns(good_df2, item_factory, tmp_path):
    _category_14(good_df2, item_factory)
    result = read(good_df2.root)
    paths = write_item_tables(result, tmp_path / "tables")
    assert set(paths) == {"items", "quarantine"}
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == [
        "items.parquet",
        "quarantine.parquet",
    ]
    back = read_item_table(paths["items"])
    pd.testing.assert_frame_equal(back, result.items)
    seg = back["segmentation"].iloc[0]
    assert isinstance(seg, list) and isinstance(seg[0], list) and isinstance(seg[0][0], float)
    assert isinstance(back["landmarks"].iloc[0], list)
    pd.testing.assert_frame_equal(read_quarantine_table(paths["quarantine"]), result.quarantine)


def test_parquet_round_trip_of_empty_tables(df2, tmp_path):
    df2.ensure_split("test")
    result = read(df2.root, ReaderConfig(splits=("test",)))
    paths = write_item_tables(result, tmp_path / "tables")
    pd.testing.assert_frame_equal(read_item_table(paths["items"]), result.items)


def test_json_file_is_not_modified(good_df2):
    before = json.loads(good_df2.anno_path("validation", 1).read_text())
    read(good_df2.root)
    assert json.loads(good_df2.anno_path("validation", 1).read_text()) == before
