"""The one place sync and async differ: how an operation's steps are driven.

An operation (get, put, put_many, get_or_put, the integrations' flows) is written once,
as a generator over a :class:`~semcache._engine.Engine`: each step runs under the
engine's lock; between steps it yields what must happen outside the lock, texts to
embed or an :class:`Effect` (call the user's function, wait for another caller), and
receives the result (or the error, thrown in). :func:`drive` does that by blocking in
the calling thread; :func:`adrive` runs each step on a worker thread
(``asyncio.to_thread``), awaits an AsyncEmbedder (a sync one runs on a worker thread)
and awaits effects. The two are side by side so that a change to one shows beside the
other (the way httpx keeps ``sync_auth_flow`` and ``async_auth_flow`` together).

:func:`run_first` / :func:`arun_first` run an operation whose first step is a plain
function (``start_get``, ``start_put``): the common case (an exact hit, a put with
its vector) then costs no generator at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from types import GeneratorType
from typing import Any, TypeVar

from ._deadline import acall_with_deadline
from ._engine import Engine

__all__ = ["Effect", "Steps", "Unlocked", "adrive", "arun_first", "drive", "run_first"]

_T = TypeVar("_T")

#: An operation: yields texts to embed (a sequence of str) or an Effect; returns _T.
Steps = Generator[Any, Any, _T]


class Effect:
    """Something an operation generator asks its driver to do outside the lock."""

    __slots__ = ()

    def run(self) -> Any:
        """Do it, blocking."""
        raise NotImplementedError

    async def arun(self) -> Any:
        """Do it on an event loop."""
        raise NotImplementedError


class Unlocked(Effect):
    """Work a step hands out of the lock that needs no event loop (a CPU-bound index
    scan that releases the GIL): :func:`advance` runs it right after the step, in the
    same thread (so the async driver spends no extra trip to a worker thread on it),
    and sends its result (or throws its error) into the next step."""

    __slots__ = ()

    async def arun(self) -> Any:
        return await asyncio.to_thread(self.run)


def advance(eng: Engine, steps: Steps[_T], value: Any, error: BaseException | None) -> Any:
    """Run one step under the lock: ``(True, result)`` or ``(False, request)``; an
    :class:`Unlocked` request is run here, outside the lock, and the steps go on."""
    while True:
        with eng.lock:
            try:
                request = steps.throw(error) if error is not None else steps.send(value)
            except StopIteration as stop:
                return True, stop.value
        if not isinstance(request, Unlocked):
            return False, request
        try:
            value, error = request.run(), None
        except Exception as exc:
            value, error = None, exc
        except BaseException:
            steps.close()
            raise


def drive(eng: Engine, steps: Steps[_T]) -> _T:
    """Run an operation in this thread: steps under the lock, embedding (and effects)
    outside it."""
    value: Any = None
    error: BaseException | None = None
    while True:
        done, out = advance(eng, steps, value, error)
        if done:
            result: _T = out
            return result
        try:
            value = out.run() if isinstance(out, Effect) else eng.embed(out)
            error = None
        except Exception as exc:
            value, error = None, exc
        except BaseException:
            steps.close()
            raise


async def adrive(eng: Engine, steps: Steps[_T], first: Any = None) -> _T:
    """Run an operation without blocking the event loop (see the module docstring);
    ``first``: what :func:`advance` returned for its first step, if it ran already."""
    value: Any = None
    error: BaseException | None = None
    while True:
        if first is None:
            done, out = await asyncio.to_thread(advance, eng, steps, value, error)
        else:
            (done, out), first = first, None
        if done:
            result: _T = out
            return result
        try:
            if isinstance(out, Effect):
                value = await out.arun()
            else:
                embedder = eng.embedder
                assert embedder is not None
                timeout = eng.options.embed_timeout
                value = await acall_with_deadline(embedder.embed, list(out), timeout)
            error = None
        except Exception as exc:
            value, error = None, exc
        except BaseException:  # cancelled: no step is running, so close it here
            steps.close()
            raise


def run_first(eng: Engine, start: Callable[..., Any], *args: Any) -> Any:
    """Run ``start(eng, *args)`` under the lock; drive the generator it may return."""
    with eng.lock:
        out = start(eng, *args)
    if type(out) is GeneratorType:
        return drive(eng, out)
    return out


def _start(eng: Engine, start: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, Any]:
    """``start`` under the lock and, if it returns a generator, that one's first step
    (so that the worker thread's trip does both)."""
    with eng.lock:
        out = start(eng, *args)
    if type(out) is GeneratorType:  # not started yet: nothing of it ran under the lock
        return out, advance(eng, out, None, None)
    return out, None


async def arun_first(eng: Engine, start: Callable[..., Any], *args: Any) -> Any:
    """:func:`run_first` for the event loop (the first step on a worker thread)."""
    out, first = await asyncio.to_thread(_start, eng, start, args)
    if first is not None:
        return await adrive(eng, out, first)
    return out
