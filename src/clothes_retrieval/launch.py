"""Run a detector or retrieval training with N processes (torchrun), from ordinary code.

The one way a caller (a Dagster asset, a notebook) trains on several GPUs, one process per
GPU, or with several gloo processes on the CPU:

- :func:`train_detector_distributed` wraps
  :func:`~clothes_retrieval.detection.train.train_detector`;
- :func:`train_retrieval_distributed` wraps
  :func:`~clothes_retrieval.retrieval.train.train_retrieval_model`.

With ``world_size`` 1 they call the training in this process. With N > 1 they write a spec
(JSON: the arguments, configs as their resolved data, DataFrames as parquet) to
``<work or out dir>/launch/`` and describe the run as a :class:`Launch`: the command ::

    python -m torch.distributed.run --standalone --nproc_per_node N \\
        -m <worker module> <dir>/launch/spec.json

and its environment. A *launcher* starts it and waits: :func:`run_torchrun` (the default: a
plain child process whose output goes to this process's stdout and stderr), or the Dagster
code location's, which starts the same command through Dagster Pipes so that rank 0's logs
and metrics reach the asset (``orchestration/pipes_worker.py``). Each rank rebuilds the
arguments from the spec and calls the training (:func:`run_rank`), which runs DDP under
torchrun's environment; rank 0 writes the result (``launch/result.json``, atomically), which
the caller reads back. A rank that raises writes its traceback to ``launch/rank-<r>.error``,
so a failed run raises :class:`RuntimeError` with the world size, the exit code and each
failing rank's error (:meth:`Launch.failure`).

Batch sizes are per process in both trainings, so N processes train with an N times larger
global batch; by default (``scale_lr``) the LR is scaled linearly by N (Goyal et al. 2017,
"Accurate, Large Minibatch SGD").
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clothes_retrieval.config import dump_config, validate_config, with_overrides
from clothes_retrieval.io import write_json, write_parquet, write_text

if TYPE_CHECKING:
    import pandas as pd

    from clothes_retrieval.detection.config import DetectorConfig
    from clothes_retrieval.detection.train import TrainResult as DetectorTrainResult
    from clothes_retrieval.retrieval.config import RetrievalModelConfig
    from clothes_retrieval.retrieval.train import TrainResult as RetrievalTrainResult

__all__ = [
    "Launch",
    "run_rank",
    "run_torchrun",
    "train_detector_distributed",
    "train_retrieval_distributed",
]

log = logging.getLogger(__name__)

LAUNCH_DIR = "launch"  # under the run's work/out dir: spec.json, its tables, result.json
SPEC = "spec.json"
RESULT = "result.json"
ERROR_GLOB = "rank-*.error"  # rank-<r>.error: the traceback of a rank that raised
TAIL_LINES = 40  # lines of each failing rank's traceback quoted in the error
# Seconds between tqdm updates in the workers: their bars reach the log as lines.
TQDM_MININTERVAL = "30"
# train_detector arguments that cannot cross a process boundary.
_LOCAL_ONLY = ("tracker",)


@dataclasses.dataclass(frozen=True)
class Launch:
    """A training prepared for ``world_size`` processes: its spec on disk and how to start it.

    ``kind`` is ``detector`` or ``retrieval``; ``what`` names the run in messages."""

    kind: str
    what: str
    world_size: int
    device: str
    dir: Path

    @property
    def spec_path(self) -> Path:
        return self.dir / SPEC

    @property
    def result_path(self) -> Path:
        return self.dir / RESULT

    def command(self, module: str = __name__) -> list[str]:
        """torchrun starting ``module`` (``python -m module SPEC``) on every rank."""
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(self.world_size),
            "-m",
            module,
            str(self.spec_path),
        ]

    def env(self) -> dict[str, str]:
        """Environment variables the run needs besides this process's own."""
        env = {"PYTHONUNBUFFERED": "1"}
        env["TQDM_MININTERVAL"] = os.environ.get("TQDM_MININTERVAL", TQDM_MININTERVAL)
        if self.device == "cpu":
            # torchrun would set it too, with a warning; N processes share the cores.
            env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")
        return env

    def result(self) -> dict[str, Any]:
        """Rank 0's result (JSON data), after the run exited 0."""
        if not self.result_path.is_file():
            raise RuntimeError(
                f"training {self.what} with world size {self.world_size} exited 0 but rank 0 "
                f"wrote no result ({self.result_path}); see the workers' output in the log"
            )
        return json.loads(self.result_path.read_text())

    def failure(self, returncode: int | None) -> RuntimeError:
        """The error of a failed run: what, the world size, torchrun's exit code, and the
        last lines of the traceback of every rank that raised."""
        errors = sorted(self.dir.glob(ERROR_GLOB), key=lambda p: _rank_of(p))
        code = "unknown" if returncode is None else str(returncode)
        head = (
            f"training {self.what} with world size {self.world_size} failed (torchrun exit "
            f"code {code})"
        )
        if not errors:
            return RuntimeError(
                f"{head}; no rank raised an error (killed by a signal, or out of memory?): "
                "torchrun's output is in the log"
            )
        parts = []
        for path in errors:
            lines = path.read_text().rstrip().splitlines()[-TAIL_LINES:]
            parts.append(f"rank {_rank_of(path)}:\n" + "\n".join(lines))
        return RuntimeError(f"{head}; " + "\n".join(parts))


