"""A bounded soak of the HTTP service on loopback, then kill -9 while a gallery add runs.

Soak: ``clothes-retrieval serve`` (write token from CLOTHES_RETRIEVAL_TOKEN) on a fresh
copy of the bundle in a temporary folder, its gallery state beside it. ``--requests``
requests (default 2000) come from ``--threads`` threads (default 4), mixed at random:
~85% ``POST /search`` (a random consumer photo, detect true and false alternating),
~10% ``POST /gallery?detect=false`` (a consumer photo; the returned id recorded) and ~5%
``DELETE /gallery/{id}`` (a live added id, or a base gallery id seen in results).

The client keeps the gallery's state: what was added, and what is deleted (exactly the
ids deleted). Checked:

* errors: any status other than the expected one (200 / 201 / 200) or a transport error
  (a delete is only sent for an id the client knows is live, so no 404 is expected);
* resurrected: a search result naming an id whose delete was acknowledged before that
  search was sent; or, afterwards, a deleted id whose image still answers 200;
* lost: afterwards, an added and not deleted id whose image is not 200, or that a
  ``detect=false, top_k=100`` search of the photo it was added with does not return;
* memory: the server's VmRSS every ``--rss-every`` requests (first, max, last, the slope
  over the second half in MB per 1000 requests; "flat" when the last quarter's mean is
  within 10% or 50 MB of the second quarter's).

Fault test (``--kills`` times, default 3): an add is started in a thread, after a random
0-150 ms (at most the time one add takes on the idle server, timed first, so that the
kill lands while the add runs rather than after its answer) the server's process group
gets SIGKILL, and the server is restarted on the same bundle and state. The gallery must
be the last committed state: the size /health reports is the size before plus 0 or 1,
every acknowledged add is found, every acknowledged delete stays deleted, and the add in
flight is either whole (its image is served and a search returns it, and the size is one
more) or absent (neither).

Last line: ``soak: N requests, E errors, A adds, D deletes, lost L, resurrected R, rss MB
first/max/last F/M/L, kills K recovered K``. Exit 1 on any error, lost or resurrected
item, or a kill the gallery did not recover from.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

CLI = [sys.executable, "-m", "clothes_retrieval.cli"]
REPO = Path(__file__).resolve().parents[1]
TOKEN_ENV = "CLOTHES_RETRIEVAL_TOKEN"
TIMEOUT = 300


def consumer_photos(images: Path | None, items: Path) -> list[Path]:
    """Every image in ``images``, else the item table's validation user photos."""
    if images is not None:
        found = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    else:
        t = pd.read_parquet(items, columns=["split", "source", "image_path"])
        rows = t[(t["split"] == "validation") & (t["source"] == "user")]
        found = [Path(p) for p in rows["image_path"].drop_duplicates()]
    if not found:
        raise SystemExit(f"no consumer photos found ({images or items})")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``clothes-retrieval serve`` in its own process group, up once /health answers."""

    def __init__(self, bundle: Path, state: Path, log: Path, token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, TOKEN_ENV: token}
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        with open(log, "ab") as fh:
            self.process = subprocess.Popen(
                [
                    *CLI,
                    "serve",
                    "--bundle",
                    str(bundle),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--gallery-state",
                    str(state),
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
                start_new_session=True,
            )
        self.pid = self.process.pid
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited ({self.process.returncode}): see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        self.kill(signal.SIGKILL)
        raise SystemExit(f"the server did not answer /health in 180 s: see {log}")

    def rss_mb(self) -> float:
        text = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", text, re.M).group(1)) / 1024

    def kill(self, sig: int = signal.SIGTERM) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=20)


class BaseGallery:
    """The bundle's gallery ids; a delete removes exactly the id it names."""

    def __init__(self, bundle: Path) -> None:
        g = pd.read_parquet(bundle / "gallery.parquet")
        self.ids = [str(x) for x in g["gallery_id"]]
        self._ids = set(self.ids)

    def __contains__(self, gallery_id: str) -> bool:
        return gallery_id in self._ids

    def taken_with(self, gallery_id: str) -> set[str]:
        return {gallery_id}


