"""The error budget's state in the server stores (Redis, PostgreSQL, DynamoDB), on the
real servers ``scripts/services`` starts: entries' records (``write_records``, returned by
``get_by_ids`` and ``get_by_key``), each namespace's counters (``add_counts`` /
``read_counts``) and outcome log (``add_outcomes`` / ``read_outcomes``), per the store
contract in docs/stores.md ("The error budget's state");
and end to end, ``SemanticCache(store=..., error_budget=...)`` learning into the server
and a second cache on it starting from what the first learnt.

The memory and SQLite stores (and these three, by name) run the shared contract tests
of ``tests/test_store_quality.py``; this file adds what only servers have: several
store objects on one backing store, races between clients, migrations of live data."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from conftest import FakeClock
from test_store_conformance import (
    BACKENDS,
    Backend,
    dynamodb_client,
    entry,
    key,
    server_name,
    service_url,
)

from semcache import InvalidInputError, InvalidNamespaceError, SemanticCache
from semcache._cache import engine_of
from semcache._store import DynamoDBStore, Limits, PostgresStore, RedisStore, Store, outcome_log
from semcache._store._dynamodb_codec import key_hash
from semcache.embedders import CallableEmbedder

SERVERS = [b for b in BACKENDS if b.name in ("redis", "postgres", "dynamodb")]

Opener = Callable[[], Store]


@pytest.fixture(params=SERVERS, ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    param: Backend = request.param
    return param


@pytest.fixture
def open_store(backend: Backend, tmp_path: Path) -> Iterator[Opener]:
    """Opens a store object on one backing store (the same server keys / schema / table
    every call: another process's view of it)."""
    home = tmp_path / "store"
    home.mkdir()
    opened: list[Store] = []

    def open_one() -> Store:
        store = backend.open(home, {})
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()
    assert backend.cleanup is not None
    backend.cleanup(home)


def raw_entry_exists(store: Store, entry_id: int, entry_key: bytes | None = None) -> bool:
    """Whether anything of the entry is left on the server under its id (or, with
    ``entry_key``, under its key): a record written to a deleted entry must not bring
    back even a part of it."""
    if isinstance(store, RedisStore):
        name = store._p + f"e:{entry_id:016d}".encode()
        return bool(store._call(lambda: store._client.exists(name)))
    if isinstance(store, DynamoDBStore):
        if entry_key is not None and store._get((f"k#{key_hash(entry_key)}", "0")) is not None:
            return True
        return store._get((f"e#{entry_id:020d}", "0")) is not None
    assert isinstance(store, PostgresStore)
    row = store._read(
        lambda c: c.execute("SELECT count(*) FROM entries WHERE id = %s", (entry_id,)).fetchone()
    )
    return bool(row[0])


# -- records ------------------------------------------------------------------------------
def test_records_are_written_by_id_and_read_with_the_entry(open_store: Opener) -> None:
    store = open_store()
    a, b = store.put_many([entry("a"), entry("b")], now=0.0).ids
    assert store.get_by_ids([a, b])[a].record is None
    store.write_records({a: "[[0.93, 1]]", b: "[[0.91, 0]]"})
    got = store.get_by_ids([a, b])
    assert (got[a].record, got[b].record) == ("[[0.93, 1]]", "[[0.91, 0]]")
    assert store.get_by_ids([a], vectors=True)[a].record == "[[0.93, 1]]"
    assert store.get_by_ids([a], vectors=True)[a].vector == entry("a").vector
    got_by_key = store.get_by_key(key("a"))
    assert got_by_key is not None
    assert got_by_key.record == "[[0.93, 1]]"
    store.write_records({a: "[[0.95, 1]]"})  # a second write replaces the first
    assert store.get_by_ids([a])[a].record == "[[0.95, 1]]"
    store.write_records({})
    assert store.get_by_ids([b])[b].record == "[[0.91, 0]]"


def test_numpy_ids_and_deltas_are_accepted(open_store: Opener) -> None:
    store = open_store()
    [a] = store.put_many([entry("a")], now=0.0).ids
    store.write_records({np.int64(a): "[]"})  # type: ignore[dict-item]
    store.add_counts("a", {"n": np.float32(0.5), "m": np.int64(2)})  # type: ignore[dict-item]
    assert store.get_by_ids([a])[a].record == "[]"
    assert store.read_counts("a") == {"n": 0.5, "m": 2.0}


def test_a_record_of_unicode_text_round_trips(open_store: Opener) -> None:
    store = open_store()
    [a] = store.put_many([entry("a")], now=0.0).ids
    text = '{"note": "caf\u00e9 \u4e2d\u6587 \U0001f600"}'
    store.write_records({a: text})
    assert store.get_by_ids([a])[a].record == text


def test_a_record_for_an_unknown_or_deleted_id_is_skipped(open_store: Opener) -> None:
    store = open_store()
    a, b = store.put_many([entry("a"), entry("b")], now=0.0).ids
    assert store.delete_ids([b]) == [(b, "a")]
    seq = store.seq()
    store.write_records({b: "[]", 10_000: "[]", 0: "[]", -3: "[]", 2**70: "[]", a: "[[0.9, 1]]"})
    assert store.get_by_ids([a, b, 10_000]).keys() == {a}
    assert not raw_entry_exists(store, b, key("b"))
    assert not raw_entry_exists(store, 10_000)
    assert store.get_by_ids([a])[a].record == "[[0.9, 1]]"
    assert store.get_vectors([b, 10_000]) == {}
    assert (store.count(), store.namespace_counts(), store.seq()) == (1, {"a": 1}, seq)
    assert [v.ids for v in store.iter_vectors()] == [[a]]


def test_records_written_while_another_client_deletes_bring_nothing_back(
    open_store: Opener,
) -> None:
    writer, deleter = open_store(), open_store()
    ids = writer.put_many([entry(f"e{i}") for i in range(40)], now=0.0).ids
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def write_all() -> None:
        try:
            start.wait()
            for _ in range(5):
                for i in ids:
                    writer.write_records({i: "[[0.9, 1]]"})
        except BaseException as exc:  # reported below
            errors.append(exc)

    def delete_all() -> None:
        try:
            start.wait()
            for i in ids:
                deleter.delete_ids([i])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write_all), threading.Thread(target=delete_all)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    writer.write_records(dict.fromkeys(ids, "[]"))
    assert writer.get_by_ids(ids) == {}
    keys = [entry(f"e{i}").key for i in range(40)]
    assert [i for i, k in zip(ids, keys, strict=True) if raw_entry_exists(writer, i, k)] == []
    assert (writer.count(), writer.namespace_counts()) == (0, {})


