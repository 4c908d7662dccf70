"""The native top-k kernel and its NumPy twin: one suite run against both, plus a
property test that they agree exactly on data whose sums are exact in float32."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import unit_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semcache._index import _kernel as selector
from semcache._index import _kernel_py

# native: its default loop choice; native-stream: the one-row DRAM loops for every scan;
# native-portable: the C fallback loops (what a CPU without AVX2/F16C/FMA runs).
KERNELS = ["numpy", "native", "native-stream", "native-portable"]


@pytest.fixture(params=KERNELS)
def kernel(request: pytest.FixtureRequest) -> Iterator[Any]:
    name = request.param
    if name.startswith("native") and "native" not in selector.available_kernels():
        pytest.skip("native kernel not built")
    k = selector.get_kernel(name.split("-")[0])
    before = k.info()
    if name == "native-portable":
        k.configure(simd=False)
    if name == "native-stream":
        k.configure(stream_min_bytes=0)
    try:
        yield k
    finally:
        if name.startswith("native-"):
            k.configure(simd=True, stream_min_bytes=before["stream_min_bytes"])


def _oracle(mat: np.ndarray, n: int, live: np.ndarray | None, q: np.ndarray, k: int):
    scores = mat[:n].astype(np.float64) @ q.astype(np.float64)
    rows = np.arange(n) if live is None else np.flatnonzero(live[:n])
    order = sorted(rows.tolist(), key=lambda r: (-scores[r], r))[:k]
    return np.array(order, dtype=np.int64), scores[order]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize(("n", "d"), [(1, 1), (7, 3), (300, 17), (1000, 384), (5000, 64)])
def test_topk_matches_oracle(kernel: Any, dtype: Any, n: int, d: int) -> None:
    rng = np.random.default_rng(n * 1000 + d)
    mat = unit_rows(n, d, rng).astype(dtype)
    q = unit_rows(1, d, rng)[0]
    for k in (1, 5, n + 3):
        rows, scores = kernel.topk(mat, n, None, q, k)
        want_rows, want_scores = _oracle(mat, n, None, q, k)
        assert rows.dtype == np.int64
        assert scores.dtype == np.float32
        assert rows.shape == (min(k, n),)
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)
        # rows may differ only where scores tie within float32 rounding
        diff = rows != want_rows
        if diff.any():
            np.testing.assert_allclose(scores[diff], want_scores[diff], atol=1e-5)


def test_live_mask_skips_tombstones(kernel: Any) -> None:
    rng = np.random.default_rng(1)
    mat = unit_rows(2000, 32, rng)
    live = rng.random(2000) < 0.3
    q = mat[5]
    live[5] = False
    rows, _ = kernel.topk(mat, 2000, live, q, 50)
    assert live[rows].all()
    assert 5 not in rows.tolist()
    want, _ = _oracle(mat, 2000, live, q, 50)
    assert rows.tolist() == want.tolist()


def test_k_larger_than_live_rows(kernel: Any) -> None:
    mat = np.eye(4, dtype=np.float32)
    live = np.array([True, False, True, False])
    rows, scores = kernel.topk(mat, 4, live, np.array([1, 0, 0, 0], np.float32), 10)
    assert rows.tolist() == [0, 2]
    assert scores.tolist() == [1.0, 0.0]


def test_no_live_rows_and_empty_matrix(kernel: Any) -> None:
    mat = np.ones((3, 2), dtype=np.float32)
    rows, scores = kernel.topk(mat, 3, np.zeros(3, bool), np.ones(2, np.float32), 2)
    assert rows.shape == scores.shape == (0,)
    rows, scores = kernel.topk(mat, 0, None, np.ones(2, np.float32), 2)
    assert rows.shape == (0,)


def test_ties_go_to_the_lower_row(kernel: Any) -> None:
    mat = np.ones((600, 4), dtype=np.float32)  # every score ties
    rows, scores = kernel.topk(mat, 600, None, np.ones(4, np.float32), 5)
    assert rows.tolist() == [0, 1, 2, 3, 4]
    assert scores.tolist() == [4.0] * 5


def test_only_first_n_rows_are_scanned(kernel: Any) -> None:
    mat = np.zeros((10, 2), dtype=np.float16)
    mat[8] = [1, 0]  # beyond n
    rows, _ = kernel.topk(mat, 5, None, np.array([1, 0], np.float32), 1)
    assert rows.tolist() == [0]


def test_batch_equals_single_queries(kernel: Any) -> None:
    rng = np.random.default_rng(2)
    mat = unit_rows(3000, 48, rng).astype(np.float16)
    live = rng.random(3000) < 0.9
    qs = unit_rows(9, 48, rng)
    rows, scores = kernel.topk_batch(mat, 3000, live, qs, 4)
    assert rows.shape == scores.shape == (9, 4)
    for i in range(9):
        r, s = kernel.topk(mat, 3000, live, qs[i], 4)
        assert rows[i].tolist() == r.tolist()
        np.testing.assert_allclose(scores[i], s, atol=1e-6)  # gemm vs gemv rounding


def test_threaded_scan_equals_single_thread(kernel: Any) -> None:
    rng = np.random.default_rng(3)
    mat = unit_rows(20_000, 64, rng)
    q = unit_rows(1, 64, rng)[0]
    before = kernel.info()
    kernel.configure(max_threads=1)
    base = kernel.topk(mat, 20_000, None, q, 7)
    kernel.configure(max_threads=4, parallel_min_bytes=64 * 1024)
    try:
        threaded = kernel.topk(mat, 20_000, None, q, 7)
    finally:
        kernel.configure(
            max_threads=before["max_threads"],
            parallel_min_bytes=before.get("parallel_min_bytes", 4 << 20),
        )
    assert threaded[0].tolist() == base[0].tolist()
    assert threaded[1].tolist() == base[1].tolist()


@pytest.mark.parametrize(
    ("mat", "n", "live", "query", "k"),
    [
        (np.zeros((3, 2), np.float32), 3, None, np.zeros(2), 0),
        (np.zeros((3, 2), np.float64), 3, None, np.zeros(2), 1),
        (np.zeros(3, np.float32), 3, None, np.zeros(2), 1),
        (np.zeros((3, 4), np.float32)[:, :2], 3, None, np.zeros(2), 1),
        (np.zeros((3, 2), np.float32), 4, None, np.zeros(2), 1),
        (np.zeros((3, 2), np.float32), 3, np.ones(2, bool), np.zeros(2), 1),
        (np.zeros((3, 2), np.float32), 3, np.ones(3, np.int32), np.zeros(2), 1),
        (np.zeros((3, 2), np.float32), 3, None, np.zeros(3), 1),
    ],
)
def test_bad_arguments_raise_value_error(
    kernel: Any, mat: Any, n: int, live: Any, query: Any, k: int
) -> None:
    with pytest.raises(ValueError):
        kernel.topk(mat, n, live, query, k)


def test_selector_reports_the_active_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    assert selector.kernel_name() in ("native", "numpy")
    assert selector.kernel_name() == selector.kernel.NAME
    assert selector.get_kernel("numpy") is _kernel_py
    with pytest.raises(ValueError, match="unknown kernel"):
        selector.get_kernel("fortran")
    monkeypatch.setattr(selector, "_NATIVE", None)
    assert selector.available_kernels() == ["numpy"]
    with pytest.raises(ValueError, match="not built"):
        selector.get_kernel("native")


def test_pure_python_env_var_selects_the_twin() -> None:
    import subprocess
    import sys

    code = "from semcache._index import kernel_name; print(kernel_name())"
    env = {"SEMCACHE_PURE_PYTHON": "1", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "numpy", out.stderr


def test_stream_bytes_reads_everything(kernel: Any) -> None:
    a = np.arange(1000, dtype=np.uint64)
    assert kernel.stream_bytes(a) == int(np.bitwise_xor.reduce(a))


# Dyadic values with few bits: every partial sum is exact in float32, so both kernels
# must return the very same rows and scores whatever their summation order.
_dyadic = st.integers(-8, 8).map(lambda v: v / 8)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[np.ndarray, int, np.ndarray | None, np.ndarray, int]:
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 40))
    dtype = draw(st.sampled_from([np.float32, np.float16]))
    mat = np.array(draw(st.lists(_dyadic, min_size=n * d, max_size=n * d)), dtype=dtype)
    mat = mat.reshape(n, d)
    q = np.array(draw(st.lists(_dyadic, min_size=d, max_size=d)), dtype=np.float32)
    live = draw(st.none() | st.lists(st.booleans(), min_size=n, max_size=n).map(np.array))
    k = draw(st.integers(1, n + 2))
    return mat, n, live, q, k


@settings(
    derandomize=True, max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(_cases())
def test_native_and_numpy_agree_exactly(case: tuple[Any, ...]) -> None:
    if "native" not in selector.available_kernels():
        pytest.skip("native kernel not built")
    mat, n, live, q, k = case
    native = selector.get_kernel("native")
    stream_min = native.info()["stream_min_bytes"]
    want = _kernel_py.topk(mat, n, live, q, k)
    for simd, stream in ((True, stream_min), (True, 0), (False, stream_min)):
        native.configure(simd=simd, stream_min_bytes=stream)
        try:
            got = native.topk(mat, n, live, q, k)
        finally:
            native.configure(simd=True, stream_min_bytes=stream_min)
        assert got[0].tolist() == want[0].tolist()
        assert got[1].tolist() == want[1].tolist()
