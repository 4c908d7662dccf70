"""The int8 shadow kernel: native and NumPy twins agree bit for bit on the bounds and the
int8 top-k, the bounds hold, and the one-pass search returns the float32 top-k."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from semcache._index import _kernel as selector
from semcache._index import _kernel_py

NATIVE = "native" in selector.available_kernels()
needs_native = pytest.mark.skipif(not NATIVE, reason="native kernel not built")


@pytest.fixture(params=["simd", "portable"])
def native(request: pytest.FixtureRequest) -> Iterator[Any]:
    if not NATIVE:
        pytest.skip("native kernel not built")
    k = selector.get_kernel("native")
    if request.param == "portable":
        k.configure(simd=False)
    try:
        yield k
    finally:
        k.configure(simd=True)


def _data(seed: int, n: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x *= np.exp(rng.uniform(-3, 3, (n, 1))).astype(np.float32)  # row scales vary
    if n > 2:
        x[1] = 0.0  # an all-zero row: scale 0
    return x


def _bits(a: np.ndarray) -> list[int]:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).tolist()


SHAPES = [(1, 1), (2, 3), (7, 31), (40, 33), (300, 64), (1000, 100), (600, 384)]


@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_row_quantization_agrees_bit_for_bit(native: Any, n: int, d: int) -> None:
    x = _data(n * 11 + d, n, d)
    if n > 3:
        x[2] = 1e-38  # a scale that underflows float32: codes 0, the error is all of x
        x[3, 0] = 2.0**40  # the largest element allowed
    want = _kernel_py.quantize_rows(x)
    got = native.quantize_rows(x)
    assert want is not None
    assert got is not None
    assert got[0].tolist() == want[0].tolist()
    assert _bits(got[1]) == _bits(want[1])
    codes, aux = got
    assert np.abs(codes.astype(np.int16)).max(initial=0) <= 127
    x64 = x.astype(np.float64)
    approx = aux[0, :, None].astype(np.float64) * codes
    assert (np.linalg.norm(approx, axis=1) <= aux[1]).all()
    assert (np.linalg.norm(x64 - approx, axis=1) <= aux[2]).all()
    x[0, 0] = np.float32(2.0**41)
    assert native.quantize_rows(x) is None
    assert _kernel_py.quantize_rows(x) is None


@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_query_quantization_and_bounds_agree_bit_for_bit(native: Any, n: int, d: int) -> None:
    x = _data(n * 7 + d, n, d)
    quantized = _kernel_py.quantize_rows(x)
    assert quantized is not None
    codes, aux = quantized
    rng = np.random.default_rng(d)
    for q in rng.standard_normal((4, d)).astype(np.float32) * np.float32(3.0):
        want_q = _kernel_py.quantize_query(q)
        got_q = native.quantize_query(q)
        assert want_q is not None
        assert got_q is not None
        assert got_q[0].tolist() == want_q[0].tolist()
        assert _bits(got_q[1]) == _bits(want_q[1])
        want = _kernel_py.bounds_i8(codes, aux, n, q)
        got = native.bounds_i8(codes, aux, n, q)
        assert want is not None
        assert got is not None
        assert _bits(got[0]) == _bits(want[0])
        assert _bits(got[1]) == _bits(want[1])


@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_bounds_hold(n: int, d: int) -> None:
    """Every row's float32 score (native and NumPy scans) and exact score lie inside."""
    x = _data(n + d, n, d)
    quantized = _kernel_py.quantize_rows(x)
    assert quantized is not None
    codes, aux = quantized
    rng = np.random.default_rng(n)
    for q in rng.standard_normal((4, d)).astype(np.float32):
        bounds = _kernel_py.bounds_i8(codes, aux, n, q)
        assert bounds is not None
        up, low = bounds
        exact = x.astype(np.float64) @ q.astype(np.float64)
        assert (low <= exact).all()
        assert (exact <= up).all()
        for name in selector.available_kernels():
            rows, scores = selector.get_kernel(name).topk(x, n, None, q, n)
            assert (low[rows] <= scores).all()
            assert (scores <= up[rows]).all()


@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_int8_topk_native_equals_numpy(native: Any, n: int, d: int) -> None:
    x = _data(n * 3 + d, n, d)
    quantized = _kernel_py.quantize_rows(x)
    assert quantized is not None
    codes, aux = quantized
    rng = np.random.default_rng(n + 1)
    live = rng.random(n) < 0.7
    for q in rng.standard_normal((3, d)).astype(np.float32):
        for k in (1, 5, n + 3):
            for lv in (None, live):
                want = _kernel_py.topk_i8(codes, aux, n, lv, q, k)
                got = native.topk_i8(codes, aux, n, lv, q, k)
                assert want is not None
                assert got is not None
                assert got[0].tolist() == want[0].tolist()
                assert _bits(got[1]) == _bits(want[1])
                if lv is not None:
                    assert live[got[0]].all()


