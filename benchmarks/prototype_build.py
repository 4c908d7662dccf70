"""What the prototype veto's tables cost to build and keep (docs/quality.md, "The
prototype veto": cost).

A SQLite cache of N entries (384 dimensions, random unit vectors) is filled, closed and
opened again; the first get that needs the tables builds them from the store. Prints
the build's time, then (a second build, under ``tracemalloc``, which slows it) the
memory the tables keep and the peak during the build. Answers: unique (every entry its
own) or repeated (100 answers). Then a reopen, timed to the end of its first semantic
get: with the tables saved at close (restored at open; the file's size), and with that file removed
(read at the first get, as before they were saved); and the index rebuild from the
store, its time and its peak memory (the indexes it builds included). Then what a get
pays: the matrix product over R
prototypes (float32), timed after a product over 10,000 rows has pushed them out of the
CPU's caches, as a get's search does (median of 300).

With ``--stores KIND ...`` (sqlite, redis, postgres, dynamodb; the servers from
``scripts/services``) it times instead, per store, the build from a cache of N entries
(unique answers, then 100 answers) two ways: through the store's ``iter_answers``
(``AnswerScan``) when it has one, and by id after ``iter_vectors`` (what a store
without it does); median of three each.

Run:  .venv/bin/python benchmarks/prototype_build.py [--entries 10000 100000]
      .venv/bin/python benchmarks/prototype_build.py --entries 20000 --stores sqlite redis postgres
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path
from unittest import mock

import numpy as np
from test_bench_stores import KINDS, open_store

from semcache import SemanticCache, _prototypes
from semcache._cache import engine_of
from semcache._snapshots import PROTOTYPES
from semcache._store import answer_scan

DIM = 384
BATCH = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--stores", nargs="+", choices=KINDS, help="the build, per store")
    args = parser.parse_args()
    if args.stores:
        for n in args.entries:
            for kind in args.stores:
                stores(kind, n)
        return
    for n in args.entries:
        rows = np.random.default_rng(0).standard_normal((n, DIM)).astype(np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        for name, every in (("unique", n), ("repeated", 100)):
            with tempfile.TemporaryDirectory() as folder:
                path = str(Path(folder) / "c.db")
                with SemanticCache(path, guards=None) as cache:
                    fill(cache, rows, every)
                figures = []
                for traced in (False, True):
                    with SemanticCache(path, guards=None) as cache:
                        prototypes = engine_of(cache).prototypes
                        assert prototypes is not None
                        prototypes.reset()  # (not the tables saved at the last close)
                        if traced:
                            tracemalloc.start()
                        t0 = time.perf_counter()
                        prototypes.declined("default", rows[0], [], [])  # builds them
                        seconds = time.perf_counter() - t0
                        if traced:
                            kept, peak = tracemalloc.get_traced_memory()
                            tracemalloc.stop()
                            figures.append(f"keeps {kept / 1e6:.1f} MB (peak {peak / 1e6:.0f} MB)")
                        else:
                            figures.append(f"build {seconds:.2f} s")
                        state = cache.stats()["prototype_veto"]["state"]
                print(f"{n:,} entries, {name} answers: " + ", ".join(figures) + f" ({state})")
                # a reopen: the tables saved at close restored, or (file removed) read
                # again at the first get that needs them
                near = rows[5] * 0.7 + rows[6] * 0.3
                saved_file = Path(path + ".index") / PROTOTYPES
                print(f"  the saved tables: {saved_file.stat().st_size / 1e6:.1f} MB")
                for saved in (True, False):
                    if not saved:
                        saved_file.unlink()
                    t0 = time.perf_counter()
                    with SemanticCache(path, guards=None) as cache:
                        t1 = time.perf_counter()
                        state = cache.stats()["prototype_veto"]["state"]
                        cache.get("a question", embedding=near)
                        t2 = time.perf_counter()
                    how = "tables saved at close" if saved else "no saved tables"
                    print(
                        f"  reopened, {how} ({state}): open {t1 - t0:.2f} s, "
                        f"first get {t2 - t1:.2f} s, in all {t2 - t0:.2f} s"
                    )
                # the index rebuild from the store (what an open without a usable index
                # snapshot does): its time, then its peak under tracemalloc
                with SemanticCache(path, guards=None) as cache:
                    indexes = engine_of(cache).indexes
                    t0 = time.perf_counter()
                    indexes.rebuild()
                    seconds = time.perf_counter() - t0
                    tracemalloc.start()
                    indexes.rebuild()
                    _, peak = tracemalloc.get_traced_memory()
                    tracemalloc.stop()
                print(f"  index rebuild: {seconds:.2f} s, peak {peak / 1e6:.0f} MB")
    rng = np.random.default_rng(1)
    query = rng.standard_normal(DIM).astype(np.float32)
    search = rng.standard_normal((10_000, DIM)).astype(np.float32)
    for r in (100, 200, 512, 1000):
        matrix = rng.standard_normal((r, DIM)).astype(np.float32)
        times = []
        for _ in range(300):
            search @ query  # (what the search before it reads)
            t0 = time.perf_counter_ns()
            int((matrix @ query).argmax())
            times.append(time.perf_counter_ns() - t0)
        print(f"{r} prototypes: {np.median(times) / 1000:.0f} us per get (cold)")


def fill(cache: SemanticCache, rows: np.ndarray, every: int) -> None:
    """Put one entry per row: prompt i, answer ``i % every``, in batches."""
    n = len(rows)
    for s in range(0, n, BATCH):
        stop = min(n, s + BATCH)
        cache.put_many(
            [f"prompt {i}" for i in range(s, stop)],
            [f"answer {i % every}" for i in range(s, stop)],
            embeddings=rows[s:stop],
        )


def stores(kind: str, n: int) -> None:
    """The build on ``kind``'s store at ``n`` entries: by ``iter_answers``, and by id."""
    rows = np.random.default_rng(0).standard_normal((n, DIM)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    for name, every in (("unique", n), ("repeated", 100)):
        with tempfile.TemporaryDirectory() as folder:
            store = open_store(kind, f"protobuild_{name}_{n}", Path(folder))
            with SemanticCache(store=store, guards=None) as cache:
                cache.clear()
                fill(cache, rows, every)
                prototypes = engine_of(cache).prototypes
                assert prototypes is not None
                figures = []
                for scan in (True, False):
                    if scan and answer_scan(store) is None:
                        figures.append("no iter_answers")
                        continue
                    times = []
                    for _ in range(3):
                        prototypes.reset()
                        t0 = time.perf_counter()
                        with mock.patch.object(
                            _prototypes, "answer_scan", _prototypes.answer_scan if scan else no
                        ):
                            prototypes.declined("default", rows[0], [], [])  # builds them
                        times.append(time.perf_counter() - t0)
                    how = "iter_answers" if scan else "by id"
                    figures.append(f"{how} {np.median(times):.2f} s")
                cache.clear()
        print(f"{kind}, {n:,} entries, {name} answers: build " + ", ".join(figures), flush=True)


def no(store: object) -> None:
    """``answer_scan`` for a store without the capability."""


if __name__ == "__main__":
    main()
