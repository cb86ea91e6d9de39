"""DeepFashion2's test split: no annotations, one official submission JSON.

The test split is ``<root>/test/image/NNNNNN.jpg`` plus two image-level info files, COCO
style (``{"images": [{"file_name": "000001.jpg", "id": 1, "height": H, "width": W}, ...]}``,
or a bare list of such records):

- ``test/retrieval_test_consumer_information.json``: the consumer photos, the queries;
- ``test/retrieval_test_shop_information.json``: the shop photos, the gallery.

Only the challenge server can score it, from the official submission JSON
(:mod:`clothes_retrieval.evaluation.submission`). :func:`submit_test_split` writes that
file with the published bundle (:mod:`clothes_retrieval.service.bundle`), the way the
pipeline answers the validation split with its own boxes (``box_source: fused``):

1. every detector of the bundle on every photo, with the bundle's ``score_thr`` and
   ``max_per_image``;
2. their boxes fused per photo with the bundle's fusion config (weighted boxes fusion);
   boxes under ``MIN_BOX_SIDE`` pixels are dropped, as the evaluation drops them;
3. every fused box cropped and embedded by each model of the bundle, the vectors
   concatenated with the ensemble's weights (L2-normalised);
4. an exact inner-product search (faiss ``Flat``) of every consumer box among every shop
   box: the ``top_k`` most similar;
5. one record per consumer box with exactly 20 gallery entries (a shorter ranking, from a
   gallery of fewer than 20 boxes, is padded by repeating its last entry, as for
   validation).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

__all__ = [
    "INFO_FILES",
    "SplitInfoError",
    "read_test_split",
    "submit_test_split",
]

log = logging.getLogger(__name__)

SPLIT = "test"
# source -> DeepFashion2's info file of the test split: consumer photos are the queries.
INFO_FILES: dict[str, str] = {
    "user": "retrieval_test_consumer_information.json",
    "shop": "retrieval_test_shop_information.json",
}
EMBED_BATCH = 64  # crops per forward pass of a retrieval model


class SplitInfoError(ValueError):
    """A test-split info file cannot be used as it is; the message names it and the fix."""


def _records(path: Path) -> list[Any]:
    """The image records of an info file (``{"images": [...]}`` or a bare list)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the DeepFashion2 test split comes with the info files "
            f"{' and '.join(INFO_FILES.values())} (consumer photos = queries, shop photos = "
            f"gallery); put them in {path.parent}"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SplitInfoError(f"{path} is not valid JSON ({e}); download the file again") from e
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        return data["images"]
    if isinstance(data, list):
        return data
    raise SplitInfoError(
        f"{path} holds a {type(data).__name__} without an 'images' list; expected "
        '{"images": [{"file_name": "000001.jpg", "id": 1, "height": H, "width": W}, ...]} '
        "or a bare list of such records"
    )


def _read_info(path: Path, image_dir: Path, source: str, split: str) -> pd.DataFrame:
    """The image table of one info file; listed photos that are not on disk (or whose
    header does not read) are logged, left out, and listed in ``attrs["skipped"]``."""
    from clothes_retrieval.detection.inference import IMAGE_COLUMNS

    records = _records(path)
    if not records:
        raise SplitInfoError(f"{path} lists no images; download the file again")
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    seen_ids: dict[int, int] = {}
    seen_names: dict[str, int] = {}
    for i, rec in enumerate(records):
        ok = (
            isinstance(rec, dict)
            and isinstance(rec.get("file_name"), str)
            and isinstance(rec.get("id"), int)
            and not isinstance(rec.get("id"), bool)
        )
        if not ok:
            raise SplitInfoError(
                f"{path}: record {i} is {rec!r:.120}; every record needs a 'file_name' "
                "(string) and an 'id' (integer)"
            )
        image_id, name = int(rec["id"]), rec["file_name"]
        if image_id in seen_ids:
            raise SplitInfoError(
                f"{path}: image id {image_id} is listed twice (records {seen_ids[image_id]} "
                f"and {i}); ids must be unique: download the file again"
            )
        if name in seen_names:
            raise SplitInfoError(
                f"{path}: file {name} is listed twice (records {seen_names[name]} and {i}); "
                "download the file again"
            )
        seen_ids[image_id], seen_names[name] = i, i
        image_path = (image_dir / name).absolute()
        if not image_path.is_file():
            skipped.append({"image_path": str(image_path), "reason": "missing"})
            continue
        try:
            with Image.open(image_path) as im:
                width, height = im.size
        except Exception as e:  # recorded, not fatal: the run goes on without this photo
            skipped.append({"image_path": str(image_path), "reason": f"unreadable: {e}"})
            continue
        listed = (rec.get("width"), rec.get("height"))
        if listed != (None, None) and listed != (width, height):
            log.warning(
                "%s: %s is %dx%d, the info file says %sx%s; using the file's size",
                path.name,
                name,
                width,
                height,
                *listed,
            )
        rows.append(
            {
                "split": split,
                "image_id": image_id,
                "image_path": str(image_path),
                "image_width": int(width),
                "image_height": int(height),
                "source": source,
            }
        )
    if not rows:
        raise FileNotFoundError(
            f"none of the {len(records)} images listed in {path} can be read from {image_dir} "
            f"(first: {skipped[0]['image_path']}, {skipped[0]['reason']}); unpack the test "
            "images there"
        )
    if skipped:
        log.warning(
            "%s: %d of %d listed images are skipped (first: %s, %s)",
            path.name,
            len(skipped),
            len(records),
            skipped[0]["image_path"],
            skipped[0]["reason"],
        )
    table = pd.DataFrame(rows, columns=list(IMAGE_COLUMNS))
    table = table.sort_values("image_id", kind="stable").reset_index(drop=True)
    table = table.astype({"image_id": "int64", "image_width": "int64", "image_height": "int64"})
    table.attrs["skipped"] = skipped
    return table


