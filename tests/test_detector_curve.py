"""scripts/detector_curve.py: its arguments (the training itself is train_detector's, tested
in tests/detection)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from clothes_retrieval.profile import load_profile
from clothes_retrieval.weights import detector_config

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "detector_curve.py"
spec = importlib.util.spec_from_file_location("detector_curve", SCRIPT)
curve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(curve)


def test_a_missing_coco_folder_is_named(tmp_path: Path, capsys) -> None:
    assert curve.main(["--coco", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c.csv")]) == 2
    assert "nowhere/train.json does not exist" in capsys.readouterr().err
    assert not (tmp_path / "c.csv").exists()


def test_set_replaces_fields_of_the_training_profile() -> None:
    config = detector_config(load_profile("configs/pipeline/sample.yaml"), "atss", check=False)
    changed = curve._with(config, "sample", ["lr=0.004", "input_size=[128, 128]"])
    assert changed.profiles.sample.lr == 0.004
    assert tuple(changed.profiles.sample.input_size) == (128, 128)
    assert changed.profiles.sample.epochs == config.profiles.sample.epochs
    assert changed.profiles.paper == config.profiles.paper
    assert config.profiles.sample.lr == 0.002  # the original is untouched