def _rank_of(path: Path) -> int:
    return int(path.name.removeprefix("rank-").removesuffix(".error"))


def _new_launch(kind: str, what: str, spec: dict[str, Any], launch_dir: Path,
                world_size: int, device: str) -> Launch:  # fmt: skip
    """Write ``spec`` and clear what a previous run left (its result must not pass for this
    one's, nor its errors)."""
    launch = Launch(kind=kind, what=what, world_size=world_size, device=device, dir=launch_dir)
    launch.result_path.unlink(missing_ok=True)
    for path in launch_dir.glob(ERROR_GLOB):
        path.unlink()
    write_json(launch.spec_path, {**spec, "kind": kind, "result": str(launch.result_path)})
    return launch


Launcher = Callable[[Launch], None]


def run_torchrun(launch: Launch) -> None:
    """Start ``launch`` as a child process and wait; its output goes to this process's
    stdout and stderr. Raises :meth:`Launch.failure` when it exits non-zero."""
    cmd = launch.command()
    log.info(
        "training %s with %d processes (%s): %s",
        launch.what,
        launch.world_size,
        launch.device,
        " ".join(cmd),
    )
    returncode = subprocess.run(cmd, env={**os.environ, **launch.env()}).returncode
    if returncode != 0:
        raise launch.failure(returncode)


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
    *,
    launcher: Launcher = run_torchrun,
    **train_detector_kwargs: Any,
) -> DetectorTrainResult:
    """:func:`~clothes_retrieval.detection.train.train_detector` with ``world_size``
    processes (one per GPU, or gloo on the CPU); the arguments are the same.

    ``device`` None: cuda when available. ``scale_lr`` (default True) scales the LR by
    ``world_size``: the profile's ``batch_size`` is per process. The result's ``world_size``
    and ``lr`` say how it trained. A ``tracker`` object cannot reach other processes: with
    ``world_size`` > 1, give ``tracker_mode`` / ``tracker_project`` instead. ``launcher``
    starts the processes (default :func:`run_torchrun`).
    """
    from clothes_retrieval.detection.config import DetectorConfig, load_detector_config
    from clothes_retrieval.detection.train import train_detector

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
        "detector": dump_config(detector),
        "profile": profile,
        "train_json": str(Path(train_json).resolve()),
        "val_json": str(Path(val_json).resolve()) if val_json is not None else None,
        "work_dir": str(work_dir),
        "kwargs": {**kwargs, "device": device},
    }
    what = f"detector {detector.name} ({profile})"
    launch = _new_launch("detector", what, spec, work_dir / LAUNCH_DIR, world_size, device)
    launcher(launch)
    return detector_result(launch.result())


