"""Street2Shop (Kiapour, Han, Lazebnik, Berg, Berg, "Where to Buy It: Matching Street Clothing
Photos in Online Shops", ICCV 2015): street photos with a box on one garment, matched to the
shop photos of the product worn.

Native layout (the public release ships photo URLs in ``meta/photos.txt``; a download saves
photo ``<id>`` as ``photos/<id>.jpg``; .jpeg / .png ... and zero padding are accepted)::

    root/meta/json/train_pairs_<category>.json   JSON list of {"photo": int, "product": int,
    root/meta/json/test_pairs_<category>.json      "bbox": {"left", "top", "width", "height"}}
    root/meta/json/retrieval_<category>.json     JSON list of {"photo": int, "product": int}:
                                                 the shop photos of each product
    root/photos/<photo id>.jpg

``<category>`` is one of the 11 ``STREET2SHOP_CATEGORIES`` (ids 1..11 in that order).

Items:

- a pair record is a street photo (``source="user"``) of a garment of that file's category,
  boxed by ``bbox`` (x1, y1 = left, top; x2, y2 = left + width, top + height), in the split
  of the file name;
- a retrieval record is a shop photo (``source="shop"``) of the product, the whole photo
  its box, in every split whose pairs name that product (a product in train and test pairs:
  one item in each split); shop photos of products no pair names (gallery distractors) are
  left out, or put in ``unpaired_split`` when given;
- ``pair_id`` = the product id and ``style = 1``: a street item and a shop item of one
  product form a positive pair;
- ``image_id`` = the photo id; a photo named with several products has one item per
  product (``item_index`` 1, 2, ... in record order); a repeated record is skipped.

Quarantined (one bad record never stops the read): an unparsable or non-list JSON file
(``malformed_json``, the whole file), a record that is not an object (``malformed_json``),
a record without an integer ``photo`` / ``product`` or a numeric ``bbox`` (``missing_field``),
a product id below 1 (``bad_value``), a missing or undecodable photo (``missing_image`` /
``corrupt_image``), a box outside the photo by more than ``box_tolerance`` pixels or empty
(``bad_box``; URLs may serve a photo at another size than the one annotated), and a JSON
file of a category outside the 11 (``unknown_category``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clothes_retrieval.data.sources._photo_items import PhotoItem, PhotoItems
from clothes_retrieval.data.sources.base import (
    Rejected,
    SourceTables,
    TableBuilder,
    images_in,
    numbered,
    register_source,
)

__all__ = ["STREET2SHOP_CATEGORIES", "read_street2shop"]

STREET2SHOP_CATEGORIES = (
    "bags",
    "belts",
    "dresses",
    "eyewear",
    "footwear",
    "hats",
    "leggings",
    "outerwear",
    "pants",
    "skirts",
    "tops",
)
STREET2SHOP_SPLITS = ("train", "test")
_META = Path("meta") / "json"
_LAYOUT = (
    "meta/json/{train,test}_pairs_<category>.json, meta/json/retrieval_<category>.json, "
    "photos/<photo id>.jpg"
)
_FILE_NAME = re.compile(r"^(?:(?P<split>[a-z]+)_pairs|retrieval)_(?P<category>.+)\.json$")


def _load_records(path: Path, builder: TableBuilder, split: str) -> list[Any]:
    """The records of one JSON file; [] (and a quarantine row) when it cannot be parsed."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        builder.reject(
            split,
            None,
            None,
            Rejected(
                "malformed_json",
                f"cannot parse {path}: {exc}; re-download the Street2Shop meta files",
                path,
            ),
        )
        return []
    if not isinstance(records, list):
        builder.reject(
            split,
            None,
            None,
            Rejected(
                "malformed_json",
                f"{path} holds a JSON {type(records).__name__}, expected a list of records; "
                "re-download the Street2Shop meta files",
                path,
            ),
        )
        return []
    return records


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ids(record: Any, where: str, path: Path) -> tuple[int, int]:
    """(photo, product) of a record, or :class:`Rejected`."""
    if not isinstance(record, dict):
        raise Rejected(
            "malformed_json",
            f"{where} is a JSON {type(record).__name__}, expected an object: fix or delete it",
            path,
        )
    bad = [k for k in ("photo", "product") if not _is_int(record.get(k))]
    if bad:
        raise Rejected(
            "missing_field",
            f"{where} lacks integer {bad} (got {[record.get(k) for k in bad]}): fix or delete it",
            path,
        )
    if record["product"] < 1:
        raise Rejected(
            "bad_value",
            f"{where}: product id {record['product']} is below 1: fix or delete the record",
            path,
        )
    return record["photo"], record["product"]


