"""Run a detector or retrieval training with N processes (torchrun), from ordinary code.

The one way a caller (a Dagster asset, a notebook) trains on several GPUs, one process per
GPU, or with several gloo processes on the CPU:

- :func:`train_detector_distributed` wraps
  :func:`~clothes_retrieval.detection.train.train_detector`;
- :func:`train_retrieval_distributed` wraps
  :func:`~clothes_retrieval.retrieval.train.train_retrieval_model`.

With ``world_size`` 1 they call the training in this process. With N > 1 they write a spec
(JSON: the arguments, configs as their resolved data, DataFrames as parquet) to
``<work or out dir>/launch/``, run::

    python -m torch.distributed.run --standalone --nproc_per_node N \\
        -m clothes_retrieval.launch <dir>/launch/spec.json

streaming its output line by line to this module's logger, and read back the result that
rank 0 wrote (``launch/result.json``, atomically). Each rank rebuilds the arguments from
the spec and calls the training, which runs DDP under torchrun's environment. A failing run
raises :class:`RuntimeError` with the world size, the exit code and the output's last lines.

Batch sizes are per process in both trainings, so N processes train with an N times larger
global batch; by default (``scale_lr``) the LR is scaled linearly by N (Goyal et al. 2017,
"Accurate, Large Minibatch SGD").
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clothes_retrieval.config import dump_config, validate_config, with_overrides
from clothes_retrieval.io import write_json, write_parquet

if TYPE_CHECKING:
    import pandas as pd

    from clothes_retrieval.detection.config import DetectorConfig
    from clothes_retrieval.detection.train import TrainResult as DetectorTrainResult
    from clothes_retrieval.retrieval.config import RetrievalModelConfig
    from clothes_retrieval.retrieval.train import TrainResult as RetrievalTrainResult

__all__ = ["train_detector_distributed", "train_retrieval_distributed"]

log = logging.getLogger(__name__)

LAUNCH_DIR = "launch"  # under the run's work/out dir: spec.json, its tables, result.json
SPEC = "spec.json"
RESULT = "result.json"
TAIL_LINES = 40  # lines of the workers' output quoted when they fail
# Seconds between tqdm updates in the workers: their bars reach this process as log lines.
TQDM_MININTERVAL = "30"
# train_detector arguments that cannot cross a process boundary.
_LOCAL_ONLY = ("tracker",)


def _resolve_launch_device(device: str | None, world_size: int) -> str:
    """The device of N processes, "cuda" or "cpu" (None: cuda when available); with CUDA,
    N must not exceed the visible GPUs (rank r takes cuda:LOCAL_RANK)."""
    import torch

    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if world_size == 1:
        return device
    if device.startswith("cuda:"):
        raise ValueError(
            f"device {device!r} with world_size {world_size}: give device='cuda' (rank r "
            "trains on cuda:r; choose the GPUs with CUDA_VISIBLE_DEVICES)"
        )
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: use cpu or cuda")
    if device == "cuda":
        available = torch.cuda.device_count()
        if world_size > available:
            raise ValueError(
                f"world_size {world_size} asks for one GPU per process, but only {available} "
                "CUDA device(s) are visible: lower world_size, or train on the CPU "
                "(device='cpu', gloo)"
            )
    return device


# --------------------------------------------------------------------------- detector


def train_detector_distributed(
    world_size: int,
    detector: DetectorConfig | str | Path,
    profile: str,
    train_json: str | Path,
    val_json: str | Path | None,
    work_dir: str | Path,
    **train_detector_kwargs: Any,
) -> DetectorTrainResult:
    """:func:`~clothes_retrieval.detection.train.train_detector` with ``world_size``
    processes (one per GPU, or gloo on the CPU); the arguments are the same.

    ``device`` None: cuda when available. ``scale_lr`` (default True) scales the LR by
    ``world_size``: the profile's ``batch_size`` is per process. The result's ``world_size``
    and ``lr`` say how it trained. A ``tracker`` object cannot reach other processes: with
    ``world_size`` > 1, give ``tracker_mode`` / ``tracker_project`` instead.
    """
    from clothes_retrieval.detection.config import DetectorConfig, load_detector_config
    from clothes_retrieval.detection.train import TrainResult, train_detector

    device = _resolve_launch_device(train_detector_kwargs.pop("device", None), world_size)
    if world_size == 1:
        return train_detector(
            detector,
            profile,
            train_json,
            val_json,
            work_dir,
            device=device,
            **train_detector_kwargs,
        )
    for name in _LOCAL_ONLY:
        if train_detector_kwargs.get(name) is not None:
            raise ValueError(
                f"{name}= cannot be passed to {world_size} processes; use tracker_mode and "
                "tracker_project (rank 0 creates the tracker), or world_size=1"
            )
        train_detector_kwargs.pop(name, None)
    # Wrong arguments and config names fail here, not in N processes.
    inspect.signature(train_detector).bind(
        detector, profile, train_json, val_json, work_dir, **train_detector_kwargs
    )
    if not isinstance(detector, DetectorConfig):
        detector = load_detector_config(detector)
    detector.profile(profile)
    work_dir = Path(work_dir).resolve()
    kwargs = {key: _plain(value, key) for key, value in train_detector_kwargs.items()}
    spec = {
        "kind": "detector",
        "detector": dump_config(detector),
        "profile": profile,
        "train_json": str(Path(train_json).resolve()),
        "val_json": str(Path(val_json).resolve()) if val_json is not None else None,
        "work_dir": str(work_dir),
        "kwargs": {**kwargs, "device": device},
    }
    what = f"detector {detector.name} ({profile})"
    data = _launch(spec, work_dir / LAUNCH_DIR, world_size, device, what)
    paths = {f.name for f in dataclasses.fields(TrainResult) if f.type in ("Path", Path)}
    return TrainResult(**{k: Path(v) if k in paths else v for k, v in data.items()})


def _plain(value: Any, key: str) -> Any:
    """A train_detector argument as JSON data (paths as strings, sequences as lists)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v, key) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(
        f"{key}={value!r} ({type(value).__name__}) cannot be sent to the worker processes: "
        "give plain values (str, numbers, paths, lists)"
    )


