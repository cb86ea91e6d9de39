"""The served gallery: the bundle's indexed boxes, plus additions, minus deletions.

Searches read an immutable :class:`GalleryView` (swapped whole on every change, so a
search sees one consistent gallery and never a deleted item); changes are serialised by
a lock and committed to a state folder before the new view is served:

    <state>/state.json                 the committed state: added photos (their boxes and
                                       categories) and deletions; replaced atomically
    <state>/images/<image_id>.<ext>    the added photos, written before the commit
    <state>/vectors/<bundle_id>/...    their embeddings under one bundle's models

A crash at any point leaves ``state.json`` at the last commit (files written for an
uncommitted change are ignored and removed on the next load). The state outlives a
bundle: a newly published bundle takes the additions (re-embedded with its models when
they differ) and the deletions. A deletion removes exactly the id deleted; under another
bundle, which may box and number that photo differently, it removes the boxes of the same
photo overlapping the deleted box at IoU >= 0.5.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clothes_retrieval.index import SearchIndex
from clothes_retrieval.io import atomic_path, write_json

__all__ = ["GalleryStore", "GalleryView", "Hit"]

STATE_FILE = "state.json"
DELETE_IOU = 0.5


@dataclass(frozen=True)
class Hit:
    gallery_id: str
    similarity: float


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a`` (4,) with each row of ``b`` (N, 4)."""
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2, y2 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(area, 1e-9)


