"""A store that lost its data or its tail is never served as the one a process indexed.

Two shared-mode caches on one store: the writer puts ten entries, the reader indexes
them and serves one; then the store is reset behind the reader's back (a Redis restart
without persistence, ``FLUSHDB``, a restart from an older RDB file, a PostgreSQL schema
dropped and created again, a DynamoDB table recreated or restored from an older copy,
a SQLite file restored from an older copy) and the writer
puts ten other entries, which get the old entries' ids again. The reader must answer
a paraphrase of an old question with a miss, never with a new entry's answer, and must
serve the new entries once it caught up.

Also: ``RedisStore.drop`` deletes its own keys only, never those of a store whose
prefix starts with its own.
"""

from __future__ import annotations

import multiprocessing
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import apsw
import numpy as np
import numpy.typing as npt
import pytest
import redis
from conftest import unit_rows
from test_store_conformance import (
    drop_dynamodb,
    drop_postgres,
    dynamodb_client,
    server_name,
    service_url,
)

from semcache import FlatIndex, SemanticCache
from semcache._cache import engine_of
from semcache._store import DynamoDBStore, PostgresStore, RedisStore, SQLiteStore, Store

DIM = 16
THRESHOLD = 0.9


OLD_Q = [f"old question {i}" for i in range(10)]
OLD_A = [f"old answer {i}" for i in range(10)]
OLD_V = unit_rows(10, DIM, 1)
NEW_Q = [f"new question {i}" for i in range(10)]
NEW_A = [f"new answer {i}" for i in range(10)]
NEW_V = unit_rows(10, DIM, 2)
# Far apart: no old vector is near a new one, so any hit across them is a wrong answer.
assert float(np.max(OLD_V @ NEW_V.T)) < THRESHOLD


def open_cache(store: Store) -> SemanticCache:
    return SemanticCache(store=store, multi_process_mode="shared", similarity_threshold=THRESHOLD)


def answer(cache: SemanticCache, query: str, vector: npt.NDArray[np.float32]) -> str | None:
    hit = cache.get(query, embedding=vector)
    return None if hit is None else hit.response


def check_reader(ask: Any, old: list[int], new: list[int]) -> None:
    """After the reset: paraphrases of old questions miss; new entries are served."""
    for i in old:
        assert ask(f"paraphrase of {OLD_Q[i]}", OLD_V[i]) is None, f"old question {i}"
    for i in new:
        assert ask(f"paraphrase of {NEW_Q[i]}", NEW_V[i]) == NEW_A[i], f"new question {i}"


