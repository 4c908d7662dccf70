"""Recency kept in memory and written in batches: a hit must not cost a disk write."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final

__all__ = ["TOUCH_FLUSH", "Recency"]

#: Recency updates kept in memory before they are written in one batch.
TOUCH_FLUSH: Final = 10_000


class Recency:
    """When entries were last served (id -> time), not yet written to the store."""

    __slots__ = ("limit", "pending")

    def __init__(self, limit: int = TOUCH_FLUSH) -> None:
        self.limit = limit
        self.pending: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self.pending)

    def touch(self, entry_id: int, now: float) -> bool:
        """Record a hit on ``entry_id``; True when the buffer is full (time to flush)."""
        pending = self.pending
        pending[entry_id] = now
        return len(pending) >= self.limit

    def take(self) -> dict[int, float]:
        """Everything pending (the buffer starts empty); give it back with
        :meth:`restore` if writing it fails."""
        taken = self.pending
        if taken:
            self.pending = {}
        return taken

    def restore(self, taken: Mapping[int, float]) -> None:
        """Put back what :meth:`take` returned (newer touches win)."""
        if taken is self.pending:
            return
        merged = dict(taken)
        merged.update(self.pending)
        self.pending = merged

    def flush(self, write: Callable[[dict[int, float]], object]) -> None:
        """Write what is pending with ``write``; kept pending if it raises."""
        if self.pending:
            taken = self.take()
            try:
                write(taken)
            except BaseException:
                self.restore(taken)
                raise

    def forget(self, ids: Iterable[int]) -> None:
        """Drop the touches of removed entries (their ids may be reissued)."""
        pending = self.pending
        for entry_id in ids:
            pending.pop(entry_id, None)

    def clear(self) -> None:
        self.pending = {}
