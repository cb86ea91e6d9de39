"""DVC as the source of data versions.

DVC has no Dagster integration; the usual pattern, used here, is to read the ``md5`` of the
tracked folder from its ``.dvc`` file and use it as the data version of the raw dataset.
``dvc add`` (run by the sample-data command and by users after changing data) updates that
file, so a new hash means new data and every downstream artifact becomes stale.

For a data root that no ``.dvc`` file tracks (a DeepFashion2 download somewhere else), the
version falls back to a fingerprint of the folder's file names, sizes and modification
times: cheap on 500k images, and it changes whenever a file is added, removed or rewritten.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

__all__ = ["DvcError", "read_dvc_hash", "dvc_add", "fingerprint_folder", "data_version"]


class DvcError(RuntimeError):
    """A DVC file is malformed or a dvc command failed; the message says which and why."""


def read_dvc_hash(dvc_file: str | Path) -> str:
    """The ``md5`` of the single output recorded in ``dvc_file`` (e.g. ``abc123.dir``)."""
    dvc_file = Path(dvc_file)
    if not dvc_file.is_file():
        raise FileNotFoundError(
            f"{dvc_file} not found: run `dvc add <data root>` (or `clothes-retrieval sample-data`)"
            " to start tracking the data"
        )
    try:
        doc = yaml.safe_load(dvc_file.read_text()) or {}
        outs = doc["outs"]
        md5 = outs[0]["md5"]
    except (yaml.YAMLError, KeyError, IndexError, TypeError) as exc:
        raise DvcError(
            f"{dvc_file} is not a valid .dvc file (expected outs[0].md5): {exc}; "
            "recreate it with `dvc add`"
        ) from exc
    if len(outs) != 1:
        raise DvcError(f"{dvc_file} tracks {len(outs)} outputs; expected exactly one data root")
    return str(md5)


def _dvc_executable() -> str:
    # Prefer the dvc installed beside this interpreter (the project's venv).
    candidate = Path(sys.executable).with_name("dvc")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("dvc")
    if found is None:
        raise DvcError("the `dvc` command is not installed; run the set-up (make setup)")
    return found


def dvc_add(path: str | Path, *, repo_root: str | Path | None = None) -> str:
    """``dvc add path`` inside ``repo_root`` (must be a DVC repo); returns the new hash.

    Analytics are off for the call (no network); the ``.dvc`` file lands beside ``path``.
    """
    path = Path(path).resolve()
    root = Path(repo_root).resolve() if repo_root is not None else path.parent
    if not (root / ".dvc").is_dir():
        raise DvcError(f"{root} is not a DVC repository (no .dvc/); run `dvc init` there first")
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    cmd = [_dvc_executable(), "add", "--quiet", str(path.relative_to(root))]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DvcError(f"`{' '.join(cmd)}` failed in {root}:\n{proc.stderr.strip()}")
    dvc_file = path.with_name(path.name + ".dvc")
    md5 = read_dvc_hash(dvc_file)
    logger.info("dvc add %s -> %s", path, md5)
    return md5


def fingerprint_folder(root: str | Path) -> str:
    """A hash of every file's relative path, size and mtime under ``root`` (sorted walk)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} does not exist")
    digest = hashlib.md5()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            st = p.stat()
            rel = p.relative_to(root).as_posix()
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return "fp-" + digest.hexdigest()


def data_version(data_root: str | Path, dvc_file: str | Path | None) -> str:
    """The data version of ``data_root``: the DVC hash when ``dvc_file`` tracks it, else a
    folder fingerprint."""
    if dvc_file is not None and Path(dvc_file).is_file():
        return read_dvc_hash(dvc_file)
    return fingerprint_folder(data_root)
