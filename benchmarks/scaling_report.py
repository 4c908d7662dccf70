"""Gets per second with 1, 2 and 4 workers: N threads on one cache (single mode), and N
processes each with its own shared-mode cache on one SQLite file. Prints a table.

Run (on an otherwise idle machine; the figures are only as good as the free cores)::

    PYTHONPATH=. .venv/bin/python benchmarks/scaling_report.py --entries 10000 \\
        --workers 1,2,4 --seconds 5

Mixes: ``exact`` (gets of stored prompts: the exact layer), ``semantic`` (gets of
unstored prompts with a precomputed embedding near a stored one: an exact miss, the
index scan, the candidate's entry; no embedder time). 384-d float32 unit vectors,
``SEMCACHE_KERNEL_THREADS=1`` (set before the import) so one get uses one core.
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

from semcache import SemanticCache
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


def proc_worker(path: str, mix: str, n: int, worker: int, start: float, seconds: float) -> int:
    _, x = data(n)
    cache = SemanticCache(path, multi_process_mode="shared", stale_check_interval=1.0)
    qs = queries(mix, n, worker, x)
    cache.get(qs[0][0], embedding=qs[0][1])
    while time.time() < start:
        time.sleep(0.001)
    done = loop(cache, qs, time.perf_counter() + seconds)
    cache.close()
    return done


def run_threads(path: str, mix: str, n: int, x: np.ndarray, workers: int, seconds: float) -> float:
    cache = SemanticCache(path)
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


def run_procs(path: str, mix: str, n: int, workers: int, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    start = time.time() + 3.0 + workers  # every process open and warm before the start
    with ctx.Pool(workers) as pool:
        counts = pool.starmap(
            proc_worker, [(path, mix, n, w, start, seconds) for w in range(workers)]
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


def lock_share(path: str, mix: str, n: int, x: np.ndarray) -> tuple[float, float]:
    """One thread: µs per get, and the share of that time the cache lock is held (so
    1 / share bounds what threads can gain)."""
    cache = SemanticCache(path)
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
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    n = args.entries
    names, x = data(n)
    folder = Path(tempfile.mkdtemp(prefix="semcache-scaling-"))
    path = str(folder / "cache.db")
    cache = SemanticCache(path)
    cache.put_many(names, [f"answer {i}" for i in range(n)], embeddings=x)
    cache.close()
    print(f"{os.cpu_count()} cpus; load average before: {os.getloadavg()}")
    print("| kind | mix | " + " | ".join(f"{w} worker(s) gets/s (x1)" for w in workers) + " |")
    print("|---|---|" + "---|" * len(workers))
    for kind in ("threads", "processes"):
        for mix in ("exact", "semantic"):
            rates = []
            for w in workers:
                if kind == "threads":
                    rates.append(run_threads(path, mix, n, x, w, args.seconds))
                else:
                    rates.append(run_procs(path, mix, n, w, args.seconds))
            cells = " | ".join(f"{r:,.0f} ({r / rates[0]:.2f})" for r in rates)
            print(f"| {kind} | {mix} | {cells} |", flush=True)
    print("| mix | µs per get (1 thread) | cache lock held | thread ceiling |")
    print("|---|---|---|---|")
    for mix in ("exact", "semantic"):
        us, share = lock_share(path, mix, n, x)
        print(f"| {mix} | {us:.1f} | {share:.0%} | {1 / share:.2f}x |")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
