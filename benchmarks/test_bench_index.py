"""Layer-2 index benchmarks (pytest-benchmark; not part of the default test run).

Run (about 4-5 minutes on 2 cores):

    .venv/bin/python -m pytest benchmarks/test_bench_index.py --benchmark-only \
        --benchmark-columns=min,median,mean,rounds --benchmark-sort=name

Data: clustered unit vectors, 384-d (MiniLM's dimension), fixed seeds. Timings are
per call; ``extra_info`` carries bytes per vector and the aims' ratios.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from semcache._index import FaissIndex, FlatIndex, HnswlibIndex, available_kernels
from semcache._index import _kernel as selector

DIM = 384
SIZES = [10_000, 100_000]
_CACHE: dict[int, np.ndarray] = {}


def clustered(n: int) -> np.ndarray:
    if n not in _CACHE:
        rng = np.random.default_rng(n)
        centers = rng.standard_normal((max(n // 50, 10), DIM)).astype(np.float32)
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
        x = centers[rng.integers(0, centers.shape[0], n)]
        x += rng.standard_normal((n, DIM), dtype=np.float32) * np.float32(0.35 / np.sqrt(DIM))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        _CACHE.clear()  # keep one size in memory at a time
        _CACHE[n] = x
    return _CACHE[n]


def queries(x: np.ndarray, m: int) -> np.ndarray:
    rng = np.random.default_rng(99)
    q = x[rng.integers(0, x.shape[0], m)]
    q = q + rng.standard_normal(q.shape, dtype=np.float32) * np.float32(0.15 / np.sqrt(DIM))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def _cycle(qs: np.ndarray, fn: Callable[[np.ndarray], Any]) -> Callable[[], Any]:
    state = {"i": 0}

    def call() -> Any:
        state["i"] = (state["i"] + 1) % qs.shape[0]
        return fn(qs[state["i"]])

    return call


NATIVE = pytest.mark.skipif("native" not in available_kernels(), reason="native kernel not built")
F = {"f32": np.float32, "f16": np.float16}


# -- single-query latency, exact backends ---------------------------------------------------
@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"{n // 1000}k")
@pytest.mark.parametrize("dt", ["f32", "f16"])
@pytest.mark.parametrize("impl", ["flat-native", "flat-native-shadow", "flat-numpy", "faiss-flat"])
def test_search_exact(benchmark: Any, impl: str, dt: str, n: int) -> None:
    """``flat-native`` scans the float32 matrix; ``flat-native-shadow`` scans its int8
    shadow and rescores the candidates in float32 (same results; the default from 4 MiB
    on)."""
    if impl.startswith("flat-native") and "native" not in available_kernels():
        pytest.skip("native kernel not built")
    if impl == "flat-native-shadow" and dt == "f16":
        pytest.skip("a float16 index has no shadow")
    x = clustered(n)
    qs = queries(x, 64)
    if impl == "faiss-flat":
        index: Any = FaissIndex(DIM, dtype=F[dt], kind="flat")
    else:
        shadow = impl == "flat-native-shadow"
        kernel = impl.split("-")[1]
        index = FlatIndex(DIM, dtype=F[dt], capacity=n, kernel=kernel, shadow=shadow)
    index.add(np.arange(n), x)
    benchmark.group = f"search k=1 exact {n // 1000}k"
    benchmark.extra_info["bytes_per_vector"] = index.nbytes / n
    benchmark(_cycle(qs, lambda q: index.search(q, 1)))
    index.close()


@NATIVE
@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"{n // 1000}k")
@pytest.mark.parametrize("impl", ["flat-native", "flat-native-shadow"])
def test_search_exact_k4(benchmark: Any, impl: str, n: int) -> None:
    """k=4 (the shadow rescores more candidates than at k=1), float32."""
    x = clustered(n)
    qs = queries(x, 64)
    index = FlatIndex(DIM, capacity=n, kernel="native", shadow=impl == "flat-native-shadow")
    index.add(np.arange(n), x)
    benchmark.group = f"search k=4 exact {n // 1000}k"
    benchmark(_cycle(qs, lambda q: index.search(q, 4)))
    index.close()


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"{n // 1000}k")
def test_search_numpy_matvec_baseline(benchmark: Any, n: int) -> None:
    """The baseline the aims compare with: ``argmax(mat @ q)`` in float32."""
    x = clustered(n)
    qs = queries(x, 64)
    benchmark.group = f"search k=1 exact {n // 1000}k"
    benchmark(_cycle(qs, lambda q: int(np.argmax(x @ q))))


# -- batch throughput ------------------------------------------------------------------------
@pytest.mark.parametrize("dt", ["f32", "f16"])
@pytest.mark.parametrize("impl", ["flat-native", "flat-numpy", "faiss-flat"])
def test_search_batch_100k(benchmark: Any, impl: str, dt: str) -> None:
    if impl == "flat-native" and "native" not in available_kernels():
        pytest.skip("native kernel not built")
    n = 100_000
    x = clustered(n)
    qs = queries(x, 64)
    if impl == "faiss-flat":
        index: Any = FaissIndex(DIM, dtype=F[dt], kind="flat")
    else:
        index = FlatIndex(DIM, dtype=F[dt], capacity=n, kernel=impl.split("-")[1])
    index.add(np.arange(n), x)
    benchmark.group = "search_batch 64 queries k=10, 100k"
    benchmark(index.search_batch, qs, 10)
    index.close()


# -- the aims, measured side by side ---------------------------------------------------------
def _interleaved_best(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, float]:
    """Best time of each function, measured round-robin so all see the same machine."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(reps):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


