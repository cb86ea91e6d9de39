"""Resources: the pipeline profile (with any ``--set`` overrides), chosen in one place.

The profile file comes from ``CLOTHES_RETRIEVAL_PROFILE`` (default: the embedded sample,
``configs/pipeline/sample.yaml``) and its overrides from ``CLOTHES_RETRIEVAL_OVERRIDES``
(JSON, written by ``clothes-retrieval run --set``); every asset reads its stage config and
output folder from it, so switching to the real photos or full DeepFashion2 is one
environment variable.

A run reads the profile once, when its resources are set up: every step of the run sees
that snapshot, so editing the YAML while a run goes changes the next run, not the later
steps of this one.
"""

import json
import os
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from clothes_retrieval.profile import PipelineProfile, load_profile

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PROFILE = PROJECT_ROOT / "configs" / "pipeline" / "sample.yaml"
PROFILE_ENV = "CLOTHES_RETRIEVAL_PROFILE"
OVERRIDES_ENV = "CLOTHES_RETRIEVAL_OVERRIDES"


def default_profile_path() -> str:
    return os.environ.get(PROFILE_ENV, str(DEFAULT_PROFILE))


def default_overrides() -> str:
    return os.environ.get(OVERRIDES_ENV, "{}")


class PipelineResource(dg.ConfigurableResource):
    """The validated pipeline profile and the artifact folders derived from it."""

    profile_path: str
    overrides: str = "{}"  # JSON of nested keys deep-merged into the profile
    _snapshot: PipelineProfile | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._snapshot = self._read()  # once per run (per process with a multiprocess executor)

    def _read(self) -> PipelineProfile:
        return load_profile(self.profile_path, json.loads(self.overrides) or None)

    def load(self) -> PipelineProfile:
        """The run's snapshot of the profile; outside a run (definitions, sensors, direct
        calls), the file as it is now."""
        return self._snapshot if self._snapshot is not None else self._read()

    def artifact_dir(self, *parts: str) -> Path:
        """Folder of one asset's files: ``<output_root>/<profile name>/<parts...>``."""
        return self.load().output_dir.joinpath(*parts)


def build_resources(profile_path: str | None = None, overrides: str | None = None) -> dict:
    return {
        "pipeline": PipelineResource(
            profile_path=profile_path or default_profile_path(),
            overrides=overrides if overrides is not None else default_overrides(),
        )
    }
