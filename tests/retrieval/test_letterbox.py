"""ModelConfig.resize: letterbox pads a crop to the input's aspect ratio before resizing."""

import pickle

import pytest
import torch
from PIL import Image

from clothes_retrieval.config import ConfigError, validate_config
from clothes_retrieval.retrieval.config import AugmentConfig, ModelConfig
from clothes_retrieval.retrieval.model import (
    Letterbox,
    build_model,
    build_pooled_backbone,
    create_eval_transform,
    create_train_transform,
)


@pytest.mark.parametrize(
    ("image", "size", "expected", "offset"),
    [
        ((30, 90), (64, 64), (90, 90), (30, 0)),  # tall crop: padded left and right
        ((90, 30), (64, 64), (90, 90), (0, 30)),  # wide crop: padded top and bottom
        ((40, 40), (64, 32), (40, 80), (0, 20)),  # square crop into a tall (H 64, W 32) input
        ((50, 100), (64, 32), (50, 100), (0, 0)),  # already the input's shape: unchanged
    ],
)
def test_letterbox_pads_to_the_input_aspect_ratio(image, size, expected, offset):
    img = Image.new("RGB", image, (10, 200, 30))
    out = Letterbox(size, (255, 255, 255))(img)
    assert out.size == expected
    assert out.getpixel(offset) == (10, 200, 30)  # the content's corner, not moved or scaled
    if expected != image:
        assert out.getpixel((0, 0)) == (255, 255, 255)  # padding in the fill colour
    far_corner = (expected[0] - 1 - offset[0], expected[1] - 1 - offset[1])
    assert out.getpixel(far_corner) == (10, 200, 30)


def _stripe() -> Image.Image:
    """A tall red stripe: 20 px wide, 80 px high."""
    return Image.new("RGB", (20, 80), (255, 0, 0))


def test_letterbox_keeps_the_shape_squash_does_not():
    squash = build_model(ModelConfig(backbone="test_efficientnet", dim=32, input_size=(32, 32)))
    letter = build_model(
        ModelConfig(backbone="test_efficientnet", dim=32, input_size=(32, 32), resize="letterbox")
    )
    assert letter.resize == "letterbox" and squash.resize == "squash"
    x_squash = create_eval_transform(squash)(_stripe())
    x_letter = create_eval_transform(letter)(_stripe())
    assert x_squash.shape == x_letter.shape == (3, 32, 32)
    mean, std = squash.data_config["mean"], squash.data_config["std"]
    red = ((torch.tensor([1.0, 0.0, 0.0]) - torch.tensor(mean)) / torch.tensor(std))[:, None]
    is_red = lambda x: torch.isclose(x.flatten(1), red, atol=0.05).all(0).view(32, 32)  # noqa: E731
    assert is_red(x_squash).all()  # squashed: the stripe fills the whole input
    cols = is_red(x_letter).all(0)  # letterboxed: a quarter of the width, centred
    assert 6 <= int(cols.sum()) <= 10 and cols[16] and not cols[0] and not cols[-1]


def test_the_train_transform_letterboxes_too():
    model = build_model(
        ModelConfig(backbone="test_efficientnet", dim=32, input_size=(32, 32), resize="letterbox")
    )
    augment = AugmentConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, color_jitter=0.0)
    x = create_train_transform(model, augment)(_stripe())
    mean, std = model.data_config["mean"], model.data_config["std"]
    white = ((torch.ones(3) - torch.tensor(mean)) / torch.tensor(std))[:, None]
    assert torch.isclose(x[:, :, 0].reshape(3, -1), white, atol=0.05).all()  # padded side


def test_the_pooled_zero_shot_model_and_pickling():
    cfg = ModelConfig(
        backbone="test_efficientnet",
        input_size=(32, 32),
        descriptors=("spoc",),
        resize="letterbox",
        letterbox_fill=(0, 0, 0),
    )
    model = build_pooled_backbone(cfg)
    assert model.resize == "letterbox" and model.letterbox_fill == (0, 0, 0)
    transform = pickle.loads(pickle.dumps(create_eval_transform(model)))  # loader workers
    assert transform(_stripe()).shape == (3, 32, 32)


def test_bad_resize_settings_are_named():
    with pytest.raises(ConfigError, match="resize"):
        validate_config(ModelConfig, {"resize": "crop"}, source="test")
    with pytest.raises(ConfigError, match="letterbox_fill"):
        validate_config(ModelConfig, {"letterbox_fill": [0, 0, 300]}, source="test")