def test_a_put_starts_the_entry_without_a_record(open_store: Opener) -> None:
    store = open_store()
    a, b = store.put_many([entry("a"), entry("b")], now=0.0).ids
    store.write_records({a: "[[0.9, 1]]", b: "[[0.9, 0]]"})
    [a2] = store.put_many([entry("a", response="a new answer")], now=1.0).ids
    [b2] = store.put_many([entry("b")], now=1.0).ids
    got = store.get_by_ids([a, b, a2, b2])
    assert got.keys() == {a2, b2}
    assert (got[a2].record, got[b2].record) == (None, None)
    store.write_records({a: "[]"})  # the replaced id stays gone ...
    assert store.get_by_ids([a]) == {}
    got = store.get_by_key(key("a"))  # ... and writes nothing on its successor
    assert got is not None
    assert (got.id, got.record) == (a2, None)


def test_a_record_goes_with_its_entry(open_store: Opener) -> None:
    store = open_store()
    ids = store.put_many(
        [entry("a"), entry("b"), entry("c", exp=5.0), entry("d"), entry("e")], now=0.0
    ).ids
    store.write_records({i: f"[[0.9, {n}]]" for n, i in enumerate(ids)})
    assert store.delete_by_key(key("a")) == (ids[0], "a")
    assert store.delete_ids([ids[1]]) == [(ids[1], "a")]
    assert store.delete_expired(6.0) == [(ids[2], "a")]
    store.put_many([entry("f")], now=7.0, limits=Limits(max_entries=2))  # evicts d
    assert store.get_by_ids(ids).keys() == {ids[4]}
    assert store.clear("a") == 2
    store.write_records(dict.fromkeys(ids, "[]"))
    assert store.get_by_ids(ids) == {}
    assert store.count() == 0


