"""Does ``auto`` (``decide="measure"``) leave a namespace at least as fast as the flat
index, on real MiniLM vectors and on isotropic ones? Prints one table row per data set.

Run (the MiniLM vectors: an ``.npz`` with a ``vectors`` array, e.g. embeddings of the
eval texts made with the default embedder; see docs/performance.md)::

    PYTHONPATH=. .venv/bin/python benchmarks/auto_decide_report.py \\
        --minilm /tmp/perf/minilm.npz --rows 50000 --queries 300

For each data set: an ``AutoIndex`` with the default options except ``switch_at=rows``
(it probes when the namespace reaches ``rows``; ``background=False`` so the decision is
made before the gets are timed), and a plain ``FlatIndex`` of the same rows. The gets
are near duplicates of stored rows (cosine ~0.95) and random directions (misses),
alternating between the two indexes call by call; p50/p99 per get, and recall@1 of the
auto index against the flat one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import numpy as np

from semcache._index import AutoIndex, FlatIndex

DIM = 384


def isotropic(n: int, seed: int = 1) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def near(x: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    src = rng.choice(x.shape[0], size=n, replace=False)
    noise = rng.standard_normal((n, x.shape[1])).astype(np.float32)
    noise *= 0.3 / np.linalg.norm(noise, axis=1, keepdims=True)
    q = x[src] + noise
    return q / np.linalg.norm(q, axis=1, keepdims=True), src


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p)) * 1e6


def run(name: str, x: np.ndarray, queries: int) -> dict[str, Any]:
    n = x.shape[0]
    ids = np.arange(n, dtype=np.int64)
    flat = FlatIndex(x.shape[1])
    flat.add(ids, x)
    t0 = time.perf_counter()
    auto = AutoIndex(x.shape[1], switch_at=n, decide="measure", background=False)
    auto.add(ids[:-1], x[:-1])
    auto.add(ids[-1:], x[-1:])  # the add that reaches switch_at probes (and maybe builds)
    decide_s = time.perf_counter() - t0
    q_near, _ = near(x, queries, seed=7)
    q_miss = isotropic(queries, seed=8)
    out: dict[str, Any] = {"data": name, "rows": n, "served": auto.active, "decide_s": decide_s}
    for label, qs in (("near", q_near), ("miss", q_miss)):
        ta: list[float] = []
        tf: list[float] = []
        agree = 0
        for q in qs:
            t1 = time.perf_counter()
            a = auto.search(q, 1)[0][0]
            t2 = time.perf_counter()
            f = flat.search(q, 1)[0][0]
            t3 = time.perf_counter()
            ta.append(t2 - t1)
            tf.append(t3 - t2)
            agree += int(a == f)
        out[f"{label}_auto_p50"] = pct(ta, 50)
        out[f"{label}_auto_p99"] = pct(ta, 99)
        out[f"{label}_flat_p50"] = pct(tf, 50)
        out[f"{label}_recall"] = agree / len(qs)
        out[f"{label}_speedup"] = statistics.median(tf) / statistics.median(ta)
    out["decisions"] = [
        {k: (round(v * 1e6, 1) if k.endswith("_s") else v) for k, v in d.items()}
        for d in auto.decisions
    ]
    auto.close()
    flat.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minilm", help=".npz with a 'vectors' array of MiniLM embeddings")
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cpus")
    sets: list[tuple[str, np.ndarray]] = []
    if args.minilm:
        v = np.load(args.minilm)["vectors"].astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        sets.append(("minilm", v[: args.rows]))
    sets.append(("isotropic", isotropic(args.rows)))
    print(
        "| data | rows | served | probe+build s | near p50 auto / flat µs | near p99 auto µs"
        " | near speedup | near recall@1 | miss p50 auto / flat µs | miss speedup |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, x in sets:
        r = run(name, x, args.queries)
        print(
            f"| {r['data']} | {r['rows']:,} | {r['served']} | {r['decide_s']:.1f} |"
            f" {r['near_auto_p50']:.0f} / {r['near_flat_p50']:.0f} | {r['near_auto_p99']:.0f} |"
            f" {r['near_speedup']:.2f}x | {r['near_recall']:.3f} |"
            f" {r['miss_auto_p50']:.0f} / {r['miss_flat_p50']:.0f} | {r['miss_speedup']:.2f}x |"
        )
        for d in r["decisions"]:
            print(f"    decision (µs per search): {d}")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
