"""End to end: `dagster dev` running, the data changes, the assets rebuild with no one clicking.

The project's data is materialised once by the main job; `dagster dev` (webserver + daemon)
is started on loopback in its own process group; then a new sample is generated and
`dvc add`-ed. The data_version_sensor notices the new hash and observes raw_dataset; the
automation sensor sees stale assets and materialises them. The test waits for new
materialisations of every data asset, then ends the whole process group.
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

from clothes_retrieval.data.sample import SampleDataConfig, generate_sample_data
from clothes_retrieval.versioning import dvc_add
from orchestration.defs import build_definitions
from tests.orchestration.tiny_project import TINY_SAMPLE, make_project

DATA_ASSETS = ("item_table", "coco_exports", "retrieval_crops")
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _latest_ids(instance: dg.DagsterInstance) -> dict[str, float | None]:
    out = {}
    for name in DATA_ASSETS:
        event = instance.get_latest_materialization_event(dg.AssetKey(name))
        out[name] = None if event is None else event.timestamp
    return out


@pytest.mark.timeout(600)
def test_dagster_dev_rebuilds_after_dvc_add(tmp_path: Path):
    profile = make_project(tmp_path / "project")
    project = profile.parents[1]
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = dict(os.environ, DAGSTER_HOME=str(home), CLOTHES_RETRIEVAL_PROFILE=str(profile))

    with dg.DagsterInstance.from_config(str(home)) as instance:
        defs = build_definitions(str(profile))
        assert defs.resolve_job_def("data_job").execute_in_process(instance=instance).success
        before = _latest_ids(instance)

    port = _free_port()
    dagster = Path(sys.executable).with_name("dagster")
    log = open(tmp_path / "dagster_dev.log", "w")
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
                assert proc.poll() is None, (tmp_path / "dagster_dev.log").read_text()[-3000:]
                assert time.time() < deadline, "dagster dev did not come up"
                time.sleep(2)

        # New data, tracked by DVC: nothing else is done by hand from here on.
        generate_sample_data(
            SampleDataConfig(**{**TINY_SAMPLE, "seed": TINY_SAMPLE["seed"] + 7}),
            project / "data" / "sample",
            progress=False,
        )
        dvc_add(project / "data", repo_root=project)

        deadline = time.time() + 420
        with dg.DagsterInstance.from_config(str(home)) as instance:
            while True:
                now = _latest_ids(instance)
                if all(now[k] is not None and now[k] != before[k] for k in DATA_ASSETS):
                    break
                assert time.time() < deadline, (
                    f"no rebuild seen: {now} vs {before}\n"
                    + (tmp_path / "dagster_dev.log").read_text()[-4000:]
                )
                time.sleep(5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # children that outlived the parent
        except ProcessLookupError:
            pass
        log.close()