def read_test_split(root: str | Path, split: str = SPLIT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(query images, gallery images) of the DeepFashion2 test split under ``root``: the
    consumer and the shop photos its info files list, one row each, with the columns
    :data:`~clothes_retrieval.detection.inference.IMAGE_COLUMNS` (``split`` is ``test``,
    ``image_path`` absolute, width and height read from the image file), by image id.

    Listed images missing on disk (or unreadable) are logged and left out; each table's
    ``attrs["skipped"]`` lists them (``image_path``, ``reason``). A missing folder or info
    file, malformed JSON, and repeated ids (within a file or across the two) raise."""
    split_dir = Path(root) / split
    image_dir = split_dir / "image"
    if not image_dir.is_dir():
        raise FileNotFoundError(
            f"{image_dir} not found: the DeepFashion2 test split is {split_dir}/image/"
            f"NNNNNN.jpg plus {' and '.join(INFO_FILES.values())} in {split_dir}; unpack "
            f"the test split into {root}"
        )
    tables = {
        source: _read_info(split_dir / name, image_dir, source, split)
        for source, name in INFO_FILES.items()
    }
    queries, gallery = tables["user"], tables["shop"]
    both = sorted(set(queries["image_id"]) & set(gallery["image_id"]))
    if both:
        raise SplitInfoError(
            f"image ids {both[:10]} are listed as consumer photos in {INFO_FILES['user']} and "
            f"as shop photos in {INFO_FILES['shop']}; a photo is one or the other: download "
            "the info files again"
        )
    return queries, gallery


def _bundle_index_manifest(bundle_dir: Path, names: list[str]) -> Any:
    """The index manifest of the bundle, checked against its models (the search below
    concatenates the models' vectors exactly as the index was built)."""
    from clothes_retrieval.index import IndexManifest
    from clothes_retrieval.service.bundle import BundleError

    path = bundle_dir / "index" / "manifest.json"
    try:
        meta = json.loads(path.read_text())
        manifest = IndexManifest.from_json(meta["manifest"])
    except (OSError, KeyError, ValueError) as e:
        raise BundleError(f"{path} is missing or unreadable ({e}); publish the bundle again") from e
    if list(manifest.models) != names:
        raise BundleError(
            f"the bundle's models {names} are not its index's {list(manifest.models)}: "
            "publish the bundle again"
        )
    if manifest.postprocess:
        raise BundleError(
            f"the bundle's index post-processes ({', '.join(manifest.postprocess)}); the test "
            "split is ranked by nearest neighbour: publish a nearest-neighbour setting"
        )
    return manifest


def submit_test_split(
    bundle_dir: str | Path,
    root: str | Path,
    out_path: str | Path,
    *,
    split: str = SPLIT,
    batch_size: int = 8,
    device: str | None = None,
    top_k: int = 20,
    progress: bool = True,
) -> dict[str, Any]:
    """Answer the DeepFashion2 test split under ``root`` with the published bundle in
    ``bundle_dir`` and write the official submission JSON to ``out_path`` (atomically).

    The steps are the module docstring's. ``batch_size``: photos per detector forward pass;
    ``device``: where the detectors and models run (None: the GPU when there is one);
    ``top_k``: gallery boxes searched per query (records always hold 20 entries: cut, or
    padded by repeating the last). Returns a summary: photos, boxes, records, skipped and
    unreadable photos, seconds. Raises :class:`~clothes_retrieval.service.bundle.BundleError`
    for a bundle without detectors and ``ValueError`` when no shop photo has a box."""
    from clothes_retrieval.detection.inference import run_detector
    from clothes_retrieval.evaluation.submission import (
        N_GALLERY_ENTRIES,
        ranking_to_submission,
        write_submission_json,
    )
    from clothes_retrieval.fusion import FusionConfig, fuse_detectors
    from clothes_retrieval.index import IndexConfig, concatenate_embeddings
    from clothes_retrieval.retrieval.embed import load_trained_model
    from clothes_retrieval.search.experiments import box_rows, build_embedding_sets
    from clothes_retrieval.search.rank import PostprocessConfig, rank_gallery
    from clothes_retrieval.service.bundle import BundleError, model_weights, read_bundle_manifest

    started = time.perf_counter()
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    bundle_dir = Path(bundle_dir)
    manifest = read_bundle_manifest(bundle_dir)
    detectors = manifest.get("detectors") or []
    if not detectors or not manifest.get("fusion"):
        raise BundleError(
            f"the bundle in {bundle_dir} has no detectors: a DeepFashion2 submission needs "
            "detected, classified boxes; publish a profile with a detection stage"
        )
    fusion = FusionConfig.model_validate(manifest["fusion"])
    unknown = [d for d in fusion.detectors if d not in {e["name"] for e in detectors}]
    if unknown:
        raise BundleError(
            f"the bundle's fusion config names detectors {unknown} that it does not hold "
            f"({[e['name'] for e in detectors]}): publish the bundle again"
        )
    names = [m["name"] for m in manifest["models"]]
    index_manifest = _bundle_index_manifest(bundle_dir, names)

    queries, gallery = read_test_split(root, split)
    skipped = len(queries.attrs["skipped"]) + len(gallery.attrs["skipped"])
    images = pd.concat([queries, gallery], ignore_index=True)
    log.info(
        "test split: %d consumer and %d shop photos (%d listed ones skipped); bundle %s",
        len(queries),
        len(gallery),
        skipped,
        manifest["bundle_id"],
    )

    # 1-2. Every detector on every photo, in the fusion's order, then the fusion.
    det = manifest.get("detection") or {}
    by_name = {e["name"]: e for e in detectors}
    frames, unreadable = [], set()
    for name in fusion.detectors:
        entry = by_name[name]
        result = run_detector(
            bundle_dir / entry["checkpoint"],
            bundle_dir / entry["config"],
            images,
            score_thr=float(det.get("score_thr", 0.05)),
            max_per_image=int(det.get("max_per_image", 100)),
            batch_size=batch_size,
            device=device,
            progress=progress,
            detector=name,
        )
        frames.append(result.detections)
        unreadable |= set(result.failures["image_path"])
    detections = pd.concat(frames, ignore_index=True)
    if detections.empty:
        raise ValueError(
            f"the detectors {list(fusion.detectors)} found no box on any of the "
            f"{len(images)} test photos (score_thr {det.get('score_thr', 0.05)}); check "
            "the photos and the bundle's detectors"
        )
    fused = fuse_detectors(detections, fusion, progress=progress).fused
    # The deepfashion2 protocol's fused boxes need no item table (the test split has none).
    query_rows, gallery_rows = box_rows("fused", pd.DataFrame(), fused)
    log.info("%d consumer boxes, %d shop boxes", len(query_rows), len(gallery_rows))
    if gallery_rows.empty:
        raise ValueError(
            f"no box on any of the {len(gallery)} shop photos (the gallery): there is nothing "
            "to rank; check the shop photos and the bundle's detectors"
        )

    # 3. The ensemble's vectors of every box.
    sets = {}
    for m in manifest["models"]:
        model, _ = load_trained_model((bundle_dir / m["path"]).parent, device=device)
        sets[m["name"]] = build_embedding_sets(
            model,
            m["name"],
            ["fused"],
            pd.DataFrame(),
            fused,
            batch_size=EMBED_BATCH,
            device=device,
            progress=progress,
        )["fused"]
        del model
    dims = tuple(sets[n].dim for n in names)
    if dims != tuple(index_manifest.dims):
        raise BundleError(
            f"the bundle's models embed {list(dims)} dims, its index says "
            f"{list(index_manifest.dims)}: publish the bundle again"
        )
    weights = model_weights(manifest)
    q_vectors = concatenate_embeddings({n: sets[n].query for n in names}, names, weights)
    g_vectors = concatenate_embeddings({n: sets[n].gallery for n in names}, names, weights)

    # 4-5. Exact search, records, the file.
    if len(q_vectors):
        exact = IndexConfig(factory="Flat", k=top_k)
        ranking, _ = rank_gallery(
            q_vectors, g_vectors, PostprocessConfig(), k=top_k, index_config=exact
        )
    else:
        log.warning("no box on any consumer photo: the submission has no record")
        ranking = np.zeros((0, top_k), dtype=np.int64)
    first = sets[names[0]]
    submission = ranking_to_submission(
        first.query_rows, first.gallery_rows, ranking, n_entries=N_GALLERY_ENTRIES
    )
    write_submission_json(out_path, submission)
    summary = {
        "out_path": str(out_path),
        "bundle_id": manifest["bundle_id"],
        "query_images": len(queries),
        "gallery_images": len(gallery),
        "skipped_images": skipped,
        "unreadable_images": len(unreadable),
        "query_boxes": len(first.query_rows),
        "gallery_boxes": len(first.gallery_rows),
        "records": len(submission),
        "top_k": top_k,
        "seconds": round(time.perf_counter() - started, 2),
    }
    log.info("test-split submission: %s", summary)
    return summary
