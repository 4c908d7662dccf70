"""Automatic compaction: an index reclaims its tombstones once they reach
``max(live, COMPACT_MIN_TOMBSTONES)``, so churn never grows it past about twice its live
rows, and a compaction comes only after as many removals as the rows it copies."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest

from semcache._index import FaissIndex, FlatIndex, HnswlibIndex, make_index
from semcache._index._common import COMPACT_MIN_TOMBSTONES, compaction_due

DIM = 8


def rows(ids: range | np.ndarray, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((len(ids), DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("live", "tombstones", "due"),
    [
        (0, 0, False),
        (0, COMPACT_MIN_TOMBSTONES - 1, False),
        (0, COMPACT_MIN_TOMBSTONES, True),
        (10, COMPACT_MIN_TOMBSTONES, True),
        (COMPACT_MIN_TOMBSTONES, COMPACT_MIN_TOMBSTONES, True),
        (5000, 4999, False),
        (5000, 5000, True),
        (5000, 9000, True),
    ],
)
def test_rule(live: int, tombstones: int, due: bool) -> None:
    assert compaction_due(live, tombstones) is due


def backends() -> list[Any]:
    out: list[Any] = [
        pytest.param(lambda: FlatIndex(DIM), id="flat"),
        pytest.param(lambda: make_index("auto", DIM, np.float32, {"graph": "none"}), id="auto"),
    ]
    if importlib.util.find_spec("hnswlib"):
        out.append(pytest.param(lambda: HnswlibIndex(DIM, ef_construction=16), id="hnswlib"))
    if importlib.util.find_spec("faiss"):
        out.append(pytest.param(lambda: FaissIndex(DIM), id="faiss"))
    return out


@pytest.mark.parametrize("make", backends())
def test_churn_keeps_tombstones_bounded(make: Any) -> None:
    """A window of ``live`` ids sliding by one per step (a full cache: add one, evict
    the oldest): tombstones stay below max(live, floor) and the index compacts once per
    that many removals, with search results exact throughout."""
    live = 1500
    index = make()
    index.add(np.arange(live, dtype=np.int64), rows(range(live)))
    compactions = 0
    worst = 0
    for i in range(live, live + 4 * live):
        index.add(np.array([i], dtype=np.int64), rows(range(1), seed=i))
        before = index.tombstones
        index.remove(np.array([i - live], dtype=np.int64))
        compactions += index.tombstones < before
        worst = max(worst, index.tombstones)
    assert len(index) == live
    assert worst == live - 1  # compacted the moment it reached live
    assert compactions == 4  # one per `live` removals, never more
    q = rows(range(1), seed=live + 4 * live - 1)[0]
    ids, _ = index.search(q, 1)
    assert ids.tolist() == [live + 4 * live - 1]


def test_replacing_ids_compacts_too() -> None:
    index = FlatIndex(DIM)
    n = COMPACT_MIN_TOMBSTONES
    index.add(np.arange(n, dtype=np.int64), rows(range(n)))
    index.add(np.arange(n - 1, dtype=np.int64), rows(range(n - 1), seed=1))
    assert index.tombstones == n - 1
    index.add(np.array([n - 1], dtype=np.int64), rows(range(1), seed=2))  # the n-th
    assert index.tombstones == 0
    assert len(index) == n
    assert sorted(index.ids().tolist()) == list(range(n))


def test_small_index_keeps_tombstones_until_floor() -> None:
    index = FlatIndex(DIM)
    index.add(np.arange(100, dtype=np.int64), rows(range(100)))
    index.remove(np.arange(90, dtype=np.int64))
    assert index.tombstones == 90  # under the floor: no compaction for a handful
    assert index.compact() == 90


@pytest.mark.skipif(not importlib.util.find_spec("hnswlib"), reason="needs hnswlib")
def test_auto_rebuilds_its_graph_on_the_build_thread() -> None:
    """Once a graph, ``auto`` does not rebuild it in the call that makes the tombstones
    due: the rebuild runs on the build thread, the old graph serves meanwhile."""
    live = 1200
    index = make_index("auto", DIM, np.float32, {"graph": "hnswlib", "switch_at": 100})
    index.add(np.arange(live, dtype=np.int64), rows(range(live)))
    assert index.wait(60)
    assert index.active == "hnswlib"
    rebuilds = 0
    for i in range(live, live + 3 * live):
        index.add(np.array([i], dtype=np.int64), rows(range(1), seed=i))
        index.remove(np.array([i - live], dtype=np.int64))
        if index.building:  # started by this remove: the call did not compact itself
            assert index._inner.tombstones >= live
            rebuilds += 1
            assert index.wait(60)
            assert index.tombstones == 0
            assert index.active == "hnswlib"
        assert index.tombstones < live
    assert rebuilds == 3
    assert len(index) == live
    last = live + 3 * live - 1
    ids, _ = index.search(rows(range(1), seed=last)[0], 1)
    assert ids.tolist() == [last]
    index.close()
