"""Does ``auto`` (``decide="measure"``) leave a namespace at least as fast as the flat
index, on real MiniLM vectors and on isotropic ones? Prints one table row per data set.

Run (the MiniLM vectors: one or more ``.npz`` files with a ``vectors`` array, e.g.
embeddings of the eval texts made with the default embedder; see docs/performance.md)::

    PYTHONPATH=. .venv/bin/python benchmarks/auto_decide_report.py \\
        --minilm /tmp/perf/a.npz /tmp/perf/b.npz --rows 100000 --queries 300 \\
        --background --graph-check

The MiniLM files are concatenated, normalized, stripped of duplicates (exact ones and
any row at cosine > 0.9999 to an earlier one), shuffled (seed 0) and cut to ``rows``.

For each data set: an ``AutoIndex`` with the default options except ``switch_at=rows``
(it probes when the namespace reaches ``rows``), and a plain ``FlatIndex`` of the same
rows. ``--background``: the real path (probe and build on the build thread, with every
core); the report waits for it, and the first get after that swaps the graph in and
verifies it. Without it, the decision is made inside the add (``background=False``).
``--graph-check``: also build the graph a switch would serve (an ``HnswlibIndex`` of all
rows, every core, ef tuned by its own probes as it grows) and time it too, so a
decision to stay flat can be checked against the graph it declined; then again at the
``--check-ef`` values (near duplicates only, interleaved with the flat index).

The gets are near duplicates of stored rows (cosine ~0.95) and random directions
(misses), interleaved call by call between the indexes; p50/p99 per get, and recall@1
against the flat (exact) index.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

from semcache._index import AutoIndex, FlatIndex, HnswlibIndex

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


def distinct(x: np.ndarray, cos: float = 0.9999) -> np.ndarray:
    """Rows of ``x`` (unit vectors) without exact duplicates or rows at cosine > ``cos``
    to an earlier kept one. Candidates come from a sort by the projection onto one
    random direction: two rows that close differ there by at most their distance."""
    _, first = np.unique(x.view(np.dtype((np.void, x.shape[1] * 4))).ravel(), return_index=True)
    x = x[np.sort(first)]
    r = np.random.default_rng(0).standard_normal(x.shape[1]).astype(np.float32)
    p = x @ (r / np.linalg.norm(r))
    order = np.argsort(p, kind="stable")
    xs, ps = x[order], p[order]
    eps = float(np.sqrt(2.0 * (1.0 - cos))) + 1e-6
    drop = np.zeros(len(xs), dtype=bool)
    for a in range(0, len(xs), 2048):
        b = min(a + 2048, len(xs))
        hi = int(np.searchsorted(ps, ps[b - 1] + eps, "right"))
        i, j = np.nonzero(xs[a:b] @ xs[a:hi].T > cos)
        later = j > i
        drop[j[later] + a] = True
    return x[np.sort(order[~drop])]


def load_minilm(paths: list[str]) -> np.ndarray:
    v = np.concatenate([np.load(p)["vectors"].astype(np.float32) for p in paths])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    total = v.shape[0]
    v = distinct(v)
    print(f"minilm: {total:,} vectors from {len(paths)} files, {v.shape[0]:,} distinct")
    np.random.default_rng(0).shuffle(v)
    return v


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p)) * 1e6


def run(
    name: str, x: np.ndarray, queries: int, background: bool, graph_check: bool, check_ef: list[int]
) -> dict[str, Any]:
    n = x.shape[0]
    ids = np.arange(n, dtype=np.int64)
    flat = FlatIndex(x.shape[1])
    flat.add(ids, x)
    auto = AutoIndex(x.shape[1], switch_at=n, decide="measure", background=background)
    out: dict[str, Any] = {"data": name, "rows": n, "threads": auto._threads()}
    auto.add(ids[:-1], x[:-1])
    t0 = time.perf_counter()
    auto.add(ids[-1:], x[-1:])  # the add that reaches switch_at probes (and maybe builds)
    auto.wait()  # the probe, the build and the swap (with its verification)
    out["decide_s"] = time.perf_counter() - t0
    out["served"] = auto.active
    indexes: dict[str, Any] = {"auto": auto, "flat": flat}
    if graph_check:
        graph = HnswlibIndex(x.shape[1])
        t2 = time.perf_counter()
        for lo in range(0, n, 4096):
            graph.add(ids[lo : lo + 4096], x[lo : lo + 4096])
        out["graph_build_s"] = time.perf_counter() - t2
        out["graph_threads"] = graph._build_threads
        out["graph_ef"] = graph.ef_search
        indexes["graph"] = graph
    q_near, _ = near(x, queries, seed=7)
    q_miss = isotropic(queries, seed=8)
    for label, qs in (("near", q_near), ("miss", q_miss)):
        times: dict[str, list[float]] = {k: [] for k in indexes}
        agree = dict.fromkeys(indexes, 0)
        for q in qs:
            top: dict[str, int] = {}
            for k, index in indexes.items():
                s = time.perf_counter()
                top[k] = int(index.search(q, 1)[0][0])
                times[k].append(time.perf_counter() - s)
            for k in indexes:
                agree[k] += int(top[k] == top["flat"])
        for k in indexes:
            out[f"{label}_{k}_p50"] = pct(times[k], 50)
            out[f"{label}_{k}_p99"] = pct(times[k], 99)
            out[f"{label}_{k}_recall"] = agree[k] / len(qs)
    if graph_check:
        out["ef_sweep"] = []
        for ef in check_ef:
            graph.set_ef_search(ef)
            tg: list[float] = []
            tf: list[float] = []
            hits = 0
            for q in q_near:
                s = time.perf_counter()
                g = int(graph.search(q, 1)[0][0])
                m = time.perf_counter()
                f = int(flat.search(q, 1)[0][0])
                tf.append(time.perf_counter() - m)
                tg.append(m - s)
                hits += int(g == f)
            out["ef_sweep"].append((ef, pct(tg, 50), pct(tg, 99), pct(tf, 50), hits / len(q_near)))
    out["decisions"] = [
        {k: (round(v * 1e6, 1) if k.endswith("_s") else v) for k, v in d.items()}
        for d in auto.decisions
    ]
    for index in indexes.values():
        index.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minilm", nargs="+", help=".npz files with a 'vectors' array (MiniLM)")
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--background", action="store_true", help="decide on the build thread")
    ap.add_argument("--graph-check", action="store_true", help="also time the full graph")
    ap.add_argument("--check-ef", type=int, nargs="*", default=[128, 256])
    ap.add_argument("--only", choices=("minilm", "isotropic"), help="run one data set")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cpus")
    sets: list[tuple[str, np.ndarray]] = []
    if args.minilm and args.only != "isotropic":
        v = load_minilm(args.minilm)
        if v.shape[0] < args.rows:
            raise SystemExit(f"only {v.shape[0]:,} distinct MiniLM rows, asked {args.rows:,}")
        sets.append(("minilm", v[: args.rows]))
    if args.only != "minilm":
        sets.append(("isotropic", isotropic(args.rows)))
    print(
        "| data | rows | served | threads | probe+build+verify s"
        " | near p50 auto / flat µs | near p99 auto / flat µs | near recall@1"
        " | miss p50 auto / flat µs | miss p99 auto / flat µs |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, x in sets:
        r = run(name, x, args.queries, args.background, args.graph_check, args.check_ef)
        print(
            f"| {r['data']} | {r['rows']:,} | {r['served']} | {r['threads']} |"
            f" {r['decide_s']:.1f} |"
            f" {r['near_auto_p50']:.0f} / {r['near_flat_p50']:.0f} |"
            f" {r['near_auto_p99']:.0f} / {r['near_flat_p99']:.0f} |"
            f" {r['near_auto_recall']:.3f} |"
            f" {r['miss_auto_p50']:.0f} / {r['miss_flat_p50']:.0f} |"
            f" {r['miss_auto_p99']:.0f} / {r['miss_flat_p99']:.0f} |",
            flush=True,
        )
        for d in r["decisions"]:
            print(f"    decision (µs per search): {d}")
        if "graph_build_s" in r:
            print(
                f"    graph check: hnswlib of all rows built in {r['graph_build_s']:.1f} s"
                f" on {r['graph_threads']} threads, ef {r['graph_ef']};"
                f" near p50/p99 {r['near_graph_p50']:.0f} / {r['near_graph_p99']:.0f} µs,"
                f" recall@1 {r['near_graph_recall']:.3f};"
                f" miss p50/p99 {r['miss_graph_p50']:.0f} / {r['miss_graph_p99']:.0f} µs",
                flush=True,
            )
            for ef, g50, g99, f50, rec in r["ef_sweep"]:
                print(
                    f"    graph check at ef {ef}: near p50/p99 {g50:.0f} / {g99:.0f} µs"
                    f" (flat p50 {f50:.0f}), recall@1 {rec:.3f}",
                    flush=True,
                )
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
