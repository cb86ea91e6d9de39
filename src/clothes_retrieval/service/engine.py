"""The search service without a web framework: load a bundle, answer street photos.

:class:`SearchService` holds one bundle's detectors, retrieval models and live gallery;
:meth:`SearchService.search_many` answers several photos with one forward pass per
detector and per model (the HTTP server's batcher groups concurrent requests into it).
:class:`ServiceHolder` serves the newest bundle: it reloads a republished bundle in the
background and swaps it in whole, while requests already running finish on the old one.

Bad input raises :class:`InputError` (a status code, a short code and a message that
says what to do); an unknown gallery id raises :class:`UnknownItemError`.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from clothes_retrieval.data.schema import CATEGORIES
from clothes_retrieval.index import concatenate_embeddings, load_index
from clothes_retrieval.retrieval.data import crop_image
from clothes_retrieval.search.experiments import MIN_BOX_SIDE  # as the evaluation drops them
from clothes_retrieval.service.bundle import (
    BundleError,
    model_weights,
    read_bundle_manifest,
)
from clothes_retrieval.service.config import ServiceLimits
from clothes_retrieval.service.gallery import GalleryStore

__all__ = [
    "InputError",
    "Item",
    "Result",
    "SearchAnswer",
    "SearchService",
    "ServiceHolder",
    "UnknownItemError",
    "decode_image",
    "default_state_dir",
    "validate_bundle",
]

log = logging.getLogger(__name__)

FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif"}


class InputError(ValueError):
    """The request cannot be answered as sent. ``status``: the HTTP status it maps to."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class UnknownItemError(KeyError):
    def __init__(self, gallery_id: str) -> None:
        super().__init__(gallery_id)
        self.gallery_id = gallery_id
        self.message = (
            f"no gallery item {gallery_id!r}: it was never in the gallery or was deleted; "
            "ids come from search results"
        )

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, EXIF orientation applied
    suffix: str  # file suffix of its format


def decode_image(data: bytes, limits: ServiceLimits | None = None) -> DecodedImage:
    """Decode an uploaded photo, refusing what cannot or must not be decoded."""
    limits = limits or ServiceLimits()
    if len(data) == 0:
        raise InputError(422, "empty_image", "the image is empty (0 bytes): send a photo file")
    if len(data) > limits.max_upload_bytes:
        raise InputError(
            413,
            "upload_too_large",
            f"the image is {len(data)} bytes, over the limit of {limits.max_upload_bytes}: "
            "send a smaller photo",
        )
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise InputError(413, "too_many_pixels", f"the image has too many pixels: {e}") from e
    except Exception as e:
        raise InputError(
            415,
            "not_an_image",
            f"the upload is not an image this service reads ({', '.join(FORMATS)}): "
            f"{type(e).__name__}",
        ) from e
    if im.format not in FORMATS:
        raise InputError(
            415,
            "unsupported_format",
            f"images in {im.format} are not accepted: send one of {', '.join(FORMATS)}",
        )
    width, height = im.size
    if width * height > limits.max_pixels:
        raise InputError(
            413,
            "too_many_pixels",
            f"the image is {width}x{height} = {width * height} pixels, over the limit of "
            f"{limits.max_pixels}: send a smaller photo",
        )
    try:
        im.load()
        img = ImageOps.exif_transpose(im).convert("RGB")
    except Exception as e:  # truncated or corrupt data (OSError, SyntaxError, ...)
        raise InputError(
            422,
            "corrupt_image",
            f"the image could not be decoded (truncated or corrupt: {e}); send the whole file",
        ) from e
    return DecodedImage(img, FORMATS[im.format])


@dataclass(frozen=True)
class Result:
    gallery_id: str
    image_id: str
    box: list[float]
    category: str
    similarity: float


@dataclass(frozen=True)
class Item:
    box: list[float]
    category: str
    score: float
    results: list[Result]


@dataclass(frozen=True)
class SearchAnswer:
    items: list[Item]
    reason: str | None = None  # why items is empty
    timings: dict[str, float] = field(default_factory=dict)


