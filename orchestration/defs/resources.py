"""Resources: the pipeline profile (with any ``--set`` overrides), chosen in one place.

The profile file comes from ``CLOTHES_RETRIEVAL_PROFILE`` (default: the embedded sample,
``configs/pipeline/sample.yaml``) and its overrides from ``CLOTHES_RETRIEVAL_OVERRIDES``
(JSON, written by ``clothes-retrieval run --set``); every asset reads its stage config and
output folder from it, so switching to the real photos or full DeepFashion2 is one
environment variable.
"""

import json
import os
from pathlib import Path

import dagster as dg

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

    def load(self) -> PipelineProfile:
        return load_profile(self.profile_path, json.loads(self.overrides) or None)

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
