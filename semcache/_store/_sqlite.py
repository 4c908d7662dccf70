"""The embedded default store: one SQLite file through apsw, in WAL mode."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, Final, Literal, ParamSpec, TypeAlias, TypeVar

import apsw

from .._checks import check_int, check_seconds, show
from .._errors import (
    CacheClosedError,
    ConfigurationError,
    StoreCorruptError,
    StoreError,
)
from .._locking import StoreLock, acquire_store_lock, track_fork
from ._base import (
    AnswerBatch,
    Change,
    Limits,
    NewEntry,
    PutResult,
    StoredEntry,
    VectorBatch,
)
from ._quality_checks import check_new_records
from ._sqlite_ops import (
    IDENTITY,
    LAST_SEQ,
    batches,
    chunks,
    claim_meta,
    evict,
    file_id,
    is_local,
    marks,
    pages,
    read_changes,
    read_vectors,
    translate,
)
from ._sqlite_quality import SQLiteQuality
from ._sqlite_schema import (
    DEFAULT_PRAGMAS,
    LRU_INDEXES,
    MIGRATIONS,
    SCHEMA_VERSION,
    backup,
    check_copy,
    counts_kept,
    inspect_copy,
    migrate,
    start_counts,
)

__all__ = ["DEFAULT_PRAGMAS", "MIGRATIONS", "SCHEMA_VERSION", "SQLiteStore"]

_T = TypeVar("_T")
_P = ParamSpec("_P")
# An apsw.Connection. Its stubs type every row value as the union of all SQLite types;
# rows are unpacked into typed records right here at the boundary, so use Any.
_Conn: TypeAlias = Any


_ENTRY_COLUMNS = "id, key, namespace, query, response, metadata, created_at, expires_at"
#: The columns after ``vector`` (StoredEntry's field order): the error budget's record.
_RECORD_COLUMNS = ", NULL, record"
_GET_BY_KEY = f"SELECT {_ENTRY_COLUMNS}{_RECORD_COLUMNS} FROM entries WHERE key = ?"
_INSERT = (
    "INSERT INTO entries(key, namespace, query, response, metadata, created_at, expires_at,"
    " last_access, vector, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: The insert of a key that is not there yet (the common case): one statement. When the
#: key is taken it inserts nothing (``changes() == 0``), and the put deletes the old
#: entry (:data:`_DELETE_KEY`) and inserts with :data:`_INSERT`.
_INSERT_NEW = _INSERT + " ON CONFLICT(key) DO NOTHING"
_DELETE_KEY = "DELETE FROM entries WHERE key = ? RETURNING id, namespace"
_TOUCH = "UPDATE entries SET last_access = ?2 WHERE id = ?1 AND last_access < ?2"
#: Drop change records older than the last ``?`` (a seek on the primary key).
_PRUNE = f"DELETE FROM changes WHERE seq <= coalesce(({LAST_SEQ}), 0) - ?"
#: The change log is pruned once this many records were logged since the last prune
#: (by this connection), or a 64th of ``max_changes`` if that is less: the statement and
#: the page it dirties are paid once per batch, not once per put.
_PRUNE_EVERY: Final = 256
#: Connections a forked child inherited: never used there, and never closed either
#: (closing SQLite's copy of the parent's file state in a child can break the parent's
#: locks), so they are kept referenced for the life of the child.
_INHERITED: list[_Conn] = []


def _row(e: NewEntry) -> tuple[Any, ...]:
    """The parameters of ``_INSERT`` / ``_INSERT_NEW`` for ``e`` (``last_access`` starts
    at ``created_at``; the error budget's record is written with the row)."""
    return (
        e.key,
        e.namespace,
        e.query,
        e.response,
        e.metadata,
        e.created_at,
        e.expires_at,
        e.created_at,
        e.vector,
        e.record,
    )


class SQLiteStore(SQLiteQuality):
    """A :class:`~semcache.Store` in one SQLite file (WAL, apsw).

    One transaction per put and per put_many; the change log and per-namespace counts
    are kept by triggers, so they cannot drift from the entries. Safe to use from many
    threads (one connection, every call under one lock, so a read never sees another
    thread's transaction half done); several processes may open one file (writers wait
    up to ``busy_timeout`` seconds for the lock). Safe across ``fork()``: a child opens
    a connection of its own on first use and never touches the inherited one.

    Args:
        path: the database file (created if missing).
        busy_timeout: seconds a writer waits for another connection's lock.
        max_changes: change-log records kept for :meth:`changes_since`. Older ones are
            pruned in a transaction that logs newer ones, in batches: the log holds the
            last ``max_changes`` records, plus at most ``min(256, max_changes // 64)``
            and the records of one transaction per process writing to the file.
        pragmas: overrides of :data:`DEFAULT_PRAGMAS`.

    Raises:
        ConfigurationError: a bad argument (``path`` not a str or os.PathLike,
            ``busy_timeout`` not finite seconds >= 0, ``max_changes`` not an int >= 0,
            ``pragmas`` not a mapping); nothing is opened.
        StoreCorruptError: the file exists but is not a (healthy) SQLite database.
        SchemaVersionError: the file was written by a newer semcache.
        StoreError: the file cannot be opened.
    """

    persistent = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 10.0,
        max_changes: int = 100_000,
        pragmas: Mapping[str, str | int] | None = None,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
            raise ConfigurationError(f"path must be a str or os.PathLike, got {show(path)}")
        busy_timeout = check_seconds(busy_timeout, "busy_timeout", zero_ok=True)
        max_changes = check_int(max_changes, "max_changes", 0)
        if pragmas is not None and not isinstance(pragmas, Mapping):
            raise ConfigurationError(f"pragmas must be a mapping, got {show(pragmas)}")
        self.path = os.fspath(path)
        self._busy_timeout = busy_timeout
        self._max_changes = max_changes
        self._prune_every = max(1, min(_PRUNE_EVERY, max_changes // 64))
        self._unpruned = self._prune_every  # the first transaction that logs prunes
        self._pragmas = {**DEFAULT_PRAGMAS, **(pragmas or {})}
        self._lock = threading.RLock()
        self._lru_indexes: set[str] = set()
        self._counting = False  # this connection saw the file keep namespace counts
        self._depth = 0
        self._closed = False
        self._forked = False  # set in a forked child until it has its own connection
        self._file: tuple[int, int] | None = None  # (device, inode) of the open file
        self._conn: _Conn = self._call(self._connect)
        track_fork(self)

    # -- connection -------------------------------------------------------------------
    def _connect(self) -> _Conn:
        # SQLite answers some lock conflicts at open with SQLITE_BUSY at once, without
        # the busy handler: two connections switching a new file to WAL together (each
        # holds a shared lock and wants the exclusive one) or a WAL recovery in progress.
        # Those are retried here, with backoff, for up to ``busy_timeout`` seconds.
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.001
        while True:
            try:
                return self._connect_once()
            except (apsw.BusyError, StoreError) as exc:
                busy = isinstance(exc, apsw.BusyError) or isinstance(exc.__cause__, apsw.BusyError)
                if not busy or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _connect_once(self) -> _Conn:
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
        conn = apsw.Connection(self.path, flags=flags)
        try:
            conn.set_busy_timeout(int(self._busy_timeout * 1000))
            for name, value in self._pragmas.items():
                conn.pragma(name, value)
            self._conn = conn
            self._cur = conn.cursor()  # one cursor for the put path (saves ~0.5 us a call)
            self._counting = False
            self._migrate()
            self._file = file_id(self.path)
        except BaseException:
            conn.close()
            raise
        return conn

    def _reopen(self) -> None:
        """In a forked child: open a connection of its own (under the lock)."""
        self._forked = False
        try:
            self._call(self._connect)
        except BaseException:
            self._forked = True
            raise

    # Fork handlers (see semcache._locking.track_fork).
    def _fork_prepare(self) -> None:
        pass

    def _fork_parent(self) -> None:
        pass

    def _fork_child(self) -> None:
        # The child is single-threaded here: a lock another thread held at the fork
        # would stay held forever, and the connection is the parent's.
        self._lock = threading.RLock()
        self._depth = 0
        self._lru_indexes.clear()
        self._counting = False
        self._unpruned = self._prune_every
        if not self._closed:
            _INHERITED.append(self._conn)
            self._forked = True

    def _migrate(self) -> None:
        with self._write():
            migrate(self._conn, self.path)

    def schema_version(self) -> int:
        """The schema version of the open file."""
        return int(
            self._read(lambda c: c.execute("SELECT max(version) FROM schema_migrations").get)
        )

    def _follow_path(self) -> None:
        """Open the file now at :attr:`path` if it is not the one open (it was deleted
        and created again, or another file was moved there): a shared-mode reader then
        sees the store that is there, with its own identity, and rebuilds. While no file
        is there, the open one is kept."""
        if self._file is None:
            return
        now = file_id(self.path)
        if now is None or now == self._file:
            return
        with self._lock:
            if self._closed or self._forked or self._depth:
                return
            old = self._conn
            self._lru_indexes.clear()
            self._counting = False
            self._unpruned = self._prune_every
            self._call(self._connect)
            old.close()

    # -- error translation and transactions -------------------------------------------
    def _translate(self, exc: apsw.Error) -> Exception:
        """The semcache exception for an apsw one (raise it ``from exc``)."""
        return translate(exc, self.path, self._busy_timeout)

    def _call(self, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except apsw.Error as exc:
            raise self._translate(exc) from exc

    def _read(self, fn: Callable[[_Conn], _T]) -> _T:
        # Under the lock: the connection is shared, and a read between two statements
        # of another thread's transaction would see it half done (or later rolled back).
        with self._lock:
            if self._closed:
                raise CacheClosedError("store is closed")
            if self._forked:
                self._reopen()
            return self._call(lambda: fn(self._conn))

    @contextmanager
    def _write(self) -> Iterator[_Conn]:
        """A re-entrant IMMEDIATE transaction (the write lock is taken up front)."""
        with self._lock:
            if self._closed:
                raise CacheClosedError("store is closed")
            if self._forked:
                self._reopen()
            conn = self._conn
            if self._depth:
                self._depth += 1
                try:
                    yield conn
                finally:
                    self._depth -= 1
                return
            self._call(lambda: conn.execute("BEGIN IMMEDIATE"))
            self._depth = 1
            try:
                yield conn
            except BaseException:
                self._depth = 0
                self._rollback(conn)
                raise
            self._depth = 0
            try:
                self._call(lambda: conn.execute("COMMIT"))
            except BaseException:
                self._rollback(conn)  # a failed COMMIT leaves the transaction open
                raise

    def _rollback(self, conn: _Conn) -> None:
        # An index created inside the transaction is gone again, and so are the count
        # triggers and a prune.
        self._lru_indexes.clear()
        self._counting = False
        self._unpruned = self._prune_every
        if not conn.get_autocommit():
            self._call(lambda: conn.execute("ROLLBACK"))

    def _snapshot(self, fn: Callable[[_Conn], _T]) -> _T:
        """Run several reads in one deferred (read) transaction: a consistent snapshot
        that, unlike :meth:`_write`, never waits for or blocks other writers."""
        with self._lock:
            if self._closed:
                raise CacheClosedError("store is closed")
            if self._forked:
                self._reopen()
            conn = self._conn
            if self._depth:
                return self._call(lambda: fn(conn))
            self._call(lambda: conn.execute("BEGIN DEFERRED"))
            try:
                return self._call(lambda: fn(conn))
            finally:
                if not conn.get_autocommit():
                    self._call(lambda: conn.execute("COMMIT"))

    def _transact(
        self, fn: Callable[Concatenate[_Conn, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """Run ``fn(conn, *args, **kwargs)`` in one IMMEDIATE transaction (joining an open one).

        The same as ``with self._write(): fn(conn)``, written out because every put
        takes this path and the generic context manager costs it about 4 us.
        """
        with self._lock:
            if self._depth or self._closed or self._forked:
                with self._write() as conn:
                    return self._call(lambda: fn(conn, *args, **kwargs))
            conn = self._conn
            cur = self._cur
            try:
                cur.execute("BEGIN IMMEDIATE")
                self._depth = 1
                try:
                    result = fn(conn, *args, **kwargs)
                except BaseException:
                    self._depth = 0
                    self._rollback(conn)
                    raise
                self._depth = 0
                try:
                    cur.execute("COMMIT")
                except BaseException:
                    self._rollback(conn)  # a failed COMMIT leaves the transaction open
                    raise
                return result
            except apsw.Error as exc:
                raise self._translate(exc) from exc

    # -- settings ---------------------------------------------------------------------
    def get_meta(self, name: str) -> str | None:
        value = self._read(
            lambda c: c.execute("SELECT value FROM meta WHERE name = ?", (name,)).get
        )
        return None if value is None else str(value)

    def set_meta(self, values: Mapping[str, str]) -> None:
        self._transact(lambda c: self._set_meta(c, values))

    @staticmethod
    def _set_meta(conn: _Conn, values: Mapping[str, str]) -> None:
        conn.executemany(
            "INSERT INTO meta(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            list(values.items()),
        )

    # -- reads ------------------------------------------------------------------------
    def get_by_key(self, key: bytes) -> StoredEntry | None:
        with self._lock:
            if self._closed:
                raise CacheClosedError("store is closed")
            if self._forked:
                self._reopen()
            try:
                for row in self._conn.execute(_GET_BY_KEY, (key,)):
                    return StoredEntry(*row)
            except apsw.Error as exc:
                raise self._translate(exc) from exc
            return None

    def get_by_ids(self, ids: Sequence[int], *, vectors: bool = False) -> dict[int, StoredEntry]:
        columns = _ENTRY_COLUMNS + (", vector, record" if vectors else _RECORD_COLUMNS)

        def run(conn: _Conn) -> dict[int, StoredEntry]:
            out: dict[int, StoredEntry] = {}
            for chunk in chunks(ids):
                sql = f"SELECT {columns} FROM entries WHERE id IN ({marks(chunk)})"
                for row in conn.execute(sql, chunk):
                    out[row[0]] = StoredEntry(*row)
            return out

        return self._read(run)

    def count(self, namespace: str | None = None) -> int:
        args: tuple[str, ...] = ()
        if namespace is None:
            sql = "SELECT total(entries) FROM namespaces"
        else:
            sql, args = "SELECT entries FROM namespaces WHERE name = ?", (namespace,)
        return int(self._read(lambda c: c.execute(sql, args).get) or 0)

    def namespace_counts(self) -> dict[str, int]:
        rows = self._read(
            lambda c: c.execute(
                "SELECT name, entries FROM namespaces WHERE entries > 0 ORDER BY name"
            ).fetchall()
        )
        return {str(name): int(n) for name, n in rows}

    def stored_keys(self) -> list[bytes]:
        """Every stored key (the cache's exact-layer filter is filled from them).

        Raises:
            CacheClosedError: the store is closed.
            StoreError: the read failed.
        """
        rows = self._read(lambda c: c.execute("SELECT key FROM entries").fetchall())
        return [row[0] for row in rows]

    def iter_vectors(
        self, *, now: float | None = None, batch_size: int = 65536
    ) -> Iterator[VectorBatch]:
        """See :meth:`Store.iter_vectors`; read a page at a time (:func:`pages`)."""
        for ns, ids, vectors in batches(pages(self._read, "vector", now), batch_size):
            yield VectorBatch(ns, ids, vectors)

    def iter_answers(
        self, *, now: float | None = None, batch_size: int = 4096
    ) -> Iterator[AnswerBatch]:
        """See :meth:`~semcache._store.AnswerScan.iter_answers`; read a page at a time."""
        for ns, ids, responses in batches(pages(self._read, "response", now), batch_size):
            yield AnswerBatch(ns, ids, responses)

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
        if len(entries) == 1 and limits is None and not touches and not meta:
            return self._put_one(entries[0])  # every plain put

        def run(conn: _Conn) -> PutResult:
            result = PutResult()
            settings = claim_meta(conn, meta) if meta else None  # before any write
            if touches:
                conn.executemany(_TOUCH, list(touches.items()))
            if settings:
                self._set_meta(conn, settings)
            cur = self._cur
            ids, replaced = result.ids, result.replaced
            for e in entries:
                row = _row(e)
                cur.execute(_INSERT_NEW, row)
                if not conn.changes():  # the key is taken: replace its entry
                    replaced.extend((i, n) for i, n in cur.execute(_DELETE_KEY, (e.key,)))
                    cur.execute(_INSERT, row)
                ids.append(conn.last_insert_rowid())
            if entries and limits is not None:
                ns = entries[0].namespace
                expired: list[tuple[int, str]] = []
                lru: list[tuple[int, str]] = []
                if not self._counting:
                    self._ensure_counts(conn)
                if limits.namespace_quota is not None:
                    self._ensure_lru_index(conn, "namespace")
                    self._evict(conn, ns, limits.namespace_quota, now, expired, lru)
                if limits.max_entries is not None:
                    self._ensure_lru_index(conn, "global")
                    self._evict(conn, None, limits.max_entries, now, expired, lru)
                result.evicted = expired + lru
                result.expired_evicted = len(expired)
            if entries:
                self._autoprune(conn, len(ids) + len(replaced) + len(result.evicted))
            return result

        return self._transact(run)

    def _put_one(self, e: NewEntry) -> PutResult:
        """:meth:`put_many` of one entry without limits, touches or meta.

        A key not yet stored takes one ``INSERT`` in autocommit mode: a single statement
        is a transaction of its own, its triggers (change log, counts) included, and it
        waits for the write lock like ``BEGIN IMMEDIATE``; leaving out the ``BEGIN`` and
        ``COMMIT`` statements saves ~3.5 us. A key that is taken (the insert did
        nothing) or a change log due for pruning takes :meth:`_transact`.
        """
        row = _row(e)
        with self._lock:
            if not (self._depth or self._closed or self._forked) and (
                self._unpruned + 1 < self._prune_every
            ):
                conn = self._conn
                try:
                    self._cur.execute(_INSERT_NEW, row)
                    if conn.changes():
                        self._unpruned += 1
                        return PutResult([conn.last_insert_rowid()])
                except apsw.Error as exc:
                    raise self._translate(exc) from exc
            return self._transact(self._put_row, row)

    def _put_row(self, conn: _Conn, row: tuple[Any, ...]) -> PutResult:
        """Insert one entry's ``row`` (replacing the entry with its key) in a transaction."""
        cur = self._cur
        cur.execute(_INSERT_NEW, row)
        if conn.changes():
            result = PutResult([conn.last_insert_rowid()])
        else:  # the key is taken: replace its entry
            replaced = [(i, n) for i, n in cur.execute(_DELETE_KEY, (row[0],))]
            cur.execute(_INSERT, row)
            result = PutResult([conn.last_insert_rowid()], replaced)
        self._autoprune(conn, 1 + len(result.replaced))
        return result

    def _ensure_counts(self, conn: _Conn) -> None:
        """Keep namespace counts from now on (eviction reads them on every put): the
        table of the rows' counts and its triggers, unless the file keeps them already."""
        if not counts_kept(conn):
            start_counts(conn)
        self._counting = True

    def _ensure_lru_index(self, conn: _Conn, scope: str) -> None:
        if scope not in self._lru_indexes:
            conn.execute(LRU_INDEXES[scope])
            self._lru_indexes.add(scope)

    _evict = staticmethod(evict)  # a class attribute: tests replace it

    def delete_by_key(self, key: bytes) -> tuple[int, str] | None:
        def run(conn: _Conn) -> list[Any]:
            rows = conn.execute(_DELETE_KEY, (key,)).fetchall()
            if rows:
                self._autoprune(conn, len(rows))
            return list(rows)

        rows = self._transact(run)
        return (rows[0][0], rows[0][1]) if rows else None

    def delete_ids(self, ids: Sequence[int]) -> list[tuple[int, str]]:
        def run(conn: _Conn) -> list[tuple[int, str]]:
            out: list[tuple[int, str]] = []
            for entry_id in ids:
                for row in conn.execute(
                    "DELETE FROM entries WHERE id = ? RETURNING id, namespace", (entry_id,)
                ):
                    out.append((row[0], row[1]))
            if out:
                self._autoprune(conn, len(out))
            return out

        return self._transact(run)

    def delete_expired(self, now: float, namespace: str | None = None) -> list[tuple[int, str]]:
        sql = "DELETE FROM entries WHERE expires_at <= ?"
        args: tuple[Any, ...] = (now,)
        if namespace is not None:
            sql += " AND namespace = ?"
            args = (now, namespace)
        sql += " RETURNING id, namespace"

        def run(conn: _Conn) -> list[tuple[int, str]]:
            out = [(i, n) for i, n in conn.execute(sql, args)]
            if out:
                self._autoprune(conn, len(out))
            return out

        return self._transact(run)

    def clear(self, namespace: str | None = None) -> int:
        def run(conn: _Conn) -> int:
            if namespace is None:
                conn.execute("DELETE FROM entries")
            else:
                conn.execute("DELETE FROM entries WHERE namespace = ?", (namespace,))
            count = int(conn.changes())
            where, args = ("", ()) if namespace is None else (" WHERE namespace = ?", (namespace,))
            conn.execute("DELETE FROM quality_counts" + where, args)
            conn.execute("DELETE FROM quality_outcomes" + where, args)
            if count:
                self._autoprune(conn, count)
            return count

        return self._transact(run)

    def touch(self, access: Mapping[int, float]) -> None:
        if not access:
            self._read(lambda c: None)  # still raises on a closed store
            return
        self._transact(lambda c: c.executemany(_TOUCH, list(access.items())))

    def get_vectors(self, ids: Sequence[int]) -> dict[int, tuple[str, bytes]]:
        return self._read(lambda c: read_vectors(c, ids))

    # -- change log -------------------------------------------------------------------
    def seq(self) -> int:
        value = self._read(lambda c: c.execute(LAST_SEQ).get)
        return int(value or 0)

    def identity(self) -> str:
        self._follow_path()
        value = self._read(lambda c: c.execute(IDENTITY).get)
        if value is None:  # every open creates one: only a hand-edited file lacks it
            raise StoreCorruptError(f"{self.path} has no store identity (meta store_id)")
        return str(value)

    def changes_since(self, seq: int, identity: str | None = None) -> list[Change] | None:
        self._follow_path()

        return self._snapshot(lambda c: read_changes(c, seq, identity))

    def prune_changes(self, keep_last: int) -> int:
        return self._transact(lambda c: self._prune(c, keep_last))

    @staticmethod
    def _prune(conn: _Conn, keep_last: int) -> int:
        conn.execute(_PRUNE, (max(0, keep_last),))
        return int(conn.changes())

    def _autoprune(self, conn: _Conn, logged: int) -> None:
        """Call after logging ``logged`` changes: prune the log to ``max_changes`` records
        once :attr:`_prune_every` were logged since the last prune."""
        self._unpruned += logged
        if self._unpruned >= self._prune_every:
            self._prune(conn, self._max_changes)
            self._unpruned = 0

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._forked:  # the inherited connection is the parent's to close
                return
            try:
                self._conn.pragma("optimize")
            except apsw.Error:
                pass
            self._conn.close()

    # -- capabilities (see semcache._store._base) ---------------------------------------
    @property
    def local_path(self) -> Path | None:
        """The database file; None in memory (``""``, ``":memory:"``)."""
        if self.path in ("", ":memory:"):
            return None
        return Path(self.path)

    def claim(self, mode: Literal["single", "shared"]) -> StoreLock | None:
        """Lock the file for a cache of ``multi_process_mode`` ``mode`` (see
        ``semcache._locking``); None in memory or for a name starting ``file:``.

        Raises:
            StoreLockedError: another cache holds the file in a conflicting mode.
        """
        if not is_local(self.path):
            return None
        return acquire_store_lock(self.path, mode)

    def backup(self, dest: Path) -> None:
        """Copy the database into the new file ``dest`` in one step, from a connection
        of its own (a consistent snapshot while others write). Raises StoreError."""
        backup(self.path, dest, self._busy_timeout)

    @staticmethod
    def inspect_copy(path: Path) -> dict[str, Any]:
        """Settings, change sequence and namespace counts of a copy (see
        :meth:`backup`). Raises CheckpointFormatError: not a healthy semcache store."""
        return inspect_copy(path)

    @staticmethod
    def check_copy(path: Path) -> None:
        """Refuse a copy that is not exactly what :meth:`backup` writes (schema of its
        recorded version and nothing else, header, integrity, counts, vector sizes,
        sequences): CheckpointFormatError, or CheckpointVersionError for a newer one."""
        check_copy(path, _create)


def _create(path: str) -> None:
    """A fresh store at ``path``: what :meth:`SQLiteStore.check_copy` compares with."""
    SQLiteStore(path).close()