# -- Redis: a private server, restarted and flushed, and a reader in another process ----
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test only (its own port and folder, no persistence unless
    a test asks for an RDB file with ``SAVE``), which the test may restart or flush."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[str] | None = None
        self.drain: threading.Thread | None = None

    def start(self) -> None:
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "dir": str(self.directory),
            "save": "",
            "appendonly": "no",
            "logfile": "",
            "daemonize": "no",
        }
        self.proc = subprocess.Popen(
            ["redis-server", *(arg for name, v in options.items() for arg in (f"--{name}", v))],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # blocks until the server says it is ready
            if "Ready to accept connections" in line:
                # Keep draining its log, so the server never blocks on a full pipe.
                self.drain = threading.Thread(target=self.proc.stdout.read, daemon=True)
                self.drain.start()
                return
        code = self.proc.wait()
        self.proc.stdout.close()
        raise RuntimeError(f"redis-server exited with {code}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # no save points: nothing is written on the way out
            self.proc.wait(timeout=60)
            if self.drain is not None:
                self.drain.join()  # the log ends with the process
            assert self.proc.stdout is not None
            self.proc.stdout.close()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def command(self, *args: str) -> Any:
        with redis.Redis(port=self.port) as client:
            return client.execute_command(*args)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def reader_process(conn: Connection, url: str) -> None:
    """The reader: a shared-mode cache in its own process, asked over ``conn``."""
    cache = open_cache(RedisStore(url, prefix="app:"))
    try:
        while True:
            request = conn.recv()
            if request is None:
                break
            query, vector = request
            conn.send(answer(cache, query, np.asarray(vector, dtype=np.float32)))
    finally:
        cache.close()


@pytest.mark.slow
@pytest.mark.parametrize("reset", ["restart", "flushdb", "older_rdb"])
def test_redis_reset_is_never_served_as_the_store_it_was(
    private_redis: PrivateRedis, reset: str
) -> None:
    writer = open_cache(RedisStore(private_redis.url, prefix="app:"))
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    reader = ctx.Process(target=reader_process, args=(there, private_redis.url))
    try:
        if reset == "older_rdb":
            # The server keeps an RDB file of the first five entries only: a restart
            # brings the store back five changes behind (as does a failover to a
            # lagging replica), with its identity, and the ids 6..10 are issued again.
            writer.put_many(OLD_Q[:5], OLD_A[:5], embeddings=OLD_V[:5])
            private_redis.command("SAVE")
            writer.put_many(OLD_Q[5:], OLD_A[5:], embeddings=OLD_V[5:])
        else:
            writer.put_many(OLD_Q, OLD_A, embeddings=OLD_V)
        reader.start()

        def ask(query: str, vector: npt.NDArray[np.float32]) -> str | None:
            here.send((query, vector.tolist()))
            got: str | None = here.recv()
            return got

        assert ask("paraphrase of old question 7", OLD_V[7]) == OLD_A[7]
        if reset == "flushdb":
            private_redis.command("FLUSHDB")
        else:
            private_redis.restart()
        writer.put_many(NEW_Q, NEW_A, embeddings=NEW_V)
        # The old ids now name new entries (restart, flushdb: 1..10; older_rdb: 6..15).
        if reset == "older_rdb":
            check_reader(ask, old=list(range(5, 10)), new=list(range(10)))
            for i in range(5):  # the entries the RDB file kept are still served
                assert ask(f"paraphrase of {OLD_Q[i]}", OLD_V[i]) == OLD_A[i]
        else:
            check_reader(ask, old=list(range(10)), new=list(range(10)))
    finally:
        here.send(None)
        reader.join(timeout=60)
        writer.close()
    assert reader.exitcode == 0


def test_a_flushed_store_gets_its_settings_back(private_redis: PrivateRedis) -> None:
    """After FLUSHDB the first process that notices records its settings again, so a
    process opened later still knows the dimension and the vector dtype."""
    cache = open_cache(RedisStore(private_redis.url, prefix="app:"))
    try:
        cache.put_many(OLD_Q, OLD_A, embeddings=OLD_V)
        private_redis.command("FLUSHDB")
        assert answer(cache, OLD_Q[0], OLD_V[0]) is None
        store = RedisStore(private_redis.url, prefix="app:")
        assert (store.get_meta("dim"), store.get_meta("vector_dtype")) == (str(DIM), "float32")
        store.close()
    finally:
        cache.close()


# -- PostgreSQL: the schema dropped and created again -------------------------------------
@pytest.mark.slow
def test_postgres_schema_recreated_is_never_served_as_the_old_one(tmp_path: Path) -> None:
    dsn, schema = service_url("SEMCACHE_POSTGRES_DSN"), server_name(tmp_path)
    writer = open_cache(PostgresStore(dsn, schema=schema))
    reader = open_cache(PostgresStore(dsn, schema=schema))
    try:
        writer.put_many(OLD_Q, OLD_A, embeddings=OLD_V)
        assert answer(reader, "paraphrase of old question 3", OLD_V[3]) == OLD_A[3]
        writer.close()
        PostgresStore(dsn, schema=schema).drop()
        writer = open_cache(PostgresStore(dsn, schema=schema))  # creates it again
        writer.put_many(NEW_Q, NEW_A, embeddings=NEW_V)  # ids 1..10 again
        check_reader(lambda q, v: answer(reader, q, v), old=list(range(10)), new=list(range(10)))
    finally:
        reader.close()
        writer.close()
        drop_postgres(tmp_path)


# -- DynamoDB: the table recreated, or restored from an older copy ---------------------
@pytest.mark.slow
@pytest.mark.parametrize("reset", ["recreated", "older_copy"])
def test_dynamodb_table_reset_is_never_served_as_the_old_one(tmp_path: Path, reset: str) -> None:
    client = dynamodb_client()
    table = f"semcache-{server_name(tmp_path)}"

    def store() -> DynamoDBStore:
        return DynamoDBStore(table, client=client, create=True)

    writer, reader = open_cache(store()), open_cache(store())
    try:
        copy = client.scan(TableName=table, ConsistentRead=True)["Items"]  # settings only
        writer.put_many(OLD_Q, OLD_A, embeddings=OLD_V)
        assert answer(reader, "paraphrase of old question 3", OLD_V[3]) == OLD_A[3]
        writer.close()
        if reset == "recreated":
            DynamoDBStore(table, client=client).drop()
        else:  # a point-in-time restore: the same identity, an older sequence
            for item in client.scan(TableName=table, ConsistentRead=True)["Items"]:
                client.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})
            for item in copy:
                client.put_item(TableName=table, Item=item)
        writer = open_cache(store())
        writer.put_many(NEW_Q, NEW_A, embeddings=NEW_V)  # ids 1..10 again
        check_reader(lambda q, v: answer(reader, q, v), old=list(range(10)), new=list(range(10)))
    finally:
        reader.close()
        writer.close()
        drop_dynamodb(tmp_path)