def test_a_record_write_is_no_change_and_keeps_recency_and_expiry(open_store: Opener) -> None:
    store = open_store()
    other = open_store()
    old, mid = store.put_many([entry("old", t=1.0, exp=100.0), entry("mid", t=2.0)], now=2.0).ids
    identity, seq = store.identity(), store.seq()
    assert other.changes_since(seq, identity) == []
    store.write_records({old: "[[0.9, 1]]"})
    assert store.seq() == seq
    assert other.changes_since(seq, identity) == []
    got = store.get_by_ids([old])[old]
    assert (got.created_at, got.expires_at) == (1.0, 100.0)
    # "old" is still the least recently used: a third entry over max_entries=2 evicts it.
    result = store.put_many([entry("new", t=3.0)], now=3.0, limits=Limits(max_entries=2))
    assert result.evicted == [(old, "a")]
    assert store.get_by_ids([mid]).keys() == {mid}


def test_records_survive_reopen_and_are_seen_by_another_store_object(
    open_store: Opener,
) -> None:
    first = open_store()
    [a] = first.put_many([entry("a")], now=0.0).ids
    first.write_records({a: "[[0.97, 1]]"})
    second = open_store()
    assert second.get_by_ids([a])[a].record == "[[0.97, 1]]"
    first.close()
    reopened = open_store()
    assert reopened.get_by_ids([a])[a].record == "[[0.97, 1]]"


# -- counters -----------------------------------------------------------------------------
def test_counters_add_and_read_back(open_store: Opener) -> None:
    store = open_store()
    assert store.read_counts("a") == {}
    store.add_counts("a", {"n/2/17": 1.0, "w/2/17": 0.25, "predicted": 0.5})
    store.add_counts("a", {"n/2/17": 2.0, "predicted": -0.125, "zero": 0.0})
    store.add_counts("b", {"n/0/0": 3})
    store.add_counts("a", {})
    assert store.read_counts("a") == {"n/2/17": 3.0, "w/2/17": 0.25, "predicted": 0.375}
    assert store.read_counts("b") == {"n/0/0": 3.0}
    assert store.read_counts("nobody") == {}


def test_counters_keep_small_and_fractional_deltas(open_store: Opener) -> None:
    store = open_store()
    deltas = [0.1, 0.2, 1e-9, 0.012345678901234, 123456.5]
    for d in deltas:
        store.add_counts("a", {"x": d})
    assert store.read_counts("a")["x"] == pytest.approx(sum(deltas), rel=1e-12)


def test_two_store_objects_interleave_adds_without_losing_any(open_store: Opener) -> None:
    a, b = open_store(), open_store()
    a.add_counts("ns", {"n": 1.0, "w": 0.5})
    b.add_counts("ns", {"n": 1.0})
    a.add_counts("ns", {"w": 0.25, "m": 2.0})
    b.add_counts("ns", {"n": 1.0, "m": 2.0})
    expected = {"n": 3.0, "w": 0.75, "m": 4.0}
    assert a.read_counts("ns") == expected
    assert b.read_counts("ns") == expected


def test_concurrent_adds_from_two_store_objects_all_count(open_store: Opener) -> None:
    stores = [open_store(), open_store()]
    threads_per_store, adds = 2, 40
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores) * threads_per_store)

    def work(store: Store) -> None:
        try:
            start.wait()
            for _ in range(adds):
                store.add_counts("ns", {"n/1/1": 1.0, "w/1/1": 0.5, "predicted": 0.25})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(s,)) for s in stores for _ in range(threads_per_store)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = len(threads) * adds
    assert stores[0].read_counts("ns") == {
        "n/1/1": float(total),
        "w/1/1": total * 0.5,
        "predicted": total * 0.25,
    }


