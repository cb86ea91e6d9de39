"""MPV (Dong, Liang, Shen, Wang, Chen, Hu, Yin, "Towards Multi-pose Guided Virtual Try-on
Network", ICCV 2019): photos of a person in two poses wearing a top, with a product photo of
that top.

Native layout::

    root/all_poseA_poseB_clothes.txt   whitespace-separated lines:
                                       <person photo A> <person photo B> <cloth photo> <split>
                                       (split train / test; blank lines are skipped)
    root/all/<photo>                   every photo named in the file

MPV has upper-body tops only: the category set is ``MPV_CATEGORIES`` = (``top``,).

Items, each a whole photo (MPV gives no boxes): the two person photos of a line are
consumer photos (``source="user"``), the cloth photo a shop photo (``source="shop"``), in
the line's split. ``pair_id`` = a dense id per distinct cloth photo (1, 2, ... over the
cloth names of all well-formed lines in sorted order, whatever ``splits`` reads) and
``style = 1``: the person photos of a line and its cloth photo form positive pairs. A photo
on several lines of a split is one item (a person photo on lines of several cloths: one
item per cloth, ``item_index`` 1, 2, ...); ``image_id`` = 1, 2, ... over the photo names of
the split in sorted order.

Quarantined: a line without 4 fields (``malformed_annotation``), a split other than train /
test (``bad_value``), and a missing or undecodable photo (``missing_image`` /
``corrupt_image``).
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

__all__ = ["MPV_CATEGORIES", "read_mpv"]

MPV_CATEGORIES = ("top",)
MPV_SPLITS = ("train", "test")
_PAIRS = "all_poseA_poseB_clothes.txt"
_LAYOUT = f"{_PAIRS} (lines: <person A> <person B> <cloth> <train|test>), all/<photo>"


@register_source(
    "mpv",
    description="MPV multi-pose try-on: person photos in two poses, product photo of the top",
    layout=_LAYOUT,
)
def read_mpv(
    root: Path,
    *,
    splits: Sequence[str] = MPV_SPLITS,
    dataset: str = "mpv",
    progress: bool = True,
) -> SourceTables:
    """Items of the lines of ``root/all_poseA_poseB_clothes.txt`` whose split is in ``splits``."""
    root = Path(root)
    pairs, photos_dir = root / _PAIRS, root / "all"
    for path, there in ((pairs, pairs.is_file()), (photos_dir, photos_dir.is_dir())):
        if not there:
            raise FileNotFoundError(f"{dataset}: {path} not found; expected layout: {_LAYOUT}")
    lines = [line.split() for line in pairs.read_text(encoding="utf-8").splitlines()]
    builder = TableBuilder(dataset, {k + 1: c for k, c in enumerate(MPV_CATEGORIES)})
    photos = PhotoItems(builder)
    cloths = sorted({f[2] for f in lines if len(f) == 4})
    pair_ids = {cloth: k + 1 for k, cloth in enumerate(cloths)}
    (category,) = MPV_CATEGORIES

    for number, fields in enumerate(lines, start=1):
        if not fields:
            continue
        where = f"{_PAIRS} line {number}"
        try:
            if len(fields) != 4:
                raise Rejected(
                    "malformed_annotation",
                    f"{where} has {len(fields)} fields {fields}, expected <person A> "
                    "<person B> <cloth> <split>: fix the line",
                    pairs,
                )
            if fields[3] not in MPV_SPLITS:
                raise Rejected(
                    "bad_value",
                    f"{where}: split {fields[3]!r} is not one of {list(MPV_SPLITS)}: fix it",
                    pairs,
                )
        except Rejected as err:
            builder.reject("", None, None, err)
            continue
        person_a, person_b, cloth, split = fields
        if split not in splits:
            continue
        # One category and whole-photo boxes: two records of a photo never disagree.
        for name, source in ((person_a, "user"), (person_b, "user"), (cloth, "shop")):
            item = PhotoItem(source, category, pair_ids[cloth], None, where)
            photos.add(split, photos_dir / name, item)

    photos.build(progress=progress)
    return builder.tables()