def detector_result(data: dict[str, Any]) -> DetectorTrainResult:
    """A detector TrainResult from its JSON data (rank 0's result)."""
    from clothes_retrieval.detection.train import TrainResult

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
    data_version: str | None = None,
    launcher: Launcher = run_torchrun,
) -> RetrievalTrainResult:
    """:func:`~clothes_retrieval.retrieval.train.train_retrieval_model` with ``world_size``
    processes (one per GPU, or gloo on the CPU).

    ``config.train.batch_size`` is per process; ``scale_lr`` multiplies ``optim.lr`` by
    ``world_size`` (the linear scaling rule), and the scaled config is the one trained and
    written to ``out_dir/config.json``. ``device`` None: cuda when available. The returned
    result holds the trained model, loaded from ``out_dir/model.pt``. ``progress``: the
    workers' progress bars, reaching the log every ~30 s. ``data_version``: the crops'
    version, logged by the tracker. A zero-shot entry trains nothing and is saved in this
    process. ``launcher`` starts the processes (default :func:`run_torchrun`).
    """
    from clothes_retrieval.retrieval.train import train_retrieval_model

    device = _resolve_launch_device(device, world_size)
    if world_size == 1 or config.zero_shot:
        return train_retrieval_model(
            config, crops, val, out_dir, device=device, progress=progress,
            data_version=data_version,
        )  # fmt: skip
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
        "config": dump_config(config),
        "crops": str(write_parquet(launch_dir / "crops.parquet", crops)),
        "val": str(write_parquet(launch_dir / "val.parquet", val)) if val is not None else None,
        "out_dir": str(out_dir),
        "device": device,
        "progress": progress,
        "data_version": data_version,
    }
    what = f"retrieval model {config.name}"
    launch = _new_launch("retrieval", what, spec, launch_dir, world_size, device)
    launcher(launch)
    return retrieval_result(launch.result())


def retrieval_result(data: dict[str, Any]) -> RetrievalTrainResult:
    """A retrieval TrainResult from its JSON data, with the model loaded from its folder."""
    from clothes_retrieval.retrieval.embed import load_trained_model
    from clothes_retrieval.retrieval.train import TrainResult

    model, _ = load_trained_model(data["out_dir"], device="cpu")
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
        data_version=spec.get("data_version"),
    )
    return result.to_json()


# --------------------------------------------------------------------------- the workers

_RUNNERS = {"detector": _run_detector, "retrieval": _run_retrieval}


def read_spec(spec_path: str | Path) -> dict[str, Any]:
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("kind") not in _RUNNERS:
        raise ValueError(f"{spec_path}: kind {spec.get('kind')!r}; use one of {list(_RUNNERS)}")
    return spec


def run_rank(spec_path: str | Path) -> dict[str, Any] | None:
    """One rank of a launched run (under torchrun): rebuild the arguments from the spec and
    train. Rank 0 writes the result and returns it; the other ranks return None. A rank that
    raises leaves its traceback in ``launch/rank-<r>.error`` for :meth:`Launch.failure`."""
    rank = int(os.environ.get("RANK", "0"))
    spec_path = Path(spec_path)
    try:
        spec = read_spec(spec_path)
        result = _RUNNERS[spec["kind"]](spec)
    except BaseException:
        write_text(spec_path.parent / f"rank-{rank}.error", traceback.format_exc())
        raise
    if rank != 0:
        return None
    write_json(spec["result"], result)
    return result


def configure_worker_logging(rank: int) -> None:
    """Every rank logs to stderr, each line marked with its rank: other libraries' warnings,
    and this package's progress messages."""
    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("clothes_retrieval").setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m clothes_retrieval.launch SPEC``: run by torchrun on each rank."""
    from torch.distributed.elastic.multiprocessing.errors import record

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        raise SystemExit("usage: torchrun ... -m clothes_retrieval.launch SPEC.json")
    configure_worker_logging(int(os.environ.get("RANK", "0")))
    # record: torchrun's failure summary then quotes this rank's exception and traceback.
    record(run_rank)(args[0])


if __name__ == "__main__":
    main()
