"""Who may use a cache: the claim on its SQLite file, and what a ``fork()`` changes.

A cache lives through :class:`Lifecycle` states: ``OPEN``; in a forked child, ``FORKED``
(or ``FORKED_TORN`` when the fork caught another thread mid-operation) until its first
use adopts it; ``CLOSED``. See docs/reliability.md for the rules.
"""

from __future__ import annotations

import enum
import os
import threading
from collections.abc import Callable
from typing import Final, Literal

from ._checkpoint import sweep_stale
from ._errors import CacheClosedError, StoreLockedError
from ._locking import StoreLock, acquire_store_lock, track_fork
from ._store import Store, claim_store, local_path

__all__ = ["FORK_WAIT", "Lifecycle", "Ownership", "claim"]

#: Seconds a fork waits for a cache's lock (longer: the child rebuilds its indexes).
FORK_WAIT: Final = 1.0


class Lifecycle(enum.Enum):
    OPEN = "open"
    #: A forked child's copy, not used yet.
    FORKED = "forked"
    #: ... forked while another thread was inside an operation: rebuilt on first use.
    FORKED_TORN = "forked torn"
    CLOSED = "closed"


def claim(store: Store, mode: Literal["single", "shared"]) -> StoreLock | None:
    """Lock the store's file for this cache's mode (stores without one: nothing), and
    sweep what killed dumps/loads left beside it.

    Raises:
        StoreLockedError: another cache holds the file in a conflicting mode.
    """
    lock = claim_store(store, mode)
    path = local_path(store)
    if lock is not None and path is not None:
        sweep_stale(os.path.dirname(os.path.abspath(path)))
    return lock


class Ownership:
    """A cache's lifecycle, its lock and its claim on the store's file, kept right
    across ``fork()`` (registered with :func:`~semcache._locking.track_fork`).

    ``child_reset(lock)`` runs in a forked child (single-threaded) with the child's
    fresh lock, to drop what belonged to the parent's threads.
    """

    def __init__(
        self, claim: StoreLock | None, child_reset: Callable[[threading.RLock], None]
    ) -> None:
        self.state = Lifecycle.OPEN
        self.lock = threading.RLock()
        self.claim = claim
        self.owner_pid = os.getpid()
        self._child_reset = child_reset
        self._held_across_fork = False

    def track(self) -> None:
        """Start following fork()s (once the cache is open)."""
        track_fork(self)

    def check_open(self) -> bool:
        """Raise if closed; True when this is a forked child's first use (the caller
        adopts it with :meth:`adopt`).

        Raises:
            CacheClosedError: the cache was closed.
        """
        if self.state is Lifecycle.CLOSED:
            raise CacheClosedError("the cache is closed")
        return self.state is not Lifecycle.OPEN

    # -- fork handlers (see semcache._locking.track_fork) --------------------------------
    def _fork_prepare(self) -> None:
        # Hold the lock across fork() so the child copies no operation half done.
        self._held_across_fork = self.lock.acquire(timeout=FORK_WAIT)

    def _fork_parent(self) -> None:
        if self._held_across_fork:
            self._held_across_fork = False
            self.lock.release()

    def _fork_child(self) -> None:
        torn = not self._held_across_fork
        self._held_across_fork = False
        self.lock = threading.RLock()
        self._child_reset(self.lock)
        if self.state is not Lifecycle.CLOSED:
            self.state = Lifecycle.FORKED_TORN if torn else Lifecycle.FORKED

    def adopt(self) -> bool:
        """First use in a forked child (under :attr:`lock`). A single-mode cache on a
        SQLite file belongs to the parent: refuse. Otherwise take this process's own
        claim on the file. Returns whether the indexes must be rebuilt (the fork caught
        another thread mid-operation).

        Raises:
            StoreLockedError: a single-mode SQLite cache, or the file cannot be claimed.
        """
        if self.state is Lifecycle.OPEN or self.state is Lifecycle.CLOSED:
            return False
        claim = self.claim
        if claim is not None and claim.mode == "single":
            raise StoreLockedError(
                f"this cache was opened on {claim.db_path} in single mode by process "
                f"{self.owner_pid}; the forked child {os.getpid()} cannot use it. Open "
                "it with multi_process_mode='shared' (every process then keeps its own "
                "index), or open a new cache in the child once the parent closed its own"
            )
        if claim is not None:
            self.claim = acquire_store_lock(claim.db_path, "shared")
        torn = self.state is Lifecycle.FORKED_TORN
        self.state = Lifecycle.OPEN
        self.owner_pid = os.getpid()
        return torn

    def close(self) -> bool | None:
        """Mark closed; None if it was already, else whether this is a forked child
        that never used the cache (it then writes nothing on close)."""
        if self.state is Lifecycle.CLOSED:
            return None
        unadopted = self.state is not Lifecycle.OPEN
        self.state = Lifecycle.CLOSED
        return unadopted

    def release(self) -> None:
        """Let go of the file's claim."""
        if self.claim is not None:
            self.claim.release()
