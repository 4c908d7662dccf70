"""Which processes may open a SQLite cache file, and what a fork does to a cache.

**Ownership** (POSIX systems). A :class:`~semcache.SemanticCache` on a SQLite file takes an advisory
POSIX record lock (``fcntl`` ``F_SETLK``, through :func:`fcntl.lockf`) on a lock file
beside the database, ``<database>.lock``, and holds it until it is closed:

- ``multi_process_mode="single"`` takes it *exclusively*: a second process that opens
  the file as a cache (in either mode) gets :class:`~semcache.StoreLockedError`.
- ``multi_process_mode="shared"`` takes it *shared*: any number of shared-mode
  processes, never together with a single-mode one.

POSIX locks belong to a process, not to a file descriptor: every cache one process opens
on a file shares one lock (the strongest any of them needs; a process may mix modes on
a file it alone uses), and the kernel drops the lock when the process ends, SIGKILL
included, so a crash never leaves a stale lock behind. ``flock`` would be the wrong
tool: its locks belong to open file descriptions and are inherited by ``fork()`` (a
child would silently share its parent's exclusive claim), and converting a ``flock``
lock is not atomic (a failed upgrade drops the lock already held).

**Fork.** POSIX locks are not inherited by a child, and neither lock file descriptors
nor database connections may be used in one. This module therefore runs fork handlers
(:func:`os.register_at_fork`): the child forgets every lock file it inherited (closing
those descriptors releases nothing of the parent's), and every object registered with
:func:`track_fork` gets ``_fork_prepare`` before the fork and ``_fork_parent`` /
``_fork_child`` after it. :class:`~semcache.SemanticCache` uses them to make its state
consistent at the fork and to adopt (shared mode) or refuse (single mode) its use in
the child; :class:`~semcache.SQLiteStore` reopens its connection in the child.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from ._errors import StoreError, StoreLockedError

if sys.platform != "win32":
    import fcntl

__all__ = ["StoreLock", "acquire_store_lock", "lock_path", "track_fork"]

Mode = Literal["single", "shared"]

#: Suffix of the lock file beside the database.
LOCK_SUFFIX: Final = ".lock"


@dataclass(slots=True)
class _Held:
    """This process's lock on one lock file, and how many caches rely on it."""

    fd: int
    single: int = 0
    shared: int = 0

    def strength(self) -> Mode | None:
        if self.single:
            return "single"
        return "shared" if self.shared else None


_registry_lock = threading.Lock()
_held: dict[str, _Held] = {}


def lock_path(db_path: str) -> str:
    """The lock file for a database file (beside the real file, symlinks resolved)."""
    return os.path.realpath(db_path) + LOCK_SUFFIX


def held_here(key: str) -> bool:
    """Whether this process holds the lock file ``key`` (a :func:`lock_path`)."""
    with _registry_lock:
        return key in _held


