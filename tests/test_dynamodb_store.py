"""DynamoDBStore beyond the conformance suite, on a real DynamoDB-compatible server
(dynalite, started by ``scripts/services``): a server that goes away or throttles (a get
is a miss, a put raises, botocore's retries are used), writers that die half-way (the
next writer completes their journal, or nothing of theirs is seen), a table that is
recreated behind a reader, and the errors raised before anything is written."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from random import Random
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import FakeClock
from test_redis_store import TcpProxy
from test_store_conformance import (
    drop_dynamodb,
    dynamodb_client,
    entry,
    key,
    put,
    server_name,
    service_url,
)

from semcache import (
    ConfigurationError,
    InvalidNamespaceError,
    MissingDependencyError,
    SemanticCache,
    StoreUnavailableError,
)
from semcache._store import Change, DynamoDBStore, Limits
from semcache.embedders import HashingEmbedder


@pytest.fixture
def table(tmp_path: Path) -> Iterator[str]:
    yield f"semcache-{server_name(tmp_path)}"
    drop_dynamodb(tmp_path)


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any credentials do for dynalite; the store's own client reads them here."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def open_store(table: str, **options: Any) -> DynamoDBStore:
    return DynamoDBStore(table, client=dynamodb_client(), create=True, **options)


def dynalite_target() -> tuple[str, int]:
    parts = urlsplit(service_url("SEMCACHE_DYNAMODB_URL"))
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


# -- an unreachable or throttling server ---------------------------------------------------
@pytest.mark.usefixtures("credentials")
def test_unreachable_server_get_is_a_miss_put_raises_then_reconnects(table: str) -> None:
    proxy = TcpProxy(dynalite_target())
    try:
        store = DynamoDBStore(
            table,
            endpoint_url=f"http://127.0.0.1:{proxy.port}",
            region="us-east-1",
            create=True,
            connect_timeout=0.5,
            read_timeout=2,
            max_attempts=2,
        )
        cache = SemanticCache(store=store, embedder=HashingEmbedder(32))
        cache.put("What is the capital of France?", "Paris")
        proxy.cut()
        assert cache.get("What is the capital of Spain?") is None
        with pytest.raises(StoreUnavailableError):
            cache.put("How tall is Mount Everest?", "8849 m")
        proxy.restore()
        assert cache.stats()["misses"]["store_unavailable"] == 1
        hit = cache.get("What is the capital of France?")
        assert hit is not None
        assert hit.response == "Paris"
        cache.put("How tall is Mount Everest?", "8849 m")  # the failed put left no lock
        assert cache.stats()["total_entries"] == 2
        cache.close()
    finally:
        proxy.close()


def test_unreachable_at_open_raises_store_unavailable(credentials: None) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        with pytest.raises(StoreUnavailableError):
            DynamoDBStore(
                "semcache-nowhere",
                endpoint_url=f"http://127.0.0.1:{port}",
                region="us-east-1",
                connect_timeout=0.3,
                max_attempts=1,
            )


def test_throttling_is_retried_by_botocore_then_a_miss(table: str, credentials: None) -> None:
    store = DynamoDBStore(
        table, endpoint_url=service_url("SEMCACHE_DYNAMODB_URL"), region="us-east-1",
        create=True, max_attempts=3,
    )  # fmt: skip
    cache = SemanticCache(store=store, embedder=HashingEmbedder(32))
    cache.put("What is the capital of France?", "Paris")
    from botocore.awsrequest import AWSResponse

    attempts: list[str] = []

    class Raw:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield b""

    def throttle(request: Any, **_: Any) -> AWSResponse:
        attempts.append(request.headers["X-Amz-Target"].decode())
        body = json.dumps(
            {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "slow"}
        ).encode()
        response = AWSResponse(
            request.url, 400, {"Content-Type": "application/x-amz-json-1.0"}, Raw()
        )
        response._content = body
        return response

    events = store._client.meta.events
    events.register_first("before-send.dynamodb.GetItem", throttle)
    try:
        # Single mode serves its own writes from memory; another question needs the store.
        assert cache.get("What is the capital of Spain?") is None
        assert cache.stats()["misses"]["store_unavailable"] == 1
        assert attempts == ["DynamoDB_20120810.GetItem"] * 3  # botocore's own retries
    finally:
        events.unregister("before-send.dynamodb.GetItem", throttle)
    hit = cache.get("What is the capital of France?")
    assert hit is not None
    assert hit.response == "Paris"
    cache.close()


# -- writers on several store instances (as from several hosts) -----------------------
def test_writers_on_separate_instances_contend_for_the_lock_and_keep_limits(table: str) -> None:
    stores = [open_store(table) for _ in range(4)]  # no shared in-process lock
    start = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def work(wid: int) -> None:
        rng = Random(wid)
        try:
            start.wait()
            for i in range(25):
                name = f"k{rng.randrange(15)}"
                if rng.random() < 0.8:
                    stores[wid].put_many(
                        [entry(name, t=float(i))],
                        now=float(i),
                        limits=Limits(namespace_quota=6, max_entries=8),
                    )
                else:
                    stores[wid].delete_by_key(key(name))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = stores[0]
    assert store.count() == store.count("a") <= 6
    live = {e.id for e in (store.get_by_key(key(f"k{k}")) for k in range(15)) if e}
    assert len(live) == store.count()
    changes = store.changes_since(0)
    assert changes is not None
    assert [c.seq for c in changes] == list(range(1, store.seq() + 1))
    alive: set[int] = set()
    for change in changes:  # the log replays to exactly what is stored
        (alive.add if change.op == "put" else alive.discard)(change.entry_id)
    assert alive == live
    for s in stores:
        s.close()


# -- writers that die half-way -------------------------------------------------------------
def test_a_writer_that_dies_applying_is_completed_by_the_next_writer(table: str) -> None:
    dying = open_store(table, lock_lease=0.3)
    [old] = dying.put_many([entry("x", t=1.0)], now=1.0).ids
    applied: list[int] = []
    real = dying._batch_write

    def die_half_way(writes: Any, deadline: Any) -> None:
        first = dict(list(writes.items())[: len(writes) // 2])
        real(first, deadline)
        applied.append(len(first))
        raise StoreUnavailableError("the writer died")

    dying._batch_write = die_half_way  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError):
        dying.put_many([entry("x", t=2.0, response="new"), entry("y", t=2.0)], now=2.0)
    assert applied
    # Another process: it waits out the lease, then applies the journal before its own put.
    other = open_store(table, lock_lease=0.3)
    started = time.monotonic()
    [z] = other.put_many([entry("z", ns="b", t=3.0)], now=3.0).ids
    assert time.monotonic() - started >= 0.3
    new_x, y = other.get_by_key(key("x")), other.get_by_key(key("y"))
    assert new_x is not None
    assert new_x.response == "new"
    assert y is not None
    assert other.get_by_ids([old]) == {}
    assert other.namespace_counts() == {"a": 2, "b": 1}
    assert other.count() == 3
    assert other.changes_since(1) == [
        Change(2, "delete", old, "a"),
        Change(3, "put", new_x.id, "a"),
        Change(4, "put", y.id, "a"),
        Change(5, "put", z, "b"),
    ]
    assert {b.namespace: b.ids for b in other.iter_vectors()} == {"a": [new_x.id, y.id], "b": [z]}
    dying.close()
    other.close()


def test_a_writer_past_a_third_of_its_lease_stops_and_is_completed(
    table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import semcache._store._dynamodb as module
    import semcache._store._dynamodb_lock as lock_module
    import semcache._store._dynamodb_table as table_module

    clock = FakeClock(1000.0)  # the store modules' time: moves when they sleep
    monkeypatch.setattr(module, "time", clock)
    monkeypatch.setattr(lock_module, "time", clock)
    monkeypatch.setattr(table_module, "time", clock)
    slow = open_store(table, lock_lease=30)
    real = slow._batch_write
    calls: list[int] = []

    def stalls(writes: Any, deadline: Any) -> None:
        calls.append(len(writes))
        real(dict(list(writes.items())[:3]), deadline)  # lands
        clock.now += 11  # then a call takes 11 s: past a third of the lease
        real(dict(list(writes.items())[3:]), deadline)  # refused: the deadline is checked

    slow._batch_write = stalls  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError, match="third of lock_lease"):
        slow.put_many([entry("x")], now=0.0)
    other = open_store(table, lock_lease=30)
    waited_from = clock.now
    [y] = other.put_many([entry("y")], now=1.0).ids
    assert clock.now - waited_from > 30  # it waited the lease out (on the fake clock)
    x = other.get_by_key(key("x"))
    assert x is not None
    assert [(c.op, c.entry_id) for c in other.changes_since(0) or []] == [
        ("put", x.id),
        ("put", y),
    ]
    assert other.count() == 2
    slow.close()
    other.close()


def test_a_journal_too_large_for_the_head_is_completed_from_its_parts(table: str) -> None:
    dying = open_store(table, lock_lease=0.3)
    rng = Random(5)
    big = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=900_000))  # no compression
    real = dying._batch_write
    calls: list[int] = []

    def die_applying(writes: Any, deadline: Any) -> None:
        calls.append(len(writes))
        if len(calls) == 1:  # the journal's parts
            assert all(pk == "#j" for pk, _ in writes)
            real(writes, deadline)
            return
        raise StoreUnavailableError("the writer died")

    dying._batch_write = die_applying  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError):
        dying.put_many([entry("x", response=big)], now=0.0)
    assert calls[0] >= 2  # the journal went to parts
    # A lease long enough for the taker to apply 900 kB within a third of it.
    other = open_store(table, lock_lease=6)
    other.put_many([entry("y")], now=1.0)
    got = other.get_by_key(key("x"))
    assert got is not None
    assert got.response == big
    assert [c.op for c in other.changes_since(0) or []] == ["put", "put"]
    dying.close()
    other.close()


def test_a_writer_that_dies_before_its_journal_leaves_nothing(table: str) -> None:
    dying = open_store(table, lock_lease=0.3)
    [a] = dying.put_many([entry("a", t=1.0)], now=1.0).ids

    def die(*_: Any) -> None:
        raise StoreUnavailableError("the writer died")

    dying._store_journal = die  # type: ignore[assignment,method-assign]
    with pytest.raises(StoreUnavailableError):
        dying.put_many([entry("b", t=2.0)], now=2.0, limits=Limits(max_entries=1))
    other = open_store(table, lock_lease=0.3)
    assert other.get_by_key(key("b")) is None
    assert other.get_by_key(key("a")) is not None
    assert other.changes_since(0) == [Change(1, "put", a, "a")]
    [c] = other.put_many([entry("c", t=3.0)], now=3.0).ids  # takes the lock over
    assert c > a
    assert other.count() == 2
    dying.close()
    other.close()


def test_the_same_process_takes_its_own_dead_lock_back_at_once(table: str) -> None:
    store = open_store(table, lock_lease=600)
    real = store._batch_write
    failures = [1]

    def fail_once(writes: Any, deadline: Any) -> None:
        if failures:
            failures.pop()
            raise StoreUnavailableError("connection lost")
        real(writes, deadline)

    store._batch_write = fail_once  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError):
        store.put_many([entry("x")], now=0.0)
    started = time.monotonic()
    store.put_many([entry("y")], now=0.0)  # no 600 s wait: the lock was its own
    assert time.monotonic() - started < 30
    assert [c.op for c in store.changes_since(0) or []] == ["put", "put"]
    assert store.count() == 2
    store.close()


# -- a table recreated behind a reader -----------------------------------------------------
def test_a_recreated_table_is_detected_not_served_through(table: str) -> None:
    embedder = HashingEmbedder(64)
    writer = SemanticCache(store=open_store(table), embedder=embedder)
    reader = SemanticCache(
        store=open_store(table), embedder=embedder, multi_process_mode="shared",
        stale_check_interval=0, similarity_threshold=0.6,
    )  # fmt: skip
    writer.put("What is the capital of France?", "Paris")
    hit = reader.get("What is the capital city of France?")
    assert hit is not None
    assert hit.response == "Paris"
    identity = reader.store.identity()
    # The table is deleted and created again; the new one numbers from 1 again.
    DynamoDBStore(table, client=dynamodb_client()).drop()
    fresh = SemanticCache(store=open_store(table), embedder=embedder)
    fresh.put("How tall is Mount Everest?", "8849 m")
    assert fresh.store.identity() != identity
    assert reader.get("What is the capital city of France?") is None
    assert reader.get("What is the capital of France?") is None
    hit = reader.get("How tall is Mount Everest?")
    assert hit is not None
    assert hit.response == "8849 m"
    for cache in (writer, reader, fresh):
        cache.close()


def test_changes_since_after_a_reset_is_none(table: str) -> None:
    store = open_store(table)
    store.put_many([entry("x")], now=0.0)
    identity = store.identity()
    assert store.changes_since(1, identity) == []
    DynamoDBStore(table, client=dynamodb_client()).drop()
    open_store(table).put_many([entry("y")], now=0.0)
    assert store.changes_since(1, identity) is None  # the same seq, another table
    assert store.changes_since(1) == []  # without an identity the sequence alone
    store.close()


def test_a_table_restored_from_an_older_copy_is_none_to_a_reader_past_it(table: str) -> None:
    store = open_store(table)
    client = dynamodb_client()
    copy = client.scan(TableName=table, ConsistentRead=True)["Items"]
    store.put_many([entry("x"), entry("y")], now=0.0)
    identity = store.identity()
    for item in client.scan(TableName=table, ConsistentRead=True)["Items"]:
        client.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})
    for item in copy:  # a point-in-time restore: the same identity, seq 0 again
        client.put_item(TableName=table, Item=item)
    assert store.identity() == identity
    assert store.changes_since(2, identity) is None
    assert store.changes_since(0, identity) == []
    store.close()


# -- bad input and configuration -----------------------------------------------------------
def test_an_oversized_namespace_is_refused_before_anything_is_written(table: str) -> None:
    store = open_store(table)
    with pytest.raises(InvalidNamespaceError):
        store.put_many([entry("ok"), entry("x", ns="n" * 1001)], now=0.0)
    assert store.count() == 0
    assert store.seq() == 0
    store.close()


def test_entries_over_the_item_limit_are_split_and_deleted_whole(table: str) -> None:
    store = open_store(table)
    big = "\u4e2d" * 400_000  # 1.2 MB of UTF-8: five items
    [x] = store.put_many([entry("x", response=big)], now=0.0).ids
    got = store.get_by_key(key("x"))
    assert got is not None
    assert got.response == big
    [x2] = store.put_many([entry("x", response="small")], now=0.0).ids
    got = store.get_by_key(key("x"))
    assert got is not None
    assert (got.id, got.response) == (x2, "small")
    assert store.get_by_ids([x]) == {}
    raw = dynamodb_client().scan(TableName=table)["Items"]
    assert [i["sk"]["S"] for i in raw if i["pk"]["S"].startswith("k#")] == ["0"]
    assert [i for i in raw if i["pk"]["S"] == f"e#{x:020d}"] == []  # every part went
    store.close()


def test_a_split_entry_is_never_served_from_parts_of_another(table: str) -> None:
    store = open_store(table)
    big = "\u4e2d" * 400_000
    [x] = store.put_many([entry("x", response=big)], now=0.0).ids
    # A part that is not this entry's (parts are written once under the entry's id, so
    # only a damaged table has one): noticed, never served as the entry.
    [part] = [
        i
        for i in dynamodb_client().scan(TableName=table)["Items"]
        if i["pk"]["S"] == f"e#{x:020d}" and i["sk"]["S"] == "1"
    ]
    part["i"] = {"N": str(x + 1)}
    part["b"] = {"B": b"\x00" * len(part["b"]["B"])}
    dynamodb_client().put_item(TableName=table, Item=part)
    with pytest.raises(StoreUnavailableError, match="changed while it was read"):
        store.get_by_key(key("x"))
    with pytest.raises(StoreUnavailableError):
        store.get_by_ids([x])
    store.close()


def test_a_missing_table_needs_create(table: str) -> None:
    with pytest.raises(ConfigurationError, match="create=True"):
        DynamoDBStore(table, client=dynamodb_client())


def test_a_table_with_another_key_schema_is_refused(table: str) -> None:
    client = dynamodb_client()
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        with pytest.raises(ConfigurationError, match="pk"):
            DynamoDBStore(table, client=client)
    finally:
        client.delete_table(TableName=table)


def test_without_boto3_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(MissingDependencyError, match=r"semcache-engine\[dynamodb\]"):
        DynamoDBStore("semcache-x")


def test_a_client_passed_in_is_not_closed(table: str) -> None:
    client = dynamodb_client()
    store = open_store(table)
    store.close()
    assert client.list_tables()["TableNames"] is not None  # still usable


def test_a_record_written_on_a_half_applied_put_survives_the_roll_forward(
    table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer dies with its put half applied: the first entry's items landed (readers
    see it by its key, and a process writes its error-budget record, lock-free), the
    second's did not. The next writer waits the lease out and applies the journal: the
    second entry appears, and the first keeps the record written since, on both of its
    items (the journal's copy would take it back to none)."""
    import semcache._store._dynamodb as module
    import semcache._store._dynamodb_lock as lock_module
    import semcache._store._dynamodb_table as table_module
    from semcache._store._dynamodb_codec import key_hash, pad_id

    clock = FakeClock(1000.0)  # the store modules' time: moves when they sleep
    for m in (module, lock_module, table_module):
        monkeypatch.setattr(m, "time", clock)
    dying = open_store(table, lock_lease=30)
    big = "".join(Random(3).choices("abcdefghijklmnopqrstuvwxyz", k=400_000))  # 2 parts
    first = {(f"e#{pad_id(1)}", "0"), (f"e#{pad_id(1)}", "1"), (f"k#{key_hash(key('x'))}", "0")}
    real = dying._batch_write

    def die_applying(writes: Any, deadline: Any) -> None:
        if all(pk == "#j" for pk, _ in writes):  # the journal's parts: it is in parts
            real(writes, deadline)
            return
        real({k: v for k, v in writes.items() if k in first}, deadline)
        raise StoreUnavailableError("the writer died")

    dying._batch_write = die_applying  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError):
        dying.put_many([entry("x", response=big), entry("z")], now=0.0)
    other = open_store(table, lock_lease=30)
    seen = other.get_by_key(key("x"))
    assert seen is not None
    assert seen.id == 1
    assert other.get_by_key(key("z")) is None
    other.update_records([1], lambda i, response, created_at, record: f"{record}+right")
    waited_from = clock.now
    other.put_many([entry("y")], now=1.0)  # takes the lock over: the journal is applied
    assert clock.now - waited_from > 30  # it waited the lease out (on the fake clock)
    got = other.get_by_key(key("x"))
    assert got is not None
    assert (got.response, got.record) == (big, "None+right")
    assert other.get_by_ids([1])[1].record == "None+right"
    z = other.get_by_key(key("z"))
    assert z is not None
    assert z.id == 2
    assert other.get_by_ids([2])[2].response == z.response
    assert [c.op for c in other.changes_since(0) or []] == ["put", "put", "put"]
    dying.close()
    other.close()


