"""A store in PostgreSQL, shared by many processes and hosts
(``pip install 'semcache-engine[postgres]'``), with optional server-side search (pgvector).

Concurrency. Every transaction that writes entries first locks the single row of
``log_state`` (``SELECT ... FOR UPDATE``), so writers run one at a time. That one lock
gives three guarantees at once:

* no lost updates and exact limits: a put counts, evicts and inserts with no other
  writer in between, so ``max_entries`` and namespace quotas hold across processes;
* the change log's order is the commit order. Sequence numbers come from the locked
  row (``seq = seq + 1``, inside the transaction), not from a ``bigserial``, whose
  values become visible out of order: a reader could read seq 8 committed before seq 7
  and skip 7 forever. With the lock, the writer that takes seq 8 cannot start before
  the one that took seq 7 has committed, so ``changes_since`` never skips a change;
* the log has no gaps (a rolled-back transaction rolls its numbers back).

Writes are short (a put is one pipelined round trip), so the serialization costs far
less than the LLM call that precedes every put. Recency updates (``touch``) take row
locks only; deadlocks and serialization failures are retried.

Connections. A small pool (``pool_size``) of autocommit connections, each transaction
explicit; a connection that breaks is discarded and a new one is opened on the next
call, so a restarted server is picked up without losing anything it committed. Reads
that fail on a broken connection are retried once on a fresh one; writes are not (the
caller learns that the put failed and may retry it).

Text is stored as UTF-8 ``bytea`` (PostgreSQL ``text`` cannot hold NUL characters,
which queries may contain).

The error budget's state (schema migration 2, see ``_postgres_quality``): an entry's
record in ``entries.record``, so it goes with the row; a put inserts it with the new
row (None: NULL); each namespace's counters in ``quality_counts``, only ever added to.
Each namespace's outcome log (schema migration 3): rows of ``quality_outcomes`` in
``seq`` order, appended and trimmed in one transaction under an advisory lock of the
namespace. ``clear`` deletes a namespace's counters and log (or all of them) with its
entries.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import numpy as np

from .._checks import check_int, check_seconds, show
from .._errors import (
    CacheClosedError,
    ConfigurationError,
    StoreError,
    StoreUnavailableError,
)
from ._base import (
    AnswerBatch,
    Change,
    Limits,
    NewEntry,
    NoLocalFile,
    PutResult,
    SearchIndexFactory,
    StoredEntry,
    VectorBatch,
    claim_settings,
)
from ._postgres_quality import PgQuality
from ._postgres_schema import (
    COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    entry_of,
    evict,
    import_psycopg,
    migrate,
    read_changes,
    row_pairs,
)
from ._postgres_search import PgvectorSearch
from ._quality_checks import check_new_records
from ._search import search_factory

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresStore"]

_T = TypeVar("_T")
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")
_RETRIES: Final = 8  # attempts of a transaction that hit a deadlock/serialization failure


class PostgresStore(PgvectorSearch, PgQuality, NoLocalFile):
    """A :class:`~semcache.Store` in a PostgreSQL schema, shared by processes and hosts.

    With pgvector installed in the database (``CREATE EXTENSION vector``, done here
    when the role may), the store also keeps each vector as a pgvector ``vector`` with
    an HNSW index (cosine ops) and can answer :meth:`search`: pass
    ``SemanticCache(store=..., index_backend="store")`` and the cache keeps no index in
    memory at all, the choice for very large caches. Without pgvector,
    :attr:`search_unavailable` says why and caches use their local index.

    Args:
        dsn: a libpq connection string or ``postgresql://`` URL.
        schema: the schema holding this cache's tables (created if missing); caches in
            different schemas share a database without seeing each other.
        max_changes: change-log records kept for :meth:`changes_since`.
        pool_size: connections kept open (one per concurrent call).
        connect_timeout: seconds to connect.
        vector_search: None (server-side search when pgvector is available), False
            (never), True (required: raise when pgvector is missing).
        ef_search: HNSW ``ef_search`` (candidate list size) of :meth:`search`; larger
            is slower and finds more of the true nearest neighbours.
        hnsw_m: HNSW ``m`` (links per node) of the index, when it is created.
        hnsw_ef_construction: HNSW ``ef_construction`` of the index.
        exact_search_below: namespaces with at most this many entries are searched
            exactly (a scan of that namespace) instead of through the HNSW index.

    Raises:
        MissingDependencyError: psycopg is not installed.
        ConfigurationError: an invalid schema name or option (each named in the
            message: ``pool_size`` 1..1024, ``ef_search`` 1..1000, ``hnsw_m`` 2..100,
            ``hnsw_ef_construction`` 4..1000, ints >= 0, finite timeouts > 0), checked
            before connecting; or ``vector_search=True`` without pgvector.
        SchemaVersionError: the schema was written by a newer semcache.
        StoreUnavailableError: the server cannot be reached.
        StoreError: another database error.
    """

    persistent = True

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "semcache",
        max_changes: int = 100_000,
        pool_size: int = 4,
        connect_timeout: float = 5.0,
        vector_search: bool | None = None,
        ef_search: int = 64,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 64,
        exact_search_below: int = 256,
    ) -> None:
        self._pg = import_psycopg()
        if not isinstance(dsn, str):
            raise ConfigurationError(f"dsn must be a str, got {show(dsn)}")
        if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema):
            raise ConfigurationError(
                f"schema {show(schema)} must be lowercase letters, digits and _ (at most 63)"
            )
        max_changes = check_int(max_changes, "max_changes", 0)
        pool_size = check_int(pool_size, "pool_size", 1, 1024)
        connect_timeout = check_seconds(connect_timeout, "connect_timeout")
        if vector_search is not None and not isinstance(vector_search, bool):
            raise ConfigurationError(
                f"vector_search must be None or a bool, got {show(vector_search)}"
            )
        ef_search = check_int(ef_search, "ef_search", 1, 1000)
        hnsw_m = check_int(hnsw_m, "hnsw_m", 2, 100)  # pgvector's ranges
        hnsw_ef_construction = check_int(hnsw_ef_construction, "hnsw_ef_construction", 4, 1000)
        exact_search_below = check_int(exact_search_below, "exact_search_below", 0)
        self.dsn = dsn
        self.schema = schema
        self._s = f'"{schema}"'
        self._max_changes = int(max_changes)
        self._connect_timeout = connect_timeout
        self._ef_search = int(ef_search)
        self._hnsw_m = int(hnsw_m)
        self._hnsw_ef = int(hnsw_ef_construction)
        self._exact_below = int(exact_search_below)
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._slots = threading.BoundedSemaphore(pool_size)
        self._closed = False
        self._search = False
        self._unavailable: str | None = "vector_search=False"
        self._hnsw_dims: set[int] = set()
        self._sizes: dict[str, tuple[int, float]] = {}  # namespace -> (count, when)
        self._dtype: np.dtype[Any] | None = None
        self._dim: int | None = None
        try:
            self._migrate()
            if vector_search is not False:
                self._unavailable = self._enable_search()
                self._search = self._unavailable is None
                if vector_search and not self._search:
                    raise ConfigurationError(f"vector_search=True but {self._unavailable}")
        except BaseException:
            self._discard_all()
            raise

    # -- connections ------------------------------------------------------------------
    def _connect(self) -> Any:
        pg = self._pg
        conn = pg.connect(
            self.dsn, autocommit=True, connect_timeout=max(1, round(self._connect_timeout))
        )
        try:
            conn.execute("SELECT set_config('search_path', %s, false)", (self._search_path(),))
            if self._search:
                conn.execute(f"SET hnsw.ef_search = {self._ef_search}")
                try:
                    conn.execute("SET hnsw.iterative_scan = strict_order")
                except pg.Error:  # pgvector < 0.8: ef_search alone
                    pass
        except BaseException:
            conn.close()
            raise
        return conn

    def _search_path(self) -> str:
        return f"{self._s}, public"

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        """A pooled connection; one that broke is closed instead of returned."""
        if self._closed:
            raise CacheClosedError("store is closed")
        if not self._slots.acquire(timeout=60):
            raise StoreUnavailableError("no PostgreSQL connection became free in 60 s")
        conn = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = self._connect()
            yield conn
        finally:
            if conn is not None:
                idle = conn.info.transaction_status == self._pg.pq.TransactionStatus.IDLE
                if conn.closed or conn.broken or not idle or self._closed:
                    conn.close()
                else:
                    with self._lock:
                        self._idle.append(conn)
            self._slots.release()

    def _discard_all(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _run(self, fn: Callable[[Any], _T], *, write: bool) -> _T:
        """Run ``fn(connection)`` with errors translated; retry deadlocks and
        serialization failures, and (reads only) a connection that broke."""
        pg = self._pg
        errors = pg.errors
        reconnected = False
        for attempt in range(_RETRIES):
            try:
                with self._conn() as conn:
                    return fn(conn)
            except (errors.DeadlockDetected, errors.SerializationFailure) as exc:
                if attempt == _RETRIES - 1:
                    raise StoreError(f"PostgreSQL: {exc}") from exc
                time.sleep(0.001 * (attempt + 1))
            except pg.OperationalError as exc:
                self._discard_all()  # the server may have restarted: drop them all
                if not write and not reconnected:
                    reconnected = True
                    continue
                raise StoreUnavailableError(f"PostgreSQL is unreachable: {exc}") from exc
            except pg.Error as exc:
                raise StoreError(f"PostgreSQL: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, fn: Callable[[Any], _T]) -> _T:
        return self._run(fn, write=False)

    def _fetchall(self, sql: str, args: Sequence[Any]) -> list[Any]:
        return self._read(lambda c: list(c.execute(sql, args).fetchall()))

    def _write(self, fn: Callable[[Any], _T]) -> _T:
        """``fn`` in one transaction that holds the writer lock (see the module doc)."""

        def run(conn: Any) -> _T:
            with conn.transaction():
                conn.execute("SELECT seq FROM log_state FOR UPDATE")
                return fn(conn)

        return self._run(run, write=True)

    # -- schema -----------------------------------------------------------------------
    def _migrate(self) -> None:
        self._run(lambda conn: migrate(conn, self._s, self.schema), write=True)

    def schema_version(self) -> int:
        """The schema version of this store's tables.

        Raises:
            StoreError: the database failed.
        """
        row = self._read(
            lambda c: c.execute("SELECT max(version) FROM schema_migrations").fetchone()
        )
        return int(row[0])

    def _load_settings(self) -> None:
        def run(conn: Any) -> list[Any]:
            return list(
                conn.execute(
                    "SELECT name, value FROM meta WHERE name IN ('dim', 'vector_dtype')"
                ).fetchall()
            )

        values = dict(self._read(run))
        self._set_settings(values)

    def _set_settings(self, values: Mapping[str, str]) -> None:
        if "vector_dtype" in values:
            try:
                self._dtype = np.dtype(values["vector_dtype"])
            except TypeError:
                self._dtype = None
        if "dim" in values:
            try:
                self._dim = int(values["dim"])
            except ValueError:
                self._dim = None

    # -- settings ---------------------------------------------------------------------
    def get_meta(self, name: str) -> str | None:
        row = self._read(
            lambda c: c.execute("SELECT value FROM meta WHERE name = %s", (name,)).fetchone()
        )
        return None if row is None else str(row[0])

    def set_meta(self, values: Mapping[str, str]) -> None:
        def run(conn: Any) -> None:
            self._set_meta(conn, values)

        if not values:
            self._read(lambda c: None)
            return
        self._run(lambda c: self._in_transaction(c, run), write=True)
        self._set_settings(values)

    @staticmethod
    def _in_transaction(conn: Any, fn: Callable[[Any], _T]) -> _T:
        with conn.transaction():
            return fn(conn)

    def _claim(self, conn: Any, meta: Mapping[str, str]) -> None:
        """Record the settings of ``meta`` the store lacks (:func:`claim_settings`): an
        insert that skips a name already there (it waits for another transaction that
        is inserting it), then a read of what is there now."""
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO meta(name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                list(meta.items()),
            )
            cur.execute("SELECT name, value FROM meta WHERE name = ANY(%s)", (list(meta),))
            held = {str(n): str(v) for n, v in cur.fetchall()}
        try:
            claim_settings(meta, held)
        finally:
            self._set_settings(held)  # the store's, whichever process recorded them

    @staticmethod
    def _set_meta(conn: Any, values: Mapping[str, str]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO meta(name, value) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

    # -- reads ------------------------------------------------------------------------
    def get_by_key(self, key: bytes) -> StoredEntry | None:
        row = self._read(
            lambda c: c.execute(
                f"SELECT {COLUMNS} FROM entries WHERE key = %s", (bytes(key),)
            ).fetchone()
        )
        return None if row is None else entry_of(row)

    def get_by_ids(self, ids: Sequence[int], *, vectors: bool = False) -> dict[int, StoredEntry]:
        wanted = [int(i) for i in ids]
        if not wanted:
            self._read(lambda c: None)
            return {}
        columns = COLUMNS + ", vector" if vectors else COLUMNS
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {columns} FROM entries WHERE id = ANY(%s)", (wanted,)
            ).fetchall()
        )
        return {int(r[0]): entry_of(r) for r in rows}

    def count(self, namespace: str | None = None) -> int:
        if namespace is None:
            sql, args = "SELECT coalesce(sum(entries), 0) FROM namespaces", ()
        else:
            sql = "SELECT entries FROM namespaces WHERE name = %s"
            args = (namespace.encode(),)  # type: ignore[assignment]
        row = self._read(lambda c: c.execute(sql, args).fetchone())
        return 0 if row is None else int(row[0])

    def namespace_counts(self) -> dict[str, int]:
        rows = self._read(
            lambda c: c.execute("SELECT name, entries FROM namespaces WHERE entries > 0").fetchall()
        )
        counts = {bytes(n).decode(): int(k) for n, k in rows}
        return {ns: counts[ns] for ns in sorted(counts)}

    def iter_vectors(
        self, *, now: float | None = None, batch_size: int = 65536
    ) -> Iterator[VectorBatch]:
        for ns, ids, values in self._pages("vector", now, batch_size):
            yield VectorBatch(ns, ids, values)

    def iter_answers(
        self, *, now: float | None = None, batch_size: int = 4096
    ) -> Iterator[AnswerBatch]:
        """See :meth:`~semcache._store.AnswerScan.iter_answers`."""
        for ns, ids, values in self._pages("response", now, batch_size):
            yield AnswerBatch(ns, ids, [value.decode() for value in values])

    def _pages(
        self, column: str, now: float | None, size: int
    ) -> Iterator[tuple[str, list[int], list[bytes]]]:
        """``(namespace, ids, column's bytes)`` of the entries with a vector (not expired
        at ``now`` if given), namespace by namespace, ``size`` rows per read by id."""
        expiry = "" if now is None else " AND (expires_at IS NULL OR expires_at > %s)"
        sql = (
            f"SELECT id, {column} FROM entries WHERE namespace = %s AND id > %s AND "
            f"vector IS NOT NULL{expiry} ORDER BY id LIMIT %s"
        )
        for ns in self.namespace_counts():
            after = 0
            while True:
                args: tuple[Any, ...] = (ns.encode(), after)
                args += (() if now is None else (now,)) + (size,)
                rows = self._fetchall(sql, args)
                if not rows:
                    break
                yield ns, [int(r[0]) for r in rows], [bytes(r[1]) for r in rows]
                if len(rows) < size:
                    break
                after = int(rows[-1][0])

    def get_vectors(self, ids: Sequence[int]) -> dict[int, tuple[str, bytes]]:
        wanted = [int(i) for i in ids]
        if not wanted:
            self._read(lambda c: None)
            return {}
        rows = self._read(
            lambda c: c.execute(
                "SELECT id, namespace, vector FROM entries WHERE vector IS NOT NULL "
                "AND id = ANY(%s)",
                (wanted,),
            ).fetchall()
        )
        return {int(i): (bytes(n).decode(), bytes(v)) for i, n, v in rows}

    # -- writes -----------------------------------------------------------------------
    def put_many(
        self,
        entries: Sequence[NewEntry],
        *,
        now: float,
        limits: Limits | None = None,
        touches: Mapping[int, float] | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> PutResult:
        check_new_records(entries)  # before anything is written
        if meta:  # (what the embeddings below are made for; _claim sets the store's)
            self._set_settings(meta)
        search = self._search
        if search and (self._dim is None or self._dtype is None) and entries:
            self._load_settings()  # another process may have recorded them since
        embeddings = [self._embedding(e.vector) if search else None for e in entries]
        dim = self._dim
        need_index = search and dim is not None and dim not in self._hnsw_dims and any(embeddings)
        if search:
            insert = (
                "INSERT INTO entries(key, namespace, query, response, metadata, created_at,"
                " expires_at, last_access, vector, record, embedding) VALUES"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::vector) RETURNING id"
            )
        else:
            insert = (
                "INSERT INTO entries(key, namespace, query, response, metadata, created_at,"
                " expires_at, last_access, vector, record) VALUES"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
            )

        def run(conn: Any) -> PutResult:
            result = PutResult()
            if meta:  # before any other write; the transaction rolls back if it raises
                self._claim(conn, meta)
            if touches:
                self._touch(conn, touches)
            if need_index:
                self._create_index(conn, dim)
            pending: list[tuple[Any, Any]] = []
            with conn.pipeline():
                for e, emb in zip(entries, embeddings, strict=True):
                    gone = conn.execute(
                        "DELETE FROM entries WHERE key = %s RETURNING id, namespace", (e.key,)
                    )
                    args: tuple[Any, ...] = (
                        e.key,
                        e.namespace.encode(),
                        e.query.encode(),
                        e.response.encode(),
                        None if e.metadata is None else e.metadata.encode(),
                        e.created_at,
                        e.expires_at,
                        e.created_at,
                        e.vector,
                        None if e.record is None else e.record.encode(),
                    )
                    if search:
                        args += (emb,)
                    pending.append((gone, conn.execute(insert, args)))
                evictions: list[tuple[bool, Any]] = []
                if entries and limits is not None:
                    ns = entries[0].namespace.encode()
                    if limits.namespace_quota is not None:
                        evictions += evict(conn, ns, limits.namespace_quota, now)
                    if limits.max_entries is not None:
                        evictions += evict(conn, None, limits.max_entries, now)
                if entries:
                    self._autoprune(conn)
            for gone, inserted in pending:
                result.replaced += row_pairs(gone.fetchall())
                result.ids.append(int(inserted.fetchone()[0]))
            expired = [p for is_exp, cur in evictions if is_exp for p in row_pairs(cur.fetchall())]
            lru = [p for is_exp, cur in evictions if not is_exp for p in row_pairs(cur.fetchall())]
            result.evicted = expired + lru
            result.expired_evicted = len(expired)
            return result

        result = self._write(run)
        if need_index and dim is not None:
            self._hnsw_dims.add(dim)
        return result

    def delete_by_key(self, key: bytes) -> tuple[int, str] | None:
        def run(conn: Any) -> list[tuple[int, str]]:
            rows = conn.execute(
                "DELETE FROM entries WHERE key = %s RETURNING id, namespace", (bytes(key),)
            ).fetchall()
            if rows:
                self._autoprune(conn)
            return row_pairs(rows)

        rows = self._write(run)
        return rows[0] if rows else None

    def delete_ids(self, ids: Sequence[int]) -> list[tuple[int, str]]:
        wanted = list(dict.fromkeys(int(i) for i in ids))
        if not wanted:
            self._read(lambda c: None)
            return []

        def run(conn: Any) -> list[tuple[int, str]]:
            rows = conn.execute(
                "DELETE FROM entries WHERE id = ANY(%s) RETURNING id, namespace", (wanted,)
            ).fetchall()
            if rows:
                self._autoprune(conn)
            return row_pairs(rows)

        return self._write(run)

    def delete_expired(self, now: float, namespace: str | None = None) -> list[tuple[int, str]]:
        sql = "DELETE FROM entries WHERE expires_at <= %s"
        args: tuple[Any, ...] = (now,)
        if namespace is not None:
            sql += " AND namespace = %s"
            args += (namespace.encode(),)

        def run(conn: Any) -> list[tuple[int, str]]:
            rows = conn.execute(sql + " RETURNING id, namespace", args).fetchall()
            if rows:
                self._autoprune(conn)
            return row_pairs(rows)

        return self._write(run)

    def clear(self, namespace: str | None = None) -> int:
        def run(conn: Any) -> int:
            if namespace is None:
                cur = conn.execute("DELETE FROM entries")
            else:
                cur = conn.execute(
                    "DELETE FROM entries WHERE namespace = %s", (namespace.encode(),)
                )
            count = int(cur.rowcount)
            if count:
                self._autoprune(conn)
            for table in ("quality_counts", "quality_outcomes"):  # the error budget's too
                if namespace is None:
                    conn.execute(f"DELETE FROM {table}")
                else:
                    conn.execute(f"DELETE FROM {table} WHERE namespace = %s", (namespace.encode(),))
            return count

        return self._write(run)

    def touch(self, access: Mapping[int, float]) -> None:
        if not access:
            self._read(lambda c: None)
            return
        self._run(lambda c: self._in_transaction(c, lambda c2: self._touch(c2, access)), write=True)

    @staticmethod
    def _touch(conn: Any, access: Mapping[int, float]) -> None:
        # Ascending ids: concurrent touches lock rows in one order (fewer deadlocks).
        items = sorted((int(i), float(t)) for i, t in access.items())
        conn.execute(
            "UPDATE entries AS e SET last_access = v.t FROM unnest(%s::bigint[], "
            "%s::float8[]) AS v(id, t) WHERE e.id = v.id AND e.last_access < v.t",
            ([i for i, _ in items], [t for _, t in items]),
        )

    # -- change log -------------------------------------------------------------------
    def seq(self) -> int:
        row = self._read(lambda c: c.execute("SELECT seq FROM log_state").fetchone())
        return int(row[0])

    def identity(self) -> str:
        row = self._read(
            lambda c: c.execute("SELECT value FROM meta WHERE name = 'store_id'").fetchone()
        )
        if row is None:  # only a schema emptied by hand lacks one
            raise StoreError(f"schema {self.schema}: the store has no identity (store_id)")
        return str(row[0])

    def changes_since(self, seq: int, identity: str | None = None) -> list[Change] | None:
        return self._read(lambda c: read_changes(c, seq, identity))

    def prune_changes(self, keep_last: int) -> int:
        return self._write(lambda c: self._prune(c, keep_last))

    @staticmethod
    def _prune(conn: Any, keep_last: int) -> int:
        cur = conn.execute(
            "DELETE FROM changes WHERE seq <= (SELECT seq FROM log_state) - %s",
            (max(0, int(keep_last)),),
        )
        return int(cur.rowcount)

    def _autoprune(self, conn: Any) -> None:
        conn.execute(
            "DELETE FROM changes WHERE seq <= (SELECT seq FROM log_state) - %s",
            (self._max_changes,),
        )

    # -- capabilities (NoLocalFile: no file, nothing to lock; pgvector search) ----------
    def search_index_factory(self) -> SearchIndexFactory:
        """One :class:`~semcache._store.StoreSearchIndex` per namespace (pgvector).

        Raises:
            ConfigurationError: pgvector is not available (see :attr:`search_unavailable`).
        """
        return search_factory(self)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._discard_all()

    # -- maintenance ------------------------------------------------------------------
    def drop(self) -> None:
        """Drop this store's schema (every entry, setting and change record) and close
        the store.

        Raises:
            StoreUnavailableError: the server cannot be reached.
        """
        self._run(lambda c: c.execute(f"DROP SCHEMA IF EXISTS {self._s} CASCADE"), write=True)
        self.close()
