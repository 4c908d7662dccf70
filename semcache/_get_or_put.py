"""``get_or_put``: a get, and on a miss the caller's ``compute()`` under single-flight,
then a put, as one operation (see :mod:`semcache._drive`). With an error budget the
get may decline a candidate it could serve (a verification) or one it judges too
risky (a miss): ``compute()`` then runs as on any miss, its fresh answer is served and
put, and the budget learns whether the candidates' stored answers were right
(:meth:`~semcache._budgets.Budgets.learn`).

Besides texts to embed it yields two effects, run outside the lock: :class:`Compute`
(call the user's function) and :class:`Wait` (wait for another caller's computation,
a :class:`~semcache._flight.Flight`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy.typing as npt

from ._accept import accept
from ._answer_steps import fresh_steps
from ._budgets import Judgement
from ._checks import check_ttl, show
from ._drive import Effect, Steps
from ._engine import Engine
from ._errors import (
    EmbedderError,
    InvalidInputError,
    InvalidTextError,
    ResponseTooLargeError,
    StoreError,
)
from ._flight import ABANDONED, Flight
from ._get import get_steps, make_hit
from ._put import put_steps

__all__ = ["Compute", "Wait", "get_or_put_steps", "stored_answer"]

logger = logging.getLogger("semcache")


class Compute(Effect):
    """Call the user's ``compute()``: the LLM call of ``get_or_put``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn

    def run(self) -> Any:
        value = self.fn()
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()  # never awaited; close it to avoid a RuntimeWarning
            raise TypeError(
                "compute returned an awaitable; use AsyncSemanticCache (or await it yourself)"
            )
        return value

    async def arun(self) -> Any:
        value = self.fn()
        if inspect.isawaitable(value):
            value = await value
        return value


class Wait(Effect):
    """Wait for the leader of a flight; receives its response or raises its error."""

    __slots__ = ("flight",)

    def __init__(self, flight: Flight) -> None:
        self.flight = flight

    def run(self) -> Any:
        return self.flight.wait()

    async def arun(self) -> Any:
        return await self.flight.wait_async()


def stored_answer(eng: Engine, key: bytes, query: str) -> str | None:
    """The live, acceptable response stored under ``key`` (read from the store, no
    stats): what a leader that finished just before this caller joined stored."""
    entry = eng.store.get_by_key(key)
    if (
        entry is not None
        and (entry.expires_at is None or entry.expires_at > eng.clock())
        and accept(eng, query, make_hit(entry, 1.0, "exact", 1.0))
    ):
        return entry.response
    return None


def get_or_put_steps(
    eng: Engine,
    query: str,
    compute: Callable[[], Any],
    embedding: npt.ArrayLike | None,
    namespace: str,
    ttl: float | None,
    metadata: Mapping[str, Any] | None,
) -> Steps[str]:
    """The one body of ``get_or_put`` (sync and async)."""
    # What the put would refuse, refused before the get and before compute() is paid for.
    if not callable(compute):
        raise InvalidInputError(f"compute must be a callable, got {show(compute)}")
    check_ttl(ttl)
    if metadata is not None:
        eng.metadata_json(metadata, 1)
    while True:
        judged: list[Judgement] | None = None if eng.budgets is None else []
        hit = yield from get_steps(eng, query, embedding, namespace, False, judged)
        if hit is not None:
            return hit.response
        key = eng.key(namespace, query)  # namespace was checked by the get
        flights = eng.flights
        flight, leader = flights.join(key)
        if not leader:
            result = yield Wait(flight)
            if result is ABANDONED:
                continue
            response: str = result
            return response
        try:
            response = yield from _lead(
                eng, key, query, compute, embedding, namespace, ttl, metadata, judged
            )
        except Exception as exc:
            flights.land(key, flight)
            flight.fail(exc)
            raise
        except BaseException:  # cancelled or interrupted: let a waiter take over
            flights.land(key, flight)
            flight.abandon()
            raise
        flights.land(key, flight)
        flight.finish(response)
        return response


def _lead(
    eng: Engine,
    key: bytes,
    query: str,
    compute: Callable[[], Any],
    embedding: npt.ArrayLike | None,
    namespace: str,
    ttl: float | None,
    metadata: Mapping[str, Any] | None,
    judged: list[Judgement] | None = None,
) -> Steps[str]:
    stored = stored_answer(eng, key, query)
    if stored is not None:
        return stored
    response = yield Compute(compute)
    if not isinstance(response, str):
        raise InvalidTextError(
            f"compute must return the response as a str, got {type(response).__name__}"
        )
    # With answer_similarity: the fresh answer's embedding, made once for what it
    # teaches the budget and for the put (None: off, or the embedder failed).
    vector = yield from fresh_steps(eng, namespace, response)
    if judged and eng.budgets is not None:
        # A verification or a miss with candidates: what the fresh answer says of them
        # (a failing same_answer or store is logged; the answer is still put and served).
        eng.check_open()
        eng.budgets.learn(judged[0], response, vector)
    answers = None if vector is None else vector.reshape(1, -1)
    try:
        yield from put_steps(
            eng, [query], [response], embedding, namespace, metadata, ttl, None, answers
        )
    except (ResponseTooLargeError, StoreError, EmbedderError):
        # The answer was paid for: hand it back even if it cannot be kept.
        logger.exception("semcache: get_or_put could not store the response; returning it")
    return response
