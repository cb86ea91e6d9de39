"""The instance's history is in its storage, not in a process: a run and its events are
still there after the webserver restarts (on the PostgreSQL pass: deploy/dagster.yaml's
PostgreSQL storage; on the default pass: SQLite)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from orchestration.defs import build_definitions
from orchestration.run import dagster_home
from tests.orchestration import postgres
from tests.orchestration.dagster_dev import dagster_dev, dagster_env, graphql

QUERY = """
query History($runId: ID!) {
  runsOrError { ... on Runs { results { runId status jobName } } }
  logsForRun(runId: $runId) { ... on EventConnection { events { __typename } } }
}
"""


def _history(port: int, run_id: str) -> tuple[list, list]:
    data = graphql(port, QUERY, {"runId": run_id})
    runs = data["runsOrError"]["results"]
    events = [e["__typename"] for e in data["logsForRun"]["events"]]
    return runs, events


@pytest.mark.timeout(600)
def test_run_history_survives_a_webserver_restart(
    tiny_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance_storage: str
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    dagster_home(tiny_project.parents[1], "tiny")
    job = build_definitions(str(tiny_project)).resolve_job_def("pipeline_job")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        expected = {"postgres": "PostgresRunStorage", "sqlite": "SqliteRunStorage"}
        assert type(instance.run_storage).__name__ == expected[instance_storage]
        result = job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("item_table")]
        )
    env = dagster_env(home, tiny_project)
    log = tmp_path / "webserver.log"
    with dagster_dev(env, log, webserver_only=True) as port:
        before = _history(port, result.run_id)
    with dagster_dev(env, log, webserver_only=True) as port:  # a new webserver process
        after = _history(port, result.run_id)
    runs, events = before
    assert [(r["runId"], r["status"]) for r in runs] == [(result.run_id, "SUCCESS")]
    assert "MaterializationEvent" in events and "RunSuccessEvent" in events
    assert after == before


@pytest.mark.skipif(not postgres.ENABLED, reason="the PostgreSQL pass starts the server")
@pytest.mark.timeout(180)
def test_the_server_script_prints_only_its_exports_and_lets_go_of_its_caller() -> None:
    """scripts/test.sh evals what `scripts/postgres.sh start` prints: after a stop, only
    the DAGSTER_PG_* exports are on stdout, and the started server holds none of the
    caller's pipes (a $(...) would otherwise wait for it forever)."""
    script = postgres.REPO / "scripts" / "postgres.sh"
    subprocess.run([script, "stop"], check=True, capture_output=True, timeout=60)
    started = subprocess.run(
        [script, "start"], check=True, capture_output=True, text=True, timeout=60
    )
    lines = started.stdout.splitlines()
    assert lines and all(re.fullmatch(r"export DAGSTER_PG_[A-Z]+=\S+", line) for line in lines)
    assert {line.split("=")[0] for line in lines} >= {
        f"export DAGSTER_PG_{k}" for k in ("HOST", "PORT", "USERNAME", "PASSWORD", "DB")
    }
