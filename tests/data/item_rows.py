"""A hand-made item table for the taxonomy tests: one whole-photo item per row."""

import pandas as pd

from clothes_retrieval.data.schema import conform_items


def whole_photo_items(rows: list[tuple[str, str]]) -> pd.DataFrame:
    """One whole-photo item per (dataset, category_name), category ids of the source's own."""
    return conform_items(
        pd.DataFrame(
            [
                {
                    "item_uid": f"{dataset}/train/{k:06d}/1",
                    "dataset": dataset,
                    "split": "train",
                    "image_id": k,
                    "image_path": f"/photos/{k}.jpg",
                    "image_width": 32,
                    "image_height": 48,
                    "source": "shop",
                    "pair_id": 0,
                    "style": 0,
                    "item_index": 1,
                    "category_id": 40 + k,
                    "category_name": category,
                    "x1": 0.0,
                    "y1": 0.0,
                    "x2": 32.0,
                    "y2": 48.0,
                    "segmentation": [],
                    "landmarks": [],
                    "scale": 0,
                    "occlusion": 0,
                    "zoom_in": 0,
                    "viewpoint": 0,
                }
                for k, (dataset, category) in enumerate(rows, start=1)
            ]
        )
    )
