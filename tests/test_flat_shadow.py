"""The float16 shadow of a float32 flat index: searches give what a float32 scan gives."""

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


def test_values_beyond_float16_range_drop_the_shadow() -> None:
    rng = np.random.default_rng(2)
    dim = 8
    rows = rng.standard_normal((200, dim)).astype(np.float32)
    index = FlatIndex(dim, shadow=True)
    plain = FlatIndex(dim, shadow=False)
    for i in (index, plain):
        i.add(np.arange(200), rows)
    assert index.shadowed
    big = np.full((1, dim), 1e6, dtype=np.float32)  # float16 overflows past 65504
    for i in (index, plain):
        i.add([500], big)
    assert not index.shadowed
    assert_same(index, plain, np.vstack([rows[:5], big / 1e6]), 3)
    assert index.search(big[0] / 1e6, 1)[0].tolist() == [500]


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
    half = FlatIndex(8, dtype=np.float16, shadow=True)  # float16 needs no shadow
    half.add(np.arange(200), rng.standard_normal((200, 8)))
    assert not half.shadowed


def test_shadow_costs_half_the_matrix_in_memory() -> None:
    rng = np.random.default_rng(4)
    rows = rng.standard_normal((1000, 32)).astype(np.float32)
    on, off = FlatIndex(32, shadow=True), FlatIndex(32, shadow=False)
    for i in (on, off):
        i.add(np.arange(1000), rows)
    assert on.nbytes - off.nbytes == off._mat.nbytes // 2


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


def test_near_ties_finer_than_float16_widen_the_candidates() -> None:
    """Scores closer together than float16 can tell apart: the shadow's top candidates
    miss some of the float32 top-k, and only widening the candidate set finds them."""
    rng = np.random.default_rng(6)
    dim = 64
    base = rng.standard_normal(dim)
    base /= np.linalg.norm(base)
    rows = base + 2e-4 * rng.standard_normal((2000, dim))
    rows = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    shadowed = FlatIndex(dim, shadow=True)
    plain = FlatIndex(dim, shadow=False)
    for index in (shadowed, plain):
        index.add(np.arange(2000), rows)
    queries = (base + 1e-3 * rng.standard_normal((10, dim))).astype(np.float32)
    top_half = [set(shadowed._kernel.topk(shadowed._half, 2000, None, q, 32)[0]) for q in queries]
    top_full = [set(plain.search(q, 4)[0]) for q in queries]
    assert any(not full <= half for full, half in zip(top_full, top_half, strict=True))
    assert_same(shadowed, plain, queries, 4)
