"""The one lookup-or-fetch operation every door runs: ``get_or_put`` generalised to
answers that are not always stored and to callers that need the :class:`Hit`.

Like :func:`semcache._wrap.get_or_put_steps` it is an operation generator driven by the
cache's own drivers (``SemanticCache._drive`` or :func:`semcache._async.adrive`), with
the same single-flight: callers that miss on the same key while a fetch runs wait for
it and share its result, stored or not (an upstream error reaches every waiter once,
instead of once per waiter).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .._async import AsyncSemanticCache, adrive
from .._cache import SemanticCache, Steps
from .._errors import ConfigurationError, SemanticCacheError
from .._types import Hit
from .._wrap import ABANDONED, Compute, Wait
from ..embedders import is_async_embedder

__all__ = [
    "Fetched",
    "Served",
    "aget",
    "aput",
    "aserve",
    "core_of",
    "flight_key",
    "put",
    "serve",
    "serve_steps",
    "sync_core",
]

logger = logging.getLogger("semcache")

_V = TypeVar("_V")

AnyCache = SemanticCache | AsyncSemanticCache


@dataclass(frozen=True, slots=True)
class Fetched(Generic[_V]):
    """What a fetch brought back: ``value`` for the caller, ``store`` the text to keep
    (None: do not store it)."""

    value: _V
    store: str | None


@dataclass(frozen=True, slots=True)
class Served(Generic[_V]):
    """The outcome: a ``hit``, or the ``fetched`` answer (``shared`` when another
    caller fetched it)."""

    hit: Hit | None
    fetched: Fetched[_V] | None
    shared: bool = False


def core_of(cache: AnyCache) -> SemanticCache:
    """The :class:`SemanticCache` that does the work.

    Raises:
        TypeError: ``cache`` is neither a SemanticCache nor an AsyncSemanticCache.
    """
    if isinstance(cache, AsyncSemanticCache):
        return cache._core
    if isinstance(cache, SemanticCache):
        return cache
    raise TypeError(f"expected a SemanticCache or AsyncSemanticCache, got {type(cache).__name__}")


#: Appended to an entry's key to name the flights of the doors (see :func:`flight_key`).
_FLIGHT_SUFFIX = b"\x00door"


def flight_key(cache: SemanticCache, namespace: str, query: str) -> bytes:
    """The single-flight key of a door's lookup (for tests and monitoring)."""
    return cache._key(namespace, query) + _FLIGHT_SUFFIX


def sync_core(cache: AnyCache, what: str) -> SemanticCache:
    """:func:`core_of`, for a door that works without an event loop.

    Raises:
        TypeError: ``cache`` is not a semcache cache.
        ConfigurationError: its embedder is an AsyncEmbedder, which only an event loop
            can drive (use the door's async form).
    """
    core = core_of(cache)
    if is_async_embedder(core._embedder):
        raise ConfigurationError(
            f"{what} cannot use a cache whose embedder is async; use its async form"
        )
    return core


def _store_steps(
    cache: SemanticCache,
    query: str,
    text: str,
    namespace: str,
    metadata: Mapping[str, Any] | None,
    ttl: float | None,
) -> Steps[None]:
    try:
        yield from cache._put_steps([query], [text], None, namespace, metadata, ttl)
    except SemanticCacheError:
        # The answer was paid for: hand it back even if it cannot be kept.
        logger.exception("semcache: could not store the response; returning it")


def serve_steps(
    cache: SemanticCache,
    query: str,
    namespace: str,
    fetch: Callable[[], Any],
    metadata: Mapping[str, Any] | None,
    ttl: float | None,
) -> Steps[Served[Any]]:
    """Look ``query`` up; on a miss lead (or wait for) one ``fetch()`` returning a
    :class:`Fetched`, whose ``store`` text is kept."""
    while True:
        hit = yield from cache._get_steps(query, None, namespace, False)
        if hit is not None:
            return Served(hit, None)
        key = cache._key(namespace, query)
        # Its own flights: a get_or_put on the same key expects a str, not a Fetched.
        fkey = key + _FLIGHT_SUFFIX
        flight, leader = cache._flights.join(fkey)
        if not leader:
            result = yield Wait(flight)
            if result is ABANDONED:
                continue
            return Served(None, result, shared=True)
        try:
            # A leader that finished just before this one joined has stored the answer.
            entry = cache._store.get_by_key(key)
            if entry is not None and (
                entry.expires_at is None or entry.expires_at > cache._clock()
            ):
                hit = cache._make_hit(entry, 1.0, "exact", 1.0)
                if cache._accept(query, hit):
                    cache._flights.land(fkey, flight)
                    flight.abandon()  # waiters look again and find it
                    return Served(hit, None)
            fetched = yield Compute(fetch)
            if not isinstance(fetched, Fetched):
                raise TypeError("fetch must return a Fetched")
            if fetched.store is not None:
                yield from _store_steps(cache, query, fetched.store, namespace, metadata, ttl)
        except Exception as exc:
            cache._flights.land(fkey, flight)
            flight.fail(exc)
            raise
        except BaseException:
            cache._flights.land(fkey, flight)
            flight.abandon()
            raise
        cache._flights.land(fkey, flight)
        flight.finish(fetched)
        return Served(None, fetched)


def serve(
    cache: SemanticCache,
    query: str,
    namespace: str,
    fetch: Callable[[], Fetched[_V]],
    metadata: Mapping[str, Any] | None = None,
    ttl: float | None = None,
) -> Served[_V]:
    """:func:`serve_steps`, blocking."""
    return cache._drive(serve_steps(cache, query, namespace, fetch, metadata, ttl))


async def aserve(
    cache: AnyCache,
    query: str,
    namespace: str,
    fetch: Callable[[], Awaitable[Fetched[_V]]],
    metadata: Mapping[str, Any] | None = None,
    ttl: float | None = None,
) -> Served[_V]:
    """:func:`serve_steps` on an event loop."""
    core = core_of(cache)
    return await adrive(core, serve_steps(core, query, namespace, fetch, metadata, ttl))


async def aget(cache: AnyCache, query: str, namespace: str) -> Hit | None:
    """``cache.get`` on an event loop, for either kind of cache."""
    core = core_of(cache)
    return await adrive(core, core._get_steps(query, None, namespace, False))


async def aput(
    cache: AnyCache,
    query: str,
    text: str,
    namespace: str,
    metadata: Mapping[str, Any] | None,
    ttl: float | None,
) -> None:
    """Store an answer on an event loop; a failure is logged, never raised."""
    core = core_of(cache)
    await adrive(core, _store_steps(core, query, text, namespace, metadata, ttl))


def put(
    cache: SemanticCache,
    query: str,
    text: str,
    namespace: str,
    metadata: Mapping[str, Any] | None,
    ttl: float | None,
) -> None:
    """Store an answer, blocking; a failure is logged, never raised."""
    cache._drive(_store_steps(cache, query, text, namespace, metadata, ttl))
