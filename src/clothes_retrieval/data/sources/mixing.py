"""Extra training sources: several datasets' items read and mapped for one crops table.

The paper's m1-m6 mix DeepFashion2 with Street2Shop, DARN, MVC, MPV and Zalando
(Table 1). Each extra source is read by its adapter, its categories are mapped through a
taxonomy (so every item fits the main item table's category set), and every item becomes
a training item (split ``train``): its identities stay its own
(``<dataset>/train/<pair_id>/<style>``), and a registry entry's ``data.training_sources``
decides which datasets a model trains on. De-duplication across sources happens when the
crops are cut, with ``crops.dedup_scope: global``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from clothes_retrieval.data.schema import empty_items, empty_quarantine
from clothes_retrieval.data.sources.base import SOURCES, read_source
from clothes_retrieval.data.taxonomy import load_taxonomy, map_to_taxonomy

__all__ = ["read_training_sources"]

log = logging.getLogger(__name__)


def _read_one(
    source: str, root: Path, splits: Sequence[str], options: Mapping[str, Any], progress: bool
):
    if source not in SOURCES:
        raise KeyError(f"unknown source {source!r}; registered: {sorted(SOURCES)}")
    params = inspect.signature(SOURCES[source].reader).parameters
    opts: dict[str, Any] = {"progress": progress, **options}
    if "splits" in params and "splits" not in opts:
        opts["splits"] = tuple(splits)
    elif "split" in params and "split" not in opts and len(splits) == 1:
        opts["split"] = splits[0]  # a one-split source (e.g. ccp) labels what it reads
    return read_source(source, root, **opts)


def read_training_sources(
    specs: Sequence[Any], *, progress: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Items (split ``train``) and quarantined records of every extra training source.

    ``specs``: objects with ``source``, ``root``, ``splits``, ``taxonomy`` and ``options``
    (``profile.TrainingSourceConfig``). An absent root raises ``FileNotFoundError`` naming
    the source and its expected layout.
    """
    items, rejected = [], []
    for spec in specs:
        tables = _read_one(spec.source, Path(spec.root), spec.splits, spec.options, progress)
        part = tables.items[tables.items["split"].isin(list(spec.splits))].copy()
        if spec.taxonomy is not None:
            part = map_to_taxonomy(part, load_taxonomy(spec.taxonomy), source=tables.dataset)
        if part["split"].nunique() > 1:
            # One training pool; keep the origin in item_uid so uids stay unique.
            part["item_uid"] = part["item_uid"].str.replace(
                f"{tables.dataset}/", f"{tables.dataset}/train/", n=1, regex=False
            )
        part["split"] = "train"
        log.info("training source %s: %d items (%s)", tables.dataset, len(part), spec.root)
        items.append(part)
        rejected.append(tables.quarantine)
    if not items:
        return empty_items(), empty_quarantine()
    return (
        pd.concat(items, ignore_index=True),
        pd.concat(rejected, ignore_index=True),
    )
