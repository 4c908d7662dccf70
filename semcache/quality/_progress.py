"""A minimal progress bar for long evaluation runs (stderr; one line per update when
the stream is not a terminal, at most every few percent)."""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """``progress.advance(n)`` as work is done; ``progress.close()`` at the end.

    Args:
        label: what is being done.
        total: units of work in all.
        stream: where to draw (None: draw nothing).
    """

    def __init__(self, label: str, total: int, stream: TextIO | None) -> None:
        self._label = label
        self._total = max(total, 1)
        self._stream = stream
        self._tty = stream is not None and stream.isatty()
        self._done = 0
        self._shown = -1
        self._t0 = time.perf_counter()

    def advance(self, n: int = 1) -> None:
        """Record ``n`` more units done."""
        self._done += n
        step = 1 if self._tty else 10
        pct = min(100, self._done * 100 // self._total)
        if pct >= self._shown + step or self._done >= self._total:
            self._draw(pct)

    def _draw(self, pct: int) -> None:
        if self._stream is None or pct == self._shown:
            return
        self._shown = pct
        width = 24
        filled = width * pct // 100
        elapsed = time.perf_counter() - self._t0
        line = (
            f"{self._label} [{'#' * filled}{'-' * (width - filled)}] {pct:3d}% "
            f"{self._done}/{self._total} ({elapsed:.1f} s)"
        )
        self._stream.write(("\r" + line) if self._tty else (line + "\n"))
        self._stream.flush()

    def close(self) -> None:
        """Finish the bar (a newline on a terminal)."""
        if self._stream is not None and self._tty and self._shown >= 0:
            self._stream.write("\n")
            self._stream.flush()