@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_search_i8_returns_the_float32_top_k(native: Any, n: int, d: int) -> None:
    x = _data(n * 5 + d, n, d)
    quantized = _kernel_py.quantize_rows(x)
    assert quantized is not None
    codes, aux = quantized
    rng = np.random.default_rng(n + 2)
    live = rng.random(n) < 0.7
    qs = np.vstack([rng.standard_normal((3, d)), x[: min(n, 3)]]).astype(np.float32)
    for q in qs:
        for k in (1, 4, n + 3):
            for lv in (None, live):
                want = native.topk(x, n, lv, q, k)
                got = native.search_i8(codes, aux, x, n, lv, q, k, n)
                twin = _kernel_py.search_i8(codes, aux, x, n, lv, q, k, n)
                assert got is not None
                assert twin is not None
                assert got[2] == twin[2]  # the same candidates
                tol = 1e-5 * (float(np.abs(want[1]).max()) + 1.0)  # float32 rounding
                np.testing.assert_allclose(got[1], want[1], rtol=0, atol=tol)
                np.testing.assert_allclose(twin[1], want[1], rtol=0, atol=tol)
                if k < n:  # distinct random scores: the same rows
                    assert got[0].tolist() == want[0].tolist() == twin[0].tolist()
                if got[2] > 0:  # too few candidates allowed: refused alike
                    assert native.search_i8(codes, aux, x, n, lv, q, k, got[2] - 1) is None
                    assert _kernel_py.search_i8(codes, aux, x, n, lv, q, k, got[2] - 1) is None


@needs_native
def test_threaded_scans_equal_a_single_thread() -> None:
    native = selector.get_kernel("native")
    x = _data(9, 20_000, 72)
    quantized = _kernel_py.quantize_rows(x)
    assert quantized is not None
    codes, aux = quantized
    live = np.random.default_rng(9).random(20_000) < 0.9
    qs = np.vstack([x[:3], np.random.default_rng(10).standard_normal((3, 72))])
    before = native.info()
    results = []
    try:
        for threads, min_bytes in ((1, before["parallel_min_bytes"]), (4, 64 * 1024)):
            native.configure(max_threads=threads, parallel_min_bytes=min_bytes)
            out = []
            for q in qs:
                i8 = native.topk_i8(codes, aux, 20_000, live, q, 9)
                hit = native.search_i8(codes, aux, x, 20_000, live, q, 4, 20_000)
                assert i8 is not None
                assert hit is not None
                out.append((i8[0].tolist(), _bits(i8[1]), hit[0].tolist(), _bits(hit[1]), hit[2]))
            results.append(out)
    finally:
        native.configure(
            max_threads=before["max_threads"], parallel_min_bytes=before["parallel_min_bytes"]
        )
    assert results[0] == results[1]


@pytest.mark.parametrize("name", ["numpy", "native"])
def test_out_of_range_queries_and_rows_are_refused(name: str) -> None:
    if name not in selector.available_kernels():
        pytest.skip("native kernel not built")
    kern = selector.get_kernel(name)
    x = _data(11, 50, 8)
    quantized = _kernel_py.quantize_rows(x)
    assert quantized is not None
    codes, aux = quantized
    huge = np.full(8, 2.0**41, dtype=np.float32)
    assert kern.quantize_query(huge) is None
    assert kern.bounds_i8(codes, aux, 50, huge) is None
    assert kern.topk_i8(codes, aux, 50, None, huge, 3) is None
    assert kern.search_i8(codes, aux, x, 50, None, huge, 3, 50) is None
    assert _kernel_py.quantize_rows(np.vstack([x, huge])) is None
    assert _kernel_py.quantize_rows(np.full((2, 8), 2.0**40, np.float32)) is not None


@pytest.mark.parametrize("name", ["numpy", "native"])
def test_bad_int8_arguments_raise(name: str) -> None:
    if name not in selector.available_kernels():
        pytest.skip("native kernel not built")
    kern = selector.get_kernel(name)
    x = _data(12, 10, 4)
    quantized = _kernel_py.quantize_rows(x)
    assert quantized is not None
    codes, aux = quantized
    q = np.ones(4, np.float32)
    with pytest.raises(ValueError):
        kern.topk_i8(codes, aux, 10, None, q, 0)
    with pytest.raises(ValueError):
        kern.topk_i8(codes.astype(np.int16), aux, 10, None, q, 1)
    with pytest.raises(ValueError):
        kern.topk_i8(codes, aux[:2], 10, None, q, 1)
    with pytest.raises(ValueError):
        kern.topk_i8(codes, aux, 11, None, q, 1)
    with pytest.raises(ValueError):
        kern.topk_i8(codes, aux, 10, None, np.ones(5, np.float32), 1)
    with pytest.raises(ValueError):
        kern.search_i8(codes, aux, x[:, :3].copy(), 10, None, q, 1, 10)
    with pytest.raises(ValueError):
        kern.search_i8(codes, aux, x.astype(np.float16), 10, None, q, 1, 10)
    with pytest.raises(ValueError):
        kern.topk_rows(x, np.array([10]), q, 1)
