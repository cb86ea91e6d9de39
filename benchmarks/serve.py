"""The HTTP service against the bare pipeline: latency and throughput of POST /search.

Served: ``clothes-retrieval serve`` on a copy of a published bundle (its own process
group, its gallery state in a temporary folder), on loopback. Real consumer photos
(``--photos`` of them, default 48: from ``--images`` or the item table's validation
user photos) are POSTed to ``/search`` (multipart field ``image``, ``detect=true``,
default ``top_k``) from 1, 4 and 16 threads, each with its own httpx client. Latency is
the client's wall time for one request (the photo's bytes already in memory); photos/s
is the photos over the wall time of the whole burst.

Bare (the reference, measured in the same run): a ``SearchService`` on another copy of
the bundle in this process, one photo at a time, timed as decode + ``_detect`` +
``_embed_boxes`` + ``gallery.view.search`` (no result table, no HTTP). At concurrency 1
the bare and the served request of each photo alternate, so that other load on the
machine falls on both alike. Both get a warm-up first. This process sets torch to 2
threads; the server keeps torch's default (both printed).

``--compare-batching`` runs the concurrency-16 load on a second server started with
``--batch-window-ms 0`` (each request alone), alternating with the default server
(``--rounds`` loads each), and prints photos/s of both and their ratio (batched /
unbatched). The mean batch size is read from the answers' ``timings.photos_in_batch``.

Last line: ``serve: p50 ms A, p95 ms B, photos/s C at 16, overhead ratio D`` where A and B
are the served latencies at concurrency 1, C the photos/s at concurrency 16 and
D = served p50 at concurrency 1 / bare p50. Exit 1 when any request failed (not 200).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import httpx
import numpy as np

CLI = [sys.executable, "-m", "clothes_retrieval.cli"]
REPO = Path(__file__).resolve().parents[1]
TORCH_THREADS = 2


def consumer_photos(images: Path | None, items: Path, n: int) -> list[Path]:
    """``n`` consumer photos (cycled when there are fewer): every image in ``images``, else
    the item table's validation user photos."""
    if images is not None:
        found = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    else:
        import pandas as pd

        t = pd.read_parquet(items, columns=["split", "source", "image_path"])
        rows = t[(t["split"] == "validation") & (t["source"] == "user")]
        found = [Path(p) for p in rows["image_path"].drop_duplicates()]
    if not found:
        raise SystemExit(f"no consumer photos found ({images or items})")
    return [found[i % len(found)] for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``clothes-retrieval serve`` in its own process group, up once /health answers."""

    def __init__(self, bundle: Path, state: Path, log: Path, extra: list[str] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {k: v for k, v in os.environ.items() if k != "CLOTHES_RETRIEVAL_TOKEN"}
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
                    *extra,
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
                start_new_session=True,
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited ({self.process.returncode}): see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        self.stop()
        raise SystemExit(f"the server did not answer /health in 180 s: see {log}")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)


def post_search(client: httpx.Client, data: bytes) -> tuple[float, int, dict]:
    """(latency in s, status (0: a transport error), the server's timings) of one
    detect=true search."""
    t0 = time.perf_counter()
    timings: dict = {}
    try:
        r = client.post("/search", files={"image": ("photo.jpg", data)}, params={"detect": True})
        status = r.status_code
        if status == 200:
            timings = r.json()["timings"]
    except httpx.HTTPError:
        status = 0
    return time.perf_counter() - t0, status, timings


def summary(concurrency: int, latencies: list[float], timings: list[dict], wall: float, errors):
    """Latency percentiles (ms), photos/s, the server's pipeline time and batch sizes."""
    pipeline = [t["detect_ms"] + t["embed_ms"] + t["search_ms"] for t in timings]
    return {
        "concurrency": concurrency,
        "p50": float(np.percentile(latencies, 50)) * 1e3,
        "p95": float(np.percentile(latencies, 95)) * 1e3,
        "photos_s": len(latencies) / wall,
        "pipeline_p50": float(np.percentile(pipeline, 50)) if pipeline else float("nan"),
        "batch": float(np.mean([t["photos_in_batch"] for t in timings])) if timings else 0.0,
        "errors": list(errors),
    }


def load(url: str, photos: list[bytes], concurrency: int) -> dict:
    """All ``photos`` POSTed from ``concurrency`` threads; latencies, errors, photos/s."""
    lock = threading.Lock()
    todo = iter(range(len(photos)))
    latencies: list[float] = []
    timings: list[dict] = []
    errors: list[int] = []

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=300) as client:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                seconds, status, t = post_search(client, photos[i])
                with lock:
                    latencies.append(seconds)
                    if status == 200:
                        timings.append(t)
                    else:
                        errors.append(status)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(concurrency, latencies, timings, time.perf_counter() - t0, errors)


def merge(runs: list[dict]) -> dict:
    """Several loads as one: photos/s over the summed wall time, pooled errors."""
    photos = sum(r["n"] for r in runs)
    wall = sum(r["n"] / r["photos_s"] for r in runs)
    return {
        **runs[0],
        "p50": float(np.median([r["p50"] for r in runs])),
        "p95": float(np.median([r["p95"] for r in runs])),
        "photos_s": photos / wall,
        "batch": float(np.mean([r["batch"] for r in runs])),
        "errors": [e for r in runs for e in r["errors"]],
    }


def bare_once(service, data: bytes) -> float:
    """The bare pipeline on one photo (seconds): decode, detect, embed, search."""
    from clothes_retrieval.service import decode_image

    t0 = time.perf_counter()
    image = decode_image(data, service.limits).image
    boxes = service._detect([image], service.limits.default_max_items)[0][0]
    vectors = service._embed_boxes([image] * len(boxes), list(boxes))
    if len(vectors):
        service.gallery.view.search(vectors, service.limits.default_top_k)
    return time.perf_counter() - t0


def server_torch_threads() -> int:
    """torch's default thread count in a fresh process (what the server runs with)."""
    out = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")},
    )
    return int(out.stdout.strip())


