"""DVC: hashes from .dvc files, `dvc add` on change, push/pull through a local folder remote."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clothes_retrieval.versioning import (
    DvcError,
    data_version,
    dvc_add,
    fingerprint_folder,
    read_dvc_hash,
)

DVC = str(Path(sys.executable).with_name("dvc"))


def _run(cmd: list[str], cwd: Path) -> None:
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True)


@pytest.fixture()
def dvc_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _run(["git", "init", "-q"], repo)
    _run([DVC, "init", "-q"], repo)
    _run([DVC, "config", "core.analytics", "false"], repo)
    (repo / "data" / "split").mkdir(parents=True)
    (repo / "data" / "split" / "a.txt").write_text("alpha")
    return repo


def test_dvc_add_hash_changes_with_data(dvc_repo: Path):
    first = dvc_add(dvc_repo / "data", repo_root=dvc_repo)
    assert first.endswith(".dir")
    assert read_dvc_hash(dvc_repo / "data.dvc") == first
    assert dvc_add(dvc_repo / "data", repo_root=dvc_repo) == first  # unchanged data, same hash
    (dvc_repo / "data" / "split" / "b.txt").write_text("beta")
    second = dvc_add(dvc_repo / "data", repo_root=dvc_repo)
    assert second != first
    assert data_version(dvc_repo / "data", dvc_repo / "data.dvc") == second


def test_local_folder_remote_push_and_pull(dvc_repo: Path, tmp_path: Path):
    remote = tmp_path / "remote"
    _run([DVC, "remote", "add", "-d", "local", str(remote)], dvc_repo)
    dvc_add(dvc_repo / "data", repo_root=dvc_repo)
    _run([DVC, "push", "-q"], dvc_repo)
    shutil.rmtree(dvc_repo / "data")
    shutil.rmtree(dvc_repo / ".dvc" / "cache")
    _run([DVC, "pull", "-q"], dvc_repo)
    assert (dvc_repo / "data" / "split" / "a.txt").read_text() == "alpha"


def test_bad_dvc_files_give_clear_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="dvc add"):
        read_dvc_hash(tmp_path / "missing.dvc")
    bad = tmp_path / "bad.dvc"
    bad.write_text("outs: []\n")
    with pytest.raises(DvcError, match="outs"):
        read_dvc_hash(bad)
    with pytest.raises(DvcError, match="not a DVC repository"):
        dvc_add(tmp_path, repo_root=tmp_path)


def test_fingerprint_changes_when_a_file_changes(tmp_path: Path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("1")
    before = fingerprint_folder(tmp_path / "d")
    assert before == fingerprint_folder(tmp_path / "d")
    (tmp_path / "d" / "y").write_text("2")
    assert fingerprint_folder(tmp_path / "d") != before
    assert data_version(tmp_path / "d", None).startswith("fp-")