@dataclass
class Model:
    """The client's view of the gallery's committed state."""

    base: BaseGallery
    lock: threading.Lock = field(default_factory=threading.Lock)
    added: dict[str, int] = field(default_factory=dict)  # live added id -> photo index
    deleted_at: dict[str, int] = field(default_factory=dict)  # id -> ack sequence number
    deletes_acked: int = 0
    seen_base: set[str] = field(default_factory=set)  # base ids seen in results
    busy: set[str] = field(default_factory=set)  # ids a delete in flight may take
    deleted_added: set[str] = field(default_factory=set)
    deleted_added_photo: dict[str, int] = field(default_factory=dict)

    def pick_delete(self, rng: random.Random) -> tuple[str, set[str]] | None:
        """A live id to delete (and the ids it takes with it), reserved; None if none."""
        with self.lock:
            added = [g for g in self.added if g not in self.busy]
            base = [g for g in self.seen_base if g not in self.deleted_at and g not in self.busy]
            pools = [p for p in (added, base) if p]
            if not pools:
                return None
            gid = rng.choice(sorted(rng.choice(pools)))
            taken = self.base.taken_with(gid) if gid in self.base else {gid}
            taken -= set(self.deleted_at)
            self.busy |= taken
            return gid, taken

    def acked_delete(self, gid: str, taken: set[str]) -> None:
        with self.lock:
            self.deletes_acked += 1
            for g in taken:
                self.deleted_at[g] = self.deletes_acked
                if g in self.added:
                    self.deleted_added_photo[g] = self.added.pop(g)
                    self.deleted_added.add(g)
            self.busy -= taken

    def release(self, taken: set[str]) -> None:
        with self.lock:
            self.busy -= taken


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    errors: list[str] = field(default_factory=list)
    resurrected: set[str] = field(default_factory=set)
    ops: Counter = field(default_factory=Counter)

    def error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)

    def count(self, op: str) -> None:
        """One acknowledged request of kind ``op``."""
        with self.lock:
            self.ops[op] += 1


def result_ids(body: dict) -> list[str]:
    return [r["gallery_id"] for it in body["items"] for r in it["results"]]


def describe(r: httpx.Response) -> str:
    return f"{r.request.method} {r.request.url.path} -> {r.status_code} {r.text[:200]}"


