"""The SQLite store's statements that need no store (see ``_sqlite``): eviction, the
change-log and vector reads, error translation, and the file's identity."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

import apsw

from .._errors import CacheClosedError, StoreCorruptError, StoreError
from ._base import Change, claim_settings

__all__ = [
    "IDENTITY",
    "LAST_SEQ",
    "batches",
    "chunks",
    "claim_meta",
    "evict",
    "file_id",
    "is_local",
    "marks",
    "pages",
    "read_changes",
    "read_vectors",
    "translate",
]

_T = TypeVar("_T")

LAST_SEQ: Final = "SELECT seq FROM sqlite_sequence WHERE name = 'changes'"
IDENTITY: Final = "SELECT value FROM meta WHERE name = 'store_id'"
#: Ids per ``IN (...)`` list, well under SQLite's bound-parameter limit.
_CHUNK: Final = 500


def evict(
    conn: Any,
    ns: str | None,
    limit: int,
    now: float,
    expired: list[tuple[int, str]],
    lru: list[tuple[int, str]],
) -> None:
    """Delete entries of ``ns`` (or of all) beyond ``limit``: expired ones (earliest
    expiry first) into ``expired``, then least recently used into ``lru``."""
    args: tuple[str, ...] = ()
    if ns is None:
        count = conn.execute("SELECT total(entries) FROM namespaces").get
        where = ""
    else:
        count = conn.execute("SELECT entries FROM namespaces WHERE name = ?", (ns,)).get
        where, args = "namespace = ? AND ", (ns,)
    excess = int(count or 0) - limit
    if excess <= 0:
        return
    gone = conn.execute(
        f"DELETE FROM entries WHERE id IN (SELECT id FROM entries WHERE {where}"
        "expires_at <= ? ORDER BY expires_at, id LIMIT ?) RETURNING id, namespace",
        (*args, now, excess),
    ).fetchall()
    expired.extend((i, n) for i, n in gone)
    excess -= len(gone)
    if excess > 0:
        gone = conn.execute(
            f"DELETE FROM entries WHERE id IN (SELECT id FROM entries "
            f"{'WHERE namespace = ? ' if ns is not None else ''}"
            "ORDER BY last_access, id LIMIT ?) RETURNING id, namespace",
            (*args, excess),
        ).fetchall()
        lru.extend((i, n) for i, n in gone)


def read_changes(conn: Any, seq: int, identity: str | None) -> list[Change] | None:
    """The change records after ``seq`` (see ``Store.changes_since``), in one snapshot."""
    last = conn.execute(LAST_SEQ).get or 0
    if seq > last or (identity is not None and conn.execute(IDENTITY).get != identity):
        return None
    if seq == last:
        return []
    first = conn.execute("SELECT min(seq) FROM changes").get
    if first is None or seq + 1 < first:
        return None
    return [
        Change(s, "put" if op else "delete", entry_id, ns)
        for s, op, entry_id, ns in conn.execute(
            "SELECT seq, op, entry_id, namespace FROM changes WHERE seq > ? ORDER BY seq",
            (seq,),
        )
    ]


#: Rows :func:`pages` reads per statement (6 MB of vectors at 384 float32 dimensions).
VECTOR_PAGE = 4096


def pages(
    read: Callable[[Callable[[Any], list[Any]]], list[Any]], column: str, now: float | None
) -> Iterator[tuple[int, str, Any]]:
    """``(id, namespace, column)`` of the entries with a vector (not expired at ``now``
    if given), ascending id, :data:`VECTOR_PAGE` rows per ``read`` (the store's, under
    its lock: each page a read of its own, the lock free between them). What is held
    at once is a page, not the table (about 1.5 KB a row at 384 float32 dimensions).
    Another process's writes can land between two pages; whoever rebuilds an index
    from them replays the change log from the sequence taken before, which makes that
    whole."""
    if column not in ("vector", "response"):  # (a name put into the SQL text)
        raise ValueError(f"no such column to page through: {column!r}")
    sql = f"SELECT id, namespace, {column} FROM entries WHERE vector IS NOT NULL AND id > ?"
    if now is not None:
        sql += " AND (expires_at IS NULL OR expires_at > ?)"
    sql += " ORDER BY id LIMIT ?"

    def page(args: tuple[Any, ...]) -> list[Any]:
        return read(lambda c: c.execute(sql, args).fetchall())

    last, size = 0, VECTOR_PAGE  # (ids start at 1)
    while True:
        got = page((last, size) if now is None else (last, now, size))
        yield from got
        if len(got) < size:
            return
        last = got[-1][0]


def batches(
    rows: Iterable[tuple[int, str, _T]], batch_size: int
) -> Iterator[tuple[str, list[int], list[_T]]]:
    """``(id, namespace, value)`` rows in batches ``(namespace, ids, values)`` of one
    namespace, of at most ``batch_size`` (full ones as they fill, then the rest by
    namespace). At most ``batch_size`` rows are held: when the namespaces being filled
    hold that many together, the fullest goes out before it is full."""
    pending: dict[str, tuple[list[int], list[_T]]] = {}
    held = 0
    for entry_id, ns, value in rows:
        ids, values = pending.setdefault(ns, ([], []))
        ids.append(entry_id)
        values.append(value)
        held += 1
        if held >= batch_size:
            if len(ids) < batch_size:  # (several namespaces: the fullest)
                ns = max(pending, key=lambda name: len(pending[name][0]))
                ids, values = pending[ns]
            yield ns, ids, values
            del pending[ns]
            held -= len(ids)
    for ns in sorted(pending):
        ids, values = pending[ns]
        yield ns, ids, values


def claim_meta(conn: Any, meta: Mapping[str, str]) -> dict[str, str]:
    """:func:`~semcache._store.claim_settings` against the meta table as the put's
    transaction reads it: the settings to record.

    Raises:
        EmbedderMismatchError: one is held with another value.
    """
    held = {n: conn.execute("SELECT value FROM meta WHERE name = ?", (n,)).get for n in meta}
    return claim_settings(meta, held)


def read_vectors(conn: Any, ids: Sequence[int]) -> dict[int, tuple[str, bytes]]:
    """``id -> (namespace, vector)`` of those of ``ids`` stored with a vector."""
    out: dict[int, tuple[str, bytes]] = {}
    for chunk in chunks(ids):
        sql = (
            "SELECT id, namespace, vector FROM entries WHERE vector IS NOT NULL"
            f" AND id IN ({marks(chunk)})"
        )
        for entry_id, ns, vector in conn.execute(sql, chunk):
            out[entry_id] = (ns, vector)
    return out


def translate(exc: apsw.Error, path: str, busy_timeout: float) -> Exception:
    """The semcache exception for an apsw one on the file ``path`` (raise it ``from
    exc``)."""
    if isinstance(exc, (apsw.NotADBError, apsw.CorruptError)):
        return StoreCorruptError(
            f"{path} is not a healthy semcache database ({exc}); "
            "restore it from a checkpoint or delete it to start empty"
        )
    if isinstance(exc, apsw.BusyError):
        return StoreError(
            f"{path} stayed locked by another connection for more than {busy_timeout:g} s"
        )
    if isinstance(exc, (apsw.ConnectionClosedError, apsw.CursorClosedError)):
        return CacheClosedError("store is closed")
    return StoreError(f"{path}: {exc}")


def is_local(path: str) -> bool:
    """Whether ``path`` names a file (not in-memory, not a URI)."""
    return path not in ("", ":memory:") and not path.startswith("file:")


def file_id(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of a database file, or None (in-memory, URI, or missing)."""
    if not is_local(path):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def chunks(ids: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """``ids`` in tuples of at most :data:`_CHUNK` (none for no ids)."""
    ids = tuple(ids)
    for lo in range(0, len(ids), _CHUNK):
        yield ids[lo : lo + _CHUNK]


def marks(chunk: Sequence[int]) -> str:
    return ",".join("?" * len(chunk))
