"""RedisStore beyond the conformance suite: a server that goes away (a get is a miss,
a put raises, the store reconnects), clients passed in, the key layout."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from test_store_conformance import drop_redis, entry, open_redis, server_name, service_url

from semcache import (
    ConfigurationError,
    SemanticCache,
    StoreError,
    StoreUnavailableError,
)
from semcache._store import RedisStore
from semcache.embedders import HashingEmbedder


class TcpProxy:
    """Forwards 127.0.0.1:port to a server; :meth:`cut` drops every connection and
    refuses new ones (the server looks unreachable), :meth:`restore` accepts again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()  # "connection refused" as far as the client can tell
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self.cut()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._listener.close()
        self._thread.join(timeout=5)


def redis_target() -> tuple[str, int]:
    parts = urlsplit(service_url("SEMCACHE_REDIS_URL"))
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    p = TcpProxy(redis_target())
    yield p
    p.close()


@pytest.fixture
def prefix(tmp_path: Path) -> Iterator[str]:
    yield f"semcache-test:{server_name(tmp_path)}:"
    drop_redis(tmp_path)


def test_unreachable_server_get_is_a_miss_put_raises_then_reconnects(
    proxy: TcpProxy, prefix: str
) -> None:
    store = RedisStore(
        f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, socket_timeout=2, connect_timeout=1
    )
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


def test_a_dropped_connection_is_reopened_transparently(proxy: TcpProxy, prefix: str) -> None:
    store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix)
    [entry_id] = store.put_many([entry("x")], now=0.0).ids
    proxy.cut()  # kills the pooled connection
    proxy.restore()
    assert store.get_by_ids([entry_id]).keys() == {entry_id}
    assert store.count() == 1
    store.close()


def test_unreachable_at_open_raises_store_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        with pytest.raises(StoreUnavailableError):
            RedisStore(f"redis://127.0.0.1:{port}/0", connect_timeout=0.5)
    assert issubclass(StoreUnavailableError, StoreError)


def test_a_client_passed_in_is_used_and_not_closed(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(service_url("SEMCACHE_REDIS_URL"))
    store = RedisStore(client=client, prefix=prefix)
    store.put_many([entry("x")], now=0.0)
    store.close()
    assert client.ping()
    assert client.exists(f"{prefix}k".encode()) == 1
    client.close()


def test_bad_configurations_are_refused() -> None:
    import redis

    url = service_url("SEMCACHE_REDIS_URL")
    with pytest.raises(ConfigurationError, match="exactly one"):
        RedisStore()
    with pytest.raises(ConfigurationError, match="exactly one"):
        RedisStore(url, client=redis.Redis.from_url(url))
    with pytest.raises(ConfigurationError, match="prefix"):
        RedisStore(url, prefix="")
    decoding = redis.Redis.from_url(url, decode_responses=True)
    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisStore(client=decoding)
    decoding.close()


def test_prefixes_keep_caches_apart(tmp_path: Path) -> None:
    a, b = open_redis(tmp_path / "a", {}), open_redis(tmp_path / "b", {})
    try:
        a.put_many([entry("x")], now=0.0)
        assert (a.count(), b.count()) == (1, 0)
        assert b.get_by_key(entry("x").key) is None
        assert b.seq() == 0
    finally:
        a.close()
        b.close()
        drop_redis(tmp_path / "a")
        drop_redis(tmp_path / "b")


def test_drop_deletes_every_key_under_the_prefix(tmp_path: Path) -> None:
    store = open_redis(tmp_path, {})
    store.set_meta({"dim": "3"})
    store.put_many([entry("x", exp=5.0), entry("y")], now=0.0)
    assert isinstance(store, RedisStore)
    assert store.drop() > 0
    again = open_redis(tmp_path, {})
    assert (again.count(), again.seq(), again.get_meta("dim")) == (0, 0, None)
    again.close()


def test_hits_from_memory_survive_an_outage_at_a_recency_flush(
    proxy: TcpProxy, prefix: str
) -> None:
    from semcache._cache import engine_of

    store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, connect_timeout=1)
    cache = SemanticCache(store=store, embedder=HashingEmbedder(32))
    engine_of(cache).recency.limit = 3  # flush every third distinct hit
    questions = [f"question number {i}" for i in range(3)]
    cache.put_many(questions, ["a0", "a1", "a2"])
    for q in questions:
        assert cache.get(q) is not None  # now in the hot map; the third get flushes
    proxy.cut()
    hits = [cache.get(q) for q in questions]  # from memory; the third flush fails quietly
    assert [h.response if h else None for h in hits] == ["a0", "a1", "a2"]
    proxy.restore()
    cache.close()  # writes the recency kept pending