@dataclass(frozen=True)
class GalleryView:
    """One consistent gallery: the base index with some rows deleted, plus added vectors."""

    index: SearchIndex
    base_ids: np.ndarray  # (G,) gallery id of each index row
    deleted: frozenset[int]  # deleted index rows
    added_ids: tuple[str, ...] = ()
    added: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    @property
    def size(self) -> int:
        return len(self.base_ids) - len(self.deleted) + len(self.added_ids)

    def search(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        """The top ``k`` live items for each query row (best first)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(vectors) == 0:
            return []
        hits: list[list[Hit]] = [[] for _ in range(len(vectors))]
        ntotal = self.index.ntotal
        if ntotal:
            kk = min(ntotal, k + len(self.deleted))
            sims, rows = self.index.search(vectors, self.index.manifest, k=kk)
            for q in range(len(vectors)):
                hits[q] = [
                    Hit(str(self.base_ids[r]), float(s))
                    for s, r in zip(sims[q], rows[q], strict=True)
                    if r >= 0 and int(r) not in self.deleted
                ][:k]
        if self.added_ids:
            sims = vectors @ self.added.T  # (Q, A): cosine, as the index's inner product
            top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            for q in range(len(vectors)):
                extra = [Hit(self.added_ids[a], float(sims[q, a])) for a in top[q]]
                hits[q] = sorted(hits[q] + extra, key=lambda h: -h.similarity)[:k]
        return hits


class GalleryStore:
    """The live gallery of one bundle: lookups, searches and committed changes.

    ``embed(images, boxes) -> (N, D) vectors`` embeds boxes of decoded photos with the
    bundle's models (used for additions that have no vectors for this bundle);
    ``open_image(path)`` decodes an added photo as it was decoded when it was added."""

    def __init__(
        self,
        bundle_id: str,
        index: SearchIndex,
        base: pd.DataFrame,
        base_images: Path,
        state_dir: str | Path,
        embed: Callable[[list[Any], list[np.ndarray]], np.ndarray],
        open_image: Callable[[Path], Any],
    ) -> None:
        self.bundle_id = bundle_id
        self.state_dir = Path(state_dir)
        self._base = base.reset_index(drop=True)
        self._base_images = base_images
        self._embed, self._open = embed, open_image
        self._row_of = {gid: i for i, gid in enumerate(self._base["gallery_id"])}
        self._lock = threading.Lock()
        self._dim = index.manifest.dim
        self._state = self._read_state()
        added_rows, vectors = self._load_additions()
        self._added = added_rows
        deleted = self._deleted_rows(self._state["deleted"])
        ids = self._base["gallery_id"].to_numpy()
        self.view = GalleryView(
            index, ids, frozenset(deleted), tuple(r["gallery_id"] for r in added_rows), vectors
        )

    # -- state -------------------------------------------------------------------------
    def _read_state(self) -> dict[str, Any]:
        path = self.state_dir / STATE_FILE
        if not path.is_file():
            return {"format": 1, "next": 1, "added": [], "deleted": []}
        return json.loads(path.read_text())

    def _commit(self, state: dict[str, Any]) -> None:
        write_json(self.state_dir / STATE_FILE, state)
        self._state = state

    def _vector_path(self, image_id: str) -> Path:
        return self.state_dir / "vectors" / self.bundle_id / f"{image_id}.npy"

    def _load_additions(self) -> tuple[list[dict[str, Any]], np.ndarray]:
        rows = list(self._state["added"])
        dim = self._dim
        by_image: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_image.setdefault(r["image_id"], []).append(r)
        blocks = []
        for image_id, group in by_image.items():
            path = self._vector_path(image_id)
            boxes = [np.asarray(r["box"], dtype=np.float64) for r in group]
            vec = None
            if path.is_file():
                saved = np.load(path)
                if saved.shape == (len(group), dim):
                    vec = saved
            if vec is None:  # another bundle's models, or a crash before the file: embed
                img = self._open(self.state_dir / "images" / group[0]["image_file"])
                vec = self._embed([img] * len(boxes), boxes).astype(np.float32)
                self._save_vectors(image_id, vec)
            blocks.append(vec)
        self._remove_uncommitted(by_image)
        vectors = np.vstack(blocks) if blocks else np.zeros((0, dim), dtype=np.float32)
        return rows, vectors

    def _save_vectors(self, image_id: str, vec: np.ndarray) -> None:
        with atomic_path(self._vector_path(image_id)) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, vec)

    def _remove_uncommitted(self, committed: dict[str, Any]) -> None:
        """Photos and vectors of additions that never reached state.json (a crash)."""
        for folder in (self.state_dir / "images", self.state_dir / "vectors" / self.bundle_id):
            if folder.is_dir():
                for f in folder.iterdir():
                    if f.is_file() and f.stem not in committed and not f.name.startswith("."):
                        f.unlink()

    def _deleted_rows(self, deleted: Sequence[dict[str, Any]]) -> set[int]:
        rows: set[int] = set()
        if not deleted:
            return rows
        boxes = self._base[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float64)
        by_image = self._base.groupby("image_id").indices
        for d in deleted:
            if d.get("bundle_id") == self.bundle_id and d["gallery_id"] in self._row_of:
                rows.add(self._row_of[d["gallery_id"]])  # deleted in this very bundle
                continue
            cand = by_image.get(str(d["image_id"]))
            if cand is None:
                continue
            iou = _iou(np.asarray(d["box"], dtype=np.float64), boxes[cand])
            rows.update(int(r) for r in np.asarray(cand)[iou >= DELETE_IOU])
        return rows

    # -- reads ---------------------------------------------------------------------------
    def item(self, gallery_id: str) -> dict[str, Any] | None:
        """The live item ``gallery_id`` (box, category, image path...), else None."""
        view = self.view
        row = self._row_of.get(gallery_id)
        if row is not None:
            if row in view.deleted:
                return None
            r = self._base.iloc[row]
            return {
                "gallery_id": gallery_id,
                "image_id": str(r["image_id"]),
                "box": [float(r["x1"]), float(r["y1"]), float(r["x2"]), float(r["y2"])],
                "category_id": int(r["category_id"]),
                "category": str(r["category_name"]),
                "pair_id": int(r["pair_id"]),
                "path": self._base_images / str(r["image_file"]),
                "row": row,
            }
        if gallery_id in view.added_ids:
            for i, r in enumerate(self._added):
                if r["gallery_id"] == gallery_id:
                    return {
                        **{k: r[k] for k in ("gallery_id", "image_id", "box", "category_id")},
                        "category": r["category"],
                        "pair_id": -1,
                        "path": self.state_dir / "images" / r["image_file"],
                        "added": i,
                    }
        return None

    def vector(self, item: dict[str, Any]) -> np.ndarray:
        """The indexed vector of a live item (1, D)."""
        view = self.view
        if "added" in item:
            return view.added[view.added_ids.index(item["gallery_id"])][None]
        try:
            return view.index.index.reconstruct(int(item["row"]))[None]
        except RuntimeError:  # an index without reconstruction (IVF without a direct map)
            from PIL import Image

            img = Image.open(item["path"]).convert("RGB")  # as the pipeline read it
            return self._embed([img], [np.asarray(item["box"], dtype=np.float64)])

    # -- writes --------------------------------------------------------------------------
    def add(
        self,
        data: bytes,
        suffix: str,
        boxes: np.ndarray,
        categories: Sequence[tuple[int, str]],
        scores: Sequence[float],
        vectors: np.ndarray,
    ) -> list[str]:
        """Add one photo's boxes (with their vectors) and commit; returns their ids."""
        with self._lock:
            state = json.loads(json.dumps(self._state))
            image_id = f"a{state['next']}"
            image_file = f"{image_id}{suffix}"
            with atomic_path(self.state_dir / "images" / image_file) as tmp:
                tmp.write_bytes(data)
            self._save_vectors(image_id, np.asarray(vectors, dtype=np.float32))
            rows = [
                {
                    "gallery_id": f"{image_id}_{n}",
                    "image_id": image_id,
                    "image_file": image_file,
                    "box": [float(v) for v in box],
                    "category_id": int(cid),
                    "category": name,
                    "score": float(score),
                }
                for n, (box, (cid, name), score) in enumerate(
                    zip(boxes, categories, scores, strict=True), start=1
                )
            ]
            state["next"] += 1
            state["added"] += rows
            self._commit(state)
            self._added = list(state["added"])
            view = self.view
            self.view = GalleryView(
                view.index,
                view.base_ids,
                view.deleted,
                view.added_ids + tuple(r["gallery_id"] for r in rows),
                np.vstack([view.added, np.asarray(vectors, dtype=np.float32)]),
            )
            return [r["gallery_id"] for r in rows]

    def delete(self, gallery_id: str) -> bool:
        """Delete a live item and commit; False when there is no such live item."""
        with self._lock:
            item = self.item(gallery_id)
            if item is None:
                return False
            state = json.loads(json.dumps(self._state))
            view = self.view
            if "added" in item:
                state["added"] = [r for r in state["added"] if r["gallery_id"] != gallery_id]
                self._commit(state)
                self._added = list(state["added"])
                keep = [i for i, g in enumerate(view.added_ids) if g != gallery_id]
                self.view = GalleryView(
                    view.index,
                    view.base_ids,
                    view.deleted,
                    tuple(view.added_ids[i] for i in keep),
                    view.added[keep],
                )
                left = [i for i in keep if view.added_ids[i].startswith(f"{item['image_id']}_")]
                if left:  # the photo's other boxes stay: their vectors only
                    self._save_vectors(item["image_id"], view.added[left])
                else:
                    for f in (item["path"], self._vector_path(item["image_id"])):
                        f.unlink(missing_ok=True)
            else:
                state["deleted"].append(
                    {
                        "gallery_id": gallery_id,
                        "bundle_id": self.bundle_id,
                        "image_id": item["image_id"],
                        "box": item["box"],
                    }
                )
                self._commit(state)
                self.view = GalleryView(
                    view.index,
                    view.base_ids,
                    view.deleted | {int(item["row"])},
                    view.added_ids,
                    view.added,
                )
            return True