def soak(
    server: Server,
    photos: list[bytes],
    model: Model,
    tally: Tally,
    *,
    requests: int,
    threads: int,
    rss_every: int,
    token: str,
    seed: int,
) -> list[tuple[int, float]]:
    """The mixed load; returns the RSS samples (requests done, MB)."""
    auth = {"Authorization": f"Bearer {token}"}
    plan_rng = random.Random(seed)
    plan = plan_rng.choices(["search", "add", "delete"], weights=[85, 10, 5], k=requests)
    lock = threading.Lock()
    todo = iter(enumerate(plan))
    done = 0
    rss = [(0, server.rss_mb())]
    searches = 0

    def one(client: httpx.Client, rng: random.Random, op: str) -> None:
        nonlocal searches
        if op == "delete":
            picked = model.pick_delete(rng)
            if picked is None:
                op = "search"  # nothing to delete yet
            else:
                gid, taken = picked
                try:
                    r = client.delete(f"/gallery/{gid}", headers=auth)
                except httpx.HTTPError as e:
                    model.release(taken)
                    return tally.error(f"DELETE {gid}: {type(e).__name__}: {e}")
                if r.status_code != 200:
                    model.release(taken)
                    return tally.error(describe(r))
                model.acked_delete(gid, taken)
                return tally.count("delete")
        p = rng.randrange(len(photos))
        if op == "add":
            try:
                r = client.post(
                    "/gallery",
                    files={"image": ("photo.jpg", photos[p])},
                    params={"detect": False},
                    headers=auth,
                )
            except httpx.HTTPError as e:
                return tally.error(f"POST /gallery: {type(e).__name__}: {e}")
            if r.status_code != 201 or len(r.json()["added"]) != 1:
                return tally.error(describe(r))
            with model.lock:
                model.added[r.json()["added"][0]] = p
            return tally.count("add")
        with lock:
            detect = searches % 2 == 0
            searches += 1
        with model.lock:
            acked_before = model.deletes_acked
        try:
            r = client.post(
                "/search", files={"image": ("photo.jpg", photos[p])}, params={"detect": detect}
            )
        except httpx.HTTPError as e:
            return tally.error(f"POST /search: {type(e).__name__}: {e}")
        if r.status_code != 200:
            return tally.error(describe(r))
        ids = result_ids(r.json())
        with model.lock:
            for g in ids:
                at = model.deleted_at.get(g)
                if at is not None and at <= acked_before:
                    with tally.lock:
                        tally.resurrected.add(g)
                if g in model.base and g not in model.deleted_at:
                    model.seen_base.add(g)
        tally.count("search")

    def worker(n: int) -> None:
        nonlocal done
        rng = random.Random(seed * 1000 + n)
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
            while True:
                with lock:
                    nxt = next(todo, None)
                if nxt is None:
                    return
                one(client, rng, nxt[1])
                with lock:
                    done += 1
                    if done % rss_every == 0 or done == requests:
                        rss.append((done, server.rss_mb()))

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return rss


def verify(url: str, photos: list[bytes], model: Model) -> tuple[set[str], set[str]]:
    """(lost, resurrected) ids now: every live added id served and found by a search of
    its photo; every deleted id refused; no deleted added id found."""
    lost: set[str] = set()
    resurrected: set[str] = set()
    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        by_photo: dict[int, set[str]] = {}
        for gid, p in model.added.items():
            by_photo.setdefault(p, set()).add(gid)
            if client.get(f"/gallery/{gid}/image").status_code != 200:
                lost.add(gid)
        for p in set(model.deleted_added_photo.values()):
            by_photo.setdefault(p, set())
        for p, ids in by_photo.items():
            r = client.post(
                "/search",
                files={"image": ("photo.jpg", photos[p])},
                params={"detect": False, "top_k": 100},
            )
            found = set(result_ids(r.json())) if r.status_code == 200 else set()
            lost |= ids - found
            resurrected |= found & set(model.deleted_at)
        for gid in model.deleted_at:
            if client.get(f"/gallery/{gid}/image").status_code != 404:
                resurrected.add(gid)
    return lost, resurrected


def gallery_size(url: str) -> int:
    return int(httpx.get(f"{url}/health", timeout=30).json()["gallery_items"])


def timed_add(url: str, photos: list[bytes], model: Model, token: str, rng) -> float:
    """One add on the idle server (kept, recorded): its time in seconds."""
    p = rng.randrange(len(photos))
    t0 = time.perf_counter()
    r = httpx.post(
        f"{url}/gallery",
        files={"image": ("photo.jpg", photos[p])},
        params={"detect": False},
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )
    seconds = time.perf_counter() - t0
    if r.status_code != 201:
        raise SystemExit(f"the timed add failed: {describe(r)}")
    with model.lock:
        model.added[r.json()["added"][0]] = p
    return seconds