def _run_detector(spec: dict[str, Any]) -> dict[str, Any]:
    from clothes_retrieval.detection.config import DetectorConfig
    from clothes_retrieval.detection.train import train_detector

    detector = validate_config(DetectorConfig, spec["detector"], source="launch spec")
    result = train_detector(
        detector,
        spec["profile"],
        spec["train_json"],
        spec["val_json"],
        spec["work_dir"],
        **spec["kwargs"],
    )
    return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()}


# --------------------------------------------------------------------------- retrieval


def train_retrieval_distributed(
    world_size: int,
    config: RetrievalModelConfig,
    crops: pd.DataFrame,
    val: pd.DataFrame | None,
    out_dir: str | Path,
    *,
    device: str | None = None,
    scale_lr: bool = True,
    progress: bool = False,
) -> RetrievalTrainResult:
    """:func:`~clothes_retrieval.retrieval.train.train_retrieval_model` with ``world_size``
    processes (one per GPU, or gloo on the CPU).

    ``config.train.batch_size`` is per process; ``scale_lr`` multiplies ``optim.lr`` by
    ``world_size`` (the linear scaling rule), and the scaled config is the one trained and
    written to ``out_dir/config.json``. ``device`` None: cuda when available. The returned
    result holds the trained model, loaded from ``out_dir/model.pt``. ``progress``: the
    workers' progress bars, reaching the log every ~30 s. A zero-shot entry trains nothing
    and is saved in this process.
    """
    from clothes_retrieval.retrieval.embed import load_trained_model
    from clothes_retrieval.retrieval.train import TrainResult, train_retrieval_model

    device = _resolve_launch_device(device, world_size)
    if world_size == 1 or config.zero_shot:
        return train_retrieval_model(config, crops, val, out_dir, device=device, progress=progress)
    if scale_lr:
        lr = config.optim.lr * world_size
        log.info(
            "%s: %d processes x %d crops per step; LR %g -> %g (linear scaling)",
            config.name,
            world_size,
            config.train.batch_size,
            config.optim.lr,
            lr,
        )
        config = with_overrides(config, {"optim": {"lr": lr}}, source="launch: scaled LR")
    out_dir = Path(out_dir).resolve()
    launch_dir = out_dir / LAUNCH_DIR
    spec = {
        "kind": "retrieval",
        "config": dump_config(config),
        "crops": str(write_parquet(launch_dir / "crops.parquet", crops)),
        "val": str(write_parquet(launch_dir / "val.parquet", val)) if val is not None else None,
        "out_dir": str(out_dir),
        "device": device,
        "progress": progress,
    }
    data = _launch(spec, launch_dir, world_size, device, f"retrieval model {config.name}")
    model, _ = load_trained_model(out_dir, device="cpu")
    return TrainResult(**data, model=model)


