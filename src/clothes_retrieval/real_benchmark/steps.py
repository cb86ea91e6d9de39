"""The real street-to-shop benchmark, step by step (each step a function the CLI and the
Dagster assets call; each writes its outputs atomically under its own folder).

Protocol (category level; the data has no instance pairs):

- queries: the garments of the query street photos, their categories mapped to the
  taxonomy's classes (labels not mapped are not queries);
- gallery: the product photos of the products' ``validation/`` split;
- a query is a hit at k when a gallery photo of its class is among its first k results
  (cosine similarity of L2-normalised embeddings, exact faiss search).
- ground-truth boxes: each query is embedded from its annotated box;
- detected boxes: each query is answered by the highest-scored detected (fused) box of its
  photo whose IoU with the query's box is at least ``match_iou`` (0.5, DeepFashion2's rule);
  a query no box matches is a miss at every k.

Detectors train on the street training photos only; the fine-tuned retrieval models train
on the products' ``train/`` split (and, for a mixed model, the street training photos'
garments). No query photo and no gallery photo is used for training or tuning.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clothes_retrieval.config import dump_config
from clothes_retrieval.data.sources import read_source
from clothes_retrieval.data.taxonomy import Taxonomy, load_taxonomy, map_to_taxonomy
from clothes_retrieval.io import atomic_dir, write_json, write_parquet
from clothes_retrieval.real_benchmark.config import RealBenchmarkConfig

__all__ = [
    "ROLES",
    "BenchmarkData",
    "check_roots",
    "read_role",
    "write_role",
    "category_accuracy",
    "evaluate_model",
    "match_detections",
    "prepare_data",
    "read_data",
]

log = logging.getLogger(__name__)

QUERY_SPLIT = "query"  # split name of the query street photos in the item tables


@dataclass(frozen=True)
class BenchmarkData:
    """Item tables seen through the taxonomy, and what was left out."""

    street_train: pd.DataFrame
    queries: pd.DataFrame
    products: pd.DataFrame  # splits train (fine-tuning) and validation (gallery)
    quarantine: pd.DataFrame
    taxonomy: Taxonomy
    out_dir: Path

    @property
    def gallery(self) -> pd.DataFrame:
        return self.products[self.products["split"] == "validation"].reset_index(drop=True)

    def summary(self) -> dict[str, Any]:
        return {
            "street_train_photos": int(self.street_train["image_id"].nunique()),
            "street_train_items": len(self.street_train),
            "query_photos": int(self.queries["image_id"].nunique()),
            "queries": len(self.queries),
            "product_train": int((self.products["split"] == "train").sum()),
            "gallery": len(self.gallery),
            "quarantined": len(self.quarantine),
            "queries_per_class": self.queries["category_name"].value_counts().to_dict(),
        }


def _same_folder(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _cap_per_class(items: pd.DataFrame, n: int | None) -> pd.DataFrame:
    if n is None:
        return items
    return (
        items.sort_values(["split", "category_name", "image_id"])
        .groupby(["split", "category_name"], sort=True)
        .head(n)
        .reset_index(drop=True)
    )


ROLES = ("street_train", "queries", "products")  # the three inputs, as item tables


def _street_ids(config: RealBenchmarkConfig) -> dict[str, Any]:
    """Photo ids of the street roles: a split by number when both are one folder."""
    roots = config.roots()
    ids: dict[str, Any] = {"street_train": None, "queries": None}
    if _same_folder(roots["street_train"], roots["street_queries"]):
        for role, (lo, hi) in (
            ("street_train", config.street_split.train),
            ("queries", config.street_split.queries),
        ):
            ids[role] = range(lo, hi + 1)
    caps = {"street_train": config.max_train_photos, "queries": config.max_queries}
    for role, cap in caps.items():
        if cap is not None:
            ids[role] = list(ids[role] or range(1, 10**6))[:cap]
    return ids


def check_roots(config: RealBenchmarkConfig) -> None:
    """Raise ``FileNotFoundError`` naming every missing data root and how to set it."""
    missing = config.missing_roots()
    if missing:
        raise FileNotFoundError(
            "real benchmark data not found: " + "; ".join(missing) + " (pass --street-train / "
            "--street-queries / --products, or set CLOTHES_RETRIEVAL_SHARED_DATA)"
        )


def read_role(
    config: RealBenchmarkConfig, role: str, *, progress: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One input (``street_train``, ``queries`` or ``products``) read with its source
    adapter and mapped to the taxonomy: (items, quarantined records)."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: use one of {ROLES}")
    check_roots(config)
    roots = config.roots()
    taxonomy = load_taxonomy(config.taxonomy)
    if role == "products":
        tables = read_source(
            config.product_source,
            roots["products"],
            splits=("train", "validation"),
            progress=progress,
        )
        items = _cap_per_class(
            map_to_taxonomy(tables.items, taxonomy), config.max_products_per_class
        )
        return items, tables.quarantine
    opts: dict[str, Any] = {
        "progress": progress,
        "split": "train" if role == "street_train" else QUERY_SPLIT,
    }
    if config.street_source == "ccp":
        opts["min_pixels"] = config.min_pixels
    ids = _street_ids(config)[role]
    if ids is not None:
        opts["image_ids"] = ids
    root = roots["street_train" if role == "street_train" else "street_queries"]
    tables = read_source(config.street_source, root, **opts)
    items = map_to_taxonomy(tables.items, taxonomy)
    if role == "queries" and items.empty:
        raise ValueError(
            f"no queries: the query photos at {roots['street_queries']} hold no garment of "
            f"the {config.taxonomy} classes"
        )
    return items, tables.quarantine


def write_role(
    out_dir: str | Path, role: str, items: pd.DataFrame, quarantine: pd.DataFrame
) -> Path:
    """Write one role's tables (each file atomically); returns the item table's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_parquet(out_dir / f"{role}.quarantine.parquet", quarantine)
    return write_parquet(out_dir / f"{role}.parquet", items)