def test_clear_drops_counters_of_its_namespace_and_clear_all_drops_all(
    open_store: Opener,
) -> None:
    store = open_store()
    store.put_many([entry("x", "a")], now=0.0)
    store.add_counts("a", {"n": 1.0})
    store.add_counts("b", {"n": 2.0})  # a namespace with counters and no entries
    store.add_counts("c", {"n": 3.0})
    assert store.clear("a") == 1
    assert store.read_counts("a") == {}
    assert store.read_counts("b") == {"n": 2.0}
    assert store.clear("b") == 0
    assert store.read_counts("b") == {}
    store.put_many([entry("y", "d")], now=0.0)
    assert store.clear() == 1
    assert (store.read_counts("c"), store.read_counts("d")) == ({}, {})
    store.add_counts("c", {"n": 1.0})  # counting starts again from nothing
    assert store.read_counts("c") == {"n": 1.0}


def test_deleting_entries_leaves_counters_alone(open_store: Opener) -> None:
    store = open_store()
    a, b = store.put_many([entry("a"), entry("b", exp=1.0)], now=0.0).ids
    store.add_counts("a", {"n": 1.0})
    assert store.delete_ids([a]) == [(a, "a")]
    assert store.delete_expired(2.0) == [(b, "a")]
    assert store.count("a") == 0
    assert store.read_counts("a") == {"n": 1.0}


def test_counters_are_invisible_to_entries_and_counts(open_store: Opener) -> None:
    store = open_store()
    # Namespaces named like the stores' own key parts, with counters and entries.
    names = ["a", "qc", "q", "lru", "e", "c"]
    for ns in names:
        store.add_counts(ns, {"n/0/0": 1.0, "pk": 2.0, "sk": 3.0})
    assert (store.count(), store.namespace_counts(), list(store.iter_vectors())) == (0, {}, [])
    assert store.seq() == 0
    assert store.changes_since(0) == []
    ids = store.put_many([entry("x", "qc")], now=0.0).ids
    assert store.count() == 1
    assert store.namespace_counts() == {"qc": 1}
    assert [(v.namespace, v.ids) for v in store.iter_vectors()] == [("qc", ids)]
    assert store.count("lru") == 0
    for ns in names:
        assert store.read_counts(ns) == {"n/0/0": 1.0, "pk": 2.0, "sk": 3.0}
    assert store.clear("qc") == 1
    assert store.read_counts("lru") == {"n/0/0": 1.0, "pk": 2.0, "sk": 3.0}


# -- the outcome log ----------------------------------------------------------------------
def test_outcomes_are_invisible_to_entries_counts_and_the_change_log(open_store: Opener) -> None:
    store = open_store()
    log = outcome_log(store)
    assert log is not None
    # Namespaces named like the stores' own key parts, with outcome logs and counters.
    names = ["a", "o", "ql", "qc", "q", "lru", "e", "c", "l", "#h"]
    for ns in names:
        log.add_outcomes(ns, [json.dumps([1, ns]), "[0,2]"], keep=10)
        store.add_counts(ns, {"n": 1.0})
    assert (store.count(), store.namespace_counts(), list(store.iter_vectors())) == (0, {}, [])
    assert (store.seq(), store.changes_since(0)) == (0, [])
    ids = store.put_many([entry("x", "o")], now=0.0).ids
    assert (store.count(), store.namespace_counts()) == (1, {"o": 1})
    assert [(v.namespace, v.ids) for v in store.iter_vectors()] == [("o", ids)]
    assert [c.entry_id for c in store.changes_since(0) or []] == ids
    for ns in names:
        assert log.read_outcomes(ns) == [json.dumps([1, ns]), "[0,2]"]
        assert store.read_counts(ns) == {"n": 1.0}
    assert store.clear("o") == 1
    assert log.read_outcomes("o") == []
    assert log.read_outcomes("ql") == [json.dumps([1, "ql"]), "[0,2]"]
    assert store.clear() == 0
    assert all(log.read_outcomes(ns) == [] for ns in names)
    log.add_outcomes("a", ["[1]"], keep=10)  # a log starts again from nothing
    assert log.read_outcomes("a") == ["[1]"]


