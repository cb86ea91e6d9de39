"""Pretrained weights from local files: what a profile needs, the missing ones named before
anything trains, random said explicitly, and the resolved configs the assets train with."""

from pathlib import Path

import pytest

from clothes_retrieval.cli import main
from clothes_retrieval.config import ConfigError
from clothes_retrieval.profile import load_profile
from clothes_retrieval.weights import (
    MissingWeightsError,
    check_weights,
    declared_needs,
    detector_config,
    model_config,
    weights_table,
)

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "configs" / "pipeline" / "deepfashion2.yaml"
SMOKE = REPO / "configs" / "pipeline" / "deepfashion2_smoke.yaml"
SAMPLE = REPO / "configs" / "pipeline" / "sample.yaml"
FILES = {
    "resnet152d": "resnet152d_ra2-5cac0439.pth",
    "seresnext101_32x4d": "gluon_seresnext101_32x4d-cf52900d.pth",
    "resnet101": "resnet101-63fe2227.pth",
    "resnext101_64x4d": "resnext101_64x4d-ee2c6f71.pth",
}


def _paper(weights_dir: Path, **backbones: str):
    weights = {"_delete_": True, "dir": str(weights_dir), "backbones": {**FILES, **backbones}}
    return load_profile(PAPER, {"weights": weights})


def test_the_paper_profile_needs_each_backbone_by_the_assets_that_use_it(tmp_path) -> None:
    needs = {n.asset: n for n in declared_needs(_paper(tmp_path))}
    assert {n.backbone for a, n in needs.items() if a.startswith("detector/")} == {
        "resnet101",
        "resnext101_64x4d",
    }
    assert needs["detector/retinanet_x101"].backbone == "resnext101_64x4d"
    assert needs["detector/centernet"].backbone == "resnet101"  # depth 101 over the R-50 base
    assert needs["model/m9"].backbone == "seresnext101_32x4d"
    assert {needs[f"model/m{i}"].backbone for i in range(18) if i != 9} == {"resnet152d"}
    assert needs["model/m0"].path == tmp_path / FILES["resnet152d"]


def test_missing_files_are_all_named_with_their_users_before_training(tmp_path) -> None:
    (tmp_path / FILES["resnet152d"]).write_bytes(b"x" * 10)
    profile = _paper(tmp_path)
    with pytest.raises(MissingWeightsError) as err:
        check_weights(profile)
    message = str(err.value)
    assert "3 pretrained weight file(s) missing" in message
    for backbone in ("seresnext101_32x4d", "resnet101", "resnext101_64x4d"):
        assert str(tmp_path / FILES[backbone]) in message
    assert str(tmp_path / FILES["resnet152d"]) not in message  # present: not reported
    assert "detector/atss, detector/cascade_mask_rcnn, detector/centernet" in message
    assert "(needed by model/m9)" in message
    with pytest.raises(MissingWeightsError, match="detector/atss"):
        detector_config(profile, "atss")  # the asset refuses too
    model_config(profile, "m0")  # its own file is there


def test_an_undeclared_backbone_fails_the_profile_and_random_must_be_said(tmp_path) -> None:
    weights = {"_delete_": True, "dir": str(tmp_path), "backbones": {"resnet152d": "random"}}
    with pytest.raises(ConfigError) as err:
        load_profile(PAPER, {"weights": weights})
    message = str(err.value)
    assert "no pretrained weights declared for" in message
    assert "resnet101 (detector/atss, detector/cascade_mask_rcnn" in message
    assert "seresnext101_32x4d (model/m9)" in message
    assert "random" in message


def test_resolved_configs_carry_the_file_or_random(tmp_path) -> None:
    for file in FILES.values():
        (tmp_path / file).write_bytes(b"weights")
    profile = _paper(tmp_path, resnext101_64x4d="random")
    assert check_weights(profile)  # nothing missing
    atss = detector_config(profile, "atss").profile("paper")
    assert atss.backbone_weights == str(tmp_path / FILES["resnet101"])
    assert detector_config(profile, "retinanet_x101").profile("paper").backbone_weights is None
    m9 = model_config(profile, "m9").model
    assert (m9.weights, m9.weights_path) == ("file", str(tmp_path / FILES["seresnext101_32x4d"]))
    rows = {r["backbone"]: r for r in weights_table(profile)}
    assert rows["resnext101_64x4d"]["file"] == "random"
    assert rows["resnet101"]["status"] == "ok" and rows["resnet101"]["size_mb"] == 7e-6
    assert len(rows["resnet152d"]["used_by"]) == 17


def test_the_sample_uses_its_own_package_weights_and_the_smoke_says_random() -> None:
    sample = load_profile(SAMPLE)
    assert {n.source for n in check_weights(sample)} == {"config"}
    smoke = check_weights(load_profile(SMOKE))
    assert {n.source for n in smoke} == {"random"}
    assert detector_config(load_profile(SMOKE), "atss").profile("paper").backbone_weights is None


def test_weights_command_lists_files_and_fails_when_one_is_missing(tmp_path, capsys) -> None:
    (tmp_path / FILES["resnet101"]).write_bytes(b"w" * 2_000_000)
    args = ["weights", "--profile", str(PAPER), "--set", f"weights.dir={tmp_path}"]
    assert main(args) == 1
    out = capsys.readouterr()
    assert "ok      resnet101" in out.out and "size 2.0 MB" in out.out
    assert "MISSING resnet152d" in out.out and "model/m17" in out.out
    assert "3 file(s) missing" in out.err
    assert main(["weights", "--profile", str(SAMPLE)]) == 0
