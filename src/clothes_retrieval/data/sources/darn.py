"""DARN (Huang, Feris, Chen, Yan, "Cross-domain Image Retrieval with a Dual Attribute-aware
Ranking Network", ICCV 2015): street photos matched to online-shop photos of the same
garment, in 20 clothing categories.

The release is a list of photo URLs; this adapter reads the photos once downloaded, listed
in one pair file (our layout, since the release has none)::

    root/pairs.txt        TAB-separated lines: <street photo> TAB <shop photo> TAB <category>
                          [TAB <split>]; photos relative to root (e.g. images/street/123.jpg);
                          split train / validation / test (default train); lines starting
                          with # and blank lines are skipped
    root/<photo paths>

The file is TAB-separated because category names hold spaces (``down coat``).
``<category>`` is one of the 20 ``DARN_CATEGORIES`` (ids 1..20 in that order).

Items, each a whole photo (DARN gives no boxes):

- the street photo of a line is a consumer photo (``source="user"``), the shop photo a shop
  photo (``source="shop"``), both of the line's category, in its split;
- ``pair_id`` = a dense id per distinct shop photo (1, 2, ... over the shop photo paths of
  all well-formed lines in sorted order, whatever ``splits`` reads) and ``style = 1``: a
  street photo and the shop photo of its line form a positive pair;
- a shop photo on several lines of one split is one item; a street photo on lines with
  several shop photos has one item per shop photo (``item_index`` 1, 2, ...);
- ``image_id`` = 1, 2, ... over the photo paths of the split in sorted order.

Quarantined: a line without 3 or 4 fields, or with an empty one (``malformed_annotation``),
a split outside train / validation / test (``bad_value``), a category outside the 20
(``unknown_category``), a missing or undecodable photo (``missing_image`` /
``corrupt_image``), and a line giving a shop photo (or a street-shop pair) already seen
another category (``bad_value``; the first line is kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clothes_retrieval.data.sources._photo_items import PhotoItem, PhotoItems
from clothes_retrieval.data.sources.base import (
    Rejected,
    SourceTables,
    TableBuilder,
    register_source,
)

__all__ = ["DARN_CATEGORIES", "DARN_SPLITS", "read_darn"]

DARN_CATEGORIES = (
    "cloak",
    "coat",
    "cotton-padded jacket",
    "down coat",
    "dress",
    "fur coat",
    "jacket",
    "knitwear",
    "leather coat",
    "overcoat",
    "pants",
    "shirt",
    "skirt",
    "suit",
    "sweater",
    "t-shirt",
    "tank top",
    "vest",
    "windbreaker",
    "woolen coat",
)
DARN_SPLITS = ("train", "validation", "test")
_LAYOUT = "pairs.txt (TAB-separated: <street photo> <shop photo> <category> [<split>]), photos"


def _fields(line: str) -> list[str] | None:
    """The fields of a data line; None for a comment or blank line."""
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    return [f.strip() for f in line.strip().split("\t")]


@register_source(
    "darn",
    description="DARN: street photos matched to online-shop photos, 20 clothing categories",
    layout=_LAYOUT,
)
def read_darn(
    root: Path,
    *,
    splits: Sequence[str] = DARN_SPLITS,
    dataset: str = "darn",
    progress: bool = True,
) -> SourceTables:
    """Items of the lines of ``root/pairs.txt`` whose split is in ``splits``."""
    root = Path(root)
    pairs = root / "pairs.txt"
    if not pairs.is_file():
        raise FileNotFoundError(f"{dataset}: {pairs} not found; expected layout: {_LAYOUT}")
    lines = pairs.read_text(encoding="utf-8").splitlines()
    builder = TableBuilder(dataset, {k + 1: c for k, c in enumerate(DARN_CATEGORIES)})
    photos = PhotoItems(builder)

    well_formed = [f for f in map(_fields, lines) if f and len(f) in (3, 4) and all(f)]
    pair_ids = {shop: k + 1 for k, shop in enumerate(sorted({f[1] for f in well_formed}))}

    for number, line in enumerate(lines, start=1):
        fields = _fields(line)
        if fields is None:
            continue
        where = f"{pairs.name} line {number}"
        well = len(fields) in (3, 4) and all(fields)
        split = (fields[3] if len(fields) == 4 else "train") if well else ""
        try:
            if not well:
                raise Rejected(
                    "malformed_annotation",
                    f"{where} has {len(fields)} TAB-separated fields {fields}, expected "
                    "<street photo> TAB <shop photo> TAB <category> [TAB <split>], none empty: "
                    "fix the line",
                    pairs,
                )
            if split not in DARN_SPLITS:
                raise Rejected(
                    "bad_value",
                    f"{where}: split {split!r} is not one of {list(DARN_SPLITS)}: fix the line",
                    pairs,
                )
            if split not in splits:
                continue
            street, shop, category = fields[:3]
            photos.category(category, where, pairs)
            pair_id = pair_ids[shop]
        except Rejected as err:
            builder.reject(split if split in DARN_SPLITS else "", None, None, err)
            continue
        for name, source in ((street, "user"), (shop, "shop")):
            try:
                photos.add(split, root / name, PhotoItem(source, category, pair_id, None, where))
            except Rejected as err:
                builder.reject(split, None, None, err)

    photos.build(progress=progress)
    return builder.tables()