@NATIVE
@pytest.mark.parametrize("n", [100_000, 1_000_000], ids=["100k", "1M"])
def test_aims_native_f16_vs_numpy_and_bandwidth(benchmark: Any, n: int) -> None:
    """native f16 flat vs NumPy f32 matvec vs reading the f16 matrix once (the floor)."""
    x = clustered(n)
    q = queries(x, 1)[0]
    index = FlatIndex(DIM, dtype=np.float16, capacity=n, kernel="native")
    index.add(np.arange(n), x)
    mat16 = index._mat[:n]
    native = selector.get_kernel("native")
    best = _interleaved_best(
        {
            "native_f16": lambda: index.search(q, 1),
            "numpy_f32_matvec": lambda: int(np.argmax(x @ q)),
            "floor": lambda: native.stream_bytes(mat16),
            "numpy_read_once": lambda: np.bitwise_xor.reduce(mat16.reshape(-1).view(np.uint64)),
        },
        reps=40 if n <= 100_000 else 10,
    )
    info = {f"{k}_ms": v * 1e3 for k, v in best.items()}
    info["speedup_vs_numpy_f32"] = best["numpy_f32_matvec"] / best["native_f16"]
    info["ratio_to_floor"] = best["native_f16"] / best["floor"]
    info["floor_GBps"] = mat16.nbytes / best["floor"] / 1e9
    benchmark.extra_info.update(info)
    print("\n" + " ".join(f"{k}={v:.3f}" for k, v in info.items()))
    benchmark.group = f"aims {n // 1000}k"
    benchmark(lambda: index.search(q, 1))
    index.close()


# -- graph backends ----------------------------------------------------------------------------
GRAPHS = {
    "hnswlib": lambda dt: HnswlibIndex(DIM, dtype=F[dt]),
    "faiss-hnsw": lambda dt: FaissIndex(DIM, dtype=F[dt], kind="hnsw"),
}


@pytest.mark.parametrize(
    ("impl", "dt"), [("hnswlib", "f32"), ("faiss-hnsw", "f32"), ("faiss-hnsw", "f16")]
)
def test_graph_100k(benchmark: Any, impl: str, dt: str) -> None:
    n = 100_000
    x = clustered(n)
    qs = queries(x, 256)
    index = GRAPHS[impl](dt)
    t = time.perf_counter()
    index.add(np.arange(n), x)
    build = time.perf_counter() - t
    oracle = FlatIndex(DIM, capacity=n)
    oracle.add(np.arange(n), x)
    truth, _ = oracle.search_batch(qs, 1)
    got, _ = index.search_batch(qs, 1)
    benchmark.extra_info.update(
        {
            "build_s": build,
            "add_us_per_vector": build / n * 1e6,
            "bytes_per_vector": index.nbytes / n,
            "recall_at_1": float(np.mean(got[:, 0] == truth[:, 0])),
        }
    )
    print(f"\n{impl} {dt}: {benchmark.extra_info}")
    benchmark.group = "graph search k=1, 100k"
    benchmark(_cycle(qs, lambda q: index.search(q, 1)))
    index.close()


# -- add and compact ---------------------------------------------------------------------------
@pytest.mark.parametrize("dt", ["f32", "f16"])
def test_flat_add_10k_batch(benchmark: Any, dt: str) -> None:
    x = clustered(10_000)

    def run() -> None:
        index = FlatIndex(DIM, dtype=F[dt])
        index.add(np.arange(10_000), x)

    benchmark.group = "add 10k vectors (batch)"
    benchmark.pedantic(run, rounds=5, iterations=1)


def test_flat_add_one_at_a_time(benchmark: Any) -> None:
    x = clustered(10_000)
    index = FlatIndex(DIM, dtype=np.float16)
    counter = {"i": 0}

    def run() -> None:
        i = counter["i"] = counter["i"] + 1
        index.add([i], x[i % 10_000])

    benchmark.group = "add one vector"
    benchmark(run)


@pytest.mark.parametrize("impl", ["flat", "hnswlib", "faiss-hnsw"])
def test_compact_20k_10pct_tombstones(benchmark: Any, impl: str) -> None:
    n = 20_000
    x = clustered(n)

    def setup() -> tuple[tuple[Any], dict[str, Any]]:
        index: Any = FlatIndex(DIM, dtype=np.float16) if impl == "flat" else GRAPHS[impl]("f32")
        index.add(np.arange(n), x)
        index.remove(np.arange(0, n, 10))
        return (index,), {}

    benchmark.group = "compact 20k rows, 10% tombstones"
    benchmark.pedantic(lambda index: index.compact(), setup=setup, rounds=2, iterations=1)
