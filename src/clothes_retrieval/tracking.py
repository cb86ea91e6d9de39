"""Experiment tracking: a small interface with a Weights & Biases implementation.

Every training run logs through a :class:`Tracker`: its resolved config (at start), losses
and validation metrics (``log``), its final numbers (``summary``), and as artifacts the
checkpoint (type ``model``, ``log_artifact``) and the data version it trained on (type
``dataset``, ``log_dataset``: a small manifest and references, never a copy of the data).
The evaluation report is a run of its own (job type ``evaluation``) with its tables
(``log_table``), headline numbers and the report files
(:func:`clothes_retrieval.report.evaluation.track_evaluation`).

``create_tracker`` picks the implementation: W&B in offline mode by default, a no-op when
``WANDB_MODE=disabled`` (tests and CI) or ``mode="disabled"``, online when
``WANDB_MODE=online`` and an API key are configured. A tracker's :attr:`~WandbTracker.info`
(run id, mode, folder, URL: plain data, so it crosses process boundaries) is returned in the
training results; the Dagster assets show its :attr:`~WandbTracker.link` as ``wandb_run``.

Seeing the runs:

- offline (the default): each run is a folder ``<dir>/wandb/offline-run-<time>-<id>`` (the
  training's work/out dir, or the report's ``<report>_runs`` folder); upload it with
  ``wandb sync <that folder>`` (or ``wandb sync --sync-all`` inside ``<dir>``), with
  ``WANDB_API_KEY`` set or after ``wandb login``;
- online: ``WANDB_MODE=online`` and ``WANDB_API_KEY`` in the environment; the run's URL is
  then in the asset's metadata.

Artifact files (checkpoints, reports) are copied into W&B's staging folder
(``$WANDB_DATA_DIR/artifacts/staging``, by default under ``~/.local/share/wandb``) when they
are logged, so a checkpoint rewritten later cannot corrupt an upload; data is only referenced.
dagster-wandb is not used: it fails to import with wandb >= 0.30 and its IO manager fails
offline.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["Tracker", "NullTracker", "WandbTracker", "artifact_name", "create_tracker"]

Mode = Literal["offline", "online", "disabled"]
# W&B artifact names: letters, digits, dashes, underscores and dots only.
_ARTIFACT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def artifact_name(*parts: str) -> str:
    """A valid W&B artifact name from ``parts`` (joined by ``-``; other characters -> ``-``)."""
    name = _ARTIFACT_NAME.sub("-", "-".join(p for p in parts if p)).strip("-")
    if not name:
        raise ValueError(f"no artifact name can be made from {parts!r}")
    return name


class Tracker(Protocol):
    """What a training loop or a report needs from a tracker."""

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def summary(self, values: Mapping[str, Any]) -> None: ...

    def log_table(self, key: str, table: pd.DataFrame) -> None: ...

    def log_artifact(
        self,
        name: str,
        type: str,
        paths: Sequence[str | Path],
        metadata: Mapping[str, Any] | None = None,
    ) -> None: ...

    def log_dataset(self, name: str, version: str, sources: Sequence[str | Path] = ()) -> None: ...

    @property
    def link(self) -> str | None: ...

    @property
    def info(self) -> dict[str, str | None] | None: ...

    def finish(self) -> None: ...


class NullTracker:
    """Sends nothing (tracking disabled); records every call for callers and tests."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self.summary_values: dict[str, Any] = {}
        self.tables: dict[str, pd.DataFrame] = {}
        self.artifacts: list[dict[str, Any]] = []  # name, type, paths, metadata

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.history.append({**metrics, **({"step": step} if step is not None else {})})

    def summary(self, values: Mapping[str, Any]) -> None:
        self.summary_values.update(values)

    def log_table(self, key: str, table: pd.DataFrame) -> None:
        self.tables[key] = table

    def log_artifact(
        self,
        name: str,
        type: str,
        paths: Sequence[str | Path],
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.artifacts.append(
            {
                "name": name,
                "type": type,
                "paths": [Path(p) for p in paths],
                "metadata": dict(metadata or {}),
            }  # fmt: skip
        )

    def log_dataset(self, name: str, version: str, sources: Sequence[str | Path] = ()) -> None:
        self.log_artifact(name, "dataset", [], _dataset_metadata(version, sources))

    @property
    def link(self) -> str | None:
        return None

    @property
    def info(self) -> dict[str, str | None] | None:
        return None

    def finish(self) -> None:
        pass


class WandbTracker:
    """A W&B run; ``resume_id`` continues an interrupted run's history."""

    def __init__(
        self,
        project: str,
        name: str,
        config: Mapping[str, Any],
        *,
        mode: Mode = "offline",
        directory: str | Path = ".",
        group: str | None = None,
        job_type: str | None = None,
        resume_id: str | None = None,
    ) -> None:
        import wandb

        Path(directory).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project,
            name=name,
            group=group,
            job_type=job_type,
            config=dict(config),
            mode=mode,
            dir=str(directory),
            id=resume_id,
            resume="allow" if resume_id else None,
            reinit="finish_previous",
        )
        self.id: str = self.run.id
        self.mode: str = "offline" if self.run.offline else "online"
        # Read now: a finished run's properties are no longer available.
        self.dir = str(Path(self.run.dir).parent)  # <dir>/wandb/offline-run-* (wandb sync it)
        self.url: str | None = None if self.run.offline else self.run.url

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.run.log(dict(metrics), step=step)

    def summary(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            self.run.summary[key] = value

    def log_table(self, key: str, table: pd.DataFrame) -> None:
        """``table`` as a ``wandb.Table`` (columns as strings, the index dropped)."""
        import wandb

        frame = table.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
        self.run.log({key: wandb.Table(dataframe=frame)})

    def log_artifact(
        self,
        name: str,
        type: str,
        paths: Sequence[str | Path],
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """An artifact of the files ``paths`` (copied to W&B's staging folder now, uploaded
        on sync) with ``metadata`` (JSON-able)."""
        import wandb

        artifact = wandb.Artifact(name, type=type, metadata=_finite(dict(metadata or {})))
        for path in paths:
            path = Path(path)
            if not path.is_file():
                raise FileNotFoundError(f"artifact {name!r}: {path} is not a file")
            artifact.add_file(str(path), name=path.name)
        self.run.log_artifact(artifact)

    def log_dataset(self, name: str, version: str, sources: Sequence[str | Path] = ()) -> None:
        """The data version as an artifact of type ``dataset``: ``version`` in its metadata,
        a small ``data_version.json`` manifest, and ``sources`` (files or folders) as
        references by path (``file://``, not checksummed, never copied)."""
        import wandb

        metadata = _dataset_metadata(version, sources)
        artifact = wandb.Artifact(name, type="dataset", metadata=metadata)
        with artifact.new_file("data_version.json", mode="w") as f:
            json.dump({"name": name, **metadata}, f, indent=2)
        for source in sources:
            path = Path(source).resolve()
            if path.is_file():  # a folder's reference would still walk all its files
                artifact.add_reference(path.as_uri(), name=path.name, checksum=False)
        self.run.log_artifact(artifact)

    @property
    def link(self) -> str:
        """The run's URL online; offline, its local folder (``wandb sync`` uploads it)."""
        return self.url or self.dir

    @property
    def info(self) -> dict[str, str | None]:
        """Plain data: run id, mode, local folder, URL (None offline)."""
        return {"id": self.id, "mode": self.mode, "dir": self.dir, "url": self.url}

    def finish(self) -> None:
        self.run.finish()


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (W&B refuses them in artifact metadata)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _dataset_metadata(version: str, sources: Sequence[str | Path]) -> dict[str, Any]:
    return {"data_version": version, "sources": [str(Path(s).resolve()) for s in sources]}


def create_tracker(
    project: str,
    name: str,
    config: Mapping[str, Any],
    *,
    mode: Mode | None = None,
    directory: str | Path = ".",
    group: str | None = None,
    job_type: str | None = None,
    resume_id: str | None = None,
) -> Tracker:
    """A tracker for one run. ``mode`` None: ``WANDB_MODE`` from the environment, else offline."""
    chosen = mode or os.environ.get("WANDB_MODE", "offline")
    if chosen not in ("offline", "online", "disabled"):
        raise ValueError(f"WANDB_MODE={chosen!r}: use offline, online or disabled")
    if chosen == "disabled":
        return NullTracker()
    return WandbTracker(
        project,
        name,
        config,
        mode=chosen,  # type: ignore[arg-type]
        directory=directory,
        group=group,
        job_type=job_type,
        resume_id=resume_id,
    )
