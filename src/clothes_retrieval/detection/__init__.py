"""Detection stage: the paper's five detectors (mmdetection), trained and run on item tables.

- :mod:`.config`: typed detector configs (``configs/detectors/*.yaml``) and
  :func:`build_mmdet_config`, the one mapping to mmdet's config.
- :mod:`.timm_backbone`: a timm ``features_only`` model registered as an mmdet backbone.
- :mod:`.train`: :func:`train_detector` (mmengine Runner, resumable, tracked).
- :mod:`.inference`: :func:`run_detector` (a detection table per image table).
- :mod:`.metrics`: COCO box metrics of a detection table.

mmdet is imported lazily by the functions that need it, so importing this package is cheap.
"""

from clothes_retrieval.detection.config import (
    DETECTOR_NAMES,
    DetectorConfig,
    DetectorProfile,
    build_mmdet_config,
    load_detector_config,
)

__all__ = [
    "DETECTOR_NAMES",
    "DetectorConfig",
    "DetectorProfile",
    "build_mmdet_config",
    "load_detector_config",
]
