"""Calling a blocking function with a deadline.

A thread cannot be killed, so a call past its deadline is abandoned, not stopped: it
goes on in a daemon thread (which never holds up interpreter exit, unlike a
``ThreadPoolExecutor`` worker) and its result is dropped. The caller gets an
:class:`~semcache.EmbedderError` at the deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import numbers
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ._checks import show
from ._errors import ConfigurationError, EmbedderError

__all__ = ["acall_with_deadline", "call_with_deadline", "check_timeout", "start_in_thread"]

_T = TypeVar("_T")


def check_timeout(value: object, what: str = "embed_timeout") -> float | None:
    """``value`` as seconds > 0 (or None).

    Raises:
        ConfigurationError: not None and not a finite number > 0.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigurationError(f"{what} must be None or seconds > 0, got {show(value)}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond a float's range
        v = float("inf")
    if not 0.0 < v < float("inf"):
        raise ConfigurationError(f"{what} must be finite and > 0, got {show(value)}")
    return v


def start_in_thread(fn: Callable[..., _T], *args: Any) -> concurrent.futures.Future[_T]:
    """Run ``fn(*args)`` in a new daemon thread; its future."""
    future: concurrent.futures.Future[_T] = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to the waiter, not lost
            future.set_exception(exc)

    threading.Thread(target=run, name="semcache-deadline", daemon=True).start()
    return future


def _timed_out(timeout: float) -> EmbedderError:
    return EmbedderError(f"the embedder did not answer within {timeout:g} s (embed_timeout)")


def call_with_deadline(fn: Callable[..., _T], arg: Any, timeout: float | None) -> _T:
    """``fn(arg)``, or :class:`EmbedderError` once ``timeout`` seconds have passed.

    Raises:
        EmbedderError: the deadline passed.
        Exception: whatever ``fn`` raises.
    """
    if timeout is None:
        return fn(arg)
    future = start_in_thread(fn, arg)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        raise _timed_out(timeout) from None


async def acall_with_deadline(fn: Callable[..., Any], arg: Any, timeout: float | None) -> Any:
    """Await ``fn(arg)`` if it is a coroutine function, else run it off the event loop;
    either way give up with :class:`EmbedderError` after ``timeout`` seconds.

    Raises:
        EmbedderError: the deadline passed.
        Exception: whatever ``fn`` raises.
    """
    if inspect.iscoroutinefunction(fn):
        call = fn(arg)
    elif timeout is None:
        return await asyncio.to_thread(fn, arg)
    else:
        call = asyncio.wrap_future(start_in_thread(fn, arg))
    if timeout is None:
        return await call
    try:
        return await asyncio.wait_for(call, timeout)
    except asyncio.TimeoutError:
        raise _timed_out(timeout) from None
