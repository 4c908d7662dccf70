"""The SQLite store's part of the error budget's state (see
:class:`~semcache._store._base.QualityState`): a record per entry in the ``record``
column of ``entries``, counters per namespace in ``quality_counts`` (schema version 3),
the outcome log in ``quality_outcomes`` (schema version 4).

A mixin of :class:`~semcache._store._sqlite.SQLiteStore`, which supplies the
connection's read and write transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._base import RecordChange
from ._quality_checks import (
    check_counts,
    check_counts_namespace,
    check_outcomes,
    check_records,
    record_ids,
)
from ._sqlite_ops import chunks, marks

__all__ = ["SQLiteQuality"]

_T = TypeVar("_T")

#: Sets an existing entry's record; an id with no entry updates nothing. An UPDATE
#: fires none of the entries' triggers (they log inserts and deletes), so the change
#: log and the namespace counts do not move, and ``last_access`` is not touched.
_WRITE_RECORD: Final = "UPDATE entries SET record = ?2 WHERE id = ?1"
_READ_RECORDS: Final = "SELECT id, response, created_at, record FROM entries WHERE id IN ({})"
_ADD_COUNT: Final = (
    "INSERT INTO quality_counts(namespace, name, value) VALUES (?, ?, ?) "
    "ON CONFLICT(namespace, name) DO UPDATE SET value = value + excluded.value"
)
_READ_COUNTS: Final = "SELECT name, value FROM quality_counts WHERE namespace = ?"
_ADD_OUTCOME: Final = "INSERT INTO quality_outcomes(namespace, row) VALUES (?, ?)"
#: Drops every row of the namespace at or before its (keep + 1)-th newest.
_TRIM_OUTCOMES: Final = (
    "DELETE FROM quality_outcomes WHERE namespace = ?1 AND seq <= ("
    "SELECT seq FROM quality_outcomes WHERE namespace = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)"
)
_READ_OUTCOMES: Final = "SELECT row FROM quality_outcomes WHERE namespace = ? ORDER BY seq"


class SQLiteQuality:
    """``write_records``, ``update_records``, ``add_counts``, ``read_counts``,
    ``add_outcomes`` and ``read_outcomes`` on the store's connection."""

    __slots__ = ()

    if TYPE_CHECKING:

        def _write(self) -> AbstractContextManager[Any]: ...

        def _read(self, fn: Callable[[Any], _T]) -> _T: ...

    def write_records(self, records: Mapping[int, str]) -> None:
        """Set the record text of existing entries by id, in one transaction; unknown
        ids are skipped (see :class:`~semcache._store._base.QualityState`).

        Raises:
            InvalidInputError: an id that is not an int or a record that is not text.
            InputTooLargeError: a record over 16 KiB (UTF-8).
            CacheClosedError: the store is closed.
            StoreError: the write failed (nothing of it is kept).
        """
        rows = check_records(records)  # before anything is written
        if not rows:
            return
        with self._write() as conn:
            conn.executemany(_WRITE_RECORD, rows)

    def update_records(self, ids: Sequence[int], change: RecordChange) -> None:
        """Change records in place in one IMMEDIATE transaction (see
        :class:`~semcache._store._base.RecordUpdate`): no other connection writes
        between the read and the write.

        Raises:
            InvalidInputError, InputTooLargeError: ``change`` returned a text
                ``write_records`` would refuse; nothing is written.
            CacheClosedError: the store is closed.
            StoreError: the read or the write failed (nothing of it is kept).
        """
        wanted = record_ids(ids)
        if not wanted:
            return
        with self._write() as conn:
            texts: dict[int, str] = {}
            for chunk in chunks(wanted):
                sql = _READ_RECORDS.format(marks(chunk))
                for entry_id, response, created_at, record in conn.execute(sql, chunk):
                    text = change(int(entry_id), response, float(created_at), record)
                    if text is not None:
                        texts[int(entry_id)] = text
            rows = check_records(texts)  # (raised inside: the transaction rolls back)
            if rows:
                conn.executemany(_WRITE_RECORD, rows)

    def add_counts(self, namespace: str, deltas: Mapping[str, float]) -> None:
        """Add each delta to the namespace's counter of that name, in one transaction.

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            InvalidInputError: a counter name that is not short printable ASCII, or a
                delta that is not a finite number.
            CacheClosedError: the store is closed.
            StoreError: the write failed (nothing of it is kept).
        """
        rows = [(namespace, n, v) for n, v in check_counts(namespace, deltas)]
        if not rows:
            return
        with self._write() as conn:
            conn.executemany(_ADD_COUNT, rows)

    def read_counts(self, namespace: str) -> dict[str, float]:
        """The namespace's counters (empty when none).

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            CacheClosedError: the store is closed.
            StoreError: the read failed.
        """
        check_counts_namespace(namespace)
        rows = self._read(lambda c: c.execute(_READ_COUNTS, (namespace,)).fetchall())
        return {str(name): float(value) for name, value in rows}

    def add_outcomes(self, namespace: str, rows: Sequence[str], keep: int) -> None:
        """Append ``rows`` to the namespace's outcome log and keep its newest ``keep``,
        in one transaction (see :class:`~semcache._store._base.OutcomeLog`).

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            InvalidInputError: a row that is not printable ASCII text, or a bad ``keep``.
            InputTooLargeError: a row over 4 KiB.
            CacheClosedError: the store is closed.
            StoreError: the write failed (nothing of it is kept).
        """
        checked = check_outcomes(namespace, rows, keep)
        if not checked:
            self._read(lambda c: None)  # (a closed store still refuses)
            return
        with self._write() as conn:
            conn.executemany(_ADD_OUTCOME, [(namespace, row) for row in checked])
            conn.execute(_TRIM_OUTCOMES, (namespace, int(keep)))

    def read_outcomes(self, namespace: str) -> list[str]:
        """The namespace's outcome log, oldest first.

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            CacheClosedError: the store is closed.
            StoreError: the read failed.
        """
        check_counts_namespace(namespace)
        rows = self._read(lambda c: c.execute(_READ_OUTCOMES, (namespace,)).fetchall())
        return [str(row) for (row,) in rows]
