"""A training of world size 2 launched through Dagster Pipes (torchrun --nproc_per_node 2,
gloo on the CPU): rank 0's metrics arrive in the asset's materialisation and its log
messages in the run's log; one process trains in the step and gives the same keys; a
failing rank's error reaches the step's failure."""

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from orchestration.defs.training import train_retrieval
from tests.retrieval.conftest import make_crops, tiny_config

TRAINED_KEYS = {"val_recall_at_1", "val_map_at_r", "epochs", "train_images_per_s",
                "world_size", "model_path"}  # fmt: skip


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    root = tmp_path_factory.mktemp("crops")
    val = make_crops(root, n_identities=4, split="validation", seed=1)
    return make_crops(root, split="train"), val


def _config():  # tests/test_launch.py's: 2 iterations of 4 crops per rank, one epoch
    return tiny_config(train={"epochs": 1, "batch_size": 4, "iterations_per_epoch": 2})


def _materialize(
    world_size: int,
    train: pd.DataFrame,
    val: pd.DataFrame | None,
    out_dir: Path,
    instance: dg.DagsterInstance,
) -> dg.ExecuteInProcessResult:
    @dg.asset(name="tiny_model")
    def tiny_model(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        result, trained = train_retrieval(
            context, world_size, _config(), train, val, out_dir, device="cpu"
        )
        assert result.model is not None
        return dg.MaterializeResult(metadata={**trained, "asset_side": True})

    return dg.materialize([tiny_model], instance=instance, raise_on_error=False)


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    (mat,) = result.asset_materializations_for_node("tiny_model")
    return mat.metadata


def test_two_processes_report_their_metrics_through_pipes(crops, tmp_path: Path) -> None:
    train, val = crops
    with dg.instance_for_test() as instance:
        result = _materialize(2, train, val, tmp_path / "run", instance)
        metadata = _metadata(result)
        messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert set(metadata) == TRAINED_KEYS | {"asset_side"}
    assert metadata["world_size"].value == 2 and metadata["epochs"].value == 1
    assert 0.0 <= metadata["val_recall_at_1"].value <= 1.0
    assert metadata["model_path"] == dg.MetadataValue.path(
        str((tmp_path / "run" / "model.pt").resolve())
    )
    # What rank 0 trained: its result file holds the same numbers.
    written = json.loads((tmp_path / "run" / "launch" / "result.json").read_text())
    assert metadata["val_recall_at_1"].value == pytest.approx(written["val_recall_at_1"])
    assert metadata["train_images_per_s"].value == round(written["train_images_per_s"], 1)
    # Rank 0's messages came through Pipes into the run's log while it trained.
    assert any("[rank 0] clothes_retrieval" in m for m in messages), messages
    assert any("trained retrieval in 2 processes" in m for m in messages)


def test_one_process_trains_in_the_step_with_the_same_keys(crops, tmp_path: Path) -> None:
    train, val = crops
    with dg.instance_for_test() as instance:
        metadata = _metadata(_materialize(1, train, val, tmp_path / "run", instance))
    assert set(metadata) == TRAINED_KEYS | {"asset_side"}
    assert metadata["world_size"].value == 1
    assert not (tmp_path / "run" / "launch").exists()  # no processes were started


def test_a_failing_rank_fails_the_step_with_its_error(crops, tmp_path: Path) -> None:
    """No training crops: the ranks fail; the step's error names the world size and the
    exit code and quotes the rank's own error."""
    train, _ = crops
    with dg.instance_for_test() as instance:
        result = _materialize(2, train.iloc[:0], None, tmp_path / "run", instance)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    error, texts = failure.step_failure_data.error, []
    while error is not None:
        texts.append(error.message)
        error = error.cause
    text = "\n".join(texts)
    assert "world size 2" in text and "exit code 1" in text, text
    assert "trains on ['deepfashion2']" in text  # prepare_training_crops's ValueError
