"""Product photos sorted by class: one garment per photo, the whole photo is its box.

Native layout (e.g. ``clothing-dataset-small``)::

    root/<split>/<class>/<any name>.jpg

Every photo is a shop photo (``source="shop"``) of one garment of its folder's class, with
no instance pairs (``pair_id = style = 0``). The category set is the sorted class folder
names found over the splits read (or ``classes`` when given, so two copies of a dataset
share ids). Image ids are 1, 2, ... over ``<split>/<class>/<name>`` in sorted order, per
split; the file is in ``image_path``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from clothes_retrieval.data.sources.base import (
    Rejected,
    SourceTables,
    TableBuilder,
    image_size,
    images_in,
    register_source,
)

__all__ = ["read_product_folders"]


@register_source(
    "product_folders",
    description="product photos sorted into <split>/<class>/ folders; whole photo = one item",
    layout="<split>/<class>/*.jpg (e.g. train/dress/abc.jpg)",
)
def read_product_folders(
    root: Path,
    *,
    splits: Sequence[str] = ("train", "validation"),
    classes: Sequence[str] | None = None,
    dataset: str = "products",
    progress: bool = True,
) -> SourceTables:
    """Items of the product photos in ``root/<split>/<class>/`` for each of ``splits``."""
    root = Path(root)
    missing = [s for s in splits if not (root / s).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{dataset}: no split folder(s) {missing} under {root}; expected <split>/<class>/*.jpg"
        )
    found = sorted({d.name for s in splits for d in (root / s).iterdir() if d.is_dir()})
    names = list(classes) if classes is not None else found
    if not names:
        raise FileNotFoundError(
            f"{dataset}: no class folders under {[str(root / s) for s in splits]}"
        )
    builder = TableBuilder(dataset, {k + 1: name for k, name in enumerate(names)})
    for split in splits:
        files = [p for d in sorted((root / split).iterdir()) if d.is_dir() for p in images_in(d)]
        for image_id, path in enumerate(
            tqdm(files, desc=f"{dataset}/{split}", unit="img", disable=not progress), start=1
        ):
            try:
                try:
                    size = image_size(path)
                except OSError as exc:
                    raise Rejected(
                        "corrupt_image", f"{exc}; replace or delete the file", path
                    ) from exc
                builder.add_item(
                    split=split,
                    image_id=image_id,
                    image_path=path,
                    size=size,
                    source="shop",
                    item_index=1,
                    category=path.parent.name,
                    box=(0.0, 0.0, float(size[0]), float(size[1])),
                )
            except Rejected as err:
                builder.reject(split, image_id, None, err)
    return builder.tables()
