"""Which data version each artifact was built from, and refusing to mix versions.

Every artifact folder holds ``lineage.json``: the data version of the sources it was built
from (one combined string, plus each source's own version). A stage that reads several
artifacts (the report: embeddings of every model, fused boxes, the item table) asks
:func:`common_data_version` first: inputs built from different data versions (one model
retrained on new data, another not yet) are refused with an error naming which is which,
instead of scoring old embeddings against a new item table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from clothes_retrieval.io import write_json
from clothes_retrieval.versioning.dvc import data_version

__all__ = [
    "LINEAGE_FILE",
    "DataVersionMismatch",
    "combine_versions",
    "common_data_version",
    "read_lineage",
    "source_versions",
    "write_lineage",
]

LINEAGE_FILE = "lineage.json"


class DataVersionMismatch(ValueError):
    """Inputs of one step were built from different data versions."""


def source_versions(sources: Mapping[str, object]) -> dict[str, str]:
    """Each source's data version (its DVC hash where tracked, else a folder fingerprint);
    ``sources``: name -> object with ``root`` and ``dvc_file`` (a profile's SourceConfig)."""
    return {
        name: data_version(spec.root, spec.dvc_file)  # type: ignore[attr-defined]
        for name, spec in sources.items()
    }


def combine_versions(versions: Mapping[str, str]) -> str:
    """One version string for several sources: the single version itself, else
    ``dv-`` + a digest of the sorted ``name=version`` pairs."""
    if len(versions) == 1:
        return next(iter(versions.values()))
    text = "\n".join(f"{k}={v}" for k, v in sorted(versions.items()))
    return "dv-" + hashlib.md5(text.encode()).hexdigest()[:16]


def write_lineage(
    out_dir: str | Path, version: str, sources: Mapping[str, str] | None = None
) -> Path:
    """Record in ``out_dir`` that its artifact was built from data version ``version``."""
    return write_json(
        Path(out_dir) / LINEAGE_FILE, {"data_version": version, "sources": dict(sources or {})}
    )


def read_lineage(artifact_dir: str | Path) -> str:
    """The data version an artifact folder was built from; ``FileNotFoundError`` naming the
    folder when it records none (built before lineage was kept, or never built)."""
    path = Path(artifact_dir) / LINEAGE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{artifact_dir} records no data version ({LINEAGE_FILE}); materialise it again"
        )
    return str(json.loads(path.read_text())["data_version"])


def common_data_version(inputs: Mapping[str, str | Path]) -> str:
    """The one data version that every input (name -> artifact folder) was built from.

    Raises :class:`DataVersionMismatch` naming the inputs of each version when they differ.
    """
    if not inputs:
        raise ValueError("no inputs to compare")
    versions = {name: read_lineage(path) for name, path in inputs.items()}
    distinct = sorted(set(versions.values()))
    if len(distinct) > 1:
        groups = "; ".join(
            f"{v}: {', '.join(sorted(n for n, x in versions.items() if x == v))}" for v in distinct
        )
        raise DataVersionMismatch(
            f"inputs were built from different data versions ({groups}); rebuild the stale "
            "ones first (the automation does, in order)"
        )
    return distinct[0]
