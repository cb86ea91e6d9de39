"""Training-loop efficiency of the retrieval trainer against the bare model step.

Reference, measured in the same run: the same model and loss (``_TrainingModule``: backbone
+ CGD head + softmax/center/triplet/MS with their miners) doing forward + backward +
optimizer step on one fixed batch already in memory, at the same batch size. Ours:
``train_retrieval_model`` on crops generated into a temporary folder (JPEG decode, cache,
class-balanced sampling, augmentation, logging, progress bar, per-epoch checkpoint), timed
over its training iterations after the first epoch (both sides skip warm-up). The bare
reference is timed before and after our run and the faster is used (the machine is shared;
this errs against us).

Also prints embedding throughput (``embed_crops`` from JPEG files) vs the bare forward pass.

Prints as its last line: ``training efficiency: X.XX`` (ours / bare; target >= 0.8).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from clothes_retrieval.config import validate_config
from clothes_retrieval.retrieval import embed_crops, train_retrieval_model
from clothes_retrieval.retrieval.config import RetrievalModelConfig
from clothes_retrieval.retrieval.losses import RetrievalLoss
from clothes_retrieval.retrieval.model import build_model
from clothes_retrieval.retrieval.train import _build_optimizer, _TrainingModule


def make_crops(
    root: Path, identities: int, per_identity: int, size: tuple[int, int]
) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for ident in range(identities):
        base = rng.integers(0, 256, 3)
        for j in range(per_identity):
            img = (base + rng.normal(0, 30, (size[0], size[1], 3))).clip(0, 255).astype(np.uint8)
            path = root / f"{ident:04d}_{j}.jpg"
            Image.fromarray(img).save(path, quality=90)
            rows.append(
                {
                    "crop_path": str(path),
                    "label": ident,
                    "split": "train",
                    "identity": f"deepfashion2/train/{ident}/1",
                    "source": "user" if j % 2 == 0 else "shop",
                }
            )
    return pd.DataFrame(rows)


def bare_images_per_s(cfg: RetrievalModelConfig, num_classes: int, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model(cfg.model, num_classes)
    module = _TrainingModule(model, RetrievalLoss(cfg.loss, num_classes, cfg.model.dim)).train()
    optimizer = _build_optimizer(cfg, module)
    b, m = cfg.train.batch_size, cfg.train.m_per_class
    x = torch.randn(b, 3, *cfg.model.input_size)  # (B, 3, H, W), in memory
    y = torch.arange(b // m).repeat_interleave(m)  # class-balanced labels

    def step() -> None:
        out = module(x, y)
        optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 10.0)
        optimizer.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * b / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=96, help="input height = width")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--identities", type=int, default=48)
    parser.add_argument("--per-identity", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3, help="the first is warm-up")
    parser.add_argument("--iterations", type=int, default=6, help="per epoch")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = validate_config(
        RetrievalModelConfig,
        {
            "name": "benchmark",
            "model": {"backbone": args.backbone, "dim": 512, "input_size": [args.size, args.size]},
            "optim": {"lr": 0.05, "warmup_epochs": 1.0},
            "data": {"cache_images": "auto"},
            "train": {
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "m_per_class": 2,
                "iterations_per_epoch": args.iterations,
                "num_workers": args.workers,
            },
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        crops = make_crops(
            Path(tmp) / "crops",
            args.identities,
            args.per_identity,
            (args.size * 3 // 2, args.size * 5 // 4),
        )
        steps = (args.epochs - 1) * args.iterations
        bare_before = bare_images_per_s(cfg, args.identities, steps)
        result = train_retrieval_model(cfg, crops, None, Path(tmp) / "run", progress=False)
        bare_after = bare_images_per_s(cfg, args.identities, steps)
        timed = result.history[1:]
        ours = sum(r["images"] for r in timed) / sum(r["train_time_s"] for r in timed)
        bare = max(bare_before, bare_after)  # conservative: the faster of the two

        model = result.model.eval()
        items = [(p, None) for p in crops["crop_path"]]
        embed_crops(model, items[: args.batch_size], batch_size=args.batch_size, progress=False)
        t0 = time.perf_counter()
        embed_crops(model, items, batch_size=args.batch_size, progress=False)
        embed_ours = len(items) / (time.perf_counter() - t0)
        x = torch.randn(args.batch_size, 3, args.size, args.size)
        model.embed(x)
        t0 = time.perf_counter()
        n_batches = max(1, len(items) // args.batch_size)
        for _ in range(n_batches):
            model.embed(x)
        embed_bare = n_batches * args.batch_size / (time.perf_counter() - t0)

    print(
        f"backbone {args.backbone}, {args.size}x{args.size}, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads, {args.workers} loader workers, "
        f"{len(crops)} crops"
    )
    print(
        f"bare forward+backward+step: {bare:.1f} img/s "
        f"(before {bare_before:.1f}, after {bare_after:.1f})"
    )
    print(f"training loop:              {ours:.1f} img/s")
    print(
        f"embedding: embed_crops {embed_ours:.1f} img/s vs bare forward {embed_bare:.1f} img/s "
        f"(ratio {embed_ours / embed_bare:.2f})"
    )
    print(f"training efficiency: {ours / bare:.2f}")


if __name__ == "__main__":
    main()
