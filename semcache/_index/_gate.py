"""A readers-writer gate between searches of a native index made outside the caller's
lock and changes of that index (see :meth:`semcache._index.HnswlibIndex.reader`).

A forked child starts with every gate open: the threads that held one in the parent
(a search under way, which only reads) do not exist in the child, so their holds would
otherwise block the child's first change for ever.
"""

from __future__ import annotations

import os
import threading
import weakref

__all__ = ["Gate"]

#: Every gate alive, to reopen in a forked child.
_GATES: weakref.WeakSet[Gate] = weakref.WeakSet()


def _reopen_all() -> None:
    for gate in list(_GATES):
        gate._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reopen_all)


class Gate:
    """A readers-writer gate between searches of a native index made outside the
    caller's lock (readers, any number at once) and changes of it (writers, made under
    the caller's lock, so one at a time; re-entrant in the writing thread). A writer
    waits for the searches under way; a search waits for a change under way, and new
    searches wait while a writer is waiting (so writers are not starved)."""

    __slots__ = ("__weakref__", "_cond", "_depth", "_readers", "_waiting", "_writer")

    def __init__(self) -> None:
        self._reset()
        _GATES.add(self)

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._waiting = 0
        self._writer: int | None = None
        self._depth = 0

    def begin_read(self) -> None:
        with self._cond:
            while self._writer is not None or self._waiting:
                self._cond.wait()
            self._readers += 1

    def end_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if self._readers == 0 and self._waiting:
                self._cond.notify_all()

    def begin_write(self) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._depth += 1
                return
            self._waiting += 1
            while self._readers or self._writer is not None:
                self._cond.wait()
            self._waiting -= 1
            self._writer, self._depth = me, 1

    def end_write(self) -> None:
        with self._cond:
            self._depth -= 1
            if self._depth == 0:
                self._writer = None
                self._cond.notify_all()