def line(name: str, r: dict) -> str:
    return (
        f"  {name}: p50 {r['p50']:7.1f} ms, p95 {r['p95']:7.1f} ms, "
        f"{r['photos_s']:5.2f} photos/s, errors {len(r['errors'])}"
        + f", mean batch {r['batch']:.1f}"
        + (f" (statuses {sorted(set(r['errors']))})" if r["errors"] else "")
    )


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
    parser.add_argument("--photos", type=int, default=48, help="photos per load (default 48)")
    parser.add_argument("--warmup", type=int, default=4, help="warm-up photos for each side")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 4, 16], help="client threads"
    )
    parser.add_argument(
        "--compare-batching",
        action="store_true",
        help="also run the concurrency-16 load with --batch-window-ms 0",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="loads of each kind for --compare-batching"
    )
    args = parser.parse_args()
    if 1 not in args.concurrency:
        parser.error("--concurrency must include 1 (the overhead ratio is measured there)")
    warnings.filterwarnings("ignore")  # mmdetection's deprecation chatter

    import torch

    from clothes_retrieval.service import SearchService

    torch.set_num_threads(TORCH_THREADS)
    paths = consumer_photos(args.images, args.items, args.photos)
    photos = [p.read_bytes() for p in paths]
    warm = photos[: max(1, args.warmup)]
    print(
        f"{len(photos)} consumer photos ({len(set(paths))} distinct), bundle {args.bundle}; "
        f"torch threads: in-process {torch.get_num_threads()}, "
        f"server {server_torch_threads()} (its default)"
    )

    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    servers: list[Server] = []
    total_errors = 0
    try:
        bundle = tmp / "published_index"
        shutil.copytree(args.bundle, bundle)
        server = Server(bundle, tmp / "state-served", tmp / "server.log")
        servers.append(server)
        service = SearchService(bundle, state_dir=tmp / "state-bare")

        for data in warm:  # warm-up: both sides
            bare_once(service, data)
        with httpx.Client(base_url=server.url, timeout=300) as client:
            for data in warm:
                post_search(client, data)

            # Concurrency 1, alternating with the bare pipeline photo by photo.
            bare, served, timings, errors = [], [], [], []
            for data in photos:
                bare.append(bare_once(service, data))
                seconds, status, t = post_search(client, data)
                served.append(seconds)
                if status == 200:
                    timings.append(t)
                else:
                    errors.append(status)
        del service
        bare_p50 = float(np.percentile(bare, 50)) * 1e3
        bare_p95 = float(np.percentile(bare, 95)) * 1e3
        results = {1: summary(1, served, timings, sum(served), errors)}
        for c in args.concurrency:
            if c != 1:
                load(server.url, warm * max(1, c // len(warm)), c)  # warm the batch sizes
                results[c] = load(server.url, photos, c)

        print(
            f"bare pipeline (in process, 1 at a time): p50 {bare_p50:.1f} ms, p95 {bare_p95:.1f} ms"
        )
        print("served POST /search (latency per request as the client sees it):")
        for c in sorted(results):
            print(line(f"concurrency {c:>2}", results[c]))
        one = results[1]
        print(
            f"at concurrency 1: served p50 {one['p50']:.1f} ms, of which the server's "
            f"detect+embed+search p50 {one['pipeline_p50']:.1f} ms; bare p50 {bare_p50:.1f} ms "
            f"(HTTP, batch window, result table: {one['p50'] - one['pipeline_p50']:.1f} ms)"
        )
        total_errors = sum(len(r["errors"]) for r in results.values())

        if args.compare_batching:
            # Both servers up (the idle one takes no CPU); the loads alternate batched,
            # unbatched, ... so that other load on the machine falls on both alike.
            top = max(args.concurrency)
            unbatched = Server(
                bundle,
                tmp / "state-unbatched",
                tmp / "server-unbatched.log",
                ["--batch-window-ms", "0"],
            )
            servers.append(unbatched)
            load(unbatched.url, warm * max(1, top // len(warm)), top)
            on_runs, off_runs = [{**results[top], "n": len(photos)}], []
            for r in range(args.rounds):
                off_runs.append({**load(unbatched.url, photos, top), "n": len(photos)})
                if r + 1 < args.rounds:
                    on_runs.append({**load(server.url, photos, top), "n": len(photos)})
            on, off = merge(on_runs), merge(off_runs)
            total_errors += len(off["errors"]) + len(on["errors"]) - len(results[top]["errors"])
            print(
                f"batching at concurrency {top} ({args.rounds} loads of {len(photos)} photos "
                "each, alternating; latencies: median over the loads):"
            )
            print(line("window 5 ms (default)", on))
            print(line("window 0 (no batching)", off))
            print(
                f"batching: photos/s {on['photos_s']:.2f} batched vs {off['photos_s']:.2f} "
                f"unbatched at {top}, ratio {on['photos_s'] / off['photos_s']:.2f}"
            )
    except BaseException:
        total_errors = -1
        raise
    finally:
        for s in servers:
            s.stop()
        if total_errors:  # the servers' logs say why
            for log in sorted(tmp.glob("server*.log")):
                print(f"--- {log.name} (last 3000 characters)", file=sys.stderr)
                print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)

    one = results[1]
    top = results[max(results)]
    print(
        f"served latencies at concurrency 1; photos/s at concurrency {top['concurrency']}; "
        f"errors {total_errors}"
    )
    print(
        f"serve: p50 ms {one['p50']:.1f}, p95 ms {one['p95']:.1f}, "
        f"photos/s {top['photos_s']:.2f} at {top['concurrency']}, "
        f"overhead ratio {one['p50'] / bare_p50:.2f}"
    )
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())
