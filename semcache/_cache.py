"""SemanticCache: the synchronous facade over the engine.

Every method is a few lines: the state and the operations live in
:class:`~semcache._engine.Engine`; get, put, put_many and get_or_put are operation
generators (:mod:`semcache._get`, :mod:`semcache._put`, :mod:`semcache._get_or_put`)
that this class drives in the calling thread with :func:`~semcache._drive.drive`, and
:class:`~semcache.AsyncSemanticCache` drives from an event loop. See
docs/architecture.md for the module map.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from types import GeneratorType, TracebackType
from typing import Any, Literal, cast

import numpy.typing as npt

from ._checkpoint import CheckpointTarget, dump_checkpoint, load_checkpoint
from ._checks import check_threshold
from ._drive import adrive, drive, run_first
from ._engine import Engine
from ._get import start_get
from ._get_or_put import get_or_put_steps
from ._index import IndexFactory
from ._memoize import Memoizer, NamespaceSpec, memoize
from ._metrics import MetricsHook
from ._options import ConfidenceFn, Options, SameAnswer, Validator
from ._progress import ProgressCallback
from ._put import start_put, start_put_one
from ._store import Store
from ._types import Hit
from .embedders import Embedder

__all__ = ["SemanticCache", "engine_of", "sync_view"]


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
            negation differ from the query's is not served: "What is 2+3?" does not
            get the answer of "What is 2+2?"); None: no guards; or your own, such as
            :func:`~semcache.quality.default_guards` (those two and word order). With
            ``answer_support`` the built-in ones yield to the cache's own evidence
            (:mod:`semcache._guard_evidence`); yours never do. Measured in
            docs/quality.md ("Guards on by default", "Guards that yield to evidence").
        error_budget: wrong answers per get allowed, in (0, 1) (None: no budget, the
            threshold rule). With one, the semantic layer reads the 8 nearest
            candidates at or above similarity 0.5 (``similarity_threshold`` is not
            used) and an error budget learnt online decides: serve, verify (only
            :meth:`get_or_put`: call ``compute()`` anyway, serve its fresh answer and
            learn whether the stored one was right) or miss. What it learns is kept in
            the store, shared by processes (docs/quality.md).
        same_answer: ``same_answer(stored, fresh) -> bool``, whether a stored answer
            agrees with a fresh one (None: equal after normalization: NFKC, casefold,
            collapsed whitespace). One that raises makes nothing learnt from that call.
        answer_similarity: compare answers by their embeddings instead (with
            ``error_budget``; None: off): two answers are the same when the cosine of
            their embeddings, made with this cache's embedder, is at least this number
            in (0, 1]; 0.95 is the measured choice (docs/quality.md, "Answers compared
            by their embeddings"). Every put then embeds its response in the same
            embedder call as its prompt and keeps the vector in the entry's budget
            record; an entry put without it has its answer embedded when first compared.
        answer_support: let the answers of the 8 nearest candidates move each one's
            score (True, the default): its distance to the query (1 - similarity)
            shrinks with the excess over 0.5 of the similarities of the other
            candidates with the same stored answer and grows with those of another
            answer that repeats among them (``1 - (1 - s) * exp(-2 * net)``); the
            threshold is applied to that score and the candidates are tried best score
            first (``Hit.similarity`` stays the candidate's cosine). Where no stored
            answer repeats every score is the similarity (the plain cosine threshold);
            where answers repeat it serves more, more safely (docs/quality.md). A
            candidate whose cosine reaches the threshold but whose score does not, or
            that its rival answers outweigh, is a miss, reason ``"support"``. False: the
            plain cosine threshold. With ``error_budget`` the budget decides.
        answer_model: with ``answer_support``, a classifier of the repeated answers
            adds to their scores, or with ``error_budget`` informs its risk model.

    Every argument is checked before the store is opened or created (docs/api.md,
    "Inputs and their errors"); each error names the argument.

    Raises:
        ConfigurationError: invalid or conflicting arguments, a wrong type, an unknown
            or bad ``index_options`` key or value.
        InvalidThresholdError: ``similarity_threshold`` not a number in [-1, 1].
        ConfigurationError: also ``error_budget`` not None or a number in (0, 1), or
            ``same_answer`` not callable; ``answer_similarity`` not None or a number in
            (0, 1], or given with ``same_answer``, without an embedder or without
            ``error_budget``; ``answer_support`` or ``answer_model`` not a bool.
        InvalidTTLError: a negative, non-finite or non-numeric ``default_ttl``.
        InvalidNamespaceError: a ``namespace_quotas`` key that is not a valid namespace.
        MissingDependencyError: ``index_options`` need an extra that is not installed.
        EmbedderMismatchError: the store was written with another embedder
            (fingerprint or dimension), or with another ``vector_dtype``.
        StoreError: the store cannot be opened (see :class:`SQLiteStore`).
        StoreLockedError: another process has the SQLite file open in a conflicting
            ``multi_process_mode``.
    """

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
        error_budget: float | None = None,
        same_answer: SameAnswer | None = None,
        answer_similarity: float | None = None,
        answer_support: bool = True,
        answer_model: bool = True,
    ) -> None:
        self._engine = Engine(Options.from_call(locals(), async_embedder=False))

    # -- configuration ----------------------------------------------------------------
    @property
    def similarity_threshold(self) -> float:
        """The cosine similarity in [-1, 1] a semantic candidate needs to be served."""
        return self._engine.threshold

    def set_similarity_threshold(self, value: float) -> None:
        """Change the threshold for later gets.

        Raises:
            InvalidThresholdError: ``value`` is not a number in [-1, 1].
        """
        self._engine.threshold = check_threshold(value)

    @property
    def embedder(self) -> Embedder | None:
        """The embedder, or None."""
        return self._engine.embedder

    @property
    def store(self) -> Store:
        """The underlying store."""
        return self._engine.store

    @property
    def dim(self) -> int | None:
        """The vector dimension, or None until the first vector is stored."""
        return self._engine.dim

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._engine.closed

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
            (reason ``"embedder_error"``), never an exception. With ``error_budget`` a
            semantic candidate is served only when the budget says serve; one it
            would verify or miss is a miss (reason ``"budget"``) that nothing learns
            from (:meth:`get_or_put` learns).

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
        eng = self._engine
        with eng.lock:
            out = start_get(eng, query, embedding, namespace, bypass)
        if type(out) is GeneratorType:
            return drive(eng, out)  # type: ignore[no-any-return]
        return out  # type: ignore[return-value]  # (no cast: this is every exact hit)

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
            EmbedderError: the embedder failed (with ``answer_similarity``, on the
                response too, even with ``embedding`` given); nothing was written.
            StoreError: the store failed; nothing was written.
        """
        eng = self._engine
        with eng.lock:
            out = start_put_one(eng, query, response, embedding, namespace, metadata, ttl)
        if type(out) is GeneratorType:
            drive(eng, out)

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
        args = (queries, responses, embeddings, namespace, metadata, ttl, progress)
        return cast(int, run_first(self._engine, start_put, *args))

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
        error, with ``answer_similarity`` an embedder that fails on it) it is still
        returned and the failure logged.

        Args:
            query: the prompt.
            compute: called with no arguments on a miss; returns the response (str).
            embedding, namespace, ttl, metadata: as in :meth:`get` and :meth:`put`.

        Returns:
            The response.

        With ``error_budget``, a candidate the budget doubts is sometimes verified:
        ``compute()`` is called although a stored answer could have been served, its
        answer is returned (and put), and the budget learns whether the stored answer
        was right (counted in ``stats()["budget"]["verifications"]``). A miss with
        candidates teaches it the same way.

        Raises:
            Exception: whatever ``compute`` raises, in this caller and in those waiting
                for it; nothing is cached and nothing stored changes.
            InvalidTextError: ``compute`` returned something that is not a str.
            InvalidInputError: ``compute`` is not callable.
            The errors of :meth:`get` and :meth:`put` for bad input (``ttl`` and
                ``metadata`` are checked before ``compute`` is called).
        """
        eng = self._engine
        return drive(
            eng, get_or_put_steps(eng, query, compute, embedding, namespace, ttl, metadata)
        )

    def feedback(self, hit: Hit, correct: bool) -> None:
        """Report whether a hit this cache served was right: the entry's record (kept
        with it in the store) learns it, so the error budget serves that entry less
        (or more) readily at that similarity and below (above). Only the entry learns:
        reports are not a random sample of hits, so the budget's risk curves do not.
        Works without ``error_budget`` too (the record is kept for when one is used).
        Exact hits may be reported as well; the exact layer keeps serving its entry
        (``delete`` or ``put`` the right answer to change that). A hit whose entry was
        deleted, replaced or has expired since changes nothing (counted as
        ``stats()["budget"]["feedback_stale"]``).

        Args:
            hit: a :class:`Hit` returned by this cache's ``get``.
            correct: whether its response was right.

        Raises:
            InvalidInputError: ``hit`` is not a Hit a cache returned (no
                ``entry_id``), or ``correct`` is not a bool; nothing is written.
            InvalidNamespaceError: the hit's namespace is not valid.
            CacheClosedError, StoreError.
        """
        self._engine.feedback(hit, correct)

    def memoize(
        self,
        *,
        prompt: str = "prompt",
        namespace: NamespaceSpec = None,
        ttl: float | None = None,
    ) -> Memoizer:
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
        eng = self._engine

        async def arun(
            text: str, compute: Callable[[], Any], *, namespace: str, ttl: float | None
        ) -> str:
            return await adrive(
                eng, get_or_put_steps(eng, text, compute, None, namespace, ttl, None)
            )

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            return memoize(
                fn, prompt=prompt, namespace=namespace, ttl=ttl, run=self.get_or_put, arun=arun
            )

        return cast(Memoizer, decorate)

    def delete(self, query: str, *, namespace: str = "default") -> bool:
        """Delete the entry whose normalized query equals ``query``'s.

        Returns:
            Whether an entry was deleted.

        Raises:
            CacheClosedError, InvalidTextError, QueryTooLargeError, InvalidNamespaceError,
            StoreError.
        """
        return self._engine.delete(query, namespace)

    def vacuum(self, *, namespace: str | None = None, compact: bool = True) -> int:
        """Delete expired entries (in one namespace or all) and, with ``compact``,
        reclaim index tombstones.

        Returns:
            The number of expired entries deleted.

        Raises:
            CacheClosedError, InvalidNamespaceError, StoreError.
            InvalidInputError: ``compact`` is not a bool.
        """
        return self._engine.vacuum(namespace, compact)

    def compact(self) -> int:
        """Rebuild every index at its live size.

        Returns:
            The number of tombstones reclaimed.

        Raises:
            CacheClosedError.
        """
        return self._engine.compact()

    def clear_namespace(self, namespace: str) -> int:
        """Delete every entry of one namespace (no other is touched).

        Returns:
            How many entries were deleted.

        Raises:
            CacheClosedError, InvalidNamespaceError, StoreError.
        """
        return self._engine.clear_namespace(namespace)

    def clear(self) -> int:
        """Delete every entry of every namespace; the indexes start empty.

        Returns:
            How many entries were deleted.

        Raises:
            CacheClosedError, StoreError.
        """
        return self._engine.clear()

    def stats(self) -> dict[str, Any]:
        """Counts for monitoring.

        Returns:
            A dict with ``entries`` (namespace -> stored entries, expired included until
            vacuumed), ``total_entries``, ``hits`` (layer -> count), ``misses`` (reason ->
            count), ``gets``, ``hit_rate``, ``puts``, ``deletes``, ``evictions``,
            ``expirations``, ``guards_overruled`` (docs/api.md), ``tombstones``,
            ``indexed`` (namespace -> live index rows), ``dim``, ``vector_dtype``,
            ``fingerprint``, ``index_backend`` and ``budget`` (None without
            ``error_budget``; else ``verifications``: ``compute()`` calls made to
            verify, ``observations``, ``feedback``, ``feedback_stale``,
            ``learn_errors``, ``modelled``: namespaces whose risk model decides).
            Operation counters cover this process since the cache was opened.

        Raises:
            CacheClosedError, StoreError.
        """
        return self._engine.stats()

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
        eng = self._engine
        return dump_checkpoint(eng.store, dest, eng.checkpoint_snapshot)

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
        self._engine.close()

    def __enter__(self) -> SemanticCache:
        self._engine.check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return self._engine.describe("SemanticCache")


def engine_of(cache: SemanticCache) -> Engine:
    """The engine behind ``cache`` (for the integrations' operation generators)."""
    return cache._engine


def sync_view(engine: Engine) -> SemanticCache:
    """A :class:`SemanticCache` over an engine that already exists (an
    AsyncSemanticCache's, for doors that work without an event loop)."""
    cache = SemanticCache.__new__(SemanticCache)
    cache._engine = engine
    return cache
