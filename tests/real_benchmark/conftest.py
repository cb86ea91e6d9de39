"""A tiny real-benchmark config over a handful of the shared real photos (skips without)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clothes_retrieval.real_benchmark import shared_data_root

SMOKE = {
    # 8 street photos to train on, 4 query photos, 4 product photos per class and split:
    # the whole benchmark path (adapters, detector, fusion, fine-tuning, both box sources,
    # report) in well under a minute on 2 cores.
    "street_split": {"train": [1, 8], "queries": [301, 304]},
    "max_products_per_class": 4,
    "detection": {
        "detectors": ["atss"],
        "profile": "real",
        "max_epochs": 1,
        "fusion": {"method": "wbf", "label_mode": "vote", "max_per_image": 10},
    },
    "retrieval": {
        "zero_shot": "real_lite0_zero_shot",
        "fine_tuned": ["real_lite0_mixed"],
        "headline": "real_lite0_mixed",
        "overrides": {
            "train": {"epochs": 1, "batch_size": 16, "m_per_class": 2},
            "model": {"input_size": [64, 64]},
        },
    },
}


@pytest.fixture
def real_data() -> Path:
    root = shared_data_root()
    if not (root / "ccp").is_dir() or not (root / "clothing-small").is_dir():
        pytest.skip(f"real photos not found under {root}")
    return root


@pytest.fixture
def smoke_config(tmp_path: Path, real_data: Path) -> Path:
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump({**SMOKE, "output_dir": str(tmp_path / "out")}))
    return path
