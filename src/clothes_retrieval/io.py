"""Atomic file writing: an interrupted run never leaves a half-written artifact.

Everything is written to a temporary sibling and renamed into place (``os.replace`` is
atomic on POSIX within one file system). Directories are published the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "atomic_dir",
    "atomic_path",
    "file_digest",
    "prepare_run_dir",
    "write_json",
    "write_parquet",
    "write_text",
]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=indent)
    return Path(path)


def write_parquet(path: str | Path, df: pd.DataFrame) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def file_digest(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """md5 of a file's bytes (identifies an input artifact's content)."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def prepare_run_dir(out_dir: str | Path, inputs: dict[str, Any], *, fresh: bool = False) -> bool:
    """Make ``out_dir`` ready for a resumable run on ``inputs`` (config, input digests).

    When the folder holds a run on the same inputs, it is kept, so training resumes from
    its last checkpoint, and True is returned. When the inputs differ (new data, another
    config), the stale run is removed first: resuming it would mix old and new. The inputs
    are recorded in ``run_inputs.json``. ``fresh``: start over even on the same inputs (a
    scheduled retraining).
    """
    out_dir = Path(out_dir)
    record = out_dir / "run_inputs.json"
    wanted = json.loads(json.dumps(inputs, sort_keys=True, default=str))
    if record.is_file() and not fresh:
        try:
            same = json.loads(record.read_text()) == wanted
        except json.JSONDecodeError:
            same = False
        if same:
            return True
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    write_json(record, wanted)
    return False
