"""The Store contract (``semcache._store._base.Store``), checked on every implementation.

Every store is reached through the ``store_factory`` fixture. To add one (Redis,
PostgreSQL, ...), append a :class:`Backend` to :data:`BACKENDS`; a persistent one also
runs the close/reopen tests.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import astuple, dataclass, field
from pathlib import Path
from random import Random
from typing import Any

import apsw
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semcache import VectorIndex
from semcache._errors import (
    CacheClosedError,
    CheckpointFormatError,
    ConfigurationError,
    EmbedderMismatchError,
)
from semcache._index import SearchIndex
from semcache._locking import lock_path
from semcache._store import (
    Change,
    Limits,
    MemoryStore,
    NewEntry,
    PutResult,
    SQLiteStore,
    Store,
    StoredEntry,
    answer_scan,
    claim_store,
    file_backup,
    local_path,
    search_index_factory,
)


# -- backends -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Backend:
    """How to open one kind of store.

    ``open(directory, options)`` opens the store that lives at ``directory`` (a fresh,
    empty temporary folder the first time); opening the same directory again must give
    back the same data when ``persistent``. ``options`` holds constructor keywords every
    store takes (``max_changes``).
    """

    name: str
    persistent: bool
    open: Callable[[Path, Mapping[str, Any]], Store]
    #: Deletes what the stores opened at ``directory`` left on a server (after a test).
    cleanup: Callable[[Path], None] | None = None


# -- servers (Redis, PostgreSQL) -----------------------------------------------------------
SERVICES = ("SEMCACHE_REDIS_URL", "SEMCACHE_POSTGRES_DSN", "SEMCACHE_DYNAMODB_URL")


@functools.cache
def _service_env() -> tuple[dict[str, str], str | None]:
    """The servers' URLs: from the environment, else from ``scripts/services start``
    (which starts them, or finds them running); ``(urls, error)``."""
    if all(os.environ.get(name) for name in SERVICES):
        return {name: os.environ[name] for name in SERVICES}, None
    script = Path(__file__).resolve().parents[1] / "scripts" / "services"
    try:
        proc = subprocess.run(
            [str(script), "start"], capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {}, f"{script} start failed: {exc}"
    if proc.returncode:
        return {}, f"{script} start failed ({proc.returncode}): {proc.stderr.strip()}"
    env = {}
    for line in proc.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    missing = [name for name in SERVICES if not env.get(name)]
    return env, (f"{script} start printed no {missing}" if missing else None)


def service_url(name: str) -> str:
    """The URL of a test server (``SEMCACHE_REDIS_URL``, ``SEMCACHE_POSTGRES_DSN`` or
    ``SEMCACHE_DYNAMODB_URL``).

    Never a skip: a missing server fails the test (locally as under CI), since the
    services script starts one when none is running.
    """
    env, error = _service_env()
    if error is not None:
        pytest.fail(f"test servers unavailable: {error}", pytrace=False)
    return env[name]


def server_name(directory: Path) -> str:
    """A name for the store living at ``directory``: the same on reopening, different
    for every test (the directory is a fresh temporary folder)."""
    return "t" + hashlib.blake2b(str(directory).encode(), digest_size=10).hexdigest()


def open_redis(directory: Path, options: Mapping[str, Any]) -> Store:
    from semcache._store import RedisStore

    url = service_url("SEMCACHE_REDIS_URL")
    return RedisStore(url, prefix=f"semcache-test:{server_name(directory)}:", **options)


def drop_redis(directory: Path) -> None:
    from semcache._store import RedisStore

    RedisStore(
        service_url("SEMCACHE_REDIS_URL"), prefix=f"semcache-test:{server_name(directory)}:"
    ).drop()


def open_postgres(directory: Path, options: Mapping[str, Any]) -> Store:
    from semcache._store import PostgresStore

    dsn = service_url("SEMCACHE_POSTGRES_DSN")
    return PostgresStore(dsn, schema=server_name(directory), **options)


def drop_postgres(directory: Path) -> None:
    import psycopg

    with psycopg.connect(service_url("SEMCACHE_POSTGRES_DSN"), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{server_name(directory)}" CASCADE')


@functools.cache
def dynamodb_client() -> Any:
    """A boto3 client of the test DynamoDB server (dynalite; any credentials do)."""
    import boto3

    return boto3.session.Session().client(
        "dynamodb",
        endpoint_url=service_url("SEMCACHE_DYNAMODB_URL"),
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def open_dynamodb(directory: Path, options: Mapping[str, Any]) -> Store:
    from semcache._store import DynamoDBStore

    return DynamoDBStore(
        f"semcache-{server_name(directory)}", client=dynamodb_client(), create=True, **options
    )


def drop_dynamodb(directory: Path) -> None:
    client = dynamodb_client()
    try:
        client.delete_table(TableName=f"semcache-{server_name(directory)}")
    except client.exceptions.ResourceNotFoundException:
        pass


BACKENDS: tuple[Backend, ...] = (
    Backend("memory", False, lambda d, kw: MemoryStore(**kw)),
    Backend("sqlite", True, lambda d, kw: SQLiteStore(d / "store.db", **kw)),
    Backend("redis", True, open_redis, drop_redis),
    Backend("postgres", True, open_postgres, drop_postgres),
    Backend("dynamodb", True, open_dynamodb, drop_dynamodb),
)


@dataclass
class StoreFactory:
    """Opens stores of one backend, each in its own folder, and closes them at the end."""

    backend: Backend
    root: Path
    _homes: dict[int, tuple[Path, Mapping[str, Any]]] = field(default_factory=dict)
    _opened: list[Store] = field(default_factory=list)

    @property
    def persistent(self) -> bool:
        return self.backend.persistent

    def __call__(self, **options: Any) -> Store:
        home = self.root / f"store{len(self._homes)}"
        home.mkdir()
        return self._open(home, options)

    def reopen(self, store: Store) -> Store:
        """Close ``store`` and open the same one again (only for persistent backends)."""
        assert self.persistent, f"{self.backend.name} is not persistent"
        home, options = self._homes[id(store)]
        store.close()
        return self._open(home, options)

    def _open(self, home: Path, options: Mapping[str, Any]) -> Store:
        store = self.backend.open(home, options)
        assert isinstance(store, Store)
        assert store.persistent is self.persistent
        self._homes[id(store)] = (home, options)
        self._opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self._opened:
            store.close()
        if self.backend.cleanup is not None:
            for home in {home for home, _ in self._homes.values()}:
                self.backend.cleanup(home)


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    factory = StoreFactory(request.param, tmp_path)
    yield factory
    factory.close_all()


@pytest.fixture(params=[b for b in BACKENDS if b.persistent], ids=lambda b: b.name)
def persistent_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    factory = StoreFactory(request.param, tmp_path)
    yield factory
    factory.close_all()


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    return store_factory()


# -- helpers ------------------------------------------------------------------------------
def entry(
    name: str,
    ns: str = "a",
    *,
    t: float = 0.0,
    exp: float | None = None,
    vector: bytes | None = b"",
    query: str | None = None,
    response: str | None = None,
    metadata: str | None = None,
) -> NewEntry:
    """A new entry whose key is ``ns/name`` (vector ``b""`` means: derive one)."""
    return NewEntry(
        key=f"{ns}/{name}".encode(),
        namespace=ns,
        query=f"query {name}" if query is None else query,
        response=f"response {name}" if response is None else response,
        metadata=metadata,
        vector=f"vec:{ns}/{name}".encode() if vector == b"" else vector,
        created_at=t,
        expires_at=exp,
    )


def key(name: str, ns: str = "a") -> bytes:
    return f"{ns}/{name}".encode()


def stored(new: NewEntry, entry_id: int) -> StoredEntry:
    return StoredEntry(
        entry_id,
        new.key,
        new.namespace,
        new.query,
        new.response,
        new.metadata,
        new.created_at,
        new.expires_at,
    )


def put(store: Store, *entries: NewEntry, now: float = 0.0, **kwargs: Any) -> list[int]:
    return store.put_many(list(entries), now=now, **kwargs).ids


def all_vectors(store: Store, **kwargs: Any) -> dict[str, list[tuple[int, bytes]]]:
    out: dict[str, list[tuple[int, bytes]]] = {}
    for batch in store.iter_vectors(**kwargs):
        out.setdefault(batch.namespace, []).extend(zip(batch.ids, batch.vectors, strict=True))
    return out


def victims(result: PutResult) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """``(expired, least recently used)`` victims of a put, each sorted (the contract
    orders the expired ones first but says nothing of the order inside each group)."""
    n = result.expired_evicted
    return sorted(result.evicted[:n]), sorted(result.evicted[n:])


def live_keys(store: Store, names: list[str], ns: str = "a") -> list[str]:
    return [n for n in names if store.get_by_key(key(n, ns)) is not None]


# -- settings -----------------------------------------------------------------------------
def test_meta_missing_is_none(store: Store) -> None:
    assert store.get_meta("dim") is None


def test_meta_set_get_and_overwrite(store: Store) -> None:
    store.set_meta({"dim": "8", "fingerprint": "model-a"})
    assert store.get_meta("dim") == "8"
    assert store.get_meta("fingerprint") == "model-a"
    store.set_meta({"dim": "16"})
    assert store.get_meta("dim") == "16"
    assert store.get_meta("fingerprint") == "model-a"
    store.set_meta({})
    assert store.get_meta("dim") == "16"


def test_put_many_writes_meta_even_without_entries(store: Store) -> None:
    result = store.put_many([], now=0.0, meta={"dim": "4"})
    assert result == PutResult()
    assert store.get_meta("dim") == "4"
    put(store, entry("x"), meta={"dim": "4", "vector_dtype": "float16"})
    assert store.get_meta("dim") == "4"
    assert store.get_meta("vector_dtype") == "float16"


def test_a_put_whose_setting_another_recorded_first_writes_nothing(store: Store) -> None:
    """A put's meta is recorded where the store has none; one the store holds with
    another value (another process's first put got there first) fails the put with
    EmbedderMismatchError before anything is written: no entry, no touch, no setting,
    no change."""
    [first] = put(store, entry("first", t=1.0), now=1.0, meta={"dim": "4"})
    put(store, entry("second", t=2.0), now=2.0)
    seq = store.seq()
    with pytest.raises(EmbedderMismatchError, match="dim"):
        store.put_many(
            [entry("new", t=3.0)],
            now=3.0,
            touches={first: 9.0},
            meta={"vector_dtype": "float16", "dim": "8"},
        )
    assert store.get_meta("dim") == "4"
    assert store.get_meta("vector_dtype") is None
    assert store.seq() == seq
    assert live_keys(store, ["first", "second", "new"]) == ["first", "second"]
    # the touch was not applied either: "first" is still the least recently used
    result = store.put_many(
        [entry("new", t=4.0)], now=4.0, limits=Limits(namespace_quota=2), meta={"dim": "4"}
    )
    assert result.evicted == [(first, "a")]
    assert live_keys(store, ["first", "second", "new"]) == ["second", "new"]


# -- reads --------------------------------------------------------------------------------
def test_get_by_key_returns_every_field(store: Store) -> None:
    new = entry("x", t=12.5, exp=99.25, metadata='{"a":1}')
    [entry_id] = put(store, new)
    assert store.get_by_key(new.key) == stored(new, entry_id)
    assert store.get_by_key(b"no such key") is None


def test_get_by_key_returns_expired_entries(store: Store) -> None:
    new = entry("x", t=0.0, exp=1.0)
    [entry_id] = put(store, new, now=0.0)
    assert store.get_by_key(new.key) == stored(new, entry_id)


def test_get_by_ids_skips_missing(store: Store) -> None:
    a, b = entry("a"), entry("b", ns="other")
    [ida], [idb] = put(store, a), put(store, b)
    got = store.get_by_ids([idb, 10_000, ida, -1, idb])
    assert got == {ida: stored(a, ida), idb: stored(b, idb)}
    assert store.get_by_ids([]) == {}
    assert store.get_by_ids([10_000]) == {}


def test_get_by_ids_and_get_vectors_accept_many_ids(store: Store) -> None:
    ids = put(store, *(entry(str(i)) for i in range(3)))
    asked = [*range(1, 40_001), *ids]
    assert set(store.get_by_ids(asked)) == set(ids)
    assert set(store.get_vectors(asked)) == set(ids)


# -- put_many -----------------------------------------------------------------------------
def test_put_many_assigns_increasing_ids_in_input_order(store: Store) -> None:
    news = [entry(f"k{i}", t=float(i)) for i in range(5)]
    result = store.put_many(news, now=5.0)
    assert result.ids == sorted(result.ids)
    assert len(set(result.ids)) == 5
    assert (result.replaced, result.evicted, result.expired_evicted) == ([], [], 0)
    for new, entry_id in zip(news, result.ids, strict=True):
        assert store.get_by_key(new.key) == stored(new, entry_id)
    more = put(store, entry("later"))
    assert more[0] > result.ids[-1]


def test_put_replaces_by_key_with_a_new_id(store: Store) -> None:
    [old] = put(store, entry("x", response="first"))
    new = entry("x", response="second", t=5.0, exp=50.0)
    result = store.put_many([new], now=5.0)
    [fresh] = result.ids
    assert fresh > old
    assert result.replaced == [(old, "a")]
    assert store.get_by_key(new.key) == stored(new, fresh)
    assert store.get_by_ids([old]) == {}
    assert store.count() == 1


def test_same_key_in_another_namespace_is_another_entry(store: Store) -> None:
    a = NewEntry(b"same", "a", "q", "ra", None, None, 0.0, None)
    b = NewEntry(b"other", "b", "q", "rb", None, None, 0.0, None)
    put(store, a)
    result = store.put_many([b], now=0.0)
    assert result.replaced == []
    assert store.namespace_counts() == {"a": 1, "b": 1}


def test_repeated_key_in_one_batch_last_wins(store: Store) -> None:
    first, second, other = entry("x", response="1"), entry("x", response="2"), entry("y")
    result = store.put_many([first, other, second], now=0.0)
    assert len(result.ids) == 3
    id1, idy, id2 = result.ids
    assert id1 < idy < id2
    assert result.replaced == [(id1, "a")]
    assert store.get_by_key(first.key) == stored(second, id2)
    assert store.get_by_ids([id1]) == {}
    assert store.count() == 2


def test_ids_are_never_reused(store: Store) -> None:
    ids = put(store, entry("a"), entry("b"))
    assert store.delete_ids([ids[-1]]) == [(ids[-1], "a")]
    [after_delete] = put(store, entry("c"))
    assert after_delete > ids[-1]
    assert store.clear() == 2
    [after_clear] = put(store, entry("a"))
    assert after_clear > after_delete
    store.put_many([entry("x", t=0.0)], now=0.0, limits=Limits(max_entries=1))
    [after_evict] = put(store, entry("y"), limits=Limits(max_entries=1))
    assert after_evict > after_clear + 1


def test_entries_without_vector_or_metadata(store: Store) -> None:
    new = entry("x", vector=None, metadata=None, exp=None)
    [entry_id] = put(store, new)
    assert store.get_by_key(new.key) == stored(new, entry_id)
    assert store.get_vectors([entry_id]) == {}


# -- limits -------------------------------------------------------------------------------
def test_namespace_quota_evicts_least_recently_used_in_that_namespace(store: Store) -> None:
    ids = [put(store, entry(f"k{i}", t=float(i)), now=float(i))[0] for i in range(3)]
    put(store, entry("old", ns="b", t=-10.0), now=-10.0)  # older, but in another namespace
    result = store.put_many([entry("k3", t=3.0)], now=3.0, limits=Limits(namespace_quota=2))
    assert victims(result) == ([], [(ids[0], "a"), (ids[1], "a")])
    assert store.namespace_counts() == {"a": 2, "b": 1}
    assert live_keys(store, ["k0", "k1", "k2", "k3"]) == ["k2", "k3"]


def test_quota_never_evicts_another_namespace_even_expired(store: Store) -> None:
    put(store, entry("b0", ns="b", t=0.0, exp=1.0), now=0.0)
    [a0] = put(store, entry("a0", t=0.0), now=0.0)
    result = store.put_many([entry("a1", t=5.0)], now=5.0, limits=Limits(namespace_quota=1))
    assert result.evicted == [(a0, "a")]
    assert result.expired_evicted == 0
    assert store.namespace_counts() == {"a": 1, "b": 1}


def test_max_entries_evicts_across_namespaces_by_recency(store: Store) -> None:
    [b0] = put(store, entry("b0", ns="b", t=1.0), now=1.0)
    [a0] = put(store, entry("a0", t=2.0), now=2.0)
    [c0] = put(store, entry("c0", ns="c", t=3.0), now=3.0)
    result = store.put_many([entry("a1", t=4.0)], now=4.0, limits=Limits(max_entries=2))
    assert victims(result) == ([], sorted([(b0, "b"), (a0, "a")]))
    assert store.namespace_counts() == {"a": 1, "c": 1}
    assert store.get_by_ids([c0]) != {}


def test_limits_that_are_not_exceeded_evict_nothing(store: Store) -> None:
    put(store, entry("a", exp=0.0))
    for limits in (None, Limits(), Limits(max_entries=2, namespace_quota=2)):
        result = store.put_many([entry("b", t=1.0)], now=5.0, limits=limits)
        assert (result.evicted, result.expired_evicted) == ([], 0)
    assert store.count() == 2


def test_expired_are_evicted_first_earliest_expiry_first(store: Store) -> None:
    # Recently used but expired entries go before old live ones, earliest expiry first.
    [live] = put(store, entry("live", t=0.0), now=0.0)
    [late] = put(store, entry("late", t=1.0, exp=8.0), now=1.0)
    [early] = put(store, entry("early", t=2.0, exp=6.0), now=2.0)
    [fresh] = put(store, entry("fresh", t=3.0, exp=100.0), now=3.0)
    store.touch({late: 9.0, early: 9.0})
    result = store.put_many([entry("new", t=10.0)], now=10.0, limits=Limits(namespace_quota=3))
    assert victims(result) == (sorted([(early, "a"), (late, "a")]), [])
    assert store.get_by_ids([live, fresh]).keys() == {live, fresh}


def test_only_the_excess_is_evicted_even_when_more_expired(store: Store) -> None:
    ids = [put(store, entry(f"e{i}", t=0.0, exp=5.0 - i), now=0.0)[0] for i in range(4)]
    result = store.put_many([entry("new", t=10.0)], now=10.0, limits=Limits(max_entries=4))
    assert result.evicted == [(ids[3], "a")]  # expires first (at 2.0)
    assert result.expired_evicted == 1
    assert store.count() == 4


def test_expiry_ties_evict_the_lowest_id_first(store: Store) -> None:
    ids = put(store, *(entry(f"e{i}", t=0.0, exp=5.0) for i in range(3)), now=0.0)
    result = store.put_many([entry("new", t=9.0)], now=9.0, limits=Limits(max_entries=2))
    assert victims(result) == ([(ids[0], "a"), (ids[1], "a")], [])


@pytest.mark.parametrize(("now", "expired"), [(10.0, True), (9.999, False)])
def test_expiry_boundary_counts_as_expired_for_eviction(
    store: Store, now: float, expired: bool
) -> None:
    [live] = put(store, entry("live", t=0.0), now=0.0)
    [edge] = put(store, entry("edge", t=1.0, exp=10.0), now=1.0)
    result = store.put_many([entry("new", t=now)], now=now, limits=Limits(max_entries=2))
    assert victims(result) == (([(edge, "a")], []) if expired else ([], [(live, "a")]))


def test_lru_ties_evict_the_lowest_id_first(store: Store) -> None:
    ids = put(store, entry("a", t=5.0), entry("b", t=5.0), now=5.0)
    store.touch({ids[0]: 5.0})  # the same time: not more recent
    result = store.put_many([entry("c", t=5.0)], now=5.0, limits=Limits(namespace_quota=2))
    assert result.evicted == [(ids[0], "a")]


def test_lru_follows_last_access_not_arrival_order(store: Store) -> None:
    # Times that arrive out of order: the oldest last_access goes, whatever came first.
    [late] = put(store, entry("late", t=50.0), now=50.0)
    [early] = put(store, entry("early", t=10.0), now=50.0)
    [mid] = put(store, entry("mid", t=30.0), now=50.0)
    result = store.put_many([entry("n1", t=70.0)], now=70.0, limits=Limits(max_entries=3))
    assert victims(result) == ([], [(early, "a")])
    store.touch({late: 75.0, mid: 20.0})  # mid's touch is older than mid: ignored
    result = store.put_many([entry("n2", t=80.0)], now=80.0, limits=Limits(max_entries=3))
    assert victims(result) == ([], [(mid, "a")])
    assert live_keys(store, ["late", "early", "mid", "n1", "n2"]) == ["late", "n1", "n2"]


def test_touches_are_applied_before_choosing_victims(store: Store) -> None:
    ids = [put(store, entry(f"k{i}", t=float(i)), now=float(i))[0] for i in range(3)]
    result = store.put_many(
        [entry("new", t=10.0)],
        now=10.0,
        limits=Limits(namespace_quota=3),
        touches={ids[0]: 9.0, 999_999: 9.0},
    )
    assert result.evicted == [(ids[1], "a")]


def test_eviction_may_remove_the_batchs_own_entries(store: Store) -> None:
    [older] = put(store, entry("older", t=1.0), now=1.0)
    store.touch({older: 20.0})
    result = store.put_many(
        [entry(f"n{i}", t=10.0) for i in range(3)], now=10.0, limits=Limits(namespace_quota=2)
    )
    assert victims(result) == ([], [(result.ids[0], "a"), (result.ids[1], "a")])
    assert live_keys(store, ["older", "n0", "n1", "n2"]) == ["older", "n2"]


def test_quota_and_max_entries_in_one_put_list_expired_first(store: Store) -> None:
    [a1] = put(store, entry("a1", t=1.0), now=1.0)
    [b1] = put(store, entry("b1", ns="b", t=1.0, exp=2.0), now=1.0)
    [b2] = put(store, entry("b2", ns="b", t=1.0), now=1.0)
    result = store.put_many(
        [entry("a2", t=3.0)], now=3.0, limits=Limits(max_entries=2, namespace_quota=1)
    )
    # The quota evicts a1 (least recent in "a"), then the cap evicts the expired b1.
    assert sorted(result.evicted) == sorted([(a1, "a"), (b1, "b")])
    assert result.expired_evicted == 1
    assert result.evicted[: result.expired_evicted] == [(b1, "b")]
    assert store.namespace_counts() == {"a": 1, "b": 1}
    assert store.get_by_ids([b2]).keys() == {b2}


# -- deletes ------------------------------------------------------------------------------
def test_delete_by_key(store: Store) -> None:
    [x] = put(store, entry("x"))
    put(store, entry("x", ns="b"))
    assert store.delete_by_key(key("x")) == (x, "a")
    assert store.delete_by_key(key("x")) is None
    assert store.delete_by_key(b"never") is None
    assert store.get_by_key(key("x")) is None
    assert store.namespace_counts() == {"b": 1}


def test_delete_by_key_deletes_expired_entries(store: Store) -> None:
    [x] = put(store, entry("x", exp=1.0), now=0.0)
    assert store.delete_by_key(key("x")) == (x, "a")


def test_delete_ids(store: Store) -> None:
    a, b = put(store, entry("a"), entry("b"))
    [c] = put(store, entry("c", ns="c"))
    assert sorted(store.delete_ids([c, 999_999, a, a])) == [(a, "a"), (c, "c")]
    assert store.delete_ids([a, c]) == []
    assert store.delete_ids([]) == []
    assert store.get_by_ids([a, b, c]).keys() == {b}


def test_delete_expired_all_and_one_namespace(store: Store) -> None:
    [a_exp] = put(store, entry("x", t=0.0, exp=5.0), now=0.0)
    [a_edge] = put(store, entry("edge", t=0.0, exp=10.0), now=0.0)  # expires_at == now
    [a_live] = put(store, entry("live", t=0.0, exp=10.5), now=0.0)
    [a_forever] = put(store, entry("forever", t=0.0), now=0.0)
    [b_exp] = put(store, entry("x", ns="b", t=0.0, exp=1.0), now=0.0)
    assert sorted(store.delete_expired(10.0, "a")) == [(a_exp, "a"), (a_edge, "a")]
    assert store.get_by_ids([b_exp]).keys() == {b_exp}
    assert store.delete_expired(10.0, "a") == []
    assert store.delete_expired(10.0, "nobody") == []
    assert store.delete_expired(10.0) == [(b_exp, "b")]
    assert store.delete_expired(10.4) == []
    assert store.get_by_ids([a_live, a_forever]).keys() == {a_live, a_forever}
    assert store.delete_expired(10.5) == [(a_live, "a")]
    assert store.namespace_counts() == {"a": 1}


def test_clear_one_namespace_touches_no_other(store: Store) -> None:
    put(store, entry("x"), entry("y", exp=0.0))
    [bx] = put(store, entry("x", ns="b"))
    assert store.clear("a") == 2
    assert store.clear("a") == 0
    assert store.clear("never") == 0
    assert store.namespace_counts() == {"b": 1}
    assert store.get_by_key(key("x", "b")) is not None
    assert store.get_by_ids([bx]).keys() == {bx}


def test_clear_everything(store: Store) -> None:
    put(store, entry("x"), entry("y"))
    put(store, entry("x", ns="b"))
    assert store.clear() == 3
    assert store.count() == 0
    assert store.namespace_counts() == {}
    assert store.clear() == 0


# -- touch --------------------------------------------------------------------------------
def test_touch_never_moves_time_backwards(store: Store) -> None:
    a, b = (put(store, entry(n, t=t), now=t)[0] for n, t in (("a", 1.0), ("b", 2.0)))
    store.touch({a: 10.0})
    store.touch({a: 0.5})  # ignored: a stays more recent than b
    result = store.put_many([entry("c", t=11.0)], now=11.0, limits=Limits(namespace_quota=2))
    assert victims(result) == ([], [(b, "a")])


def test_touch_ignores_unknown_ids_and_empty_maps(store: Store) -> None:
    [a] = put(store, entry("a", t=1.0), now=1.0)
    store.touch({})
    store.touch({999_999: 5.0, a: 3.0})
    store.delete_ids([a])
    store.touch({a: 4.0})
    assert store.count() == 0


# -- counts -------------------------------------------------------------------------------
def test_count_and_namespace_counts(store: Store) -> None:
    assert store.count() == 0
    assert store.count("a") == 0
    assert store.namespace_counts() == {}
    put(store, entry("x", exp=0.0), entry("y"), now=5.0)  # expired entries count too
    put(store, entry("x", ns="b"))
    assert store.count() == 3
    assert store.count("a") == 2
    assert store.count("b") == 1
    assert store.count("c") == 0
    assert store.namespace_counts() == {"a": 2, "b": 1}
    store.delete_by_key(key("x", "b"))
    assert store.namespace_counts() == {"a": 2}
    assert store.count("b") == 0


# -- vectors ------------------------------------------------------------------------------
def test_iter_vectors_groups_by_namespace_in_ascending_ids(store: Store) -> None:
    expected: dict[str, list[tuple[int, bytes]]] = {}
    rng = Random(7)
    for i in range(40):
        ns = rng.choice("abc")
        new = entry(f"k{i}", ns=ns, vector=None if i % 7 == 3 else f"v{i}".encode())
        [entry_id] = put(store, new)
        if new.vector is not None:
            expected.setdefault(ns, []).append((entry_id, new.vector))
    assert all_vectors(store) == expected
    for size in (1, 3, 1000):
        batches = list(store.iter_vectors(batch_size=size))
        assert all(0 < len(b.ids) <= size for b in batches)
        assert all(len(b.ids) == len(b.vectors) for b in batches)
        assert all_vectors(store, batch_size=size) == expected


def test_iter_vectors_leaves_out_expired_only_when_asked(store: Store) -> None:
    [gone] = put(store, entry("gone", t=0.0, exp=5.0), now=0.0)
    [edge] = put(store, entry("edge", t=0.0, exp=10.0), now=0.0)
    [live] = put(store, entry("live", t=0.0, exp=10.5), now=0.0)
    [forever] = put(store, entry("forever", t=0.0), now=0.0)
    ids_at = {
        now: [i for vs in all_vectors(store, now=now).values() for i, _ in vs]
        for now in (None, 10.0)
    }
    assert ids_at[None] == [gone, edge, live, forever]
    assert ids_at[10.0] == [live, forever]


def test_iter_answers_gives_the_answers_of_the_entries_iter_vectors_gives(store: Store) -> None:
    """The :class:`AnswerScan` capability (SQLite, PostgreSQL, Redis, memory): the
    same entries as ``iter_vectors``, in the same order, with their stored responses;
    the others have no such member (the prototype tables then read the answers by id)."""
    scan = answer_scan(store)
    if scan is None:
        assert not hasattr(store, "iter_answers")
        return
    assert list(scan.iter_answers()) == []
    rng = Random(5)
    for i in range(30):
        new = entry(
            f"k{i}",
            ns=rng.choice("ab"),
            exp=None if i % 5 else 10.0,
            vector=None if i % 7 == 3 else b"",
            response=f"answer {i % 4}",
        )
        put(store, new)
    for now in (None, 20.0):
        for size in (1, 4, 1000):
            answers: dict[str, list[tuple[int, str]]] = {}
            for batch in scan.iter_answers(now=now, batch_size=size):
                assert 0 < len(batch.ids) == len(batch.responses) <= size
                answers.setdefault(batch.namespace, []).extend(
                    zip(batch.ids, batch.responses, strict=True)
                )
            vectors = all_vectors(store, now=now)
            assert {ns: [i for i, _ in rows] for ns, rows in answers.items()} == {
                ns: [i for i, _ in rows] for ns, rows in vectors.items()
            }
            stored = store.get_by_ids([i for rows in answers.values() for i, _ in rows])
            assert all(stored[i].response == r for rows in answers.values() for i, r in rows)
    assert sum(len(rows) for rows in all_vectors(store, now=20.0).values()) == 21  # 26 - 5


def test_iter_vectors_of_an_empty_store(store: Store) -> None:
    assert list(store.iter_vectors()) == []
    put(store, entry("novec", vector=None))
    assert list(store.iter_vectors()) == []


def test_get_vectors(store: Store) -> None:
    [a] = put(store, entry("a", vector=b"\x00\x01\xff"))
    [b] = put(store, entry("b", ns="b", vector=b"bb"))
    [c] = put(store, entry("c", vector=None))
    assert store.get_vectors([b, a, c, 999_999]) == {a: ("a", b"\x00\x01\xff"), b: ("b", b"bb")}
    assert store.get_vectors([]) == {}


# -- change log ---------------------------------------------------------------------------
def test_a_new_store_has_no_changes(store: Store) -> None:
    assert store.seq() == 0
    assert store.changes_since(0) == []


def test_changes_log_puts_and_deletes_in_order(store: Store) -> None:
    [x] = put(store, entry("x"))
    assert store.seq() == 1
    assert store.changes_since(0) == [Change(1, "put", x, "a")]
    [y] = put(store, entry("y", ns="b"))
    [x2] = put(store, entry("x"))  # a replacement: the delete, then the put
    store.delete_by_key(key("y", "b"))
    changes = store.changes_since(1)
    assert changes == [
        Change(2, "put", y, "b"),
        Change(3, "delete", x, "a"),
        Change(4, "put", x2, "a"),
        Change(5, "delete", y, "b"),
    ]
    assert store.seq() == 5
    assert store.changes_since(5) == []
    assert store.changes_since(3) == changes[2:]


# -- identity: a reader's position is (identity, seq) ------------------------------------
def test_identity_is_stable_and_names_one_store(store_factory: StoreFactory) -> None:
    store, other = store_factory(), store_factory()
    identity = store.identity()
    assert isinstance(identity, str)
    assert identity
    put(store, entry("x"))
    store.clear()
    assert store.identity() == identity  # writes and clear keep it
    assert other.identity() != identity


def test_changes_since_a_sequence_the_store_never_reached_is_none(store: Store) -> None:
    # The store went backwards (lost its tail, restarted empty): the caller must rebuild.
    put(store, entry("x"), entry("y"))
    assert store.changes_since(2) == []
    assert store.changes_since(3) is None
    assert store.changes_since(99, store.identity()) is None


def test_changes_since_checks_the_identity(store_factory: StoreFactory) -> None:
    store, other = store_factory(), store_factory()
    [x] = put(store, entry("x"))
    mine = store.identity()
    assert store.changes_since(0, mine) == [Change(1, "put", x, "a")]
    assert store.changes_since(1, mine) == []
    assert store.changes_since(0, other.identity()) is None
    assert store.changes_since(1, other.identity()) is None  # even when nothing changed


def test_get_by_ids_with_vectors(store: Store) -> None:
    a, b = entry("a"), entry("b", vector=None)
    ids = put(store, a, b)
    plain = store.get_by_ids(ids)
    assert [plain[i].vector for i in ids] == [None, None]
    got = store.get_by_ids([*ids, 999], vectors=True)
    assert set(got) == set(ids)
    assert got[ids[0]] == StoredEntry(*astuple(stored(a, ids[0]))[:8], a.vector)
    assert got[ids[1]] == stored(b, ids[1])  # stored without a vector


def test_identity_survives_reopening(persistent_factory: StoreFactory) -> None:
    store = persistent_factory()
    put(store, entry("x"))
    identity = store.identity()
    store = persistent_factory.reopen(store)
    assert store.identity() == identity
    assert store.changes_since(1, identity) == []


def test_every_kind_of_removal_is_logged(store: Store) -> None:
    a, b, c = put(store, entry("a", t=0.0, exp=1.0), entry("b", t=0.0), entry("c", t=0.0))
    [d] = put(store, entry("d", ns="d"))
    seq = store.seq()
    store.delete_expired(5.0)
    store.delete_ids([b])
    result = store.put_many([entry("e", t=9.0)], now=9.0, limits=Limits(namespace_quota=1))
    assert result.evicted == [(c, "a")]
    [e] = result.ids
    store.clear()
    changes = store.changes_since(seq)
    assert changes is not None
    assert [c.seq for c in changes] == list(range(seq + 1, seq + len(changes) + 1))
    ops = [(ch.op, ch.entry_id, ch.namespace) for ch in changes]
    assert ops[:4] == [("delete", a, "a"), ("delete", b, "a"), ("put", e, "a"), ("delete", c, "a")]
    # The order of one clear's deletes is the store's business.
    assert sorted(ops[4:]) == [("delete", d, "d"), ("delete", e, "a")]


def test_prune_changes(store: Store) -> None:
    ids = [put(store, entry(f"k{i}"))[0] for i in range(6)]
    assert store.prune_changes(10) == 0
    assert store.prune_changes(2) == 4
    assert store.prune_changes(2) == 0
    assert store.changes_since(3) is None
    assert store.changes_since(0) is None
    assert store.changes_since(4) == [Change(5, "put", ids[4], "a"), Change(6, "put", ids[5], "a")]
    assert store.changes_since(6) == []
    assert store.prune_changes(0) == 2
    assert store.seq() == 6
    assert store.changes_since(6) == []
    assert store.changes_since(5) is None
    put(store, entry("more"))
    assert store.seq() == 7
    assert store.changes_since(6) is not None
    assert len(store.changes_since(6) or []) == 1


def test_change_log_keeps_at_most_max_changes(store_factory: StoreFactory) -> None:
    store = store_factory(max_changes=5)
    rng = Random(3)
    for _ in range(300):
        op = rng.random()
        if op < 0.6:
            put(store, entry(f"k{rng.randrange(30)}"))
        elif op < 0.9:
            store.delete_by_key(key(f"k{rng.randrange(30)}"))
        else:
            store.clear()
        last = store.seq()
        kept = store.changes_since(max(0, last - 5))
        assert kept is not None
        assert len(kept) == min(5, last)
        if last > 5:
            assert store.changes_since(last - 6) is None


# -- closing ------------------------------------------------------------------------------
CALLS: dict[str, Callable[[Store], object]] = {
    "get_meta": lambda s: s.get_meta("dim"),
    "set_meta": lambda s: s.set_meta({"dim": "3"}),
    "get_by_key": lambda s: s.get_by_key(b"k"),
    "get_by_ids": lambda s: s.get_by_ids([1]),
    "get_by_ids_empty": lambda s: s.get_by_ids([]),
    "put_many": lambda s: s.put_many([entry("x")], now=0.0),
    "put_many_empty": lambda s: s.put_many([], now=0.0),
    "delete_by_key": lambda s: s.delete_by_key(b"k"),
    "delete_ids": lambda s: s.delete_ids([1]),
    "delete_expired": lambda s: s.delete_expired(0.0),
    "clear": lambda s: s.clear(),
    "touch": lambda s: s.touch({1: 1.0}),
    "touch_empty": lambda s: s.touch({}),
    "count": lambda s: s.count(),
    "namespace_counts": lambda s: s.namespace_counts(),
    "iter_vectors": lambda s: list(s.iter_vectors()),
    "get_vectors": lambda s: s.get_vectors([1]),
    "get_vectors_empty": lambda s: s.get_vectors([]),
    "seq": lambda s: s.seq(),
    "changes_since": lambda s: s.changes_since(0),
    "identity": lambda s: s.identity(),
    "prune_changes": lambda s: s.prune_changes(0),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_every_call_after_close_raises(store: Store, call: Callable[[Store], object]) -> None:
    put(store, entry("x"))
    store.close()
    with pytest.raises(CacheClosedError):
        call(store)


def test_close_is_idempotent(store: Store) -> None:
    store.close()
    store.close()
    with pytest.raises(CacheClosedError):
        store.count()


# -- text and bytes -----------------------------------------------------------------------
ODD_TEXTS = (
    "nul\x00inside\x00",
    "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u202eRTL override\u202c",
    "e\u0301 a\u0308 \u1100\u1161\u11a8 Z\u0351\u0345\u036b",  # combining marks
    "\U0001f600\U0001f469\u200d\U0001f4bb\U0001f1fa\U0001f1f3 \U00010348",  # 4-byte
    "",
    " \t\n\r\x0b\x0c ",
    "\ufeffBOM \ufffd \uffff",
)


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_odd_text_round_trips(store_factory: StoreFactory, text: str) -> None:
    store = store_factory()
    ns = text or "ns"
    new = NewEntry(
        key=text.encode() + b"\x00\xff",
        namespace=ns,
        query=text,
        response=text * 3,
        metadata=f'{{"t":"{text}"}}',
        vector=text.encode(),
        created_at=1.0,
        expires_at=None,
    )
    [entry_id] = put(store, new)
    if store_factory.persistent:
        store = store_factory.reopen(store)
    assert store.get_by_key(new.key) == stored(new, entry_id)
    assert store.get_by_ids([entry_id]) == {entry_id: stored(new, entry_id)}
    assert store.namespace_counts() == {ns: 1}
    assert store.count(ns) == 1
    assert all_vectors(store) == {ns: [(entry_id, text.encode())]}
    assert store.changes_since(0) == [Change(1, "put", entry_id, ns)]
    assert store.clear(ns) == 1


def test_large_values_round_trip(store_factory: StoreFactory) -> None:
    store = store_factory()
    rng = Random(11)
    big_text = "".join(rng.choices("ab\u00e9\u4e2d\U0001f600 \x00", k=1_200_000))
    big_vector = rng.randbytes(4 * 4096)
    new = entry(
        "big",
        query=big_text[:40_000],
        response=big_text,
        vector=big_vector,
        metadata='{"x":"' + "m" * 70_000 + '"}',
    )
    [entry_id] = put(store, new)
    if store_factory.persistent:
        store = store_factory.reopen(store)
    assert store.get_by_key(new.key) == stored(new, entry_id)
    assert store.get_vectors([entry_id]) == {entry_id: ("a", big_vector)}


ENTRY_TEXT = st.text(max_size=40)


@pytest.mark.slow
def test_arbitrary_text_and_bytes_round_trip(store_factory: StoreFactory) -> None:
    store = store_factory()
    written: list[tuple[NewEntry, int]] = []

    @settings(
        max_examples=60,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        key_bytes=st.binary(max_size=32),
        namespace=st.text(min_size=1, max_size=20),
        query=ENTRY_TEXT,
        response=ENTRY_TEXT,
        metadata=st.none() | ENTRY_TEXT,
        vector=st.none() | st.binary(min_size=1, max_size=64),
        created_at=st.floats(allow_nan=False, allow_infinity=False, width=64),
        expires_at=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    )
    def check(
        key_bytes: bytes,
        namespace: str,
        query: str,
        response: str,
        metadata: str | None,
        vector: bytes | None,
        created_at: float,
        expires_at: float | None,
    ) -> None:
        new = NewEntry(
            # unique per example: the same generated key must not replace an earlier one
            len(written).to_bytes(4, "big") + key_bytes,
            namespace,
            query,
            response,
            metadata,
            vector,
            created_at,
            expires_at,
        )
        [entry_id] = put(store, new)
        assert store.get_by_key(new.key) == stored(new, entry_id)
        got = store.get_vectors([entry_id])
        assert got == ({} if vector is None else {entry_id: (namespace, vector)})
        written.append((new, entry_id))

    check()
    assert written
    if store_factory.persistent:
        store = store_factory.reopen(store)
    by_id = store.get_by_ids([i for _, i in written])
    assert by_id == {i: stored(new, i) for new, i in written}


# -- threads ------------------------------------------------------------------------------
def test_concurrent_use_keeps_the_store_consistent(store: Store) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work(seed: int) -> None:
        rng = Random(seed)
        try:
            start.wait()
            for i in range(150):
                ns = rng.choice("ab")
                name = f"k{rng.randrange(20)}"
                op = rng.random()
                if op < 0.5:
                    put(
                        store,
                        entry(name, ns=ns, t=float(i)),
                        now=float(i),
                        limits=Limits(namespace_quota=12),
                    )
                elif op < 0.8:
                    store.get_by_key(key(name, ns))
                elif op < 0.95:
                    store.delete_by_key(key(name, ns))
                else:
                    store.touch({rng.randrange(1, 200): float(i)})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    counts = store.namespace_counts()
    assert sum(counts.values()) == store.count()
    for ns, n in counts.items():
        assert n == store.count(ns) <= 12
        live = [k for k in range(20) if store.get_by_key(key(f"k{k}", ns)) is not None]
        assert len(live) == n
    ids = {i for vs in all_vectors(store).values() for i, _ in vs}
    assert len(ids) == store.count()


# -- persistence --------------------------------------------------------------------------
def test_everything_survives_reopening(persistent_factory: StoreFactory) -> None:
    factory = persistent_factory
    store = factory(max_changes=50)
    store.set_meta({"dim": "3", "fingerprint": "fp"})
    news = [entry("a", t=1.0, exp=100.0, metadata='{"m":1}'), entry("b", ns="b", t=2.0)]
    ids = put(store, *news, now=2.0)
    [gone] = put(store, entry("gone", t=3.0), now=3.0)
    store.delete_ids([gone])
    seq, changes = store.seq(), store.changes_since(0)

    store = factory.reopen(store)
    assert (store.get_meta("dim"), store.get_meta("fingerprint")) == ("3", "fp")
    for new, entry_id in zip(news, ids, strict=True):
        assert store.get_by_key(new.key) == stored(new, entry_id)
    assert store.namespace_counts() == {"a": 1, "b": 1}
    assert store.seq() == seq
    assert store.changes_since(0) == changes
    assert all_vectors(store) == {
        "a": [(ids[0], news[0].vector)],
        "b": [(ids[1], news[1].vector)],
    }
    [after] = put(store, entry("c"))
    assert after > gone  # ids are not reused across reopening either


def test_recency_survives_reopening(persistent_factory: StoreFactory) -> None:
    factory = persistent_factory
    store = factory()
    ids = [put(store, entry(f"k{i}", t=float(i)), now=float(i))[0] for i in range(3)]
    store.touch({ids[0]: 10.0, ids[1]: 11.0})
    store = factory.reopen(store)
    result = store.put_many([entry("new", t=12.0)], now=12.0, limits=Limits(namespace_quota=3))
    assert result.evicted == [(ids[2], "a")]
    store = factory.reopen(store)
    result = store.put_many([entry("new2", t=13.0)], now=13.0, limits=Limits(namespace_quota=3))
    assert result.evicted == [(ids[0], "a")]


def test_a_reopened_store_still_respects_max_changes(persistent_factory: StoreFactory) -> None:
    store = persistent_factory(max_changes=3)
    for i in range(10):
        put(store, entry(f"k{i}"))
    store = persistent_factory.reopen(store)
    assert store.changes_since(7) is not None
    assert store.changes_since(6) is None
    put(store, entry("more"))
    assert store.changes_since(8) is not None
    assert store.changes_since(7) is None


# -- capabilities (optional members; see semcache._store._base) -----------------------------
def test_local_path_is_a_file_that_holds_the_data_or_none(store_factory: StoreFactory) -> None:
    store = store_factory()
    path = local_path(store)
    if path is None:
        assert file_backup(store) is None  # nothing to copy or keep snapshots beside
        assert claim_store(store, "single") is None
        return
    put(store, entry("k"))
    assert path.is_file()
    assert path.parent.is_relative_to(store_factory.root)


def test_claim_locks_the_local_file_until_released(store_factory: StoreFactory) -> None:
    # Another process's conflicting claim is refused: tests/test_multiprocess.py.
    store = store_factory()
    claim = claim_store(store, "single")
    if claim is None:
        assert local_path(store) is None  # only a local file has an owner to enforce
        return
    path = local_path(store)
    assert path is not None
    assert os.path.exists(lock_path(str(path)))
    claim.release()
    again = claim_store(store, "shared")
    assert again is not None
    again.release()


def test_a_backup_copy_passes_its_checks_and_states_its_facts(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    store = store_factory()
    backup = file_backup(store)
    if backup is None:
        return  # checkpoints refuse such a store (tests/test_checkpoint.py)
    store.set_meta({"dim": "4", "vector_dtype": "float32"})
    rows = np.eye(4, dtype=np.float32)
    put(store, entry("k1", vector=rows[0].tobytes()), entry("k2", vector=rows[1].tobytes()))
    copy = tmp_path / "copy"
    backup.backup(copy)
    backup.check_copy(copy)
    facts = backup.inspect_copy(copy)
    assert facts["entries"] == store.namespace_counts() == {"a": 2}
    assert (facts["seq"], facts["store_id"]) == (store.seq(), store.identity())
    conn = apsw.Connection(str(copy))  # a copy with a table of its own is refused
    conn.execute("CREATE TABLE extra(x)")
    conn.close()
    with pytest.raises(CheckpointFormatError):
        backup.check_copy(copy)


def test_search_index_factory_is_none_or_builds_live_views(store_factory: StoreFactory) -> None:
    store = store_factory()
    try:
        factory = search_index_factory(store)
    except ConfigurationError:
        return  # the store searches, but not here (PostgreSQL without pgvector)
    if factory is None:
        return
    store.set_meta({"dim": "4", "vector_dtype": "float32"})
    near, far = np.eye(4, dtype=np.float32)[:2]
    [stored, _] = put(store, entry("k", vector=near.tobytes()), entry("f", vector=far.tobytes()))
    [elsewhere] = put(store, entry("k", "b", vector=near.tobytes()))
    index = factory("a", lambda: 0.0, 4, np.dtype(np.float32))
    # A live view of the server's rows: the SearchIndex contract, and no snapshot (a
    # VectorIndex would promise save/load, which a server-side index cannot keep).
    assert isinstance(index, SearchIndex)
    assert not isinstance(index, VectorIndex)
    assert len(index) == 2
    assert stored in index
    assert elsewhere not in index
    ids, _ = index.search(near, 1)
    assert ids.tolist() == [stored]
    with pytest.raises(ValueError):
        index.search(near, 0)
    index.close()
    with pytest.raises(CacheClosedError):
        len(index)


class _Bare:
    """A third-party store written before the capabilities: none of their members."""


def test_a_store_without_a_capability_is_treated_as_lacking_it() -> None:
    bare = _Bare()
    assert local_path(bare) is None
    assert claim_store(bare, "single") is None
    assert file_backup(bare) is None
    assert search_index_factory(bare) is None


class _LegacySearch:
    """A third-party store that searched before ``search_index_factory`` existed."""

    can_search = True
    search_unavailable = None

    def count(self, namespace: str | None = None) -> int:
        return 1

    def get_by_ids(self, ids: Any, *, vectors: bool = False) -> dict[int, Any]:
        return {}

    def search(self, namespace: str, vector: Any, k: int, *, now: float | None = None) -> Any:
        return np.array([7], dtype=np.int64), np.array([1.0], dtype=np.float32)


def test_a_store_that_searched_before_the_capability_still_searches() -> None:
    factory = search_index_factory(_LegacySearch())
    assert factory is not None
    index = factory("a", lambda: 0.0, 4, np.dtype(np.float32))
    assert index.search(np.ones(4, dtype=np.float32), 1)[0].tolist() == [7]
