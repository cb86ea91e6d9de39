"""clothes_retrieval.launch: a retrieval training run by two gloo processes, in-process with
one, and a failing rank's error."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from clothes_retrieval import launch
from clothes_retrieval.launch import Launch, train_retrieval_distributed
from clothes_retrieval.retrieval.train import TrainResult
from tests.retrieval.conftest import make_crops, tiny_config


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return make_crops(tmp_path_factory.mktemp("crops"))


def _config():
    return tiny_config(train={"epochs": 1, "batch_size": 4, "iterations_per_epoch": 2})


def test_two_processes(crops: pd.DataFrame, tmp_path: Path) -> None:
    """Two ranks of 4 crops: the global batch is 8, the LR twice the config's; the result
    and the model come back to this process."""
    config = _config()
    result = train_retrieval_distributed(2, config, crops, None, tmp_path / "run", device="cpu")
    assert isinstance(result, TrainResult)
    assert result.epochs == 1
    assert result.history[0]["images"] == 2 * 2 * 4  # 2 iterations x 2 ranks x 4 crops
    assert Path(result.model_path) == (tmp_path / "run" / "model.pt").resolve()
    assert Path(result.model_path).is_file()
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["optim"]["lr"] == pytest.approx(2 * config.optim.lr)
    # The returned model holds the saved weights.
    saved = torch.load(result.model_path, map_location="cpu", weights_only=True)["state_dict"]
    assert result.model is not None
    for key, value in result.model.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_one_process_runs_in_process(crops: pd.DataFrame, tmp_path: Path) -> None:
    def no_launch(launch: Launch) -> None:
        raise AssertionError("world_size 1 must not start processes")

    config = _config()
    result = train_retrieval_distributed(
        1, config, crops, None, tmp_path, device="cpu", launcher=no_launch
    )
    assert result.epochs == 1 and result.history[0]["images"] == 2 * 4
    assert result.model is not None and (tmp_path / "model.pt").is_file()
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["optim"]["lr"] == pytest.approx(config.optim.lr)  # one process: unscaled


def test_a_failing_rank_raises_with_the_output(crops: pd.DataFrame, tmp_path: Path) -> None:
    """No training crops: every rank fails; the error names the world size and the exit
    code, and quotes the workers' own error message."""
    with pytest.raises(RuntimeError) as info:
        train_retrieval_distributed(2, _config(), crops.iloc[:0], None, tmp_path, device="cpu")
    message = str(info.value)
    assert "world size 2" in message and "exit code 1" in message
    # The failing ranks' tracebacks (the first to fail stops the other), ending in
    # prepare_training_crops's ValueError.
    assert "rank 0:" in message or "rank 1:" in message
    assert "trains on ['deepfashion2']" in message
    assert not (tmp_path / "launch" / "result.json").exists()


def test_a_new_launch_clears_the_last_runs_result_and_errors(tmp_path: Path) -> None:
    """A result or an error left by an earlier run must not pass for this run's."""
    (tmp_path / "rank-1.error").write_text("Traceback: an old failure")
    (tmp_path / "result.json").write_text("{}")
    new = launch._new_launch("retrieval", "model m", {"x": 1}, tmp_path, 2, "cpu")
    assert not new.result_path.exists() and not list(tmp_path.glob("rank-*.error"))
    assert json.loads(new.spec_path.read_text())["kind"] == "retrieval"
    assert new.command()[-3:] == ["-m", "clothes_retrieval.launch", str(new.spec_path)]
    assert new.env()["OMP_NUM_THREADS"] and new.env()["PYTHONUNBUFFERED"] == "1"
    assert "no rank raised an error" in str(new.failure(-9))


def test_more_processes_than_gpus_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="only 1 CUDA device"):
        launch._resolve_launch_device("cuda", 2)
    with pytest.raises(ValueError, match="give device='cuda'"):
        launch._resolve_launch_device("cuda:1", 2)
