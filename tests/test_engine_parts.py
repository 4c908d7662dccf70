"""The engine's parts, each on its own: the options, the exact-hit map, the recency
buffer, the metrics, the index set, ownership and fork, single-flight and the drivers.

The cache-level tests (test_cache.py, test_async.py...) prove the behaviour users see;
these pin the small objects it is made of, without a SemanticCache around them.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semcache import (
    AsyncSemanticCache,
    CacheClosedError,
    ConfigurationError,
    InvalidThresholdError,
    MemoryStore,
    MetricsEvent,
    SemanticCache,
    SQLiteStore,
    StoreLockedError,
)
from semcache._drive import Effect, adrive, arun_first, drive, run_first
from semcache._engine import Engine
from semcache._flight import ABANDONED, Flights
from semcache._hot import HotMap, entry_size
from semcache._indexes import IndexSet
from semcache._metrics import Metrics
from semcache._options import Options, parameters
from semcache._ownership import Lifecycle, Ownership, claim_store
from semcache._recency import Recency
from semcache._store import NewEntry, StoredEntry

DOCS = Path(__file__).resolve().parent.parent / "docs"
DIM = 4


def axis(i: int) -> np.ndarray:
    """The i-th basis vector (distinct entries score 0 against each other)."""
    v = np.zeros(DIM, dtype=np.float32)
    v[i % DIM] = 1.0
    return v


def entry(i: int, text: str = "r", ns: str = "default") -> StoredEntry:
    return StoredEntry(i, f"k{i}".encode(), ns, f"q{i}", text, None, 0.0, None)


# -- options ---------------------------------------------------------------------------------
def _shape(sig: inspect.Signature) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in sig.parameters.values() if p.name != "self"]


@pytest.mark.parametrize("cls", [SemanticCache, AsyncSemanticCache])
def test_both_constructors_declare_the_one_parameter_list(cls: type) -> None:
    expected = [(p.name, p.kind, p.default) for p in parameters()]
    assert _shape(inspect.signature(cls.__init__)) == expected


def test_docs_api_shows_the_constructor_as_the_code_has_it() -> None:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(SemanticCache\(.*?\))\n```", text, re.S)
    assert match is not None, "docs/api.md has no SemanticCache(...) block"
    source = "def " + match.group(1) + ": ..."
    fn = ast.parse(source).body[0]
    assert isinstance(fn, ast.FunctionDef)
    args = fn.args
    scope = {"time": time}
    positional = [(a.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD) for a in args.args]
    keyword = [(a.arg, inspect.Parameter.KEYWORD_ONLY) for a in args.kwonlyargs]
    defaults = [eval(ast.unparse(d), scope) for d in (*args.defaults, *args.kw_defaults) if d]
    documented = [(n, k, d) for (n, k), d in zip([*positional, *keyword], defaults, strict=True)]
    assert documented == [(p.name, p.kind, p.default) for p in parameters()]


def test_options_are_checked_once_into_their_values() -> None:
    opts = Options.check(namespace_quotas={"a": 3}, vector_dtype="float16")
    assert opts.namespace_quotas == {"a": 3}
    assert opts.dtype == np.dtype("float16")
    assert opts.guards is not None  # "default" resolved to the guard function
    assert not opts.shared
    assert not opts.store_search
    assert Options.check(guards=None, multi_process_mode="shared").shared
    with pytest.raises(InvalidThresholdError):
        Options.check(similarity_threshold=2)
    with pytest.raises(ConfigurationError, match="either path or store"):
        Options.check(path="x.db", store=MemoryStore())
    with pytest.raises(ConfigurationError, match="stale_check_interval"):
        Options.check(stale_check_interval=-1)


def test_options_from_a_call_take_the_parameters_only() -> None:
    args = {p.name: p.default for p in parameters()}
    opts = Options.from_call({**args, "self": object(), "max_entries": 9}, async_embedder=False)
    assert opts.max_entries == 9


# -- the exact-hit map -------------------------------------------------------------------------
def test_hot_map_is_bounded_by_entries_least_recent_out_first() -> None:
    hot = HotMap(2)
    for i in range(3):
        hot.remember(f"k{i}".encode(), entry(i))
    assert list(hot.entries) == [b"k1", b"k2"]
    assert hot.by_id(0) is None
    assert hot.get(b"k1") is not None  # now the most recent
    hot.remember(b"k3", entry(3))
    assert list(hot.entries) == [b"k1", b"k3"]
    assert set(hot.keys) == {1, 3}


def test_hot_map_is_bounded_by_characters_and_skips_huge_entries() -> None:
    hot = HotMap(100, max_chars=64 * 200)
    hot.remember(b"huge", entry(0, "x" * 300))  # over 1/64 of the budget: not kept
    assert len(hot) == 0
    for i in range(100):
        hot.remember(f"k{i}".encode(), entry(i, "x" * 100))
    assert hot.chars <= hot.max_chars
    assert hot.chars == sum(entry_size(e) for e in hot.entries.values())


def test_hot_map_replaces_forgets_and_writes_through() -> None:
    hot = HotMap(10)
    hot.remember(b"k", entry(1))
    hot.remember(b"k", entry(2, "newer"))
    assert hot.by_id(1) is None
    assert hot.get(b"k").response == "newer"  # type: ignore[union-attr]
    hot.remember_new(5, NewEntry(b"n", "default", "q", "r", None, None, 1.0, 2.0), 1.0, 2.0)
    assert hot.by_id(5).expires_at == 2.0  # type: ignore[union-attr]
    hot.forget([2, 5, 99])
    assert len(hot) == 0
    assert hot.chars == 0
    assert hot.keys == {}


# -- the recency buffer -----------------------------------------------------------------------
def test_recency_asks_for_a_flush_when_full_and_keeps_touches_a_failed_write_lost() -> None:
    recency = Recency(limit=3)
    assert not recency.touch(1, 1.0)
    assert not recency.touch(2, 1.0)
    assert recency.touch(3, 1.0)

    def failing(touches: dict[int, float]) -> None:
        recency.touch(2, 5.0)  # a newer touch while writing
        raise OSError("disk full")

    with pytest.raises(OSError):
        recency.flush(failing)
    assert recency.pending == {1: 1.0, 2: 5.0, 3: 1.0}
    written: list[dict[int, float]] = []
    recency.flush(written.append)
    assert written == [{1: 1.0, 2: 5.0, 3: 1.0}]
    assert len(recency) == 0
    recency.touch(7, 1.0)
    taken = recency.take()
    recency.restore(taken)
    recency.forget([7])
    assert len(recency) == 0


# -- metrics ---------------------------------------------------------------------------------
def test_metrics_count_and_report_and_survive_a_failing_hook() -> None:
    events: list[MetricsEvent] = []

    def hook(event: MetricsEvent) -> None:
        events.append(event)
        raise RuntimeError("the hook is broken")

    metrics = Metrics(hook)
    metrics.miss("a", "no_candidate", None, time.perf_counter())
    metrics.put("a", 3, time.perf_counter())
    metrics.removals([(1, "a"), (2, "b"), (3, "a")], "evict")
    snap = metrics.snapshot()
    assert snap["misses"]["no_candidate"] == 1
    assert snap["gets"] == 1
    assert snap["hit_rate"] == 0
    assert snap["puts"] == 3
    assert snap["evictions"] == 3
    assert [(e.kind, e.namespace, e.count) for e in events[2:]] == [
        ("evict", "a", 2),
        ("evict", "b", 1),
    ]


# -- the index set ---------------------------------------------------------------------------
def _store_with(n: int) -> MemoryStore:
    store = MemoryStore()
    store.set_meta({"dim": str(DIM), "vector_dtype": "float32"})
    entries = [
        NewEntry(f"k{i}".encode(), "default", f"q{i}", "r", None, axis(i).tobytes(), 0.0, None)
        for i in range(n)
    ]
    store.put_many(entries, now=0.0)
    return store


def test_index_set_rebuilds_from_the_store_and_catches_up_from_its_log() -> None:
    store = _store_with(3)
    forgotten: list[Any] = []
    indexes = IndexSet(store, Options.check(store=store), forgotten.append)
    indexes.open(None)
    assert indexes.source == "store"
    assert indexes.indexed() == {"default": 3}
    assert indexes.seq == store.seq()
    deleted = store.delete_by_key(b"k0")
    assert deleted is not None
    changes = store.changes_since(indexes.seq)
    assert changes is not None
    indexes.apply_changes(changes)
    assert indexes.indexed() == {"default": 2}
    assert indexes.tombstones() == {"default": 1}
    assert forgotten == [[deleted[0]]]
    assert indexes.compact() == 1
    assert indexes.tombstones() == {"default": 0}
    assert indexes.seq == store.seq()


def test_index_set_snapshots_record_the_position_they_reflect(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    with SemanticCache(path) as cache:
        cache.put_many(["a", "b"], ["1", "2"], embeddings=np.stack([axis(0), axis(1)]))
    store = SQLiteStore(path)
    try:
        shared = IndexSet(store, Options.check(multi_process_mode="shared"), lambda ids: None)
        shared.open(None)
        assert shared.source == "snapshot"
        store.put_many(
            [NewEntry(b"x", "default", "x", "y", None, axis(2).tobytes(), 0.0, None)], now=0.0
        )
        # shared mode: what the indexes caught up to; single mode: the store itself
        assert shared.snapshot_seq() == shared.seq < store.seq()
        single = IndexSet(store, Options.check(), lambda ids: None)
        single.open(None)
        assert single.snapshot_seq() == store.seq()
        shared.close()
        single.close()
    finally:
        store.close()


def test_index_set_resync_makes_the_cache_forget_everything() -> None:
    store = _store_with(2)
    forgotten: list[Any] = []
    indexes = IndexSet(store, Options.check(store=store), forgotten.append)
    indexes.open(None)
    store.clear()
    assert store.changes_since(indexes.seq) is not None
    indexes.resync()
    assert forgotten == [None]
    assert indexes.indexed() == {}


# -- ownership and fork -----------------------------------------------------------------------
def test_ownership_lifecycle_through_a_fork_and_close() -> None:
    resets: list[Any] = []
    owner = Ownership(None, resets.append)
    assert owner.state is Lifecycle.OPEN
    assert not owner.check_open()
    owner._fork_prepare()
    owner._fork_child()  # the lock was held across the fork: a consistent copy
    assert owner.state is Lifecycle.FORKED
    assert resets == [owner.lock]
    assert owner.check_open()  # first use in the child: adopt
    assert owner.adopt() is False
    assert owner.state is Lifecycle.OPEN
    blocker = threading.Thread(target=owner.lock.acquire)
    blocker.start()
    blocker.join()
    owner._fork_prepare()  # another thread holds the lock: the fork is torn
    owner._fork_child()
    assert owner.state is Lifecycle.FORKED_TORN
    assert owner.adopt() is True  # rebuild
    assert owner.close() is False
    assert owner.state is Lifecycle.CLOSED
    assert owner.close() is None
    with pytest.raises(CacheClosedError):
        owner.check_open()


def test_a_single_mode_file_claim_is_not_adopted_by_a_forked_child(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "c.db"))
    claim = claim_store(store, "single")
    assert claim is not None
    owner = Ownership(claim, lambda lock: None)
    try:
        owner._fork_prepare()
        owner._fork_child()
        with pytest.raises(StoreLockedError, match="single mode"):
            owner.adopt()
        assert owner.state is Lifecycle.FORKED
    finally:
        owner.release()
        store.close()
    assert claim_store(MemoryStore(), "single") is None


# -- single-flight ---------------------------------------------------------------------------
def test_flights_have_one_leader_per_key_and_waiters_get_its_result() -> None:
    flights = Flights()
    flight, leader = flights.join(b"k")
    again, second = flights.join(b"k")
    assert leader
    assert not second
    assert again is flight
    assert flight.followers == 1
    other, third = flights.join(b"other")
    assert third
    assert other is not flight
    flights.land(b"k", flight)
    flight.finish("answer")
    assert flight.wait() == "answer"
    assert len(flights) == 1
    other.abandon()
    assert other.wait() is ABANDONED


def test_a_flight_can_be_awaited_and_carries_the_leaders_error() -> None:
    flight, _ = Flights().join(b"k")

    async def main() -> None:
        waiter = asyncio.ensure_future(flight.wait_async())
        await asyncio.sleep(0)
        flight.fail(ValueError("upstream"))
        with pytest.raises(ValueError, match="upstream"):
            await waiter

    asyncio.run(main())


# -- the drivers -----------------------------------------------------------------------------
class _Twice(Effect):
    def __init__(self, x: int) -> None:
        self.x = x

    def run(self) -> Any:
        return 2 * self.x

    async def arun(self) -> Any:
        return 2 * self.x


class _Embedder:
    dim = DIM
    fingerprint = "test-parts"

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.stack([axis(len(t)) for t in texts])


def _operation(eng: Engine, log: list[str]) -> Generator[Any, Any, str]:
    log.append("locked" if eng.lock._is_owned() else "unlocked")  # type: ignore[attr-defined]
    doubled = yield _Twice(21)
    vectors = yield ["ab", "c"]
    try:
        yield _Failing()
    except RuntimeError as exc:
        log.append(str(exc))
    return f"{doubled} {vectors.shape}"


class _Failing(Effect):
    def run(self) -> Any:
        raise RuntimeError("thrown back in")

    async def arun(self) -> Any:
        raise RuntimeError("thrown back in")


def test_drive_and_adrive_answer_alike() -> None:
    eng = Engine(Options.check(embedder=_Embedder()))
    sync_log: list[str] = []
    async_log: list[str] = []
    assert drive(eng, _operation(eng, sync_log)) == "42 (2, 4)"
    assert asyncio.run(adrive(eng, _operation(eng, async_log))) == "42 (2, 4)"
    assert sync_log == async_log == ["locked", "thrown back in"]
    eng.close()


def test_run_first_skips_the_generator_when_the_first_step_answers() -> None:
    eng = Engine(Options.check())

    def start(e: Engine, answer: bool) -> Any:
        if answer:
            return "at once"
        return _operation(e, [])

    assert run_first(eng, start, True) == "at once"
    assert asyncio.run(arun_first(eng, start, True)) == "at once"
    with pytest.raises(AssertionError):  # no embedder: the step that embeds fails
        run_first(eng, start, False)
    eng.close()
