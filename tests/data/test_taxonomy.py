"""Taxonomy files: validation errors name the bad key; mapping items to the target classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from clothes_retrieval.config import ConfigError, validate_config
from clothes_retrieval.data.taxonomy import Taxonomy, load_taxonomy, map_to_taxonomy
from tests.data.item_rows import whole_photo_items


def _good() -> dict[str, Any]:
    return {
        "name": "tiny",
        "classes": ["top", "bottom", "dress"],
        "sources": {
            "shop": {"top": ["shirt", "blouse"], "bottom": ["jeans"], "dress": ["dress"]},
            "street": {"bottom": ["skirt", "jeans"]},
        },
    }


def _write(tmp_path: Path, data: dict[str, Any], name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_good_file_loads(tmp_path: Path) -> None:
    taxonomy = load_taxonomy(_write(tmp_path, _good()))
    assert taxonomy.classes == ("top", "bottom", "dress")
    assert taxonomy.category_ids == {1: "top", 2: "bottom", 3: "dress"}
    assert taxonomy.lookup("street") == {"skirt": "bottom", "jeans": "bottom"}
    # by name, from another directory
    assert load_taxonomy("tiny", directory=tmp_path) == taxonomy


def _unknown_target(d):
    d["sources"]["street"]["coat"] = ["parka"]


def _two_targets(d):
    d["sources"]["shop"]["dress"].append("shirt")  # shirt is already a top


def _duplicate_class(d):
    d["classes"].append("top")


def _no_classes(d):
    d["classes"] = []


def _bad_name(d):
    d["name"] = "Tiny Taxonomy"


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (_unknown_target, r"sources\.street: \['coat'\] are not classes"),
        (_two_targets, r"sources\.shop: category 'shirt' is mapped to both 'top' and 'dress'"),
        (_duplicate_class, r"classes: give distinct names"),
        (_no_classes, r"classes: give distinct names"),
        (_bad_name, r"\bname\b"),
    ],
    ids=["unknown_target", "two_targets", "duplicate_class", "no_classes", "bad_name"],
)
def test_errors_name_the_key(edit, pattern: str, tmp_path: Path) -> None:
    data = _good()
    edit(data)
    with pytest.raises(ConfigError, match=pattern):
        validate_config(Taxonomy, data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_taxonomy(path)
    assert str(path) in str(info.value)


def test_same_category_twice_under_one_target_is_fine() -> None:
    data = _good()
    data["sources"]["shop"]["top"].append("shirt")
    assert validate_config(Taxonomy, data).lookup("shop")["shirt"] == "top"


def test_unknown_taxonomy_lists_the_known_ones(tmp_path: Path) -> None:
    _write(tmp_path, _good(), "alpha")
    _write(tmp_path, _good(), "beta")
    with pytest.raises(ConfigError, match=r"no taxonomy 'nope'.*\['alpha', 'beta'\]"):
        load_taxonomy("nope", directory=tmp_path)
    with pytest.raises(ConfigError, match="no taxonomy 'nope'.*product10"):
        load_taxonomy("nope")  # the repository's configs/taxonomy/
    with pytest.raises(ConfigError, match="not found"):
        load_taxonomy(tmp_path / "gone.yaml")


def test_map_to_taxonomy_ids_follow_classes_and_unmapped_rows_go() -> None:
    taxonomy = validate_config(Taxonomy, _good())
    items = whole_photo_items(
        [
            ("shop", "dress"),
            ("shop", "blouse"),
            ("shop", "socks"),  # mapped nowhere: dropped
            ("street", "jeans"),
            ("street", "shirt"),  # a top for shop, not mapped for street: dropped
            ("shop", "jeans"),
        ]
    )
    mapped = map_to_taxonomy(items, taxonomy)
    names = zip(mapped["category_name"], mapped["category_id"], strict=True)
    got = dict(zip(mapped["item_uid"], names, strict=True))
    assert got == {
        "shop/train/000001/1": ("dress", 3),
        "shop/train/000002/1": ("top", 1),
        "street/train/000004/1": ("bottom", 2),
        "shop/train/000006/1": ("bottom", 2),
    }
    assert mapped["category_id"].dtype == "int64"
    # the input is left as it was
    assert items["category_name"].tolist()[0] == "dress" and items["category_id"].iloc[0] == 41


def test_source_option_uses_one_block_for_every_row() -> None:
    taxonomy = validate_config(Taxonomy, _good())
    items = whole_photo_items([("anything", "skirt"), ("other", "blouse")])
    mapped = map_to_taxonomy(items, taxonomy, source="street")
    assert mapped["category_name"].tolist() == ["bottom"]
    assert mapped["dataset"].tolist() == ["anything"]  # the dataset column is kept


def test_source_missing_from_the_taxonomy_is_named() -> None:
    taxonomy = validate_config(Taxonomy, _good())
    with pytest.raises(ConfigError, match=r"sources\.catalogue"):
        map_to_taxonomy(whole_photo_items([("shop", "dress"), ("catalogue", "dress")]), taxonomy)
    with pytest.raises(ConfigError, match=r"sources\.catalogue"):
        map_to_taxonomy(whole_photo_items([("shop", "dress")]), taxonomy, source="catalogue")
    empty = whole_photo_items([("catalogue", "dress")]).iloc[:0]
    assert map_to_taxonomy(empty, taxonomy).empty  # nothing to map, nothing to complain of