# -- SQLite: the file restored from an older copy while both caches hold it open --------
def copy_database(source: Path, dest: Path) -> None:
    """SQLite's online backup: ``dest`` becomes a copy of ``source``, in place, while
    other connections hold either open (they see the new content at once)."""
    src, dst = apsw.Connection(str(source)), apsw.Connection(str(dest))
    try:
        with dst.backup("main", src, "main") as backup:
            backup.step()
    finally:
        src.close()
        dst.close()


def test_sqlite_file_restored_from_an_older_copy(tmp_path: Path) -> None:
    path, older = tmp_path / "cache.db", tmp_path / "older.db"
    writer = open_cache(SQLiteStore(path))
    reader = open_cache(SQLiteStore(path))
    try:
        writer.put_many(OLD_Q[:5], OLD_A[:5], embeddings=OLD_V[:5])
        copy_database(path, older)
        writer.put_many(OLD_Q[5:], OLD_A[5:], embeddings=OLD_V[5:])
        assert answer(reader, "paraphrase of old question 7", OLD_V[7]) == OLD_A[7]
        copy_database(older, path)  # five changes behind, the same identity
        writer.put_many(NEW_Q, NEW_A, embeddings=NEW_V)  # ids 6..15: past the reader
        check_reader(lambda q, v: answer(reader, q, v), old=list(range(5, 10)), new=list(range(10)))
        for i in range(5):  # the entries the older copy kept are still served
            assert answer(reader, f"paraphrase of {OLD_Q[i]}", OLD_V[i]) == OLD_A[i]
    finally:
        reader.close()
        writer.close()


def test_sqlite_restored_copy_behind_the_reader_is_rebuilt(tmp_path: Path) -> None:
    """The sequence went backwards and nobody wrote since: the reader notices at once."""
    path, older = tmp_path / "cache.db", tmp_path / "older.db"
    writer = open_cache(SQLiteStore(path))
    reader = open_cache(SQLiteStore(path))
    try:
        writer.put_many(OLD_Q[:5], OLD_A[:5], embeddings=OLD_V[:5])
        copy_database(path, older)
        writer.put_many(OLD_Q[5:], OLD_A[5:], embeddings=OLD_V[5:])
        assert answer(reader, "paraphrase of old question 7", OLD_V[7]) == OLD_A[7]
        copy_database(older, path)
        assert answer(reader, "paraphrase of old question 7", OLD_V[7]) is None
        assert reader.stats()["indexed"] == {"default": 5}
    finally:
        reader.close()
        writer.close()


# -- RedisStore.drop: its own keys only ------------------------------------------------------
def test_redis_drop_leaves_a_store_under_a_longer_prefix_alone(tmp_path: Path) -> None:
    url = service_url("SEMCACHE_REDIS_URL")
    base = f"semcache-test:{server_name(tmp_path)}:"
    outer = open_cache(RedisStore(url, prefix=base + "app:"))
    inner = open_cache(RedisStore(url, prefix=base + "app:v2:"))
    try:
        for ns in ("default", "v2", "lru"):
            outer.put_many(OLD_Q, OLD_A, embeddings=OLD_V, namespace=ns, ttl=3600)
            inner.put_many(NEW_Q, NEW_A, embeddings=NEW_V, namespace=ns, ttl=3600)
        before = inner.stats()["entries"]
        with redis.Redis.from_url(url) as admin:
            inner_keys = set(admin.scan_iter(match=base + "app:v2:*"))
            outer.close()
            RedisStore(url, prefix=base + "app:").drop()
            left = set(admin.scan_iter(match=base + "*"))
        assert left == inner_keys  # every key of the outer store went, no other
        inner.close()
        inner = open_cache(RedisStore(url, prefix=base + "app:v2:"))
        assert inner.stats()["entries"] == before
        for ns in ("default", "v2", "lru"):
            hit = inner.get(f"paraphrase of {NEW_Q[5]}", embedding=NEW_V[5], namespace=ns)
            assert hit is not None
            assert hit.response == NEW_A[5]
    finally:
        inner.close()
        RedisStore(url, prefix=base + "app:v2:").drop()


