"""``auto``: flat while small, a graph once it grows; the switch loses nothing."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import unit_rows

from semcache import CacheClosedError
from semcache._errors import MissingDependencyError
from semcache._index import AutoIndex, load_index, make_index
from semcache._index import _auto as auto_mod

DIM = 16


class _Gate:
    """Holds the background build at its first insert until opened."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        original = AutoIndex._make_graph
        gate = self

        def make_graph(index: AutoIndex, threads: int | None) -> Any:
            graph = original(index, threads)
            add = graph.add

            def gated_add(ids: Any, vectors: Any) -> None:
                gate.entered.set()
                assert gate.release.wait(30)
                add(ids, vectors)

            graph.add = gated_add
            return graph

        monkeypatch.setattr(AutoIndex, "_make_graph", make_graph)


@pytest.mark.parametrize("graph", ["hnswlib", "faiss"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_switch_in_background_keeps_every_change(
    monkeypatch: pytest.MonkeyPatch, graph: str, dtype: Any
) -> None:
    gate = _Gate(monkeypatch)
    vecs = unit_rows(400, DIM, seed=1)
    index = make_index("auto", DIM, dtype, {"switch_at": 100, "graph": graph})
    assert isinstance(index, AutoIndex)
    index.add(np.arange(99), vecs[:99])
    assert index.active == "flat"
    assert not index.building
    index.add(np.arange(99, 150), vecs[99:150])  # crosses switch_at: build starts
    assert index.building
    assert gate.entered.wait(30)
    # the flat index keeps serving every call while the graph is being built
    index.add(np.arange(150, 300), vecs[150:300])
    assert index.remove([0, 1, 160]) == 3
    index.add([2], vecs[399])  # replace an entry that is in the frozen view
    ids, _ = index.search(vecs[399], 1)
    assert ids.tolist() == [2]
    assert index.active == "flat"
    gate.release.set()
    assert index.wait(30)
    assert index.active == graph
    assert not index.building
    live = sorted(set(range(300)) - {0, 1, 160})
    assert sorted(index.ids().tolist()) == live
    assert len(index) == len(live)
    for i in (5, 200, 299):
        ids, sims = index.search(vecs[i], 1)
        assert ids.tolist() == [i]
        assert abs(float(sims[0]) - 1.0) < 2e-3
    assert index.search(vecs[399], 1)[0].tolist() == [2]
    found, _ = index.search(vecs[0], 300)
    assert not {0, 1, 160} & set(found.tolist())
    index.close()


def test_close_during_build_stops_the_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = _Gate(monkeypatch)
    index = AutoIndex(DIM, switch_at=10)
    index.add(np.arange(20), unit_rows(20, DIM))
    assert gate.entered.wait(30)
    builder = index._builder
    assert builder is not None
    gate.release.set()
    index.close()
    assert builder.done.is_set()
    with pytest.raises(CacheClosedError):
        index.search(unit_rows(1, DIM)[0], 1)
    with pytest.raises(CacheClosedError):
        index.wait()


def test_failed_build_stays_flat(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(index: AutoIndex, threads: int | None) -> Any:
        raise RuntimeError("no graph today")

    monkeypatch.setattr(AutoIndex, "_make_graph", broken)
    index = AutoIndex(DIM, switch_at=10)
    vecs = unit_rows(30, DIM)
    index.add(np.arange(30), vecs)
    assert index.wait(30)
    assert index.active == "flat"
    assert isinstance(index.build_error, RuntimeError)
    index.add([30], vecs[0])  # no retry loop, still serving
    assert len(index) == 31
    assert index.search(vecs[3], 1)[0].tolist() == [3]
    index.close()


def test_without_graph_library_auto_stays_flat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto_mod, "_installed", lambda name: False)
    index = AutoIndex(DIM, switch_at=5)
    index.add(np.arange(50), unit_rows(50, DIM))
    assert index.active == "flat"
    assert not index.building
    index.close()


def test_float16_prefers_faiss_float32_prefers_hnswlib() -> None:
    for dtype, want in ((np.float32, "hnswlib"), (np.float16, "faiss")):
        index = AutoIndex(DIM, dtype=dtype, switch_at=5, background=False)
        index.add(np.arange(10), unit_rows(10, DIM))
        assert index.active == want
        index.close()


def test_snapshot_keeps_mode_and_options(tmp_path: Path) -> None:
    vecs = unit_rows(60, DIM)
    for switch_at, want in ((1000, "flat"), (20, "hnswlib")):
        index = AutoIndex(DIM, switch_at=switch_at, background=False, ef_search=33)
        index.add(np.arange(60), vecs)
        path = tmp_path / f"auto-{switch_at}"
        index.save(path)
        loaded = load_index(path)
        assert isinstance(loaded, AutoIndex)
        assert loaded.active == want
        assert loaded.switch_at == switch_at
        assert loaded.search(vecs[9], 1)[0].tolist() == [9]
        loaded.close()
        index.close()


def test_missing_graph_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto_mod, "_installed", lambda name: False)
    with pytest.raises(MissingDependencyError, match=r"pip install 'semcache-engine\[hnswlib\]'"):
        AutoIndex(DIM, graph="hnswlib")
