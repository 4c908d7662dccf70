"""An in-process store: dictionaries, no persistence."""

from __future__ import annotations

import heapq
import threading
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._errors import CacheClosedError
from ._base import (
    AnswerBatch,
    Change,
    Limits,
    NewEntry,
    NoLocalFile,
    PutResult,
    RecordChange,
    StoredEntry,
    VectorBatch,
    claim_settings,
)
from ._quality_checks import (
    check_counts,
    check_counts_namespace,
    check_new_records,
    check_outcomes,
    check_records,
)

__all__ = ["MemoryStore"]

_NO_LIMITS = Limits()


@dataclass(slots=True)
class _Row:
    entry: StoredEntry
    vector: bytes | None
    last_access: float


class MemoryStore(NoLocalFile):
    """A :class:`~semcache.Store` kept in this process's memory.

    The default for ``SemanticCache()`` without a path. Everything is lost when the
    process ends; eviction is O(log n) per victim (recency and expiry heaps, whose
    stale records are skipped lazily and dropped when they outnumber the live ones),
    so it behaves like the SQLite store at any size, and picks the same victims: the
    order is ``(last_access, id)`` even when times arrive out of order or tie.

    Args:
        max_changes: change-log records kept for :meth:`changes_since`.
    """

    persistent = False

    def __init__(self, *, max_changes: int = 100_000) -> None:
        self._lock = threading.RLock()
        self._rows: dict[int, _Row] = {}
        self._by_key: dict[bytes, int] = {}
        # Entry ids per namespace, in insertion (= ascending id) order.
        self._ns_ids: dict[str, dict[int, None]] = {}
        # (last_access, id) records; one is current while the row's last_access equals
        # it (times never move backwards, so a superseded record never becomes current).
        self._lru: list[tuple[float, int]] = []
        self._ns_lru: dict[str, list[tuple[float, int]]] = {}
        self._expiry: list[tuple[float, int]] = []
        self._ns_expiry: dict[str, list[tuple[float, int]]] = {}
        self._meta: dict[str, str] = {}
        # The error budget's counters, per namespace (see QualityState).
        self._counts: dict[str, dict[str, float]] = {}
        # The error budget's outcome logs, per namespace (see OutcomeLog).
        self._outcomes: dict[str, list[str]] = {}
        self._changes: deque[Change] = deque()
        self._max_changes = max_changes
        self._seq = 0
        self._next_id = 1
        self._identity = uuid.uuid4().hex
        self._closed = False

    # -- settings ---------------------------------------------------------------------
    def get_meta(self, name: str) -> str | None:
        with self._lock:
            self._check_open()
            return self._meta.get(name)

    def set_meta(self, values: Mapping[str, str]) -> None:
        with self._lock:
            self._check_open()
            self._meta.update(values)

    # -- reads ------------------------------------------------------------------------
    def get_by_key(self, key: bytes) -> StoredEntry | None:
        with self._lock:
            self._check_open()
            entry_id = self._by_key.get(key)
            return None if entry_id is None else self._rows[entry_id].entry

    def get_by_ids(self, ids: Sequence[int], *, vectors: bool = False) -> dict[int, StoredEntry]:
        with self._lock:
            self._check_open()
            rows = self._rows
            if not vectors:
                return {i: rows[i].entry for i in ids if i in rows}
            out: dict[int, StoredEntry] = {}
            for i in ids:
                row = rows.get(i)
                if row is not None:
                    e = row.entry
                    out[i] = StoredEntry(
                        e.id,
                        e.key,
                        e.namespace,
                        e.query,
                        e.response,
                        e.metadata,
                        e.created_at,
                        e.expires_at,
                        row.vector,
                        e.record,
                    )
            return out

    def count(self, namespace: str | None = None) -> int:
        with self._lock:
            self._check_open()
            if namespace is None:
                return len(self._rows)
            return len(self._ns_ids.get(namespace, ()))

    def namespace_counts(self) -> dict[str, int]:
        with self._lock:
            self._check_open()
            return {ns: len(ids) for ns, ids in sorted(self._ns_ids.items()) if ids}

    def stored_keys(self) -> list[bytes]:
        """Every stored key (the cache's exact-layer filter is filled from them).

        Raises:
            CacheClosedError: the store is closed.
        """
        with self._lock:
            self._check_open()
            return list(self._by_key)

    def iter_vectors(
        self, *, now: float | None = None, batch_size: int = 65536
    ) -> Iterator[VectorBatch]:
        for ns, ids, vecs in self._live(now, batch_size, answers=False):
            yield VectorBatch(ns, ids, vecs)

    def iter_answers(
        self, *, now: float | None = None, batch_size: int = 4096
    ) -> Iterator[AnswerBatch]:
        """See :meth:`~semcache._store.AnswerScan.iter_answers`."""
        for ns, ids, responses in self._live(now, batch_size, answers=True):
            yield AnswerBatch(ns, ids, responses)

    def _live(
        self, now: float | None, batch_size: int, *, answers: bool
    ) -> Iterator[tuple[str, list[int], list[Any]]]:
        """The entries with a vector (not expired at ``now`` if given) as of one moment:
        ``(namespace, ids, vectors or responses)`` batches."""
        with self._lock:
            self._check_open()
            snapshot: dict[str, tuple[list[int], list[Any]]] = {}
            for entry_id in sorted(self._rows):
                row = self._rows[entry_id]
                if row.vector is None:
                    continue
                exp = row.entry.expires_at
                if now is not None and exp is not None and exp <= now:
                    continue
                ids, values = snapshot.setdefault(row.entry.namespace, ([], []))
                ids.append(entry_id)
                values.append(row.entry.response if answers else row.vector)
        for ns, (ids, values) in sorted(snapshot.items()):
            for lo in range(0, len(ids), batch_size):
                yield ns, ids[lo : lo + batch_size], values[lo : lo + batch_size]

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
        limits = limits or _NO_LIMITS
        check_new_records(entries)  # before anything is written
        with self._lock:
            self._check_open()
            result = PutResult()
            settings = claim_settings(meta, self._meta) if meta else None  # before any write
            if touches:
                self._touch(touches)
            if settings:
                self._meta.update(settings)
            for new in entries:
                old = self._by_key.get(new.key)
                if old is not None:
                    result.replaced.append(self._delete(old))
                result.ids.append(self._insert(new))
            if entries:
                ns = entries[0].namespace
                expired: list[tuple[int, str]] = []
                lru: list[tuple[int, str]] = []
                if limits.namespace_quota is not None:
                    self._evict(ns, limits.namespace_quota, now, expired, lru)
                if limits.max_entries is not None:
                    self._evict(None, limits.max_entries, now, expired, lru)
                result.evicted = expired + lru
                result.expired_evicted = len(expired)
            return result

    def delete_by_key(self, key: bytes) -> tuple[int, str] | None:
        with self._lock:
            self._check_open()
            entry_id = self._by_key.get(key)
            return None if entry_id is None else self._delete(entry_id)

    def delete_ids(self, ids: Sequence[int]) -> list[tuple[int, str]]:
        with self._lock:
            self._check_open()
            return [self._delete(i) for i in ids if i in self._rows]

    def delete_expired(self, now: float, namespace: str | None = None) -> list[tuple[int, str]]:
        with self._lock:
            self._check_open()
            heap = self._expiry if namespace is None else self._ns_expiry.get(namespace, [])
            out: list[tuple[int, str]] = []
            while heap and heap[0][0] <= now:
                exp, entry_id = heapq.heappop(heap)
                row = self._rows.get(entry_id)
                if row is not None and row.entry.expires_at == exp:
                    out.append(self._delete(entry_id))
            return out

    def clear(self, namespace: str | None = None) -> int:
        with self._lock:
            self._check_open()
            ids = list(self._rows if namespace is None else self._ns_ids.get(namespace, ()))
            for entry_id in ids:
                self._delete(entry_id)
            if namespace is None:
                self._counts.clear()
                self._outcomes.clear()
            else:
                self._counts.pop(namespace, None)
                self._outcomes.pop(namespace, None)
            return len(ids)

    def touch(self, access: Mapping[int, float]) -> None:
        with self._lock:
            self._check_open()
            self._touch(access)

    def get_vectors(self, ids: Sequence[int]) -> dict[int, tuple[str, bytes]]:
        with self._lock:
            self._check_open()
            out: dict[int, tuple[str, bytes]] = {}
            for i in ids:
                row = self._rows.get(i)
                if row is not None and row.vector is not None:
                    out[i] = (row.entry.namespace, row.vector)
            return out

    # -- the error budget's state (QualityState) ------------------------------------
    def write_records(self, records: Mapping[int, str]) -> None:
        """Set the record of existing entries (see :class:`~semcache.Store`'s
        ``QualityState``); unknown ids are skipped.

        Raises:
            InvalidInputError: an id that is not an int or a record that is not text.
            InputTooLargeError: a record over 16 KiB (UTF-8).
            CacheClosedError: the store is closed.
        """
        checked = check_records(records)  # before anything is written
        with self._lock:
            self._check_open()
            for entry_id, text in checked:
                row = self._rows.get(entry_id)
                if row is not None:
                    row.entry.record = text

    def update_records(self, ids: Sequence[int], change: RecordChange) -> None:
        """Change records in place under the store's lock (see
        :class:`~semcache._store._base.RecordUpdate`).

        Raises:
            InvalidInputError, InputTooLargeError: ``change`` returned a text
                ``write_records`` would refuse; nothing is written.
            CacheClosedError: the store is closed.
        """
        with self._lock:
            self._check_open()
            texts: dict[int, str] = {}
            for entry_id in dict.fromkeys(int(i) for i in ids):
                row = self._rows.get(entry_id)
                if row is None:
                    continue
                e = row.entry
                text = change(entry_id, e.response, e.created_at, e.record)
                if text is not None:
                    texts[entry_id] = text
            for entry_id, text in check_records(texts):  # (all checked, then written)
                self._rows[entry_id].entry.record = text

    def add_counts(self, namespace: str, deltas: Mapping[str, float]) -> None:
        """Add ``deltas`` to the namespace's counters.

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            InvalidInputError: a counter name that is not short printable ASCII, or a
                delta that is not a finite number.
            CacheClosedError: the store is closed.
        """
        checked = check_counts(namespace, deltas)  # before anything is added
        with self._lock:
            self._check_open()
            counts = self._counts.setdefault(namespace, {})
            for name, delta in checked:
                counts[name] = counts.get(name, 0.0) + delta

    def read_counts(self, namespace: str) -> dict[str, float]:
        """The namespace's counters.

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            CacheClosedError: the store is closed.
        """
        check_counts_namespace(namespace)
        with self._lock:
            self._check_open()
            return dict(self._counts.get(namespace, {}))

    def add_outcomes(self, namespace: str, rows: Sequence[str], keep: int) -> None:
        """Append ``rows`` to the namespace's outcome log and keep its newest ``keep``
        (see :class:`~semcache._store._base.OutcomeLog`).

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            InvalidInputError: a row that is not printable ASCII text, or a bad ``keep``.
            InputTooLargeError: a row over 4 KiB.
            CacheClosedError: the store is closed.
        """
        checked = check_outcomes(namespace, rows, keep)  # before anything is added
        with self._lock:
            self._check_open()
            if not checked:
                return
            log = self._outcomes.setdefault(namespace, [])
            log += checked
            del log[: max(0, len(log) - int(keep))]

    def read_outcomes(self, namespace: str) -> list[str]:
        """The namespace's outcome log, oldest first.

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            CacheClosedError: the store is closed.
        """
        check_counts_namespace(namespace)
        with self._lock:
            self._check_open()
            return list(self._outcomes.get(namespace, ()))

    # -- change log -------------------------------------------------------------------
    def seq(self) -> int:
        with self._lock:
            self._check_open()
            return self._seq

    def identity(self) -> str:
        with self._lock:
            self._check_open()
            return self._identity

    def changes_since(self, seq: int, identity: str | None = None) -> list[Change] | None:
        with self._lock:
            self._check_open()
            if seq > self._seq or (identity is not None and identity != self._identity):
                return None
            if seq == self._seq:
                return []
            first = self._changes[0].seq if self._changes else self._seq + 1
            if seq + 1 < first:
                return None
            return [c for c in self._changes if c.seq > seq]

    def prune_changes(self, keep_last: int) -> int:
        with self._lock:
            self._check_open()
            dropped = 0
            while len(self._changes) > keep_last:
                self._changes.popleft()
                dropped += 1
            return dropped

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._rows.clear()
            self._by_key.clear()
            self._ns_ids.clear()
            self._lru.clear()
            self._ns_lru.clear()
            self._expiry.clear()
            self._ns_expiry.clear()
            self._counts.clear()

    # -- internals --------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise CacheClosedError("store is closed")

    def _log(self, op: Literal["put", "delete"], entry_id: int, namespace: str) -> None:
        self._seq += 1
        self._changes.append(Change(self._seq, op, entry_id, namespace))
        if len(self._changes) > self._max_changes:
            self._changes.popleft()

    def _insert(self, new: NewEntry) -> int:
        entry_id = self._next_id
        self._next_id += 1
        entry = StoredEntry(
            entry_id,
            new.key,
            new.namespace,
            new.query,
            new.response,
            new.metadata,
            new.created_at,
            new.expires_at,
            None,
            new.record,
        )
        self._rows[entry_id] = _Row(entry, new.vector, new.created_at)
        self._by_key[new.key] = entry_id
        self._ns_ids.setdefault(new.namespace, {})[entry_id] = None
        self._push_recency(entry_id, new.namespace, new.created_at)
        if new.expires_at is not None:
            if len(self._expiry) > 2 * len(self._rows) + 1024:
                self._rebuild_heaps()
            heapq.heappush(self._expiry, (new.expires_at, entry_id))
            heapq.heappush(
                self._ns_expiry.setdefault(new.namespace, []), (new.expires_at, entry_id)
            )
        self._log("put", entry_id, new.namespace)
        return entry_id

    def _push_recency(self, entry_id: int, namespace: str, when: float) -> None:
        if len(self._lru) > 2 * len(self._rows) + 1024:
            self._rebuild_heaps()
        record = (when, entry_id)
        heapq.heappush(self._lru, record)
        heapq.heappush(self._ns_lru.setdefault(namespace, []), record)

    def _rebuild_heaps(self) -> None:
        """Drop superseded heap records (they are skipped lazily otherwise)."""
        self._expiry = []
        self._ns_expiry = {}
        self._lru = []
        self._ns_lru = {}
        for entry_id, row in self._rows.items():
            ns = row.entry.namespace
            exp = row.entry.expires_at
            if exp is not None:
                self._expiry.append((exp, entry_id))
                self._ns_expiry.setdefault(ns, []).append((exp, entry_id))
            self._lru.append((row.last_access, entry_id))
            self._ns_lru.setdefault(ns, []).append((row.last_access, entry_id))
        for heap in (self._expiry, self._lru, *self._ns_expiry.values(), *self._ns_lru.values()):
            heapq.heapify(heap)

    def _delete(self, entry_id: int) -> tuple[int, str]:
        row = self._rows.pop(entry_id)
        ns = row.entry.namespace
        del self._by_key[row.entry.key]
        ns_ids = self._ns_ids[ns]
        del ns_ids[entry_id]
        if not ns_ids:
            del self._ns_ids[ns]
            self._ns_lru.pop(ns, None)
            self._ns_expiry.pop(ns, None)
        self._log("delete", entry_id, ns)
        return entry_id, ns

    def _touch(self, access: Mapping[int, float]) -> None:
        for entry_id, when in access.items():
            row = self._rows.get(entry_id)
            if row is None or when <= row.last_access:
                continue
            row.last_access = when
            self._push_recency(entry_id, row.entry.namespace, when)

    def _evict(
        self,
        namespace: str | None,
        limit: int,
        now: float,
        expired: list[tuple[int, str]],
        lru: list[tuple[int, str]],
    ) -> None:
        """Delete entries of ``namespace`` (or of all) beyond ``limit``: expired ones
        (earliest expiry first) into ``expired``, then least recently used into ``lru``."""
        if namespace is None:
            size, recency, expiry = len(self._rows), self._lru, self._expiry
        else:
            size = len(self._ns_ids.get(namespace, ()))
            recency = self._ns_lru.get(namespace, [])
            expiry = self._ns_expiry.get(namespace, [])
        excess = size - limit
        rows = self._rows
        while excess > 0 and expiry and expiry[0][0] <= now:
            exp, entry_id = heapq.heappop(expiry)
            row = rows.get(entry_id)
            if row is None or row.entry.expires_at != exp:
                continue
            expired.append(self._delete(entry_id))
            excess -= 1
        while excess > 0:
            when, entry_id = heapq.heappop(recency)
            row = rows.get(entry_id)
            if row is None or row.last_access != when:
                continue
            lru.append(self._delete(entry_id))
            excess -= 1
