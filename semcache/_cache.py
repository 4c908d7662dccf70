"""SemanticCache: orchestration and policy over a Store, per-namespace indexes and an
Embedder.

The operations that may need an embedding (``get``, ``put``, ``put_many``) are written
once, as generators that *yield* the texts they need embedded and receive the vectors
back. :class:`SemanticCache` drives them by calling the embedder in the calling thread;
the async cache drives the same generators and awaits its embedder, running the
blocking steps on a thread pool. No operation's logic exists twice.

Each step of a generator runs under the cache's lock; embedding happens outside it, so
a slow model never blocks other threads' exact hits.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from types import TracebackType
from typing import Any, ClassVar, Final, Literal, TypeAlias, TypeVar, cast

import numpy as np
import numpy.typing as npt

from ._checkpoint import CheckpointTarget, dump_checkpoint, load_checkpoint, sweep_stale
from ._checks import check_callable as _check_callable
from ._checks import check_choice as _check_choice
from ._checks import check_count as _check_count
from ._checks import check_flag as _check_flag
from ._checks import check_number as _check_number
from ._checks import check_threshold as _check_threshold
from ._checks import check_ttl as _check_ttl
from ._checks import show as _show
from ._deadline import call_with_deadline, check_timeout
from ._errors import (
    CacheClosedError,
    ConfigurationError,
    DimensionMismatchError,
    EmbedderError,
    EmbedderMismatchError,
    InvalidEmbeddingError,
    InvalidInputError,
    InvalidMetadataError,
    InvalidNamespaceError,
    InvalidTextError,
    MetadataTooLargeError,
    QueryTooLargeError,
    ResponseTooLargeError,
    SemanticCacheError,
    StoreCorruptError,
    StoreLockedError,
    StoreUnavailableError,
)
from ._index import IndexFactory, VectorIndex, backend_names, check_index_options, make_index
from ._keyfilter import KeyFilter, KeyMemo
from ._locking import StoreLock, acquire_store_lock, track_fork
from ._progress import ProgressCallback
from ._snapshots import SnapshotPlan, load_snapshots, save_snapshots, snapshot_dir
from ._store import (
    Change,
    Limits,
    MemoryStore,
    NewEntry,
    PutResult,
    SearchIndexFactory,
    SQLiteStore,
    Store,
    StoredEntry,
    claim_store,
    local_path,
    search_index_factory,
)
from ._text import check_namespace, check_size, make_key, normalize_text
from ._types import MISS_REASONS, Hit, Layer, MetricsEvent, MissReason
from ._wrap import Effect, Flights, NamespaceSpec, get_or_put_steps, memoize
from .embedders import Embedder, is_async_embedder

__all__ = ["SemanticCache"]

logger = logging.getLogger("semcache")

_T = TypeVar("_T")
#: What an operation generator yields: texts to embed. It receives their vectors.
EmbedRequest: TypeAlias = Sequence[str]
#: Operation generators yield texts to embed or, from get_or_put, an Effect to run.
Steps: TypeAlias = Generator[EmbedRequest | Effect, Any, _T]

ConfidenceFn = Callable[[str, Hit], float]
Validator = Callable[[str, Hit], bool]
MetricsHook = Callable[[MetricsEvent], None]

#: Candidates fetched per semantic lookup; widened when candidates turn out stale.
_CANDIDATES: Final = 4
#: Recency updates kept in memory before they are written in one batch.
_TOUCH_FLUSH: Final = 10_000
#: Entries the exact layer keeps in memory after reading them (single mode only).
_HOT_ENTRIES: Final = 16_384
#: ... and at most this many characters of text (entries over 1/64 of it are not kept).
_HOT_CHARS: Final = 32 * 1048576
#: Seconds a fork waits for a cache's lock (longer: the child rebuilds its indexes).
_FORK_WAIT: Final = 1.0
#: Texts per embedder call in put_many.
_EMBED_BATCH: Final = 64
#: Vectors per progress report while an index is rebuilt with a ``progress`` callback.
_PROGRESS_BATCH: Final = 8192
#: Query embeddings kept from gets for the put that follows a miss.
_KEPT_QUERY_VECTORS: Final = 256
#: A candidate's score from its stored vector may differ from the index's by this much
#: (summation order, float16 rounding) and still be the entry the index holds.
_SAME_SCORE: Final = 1e-3
_VECTOR_DTYPES: Final = ("float32", "float16")
_MODES: Final = ("single", "shared")


@dataclass(slots=True)
class _SemanticLookup:
    """Where a get stands after the exact layer missed."""

    query: str
    namespace: str
    vector: npt.NDArray[np.float32] | None
    reason: MissReason | None
    seen: set[int]
    now: float
    t0: float


@dataclass(slots=True)
class _CheckedPut:
    """A put's input after the checks; ``vectors`` (unit rows) once known."""

    ns: str
    queries: list[str]
    responses: list[str]
    metas: list[str | None]
    life: float | None
    vectors: npt.NDArray[np.float32] | None


def _hot_size(entry: StoredEntry) -> int:
    """What an entry counts against the hot map's character budget."""
    return 64 + len(entry.query) + len(entry.response) + len(entry.metadata or "")


def _check_path(path: object) -> None:
    if path is None:
        return
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigurationError(f"path must be a str or os.PathLike, got {_show(path)}")
    name = os.fspath(path)
    if not isinstance(name, str) or "\x00" in name:
        raise ConfigurationError(f"path must be a file name without NUL, got {_show(path)}")


def _check_quotas(quotas: object) -> dict[str, int]:
    if quotas is None:
        return {}
    if not isinstance(quotas, Mapping):
        raise ConfigurationError(
            f"namespace_quotas must be a mapping of namespace to count, got {_show(quotas)}"
        )
    out = {}
    for ns, n in quotas.items():
        try:
            name = check_namespace(ns)
        except InvalidNamespaceError as exc:
            raise InvalidNamespaceError(f"namespace_quotas: {exc}") from None
        out[name] = _check_count(n, f"namespace_quotas[{name!r}]")
    return out


def _check_index_config(
    backend: object, options: object, dtype: str
) -> tuple[str | IndexFactory, dict[str, Any]]:
    """``index_backend`` and ``index_options``, checked before anything is opened: the
    dimension may not be known yet (see :func:`check_index_options`)."""
    if not callable(backend) and (
        not isinstance(backend, str) or backend not in (*backend_names(), "store")
    ):
        raise ConfigurationError(
            f"unknown index_backend {_show(backend)}; expected one of {backend_names()}, "
            '"store" or a factory'
        )
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise ConfigurationError(f"index_options must be a mapping, got {_show(options)}")
    opts = dict(options)
    check_index_options(backend, np.dtype(dtype), opts)
    return backend, opts


def _resolve_guards(guards: object) -> Validator | None:
    """The ``guards`` argument as a validator (None: no guards)."""
    if guards is None:
        return None
    if isinstance(guards, str) and guards == "default":
        # not at import: quality imports this module
        from .quality._guards import all_of, negation_agrees, numbers_agree

        return all_of(numbers_agree, negation_agrees)
    if isinstance(guards, str) or not callable(guards):
        raise ConfigurationError(
            f"guards must be 'default', None or a callable, got {_show(guards)}"
        )
    return cast(Validator, guards)


def _runner_up(ids: npt.NDArray[Any], sims: npt.NDArray[Any], entry_id: int) -> float | None:
    """The similarity of the best search result other than ``entry_id`` (sorted results)."""
    if len(sims) < 2:
        return None
    other = sims[1] if int(ids[0]) == entry_id else sims[0]
    return max(-1.0, min(1.0, float(other)))


