"""The Zalando try-on set of VITON (Han, Wu, Wu, Yu, Davis, "VITON: An Image-based Virtual
Try-on Network", CVPR 2018): photos of a person wearing a top, with a product photo of it.

Native layout (as redistributed with CP-VTON, and by VITON-HD)::

    root/<split>_pairs.txt          lines: <person>.jpg <cloth>.jpg (whitespace-separated)
    root/<split>/image/<person>.jpg
    root/<split>/cloth/<cloth>.jpg

for each split of ``splits`` (train, test). The set has upper-body tops only: the category
set is ``ZALANDO_CATEGORIES`` = (``top``,).

Items, each a whole photo (no boxes): every person photo on a line is a consumer photo
(``source="user"``), every cloth photo a shop photo (``source="shop"``), ``style = 1``.
Which cloth a person wears (``match``):

- ``"name"`` (default): by file name. Both releases name a product's photos
  ``<product>_<k>.jpg`` (VITON: person ``000003_0``, cloth ``000003_1``; VITON-HD: both
  ``00003_00``), and their ``test_pairs.txt`` pairs each person with *another* product's
  cloth (unpaired try-on), so a line does not say who wears what. ``pair_id`` = a dense id
  per product number (1, 2, ... in numeric order over the splits read); a person photo and
  the cloth photo of its product form a positive pair.
- ``"line"``: as the lines say (a pair file whose lines pair each person with the cloth
  worn): ``pair_id`` = a dense id per cloth name (1, 2, ... in sorted order over the splits
  read), given to the line's person photo.

A photo on several lines of a split is one item (``match="line"``: one per cloth it is
paired with, ``item_index`` 1, 2, ...); ``image_id`` = 1, 2, ... over ``cloth/<name>`` and
``image/<name>`` of the split in sorted order.

Quarantined: a line without 2 fields, or (``match="name"``) a name not of the form
``<digits>_<digits>.<ext>`` (``malformed_annotation``), and a missing or undecodable photo
(``missing_image`` / ``corrupt_image``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from clothes_retrieval.data.sources._photo_items import PhotoItem, PhotoItems
from clothes_retrieval.data.sources.base import (
    Rejected,
    SourceTables,
    TableBuilder,
    register_source,
)

__all__ = ["ZALANDO_CATEGORIES", "read_zalando"]

ZALANDO_CATEGORIES = ("top",)
_LAYOUT = "<split>_pairs.txt (lines: <person>.jpg <cloth>.jpg), <split>/image/, <split>/cloth/"
_PRODUCT = re.compile(r"^(\d+)_\d+$")


@register_source(
    "zalando",
    description="Zalando try-on set (VITON): person photos and product photos of their tops",
    layout=_LAYOUT,
)
def read_zalando(
    root: Path,
    *,
    splits: Sequence[str] = ("train", "test"),
    match: Literal["name", "line"] = "name",
    dataset: str = "zalando",
    progress: bool = True,
) -> SourceTables:
    """Items of the photos named in ``root/<split>_pairs.txt`` for each of ``splits``."""
    if match not in ("name", "line"):
        raise ValueError(f"{dataset}: match must be 'name' or 'line', got {match!r}")
    root = Path(root)
    needed = [root / f"{s}_pairs.txt" for s in splits]
    needed += [root / s / d for s in splits for d in ("image", "cloth")]
    missing = [str(p.relative_to(root)) for p in needed if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"{dataset}: {missing} not found under {root}; expected layout: {_LAYOUT}"
        )
    builder = TableBuilder(dataset, {k + 1: c for k, c in enumerate(ZALANDO_CATEGORIES)})
    photos = PhotoItems(builder)
    (category,) = ZALANDO_CATEGORIES

    # (split, line, person, cloth, person's key, cloth's key): the key names the product
    records: list[tuple[str, str, str, str, str | int, str | int]] = []
    for split in splits:
        pairs = root / f"{split}_pairs.txt"
        for number, line in enumerate(pairs.read_text(encoding="utf-8").splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{pairs.name} line {number}"
            try:
                if len(fields) != 2:
                    raise Rejected(
                        "malformed_annotation",
                        f"{where} has {len(fields)} fields {fields}, expected "
                        "<person>.jpg <cloth>.jpg: fix the line",
                        pairs,
                    )
                person, cloth = fields
                if match == "line":
                    keys: tuple[str | int, str | int] = (cloth, cloth)
                else:
                    found = [_PRODUCT.match(Path(name).stem) for name in fields]
                    if not all(found):
                        raise Rejected(
                            "malformed_annotation",
                            f"{where}: {fields} are not named <product>_<k>.jpg, so the "
                            "product a person wears is unknown: rename the photos or read "
                            "with match='line' if each line pairs a person with the cloth worn",
                            pairs,
                        )
                    keys = (int(found[0][1]), int(found[1][1]))  # type: ignore[index]
            except Rejected as err:
                builder.reject(split, None, None, err)
                continue
            records.append((split, where, person, cloth, *keys))

    products = sorted({key for r in records for key in r[4:]})  # type: ignore[type-var]
    pair_ids = {key: k + 1 for k, key in enumerate(products)}
    for split, where, person, cloth, person_key, cloth_key in records:
        # One category and whole-photo boxes: two records of a photo never disagree.
        folder = root / split
        photos.add(
            split,
            folder / "image" / person,
            PhotoItem("user", category, pair_ids[person_key], None, where),
        )
        photos.add(
            split,
            folder / "cloth" / cloth,
            PhotoItem("shop", category, pair_ids[cloth_key], None, where),
        )

    photos.build(progress=progress)
    return builder.tables()
