"""The VectorIndex contract, checked for every backend and both storage dtypes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import unit_rows

from semcache import CacheClosedError, DimensionMismatchError, InvalidEmbeddingError
from semcache._errors import ConfigurationError
from semcache._index import (
    AutoIndex,
    FlatIndex,
    VectorIndex,
    available_kernels,
    load_index,
    make_index,
    snapshot_info,
)

DIM = 24

# name -> (backend, options)
BACKENDS: dict[str, tuple[str, dict[str, Any]]] = {
    "flat-native": ("flat", {"kernel": "native"}),
    "flat-numpy": ("flat", {"kernel": "numpy"}),
    "flat-shadow": ("flat", {"shadow": True}),
    "faiss-flat": ("faiss", {"kind": "flat"}),
    "faiss-hnsw": ("faiss", {"kind": "hnsw"}),
    "hnswlib": ("hnswlib", {}),
    "auto-sync": ("auto", {"switch_at": 20, "background": False}),
    "auto-thread": ("auto", {"switch_at": 20}),
    "auto-flat": ("auto", {"graph": "none"}),
}


def _settle(index: Any) -> None:
    if isinstance(index, AutoIndex):
        assert index.wait()


@pytest.fixture(params=sorted(BACKENDS))
def make(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    backend, options = BACKENDS[request.param]
    if options.get("kernel") == "native" and "native" not in available_kernels():
        pytest.skip("native kernel not built")
    made: list[Any] = []

    def factory(dtype: Any = np.float32) -> Any:
        index = make_index(backend, DIM, dtype, options)
        made.append(index)
        return index

    yield factory
    for index in made:
        try:
            index.close()
        except CacheClosedError:
            pass


DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])


def _exact(vecs: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    scores = vecs @ q
    order = np.argsort(-scores, kind="stable")[:k]
    return ids[order].tolist()


@DTYPES
def test_protocol_and_empty_index(make: Callable[..., Any], dtype: Any) -> None:
    index = make(dtype)
    assert isinstance(index, VectorIndex)
    assert index.dim == DIM
    assert index.dtype == np.dtype(dtype)
    assert len(index) == 0
    assert index.tombstones == 0
    ids, sims = index.search(unit_rows(1, DIM)[0], 5)
    assert ids.shape == sims.shape == (0,)
    assert ids.dtype == np.int64
    assert sims.dtype == np.float32
    assert index.compact() == 0
    with pytest.raises(ValueError):
        index.search(unit_rows(1, DIM)[0], 0)


@DTYPES
def test_search_finds_exact_neighbours_best_first(make: Callable[..., Any], dtype: Any) -> None:
    index = make(dtype)
    vecs = unit_rows(200, DIM)
    ids = np.arange(1000, 1200, dtype=np.int64)
    index.add(ids, vecs)
    _settle(index)
    assert len(index) == 200
    for i in (0, 57, 199):
        got, sims = index.search(vecs[i], 5)
        assert got[0] == ids[i]
        assert abs(float(sims[0]) - 1.0) < 2e-3
        assert np.all(np.diff(sims) <= 1e-6)
        assert got.tolist()[:3] == _exact(vecs, ids, vecs[i], 3)


@DTYPES
def test_k_larger_than_index(make: Callable[..., Any], dtype: Any) -> None:
    index = make(dtype)
    vecs = unit_rows(5, DIM)
    index.add(np.arange(5), vecs)
    ids, sims = index.search(vecs[0], 50)
    assert sorted(ids.tolist()) == [0, 1, 2, 3, 4]
    assert sims.shape == (5,)


@DTYPES
def test_remove_missing_and_twice(make: Callable[..., Any], dtype: Any) -> None:
    index = make(dtype)
    index.add(np.arange(3), unit_rows(3, DIM))
    assert index.remove([99]) == 0
    assert index.remove([1, 1, 99]) == 1
    assert index.remove([1]) == 0
    assert len(index) == 2
    assert 1 not in index
    assert 0 in index


@DTYPES
def test_add_existing_id_replaces(make: Callable[..., Any], dtype: Any) -> None:
    index = make(dtype)
    vecs = unit_rows(40, DIM, seed=1)
    index.add(np.arange(30), vecs[:30])
    index.add([3], vecs[35])
    _settle(index)
    assert len(index) == 30
    assert index.tombstones == 1
    ids, sims = index.search(vecs[35], 1)
    assert ids.tolist() == [3]
    assert abs(float(sims[0]) - 1.0) < 2e-3
    ids, _ = index.search(vecs[3], 30)
    assert ids.tolist().count(3) == 1
    # duplicates inside one batch: the last one wins
    index.add([7, 7], np.stack([vecs[36], vecs[37]]))
    ids, _ = index.search(vecs[37], 1)
    assert ids.tolist() == [7]


@DTYPES
def test_tombstones_never_returned_and_compact(make: Callable[..., Any], dtype: Any) -> None:
    index = make(dtype)
    vecs = unit_rows(120, DIM, seed=2)
    ids = np.arange(120, dtype=np.int64)
    index.add(ids, vecs)
    removed = ids[::3]
    assert index.remove(removed) == removed.shape[0]
    _settle(index)
    assert index.tombstones == removed.shape[0]
    keep = np.setdiff1d(ids, removed)
    for i in (0, 3, 4):
        got, _ = index.search(vecs[i], 120)
        assert not set(got.tolist()) & set(removed.tolist())
        assert len(got) == keep.shape[0]
    before = [index.search(vecs[i], 3)[0].tolist() for i in (1, 5)]
    assert index.compact() == removed.shape[0]
    assert index.tombstones == 0
    assert len(index) == keep.shape[0]
    after = [index.search(vecs[i], 3)[0].tolist() for i in (1, 5)]
    assert after == before
    assert index.compact() == 0


@DTYPES
def test_remove_everything(make: Callable[..., Any], dtype: Any) -> None:
    index = make(dtype)
    vecs = unit_rows(30, DIM, seed=3)
    index.add(np.arange(30), vecs)
    assert index.remove(np.arange(30)) == 30
    _settle(index)
    ids, _ = index.search(vecs[0], 3)
    assert ids.shape == (0,)
    index.add([5], vecs[5])
    ids, _ = index.search(vecs[0], 3)
    assert ids.tolist() == [5]
    index.compact()
    assert len(index) == 1


@DTYPES
def test_save_load_round_trip(make: Callable[..., Any], dtype: Any, tmp_path: Path) -> None:
    index = make(dtype)
    vecs = unit_rows(81, DIM, seed=4)
    index.add(np.arange(80), vecs[:80])
    index.remove([4, 5])
    index.add([6], vecs[80])  # a fresh vector: no exact ties for the order to depend on
    _settle(index)
    path = tmp_path / "snap.idx"
    index.save(path, meta={"sequence": 41})
    assert not [p for p in os.listdir(tmp_path) if p != "snap.idx"]  # no temp file left
    loaded = load_index(path)
    assert type(loaded) is type(index)
    assert loaded.dtype == index.dtype
    assert loaded.dim == DIM
    assert len(loaded) == len(index) == 78
    assert sorted(loaded.ids().tolist()) == sorted(index.ids().tolist())
    for i in (0, 4, 70, 80):
        a, sa = index.search(vecs[i], 4)
        b, sb = loaded.search(vecs[i], 4)
        assert a.tolist() == b.tolist()
        np.testing.assert_allclose(sa, sb, atol=1e-6)
    info = snapshot_info(path)
    assert info.meta == {"sequence": 41}
    assert info.count == 78
    assert info.dim == DIM
    assert info.dtype == np.dtype(dtype).name
    loaded.close()
    # saving again over an existing snapshot replaces it
    index.remove([0])
    index.save(path)
    assert snapshot_info(path).count == 77


@DTYPES
def test_use_after_close(make: Callable[..., Any], dtype: Any, tmp_path: Path) -> None:
    index = make(dtype)
    index.add(np.arange(3), unit_rows(3, DIM))
    index.close()
    q = unit_rows(1, DIM)[0]
    calls: list[Callable[[], object]] = [
        lambda: index.add([1], q),
        lambda: index.remove([1]),
        lambda: index.search(q, 1),
        lambda: index.compact(),
        lambda: index.save(tmp_path / "x"),
        lambda: len(index),
        lambda: 1 in index,
        lambda: index.tombstones,
        lambda: index.ids(),
        lambda: index.search_batch(q.reshape(1, -1), 1),
    ]
    for call in calls:
        with pytest.raises(CacheClosedError):
            call()
    assert not (tmp_path / "x").exists()


@DTYPES
def test_bad_input(make: Callable[..., Any], dtype: Any) -> None:
    index = make(dtype)
    with pytest.raises(DimensionMismatchError):
        index.add([1], np.ones(DIM + 1, np.float32))
    with pytest.raises(InvalidEmbeddingError):
        index.add([1, 2], unit_rows(3, DIM))
    with pytest.raises(DimensionMismatchError):
        index.search(np.ones(DIM - 1, np.float32), 1)
    index.add([], np.empty((0, DIM), np.float32))
    assert len(index) == 0


@DTYPES
def test_search_batch_matches_search(make: Callable[..., Any], dtype: Any) -> None:
    index = make(dtype)
    vecs = unit_rows(150, DIM, seed=5)
    index.add(np.arange(150), vecs)
    index.remove([10, 11])
    _settle(index)
    ids, sims = index.search_batch(vecs[:6], 3)
    assert ids.shape == sims.shape == (6, 3)
    for i in range(6):
        one, s = index.search(vecs[i], 3)
        assert ids[i].tolist() == one.tolist()
        np.testing.assert_allclose(sims[i], s, atol=1e-5)


def test_float16_halves_memory_and_stays_close() -> None:
    vecs = unit_rows(4000, DIM, seed=6)
    f32 = FlatIndex(DIM)
    f16 = FlatIndex(DIM, dtype=np.float16)
    for index in (f32, f16):
        index.add(np.arange(4000), vecs)
    assert f16.nbytes < 0.6 * f32.nbytes
    for i in range(0, 4000, 400):
        a, sa = f32.search(vecs[i], 10)
        b, sb = f16.search(vecs[i], 10)
        assert a[0] == b[0] == i
        np.testing.assert_allclose(sb, (vecs[b] @ vecs[i]), atol=1e-3)
        np.testing.assert_allclose(sa[0], sb[0], atol=1e-3)


@pytest.mark.parametrize("backend", ["flat", "faiss", "hnswlib", "auto"])
def test_unknown_option_key_raises(backend: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown option"):
        make_index(backend, DIM, np.float32, {"ef_serch": 10})


@pytest.mark.parametrize(
    ("backend", "options"),
    [
        ("hnswlib", {"M": 0}),
        ("hnswlib", {"ef_search": "64"}),
        ("faiss", {"kind": "ivf"}),
        ("auto", {"switch_at": True}),
        ("auto", {"graph": "annoy"}),
        ("flat", {"kernel": "gpu"}),
    ],
)
def test_bad_option_values_raise(backend: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        make_index(backend, DIM, np.float32, options)


@pytest.mark.parametrize("backend", ["flat", "faiss", "hnswlib", "auto"])
def test_bad_dtype_and_dim(backend: str) -> None:
    with pytest.raises(ConfigurationError):
        make_index(backend, DIM, np.float64, {})
    with pytest.raises(ConfigurationError):
        make_index(backend, 0, np.float32, {})


def test_unknown_backend() -> None:
    with pytest.raises(ConfigurationError, match="unknown index_backend"):
        make_index("annoy", DIM, np.float32, {})
