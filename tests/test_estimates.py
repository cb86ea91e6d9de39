"""Estimates on paper: measured counts against the built models and hand formulas."""

from __future__ import annotations

import gc
import math
import weakref
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from clothes_retrieval import estimates
from clothes_retrieval.config import validate_config
from clothes_retrieval.estimates import (
    DEEPFASHION2_TRAIN_IMAGES,
    DEEPFASHION2_TRAIN_ITEMS,
    DEEPFASHION2_VALIDATION_ITEMS,
    Device,
    count_flops,
    detector_training_images,
    estimate_profile,
    estimates_markdown,
    gpu_hours,
    measure_detector,
    measure_retrieval_model,
    retrieval_training_crops,
    saved_tensor_bytes,
    training_state_bytes,
)
from clothes_retrieval.profile import load_profile
from clothes_retrieval.retrieval.config import RetrievalModelConfig, get_model_config

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_PROFILE = ROOT / "configs" / "pipeline" / "sample.yaml"
# The sample profile cut to one detector (its CPU-sized ATSS) and its two retrieval models.
SMALL = {"detection": {"detectors": ["atss"], "profile": "sample"}}

torch.set_num_threads(1)  # tiny models on shared cores


@pytest.fixture(scope="module")
def atss():
    from clothes_retrieval.detection.config import load_detector_config

    return load_detector_config("atss")


@pytest.fixture(scope="module")
def lite0() -> RetrievalModelConfig:
    return get_model_config("sample_lite0_gem", ROOT / "configs" / "retrieval")


@pytest.fixture(scope="module")
def small_estimates() -> pd.DataFrame:
    return estimate_profile(load_profile(SAMPLE_PROFILE, SMALL), progress=False)


# --------------------------------------------------------------------------- counting


def test_conv_and_linear_flops_are_the_hand_formula() -> None:
    conv = torch.nn.Conv2d(3, 8, kernel_size=3, padding=1)
    x = torch.randn(2, 3, 16, 20)  # (B, C, H, W)
    flops, out = count_flops(lambda: conv(x))
    assert out.shape == (2, 8, 16, 20)
    assert flops == 2 * 2 * 8 * 16 * 20 * 3 * 3 * 3  # 2 · B · Cout · H · W · Cin · k²
    linear = torch.nn.Linear(5, 7)
    flops, _ = count_flops(lambda: linear(torch.randn(4, 5)))
    assert flops == 2 * 4 * 5 * 7  # 2 · B · in · out


def test_saved_bytes_count_a_storage_once_and_skip_the_excluded() -> None:
    x = torch.randn(10, requires_grad=True)  # 40 bytes, saved twice by x * x
    assert saved_tensor_bytes(lambda: (x * x).sum())[0] == 40
    assert saved_tensor_bytes(lambda: (x * x).sum(), exclude=[x])[0] == 0
    w = torch.randn(6, 5, requires_grad=True)
    inp = torch.randn(3, 6)  # 72 bytes: mm saves the input for the weight's gradient
    saved, _ = saved_tensor_bytes(lambda: (inp @ w).sum(), exclude=[w])
    assert saved == 3 * 6 * 4


def test_a_measured_graph_is_freed() -> None:
    """A tensor saved by its own op (sigmoid keeps its output) must not be kept alive by the
    measurement: a pack hook returning the tensor makes a cycle the GC cannot collect."""
    x = torch.randn(8, requires_grad=True)
    outputs = []

    def step() -> torch.Tensor:
        y = torch.sigmoid(x)
        outputs.append(weakref.ref(y))
        return y.sum()

    saved, loss = saved_tensor_bytes(step)
    assert saved == 32  # sigmoid saves its output (8 floats); sum saves no tensor
    del loss
    gc.collect()
    assert outputs[0]() is None
    with pytest.raises(RuntimeError, match="released"):
        saved_tensor_bytes(step)[1].backward()


