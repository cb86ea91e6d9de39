"""W&B offline mode writes a real run that can be read back (WANDB_MODE=offline here only)."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

from clothes_retrieval.tracking import NullTracker, WandbTracker, create_tracker


def _records(path: Path) -> list:
    """The protobuf records of a .wandb file: a 7-byte header (":W&B", magic, version),
    then LevelDB-log framing in 32 KiB blocks (crc32c, length, type; a record may span
    blocks as FIRST/MIDDLE/LAST chunks). wandb >= 0.30 ships no Python reader of it."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, pending, out = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B", path
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header: padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 or pos + 7 + length > len(data):  # the end, or a chunk still being written
            break
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_offline_run(directory: Path) -> tuple[str, dict, list[dict], dict]:
    """(run id, config, history rows, summary) of the one offline run under ``directory``."""
    runs = sorted((directory / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    (path,) = runs[0].glob("run-*.wandb")
    # wandb's service process writes the file; finish() can return before the last of it
    # is on disk (seen once in CI under load: no run record read). The run is complete
    # once its exit record is written.
    deadline = time.monotonic() + 60
    while True:
        records = _records(path)
        kinds = [r.WhichOneof("record_type") for r in records]
        if "exit" in kinds:
            break
        assert time.monotonic() < deadline, f"{path} has no exit record after 60 s: {kinds}"
        time.sleep(0.2)
    run_id, config, history, summary = "", {}, [], {}
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_id = record.run.run_id
            config = {_key(i): json.loads(i.value_json) for i in record.run.config.update}
        elif kind == "history":
            history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
    return run_id, config, history, summary


def test_offline_mode_writes_a_run_with_its_metrics(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracker = create_tracker("clothes-retrieval-test", "unit", {"lr": 0.1}, directory=tmp_path)
    assert isinstance(tracker, WandbTracker)
    for step in range(3):
        tracker.log({"train/loss": 1.0 / (step + 1)}, step=step)
    tracker.summary({"val_recall_at_1": 0.5})
    tracker.finish()

    run_id, config, history, summary = read_offline_run(tmp_path)
    assert run_id == tracker.id and config["lr"] == 0.1
    losses = [row["train/loss"] for row in history if "train/loss" in row]
    assert losses == pytest.approx([1.0, 0.5, 1 / 3])
    assert summary["val_recall_at_1"] == 0.5


def test_disabled_and_bad_modes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert isinstance(create_tracker("p", "n", {}, directory=tmp_path), NullTracker)
    assert not (tmp_path / "wandb").exists()
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ValueError, match="WANDB_MODE='sometimes'"):
        create_tracker("p", "n", {}, directory=tmp_path)
