"""Gets per second with 1, 2 and 4 workers: N threads on one cache (single mode), and N
processes each with its own shared-mode cache on one SQLite file. Prints a table.

Run (on an otherwise idle machine; the figures are only as good as the free cores)::

    PYTHONPATH=. .venv/bin/python benchmarks/scaling_report.py --entries 10000 \\
        --workers 1,2,4 --seconds 5

Mixes: ``exact`` (gets of stored prompts: the exact layer), ``semantic`` (gets of
unstored prompts with a precomputed embedding near a stored one: an exact miss, the
index scan, the candidate's entry; no embedder time). 384-d float32 unit vectors,
``SEMCACHE_KERNEL_THREADS=1`` (set before the import) so one get uses one core.

``--backend hnswlib`` serves the semantic mix from an hnswlib graph (searched outside
the cache lock since issue 16); ``--locked-too`` adds, interleaved in the same run, the
same cells with every search kept under the lock (``_get.UNLOCKED_SCAN_MIN`` raised
past any index), the way graphs were searched before::

    PYTHONPATH=. .venv/bin/python benchmarks/scaling_report.py --entries 10000 \
        --workers 1,2 --seconds 1 --rounds 9 --backend hnswlib --kinds threads \
        --mixes semantic --locked-too

(``--rounds``: every cell repeated, interleaved with the others; the median printed.)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("SEMCACHE_KERNEL_THREADS", "1")

import numpy as np

from semcache import SemanticCache, _get
from semcache._cache import engine_of

DIM = 384


def data(n: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return [f"stored question number {i}" for i in range(n)], x


def queries(mix: str, n: int, worker: int, x: np.ndarray) -> list[tuple[str, np.ndarray | None]]:
    rng = np.random.default_rng(100 + worker)
    out: list[tuple[str, np.ndarray | None]] = []
    for j in range(2000):
        i = int(rng.integers(n))
        if mix == "exact":
            out.append((f"stored question number {i}", None))
        else:
            v = x[i] + 0.01 * rng.standard_normal(DIM).astype(np.float32)
            out.append((f"a paraphrase {worker} {j} of {i}", v / np.linalg.norm(v)))
    return out


def loop(cache: SemanticCache, qs: list[tuple[str, np.ndarray | None]], until: float) -> int:
    done = 0
    while time.perf_counter() < until:
        for q, v in qs[:10]:
            cache.get(q, embedding=v)
        done += 10
        qs = qs[10:] + qs[:10]
    return done


def proc_worker(
    path: str, mix: str, n: int, worker: int, start: float, seconds: float, backend: str
) -> int:
    _, x = data(n)
    cache = SemanticCache(
        path, multi_process_mode="shared", stale_check_interval=1.0, index_backend=backend
    )
    qs = queries(mix, n, worker, x)
    cache.get(qs[0][0], embedding=qs[0][1])
    while time.time() < start:
        time.sleep(0.001)
    done = loop(cache, qs, time.perf_counter() + seconds)
    cache.close()
    return done


def run_threads(
    path: str, mix: str, n: int, x: np.ndarray, workers: int, seconds: float, backend: str
) -> float:
    cache = SemanticCache(path, index_backend=backend)
    qs0 = queries(mix, n, 0, x)
    cache.get(qs0[0][0], embedding=qs0[0][1])  # the index built before the clock starts
    counts = [0] * workers
    barrier = threading.Barrier(workers)

    def work(w: int) -> None:
        qs = queries(mix, n, w, x)
        barrier.wait()
        counts[w] = loop(cache, qs, time.perf_counter() + seconds)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cache.close()
    return sum(counts) / seconds


def run_procs(path: str, mix: str, n: int, workers: int, seconds: float, backend: str) -> float:
    ctx = mp.get_context("spawn")
    start = time.time() + 3.0 + workers  # every process open and warm before the start
    with ctx.Pool(workers) as pool:
        counts = pool.starmap(
            proc_worker, [(path, mix, n, w, start, seconds, backend) for w in range(workers)]
        )
    return sum(counts) / seconds


class _TimedLock:
    """Wraps the cache's lock and sums the time it is held (outermost holds only)."""

    def __init__(self, lock: Any) -> None:
        self.lock, self.held, self.depth, self.since = lock, 0.0, 0, 0.0

    def __enter__(self) -> None:
        self.lock.acquire()
        self.depth += 1
        if self.depth == 1:
            self.since = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.held += time.perf_counter() - self.since
        self.lock.release()

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        return bool(self.lock.acquire(*args, **kwargs))

    def release(self) -> None:
        self.lock.release()


