"""A short soak of a real server (benchmarks/soak.py on the tiny bundle): mixed searches,
adds and deletes from 4 threads, then kill -9 during an add and a restart; nothing
acknowledged is lost, nothing deleted comes back, no request fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.service.conftest import Published

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"
LAST = re.compile(
    r"^soak: (?P<n>\d+) requests, (?P<errors>\d+) errors, (?P<adds>\d+) adds, "
    r"(?P<deletes>\d+) deletes, lost (?P<lost>\d+), resurrected (?P<resurrected>\d+), "
    r"rss MB first/max/last \d+/\d+/\d+, kills (?P<kills>\d+) recovered (?P<recovered>\d+)$"
)


def test_soak_with_a_kill_loses_nothing(published: Published, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in published.photos("user"):
        shutil.copy(p, photos / p.name)
    env = {k: v for k, v in os.environ.items() if k != "CLOTHES_RETRIEVAL_TOKEN"}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--bundle",
            str(published.bundle),
            "--images",
            str(photos),
            "--requests",
            "150",
            "--kills",
            "1",
            "--rss-every",
            "50",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    out = done.stdout.strip()
    print(out)  # shown with -rP
    assert done.returncode == 0, f"{out[-3000:]}\n{done.stderr[-3000:]}"
    m = LAST.match(out.splitlines()[-1])
    assert m, out[-2000:]
    got = {k: int(v) for k, v in m.groupdict().items()}
    assert got["n"] == 150 and got["errors"] == 0
    assert got["lost"] == 0 and got["resurrected"] == 0
    assert got["adds"] > 0 and got["deletes"] > 0
    assert got["kills"] == got["recovered"] == 1