def test_sqlite_file_deleted_and_created_again(tmp_path: Path) -> None:
    """The file (with its -wal, -shm and index snapshots) is deleted and a new cache is
    created at its path while the reader holds the old one open: the reader follows the
    path to the new store, and never serves the deleted one's entries."""
    path = tmp_path / "cache.db"
    writer = open_cache(SQLiteStore(path))
    reader = open_cache(SQLiteStore(path))
    try:
        writer.put_many(OLD_Q, OLD_A, embeddings=OLD_V)
        assert answer(reader, "paraphrase of old question 3", OLD_V[3]) == OLD_A[3]
        writer.close()
        for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        shutil.rmtree(tmp_path / "cache.db.index", ignore_errors=True)
        writer = open_cache(SQLiteStore(path))
        writer.put_many(NEW_Q, NEW_A, embeddings=NEW_V)  # ids 1..10 again
        check_reader(lambda q, v: answer(reader, q, v), old=list(range(10)), new=list(range(10)))
        assert reader.get(OLD_Q[3]) is None  # the exact layer reads the new file too
    finally:
        reader.close()
        writer.close()


# -- the candidate's own score ------------------------------------------------------------
def count_rebuilds(cache: SemanticCache) -> list[None]:
    """A list that grows by one at each rebuild of ``cache``'s indexes from now on."""
    rebuilds: list[None] = []
    indexes = engine_of(cache).indexes
    real = indexes.rebuild

    def counting(progress: Any = None) -> None:
        rebuilds.append(None)
        real(progress)

    indexes.rebuild = counting  # type: ignore[method-assign]
    return rebuilds


class LooseIndex(FlatIndex):
    """A custom index that reports every score 0.05 too high (as a lossy one may)."""

    def search(self, query: npt.ArrayLike, k: int) -> tuple[Any, Any]:
        ids, sims = super().search(query, k)
        return ids, sims + np.float32(0.05)


def test_a_candidate_is_served_at_its_own_score_and_a_loose_index_rebuilds_once(
    tmp_path: Path,
) -> None:
    """The threshold sees the score of the entry's stored vector, not the index's; an
    index whose scores differ is rebuilt once per store position, never at every get.
    (Single mode serves entries it holds in memory at the index's score, as before.)"""

    def factory(dim: int, dtype: Any, options: Any) -> LooseIndex:
        return LooseIndex(dim, dtype=dtype)

    cache = SemanticCache(
        str(tmp_path / "c.db"),
        index_backend=factory,
        similarity_threshold=THRESHOLD,
        multi_process_mode="shared",  # no in-memory entries: every candidate is read
    )
    rebuilds = count_rebuilds(cache)
    try:
        cache.put("q", "a", embedding=OLD_V[0])
        side = OLD_V[1] - (OLD_V[1] @ OLD_V[0]) * OLD_V[0]
        side /= np.linalg.norm(side)
        off = 0.88 * OLD_V[0] + np.sqrt(1 - 0.88**2) * side  # below the threshold
        near = 0.98 * OLD_V[0] + np.sqrt(1 - 0.98**2) * side
        for _ in range(3):
            assert cache.get("off", embedding=off) is None  # the index says 0.93
            hit = cache.get("near", embedding=near)
            assert hit is not None
            assert hit.response == "a"
            assert hit.similarity == pytest.approx(float(near @ OLD_V[0]), abs=1e-6)
        assert len(rebuilds) == 1
    finally:
        cache.close()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("backend", ["flat", "auto", "hnswlib", "faiss"])
def test_built_in_indexes_score_as_the_stored_vectors(
    tmp_path: Path, backend: str, dtype: str
) -> None:
    """Every built-in index scores a candidate as its stored vector does (within the
    tolerance), so a cache in normal use never takes its own index for out of date."""
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((500, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    cache = SemanticCache(
        str(tmp_path / "c.db"),
        index_backend=backend,
        vector_dtype=dtype,  # type: ignore[arg-type]
        multi_process_mode="shared",
        similarity_threshold=0.8,
        guards=None,  # lookups use placeholder texts
    )
    rebuilds = count_rebuilds(cache)
    try:
        cache.put_many(
            [f"q{i}" for i in range(500)], [f"a{i}" for i in range(500)], embeddings=vecs
        )
        noise = 0.05 * rng.standard_normal((100, DIM)).astype(np.float32)
        answers = [answer(cache, "paraphrase", vecs[i] + noise[i]) for i in range(100)]
        assert answers == [f"a{i}" for i in range(100)]
        assert not engine_of(cache).indexes.suspect
        assert rebuilds == []
    finally:
        cache.close()
