"""How the training assets train: in the step's own process with one process, with torchrun
through Dagster Pipes with more.

:func:`train_detector` and :func:`train_retrieval` take the asset's context and the
library's arguments and return the library's TrainResult and the training's part of the
asset's metadata (the same keys whichever way it trained). With ``world_size`` N > 1 the
library writes the spec (:mod:`clothes_retrieval.launch`) and :class:`PipesTorchrun` runs ::

    python -m torch.distributed.run --standalone --nproc_per_node N \\
        -m orchestration.pipes_worker <run dir>/launch/spec.json

through :class:`dagster.PipesSubprocessClient`: rank 0 opens the Pipes session, so its log
messages reach the Dagster log while it trains and its metrics come back as the
materialisation it reports (:mod:`orchestration.pipes_worker`); the library then reads the
result file back (the trained model's paths, the W&B run).

On a cluster the step already runs in a pod sized for the training (the op tags of
:mod:`orchestration.defs.kubernetes`), so the subprocess client is the right one there too.
To start the training in a pod of its own instead, the same command goes to
``dagster_k8s.PipesK8sClient``::

    PipesK8sClient().run(
        context=context,
        image=<the code location's image>,
        command=launch.command(WORKER),
        env=launch.env(),
        base_pod_spec=<the training pod's spec: GPUs, node selector, the artifact volume>,
    )

(the spec and result files must then be on the shared artifact volume, which they are: they
live in the run's folder under the profile's ``output_root``).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster._core.errors import DagsterPipesExecutionError

from clothes_retrieval.launch import (
    Launch,
    train_detector_distributed,
    train_retrieval_distributed,
)
from orchestration.pipes_worker import detector_metadata, retrieval_metadata

if TYPE_CHECKING:
    import pandas as pd

    from clothes_retrieval.detection.config import DetectorConfig
    from clothes_retrieval.detection.train import TrainResult as DetectorTrainResult
    from clothes_retrieval.retrieval.config import RetrievalModelConfig
    from clothes_retrieval.retrieval.train import TrainResult as RetrievalTrainResult

WORKER = "orchestration.pipes_worker"

_FROM_PIPES = {
    "path": dg.MetadataValue.path,
    "json": dg.MetadataValue.json,
    "float": dg.MetadataValue.float,
    "int": dg.MetadataValue.int,
    "text": dg.MetadataValue.text,
}


def metadata_values(reported: dict[str, dict[str, Any]]) -> dict[str, dg.MetadataValue]:
    """Pipes metadata values (``{"raw_value", "type"}``) as Dagster's, the way Pipes
    converts what a worker reports."""
    return {k: _FROM_PIPES[v["type"]](v["raw_value"]) for k, v in reported.items()}


class PipesTorchrun:
    """A launcher for :mod:`clothes_retrieval.launch` that runs torchrun through Dagster
    Pipes; after the call, :attr:`metadata` holds what rank 0 reported."""

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        client: dg.PipesSubprocessClient | None = None,
    ) -> None:
        self.context = context
        self.client = client or dg.PipesSubprocessClient()
        self.metadata: dict[str, dg.MetadataValue] | None = None

    def __call__(self, launch: Launch) -> None:
        command = launch.command(WORKER)
        self.context.log.info(
            f"training {launch.what} with {launch.world_size} processes ({launch.device}) "
            f"through Dagster Pipes: {' '.join(command)}"
        )
        try:
            invocation = self.client.run(
                context=self.context,
                command=command,
                env=launch.env(),
                extras={"kind": launch.kind, "spec": str(launch.spec_path)},
            )
        except DagsterPipesExecutionError as err:
            raise launch.failure(_exit_code(err)) from err
        results = invocation.get_results(implicit_materializations=False)
        reported = [r for r in results if isinstance(r, dg.MaterializeResult)]
        if not reported:
            raise RuntimeError(
                f"training {launch.what} with world size {launch.world_size} exited 0 but "
                f"rank 0 reported no materialisation through Pipes ({WORKER})"
            )
        self.metadata = dict(reported[0].metadata or {})


def _exit_code(err: DagsterPipesExecutionError) -> int | None:
    """torchrun's exit code, from PipesSubprocessClient's message ("... failed with code N")."""
    found = re.search(r"code (-?\d+)", str(err))
    return int(found.group(1)) if found else None


def train_detector(
    context: dg.AssetExecutionContext,
    world_size: int,
    detector: DetectorConfig | str | Path,
    profile: str,
    train_json: str | Path,
    val_json: str | Path | None,
    work_dir: str | Path,
    **train_detector_kwargs: Any,
) -> tuple[DetectorTrainResult, dict[str, dg.MetadataValue]]:
    """:func:`~clothes_retrieval.launch.train_detector_distributed` from an asset: the
    result and the ``detector/<name>`` metadata that comes from the training."""
    launcher = PipesTorchrun(context)
    result = train_detector_distributed(
        world_size, detector, profile, train_json, val_json, work_dir,
        launcher=launcher, **train_detector_kwargs,
    )  # fmt: skip
    if launcher.metadata is not None:
        return result, launcher.metadata
    return result, metadata_values(detector_metadata(dataclasses.asdict(result)))


def train_retrieval(
    context: dg.AssetExecutionContext,
    world_size: int,
    config: RetrievalModelConfig,
    crops: pd.DataFrame,
    val: pd.DataFrame | None,
    out_dir: str | Path,
    **kwargs: Any,
) -> tuple[RetrievalTrainResult, dict[str, dg.MetadataValue]]:
    """:func:`~clothes_retrieval.launch.train_retrieval_distributed` from an asset: the
    result and the ``model/<name>`` metadata that comes from the training."""
    launcher = PipesTorchrun(context)
    result = train_retrieval_distributed(
        world_size, config, crops, val, out_dir, launcher=launcher, **kwargs
    )
    if launcher.metadata is not None:
        return result, launcher.metadata
    return result, metadata_values(retrieval_metadata(result.to_json(), world_size))
