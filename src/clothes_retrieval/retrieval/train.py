"""Training a retrieval model on a crops table (single process, or DDP under torchrun).

``train_retrieval_model`` reads top to bottom: select the training crops, build the model
and loss, optimizer and schedule, resume from ``out_dir/last.pt`` when present, then per
epoch: class-balanced batches -> forward (autocast on CUDA) -> backward -> clip -> step;
validation Recall@1 / MAP@R (see :mod:`~clothes_retrieval.retrieval.metrics`); checkpoint.

Outputs (rank 0 only, each written atomically)::

    out_dir/config.json    the resolved RetrievalModelConfig
    out_dir/last.pt        model, loss (class centres), optimizer, scheduler, scaler, epoch,
                           RNG states, history, tracker run id; rewritten every epoch
    out_dir/model.pt       final weights + config (see embed.load_trained_model)
    out_dir/metrics.json   TrainResult without the model

A resumed run ends in the same state as an uninterrupted one: an epoch's batches and each
sample's augmentation are seeded by (seed, epoch) (see sampler.py), and the RNG states the
model itself uses are restored.

Tracking (:mod:`clothes_retrieval.tracking`, W&B offline by default, into ``out_dir``): the
resolved config, every ``log_every`` iterations the running losses and LR, per epoch the
epoch's losses, speed and validation Recall@1 / MAP@R (``val/*``); at the end the final
numbers, ``model.pt`` + ``config.json`` + ``metrics.json`` as an artifact of type ``model``
and, given ``data_version``, the training crops' version as an artifact of type
``dataset`` (``retrieval_crops``). ``TrainResult.tracking`` says where the run is.

DDP: under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1) the process group is
initialised here (nccl on GPU, gloo on CPU) unless the caller did it. Each rank takes its
slice of every global class-balanced batch; the model *and* the loss (whose class centres
are parameters) are wrapped together so every gradient is all-reduced. ``batch_size`` is
per process. Only rank 0 validates, logs and writes files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from clothes_retrieval.config import dump_config
from clothes_retrieval.io import atomic_path, write_json
from clothes_retrieval.retrieval.config import RetrievalModelConfig
from clothes_retrieval.retrieval.data import CropDataset, crop_datasets, estimate_cache_bytes
from clothes_retrieval.retrieval.losses import LossOutput, RetrievalLoss
from clothes_retrieval.retrieval.metrics import retrieval_metrics
from clothes_retrieval.retrieval.model import (
    RetrievalModel,
    build_model,
    build_pooled_backbone,
    create_eval_transform,
    create_train_transform,
)
from clothes_retrieval.retrieval.sampler import ClassBalancedSampler
from clothes_retrieval.tracking import NullTracker, Tracker, artifact_name, create_tracker

__all__ = ["TrainResult", "prepare_training_crops", "train_retrieval_model", "resolve_device"]

log = logging.getLogger(__name__)

TRACKER_PROJECT = "clothes-retrieval"
DATA_ARTIFACT = "retrieval_crops"  # the dataset artifact's name: what the crops table is
REQUIRED_COLUMNS = ("crop_path", "label", "split", "identity", "source")


@dataclass
class TrainResult:
    """What a training run produced; ``to_json()`` is what metrics.json holds."""

    out_dir: str
    epochs: int
    train_losses: dict[str, float]  # last epoch's mean of each weighted loss part and the total
    val_recall_at_1: float | None  # last epoch's; None when validation had no valid query
    val_map_at_r: float | None
    train_images_per_s: float  # all processes together, training iterations only
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch
    model_path: str = ""
    # The W&B run (id, mode, dir, url; plain data), None when tracking is disabled.
    tracking: dict[str, str | None] | None = None
    model: RetrievalModel | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("model")
        return out


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else cuda when available, else cpu."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def prepare_training_crops(config: RetrievalModelConfig, crops: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``crops`` that ``config`` trains on, with ``label`` = a dense id of
    ``identity`` (labels are per split in the crops table; identities are unique across
    splits and datasets, so train + validation (m7) or several sources mix safely)."""
    _check_columns(crops, "training crops")
    datasets = crop_datasets(crops)
    missing = sorted(set(config.data.training_sources) - set(datasets))
    if missing:
        raise ValueError(
            f"config {config.name!r} trains on {missing}, but the training crops hold only "
            f"{sorted(set(datasets))}: add their crops or change data.training_sources"
        )
    keep = datasets.isin(config.data.training_sources) & crops["split"].astype(str).isin(
        config.data.train_splits
    )
    table = crops.loc[keep].reset_index(drop=True)
    if table.empty:
        raise ValueError(f"no training crops in splits {list(config.data.train_splits)}")
    weights = config.data.source_weights
    if weights:
        repeats = crop_datasets(table).map(lambda d: weights.get(d, 1)).to_numpy()
        table = table.loc[table.index.repeat(repeats)].reset_index(drop=True)
    table["label"] = np.unique(table["identity"].astype(str).to_numpy(), return_inverse=True)[1]
    return table


