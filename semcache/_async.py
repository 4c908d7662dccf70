"""AsyncSemanticCache: the same core as :class:`SemanticCache`, driven from an event loop.

Nothing here re-implements an operation. An :class:`AsyncSemanticCache` owns a
:class:`SemanticCache` (its *core*) and drives the core's operation generators
(``_get_steps``, ``_put_steps``, ``get_or_put_steps``) with :func:`adrive`: each step
runs under the core's lock on a worker thread (``asyncio.to_thread``), an
:class:`~semcache.embedders.AsyncEmbedder` is awaited on the loop, a sync embedder runs
on a worker thread, and the effects of ``get_or_put`` are awaited (:meth:`Effect.arun`).
Methods that never embed (``delete``, ``vacuum``, ``stats``...) are the core's methods
run on a worker thread. The event loop itself only ever does bookkeeping.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Literal, TypeVar, cast

import numpy.typing as npt

from ._cache import ConfidenceFn, MetricsHook, SemanticCache, Steps, Validator
from ._checkpoint import CheckpointTarget, load_checkpoint
from ._deadline import acall_with_deadline
from ._index import IndexFactory
from ._progress import ProgressCallback
from ._store import Store
from ._types import Hit
from ._wrap import Effect, NamespaceSpec, get_or_put_steps, memoize
from .embedders import AsyncEmbedder, Embedder

__all__ = ["AsyncSemanticCache", "adrive"]

_T = TypeVar("_T")


async def adrive(cache: SemanticCache, steps: Steps[_T]) -> _T:
    """Run an operation generator of ``cache`` without blocking the event loop.

    Args:
        cache: the core whose lock guards the steps.
        steps: the operation. An AsyncEmbedder is awaited on the loop, a sync one runs
            on a worker thread (see :func:`~semcache._deadline.acall_with_deadline`).
    """
    value: Any = None
    error: BaseException | None = None
    while True:
        done, out = await asyncio.to_thread(cache._advance, steps, value, error)
        if done:
            result: _T = out
            return result
        try:
            if isinstance(out, Effect):
                value = await out.arun()
            else:
                embedder = cache._embedder
                assert embedder is not None
                embed = embedder.embed
                value = await acall_with_deadline(embed, list(out), cache._embed_timeout)
            error = None
        except Exception as exc:
            value, error = None, exc
        except BaseException:  # cancelled: no step is running, so close it here
            steps.close()
            raise


class _AsyncCore(SemanticCache):
    """The core of an AsyncSemanticCache: may hold an AsyncEmbedder, which only
    :func:`adrive` ever calls."""

    _async_embedder_ok: ClassVar[bool] = True


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
    ) -> None:
        self._core = _AsyncCore(
            path,
            cast(Embedder | None, embedder),
            store=store,
            similarity_threshold=similarity_threshold,
            default_ttl=default_ttl,
            max_entries=max_entries,
            namespace_quotas=namespace_quotas,
            confidence_fn=confidence_fn,
            min_confidence=min_confidence,
            validator=validator,
            metrics_hook=metrics_hook,
            normalize=normalize,
            index_backend=index_backend,
            index_options=index_options,
            vector_dtype=vector_dtype,
            multi_process_mode=multi_process_mode,
            stale_check_interval=stale_check_interval,
            max_query_bytes=max_query_bytes,
            max_response_bytes=max_response_bytes,
            max_metadata_bytes=max_metadata_bytes,
            embed_timeout=embed_timeout,
            clock=clock,
            progress=progress,
            guards=guards,
        )

    async def _run(self, steps: Steps[_T]) -> _T:
        return await adrive(self._core, steps)

    # -- configuration (sync: no I/O) ---------------------------------------------------
    @property
    def similarity_threshold(self) -> float:
        """The cosine similarity in [-1, 1] a semantic candidate needs to be served."""
        return self._core.similarity_threshold

    def set_similarity_threshold(self, value: float) -> None:
        """Change the threshold for later gets (no I/O, so not a coroutine).

        Raises:
            InvalidThresholdError: ``value`` is not a number in [-1, 1].
        """
        self._core.set_similarity_threshold(value)

    @property
    def embedder(self) -> Embedder | AsyncEmbedder | None:
        """The embedder, or None."""
        return self._core.embedder

    @property
    def store(self) -> Store:
        """The underlying store."""
        return self._core.store

    @property
    def dim(self) -> int | None:
        """The vector dimension, or None until the first vector is stored."""
        return self._core.dim

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._core.closed

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
        return await self._run(self._core._get_steps(query, embedding, namespace, bypass))

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
        steps = self._core._put_steps([query], [response], embedding, namespace, metadata, ttl)
        await self._run(steps)

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
        steps = self._core._put_steps(
            queries, responses, embeddings, namespace, metadata, ttl, progress=progress
        )
        return await self._run(steps)

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
        steps = get_or_put_steps(self._core, query, compute, embedding, namespace, ttl, metadata)
        return await self._run(steps)

    def memoize(
        self,
        *,
        prompt: str = "prompt",
        namespace: NamespaceSpec = None,
        ttl: float | None = None,
    ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[str]]]:
        """See :meth:`SemanticCache.memoize`; for coroutine functions only.

        Raises:
            TypeError: (when decorating) a sync function, a missing ``prompt``
                parameter, or a namespace callable asking for unknown arguments.
        """

        def decorate(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[str]]:
            wrapped = memoize(
                fn, prompt=prompt, namespace=namespace, ttl=ttl, run=None, arun=self.get_or_put
            )
            return cast(Callable[..., Awaitable[str]], wrapped)

        return decorate

    async def delete(self, query: str, *, namespace: str = "default") -> bool:
        """See :meth:`SemanticCache.delete`.

        Raises:
            The same as :meth:`SemanticCache.delete`.
        """
        return await asyncio.to_thread(self._core.delete, query, namespace=namespace)

    async def vacuum(self, *, namespace: str | None = None, compact: bool = True) -> int:
        """See :meth:`SemanticCache.vacuum`.

        Raises:
            The same as :meth:`SemanticCache.vacuum`.
        """
        return await asyncio.to_thread(self._core.vacuum, namespace=namespace, compact=compact)

    async def compact(self) -> int:
        """See :meth:`SemanticCache.compact`.

        Raises:
            CacheClosedError.
        """
        return await asyncio.to_thread(self._core.compact)

    async def clear_namespace(self, namespace: str) -> int:
        """See :meth:`SemanticCache.clear_namespace`.

        Raises:
            The same as :meth:`SemanticCache.clear_namespace`.
        """
        return await asyncio.to_thread(self._core.clear_namespace, namespace)

    async def clear(self) -> int:
        """See :meth:`SemanticCache.clear`.

        Raises:
            CacheClosedError, StoreError.
        """
        return await asyncio.to_thread(self._core.clear)

    async def stats(self) -> dict[str, Any]:
        """See :meth:`SemanticCache.stats`.

        Raises:
            CacheClosedError, StoreError.
        """
        return await asyncio.to_thread(self._core.stats)

    async def dumps(self, dest: CheckpointTarget) -> dict[str, Any]:
        """See :meth:`SemanticCache.dumps` (runs on a worker thread).

        Raises:
            The same as :meth:`SemanticCache.dumps`.
        """
        return await asyncio.to_thread(self._core.dumps, dest)

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
        await asyncio.to_thread(self._core.close)

    async def __aenter__(self) -> AsyncSemanticCache:
        self._core._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return "<Async" + SemanticCache.__repr__(self._core)[1:]
