"""The one lookup-or-fetch operation every door runs: ``get_or_put`` generalised to
answers that are not always stored and to callers that need the :class:`Hit`.

Like :func:`semcache._get_or_put.get_or_put_steps` it is an operation generator over the
cache's engine, driven by :func:`semcache._drive.drive` or :func:`~semcache._drive.adrive`, with
the same single-flight: callers that miss on the same key while a fetch runs wait for
it and share its result, stored or not (an upstream error reaches every waiter once,
instead of once per waiter).

With an error budget it learns as ``get_or_put`` does: a verification or a miss with
candidates fetches, and the fresh answer teaches the budget
(:meth:`~semcache._budgets.Budgets.learn`) before it is stored. Doors whose lookup and
fetch are apart (a streamed answer, LangChain's ``lookup`` then ``update``) use
:func:`look` and :func:`learn`. The doors store whole completions, so each registers
how to read the answer from one (:func:`read_answers`): ``same_answer`` compares
answers, not ids and timestamps.

A hit a door serves gets an answer id the caller sees (the completion's ``id``); the
door's :class:`HitLog` maps it back to the :class:`Hit` that ``cache.feedback`` needs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Generic, TypeVar

from .._accept import accept
from .._answer_steps import fresh_steps
from .._async import AsyncSemanticCache, async_engine_of
from .._budgets import Judgement, Vector
from .._cache import SemanticCache, engine_of, sync_view
from .._checks import check_flag
from .._drive import Steps, adrive, drive
from .._engine import Engine
from .._errors import ConfigurationError, InvalidInputError, SemanticCacheError
from .._flight import ABANDONED, Flights
from .._get import get_steps, make_hit
from .._get_or_put import Compute, Wait
from .._put import put_steps
from .._types import Hit
from ..embedders import is_async_embedder

__all__ = [
    "Fetched",
    "HitLog",
    "Looked",
    "Served",
    "afeedback",
    "alearn",
    "alook",
    "aput",
    "aserve",
    "core_of",
    "feedback",
    "flight_key",
    "flights_of",
    "learn",
    "look",
    "put",
    "read_answers",
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
    (None: do not store it), ``answer`` the text an error budget learns from when it is
    not stored (a complete answer the door does not keep, such as a tool call; None:
    nothing to learn, e.g. an error or an answer cut short). A stored answer teaches
    as ``store``."""

    value: _V
    store: str | None
    answer: str | None = None

    @property
    def fresh(self) -> str | None:
        """The text the budget learns from (``store``, else ``answer``)."""
        return self.store if self.store is not None else self.answer


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
    answers: Vector | None = None,
) -> Steps[None]:
    rows = None if answers is None else answers.reshape(1, -1)
    try:
        yield from put_steps(eng, [query], [text], None, namespace, metadata, ttl, None, rows)
    except SemanticCacheError:
        # The answer was paid for: hand it back even if it cannot be kept.
        logger.exception("semcache: could not store the response; returning it")


def _learn(
    eng: Engine, judged: Judgement | None, fresh: str | None, vector: Vector | None = None
) -> None:
    """What ``get_or_put`` does after its ``compute()``: the fresh answer teaches the
    budget what the candidates ``judged`` were worth (under the engine's lock; None:
    nothing to compare, a verification is still counted; ``vector``: its embedding,
    with ``answer_similarity``). A failure is logged, never raised: the answer was
    paid for."""
    budgets = eng.budgets
    if judged is None or budgets is None:
        return
    try:
        eng.check_open()
        budgets.learn(judged, fresh, vector)
    except SemanticCacheError:
        logger.exception("semcache: the error budget could not learn from this answer")


def serve_steps(
    eng: Engine,
    query: str,
    namespace: str,
    fetch: Callable[[], Any],
    metadata: Mapping[str, Any] | None,
    ttl: float | None,
) -> Steps[Served[Any]]:
    """Look ``query`` up; on a miss lead (or wait for) one ``fetch()`` returning a
    :class:`Fetched`, whose ``store`` text is kept. With an error budget, the leader's
    fresh answer (:attr:`Fetched.fresh`) teaches it, as in ``get_or_put``."""
    while True:
        judged: list[Judgement] | None = None if eng.budgets is None else []
        hit = yield from get_steps(eng, query, None, namespace, False, judged)
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
            # with answer_similarity, the fresh answer's embedding (for both, if the
            # text stored is the one learnt from)
            vector = yield from fresh_steps(eng, namespace, fetched.fresh)
            _learn(eng, judged[0] if judged else None, fetched.fresh, vector)
            if fetched.store is not None:
                kept = vector if fetched.store == fetched.fresh else None
                yield from _store_steps(eng, query, fetched.store, namespace, metadata, ttl, kept)
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


