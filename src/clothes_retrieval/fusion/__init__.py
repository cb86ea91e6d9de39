"""Box fusion: the boxes of several detectors become one box set per image.

Weighted boxes fusion (WBF, Solovyev et al.; Ji et al. 2020 fuse five detectors onto
ATSS, Table 5) plus the NMS family for reference, over the detections table. One concept
per module: :mod:`~clothes_retrieval.fusion.config` (``FusionConfig``),
:mod:`~clothes_retrieval.fusion.wbf` (a vectorised WBF identical to ensemble-boxes',
returning which boxes formed each fused box), :mod:`~clothes_retrieval.fusion.engine`
(one chunk of images, what a worker process runs), :mod:`~clothes_retrieval.fusion.fuse`
(the table-level stage, parallel over images) and
:mod:`~clothes_retrieval.fusion.ablation` (Table 5).

The names below are imported on first use (PEP 562), so that a worker process, which
only needs the numpy kernel, does not pay for importing pandas, pydantic and pycocotools.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clothes_retrieval.fusion.ablation import fusion_ablation
    from clothes_retrieval.fusion.config import FusionConfig, FusionMethod
    from clothes_retrieval.fusion.fuse import (
        DETECTION_COLUMNS,
        FusedDetectors,
        fuse_detections,
        fuse_detectors,
    )
    from clothes_retrieval.fusion.wbf import (
        FusedBoxes,
        vote_labels,
        wbf_batch,
        weighted_boxes_fusion,
    )

_EXPORTS = {
    "DETECTION_COLUMNS": "fuse",
    "FusedBoxes": "wbf",
    "FusionConfig": "config",
    "FusionMethod": "config",
    "FusedDetectors": "fuse",
    "fuse_detections": "fuse",
    "fuse_detectors": "fuse",
    "fusion_ablation": "ablation",
    "vote_labels": "wbf",
    "wbf_batch": "wbf",
    "weighted_boxes_fusion": "wbf",
}

__all__ = [
    "DETECTION_COLUMNS",
    "FusedBoxes",
    "FusionConfig",
    "FusionMethod",
    "FusedDetectors",
    "fuse_detections",
    "fuse_detectors",
    "fusion_ablation",
    "vote_labels",
    "wbf_batch",
    "weighted_boxes_fusion",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
