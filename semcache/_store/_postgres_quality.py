"""PostgresStore's error-budget state (see ``_postgres``): entries' records in the
``record`` column of ``entries``, and each namespace's counters in ``quality_counts``
(both added by schema migration 2); each namespace's outcome log in
``quality_outcomes`` (schema migration 3)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._base import RecordChange
from ._quality_checks import (
    check_counts,
    check_counts_namespace,
    check_outcomes,
    check_records,
    record_ids,
)

_T = TypeVar("_T")

#: The first key of the advisory locks that serialize adds to one namespace's outcome
#: log (the second is a hash of the schema and the namespace). Two-key advisory locks
#: never collide with the one-key :data:`~._postgres_schema.MIGRATION_LOCK`.
OUTCOME_LOCK: Final = 0x53454D4F  # "SEMO"
_ADD_OUTCOMES: Final = (
    "INSERT INTO quality_outcomes(namespace, outcome) SELECT %s, u.r "
    "FROM unnest(%s::text[]) WITH ORDINALITY AS u(r, i) ORDER BY u.i"
)
#: Drops every row of the namespace at or before its (keep + 1)-th newest.
_TRIM_OUTCOMES: Final = (
    "DELETE FROM quality_outcomes WHERE namespace = %s AND seq <= (SELECT seq FROM "
    "quality_outcomes WHERE namespace = %s ORDER BY seq DESC OFFSET %s LIMIT 1)"
)


def outcome_lock_key(schema: str, namespace: bytes) -> int:
    """The second key of the advisory lock of ``namespace``'s outcome log in ``schema``:
    a signed 32-bit hash (namespaces that share one only wait for each other)."""
    digest = hashlib.blake2b(schema.encode() + b"\0" + namespace, digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


class PgQuality:
    """The error-budget half of :class:`~semcache._store._postgres.PostgresStore`
    (which provides the connection helpers below).

    Neither method takes the writer lock of ``log_state``: a record is an ``UPDATE``
    (the change-log trigger fires on inserts and deletes only, so other processes see
    no change, and ``last_access``, expiry and counts stay as they were), and a counter
    is an ``INSERT ... ON CONFLICT DO UPDATE SET value = value + excluded.value``, each
    one statement that takes row locks only (in ascending id / name order, so
    concurrent calls do not deadlock often; a deadlock is retried).

    An outcome log's add is one transaction that takes a transaction-level advisory lock
    of the namespace (:data:`OUTCOME_LOCK` and :func:`outcome_lock_key`) before it
    inserts its rows and trims the log: adds to one namespace run one at a time, so each
    add's rows take consecutive ``seq`` values (a ``bigserial``), after those of every
    add committed before it.
    """

    if TYPE_CHECKING:
        schema: str

        def _run(self, fn: Callable[[Any], _T], *, write: bool) -> _T: ...
        def _read(self, fn: Callable[[Any], _T]) -> _T: ...

    def write_records(self, records: Mapping[int, str]) -> None:
        """Set the error-budget record of existing entries by id, in one statement; an
        id with no entry is skipped. Nothing else of the entry changes.

        Raises:
            InvalidInputError: a record or id of the wrong type (nothing is written).
            StoreUnavailableError: the server cannot be reached.
            StoreError: another database error.
        """
        items = check_records(records)
        if not items:
            self._read(lambda c: None)
            return
        ids = [i for i, _ in items]
        texts = [t.encode() for _, t in items]
        self._run(
            lambda c: c.execute(
                "UPDATE entries AS e SET record = v.r FROM unnest(%s::bigint[], "
                "%s::bytea[]) AS v(id, r) WHERE e.id = v.id",
                (ids, texts),
            ),
            write=True,
        )

    def update_records(self, ids: Sequence[int], change: RecordChange) -> None:
        """Change records in place in one transaction that locks their rows first
        (``SELECT ... FOR UPDATE``, ascending id), so no other writer changes them in
        between (see :class:`~semcache._store._base.RecordUpdate`). A retried
        transaction (a deadlock) calls ``change`` again on what it reads then.

        Raises:
            InvalidInputError, InputTooLargeError: ``change`` returned a text
                ``write_records`` would refuse; nothing is written.
            StoreUnavailableError: the server cannot be reached.
            StoreError: another database error.
        """
        wanted = record_ids(ids)
        if not wanted:
            self._read(lambda c: None)
            return

        def run(conn: Any) -> None:
            with conn.transaction():
                rows = conn.execute(
                    "SELECT id, response, created_at, record FROM entries WHERE id = ANY(%s) "
                    "ORDER BY id FOR UPDATE",
                    (wanted,),
                ).fetchall()
                texts: dict[int, str] = {}
                for i, response, created_at, record in rows:
                    old = None if record is None else bytes(record).decode()
                    text = change(int(i), bytes(response).decode(), float(created_at), old)
                    if text is not None:
                        texts[int(i)] = text
                items = check_records(texts)
                if items:
                    conn.execute(
                        "UPDATE entries AS e SET record = v.r FROM unnest(%s::bigint[], "
                        "%s::bytea[]) AS v(id, r) WHERE e.id = v.id",
                        ([i for i, _ in items], [t.encode() for _, t in items]),
                    )

        self._run(run, write=True)

    def add_counts(self, namespace: str, deltas: Mapping[str, float]) -> None:
        """Add each delta to the namespace's named counter, in one statement: concurrent
        adds from any number of processes all count.

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            InvalidInputError: a bad name or a delta that is not a finite number.
            StoreUnavailableError: the server cannot be reached.
            StoreError: another database error.
        """
        items = check_counts(namespace, deltas)
        if not items:
            self._read(lambda c: None)
            return
        args = (namespace.encode(), [n for n, _ in items], [d for _, d in items])
        self._run(
            lambda c: c.execute(
                "INSERT INTO quality_counts AS t(namespace, name, value) SELECT %s, u.n, u.v "
                "FROM unnest(%s::text[], %s::float8[]) AS u(n, v) ORDER BY u.n "
                "ON CONFLICT (namespace, name) DO UPDATE SET value = t.value + excluded.value",
                args,
            ),
            write=True,
        )

    def read_counts(self, namespace: str) -> dict[str, float]:
        """The namespace's counters (empty when it has none).

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            StoreUnavailableError: the server cannot be reached.
            StoreError: another database error.
        """
        rows = self._read(
            lambda c: c.execute(
                "SELECT name, value FROM quality_counts WHERE namespace = %s",
                (check_counts_namespace(namespace).encode(),),
            ).fetchall()
        )
        return {str(n): float(v) for n, v in rows}

    def add_outcomes(self, namespace: str, rows: Sequence[str], keep: int) -> None:
        """Append ``rows`` to the namespace's outcome log and keep its newest ``keep``, in
        one transaction under the namespace's advisory lock (see the class docstring and
        :class:`~semcache._store._base.OutcomeLog`).

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            InvalidInputError: a row that is not printable ASCII text, or a bad ``keep``.
            InputTooLargeError: a row over 4 KiB.
            CacheClosedError: the store is closed.
            StoreUnavailableError: the server cannot be reached.
            StoreError: another database error (nothing of the add is kept).
        """
        checked = check_outcomes(namespace, rows, keep)  # before anything is written
        if not checked:
            self._read(lambda c: None)  # (a closed store still refuses)
            return
        ns = namespace.encode()
        lock = outcome_lock_key(self.schema, ns)

        def run(conn: Any) -> None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (OUTCOME_LOCK, lock))
                conn.execute(_ADD_OUTCOMES, (ns, checked))
                conn.execute(_TRIM_OUTCOMES, (ns, ns, int(keep)))

        self._run(run, write=True)

    def read_outcomes(self, namespace: str) -> list[str]:
        """The namespace's outcome log, oldest first (one statement).

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            CacheClosedError: the store is closed.
            StoreUnavailableError: the server cannot be reached.
            StoreError: another database error.
        """
        rows = self._read(
            lambda c: c.execute(
                "SELECT outcome FROM quality_outcomes WHERE namespace = %s ORDER BY seq",
                (check_counts_namespace(namespace).encode(),),
            ).fetchall()
        )
        return [str(row) for (row,) in rows]