def prepare_data(
    config: RealBenchmarkConfig, out_dir: str | Path, *, progress: bool = True
) -> BenchmarkData:
    """Read the three inputs with their adapters, split and map them; write the tables.

    Raises ``FileNotFoundError`` naming any missing root.
    """
    check_roots(config)
    tables = {}
    for role in ROLES:
        tables[role] = read_role(config, role, progress=progress)
        write_role(out_dir, role, *tables[role])
    data = BenchmarkData(
        tables["street_train"][0],
        tables["queries"][0],
        tables["products"][0],
        pd.concat([q for _, q in tables.values()], ignore_index=True),
        load_taxonomy(config.taxonomy),
        Path(out_dir),
    )
    gallery_classes = set(data.gallery["category_name"])
    absent = sorted(set(data.queries["category_name"]) - gallery_classes)
    if absent:
        log.warning("query classes %s have no gallery photo: those queries cannot hit", absent)
    write_json(
        Path(out_dir) / "data.json",
        {"roots": {k: str(v) for k, v in config.roots().items()}, **data.summary()},
    )
    return data


def read_data(out_dir: str | Path, config: RealBenchmarkConfig) -> BenchmarkData:
    """The tables :func:`prepare_data` (or :func:`write_role` per role) wrote to ``out_dir``."""
    from clothes_retrieval.data.deepfashion2 import read_item_table

    out_dir = Path(out_dir)
    missing = [r for r in ROLES if not (out_dir / f"{r}.parquet").is_file()]
    if missing:
        raise FileNotFoundError(f"{out_dir}: no item tables for {missing}; read them first")
    tables = {r: read_item_table(out_dir / f"{r}.parquet") for r in ROLES}
    quarantine = pd.concat(
        [pd.read_parquet(out_dir / f"{r}.quarantine.parquet") for r in ROLES], ignore_index=True
    )
    taxonomy = load_taxonomy(config.taxonomy)
    return BenchmarkData(
        tables["street_train"], tables["queries"], tables["products"], quarantine, taxonomy, out_dir
    )


# -- detected boxes ----------------------------------------------------------------------


