"""Feedback on long work: one callback protocol and one bar that draws it.

Anything in semcache that can take a while reports through a :data:`ProgressCallback`,
``progress(stage, done, total)``:

- ``stage`` names the work (``"embed"``, ``"write"``, ``"index"``, ``"load index"``,
  ``"load model"``; the quality tools add ``"replay"`` and ``"time"``); a call with
  another stage starts that stage;
- ``done`` counts the units finished so far (texts, entries, steps), from 0;
- ``total`` is the number of units in all, or None while it is unknown. A stage is
  finished once ``done == total``.

The callback runs in the thread doing the work (with the cache's lock held, for cache
operations): keep it quick and never call the cache from it. :class:`ProgressBar` draws
the calls on a stream; the ``semcache`` command draws every stage with it.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO, TypeAlias

__all__ = ["ProgressBar", "ProgressCallback", "as_progress"]

#: ``progress(stage, done, total)``: see the module docstring.
ProgressCallback: TypeAlias = Callable[[str, int, int | None], None]

_WIDTH = 24


class ProgressBar:
    """A :data:`ProgressCallback` that draws each stage as a bar on a stream.

    On a terminal a stage is one line redrawn in place (``\\r``) at most every
    ``interval`` seconds; on any other stream (a log file, a pipe) a stage gets a line
    when it starts, one each time it passes another tenth of its total (every
    ``10 * interval`` seconds while the total is unknown) and one when it ends. A stage
    ends when ``done`` reaches ``total``, when another stage starts, or at :meth:`close`
    (a ``with`` block closes the bar). A stage that ends within ``delay`` seconds of its
    start is not drawn at all. A call that draws nothing costs a lock, a clock read and a
    few comparisons (1-3 us on the 2-core dev machine): report per batch of work, or per
    unit when a unit takes more than tens of microseconds.

    Safe to call from several threads (calls are serialized).

    Args:
        stream: where to draw (None: ``sys.stderr`` at the time of each draw).
        interval: seconds between redraws on a terminal.
        delay: seconds a stage runs before it is drawn (0: every stage is drawn).
        clock: seconds, monotonic (injected in tests).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interval: float = 0.1,
        delay: float = 0.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._stream = stream
        self._interval = interval
        self._delay = delay
        self._clock = clock
        self._lock = threading.Lock()
        self._tty = _isatty(stream if stream is not None else sys.stderr)
        self._stage: str | None = None  # the stage on screen, None when none is open
        self._t0 = 0.0
        self._drawn_at = -math.inf
        self._tenth = -1  # the last tenth of the total drawn (not a terminal)
        self._drawn: tuple[int, int | None] | None = None  # (done, total) last drawn
        self._last: tuple[int, int | None] = (0, None)  # (done, total) last reported
        self._width = 0  # length of the line on screen (terminal)

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        with self._lock:
            now = self._clock()
            start = stage != self._stage
            if start:
                self._end()
                self._stage, self._t0 = stage, now
                self._drawn_at, self._tenth, self._drawn = -math.inf, -1, None
            self._last = (done, total)
            finished = total is not None and done >= total
            if self._tty:
                due = now - self._drawn_at >= self._interval
            elif total is None:
                due = now - self._drawn_at >= 10 * self._interval
            else:
                due = done * 10 // max(total, 1) > self._tenth
            if (start or finished or due) and (
                self._drawn is not None or now - self._t0 >= self._delay
            ):
                self._draw(now)
            if finished:
                self._end()

    def close(self) -> None:
        """End the stage on screen, if any (its last state is drawn)."""
        with self._lock:
            self._end()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- drawing (under the lock) -------------------------------------------------------
    def _draw(self, now: float) -> None:
        stage = self._stage
        assert stage is not None
        done, total = self._last
        elapsed = now - self._t0
        if total is None:
            line = f"{stage} {done} ({elapsed:.1f} s)"
        else:
            frac = min(1.0, done / total) if total > 0 else 1.0
            filled = int(_WIDTH * frac)
            self._tenth = int(10 * frac)
            line = (
                f"{stage} [{'#' * filled}{'-' * (_WIDTH - filled)}] {frac:4.0%} "
                f"{done}/{total} ({elapsed:.1f} s)"
            )
        stream = self._stream if self._stream is not None else sys.stderr
        if self._tty:
            pad = " " * max(0, self._width - len(line))
            stream.write("\r" + line + pad)
            self._width = len(line)
        else:
            stream.write(line + "\n")
        stream.flush()
        self._drawn_at = now
        self._drawn = self._last

    def _end(self) -> None:
        if self._stage is None:
            return
        now = self._clock()
        if self._drawn is None and now - self._t0 < self._delay:
            self._stage = None  # a quick stage: never drawn
            return
        if self._drawn != self._last:
            self._draw(now)
        if self._tty:
            stream = self._stream if self._stream is not None else sys.stderr
            stream.write("\n")
            stream.flush()
        self._stage, self._width = None, 0


def as_progress(progress: ProgressCallback | TextIO | None) -> ProgressCallback | None:
    """A callback for ``progress``: a stream is drawn on with a :class:`ProgressBar`, a
    callback is used as it is, None stays None (the quality tools take either)."""
    if progress is None or callable(progress):
        return progress
    return ProgressBar(progress)


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False
