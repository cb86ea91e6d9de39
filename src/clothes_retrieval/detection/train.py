"""Train one detector with mmengine's Runner, resumably, logging to our tracker.

:func:`train_detector` builds the mmdet config (:func:`build_mmdet_config`), writes it
beside the checkpoints (``work_dir/config.py``, and our own config as
``work_dir/detector_config.json``), and runs ``mmengine.runner.Runner``:

- **Resumable.** When ``work_dir`` already holds a checkpoint (mmengine's
  ``last_checkpoint`` record), the run resumes from it (``resume=True``): model, optimizer,
  LR schedule and epoch counter. Asking for more epochs than were trained continues the
  run; asking for as many does nothing and returns the existing checkpoint. Note that a
  resumed LR schedule keeps the state it was saved with. A last checkpoint that cannot be
  read (truncated by an interrupted copy, or missing) is refused with a
  :class:`CheckpointError` before anything is written; the run does not silently fall
  back to an earlier epoch (``last_checkpoint`` says which file to resume from).
- **Tracking.** :class:`TrackerHook` forwards the ``train/*`` scalars of
  ``runner.message_hub`` (losses, lr) every ``log_interval`` iterations and the
  validation CocoMetric (``coco/bbox_mAP``, ``_50``, ``_75``, ``_s``, ``_m``, ``_l``) to
  :func:`clothes_retrieval.tracking.create_tracker` (W&B offline by default, nothing under
  ``WANDB_MODE=disabled``). mmengine's WandbVisBackend is not used. A resumed run continues
  the same W&B run (its id is kept in ``work_dir/tracker.json``). At the end the run
  gets the checkpoint (``latest.pth``, ``config.py``, ``detector_config.json``) as an
  artifact of type ``model`` and, given ``data_version``, the COCO files' data version as
  an artifact of type ``dataset`` (named after their folder; referenced, not copied). The
  result's ``tracking`` says where the run is (``Tracker.info``: id, mode, dir, url).
- **Device.** CUDA when available, with mixed precision (``AmpOptimWrapper``); else CPU.
- **Several processes.** Under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1) the
  Runner runs distributed (``launcher="pytorch"``): the process group is initialised here
  (nccl on CUDA, each rank on ``cuda:LOCAL_RANK``; gloo on the CPU) unless the caller did
  it, mmengine's ``DefaultSampler`` gives each rank its shard of the data and DDP averages
  the gradients. The profile's ``batch_size`` is per process, so the global batch is N times
  larger; with ``scale_lr`` the LR is scaled linearly by N (mmengine's ``auto_scale_lr``).
  Only rank 0 tracks and writes our files (config.py, detector_config.json, tracker.json,
  val_metrics.json, latest.pth); mmengine writes its checkpoints from rank 0 only.
  :func:`clothes_retrieval.launch.train_detector_distributed` starts such a run.
- **Quiet.** mmengine logs at WARNING; progress is a tqdm bar over iterations and one log
  line per validation.

The returned checkpoint is ``work_dir/latest.pth`` (a hard link to the last epoch's
checkpoint, made atomically).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from mmengine.hooks import Hook

from clothes_retrieval.config import dump_config
from clothes_retrieval.detection.config import (
    DetectorConfig,
    build_mmdet_config,
    load_detector_config,
)
from clothes_retrieval.io import atomic_path, write_json, write_text
from clothes_retrieval.tracking import Mode, Tracker, artifact_name, create_tracker

__all__ = [
    "CheckpointError",
    "TrainResult",
    "TrackerHook",
    "load_checkpoint_file",
    "resolve_device",
    "torch_threads",
    "train_detector",
    "trusted_checkpoints",
]

log = logging.getLogger(__name__)

LATEST = "latest.pth"
VAL_METRICS = "val_metrics.json"


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read: truncated (an interrupted copy) or corrupt."""


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_detector` produced."""

    checkpoint: Path  # work_dir/latest.pth
    work_dir: Path
    config_path: Path  # the resolved mmdet config (work_dir/config.py)
    detector_config_path: Path  # our config, profile and arguments (JSON)
    epochs: int  # epochs trained in total (resumed ones included)
    resumed_from_epoch: int | None  # the checkpoint's epoch when resumed, else None
    device: str
    seconds: float  # wall time of this call
    metrics: dict[str, float] = field(default_factory=dict)  # last validation, coco/bbox_*
    world_size: int = 1  # processes that trained together (torchrun)
    lr: float | None = None  # the effective base LR (the profile's, x world_size if scaled)
    # The W&B run (id, mode, dir, url; plain data), None when tracking is disabled.
    tracking: dict[str, str | None] | None = None


def resolve_device(device: str | None) -> str:
    """``None``: "cuda" when available, else "cpu"."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device {device!r}: use cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but CUDA is not available")
    return device


class TrackerHook(Hook):
    """Forwards message-hub scalars and validation metrics to a tracker; shows progress.

    Validation metrics are also appended to ``work_dir/val_metrics.json``, so that a
    resumed or already finished run still reports them.
    """

    priority = "LOW"  # after RuntimeInfoHook has put this iteration's scalars in the hub

    def __init__(
        self,
        tracker: Tracker,
        *,
        interval: int,
        metrics_path: Path,
        progress: bool = True,
        name: str = "detector",
        is_main: bool = True,
    ) -> None:
        self.tracker = tracker
        self.name = name
        self.interval = interval
        self.metrics_path = metrics_path
        self.progress = progress
        self.is_main = is_main  # False on ranks > 0 of a DDP run: they neither write nor log
        self.resumed_from_epoch: int | None = None
        self._bar: Any = None

    def before_train(self, runner: Any) -> None:
        from tqdm import tqdm

        if runner.epoch > 0:
            self.resumed_from_epoch = runner.epoch
            log.info("resumed from epoch %d (iteration %d)", runner.epoch, runner.iter)
        self._bar = tqdm(
            total=runner.max_iters,
            initial=runner.iter,
            desc=f"train {self.name}",
            unit="it",
            disable=not self.progress,
            dynamic_ncols=True,
        )

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        step = runner.iter + 1
        scalars = {
            name: float(buf.current())
            for name, buf in runner.message_hub.log_scalars.items()
            if name.startswith("train/") and "time" not in name
        }
        if self._bar is not None:
            self._bar.update(1)
            if "train/loss" in scalars:
                self._bar.set_postfix(epoch=runner.epoch + 1, loss=f"{scalars['train/loss']:.3f}")
        if step % self.interval == 0 or step == runner.max_iters:
            self.tracker.log({**scalars, "epoch": runner.epoch + 1}, step=step)

    def after_val_epoch(self, runner: Any, metrics: Mapping[str, float] | None = None) -> None:
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        if not metrics:
            log.warning(
                "epoch %d validation: no COCO metrics (no box above the model's test score "
                "threshold); nothing logged",
                runner.epoch,
            )
            return
        self.tracker.log({f"val/{k}": v for k, v in metrics.items()}, step=runner.iter)
        if not self.is_main:
            return
        history = _read_metrics(self.metrics_path)
        history.append({"epoch": runner.epoch, "iter": runner.iter, **metrics})
        write_json(self.metrics_path, history)
        log.info(
            "epoch %d validation: bbox AP %.3f, AP50 %.3f",
            runner.epoch,
            metrics.get("coco/bbox_mAP", float("nan")),
            metrics.get("coco/bbox_mAP_50", float("nan")),
        )

    def after_train(self, runner: Any) -> None:
        if self._bar is not None:
            self._bar.close()


def _read_metrics(path: Path) -> list[dict[str, float]]:
    return json.loads(path.read_text()) if path.is_file() else []


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op CPU threads (None: leave torch's setting), then restore it.

    On cores shared with other busy processes, OpenMP's spin-waiting makes 2 threads several
    times slower than 1 (measured here: ~4x); ``OMP_WAIT_POLICY=PASSIVE`` in the
    environment of the process avoids that without giving up the second core.
    """
    previous = torch.get_num_threads()
    if n is not None:
        if n < 1:
            raise ValueError(f"cpu_threads must be >= 1, got {n}")
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def load_checkpoint_file(
    filename: str | Path, map_location: Any = None, *, mmap: bool = False
) -> Any:
    """``torch.load`` a full (trusted) checkpoint; :class:`CheckpointError` when unreadable.

    ``mmap``: map the tensors instead of reading them (reads only the zip index and the
    pickled structure: a cheap check that a file written by ``torch.save`` is complete).
    """
    path = Path(filename).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(
            f"checkpoint {path} cannot be read: it is truncated or corrupt ({exc}). Copy it "
            "again from a complete source, or train it again"
        ) from exc


@contextlib.contextmanager
def trusted_checkpoints() -> Iterator[None]:
    """Let mmengine load full checkpoints (``torch.load(..., weights_only=False)``).

    mmengine's checkpoints pickle its message hub and the config beside the weights;
    torch >= 2.6 loads ``weights_only`` by default and rejects them, so resuming and
    inference would fail. Only for checkpoints our own runs wrote (or that you trust):
    unpickling runs code.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    original = CheckpointLoader._schemes[""]
    CheckpointLoader._schemes[""] = load_checkpoint_file
    try:
        yield
    finally:
        CheckpointLoader._schemes[""] = original


@contextlib.contextmanager
def _forced_device(device: str) -> Iterator[None]:
    """mmengine's Runner places the model on ``get_device()``; pin it to ``device``.

    Without its index: "cuda" is the current GPU, which :func:`_process_group` makes
    ``cuda:LOCAL_RANK`` in a DDP run.
    """
    import mmengine.runner.runner as runner_module

    original = runner_module.get_device
    runner_module.get_device = lambda: device.split(":")[0]
    try:
        yield
    finally:
        runner_module.get_device = original


def _dist_env() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's environment; (1, 0, 0) without it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 1, 0, 0
    return world_size, int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))


@contextlib.contextmanager
def _process_group(world_size: int, device: str) -> Iterator[None]:
    """The process group of a DDP run (nccl on CUDA, gloo on the CPU), created here unless
    the caller did; this process's GPU is made the current one.

    Created here rather than by mmengine's ``init_dist``, which calls
    ``torch.cuda.set_device`` even for a CPU run and switches multiprocessing to ``spawn``.
    """
    if world_size <= 1:
        yield
        return
    import torch.distributed as dist

    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    if dist.is_initialized():
        yield
        return
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def _barrier(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def _check_resumable(checkpoint: Path, work_dir: Path) -> None:
    """Refuse to resume from a checkpoint that cannot be read, saying what to do."""
    try:
        # mmap: checks the file is complete without reading its tensors (read again later)
        load_checkpoint_file(checkpoint, map_location="cpu", mmap=True)
    except (CheckpointError, FileNotFoundError) as exc:
        raise CheckpointError(
            f"cannot resume the training in {work_dir}: {exc}. {work_dir / 'last_checkpoint'} "
            "names the checkpoint to resume from: write the path of an earlier complete "
            f"epoch_N.pth there to resume from that epoch, or empty {work_dir} to start over"
        ) from exc


def _link_latest(checkpoint: Path, work_dir: Path) -> Path:
    latest = work_dir / LATEST
    with atomic_path(latest) as tmp:
        tmp.unlink()
        try:
            os.link(checkpoint, tmp)
        except OSError:  # file systems without hard links
            import shutil

            shutil.copyfile(checkpoint, tmp)
    return latest


def train_detector(
    detector: DetectorConfig | str | Path,
    profile: str,
    train_json: str | Path,
    val_json: str | Path | None,
    work_dir: str | Path,
    *,
    device: str | None = None,
    max_epochs: int | None = None,
    load_from: str | Path | None = None,
    tracker_project: str = "clothes-retrieval",
    tracker_mode: Mode | None = None,
    tracker_group: str | None = "detection",
    progress: bool = True,
    cpu_threads: int | None = None,
    tracker: Tracker | None = None,
    classes: Sequence[str] | None = None,
    scale_lr: bool = True,
    amp: bool = True,
    max_train_images: int | None = None,
    data_version: str | None = None,
) -> TrainResult:
    """Train (or resume training) ``detector`` with ``profile`` on COCO files.

    ``classes``: class names (category ids 1..K) when the COCO files hold another category
    set than DeepFashion2's (see :func:`~clothes_retrieval.detection.config.build_mmdet_config`).
    ``detector``: a config or the name/path of its YAML. ``max_epochs`` overrides the
    profile's epochs. ``load_from``: a detector checkpoint to start from (ignored when
    ``work_dir`` already holds a checkpoint to resume). ``tracker_mode`` None follows
    ``WANDB_MODE`` (offline by default). ``cpu_threads``: torch threads during training
    (None: unchanged; see :func:`torch_threads`). ``tracker``: log to this tracker (the
    caller owns and finishes it) instead of creating one with ``tracker_*``; it is used on
    every rank of a DDP run, whereas a created one is real on rank 0 only.
    ``scale_lr``: under torchrun with N > 1 processes, scale the LR by N (the profile's
    ``batch_size`` is per process: the global batch is N times the profile's); the effective
    LR is in the result and in ``detector_config.json``. On CUDA each rank trains on
    ``cuda:LOCAL_RANK`` (an index in ``device`` is ignored). ``amp``: mixed precision on
    CUDA (ignored on the CPU). ``max_train_images``: the first N training images only.
    ``data_version``: the version of the COCO files (e.g. their DVC hash), logged to the
    tracker as a ``dataset`` artifact beside the ``model`` one.
    Raises :class:`CheckpointError` when ``work_dir``'s last checkpoint cannot be read
    (truncated or missing): resuming refuses rather than falls back to an earlier epoch.
    """
    from mmdet.utils import register_all_modules
    from mmengine.runner import Runner, find_latest_checkpoint

    import clothes_retrieval.detection.timm_backbone  # noqa: F401  (registers the backbone)

    start = time.perf_counter()
    if not isinstance(detector, DetectorConfig):
        detector = load_detector_config(detector)
    for path in (train_json, val_json):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"COCO file {path} not found (write it with export_coco)")
    device = resolve_device(device)
    world_size, rank, local_rank = _dist_env()
    is_main = rank == 0
    if world_size > 1 and device.startswith("cuda"):
        device = f"cuda:{local_rank}"  # one GPU per process
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)

    cfg = build_mmdet_config(
        detector,
        profile,
        train_json=train_json,
        val_json=val_json,
        work_dir=work_dir,
        max_epochs=max_epochs,
        amp=amp and device.startswith("cuda"),
        load_from=load_from,
        classes=classes,
        max_train_images=max_train_images,
    )
    previous = find_latest_checkpoint(str(work_dir))
    if previous is not None:
        _check_resumable(Path(previous), work_dir)
        cfg.resume = True  # mmengine then resumes from work_dir's last checkpoint
        cfg.load_from = None
        log.info("%s: resuming from %s", detector.name, previous)
    lr = detector.profile(profile).lr
    if world_size > 1:
        cfg.launcher = "pytorch"
        cfg.env_cfg.dist_cfg.backend = "nccl" if device.startswith("cuda") else "gloo"
        if not device.startswith("cuda"):
            # mmengine's default wrapper passes device_ids=[LOCAL_RANK], which DDP rejects for
            # a model on the CPU; None is DDP's CPU form. The rest are mmengine's defaults.
            cfg.model_wrapper_cfg = {
                "type": "MMDistributedDataParallel",
                "device_ids": None,
                "broadcast_buffers": False,
                "find_unused_parameters": False,
            }
        if scale_lr:
            # The Runner multiplies the LR by world_size * batch_size / base_batch_size.
            batch_size = detector.profile(profile).batch_size
            cfg.auto_scale_lr = {"enable": True, "base_batch_size": batch_size}
            lr *= world_size
        if is_main:
            log.info(
                "%s: %d processes (%s), %d images per process and step, LR %g%s",
                detector.name,
                world_size,
                cfg.env_cfg.dist_cfg.backend,
                cfg.train_dataloader.batch_size,
                lr,
                f" (the profile's x{world_size}, linear scaling)" if scale_lr else "",
            )

    config_path = work_dir / "config.py"
    detector_config_path = work_dir / "detector_config.json"
    run_record = {
        "detector": dump_config(detector),
        "profile": profile,
        "train_json": str(Path(train_json).resolve()),
        "val_json": str(Path(val_json).resolve()) if val_json is not None else None,
        "max_epochs": cfg.train_cfg.max_epochs,
        "device": device,
        "load_from": str(load_from) if load_from is not None else None,
        "world_size": world_size,
        "lr": lr,
    }
    if is_main:  # one writer: the ranks of a DDP run share work_dir
        write_text(config_path, cfg.pretty_text)
        write_json(detector_config_path, run_record)

    own_tracker = tracker is None
    if tracker is None and not is_main:
        tracker = create_tracker(tracker_project, detector.name, {}, mode="disabled")
    elif tracker is None:
        tracker_file = work_dir / "tracker.json"
        resume_id = (
            json.loads(tracker_file.read_text()).get("id") if tracker_file.is_file() else None
        )
        tracker = create_tracker(
            tracker_project,
            f"{detector.name}-{profile}",
            {**run_record, "mmdet_config": cfg.to_dict()},
            mode=tracker_mode,
            directory=work_dir,
            group=tracker_group,
            resume_id=resume_id,
        )
        if getattr(tracker, "id", None):
            write_json(tracker_file, {"id": tracker.id})

    register_all_modules(init_default_scope=False)
    hook = TrackerHook(
        tracker,
        interval=detector.profile(profile).log_interval,
        metrics_path=work_dir / VAL_METRICS,
        progress=progress and is_main,
        name=detector.name,
        is_main=is_main,
    )
    try:
        cfg.experiment_name = f"{detector.name}_{time.strftime('%Y%m%d_%H%M%S')}"
        if cfg.get("visualizer") is not None:
            # mmengine keeps one visualizer per name per process: mmdet's fixed name would
            # hand a second training in this process the first one's (maybe deleted) folder.
            cfg.visualizer.name = f"{cfg.experiment_name}_{uuid.uuid4().hex[:8]}"
        with (
            _forced_device(device),
            torch_threads(cpu_threads),
            trusted_checkpoints(),
            _process_group(world_size, device),
        ):
            runner = Runner.from_cfg(cfg)
            runner.register_hook(hook)
            runner.train()
            _barrier(world_size)  # rank 0 has saved the last checkpoint and validation
            epochs = runner.epoch
            last = find_latest_checkpoint(str(work_dir))
            if last is None:
                raise RuntimeError(f"training finished without a checkpoint in {work_dir}")
            checkpoint = work_dir / LATEST
            if is_main:
                _link_latest(Path(last), work_dir)
            _barrier(world_size)  # latest.pth exists for every rank
        history = _read_metrics(work_dir / VAL_METRICS)
        metrics = {k: v for k, v in (history[-1] if history else {}).items() if "/" in k}
        tracker.summary({"epochs": epochs, **metrics, "checkpoint": str(checkpoint)})
        if is_main:
            tracker.log_artifact(
                artifact_name("detector", detector.name, profile),
                "model",
                [checkpoint, config_path, detector_config_path],
                {
                    "detector": detector.name,
                    "profile": profile,
                    "epochs": epochs,
                    "data_version": data_version,
                    **metrics,
                },  # fmt: skip
            )
            if data_version is not None:
                coco_files = [Path(p) for p in (train_json, val_json) if p is not None]
                tracker.log_dataset(
                    artifact_name(coco_files[0].resolve().parent.name), data_version, coco_files
                )
        tracking = tracker.info
    finally:
        if own_tracker:
            tracker.finish()
    seconds = time.perf_counter() - start
    if is_main:
        log.info(
            "%s (%s) trained %d epochs in %.0f s -> %s",
            detector.name,
            profile,
            epochs,
            seconds,
            checkpoint,
        )
    return TrainResult(
        checkpoint=checkpoint,
        work_dir=work_dir,
        config_path=config_path,
        detector_config_path=detector_config_path,
        epochs=epochs,
        resumed_from_epoch=hook.resumed_from_epoch,
        device=device,
        seconds=seconds,
        metrics=metrics,
        world_size=world_size,
        lr=lr,
        tracking=tracking,
    )
