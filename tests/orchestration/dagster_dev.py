"""A real `dagster dev` (webserver + daemon) on loopback for the end-to-end tests: started in
its own process group, waited for until it answers, and ended with the whole group (SIGTERM
leaves the daemon and code servers running: stack notes)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    """The ``data`` of a GraphQL query to the webserver on ``port`` (errors raise)."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as err:  # a bad query: the server says what is wrong
        raise AssertionError(f"GraphQL {err.code}: {err.read().decode()[:2000]}") from err
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]


def run_once(profile: Path, home: Path) -> None:
    """`clothes-retrieval run` of ``profile`` into the instance at ``home`` (what a user does
    before starting `dagster dev` on it)."""
    import pytest

    from clothes_retrieval.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home))
        assert main(["run", "--profile", str(profile)]) == 0


def dagster_env(home: Path, profile: Path, **extra: str) -> dict[str, str]:
    """The environment of a `dagster dev` on ``home`` serving ``profile`` (sensors every 5 s)."""
    return dict(
        os.environ,
        DAGSTER_HOME=str(home),
        CLOTHES_RETRIEVAL_PROFILE=str(profile),
        CLOTHES_RETRIEVAL_SENSOR_INTERVAL_S="5",
        WANDB_MODE="disabled",
        **extra,
    )


@contextlib.contextmanager
def dagster_dev(
    env: dict[str, str], log_path: Path, *, webserver_only: bool = False
) -> Iterator[int]:
    """Run `dagster dev` (or only `dagster-webserver`) with ``env``; yields its port once
    /server_info answers."""
    port = free_port()
    if webserver_only:
        command = [str(DAGSTER.with_name("dagster-webserver"))]
    else:
        command = [str(DAGSTER), "dev"]
    command += ["-m", "orchestration.definitions", "-h", "127.0.0.1", "-p", str(port)]
    log = open(log_path, "a")
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5)
                break
            except OSError:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.time() < deadline, (
                    "dagster did not come up\n" + log_path.read_text()[-3000:]
                )
                time.sleep(2)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # children that outlived the parent
        log.close()
