"""Fixtures: a real published bundle (the tiny project run once through the main job),
services loaded on copies of it, and real servers (`clothes-retrieval serve`) on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.published import Published

CLI = [sys.executable, "-m", "clothes_retrieval.cli"]


def copy_bundle(published: Published, dst: Path) -> Path:
    shutil.copytree(published.bundle, dst)
    return dst


@pytest.fixture
def bundle_copy(published: Published, tmp_path: Path) -> Path:
    """A private copy of the published bundle (its gallery state beside it, empty)."""
    return copy_bundle(published, tmp_path / "published_index")


@pytest.fixture(scope="session")
def service(published: Published, tmp_path_factory: pytest.TempPathFactory):
    """A SearchService on the published bundle, for tests that do not change the gallery."""
    from clothes_retrieval.service import SearchService

    return SearchService(published.bundle, state_dir=tmp_path_factory.mktemp("state"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        self.process.wait(timeout=30)


def start_server(
    bundle: Path,
    log: Path,
    *,
    token: str | None = None,
    host: str = "127.0.0.1",
    extra: list[str] | None = None,
    env: dict | None = None,
) -> Server:
    """`clothes-retrieval serve --bundle B` in its own process group; waits for /health."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k != "CLOTHES_RETRIEVAL_TOKEN"}
    environ.update(env or {})
    if token is not None:
        environ["CLOTHES_RETRIEVAL_TOKEN"] = token
    fh = open(log, "ab")
    proc = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--bundle",
            str(bundle),
            "--host",
            host,
            "--port",
            str(port),
            *(extra or []),
        ],
        stdout=fh,
        stderr=subprocess.STDOUT,
        env=environ,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return Server(url, proc, log)
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the server did not answer /health in 120 s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    """Start servers (killed at the end of the test): ``server_factory(bundle, **kw)``."""
    started: list[Server] = []

    def start(bundle: Path, **kwargs) -> Server:
        s = start_server(bundle, tmp_path / f"server{len(started)}.log", **kwargs)
        started.append(s)
        return s

    yield start
    for s in started:
        if s.process.poll() is None:
            s.kill(signal.SIGTERM)


@pytest.fixture(scope="session")
def shared_server(
    published: Published, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server on a copy of the bundle for read-mostly HTTP tests (token 'secret')."""
    root = tmp_path_factory.mktemp("shared-server")
    bundle = copy_bundle(published, root / "published_index")
    s = start_server(bundle, root / "server.log", token="secret")
    yield s
    s.kill(signal.SIGTERM)


def detected_photo(service, published: Published) -> Path:
    """A validation consumer photo on which the tiny detectors find a garment."""
    for p in published.photos("user"):
        if service.search(p.read_bytes(), top_k=1).items:
            return p
    pytest.fail("the tiny detectors find nothing on any validation photo")