def match_detections(queries: pd.DataFrame, boxes: pd.DataFrame, match_iou: float) -> pd.DataFrame:
    """For each query (row of ``queries``), the highest-scored box of its photo with
    IoU >= ``match_iou``; columns ``x1..y2``, ``score``, ``iou`` (NaN when none matches)."""
    from clothes_retrieval.evaluation.retrieval import box_iou

    out = pd.DataFrame(
        {
            "x1": np.nan,
            "y1": np.nan,
            "x2": np.nan,
            "y2": np.nan,
            "score": np.nan,
            "iou": np.nan,
        },
        index=queries.index,
    )
    by_path = {p: g for p, g in boxes.groupby("image_path", sort=False)}
    for path, group in queries.groupby("image_path", sort=False):
        det = by_path.get(path)
        if det is None or det.empty:
            continue
        gt = group[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)  # (Q, 4)
        db = det[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)  # (D, 4)
        scores = det["score"].to_numpy(np.float64)
        iou = box_iou(gt[:, None, :], db[None, :, :])  # (Q, D) (box_iou broadcasts)
        for qi, idx in enumerate(group.index):
            ok = np.flatnonzero(iou[qi] >= match_iou)
            if len(ok) == 0:
                continue
            best = ok[np.argmax(scores[ok])]
            out.loc[idx, ["x1", "y1", "x2", "y2"]] = db[best]
            out.loc[idx, ["score", "iou"]] = (scores[best], iou[qi, best])
    return out


# -- accuracy ------------------------------------------------------------------------------


def category_accuracy(
    ranked_labels: np.ndarray,
    query_labels: np.ndarray,
    ks: tuple[int, ...],
    valid: np.ndarray | None = None,
) -> dict[int, float]:
    """Acc@k: the fraction of queries with a gallery item of their class in the first k.

    ``ranked_labels`` (Q, K) are the classes of each query's results in rank order
    (-1 = no result); ``valid`` (Q,) False marks queries that count as misses (no box)."""
    ranked_labels = np.asarray(ranked_labels)
    query_labels = np.asarray(query_labels)
    if len(query_labels) == 0:
        raise ValueError("no queries to score")
    hits = ranked_labels == query_labels[:, None]  # (Q, K)
    if valid is not None:
        hits &= np.asarray(valid, dtype=bool)[:, None]
    first = np.where(hits.any(axis=1), hits.argmax(axis=1), np.iinfo(np.int64).max)
    return {k: float((first < k).mean()) for k in ks}


def embed_items(
    model: Any,
    items: list[tuple[str, Any]],
    batch_size: int,
    progress: bool,
    *,
    cache: dict[tuple[int, str], np.ndarray] | None = None,
    key: str = "",
) -> np.ndarray:
    """Embeddings of (image, box) items: one model's, or for an ensemble (a list of
    ``(model, weight)``) the weighted concatenation of each model's L2-normalised embedding,
    normalised again (the paper's feature concatenation; each model keeps its own input
    size and preprocessing).

    ``cache`` (with ``key`` naming the item list, e.g. ``"gallery"``) keeps each single
    model's embeddings, so an ensemble reuses its members' instead of embedding again.
    """
    from clothes_retrieval.retrieval.embed import embed_crops

    def single(m: Any) -> np.ndarray:
        if cache is None:
            return embed_crops(m, items, batch_size=batch_size, progress=progress)
        if (id(m), key) not in cache:
            cache[id(m), key] = embed_crops(m, items, batch_size=batch_size, progress=progress)
        return cache[id(m), key]

    if not isinstance(model, list | tuple):
        return single(model)
    out = np.concatenate([weight * single(m) for m, weight in model], axis=1)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _boxes(table: pd.DataFrame) -> list[tuple[str, tuple[float, float, float, float]]]:
    cols = table[["image_path", "x1", "y1", "x2", "y2"]].itertuples(index=False)
    return [(p, (x1, y1, x2, y2)) for p, x1, y1, x2, y2 in cols]


