"""DeepFashion2 as a registered source (the reader itself is ``data/deepfashion2.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clothes_retrieval.data.deepfashion2 import ReaderConfig, read_deepfashion2
from clothes_retrieval.data.schema import CATEGORIES
from clothes_retrieval.data.sources.base import SourceTables, register_source

__all__ = ["read_deepfashion2_source"]


@register_source(
    "deepfashion2",
    description="DeepFashion2: consumer and shop photos, JSON per image, pair_id + style",
    layout="<split>/image/NNNNNN.jpg, <split>/annos/NNNNNN.json",
)
def read_deepfashion2_source(
    root: Path,
    *,
    splits: Sequence[str] = ("train", "validation"),
    dataset: str = "deepfashion2",
    progress: bool = True,
    **reader: object,
) -> SourceTables:
    """``reader``: further :class:`ReaderConfig` keys (check_images, min_box_area,
    box_tolerance, workers), validated there."""
    from clothes_retrieval.config import validate_config

    config = validate_config(
        ReaderConfig, {**reader, "splits": tuple(splits)}, source=f"{dataset} options"
    )
    result = read_deepfashion2(Path(root), config, dataset=dataset, progress=progress)
    return SourceTables(dataset, result.items, result.quarantine, dict(CATEGORIES))
