"""The zero-shot embedder: backbone features, pooled and L2-normalised, with no head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clothes_retrieval.retrieval.config import ModelConfig
from clothes_retrieval.retrieval.embed import embed_crops
from clothes_retrieval.retrieval.model import (
    PooledBackbone,
    build_pooled_backbone,
    create_eval_transform,
)
from clothes_retrieval.retrieval.pooling import GeM


def _config(**overrides) -> ModelConfig:
    data = {
        "backbone": "tf_efficientnet_lite0",
        "weights": "none",
        "descriptors": ("spoc",),
        "dim": 1280,
        "input_size": (32, 32),
    }
    return ModelConfig(**(data | overrides))


@pytest.fixture(scope="module")
def model() -> PooledBackbone:
    torch.manual_seed(0)
    return build_pooled_backbone(_config())


def test_embed_is_the_normalised_spatial_mean(model: PooledBackbone) -> None:
    assert isinstance(model, PooledBackbone) and not model.training
    assert model.dim == model.backbone.num_features == 1280
    assert model.data_config["input_size"] == (3, 32, 32)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    emb = model.embed(x)
    assert emb.shape == (3, 1280) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    with torch.no_grad():
        expected = F.normalize(model.backbone(x).mean((2, 3)), dim=1)
    torch.testing.assert_close(emb, expected)
    assert model(x)[1] is None  # no classifier logits
    # the rows depend on the image: not a constant vector
    assert (emb[0] - emb[1]).abs().max() > 1e-4


def test_first_descriptor_is_the_pool() -> None:
    gem = build_pooled_backbone(_config(descriptors=("gem", "mac"), gem_p=4.0))
    assert isinstance(gem.pool, GeM) and float(gem.pool.p) == 4.0
    assert gem.dim == 1280  # ModelConfig.dim is not used


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("pooled")
    rng = np.random.default_rng(0)
    paths = []
    for k, (w, h) in enumerate([(40, 56), (48, 36)]):
        path = root / f"{k}.jpg"
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_works_with_embed_crops(model: PooledBackbone, photos: list[Path]) -> None:
    box = (4.0, 6.0, 30.0, 50.0)
    items = [(photos[0], None), (photos[1], None), (photos[0], box)]
    emb = embed_crops(model, items, batch_size=2, progress=False)
    assert emb.shape == (3, 1280) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)

    transform = create_eval_transform(model)
    with Image.open(photos[0]) as im:
        image = im.convert("RGB")
    x = torch.stack([transform(image), transform(image.crop((4, 6, 30, 50)))])
    np.testing.assert_allclose(emb[[0, 2]], model.embed(x).numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(emb[0], emb[2], atol=1e-4)  # the box changed the input
    assert embed_crops(model, [], progress=False).shape == (0, 1280)


def test_a_zero_shot_entry_trains_by_saving_its_pretrained_network(tmp_path: Path) -> None:
    """The retrieval stage "trains" a zero-shot registry entry by saving the pooled network;
    it then loads and embeds exactly like the network built directly."""
    from clothes_retrieval.retrieval import load_trained_model, train_retrieval_model
    from clothes_retrieval.retrieval.config import RetrievalModelConfig
    from clothes_retrieval.retrieval.embed import weights_are_finite

    config = RetrievalModelConfig(
        name="zs", zero_shot=True, model=_config(weights="efficientnet_lite")
    )
    # No crops at all: a zero-shot entry never reads them.
    result = train_retrieval_model(config, pd.DataFrame(), None, tmp_path / "zs")
    assert result.epochs == 0 and weights_are_finite(result.model_path)
    loaded, loaded_config = load_trained_model(tmp_path / "zs")
    assert isinstance(loaded, PooledBackbone) and loaded_config.zero_shot
    direct = build_pooled_backbone(config.model)
    image = tmp_path / "x.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(image)
    items = [(image, None), (image, (2.0, 3.0, 20.0, 30.0))]
    got = embed_crops(loaded, items, progress=False)
    want = embed_crops(direct, items, progress=False)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # pretrained, not random: the saved weights are the ImageNet ones
    random = build_pooled_backbone(_config())
    assert not np.allclose(embed_crops(random, items, progress=False), got, atol=1e-3)