def test_gpu_hours_formula_on_known_numbers() -> None:
    one = Device(name="unit", tflops=1.0, utilisation=1.0)
    assert gpu_hours(1e12, 3600, one) == pytest.approx(1.0)  # 1 TFLOP/s for an hour
    assert gpu_hours(1e12, 3600, one, passes=3) == pytest.approx(3.0)
    # 100 GFLOPs/img, DeepFashion2 train, 12 epochs on an A100 at 40 %:
    # 3 · 1e11 · 191,961 · 12 / (312e12 · 0.4 · 3600) = 1.538 GPU-hours
    a100 = Device()
    hours = gpu_hours(1e11, DEEPFASHION2_TRAIN_IMAGES * 12, a100, passes=3)
    assert hours == pytest.approx(3 * 1e11 * 191_961 * 12 / (312e12 * 0.4 * 3600))
    assert hours == pytest.approx(1.538, abs=0.001)
    assert a100.describe() == "A100 bf16 dense peak 312 TFLOPS at 40 % utilisation"
    with pytest.raises(ValueError, match="utilisation"):
        Device(utilisation=0.0)


def test_training_state_bytes() -> None:
    assert training_state_bytes(10, 10, "sgd", 0.9) == 4 * 10 * 3
    assert training_state_bytes(10, 10, "adamw", 0.9) == 4 * 10 * 4
    assert training_state_bytes(10, 4, "sgd", 0.0) == 4 * (10 + 4)  # frozen: weights only


# --------------------------------------------------------------------------- measuring


def test_detector_params_are_those_of_the_built_model(atss, tmp_path: Path) -> None:
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    from clothes_retrieval.detection.config import build_mmdet_config

    register_all_modules()
    cfg = build_mmdet_config(
        atss, "sample", train_json=tmp_path / "t.json", val_json=None, work_dir=tmp_path
    )
    built = MODELS.build(cfg.model)
    m = measure_detector(atss, "sample")
    assert m.params == sum(p.numel() for p in built.parameters())
    assert 0 < m.trainable <= m.params
    assert m.inference_flops > 0 and m.train_forward_flops > 0


def test_retrieval_params_are_those_of_the_built_model(lite0: RetrievalModelConfig) -> None:
    from clothes_retrieval.retrieval.model import build_model

    m = measure_retrieval_model(lite0)  # no identities: no classifier, no centres
    assert m.params == sum(
        p.numel() for p in build_model(lite0.model, load_weights=False).parameters()
    )
    with_classes = measure_retrieval_model(lite0, identities=50)
    classifier = build_model(lite0.model, 50, load_weights=False)
    centres = 50 * lite0.model.dim
    assert with_classes.params == sum(p.numel() for p in classifier.parameters()) + centres


def test_retrieval_inference_flops_are_the_backbone_and_projection(lite0) -> None:
    import timm

    m = measure_retrieval_model(lite0)
    backbone = timm.create_model(lite0.model.backbone, pretrained=False, num_classes=0)
    h, w = lite0.model.input_size
    with torch.no_grad():
        reference, _ = count_flops(lambda: backbone.forward_features(torch.randn(1, 3, h, w)))
    projection = 2 * backbone.num_features * lite0.model.dim
    assert m.inference_flops == pytest.approx(reference + projection, rel=1e-6)


def test_detector_activations_scale_with_batch(atss) -> None:
    one, two = (measure_detector(atss, "sample", batch=b) for b in (1, 2))
    assert one.saved_bytes_per_image > 0
    assert two.saved_bytes_per_image == pytest.approx(one.saved_bytes_per_image, rel=0.10)


def test_retrieval_activations_scale_with_batch(lite0) -> None:
    two, four = (measure_retrieval_model(lite0, batch=b) for b in (2, 4))
    assert two.saved_bytes_per_image > 0
    assert four.saved_bytes_per_image == pytest.approx(two.saved_bytes_per_image, rel=0.10)
    with pytest.raises(ValueError, match="batch >= 2"):
        measure_retrieval_model(lite0, batch=1)


# --------------------------------------------------------------------------- data sizes


def _config(**data) -> RetrievalModelConfig:
    return validate_config(RetrievalModelConfig, {"name": "x", "data": data})