class SemanticCache:
    """A two-layer cache for LLM answers: exact (normalized text) then semantic (vectors).

    ``hit = cache.get(prompt)``; on a miss call the LLM and ``cache.put(prompt, answer)``.

    Args:
        path: a SQLite file to keep the cache in (:class:`SQLiteStore`). With neither
            ``path`` nor ``store`` the cache lives in memory (:class:`MemoryStore`).
        embedder: turns text into vectors (see :class:`~semcache.embedders.Embedder`).
            Without one (and without ``embedding=`` arguments) only exact hits are served.
        store: a :class:`Store` to use instead of ``path``; the cache closes it on close.
        similarity_threshold: cosine similarity in [-1, 1] a semantic candidate needs.
        default_ttl: seconds an entry lives when ``put`` gives no ``ttl`` (None: forever).
        max_entries: cap on entries in the whole cache, enforced on every put.
        namespace_quotas: cap on entries per namespace (namespace -> count).
        confidence_fn: ``confidence_fn(query, hit) -> float`` for semantic candidates;
            one is served only if the result is >= ``min_confidence``.
        min_confidence: see ``confidence_fn``.
        validator: ``validator(query, hit) -> bool``; a hit (either layer) is served only
            if it returns True.
        metrics_hook: called with a :class:`MetricsEvent` after every get, put, delete,
            eviction and expiry; exceptions it raises are logged and ignored.
        normalize: match the exact layer on NFKC-casefolded, whitespace-collapsed text
            (False: on the text as given).
        index_backend: ``"auto"``, ``"flat"`` (more with the native-index extras) or a
            factory ``f(dim, dtype, options) -> VectorIndex``.
        index_options: options for the index backend.
        vector_dtype: ``"float32"`` or ``"float16"`` (half the memory, similarities
            within 1e-3).
        multi_process_mode: ``"single"`` (this process owns the store) or ``"shared"``
            (other processes write too: the index catches up from the store's change log
            every ``stale_check_interval`` seconds, 0 meaning before every get). On a
            SQLite file, single mode holds an exclusive lock on ``<path>.lock`` and
            shared mode a shared one, so the two never mix across processes (see
            docs/reliability.md, also for ``fork()``).
        stale_check_interval: see ``multi_process_mode``.
        max_query_bytes: cap on a query's UTF-8 size (put and get).
        max_response_bytes: cap on a response's UTF-8 size.
        max_metadata_bytes: cap on the metadata's size as JSON.
        embed_timeout: seconds an embedder call may take (None: no limit); past it a
            get misses with reason ``"embedder_error"`` and a put raises
            :class:`EmbedderError`. The late call is abandoned, not interrupted.
        clock: returns the current time in seconds (injected in tests).
        progress: ``progress(stage, done, total)`` while the cache opens (see
            :data:`~semcache.ProgressCallback`): stage ``"load index"`` while index
            snapshots load (0 then 1 of 1), ``"index"`` while the indexes are rebuilt
            from the store (``done`` vectors indexed; ``total`` is the store's entry
            count, an estimate: expired entries and entries without a vector are
            skipped, and the last call has ``done == total``). Not kept after the
            constructor. An exception it raises propagates: the cache is not opened.
        guards: ``guards(query, hit) -> bool`` for semantic candidates, checked after
            ``confidence_fn`` and before ``validator``. ``"default"`` (the default):
            :func:`~semcache.quality.numbers_agree` and
            :func:`~semcache.quality.negation_agrees` (a candidate whose numbers or
            negation differ from the query's is not served: "What is 2+3?" never gets
            the answer of "What is 2+2?"); None: no guards; or your own, such as
            :func:`~semcache.quality.default_guards` (those two and word order).
            Measured in docs/quality.md ("Guards on by default").

    Every argument is checked before the store is opened or created (docs/api.md,
    "Inputs and their errors"); each error names the argument.

    Raises:
        ConfigurationError: invalid or conflicting arguments, a wrong type, an unknown
            or bad ``index_options`` key or value.
        InvalidThresholdError: ``similarity_threshold`` not a number in [-1, 1].
        InvalidTTLError: a negative, non-finite or non-numeric ``default_ttl``.
        InvalidNamespaceError: a ``namespace_quotas`` key that is not a valid namespace.
        MissingDependencyError: ``index_options`` need an extra that is not installed.
        EmbedderMismatchError: the store was written with another embedder
            (fingerprint or dimension), or with another ``vector_dtype``.
        StoreError: the store cannot be opened (see :class:`SQLiteStore`).
        StoreLockedError: another process has the SQLite file open in a conflicting
            ``multi_process_mode``.
    """

    #: Whether the embedder may be an AsyncEmbedder (only the async cache's core).
    _async_embedder_ok: ClassVar[bool] = False

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        embedder: Embedder | None = None,
        *,
        store: Store | None = None,
        similarity_threshold: float = 0.85,
        default_ttl: float | None = None,
        max_entries: int | None = None,
        namespace_quotas: Mapping[str, int] | None = None,
        confidence_fn: ConfidenceFn | None = None,
        min_confidence: float = 0.5,
        validator: Validator | None = None,
        metrics_hook: MetricsHook | None = None,
        normalize: bool = True,
        index_backend: str | IndexFactory = "auto",
        index_options: Mapping[str, Any] | None = None,
        vector_dtype: Literal["float32", "float16"] = "float32",
        multi_process_mode: Literal["single", "shared"] = "single",
        stale_check_interval: float = 0.0,
        max_query_bytes: int = 32768,
        max_response_bytes: int = 4 * 1048576,
        max_metadata_bytes: int = 65536,
        embed_timeout: float | None = None,
        clock: Callable[[], float] = time.time,
        progress: ProgressCallback | None = None,
        guards: Validator | Literal["default"] | None = "default",
    ) -> None:
        # Every argument is checked here, before the store is opened or created: a bad
        # one raises a semcache error naming it and leaves no file behind.
        _check_path(path)
        if store is not None and not isinstance(store, Store):
            raise ConfigurationError(f"store must be a semcache Store, got {_show(store)}")
        if path is not None and store is not None:
            raise ConfigurationError("pass either path or store, not both")
        if is_async_embedder(embedder) and not self._async_embedder_ok:
            raise ConfigurationError(
                "this embedder's embed is a coroutine function; use AsyncSemanticCache"
            )
        self._embed_timeout = check_timeout(embed_timeout)
        if embedder is not None and not isinstance(embedder, Embedder):
            raise ConfigurationError(
                "embedder must have dim, fingerprint and embed(texts) (see semcache.embedders)"
            )
        self._threshold = _check_threshold(similarity_threshold)
        self._default_ttl = _check_ttl(default_ttl, "default_ttl")
        self._max_entries = (
            None if max_entries is None else _check_count(max_entries, "max_entries")
        )
        self._quotas = _check_quotas(namespace_quotas)
        for name, fn in (
            ("confidence_fn", confidence_fn),
            ("validator", validator),
            ("metrics_hook", metrics_hook),
            ("progress", progress),
        ):
            _check_callable(fn, name)
        self._min_confidence = _check_number(min_confidence, "min_confidence", ConfigurationError)
        self._normalize = _check_flag(normalize, "normalize", ConfigurationError)
        _check_choice(vector_dtype, "vector_dtype", _VECTOR_DTYPES)
        _check_choice(multi_process_mode, "multi_process_mode", _MODES)
        interval = _check_number(stale_check_interval, "stale_check_interval", ConfigurationError)
        if interval < 0.0:
            raise ConfigurationError(
                f"stale_check_interval must be seconds >= 0, got {_show(stale_check_interval)}"
            )
        self._max_query = _check_count(max_query_bytes, "max_query_bytes")
        self._max_response = _check_count(max_response_bytes, "max_response_bytes")
        self._max_metadata = _check_count(max_metadata_bytes, "max_metadata_bytes")
        if not callable(clock):
            raise ConfigurationError(
                f"clock must be a callable returning seconds, got {_show(clock)}"
            )
        backend, options = _check_index_config(index_backend, index_options, vector_dtype)

        self._embedder = embedder
        self._confidence_fn = confidence_fn
        self._validator = validator
        self._guards = _resolve_guards(guards)
        self._metrics_hook = metrics_hook
        self._index_backend = backend
        self._index_options: Mapping[str, Any] = options
        self._dtype = np.dtype(vector_dtype)
        self._shared = multi_process_mode == "shared"
        self._stale_interval = interval
        self._clock = clock

        self._lock = threading.RLock()
        self._closed = False
        self._indexes: dict[str, VectorIndex] = {}
        self._pending_touch: dict[int, float] = {}
        # Exact-layer entries recently read, by key (see _remember); off in shared mode.
        self._hot: OrderedDict[bytes, StoredEntry] = OrderedDict()
        self._hot_ids: dict[int, bytes] = {}
        self._hot_size = 0  # set once the store is known, below
        self._hot_chars = 0
        # Keys of recent queries, and (single mode) a filter that proves a key absent.
        self._key_memo = KeyMemo(
            lambda ns, q: make_key(ns, normalize_text(q) if self._normalize else q)
        )
        self._key_filter: KeyFilter | None = None
        self._namespaces_ok: set[str] = set()
        self._hits: dict[Layer, int] = {"exact": 0, "semantic": 0}
        self._misses: dict[MissReason, int] = dict.fromkeys(MISS_REASONS, 0)
        self._counters = {"puts": 0, "deletes": 0, "evictions": 0, "expirations": 0}
        self._last_sync = -math.inf
        # A candidate did not match its index row (see _own_score): the store is not the
        # one indexed. Rebuild at the next get, once per store position.
        self._index_suspect = False
        self._suspect_rebuilt: tuple[str, int] | None = None
        self._flights = Flights()  # get_or_put's computations in progress, by key
        # Query embeddings made by gets, kept for the put that follows a miss.
        self._query_vectors: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        # fork(): see _fork_child and _adopt_fork.
        self._owner_pid = os.getpid()
        self._forked = False
        self._fork_consistent = False
        self._fork_torn = False

        self._store: Store = (
            store
            if store is not None
            else (SQLiteStore(path) if path is not None else MemoryStore())
        )
        # The in-memory exact map relies on single mode's promise that this process is
        # the store's only writer (enforced by a lock for SQLite files).
        if not self._shared:
            self._hot_size = _HOT_ENTRIES
            stored_keys = getattr(self._store, "stored_keys", None)
            if callable(stored_keys):
                self._key_filter = KeyFilter(stored_keys)
        self._store_lock: StoreLock | None = None
        self._search_factory: SearchIndexFactory | None = None  # index_backend="store"
        try:
            self._store_lock = self._claim_store(multi_process_mode)
            self._dim = self._check_settings()
            self._seq = self._store.seq()
            self._store_search = index_backend == "store"
            if self._store_search:
                self._search_factory = self._check_store_search()
            self._index_source = "snapshot" if self._warm_start(progress) else "store"
            if self._index_source == "store":
                self._rebuild_indexes(progress)
        except BaseException:
            self._store.close()
            if self._store_lock is not None:
                self._store_lock.release()
            raise
        track_fork(self)

    # -- processes: file ownership and fork --------------------------------------------
    def _claim_store(self, mode: Literal["single", "shared"]) -> StoreLock | None:
        """Lock the store's file for this cache's mode (stores without one: nothing)."""
        claim = claim_store(self._store, mode)
        path = local_path(self._store)
        if claim is not None and path is not None:
            sweep_stale(os.path.dirname(os.path.abspath(path)))  # what killed dumps/loads left
        return claim

    def _fork_prepare(self) -> None:
        # Hold the lock across fork() so the child copies no operation half done.
        self._fork_consistent = self._lock.acquire(timeout=_FORK_WAIT)

    def _fork_parent(self) -> None:
        if self._fork_consistent:
            self._fork_consistent = False
            self._lock.release()

    def _fork_child(self) -> None:
        # Single-threaded here. Fresh locks and flights (other threads' are gone);
        # recency and exact entries are the parent's business.
        self._fork_torn = not self._fork_consistent
        self._fork_consistent = False
        self._lock = threading.RLock()
        self._flights = Flights()
        self._pending_touch = {}
        self._forget_hot()
        self._forked = not self._closed

    def _adopt_fork(self) -> None:
        """First use in a forked child. A single-mode cache on a SQLite file belongs to
        the parent: refuse. Otherwise take this process's own claim on the file and
        catch up (rebuild when the fork caught another thread mid-operation).

        Raises:
            StoreLockedError: a single-mode SQLite cache, or the file cannot be claimed.
        """
        with self._lock:
            if not self._forked:
                return
            claim = self._store_lock
            if claim is not None and claim.mode == "single":
                raise StoreLockedError(
                    f"this cache was opened on {claim.db_path} in single mode by process "
                    f"{self._owner_pid}; the forked child {os.getpid()} cannot use it. Open "
                    "it with multi_process_mode='shared' (every process then keeps its own "
                    "index), or open a new cache in the child once the parent closed its own"
                )
            if claim is not None:
                self._store_lock = acquire_store_lock(claim.db_path, "shared")
            self._forked = False
            self._owner_pid = os.getpid()
            self._last_sync = -math.inf
            if self._fork_torn:
                self._fork_torn = False
                self._resync()

    # -- opening ----------------------------------------------------------------------
    def _check_settings(self) -> int | None:
        """Reconcile the store's recorded settings with ours; record the missing ones."""
        store = self._store
        stored_dtype = store.get_meta("vector_dtype")
        stored_dim = store.get_meta("dim")
        stored_fp = store.get_meta("fingerprint")
        if stored_dtype is not None and stored_dtype != self._dtype.name:
            raise EmbedderMismatchError(
                f"the cache stores {stored_dtype} vectors; open it with vector_dtype="
                f"{stored_dtype!r} (was {self._dtype.name!r})"
            )
        dim = int(stored_dim) if stored_dim is not None else None
        updates = {} if stored_dtype is not None else {"vector_dtype": self._dtype.name}
        # The store's identity: what the indexes were built from (see _resync).
        self._store_id = store.identity()
        if self._embedder is not None:
            fp, edim = self._embedder.fingerprint, int(self._embedder.dim)
            if stored_fp is not None and stored_fp != fp:
                raise EmbedderMismatchError(
                    f"the cache was built with embedder {stored_fp!r}, not {fp!r}; "
                    "use that embedder or a new cache"
                )
            if dim is not None and dim != edim:
                raise EmbedderMismatchError(
                    f"the cache stores {dim}-dimensional vectors; the embedder makes {edim}"
                )
            if stored_fp is None:
                updates["fingerprint"] = fp
            if dim is None:
                updates["dim"] = str(edim)
                dim = edim
        if updates:
            store.set_meta(updates)
        return dim

    def _snapshot_target(self) -> tuple[Path, SnapshotPlan] | None:
        """Where this cache's index snapshots live and what they must match, or None
        when it keeps none (memory store, custom index factory, no vectors yet)."""
        folder = snapshot_dir(local_path(self._store))
        if (
            folder is None
            or not self._store.persistent
            or self._dim is None
            or not isinstance(self._index_backend, str)
        ):
            return None
        options = json.dumps(self._index_options, sort_keys=True, default=repr)
        plan = SnapshotPlan(
            str(self._store_id), self._dim, self._dtype.name, f"{self._index_backend} {options}"
        )
        return folder, plan

    def _warm_start(self, progress: ProgressCallback | None = None) -> bool:
        """Load the index snapshots and replay the change log since them."""
        target = self._snapshot_target()
        if target is None or not target[0].is_dir():
            return False
        if progress is not None:
            progress("load index", 0, 1)
        loaded = load_snapshots(*target, store_seq=self._store.seq())
        if progress is not None:
            progress("load index", 1, 1)
        if loaded is None:
            return False
        seq, indexes = loaded
        # None also when the store's sequence is below the snapshot's (an older copy).
        changes = self._store.changes_since(seq, self._store_id)
        if changes is None:
            logger.info("semcache: index snapshot does not match the store's log; rebuilding")
            for index in indexes.values():
                index.close()
            return False
        self._indexes = indexes
        self._seq = seq
        self._apply_changes(changes)
        return True

    def _save_snapshots(self) -> None:
        target = self._snapshot_target()
        if target is None:
            return
        seq = self._seq if self._shared else self._store.seq()
        try:
            save_snapshots(*target, seq, self._indexes)
        except Exception:
            logger.exception("semcache: could not save index snapshots; the next open rebuilds")

    def _rebuild_indexes(self, progress: ProgressCallback | None = None) -> None:
        """Build every namespace's index from the store's vectors (reporting to
        ``progress``, in batches of :data:`_PROGRESS_BATCH` vectors, if given)."""
        for index in self._indexes.values():
            index.close()
        self._indexes = {}
        if self._store_search:
            return  # the store searches: nothing to hold here
        total = 0 if progress is None else self._store.count()
        report = progress if total else None  # an empty store: nothing to report
        if report is None:
            batches = self._store.iter_vectors(now=self._clock())
        else:
            report("index", 0, total)
            batches = self._store.iter_vectors(now=self._clock(), batch_size=_PROGRESS_BATCH)
        done = 0
        for batch in batches:
            vecs = self._decode(batch.vectors)
            self._index_for(batch.namespace).add(np.asarray(batch.ids, dtype=np.int64), vecs)
            if report is not None:
                done += len(batch.ids)
                report("index", done, max(total, done))
        if report is not None and done < total:
            report("index", done, done)

    def _decode(self, blobs: Sequence[bytes]) -> npt.NDArray[Any]:
        dim = self._dim
        if dim is None:
            raise StoreCorruptError("the store holds vectors but no dimension setting")
        data = b"".join(blobs)
        if len(data) != len(blobs) * dim * self._dtype.itemsize:
            raise StoreCorruptError(
                f"stored vectors do not match dimension {dim} and dtype {self._dtype.name}"
            )
        return np.frombuffer(data, dtype=self._dtype).reshape(len(blobs), dim)

    def _index_for(self, namespace: str) -> VectorIndex:
        index = self._indexes.get(namespace)
        if index is None:
            assert self._dim is not None
            index = self._indexes[namespace] = self._new_index(namespace, self._dim)
        return index

    def _new_index(self, namespace: str, dim: int) -> VectorIndex:
        """An empty index for ``namespace``. A put makes its namespace's first index
        before it writes, so an index that cannot be built fails the put, not after.

        Raises:
            ConfigurationError: the ``index_backend`` factory failed or returned no
                VectorIndex; a built-in backend refused its options for ``dim``.
        """
        if self._search_factory is not None:
            return self._search_factory(namespace, self._clock, dim, self._dtype)
        backend = self._index_backend
        try:
            index = make_index(backend, dim, self._dtype, self._index_options)
        except SemanticCacheError:
            raise
        except Exception as exc:
            if not callable(backend):
                raise
            raise ConfigurationError(
                f"the index_backend factory failed for dim {dim}: {exc!r}"
            ) from exc
        if not isinstance(index, VectorIndex):
            raise ConfigurationError(
                f"the index_backend factory returned {type(index).__name__}, not a VectorIndex"
            )
        return index

    def _check_store_search(self) -> SearchIndexFactory:
        """``index_backend="store"``: the store must search (Layer 2 runs on its server);
        its index factory, chosen once."""
        store = self._store
        factory = search_index_factory(store)
        if factory is None:
            raise ConfigurationError(
                f'index_backend="store" needs a store that searches (PostgresStore with '
                f"pgvector); {type(store).__name__} cannot"
            )
        return factory

    def _index_of(self, namespace: str) -> VectorIndex | None:
        """The namespace's index for a get (with a searching store: always one)."""
        index = self._indexes.get(namespace)
        if index is None and self._store_search and self._dim is not None:
            index = self._index_for(namespace)
        return index

    # -- configuration ----------------------------------------------------------------
    @property
    def similarity_threshold(self) -> float:
        """The cosine similarity in [-1, 1] a semantic candidate needs to be served."""
        return self._threshold

    def set_similarity_threshold(self, value: float) -> None:
        """Change the threshold for later gets.

        Raises:
            InvalidThresholdError: ``value`` is not a number in [-1, 1].
        """
        self._threshold = _check_threshold(value)

    @property
    def embedder(self) -> Embedder | None:
        """The embedder, or None."""
        return self._embedder

    @property
    def store(self) -> Store:
        """The underlying store."""
        return self._store

    @property
    def dim(self) -> int | None:
        """The vector dimension, or None until the first vector is stored."""
        return self._dim

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    # -- public API ---------------------------------------------------------------------
    def get(
        self,
        query: str,
        *,
        embedding: npt.ArrayLike | None = None,
        namespace: str = "default",
        bypass: bool = False,
    ) -> Hit | None:
        """Look ``query`` up: exact layer first, then the semantic layer.

        Args:
            query: the prompt.
            embedding: the query's embedding if the caller already has it (the embedder
                is then not called).
            namespace: the tenant to look in; no other namespace is ever consulted.
            bypass: force a miss (reason ``"bypass"``) without reading anything.

        Returns:
            The :class:`Hit`, or None on a miss. An embedder that fails makes a miss
            (reason ``"embedder_error"``), never an exception.

        Raises:
            CacheClosedError: the cache was closed.
            InvalidTextError: ``query`` is not a str or not valid Unicode.
            QueryTooLargeError: ``query`` is over ``max_query_bytes``.
            InvalidNamespaceError: a bad namespace name.
            InvalidEmbeddingError: ``embedding`` has NaN/inf, is zero or not a vector.
            DimensionMismatchError: ``embedding`` has the wrong dimension.
            InvalidInputError: ``bypass`` is not a bool.
            StoreError: the store failed.
        """
        with self._lock:
            first = self._get_exact(query, embedding, namespace, bypass)
        if type(first) is _SemanticLookup:
            return self._drive(self._get_semantic(first))
        return first  # type: ignore[return-value]

    def put(
        self,
        query: str,
        response: str,
        *,
        embedding: npt.ArrayLike | None = None,
        namespace: str = "default",
        metadata: Mapping[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None:
        """Store ``response`` for ``query``, replacing an entry with the same normalized
        query (a fresh ``created_at``; its TTL restarts). Limits are then enforced.

        Args:
            query: the prompt.
            response: the answer to serve.
            embedding: the query's embedding if the caller already has it.
            namespace: the tenant to write to.
            metadata: a JSON-serializable mapping returned with hits.
            ttl: seconds the entry lives (None: ``default_ttl``; 0: expired at once).

        Raises:
            CacheClosedError, InvalidTextError, QueryTooLargeError, ResponseTooLargeError,
            MetadataTooLargeError, InvalidMetadataError, InvalidNamespaceError,
            InvalidTTLError, InvalidEmbeddingError, DimensionMismatchError: bad input,
                raised before anything is written.
            ConfigurationError: the namespace's first index cannot be built (a custom
                ``index_backend`` factory failed); nothing was written.
            EmbedderError: the embedder failed; nothing was written.
            StoreError: the store failed; nothing was written.
        """
        if embedding is not None or self._embedder is None:
            # Nothing to embed: the put is one step under the lock, the step _drive would
            # run, without a generator to drive (a few microseconds of every plain put).
            t0 = perf_counter()
            with self._lock:
                checked = self._check_put([query], [response], embedding, namespace, metadata, ttl)
                self._write_put(checked, t0)
            return
        self._drive(self._put_steps([query], [response], embedding, namespace, metadata, ttl))

    def put_many(
        self,
        queries: Sequence[str],
        responses: Sequence[str],
        *,
        embeddings: npt.ArrayLike | None = None,
        namespace: str = "default",
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        ttl: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Store many entries in one transaction (embedded in batches).

        Args:
            queries: the prompts.
            responses: one response per prompt.
            embeddings: an ``(n, dim)`` array of the prompts' embeddings, if known.
            namespace: the tenant to write to.
            metadata: one mapping for all entries, or a sequence with one per entry.
            ttl: as in :meth:`put`.
            progress: ``progress(stage, done, total)`` (see
                :data:`~semcache.ProgressCallback`): ``("embed", k, n)`` after each
                batch of texts is embedded (from ``k = 0``; not when ``embeddings``
                are given), then ``("write", n, n)`` once the entries are stored and
                indexed. An exception it raises propagates: raised from an ``"embed"``
                call, nothing was written (a way to cancel); raised from the
                ``"write"`` call, every entry is stored and indexed already.

        Returns:
            The number of entries written (a query repeated in the batch counts each
            time; the last one wins).

        Raises:
            The same as :meth:`put`; all input is checked before anything is written, and
            either every entry is written or none.
        """
        return self._drive(
            self._put_steps(
                queries, responses, embeddings, namespace, metadata, ttl, progress=progress
            )
        )

    def get_or_put(
        self,
        query: str,
        compute: Callable[[], str],
        *,
        embedding: npt.ArrayLike | None = None,
        namespace: str = "default",
        ttl: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """The cached response for ``query``, or ``compute()``'s, stored on the way.

        Callers (threads) that miss on the same normalized query and namespace while a
        computation for it runs wait for that one (single-flight): the LLM is called
        once, not once per caller. If storing the answer fails (too large, store
        error) it is still returned and the failure logged.

        Args:
            query: the prompt.
            compute: called with no arguments on a miss; returns the response (str).
            embedding, namespace, ttl, metadata: as in :meth:`get` and :meth:`put`.

        Returns:
            The response.

        Raises:
            Exception: whatever ``compute`` raises, in this caller and in those waiting
                for it; nothing is cached.
            InvalidTextError: ``compute`` returned something that is not a str.
            InvalidInputError: ``compute`` is not callable.
            The errors of :meth:`get` and :meth:`put` for bad input (``ttl`` and
                ``metadata`` are checked before ``compute`` is called).
        """
        return self._drive(
            get_or_put_steps(self, query, compute, embedding, namespace, ttl, metadata)
        )

    def memoize(
        self,
        *,
        prompt: str = "prompt",
        namespace: NamespaceSpec = None,
        ttl: float | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A decorator that serves a function's answers through :meth:`get_or_put`.

        The argument named ``prompt`` is matched semantically; the other arguments pick
        the namespace, so that an answer is never served for other settings::

            @cache.memoize(namespace=lambda model, temperature: f"{model}@{temperature}")
            def ask(prompt: str, model: str = "gpt-4o", temperature: float = 0.0) -> str:
                ...

        Works on sync functions and on coroutine functions (whose cache work then runs
        on a worker thread, off the event loop).

        Args:
            prompt: the name of the parameter holding the prompt (a str).
            namespace: a str; or a callable taking (some of) the function's other
                arguments by name and returning the namespace; or None (the default):
                the function's qualified name plus a hash of its other arguments as
                JSON (a TypeError at call time names them if they are not JSON).
            ttl: as in :meth:`put`.

        Returns:
            The decorator; the wrapped function returns what ``get_or_put`` returns.

        Raises:
            TypeError: (when decorating) the function has no parameter ``prompt``, or
                the namespace callable takes an argument the function lacks.
            InvalidTTLError: (when decorating) a bad ``ttl``.
        """
        from ._async import adrive

        async def arun(
            text: str, compute: Callable[[], Any], *, namespace: str, ttl: float | None
        ) -> str:
            steps = get_or_put_steps(self, text, compute, None, namespace, ttl, None)
            return await adrive(self, steps)

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            return memoize(
                fn, prompt=prompt, namespace=namespace, ttl=ttl, run=self.get_or_put, arun=arun
            )

        return decorate

    def delete(self, query: str, *, namespace: str = "default") -> bool:
        """Delete the entry whose normalized query equals ``query``'s.

        Returns:
            Whether an entry was deleted.

        Raises:
            CacheClosedError, InvalidTextError, QueryTooLargeError, InvalidNamespaceError,
            StoreError.
        """
        with self._lock:
            t0 = perf_counter()
            self._check_open()
            ns = self._check_ns(namespace)
            check_size(query, "query", self._max_query, QueryTooLargeError)
            found = self._store.delete_by_key(self._key(ns, query))
            if found is None:
                return False
            self._unindex([found])
            self._counters["deletes"] += 1
            self._emit(MetricsEvent("delete", ns, latency=perf_counter() - t0))
            return True

    def vacuum(self, *, namespace: str | None = None, compact: bool = True) -> int:
        """Delete expired entries (in one namespace or all) and, with ``compact``,
        reclaim index tombstones.

        Returns:
            The number of expired entries deleted.

        Raises:
            CacheClosedError, InvalidNamespaceError, StoreError.
            InvalidInputError: ``compact`` is not a bool.
        """
        with self._lock:
            self._check_open()
            ns = None if namespace is None else self._check_ns(namespace)
            _check_flag(compact, "compact", InvalidInputError)
            self._flush_touches()
            removed = self._store.delete_expired(self._clock(), ns)
            self._unindex(removed)
            self._count_removals(removed, "expire")
            if compact:
                self._compact_indexes()
            return len(removed)

    def compact(self) -> int:
        """Rebuild every index at its live size.

        Returns:
            The number of tombstones reclaimed.

        Raises:
            CacheClosedError.
        """
        with self._lock:
            self._check_open()
            return self._compact_indexes()

    def clear_namespace(self, namespace: str) -> int:
        """Delete every entry of one namespace (no other is touched).

        Returns:
            How many entries were deleted.

        Raises:
            CacheClosedError, InvalidNamespaceError, StoreError.
        """
        with self._lock:
            self._check_open()
            ns = self._check_ns(namespace)
            count = self._store.clear(ns)
            self._forget_hot()
            index = self._indexes.pop(ns, None)
            if index is not None:
                index.close()
            return count

    def clear(self) -> int:
        """Delete every entry of every namespace; the indexes start empty.

        Returns:
            How many entries were deleted.

        Raises:
            CacheClosedError, StoreError.
        """
        with self._lock:
            self._check_open()
            count = self._store.clear()
            self._forget_hot()
            for index in self._indexes.values():
                index.close()
            self._indexes = {}
            self._pending_touch = {}
            return count

    def stats(self) -> dict[str, Any]:
        """Counts for monitoring.

        Returns:
            A dict with ``entries`` (namespace -> stored entries, expired included until
            vacuumed), ``total_entries``, ``hits`` (layer -> count), ``misses`` (reason ->
            count), ``gets``, ``hit_rate``, ``puts``, ``deletes``, ``evictions``,
            ``expirations``, ``tombstones`` (namespace -> index tombstones),
            ``indexed`` (namespace -> live index rows), ``dim``, ``vector_dtype``,
            ``fingerprint`` and ``index_backend``. Operation counters cover this
            process since the cache was opened.

        Raises:
            CacheClosedError, StoreError.
        """
        with self._lock:
            self._check_open()
            entries = self._store.namespace_counts()
            hits = sum(self._hits.values())
            gets = hits + sum(self._misses.values())
            return {
                "entries": entries,
                "total_entries": sum(entries.values()),
                "hits": dict(self._hits),
                "misses": dict(self._misses),
                "gets": gets,
                "hit_rate": hits / gets if gets else 0.0,
                **self._counters,
                "tombstones": {ns: ix.tombstones for ns, ix in sorted(self._indexes.items())},
                "indexed": {ns: len(ix) for ns, ix in sorted(self._indexes.items())},
                "dim": self._dim,
                "vector_dtype": self._dtype.name,
                "fingerprint": None if self._embedder is None else self._embedder.fingerprint,
                "index_source": self._index_source,
                "index_backend": (
                    self._index_backend if isinstance(self._index_backend, str) else "custom"
                ),
            }

    def dumps(self, dest: CheckpointTarget) -> dict[str, Any]:
        """Write a checkpoint of this cache to ``dest`` (a path or a binary file object):
        a tar.gz holding a consistent copy of the SQLite store (SQLite's backup API, from
        a connection of its own, so other threads and processes keep writing meanwhile),
        the index snapshots, and ``manifest.json`` (format version, embedder fingerprint,
        dim, dtype, entries per namespace, SHA-256 and size of every member). A path is
        written atomically (a temporary file beside it, then renamed).

        Returns:
            The manifest written.

        Raises:
            CacheClosedError: the cache is closed.
            CheckpointError: the store is not a SQLite file (memory and server stores
                have no file to copy), or the copy failed.
            InvalidInputError: ``dest`` is neither a path nor a binary file object.
            OSError: ``dest`` cannot be written.
        """
        return dump_checkpoint(self, dest)

    @classmethod
    def loads(
        cls,
        source: CheckpointTarget,
        path: str | os.PathLike[str],
        embedder: Embedder | None,
        *,
        max_member_bytes: int = 1 << 36,
        **kwargs: Any,
    ) -> SemanticCache:
        """Restore a checkpoint written by :meth:`dumps` into a new cache at ``path``.

        Every member is checked before anything is written (plain files with the names
        the format expects, no larger than ``max_member_bytes``, sizes and SHA-256 as
        the manifest says), and the embedder and ``vector_dtype`` must match the
        manifest. Files are staged in ``<path>.restoring`` and moved into place only
        when all is well; on any error nothing is left behind (the ``<path>.lock`` a
        failed open created included), and nothing is ever written outside ``path`` and
        its sidecars. Index snapshots in the archive are never trusted: a bad one is
        rebuilt from the store.

        Args:
            source: the archive (a path or a binary file object).
            path: where the restored SQLite file goes; it (and its ``-wal``, ``-shm``,
                ``-journal`` and ``.index`` sidecars) must not exist.
            embedder: the embedder to open the restored cache with (None: exact hits
                and precomputed embeddings only).
            max_member_bytes: refuse members larger than this.
            **kwargs: further :class:`SemanticCache` arguments; ``vector_dtype``
                defaults to the checkpoint's.

        Returns:
            The restored cache, open.

        Raises:
            CheckpointFormatError: not a semcache checkpoint, a malformed manifest, or a
                store copy that is not exactly as semcache writes it (a trigger, view,
                table or index of its own, other header fields, namespace counts that
                differ from its rows, vectors of another size, a failed
                ``integrity_check``).
            CheckpointVersionError: a newer checkpoint format or store schema version.
            CheckpointMismatchError: another embedder fingerprint or dim, or dtype.
            CheckpointChecksumError: a member's size or checksum differs.
            UnsafeArchiveError: an absolute, ``..``, link, device, duplicate or
                unexpected member (ArchiveMemberTooLargeError: an oversized one).
            CheckpointError: ``path`` or a sidecar already exists.
            InvalidInputError: ``source`` is neither a path nor a binary file object,
                ``path`` is not a path (ConfigurationError: ``max_member_bytes`` is not
                an int >= 1); checked before anything is read or written.
            The errors of the :class:`SemanticCache` constructor.
        """
        return load_checkpoint(
            source,
            path,
            embedder,
            lambda where, options: cls(where, embedder, **options),
            max_member_bytes=max_member_bytes,
            options=kwargs,
        )

    def close(self) -> None:
        """Write pending recency, save the index snapshots (SQLite caches: the next open
        loads them instead of rebuilding), release the indexes and close the store.
        Idempotent; every later call raises :class:`CacheClosedError`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # A forked child that never used the cache writes nothing on close.
            forked, self._forked = self._forked, False
            try:
                if self._pending_touch and not forked:
                    self._store.touch(self._pending_touch)
            except Exception:
                logger.exception("semcache: could not write recency on close")
            try:
                if not forked:
                    self._save_snapshots()
            finally:
                self._pending_touch = {}
                self._forget_hot()
                for index in self._indexes.values():
                    index.close()
                self._indexes = {}
                try:
                    self._store.close()
                finally:
                    if self._store_lock is not None:
                        self._store_lock.release()

    def __enter__(self) -> SemanticCache:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"dim={self._dim}"
        return f"<SemanticCache store={type(self._store).__name__} {state}>"

    # -- driving operation generators -------------------------------------------------
    def _drive(self, steps: Steps[_T]) -> _T:
        """Run an operation: its steps under the lock, embedding (and effects) outside it."""
        value: Any = None
        error: BaseException | None = None
        while True:
            done, out = self._advance(steps, value, error)
            if done:
                result: _T = out
                return result
            try:
                if isinstance(out, Effect):
                    value, error = out.run(), None
                else:
                    value, error = self._embed_now(out), None
            except Exception as exc:
                value, error = None, exc
            except BaseException:
                steps.close()
                raise

    def _advance(
        self, steps: Steps[_T], value: Any, error: BaseException | None
    ) -> tuple[bool, Any]:
        """Run one step under the lock: ``(True, result)`` or ``(False, request)``.
        Shared by the sync driver and the async one (which calls it on a worker thread)."""
        with self._lock:
            try:
                request = steps.throw(error) if error is not None else steps.send(value)
            except StopIteration as stop:
                return True, stop.value
        return False, request

    def _embed_now(self, texts: EmbedRequest) -> Any:
        assert self._embedder is not None
        return call_with_deadline(self._embedder.embed, list(texts), self._embed_timeout)

    def _get_steps(
        self, query: str, embedding: npt.ArrayLike | None, namespace: str, bypass: bool
    ) -> Steps[Hit | None]:
        """The whole of a get as one operation generator (for get_or_put and the async
        cache); the first step runs the exact phase."""
        first = self._get_exact(query, embedding, namespace, bypass)
        if type(first) is _SemanticLookup:
            return (yield from self._get_semantic(first))
        return first  # type: ignore[return-value]

    def _keep_query_vector(self, query: str, vector: npt.NDArray[np.float32]) -> None:
        kept = self._query_vectors
        kept[query] = vector
        if len(kept) > _KEPT_QUERY_VECTORS:
            kept.popitem(last=False)

    def _kept_query_vectors(self, queries: Sequence[str]) -> npt.NDArray[np.float32] | None:
        """The vectors of ``queries`` if a get embedded every one of them (and forget
        them), else None."""
        kept = self._query_vectors
        if not kept or not all(q in kept for q in queries):
            return None
        return np.concatenate([kept.pop(q) for q in queries])

    # -- get ----------------------------------------------------------------------------
    def _get_exact(
        self, query: str, embedding: npt.ArrayLike | None, namespace: str, bypass: bool
    ) -> Hit | _SemanticLookup | None:
        """Phase one of a get, under the lock: checks, then the exact layer.

        Returns the final answer (a Hit or None), or the state the semantic phase
        (:meth:`_get_semantic`) continues from.
        """
        t0 = perf_counter()
        if self._closed or self._forked:
            self._check_open()
        ns = namespace if namespace in self._namespaces_ok else self._check_ns(namespace)
        check_size(query, "query", self._max_query, QueryTooLargeError)
        vector = None if embedding is None else self._unit_rows(embedding, 1, "embedding")
        if bypass is not False and _check_flag(bypass, "bypass", InvalidInputError):
            return self._miss(ns, "bypass", None, t0)
        now = self._clock()
        key = self._key_memo.key(ns, query)
        hot = self._hot
        entry = hot.get(key)
        if entry is not None:
            hot.move_to_end(key)
        else:
            try:
                kf = self._key_filter
                entry = (
                    None
                    if kf is not None and not kf.may_contain(key)
                    else self._store.get_by_key(key)
                )
            except StoreUnavailableError:
                logger.warning("semcache: store unreachable on get; answering a miss")
                return self._miss(ns, "store_unavailable", None, t0)
            if entry is not None and self._hot_size:
                self._remember(key, entry)
        reason: MissReason | None = None
        if entry is not None:
            if self._key_memo.last is query:  # computed: keep it for the next ask
                self._key_memo.remember(ns, query, key)
            if entry.expires_at is not None and entry.expires_at <= now:
                reason = "expired"
            else:
                hit = Hit(
                    entry.response,
                    1.0,
                    "exact",
                    entry.query,
                    ns,
                    None if entry.metadata is None else json.loads(entry.metadata),
                    entry.created_at,
                    entry.expires_at,
                    1.0,
                )
                if self._validator is None or self._accept(query, hit):
                    return self._found(entry.id, hit, now, t0)
                reason = "validator"
        try:
            if self._shared or self._index_suspect:
                self._maybe_sync(now)
            if vector is None and self._embedder is None:  # nothing to search with
                return self._miss(ns, reason or "no_candidate", None, t0)
            index = self._index_of(ns)
            if index is None or not len(index):
                return self._miss(ns, reason or "no_candidate", None, t0)
        except StoreUnavailableError:
            return self._miss(ns, "store_unavailable", None, t0)
        seen = {entry.id} if entry is not None else set()
        return _SemanticLookup(query, ns, vector, reason, seen, now, t0)

    def _get_semantic(self, lookup: _SemanticLookup) -> Steps[Hit | None]:
        """Phase two of a get: embed the query if needed (outside the lock), search."""
        vector, ns, t0 = lookup.vector, lookup.namespace, lookup.t0
        if vector is None:
            try:
                raw = yield (lookup.query,)
                self._check_open()
                vector = self._unit_rows(raw, 1, "embedder output", from_embedder=True)
            except CacheClosedError:
                raise
            except Exception:
                logger.exception("semcache: embedder failed on get; answering a miss")
                return self._miss(ns, "embedder_error", None, t0)
            self._keep_query_vector(lookup.query, vector)
        try:
            index = self._index_of(ns)  # the lock may have been released meanwhile
            if index is None or not len(index):
                return self._miss(ns, lookup.reason or "no_candidate", None, t0)
            return self._search(
                lookup.query, vector[0], ns, index, lookup.reason, lookup.seen, lookup.now, t0
            )
        except StoreUnavailableError:
            return self._miss(ns, "store_unavailable", None, t0)

    def _remember(self, key: bytes, entry: StoredEntry) -> None:
        """Keep an entry in the hot map (single mode only: this process sees every write,
        so it can keep the map exact by forgetting ids as they are removed). The map is
        bounded by entries and by characters of text, least recently used out first."""
        size = _hot_size(entry)
        if size > _HOT_CHARS // 64:
            return
        hot = self._hot
        old = hot.pop(key, None)
        if old is not None:
            self._hot_ids.pop(old.id, None)
            self._hot_chars -= _hot_size(old)
        hot[key] = entry
        self._hot_ids[entry.id] = key
        self._hot_chars += size
        while len(hot) > self._hot_size or self._hot_chars > _HOT_CHARS:
            _, out = hot.popitem(last=False)
            self._hot_ids.pop(out.id, None)
            self._hot_chars -= _hot_size(out)

    def _forget_hot(self) -> None:
        if self._key_filter is not None:
            self._key_filter.invalidate()
        self._hot.clear()
        self._hot_ids.clear()
        self._hot_chars = 0

    def _search(
        self,
        query: str,
        vector: npt.NDArray[np.float32],
        ns: str,
        index: VectorIndex,
        reason: MissReason | None,
        seen: set[int],
        now: float,
        t0: float,
    ) -> Hit | None:
        threshold = self._threshold
        k = min(_CANDIDATES, len(index))
        best: float | None = None
        while True:
            ids, sims = index.search(vector, k)
            if best is None and len(sims):
                best = min(1.0, float(sims[0]))
            candidates = [
                (i, s) for i, s in zip(ids.tolist(), sims.tolist(), strict=True) if i not in seen
            ]
            above = [(i, s) for i, s in candidates if s >= threshold]
            if not above:
                if candidates:
                    reason = reason or "below_threshold"
                break
            rows, fetched = self._entries_by_id([i for i, _ in above])
            stale: list[int] = []
            for entry_id, sim in above:
                seen.add(entry_id)
                entry = rows.get(entry_id)
                if entry is None:  # deleted by another process; the index lags
                    stale.append(entry_id)
                    continue
                score = self._own_score(entry, ns, vector, sim, entry_id in fetched)
                if score is None:
                    stale.append(entry_id)  # the id now names another entry
                    continue
                if score < threshold:  # the index scored a row the store no longer has
                    reason = reason or "below_threshold"
                    continue
                sim = score
                if entry_id in fetched and self._hot_size:
                    self._remember(entry.key, entry)
                if entry.expires_at is not None and entry.expires_at <= now:
                    stale.append(entry_id)  # expiry is final: tombstone in memory only
                    reason = reason or "expired"
                    continue
                hit = self._make_hit(entry, max(-1.0, min(1.0, sim)), "semantic", None)
                hit.runner_up = _runner_up(ids, sims, entry_id)
                if self._confidence_fn is not None:
                    confidence = self._confidence(query, hit)
                    if confidence is None or confidence < self._min_confidence:
                        reason = reason or "confidence"
                        continue
                    hit.confidence = confidence
                if not self._accept(query, hit):
                    reason = reason or "validator"
                    continue
                if stale:
                    index.remove(stale)
                return self._found(entry_id, hit, now, t0)
            if stale:
                index.remove(stale)
            # Every candidate above the threshold was rejected. Look further only if
            # the next ones could still be above it.
            if len(above) < len(candidates) or k >= len(index) + len(stale):
                break
            k = min(k * 4, len(index))
            if not len(index):
                break
        return self._miss(ns, reason or "no_candidate", best, t0)

    def _own_score(
        self,
        entry: StoredEntry,
        ns: str,
        vector: npt.NDArray[np.float32],
        sim: float,
        fetched: bool,
    ) -> float | None:
        """The similarity to serve ``entry`` at, the index having scored its id ``sim``;
        None when the id names an entry the index cannot have held (another namespace,
        no vector, another dimension).

        An id alone proves nothing once a store lost its data or its tail and numbered
        its entries again, so an entry just read from the store (``fetched``, with its
        vector) is scored from its own stored vector. When that score differs from the
        index's by more than :data:`_SAME_SCORE`, the index is out of date (or scores
        loosely) and is rebuilt at the next get; the entry's own score is what the
        threshold sees. An entry from the hot map (single mode) is one this process
        wrote or read and scored already.
        """
        if entry.namespace != ns:
            self._index_suspect = True
            return None
        if not fetched or self._store_search:  # the store searched its own rows
            return sim
        blob, entry.vector = entry.vector, None  # the hot map keeps entries without it
        dim = self._dim
        if blob is None or dim is None or len(blob) != dim * self._dtype.itemsize:
            self._index_suspect = True
            return None
        own = float(np.frombuffer(blob, dtype=self._dtype).astype(np.float32) @ vector)
        if abs(own - sim) <= _SAME_SCORE:
            return sim
        self._index_suspect = True
        return max(-1.0, min(1.0, own))

    def _entries_by_id(self, ids: list[int]) -> tuple[dict[int, StoredEntry], set[int]]:
        """The entries of ``ids`` that exist, and which of them were read from the store
        (with their vectors, for :meth:`_own_score`): the hot map's where it has them
        (single mode: exact, see :meth:`_remember`), the rest from the store."""
        vectors = not self._store_search
        if not self._hot_size:
            fetched = self._store.get_by_ids(ids, vectors=vectors)
            return fetched, set(fetched)
        hot, hot_ids = self._hot, self._hot_ids
        found: dict[int, StoredEntry] = {}
        missing = []
        for i in ids:
            key = hot_ids.get(i)
            if key is None:
                missing.append(i)
            else:
                found[i] = hot[key]
                hot.move_to_end(key)
        if not missing:
            return found, set()
        fetched = self._store.get_by_ids(missing, vectors=vectors)
        found.update(fetched)
        return found, set(fetched)

    def _accept(self, query: str, hit: Hit) -> bool:
        guards = self._guards
        if self._validator is None and (guards is None or hit.layer == "exact"):
            return True
        try:
            if guards is not None and hit.layer != "exact" and not guards(query, hit):
                return False
            return self._validator is None or bool(self._validator(query, hit))
        except Exception:
            logger.exception("semcache: validator raised; treating the candidate as rejected")
            return False

    def _confidence(self, query: str, hit: Hit) -> float | None:
        assert self._confidence_fn is not None
        try:
            value = float(self._confidence_fn(query, hit))
        except Exception:
            logger.exception("semcache: confidence_fn raised; treating the candidate as rejected")
            return None
        return value if math.isfinite(value) else None

    def _make_hit(
        self, entry: StoredEntry, similarity: float, layer: Layer, confidence: float | None
    ) -> Hit:
        return Hit(
            entry.response,
            similarity,
            layer,
            entry.query,
            entry.namespace,
            None if entry.metadata is None else json.loads(entry.metadata),
            entry.created_at,
            entry.expires_at,
            confidence,
        )

    def _found(self, entry_id: int, hit: Hit, now: float, t0: float) -> Hit:
        pending = self._pending_touch
        pending[entry_id] = now
        if len(pending) >= _TOUCH_FLUSH:
            try:
                self._flush_touches()
            except StoreUnavailableError:  # kept pending: the next flush retries
                logger.warning("semcache: store unreachable; recency not written yet")
        self._hits[hit.layer] += 1
        if self._metrics_hook is not None:
            self._emit(
                MetricsEvent(
                    "get",
                    hit.namespace,
                    hit=True,
                    layer=hit.layer,
                    similarity=hit.similarity,
                    latency=perf_counter() - t0,
                )
            )
        return hit

    def _miss(self, ns: str, reason: MissReason, similarity: float | None, t0: float) -> Hit | None:
        """Count and report a miss; returns None so callers can ``return self._miss(...)``."""
        self._misses[reason] += 1
        if self._metrics_hook is not None:
            self._emit(
                MetricsEvent(
                    "get",
                    ns,
                    hit=False,
                    reason=reason,
                    similarity=similarity,
                    latency=perf_counter() - t0,
                )
            )
        return None

    # -- put ----------------------------------------------------------------------------
    def _put_steps(
        self,
        queries: Sequence[str],
        responses: Sequence[str],
        embeddings: npt.ArrayLike | None,
        namespace: str,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None,
        ttl: float | None,
        *,
        progress: ProgressCallback | None = None,
    ) -> Steps[int]:
        t0 = perf_counter()
        checked = self._check_put(queries, responses, embeddings, namespace, metadata, ttl)
        _check_callable(progress, "progress", InvalidInputError)
        queries = checked.queries
        n = len(queries)
        if n == 0:
            return 0
        if checked.vectors is None and self._embedder is not None:
            checked.vectors = self._kept_query_vectors(queries)  # a missed get embedded them
        if checked.vectors is None and self._embedder is not None:
            if progress is not None:
                progress("embed", 0, n)
            parts = []
            for lo in range(0, n, _EMBED_BATCH):
                chunk = queries[lo : lo + _EMBED_BATCH]
                try:
                    raw = yield chunk
                except Exception as exc:
                    raise EmbedderError(
                        f"the embedder failed: {exc!r}; nothing was written"
                    ) from exc
                parts.append(
                    self._unit_rows(raw, len(chunk), "embedder output", from_embedder=True)
                )
                if progress is not None:
                    progress("embed", lo + len(chunk), n)
            self._check_open()
            checked.vectors = np.concatenate(parts) if len(parts) > 1 else parts[0]
        written = self._write_put(checked, t0)
        if progress is not None:
            progress("write", written, written)
        return written

    def _check_put(
        self,
        queries: Sequence[str],
        responses: Sequence[str],
        embeddings: npt.ArrayLike | None,
        namespace: str,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None,
        ttl: float | None,
    ) -> _CheckedPut:
        """A put's input, checked (before anything is embedded or written)."""
        self._check_open()
        ns = self._check_ns(namespace)
        if isinstance(queries, str) or isinstance(responses, str):
            raise InvalidTextError("queries and responses must be sequences of str, not a str")
        try:
            queries, responses = list(queries), list(responses)
        except TypeError:
            raise InvalidTextError(
                f"queries and responses must be sequences of str, got {_show(queries)} and "
                f"{_show(responses)}"
            ) from None
        n = len(queries)
        if len(responses) != n:
            raise InvalidInputError(f"{n} queries but {len(responses)} responses")
        for q, r in zip(queries, responses, strict=True):
            check_size(q, "query", self._max_query, QueryTooLargeError)
            check_size(r, "response", self._max_response, ResponseTooLargeError)
        metas = self._metadata_json(metadata, n)
        life = self._default_ttl if ttl is None else _check_ttl(ttl)
        vectors = None if embeddings is None else self._unit_rows(embeddings, n, "embeddings")
        return _CheckedPut(ns, queries, responses, metas, life, vectors)

    def _write_put(self, checked: _CheckedPut, t0: float) -> int:
        """Write a checked put (its vectors, if any, known) and keep the indexes and the
        hot map in step; the last step of every put."""
        ns, queries, metas = checked.ns, checked.queries, checked.metas
        responses = checked.responses
        n = len(queries)
        now = self._clock()
        expires = None if checked.life is None else now + checked.life
        vectors = checked.vectors
        stored = None if vectors is None else vectors.astype(self._dtype, copy=False)
        new_dim = None
        if stored is not None and self._dim is None:
            new_dim = int(stored.shape[1])
        key = self._key
        if n == 1:  # every put: its entry without a comprehension's machinery (~2 us)
            q = queries[0]
            vector = None if stored is None else stored[0].tobytes()
            entries = [NewEntry(key(ns, q), ns, q, responses[0], metas[0], vector, now, expires)]
        else:
            entries = [
                NewEntry(
                    key(ns, q),
                    ns,
                    q,
                    r,
                    metas[i],
                    None if stored is None else stored[i].tobytes(),
                    now,
                    expires,
                )
                for i, (q, r) in enumerate(zip(queries, responses, strict=True))
            ]
        limits = None
        quota = self._quotas.get(ns)
        if quota is not None or self._max_entries is not None:
            limits = Limits(self._max_entries, quota)
        fresh = None  # the namespace's first index, built before anything is written
        if stored is not None and not self._store_search and ns not in self._indexes:
            fresh = self._new_index(ns, int(stored.shape[1]))
        if self._key_filter is not None:  # before the write: a failure leaves a false positive
            for new in entries:
                self._key_filter.add(new.key)
        touches = self._pending_touch
        if touches:
            self._pending_touch = {}
        try:
            result = self._store.put_many(
                entries,
                now=now,
                limits=limits,
                touches=touches or None,
                meta=None if new_dim is None else {"dim": str(new_dim)},
            )
        except BaseException:
            if touches is not self._pending_touch:
                touches.update(self._pending_touch)
                self._pending_touch = touches
            if fresh is not None:
                fresh.close()
            raise
        if new_dim is not None:
            self._dim = new_dim
        if fresh is not None:
            self._indexes[ns] = fresh
        self._apply_put(ns, result, stored)
        if self._hot_size:  # write-through: a put is usually read back soon
            ids = result.ids
            if n == 1 and not result.evicted:  # (what it replaced has an older id)
                self._remember_put(ids[0], entries[0], now, expires)
            else:
                removed = result.replaced + result.evicted
                gone = {i for i, _ in removed}
                # Only the batch's tail can stay in a map of _hot_size entries.
                for j in range(max(0, n - self._hot_size), n):
                    if ids[j] not in gone:
                        self._remember_put(ids[j], entries[j], now, expires)
        self._counters["puts"] += n
        if self._metrics_hook is not None:
            self._emit(MetricsEvent("put", ns, latency=perf_counter() - t0, count=n))
        return n

    def _remember_put(
        self, entry_id: int, new: NewEntry, created_at: float, expires_at: float | None
    ) -> None:
        """Keep an entry just written in the hot map (write-through)."""
        self._remember(
            new.key,
            StoredEntry(
                entry_id,
                new.key,
                new.namespace,
                new.query,
                new.response,
                new.metadata,
                created_at,
                expires_at,
            ),
        )

    def _apply_put(self, ns: str, result: PutResult, stored: npt.NDArray[Any] | None) -> None:
        if stored is not None:
            self._index_for(ns).add(np.asarray(result.ids, dtype=np.int64), stored)
        if result.replaced:
            self._unindex(result.replaced)
        if result.evicted:
            self._unindex(result.evicted)
            expired = result.evicted[: result.expired_evicted]
            evicted = result.evicted[result.expired_evicted :]
            self._count_removals(expired, "expire")
            self._count_removals(evicted, "evict")

    def _metadata_json(
        self, metadata: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None, n: int
    ) -> list[str | None]:
        if metadata is None:
            return [None] * n
        if isinstance(metadata, Mapping):
            one = self._one_metadata(metadata)
            return [one] * n
        given: object = metadata
        if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
            raise InvalidMetadataError(
                f"metadata must be a mapping or a sequence of mappings, got {type(given).__name__}"
            )
        if len(metadata) != n:
            raise InvalidMetadataError(f"{n} entries but {len(metadata)} metadata items")
        return [None if m is None else self._one_metadata(m) for m in metadata]

    def _one_metadata(self, metadata: object) -> str:
        if not isinstance(metadata, Mapping):
            raise InvalidMetadataError(
                f"metadata must be a mapping with str keys, got {type(metadata).__name__}"
            )
        if not all(isinstance(k, str) for k in metadata):
            raise InvalidMetadataError("metadata keys must be str")
        try:
            text = json.dumps(metadata, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidMetadataError(f"metadata is not JSON-serializable: {exc}") from None
        check_size(text, "metadata", self._max_metadata, MetadataTooLargeError)
        return text

    # -- shared helpers -------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise CacheClosedError("the cache is closed")
        if self._forked:
            self._adopt_fork()

    def _check_ns(self, namespace: str) -> str:
        if namespace in self._namespaces_ok:
            return namespace
        ns = check_namespace(namespace)
        if len(self._namespaces_ok) < 100_000:
            self._namespaces_ok.add(ns)
        return ns

    def _key(self, ns: str, query: str) -> bytes:
        return self._key_memo.key(ns, query)

    def _unit_rows(
        self, value: Any, n: int, what: str, *, from_embedder: bool = False
    ) -> npt.NDArray[np.float32]:
        """``value`` as ``n`` unit rows of float32, checked.

        Raises:
            InvalidEmbeddingError / DimensionMismatchError: caller's embeddings are bad.
            EmbedderError: the embedder's output is (``from_embedder``).
        """

        if (
            n == 1
            and type(value) is np.ndarray
            and value.dtype == np.float32
            and value.ndim == 1
            and value.shape[0] == self._dim
        ):
            # The common case (one float32 vector) in a few microseconds: the squared
            # norm is finite and positive exactly when every element is finite and one
            # is non-zero, barring overflow, which the general path below handles.
            with np.errstate(over="ignore", invalid="ignore"):
                sq = float(np.dot(value, value))
            if 0.0 < sq < math.inf:
                scaled = value / np.float32(math.sqrt(sq))  # float32 / float32 scalar
                return cast("npt.NDArray[np.float32]", scaled.reshape(1, -1))

        def fail(message: str) -> Exception:
            if from_embedder:
                return EmbedderError(f"{what}: {message}")
            return InvalidEmbeddingError(f"{what}: {message}")

        try:
            arr = np.asarray(value)
        except Exception as exc:
            raise fail(f"not an array ({exc})") from None
        if arr.dtype.kind not in "fiu":
            raise fail(f"must hold real numbers, got dtype {arr.dtype}")
        if arr.ndim == 1 and n == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] == 0:
            raise fail(f"expected shape ({n}, dim), got {arr.shape}")
        if self._dim is not None and arr.shape[1] != self._dim:
            if from_embedder:
                raise fail(f"dimension {arr.shape[1]}, expected {self._dim}")
            raise DimensionMismatchError(arr.shape[1], self._dim)
        with np.errstate(over="ignore", invalid="ignore"):
            out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise fail("contains NaN or infinity")
        norms = np.sqrt(np.einsum("ij,ij->i", out, out, dtype=np.float64))
        if not np.all(norms > 0):
            raise fail("a zero vector has no direction")
        unit: npt.NDArray[np.float32] = (out / norms[:, None]).astype(np.float32)
        return unit

    def _unindex(self, removed: Sequence[tuple[int, str]]) -> None:
        by_ns: dict[str, list[int]] = {}
        hot_ids = self._hot_ids
        for entry_id, ns in removed:
            by_ns.setdefault(ns, []).append(entry_id)
            self._pending_touch.pop(entry_id, None)
            key = hot_ids.pop(entry_id, None)
            if key is not None:
                self._hot_chars -= _hot_size(self._hot.pop(key))
        for ns, ids in by_ns.items():
            index = self._indexes.get(ns)
            if index is not None:
                index.remove(np.asarray(ids, dtype=np.int64))

    def _count_removals(
        self, removed: Sequence[tuple[int, str]], kind: Literal["evict", "expire"]
    ) -> None:
        if not removed:
            return
        self._counters["evictions" if kind == "evict" else "expirations"] += len(removed)
        if self._metrics_hook is None:
            return
        per_ns: dict[str, int] = {}
        for _, ns in removed:
            per_ns[ns] = per_ns.get(ns, 0) + 1
        for ns, count in sorted(per_ns.items()):
            self._emit(MetricsEvent(kind, ns, count=count))

    def _compact_indexes(self) -> int:
        return sum(index.compact() for index in self._indexes.values())

    def _flush_touches(self) -> None:
        if self._pending_touch:
            touches, self._pending_touch = self._pending_touch, {}
            try:
                self._store.touch(touches)
            except BaseException:
                touches.update(self._pending_touch)
                self._pending_touch = touches
                raise

    def _emit(self, event: MetricsEvent) -> None:
        hook = self._metrics_hook
        if hook is None:
            return
        try:
            hook(event)
        except Exception:
            logger.exception("semcache: metrics_hook raised; ignored")

    def _maybe_sync(self, now: float) -> None:
        """Shared mode: bring the indexes up to the store's change log. Any mode: rebuild
        them once a candidate's own score proved them out of date (see :meth:`_own_score`)."""
        if self._store_search:
            return
        if self._index_suspect:
            self._index_suspect = False
            if self._rebuild_once():
                self._last_sync = now
                return
        if not self._shared or now - self._last_sync < self._stale_interval:
            return
        self._last_sync = now
        self._sync()

    def _rebuild_once(self) -> bool:
        """Rebuild from the store unless already done at its present position (a custom
        index that scores loosely must not rebuild on every get)."""
        here = (self._store.identity(), self._store.seq())
        if here == self._suspect_rebuilt:
            return False
        logger.warning("semcache: the index does not match the store any more; rebuilding")
        self._resync()
        self._suspect_rebuilt = here
        return True

    def _sync(self) -> None:
        changes = self._store.changes_since(self._seq, self._store_id)
        if changes is None:
            # The log no longer reaches back, or the store is not the one indexed: its
            # identity changed (data lost or replaced) or its sequence went backwards.
            self._resync()
            return
        self._apply_changes(changes)

    def _resync(self) -> None:
        """Rebuild the indexes from the store as it is now, and forget what this process
        kept of the store it had (exact entries, recency of ids that may be reissued)."""
        store = self._store
        self._store_id = store.identity()
        if self._dim is not None and store.get_meta("dim") is None:
            # The store lost its settings with its data: record this cache's again.
            settings = {"dim": str(self._dim), "vector_dtype": self._dtype.name}
            if self._embedder is not None:
                settings["fingerprint"] = self._embedder.fingerprint
            store.set_meta(settings)
        self._seq = store.seq()
        self._forget_hot()
        self._pending_touch.clear()
        self._rebuild_indexes()

    def _apply_changes(self, changes: Sequence[Change]) -> None:
        """Replay change-log records into the indexes (idempotent)."""
        if not changes:
            return
        live: dict[int, str] = {}
        gone: list[tuple[int, str]] = []
        for change in changes:
            if change.op == "put":
                live[change.entry_id] = change.namespace
            else:
                live.pop(change.entry_id, None)
                gone.append((change.entry_id, change.namespace))
        self._unindex(gone)
        if live:
            vectors = self._store.get_vectors(list(live))
            by_ns: dict[str, tuple[list[int], list[bytes]]] = {}
            for entry_id in sorted(vectors):
                ns, blob = vectors[entry_id]
                ids, blobs = by_ns.setdefault(ns, ([], []))
                ids.append(entry_id)
                blobs.append(blob)
            if by_ns and self._dim is None:
                dim = self._store.get_meta("dim")
                self._dim = None if dim is None else int(dim)
            for ns, (ids, blobs) in by_ns.items():
                self._index_for(ns).add(np.asarray(ids, dtype=np.int64), self._decode(blobs))
        self._seq = changes[-1].seq
