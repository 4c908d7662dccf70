"""The one lookup-or-fetch operation every door runs: ``get_or_put`` generalised to
answers that are not always stored and to callers that need the :class:`Hit`.

Like :func:`semcache._get_or_put.get_or_put_steps` it is an operation generator over the
cache's engine, driven by :func:`semcache._drive.drive` or :func:`~semcache._drive.adrive`, with
the same single-flight: callers that miss on the same key while a fetch runs wait for
it and share its result, stored or not (an upstream error reaches every waiter once,
instead of once per waiter).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .._async import AsyncSemanticCache, async_engine_of
from .._cache import SemanticCache, engine_of, sync_view
from .._drive import Steps, adrive, drive
from .._engine import Engine
from .._errors import ConfigurationError, SemanticCacheError
from .._flight import ABANDONED, Flights
from .._get import accept, get_steps, make_hit
from .._get_or_put import Compute, Wait
from .._put import put_steps
from .._types import Hit
from ..embedders import is_async_embedder

__all__ = [
    "Fetched",
    "Served",
    "aget",
    "aput",
    "aserve",
    "core_of",
    "flight_key",
    "flights_of",
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
        return sync_view(async_engine_of(cache))
    if isinstance(cache, SemanticCache):
        return cache
    raise TypeError(f"expected a SemanticCache or AsyncSemanticCache, got {type(cache).__name__}")


#: Appended to an entry's key to name the flights of the doors (see :func:`flight_key`).
_FLIGHT_SUFFIX = b"\x00door"


def flight_key(cache: AnyCache, namespace: str, query: str) -> bytes:
    """The single-flight key of a door's lookup (for tests and monitoring)."""
    return engine_of(core_of(cache)).key(namespace, query) + _FLIGHT_SUFFIX


def flights_of(cache: AnyCache) -> Flights:
    """The computations in progress of ``cache`` (for tests and monitoring)."""
    return engine_of(core_of(cache)).flights


def sync_core(cache: AnyCache, what: str) -> SemanticCache:
    """:func:`core_of`, for a door that works without an event loop.

    Raises:
        TypeError: ``cache`` is not a semcache cache.
        ConfigurationError: its embedder is an AsyncEmbedder, which only an event loop
            can drive (use the door's async form).
    """
    core = core_of(cache)
    if is_async_embedder(core.embedder):
        raise ConfigurationError(
            f"{what} cannot use a cache whose embedder is async; use its async form"
        )
    return core


def _store_steps(
    eng: Engine,
    query: str,
    text: str,
    namespace: str,
    metadata: Mapping[str, Any] | None,
    ttl: float | None,
) -> Steps[None]:
    try:
        yield from put_steps(eng, [query], [text], None, namespace, metadata, ttl)
    except SemanticCacheError:
        # The answer was paid for: hand it back even if it cannot be kept.
        logger.exception("semcache: could not store the response; returning it")


def serve_steps(
    eng: Engine,
    query: str,
    namespace: str,
    fetch: Callable[[], Any],
    metadata: Mapping[str, Any] | None,
    ttl: float | None,
) -> Steps[Served[Any]]:
    """Look ``query`` up; on a miss lead (or wait for) one ``fetch()`` returning a
    :class:`Fetched`, whose ``store`` text is kept."""
    while True:
        hit = yield from get_steps(eng, query, None, namespace, False)
        if hit is not None:
            return Served(hit, None)
        key = eng.key(namespace, query)
        # Its own flights: a get_or_put on the same key expects a str, not a Fetched.
        fkey = key + _FLIGHT_SUFFIX
        flights = eng.flights
        flight, leader = flights.join(fkey)
        if not leader:
            result = yield Wait(flight)
            if result is ABANDONED:
                continue
            return Served(None, result, shared=True)
        try:
            # A leader that finished just before this one joined has stored the answer.
            entry = eng.store.get_by_key(key)
            if entry is not None and (entry.expires_at is None or entry.expires_at > eng.clock()):
                hit = make_hit(entry, 1.0, "exact", 1.0)
                if accept(eng, query, hit):
                    flights.land(fkey, flight)
                    flight.abandon()  # waiters look again and find it
                    return Served(hit, None)
            fetched = yield Compute(fetch)
            if not isinstance(fetched, Fetched):
                raise TypeError("fetch must return a Fetched")
            if fetched.store is not None:
                yield from _store_steps(eng, query, fetched.store, namespace, metadata, ttl)
        except Exception as exc:
            flights.land(fkey, flight)
            flight.fail(exc)
            raise
        except BaseException:
            flights.land(fkey, flight)
            flight.abandon()
            raise
        flights.land(fkey, flight)
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
    eng = engine_of(cache)
    return drive(eng, serve_steps(eng, query, namespace, fetch, metadata, ttl))


async def aserve(
    cache: AnyCache,
    query: str,
    namespace: str,
    fetch: Callable[[], Awaitable[Fetched[_V]]],
    metadata: Mapping[str, Any] | None = None,
    ttl: float | None = None,
) -> Served[_V]:
    """:func:`serve_steps` on an event loop."""
    eng = engine_of(core_of(cache))
    return await adrive(eng, serve_steps(eng, query, namespace, fetch, metadata, ttl))


async def aget(cache: AnyCache, query: str, namespace: str) -> Hit | None:
    """``cache.get`` on an event loop, for either kind of cache."""
    eng = engine_of(core_of(cache))
    return await adrive(eng, get_steps(eng, query, None, namespace, False))


async def aput(
    cache: AnyCache,
    query: str,
    text: str,
    namespace: str,
    metadata: Mapping[str, Any] | None,
    ttl: float | None,
) -> None:
    """Store an answer on an event loop; a failure is logged, never raised."""
    eng = engine_of(core_of(cache))
    await adrive(eng, _store_steps(eng, query, text, namespace, metadata, ttl))


def put(
    cache: SemanticCache,
    query: str,
    text: str,
    namespace: str,
    metadata: Mapping[str, Any] | None,
    ttl: float | None,
) -> None:
    """Store an answer, blocking; a failure is logged, never raised."""
    eng = engine_of(cache)
    drive(eng, _store_steps(eng, query, text, namespace, metadata, ttl))