def test_training_crops_follow_the_sources_and_splits() -> None:
    assert retrieval_training_crops(_config()) == DEEPFASHION2_TRAIN_ITEMS
    both = _config(training_sources=["deepfashion2", "darn"])
    assert retrieval_training_crops(both) == DEEPFASHION2_TRAIN_ITEMS + 182_780
    m7 = _config(train_splits=["train", "validation"])
    assert retrieval_training_crops(m7) == DEEPFASHION2_TRAIN_ITEMS + DEEPFASHION2_VALIDATION_ITEMS
    weighted = _config(training_sources=["deepfashion2", "mpv"], source_weights={"mpv": 2})
    assert retrieval_training_crops(weighted) == DEEPFASHION2_TRAIN_ITEMS + 2 * 50_290
    with pytest.raises(ValueError, match="no published size for dataset 'ccp'"):
        retrieval_training_crops(_config(training_sources=["ccp"]))


def test_detectors_train_on_deepfashion2_train() -> None:
    assert detector_training_images(load_profile(SAMPLE_PROFILE, SMALL)) == 191_961


# --------------------------------------------------------------------------- the table


def test_one_row_per_asset_and_a_total(small_estimates: pd.DataFrame) -> None:
    df = small_estimates
    assert list(df["asset"]) == [
        "detector/atss",
        "model/sample_lite0_gem",
        "model/sample_lite0_gem_mac",
    ]
    text = estimates_markdown(df, title="sample")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 3 + 1  # header, one per asset, total
    for asset in df["asset"]:
        assert sum(f"| {asset} |" in row for row in rows) == 1
    assert rows[-1].startswith("| **total** |")
    assert "measured at batch 1 / 2, scaled" in rows[0]
    assert "A100 bf16 dense peak 312 TFLOPS at 40 % utilisation" in text
    total = float(rows[-1].split("|")[12].strip(" *").replace(",", ""))
    assert total == pytest.approx(df["train_gpu_h"].sum(), rel=0.01)  # three digits shown


def test_rows_follow_the_configs(small_estimates: pd.DataFrame) -> None:
    from clothes_retrieval.detection.config import load_detector_config

    det, gem = small_estimates.iloc[0], small_estimates.iloc[1]
    atss = load_detector_config("atss").profiles.sample
    long_side, short_side = atss.input_size  # shown as H×W: the short side is the height
    assert det["input"] == f"{short_side}×{long_side}"
    assert det["epochs"] == atss.epochs and det["batch"] == atss.batch_size
    assert det["train_images"] == DEEPFASHION2_TRAIN_IMAGES
    assert gem["input"] == "112×112" and gem["epochs"] == 8 and gem["batch"] == 32
    assert gem["train_images"] == DEEPFASHION2_TRAIN_ITEMS // 32 * 32  # whole batches
    expected = gpu_hours(gem["train_gflops"] * 1e9, gem["train_images"] * 8, Device(), passes=3)
    assert gem["train_gpu_h"] == pytest.approx(expected)
    assert gem["activation_gb"] > 0 and not math.isnan(gem["state_gb"])


def test_identical_architectures_are_measured_once(tmp_path: Path, monkeypatch) -> None:
    registry = tmp_path / "registry"
    registry.mkdir()
    base = yaml.safe_load((ROOT / "configs" / "retrieval" / "sample.yaml").read_text())
    base["models"] = {
        "a": {"model": {"descriptors": ["gem"]}},
        "b": {"model": {"descriptors": ["gem"]}, "optim": {"lr": 0.01}},  # same architecture
    }
    (registry / "r.yaml").write_text(yaml.safe_dump(base))
    overrides = {
        "detection": {"detectors": []},
        "retrieval": {"registry": str(registry), "models": ["a", "b"]},
        "search": {
            "box_sources": ["gt"],
            "ensembles": {"_delete_": True},
            "publish": None,
            "paper_reference": {"_delete_": True},
        },
    }
    profile = load_profile(SAMPLE_PROFILE, overrides)
    calls = []
    real = estimates.measure_retrieval_model
    monkeypatch.setattr(
        estimates, "measure_retrieval_model", lambda *a, **k: calls.append(a) or real(*a, **k)
    )
    df = estimate_profile(profile, device_tflops=100.0, utilisation=0.5, progress=False)
    assert len(calls) == 1 and len(df) == 2
    assert df["train_gpu_h"].iloc[0] == pytest.approx(df["train_gpu_h"].iloc[1])
    assert df.attrs["device"] == "device peak 100 TFLOPS at 50 % utilisation"
