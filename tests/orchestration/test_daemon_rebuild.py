"""End to end: `dagster dev` running, the data changes, the whole graph rebuilds by itself.

A tiny profile (two tiny detectors, one tiny model) is run once by the main entry; then
`dagster dev` (webserver + daemon) starts on loopback in its own process group and a new
sample is generated and `dvc add`-ed. The data_version_sensor notices the new hash and
observes the source; the automation sensor then rebuilds every asset, detectors, model,
embeddings, index, report and publish, without a click. The test reads the order from the
event log: each asset rebuilt once, after everything it depends on; every artifact records
the new data version.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
import yaml

from clothes_retrieval.cli import main
from orchestration.defs import build_definitions
from tests.orchestration.rebuild import assert_built_from, assert_in_dependency_order, new_data
from tests.orchestration.tiny_project import make_project

REPO = Path(__file__).resolve().parents[2]
MODEL = "sample_lite0_gem"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_model(profile: Path) -> None:
    data = yaml.safe_load(profile.read_text())
    data["retrieval"]["models"] = [MODEL]
    data["search"]["ensembles"] = {}
    data["search"]["publish"] = {"name": MODEL, "box_source": "fused"}
    profile.write_text(yaml.safe_dump(data, sort_keys=False))


def _rebuilt_since(instance, keys, since: float) -> dict[dg.AssetKey, float]:
    """key -> time of its materialisations after ``since`` (fails if one was built twice)."""
    out = {}
    for key in keys:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_timestamp=since), limit=10
        ).records
        assert len(records) <= 1, f"{key.to_user_string()} rebuilt {len(records)} times"
        if records:
            out[key] = records[0].timestamp
    return out


@pytest.mark.timeout(1200)
def test_dagster_dev_rebuilds_the_whole_graph_in_order(tmp_path: Path, capsys) -> None:
    profile = make_project(tmp_path / "project", with_models=True, with_detection=True)
    _one_model(profile)
    project = profile.parents[1]
    home = tmp_path / "dagster_home"
    env = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        CLOTHES_RETRIEVAL_PROFILE=str(profile),
        CLOTHES_RETRIEVAL_SENSOR_INTERVAL_S="5",
        WANDB_MODE="disabled",
    )
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        assert main(["run", "--profile", str(profile)]) == 0
    finally:
        del os.environ["DAGSTER_HOME"]
    capsys.readouterr()
    assert "max_concurrent_runs: 1" in (home / "dagster.yaml").read_text()  # one at a time
    graph = build_definitions(str(profile)).resolve_asset_graph()
    keys = set(graph.materializable_asset_keys)

    port = _free_port()
    dagster = Path(sys.executable).with_name("dagster")
    log_path = tmp_path / "dagster_dev.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [
            str(dagster),
            "dev",
            "-m",
            "orchestration.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5)
                break
            except OSError:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.time() < deadline, "dagster dev did not come up"
                time.sleep(2)
        time.sleep(15)  # let the sensors take their first look at the current data

        # New data, tracked by DVC: nothing else is done by hand from here on.
        changed_at = time.time()
        version = new_data(project)

        deadline = time.time() + 900
        with dg.DagsterInstance.from_config(str(home)) as instance:
            while True:
                built = _rebuilt_since(instance, keys, changed_at)
                if set(built) == keys:
                    break
                assert time.time() < deadline, (
                    f"not rebuilt: {sorted(k.to_user_string() for k in keys - set(built))}\n"
                    + log_path.read_text()[-4000:]
                )
                time.sleep(5)
            assert_in_dependency_order(graph, built)
            # nothing failed on the way
            failed = instance.get_runs(
                filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE])
            )
            assert failed == [], [r.job_name for r in failed]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # children that outlived the parent
        except ProcessLookupError:
            pass
        log.close()
    assert_built_from(project / "outputs" / "tiny", (MODEL,), version)
