"""Read-only inspection of a SQLite cache file: ``semcache stats`` and ``semcache ls``.

Nothing here opens a :class:`~semcache.SemanticCache`: no lock is taken, no index is
loaded, nothing is written (not the database, not its index snapshots, not a lock file),
so a file can be inspected while an application has it open in either
``multi_process_mode``. The tables read are the ones :mod:`semcache._store._sqlite`
creates.

How the file is opened without writing:

- While another connection has the database open its ``-wal`` file exists, and it is
  opened read-only (``mode=ro``): a WAL reader takes a read mark in the shared ``-shm``
  file, which never blocks the application's writes.
- Otherwise every committed transaction is in the main file (the last connection to
  close checkpoints and removes the ``-wal``). A plain read-only open would create
  ``-wal`` and ``-shm`` files and leave them behind, so the file is read as
  ``immutable``, without locks. The file's identity, size and modification time are
  compared before and after the read, and the absence of a ``-wal``: if an application
  opened and changed the file meanwhile, the read is repeated (read-only, through the
  now existing ``-wal``).

:func:`lock_holder` tells which process holds a cache's lock file (Linux), without
taking or creating it.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias, TypeVar

import apsw

from ._errors import SchemaVersionError, StoreCorruptError, StoreError
from ._locking import held_here, lock_path
from ._snapshots import MANIFEST, snapshot_dir
from ._store._sqlite import SCHEMA_VERSION

__all__ = ["CacheFile", "EntryInfo", "FileInfo", "LockHolder", "lock_holder"]

_T = TypeVar("_T")
_Conn: TypeAlias = Any  # an apsw.Connection (rows typed at the boundary, as in _sqlite)

#: Tables every semcache file has (schema version 1 on).
_TABLES = frozenset({"meta", "entries", "namespaces", "changes", "schema_migrations"})
#: Reads repeated at most this often when an application changes the file meanwhile.
_ATTEMPTS = 3

_SIZE = (
    "length(CAST(query AS BLOB)) + length(CAST(response AS BLOB))"
    " + coalesce(length(CAST(metadata AS BLOB)), 0) + coalesce(length(vector), 0)"
)


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """One stored entry as ``semcache ls`` shows it.

    ``size`` is the entry's payload in bytes (query, response and metadata as UTF-8,
    and the vector); ``last_access`` is when it was last served or written (recency is
    written in batches, so a running application's last hits may not be in it yet).
    """

    id: int
    namespace: str
    query: str
    created_at: float
    expires_at: float | None
    last_access: float
    size: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "namespace": self.namespace,
            "query": self.query,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "last_access": self.last_access,
            "size": self.size,
        }


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What ``semcache stats`` reports about a cache file."""

    path: str
    file_bytes: int
    schema_version: int
    entries: dict[str, int]
    total_entries: int
    expired_entries: int
    dim: int | None
    vector_dtype: str | None
    fingerprint: str | None
    seq: int
    index_snapshot: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``index_backend``: the snapshot's, if there is one)."""
        snap = self.index_snapshot
        return {
            "path": self.path,
            "file_bytes": self.file_bytes,
            "schema_version": self.schema_version,
            "entries": dict(self.entries),
            "total_entries": self.total_entries,
            "expired_entries": self.expired_entries,
            "dim": self.dim,
            "vector_dtype": self.vector_dtype,
            "fingerprint": self.fingerprint,
            "seq": self.seq,
            "index_backend": None if snap is None else snap.get("backend"),
            "index_snapshot": snap,
        }


class CacheFile:
    """A SQLite cache file opened for reading only (see the module docstring).

    Args:
        path: the cache file.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        StoreCorruptError: it is not a SQLite database, or not a semcache cache.
        SchemaVersionError: it was written by a newer semcache.
        StoreError: it cannot be read.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"no cache file at {self.path}")
        self._uri = Path(os.path.abspath(self.path)).as_uri()
        self._version = self._read(self._check_schema)

    # -- reading --------------------------------------------------------------------------
    def _read(self, fn: Callable[[_Conn], _T]) -> _T:
        """``fn(conn)`` in one read transaction on a fresh read-only connection."""
        for _ in range(_ATTEMPTS):
            wal = os.path.exists(self.path + "-wal") or os.path.exists(self.path + "-journal")
            before = _identity(self.path)
            with self._connect(immutable=not wal) as conn:
                result = fn(conn)
            if wal or (not os.path.exists(self.path + "-wal") and _identity(self.path) == before):
                return result
        raise StoreError(f"{self.path} kept changing while it was read; try again")

    @contextmanager
    def _connect(self, *, immutable: bool) -> Iterator[_Conn]:
        uri = self._uri + ("?mode=ro&immutable=1" if immutable else "?mode=ro")
        try:
            conn = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
        except apsw.Error as exc:
            raise self._translate(exc) from exc
        try:
            conn.set_busy_timeout(5000)
            conn.execute("BEGIN DEFERRED")
            yield conn
        except apsw.Error as exc:
            raise self._translate(exc) from exc
        finally:
            conn.close()

    def _translate(self, exc: apsw.Error) -> Exception:
        if isinstance(exc, (apsw.NotADBError, apsw.CorruptError)):
            return StoreCorruptError(f"{self.path} is not a healthy SQLite database ({exc})")
        if isinstance(exc, apsw.BusyError):
            return StoreError(f"{self.path} stayed locked for more than 5 s ({exc})")
        return StoreError(f"cannot read {self.path}: {exc}")

    def _check_schema(self, conn: _Conn) -> int:
        tables = {
            str(name)
            # namespaces is a view in a store that no limit needed (its counts are read
            # from the rows; see semcache._store._sqlite_schema.COUNT_VIEW)
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
            )
        }
        missing = _TABLES - tables
        if missing:
            raise StoreCorruptError(
                f"{self.path} is a SQLite database but not a semcache cache "
                f"(no {', '.join(sorted(missing))} table)"
            )
        version = int(conn.execute("SELECT max(version) FROM schema_migrations").get or 0)
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path}: schema version {version} was written by a newer semcache "
                f"(this one reads up to {SCHEMA_VERSION}); upgrade semcache"
            )
        return version

    # -- what the commands show -------------------------------------------------------------
    def info(self, now: float) -> FileInfo:
        """Counts and settings of the file (``expired_entries``: expired at ``now``, not
        yet vacuumed; they are in ``entries`` too)."""

        def run(conn: _Conn) -> FileInfo:
            meta = {str(k): str(v) for k, v in conn.execute("SELECT name, value FROM meta")}
            counts = {
                str(name): int(n)
                for name, n in conn.execute(
                    "SELECT name, entries FROM namespaces WHERE entries > 0 ORDER BY name"
                )
            }
            expired = conn.execute("SELECT count(*) FROM entries WHERE expires_at <= ?", (now,)).get
            seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").get
            dim = meta.get("dim")
            return FileInfo(
                path=self.path,
                file_bytes=os.path.getsize(self.path),
                schema_version=self._version,
                entries=counts,
                total_entries=sum(counts.values()),
                expired_entries=int(expired or 0),
                dim=int(dim) if dim is not None else None,
                vector_dtype=meta.get("vector_dtype"),
                fingerprint=meta.get("fingerprint"),
                seq=int(seq or 0),
                index_snapshot=None,
            )

        info = self._read(run)
        snapshot = _snapshot_info(self.path)
        if snapshot is None:
            return info
        return FileInfo(**{**_fields(info), "index_snapshot": snapshot})

    def entries(self, namespace: str | None = None, limit: int | None = None) -> list[EntryInfo]:
        """Entries, newest first: those of ``namespace`` (None: every namespace), at most
        ``limit`` (None: all)."""
        sql = (
            f"SELECT id, namespace, query, created_at, expires_at, last_access, {_SIZE} "
            "FROM entries"
        )
        args: tuple[Any, ...] = ()
        if namespace is not None:
            sql, args = sql + " WHERE namespace = ?", (namespace,)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql, args = sql + " LIMIT ?", (*args, limit)

        def run(conn: _Conn) -> list[EntryInfo]:
            return [
                EntryInfo(
                    int(i),
                    str(ns),
                    str(q),
                    float(c),
                    None if e is None else float(e),
                    float(a),
                    int(s),
                )
                for i, ns, q, c, e, a, s in conn.execute(sql, args)
            ]

        return self._read(run)

    def count(self, namespace: str | None = None) -> int:
        """Entries stored (of ``namespace``, or of all)."""
        args: tuple[str, ...] = ()
        if namespace is None:
            sql = "SELECT total(entries) FROM namespaces"
        else:
            sql, args = "SELECT entries FROM namespaces WHERE name = ?", (namespace,)
        return int(self._read(lambda c: c.execute(sql, args).get) or 0)


def _identity(path: str) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _fields(info: FileInfo) -> dict[str, Any]:
    return {name: getattr(info, name) for name in FileInfo.__slots__}


def _snapshot_info(path: str) -> dict[str, Any] | None:
    """The index snapshot beside ``path`` as its manifest describes it (read only)."""
    folder = snapshot_dir(path)
    if folder is None or not folder.is_dir():
        return None
    files = [p for p in folder.iterdir() if p.is_file()]
    out: dict[str, Any] = {
        "path": str(folder),
        "bytes": sum(p.stat().st_size for p in files),
        "backend": None,
        "seq": None,
    }
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return out
    if isinstance(manifest, dict):
        backend = manifest.get("backend")
        out["backend"] = str(backend).split(" ", 1)[0] if backend is not None else None
        seq = manifest.get("seq")
        out["seq"] = seq if isinstance(seq, int) else None
    return out


# -- who holds the lock ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LockHolder:
    """A process holding a cache's lock file: ``mode`` ``"single"`` (exclusive) or
    ``"shared"``; ``command`` is its command line when it can be read."""

    pid: int
    mode: Literal["single", "shared"]
    command: str | None

    def describe(self) -> str:
        """``process 123 (python app.py) holds it in single mode``."""
        cmd = f" ({self.command})" if self.command else ""
        return f"process {self.pid}{cmd} holds it in {self.mode} mode"


def lock_holder(db_path: str) -> LockHolder | None:
    """Another process holding ``<db_path>.lock`` (see :mod:`semcache._locking`), or
    None: nobody holds it, or this process does (then the file is not even opened), or
    it cannot be told (not Linux).

    Asks the kernel (``F_GETLK``) without taking the lock or creating the file.
    """
    if not sys.platform.startswith("linux"):  # struct flock's layout is Linux's here
        return None
    import fcntl

    key = lock_path(db_path)
    if held_here(key):
        # Closing any descriptor of a file drops every POSIX lock this process holds on
        # it: never open the lock file of a cache open here.
        return None
    try:
        fd = os.open(key, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        # struct flock: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
        probe = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        kind, _, _, _, pid = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, probe))
    except OSError:
        return None
    finally:
        os.close(fd)
    if kind == fcntl.F_UNLCK:
        return None
    mode: Literal["single", "shared"] = "single" if kind == fcntl.F_WRLCK else "shared"
    return LockHolder(int(pid), mode, _command(int(pid)))


def _command(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    text = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return (text[:117] + "...") if len(text) > 120 else (text or None)