def train_retrieval_model(
    config: RetrievalModelConfig,
    train_crops: pd.DataFrame,
    val_crops: pd.DataFrame | None,
    out_dir: str | Path,
    *,
    device: str | torch.device | None = None,
    tracker: Tracker | None = None,
    progress: bool = True,
    data_version: str | None = None,
) -> TrainResult:
    """Train (or resume) the model of ``config`` and write it to ``out_dir``; a zero-shot
    entry (``config.zero_shot``) is saved as its pretrained pooled backbone, untrained.

    ``tracker``: log to this one (finished here) instead of a new run in ``out_dir``.
    ``data_version``: the crops' version (e.g. their DVC hash), logged as an artifact."""
    out_dir = Path(out_dir)
    if config.zero_shot:
        return save_zero_shot_model(config, out_dir)
    ctx = _setup_distributed(device)
    is_main = ctx.rank == 0
    cfg, tc = config, config.train

    # -- data ------------------------------------------------------------------------------
    table = prepare_training_crops(cfg, train_crops)
    num_classes = int(table["label"].max()) + 1
    _seed_everything(tc.seed)

    # -- model, loss, optimizer, schedule ----------------------------------------------------
    model = build_model(cfg.model, num_classes if cfg.loss.softmax.weight > 0 else 0)
    loss_fn = RetrievalLoss(cfg.loss, num_classes, cfg.model.dim)
    module = _TrainingModule(model, loss_fn).to(ctx.device)
    optimizer = _build_optimizer(cfg, module)
    sampler = ClassBalancedSampler(
        table["label"].to_numpy(),
        tc.m_per_class,
        tc.batch_size,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        seed=tc.seed,
        iterations=tc.iterations_per_epoch,
    )
    iters_per_epoch = sampler.iterations
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(cfg, iters_per_epoch * tc.epochs, iters_per_epoch)
    )
    use_amp = tc.amp and ctx.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    # -- resume ------------------------------------------------------------------------------
    resolved = dump_config(cfg)
    start_epoch, history, run_id = 0, [], None
    checkpoint_path = out_dir / "last.pt"
    if checkpoint_path.is_file():
        ckpt = torch.load(
            checkpoint_path, map_location=ctx.device, weights_only=False
        )  # our own file
        if ckpt["config"] != resolved:
            raise ValueError(
                f"{checkpoint_path} belongs to a run with a different config; use another "
                "out_dir or delete it to start afresh"
            )
        module.load_state_dict(ckpt["module"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        _set_rng_state(ckpt["rng"])
        start_epoch, history, run_id = ckpt["epoch"], ckpt["history"], ckpt["tracker_run_id"]
        log.info("resuming %s from epoch %d (%s)", cfg.name, start_epoch, checkpoint_path)
    finished = out_dir / "metrics.json"
    if start_epoch >= tc.epochs and finished.is_file() and (out_dir / "model.pt").is_file():
        # A finished run: nothing to train, nothing to rewrite (no data is even decoded).
        log.info("%s: already trained (%d epochs) in %s", cfg.name, start_epoch, out_dir)
        if ctx.created_group:
            dist.destroy_process_group()
        return TrainResult(**json.loads(finished.read_text()), model=model)

    if is_main:
        write_json(out_dir / "config.json", resolved)
    if tracker is None:
        tracker = (
            create_tracker(TRACKER_PROJECT, cfg.name, resolved, directory=out_dir, resume_id=run_id)
            if is_main
            else NullTracker()
        )
    run_id = getattr(tracker, "id", run_id)
    train_module: nn.Module = module
    if ctx.world_size > 1:
        train_module = DistributedDataParallel(
            module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )

    # -- datasets (decoded once and cached in memory when they fit) --------------------------
    train_set = _dataset(
        cfg,
        table,
        model,
        create_train_transform(model, cfg.data.augment),
        cfg.data.cache_scale,
        progress and is_main,
        "caching train crops",
    )
    val_table = None
    val_set = None
    if is_main and val_crops is not None and len(val_crops):
        _check_columns(val_crops, "validation crops")
        val_table = val_crops.reset_index(drop=True)
        val_set = _dataset(
            cfg,
            val_table,
            model,
            create_eval_transform(model),
            1.0,
            progress,
            "caching validation crops",
        )
    loader = DataLoader(
        train_set,
        batch_size=tc.batch_size,
        sampler=sampler,
        num_workers=tc.num_workers,
        persistent_workers=tc.num_workers > 0,
        pin_memory=ctx.device.type == "cuda",
        drop_last=True,
    )

    # -- epochs ------------------------------------------------------------------------------
    autocast = torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext()
    for epoch in range(start_epoch, tc.epochs):
        sampler.set_epoch(epoch)
        train_module.train()
        sums: dict[str, torch.Tensor] = {}
        n_batches, n_images = 0, 0
        t0 = time.perf_counter()
        bar = tqdm(
            loader,
            desc=f"{cfg.name} epoch {epoch + 1}/{tc.epochs}",
            disable=not (progress and is_main),
            leave=False,
        )
        for images, labels in bar:
            images = images.to(ctx.device, non_blocking=True)  # (B, 3, H, W)
            labels = labels.to(ctx.device, non_blocking=True)  # (B,)
            with autocast:
                out: LossOutput = train_module(images, labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(out.total).backward()
            if cfg.optim.grad_clip_norm is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(module.parameters(), cfg.optim.grad_clip_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            for key, value in {"loss": out.total, **out.parts}.items():
                sums[key] = sums.get(key, 0) + value.detach()
            n_batches += 1
            n_images += images.shape[0] * ctx.world_size
            step = epoch * iters_per_epoch + n_batches
            if step % tc.log_every == 0 and is_main:
                current = {f"train/{k}": float(v) / n_batches for k, v in sums.items()}
                tracker.log({**current, "train/lr": scheduler.get_last_lr()[0]}, step=step)
                bar.set_postfix(loss=f"{current['train/loss']:.4f}")
        train_time = time.perf_counter() - t0
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_time_s": train_time,
            "images": n_images,
        }
        record.update({k: float(v) / max(n_batches, 1) for k, v in sums.items()})
        record["images_per_s"] = n_images / train_time if train_time > 0 else float("nan")
        if is_main and val_set is not None and val_table is not None:
            emb = _embed_dataset(model, val_set, tc.embed_batch_size, ctx.device, use_amp)
            metrics = retrieval_metrics(emb, val_table)
            if metrics is not None:
                record.update(val_recall_at_1=metrics.recall_at_1, val_map_at_r=metrics.map_at_r)
        history.append(record)
        if is_main:
            tracker.log(
                {
                    ("train/" if not k.startswith("val_") else "val/") + k.removeprefix("val_"): v
                    for k, v in record.items()
                    if k != "epoch"
                },
                step=(epoch + 1) * iters_per_epoch,
            )
            log.info(
                "%s epoch %d/%d: %s",
                cfg.name,
                epoch + 1,
                tc.epochs,
                {k: round(v, 4) for k, v in record.items() if isinstance(v, float)},
            )
            _save_checkpoint(
                checkpoint_path,
                module,
                optimizer,
                scheduler,
                scaler,
                epoch + 1,
                history,
                run_id,
                resolved,
            )
        if ctx.world_size > 1:
            dist.barrier()

    # -- final outputs -----------------------------------------------------------------------
    last = history[-1] if history else {}
    total_images = sum(r["images"] for r in history)
    total_time = sum(r["train_time_s"] for r in history)
    result = TrainResult(
        out_dir=str(out_dir),
        epochs=len(history),
        train_losses={k: v for k, v in last.items() if k == "loss" or k in loss_fn.weights},
        val_recall_at_1=last.get("val_recall_at_1"),
        val_map_at_r=last.get("val_map_at_r"),
        train_images_per_s=total_images / total_time if total_time > 0 else float("nan"),
        history=history,
        model_path=str(out_dir / "model.pt"),
        tracking=tracker.info,
        model=model,
    )
    if is_main:
        with atomic_path(out_dir / "model.pt") as tmp:
            torch.save(
                {"config": resolved, "num_classes": num_classes, "state_dict": model.state_dict()},
                tmp,
            )
        write_json(out_dir / "metrics.json", result.to_json())
        numbers = {k: v for k, v in result.to_json().items() if isinstance(v, int | float)}
        tracker.summary(numbers)
        tracker.log_artifact(
            artifact_name("model", cfg.name),
            "model",
            [out_dir / "model.pt", out_dir / "config.json", out_dir / "metrics.json"],
            {
                "model": cfg.name,
                "backbone": cfg.model.backbone,
                "data_version": data_version,
                **numbers,
            },  # fmt: skip
        )
        if data_version is not None:
            tracker.log_dataset(DATA_ARTIFACT, data_version)
        tracker.finish()
    if ctx.world_size > 1:
        dist.barrier()
        if ctx.created_group:
            dist.destroy_process_group()
    return result


def save_zero_shot_model(config: RetrievalModelConfig, out_dir: str | Path) -> TrainResult:
    """Write ``model.pt`` of a zero-shot entry: the ImageNet backbone pooled with its first
    descriptor (:func:`~clothes_retrieval.retrieval.model.build_pooled_backbone`), so it
    loads and embeds like a trained model (``load_trained_model``)."""
    if not config.zero_shot:
        raise ValueError(f"{config.name!r} is not a zero-shot entry (zero_shot: false)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_pooled_backbone(config.model)
    resolved = dump_config(config)
    result = TrainResult(
        out_dir=str(out_dir),
        epochs=0,
        train_losses={},
        val_recall_at_1=None,
        val_map_at_r=None,
        train_images_per_s=float("nan"),
        model_path=str(out_dir / "model.pt"),
        model=None,
    )
    write_json(out_dir / "config.json", resolved)
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save({"config": resolved, "num_classes": 0, "state_dict": model.state_dict()}, tmp)
    write_json(out_dir / "metrics.json", result.to_json())
    log.info("%s: zero-shot, saved the pretrained %s", config.name, config.model.backbone)
    return result


# -- helpers ---------------------------------------------------------------------------------


class _TrainingModule(nn.Module):
    """Model and loss in one module, so DDP all-reduces the class centres too."""

    def __init__(self, model: RetrievalModel, loss: RetrievalLoss) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        embeddings, logits = self.model(images)  # (B, D), (B, K) or None
        return self.loss(embeddings, logits, labels)


@dataclass
class _DistContext:
    rank: int
    world_size: int
    device: torch.device
    created_group: bool


def _setup_distributed(device: str | torch.device | None) -> _DistContext:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _DistContext(0, 1, resolve_device(device), False)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    created = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
        created = True
    return _DistContext(rank, world_size, chosen, created)


def _check_columns(table: pd.DataFrame, what: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing} (expected {list(REQUIRED_COLUMNS)})")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _get_rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _save_checkpoint(
    path: Path,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    epoch: int,
    history: list[dict[str, Any]],
    run_id: str | None,
    config: dict[str, Any],
) -> None:
    state = {
        "module": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,  # epochs completed
        "rng": _get_rng_state(),
        "history": history,
        "tracker_run_id": run_id,
        "config": config,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _build_optimizer(cfg: RetrievalModelConfig, module: nn.Module) -> torch.optim.Optimizer:
    """No weight decay on biases, norm layers, GeM p and class centres (1-d or centre params);
    the backbone's LR scaled by ``backbone_lr_mult``."""
    groups_by_key: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.endswith("centers")
        backbone = name.startswith("model.backbone.")
        groups_by_key.setdefault((backbone, no_decay), []).append(param)
    groups = [
        {
            "params": params,
            "weight_decay": 0.0 if no_decay else cfg.optim.weight_decay,
            "lr": cfg.optim.lr * (cfg.optim.backbone_lr_mult if backbone else 1.0),
        }
        for (backbone, no_decay), params in sorted(groups_by_key.items())
    ]
    if cfg.optim.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum, nesterov=cfg.optim.nesterov
        )
    return torch.optim.AdamW(groups, lr=cfg.optim.lr)


def _lr_lambda(cfg: RetrievalModelConfig, total_iters: int, iters_per_epoch: int):
    """LR factor per iteration: linear warm-up to 1, then cosine to min_lr_ratio (or flat)."""
    warmup = min(round(cfg.optim.warmup_epochs * iters_per_epoch), max(total_iters - 1, 0))
    floor = cfg.optim.min_lr_ratio
    cosine = cfg.optim.cosine_decay

    def factor(it: int) -> float:
        if it < warmup:
            return (it + 1) / warmup
        if not cosine:
            return 1.0
        progress = (it - warmup) / max(total_iters - warmup, 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _dataset(
    cfg: RetrievalModelConfig,
    table: pd.DataFrame,
    model: RetrievalModel,
    transform: Any,
    cache_scale: float,
    progress: bool,
    desc: str,
) -> CropDataset:
    h, w = model.input_size
    max_size = (math.ceil(h * cache_scale), math.ceil(w * cache_scale))
    mode = cfg.data.cache_images
    cache = mode == "always"
    if mode == "auto":
        need = estimate_cache_bytes(table, max_size)
        cache = need <= cfg.data.cache_max_gb * 1e9
        log.info(
            "%s: %.2f GB for %d crops -> %s",
            desc,
            need / 1e9,
            len(table),
            "cache in memory" if cache else "read from disk each time",
        )
    items = [(str(p), None) for p in table["crop_path"]]
    return CropDataset(
        items,
        table["label"].to_numpy(),
        transform,
        max_size=max_size,
        cache=cache,
        progress=progress,
        desc=desc,
    )


@torch.no_grad()
def _embed_dataset(
    model: RetrievalModel,
    dataset: CropDataset,
    batch_size: int,
    device: torch.device,
    use_amp: bool,
) -> np.ndarray:
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(dataset), batch_size):
        batch = torch.stack(
            [dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))]
        )
        with torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext():
            out.append(model.embed(batch.to(device)).cpu())
    model.train(was_training)
    return torch.cat(out).numpy().astype(np.float32)
