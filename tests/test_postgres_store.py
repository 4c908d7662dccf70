"""PostgresStore beyond the conformance suite: server-side search (pgvector), schema
versions, a server that goes away, and the change log's order under concurrent writers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import pytest
from conftest import unit_rows
from test_redis_store import TcpProxy
from test_store_conformance import drop_postgres, entry, server_name, service_url

from semcache import SchemaVersionError, SemanticCache, StoreUnavailableError
from semcache._store import NewEntry, PostgresStore
from semcache._store._postgres import SCHEMA_VERSION
from semcache.embedders import HashingEmbedder


@pytest.fixture
def schema(tmp_path: Path) -> Iterator[str]:
    yield server_name(tmp_path)
    drop_postgres(tmp_path)


def dsn() -> str:
    return service_url("SEMCACHE_POSTGRES_DSN")


def fill(
    store: PostgresStore, ns: str, vectors: npt.NDArray[np.float32], start: int = 0
) -> list[int]:
    ids: list[int] = []
    for lo in range(0, len(vectors), 500):
        batch = [
            NewEntry(f"{ns}/{start + lo + i}".encode(), ns, "q", "r", None, v.tobytes(), 0.0, None)
            for i, v in enumerate(vectors[lo : lo + 500])
        ]
        ids += store.put_many(batch, now=0.0).ids
    return ids


@pytest.mark.parametrize("exact_below", [0, 100_000], ids=["hnsw", "exact"])
def test_search_finds_the_nearest_neighbour_inside_a_small_namespace(
    schema: str, exact_below: int
) -> None:
    rng = np.random.default_rng(1)
    dim = 32
    store = PostgresStore(dsn(), schema=schema, exact_search_below=exact_below)
    assert store.can_search
    store.set_meta({"dim": str(dim), "vector_dtype": "float32"})
    big = unit_rows(2000, dim, rng)
    small = unit_rows(20, dim, rng)
    fill(store, "big", big)
    small_ids = fill(store, "small", small)
    queries = unit_rows(10, dim, rng)
    for q in queries:
        ids, sims = store.search("small", q, 3)
        truth = np.argsort(-(small @ q))[:3]
        assert ids.tolist() == [small_ids[i] for i in truth]
        np.testing.assert_allclose(sims, (small @ q)[truth], atol=1e-5)
    # In the big namespace the HNSW answer matches brute force on nearly every query.
    big_ids = store.search("big", queries[0], 1)[0]
    assert len(big_ids) == 1
    found = sum(store.search("big", q, 1)[0][0] == int(np.argmax(big @ q)) + 1 for q in queries)
    assert found >= 9
    store.close()


def test_search_leaves_out_expired_and_other_namespaces(schema: str) -> None:
    store = PostgresStore(dsn(), schema=schema)
    store.set_meta({"dim": "8", "vector_dtype": "float32"})
    v = np.eye(8, dtype=np.float32)
    store.put_many(
        [
            NewEntry(b"a", "n", "q", "r", None, v[0].tobytes(), 0.0, 5.0),
            NewEntry(b"b", "n", "q", "r", None, (v[0] + 0.5 * v[1]).tobytes(), 0.0, None),
        ],
        now=0.0,
    )
    store.put_many([NewEntry(b"c", "m", "q", "r", None, v[0].tobytes(), 0.0, None)], now=0.0)
    ids, _ = store.search("n", v[0], 5, now=1.0)
    assert len(ids) == 2
    ids, _ = store.search("n", v[0], 5, now=5.0)
    assert len(ids) == 1
    assert store.get_by_ids(ids.tolist())[int(ids[0])].key == b"b"
    assert store.search("nobody", v[0], 5)[0].tolist() == []
    store.close()


def test_vectors_written_without_search_are_backfilled(schema: str) -> None:
    plain = PostgresStore(dsn(), schema=schema, vector_search=False)
    plain.set_meta({"dim": "8", "vector_dtype": "float16"})
    vec = np.ones(8, dtype=np.float16)
    [entry_id] = plain.put_many(
        [NewEntry(b"k", "n", "q", "r", None, vec.tobytes(), 0.0, None)], now=0.0
    ).ids
    plain.close()
    searching = PostgresStore(dsn(), schema=schema)
    ids, sims = searching.search("n", np.ones(8), 1)
    assert ids.tolist() == [entry_id]
    assert sims[0] == pytest.approx(1.0, abs=1e-5)
    searching.close()


def test_a_newer_schema_is_refused(schema: str) -> None:
    store = PostgresStore(dsn(), schema=schema, vector_search=False)
    assert store.schema_version() == SCHEMA_VERSION
    store._read(  # a future semcache migrated this schema
        lambda c: c.execute("INSERT INTO schema_migrations VALUES (99, 'future', 0)")
    )
    store.close()
    with pytest.raises(SchemaVersionError, match="newer semcache"):
        PostgresStore(dsn(), schema=schema, vector_search=False)


def test_unreachable_server_get_is_a_miss_put_raises_then_reconnects(schema: str) -> None:
    parts = urlsplit(dsn())
    assert parts.hostname is not None
    assert parts.port is not None
    proxy = TcpProxy((parts.hostname, parts.port))
    try:
        proxied = parts._replace(netloc=f"postgres@127.0.0.1:{proxy.port}").geturl()
        store = PostgresStore(proxied, schema=schema, connect_timeout=2)
        cache = SemanticCache(store=store, embedder=HashingEmbedder(32))
        cache.put("What is the capital of France?", "Paris")
        proxy.cut()
        # Single mode: this process is the only writer, so what it wrote is still served
        # from memory; anything else needs the store and is a miss.
        assert cache.get("What is the capital of France?").response == "Paris"  # type: ignore[union-attr]
        assert cache.get("What is the capital of Spain?") is None
        with pytest.raises(StoreUnavailableError):
            cache.put("How tall is Mount Everest?", "8849 m")
        proxy.restore()
        assert cache.stats()["misses"]["store_unavailable"] == 1
        hit = cache.get("What is the capital of France?")
        assert hit is not None
        assert hit.response == "Paris"
        cache.put("How tall is Mount Everest?", "8849 m")
        assert cache.stats()["total_entries"] == 2
        cache.close()
    finally:
        proxy.close()


def test_change_log_readers_never_skip_a_change_of_concurrent_writers(schema: str) -> None:
    store = PostgresStore(dsn(), schema=schema, pool_size=6, vector_search=False)
    errors: list[BaseException] = []
    done = threading.Event()

    def write(w: int) -> None:
        try:
            for i in range(60):
                store.put_many([entry(f"w{w}-{i % 7}", ns=f"n{w % 2}")], now=float(i))
                if i % 5 == 0:
                    store.delete_by_key(entry(f"w{w}-{(i + 3) % 7}", ns=f"n{w % 2}").key)
        except BaseException as exc:  # reported below
            errors.append(exc)

    seen: list[int] = []

    def read() -> None:
        try:
            last = 0
            while not done.is_set() or last < store.seq():
                changes = store.changes_since(last)
                assert changes is not None
                for change in changes:
                    assert change.seq == last + 1, "a change was skipped"
                    last = change.seq
                    seen.append(change.seq)
        except BaseException as exc:  # reported below
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    reader.join()
    assert errors == []
    assert seen == list(range(1, store.seq() + 1))
    counts = store.namespace_counts()
    assert (
        sum(counts.values())
        == store.count()
        == len([i for vs in store.iter_vectors() for i in vs.ids])
    )
    store.close()