def _run_retrieval(spec: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    from clothes_retrieval.retrieval.config import RetrievalModelConfig
    from clothes_retrieval.retrieval.train import train_retrieval_model

    config = validate_config(RetrievalModelConfig, spec["config"], source="launch spec")
    val = pd.read_parquet(spec["val"]) if spec["val"] is not None else None
    result = train_retrieval_model(
        config,
        pd.read_parquet(spec["crops"]),
        val,
        spec["out_dir"],
        device=spec["device"],
        progress=spec["progress"],
    )
    return result.to_json()


# --------------------------------------------------------------------------- launching


def _launch(
    spec: dict[str, Any], launch_dir: Path, world_size: int, device: str, what: str
) -> dict[str, Any]:
    """Write ``spec``, run it with torchrun on ``world_size`` processes, return rank 0's
    result (JSON data)."""
    result_path = launch_dir / RESULT
    result_path.unlink(missing_ok=True)  # a previous run's result must not pass for this one's
    spec_path = write_json(launch_dir / SPEC, {**spec, "result": str(result_path)})
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(world_size),
        "-m",
        "clothes_retrieval.launch",
        str(spec_path),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("TQDM_MININTERVAL", TQDM_MININTERVAL)
    if device == "cpu":
        # torchrun would set it too, with a warning; N processes share the cores.
        env.setdefault("OMP_NUM_THREADS", "1")
    log.info("training %s with %d processes (%s): %s", what, world_size, device, " ".join(cmd))
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    # Text mode reads "\r" as a line end too, so progress bar updates arrive as lines.
    with subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip()
                if line:
                    tail.append(line)
                    log.info("%s", line)
            returncode = proc.wait()
        except BaseException:  # interrupted: stop the workers too (torchrun forwards it)
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    if returncode != 0:
        raise RuntimeError(
            f"training {what} with world size {world_size} failed (torchrun exit code "
            f"{returncode}); the last {len(tail)} lines of its output:\n" + "\n".join(tail)
        )
    if not result_path.is_file():
        raise RuntimeError(
            f"training {what} with world size {world_size} exited 0 but rank 0 wrote no "
            f"result ({result_path}); the last lines of its output:\n" + "\n".join(tail)
        )
    return json.loads(result_path.read_text())


_RUNNERS = {"detector": _run_detector, "retrieval": _run_retrieval}


def _worker(spec_path: str) -> None:
    """One rank of a launched run: rebuild the arguments, train, rank 0 writes the result."""
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.WARNING,  # other libraries' warnings; our own progress messages too
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("clothes_retrieval").setLevel(logging.INFO)
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("kind") not in _RUNNERS:
        raise ValueError(f"{spec_path}: kind {spec.get('kind')!r}; use one of {list(_RUNNERS)}")
    result = _RUNNERS[spec["kind"]](spec)
    if rank == 0:
        write_json(spec["result"], result)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m clothes_retrieval.launch SPEC``: run by torchrun on each rank."""
    from torch.distributed.elastic.multiprocessing.errors import record

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        raise SystemExit("usage: torchrun ... -m clothes_retrieval.launch SPEC.json")
    # record: torchrun's failure summary then quotes this rank's exception and traceback.
    record(_worker)(args[0])


if __name__ == "__main__":
    main()