def evaluate_model(
    name: str,
    model: Any,
    data: BenchmarkData,
    detected: pd.DataFrame | None,
    config: RealBenchmarkConfig,
    out_dir: str | Path,
    *,
    progress: bool = True,
    cache: dict[tuple[int, str], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Acc@k of one embedding model (or ensemble, see :func:`embed_items`) with
    ground-truth and (when given) detected boxes.

    Writes ``results.json`` and ``ranked.parquet`` (each query's first results) to
    ``out_dir`` and returns the results. Unreadable images are errors here: the tables
    came from adapters that already quarantined them. ``cache``: shared embeddings (see
    :func:`embed_items`) for several models evaluated on the same data.
    """
    from clothes_retrieval.search.rank import rank_gallery

    kmax = max(config.ks)
    gallery = data.gallery
    classes = list(data.taxonomy.classes)
    queries = data.queries.reset_index(drop=True)
    q_labels = queries["category_id"].to_numpy()
    g_labels = gallery["category_id"].to_numpy()

    def embed(items: list, key: str) -> np.ndarray:
        bs = config.retrieval.embed_batch_size
        return embed_items(model, items, bs, progress, cache=cache, key=key)

    g_emb = embed([(p, None) for p in gallery["image_path"]], "gallery")

    def search(boxes: pd.DataFrame, valid: np.ndarray, key: str) -> tuple[np.ndarray, ...]:
        """Gallery rows and their classes (Q, kmax) for the ``valid`` queries' boxes
        (-1: no result, or an invalid query)."""
        rows = np.full((len(queries), kmax), -1, dtype=np.int64)
        if valid.any():
            q_emb = embed(_boxes(boxes[valid]), key)
            rows[valid], _ = rank_gallery(q_emb, g_emb, config.retrieval.postprocess, k=kmax)
        return rows, np.where(rows >= 0, g_labels[np.clip(rows, 0, None)], -1)

    def frame(boxes: str, rows: np.ndarray, ranked: np.ndarray, valid: np.ndarray):
        return pd.DataFrame(
            {
                "boxes": boxes,
                "item_uid": queries["item_uid"],
                "query_class": queries["category_name"],
                "top1_class": [classes[c - 1] if c > 0 else "" for c in ranked[:, 0]],
                "hit@1": (ranked[:, 0] == q_labels) & valid,
                "top_rows": [r[:5].tolist() for r in rows],  # gallery rows, best first
            }
        )

    results: dict[str, Any] = {"model": name, "queries": len(queries), "gallery": len(gallery)}
    everyone = np.ones(len(queries), dtype=bool)
    rows, ranked = search(queries, everyone, "gt")
    results["gt"] = {
        f"acc@{k}": v for k, v in category_accuracy(ranked, q_labels, config.ks).items()
    }
    results["gt_per_class"] = {
        cname: {
            "queries": int((q_labels == cid).sum()),
            "acc@1": float((ranked[q_labels == cid, 0] == cid).mean()),
        }
        for cid, cname in data.taxonomy.category_ids.items()
        if (q_labels == cid).any()
    }
    frames = [frame("gt", rows, ranked, everyone)]

    if detected is not None:
        matched = match_detections(queries, detected, config.detection.match_iou)
        valid = matched["x1"].notna().to_numpy()
        rows_d, ranked_d = search(matched.assign(image_path=queries["image_path"]), valid, "det")
        results["detected"] = {
            f"acc@{k}": v
            for k, v in category_accuracy(ranked_d, q_labels, config.ks, valid).items()
        }
        results["detected"]["box_recall"] = float(valid.mean())
        frames.append(frame("detected", rows_d, ranked_d, valid))
    with atomic_dir(Path(out_dir)) as tmp:
        write_json(tmp / "results.json", results)
        write_parquet(tmp / "ranked.parquet", pd.concat(frames, ignore_index=True))
    return results


def config_record(config: RealBenchmarkConfig) -> dict[str, Any]:
    """The resolved config plus the resolved data roots (written beside the outputs)."""
    return {**dump_config(config), "resolved_roots": {k: str(v) for k, v in config.roots().items()}}


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
