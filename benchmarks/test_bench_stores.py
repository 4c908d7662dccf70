"""Store benchmarks: SQLiteStore, RedisStore, PostgresStore with a local index,
PostgresStore searching on the server (pgvector HNSW), and DynamoDBStore (against
dynalite, a local emulator: its figures say nothing of AWS latency), at 10k and 100k
entries.

Not part of the test run. Needs the servers (``scripts/services start``; the variables
are read from its env file when unset). Two ways to run:

    # pytest-benchmark, one row per (store, size, operation)
    .venv/bin/python -m pytest benchmarks/test_bench_stores.py \
        --benchmark-columns=median,mean,ops --benchmark-sort=name

    # the table in docs/performance.md (latency percentiles, throughput, processes)
    .venv/bin/python benchmarks/test_bench_stores.py --sizes 10000,100000

Every cache runs in ``multi_process_mode="shared"`` (the mode these stores exist for)
with ``stale_check_interval=1.0``. Vectors are random unit vectors of dimension 384
(MiniLM's); a semantic get passes a stored vector plus noise as its embedding, so the
embedder is not measured. Large PostgreSQL caches with server search are loaded the way
docs/stores.md recommends: written without search, then opened once with it (backfill
and a bulk HNSW build).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from semcache import SemanticCache
from semcache._store import DynamoDBStore, PostgresStore, RedisStore, SQLiteStore, Store

DIM = 384
KINDS = ("sqlite", "redis", "postgres", "postgres-pgvector", "dynamodb")
SERVICES = ("SEMCACHE_REDIS_URL", "SEMCACHE_POSTGRES_DSN", "SEMCACHE_DYNAMODB_URL")
ROOT = Path(__file__).resolve().parents[1]


def service_env() -> dict[str, str]:
    names = SERVICES
    if all(os.environ.get(n) for n in names):
        return {n: os.environ[n] for n in names}
    out = subprocess.run(
        [str(ROOT / "scripts" / "services"), "start"], capture_output=True, text=True, check=True
    ).stdout
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    return {n: env[n] for n in names}


def unit(rows: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(
        np.float32
    )
    return out


def vectors(n: int) -> npt.NDArray[np.float32]:
    return unit(np.random.default_rng(42).standard_normal((n, DIM)))


def open_store(kind: str, name: str, folder: Path, *, search: bool | None = None) -> Store:
    env = service_env()
    if kind == "sqlite":
        return SQLiteStore(folder / f"{name}.db")
    if kind == "redis":
        return RedisStore(env["SEMCACHE_REDIS_URL"], prefix=f"bench:{name}:")
    if kind == "dynamodb":
        import boto3

        client = boto3.session.Session().client(
            "dynamodb",
            endpoint_url=env["SEMCACHE_DYNAMODB_URL"],
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        return DynamoDBStore(name.replace("_", "-"), client=client, create=True)
    pgvector = kind == "postgres-pgvector" if search is None else search
    return PostgresStore(env["SEMCACHE_POSTGRES_DSN"], schema=name, vector_search=pgvector)


def open_cache(kind: str, name: str, folder: Path) -> SemanticCache:
    return SemanticCache(
        store=open_store(kind, name, folder),
        index_backend="store" if kind == "postgres-pgvector" else "auto",
        multi_process_mode="shared",
        stale_check_interval=1.0,
        similarity_threshold=0.8,
    )


def name_of(kind: str, n: int) -> str:
    return f"bench_{kind.replace('-', '_')}_{n}"


def fill(kind: str, n: int, folder: Path) -> None:
    """Write ``n`` entries (queries ``q{i}``), replacing whatever was there."""
    name = name_of(kind, n)
    load_kind = "postgres" if kind == "postgres-pgvector" else kind
    if kind != "sqlite":
        store = open_store(load_kind, name, folder, search=False)
        if isinstance(store, (RedisStore, PostgresStore, DynamoDBStore)):
            store.drop()
        else:
            store.close()
    cache = SemanticCache(
        store=open_store(load_kind, name, folder, search=False), multi_process_mode="shared"
    )
    vecs = vectors(n)
    for lo in range(0, n, 2000):
        hi = min(n, lo + 2000)
        cache.put_many(
            [f"q{i}" for i in range(lo, hi)],
            [f"answer {i} " + "x" * 200 for i in range(lo, hi)],
            embeddings=vecs[lo:hi],
        )
    cache.close()
    if kind == "postgres-pgvector":
        open_store(kind, name, folder).close()  # backfill + bulk HNSW build


def drop(kind: str, n: int, folder: Path) -> None:
    if kind == "sqlite":
        return
    store = open_store(
        "postgres" if kind.startswith("postgres") else kind, name_of(kind, n), folder, search=False
    )
    assert isinstance(store, (RedisStore, PostgresStore, DynamoDBStore))
    store.drop()


def operations(cache: SemanticCache, n: int, seed: int) -> dict[str, Callable[[int], Any]]:
    vecs = vectors(n)
    rng = np.random.default_rng(seed)
    noisy = unit(vecs[: min(n, 2000)] + 0.02 * rng.standard_normal((min(n, 2000), DIM)))
    new = vectors(4000)  # fresh rows for puts (their own texts)

    def exact(i: int) -> Any:
        return cache.get(f"q{(i * 7919) % n}")

    def semantic(i: int) -> Any:
        j = i % len(noisy)
        return cache.get(f"paraphrase {seed} {i}", embedding=noisy[j])

    def put(i: int) -> Any:
        return cache.put(f"new {seed} {i}", "fresh answer", embedding=new[i % len(new)])

    return {"exact get": exact, "semantic get": semantic, "put": put}


# -- pytest-benchmark -----------------------------------------------------------------
@pytest.fixture(scope="module", params=[(k, n) for n in (10_000,) for k in KINDS], ids=str)
def filled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SemanticCache, int]]:
    kind, n = request.param
    folder = tmp_path_factory.mktemp("stores")
    fill(kind, n, folder)
    cache = open_cache(kind, name_of(kind, n), folder)
    yield cache, n
    cache.close()
    drop(kind, n, folder)


@pytest.mark.parametrize("op", ["exact get", "semantic get", "put"])
def test_store_operation(benchmark, filled: tuple[SemanticCache, int], op: str) -> None:  # type: ignore[no-untyped-def]
    cache, n = filled
    fn = operations(cache, n, seed=1)[op]
    counter = iter(range(10**9))
    benchmark(lambda: fn(next(counter)))


# -- the docs table -------------------------------------------------------------------
def measure(fn: Callable[[int], Any], count: int) -> tuple[float, float, float]:
    """(median µs, p99 µs, ops/s) over ``count`` calls."""
    times: list[float] = []
    t_all = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_all
    times.sort()
    return (
        statistics.median(times) * 1e6,
        times[min(len(times) - 1, int(len(times) * 0.99))] * 1e6,
        count / total,
    )


def _proc_worker(kind: str, n: int, folder: str, seed: int, seconds: float, q: Any) -> None:
    cache = open_cache(kind, name_of(kind, n), Path(folder))
    ops = operations(cache, n, seed)
    mix = [ops["exact get"], ops["semantic get"], ops["exact get"], ops["semantic get"]]
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        mix[done % 4](done)
        done += 1
    q.put(done / (time.perf_counter() - start))
    cache.close()


def processes(kind: str, n: int, folder: Path, count: int, seconds: float) -> float:
    """Aggregate gets/s of ``count`` processes each running a 50/50 exact/semantic mix."""
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [
        ctx.Process(target=_proc_worker, args=(kind, n, str(folder), s, seconds, q))
        for s in range(count)
    ]
    for p in procs:
        p.start()
    rates = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--procs", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in [int(s) for s in args.sizes.split(",")]:
            for kind in args.kinds.split(","):
                t0 = time.perf_counter()
                fill(kind, n, folder)
                load = time.perf_counter() - t0
                t0 = time.perf_counter()
                cache = open_cache(kind, name_of(kind, n), folder)
                opened = time.perf_counter() - t0
                results = {
                    op: measure(fn, args.count if op != "put" else args.count // 2)
                    for op, fn in operations(cache, n, seed=0).items()
                }
                cache.close()
                scale = {
                    p: processes(kind, n, folder, p, args.seconds)
                    for p in [int(x) for x in args.procs.split(",")]
                }
                drop(kind, n, folder)
                row = (kind, n, load, opened, results, scale)
                rows.append(row)
                print(format_row(row), f"(load average {load_average()})", flush=True)
    print()
    print(table(rows))


def load_average() -> str:
    """The 1-minute load average (other work on the machine skews every figure)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def format_row(row: tuple[Any, ...]) -> str:
    kind, n, load, opened, results, scale = row
    parts = [f"{kind} {n}: load {load:.1f}s open {opened:.2f}s"]
    for op, (med, p99, ops) in results.items():
        parts.append(f"{op} {med:.0f}/{p99:.0f}us {ops:.0f}/s")
    parts.append(" ".join(f"{p}p={r:.0f}/s" for p, r in scale.items()))
    return "; ".join(parts)


def table(rows: list[tuple[Any, ...]]) -> str:
    procs = list(rows[0][5]) if rows else []
    head = (
        "| store | entries | open (s) | exact get µs (p50 / p99) | semantic get µs (p50 / p99)"
        " | put µs (p50 / p99) | put/s | " + " | ".join(f"gets/s, {p} proc" for p in procs) + " |"
    )
    out = [head, "|" + "---|" * (7 + len(procs))]
    for kind, n, _load, opened, results, scale in rows:
        e, s, p = results["exact get"], results["semantic get"], results["put"]
        out.append(
            f"| {kind} | {n:,} | {opened:.2f} | {e[0]:.0f} / {e[1]:.0f} | {s[0]:.0f} / {s[1]:.0f}"
            f" | {p[0]:.0f} / {p[1]:.0f} | {p[2]:.0f} | "
            + " | ".join(f"{scale[x]:,.0f}" for x in procs)
            + " |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
