"""A graph index at scale (1,000,000 entries by default): recall@1 on near duplicates,
get p50/p99, reopen time, and peak memory during the build against the final index.

Run (the build runs once and is reused from ``--dir``; ``--rows 200000`` for a quicker
figure)::

    PYTHONPATH=. nice .venv/bin/python benchmarks/million_report.py --rows 1000000 \\
        --dir /tmp/semcache-1m --ef default,64,128,256

(``default``: the ef the index tuned itself; a snapshot written before tuning existed is
probed when loaded, and that time is part of the reopen printed.)

Data: MiniLM-like clustered 384-d unit vectors (the generator of
``test_bench_index.py``: centres plus noise), generated in seeded chunks into a
memory-mapped file, so the build holds one chunk of input at a time: the peak is the
graph plus a chunk. (Inside a cache, ``auto``'s background build also holds the flat
index it replaces until the swap: see docs/performance.md.) Queries: 1,000 stored rows
plus noise (cosine ~0.99 with their source), ground truth by an exact scan of the file.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from semcache._index import HnswlibIndex

DIM = 384
CHUNK = 16_384


def write_vectors(path: Path, n: int) -> np.ndarray:
    if path.exists():
        return np.load(path, mmap_mode="r")
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, DIM))
    rng = np.random.default_rng(12345)
    centers = rng.standard_normal((max(n // 50, 10), DIM)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        r = np.random.default_rng(lo)
        x = centers[r.integers(0, centers.shape[0], hi - lo)]
        x = x + r.standard_normal((hi - lo, DIM), dtype=np.float32) * np.float32(
            0.35 / np.sqrt(DIM)
        )
        out[lo:hi] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()
    return np.load(path, mmap_mode="r")


class PeakRss:
    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def done(self) -> int:
        self.stop.set()
        self.thread.join()
        return self.peak - self.base


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dir", default="/tmp/semcache-1m")
    ap.add_argument("--ef", default="default,64,128,256")
    ap.add_argument("--M", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--queries", type=int, default=1000)
    args = ap.parse_args()
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    n = args.rows
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cpus, {n:,} rows", flush=True)
    x = write_vectors(folder / f"vectors-{n}.npy", n)
    snap = folder / f"hnsw-{n}-M{args.M}-efc{args.ef_construction}.idx"
    if not snap.exists():
        rss = PeakRss()
        t0 = time.perf_counter()
        index = HnswlibIndex(
            DIM, M=args.M, ef_construction=args.ef_construction, build_threads=args.threads
        )
        offset = x.offset  # read chunks with plain reads: mapped pages would count as RSS
        with open(folder / f"vectors-{n}.npy", "rb") as fh:
            for lo in range(0, n, CHUNK):
                hi = min(n, lo + CHUNK)
                fh.seek(offset + lo * DIM * 4)
                chunk = np.fromfile(fh, dtype=np.float32, count=(hi - lo) * DIM)
                index.add(np.arange(lo, hi, dtype=np.int64), chunk.reshape(-1, DIM))
                if lo % (CHUNK * 8) == 0:
                    print(f"  built {hi:,} in {time.perf_counter() - t0:.0f} s", flush=True)
        build_s = time.perf_counter() - t0
        peak = rss.done()
        final = index.nbytes
        print(f"ef probes during the build: {index.ef_probes}", flush=True)
        index.save(snap)
        index.close()
        print(
            f"build: {build_s:.0f} s ({build_s / n * 1e6:.0f} µs/vector, {args.threads} threads);"
            f" peak RSS growth {peak / 2**30:.2f} GiB, final index {final / 2**30:.2f} GiB,"
            f" ratio {peak / final:.2f}",
            flush=True,
        )
    t0 = time.perf_counter()
    index = HnswlibIndex.load(snap)
    index.search(np.asarray(x[0]), 1)
    took = time.perf_counter() - t0
    probe = sum(p["seconds"] for p in index.ef_probes)
    print(
        f"reopen (load the snapshot, first search): {took:.2f} s, of which the ef probe"
        f" {probe:.2f} s (a snapshot written before ef was tuned, or never probed)"
    )
    print(
        f"default ef_search: {index.ef_search} (tuned: {index.ef_tuned}); probes {index.ef_probes}"
    )
    default_ef = index.ef_search
    rng = np.random.default_rng(7)
    src = np.sort(rng.choice(n, size=args.queries, replace=False))
    noise = rng.standard_normal((args.queries, DIM)).astype(np.float32)
    noise *= 0.15 / np.linalg.norm(noise, axis=1, keepdims=True)
    q = np.asarray(x[src]) + noise
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    best = np.full(args.queries, -np.inf, dtype=np.float32)
    truth = np.zeros(args.queries, dtype=np.int64)
    for lo in range(0, n, 65_536):
        sims = q @ np.asarray(x[lo : lo + 65_536]).T
        arg = np.argmax(sims, axis=1)
        val = sims[np.arange(args.queries), arg]
        better = val > best
        best[better], truth[better] = val[better], arg[better] + lo
    # the ef probe's notion of a hit: a top-1 at least as similar as the query's source
    src_sim = np.einsum("ij,ij->i", q, np.asarray(x[src])) - 1e-5
    print(f"queries whose exact top-1 is not their source: {int(np.sum(truth != src))}")
    print("| ef_search | recall@1 | source or better | p50 µs | p99 µs | p99/p50 |")
    print("|---|---|---|---|---|---|")
    for name in args.ef.split(","):
        ef = default_ef if name == "default" else int(name)
        index.set_ef_search(ef)
        times = []
        found = np.zeros(args.queries, dtype=np.int64)
        sims = np.zeros(args.queries, dtype=np.float32)
        for _ in range(2):  # the second pass is reported (the first pages the file in)
            times = []
            for i in range(args.queries):
                t1 = time.perf_counter()
                got = index.search(q[i], 1)
                found[i], sims[i] = got[0][0], got[1][0]
                times.append(time.perf_counter() - t1)
        p50, p99 = np.percentile(times, 50) * 1e6, np.percentile(times, 99) * 1e6
        recall = float(np.mean(found == truth))
        probe_recall = float(np.mean(sims >= src_sim))
        label = f"{ef} (default)" if name == "default" else str(ef)
        print(
            f"| {label} | {recall:.4f} | {probe_recall:.4f} | {p50:.0f} | {p99:.0f}"
            f" | {p99 / p50:.1f} |",
            flush=True,
        )
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
