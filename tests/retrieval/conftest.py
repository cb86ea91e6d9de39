"""Tiny fixtures for retrieval tests: generated crops in tmp_path and a tiny model config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from clothes_retrieval.config import validate_config
from clothes_retrieval.retrieval.config import RetrievalModelConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
# One intra-op thread: the test models are tiny, and on 2 cores shared with other work two
# OpenMP threads contending made a step ~50x slower.
torch.set_num_threads(1)


def make_crops(root: Path, n_identities: int = 8, per_identity: int = 4, seed: int = 0,
               split: str = "train", size: tuple[int, int] = (40, 32)) -> pd.DataFrame:  # fmt: skip
    """Crops whose identity is a colour and stripe pattern; half user, half shop photos."""
    rng = np.random.default_rng(seed)
    rows = []
    h, w = size
    for ident in range(n_identities):
        colour = rng.integers(0, 256, 3)
        period = 3 + ident % 5
        for j in range(per_identity):
            img = np.tile(colour, (h, w, 1)).astype(np.float64)
            img[:, ::period] *= 0.4
            img += rng.normal(0, 12, img.shape)
            path = root / split / f"{ident:03d}_{j}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path, quality=95)
            rows.append({
                "crop_path": str(path),
                "label": ident,
                "split": split,
                "identity": f"deepfashion2/{split}/{ident}/1",
                "source": "user" if j % 2 == 0 else "shop",
            })  # fmt: skip
    return pd.DataFrame(rows)


def tiny_config(**sections: dict[str, Any]) -> RetrievalModelConfig:
    """test_efficientnet (~0.1 M parameters), 32 px, 2 iterations of 8 crops per epoch."""
    data: dict[str, Any] = {
        "name": "tiny",
        "model": {"backbone": "test_efficientnet", "dim": 64, "input_size": [32, 32]},
        "optim": {"lr": 0.05, "warmup_epochs": 0.5},
        "data": {"cache_images": "always"},
        "train": {"epochs": 1, "batch_size": 8, "m_per_class": 2, "iterations_per_epoch": 2,
                  "num_workers": 0, "log_every": 1, "embed_batch_size": 16},
    }  # fmt: skip
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return validate_config(RetrievalModelConfig, data)


@pytest.fixture(scope="session")
def crops_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("crops")


@pytest.fixture(scope="session")
def train_crops(crops_dir: Path) -> pd.DataFrame:
    return make_crops(crops_dir, split="train")


@pytest.fixture(scope="session")
def val_crops(crops_dir: Path) -> pd.DataFrame:
    return make_crops(crops_dir, n_identities=4, split="validation", seed=1)
