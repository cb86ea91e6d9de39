"""Embedding crops with a trained model: N×D, row-major, L2-normalised float32."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from clothes_retrieval.config import validate_config
from clothes_retrieval.retrieval.config import RetrievalModelConfig
from clothes_retrieval.retrieval.data import Box, CropDataset
from clothes_retrieval.retrieval.model import (
    PooledBackbone,
    RetrievalModel,
    build_model,
    build_pooled_backbone,
    create_eval_transform,
)
from clothes_retrieval.retrieval.train import resolve_device

__all__ = ["embed_crops", "load_trained_model", "weights_are_finite"]


def load_trained_model(
    out_dir: str | Path, *, device: str | torch.device | None = None
) -> tuple[RetrievalModel | PooledBackbone, RetrievalModelConfig]:
    """The model in ``out_dir/model.pt`` (written by ``train_retrieval_model``), in eval mode,
    and its config (a zero-shot entry loads as its pooled backbone). The backbone's initial
    weights are not needed: the saved ones load."""
    path = Path(out_dir) / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no trained model at {path}: run train_retrieval_model first")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    config = validate_config(RetrievalModelConfig, saved["config"], source=str(path))
    if config.zero_shot:
        model = build_pooled_backbone(config.model, load_weights=False)
    else:
        model = build_model(
            config.model,
            saved["num_classes"] if config.loss.softmax.weight > 0 else 0,
            load_weights=False,
        )
    model.load_state_dict(saved["state_dict"])
    return model.to(resolve_device(device)).eval(), config


@torch.no_grad()
def embed_crops(
    model: RetrievalModel,
    items: Sequence[tuple[str | Path, Box | None]],
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """Embed each (image path, box or None) with the model's eval transform.

    Returns an (N, D) float32 array of L2-normalised rows, in the order of ``items``. An
    unreadable image or an empty box raises
    :class:`~clothes_retrieval.retrieval.data.ImageReadError` naming the file; skipping it
    is the caller's decision.
    """
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    model = model.to(dev).eval()
    dataset = CropDataset([(str(p), b) for p, b in items], None, create_eval_transform(model))
    if len(dataset) == 0:
        return np.zeros((0, model.dim), dtype=np.float32)
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=dev.type == "cuda"
    )
    amp = torch.autocast("cuda", dtype=torch.float16) if dev.type == "cuda" else nullcontext()
    out = np.empty((len(dataset), model.dim), dtype=np.float32)
    row = 0
    for images, _ in tqdm(loader, desc="embedding crops", disable=not progress, leave=False):
        with amp:
            emb = model.embed(images.to(dev, non_blocking=True))  # (B, D)
        emb = F.normalize(emb.float(), dim=1).cpu().numpy()  # re-normalise after fp16
        out[row : row + len(emb)] = emb
        row += len(emb)
    return out


def read_metrics(out_dir: str | Path) -> dict:
    """The metrics.json of a training run."""
    return json.loads((Path(out_dir) / "metrics.json").read_text())


def weights_are_finite(model_path: str | Path) -> bool:
    """True when every floating-point tensor of a saved model (``model.pt``) is finite: a
    diverged run (NaN or inf weights) must not be published."""
    state = torch.load(model_path, map_location="cpu", weights_only=True)["state_dict"]
    return all(torch.isfinite(t).all().item() for t in state.values() if t.is_floating_point())
