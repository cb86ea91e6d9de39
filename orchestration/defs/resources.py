"""Resources: the pipeline profile, chosen in one place.

The profile file comes from ``CLOTHES_RETRIEVAL_PROFILE`` (default: the embedded sample,
``configs/pipeline/sample.yaml``); every asset reads its stage config and output folder
from it, so switching to full DeepFashion2 is one environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from clothes_retrieval.profile import PipelineProfile, load_profile

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PROFILE = PROJECT_ROOT / "configs" / "pipeline" / "sample.yaml"
PROFILE_ENV = "CLOTHES_RETRIEVAL_PROFILE"


def default_profile_path() -> str:
    return os.environ.get(PROFILE_ENV, str(DEFAULT_PROFILE))


class PipelineResource(dg.ConfigurableResource):
    """The validated pipeline profile and the artifact folders derived from it."""

    profile_path: str

    def load(self) -> PipelineProfile:
        return load_profile(self.profile_path)

    def artifact_dir(self, asset_name: str) -> Path:
        """Folder of one asset's files: ``<output_root>/<profile name>/<asset_name>``."""
        return self.load().output_dir / asset_name


def build_resources(profile_path: str | None = None) -> dict[str, object]:
    return {"pipeline": PipelineResource(profile_path=profile_path or default_profile_path())}