def lock_share(path: str, mix: str, n: int, x: np.ndarray, backend: str) -> tuple[float, float]:
    """One thread: µs per get, and the share of that time the cache lock is held (so
    1 / share bounds what threads can gain)."""
    cache = SemanticCache(path, index_backend=backend)
    qs = queries(mix, n, 0, x)
    for q, v in qs[:100]:
        cache.get(q, embedding=v)
    eng = engine_of(cache)
    timed = _TimedLock(eng.lock)
    eng.lock = timed  # type: ignore[assignment]
    t0 = time.perf_counter()
    for q, v in qs:
        cache.get(q, embedding=v)
    total = time.perf_counter() - t0
    eng.lock = timed.lock
    cache.close()
    return total / len(qs) * 1e6, timed.held / total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--backend", default="auto", help="index_backend of the caches")
    ap.add_argument("--kinds", default="threads,processes")
    ap.add_argument("--mixes", default="exact,semantic")
    ap.add_argument("--locked-too", action="store_true", help="also every search locked")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved repeats; the median")
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    n = args.entries
    names, x = data(n)
    folder = Path(tempfile.mkdtemp(prefix="semcache-scaling-"))
    path = str(folder / "cache.db")
    cache = SemanticCache(path, index_backend=args.backend)
    cache.put_many(names, [f"answer {i}" for i in range(n)], embeddings=x)
    cache.close()
    unlocked_min = _get.UNLOCKED_SCAN_MIN
    searches = ["unlocked", "locked"] if args.locked_too else ["unlocked"]
    print(f"{os.cpu_count()} cpus; backend {args.backend}; load average before: {os.getloadavg()}")
    print(
        "| kind | mix | search | "
        + " | ".join(f"{w} worker(s) gets/s (x1)" for w in workers)
        + " |"
    )
    print("|---|---|---|" + "---|" * len(workers))
    for kind in args.kinds.split(","):
        for mix in args.mixes.split(","):
            cells: dict[tuple[str, int], list[float]] = {}
            for r in range(args.rounds):
                for w in workers:
                    # interleaved, first one then the other, so drifts hit both alike
                    for search in searches if r % 2 == 0 else searches[::-1]:
                        _get.UNLOCKED_SCAN_MIN = unlocked_min if search == "unlocked" else 1 << 62
                        if kind == "threads":
                            rate = run_threads(path, mix, n, x, w, args.seconds, args.backend)
                        else:
                            rate = run_procs(path, mix, n, w, args.seconds, args.backend)
                        cells.setdefault((search, w), []).append(rate)
            for search in searches:
                r = [float(np.median(cells[search, w])) for w in workers]
                row = " | ".join(f"{v:,.0f} ({v / r[0]:.2f})" for v in r)
                print(f"| {kind} | {mix} | {search} | {row} |", flush=True)
    print("| mix | search | µs per get (1 thread) | cache lock held | thread ceiling |")
    print("|---|---|---|---|---|")
    for mix in args.mixes.split(","):
        shares: dict[str, list[tuple[float, float]]] = {s: [] for s in searches}
        for r in range(args.rounds):
            for search in searches if r % 2 == 0 else searches[::-1]:
                _get.UNLOCKED_SCAN_MIN = unlocked_min if search == "unlocked" else 1 << 62
                shares[search].append(lock_share(path, mix, n, x, args.backend))
        for search in searches:
            us = float(np.median([u for u, _ in shares[search]]))
            share = float(np.median([h for _, h in shares[search]]))
            print(f"| {mix} | {search} | {us:.1f} | {share:.0%} | {1 / share:.2f}x |")
    _get.UNLOCKED_SCAN_MIN = unlocked_min
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
