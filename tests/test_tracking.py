"""W&B offline mode writes a real run that can be read back (WANDB_MODE=offline here only)."""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clothes_retrieval.tracking import NullTracker, WandbTracker, artifact_name, create_tracker


def offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """W&B offline, quiet, with its staging, cache and config folders under ``tmp_path``."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    folders = {"WANDB_DATA_DIR": "data", "WANDB_CACHE_DIR": "cache",
               "WANDB_CONFIG_DIR": "config", "WANDB_ARTIFACT_DIR": "artifacts"}  # fmt: skip
    for var, sub in folders.items():
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / sub))


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


@dataclass
class OfflineRun:
    """What an offline run's transaction log holds."""

    folder: Path  # <dir>/wandb/offline-run-*
    run_id: str
    job_type: str
    config: dict[str, Any]
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    artifacts: dict[str, dict[str, Any]]  # name -> type, metadata, entries (path -> ref)

    def table(self, key: str) -> dict[str, Any]:
        """The last logged ``wandb.Table`` under ``key``: its JSON (columns, data). History
        rows hold a table as flattened ``<key>/_type``, ``<key>/path``, ... items."""
        rows = [row for row in self.history if f"{key}/_type" in row]
        assert rows, f"no table {key!r} in the history"
        assert rows[-1][f"{key}/_type"] == "table-file", rows[-1]
        return json.loads((self.folder / "files" / rows[-1][f"{key}/path"]).read_text())


def read_offline_run(directory: Path) -> tuple[str, dict, list[dict], dict]:
    """(run id, config, history rows, summary) of the one offline run under ``directory``."""
    runs = sorted((directory / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    run = read_run(runs[0])
    return run.run_id, run.config, run.history, run.summary


def read_run(folder: Path) -> OfflineRun:
    """The records of the offline run in ``folder`` (``<dir>/wandb/offline-run-*``)."""
    (path,) = Path(folder).glob("run-*.wandb")
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
    run = OfflineRun(Path(folder), "", "", {}, [], {}, {})
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.job_type = record.run.run_id, record.run.job_type
            run.config = {_key(i): json.loads(i.value_json) for i in record.run.config.update}
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            run.summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "artifact":
            a = record.artifact
            run.artifacts[a.name] = {
                "type": a.type,
                "metadata": json.loads(a.metadata or "{}"),
                "entries": {e.path: e.ref for e in a.manifest.contents},
            }
    return run


def test_offline_run_holds_metrics_checkpoint_and_data_version(tmp_path: Path, monkeypatch):
    offline_env(monkeypatch, tmp_path)
    checkpoint = tmp_path / "work" / "latest.pth"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"weights")
    data = tmp_path / "coco_exports" / "train.json"
    data.parent.mkdir()
    data.write_text("{}")
    runs = tmp_path / "runs"
    tracker = create_tracker("clothes-retrieval-test", "unit", {"lr": 0.1}, directory=runs)
    assert isinstance(tracker, WandbTracker)
    for step in range(3):
        tracker.log({"train/loss": 1.0 / (step + 1)}, step=step)
    tracker.log({"val/recall_at_1": 0.5}, step=3)
    tracker.summary({"val_recall_at_1": 0.5})
    tracker.log_artifact("model-unit", "model", [checkpoint], {"epochs": 2, "loss": float("nan")})
    tracker.log_dataset("coco_exports", "md5:0123abcd", [data])
    tracker.finish()

    # The link is the offline run's folder (no URL offline); the info is plain data.
    (folder,) = (runs / "wandb").glob("offline-run-*")
    assert tracker.link == str(folder) and tracker.info == {
        "id": tracker.id, "mode": "offline", "dir": str(folder), "url": None
    }  # fmt: skip
    run = read_run(folder)
    assert run.run_id == tracker.id and run.config["lr"] == 0.1
    losses = [row["train/loss"] for row in run.history if "train/loss" in row]
    assert losses == pytest.approx([1.0, 0.5, 1 / 3])
    assert [row["val/recall_at_1"] for row in run.history if "val/recall_at_1" in row] == [0.5]
    assert run.summary["val_recall_at_1"] == 0.5

    # The checkpoint: its file in the manifest, the metadata (NaN as null: W&B refuses NaN).
    model = run.artifacts["model-unit"]
    assert model["type"] == "model" and model["metadata"] == {"epochs": 2, "loss": None}
    assert list(model["entries"]) == ["latest.pth"] and model["entries"]["latest.pth"] == ""
    # The data version: a manifest file and a reference to the data, not a copy of it.
    dataset = run.artifacts["coco_exports"]
    assert dataset["type"] == "dataset"
    assert dataset["metadata"] == {"data_version": "md5:0123abcd", "sources": [str(data.resolve())]}
    assert dataset["entries"] == {"data_version.json": "", "train.json": data.resolve().as_uri()}


def test_null_tracker_records_every_call(tmp_path: Path) -> None:
    tracker = NullTracker()
    tracker.log({"train/loss": 1.0}, step=2)
    tracker.log_artifact("m", "model", [tmp_path / "model.pt"], {"epochs": 1})
    tracker.log_dataset("crops", "md5:1")
    tracker.finish()
    assert tracker.history == [{"train/loss": 1.0, "step": 2}]
    assert [(a["name"], a["type"]) for a in tracker.artifacts] == [
        ("m", "model"),
        ("crops", "dataset"),
    ]
    assert tracker.artifacts[1]["metadata"]["data_version"] == "md5:1"
    assert tracker.link is None and tracker.info is None


def test_artifact_names_are_valid_for_wandb() -> None:
    assert artifact_name("detector", "atss", "sample") == "detector-atss-sample"
    assert artifact_name("evaluation report (tiny/gt)") == "evaluation-report-tiny-gt"
    with pytest.raises(ValueError, match="no artifact name"):
        artifact_name("///")


def test_disabled_and_bad_modes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert isinstance(create_tracker("p", "n", {}, directory=tmp_path), NullTracker)
    assert not (tmp_path / "wandb").exists()
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ValueError, match="WANDB_MODE='sometimes'"):
        create_tracker("p", "n", {}, directory=tmp_path)