def default_state_dir(bundle_dir: str | Path) -> Path:
    """Where a bundle's gallery changes are kept by default: ``<bundle>.gallery`` beside it
    (outside the bundle, so that a republished bundle keeps them)."""
    bundle_dir = Path(bundle_dir)
    return bundle_dir.with_name(f"{bundle_dir.name}.gallery")


class SearchService:
    """One loaded bundle: ``search(image, top_k, detect, max_items)`` and gallery changes."""

    def __init__(
        self,
        bundle_dir: str | Path,
        *,
        state_dir: str | Path | None = None,
        limits: ServiceLimits | None = None,
        device: str | None = None,
    ) -> None:
        import torch

        from clothes_retrieval.detection.inference import Detector
        from clothes_retrieval.fusion import FusionConfig
        from clothes_retrieval.retrieval.embed import load_trained_model
        from clothes_retrieval.retrieval.model import create_eval_transform

        self.bundle_dir = Path(bundle_dir)
        self.limits = limits or ServiceLimits()
        started = time.perf_counter()
        manifest = read_bundle_manifest(self.bundle_dir)
        self.manifest = manifest
        self.bundle_id: str = manifest["bundle_id"]
        try:
            self.models = {}
            self.transforms = {}
            for m in manifest["models"]:
                model, _ = load_trained_model((self.bundle_dir / m["path"]).parent, device=device)
                self.models[m["name"]] = model
                self.transforms[m["name"]] = create_eval_transform(model)
            self.weights = model_weights(manifest)
            det = manifest.get("detection") or {}
            self.detectors = [
                Detector(
                    self.bundle_dir / d["checkpoint"],
                    self.bundle_dir / d["config"],
                    score_thr=float(det.get("score_thr", 0.05)),
                    max_per_image=int(det.get("max_per_image", 100)),
                    device=device,
                    detector=d["name"],
                )
                for d in manifest["detectors"]
            ]
            self.fusion = (
                FusionConfig.model_validate(manifest["fusion"]) if self.detectors else None
            )
            index_dir = self.bundle_dir / "index"
            self.index = load_index(index_dir)
            dims = tuple(self.models[n].dim for n in self.models)
            if self.index.manifest.dims != dims or self.index.manifest.models != tuple(self.models):
                raise BundleError(
                    f"the bundle's models {list(self.models)} ({list(dims)} dims) are not the "
                    f"index's {list(self.index.manifest.models)} "
                    f"({list(self.index.manifest.dims)}): publish the bundle again"
                )
            gallery = pd.read_parquet(self.bundle_dir / "gallery.parquet")
            if len(gallery) != self.index.ntotal:
                raise BundleError(
                    f"gallery.parquet has {len(gallery)} rows for {self.index.ntotal} indexed "
                    "vectors: publish the bundle again"
                )
        except BundleError:
            raise
        except Exception as e:  # a file missing or unreadable: one error naming the bundle
            raise BundleError(f"the bundle in {self.bundle_dir} does not load: {e}") from e
        self.device = next(next(iter(self.models.values())).parameters()).device
        self._torch = torch
        self._base_gallery = gallery
        self.state_dir = Path(state_dir) if state_dir else default_state_dir(self.bundle_dir)
        self.reload_gallery()
        self.load_seconds = time.perf_counter() - started

    def reload_gallery(self) -> None:
        """(Re)build the live gallery from the bundle and the committed state folder."""
        self.gallery = GalleryStore(
            self.bundle_id,
            self.index,
            self._base_gallery,
            self.bundle_dir / "images",
            self.state_dir,
            self._embed_boxes,
            lambda p: decode_image(Path(p).read_bytes(), self.limits).image,
        )

    # -- facts ---------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "bundle_id": self.bundle_id,
            "profile": m["profile"],
            "data_version": m["data_version"],
            "models": list(self.models),
            "detectors": [d.name for d in self.detectors],
            "published_name": m.get("published_name"),
            "gallery_items": self.gallery.view.size,
            "evaluation": m.get("evaluation", {}),
        }

    # -- the pipeline --------------------------------------------------------------------
    def _detect(
        self, images: Sequence[Image.Image], max_items: int
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per image: fused (N, 4) boxes, scores, category ids (best first, at most
        ``max_items``, boxes under MIN_BOX_SIDE pixels dropped)."""
        from clothes_retrieval.detection.inference import detection_rows
        from clothes_retrieval.fusion import fuse_detectors

        bgr = [np.ascontiguousarray(np.asarray(im)[:, :, ::-1]) for im in images]
        frames = []
        for det in self.detectors:
            for i, found in enumerate(det.predict(bgr)):
                if len(found):
                    image = {
                        "split": "query",
                        "image_id": i,
                        "source": "user",
                        "image_path": "",
                        "image_width": images[i].width,
                        "image_height": images[i].height,
                    }
                    frames.append(detection_rows(det.name, found, image))
        out = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)) for _ in images]
        if not frames:
            return out
        fused = fuse_detectors(pd.concat(frames, ignore_index=True), self.fusion, progress=False)
        table = fused.fused
        table = table[
            ((table["x2"] - table["x1"]) >= MIN_BOX_SIDE)
            & ((table["y2"] - table["y1"]) >= MIN_BOX_SIDE)
        ]
        for i, g in table.groupby("image_id"):
            g = g.sort_values("score", ascending=False, kind="stable").head(max_items)
            out[int(i)] = (
                g[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float64),
                g["score"].to_numpy(dtype=np.float64),
                g["category_id"].to_numpy(dtype=np.int64),
            )
        return out

    def _embed_boxes(
        self, images: Sequence[Image.Image], boxes: Sequence[np.ndarray]
    ) -> np.ndarray:
        """One row per (image, box): the ensemble's concatenated, L2-normalised vector,
        with one forward pass per model over all the crops."""
        if not boxes:
            return np.zeros((0, self.index.manifest.dim), dtype=np.float32)
        crops = [crop_image(im, tuple(b)) for im, b in zip(images, boxes, strict=True)]
        torch = self._torch
        per_model = {}
        amp = self.device.type == "cuda"
        with torch.no_grad(), torch.autocast("cuda", enabled=amp, dtype=torch.float16):
            for name, model in self.models.items():
                x = torch.stack([self.transforms[name](c) for c in crops]).to(self.device)
                emb = torch.nn.functional.normalize(model.embed(x).float(), dim=1)
                per_model[name] = emb.cpu().numpy()
        return concatenate_embeddings(per_model, list(self.models), self.weights)

    def search_many(
        self,
        images: Sequence[Image.Image],
        *,
        top_k: int | None = None,
        detect: bool = True,
        max_items: int | None = None,
    ) -> list[SearchAnswer]:
        """Answer each photo: its garments (detected, or the whole photo when ``detect``
        is false or the bundle has no detector) and each one's top-k gallery items."""
        top_k = self._check_range("top_k", top_k, self.limits.default_top_k, self.limits.max_top_k)
        max_items = self._check_range(
            "max_items", max_items, self.limits.default_max_items, self.limits.max_items
        )
        t0 = time.perf_counter()
        use_detector = detect and bool(self.detectors)
        if use_detector:
            found = self._detect(images, max_items)
        else:
            found = [
                (
                    np.array([[0.0, 0.0, float(im.width), float(im.height)]]),
                    np.ones(1),
                    np.full(1, -1, dtype=np.int64),
                )
                for im in images
            ]
        t1 = time.perf_counter()
        flat_images = [im for im, f in zip(images, found, strict=True) for _ in range(len(f[0]))]
        flat_boxes = [b for f in found for b in f[0]]
        vectors = self._embed_boxes(flat_images, flat_boxes)
        t2 = time.perf_counter()
        hits = self.gallery.view.search(vectors, top_k)
        t3 = time.perf_counter()
        timings = {
            "detect_ms": (t1 - t0) * 1e3,
            "embed_ms": (t2 - t1) * 1e3,
            "search_ms": (t3 - t2) * 1e3,
            "photos_in_batch": len(images),
        }
        answers, row = [], 0
        for boxes, scores, cats in found:
            items = []
            for box, score, cat in zip(boxes, scores, cats, strict=True):
                items.append(
                    Item(
                        box=[round(float(v), 2) for v in box],
                        category=CATEGORIES.get(int(cat), "whole photo"),
                        score=float(score),
                        results=self._results(hits[row]),
                    )
                )
                row += 1
            reason = None
            if not items:
                names = ", ".join(d.name for d in self.detectors)
                reason = (
                    f"no garment detected (detectors {names}, score threshold "
                    f"{self.detectors[0].score_thr}): search with detect=false to use the "
                    "whole photo"
                )
            answers.append(SearchAnswer(items, reason, timings))
        return answers

    def _results(self, hits) -> list[Result]:
        out = []
        for h in hits:
            item = self.gallery.item(h.gallery_id)
            if item is None:  # deleted between the search and this lookup
                continue
            out.append(
                Result(
                    h.gallery_id,
                    item["image_id"],
                    item["box"],
                    item["category"],
                    round(h.similarity, 6),
                )
            )
        return out

    def search(
        self,
        image: bytes | Image.Image,
        top_k: int | None = None,
        detect: bool = True,
        max_items: int | None = None,
    ) -> SearchAnswer:
        """:meth:`search_many` for one photo (bytes are decoded and checked first)."""
        if isinstance(image, bytes | bytearray):
            image = decode_image(bytes(image), self.limits).image
        return self.search_many([image], top_k=top_k, detect=detect, max_items=max_items)[0]

    def search_by_id(self, gallery_id: str, top_k: int | None = None) -> SearchAnswer:
        """The gallery items most like ``gallery_id`` (itself left out)."""
        top_k = self._check_range("top_k", top_k, self.limits.default_top_k, self.limits.max_top_k)
        item = self.gallery.item(gallery_id)
        if item is None:
            raise UnknownItemError(gallery_id)
        hits = self.gallery.view.search(self.gallery.vector(item), top_k + 1)[0]
        hits = [h for h in hits if h.gallery_id != gallery_id][:top_k]
        return SearchAnswer(
            [Item(item["box"], item["category"], 1.0, self._results(hits))], None, {}
        )

    def add_photo(
        self, data: bytes, detect: bool = True, max_items: int | None = None
    ) -> list[str]:
        """Add a shop photo to the gallery (its detected garments, or the whole photo);
        returns the new gallery ids (empty when nothing was detected)."""
        max_items = self._check_range(
            "max_items", max_items, self.limits.default_max_items, self.limits.max_items
        )
        decoded = decode_image(data, self.limits)
        im = decoded.image
        if detect and self.detectors:
            boxes, scores, cats = self._detect([im], max_items)[0]
        else:
            boxes = np.array([[0.0, 0.0, float(im.width), float(im.height)]])
            scores, cats = np.ones(1), np.full(1, -1, dtype=np.int64)
        if len(boxes) == 0:
            return []
        vectors = self._embed_boxes([im] * len(boxes), list(boxes))
        names = [(int(c), CATEGORIES.get(int(c), "whole photo")) for c in cats]
        # The photo's own bytes are kept: decoded again (EXIF orientation applied) they give
        # the same pixels, so the boxes and a re-embedding under a new bundle hold.
        return self.gallery.add(data, decoded.suffix, boxes, names, list(scores), vectors)

    def delete(self, gallery_id: str) -> None:
        if not self.gallery.delete(gallery_id):
            raise UnknownItemError(gallery_id)

    def image_path(self, gallery_id: str) -> Path:
        """The shop photo of a live gallery item (looked up by id; never a client path)."""
        item = self.gallery.item(gallery_id)
        if item is None:
            raise UnknownItemError(gallery_id)
        path = Path(item["path"])
        if not path.is_file():  # the bundle folder is being replaced by a new one
            raise InputError(
                503, "bundle_changing", "a new bundle is being loaded: retry in a few seconds"
            )
        return path

    @staticmethod
    def _check_range(name: str, value: int | None, default: int, high: int) -> int:
        value = default if value is None else value
        if not 1 <= int(value) <= high:
            raise InputError(422, f"bad_{name}", f"{name} must be in 1..{high}, got {value}")
        return int(value)


class ServiceHolder:
    """The service on the newest bundle in ``bundle_dir``.

    :meth:`maybe_reload` (called every ``reload_seconds`` by :meth:`start_watching`) loads
    a bundle whose ``bundle_id`` changed into a new :class:`SearchService` and swaps it in;
    a bundle that fails to load is logged and the current one keeps serving."""

    def __init__(self, bundle_dir: str | Path, **service_kwargs: Any) -> None:
        self.bundle_dir = Path(bundle_dir)
        self._kwargs = service_kwargs
        self.service = SearchService(self.bundle_dir, **service_kwargs)
        self.reloads = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reload_lock = threading.Lock()
        # Gallery changes go through the holder, one at a time, never during a swap.
        self.write_lock = threading.Lock()

    def add_photo(self, data: bytes, **kwargs: Any) -> list[str]:
        with self.write_lock:
            return self.service.add_photo(data, **kwargs)

    def delete(self, gallery_id: str) -> None:
        with self.write_lock:
            self.service.delete(gallery_id)

    def maybe_reload(self) -> bool:
        with self._reload_lock:
            try:
                current = read_bundle_manifest(self.bundle_dir)["bundle_id"]
            except (BundleError, OSError) as e:  # mid-replace, or removed: keep serving
                self.last_error = str(e)
                return False
            if current == self.service.bundle_id:
                return False
            try:
                new = SearchService(self.bundle_dir, **self._kwargs)
            except Exception as e:
                self.last_error = f"bundle {current} does not load: {e}"
                log.error("keeping bundle %s: %s", self.service.bundle_id, self.last_error)
                return False
            old = self.service
            with self.write_lock:  # no gallery change runs on the old one during the swap
                new.reload_gallery()
                self.service = new
            self.reloads += 1
            self.last_error = None
            log.info("serving bundle %s (was %s)", new.bundle_id, old.bundle_id)
            return True

    def start_watching(self, every_seconds: float) -> None:
        if every_seconds <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(every_seconds):
                self.maybe_reload()

        self._thread = threading.Thread(target=loop, name="bundle-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


def validate_bundle(bundle_dir: str | Path) -> dict[str, Any]:
    """Load a (staged) bundle and search its first gallery item by the item's own box:
    the item must come back among the top 5 with similarity >= 0.99 (the index, the
    gallery table, the photos and the models agree). Raises :class:`BundleError`
    otherwise; returns the facts (load time, search time)."""
    import shutil

    bundle_dir = Path(bundle_dir)
    state = bundle_dir / ".validation-state"
    try:
        service = SearchService(bundle_dir, state_dir=state)
        if service.index.ntotal == 0:
            raise BundleError(f"the bundle in {bundle_dir} has an empty gallery: nothing to serve")
        first = str(service.gallery.view.base_ids[0])
        item = service.gallery.item(first)
        started = time.perf_counter()
        image = Image.open(item["path"]).convert("RGB")  # as the pipeline read it
        vector = service._embed_boxes([image], [np.asarray(item["box"])])
        hits = service.gallery.view.search(vector, 5)[0]
        ms = (time.perf_counter() - started) * 1e3
    finally:
        shutil.rmtree(state, ignore_errors=True)
    own = next((h for h in hits if h.gallery_id == first), None)
    if own is None or own.similarity < 0.99:
        raise BundleError(
            f"the bundle's gallery item {first}, searched by its own box, is not found "
            f"(top: {[(h.gallery_id, round(h.similarity, 3)) for h in hits]}): its index and "
            "its models disagree; rebuild search_index and publish again"
        )
    return {
        "load_seconds": round(service.load_seconds, 2),
        "self_query": first,
        "self_similarity": round(own.similarity, 4),
        "search_ms": round(ms, 1),
    }