def _try_lock(fd: int, mode: Mode) -> bool:
    """Take (or convert to) ``mode`` without waiting; False when another process holds
    a conflicting lock (a failed conversion keeps the lock already held)."""
    try:
        fcntl.lockf(fd, (fcntl.LOCK_EX if mode == "single" else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
    return True


def _refusal(db_path: str, fd: int, mode: Mode, had: Mode | None) -> StoreLockedError:
    if mode == "shared":
        other = "single mode (it owns the file alone)"
    elif had == "shared":
        other = "shared mode"
    elif _try_lock(fd, "shared"):  # nothing held here: probe what the others hold
        fcntl.lockf(fd, fcntl.LOCK_UN)
        other = "shared mode"
    else:
        other = "single mode"
    return StoreLockedError(
        f"{db_path} is open as a cache in another process in {other}; cannot open it "
        f"in {mode} mode here. Open it with multi_process_mode='shared' in every process "
        "that uses it at the same time"
    )


class StoreLock:
    """One cache's claim on a database file; :meth:`release` it once, on close."""

    __slots__ = ("_key", "_mode", "_pid", "_released", "db_path")

    def __init__(self, db_path: str, key: str, mode: Mode, *, held: bool = True) -> None:
        self.db_path = db_path
        self._key = key
        self._mode: Mode = mode
        self._pid = os.getpid()
        self._released = not held

    @property
    def mode(self) -> Mode:
        """The mode this claim was taken in."""
        return self._mode

    def release(self) -> None:
        """Drop this claim (idempotent). In a forked child the claim was never this
        process's, so nothing happens."""
        if self._released or self._pid != os.getpid():
            self._released = True
            return
        self._released = True
        with _registry_lock:
            held = _held.get(self._key)
            if held is None:
                return
            if self._mode == "single":
                held.single -= 1
            else:
                held.shared -= 1
            remaining = held.strength()
            if remaining is None:
                del _held[self._key]
                try:
                    fcntl.lockf(held.fd, fcntl.LOCK_UN)
                finally:
                    os.close(held.fd)
            elif remaining == "shared" and self._mode == "single" and not held.single:
                fcntl.lockf(held.fd, fcntl.LOCK_SH)  # a downgrade never conflicts


def acquire_store_lock(db_path: str, mode: Mode) -> StoreLock:
    """Claim ``db_path`` for a cache in ``mode`` (see the module docstring).

    Raises:
        StoreLockedError: another process holds the file in a conflicting mode.
        StoreError: the lock file cannot be created or locked.
    """
    key = lock_path(db_path)
    if sys.platform == "win32":  # pragma: no cover - no POSIX locks: no ownership checks
        return StoreLock(db_path, key, mode, held=False)
    with _registry_lock:
        held = _held.get(key)
        fresh = held is None
        if held is None:
            try:
                fd = os.open(key, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise StoreError(f"cannot create the lock file {key}: {exc}") from exc
            held = _Held(fd)
        had = held.strength()
        wanted: Mode = "single" if mode == "single" or held.single else "shared"
        try:
            if wanted != had and not _try_lock(held.fd, wanted):
                raise _refusal(db_path, held.fd, mode, had)
        except BaseException as exc:
            if fresh:
                os.close(held.fd)
            if isinstance(exc, OSError):
                raise StoreError(f"cannot lock {key}: {exc}") from exc
            raise
        if mode == "single":
            held.single += 1
        else:
            held.shared += 1
        _held[key] = held
    return StoreLock(db_path, key, mode)


# -- fork ----------------------------------------------------------------------------------
class ForkAware(Protocol):
    """An object with fork handlers (see :func:`track_fork`)."""

    def _fork_prepare(self) -> None: ...

    def _fork_parent(self) -> None: ...

    def _fork_child(self) -> None: ...


_tracked: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_prepared: list[ForkAware] = []


def track_fork(obj: ForkAware) -> None:
    """Call ``obj``'s fork handlers around every ``fork()`` while it is alive.

    ``_fork_prepare`` runs in the forking thread before the fork, ``_fork_parent`` after
    it in the parent, ``_fork_child`` after it in the (single-threaded) child; only
    objects that were prepared get the after-handlers.
    """
    _tracked.add(obj)


def _before_fork() -> None:
    _prepared.clear()
    for obj in list(_tracked):
        try:
            obj._fork_prepare()
        except Exception:  # a fork handler must never make fork() fail
            continue
        _prepared.append(obj)


def _after_fork_parent() -> None:
    prepared = list(_prepared)
    _prepared.clear()
    for obj in reversed(prepared):
        try:
            obj._fork_parent()
        except Exception:
            pass


def _after_fork_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for held in _held.values():
        try:
            os.close(held.fd)  # the parent's lock is the parent's; this releases nothing
        except OSError:
            pass
    _held.clear()
    prepared = list(_prepared)
    _prepared.clear()
    for obj in prepared:
        try:
            obj._fork_child()
        except Exception:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_parent,
        after_in_child=_after_fork_child,
    )
