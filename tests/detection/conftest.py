"""Fixtures of the detection tests: a tiny synthetic DeepFashion2 sample as COCO files."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from clothes_retrieval.data.coco import export_coco
from clothes_retrieval.data.deepfashion2 import ReaderConfig, read_deepfashion2
from clothes_retrieval.data.sample import SampleDataConfig, generate_sample_data
from clothes_retrieval.detection.config import DetectorConfig, load_detector_config
from clothes_retrieval.detection.train import TrainResult, train_detector
from clothes_retrieval.tracking import NullTracker


@dataclass(frozen=True)
class TinyCoco:
    items: pd.DataFrame
    train_json: Path
    val_json: Path


@pytest.fixture(scope="session")
def tiny_coco(tmp_path_factory: pytest.TempPathFactory) -> TinyCoco:
    """A few 96-128 px images with boxes and polygon masks (22 train, 22 validation)."""
    root = tmp_path_factory.mktemp("tiny_df2")
    config = SampleDataConfig(
        seed=1,
        groups={"train": 4, "validation": 3},
        defects=0,
        consumer={"long_side": 128},
        shop={"long_side": 96},
    )
    generate_sample_data(config, root / "data")
    items = read_deepfashion2(root / "data", ReaderConfig(), progress=False).items
    train = export_coco(items, "train", root / "train.json").path
    val = export_coco(items, "validation", root / "validation.json").path
    return TinyCoco(items=items, train_json=train, val_json=val)


def _tiny_detector(name: str) -> DetectorConfig:
    """The sample profile, with a test score threshold of 0: after two iterations scores are
    still near their prior, and validation must have boxes for CocoMetric to report."""
    detector = load_detector_config(name)
    sample = detector.profiles.sample
    model = copy.deepcopy(sample.model)
    test_cfg = model.setdefault("test_cfg", {})
    final_stage = test_cfg.setdefault("rcnn", {}) if name == "cascade_mask_rcnn" else test_cfg
    final_stage["score_thr"] = 0.0
    profiles = detector.profiles.model_copy(
        update={"sample": sample.model_copy(update={"model": model})}
    )
    return detector.model_copy(update={"profiles": profiles})


def _train_tiny(
    name: str, tiny_coco: TinyCoco, work_dir: Path, *, validate: bool = True, **kwargs
) -> tuple[TrainResult, NullTracker]:
    """The sample profile on the tiny set, on the CPU, logging to a NullTracker.
    ``validate`` False: no validation loop (faster)."""
    tracker = NullTracker()
    result = train_detector(
        _tiny_detector(name),
        "sample",
        tiny_coco.train_json,
        tiny_coco.val_json if validate else None,
        work_dir,
        device="cpu",
        progress=False,
        tracker=tracker,
        cpu_threads=1,  # robust on cores shared with other busy processes
        **kwargs,
    )
    return result, tracker


@pytest.fixture(scope="session")
def atss_one_epoch(
    tiny_coco: TinyCoco, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainResult, NullTracker]:
    """ATSS trained one epoch (three iterations); the resume test continues it."""
    return _train_tiny("atss", tiny_coco, tmp_path_factory.mktemp("atss"), max_epochs=1)


# Epochs for ATSS to overfit the tiny training set: 18 iterations take AP on the training
# images from 0.002-0.04 (initial weights, depending on the head's random init) to ~0.29, in
# ~20 s on one core.
OVERFIT_EPOCHS = 6


@pytest.fixture(scope="session")
def atss_overfit(
    tiny_coco: TinyCoco, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainResult, NullTracker]:
    """ATSS trained OVERFIT_EPOCHS epochs on the training split, without validation: a
    detector that has learnt something (its scores separate boxes from background)."""
    return _train_tiny(
        "atss",
        tiny_coco,
        tmp_path_factory.mktemp("atss_overfit"),
        max_epochs=OVERFIT_EPOCHS,
        validate=False,
    )


@pytest.fixture(scope="session")
def train_tiny(tiny_coco: TinyCoco):
    """``train_tiny(name, work_dir, **train_detector_kwargs) -> (TrainResult, NullTracker)``."""

    def train(name: str, work_dir: Path, **kwargs) -> tuple[TrainResult, NullTracker]:
        return _train_tiny(name, tiny_coco, work_dir, **kwargs)

    return train
