import numpy as np
import pytest
import torch

from clothes_retrieval.retrieval import ImageReadError, embed_crops, load_trained_model
from clothes_retrieval.retrieval.model import build_model
from clothes_retrieval.retrieval.train import train_retrieval_model

from .conftest import tiny_config


def test_embed_crops_shapes_norms_and_boxes(train_crops):
    model = build_model(tiny_config().model)
    items = [(p, None) for p in train_crops["crop_path"][:5]] + [
        (train_crops["crop_path"][0], (2, 3, 20, 30))
    ]
    emb = embed_crops(model, items, batch_size=4, progress=False)
    assert emb.shape == (6, 64) and emb.dtype == np.float32 and emb.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert embed_crops(model, [], progress=False).shape == (0, 64)


def test_unreadable_image_names_the_file(tmp_path, train_crops):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    model = build_model(tiny_config().model)
    with pytest.raises(ImageReadError, match="broken.jpg"):
        embed_crops(model, [(train_crops["crop_path"][0], None), (bad, None)], progress=False)
    with pytest.raises(ImageReadError, match="empty"):
        embed_crops(model, [(train_crops["crop_path"][0], (5, 5, 5, 9))], progress=False)


def test_load_trained_model_round_trip(train_crops, tmp_path):
    result = train_retrieval_model(tiny_config(), train_crops, None, tmp_path, progress=False)
    loaded, cfg = load_trained_model(tmp_path)
    assert cfg.name == "tiny" and not loaded.training
    items = [(p, None) for p in train_crops["crop_path"][:3]]
    result.model.eval()
    torch.testing.assert_close(
        torch.from_numpy(embed_crops(loaded, items, progress=False)),
        torch.from_numpy(embed_crops(result.model, items, progress=False)),
    )
    with pytest.raises(FileNotFoundError):
        load_trained_model(tmp_path / "nowhere")
