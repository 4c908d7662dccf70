"""AsyncSemanticCache: the asyncio facade over the same engine as :class:`SemanticCache`.

Nothing here re-implements an operation: get, put, put_many and get_or_put are the
engine's operation generators driven by :func:`~semcache._drive.adrive` (each step
under the engine's lock on a worker thread, an AsyncEmbedder awaited on the loop, a
sync embedder on a worker thread, effects awaited). Methods that never embed
(``delete``, ``vacuum``, ``stats``...) are the engine's methods run on a worker thread.
The event loop itself only ever does bookkeeping.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, cast

import numpy.typing as npt

from ._checkpoint import CheckpointTarget, dump_checkpoint, load_checkpoint
from ._checks import check_threshold
from ._drive import adrive, arun_first
from ._engine import Engine
from ._get import start_get
from ._get_or_put import get_or_put_steps
from ._index import IndexFactory
from ._memoize import AsyncMemoizer, NamespaceSpec, memoize
from ._metrics import MetricsHook
from ._options import ConfidenceFn, Options, SameAnswer, Validator
from ._progress import ProgressCallback
from ._put import start_put
from ._store import Store
from ._types import Hit
from .embedders import AsyncEmbedder, Embedder

__all__ = ["AsyncSemanticCache", "async_engine_of"]


class AsyncSemanticCache:
    """:class:`SemanticCache` for asyncio: the same constructor, the same methods as
    coroutines, the same results.

    ``hit = await cache.get(prompt)``; on a miss ``await cache.put(prompt, answer)``, or
    ``await cache.get_or_put(prompt, call_llm)``. Store and index work runs on worker
    threads; an :class:`~semcache.embedders.AsyncEmbedder` (``async def embed``) is
    awaited on the loop, a sync :class:`~semcache.embedders.Embedder` runs on a worker
    thread. Use one event loop per cache.

    The constructor opens the store (and rebuilds the indexes from it) synchronously,
    like :class:`SemanticCache`; see there for every argument.

    Raises:
        The same as :class:`SemanticCache`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        embedder: Embedder | AsyncEmbedder | None = None,
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
        self._engine = Engine(Options.from_call(locals(), async_embedder=True))

    # -- configuration (sync: no I/O) ---------------------------------------------------
    @property
    def similarity_threshold(self) -> float:
        """The cosine similarity in [-1, 1] a semantic candidate needs to be served."""
        return self._engine.threshold

    def set_similarity_threshold(self, value: float) -> None:
        """Change the threshold for later gets (no I/O, so not a coroutine).

        Raises:
            InvalidThresholdError: ``value`` is not a number in [-1, 1].
        """
        self._engine.threshold = check_threshold(value)

    @property
    def embedder(self) -> Embedder | AsyncEmbedder | None:
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
        """Whether :meth:`aclose` was called."""
        return self._engine.closed

    # -- operations -----------------------------------------------------------------------
    async def get(
        self,
        query: str,
        *,
        embedding: npt.ArrayLike | None = None,
        namespace: str = "default",
        bypass: bool = False,
    ) -> Hit | None:
        """See :meth:`SemanticCache.get`.

        Raises:
            The same as :meth:`SemanticCache.get`.
        """
        eng = self._engine
        return cast(
            Hit | None, await arun_first(eng, start_get, query, embedding, namespace, bypass)
        )

    async def put(
        self,
        query: str,
        response: str,
        *,
        embedding: npt.ArrayLike | None = None,
        namespace: str = "default",
        metadata: Mapping[str, Any] | None = None,
        ttl: float | None = None,
    ) -> None:
        """See :meth:`SemanticCache.put`.

        Raises:
            The same as :meth:`SemanticCache.put`.
        """
        args = ([query], [response], embedding, namespace, metadata, ttl)
        await arun_first(self._engine, start_put, *args)

    async def put_many(
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
        """See :meth:`SemanticCache.put_many` (``progress`` is called on the worker
        thread running each step, as there).

        Raises:
            The same as :meth:`SemanticCache.put_many`.
        """
        args = (queries, responses, embeddings, namespace, metadata, ttl, progress)
        return cast(int, await arun_first(self._engine, start_put, *args))

    async def get_or_put(
        self,
        query: str,
        compute: Callable[[], Awaitable[str] | str],
        *,
        embedding: npt.ArrayLike | None = None,
        namespace: str = "default",
        ttl: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """See :meth:`SemanticCache.get_or_put`; ``compute`` may be a coroutine function
        (awaited) or a plain function (called on the loop, so keep it quick). Tasks and
        threads missing on the same key wait for one computation.

        Raises:
            The same as :meth:`SemanticCache.get_or_put`.
        """
        eng = self._engine
        return await adrive(
            eng, get_or_put_steps(eng, query, compute, embedding, namespace, ttl, metadata)
        )

    def memoize(
        self,
        *,
        prompt: str = "prompt",
        namespace: NamespaceSpec = None,
        ttl: float | None = None,
    ) -> AsyncMemoizer:
        """See :meth:`SemanticCache.memoize`; for coroutine functions only.

        Raises:
            TypeError: (when decorating) a sync function, a missing ``prompt``
                parameter, or a namespace callable asking for unknown arguments.
        """

        def decorate(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
            return memoize(
                fn, prompt=prompt, namespace=namespace, ttl=ttl, run=None, arun=self.get_or_put
            )

        return cast(AsyncMemoizer, decorate)

    async def feedback(self, hit: Hit, correct: bool) -> None:
        """See :meth:`SemanticCache.feedback`.

        Raises:
            The same as :meth:`SemanticCache.feedback`.
        """
        await asyncio.to_thread(self._engine.feedback, hit, correct)

    async def delete(self, query: str, *, namespace: str = "default") -> bool:
        """See :meth:`SemanticCache.delete`.

        Raises:
            The same as :meth:`SemanticCache.delete`.
        """
        return await asyncio.to_thread(self._engine.delete, query, namespace)

    async def vacuum(self, *, namespace: str | None = None, compact: bool = True) -> int:
        """See :meth:`SemanticCache.vacuum`.

        Raises:
            The same as :meth:`SemanticCache.vacuum`.
        """
        return await asyncio.to_thread(self._engine.vacuum, namespace, compact)

    async def compact(self) -> int:
        """See :meth:`SemanticCache.compact`.

        Raises:
            CacheClosedError.
        """
        return await asyncio.to_thread(self._engine.compact)

    async def clear_namespace(self, namespace: str) -> int:
        """See :meth:`SemanticCache.clear_namespace`.

        Raises:
            The same as :meth:`SemanticCache.clear_namespace`.
        """
        return await asyncio.to_thread(self._engine.clear_namespace, namespace)

    async def clear(self) -> int:
        """See :meth:`SemanticCache.clear`.

        Raises:
            CacheClosedError, StoreError.
        """
        return await asyncio.to_thread(self._engine.clear)

    async def stats(self) -> dict[str, Any]:
        """See :meth:`SemanticCache.stats`.

        Raises:
            CacheClosedError, StoreError.
        """
        return await asyncio.to_thread(self._engine.stats)

    async def dumps(self, dest: CheckpointTarget) -> dict[str, Any]:
        """See :meth:`SemanticCache.dumps` (runs on a worker thread).

        Raises:
            The same as :meth:`SemanticCache.dumps`.
        """
        eng = self._engine
        return await asyncio.to_thread(dump_checkpoint, eng.store, dest, eng.checkpoint_snapshot)

    @classmethod
    async def loads(
        cls,
        source: CheckpointTarget,
        path: str | os.PathLike[str],
        embedder: Embedder | AsyncEmbedder | None,
        *,
        max_member_bytes: int = 1 << 36,
        **kwargs: Any,
    ) -> AsyncSemanticCache:
        """See :meth:`SemanticCache.loads`; the checks, the copy and the opening run on
        a worker thread.

        Raises:
            The same as :meth:`SemanticCache.loads`.
        """
        return await asyncio.to_thread(
            load_checkpoint,
            source,
            path,
            cast(Embedder | None, embedder),
            lambda where, options: cls(where, embedder, **options),
            max_member_bytes=max_member_bytes,
            options=kwargs,
        )

    async def aclose(self) -> None:
        """See :meth:`SemanticCache.close`. Idempotent."""
        await asyncio.to_thread(self._engine.close)

    async def __aenter__(self) -> AsyncSemanticCache:
        self._engine.check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return self._engine.describe("AsyncSemanticCache")


def async_engine_of(cache: AsyncSemanticCache) -> Engine:
    """The engine behind ``cache`` (for the integrations' operation generators)."""
    return cache._engine
