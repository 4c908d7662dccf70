"""Wrapping LLM calls: ``get_or_put`` with single-flight, and the ``memoize`` decorator.

``get_or_put`` is written once, as an operation generator like ``get`` and ``put`` (see
:mod:`semcache._cache`): besides texts to embed, it yields *effects* that must happen
outside the cache's lock: :class:`Compute` (call the user's function) and :class:`Wait`
(wait for another caller's computation). The sync cache runs an effect with
:meth:`Effect.run`, the async cache awaits :meth:`Effect.arun`; nothing else differs.

Single-flight: callers that miss on the same exact key (namespace + normalized query)
while a computation for it is running wait for that one instead of calling the LLM
again. A :class:`Flight` can be waited for by threads and by tasks of any event loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Generator, Mapping
from hashlib import blake2b
from typing import TYPE_CHECKING, Any, Final, TypeVar

import numpy.typing as npt

from ._checks import check_ttl, show
from ._errors import InvalidInputError, InvalidTextError, ResponseTooLargeError, StoreError

if TYPE_CHECKING:
    from ._cache import SemanticCache

__all__ = ["Compute", "Effect", "Flight", "Flights", "Wait", "get_or_put_steps", "memoize"]

logger = logging.getLogger("semcache")

_T = TypeVar("_T")


class _Abandoned:
    """What a follower receives when the leader was cancelled: try again."""

    __slots__ = ()


ABANDONED: Final = _Abandoned()


class Effect:
    """Something an operation generator asks its driver to do outside the lock."""

    __slots__ = ()

    def run(self) -> Any:
        """Do it, blocking."""
        raise NotImplementedError

    async def arun(self) -> Any:
        """Do it on an event loop."""
        raise NotImplementedError


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


class Flight:
    """One computation in progress, which any number of threads and tasks can wait for."""

    __slots__ = ("_done", "_error", "_futures", "_lock", "_result", "followers")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = []
        #: How many callers joined to wait (for tests and monitoring).
        self.followers = 0

    def finish(self, result: Any) -> None:
        """Hand ``result`` to every waiter."""
        self._settle(result, None)

    def fail(self, error: BaseException) -> None:
        """Raise ``error`` in every waiter."""
        self._settle(None, error)

    def abandon(self) -> None:
        """The leader gave up (cancelled): waiters try again."""
        self._settle(ABANDONED, None)

    def _settle(self, result: Any, error: BaseException | None) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._result, self._error = result, error
            self._done.set()
            futures, self._futures = self._futures, []
        for loop, future in futures:
            try:
                loop.call_soon_threadsafe(self._resolve, future)
            except RuntimeError:  # that loop is closed; nobody is waiting there
                pass

    def _resolve(self, future: asyncio.Future[Any]) -> None:
        if not future.done():
            future.set_result(None)

    def _outcome(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._result

    def wait(self) -> Any:
        """Block until the leader is done; its result (or ``ABANDONED``).

        Raises:
            BaseException: the leader's error.
        """
        self._done.wait()
        return self._outcome()

    async def wait_async(self) -> Any:
        """Await the leader without blocking the loop; as :meth:`wait`."""
        with self._lock:
            if not self._done.is_set():
                loop = asyncio.get_running_loop()
                future: asyncio.Future[Any] = loop.create_future()
                self._futures.append((loop, future))
            else:
                future = None  # type: ignore[assignment]
        if future is not None:
            await future
        return self._outcome()


class Flights:
    """The flights in progress, by key."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._table: dict[bytes, Flight] = {}

    def join(self, key: bytes) -> tuple[Flight, bool]:
        """The flight for ``key`` and whether the caller leads it (must compute)."""
        with self._cond:
            flight = self._table.get(key)
            if flight is None:
                flight = self._table[key] = Flight()
                return flight, True
            flight.followers += 1
            self._cond.notify_all()
            return flight, False

    def land(self, key: bytes, flight: Flight) -> None:
        """Forget ``flight`` (later callers start a new one)."""
        with self._cond:
            if self._table.get(key) is flight:
                del self._table[key]

    def __len__(self) -> int:
        with self._cond:
            return len(self._table)

    def followers(self) -> int:
        """How many callers wait for the flights in progress (for monitoring)."""
        with self._cond:
            return sum(f.followers for f in self._table.values())

    def wait_for_followers(self, key: bytes, count: int, timeout: float) -> bool:
        """Block until the flight for ``key`` has ``count`` followers (tests use this to
        know every caller is waiting); False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (f := self._table.get(key)) is not None and f.followers >= count,
                timeout,
            )


Steps = Generator[Any, Any, _T]


def get_or_put_steps(
    cache: SemanticCache,
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
        cache._metadata_json(metadata, 1)
    while True:
        hit = yield from cache._get_steps(query, embedding, namespace, False)
        if hit is not None:
            return hit.response
        key = cache._key(namespace, query)  # namespace was checked by the get
        flight, leader = cache._flights.join(key)
        if not leader:
            result = yield Wait(flight)
            if result is ABANDONED:
                continue
            response: str = result
            return response
        try:
            response = yield from _lead(
                cache, key, query, compute, embedding, namespace, ttl, metadata
            )
        except Exception as exc:
            cache._flights.land(key, flight)
            flight.fail(exc)
            raise
        except BaseException:  # cancelled or interrupted: let a waiter take over
            cache._flights.land(key, flight)
            flight.abandon()
            raise
        cache._flights.land(key, flight)
        flight.finish(response)
        return response


def _lead(
    cache: SemanticCache,
    key: bytes,
    query: str,
    compute: Callable[[], Any],
    embedding: npt.ArrayLike | None,
    namespace: str,
    ttl: float | None,
    metadata: Mapping[str, Any] | None,
) -> Steps[str]:
    # A leader that finished just before this one joined has stored the answer under
    # the same key: look again (store only, no stats) before calling the LLM.
    entry = cache._store.get_by_key(key)
    if (
        entry is not None
        and (entry.expires_at is None or entry.expires_at > cache._clock())
        and cache._accept(query, cache._make_hit(entry, 1.0, "exact", 1.0))
    ):
        return entry.response
    response = yield Compute(compute)
    if not isinstance(response, str):
        raise InvalidTextError(
            f"compute must return the response as a str, got {type(response).__name__}"
        )
    try:
        yield from cache._put_steps([query], [response], embedding, namespace, metadata, ttl)
    except (ResponseTooLargeError, StoreError):
        # The answer was paid for: hand it back even if it cannot be kept.
        logger.exception("semcache: get_or_put could not store the response; returning it")
    return response


# -- memoize -------------------------------------------------------------------------------
NamespaceSpec = str | Callable[..., str] | None


def _namespace_fn(
    fn: Callable[..., Any], sig: inspect.Signature, prompt: str, namespace: NamespaceSpec
) -> Callable[[dict[str, Any]], str]:
    """How to get a call's namespace from its other arguments."""
    if isinstance(namespace, str):
        fixed = namespace
        return lambda others: fixed
    if namespace is None:
        base = f"{fn.__module__}.{fn.__qualname__}"
        if len(base.encode()) > 200:
            base = blake2b(base.encode(), digest_size=16).hexdigest()

        def derived(others: dict[str, Any]) -> str:
            if not others:
                return base
            try:
                text = json.dumps(others, sort_keys=True, separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError) as exc:
                names = ", ".join(sorted(others))
                raise TypeError(
                    f"memoize cannot derive a namespace from the arguments ({names}) of "
                    f"{fn.__qualname__}: {exc}; pass namespace= (a str or a callable of "
                    "those arguments)"
                ) from None
            return f"{base}:{blake2b(text.encode(), digest_size=12).hexdigest()}"

        return derived
    if not callable(namespace):
        raise TypeError(f"namespace must be a str, a callable or None, got {namespace!r}")
    wanted = inspect.signature(namespace).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in wanted.values())
    names = [n for n in sig.parameters if n != prompt]
    if not takes_all:
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise TypeError(
                f"the namespace callable takes {unknown}, which {fn.__qualname__} does not"
            )
        names = [n for n in names if n in wanted]
    chosen = frozenset(names)
    ns_fn = namespace

    def call(others: dict[str, Any]) -> str:
        return ns_fn(**{k: v for k, v in others.items() if k in chosen})

    return call