@dataclass(frozen=True, slots=True)
class Looked:
    """A door's lookup: the ``hit``, or on a miss what an error budget's candidates
    said (``judged``; None without a budget or candidates), for :func:`learn`."""

    hit: Hit | None
    judged: Judgement | None


def _look_steps(eng: Engine, query: str, namespace: str) -> Steps[Looked]:
    judged: list[Judgement] | None = None if eng.budgets is None else []
    hit = yield from get_steps(eng, query, None, namespace, False, judged)
    return Looked(hit, judged[0] if judged else None)


def look(cache: SemanticCache, query: str, namespace: str) -> Looked:
    """``cache.get``, keeping what the budget needs to learn from the answer fetched on
    a miss (:func:`learn`)."""
    eng = engine_of(cache)
    return drive(eng, _look_steps(eng, query, namespace))


async def alook(cache: AnyCache, query: str, namespace: str) -> Looked:
    """:func:`look` on an event loop, for either kind of cache."""
    eng = engine_of(core_of(cache))
    return await adrive(eng, _look_steps(eng, query, namespace))


def _learn_steps(eng: Engine, judged: Judgement | None, fresh: str | None) -> Steps[None]:
    """Under the lock; with ``answer_similarity`` after embedding the fresh answer."""
    vector = None
    if judged is not None:
        vector = yield from fresh_steps(eng, judged.namespace, fresh)
    _learn(eng, judged, fresh, vector)


def learn(cache: SemanticCache, judged: Judgement | None, fresh: str | None) -> None:
    """The answer fetched after a :func:`look` that missed teaches the budget (in the
    stored text's format; None: nothing to learn). A failure is logged, never raised."""
    eng = engine_of(cache)
    drive(eng, _learn_steps(eng, judged, fresh))


async def alearn(cache: AnyCache, judged: Judgement | None, fresh: str | None) -> None:
    """:func:`learn` on an event loop."""
    eng = engine_of(core_of(cache))
    await adrive(eng, _learn_steps(eng, judged, fresh))


def read_answers(cache: AnyCache, prefix: str, view: Callable[[str], str]) -> None:
    """Have the cache's error budget (if any) compare the answers ``view`` reads from the
    texts stored in namespaces starting with ``prefix`` (a door's), instead of the
    texts. ``view`` must not raise: a text it cannot read is returned as it is."""
    budgets = engine_of(core_of(cache)).budgets
    if budgets is not None and prefix not in budgets.views:
        # a new dict, not a change to the one a get may be reading in another thread
        budgets.views = {**budgets.views, prefix: view}


#: How many served hits a door remembers for feedback.
HIT_LOG_SIZE: Final = 4096


class HitLog:
    """The hits a door served lately (the latest :data:`HIT_LOG_SIZE`), by the id of the
    answer the caller received, for :func:`feedback`. Thread-safe."""

    def __init__(self, size: int = HIT_LOG_SIZE) -> None:
        self._size = size
        self._hits: OrderedDict[str, Hit] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, answer_id: str, hit: Hit) -> None:
        """Note that ``hit`` was served as the answer ``answer_id`` (kept without its
        response and metadata, which ``feedback`` does not read)."""
        slim = replace(hit, response="", metadata=None)
        with self._lock:
            self._hits[answer_id] = slim
            while len(self._hits) > self._size:
                self._hits.popitem(last=False)

    def take(self, answer_id: str) -> Hit | None:
        """The hit served as ``answer_id``, forgotten (one report per answer)."""
        with self._lock:
            return self._hits.pop(answer_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._hits)


def _reported(log: HitLog, answer_id: object, correct: object) -> Hit | None:
    if not isinstance(answer_id, str):
        raise InvalidInputError(f"answer_id must be a str, got {type(answer_id).__name__}")
    check_flag(correct, "correct", InvalidInputError)
    return log.take(answer_id)


def feedback(cache: AnyCache, log: HitLog, answer_id: str, correct: bool) -> bool:
    """``cache.feedback`` on the hit a door served as ``answer_id``; False when ``log``
    does not know the id (not a hit, or one too old), and nothing is written.

    Raises:
        InvalidInputError: ``answer_id`` is not a str or ``correct`` not a bool.
        CacheClosedError, StoreError: as ``SemanticCache.feedback``.
    """
    hit = _reported(log, answer_id, correct)
    if hit is None:
        return False
    core_of(cache).feedback(hit, correct)
    return True


async def afeedback(cache: AnyCache, log: HitLog, answer_id: str, correct: bool) -> bool:
    """:func:`feedback` without blocking the event loop.

    Raises:
        The same as :func:`feedback`.
    """
    hit = _reported(log, answer_id, correct)
    if hit is None:
        return False
    await asyncio.to_thread(core_of(cache).feedback, hit, correct)
    return True


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
