"""The Store contract: the cache's source of truth.

A store keeps entries (key, namespace, query, response, metadata JSON, vector bytes,
created_at, expires_at, last_access), a small key/value table of cache settings
(embedder fingerprint, dimension, vector dtype), and a *change log*: every insert and
delete advances a sequence number, so an index (or another process) can catch up with
:meth:`Store.changes_since`. Entry ids are assigned by the store, increase, and are
never reused.

A store also has an *identity* (:meth:`Store.identity`): a random token created with
the store's data and kept with it. Data that was lost or replaced (a server restarted
without persistence, ``FLUSHDB``, a dropped schema, a deleted file) comes back with
another identity, and numbers its entries and changes from 1 again. A reader's
position in a store is therefore the pair ``(identity, seq)``: :meth:`Store.changes_since`
answers None (rebuild) when the identity is not the store's any more, or when the
store's sequence is below ``seq`` (it lost its tail: restored from an older copy,
failed over to a lagging replica). Within one identity a store never reissues an id,
except when it loses its tail, which the two checks cannot always see once the store
has moved past ``seq`` again; a cache therefore also scores every candidate it serves
against the candidate's stored vector (see ``SemanticCache``).

Every implementation passes ``tests/test_store_conformance.py``.

Capabilities
------------
Beyond the :class:`Store` protocol a store may offer what a cache asks of some stores
only. Each is optional: a store without the member (a third-party store written before
it existed) is treated as lacking the capability, through the accessors below, so the
cache never names a store class.

* ``local_path`` (:class:`LocalFile`): the local file that holds the data, or None.
  The cache keeps its index snapshots beside it (``<path>.index``); checkpoint work
  files and their leftovers live in its folder. Absent: None.
* ``claim(mode)`` (:class:`LocalFile`): take the ownership of that file a cache's
  ``multi_process_mode`` needs (``"single"``: this process alone; ``"shared"``: only
  shared caches), returning the lock to release at close, or None when there is
  nothing to lock. Absent: nothing is locked.
* ``backup(dest)``, ``inspect_copy(path)``, ``check_copy(path)`` (:class:`FileBackup`):
  a consistent one-file copy of the store for checkpoints, and the checks and facts of
  such a copy (the store's own schema lives with the store). Absent, or no
  ``local_path``: the cache cannot be checkpointed.
* ``search_index_factory()`` (:class:`ServerSearch`): server-side search offered as the
  index backend ``index_backend="store"``, chosen once when the cache opens. Absent or
  None: the store cannot search (a store that predates it but has ``search``,
  ``can_search`` and ``search_unavailable``, ``semcache._store._search.SearchableStore``,
  still searches).
* ``write_records(records)``, ``add_counts(namespace, deltas)``,
  ``read_counts(namespace)`` (:class:`QualityState`): the error budget's state kept in
  the store, so that it survives a reopen and is shared by every process using the
  store: each entry's record (JSON text, kept with the entry and gone with it) and
  per-namespace counters that are only ever added to. Absent: the budget lives in the
  process's memory only (:func:`quality_state`).
* ``add_outcomes(namespace, rows, keep)``, ``read_outcomes(namespace)``
  (:class:`OutcomeLog`): the error budget's outcome log, per namespace: the newest
  ``keep`` rows (short ASCII text, one per outcome the budget's risk model learns from),
  appended by every process using the store and read back whole when the model is
  refitted. Absent: the model learns from this process's outcomes only
  (:func:`outcome_log`).
* ``update_records(ids, change)`` (:class:`RecordUpdate`): records changed in place in
  one atomic step, so that what two processes learn of one entry at once is merged,
  not overwritten. Absent: the cache reads the records, then writes them
  (:func:`record_update`).
* ``iter_answers(now=, batch_size=)`` (:class:`AnswerScan`): the stored answers of the
  entries :meth:`Store.iter_vectors` yields, without their vectors, in one pass (what
  answer support's prototype tables are built from). Absent: they are read by id,
  batch by batch, after ``iter_vectors`` (:func:`answer_scan`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, cast, runtime_checkable

import numpy as np

from .._errors import EmbedderMismatchError

if TYPE_CHECKING:
    from .._index import SearchIndex
    from .._locking import StoreLock

__all__ = [
    "AnswerBatch",
    "AnswerScan",
    "Change",
    "FileBackup",
    "Limits",
    "LocalFile",
    "NewEntry",
    "NoLocalFile",
    "OutcomeLog",
    "PutResult",
    "QualityState",
    "RecordChange",
    "RecordUpdate",
    "SearchIndexFactory",
    "ServerSearch",
    "Store",
    "StoredEntry",
    "VectorBatch",
    "answer_scan",
    "claim_settings",
    "claim_store",
    "file_backup",
    "local_path",
    "outcome_log",
    "quality_state",
    "record_update",
]


@dataclass(slots=True)
class StoredEntry:
    """An entry as the store returns it (metadata still JSON text).

    Not frozen on purpose: it is built once per lookup on the hot path, and a frozen
    dataclass costs six times as much to construct.
    """

    id: int
    key: bytes
    namespace: str
    query: str
    response: str
    metadata: str | None
    created_at: float
    expires_at: float | None
    #: The stored vector (raw bytes), only from ``get_by_ids(..., vectors=True)``.
    vector: bytes | None = None
    #: What the error budget has observed of this entry (an ``EntryRecord`` as JSON
    #: text), from stores with the :class:`QualityState` capability; None: nothing yet
    #: (a put starts every entry without one).
    record: str | None = None


@dataclass(slots=True)
class NewEntry:
    """An entry to insert; it replaces any entry with the same ``key``.

    Not frozen, like :class:`StoredEntry`: every put builds one, and a frozen dataclass
    costs a microsecond more to construct. Stores do not modify it.
    """

    key: bytes
    namespace: str
    query: str
    response: str
    metadata: str | None
    vector: bytes | None
    created_at: float
    expires_at: float | None
    #: The error budget's record the entry starts with (JSON text, see
    #: :class:`QualityState`), stored with the entry in the put's own write; None: none.
    #: A store without the capability ignores it.
    record: str | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """Entry limits enforced inside the put's transaction.

    ``max_entries`` caps the whole store, ``namespace_quota`` the namespace being
    written. Victims are chosen inside the scope that overflowed: expired entries
    first (earliest expiry first), then least recently used (oldest ``last_access``,
    then lowest id).
    """

    max_entries: int | None = None
    namespace_quota: int | None = None


@dataclass(slots=True)
class PutResult:
    """What a put did.

    Attributes:
        ids: the new entries' ids, in input order (a key repeated in one batch gets one
            id per occurrence; only the last survives).
        replaced: ``(id, namespace)`` of entries removed because a new one had their key.
        evicted: ``(id, namespace)`` of entries removed to respect the limits, those
            that had already expired first; may include ids from ``ids``.
        expired_evicted: how many of ``evicted`` had already expired (its first ones).
    """

    ids: list[int] = field(default_factory=list)
    replaced: list[tuple[int, str]] = field(default_factory=list)
    evicted: list[tuple[int, str]] = field(default_factory=list)
    expired_evicted: int = 0


def claim_settings(meta: Mapping[str, str], held: Mapping[str, str | None]) -> dict[str, str]:
    """The settings of a put's ``meta`` the store does not hold yet (``held``: what it
    holds for each name, read in the put's transaction), to write with the entries.

    Raises:
        EmbedderMismatchError: the store holds one of them with another value (another
            process's put recorded it first); the put must write nothing.
    """
    for name, value in meta.items():
        current = held.get(name)
        if current is not None and current != value:
            raise EmbedderMismatchError(
                f"the store records {name} = {current}; this put would record {value}"
            )
    return {name: value for name, value in meta.items() if held.get(name) is None}


@dataclass(frozen=True, slots=True)
class Change:
    """One change-log record: ``op`` is ``"put"`` or ``"delete"`` of ``entry_id``."""

    seq: int
    op: Literal["put", "delete"]
    entry_id: int
    namespace: str


@dataclass(frozen=True, slots=True)
class VectorBatch:
    """Stored vectors of one namespace (raw bytes, in the cache's vector dtype)."""

    namespace: str
    ids: list[int]
    vectors: list[bytes]


@dataclass(slots=True)
class AnswerBatch:
    """Stored answers of one namespace (:meth:`AnswerScan.iter_answers`)."""

    namespace: str
    ids: list[int]
    responses: list[str]


@runtime_checkable
class Store(Protocol):
    """Persistent (or in-memory) storage for cache entries.

    All methods are thread-safe. Mutations are atomic: after a crash an entry is either
    wholly present (row, vector, change record) or absent. Methods raise
    ``CacheClosedError`` after :meth:`close` and ``StoreError`` on I/O failure.
    """

    #: Whether the store survives the process (the cache saves index snapshots only then).
    persistent: bool

    def get_meta(self, name: str) -> str | None:
        """A setting, or None."""
        ...

    def set_meta(self, values: Mapping[str, str]) -> None:
        """Write settings atomically."""
        ...

    def get_by_key(self, key: bytes) -> StoredEntry | None:
        """The entry with this exact-layer key (expired or not), or None."""
        ...

    def get_by_ids(self, ids: Sequence[int], *, vectors: bool = False) -> dict[int, StoredEntry]:
        """The entries among ``ids`` that exist, by id; with ``vectors``, each carries its
        stored vector (``StoredEntry.vector``, None for an entry stored without one)."""
        ...

    def put_many(
        self,
        entries: Sequence[NewEntry],
        *,
        now: float,
        limits: Limits | None = None,
        touches: Mapping[int, float] | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> PutResult:
        """Insert ``entries`` in order, each replacing an existing entry with its key, then
        enforce ``limits``; in the same transaction apply ``touches`` (recency, see
        :meth:`touch`) before choosing victims, and record ``meta`` (settings that go
        with the first vectors: the dimension) where the store holds none. All entries
        of one call must share a namespace.

        Raises:
            EmbedderMismatchError: the store holds a setting of ``meta`` with another
                value (:func:`claim_settings`: another process recorded it since this
                one read the settings); nothing is written."""
        ...

    def delete_by_key(self, key: bytes) -> tuple[int, str] | None:
        """Delete the entry with this key; return its ``(id, namespace)`` or None."""
        ...

    def delete_ids(self, ids: Sequence[int]) -> list[tuple[int, str]]:
        """Delete these entries; return ``(id, namespace)`` of those that existed."""
        ...

    def delete_expired(self, now: float, namespace: str | None = None) -> list[tuple[int, str]]:
        """Delete entries with ``expires_at <= now`` (in one namespace or all)."""
        ...

    def clear(self, namespace: str | None = None) -> int:
        """Delete every entry (of one namespace, or all); return how many."""
        ...

    def touch(self, access: Mapping[int, float]) -> None:
        """Record last-access times (id -> time); unknown ids are ignored and a time
        never moves backwards."""
        ...

    def count(self, namespace: str | None = None) -> int:
        """Entries (expired included) in a namespace or in all."""
        ...

    def namespace_counts(self) -> dict[str, int]:
        """Entries per non-empty namespace."""
        ...

    def iter_vectors(
        self, *, now: float | None = None, batch_size: int = 65536
    ) -> Iterator[VectorBatch]:
        """Stored vectors in batches of one namespace each (a namespace may span several
        batches), ascending id within a namespace; with ``now``, entries already expired
        are left out."""
        ...

    def get_vectors(self, ids: Sequence[int]) -> dict[int, tuple[str, bytes]]:
        """``id -> (namespace, vector bytes)`` for the entries among ``ids`` that exist
        and have a vector."""
        ...

    def seq(self) -> int:
        """The last change-log sequence number (0 for a new store)."""
        ...

    def identity(self) -> str:
        """This store's identity: a random token created with its data (see the module
        docstring); a store whose data was lost or replaced has another one."""
        ...

    def changes_since(self, seq: int, identity: str | None = None) -> list[Change] | None:
        """Changes after ``seq`` in order, or None when the caller must rebuild from
        :meth:`iter_vectors`: the log no longer reaches back that far, the store's
        sequence is below ``seq`` (it went backwards), or ``identity`` is given and is
        not the store's. The check and the records are one consistent read."""
        ...

    def prune_changes(self, keep_last: int) -> int:
        """Drop all but the last ``keep_last`` change records; return how many."""
        ...

    def close(self) -> None:
        """Flush and release resources; idempotent."""
        ...


# -- capabilities (optional; see the module docstring) --------------------------------------
#: What ``index_backend="store"`` builds per namespace: ``(namespace, clock, dim, dtype)``
#: to a :class:`~semcache._index.SearchIndex` whose rows live on the store's server.
SearchIndexFactory: TypeAlias = (
    "Callable[[str, Callable[[], float], int, np.dtype[Any]], SearchIndex]"
)


@runtime_checkable
class LocalFile(Protocol):
    """A store kept in a local file."""

    @property
    def local_path(self) -> Path | None:
        """The file that holds the data, or None (in memory, on a server)."""
        ...

    def claim(self, mode: Literal["single", "shared"]) -> StoreLock | None:
        """Lock the file for a cache of this ``multi_process_mode``; None when there is
        nothing to lock.

        Raises:
            StoreLockedError: another cache holds the file in a conflicting mode.
        """
        ...


@runtime_checkable
class FileBackup(Protocol):
    """A store that can copy itself into one self-contained file (checkpoints)."""

    def backup(self, dest: Path) -> None:
        """Write a consistent copy of the store to the new file ``dest``.

        Raises:
            StoreError: the copy failed.
        """
        ...

    def inspect_copy(self, path: Path) -> dict[str, Any]:
        """Facts of a copy: ``fingerprint``, ``dim``, ``dtype``, ``store_id``, ``seq``,
        ``entries`` (namespace -> count) and ``total_entries``.

        Raises:
            CheckpointFormatError: not a healthy copy of such a store.
        """
        ...

    def check_copy(self, path: Path) -> None:
        """Refuse a copy that is not exactly what :meth:`backup` writes.

        Raises:
            CheckpointFormatError: anything else.
            CheckpointVersionError: a schema newer than this semcache's.
        """
        ...


@runtime_checkable
class ServerSearch(Protocol):
    """A store that answers Layer 2 itself."""

    def search_index_factory(self) -> SearchIndexFactory | None:
        """The index factory of ``index_backend="store"``, or None when this store
        cannot search.

        Raises:
            ConfigurationError: the store searches, but not here (why is in the message).
        """
        ...


@runtime_checkable
class QualityState(Protocol):
    """A store that keeps the error budget's state (see the module docstring).

    Records: at most a few hundred bytes of JSON per entry, stored with the entry
    (:attr:`StoredEntry.record`, filled by ``get_by_ids`` and ``get_by_key``); a put
    (insert or replacement of the key) stores the entry's :attr:`NewEntry.record` (None:
    none) in the same write as the entry, checked like :meth:`write_records`' before
    anything is written, and delete, expiry, eviction and clear remove it with the
    entry. (A store written before :attr:`NewEntry.record` existed ignores it: its
    entries start without a record, and the answers' vectors are made when first
    compared.) Counters: named floats per namespace, only ever
    added to (so that no process loses another's updates); :meth:`Store.clear` of a
    namespace (or of all) drops its counters, deleting entries does not. Counters are
    never entries: they do not appear in ``count``, ``namespace_counts``,
    ``iter_vectors`` or a namespace's keys.
    """

    def write_records(self, records: Mapping[int, str]) -> None:
        """Set the record text of existing entries by id, in one transaction (or round
        trip). An id with no live entry is skipped: a record never creates or revives
        an entry. Nothing else of the entry changes: not its recency, TTL or size, not
        the change log (other processes see no change) nor the namespace counts.

        Raises:
            CacheClosedError: the store is closed.
            StoreError: the write failed (nothing of it is kept).
        """
        ...

    def add_counts(self, namespace: str, deltas: Mapping[str, float]) -> None:
        """Add each delta to the namespace's counter of that name (absent: 0),
        atomically with respect to other processes.

        Raises:
            CacheClosedError: the store is closed.
            StoreError: the write failed (nothing of it is kept).
        """
        ...

    def read_counts(self, namespace: str) -> dict[str, float]:
        """The namespace's counters (an empty dict when it has none).

        Raises:
            CacheClosedError: the store is closed.
            StoreError: the read failed.
        """
        ...


@runtime_checkable
class OutcomeLog(Protocol):
    """A store that keeps the error budget's outcome log (see the module docstring).

    Per namespace, a list of rows (printable ASCII text of at most
    :data:`~semcache._store._quality_checks.MAX_OUTCOME_BYTES` bytes each), oldest
    first. An add appends its rows in order and then drops all but the namespace's
    newest ``keep``, in one atomic step: rows of concurrent adds from any number of
    processes are all appended (each add's rows together) before the trim; an add of
    no rows changes nothing. Rows are
    never entries: they do not appear in ``count``, ``namespace_counts`` or
    ``iter_vectors``. :meth:`Store.clear` of a namespace (or of all) drops its log;
    deleting entries does not.
    """

    def add_outcomes(self, namespace: str, rows: Sequence[str], keep: int) -> None:
        """Append ``rows`` to the namespace's log, then keep only its newest ``keep``
        rows, atomically with respect to other processes.

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str (a store may refuse
                namespaces it cannot hold, as its entries' rules do).
            InvalidInputError: a row that is not printable ASCII text, or ``keep`` not
                an int in 1 to :data:`~semcache._store._quality_checks.MAX_OUTCOMES`.
            InputTooLargeError: a row over
                :data:`~semcache._store._quality_checks.MAX_OUTCOME_BYTES` bytes.
            CacheClosedError: the store is closed.
            StoreError: the write failed (nothing of it is kept).
        """
        ...

    def read_outcomes(self, namespace: str) -> list[str]:
        """The namespace's rows, oldest first (empty when it has none).

        Raises:
            InvalidNamespaceError: ``namespace`` is not a str.
            CacheClosedError: the store is closed.
            StoreError: the read failed.
        """
        ...


class NoLocalFile:
    """The capabilities of a store kept in memory or on a server: no local file (index
    snapshots are not kept, checkpoints refuse the store), nothing to lock (the process
    or the server arbitrates), no server-side search unless a subclass overrides
    :meth:`search_index_factory`. ``MemoryStore``, ``RedisStore``, ``DynamoDBStore`` and
    ``PostgresStore`` build on it."""

    __slots__ = ()

    local_path: None = None

    def claim(self, mode: Literal["single", "shared"]) -> StoreLock | None:
        """None: nothing to lock."""
        return None

    def search_index_factory(self) -> SearchIndexFactory | None:
        """None: the store does not search (the cache keeps a local index)."""
        return None


@runtime_checkable
class AnswerScan(Protocol):
    """A store that reads its answers in one pass (see the module docstring)."""

    def iter_answers(
        self, *, now: float | None = None, batch_size: int = 4096
    ) -> Iterator[AnswerBatch]:
        """The responses of the entries :meth:`Store.iter_vectors` yields (those with a
        vector; with ``now``, those not expired by then), in batches of one namespace
        of at most ``batch_size``, ascending id within a namespace.

        Raises:
            CacheClosedError: the store is closed.
            StoreError: a read failed.
        """
        ...


def answer_scan(store: object) -> AnswerScan | None:
    """The store as an :class:`AnswerScan`; None for a store without the capability."""
    if not callable(getattr(store, "iter_answers", None)):
        return None
    return cast(AnswerScan, store)


def local_path(store: object) -> Path | None:
    """``store.local_path``; None for a store without the capability."""
    path = getattr(store, "local_path", None)
    return path if isinstance(path, Path) else None


def claim_store(store: object, mode: Literal["single", "shared"]) -> StoreLock | None:
    """``store.claim(mode)``; None (nothing locked) for a store without the capability.

    Raises:
        StoreLockedError: see :meth:`LocalFile.claim`.
    """
    claim = getattr(store, "claim", None)
    return claim(mode) if callable(claim) else None


def file_backup(store: object) -> FileBackup | None:
    """The store as a :class:`FileBackup` when it has a local file and can copy it."""
    if local_path(store) is None or not isinstance(store, FileBackup):
        return None
    return store


#: ``change(entry_id, response, created_at, record)`` -> the entry's new record text, or
#: None to leave it (:meth:`RecordUpdate.update_records`).
RecordChange: TypeAlias = Callable[[int, str, float, "str | None"], "str | None"]


@runtime_checkable
class RecordUpdate(Protocol):
    """A store that changes records in place, atomically (see the module docstring)."""

    def update_records(self, ids: Sequence[int], change: RecordChange) -> None:
        """In one atomic step (no other writer in between): read the live entries of
        ``ids`` (their response, created_at and record) and set each one's record to
        what ``change`` returns for it (None: left as it is). An id with no live entry
        is skipped. Nothing else of the entry changes, as with ``write_records``.

        Raises:
            InvalidInputError, InputTooLargeError: a text ``change`` returned is not a
                record ``write_records`` would take; nothing is written.
            CacheClosedError: the store is closed.
            StoreError: the read or write failed (nothing of it is kept).
        """
        ...


def record_update(store: object) -> RecordUpdate | None:
    """The store as a :class:`RecordUpdate`; None for a store without the capability
    (a record is then read and written in two steps)."""
    if not callable(getattr(store, "update_records", None)):
        return None
    return cast(RecordUpdate, store)


def quality_state(store: object) -> QualityState | None:
    """The store as a :class:`QualityState`; None for a store without the capability
    (the error budget then lives in the process's memory only)."""
    if not callable(getattr(store, "write_records", None)):
        return None
    return cast(QualityState, store)


def outcome_log(store: object) -> OutcomeLog | None:
    """The store as an :class:`OutcomeLog`; None for a store without the capability
    (the budget's risk model then learns from this process's outcomes only)."""
    if not callable(getattr(store, "add_outcomes", None)):
        return None
    return cast(OutcomeLog, store)
