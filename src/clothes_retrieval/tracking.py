"""Experiment tracking: a small interface with a Weights & Biases implementation.

Every training run logs its resolved config, losses and metrics through a :class:`Tracker`.
``create_tracker`` picks the implementation: W&B in offline mode by default (files under
``<dir>/wandb/offline-run-*``, upload later with ``wandb sync``), online when
``WANDB_MODE=online`` and an API key are configured, and a no-op when ``WANDB_MODE=disabled``
(tests and CI) or ``mode="disabled"``. dagster-wandb is not used: it fails to import with
wandb >= 0.30 and its IO manager fails offline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

logger = logging.getLogger(__name__)

__all__ = ["Tracker", "NullTracker", "WandbTracker", "create_tracker"]

Mode = Literal["offline", "online", "disabled"]


class Tracker(Protocol):
    """What a training loop needs from a tracker."""

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def summary(self, values: Mapping[str, Any]) -> None: ...

    def finish(self) -> None: ...


class NullTracker:
    """Records nothing (tracking disabled); keeps the last metrics for callers and tests."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self.summary_values: dict[str, Any] = {}

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.history.append({**metrics, **({"step": step} if step is not None else {})})

    def summary(self, values: Mapping[str, Any]) -> None:
        self.summary_values.update(values)

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
        resume_id: str | None = None,
    ) -> None:
        import wandb

        Path(directory).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project,
            name=name,
            group=group,
            config=dict(config),
            mode=mode,
            dir=str(directory),
            id=resume_id,
            resume="allow" if resume_id else None,
            reinit="finish_previous",
        )
        self.id = self.run.id

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.run.log(dict(metrics), step=step)

    def summary(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            self.run.summary[key] = value

    def finish(self) -> None:
        self.run.finish()


def create_tracker(
    project: str,
    name: str,
    config: Mapping[str, Any],
    *,
    mode: Mode | None = None,
    directory: str | Path = ".",
    group: str | None = None,
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
        mode=chosen,
        directory=directory,
        group=group,
        resume_id=resume_id,  # type: ignore[arg-type]
    )