def test_concurrent_adds_with_a_small_keep_leave_exactly_the_newest(open_store: Opener) -> None:
    """Four threads on two store objects add to one log trimmed to fewer rows than they
    add: once all have returned, the log is the newest ``keep`` rows, each add whole."""
    stores = [open_store(), open_store()]
    logs = [outcome_log(s) for s in stores]
    assert None not in logs
    threads_per_store, adds, keep = 2, 30, 20
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores) * threads_per_store)

    def work(log: Any, worker: int) -> None:
        try:
            start.wait()
            for i in range(adds):
                log.add_outcomes("ns", [f"[{worker},{i},{j}]" for j in range(4)], keep=keep)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(logs[w % 2], w))
        for w in range(len(stores) * threads_per_store)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = [json.loads(r) for r in logs[1].read_outcomes("ns")]
    assert len(rows) == keep
    for lo in range(0, keep, 4):  # whole adds
        assert [(r[0], r[1]) for r in rows[lo : lo + 4]] == [tuple(rows[lo][:2])] * 4
        assert [r[2] for r in rows[lo : lo + 4]] == [0, 1, 2, 3]
    for w in {r[0] for r in rows}:  # each thread's adds in their order
        mine = [r[1] for r in rows if r[0] == w]
        assert mine == sorted(mine)
    assert rows[-1][1] == adds - 1  # the last add of all is some thread's last


# -- per store ----------------------------------------------------------------------------
def test_redis_drop_deletes_the_counters_too(tmp_path: Path) -> None:
    url = service_url("SEMCACHE_REDIS_URL")
    prefix = f"semcache-test:{server_name(tmp_path)}:"
    store = RedisStore(url, prefix=prefix)
    [a] = store.put_many([entry("a")], now=0.0).ids
    store.write_records({a: "[]"})
    store.add_counts("a", {"n": 1.0})
    store.add_counts("other", {"n": 1.0})
    store.drop()
    import redis

    client = redis.Redis.from_url(url)
    try:
        assert list(client.scan_iter(match=prefix.encode() + b"*")) == []
    finally:
        client.close()


def test_redis_outcome_logs_go_with_clear_and_drop(tmp_path: Path) -> None:
    import redis

    url = service_url("SEMCACHE_REDIS_URL")
    prefix = f"semcache-test:{server_name(tmp_path)}:"
    p = prefix.encode()
    store = RedisStore(url, prefix=prefix)
    client = redis.Redis.from_url(url)
    try:
        store.put_many([entry("a")], now=0.0)
        for ns in ("a", "b", "c"):
            store.add_outcomes(ns, ["[1]", "[0]"], keep=5)
        assert client.lrange(p + b"ql:a", 0, -1) == [b"[1]", b"[0]"]
        assert client.smembers(p + b"ql") == {b"a", b"b", b"c"}
        store.clear("a")
        assert not client.exists(p + b"ql:a")
        assert client.smembers(p + b"ql") == {b"b", b"c"}
        store.clear()
        assert not client.exists(p + b"ql", p + b"ql:b", p + b"ql:c")
        store.add_outcomes("a", ["[1]"], keep=5)
        store.add_outcomes("other", ["[0]"], keep=5)
        store.add_counts("a", {"n": 1.0})
        store.drop()
        assert list(client.scan_iter(match=p + b"*")) == []
    finally:
        client.close()


def test_redis_an_add_of_many_rows_is_one_script(tmp_path: Path) -> None:
    """More rows than Lua's ``unpack`` takes at once, trimmed in the same script."""
    prefix = f"semcache-test:{server_name(tmp_path)}:"
    store = RedisStore(service_url("SEMCACHE_REDIS_URL"), prefix=prefix)
    try:
        rows = [f"[{i}]" for i in range(12_345)]
        store.add_outcomes("a", rows, keep=10_000)
        assert store.read_outcomes("a") == rows[-10_000:]
    finally:
        store.drop()


