"""SQLiteStore behaviour beyond the Store contract: the file, its schema, transactions,
the change-log bound and threads. The contract itself is in test_store_conformance.py."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from random import Random
from typing import Any

import apsw
import pytest

from semcache._errors import SchemaVersionError, StoreCorruptError, StoreError
from semcache._store import Limits, NewEntry, SQLiteStore
from semcache._store._sqlite import SCHEMA_VERSION
from semcache._store._sqlite_ops import batches


def entry(name: str, ns: str = "a", *, t: float = 0.0, exp: float | None = None) -> NewEntry:
    return NewEntry(f"{ns}/{name}".encode(), ns, f"q {name}", f"r {name}", None, b"vec", t, exp)


def key(name: str, ns: str = "a") -> bytes:
    return f"{ns}/{name}".encode()


def bad_entry(name: str) -> NewEntry:
    """An entry the database refuses (``query`` is NOT NULL)."""
    return NewEntry(key(name), "a", None, "r", None, None, 0.0, None)  # type: ignore[arg-type]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cache.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(db_path)
    yield s
    s.close()


def peek(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` read through a separate connection (as another process would)."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return [tuple(row) for row in conn.execute(sql)]
    finally:
        conn.close()


# -- the file ---------------------------------------------------------------------------
def test_the_file_is_in_wal_mode(store: SQLiteStore, db_path: Path) -> None:
    assert peek(db_path, "PRAGMA journal_mode") == [("wal",)]


def test_schema_migrations_records_every_version(store: SQLiteStore, db_path: Path) -> None:
    rows = peek(db_path, "SELECT version, description, applied_at FROM schema_migrations")
    assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))
    assert all(isinstance(r[1], str) and r[1] for r in rows)
    assert all(isinstance(r[2], float) for r in rows)
    assert store.schema_version() == SCHEMA_VERSION


def test_reopening_does_not_migrate_again(db_path: Path) -> None:
    SQLiteStore(db_path).close()
    before = peek(db_path, "SELECT * FROM schema_migrations")
    SQLiteStore(db_path).close()
    assert peek(db_path, "SELECT * FROM schema_migrations") == before


def test_a_newer_schema_is_refused(db_path: Path) -> None:
    SQLiteStore(db_path).close()
    conn = apsw.Connection(str(db_path))
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', 0.0)", (999,))
    conn.close()
    with pytest.raises(SchemaVersionError, match="999") as info:
        SQLiteStore(db_path)
    assert str(db_path) in str(info.value)
    # Nothing was changed, and the file still opens with a plain connection.
    assert peek(db_path, "SELECT max(version) FROM schema_migrations") == [(999,)]


@pytest.mark.parametrize(
    "content",
    [
        Random(5).randbytes(8192),
        b"this is a text file, not a database\n" * 200,
        b"SQLite format 3\x00" + Random(6).randbytes(4096),
    ],
    ids=["random-bytes", "text", "bad-header"],
)
def test_a_file_that_is_not_a_database(db_path: Path, content: bytes) -> None:
    db_path.write_bytes(content)
    with pytest.raises(StoreCorruptError) as info:
        SQLiteStore(db_path)
    assert str(db_path) in str(info.value)
    assert db_path.read_bytes() == content  # left as it was


def test_an_empty_file_is_a_new_store(db_path: Path) -> None:
    db_path.write_bytes(b"")
    s = SQLiteStore(db_path)
    try:
        assert s.count() == 0
        assert s.schema_version() == SCHEMA_VERSION
    finally:
        s.close()


def test_a_foreign_database_is_refused_untouched(db_path: Path) -> None:
    conn = apsw.Connection(str(db_path))
    conn.execute("CREATE TABLE entries(x); INSERT INTO entries VALUES (42)")
    conn.close()
    with pytest.raises(StoreError, match="entries"):
        SQLiteStore(db_path)
    tables = peek(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    assert tables == [("entries",)]
    assert peek(db_path, "SELECT x FROM entries") == [(42,)]


def test_a_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        SQLiteStore(tmp_path / "no" / "such" / "dir" / "cache.db")
    assert "cache.db" in str(info.value)


# -- transactions -------------------------------------------------------------------------
def test_a_failing_put_many_writes_nothing(store: SQLiteStore) -> None:
    [kept] = store.put_many([entry("kept", t=1.0)], now=1.0).ids
    [other] = store.put_many([entry("other", t=2.0)], now=2.0).ids
    seq, counts = store.seq(), store.namespace_counts()
    with pytest.raises(StoreError):
        store.put_many(
            [entry("new1"), entry("kept", t=5.0), entry("new2"), bad_entry("bad")],
            now=5.0,
            limits=Limits(max_entries=2),
            touches={kept: 9.0},
            meta={"dim": "7"},
        )
    assert store.seq() == seq
    assert store.namespace_counts() == counts
    assert store.get_by_key(key("new1")) is None
    assert store.get_by_key(key("new2")) is None
    got = store.get_by_key(key("kept"))
    assert got is not None
    assert (got.id, got.created_at) == (kept, 1.0)  # not replaced
    assert store.get_meta("dim") is None
    # The touch was rolled back too: "kept" is still the least recently used.
    result = store.put_many([entry("x", t=3.0)], now=3.0, limits=Limits(max_entries=2))
    assert result.evicted == [(kept, "a")]
    assert store.get_by_ids([other]).keys() == {other}


def test_a_rolled_back_put_does_not_forget_the_recency_index(
    store: SQLiteStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first limited put creates the recency index inside its transaction; when that
    # put fails, the index goes with it and the next limited put must create it again.
    def indexes() -> set[str]:
        return {str(n) for (n,) in peek(db_path, "SELECT name FROM sqlite_master")}

    def boom(*args: object) -> None:
        raise RuntimeError("injected")

    store.put_many([entry("a"), entry("b")], now=0.0)
    with monkeypatch.context() as patch:
        patch.setattr(SQLiteStore, "_evict", staticmethod(boom))
        with pytest.raises(RuntimeError, match="injected"):
            store.put_many([entry("c")], now=1.0, limits=Limits(1, namespace_quota=1))
    assert not {"entries_lru", "entries_ns_lru"} & indexes()
    result = store.put_many([entry("c")], now=1.0, limits=Limits(1, namespace_quota=1))
    assert len(result.evicted) == 2
    assert {"entries_lru", "entries_ns_lru"} <= indexes()


def test_an_exception_during_eviction_rolls_back(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_many([entry("a"), entry("b")], now=0.0)
    seq = store.seq()

    def boom(*args: object) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(SQLiteStore, "_evict", staticmethod(boom))
    with pytest.raises(RuntimeError, match="injected"):
        store.put_many([entry("c"), entry("a", t=1.0)], now=1.0, limits=Limits(max_entries=1))
    monkeypatch.undo()
    assert store.seq() == seq
    assert store.count() == 2
    assert store.get_by_key(key("c")) is None
    # The store still works, and its transaction state is clean.
    assert store.put_many([entry("c")], now=2.0).ids
    assert store.count() == 3


def test_other_connections_see_only_committed_puts(store: SQLiteStore, db_path: Path) -> None:
    other = SQLiteStore(db_path)
    try:
        [i] = store.put_many([entry("x")], now=0.0).ids
        got = other.get_by_key(key("x"))
        assert got is not None
        assert got.id == i
        assert other.changes_since(0) == store.changes_since(0)
        with pytest.raises(StoreError):
            store.put_many([entry("y"), bad_entry("z")], now=0.0)
        assert other.get_by_key(key("y")) is None
        assert other.delete_by_key(key("x")) == (i, "a")
        assert store.get_by_key(key("x")) is None
        assert store.seq() == other.seq() == 2
    finally:
        other.close()


# -- the change log -----------------------------------------------------------------------
def test_the_change_log_table_never_exceeds_max_changes(db_path: Path) -> None:
    store = SQLiteStore(db_path, max_changes=20)
    rng = Random(9)
    try:
        for step in range(400):
            op = rng.random()
            if op < 0.5:
                n = rng.randrange(1, 6)
                store.put_many([entry(f"k{rng.randrange(50)}") for _ in range(n)], now=0.0)
            elif op < 0.8:
                store.delete_by_key(key(f"k{rng.randrange(50)}"))
            elif op < 0.9:
                store.delete_ids([rng.randrange(1, step + 2) for _ in range(3)])
            elif op < 0.97:
                store.put_many([entry(f"e{step}", exp=0.0)], now=0.0)
                store.delete_expired(1.0)
            else:
                store.clear()
            [(kept, low)] = peek(db_path, "SELECT count(*), min(seq) FROM changes")
            assert isinstance(kept, int)
            assert kept <= 20
            if store.seq() >= 20:
                assert kept == 20
                assert low == store.seq() - 19
    finally:
        store.close()


def test_the_change_log_is_pruned_in_batches_and_stays_bounded(db_path: Path) -> None:
    # max_changes=640 prunes once 10 records were logged: the log always reaches back
    # max_changes records and never holds more than max_changes + 10 + what one
    # transaction logged, per connection, with two connections (as two processes)
    # writing in turn.
    stores = [SQLiteStore(db_path, max_changes=640), SQLiteStore(db_path, max_changes=640)]
    reader = apsw.Connection(str(db_path), flags=apsw.SQLITE_OPEN_READONLY)
    rng = Random(21)
    try:
        for step in range(1500):
            store = stores[step % 2]
            op = rng.random()
            if op < 0.8:
                store.put_many([entry(f"k{rng.randrange(200)}")], now=0.0)
            elif op < 0.9:
                store.put_many([entry(f"k{rng.randrange(200)}") for _ in range(3)], now=0.0)
            else:
                store.delete_by_key(key(f"k{rng.randrange(200)}"))
            [(kept, low, last)] = reader.execute("SELECT count(*), min(seq), max(seq) FROM changes")
            assert kept <= 640 + 2 * (10 + 6)
            assert kept >= min(last, 640)
            assert low <= max(1, last - 639)
            assert store.changes_since(max(0, last - 640)) is not None
        assert stores[0].seq() > 1500  # the bound was reached many times over
    finally:
        reader.close()
        for store in stores:
            store.close()


def test_a_rolled_back_prune_is_redone(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SQLiteStore(db_path, max_changes=640)  # prunes every 10 records
    try:
        for i in range(700):
            store.put_many([entry(f"k{i}")], now=0.0)
        [(kept,)] = peek(db_path, "SELECT count(*) FROM changes")
        assert 640 <= kept <= 650
        # A put that prunes and then fails: its prune is rolled back with it...
        store._unpruned = store._prune_every
        original = SQLiteStore._prune

        def prune_then_fail(conn: Any, keep_last: int) -> int:
            original(conn, keep_last)
            raise RuntimeError("injected")

        with monkeypatch.context() as patch:
            patch.setattr(SQLiteStore, "_prune", staticmethod(prune_then_fail))
            with pytest.raises(RuntimeError, match="injected"):
                store.put_many([entry("boom")], now=0.0)
        assert peek(db_path, "SELECT count(*) FROM changes") == [(kept,)]
        # ... and the next transaction that logs prunes again.
        store.put_many([entry("after")], now=0.0)
        assert peek(db_path, "SELECT count(*) FROM changes") == [(640,)]
    finally:
        store.close()


# -- the single-entry put ------------------------------------------------------------------
def test_a_single_put_replaces_by_key_and_logs_both_changes(store: SQLiteStore) -> None:
    [first] = store.put_many([entry("x", t=1.0)], now=1.0).ids
    result = store.put_many([entry("x", t=2.0)], now=2.0)
    [second] = result.ids
    assert second > first
    assert result.replaced == [(first, "a")]
    got = store.get_by_key(key("x"))
    assert got is not None
    assert (got.id, got.created_at) == (second, 2.0)
    assert [(c.op, c.entry_id) for c in store.changes_since(0) or []] == [
        ("put", first),
        ("delete", first),
        ("put", second),
    ]
    assert store.count() == 1
    # A key that was replaced does not skip or reuse ids.
    [third] = store.put_many([entry("y")], now=3.0).ids
    assert third == second + 1


def test_a_failing_single_put_writes_nothing(store: SQLiteStore) -> None:
    [kept] = store.put_many([entry("kept")], now=0.0).ids
    seq = store.seq()
    with pytest.raises(StoreError):
        store.put_many([bad_entry("bad")], now=1.0)
    bad_replacement = NewEntry(key("kept"), "a", None, "r", None, None, 1.0, None)  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        store.put_many([bad_replacement], now=1.0)
    assert store.seq() == seq
    got = store.get_by_key(key("kept"))
    assert got is not None
    assert got.id == kept  # the delete of the replaced entry was rolled back too
    assert store.put_many([entry("new")], now=2.0).ids
    assert store.count() == 2


def test_a_single_put_waits_for_another_writer_and_gives_up_cleanly(db_path: Path) -> None:
    # The plain put is one autocommit INSERT: it must respect another connection's write
    # transaction like BEGIN IMMEDIATE does (wait busy_timeout, then fail, writing nothing).
    store = SQLiteStore(db_path, busy_timeout=0.05)
    other = apsw.Connection(str(db_path))
    try:
        [before] = store.put_many([entry("before")], now=0.0).ids
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked"):
            store.put_many([entry("blocked")], now=1.0)
        other.execute("COMMIT")
        assert store.get_by_key(key("blocked")) is None
        assert store.seq() == 1
        [after] = store.put_many([entry("after")], now=2.0).ids
        assert after > before
        assert [c.entry_id for c in store.changes_since(0) or []] == [before, after]
    finally:
        other.close()
        store.close()


def test_a_single_put_joins_an_open_transaction(store: SQLiteStore) -> None:
    def put_then_fail() -> None:
        with store._write():
            store.put_many([entry("inside")], now=0.0)
            raise RuntimeError("undo")

    with pytest.raises(RuntimeError, match="undo"):
        put_then_fail()
    assert store.get_by_key(key("inside")) is None
    assert store.seq() == 0
    assert store.count() == 0


# -- namespace counts: kept only once a limit needs them ----------------------------------
def counts_object(path: Path) -> tuple[str, list[str]]:
    """What ``namespaces`` is in the file (view or table) and the count triggers."""
    kind = peek(path, "SELECT type FROM sqlite_master WHERE name = 'namespaces'")[0][0]
    names = "SELECT name FROM sqlite_master WHERE name LIKE 'entries_count_%' ORDER BY name"
    return kind, [r[0] for r in peek(path, names)]


KEPT = ("table", ["entries_count_delete", "entries_count_insert"])


def test_puts_without_limits_write_no_counts(store: SQLiteStore, db_path: Path) -> None:
    store.put_many([entry("x"), entry("y", "b")], now=0.0)
    store.put_many([entry("z")], now=0.0)
    store.put_many([entry("z")], now=0.0)  # a replace
    store.delete_by_key(key("y", "b"))
    # no count page written: namespaces is a view that counts the rows
    assert counts_object(db_path) == ("view", [])
    assert store.namespace_counts() == {"a": 2}
    assert (store.count(), store.count("a"), store.count("b")) == (2, 2, 0)
    assert peek(db_path, "SELECT name, entries FROM namespaces") == [("a", 2)]


def test_a_limit_set_later_counts_the_rows_already_there(store: SQLiteStore, db_path: Path) -> None:
    store.put_many([entry(f"k{i}", t=float(i)) for i in range(5)], now=0.0)
    store.put_many([entry("b1", "b", t=9.0)], now=0.0)
    result = store.put_many([entry("new", t=9.0)], now=9.0, limits=Limits(max_entries=4))
    assert sorted(i for i, _ in result.evicted) == [1, 2, 3]  # least recently used first
    assert counts_object(db_path) == KEPT
    assert dict(peek(db_path, "SELECT name, entries FROM namespaces")) == {"a": 3, "b": 1}
    # from now on every put counts, with or without limits
    store.put_many([entry("more", "b")], now=9.0)
    store.delete_by_key(key("k4"))
    assert store.namespace_counts() == {"a": 2, "b": 2}
    assert dict(peek(db_path, "SELECT name, entries FROM namespaces")) == {"a": 2, "b": 2}
    store.close()
    assert SQLiteStore(db_path).namespace_counts() == {"a": 2, "b": 2}  # reopened
    assert counts_object(db_path) == KEPT


def test_a_process_with_limits_sees_the_rows_of_one_without(db_path: Path) -> None:
    plain, limited = SQLiteStore(db_path), SQLiteStore(db_path)  # two processes' stores
    try:
        plain.put_many([entry(f"p{i}", t=float(i)) for i in range(3)], now=0.0)
        limited.put_many([entry("l0", t=5.0)], now=5.0, limits=Limits(namespace_quota=3))
        assert limited.count("a") == 3
        # the plain store's next puts are counted by the file's triggers
        plain.put_many([entry("p3", t=6.0), entry("p4", t=7.0)], now=7.0)
        plain.put_many([entry("p5", t=7.5)], now=7.5)  # the single-row put
        assert plain.namespace_counts() == {"a": 6}
        result = limited.put_many([entry("l1", t=8.0)], now=8.0, limits=Limits(namespace_quota=3))
        assert len(result.evicted) == 4
        assert limited.count("a") == plain.count("a") == 3
    finally:
        plain.close()
        limited.close()


def test_a_rolled_back_limited_put_leaves_the_view(store: SQLiteStore, db_path: Path) -> None:
    store.put_many([entry("x")], now=0.0)
    with pytest.raises(StoreError):
        store.put_many([entry("y"), bad_entry("z")], now=0.0, limits=Limits(max_entries=5))
    assert counts_object(db_path) == ("view", [])
    store.put_many([entry("y")], now=0.0, limits=Limits(max_entries=1))  # counts from now
    assert store.namespace_counts() == {"a": 1}
    assert counts_object(db_path) == KEPT


def test_a_version_1_file_keeps_its_counts(db_path: Path) -> None:
    # A file of the first schema (its entry triggers counted): migrated, it keeps
    # counting (a process of the older semcache may still have it open).
    from semcache._store._sqlite_schema import MIGRATIONS

    conn = apsw.Connection(str(db_path))
    conn.execute(
        "CREATE TABLE schema_migrations(version INTEGER PRIMARY KEY, "
        "description TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    conn.execute(MIGRATIONS[0][2])
    conn.execute("INSERT INTO schema_migrations VALUES (1, 'v1', 0.0)")
    conn.execute(
        "INSERT INTO entries(key, namespace, query, response, created_at, last_access) "
        "VALUES (x'01', 'a', 'q', 'r', 0, 0), (x'02', 'b', 'q', 'r', 0, 0)"
    )
    conn.close()
    store = SQLiteStore(db_path)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        assert counts_object(db_path) == KEPT
        store.put_many([entry("x")], now=0.0)
        store.delete_by_key(b"\x02")
        assert dict(peek(db_path, "SELECT name, entries FROM namespaces")) == {"a": 2, "b": 0}
        assert store.namespace_counts() == {"a": 2}
    finally:
        store.close()


# -- health -------------------------------------------------------------------------------
def test_integrity_after_a_workload(db_path: Path) -> None:
    store = SQLiteStore(db_path, max_changes=100)
    rng = Random(12)
    try:
        for step in range(300):
            ns = rng.choice(["a", "b", "c"])
            op = rng.random()
            now = float(step)
            if op < 0.55:
                store.put_many(
                    [
                        entry(f"k{rng.randrange(40)}", ns, t=now, exp=now + rng.choice([1, 50]))
                        for _ in range(rng.randrange(1, 4))
                    ],
                    now=now,
                    limits=Limits(max_entries=60, namespace_quota=25),
                    touches={rng.randrange(1, step + 2): now},
                )
            elif op < 0.75:
                store.delete_by_key(key(f"k{rng.randrange(40)}", ns))
            elif op < 0.85:
                store.delete_expired(now, rng.choice([None, ns]))
            elif op < 0.9:
                store.clear(ns)
            else:
                store.touch({rng.randrange(1, step + 2): now})
        counts = store.namespace_counts()
    finally:
        store.close()
    assert peek(db_path, "PRAGMA integrity_check") == [("ok",)]
    actual = peek(db_path, "SELECT namespace, count(*) FROM entries GROUP BY namespace")
    assert dict(actual) == counts  # the trigger-kept counts did not drift
    assert sum(counts.values()) <= 60
    assert all(n <= 25 for n in counts.values())


# -- threads ------------------------------------------------------------------------------
def run_threads(workers: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(workers))

    def wrap(fn: Callable[[], None]) -> None:
        try:
            start.wait()
            fn()
        except BaseException as exc:  # collected for the assertion in the test
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(fn,)) for fn in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_threads_leave_a_consistent_store(store: SQLiteStore, db_path: Path) -> None:
    names = [f"k{i}" for i in range(25)]

    def writer(seed: int) -> Callable[[], None]:
        def work() -> None:
            rng = Random(seed)
            for step in range(120):
                ns = rng.choice("abc")
                op = rng.random()
                if op < 0.5:
                    store.put_many(
                        [entry(rng.choice(names), ns, t=float(step)) for _ in range(3)],
                        now=float(step),
                        limits=Limits(namespace_quota=15),
                    )
                elif op < 0.75:
                    store.get_by_key(key(rng.choice(names), ns))
                elif op < 0.9:
                    store.delete_by_key(key(rng.choice(names), ns))
                else:
                    store.get_by_ids(list(range(1, 50)))

        return work

    assert run_threads([writer(seed) for seed in range(4)]) == []
    counts = store.namespace_counts()
    assert sum(counts.values()) == store.count()
    for ns, n in counts.items():
        assert n == store.count(ns) <= 15
        assert sum(store.get_by_key(key(name, ns)) is not None for name in names) == n
    actual = peek(db_path, "SELECT namespace, count(*) FROM entries GROUP BY namespace")
    assert dict(actual) == counts
    assert peek(db_path, "PRAGMA integrity_check") == [("ok",)]


def test_readers_never_see_a_transaction_half_done(store: SQLiteStore) -> None:
    store.put_many([entry("pinned")], now=0.0)
    stop = threading.Event()
    seen: list[str] = []

    def replacer() -> None:
        # Each put deletes the old "pinned" row, then inserts the new one, in one
        # transaction; a failing put writes "ghost" and then rolls back.
        try:
            for i in range(300):
                store.put_many([entry("pinned", t=float(i))], now=float(i))
                with pytest.raises(StoreError):
                    store.put_many([entry("ghost"), bad_entry("bad")], now=float(i))
        finally:
            stop.set()

    def reader() -> None:
        while not stop.is_set():
            if store.get_by_key(key("pinned")) is None:
                seen.append("pinned missing")
            if store.get_by_key(key("ghost")) is not None:
                seen.append("ghost seen")
            if store.count() != 1:
                seen.append("count off")

    assert run_threads([replacer, reader, reader]) == []
    assert seen == []


# -- capabilities ---------------------------------------------------------------------------
def test_local_path_and_claim_follow_the_database_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rules _claim_store and _snapshot_target applied to SQLiteStore by name, now the
    # store's own: in memory nothing; a "file:" name keeps its snapshots but takes no lock.
    memory = SQLiteStore(":memory:")
    assert memory.local_path is None
    assert memory.claim("single") is None
    memory.close()
    store = SQLiteStore(tmp_path / "c.db")
    assert store.local_path == tmp_path / "c.db"
    claim = store.claim("single")
    assert claim is not None
    claim.release()
    store.close()
    monkeypatch.chdir(tmp_path)
    named = SQLiteStore("file:odd.db")
    assert named.local_path == Path("file:odd.db")
    assert named.claim("single") is None
    named.close()


def test_iter_vectors_reads_a_page_at_a_time(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows come a page (``VECTOR_PAGE``) per read, the lock free between pages: a
    write between two batches neither waits nor breaks the iteration."""
    import semcache._store._sqlite_ops as sqlite_ops

    rng = Random(11)
    ids: dict[str, list[int]] = {}
    for i in range(20):
        ns = rng.choice("ab")
        [entry_id] = store.put_many([entry(f"k{i}", ns)], now=0.0).ids
        ids.setdefault(ns, []).append(entry_id)
    [expired] = store.put_many([entry("old", "a", exp=5.0)], now=0.0).ids
    monkeypatch.setattr(sqlite_ops, "VECTOR_PAGE", 3)
    reads = 0
    read = store._read

    def counted(fn: Callable[[Any], Any]) -> Any:
        nonlocal reads
        reads += 1
        return read(fn)

    monkeypatch.setattr(store, "_read", counted)
    seen: dict[str, list[int]] = {}
    batches = store.iter_vectors(now=10.0, batch_size=4)
    first = next(batches)
    later = store.put_many([entry("late", "b")], now=10.0).ids  # between two pages
    for batch in [first, *batches]:
        assert 0 < len(batch.ids) <= 4
        seen.setdefault(batch.namespace, []).extend(batch.ids)
    assert expired not in seen["a"]
    assert seen == {"a": ids["a"], "b": ids["b"] + later}  # ascending; the late one too
    assert reads == 8  # 21 live rows in pages of 3, and the empty page that ends them


def test_batches_hold_at_most_one_batch_of_rows() -> None:
    """Many namespaces filled at once: the fullest goes out early, so no more than
    ``batch_size`` rows are ever held (``iter_vectors``'s memory)."""
    rng = Random(3)
    rows = [(i, f"ns{rng.randrange(9)}", b"v") for i in range(1, 500)]
    consumed = 0

    def source() -> Iterator[tuple[int, str, bytes]]:
        nonlocal consumed
        for row in rows:
            consumed += 1
            yield row

    out: dict[str, list[int]] = {}
    given = 0
    for namespace, ids, values in batches(source(), 16):
        assert 0 < len(ids) == len(values) <= 16
        assert consumed - given <= 16  # (held when it went out)
        given += len(ids)
        out.setdefault(namespace, []).extend(ids)
    assert given == len(rows)
    want: dict[str, list[int]] = {}
    for entry_id, ns, _ in rows:
        want.setdefault(ns, []).append(entry_id)
    assert out == want
