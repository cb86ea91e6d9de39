"""Pipeline profiles: one YAML file per scale (the embedded sample, full DeepFashion2).

A profile names the data root and holds one section per stage; each section validates into
that stage's frozen config, so a misspelt key fails at load time with its full path
(``crops.max_hamming``) and the file's name. Relative paths in a profile are resolved
against the project root (the nearest ancestor of the profile file holding
``pyproject.toml``), so the same profile works from any working directory.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from clothes_retrieval.config import FrozenConfig, dump_config, load_yaml, validate_config
from clothes_retrieval.data.crops import CropConfig
from clothes_retrieval.data.deepfashion2 import ReaderConfig
from clothes_retrieval.data.sample import SampleDataConfig

__all__ = ["DataConfig", "PipelineProfile", "load_profile", "project_root_of"]


class DataConfig(FrozenConfig):
    """Where the raw data lives and how its version is read."""

    root: Path = Field(description="dataset root in DeepFashion2 layout (<split>/image, annos)")
    dvc_file: Path | None = Field(
        default=Path("data.dvc"),
        description=".dvc file that tracks the data root (or a parent); its md5 is the data "
        "version. None or a missing file: fingerprint the folder instead.",
    )
    generate_sample: bool = Field(
        default=False,
        description="the main job writes the synthetic sample into `root` (then `dvc add`)",
    )
    dataset: str = "deepfashion2"


class PipelineProfile(FrozenConfig):
    """Everything one pipeline run needs, validated."""

    name: str
    data: DataConfig
    output_root: Path = Path("outputs")
    sample: SampleDataConfig = SampleDataConfig()
    reader: ReaderConfig = ReaderConfig()
    crops: CropConfig = CropConfig()

    @property
    def output_dir(self) -> Path:
        """Root of this profile's artifacts: ``<output_root>/<name>``."""
        return self.output_root / self.name

    def resolved(self, project_root: Path) -> PipelineProfile:
        """A copy with every relative path made absolute against ``project_root``."""

        def fix(p: Path | None) -> Path | None:
            if p is None:
                return None
            return p if p.is_absolute() else (project_root / p).resolve()

        data = self.data.model_copy(
            update={"root": fix(self.data.root), "dvc_file": fix(self.data.dvc_file)}
        )
        return self.model_copy(update={"data": data, "output_root": fix(self.output_root)})

    def dump(self) -> dict:
        return dump_config(self)


def project_root_of(path: Path) -> Path:
    """Nearest ancestor of ``path`` that holds ``pyproject.toml`` (else the current directory)."""
    for parent in [path.resolve().parent, *path.resolve().parents]:
        if (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


def load_profile(path: str | Path) -> PipelineProfile:
    """Load and validate a profile; relative paths become absolute (see module docstring)."""
    path = Path(path)
    profile = validate_config(PipelineProfile, load_yaml(path), source=str(path))
    return profile.resolved(project_root_of(path))
