"""Publishing: the index that passed the accuracy floor, copied for serving."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from clothes_retrieval.io import atomic_dir
from clothes_retrieval.versioning import write_lineage

__all__ = ["publish_index"]


def publish_index(
    index_dir: str | Path, report_dir: str | Path, out_dir: str | Path, data_version: str
) -> Path:
    """Copy the index that passed the floor to ``out_dir`` for serving (atomically), with
    the report's headline numbers and the data version it was built from."""
    report = json.loads((Path(report_dir) / "report.json").read_text())
    with atomic_dir(Path(out_dir)) as tmp:
        for f in Path(index_dir).iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        (tmp / "evaluation.json").write_text(json.dumps(report["headline"], indent=2))
        write_lineage(tmp, data_version)
    return Path(out_dir)
