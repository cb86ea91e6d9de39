"""One rank of a training launched through Dagster Pipes (``python -m
orchestration.pipes_worker SPEC`` under torchrun; see :mod:`orchestration.defs.training`).

Every rank runs the library's :func:`~clothes_retrieval.launch.run_rank` on the spec. Rank 0
alone opens the Pipes session: its log messages (this package's logger) go to the asset's
Dagster log as they happen, and, once trained, it reports the training's metadata
(:func:`training_metadata`) as the asset's materialisation; the asset adds its own keys.
The other ranks log to stderr, which the step's compute log keeps.

Only ``dagster_pipes`` (one file, no dependencies) is imported here, never ``dagster``: the
same command runs in a pod started by ``PipesK8sClient`` on a cluster.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from clothes_retrieval.launch import configure_worker_logging, read_spec, run_rank

__all__ = ["detector_metadata", "retrieval_metadata", "training_metadata"]


def _typed(value: Any, kind: str) -> dict[str, Any]:
    """A Pipes metadata value of an explicit type (``{"raw_value", "type"}``)."""
    return {"raw_value": value, "type": kind}


def _float(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def detector_metadata(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``detector/<name>`` metadata that comes from the training (rank 0's result)."""
    return {
        "checkpoint": _typed(str(result["checkpoint"]), "path"),
        "mmdet_config": _typed(str(result["config_path"]), "path"),
        "epochs": _typed(int(result["epochs"]), "int"),
        "training_seconds": _typed(round(float(result["seconds"]), 1), "float"),
        "device": _typed(str(result["device"]), "text"),
        "world_size": _typed(int(result["world_size"]), "int"),
        "val_metrics": _typed(dict(result["metrics"]), "json"),
    }


def retrieval_metadata(result: dict[str, Any], world_size: int) -> dict[str, dict[str, Any]]:
    """The ``model/<name>`` metadata that comes from the training (rank 0's result; a
    metric without a valid query is NaN, never a made-up 0)."""
    return {
        "val_recall_at_1": _typed(_float(result["val_recall_at_1"]), "float"),
        "val_map_at_r": _typed(_float(result["val_map_at_r"]), "float"),
        "epochs": _typed(int(result["epochs"]), "int"),
        "train_images_per_s": _typed(round(float(result["train_images_per_s"]), 1), "float"),
        "world_size": _typed(int(world_size), "int"),
        "model_path": _typed(str(result["model_path"]), "path"),
    }


def training_metadata(
    kind: str, result: dict[str, Any], world_size: int
) -> dict[str, dict[str, Any]]:
    """The training's part of its asset's metadata, as Pipes metadata values."""
    if kind == "detector":
        return detector_metadata(result)
    if kind == "retrieval":
        return retrieval_metadata(result, world_size)
    raise ValueError(f"kind {kind!r}: use detector or retrieval")


class _PipesLogHandler(logging.Handler):
    """Forwards log records to the Dagster log of the asset (through Pipes)."""

    def __init__(self, pipes_log: logging.Logger) -> None:
        super().__init__()
        self._pipes_log = pipes_log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._pipes_log.log(record.levelno, "%s", self.format(record))
        except Exception:  # a closed channel must not fail the training; stderr has it
            self.handleError(record)


def _rank0(spec_path: str) -> None:
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        handler = _PipesLogHandler(pipes.log)
        handler.setFormatter(logging.Formatter("[rank 0] %(name)s: %(message)s"))
        package = logging.getLogger("clothes_retrieval")
        package.addHandler(handler)
        package.propagate = False  # rank 0's messages: in the Dagster log, not twice
        try:
            result = run_rank(spec_path) or {}  # rank 0 always returns its result
            kind, world_size = read_spec(spec_path)["kind"], int(os.environ["WORLD_SIZE"])
            metadata = training_metadata(kind, result, world_size)
            pipes.log.info(
                f"[rank 0] trained {kind} in {world_size} processes: "
                + ", ".join(
                    f"{k}={v['raw_value']}"
                    for k, v in metadata.items()
                    if v["type"] in ("int", "float")
                )
            )
            pipes.report_asset_materialization(metadata=metadata)
        finally:
            package.removeHandler(handler)
            package.propagate = True


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of every rank: ``torchrun ... -m orchestration.pipes_worker SPEC``."""
    from torch.distributed.elastic.multiprocessing.errors import record

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        raise SystemExit("usage: torchrun ... -m orchestration.pipes_worker SPEC.json")
    rank = int(os.environ.get("RANK", "0"))
    configure_worker_logging(rank)
    # record: torchrun's failure summary then quotes this rank's exception and traceback.
    record(_rank0 if rank == 0 else run_rank)(args[0])


if __name__ == "__main__":
    main()
