"""Data stage: read DeepFashion2 into the item table, export COCO files and retrieval crops."""

from clothes_retrieval.data.coco import CocoExportSummary, coco_categories, export_coco
from clothes_retrieval.data.crops import (
    CROP_COLUMNS,
    CropConfig,
    CropExportResult,
    export_retrieval_crops,
    item_identity,
    near_duplicates,
)
from clothes_retrieval.data.deepfashion2 import (
    ReaderConfig,
    ReadResult,
    read_deepfashion2,
    read_item_table,
    read_quarantine_table,
    write_item_tables,
)

__all__ = [
    "CROP_COLUMNS",
    "CocoExportSummary",
    "CropConfig",
    "CropExportResult",
    "ReadResult",
    "ReaderConfig",
    "coco_categories",
    "export_coco",
    "export_retrieval_crops",
    "item_identity",
    "near_duplicates",
    "read_deepfashion2",
    "read_item_table",
    "read_quarantine_table",
    "write_item_tables",
]