def test_postgres_schema_1_upgrades_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from semcache._store import _postgres_schema as schema

    dsn = service_url("SEMCACHE_POSTGRES_DSN")
    name = server_name(tmp_path)
    try:
        with monkeypatch.context() as m:  # a store written by the semcache before
            m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
            m.setattr(schema, "SCHEMA_VERSION", 1)
            old = PostgresStore(dsn, schema=name, vector_search=False)
            assert old.schema_version() == 1
            old._read(
                lambda c: c.execute(
                    "INSERT INTO entries(key, namespace, query, response, created_at,"
                    " last_access) VALUES ('\\x6b', '\\x61', '\\x71', '\\x72', 0, 0)"
                )
            )
            old.close()
        store = PostgresStore(dsn, schema=name, vector_search=False)
        assert store.schema_version() == schema.SCHEMA_VERSION
        [(entry_id, got)] = store.get_by_ids([1]).items()
        assert (got.key, got.record) == (b"k", None)
        store.write_records({entry_id: "[[0.9, 1]]"})
        store.add_counts("a", {"n": 1.0})
        assert store.get_by_ids([entry_id])[entry_id].record == "[[0.9, 1]]"
        assert store.read_counts("a") == {"n": 1.0}
        store.close()
        again = PostgresStore(dsn, schema=name, vector_search=False)  # idempotent
        assert again.schema_version() == schema.SCHEMA_VERSION
        assert again.read_counts("a") == {"n": 1.0}
        again.close()
    finally:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_postgres_schema_2_upgrades_on_open_with_the_outcome_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from semcache._store import _postgres_schema as schema

    dsn = service_url("SEMCACHE_POSTGRES_DSN")
    name = server_name(tmp_path)
    try:
        with monkeypatch.context() as m:  # a store written by the semcache before
            m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
            m.setattr(schema, "SCHEMA_VERSION", 2)
            old = PostgresStore(dsn, schema=name, vector_search=False)
            assert old.schema_version() == 2
            [a] = old.put_many([entry("a")], now=0.0).ids
            old.write_records({a: "[[0.9, 1]]"})
            old.add_counts("a", {"n": 1.0})
            assert not old._read(
                lambda c: c.execute("SELECT to_regclass('quality_outcomes')").fetchone()[0]
            )
            old.close()
        store = PostgresStore(dsn, schema=name, vector_search=False)
        assert store.schema_version() == schema.SCHEMA_VERSION == 3
        assert store.get_by_ids([a])[a].record == "[[0.9, 1]]"
        assert store.read_counts("a") == {"n": 1.0}
        assert store.read_outcomes("a") == []
        store.add_outcomes("a", ["[1]", "[0]"], keep=5)
        store.close()
        again = PostgresStore(dsn, schema=name, vector_search=False)  # idempotent
        assert again.schema_version() == 3
        assert again.read_outcomes("a") == ["[1]", "[0]"]
        assert again.clear() == 1
        assert (again.read_outcomes("a"), again.read_counts("a")) == ([], {})
        again.close()
    finally:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.mark.parametrize("race", ["replaced", "deleted"])
def test_dynamodb_record_write_racing_a_replacement_or_delete_brings_nothing_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, race: str
) -> None:
    """The deterministic form of the race: another client replaces (or deletes) the
    entry just after ``write_records`` read its state, before its two updates."""
    table = f"semcache-{server_name(tmp_path)}"
    store = DynamoDBStore(table, client=dynamodb_client(), create=True)
    other = DynamoDBStore(table, client=dynamodb_client())
    try:
        [a] = store.put_many([entry("a")], now=0.0).ids
        read_states = store._batch_get
        successor: list[int] = []

        def then_race(keys: Any) -> Any:
            got = read_states(keys)
            if race == "replaced":
                successor.extend(other.put_many([entry("a", response="new")], now=1.0).ids)
            else:
                assert other.delete_ids([a]) == [(a, "a")]
            return got

        monkeypatch.setattr(store, "_batch_get", then_race)
        store.write_records({a: "[[0.9, 1]]"})
        monkeypatch.undo()
        assert store.get_by_ids([a]) == {}
        assert not raw_entry_exists(store, a)
        got = store.get_by_key(key("a"))
        if race == "replaced":
            assert got is not None
            assert (got.id, got.response, got.record) == (successor[0], "new", None)
        else:
            assert got is None
            assert not raw_entry_exists(store, a, key("a"))
    finally:
        other.close()
        store.drop()


