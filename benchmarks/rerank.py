"""k-reciprocal re-ranking: our sparse implementation against the dense reference.

Reference: ``rerank_dense``, the plain port of the widely used dense algorithm (N x N
distances, argsort, float16 V; about 23 bytes x N^2), run in the same process tree on the
same features. Setup: Q = 2,000 queries, G = 8,000 gallery, 256-d random clustered
L2-normalised features (N / 10 cluster centres, Gaussian spread), k1 = 20, k2 = 6,
λ = 0.3. Then ours alone at N = 100,000 (Q = 20,000, G = 80,000).

Measurement: each run happens in its own subprocess (``--worker``), which loads the
features and imports everything, records its resident set size (RSS), resets the kernel's
peak-RSS counter (``/proc/self/clear_refs``), runs, and reads the peak (``VmHWM``). Peak
RSS increment = peak - RSS before the run. This counts every allocation, numpy's and
faiss's alike (tracemalloc would miss faiss's C++ buffers and so flatter ours). Time is
wall-clock around the call, including turning the dense matrix into top-k lists. The
100k line reports the child's whole peak RSS (features and libraries included).

Prints as its last line:
``rerank: time ratio X.X, memory ratio Y.Y, top10 agreement Z.ZZZ, 100k seconds S, 100k peak GB M``
(ratios = dense / ours; agreement = mean fraction of the dense top-10 found in ours).
``--small`` runs Q/G = 400/1,600 and 4,000/16,000 instead, as a smoke test (its "100k"
fields then describe the N = 20,000 run; the ratios mean little at N = 2,000).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K1, K2, LAMBDA = 20, 6, 0.3
DIM = 256
TOPK = 100  # ours returns 100-long lists (10 are compared)


def clustered_features(n: int, seed: int) -> np.ndarray:
    """(n, 256) L2-normalised float32 rows around n / 10 random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 10), DIM)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)]
    x += 0.7 * rng.normal(size=(n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def worker(kind: str, features: Path, n_q: int, out: Path) -> None:
    """Run one implementation on saved features; print a JSON line with time and memory."""
    from clothes_retrieval.postprocess import rerank_dense, rerank_sparse, topk_from_distance

    x = np.load(features)
    q, g = x[:n_q], x[n_q:]
    rss_before = _status_kb("VmRSS")
    reset = _reset_peak()
    start = time.perf_counter()
    if kind == "dense":
        ranked = topk_from_distance(rerank_dense(q, g, K1, K2, LAMBDA), 10)
    else:
        ranked = rerank_sparse(q, g, K1, K2, LAMBDA, topk=TOPK)
    seconds = time.perf_counter() - start
    peak_kb = _status_kb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.save(out, ranked.indices[:, :10])
    print(
        json.dumps({"seconds": seconds, "peak_kb": peak_kb, "increment_kb": peak_kb - rss_before})
    )


def run_worker(kind: str, x: np.ndarray, n_q: int, tmp: Path) -> tuple[dict, np.ndarray]:
    feats, out = tmp / f"{kind}_{len(x)}.npy", tmp / f"{kind}_{len(x)}_top10.npy"
    np.save(feats, x)
    cmd = [sys.executable, __file__, "--worker", kind, "--features", str(feats),
           "--n-query", str(n_q), "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {kind:6s} N={len(x):>7,}: {result['seconds']:7.1f} s, peak RSS increment "
          f"{result['increment_kb'] / 1e6:6.3f} GB, peak RSS {result['peak_kb'] / 1e6:6.3f} GB",
          flush=True)  # fmt: skip
    return result, np.load(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="quick smoke run (small sizes)")
    parser.add_argument("--worker", choices=["dense", "sparse"], help=argparse.SUPPRESS)
    parser.add_argument("--features", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--n-query", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.features, args.n_query, args.out)
        return

    (cq, cg), (bq, bg) = ((400, 1_600), (4_000, 16_000)) if args.small else (
        (2_000, 8_000), (20_000, 80_000))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        x = clustered_features(cq + cg, seed=0)
        print(f"comparison: Q={cq:,}, G={cg:,}, d={DIM}, k1={K1}, k2={K2}, lambda={LAMBDA}")
        dense, dense_top = run_worker("dense", x, cq, tmp)
        ours, ours_top = run_worker("sparse", x, cq, tmp)
        agreement = np.mean(
            [len(set(a) & set(b)) / 10 for a, b in zip(dense_top, ours_top, strict=True)]
        )
        time_ratio = dense["seconds"] / ours["seconds"]
        mem_ratio = dense["increment_kb"] / max(ours["increment_kb"], 1)
        print(f"scale: Q={bq:,}, G={bg:,}")
        big, _ = run_worker("sparse", clustered_features(bq + bg, seed=1), bq, tmp)
    print(
        f"rerank: time ratio {time_ratio:.1f}, memory ratio {mem_ratio:.1f}, "
        f"top10 agreement {agreement:.3f}, 100k seconds {big['seconds']:.0f}, "
        f"100k peak GB {big['peak_kb'] / 1e6:.2f}"
    )


if __name__ == "__main__":
    main()
