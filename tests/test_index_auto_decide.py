"""``auto`` with ``decide="measure"``: it switches to a graph only when a sampled probe
predicts, and a measurement of the built graph confirms, a faster get at the required
recall. Costs come from an injected model (no timing in tests); recall is real."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import unit_rows

from semcache._errors import ConfigurationError
from semcache._index import AutoIndex, load_index, make_index
from semcache._index import _auto as auto_mod

DIM = 16
pytest.importorskip("hnswlib")


def unit(n: int, seed: int = 0) -> np.ndarray:
    return unit_rows(n, DIM, seed)


class Costs:
    """A cost model: ``flat(rows)`` and ``graph(rows)`` seconds per search; records
    every call."""

    def __init__(self, flat: Callable[[int], float], graph: Callable[[int], float]) -> None:
        self.flat, self.graph = flat, graph
        self.calls: list[tuple[str, int]] = []

    def __call__(self, backend: str, rows: int, run: Callable[[], object], calls: int) -> float:
        run()  # the searches still run (and must work); only their time is modelled
        self.calls.append((backend, rows))
        return self.flat(rows) if backend == "flat" else self.graph(rows)


def auto(costs: Costs, **kw: Any) -> AutoIndex:
    opts = {"decide": "measure", "switch_at": 600, "probe_rows": 256, "background": False}
    opts.update(kw)
    return AutoIndex(DIM, graph="hnswlib", build_threads=1, cost=costs, **opts)


def linear_flat(rows: int) -> float:
    return rows * 1e-7


def test_graph_slower_on_these_vectors_stays_flat_and_probes_again_at_twice() -> None:
    costs = Costs(linear_flat, lambda rows: 1e-3)  # a graph 1 ms at any size: never wins
    index = auto(costs)
    vecs = unit(1300, seed=1)
    index.add(np.arange(599), vecs[:599])
    assert index.decisions == []
    index.add(np.arange(599, 600), vecs[599:600])
    assert index.active == "flat"
    [probe] = index.decisions
    assert probe["stage"] == "probe"
    assert probe["switch"] is False
    assert probe["rows"] == 600
    assert probe["flat_s"] == pytest.approx(600e-7)
    index.add(np.arange(600, 1199), vecs[600:1199])
    assert len(index.decisions) == 1  # not before twice the rows
    index.add(np.arange(1199, 1200), vecs[1199:1200])
    assert len(index.decisions) == 2
    assert index.active == "flat"
    # the flat index still answers exactly
    ids, _ = index.search(vecs[1000], 1)
    assert ids[0] == 1000


def test_graph_faster_switches_after_the_built_graph_is_verified() -> None:
    costs = Costs(linear_flat, lambda rows: 1e-6 * math.log(rows))
    index = auto(costs)
    vecs = unit(700, seed=2)
    index.add(np.arange(700), vecs)
    assert index.active == "hnswlib"
    stages = [(d["stage"], d["switch"]) for d in index.decisions]
    assert stages == [("probe", True), ("verify", True)]
    assert index.decisions[1]["recall"] >= 0.99
    assert index.decisions[1]["rows"] == 700
    ids, _ = index.search(vecs[321], 1)
    assert ids[0] == 321


def test_verification_keeps_flat_when_the_full_graph_is_slower() -> None:
    # fast on the probe's sample (<= probe_rows), slow at the namespace's real size
    costs = Costs(linear_flat, lambda rows: 1e-9 if rows <= 256 else 1.0)
    index = auto(costs)
    vecs = unit(700, seed=3)
    index.add(np.arange(700), vecs)
    assert [(d["stage"], d["switch"]) for d in index.decisions] == [
        ("probe", True),
        ("verify", False),
    ]
    assert index.active == "flat"  # never left slower than before
    ids, _ = index.search(vecs[5], 1)
    assert ids[0] == 5


def test_background_probe_and_build_switch_on_wait() -> None:
    costs = Costs(linear_flat, lambda rows: 1e-6 * math.log(rows))
    index = auto(costs, background=True)
    vecs = unit(900, seed=4)
    index.add(np.arange(700), vecs[:700])
    index.add(np.arange(700, 900), vecs[700:])  # made during the build: replayed
    assert index.wait(60)
    assert index.active == "hnswlib"
    assert len(index) == 900
    assert [d["stage"] for d in index.decisions] == ["probe", "verify"]
    ids, _ = index.search(vecs[850], 1)
    assert ids[0] == 850
    index.close()


def test_background_probe_that_declines_leaves_no_build_and_no_error() -> None:
    costs = Costs(linear_flat, lambda rows: 1.0)
    index = auto(costs, background=True)
    index.add(np.arange(700), unit(700, seed=5))
    assert index.wait(60)
    assert index.active == "flat"
    assert index.build_error is None
    assert [d["switch"] for d in index.decisions] == [False]
    index.close()


def test_probe_raises_ef_until_the_recall_is_reached() -> None:
    costs = Costs(linear_flat, lambda rows: 1e-9)
    # M=4, ef 1: a poor graph at first; the probe doubles ef until near duplicates of the
    # sample find their exact top-1 (recall is measured, not modelled)
    index = auto(costs, M=4, ef_construction=16, ef_search=1, probe_rows=512)
    vecs = unit(700, seed=6)
    index.add(np.arange(700), vecs)
    probe = index.decisions[0]
    assert probe["recall"] >= 0.99
    assert probe["ef"] > 1
    if index.active == "hnswlib":  # the verified ef (>= the probe's) serves
        verify = index.decisions[1]
        assert verify["ef"] >= probe["ef"]
        assert index._inner.ef_search == verify["ef"]


def test_verification_raises_ef_when_the_full_graph_misses_more_than_the_sample() -> None:
    # The probe's ef (enough on its 256-row sample) misses on the full 1,500 rows: the
    # verification raises ef as the probe does and switches at that ef, instead of
    # discarding a graph that a higher ef makes exact enough (and faster, here).
    # Deterministic: one build thread, seeded rows.
    costs = Costs(linear_flat, lambda rows: 1e-9)
    index = auto(costs, switch_at=1500, M=4, ef_construction=8, ef_search=1)
    index.add(np.arange(1500), unit(1500, seed=0))
    probe, verify = index.decisions
    assert (probe["stage"], probe["switch"]) == ("probe", True)
    assert (verify["stage"], verify["switch"]) == ("verify", True)
    assert verify["ef"] > probe["ef"]
    assert verify["recall"] >= 0.99
    assert index.active == "hnswlib"
    assert index._inner.ef_search == verify["ef"]  # serves at the ef it was verified at


def test_recall_unreachable_keeps_flat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto_mod, "_MAX_PROBE_EF", 1)
    costs = Costs(linear_flat, lambda rows: 1e-9)
    index = auto(costs, M=2, ef_construction=2, ef_search=1, recall=1.0)
    index.add(np.arange(700), unit(700, seed=7))
    probe = index.decisions[0]
    if probe["recall"] < 1.0:
        assert probe["switch"] is False
        assert index.active == "flat"


def test_explicit_switch_at_alone_still_switches_by_rows() -> None:
    index = AutoIndex(DIM, graph="hnswlib", switch_at=100, background=False)
    index.add(np.arange(100), unit(100, seed=8))
    assert index.active == "hnswlib"
    assert index.decisions == []


def test_default_is_measure_and_options_round_trip_a_snapshot(tmp_path: Path) -> None:
    index = make_index("auto", DIM, np.float32, {})
    assert isinstance(index, AutoIndex)
    assert index._decide == "measure"
    assert index.switch_at == auto_mod.DEFAULT_SWITCH_AT
    index.close()
    costs = Costs(linear_flat, lambda rows: 1e-6 * math.log(rows))
    index = auto(costs, recall=0.95, probe_rows=300)
    index.add(np.arange(700), unit(700, seed=9))
    assert index.active == "hnswlib"
    index.save(tmp_path / "a.idx")
    loaded = load_index(tmp_path / "a.idx")
    assert isinstance(loaded, AutoIndex)
    assert loaded._decide == "measure"
    assert loaded._recall == 0.95
    assert loaded._probe_rows == 300
    assert loaded.active == "hnswlib"


@pytest.mark.parametrize(
    "options",
    [
        {"decide": "guess"},
        {"recall": 0},
        {"recall": 1.5},
        {"recall": math.nan},
        {"recall": True},
        {"probe_rows": 10},
    ],
)
def test_bad_decide_options_raise(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        make_index("auto", DIM, np.float32, options)


def test_build_uses_every_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto_mod.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert AutoIndex(DIM)._threads() == 4


@pytest.mark.parametrize(
    ("switch_at", "decide"), [(auto_mod.DEFAULT_SWITCH_AT, "measure"), (100, "rows")]
)
def test_a_snapshot_written_before_decide_existed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, switch_at: int, decide: str
) -> None:
    index = AutoIndex(DIM, switch_at=switch_at, decide="rows")
    index.add(np.arange(10), unit(10, seed=10))
    original = index._options

    def old_options() -> dict[str, Any]:
        opts = original()
        for key in ("decide", "recall", "probe_rows"):
            opts.pop(key)
        return opts

    monkeypatch.setattr(index, "_options", old_options)
    index.save(tmp_path / "old.idx")
    loaded = load_index(tmp_path / "old.idx")
    assert isinstance(loaded, AutoIndex)
    assert loaded._decide == decide  # the old default now measures; a chosen count is kept
    assert len(loaded) == 10


def test_close_stops_a_probe_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    entered, release = threading.Event(), threading.Event()

    def slow_cost(backend: str, rows: int, run: Callable[[], object], calls: int) -> float:
        if backend != "flat":  # the probe's first measurement: hold it until close() runs
            entered.set()
            assert release.wait(30)
        return 1e-9 if backend != "flat" else rows * 1e-7

    index = AutoIndex(
        DIM,
        graph="hnswlib",
        switch_at=600,
        decide="measure",
        probe_rows=2048,
        background=True,
        build_threads=1,
        cost=slow_cost,
    )
    index.add(np.arange(3000), unit(3000, seed=11))
    assert entered.wait(30)
    closer = threading.Thread(target=index.close)
    closer.start()
    release.set()
    closer.join(30)
    assert not closer.is_alive()
