"""The int8 shadow of a float32 flat index: searches give what a float32 scan gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semcache._errors import ConfigurationError
from semcache._index import _flat, available_kernels, load_index, make_index
from semcache._index._flat import FlatIndex

KERNELS = [k for k in ("native", "numpy") if k in available_kernels()]


def clustered(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Unit rows in tight clusters (paraphrases: many near-equal scores)."""
    centres = rng.standard_normal((max(1, n // 20), dim))
    rows = centres[rng.integers(0, centres.shape[0], n)] + 0.03 * rng.standard_normal((n, dim))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float32)


def assert_same(a: FlatIndex, b: FlatIndex, queries: np.ndarray, k: int) -> None:
    for q in queries:
        ids_a, s_a = a.search(q, k)
        ids_b, s_b = b.search(q, k)
        assert ids_a.tolist() == ids_b.tolist()
        np.testing.assert_allclose(s_a, s_b, rtol=0, atol=2e-6)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("k", [1, 4, 40])
def test_shadow_search_equals_float32_scan(kernel: str, k: int) -> None:
    rng = np.random.default_rng(k)
    dim = 48
    shadowed = FlatIndex(dim, shadow=True, kernel=kernel)
    plain = FlatIndex(dim, shadow=False, kernel=kernel)
    assert shadowed.shadowed is False  # nothing to shadow yet
    for start in range(0, 3000, 250):  # growth past the capacity several times
        rows = clustered(rng, 250, dim)
        ids = np.arange(start, start + 250)
        shadowed.add(ids, rows)
        plain.add(ids, rows)
    assert shadowed.shadowed
    assert not plain.shadowed
    queries = np.vstack([clustered(rng, 30, dim), plain.live_vectors()[1][::97]])
    assert_same(shadowed, plain, queries, k)

    gone = rng.choice(3000, 1200, replace=False)  # tombstones, then compaction
    assert shadowed.remove(gone) == plain.remove(gone) == 1200
    assert_same(shadowed, plain, queries, k)
    again = rng.choice(3000, 200, replace=False)  # replacing ids tombstones old rows
    fresh = clustered(rng, 200, dim)
    shadowed.add(again, fresh)
    plain.add(again, fresh)
    assert shadowed.compact() == plain.compact()
    assert shadowed.shadowed
    assert_same(shadowed, plain, queries, k)


def test_many_equal_scores_break_ties_by_row_like_a_float32_scan() -> None:
    rng = np.random.default_rng(1)
    dim = 16
    base = rng.standard_normal(dim).astype(np.float32)
    base /= np.linalg.norm(base)
    rows = np.vstack([np.tile(base, (300, 1)), clustered(rng, 300, dim)])
    order = rng.permutation(600)
    shadowed = FlatIndex(dim, shadow=True)
    plain = FlatIndex(dim, shadow=False)
    for index in (shadowed, plain):
        index.add(order, rows)
    assert_same(shadowed, plain, np.vstack([base, rows[300:310]]), 5)
    ids, scores = shadowed.search(base, 5)
    assert ids.tolist() == order[:5].tolist()  # the first rows added win the tie
    assert np.allclose(scores, 1.0, atol=1e-6)


def test_large_values_keep_the_shadow_and_values_beyond_its_range_drop_it() -> None:
    rng = np.random.default_rng(2)
    dim = 8
    rows = rng.standard_normal((200, dim)).astype(np.float32)
    index = FlatIndex(dim, shadow=True)
    plain = FlatIndex(dim, shadow=False)
    for i in (index, plain):
        i.add(np.arange(200), rows)
    assert index.shadowed
    big = np.full((1, dim), 1e6, dtype=np.float32)  # beyond float16, fine for int8 scales
    for i in (index, plain):
        i.add([500], big)
    assert index.shadowed
    assert_same(index, plain, np.vstack([rows[:5], big / 1e6]), 3)
    huge_query = rows[0] * np.float32(2.0**45)  # beyond the int8 path: scans float32
    assert index.search(huge_query, 3)[0].tolist() == plain.search(huge_query, 3)[0].tolist()
    huge = np.full((1, dim), 2.0**41, dtype=np.float32)  # beyond 2**40: no shadow
    for i in (index, plain):
        i.add([501], huge)
    assert not index.shadowed
    assert_same(index, plain, np.vstack([rows[:5], big / 1e6]), 3)
    assert index.search(big[0] / 1e6, 1)[0].tolist() == [501]
    assert index.search(-big[0] / 1e6, 1)[0].tolist() == plain.search(-big[0] / 1e6, 1)[0].tolist()


def test_shadow_is_automatic_from_a_size_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_flat, "SHADOW_MIN_BYTES", 100 * 8 * 4)
    rng = np.random.default_rng(3)
    index = FlatIndex(8)
    index.add(np.arange(99), rng.standard_normal((99, 8)).astype(np.float32))
    assert not index.shadowed
    before = index.nbytes
    index.add([99], rng.standard_normal((1, 8)).astype(np.float32))
    assert index.shadowed
    assert index.nbytes > before
    half = FlatIndex(8, dtype=np.float16, shadow=True)  # a float16 index keeps none
    half.add(np.arange(200), rng.standard_normal((200, 8)))
    assert not half.shadowed


def test_shadow_costs_a_quarter_of_the_matrix_and_12_bytes_a_row() -> None:
    rng = np.random.default_rng(4)
    rows = rng.standard_normal((1000, 32)).astype(np.float32)
    on, off = FlatIndex(32, shadow=True), FlatIndex(32, shadow=False)
    for i in (on, off):
        i.add(np.arange(1000), rows)
    capacity = off._mat.shape[0]
    assert on.nbytes - off.nbytes == off._mat.nbytes // 4 + 12 * capacity


def test_shadow_option_round_trips_through_snapshots(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    rows = rng.standard_normal((100, 8)).astype(np.float32)
    for backend in ("flat", "auto"):
        index = make_index(backend, 8, np.float32, {"shadow": False})
        index.add(np.arange(100), rows)
        index.save(tmp_path / backend)
        loaded = load_index(tmp_path / backend)
        inner = loaded if backend == "flat" else loaded._inner
        assert inner._shadow_mode is False
        assert loaded.search(rows[3], 1)[0].tolist() == [3]
        forced = make_index(backend, 8, np.float32, {"shadow": True})
        forced.add(np.arange(100), rows)
        forced.save(tmp_path / (backend + "2"))
        reloaded = load_index(tmp_path / (backend + "2"))
        inner = reloaded if backend == "flat" else reloaded._inner
        assert inner.shadowed


def test_bad_shadow_option_raises() -> None:
    with pytest.raises(ConfigurationError):
        make_index("flat", 8, np.float32, {"shadow": "yes"})


def near_ties(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """300 rows whose scores against the queries lie closer together than the int8
    bounds can tell apart, among 1700 others."""
    rng = np.random.default_rng(seed)
    dim = 64
    base = rng.standard_normal(dim)
    base /= np.linalg.norm(base)
    near = base + 2e-3 * rng.standard_normal((300, dim))
    rows = np.vstack([near, clustered(rng, 1700, dim)])[rng.permutation(2000)]
    rows = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    queries = (base + 1e-2 * rng.standard_normal((10, dim))).astype(np.float32)
    return rows, queries


@pytest.mark.parametrize("kernel", KERNELS)
def test_near_ties_need_candidates_far_beyond_the_top_bounds(kernel: str) -> None:
    """The int8 ranking is too coarse for these rows: rescoring a fixed number of the
    best bounds (an always-accept shortcut) misses rows of the float32 top-k; the search
    rescores every row whose upper bound reaches the k-th lower bound and is exact."""
    rows, queries = near_ties(6)
    shadowed = FlatIndex(64, shadow=True, kernel=kernel)
    plain = FlatIndex(64, shadow=False, kernel=kernel)
    for index in (shadowed, plain):
        index.add(np.arange(2000), rows)
    kern, codes, aux = shadowed._kernel, shadowed._codes, shadowed._aux
    assert codes is not None
    assert aux is not None
    shortcut_wrong = 0
    for q in queries:
        want = plain.search(q, 4)[0].tolist()
        # the mutation: accept the 32 best upper bounds, rescored, without the check
        top = kern.topk_i8(codes, aux, 2000, None, q, 32)
        assert top is not None
        shortcut_wrong += kern.topk_rows(rows, top[0], q, 4)[0].tolist() != want
        hit = kern.search_i8(codes, aux, rows, 2000, None, q, 4, 2000)
        assert hit is not None
        assert hit[2] > 32  # the bounds demanded many more candidates
        assert hit[0].tolist() == want
    assert shortcut_wrong > 0
    assert_same(shadowed, plain, queries, 4)


def test_too_many_candidates_fall_back_to_a_float32_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    rows, queries = near_ties(7)
    shadowed = FlatIndex(64, shadow=True)
    plain = FlatIndex(64, shadow=False)
    for index in (shadowed, plain):
        index.add(np.arange(2000), rows)
    calls: list[str] = []
    kern = shadowed._kernel

    class Spy:
        NAME = kern.NAME

        def search_i8(self, *args: object) -> object:
            hit = kern.search_i8(*args)  # type: ignore[arg-type]
            calls.append("refused" if hit is None else "proven")
            return hit

        def topk(self, *args: object) -> object:
            calls.append("float32")
            return kern.topk(*args)  # type: ignore[arg-type]

    shadowed._kernel = Spy()  # type: ignore[assignment]
    assert_same(shadowed, plain, queries[:3], 4)
    assert calls == ["proven"] * 3
    calls.clear()
    monkeypatch.setattr(_flat, "_SHADOW_MAX_SHARE", 200)  # at most 10 candidates
    assert_same(shadowed, plain, queries[:3], 4)
    assert calls == ["refused", "float32"] * 3


@pytest.mark.parametrize("kernel", KERNELS)
def test_rows_of_any_scale_tombstones_and_growth(kernel: str) -> None:
    rng = np.random.default_rng(8)
    dim = 40  # not a multiple of 32
    shadowed = FlatIndex(dim, shadow=True, kernel=kernel, capacity=64)
    plain = FlatIndex(dim, shadow=False, kernel=kernel, capacity=64)
    for start in range(0, 1500, 300):
        rows = clustered(rng, 300, dim) * np.exp(rng.uniform(-8, 8, (300, 1))).astype(np.float32)
        rows[:3] = 0.0  # all-zero rows
        rows[3] = 1e-30  # tiny
        for index in (shadowed, plain):
            index.add(np.arange(start, start + 300), rows)
    gone = rng.choice(1500, 600, replace=False)
    for index in (shadowed, plain):
        index.remove(gone)
    assert shadowed.shadowed
    queries = np.vstack([clustered(rng, 8, dim), plain.live_vectors()[1][::150]])
    for k in (1, 4, 30):
        for q in queries:
            a, b = shadowed.search(q, k), plain.search(q, k)
            assert a[0].tolist() == b[0].tolist()
            np.testing.assert_allclose(a[1], b[1], rtol=1e-6, atol=0)


@pytest.mark.skipif("native" not in available_kernels(), reason="native kernel not built")
@pytest.mark.parametrize("stream", [False, True], ids=["cache-resident", "streaming"])
def test_native_shadow_scores_are_a_plain_scans_bit_for_bit(stream: bool) -> None:
    """The rescoring sums each row in the order a plain float32 scan of the same matrix
    would (four-row loops, or the one-row streaming loop for large matrices), whatever
    the row's place in its group: same ids, same scores to the last bit."""
    from semcache import _kernel as native  # type: ignore[attr-defined]

    before = native.info()["stream_min_bytes"]
    rng = np.random.default_rng(11)
    dim, n = 72, 3001  # 72: every loop's tail runs; 3001: blocks end mid-group
    rows = clustered(rng, n, dim)
    shadowed = FlatIndex(dim, shadow=True, kernel="native")
    plain = FlatIndex(dim, shadow=False, kernel="native")
    for index in (shadowed, plain):
        index.add(np.arange(n), rows)
    queries = np.vstack([clustered(rng, 40, dim), rows[::150]])
    native.configure(stream_min_bytes=1 if stream else 1 << 40)
    try:
        for q in queries:
            for k in (1, 3, 7):
                ids_s, scores_s = shadowed.search(q, k)
                ids_p, scores_p = plain.search(q, k)
                assert ids_s.tolist() == ids_p.tolist()
                assert np.array_equal(scores_s, scores_p)
    finally:
        native.configure(stream_min_bytes=before)