def test_dynamodb_record_of_a_split_entry_and_counter_limits(tmp_path: Path) -> None:
    table = f"semcache-{server_name(tmp_path)}"
    store = DynamoDBStore(table, client=dynamodb_client(), create=True)
    try:
        big = entry("big", response="r" * 400_000)  # over one item: split in parts
        [a] = store.put_many([big], now=0.0).ids
        store.write_records({a: "[[0.9, 1]]"})
        got = store.get_by_ids([a])[a]
        assert (got.response, got.record) == (big.response, "[[0.9, 1]]")
        by_key = store.get_by_key(big.key)
        assert by_key is not None
        assert (by_key.response, by_key.record) == (big.response, "[[0.9, 1]]")
        with pytest.raises(InvalidInputError, match="below 1e"):
            store.add_counts("a", {"n": 1.0, "huge": 1e21})
        with pytest.raises(InvalidNamespaceError):
            store.add_counts("", {"n": 1.0})
        assert store.read_counts("a") == {}
        assert store.read_counts("") == {}
        many = {f"n/{i}": float(i + 1) for i in range(130)}  # several UpdateItems
        store.add_counts("a", many)
        assert store.read_counts("a") == many
    finally:
        store.drop()


def test_dynamodb_outcome_log_over_several_query_pages_and_namespace_limits(
    tmp_path: Path,
) -> None:
    table = f"semcache-{server_name(tmp_path)}"
    store = DynamoDBStore(table, client=dynamodb_client(), create=True)
    try:
        # 1,500 rows of ~1 KB: 1.5 MB, more than one Query page (1 MB) holds.
        rows = [f"[{i},{'0' * 1000}]" for i in range(1500)]
        for lo in range(0, len(rows), 500):
            store.add_outcomes("a", rows[lo : lo + 500], keep=2000)
        pages = 0
        query = store._client.query

        def counted(**kwargs: Any) -> Any:
            nonlocal pages
            pages += 1
            return query(**kwargs)

        store._client.query = counted
        try:
            assert store.read_outcomes("a") == rows
        finally:
            store._client.query = query
        assert pages >= 2
        store.add_outcomes("a", ["[0]"], keep=1200)  # trims 301 rows, over two batches
        assert store.read_outcomes("a") == [*rows[301:], "[0]"]
        with pytest.raises(InvalidNamespaceError):
            store.add_outcomes("", ["[0]"], keep=5)
        with pytest.raises(InvalidNamespaceError):
            store.add_outcomes("n" * 1001, ["[0]"], keep=5)
        assert store.read_outcomes("") == []
        store.add_outcomes("n" * 1000, ["[0]"], keep=5)
        assert store.read_outcomes("n" * 1000) == ["[0]"]
        assert (store.count(), store.namespace_counts(), store.changes_since(0)) == (0, {}, [])
        store.clear("a")
        assert store.read_outcomes("a") == []
        assert store._get(("o", "a")) is None  # the sequence item goes too
        assert store._get(("o", "n" * 1000)) is not None
        store.clear()
        assert list(store._query("o")) == []
        assert list(store._query("o#" + "n" * 1000)) == []
    finally:
        store.drop()


# -- end to end: SemanticCache(error_budget=...) on a server store -------------------------
DIM = 16


def _embed(texts: Sequence[str]) -> np.ndarray:
    """A deterministic embedder: ``"topic"`` is the first axis; ``"paraphrase i"`` sits
    at cosine 0.95 from it, its other part on an axis of its own."""
    rows = np.zeros((len(texts), DIM), dtype=np.float32)
    for row, text in zip(rows, texts, strict=True):
        if text == "topic":
            row[0] = 1.0
        else:
            i = int(text.rpartition(" ")[2])
            row[0] = 0.95
            row[1 + i % (DIM - 1)] = math.sqrt(1 - 0.95**2)
    return rows


def budget_cache(
    store: Store, clock: FakeClock, mode: Literal["single", "shared"] = "shared"
) -> SemanticCache:
    return SemanticCache(
        store=store,
        embedder=CallableEmbedder(_embed, DIM, "test:paraphrases:16"),
        error_budget=0.01,
        guards=None,
        index_backend="flat",
        multi_process_mode=mode,
        clock=clock,
    )


def observations(store: Store, entry_id: int) -> list[list[float]]:
    text = store.get_by_ids([entry_id])[entry_id].record
    assert text is not None
    got: list[list[float]] = json.loads(text)
    return got