# -- update_records: what the conditional write of a record does ---------------------------
def test_a_record_changed_between_the_read_and_the_write_is_read_again(table: str) -> None:
    """Another writer's record lands while ``change`` runs: the write on the record
    read fails its condition, so the entry is read again and ``change`` runs on the
    record as it is now; nothing is overwritten, and the copy under the key follows."""
    store = open_store(table)
    other = open_store(table)
    (i,) = put(store, entry("x"))
    store.write_records({i: "1"})
    seen: list[str | None] = []

    def change(entry_id: int, response: str, created_at: float, record: str | None) -> str:
        seen.append(record)
        if len(seen) == 1:
            other.write_records({i: "5"})  # lands between this read and its write
        return str(int(record or "0") + 1)

    store.update_records([i], change)
    assert seen == ["1", "5"]
    assert store.get_by_ids([i])[i].record == "6"
    got = store.get_by_key(key("x"))
    assert got is not None
    assert got.record == "6"
    other.close()
    store.close()


def test_an_entry_deleted_between_the_read_and_the_write_stays_deleted(table: str) -> None:
    store = open_store(table)
    (i, j) = put(store, entry("x"), entry("y"))
    calls: list[int] = []

    def change(entry_id: int, response: str, created_at: float, record: str | None) -> str:
        calls.append(entry_id)
        if entry_id == i:
            store.delete_ids([i])  # gone before its record is written
        return "r"

    store.update_records([i, j], change)
    assert sorted(calls) == [i, j]  # read once each: the gone one is not tried again
    assert store.get_by_ids([i, j]).keys() == {j}
    assert store.get_by_ids([j])[j].record == "r"
    assert store.get_by_key(key("x")) is None
    store.close()
