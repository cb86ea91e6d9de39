import pytest
import timm
import torch
from timm.data import resolve_model_data_config

from clothes_retrieval.retrieval.backbone import create_backbone, efficientnet_lite_weight_file
from clothes_retrieval.retrieval.config import ModelConfig
from clothes_retrieval.retrieval.model import build_model, create_eval_transform


def test_random_backbone_returns_a_feature_map():
    model = create_backbone("test_efficientnet")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, model.num_features, 1, 1)


def test_weights_from_a_local_file(tmp_path):
    torch.manual_seed(0)
    source = timm.create_model("test_resnet", pretrained=False)  # with its classifier
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    loaded = create_backbone("test_resnet", weights="file", weights_path=path).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source.eval().forward_features(x))
    with pytest.raises(FileNotFoundError):
        create_backbone("test_resnet", weights="file", weights_path=tmp_path / "missing.pth")


def test_efficientnet_lite0_logits_equal_the_reference_implementation():
    """The package's reference model and timm with the same tensors give identical logits."""
    from efficientnet_lite_pytorch import EfficientNet

    path = efficientnet_lite_weight_file("tf_efficientnet_lite0")
    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path)).eval()
    features = create_backbone("tf_efficientnet_lite0", weights="efficientnet_lite").eval()
    full = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    full.load_state_dict(features.state_dict(), strict=False)  # all but the classifier ...
    state = torch.load(path, map_location="cpu", weights_only=True)
    full.classifier.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    full.eval()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = full(x), reference(x)
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()
    with torch.no_grad():  # and the feature extractor is that network's trunk
        torch.testing.assert_close(features(x), full.forward_features(x), rtol=0, atol=0)


def test_lite_preprocessing_scales_to_minus_one_one():
    model = build_model(
        ModelConfig(backbone="tf_efficientnet_lite0", dim=64, input_size=(48, 40)), num_classes=0
    )
    cfg = resolve_model_data_config(model.backbone)
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["std"] == (0.5, 0.5, 0.5)
    assert model.data_config["input_size"] == (3, 48, 40)
    from PIL import Image

    white = create_eval_transform(model)(Image.new("RGB", (100, 70), (255, 255, 255)))
    black = create_eval_transform(model)(Image.new("RGB", (100, 70), (0, 0, 0)))
    assert white.shape == (3, 48, 40)
    assert torch.allclose(white, torch.ones_like(white)) and torch.allclose(
        black, -torch.ones_like(black)
    )


def test_lite_weights_only_for_lite_backbones():
    with pytest.raises(ValueError, match="efficientnet_lite"):
        ModelConfig(backbone="resnet18", weights="efficientnet_lite")
