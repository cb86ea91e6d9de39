"""Detectors for another category set than DeepFashion2's (``classes=``), the optional
``real`` profile, and the category ids inference gives each class index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clothes_retrieval.config import ConfigError
from clothes_retrieval.data.schema import CATEGORIES
from clothes_retrieval.detection.config import CLASSES, build_mmdet_config, load_detector_config
from clothes_retrieval.detection.inference import _category_ids


def _build(name: str, tmp_path: Path, profile: str = "sample", **kwargs):
    return build_mmdet_config(
        load_detector_config(name),
        profile,
        train_json=tmp_path / "train.json",
        val_json=tmp_path / "val.json",
        work_dir=tmp_path / "work",
        **kwargs,
    )


def _all_num_classes(node: Any) -> list[int]:
    """Every ``num_classes`` value in a nested config."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "num_classes":
                found.append(v)
            else:
                found.extend(_all_num_classes(v))
    elif isinstance(node, list | tuple):
        for v in node:
            found.extend(_all_num_classes(v))
    return found


@pytest.mark.parametrize("name", ["atss", "cascade_mask_rcnn"])
def test_classes_set_every_num_classes(name: str, tmp_path: Path) -> None:
    cfg = _build(name, tmp_path, classes=["a", "b", "c"])
    found = _all_num_classes(cfg.to_dict()["model"])
    assert found and set(found) == {3}
    if name == "cascade_mask_rcnn":  # three bbox heads and a mask head
        assert len(found) >= 4
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        assert tuple(loader.dataset.metainfo["classes"]) == ("a", "b", "c")
    assert cfg.clothes_retrieval["classes"] == ["a", "b", "c"]
    assert cfg.clothes_retrieval["category_ids"] == [1, 2, 3]


def test_classes_build_an_mmdet_model(tmp_path: Path) -> None:
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import clothes_retrieval.detection.timm_backbone  # noqa: F401

    register_all_modules()
    cfg = _build("atss", tmp_path, classes=("a", "b", "c"))
    model = MODELS.build(cfg.model)
    assert model.bbox_head.num_classes == 3
    assert model.bbox_head.atss_cls.out_channels == 3 * model.bbox_head.num_base_priors


@pytest.mark.parametrize("classes", [("a", "b", "a"), ()], ids=["duplicate", "empty"])
def test_bad_classes_are_a_config_error(classes, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="classes: give distinct class names"):
        _build("atss", tmp_path, classes=classes)


def test_without_classes_it_stays_deepfashion2(tmp_path: Path) -> None:
    cfg = _build("cascade_mask_rcnn", tmp_path)
    assert set(_all_num_classes(cfg.to_dict()["model"])) == {13}
    assert tuple(cfg.train_dataloader.dataset.metainfo["classes"]) == CLASSES
    assert cfg.clothes_retrieval["classes"] == list(CATEGORIES.values())
    assert cfg.clothes_retrieval["category_ids"] == list(range(1, 14))


def test_real_profile(tmp_path: Path) -> None:
    atss = load_detector_config("atss")
    real = atss.profile("real")
    assert real.input_size == (384, 256) and real.epochs == 10
    cfg = _build("atss", tmp_path, profile="real", classes=("dress", "shoes"))
    assert cfg.train_cfg.max_epochs == real.epochs
    assert cfg.model.bbox_head.num_classes == 2

    centernet = load_detector_config("centernet")
    with pytest.raises(ConfigError, match=r"centernet: has no 'real' profile.*profiles\.real"):
        centernet.profile("real")
    with pytest.raises(ConfigError, match=r"profiles\.real"):
        _build("centernet", tmp_path, profile="real")
    assert centernet.profile("sample") is centernet.profiles.sample


def test_category_ids_recorded_by_training() -> None:
    cfg = {"clothes_retrieval": {"classes": ["a", "b"], "category_ids": [1, 2]}}
    ids = _category_ids(["a", "b"], cfg)
    assert ids.dtype == np.int64 and ids.tolist() == [1, 2]
    assert _category_ids(("a", "b"), cfg).tolist() == [1, 2]  # the model's meta: a tuple
    # recorded for other classes (or another order): not used, and a,b are not DF2 names
    with pytest.raises(ValueError, match="not DeepFashion2 categories"):
        _category_ids(["b", "a"], cfg)
    with pytest.raises(ValueError, match=r"\['a', 'b'\]"):
        _category_ids(["a", "b"])


def test_category_ids_of_deepfashion2_names(tmp_path: Path) -> None:
    names = [CATEGORIES[k] for k in (8, 1, 13)]
    assert _category_ids(names).tolist() == [8, 1, 13]
    assert _category_ids(CLASSES).tolist() == list(range(1, 14))
    assert _category_ids(CLASSES, {"clothes_retrieval": None}).tolist() == list(range(1, 14))
    # a config built by build_mmdet_config, as run_detector passes it
    cfg = _build("atss", tmp_path, classes=("skirt", "dress"))
    assert _category_ids(("skirt", "dress"), cfg).tolist() == [1, 2]
    df2 = _build("atss", tmp_path)
    assert _category_ids(CLASSES, df2).tolist() == list(range(1, 14))