def learnt(cache: SemanticCache) -> tuple[float, float, int]:
    """What the cache's budget for "default" holds: (observations' weight in its
    table, wrong weight, gets)."""
    budgets = engine_of(cache).budgets
    assert budgets is not None
    pol = budgets.policy("default")
    return sum(map(sum, pol.table.n)), sum(map(sum, pol.table.wrong)), pol.gets


def stored(counts: dict[str, float]) -> tuple[float, float, int]:
    n = sum(v for k, v in counts.items() if k.startswith("n/"))
    wrong = sum(v for k, v in counts.items() if k.startswith("w/"))
    return n, wrong, round(counts.get("gets", 0.0))


def test_a_cache_s_budget_persists_in_the_server_store_and_is_shared(
    open_store: Opener,
) -> None:
    clock = FakeClock()
    first = budget_cache(open_store(), clock)
    first.put("topic", "A")
    topic = engine_of(first).store.get_by_key(engine_of(first).key("default", "topic"))
    assert topic is not None
    calls = 0

    def compute() -> str:
        nonlocal calls
        calls += 1
        return "A"

    for i in range(5):  # a fresh budget serves nothing yet: every get asks compute()
        assert first.get_or_put(f"paraphrase {i}", compute) == "A"
    assert calls == 5
    # The topic's record is in the store, read back by another store object ...
    other = open_store()
    assert len(observations(other, topic.id)) == 5
    assert all(correct == 1.0 for _, correct in observations(other, topic.id))
    first.close()  # ... and the counts, once added (close flushes them)
    counts = other.read_counts("default")
    n, wrong, gets = stored(counts)
    assert (n > 0, wrong, gets) == (True, 0.0, 5)

    # A cache opened later on the same server starts from what the first one learnt,
    # and adds to it.
    second = budget_cache(open_store(), clock)
    assert learnt(second) == (n, 0.0, 5)
    assert second.get_or_put("paraphrase 5", compute) == "A"
    assert calls == 6
    assert len(observations(other, topic.id)) == 6
    stats = second.stats()  # the counters in the store are no entries
    assert (stats["entries"], stats["total_entries"]) == ({"default": 7}, 7)
    second.close()
    assert stored(other.read_counts("default"))[2] == 6


def test_two_caches_on_one_server_learn_together(open_store: Opener) -> None:
    clock = FakeClock()
    one, two = budget_cache(open_store(), clock), budget_cache(open_store(), clock)
    one.put("topic", "A")
    for i in range(3):
        assert one.get_or_put(f"paraphrase {i}", lambda: "A") == "A"
    for i in range(3, 6):
        assert two.get_or_put(f"paraphrase {i}", lambda: "A") == "A"
    assert (learnt(one)[2], learnt(two)[2]) == (3, 3)  # each its own, not yet synced
    clock.advance(2.0)  # past the sync interval: a get adds its cache's counts and
    one.get_or_put("paraphrase 6", lambda: "A")  # reads back everyone's
    assert learnt(one)[2] == 4
    two.get_or_put("paraphrase 7", lambda: "A")
    assert learnt(two)[2] == 8  # its 4 and the other's 4
    clock.advance(2.0)
    one.get_or_put("paraphrase 8", lambda: "A")
    assert learnt(one)[2] == 9
    n_one = learnt(one)[0]
    assert n_one > learnt(two)[0] > 0
    one.close()
    two.close()
    assert stored(open_store().read_counts("default"))[2] == 9


def test_a_record_read_through_the_exact_layer_is_not_lost(open_store: Opener) -> None:
    """Single mode keeps what an exact get read (``get_by_key``) and judges semantic
    candidates from that copy: the copy must carry the stored record."""
    clock = FakeClock()
    first = budget_cache(open_store(), clock, mode="single")
    first.put("topic", "A")
    for i in range(3):
        assert first.get_or_put(f"paraphrase {i}", lambda: "A") == "A"
    first.close()
    second = budget_cache(open_store(), clock, mode="single")
    hit = second.get("topic")  # the exact layer: read by key, kept in the hot map
    assert hit is not None
    assert hit.entry_id is not None
    assert second.get_or_put("paraphrase 3", lambda: "A") == "A"
    assert len(observations(open_store(), hit.entry_id)) == 4
    second.close()