def memoize(
    fn: Callable[..., Any],
    *,
    prompt: str,
    namespace: NamespaceSpec,
    ttl: float | None,
    run: Callable[..., str] | None,
    arun: Callable[..., Awaitable[str]],
) -> Callable[..., Any]:
    """Wrap ``fn`` so that calls go through ``get_or_put`` (``run`` for a sync ``fn``,
    ``arun`` for a coroutine function); see ``SemanticCache.memoize``.

    Raises:
        TypeError: ``fn`` has no parameter ``prompt``, or is sync while only ``arun``
            is given, or the namespace callable asks for arguments ``fn`` lacks.
    """
    check_ttl(ttl)
    sig = inspect.signature(fn)
    param = sig.parameters.get(prompt)
    if param is None or param.kind in (
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD,
    ):
        raise TypeError(f"{fn.__qualname__} has no parameter named {prompt!r} (prompt=)")
    scope = _namespace_fn(fn, sig, prompt, namespace)

    def split(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, str]:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        others = dict(bound.arguments)
        text = others.pop(prompt)
        if not isinstance(text, str):
            raise InvalidTextError(f"argument {prompt!r} must be a str, got {type(text).__name__}")
        return text, scope(others)

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> str:
            text, ns = split(args, kwargs)
            return await arun(text, lambda: fn(*args, **kwargs), namespace=ns, ttl=ttl)

        return async_wrapper
    if run is None:
        raise TypeError(
            f"AsyncSemanticCache.memoize needs an async function; {fn.__qualname__} is not "
            "(use SemanticCache.memoize for sync functions)"
        )
    sync_run = run

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        text, ns = split(args, kwargs)
        return sync_run(text, lambda: fn(*args, **kwargs), namespace=ns, ttl=ttl)

    return wrapper
