"""Photos named by annotation records, turned into items photo by photo (a private helper).

Street2Shop, DARN, MVC, MPV and Zalando name their photos in records (a JSON object, a line
of a text file), and one photo may be named by several records: a shop photo matched by many
street photos, a person photo on several lines. Their adapters first collect what each
record says about a photo here (:meth:`PhotoItems.add`), then :meth:`PhotoItems.build`
decodes every photo once and adds its items to the :class:`TableBuilder`:

- per split, a photo's items share its ``image_id`` (the id given with the photo, else
  1, 2, ... over the photo paths in sorted order) and count ``item_index`` up from 1 in the
  order the records named them;
- a photo has one item per ``(source, pair_id)``: a record repeating one is skipped, one
  contradicting it (another category or box) is :class:`Rejected` (``bad_value``);
- a missing or undecodable photo is quarantined once per split (``item_index`` null);
- a box exceeding the photo by at most ``box_tolerance`` pixels is clipped to it (the
  rounding slack of annotation tools, as in the DeepFashion2 reader); any other bad box,
  and an unknown category, quarantines that item only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from clothes_retrieval.data.sources.base import Rejected, TableBuilder, image_size

__all__ = ["PhotoItem", "PhotoItems"]

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class PhotoItem:
    """What one record says about one garment in a photo."""

    source: str  # "user" or "shop"
    category: str  # a name of the source's category set
    pair_id: int  # the product; > 0
    box: Box | None  # x1, y1, x2, y2 in pixels; None: the whole photo
    where: str  # the record, for messages, e.g. "pairs.txt line 12"


def _clip(box: Box, size: tuple[int, int], tolerance: float) -> Box:
    width, height = size
    x1, y1, x2, y2 = box
    if (
        -tolerance <= x1
        and -tolerance <= y1
        and x2 <= width + tolerance
        and y2 <= height + tolerance
    ):
        return (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    return box  # NaN or too far outside: add_item rejects it


class PhotoItems:
    """Collects the items of photos record by record; :meth:`build` adds them to ``builder``."""

    def __init__(self, builder: TableBuilder, *, box_tolerance: float = 0.0) -> None:
        self.builder = builder
        self.box_tolerance = float(box_tolerance)
        # split -> photo path -> (source, pair_id) -> item, in the order records named them
        self._photos: dict[str, dict[Path, dict[tuple[str, int], PhotoItem]]] = {}
        self._ids: dict[str, dict[Path, int]] = {}  # split -> photo -> given image_id
        self._sizes: dict[Path, tuple[int, int] | Rejected] = {}

    def category(self, name: str, where: str, path: Path | str) -> str:
        """``name`` if it is in the source's category set, else :class:`Rejected`."""
        try:
            self.builder.category_id(name, path)
        except Rejected as err:
            raise Rejected(err.reason, f"{where}: {err.message}", err.path) from None
        return name

    def add(self, split: str, path: Path, item: PhotoItem, *, image_id: int | None = None) -> None:
        """Note ``item`` in photo ``path`` of ``split`` (with its own ``image_id`` if the
        dataset numbers its photos; then give one for every photo of the split)."""
        items = self._photos.setdefault(split, {}).setdefault(path, {})
        if image_id is not None:
            self._ids.setdefault(split, {})[path] = int(image_id)
        key = (item.source, item.pair_id)
        old = items.get(key)
        if old is None:
            items[key] = item
        elif (old.category, old.box) != (item.category, item.box):
            raise Rejected(
                "bad_value",
                f"{item.where}: {item.source} photo {path.name} of product {item.pair_id} is "
                f"{item.category!r} with box {item.box}, but {old.where} made it {old.category!r} "
                f"with box {old.box}; the first is kept: make the records agree",
                path,
            )

    def _size(self, path: Path, where: str) -> tuple[int, int]:
        if path not in self._sizes:
            if not path.is_file():
                self._sizes[path] = Rejected(
                    "missing_image",
                    f"{where} names the photo {path}, which does not exist: add the file "
                    "(download it) or delete the record",
                    path,
                )
            else:
                try:
                    self._sizes[path] = image_size(path)
                except OSError as exc:
                    self._sizes[path] = Rejected(
                        "corrupt_image", f"{exc} (named by {where}); replace the file", path
                    )
        size = self._sizes[path]
        if isinstance(size, Rejected):
            raise size
        return size

    def build(self, *, progress: bool = True) -> None:
        """Decode each photo once and add its items (or quarantine rows) to the builder."""
        builder = self.builder
        for split, photos in self._photos.items():
            ids = self._ids.get(split)
            order = sorted(photos, key=ids.__getitem__) if ids else sorted(photos)
            for number, path in enumerate(
                tqdm(
                    order,
                    desc=f"{builder.dataset}/{split}",
                    unit="img",
                    disable=not progress,
                ),
                start=1,
            ):
                image_id = ids[path] if ids else number
                items = list(photos[path].values())
                try:
                    size = self._size(path, items[0].where)
                except Rejected as err:
                    builder.reject(split, image_id, None, err)
                    continue
                for item_index, item in enumerate(items, start=1):
                    box = (
                        (0.0, 0.0, float(size[0]), float(size[1]))
                        if item.box is None
                        else _clip(item.box, size, self.box_tolerance)
                    )
                    try:
                        builder.add_item(
                            split=split,
                            image_id=image_id,
                            image_path=path,
                            size=size,
                            source=item.source,
                            item_index=item_index,
                            category=item.category,
                            box=box,
                            pair_id=item.pair_id,
                            style=1,
                        )
                    except Rejected as err:
                        builder.reject(
                            split,
                            image_id,
                            item_index,
                            Rejected(err.reason, f"{item.where}: {err.message}", err.path),
                        )