def kill_during_add(
    server: Server,
    restart,
    photos: list[bytes],
    model: Model,
    token: str,
    rng: random.Random,
    window: float,
) -> tuple[Server, bool, str]:
    """SIGKILL the server a random 0..``window`` s after an add is sent, restart it,
    check the committed state. Returns (the new server, recovered, what happened)."""
    size_before = gallery_size(server.url)
    known = set(model.added) | model.deleted_added
    numbers = [int(g[1:].split("_")[0]) for g in known if re.fullmatch(r"a\d+_\d+", g)]
    candidate = f"a{max(numbers, default=0) + 1}_1"  # the id the add gets if it commits
    p = rng.randrange(len(photos))
    answer: dict = {}

    def add() -> None:
        try:
            r = httpx.post(
                f"{server.url}/gallery",
                files={"image": ("photo.jpg", photos[p])},
                params={"detect": False},
                headers={"Authorization": f"Bearer {token}"},
                timeout=TIMEOUT,
            )
            answer["status"], answer["ids"] = r.status_code, r.json().get("added")
        except (httpx.HTTPError, ValueError) as e:
            answer["error"] = type(e).__name__

    t = threading.Thread(target=add)
    t.start()
    delay = rng.uniform(0.0, window)
    time.sleep(delay)
    server.kill(signal.SIGKILL)
    t.join(timeout=60)
    new = restart()
    size = gallery_size(new.url)
    image = httpx.get(f"{new.url}/gallery/{candidate}/image", timeout=TIMEOUT).status_code
    r = httpx.post(
        f"{new.url}/search",
        files={"image": ("photo.jpg", photos[p])},
        params={"detect": False, "top_k": 100},
        timeout=TIMEOUT,
    )
    found = r.status_code == 200 and candidate in result_ids(r.json())
    acked = answer.get("status") == 201
    if acked and answer.get("ids") != [candidate]:
        return new, False, f"the add was answered {answer} but {candidate} was expected"
    present = image == 200 and found and size == size_before + 1
    absent = image == 404 and not found and size == size_before
    if present:
        with model.lock:
            model.added[candidate] = p
    ok = present or (absent and not acked)
    state = "acknowledged" if acked else f"unanswered ({answer.get('error', '?')})"
    what = (
        f"killed {delay * 1e3:.0f} ms after the add was sent; add {state}, "
        f"after restart {'present' if present else 'absent' if absent else 'TORN'} "
        f"(image {image}, searchable {found}, gallery {size_before} -> {size})"
    )
    return new, ok, what


