"""The published bundle: everything a server needs to answer a street photo, in one folder.

``published_index`` writes it (:func:`publish_bundle`); :class:`~.engine.SearchService`
loads it. Layout (``bundle.json`` is its manifest)::

    bundle.json        format, bundle id, profile, data version, detectors and fusion,
                       models (weights, preprocessing), box source, the evaluation numbers
    index/             the faiss index and its manifest (index.faiss, manifest.json)
    gallery.parquet    one row per indexed box, in index order: gallery_id, image_id,
                       image_file (inside images/), x1..y2, category_id, category_name,
                       pair_id, score
    images/            the gallery's shop photos (hard links where the file system allows)
    detectors/<name>/  model.pth (weights only) + config.py, for every fused detector
    models/<name>/     model.pt of every model of the published ensemble
    evaluation.json    the report's headline numbers it was published with
    lineage.json       the data version

The bundle is written beside its final place and renamed into it, and only after a
:class:`~.engine.SearchService` has loaded the staged copy and answered a query with it:
a bundle that does not load is never published, and the previous one keeps serving.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from clothes_retrieval.data.schema import CATEGORIES
from clothes_retrieval.io import atomic_dir, file_digest
from clothes_retrieval.versioning import write_lineage

__all__ = [
    "BUNDLE_FILE",
    "BUNDLE_FORMAT",
    "BundleError",
    "GALLERY_COLUMNS",
    "publish_bundle",
    "read_bundle_manifest",
]

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = 1
GALLERY_COLUMNS = (
    "gallery_id",
    "image_id",
    "image_file",
    "x1",
    "y1",
    "x2",
    "y2",
    "category_id",
    "category_name",
    "pair_id",
    "score",
)


class BundleError(RuntimeError):
    """A bundle is missing, incomplete, or does not load; the message names what and where."""


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def gallery_table(rows: pd.DataFrame, items: pd.DataFrame | None = None) -> pd.DataFrame:
    """The bundle's gallery table from the index's gallery rows (in index order).

    ``gallery_id`` is ``<image_id>_<n>``: the n-th box (1-based, index order) of that shop
    photo. ``pair_id`` comes from the rows, else from ``items`` by image (fused boxes carry
    none); -1 when unknown."""
    g = rows.reset_index(drop=True)
    image_id = g["image_id"].astype("int64").astype(str)
    n = g.groupby("image_id", sort=False).cumcount() + 1
    if "pair_id" in g.columns:
        pair = g["pair_id"]
    elif items is not None and "pair_id" in items.columns:
        by_image = items.drop_duplicates("image_path").set_index("image_path")["pair_id"]
        pair = g["image_path"].map(by_image)
    else:
        pair = pd.Series(-1, index=g.index)
    names = g["category_name"] if "category_name" in g.columns else g["category_id"].map(CATEGORIES)
    suffix = g["image_path"].map(lambda p: Path(p).suffix.lower() or ".jpg")
    return pd.DataFrame(
        {
            "gallery_id": image_id + "_" + n.astype(str),
            "image_id": image_id,
            "image_file": image_id + suffix,
            "x1": g["x1"].astype(float),
            "y1": g["y1"].astype(float),
            "x2": g["x2"].astype(float),
            "y2": g["y2"].astype(float),
            "category_id": g["category_id"].astype("int64"),
            "category_name": names.fillna("unknown").astype(str),
            "pair_id": pair.fillna(-1).astype("int64"),
            "score": g["score"].astype(float) if "score" in g.columns else 1.0,
        }
    )


def publish_bundle(
    out_dir: str | Path,
    *,
    index_dir: str | Path,
    report_dir: str | Path,
    models: Mapping[str, str | Path],
    data_version: str,
    profile: str,
    detectors: Mapping[str, str | Path] | None = None,
    detection: Mapping[str, Any] | None = None,
    fusion: Mapping[str, Any] | None = None,
    items: pd.DataFrame | None = None,
    validate: Callable[[Path], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write the bundle to ``out_dir`` (atomically) and return its manifest.

    ``models``: name -> trained model folder (``model.pt``) of each published model, in
    ensemble order. ``detectors``: name -> work dir (``latest.pth``, ``config.py``) of
    each fused detector, best first; ``detection``: their ``score_thr`` and
    ``max_per_image``; ``fusion``: the fusion config (``FusionConfig`` fields). No
    detectors: the service embeds whole photos. ``validate(staged_dir)`` runs on the
    staged bundle before it replaces ``out_dir``; it raises to stop the publish and
    returns facts recorded in the manifest (``validated``)."""
    import torch

    index_dir, report_dir = Path(index_dir), Path(report_dir)
    report = json.loads((report_dir / "report.json").read_text())
    index_meta = json.loads((index_dir / "manifest.json").read_text())
    steps = index_meta["manifest"].get("postprocess") or []
    if steps:
        # The index holds the gallery's plain vectors and the service ranks by nearest
        # neighbour: serving it would answer differently from what was evaluated.
        raise BundleError(
            f"the published configuration post-processes ({', '.join(steps)}) but the "
            "service ranks by nearest neighbour: publish a nearest-neighbour setting "
            "(search.publish.postprocess) so that what is served is what was evaluated"
        )
    rows = pd.read_parquet(index_dir / "gallery_rows.parquet")
    gallery = gallery_table(rows, items)
    with atomic_dir(Path(out_dir)) as tmp:
        (tmp / "index").mkdir()
        for name in ("index.faiss", "manifest.json"):
            shutil.copy2(index_dir / name, tmp / "index" / name)
        (tmp / "images").mkdir()
        missing = []
        for src, name in (
            rows.assign(f=gallery["image_file"])[["image_path", "f"]]
            .drop_duplicates("f")
            .itertuples(index=False)
        ):
            if Path(src).is_file():
                _link_or_copy(Path(src), tmp / "images" / name)
            else:
                missing.append(src)
        if missing:
            raise BundleError(
                f"{len(missing)} gallery photos are missing (first: {missing[0]}); the data "
                "changed after the index was built: rebuild search_index"
            )
        gallery.to_parquet(tmp / "gallery.parquet", index=False)
        det_entries = []
        for name, work_dir in (detectors or {}).items():
            work_dir = Path(work_dir)
            dst = tmp / "detectors" / name
            dst.mkdir(parents=True)
            ckpt = torch.load(work_dir / "latest.pth", map_location="cpu", weights_only=False)
            # Weights and meta only: the optimiser state is not needed to detect.
            torch.save(
                {"state_dict": ckpt["state_dict"], "meta": ckpt.get("meta", {})}, dst / "model.pth"
            )
            shutil.copy2(work_dir / "config.py", dst / "config.py")
            det_entries.append(
                {
                    "name": name,
                    "checkpoint": f"detectors/{name}/model.pth",
                    "config": f"detectors/{name}/config.py",
                }
            )
        model_entries, digests = [], []
        weights = index_meta["manifest"].get("weights") or [1.0] * len(models)
        for (name, model_dir), weight in zip(models.items(), weights, strict=True):
            dst = tmp / "models" / name
            dst.mkdir(parents=True)
            shutil.copy2(Path(model_dir) / "model.pt", dst / "model.pt")
            digests.append(file_digest(dst / "model.pt"))
            model_entries.append(
                {"name": name, "path": f"models/{name}/model.pt", "weight": float(weight)}
            )
        (tmp / "evaluation.json").write_text(json.dumps(report["headline"], indent=2))
        write_lineage(tmp, data_version)
        key = hashlib.sha256(
            json.dumps([index_meta, digests, sorted(gallery["gallery_id"])]).encode()
        ).hexdigest()[:16]
        manifest = {
            "format": BUNDLE_FORMAT,
            "bundle_id": key,
            "profile": profile,
            "data_version": data_version,
            "published_name": index_meta["manifest"].get("extra", {}).get("published_name"),
            "box_source": index_meta["manifest"]["box_source"],
            "postprocess": index_meta["manifest"].get("postprocess", []),
            "detectors": det_entries,
            "detection": dict(detection or {}),
            "fusion": dict(fusion or {}) if det_entries else None,
            "models": model_entries,
            "gallery": {"items": len(gallery), "images": int(gallery["image_id"].nunique())},
            "evaluation": report["headline"],
        }
        (tmp / BUNDLE_FILE).write_text(json.dumps(manifest, indent=2))
        if validate is not None:
            manifest["validated"] = validate(tmp)
            (tmp / BUNDLE_FILE).write_text(json.dumps(manifest, indent=2))
    return manifest


def read_bundle_manifest(bundle_dir: str | Path) -> dict[str, Any]:
    """The manifest of the bundle in ``bundle_dir``; :class:`BundleError` naming the folder
    and what to do when there is none or it is not this code's format."""
    path = Path(bundle_dir) / BUNDLE_FILE
    if not path.is_file():
        raise BundleError(
            f"{bundle_dir} holds no published bundle ({BUNDLE_FILE}); run the pipeline "
            "(`make run`, which materialises published_index) or pass --bundle DIR"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BundleError(f"{path} is not valid JSON ({e}); publish the bundle again") from e
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(
            f"{path} has format {manifest.get('format')!r}, this code reads {BUNDLE_FORMAT}: "
            "publish the bundle again with this version"
        )
    return manifest


def model_weights(manifest: Mapping[str, Any]) -> dict[str, float]:
    return {m["name"]: float(m["weight"]) for m in manifest["models"]}