def _box(record: dict[str, Any], where: str, path: Path) -> tuple[float, float, float, float]:
    """x1, y1, x2, y2 of a pair record's ``bbox`` (left, top, width, height)."""
    bbox = record.get("bbox")
    keys = ("left", "top", "width", "height")
    if not isinstance(bbox, dict) or not all(
        isinstance(bbox.get(k), int | float) and not isinstance(bbox.get(k), bool) for k in keys
    ):
        raise Rejected(
            "missing_field",
            f"{where} has no numeric bbox {{left, top, width, height}} (got {bbox!r}): "
            "fix or delete it",
            path,
        )
    left, top, width, height = (float(bbox[k]) for k in keys)
    if not all(math.isfinite(v) for v in (left, top, width, height)):
        raise Rejected("bad_box", f"{where}: bbox {bbox} is not finite: fix or delete it", path)
    return (left, top, left + width, top + height)


@register_source(
    "street2shop",
    description="Street2Shop (Where to Buy It): boxed street photos matched to shop photos",
    layout=_LAYOUT,
)
def read_street2shop(
    root: Path,
    *,
    splits: Sequence[str] = STREET2SHOP_SPLITS,
    categories: Sequence[str] = STREET2SHOP_CATEGORIES,
    unpaired_split: str | None = None,
    box_tolerance: float = 1.0,
    dataset: str = "street2shop",
    progress: bool = True,
) -> SourceTables:
    """Items of the Street2Shop pairs of ``splits`` and ``categories`` at ``root``."""
    root = Path(root)
    bad = [s for s in splits if s not in STREET2SHOP_SPLITS] + [
        c for c in categories if c not in STREET2SHOP_CATEGORIES
    ]
    if bad:
        raise ValueError(
            f"{dataset}: unknown split(s)/category(ies) {bad}; splits are "
            f"{list(STREET2SHOP_SPLITS)}, categories {list(STREET2SHOP_CATEGORIES)}"
        )
    meta, photos_dir = root / _META, root / "photos"
    needed = [meta / f"{s}_pairs_{c}.json" for c in categories for s in splits]
    needed += [meta / f"retrieval_{c}.json" for c in categories]
    missing = [str(p.relative_to(root)) for p in needed if not p.is_file()]
    if not photos_dir.is_dir():
        missing.append("photos/")
    if missing:
        raise FileNotFoundError(
            f"{dataset}: {missing[:6]}{' ...' if len(missing) > 6 else ''} not found under "
            f"{root}; expected layout: {_LAYOUT} (pass categories= to read only some)"
        )
    builder = TableBuilder(dataset, {k + 1: c for k, c in enumerate(STREET2SHOP_CATEGORIES)})
    photos = PhotoItems(builder, box_tolerance=box_tolerance)
    photo_files = numbered(images_in(photos_dir))

    def photo_path(photo: int) -> Path:
        return photo_files.get(photo, photos_dir / f"{photo}.jpg")

    for path in sorted(meta.glob("*.json")):
        match = _FILE_NAME.match(path.name)
        if match and match["category"] not in STREET2SHOP_CATEGORIES:
            builder.reject(
                match["split"] or "",
                None,
                None,
                Rejected(
                    "unknown_category",
                    f"{path.name}: {match['category']!r} is not a Street2Shop category "
                    f"{list(STREET2SHOP_CATEGORIES)}; the file is not read: rename or remove it",
                    path,
                ),
            )

    products: dict[str, set[int]] = {s: set() for s in splits}
    for category in categories:
        for split in splits:
            path = meta / f"{split}_pairs_{category}.json"
            for i, record in enumerate(_load_records(path, builder, split)):
                where = f"{path.name} record {i}"
                try:
                    photo, product = _ids(record, where, path)
                    box = _box(record, where, path)
                    photos.add(
                        split,
                        photo_path(photo),
                        PhotoItem("user", category, product, box, where),
                        image_id=photo,
                    )
                except Rejected as err:
                    photo = record.get("photo") if isinstance(record, dict) else None
                    builder.reject(split, photo if _is_int(photo) else None, None, err)
                    continue
                products[split].add(product)

    for category in categories:
        path = meta / f"retrieval_{category}.json"
        for i, record in enumerate(_load_records(path, builder, "")):
            where = f"{path.name} record {i}"
            try:
                photo, product = _ids(record, where, path)
            except Rejected as err:
                builder.reject("", None, None, err)
                continue
            in_splits = [s for s in splits if product in products[s]]
            if not in_splits and unpaired_split is not None:
                in_splits = [unpaired_split]
            for split in in_splits:
                try:
                    photos.add(
                        split,
                        photo_path(photo),
                        PhotoItem("shop", category, product, None, where),
                        image_id=photo,
                    )
                except Rejected as err:
                    builder.reject(split, photo, None, err)

    photos.build(progress=progress)
    return builder.tables()
