"""The engine: a cache's state and the operations that need no embedding.

``SemanticCache`` and ``AsyncSemanticCache`` are facades over one :class:`Engine`. The
engine does no waiting of its own: the operations that may embed (get, put, put_many,
get_or_put) are generators in :mod:`semcache._get`, :mod:`semcache._put` and
:mod:`semcache._get_or_put`, driven by :mod:`semcache._drive`; the rest are plain
methods here, run under :attr:`Engine.lock` (by the async facade on a worker thread).

The state lives in small objects, each with its own tests: :class:`Options` (the
checked arguments), :class:`IndexSet` (per-namespace indexes, warm start, catch-up),
:class:`HotMap` (the exact layer's memory), :class:`Recency` (touches not yet written),
:class:`Metrics` (counters and the hook), :class:`Ownership` (lifecycle, file claim,
fork) and :class:`Flights` (get_or_put's single-flight).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from time import perf_counter
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt

from ._agreement import answer_digest
from ._answer_model import AnswerModels
from ._budgets import Budgets
from ._budgets import summary as budget_summary
from ._checks import check_flag
from ._deadline import call_with_deadline
from ._errors import (
    DimensionMismatchError,
    EmbedderError,
    InvalidEmbeddingError,
    InvalidInputError,
    InvalidMetadataError,
    MetadataTooLargeError,
    QueryTooLargeError,
)
from ._flight import Flights
from ._guard_evidence import guard_parts
from ._hot import HOT_ENTRIES, HotMap
from ._indexes import IndexSet
from ._keyfilter import KeyFilter, KeyMemo
from ._metrics import Metrics
from ._options import Options
from ._ownership import Lifecycle, Ownership, claim
from ._prototypes import Prototypes
from ._recency import Recency
from ._store import MemoryStore, SQLiteStore, Store
from ._text import check_namespace, check_size, key_maker
from ._types import Hit
from .embedders import Embedder

__all__ = ["Engine"]

logger = logging.getLogger("semcache")

#: Query embeddings kept from gets for the put that follows a miss.
_KEPT_QUERY_VECTORS: Final = 256
_OPEN: Final = Lifecycle.OPEN


class Engine:
    """A cache's state and its non-embedding operations (see the module docstring)."""

    def __init__(self, options: Options) -> None:
        self.options = options
        # The options the hot paths read, flat.
        self.embedder: Embedder | None = options.embedder
        self.threshold = options.similarity_threshold
        self.normalize = options.normalize
        self.max_query = options.max_query_bytes
        self.max_response = options.max_response_bytes
        self.default_ttl = options.default_ttl
        self.max_entries = options.max_entries
        self.quotas = options.namespace_quotas
        self.shared = options.shared
        self.validator = options.validator
        self.guards = options.guards
        #: The guards' parts and, for the built-in ones, what they check of two texts
        #: (:mod:`semcache._guard_evidence`: they yield to answer support's evidence).
        self.guard_parts = guard_parts(options.guards)
        #: Whether a part of the guards is built in (can yield).
        self.guards_yield = any(c is not None for _, c in self.guard_parts or ())
        self.confidence_fn = options.confidence_fn
        self.clock = options.clock
        self.store_search = options.store_search
        #: ``answer_support`` where it applies (without an error budget).
        self.answer_support = options.answer_support and options.error_budget is None

        self.namespaces_ok: set[str] = set()
        self.recency = Recency()
        self.metrics = Metrics(options.metrics_hook)
        # The in-memory exact map relies on single mode's promise that this process is
        # the store's only writer (enforced by a lock for SQLite files).
        self.hot = HotMap(0 if self.shared else HOT_ENTRIES)
        # Keys of recent queries, and (single mode) a filter that proves a key absent.
        normalize = self.normalize
        self.key_memo = KeyMemo(key_maker(normalize))
        self.key_filter: KeyFilter | None = None
        self.flights = Flights()  # get_or_put's computations in progress, by key
        # Query embeddings made by gets, kept for the put that follows a miss.
        self.query_vectors: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        #: ``answer_support``: stored answers' keys by entry id (ids are never reissued
        #: within a store; dropped with the exact entries). See ``_answer_memo.answer_keys``.
        self.answer_keys: dict[int, bytes] = {}
        #: ``answer_support``: stored prompts' vectors (float32) by entry id, for the
        #: local prototypes of repeated answers. See ``_answer_memo.candidate_vectors``.
        self.answer_vectors: dict[int, npt.NDArray[np.float32]] = {}

        path, store = options.path, options.store
        self.store: Store = (
            store
            if store is not None
            else (SQLiteStore(path) if path is not None else MemoryStore())
        )
        if not self.shared:
            stored_keys = getattr(self.store, "stored_keys", None)
            if callable(stored_keys):
                self.key_filter = KeyFilter(stored_keys)
        #: The error budget (``error_budget``), or None.
        self.budgets: Budgets | None = (
            None
            if options.error_budget is None
            else Budgets(
                options.error_budget,
                options.same_answer,
                self.store,
                self.clock,
                options.answer_similarity,
            )
        )
        self._records: Budgets | None = None  # feedback's, without a budget
        self.indexes = IndexSet(self.store, options, self._forget)
        #: ``answer_support``: every stored answer's prototype, for its veto (None: no
        #: veto; a store that searches keeps no vectors here to follow). With an error
        #: budget too, where answers are compared as ``answer_support`` compares them
        #: (the default ``same_answer``, no ``answer_similarity``).
        self.prototypes: Prototypes | None = None
        if (
            options.answer_support
            and not self.store_search
            and options.same_answer is None
            and options.answer_similarity is None
        ):
            self.prototypes = Prototypes(self.store, self.indexes.decode, answer_digest, self.clock)
            self.indexes.prototypes = self.prototypes
        self.owner = Ownership(None, self._child_reset)
        self.lock: threading.RLock = self.owner.lock
        #: ``answer_support``: the answer model of each namespace whose answers repeat
        #: (``semcache._answer_model``), where the prototypes are kept (None
        #: otherwise). Without an error budget it raises the candidates' scores; with
        #: one, its reading is two of the budget's risk model's features.
        self.answer_models: AnswerModels | None = None
        if self.prototypes is not None and options.answer_model:
            self.answer_models = AnswerModels(
                self.prototypes, lambda: self.lock, lambda: not self.closed
            )
        if self.budgets is not None:
            self.budgets.models = self.answer_models
        try:
            self.owner.claim = claim(self.store, options.multi_process_mode)
            self.indexes.open(options.progress)
        except BaseException:
            self.store.close()
            self.owner.release()
            raise
        self.owner.track()

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self.owner.state is Lifecycle.CLOSED

    @property
    def dim(self) -> int | None:
        return self.indexes.dim

    def check_open(self) -> None:
        """Raise if closed; adopt a forked child's copy on its first use.

        Raises:
            CacheClosedError: closed.
            StoreLockedError: a forked child may not use this cache (see
                :meth:`Ownership.adopt`).
        """
        if self.owner.check_open():
            with self.lock:
                if self.owner.adopt():
                    self.indexes.resync()
                self.indexes.reopened()

    def _child_reset(self, lock: threading.RLock) -> None:
        # A forked child, single-threaded: other threads' locks and flights are gone;
        # recency and exact entries are the parent's business.
        self.lock = lock
        self.flights = Flights()
        self.recency.clear()
        self.forget_exact()
        if self.budgets is not None:
            self.budgets.forked()
        if self.answer_models is not None:
            self.answer_models.forked()

    def close(self) -> None:
        """Write pending recency, save the index snapshots, release the indexes and
        close the store. Idempotent."""
        with self.lock:
            unadopted = self.owner.close()
            if unadopted is None:
                return
            try:
                if len(self.recency) and not unadopted:
                    self.store.touch(self.recency.pending)
            except Exception:
                logger.exception("semcache: could not write recency on close")
            try:
                if self.budgets is not None and not unadopted:
                    self.budgets.flush()
            except Exception:
                logger.exception("semcache: could not write the error budget's counts on close")
            try:
                if not unadopted:
                    self.indexes.save()
            finally:
                self.recency.clear()
                self.forget_exact()
                self.indexes.close()
                try:
                    self.store.close()
                finally:
                    self.owner.release()

    def checkpoint_snapshot(self, folder: Path) -> None:
        """For a checkpoint: under the lock, write pending recency to the store and
        the index snapshots into ``folder`` (if this cache keeps snapshots).

        Raises:
            CacheClosedError: closed.
        """
        with self.lock:
            self.check_open()
            self.flush_touches()  # the copy carries recency too
            if self.budgets is not None:
                self.budgets.flush()  # and what the budget learnt
            self.indexes.save(folder)

    # -- shared steps ---------------------------------------------------------------------
    def check_ns(self, namespace: str) -> str:
        if namespace in self.namespaces_ok:
            return namespace
        ns = check_namespace(namespace)
        if len(self.namespaces_ok) < 100_000:
            self.namespaces_ok.add(ns)
        return ns

    def key(self, ns: str, query: str) -> bytes:
        """The exact layer's key of ``query`` in ``ns``."""
        return self.key_memo.key(ns, query)

    def forget_exact(self, namespace: str | None = None) -> None:
        """Forget every exact entry kept in memory (the store changed under them), and
        the answers' prototypes of ``namespace`` (None: of every namespace)."""
        if self.key_filter is not None:
            self.key_filter.invalidate()
        self.hot.clear()
        self.answer_keys.clear()
        self.answer_vectors.clear()
        if self.prototypes is not None:
            if namespace is None:
                self.prototypes.reset()
            else:
                self.prototypes.drop(namespace)
        if self.answer_models is not None:
            self.answer_models.drop(namespace)

    def embed(self, texts: Sequence[str]) -> Any:
        """Call the embedder (sync drivers), within ``embed_timeout``."""
        assert self.embedder is not None
        return call_with_deadline(self.embedder.embed, list(texts), self.options.embed_timeout)

    def keep_query_vector(self, query: str, vector: npt.NDArray[np.float32]) -> None:
        kept = self.query_vectors
        kept[query] = vector
        if len(kept) > _KEPT_QUERY_VECTORS:
            kept.popitem(last=False)

    def kept_query_vectors(self, queries: Sequence[str]) -> npt.NDArray[np.float32] | None:
        """The vectors of ``queries`` if a get embedded every one of them (and forget
        them), else None."""
        kept = self.query_vectors
        if not kept or not all(q in kept for q in queries):
            return None
        return np.concatenate([kept.pop(q) for q in queries])

    def unit_rows(
        self, value: Any, n: int, what: str, *, from_embedder: bool = False
    ) -> npt.NDArray[np.float32]:
        """``value`` as ``n`` unit rows of float32, checked.

        Raises:
            InvalidEmbeddingError / DimensionMismatchError: caller's embeddings are bad.
            EmbedderError: the embedder's output is (``from_embedder``).
        """
        dim = self.indexes.dim
        if (
            n == 1
            and type(value) is np.ndarray
            and value.dtype == np.float32
            and value.ndim == 1
            and value.shape[0] == dim
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
        if dim is not None and arr.shape[1] != dim:
            if from_embedder:
                raise fail(f"dimension {arr.shape[1]}, expected {dim}")
            raise DimensionMismatchError(arr.shape[1], dim)
        with np.errstate(over="ignore", invalid="ignore"):
            out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise fail("contains NaN or infinity")
        norms = np.sqrt(np.einsum("ij,ij->i", out, out, dtype=np.float64))
        if not np.all(norms > 0):
            raise fail("a zero vector has no direction")
        unit: npt.NDArray[np.float32] = (out / norms[:, None]).astype(np.float32)
        return unit

    def metadata_json(
        self, metadata: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None, n: int
    ) -> list[str | None]:
        """Metadata for ``n`` entries as JSON texts, checked.

        Raises:
            InvalidMetadataError, MetadataTooLargeError.
        """
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
        check_size(text, "metadata", self.options.max_metadata_bytes, MetadataTooLargeError)
        return text

    def _forget(self, ids: Sequence[int] | None) -> None:
        """Entries left the store (None: anything may have): drop what this process
        kept of them."""
        if ids is None:
            self.forget_exact()
            self.recency.clear()
        else:
            self.hot.forget(ids)
            self.recency.forget(ids)

    def unindex(self, removed: Sequence[tuple[int, str]]) -> None:
        """``(id, namespace)`` pairs left the store: forget them everywhere."""
        self._forget([i for i, _ in removed])
        self.indexes.remove(removed)

    def flush_touches(self) -> None:
        self.recency.flush(self.store.touch)

    # -- operations that never embed (under the lock) ---------------------------------
    def delete(self, query: str, namespace: str) -> bool:
        with self.lock:
            t0 = perf_counter()
            self.check_open()
            ns = self.check_ns(namespace)
            check_size(query, "query", self.max_query, QueryTooLargeError)
            found = self.store.delete_by_key(self.key(ns, query))
            if found is None:
                return False
            self.unindex([found])
            self.metrics.delete(ns, t0)
            return True

    def vacuum(self, namespace: str | None, compact: bool) -> int:
        with self.lock:
            self.check_open()
            ns = None if namespace is None else self.check_ns(namespace)
            check_flag(compact, "compact", InvalidInputError)
            self.flush_touches()
            removed = self.store.delete_expired(self.clock(), ns)
            self.unindex(removed)
            self.metrics.removals(removed, "expire")
            if compact:
                self.indexes.compact()
            return len(removed)

    def compact(self) -> int:
        with self.lock:
            self.check_open()
            return self.indexes.compact()

    def clear_namespace(self, namespace: str) -> int:
        with self.lock:
            self.check_open()
            ns = self.check_ns(namespace)
            count = self.store.clear(ns)
            self.forget_exact(ns)
            self.indexes.drop(ns)
            if self.budgets is not None:
                self.budgets.forget(ns)
            return count

    def clear(self) -> int:
        with self.lock:
            self.check_open()
            count = self.store.clear()
            self.forget_exact()
            self.indexes.close()
            self.recency.clear()
            if self.budgets is not None:
                self.budgets.forget(None)
            return count

    def stats(self) -> dict[str, Any]:
        with self.lock:
            self.check_open()
            entries = self.store.namespace_counts()
            backend = self.options.index_backend
            return {
                "entries": entries,
                "total_entries": sum(entries.values()),
                **self.metrics.snapshot(),
                "tombstones": self.indexes.tombstones(),
                "indexed": self.indexes.indexed(),
                "dim": self.indexes.dim,
                "vector_dtype": self.options.dtype.name,
                "fingerprint": None if self.embedder is None else self.embedder.fingerprint,
                "index_source": self.indexes.source,
                "index_backend": backend if isinstance(backend, str) else "custom",
                "budget": None if self.budgets is None else budget_summary(self.budgets),
                "prototype_veto": None if self.prototypes is None else self.prototypes.summary(),
                "answer_model": (
                    None if self.answer_models is None else self.answer_models.summary()
                ),
            }

    def feedback(self, hit: Hit, correct: bool) -> None:
        """An application's report that ``hit`` was right or wrong: the served entry's
        record learns it (see ``SemanticCache.feedback``).

        Raises:
            CacheClosedError, StoreError.
            InvalidInputError: ``hit`` is not a Hit this cache made, or ``correct`` is
                not a bool; nothing is written.
        """
        if not isinstance(hit, Hit) or not isinstance(hit.entry_id, int):
            raise InvalidInputError(
                f"feedback needs a Hit returned by this cache's get, got {type(hit).__name__}"
                + ("" if not isinstance(hit, Hit) else " without an entry id")
            )
        check_flag(correct, "correct", InvalidInputError)
        with self.lock:
            self.check_open()
            ns = self.check_ns(hit.namespace)
            entry = self.store.get_by_ids([hit.entry_id]).get(hit.entry_id)
            budgets = self.budgets
            if budgets is None:  # no budget: the records alone learn
                budgets = self._records = self._records or Budgets(
                    None, None, self.store, self.clock
                )
            if entry is None or (entry.namespace, entry.query, entry.created_at) != (
                ns,
                hit.query,
                hit.created_at,
            ):
                # deleted, replaced or expired since (or another store's id): the answer
                # reported on is not stored any more; nothing to learn
                budgets.counters["feedback_stale"] += 1
                return
            sim = max(-1.0, min(1.0, float(hit.similarity)))
            budgets.feedback(entry, sim, correct)
            kept = self.hot.by_id(entry.id)  # this process's copy of the entry
            if kept is not None:
                kept.record = entry.record

    def describe(self, name: str) -> str:
        state = "closed" if self.closed else f"dim={self.indexes.dim}"
        return f"<{name} store={type(self.store).__name__} {state}>"
