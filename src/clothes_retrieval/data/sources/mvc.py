"""MVC (Liu, Wu, Wang, Chang, Hsu, "MVC: A Dataset for View-Invariant Clothing Retrieval and
Attribute Prediction", ICMR 2016): shop photos of each product from several views.

Native layout (the release's ``mvc_info.json``, with the photos downloaded to ``images/``)::

    root/mvc_info.json     JSON list of records, one per photo, with at least
                           "itemN" (int, the product), "filename" (str, the photo relative
                           to images/) and "category" (str); other keys ("viewId",
                           "productTypeName", "productName", ...) are ignored
    root/images/<filename>

``category`` is one of ``categories`` (by default the 10 top-level MVC categories of
``MVC_CATEGORIES``, ids 1..10 in that order; pass the list the release at hand uses).

Items, each a whole photo (MVC gives no boxes): every photo is a shop photo
(``source="shop"``) with ``pair_id`` = its ``itemN`` and ``style = 1``, so the views of one
product form positive pairs; there are no consumer photos. MVC has no official split: the
products of ``test_items`` are in ``test``, all others in ``train`` (only ``splits`` are
read). ``image_id`` = 1, 2, ... over the file names of the split in sorted order; a record
repeated for one photo is skipped.

Quarantined: a record that is not an object (``malformed_json``), a record without an
integer ``itemN`` or a string ``filename`` / ``category`` (``missing_field``), an ``itemN``
below 1 or a photo given to two products (``bad_value``), a category outside
``categories`` (``unknown_category``), and a missing or undecodable photo
(``missing_image`` / ``corrupt_image``). An ``mvc_info.json`` that is not a JSON list
raises ``ValueError``: no record of it can be read.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path

from clothes_retrieval.data.sources._photo_items import PhotoItem, PhotoItems
from clothes_retrieval.data.sources.base import (
    Rejected,
    SourceTables,
    TableBuilder,
    register_source,
)

__all__ = ["MVC_CATEGORIES", "read_mvc"]

MVC_CATEGORIES = (
    "Coats & Outerwear",
    "Dresses",
    "Jeans",
    "Pants",
    "Shirts & Tops",
    "Shorts",
    "Skirts",
    "Sweaters",
    "Activewear",
    "Jackets",
)
_LAYOUT = 'mvc_info.json (list of {"itemN", "filename", "category", ...}), images/<filename>'


@register_source(
    "mvc",
    description="MVC: shop photos of each product from several views (view-invariant retrieval)",
    layout=_LAYOUT,
)
def read_mvc(
    root: Path,
    *,
    splits: Sequence[str] = ("train", "test"),
    test_items: Collection[int] = (),
    categories: Sequence[str] = MVC_CATEGORIES,
    dataset: str = "mvc",
    progress: bool = True,
) -> SourceTables:
    """Items of the photos listed in ``root/mvc_info.json`` (``test_items`` -> ``test``)."""
    root = Path(root)
    info, images = root / "mvc_info.json", root / "images"
    for path, there in ((info, info.is_file()), (images, images.is_dir())):
        if not there:
            raise FileNotFoundError(f"{dataset}: {path} not found; expected layout: {_LAYOUT}")
    try:
        records = json.loads(info.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{dataset}: cannot parse {info}: {exc}; re-download it") from exc
    if not isinstance(records, list):
        raise ValueError(
            f"{dataset}: {info} holds a JSON {type(records).__name__}, expected a list of records"
        )
    test = {int(i) for i in test_items}
    builder = TableBuilder(dataset, {k + 1: c for k, c in enumerate(categories)})
    photos = PhotoItems(builder)
    product_of: dict[str, tuple[int, str]] = {}  # filename -> (itemN, record)

    for i, record in enumerate(records):
        where = f"{info.name} record {i}"
        split = ""
        try:
            if not isinstance(record, dict):
                raise Rejected(
                    "malformed_json",
                    f"{where} is a JSON {type(record).__name__}, expected an object: fix it",
                    info,
                )
            item_n, filename, category = (record.get(k) for k in ("itemN", "filename", "category"))
            if not (isinstance(item_n, int) and not isinstance(item_n, bool)):
                raise Rejected("missing_field", f"{where} has no integer itemN: fix it", info)
            if not (isinstance(filename, str) and filename and isinstance(category, str)):
                raise Rejected(
                    "missing_field",
                    f"{where} lacks a string filename / category (got {filename!r}, "
                    f"{category!r}): fix it",
                    info,
                )
            if item_n < 1:
                raise Rejected("bad_value", f"{where}: itemN {item_n} is below 1: fix it", info)
            split = "test" if item_n in test else "train"
            if split not in splits:
                continue
            photos.category(category, where, info)
            seen = product_of.setdefault(filename, (item_n, where))
            if seen[0] != item_n:
                raise Rejected(
                    "bad_value",
                    f"{where} gives photo {filename} to itemN {item_n}, but {seen[1]} gave it "
                    f"to itemN {seen[0]}; the first is kept: fix the records",
                    info,
                )
            photos.add(split, images / filename, PhotoItem("shop", category, item_n, None, where))
        except Rejected as err:
            builder.reject(split, None, None, err)

    photos.build(progress=progress)
    return builder.tables()
