from pathlib import Path

import pytest

from clothes_retrieval.io import atomic_dir, atomic_path, write_json


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_old_version_on_failure(tmp_path: Path):
    target = write_json(tmp_path / "a.json", {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{broken")
            raise RuntimeError
    assert target.read_text().strip().startswith("{")
    assert '"v": 1' in target.read_text()


def test_atomic_dir_replaces_whole(tmp_path: Path):
    target = tmp_path / "d"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with atomic_dir(target) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "c").write_text("3")
            raise RuntimeError
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_prepare_run_dir_keeps_same_inputs_and_clears_changed(tmp_path: Path):
    from clothes_retrieval.io import prepare_run_dir

    run = tmp_path / "run"
    assert prepare_run_dir(run, {"data": "a", "epochs": 2}) is False
    (run / "last.pt").write_text("checkpoint")
    assert prepare_run_dir(run, {"epochs": 2, "data": "a"}) is True  # same inputs: resume
    assert (run / "last.pt").exists()
    assert prepare_run_dir(run, {"data": "b", "epochs": 2}) is False  # new data: start over
    assert not (run / "last.pt").exists()


def test_prepare_run_dir_fresh_starts_over_on_the_same_inputs(tmp_path: Path):
    from clothes_retrieval.io import prepare_run_dir

    run = tmp_path / "run"
    assert prepare_run_dir(run, {"data": "a"}) is False
    (run / "epoch_1.pth").write_text("weights")
    assert prepare_run_dir(run, {"data": "a"}, fresh=True) is False  # a scheduled retraining
    assert not (run / "epoch_1.pth").exists()
    assert prepare_run_dir(run, {"data": "a"}) is True  # and the next run resumes it