def rss_summary(rss: list[tuple[int, float]], requests: int) -> tuple[str, bool | None, float]:
    """(text, flat or None when too few samples, slope MB/1000 requests)."""
    x = np.array([n for n, _ in rss], dtype=np.float64)
    y = np.array([m for _, m in rss])
    half = x >= requests / 2
    slope = float(np.polyfit(x[half], y[half], 1)[0] * 1000) if half.sum() >= 2 else float("nan")
    q2 = y[(x > requests / 4) & (x <= requests / 2)]
    q4 = y[x > 3 * requests / 4]
    flat = None
    if len(q2) and len(q4):
        diff = abs(q4.mean() - q2.mean())
        flat = bool(diff <= max(0.10 * q2.mean(), 50.0))
    text = (
        f"rss MB: first {y[0]:.0f}, max {y.max():.0f}, last {y[-1]:.0f}; second-half slope "
        f"{slope:+.1f} MB per 1000 requests; "
        + (
            f"second-quarter mean {q2.mean():.0f}, last-quarter mean {q4.mean():.0f}: "
            f"{'flat' if flat else 'NOT flat'}"
            if flat is not None
            else "too few samples to say flat"
        )
    )
    return text, flat, slope


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=REPO / "outputs/sample/published_index")
    parser.add_argument("--images", type=Path, help="a folder of consumer photos")
    parser.add_argument(
        "--items",
        type=Path,
        default=REPO / "outputs/sample/item_table/items.parquet",
        help="item table whose validation user photos are used when --images is not given",
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--kills", type=int, default=3, help="kill -9 during an add, K times")
    parser.add_argument("--rss-every", type=int, default=100, help="requests between samples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    photos = [p.read_bytes() for p in consumer_photos(args.images, args.items)]
    token = secrets.token_hex(16)
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    bundle, state = tmp / "published_index", tmp / "gallery-state"
    shutil.copytree(args.bundle, bundle)
    model, tally = Model(BaseGallery(bundle)), Tally()
    servers: list[Server] = []
    ok = False

    def start() -> Server:
        s = Server(bundle, state, tmp / f"server{len(servers)}.log", token)
        servers.append(s)
        return s

    kills, recovered = 0, 0
    lost: set[str] = set()
    try:
        server = start()
        print(
            f"server pid {server.pid} on {server.url}, {len(photos)} consumer photos, "
            f"{len(model.base.ids)} base gallery items, {args.threads} threads"
        )
        t0 = time.perf_counter()
        rss = soak(
            server,
            photos,
            model,
            tally,
            requests=args.requests,
            threads=args.threads,
            rss_every=args.rss_every,
            token=token,
            seed=args.seed,
        )
        seconds = time.perf_counter() - t0
        print(
            f"{args.requests} requests in {seconds:.0f} s ({args.requests / seconds:.1f}/s): "
            + ", ".join(f"{k} {v}" for k, v in sorted(tally.ops.items()))
            + f", errors {len(tally.errors)}, resurrected in results {len(tally.resurrected)}"
        )
        for e in tally.errors[:10]:
            print(f"  error: {e}")
        rss_text, flat, _ = rss_summary(rss, args.requests)
        print(rss_text)
        first, top, last = rss[0][1], max(m for _, m in rss), rss[-1][1]
        gone, back = verify(server.url, photos, model)
        lost |= gone
        tally.resurrected |= back
        print(
            f"after the soak: {len(model.added)} added ids live, {len(model.deleted_at)} ids "
            f"deleted ({model.deletes_acked} deletes): lost {len(gone)}, resurrected {len(back)}"
        )
        rng = random.Random(args.seed + 1)
        # Kills land within the add (0-150 ms, at most one add's time on the idle server),
        # not after it was answered.
        window = 0.150
        if args.kills:
            window = min(window, timed_add(server.url, photos, model, token, rng))
            print(f"kill window: 0-{window * 1e3:.0f} ms after the add is sent")
        for k in range(args.kills):
            kills += 1
            server, fine, what = kill_during_add(server, start, photos, model, token, rng, window)
            gone, back = verify(server.url, photos, model)
            lost |= gone
            tally.resurrected |= back
            fine = fine and not gone and not back
            recovered += fine
            print(
                f"kill {k + 1}: {what}; lost {len(gone)}, resurrected {len(back)}: "
                f"{'recovered' if fine else 'NOT recovered'}"
            )
        server.kill(signal.SIGTERM)
        stray = [f for f in state.rglob(".*") if f.is_file()]
        if stray:  # temporary files of writes cut off by a kill (ignored, never removed)
            print(f"state folder: {len(stray)} stray temporary file(s), e.g. {stray[0].name}")
        ok = not tally.errors and not lost and not tally.resurrected and recovered == kills
    finally:
        for s in servers:
            if s.process.poll() is None:
                s.kill(signal.SIGKILL)
        if not ok:
            for log in sorted(tmp.glob("server*.log")):
                print(f"--- {log.name} (last 2000 characters)", file=sys.stderr)
                print(log.read_text(errors="replace")[-2000:], file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    if lost:
        print(f"lost: {sorted(lost)[:20]}")
    if tally.resurrected:
        print(f"resurrected: {sorted(tally.resurrected)[:20]}")
    print(
        f"soak: {args.requests} requests, {len(tally.errors)} errors, {tally.ops['add']} adds, "
        f"{tally.ops['delete']} deletes, lost {len(lost)}, resurrected {len(tally.resurrected)}, "
        f"rss MB first/max/last {first:.0f}/{top:.0f}/{last:.0f}, "
        f"kills {kills} recovered {recovered}"
    )
    if flat is False:
        print("note: the server's memory was not flat (see the rss line above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
