"""Single-flight: callers that miss on the same key while a computation for it runs
wait for that one instead of starting their own.

A :class:`Flight` can be waited for by threads and by tasks of any event loop. Nothing
here knows of the cache: a key is bytes, a result is whatever the leader hands over.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Final

__all__ = ["ABANDONED", "Flight", "Flights"]


class _Abandoned:
    """What a follower receives when the leader was cancelled: try again."""

    __slots__ = ()


ABANDONED: Final = _Abandoned()


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
