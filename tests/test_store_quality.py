"""The error budget's state in the store (``QualityState`` in ``semcache._store._base``):
a record per entry, counters per namespace; checked on every store that has it.

The stores come from :data:`QUALITY_BACKENDS` (a subset of the conformance suite's
backends, by name). To add a store, add its name there: the tests then run on it with
the conformance suite's :class:`~test_store_conformance.StoreFactory`.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from test_store_conformance import BACKENDS, StoreFactory, entry, key, put

from semcache._errors import (
    CacheClosedError,
    InputTooLargeError,
    InvalidInputError,
    InvalidNamespaceError,
)
from semcache._store import (
    Limits,
    MemoryStore,
    NewEntry,
    OutcomeLog,
    QualityState,
    SQLiteStore,
    Store,
    outcome_log,
    quality_state,
    record_update,
)
from semcache._store._quality_checks import MAX_RECORD_BYTES
from semcache._store._sqlite_schema import SCHEMA_VERSION

#: The backends that keep the budget's state (the server stores on the real servers, as in
#: the conformance suite; tests/test_store_quality_servers.py has their own tests).
QUALITY_BACKENDS = ("memory", "sqlite", "redis", "postgres", "dynamodb")
RECORD = json.dumps([[0.91, 1.0], [0.88, 0.0]])


@pytest.fixture(params=[b for b in BACKENDS if b.name in QUALITY_BACKENDS], ids=lambda b: b.name)
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    f = StoreFactory(request.param, tmp_path)
    yield f
    f.close_all()


@pytest.fixture(
    params=[b for b in BACKENDS if b.name in QUALITY_BACKENDS and b.persistent],
    ids=lambda b: b.name,
)
def persistent_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """The backends that keep their data after a close (not the memory store)."""
    f = StoreFactory(request.param, tmp_path)
    yield f
    f.close_all()


def q(store: Store) -> QualityState:
    state = quality_state(store)
    assert state is not None
    return state


def record_of(store: Store, entry_id: int) -> str | None:
    return store.get_by_ids([entry_id])[entry_id].record


def test_a_new_entry_has_no_record(factory: StoreFactory) -> None:
    store = factory()
    (i,) = put(store, entry("x"))
    assert record_of(store, i) is None
    assert store.get_by_ids([i], vectors=True)[i].record is None


def test_records_are_written_and_read_by_id(factory: StoreFactory) -> None:
    store = factory()
    i, j = put(store, entry("x"), entry("y"))
    q(store).write_records({i: RECORD, j: "[]"})
    assert record_of(store, i) == RECORD
    assert store.get_by_ids([i, j], vectors=True)[j].record == "[]"
    got = store.get_by_key(key("x"))
    assert got is not None
    assert got.record in (RECORD, None)
    q(store).write_records({i: "[[0.5, 1.0]]"})  # overwritten
    assert record_of(store, i) == "[[0.5, 1.0]]"


def test_an_unknown_id_is_skipped_and_never_creates_an_entry(factory: StoreFactory) -> None:
    store = factory()
    (i,) = put(store, entry("x"))
    store.delete_ids([i])
    q(store).write_records({i: RECORD, 12345: RECORD})
    assert store.get_by_ids([i, 12345]) == {}
    assert store.count() == 0
    assert store.namespace_counts() == {}


def test_a_put_of_the_same_key_starts_without_a_record(factory: StoreFactory) -> None:
    store = factory()
    (i,) = put(store, entry("x"))
    q(store).write_records({i: RECORD})
    (j,) = put(store, entry("x", response="another answer"))
    assert record_of(store, j) is None
    (k,) = store.put_many([entry("x", response="third")], now=0.0, limits=Limits(10, 10)).ids
    assert record_of(store, k) is None


def test_the_record_goes_with_its_entry(factory: StoreFactory) -> None:
    store = factory()
    i, j, k = put(store, entry("x"), entry("y", exp=5.0), entry("z"))
    q(store).write_records({i: RECORD, j: RECORD, k: RECORD})
    store.delete_by_key(key("x"))
    store.delete_expired(10.0)
    assert store.get_by_ids([i, j]) == {}
    store.clear()
    assert store.get_by_ids([k]) == {}


def test_writing_a_record_changes_nothing_else(factory: StoreFactory) -> None:
    store = factory()
    i, _j = put(store, entry("x", t=1.0, exp=100.0), entry("y", t=2.0))
    seq, changes = store.seq(), store.changes_since(0)
    before = store.get_by_ids([i], vectors=True)[i]
    q(store).write_records({i: RECORD})
    after = store.get_by_ids([i], vectors=True)[i]
    assert store.seq() == seq
    assert store.changes_since(0) == changes
    assert (after.created_at, after.expires_at, after.response, after.vector) == (
        before.created_at,
        before.expires_at,
        before.response,
        before.vector,
    )
    assert store.namespace_counts() == {"a": 2}
    # Recency untouched: x (oldest access) is still the least recently used victim.
    result = store.put_many([entry("z", t=3.0)], now=3.0, limits=Limits(max_entries=2))
    assert [v for v, _ in result.evicted] == [i]


def test_counters_add_up_and_read_back(factory: StoreFactory) -> None:
    store = factory()
    assert q(store).read_counts("a") == {}
    q(store).add_counts("a", {"n/1/3": 1.0, "predicted": 0.25})
    q(store).add_counts("a", {"n/1/3": 2.0, "w/1/3": 1.0})
    q(store).add_counts("b", {"n/1/3": 7.0})
    assert q(store).read_counts("a") == {"n/1/3": 3.0, "predicted": 0.25, "w/1/3": 1.0}
    assert q(store).read_counts("b") == {"n/1/3": 7.0}


def test_counters_are_not_entries(factory: StoreFactory) -> None:
    store = factory()
    put(store, entry("x"))
    q(store).add_counts("a", {"n/0/0": 1.0})
    q(store).add_counts("other", {"n/0/0": 1.0})
    assert store.count() == 1
    assert store.count("other") == 0
    assert store.namespace_counts() == {"a": 1}
    assert sum(len(b.ids) for b in store.iter_vectors()) == 1


def test_clear_drops_counters_deleting_entries_does_not(factory: StoreFactory) -> None:
    store = factory()
    (i,) = put(store, entry("x"))
    q(store).add_counts("a", {"n/0/0": 1.0})
    q(store).add_counts("b", {"n/0/0": 2.0})
    store.delete_ids([i])
    assert q(store).read_counts("a") == {"n/0/0": 1.0}
    store.clear("a")
    assert q(store).read_counts("a") == {}
    assert q(store).read_counts("b") == {"n/0/0": 2.0}
    store.clear()
    assert q(store).read_counts("b") == {}


def test_a_closed_store_refuses(factory: StoreFactory) -> None:
    store = factory()
    store.close()
    with pytest.raises(CacheClosedError):
        q(store).write_records({1: RECORD})
    with pytest.raises(CacheClosedError):
        q(store).add_counts("a", {"x": 1.0})
    with pytest.raises(CacheClosedError):
        q(store).read_counts("a")


def test_state_survives_reopen_and_two_stores_share_it(
    persistent_factory: StoreFactory,
) -> None:
    factory = persistent_factory
    store = factory()
    (i,) = put(store, entry("x"))
    q(store).write_records({i: RECORD})
    q(store).add_counts("a", {"n/2/5": 1.5})
    store = factory.reopen(store)
    assert record_of(store, i) == RECORD
    assert q(store).read_counts("a") == {"n/2/5": 1.5}
    # A second store object on the same backing store: another process's view.
    home, options = factory._homes[id(store)]
    other = factory._open(home, options)
    q(other).add_counts("a", {"n/2/5": 1.0})
    q(store).add_counts("a", {"n/2/5": 1.0})
    assert q(store).read_counts("a") == q(other).read_counts("a") == {"n/2/5": 3.5}
    q(other).write_records({i: "[]"})
    assert record_of(store, i) == "[]"


def test_a_store_without_the_capability_has_none() -> None:
    class Bare:
        pass

    assert quality_state(Bare()) is None
    assert quality_state(MemoryStore()) is not None


# -- SQLite: the schema migration ----------------------------------------------------------
def test_sqlite_upgrades_a_version_2_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SQLiteStore(path).close()
    # Make it the file a semcache of schema version 2 left: no record column, no table.
    conn = apsw.Connection(str(path))
    conn.execute("DROP TABLE quality_counts")
    conn.execute("DROP TABLE quality_outcomes")
    conn.execute("ALTER TABLE entries DROP COLUMN record")
    conn.execute("DELETE FROM schema_migrations WHERE version IN (3, 4)")
    conn.execute(
        "INSERT INTO entries(key, namespace, query, response, created_at, last_access)"
        " VALUES (x'01', 'a', 'q', 'r', 0, 0)"
    )
    conn.close()
    store = SQLiteStore(path)
    try:
        assert store.schema_version() == SCHEMA_VERSION == 4
        got = store.get_by_ids([1])[1]
        assert (got.response, got.record) == ("r", None)
        store.write_records({1: RECORD})
        store.add_counts("a", {"n/0/0": 1.0})
        store.add_outcomes("a", ["[1]"], 10)
        assert store.get_by_ids([1])[1].record == RECORD
        assert store.read_counts("a") == {"n/0/0": 1.0}
        assert store.read_outcomes("a") == ["[1]"]
    finally:
        store.close()


def test_sqlite_upgrades_a_version_3_file_with_its_state(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    (i,) = put(store, entry("x"))
    store.write_records({i: RECORD})
    store.add_counts("a", {"n/0/0": 2.0})
    store.close()
    # The file a semcache of schema version 3 left: no outcome log.
    conn = apsw.Connection(str(path))
    conn.execute("DROP TABLE quality_outcomes")
    conn.execute("DELETE FROM schema_migrations WHERE version = 4")
    conn.close()
    store = SQLiteStore(path)
    try:
        assert store.schema_version() == 4
        assert record_of(store, i) == RECORD
        assert store.read_counts("a") == {"n/0/0": 2.0}
        assert store.read_outcomes("a") == []
        store.add_outcomes("a", ["[0]"], 10)
        assert store.read_outcomes("a") == ["[0]"]
    finally:
        store.close()


def test_sqlite_copy_checks_accept_the_new_schema(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        (i,) = put(store, entry("x", vector=None))
        store.write_records({i: RECORD})
        store.add_counts("a", {"n/0/0": 1.0})
        store.add_outcomes("a", ["[1]"], 10)
        dest = tmp_path / "copy.db"
        store.backup(dest)
        store.check_copy(dest)
        assert store.inspect_copy(dest)["entries"] == {"a": 1}
    finally:
        store.close()


def test_bad_state_raises_before_anything_is_written(factory: StoreFactory) -> None:
    """Every store (the servers included) checks records, counters and namespaces
    before it writes any of them."""
    store = factory()
    (a,) = put(store, entry("a"))
    state = q(store)
    for bad in ({a: "[]", "b": "[]"}, {a: "[]", 2: b"[]"}, {a: "\ud800"}, {a: "x" * 20_000}):
        with pytest.raises(InvalidInputError):
            state.write_records(bad)  # type: ignore[arg-type]
    assert record_of(store, a) is None
    state.add_counts("ns", {"n": 1.0})
    for deltas in (
        {"n": 1.0, "bad": float("nan")},
        {"n": 1.0, "bad": float("inf")},
        {"n": 1.0, "bad": 10**400},
        {"n": 1.0, "bad": "1"},
        {"n": 1.0, "bad": True},
        {"n": 1.0, "": 1.0},
        {"n": 1.0, "caf\u00e9": 1.0},
        {"n": 1.0, "x" * 65: 1.0},
        {"n": 1.0, 3: 1.0},
    ):
        with pytest.raises(InvalidInputError):
            state.add_counts("ns", deltas)  # type: ignore[arg-type]
    with pytest.raises(InvalidNamespaceError):
        state.add_counts(None, {"n": 1.0})  # type: ignore[arg-type]
    with pytest.raises(InvalidNamespaceError):
        state.read_counts(b"ns")  # type: ignore[arg-type]
    assert state.read_counts("ns") == {"n": 1.0}  # nothing of a refused call was added


# -- the record a put stores with its entries (NewEntry.record) ----------------------------
def with_record(new: NewEntry, record: object) -> NewEntry:
    new.record = record  # type: ignore[assignment]
    return new


def by_key(store: Store, name: str) -> tuple[int, str, str | None] | None:
    """``(id, response, record)`` of the entry ``get_by_key`` reads, or None."""
    got = store.get_by_key(key(name))
    return None if got is None else (got.id, got.response, got.record)


def test_a_put_stores_its_record_with_the_entry(factory: StoreFactory) -> None:
    store = factory()
    (i,) = put(store, with_record(entry("x"), RECORD))  # one entry, no limits
    j, k = put(store, with_record(entry("y"), "[]"), entry("z"), limits=Limits(10, 10))
    assert record_of(store, i) == RECORD
    assert store.get_by_ids([i, j, k], vectors=True)[j].record == "[]"
    assert record_of(store, k) is None
    assert by_key(store, "x") == (i, "response x", RECORD)
    assert by_key(store, "y") == (j, "response y", "[]")
    # one change per entry, as any put: the record is no write of its own
    assert [(c.op, c.entry_id) for c in store.changes_since(0) or []] == [
        ("put", i),
        ("put", j),
        ("put", k),
    ]


def test_a_replacing_put_starts_with_its_own_record(factory: StoreFactory) -> None:
    store = factory()
    (i,) = put(store, with_record(entry("x"), RECORD))
    (j,) = put(store, entry("x", response="another answer"))  # None: no record
    assert record_of(store, j) is None
    assert by_key(store, "x") == (j, "another answer", None)
    (k,) = put(store, with_record(entry("x", response="third"), "[]"))
    assert record_of(store, k) == "[]"
    (m,) = store.put_many([entry("x", response="fourth")], now=0.0, limits=Limits(10, 10)).ids
    assert record_of(store, m) is None
    assert store.get_by_ids([i, j, k]) == {}


def test_a_bad_record_at_put_raises_before_anything_is_written(factory: StoreFactory) -> None:
    store = factory()
    (a,) = put(store, with_record(entry("a"), RECORD))
    seq = store.seq()
    bad_puts = [
        (InputTooLargeError, [with_record(entry("b"), "x" * (MAX_RECORD_BYTES + 1))]),
        (InvalidInputError, [with_record(entry("b"), b"[]")]),
        (InvalidInputError, [with_record(entry("b"), "\ud800")]),
        # the replacement of a stored key, and a batch whose second record is bad
        (InvalidInputError, [with_record(entry("a", response="new"), 3)]),
        (InputTooLargeError, [entry("c"), with_record(entry("b"), "\u00e9" * 8193)]),
    ]
    for error, entries in bad_puts:
        for limits in (None, Limits(10, 10)):
            with pytest.raises(error):
                store.put_many(entries, now=0.0, limits=limits)
    assert store.count() == 1
    assert store.seq() == seq
    assert by_key(store, "b") is None
    assert by_key(store, "c") is None
    assert by_key(store, "a") == (a, "response a", RECORD)
    (b,) = put(store, with_record(entry("b"), "x" * MAX_RECORD_BYTES))  # the limit itself
    assert record_of(store, b) == "x" * MAX_RECORD_BYTES


# -- update_records (RecordUpdate: every shipped store) -------------------------------------
def test_update_records_changes_records_in_place(factory: StoreFactory) -> None:
    store = factory()
    updater = record_update(store)
    assert updater is not None  # (every shipped store has it)
    i, j = put(store, entry("x", response="rx", t=1.5), entry("y", response="ry", t=2.5))
    q(store).write_records({i: RECORD})
    seen: list[tuple[int, str, float, str | None]] = []

    def change(entry_id: int, response: str, created_at: float, record: str | None) -> str | None:
        seen.append((entry_id, response, created_at, record))
        return None if entry_id == j else record + "!"  # type: ignore[operator]

    updater.update_records([i, j, 99_999, i], change)
    assert sorted(seen) == [(i, "rx", 1.5, RECORD), (j, "ry", 2.5, None)]
    assert record_of(store, i) == RECORD + "!"
    assert by_key(store, "x") == (i, "rx", RECORD + "!")  # read by key alike
    assert record_of(store, j) is None  # None: left as it was
    assert store.count() == 2


def test_update_records_writes_nothing_when_a_text_is_refused(factory: StoreFactory) -> None:
    store = factory()
    updater = record_update(store)
    if updater is None:
        return
    i, j = put(store, entry("x"), entry("y"))
    q(store).write_records({i: RECORD})
    too_long = "x" * (MAX_RECORD_BYTES + 1)
    with pytest.raises(InputTooLargeError):
        updater.update_records([i, j], lambda n, r, c, t: "[]" if n == i else too_long)
    assert record_of(store, i) == RECORD
    assert record_of(store, j) is None


@pytest.fixture(
    params=[b for b in BACKENDS if b.name in ("sqlite", "postgres", "redis", "dynamodb")],
    ids=lambda b: b.name,
)
def shared_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """The stores with ``update_records`` that other processes can open too."""
    f = StoreFactory(request.param, tmp_path)
    yield f
    f.close_all()


def _count(backend: str, home: Path, entry_id: int, barrier: Any) -> None:
    """A worker (module level: spawn pickles it by name): 200 increments of a record in
    the store of backend ``backend`` at ``home``."""
    store = next(b for b in BACKENDS if b.name == backend).open(home, {})
    updater = record_update(store)
    assert updater is not None
    barrier.wait()
    for _ in range(200):
        updater.update_records([entry_id], lambda n, r, c, t: str(int(t or "0") + 1))
    store.close()


def test_update_records_is_atomic_across_processes(shared_factory: StoreFactory) -> None:
    """Two processes change one record at once, 200 times each: every change is kept
    (a read, then a write, in two steps, loses some of them)."""
    store = shared_factory()
    home = shared_factory._homes[id(store)][0]
    (i,) = put(store, entry("x"))
    q(store).write_records({i: "0"})
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    args = (shared_factory.backend.name, home, i, barrier)
    workers = [ctx.Process(target=_count, args=args) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert record_of(store, i) == "400"
    assert by_key(store, "x") == (i, "response x", "400")  # the last copy by key too


# -- the outcome log (OutcomeLog) ---------------------------------------------------------
def log_of(store: Store) -> OutcomeLog:
    log = outcome_log(store)
    assert log is not None
    return log


def test_outcomes_append_in_order_and_keep_the_newest(factory: StoreFactory) -> None:
    log = log_of(factory())
    assert log.read_outcomes("a") == []
    log.add_outcomes("a", ["[1,0.5]", "[0,0.25]"], keep=5)
    log.add_outcomes("b", ["[0,1]"], keep=5)
    log.add_outcomes("a", ["[0,3]", "[1,4]", "[0,5]"], keep=5)
    assert log.read_outcomes("a") == ["[1,0.5]", "[0,0.25]", "[0,3]", "[1,4]", "[0,5]"]
    log.add_outcomes("a", ["[0,6]", "[0,7]"], keep=4)
    assert log.read_outcomes("a") == ["[1,4]", "[0,5]", "[0,6]", "[0,7]"]
    log.add_outcomes("a", [f"[0,{i}]" for i in range(8, 14)], keep=3)  # more than keep
    assert log.read_outcomes("a") == ["[0,11]", "[0,12]", "[0,13]"]
    log.add_outcomes("a", [], keep=1)  # nothing added: nothing trimmed
    assert log.read_outcomes("a") == ["[0,11]", "[0,12]", "[0,13]"]
    assert log.read_outcomes("b") == ["[0,1]"]


def test_outcomes_are_not_entries_and_go_with_clear(factory: StoreFactory) -> None:
    store = factory()
    (i,) = put(store, entry("x"))
    log_of(store).add_outcomes("a", ["[1]"], keep=10)
    log_of(store).add_outcomes("b", ["[0]"], keep=10)
    assert store.count() == 1
    assert store.namespace_counts() == {"a": 1}
    assert sum(len(b.ids) for b in store.iter_vectors()) == 1
    store.delete_ids([i])
    assert log_of(store).read_outcomes("a") == ["[1]"]
    store.clear("a")
    assert log_of(store).read_outcomes("a") == []
    assert log_of(store).read_outcomes("b") == ["[0]"]
    store.clear()
    assert log_of(store).read_outcomes("b") == []


def test_bad_outcomes_raise_before_anything_is_written(factory: StoreFactory) -> None:
    store = factory()
    log = log_of(store)
    log.add_outcomes("ns", ["[1]"], keep=10)
    for rows, keep in (
        (["[0]", 3], 10),
        (["[0]", b"[0]"], 10),
        (["[0]", "caf\u00e9"], 10),
        (["[0]", "a\nb"], 10),
        ("[0]", 10),
        (["[0]"], 0),
        (["[0]"], True),
        (["[0]"], 1.5),
        (["[0]"], 100_001),
    ):
        with pytest.raises(InvalidInputError):
            log.add_outcomes("ns", rows, keep)  # type: ignore[arg-type]
    with pytest.raises(InputTooLargeError):
        log.add_outcomes("ns", ["[0]", "0" * 4097], 10)
    with pytest.raises(InvalidNamespaceError):
        log.add_outcomes(None, ["[0]"], 10)  # type: ignore[arg-type]
    with pytest.raises(InvalidNamespaceError):
        log.read_outcomes(b"ns")  # type: ignore[arg-type]
    assert log.read_outcomes("ns") == ["[1]"]  # nothing of a refused call was added
    log.add_outcomes("ns", ["0" * 4096], 10)  # the largest row
    assert log.read_outcomes("ns") == ["[1]", "0" * 4096]
    store.close()
    with pytest.raises(CacheClosedError):
        log.add_outcomes("ns", ["[0]"], 10)
    with pytest.raises(CacheClosedError):
        log.read_outcomes("ns")


def test_outcomes_survive_reopen_and_two_stores_share_them(
    persistent_factory: StoreFactory,
) -> None:
    factory = persistent_factory
    store = factory()
    log_of(store).add_outcomes("a", ["[1,2]"], keep=3)
    store = factory.reopen(store)
    assert log_of(store).read_outcomes("a") == ["[1,2]"]
    home, options = factory._homes[id(store)]
    other = factory._open(home, options)
    log_of(other).add_outcomes("a", ["[0,1]"], keep=3)
    log_of(store).add_outcomes("a", ["[0,2]", "[0,3]"], keep=3)
    assert log_of(other).read_outcomes("a") == ["[0,1]", "[0,2]", "[0,3]"]


def _log_outcomes(backend: str, home: Path, worker: int, barrier: Any) -> None:
    """A worker: 100 adds of 3 rows each to one namespace's outcome log."""
    store = next(b for b in BACKENDS if b.name == backend).open(home, {})
    log = outcome_log(store)
    assert log is not None
    barrier.wait()
    for i in range(100):
        log.add_outcomes("a", [f"[{worker},{i},{j}]" for j in range(3)], keep=1000)
    store.close()


def test_outcomes_added_by_two_processes_are_all_kept(shared_factory: StoreFactory) -> None:
    """Two processes add to one log at once: every row is kept, each add's rows
    together and each process's adds in their order."""
    store = shared_factory()
    home = shared_factory._homes[id(store)][0]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    name = shared_factory.backend.name
    workers = [ctx.Process(target=_log_outcomes, args=(name, home, w, barrier)) for w in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    rows = [json.loads(r) for r in log_of(store).read_outcomes("a")]
    assert len(rows) == 600
    for worker in range(2):
        mine = [r[1:] for r in rows if r[0] == worker]
        assert mine == [[i, j] for i in range(100) for j in range(3)]
    for lo in range(0, 600, 3):  # an add's rows are not split by another's
        assert len({(r[0], r[1]) for r in rows[lo : lo + 3]}) == 1
