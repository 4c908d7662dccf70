"""Checkpoints: a whole cache as one tar.gz (``SemanticCache.dumps`` / ``loads``).

Layout (member names are exactly these; nothing else is accepted)::

    manifest.json          first member: what the checkpoint holds (below)
    store.sqlite           a consistent copy of the SQLite store (rollback journal mode)
    index/manifest.json    the index snapshots (see semcache._snapshots), when the cache
    index/ns-<32 hex>.npz  has vectors and a named index backend
    index/prototypes.npz   answer support's prototype tables of the same save, when a
                           get had read them (format version 2; version 1 has none)

A checkpoint is written at version 2 only when it carries ``index/prototypes.npz``, so
that a semcache that reads version 1 still reads every checkpoint without them.

``manifest.json``::

    {"format": "semcache-checkpoint", "version": 1 | 2, "created_at": <unix time>,
     "semcache_version": "...", "fingerprint": <embedder fingerprint or null>,
     "dim": <int or null>, "dtype": "float32" | "float16", "store_id": "...",
     "seq": <int, the copy's change sequence>, "entries": {namespace: count},
     "total_entries": <int>, "files": {member: {"size": <bytes>, "sha256": "<hex>"}}}

Writing: the index snapshots are saved under the cache's lock (so they reflect a known
change sequence), then the store is copied with SQLite's backup API from a connection of
its own, in one step: one read transaction, a consistent snapshot, while other threads
and processes keep writing (WAL readers never block writers). The copy is at least as
new as the snapshots, so the restored cache loads them and replays the copy's change log
from their sequence, exactly like a warm start.

Restoring never calls ``extractall``: every member is checked first (plain regular file,
a name from the layout above, no absolute path or ``..``, no duplicates, a size under
the cap, listed in the manifest), then each is streamed to a file whose name *this code*
chooses inside ``<path>.restoring``, hashed on the way and compared with the manifest;
the store copy must be exactly what semcache writes (see :meth:`SQLiteStore.check_copy`: the
schema of its recorded version and nothing else, ``PRAGMA integrity_check``, namespace
counts equal to its rows) and match the manifest's counts, sequence and settings. Only
then are the files moved to ``path`` and ``path.index``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: leftovers are not swept
    fcntl = None  # type: ignore[assignment]

from ._checks import check_count, check_path, check_stream_target
from ._errors import (
    ArchiveMemberTooLargeError,
    CheckpointChecksumError,
    CheckpointError,
    CheckpointFormatError,
    CheckpointMismatchError,
    CheckpointVersionError,
    StoreError,
    UnsafeArchiveError,
)
from ._locking import lock_path
from ._snapshots import PROTOTYPES
from ._store import SQLiteStore, Store, file_backup, local_path
from ._version import __version__

if TYPE_CHECKING:
    from .embedders import Embedder

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointTarget",
    "dump_checkpoint",
    "load_checkpoint",
    "read_manifest",
    "remove_restored",
    "sweep_stale",
]

_T = TypeVar("_T")
#: Where a checkpoint is written to or read from: a path or a binary file object.
CheckpointTarget: TypeAlias = "str | os.PathLike[str] | IO[bytes]"

FORMAT: Final = "semcache-checkpoint"
FORMAT_VERSION: Final = 2
MANIFEST: Final = "manifest.json"
STORE: Final = "store.sqlite"
INDEX_DIR: Final = "index"
_INDEX_MEMBER = re.compile(r"index/(manifest\.json|ns-[0-9a-f]{32}\.npz|prototypes\.npz)")
#: The answers' prototypes, a member since format version ``_PROTOTYPES_SINCE``.
_PROTOTYPES_MEMBER: Final = f"{INDEX_DIR}/{PROTOTYPES}"
_PROTOTYPES_SINCE: Final = 2
#: The manifest is read into memory: it gets a cap of its own.
_MAX_MANIFEST_BYTES: Final = 64 << 20
#: Members an archive may have (the store, two manifests, one file per namespace, the
#: prototypes).
_MAX_MEMBERS: Final = 1_000_000
_CHUNK: Final = 1 << 20
_SIDECARS: Final = ("-wal", "-shm", "-journal", ".index")
logger = logging.getLogger("semcache")


# -- writing --------------------------------------------------------------------------------
def dump_checkpoint(
    store: Store, dest: CheckpointTarget, snapshot: Callable[[Path], None]
) -> dict[str, Any]:
    """Write a checkpoint of a cache over ``store`` to ``dest``; return its manifest.
    ``snapshot(folder)`` writes the cache's pending recency to the store and its index
    snapshots into ``folder``, under the cache's lock (raising if it is closed).

    Raises:
        CacheClosedError: the cache is closed.
        CheckpointError: the store is not a SQLite file, or copying it failed.
        InvalidInputError: ``dest`` is neither a path nor a binary file object.
        OSError: ``dest`` cannot be written.
    """
    check_stream_target(dest, "dest", "write")
    backup, path = file_backup(store), local_path(store)
    if backup is None or path is None:
        raise CheckpointError(
            f"checkpoints copy a SQLite file; this cache's store is a {type(store).__name__}"
        )
    folder = os.path.dirname(os.path.abspath(path))
    sweep_stale(folder)
    work, owner = _owned_dir(folder, _DUMP_PREFIX)
    try:
        snapshot(work / INDEX_DIR)
        copy = work / STORE
        try:
            backup.backup(copy)
        except StoreError as exc:
            raise CheckpointError(str(exc)) from exc
        _pause("dump:copied")
        facts = backup.inspect_copy(copy)
        files = {STORE: copy}
        index_dir = work / INDEX_DIR
        if index_dir.is_dir():
            for item in sorted(index_dir.iterdir()):
                if _INDEX_MEMBER.fullmatch(f"{INDEX_DIR}/{item.name}"):
                    files[f"{INDEX_DIR}/{item.name}"] = item
        manifest: dict[str, Any] = {
            "format": FORMAT,
            # (the oldest version that has every member: older readers read the rest)
            "version": _PROTOTYPES_SINCE if _PROTOTYPES_MEMBER in files else 1,
            "created_at": time.time(),
            "semcache_version": __version__,
            **facts,
            "files": {name: _digest(path) for name, path in files.items()},
        }
        _write_archive(dest, manifest, files)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.close(owner)


def _digest(path: Path) -> dict[str, Any]:
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": sha.hexdigest()}


def _write_archive(
    dest: CheckpointTarget, manifest: Mapping[str, Any], files: Mapping[str, Path]
) -> None:
    """The tar.gz: the manifest first, then the files; a path is written atomically."""
    if isinstance(dest, (str, os.PathLike)):
        final = os.fspath(dest)
        folder = os.path.dirname(os.path.abspath(final))
        sweep_stale(folder)
        fd, tmp = tempfile.mkstemp(
            prefix=f"{_ARCHIVE_PREFIX}{os.getpid()}-", suffix=_ARCHIVE_SUFFIX, dir=folder
        )
        try:
            _lock_fd(fd)  # held until the file is closed: its owner is alive
            with os.fdopen(fd, "wb") as fh:
                _write_tar(fh, manifest, files)
                _pause("dump:archive")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    else:
        _write_tar(dest, manifest, files)


def _write_tar(fh: IO[bytes], manifest: Mapping[str, Any], files: Mapping[str, Path]) -> None:
    mtime = int(manifest["created_at"])

    def info(name: str, size: int) -> tarfile.TarInfo:
        member = tarfile.TarInfo(name)
        member.size, member.mtime, member.mode = size, mtime, 0o644
        return member

    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
    with tarfile.open(fileobj=fh, mode="w:gz", format=tarfile.PAX_FORMAT, compresslevel=6) as tar:
        tar.addfile(info(MANIFEST, len(body)), _BytesReader(body))
        for name, path in files.items():
            with open(path, "rb") as src:
                tar.addfile(info(name, os.fstat(src.fileno()).st_size), src)


class _BytesReader:
    """The smallest file object ``TarFile.addfile`` reads from."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        out, self._pos = self._data[self._pos : end], min(end, len(self._data))
        return out


# -- reading --------------------------------------------------------------------------------
def load_checkpoint(
    source: CheckpointTarget,
    path: str | os.PathLike[str],
    embedder: Embedder | None,
    open_cache: Callable[[str, dict[str, Any]], _T],
    *,
    max_member_bytes: int,
    options: Mapping[str, Any],
) -> _T:
    """Restore ``source`` into ``path`` (see :func:`restore_files`), then open it with
    ``open_cache(path, options)``; ``vector_dtype`` defaults to the checkpoint's.
    A cache that fails to open takes the restored files with it.

    Raises:
        CheckpointError: see :meth:`SemanticCache.loads`.
        InvalidInputError: a bad ``source`` or ``path`` (ConfigurationError: a bad
            ``max_member_bytes``), before anything is read or written.
    """
    check_stream_target(source, "source", "read")
    check_path(path, "path")
    check_count(max_member_bytes, "max_member_bytes")
    lock_file = lock_path(os.fspath(path))
    had_lock_file = os.path.lexists(lock_file)
    manifest = restore_files(source, path, embedder, options.get("vector_dtype"), max_member_bytes)
    kwargs = dict(options)
    kwargs.setdefault("vector_dtype", manifest["dtype"])
    try:
        return open_cache(os.fspath(path), kwargs)
    except BaseException:
        remove_restored(path)
        if not had_lock_file:  # the failed open's lock file; no other cache uses the path
            _remove(lock_file)
        raise


def read_manifest(source: CheckpointTarget, *, max_member_bytes: int = 1 << 36) -> dict[str, Any]:
    """The manifest of a checkpoint, after checking every member's header.

    Raises:
        CheckpointFormatError, CheckpointVersionError, UnsafeArchiveError.
    """
    with _open_archive(source) as tar:
        members = _checked_members(tar, max_member_bytes)
        return _manifest(tar, members)


def restore_files(
    source: CheckpointTarget,
    path: str | os.PathLike[str],
    embedder: Embedder | None,
    vector_dtype: str | None,
    max_member_bytes: int,
) -> dict[str, Any]:
    """Check ``source`` and write its store to ``path`` and its index snapshots to
    ``path.index``; return the manifest. Nothing is left behind on error.

    Raises:
        CheckpointError: ``path`` or a sidecar exists; and the errors of
            :meth:`SemanticCache.loads`.
    """
    check_count(max_member_bytes, "max_member_bytes")
    target = os.fspath(path)
    staging = Path(target + _RESTORING)
    if _is_stale(staging):  # left by a loads that was killed
        shutil.rmtree(staging, ignore_errors=True)
    for existing in (target, *(target + s for s in _SIDECARS), str(staging)):
        if os.path.lexists(existing):
            raise CheckpointError(
                f"{existing} already exists; restore a checkpoint into a new path"
            )
    with _open_archive(source) as tar:
        members = _checked_members(tar, max_member_bytes)
        manifest = _manifest(tar, members)
        _check_compatible(manifest, embedder, vector_dtype)
        moved: list[str] = []
        owner = -1
        try:
            staging.mkdir()
            owner = _own(staging)
            for name, member in members.items():
                if name != MANIFEST:
                    _extract(tar, member, staging / name, manifest["files"][name])
            _check_store_copy(staging / STORE, manifest)
            os.replace(staging / STORE, target)
            moved.append(target)
            if (staging / INDEX_DIR).is_dir():
                os.replace(staging / INDEX_DIR, target + ".index")
                moved.append(target + ".index")
        except BaseException:
            for done in moved:
                _remove(done)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if owner >= 0:
                os.close(owner)
    return manifest


def remove_restored(path: str | os.PathLike[str]) -> None:
    """Remove a restored cache's files (after its constructor failed)."""
    target = os.fspath(path)
    for name in (target, *(target + s for s in _SIDECARS)):
        _remove(name)


def _remove(name: str) -> None:
    if os.path.isdir(name) and not os.path.islink(name):
        shutil.rmtree(name, ignore_errors=True)
    else:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


@contextmanager
def _open_archive(source: CheckpointTarget) -> Iterator[tarfile.TarFile]:
    try:
        if isinstance(source, (str, os.PathLike)):
            tar = tarfile.open(os.fspath(source), mode="r:gz")  # noqa: SIM115
        else:
            tar = tarfile.open(fileobj=source, mode="r:gz")  # noqa: SIM115
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise CheckpointFormatError(f"not a semcache checkpoint (a tar.gz): {exc}") from exc
    try:
        with tar:
            yield tar
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise CheckpointFormatError(f"the checkpoint archive is damaged: {exc}") from exc


def _checked_members(tar: tarfile.TarFile, max_member_bytes: int) -> dict[str, tarfile.TarInfo]:
    """Every member, checked by its header alone, by name."""
    members: dict[str, tarfile.TarInfo] = {}
    for count, member in enumerate(tar, 1):
        if count > _MAX_MEMBERS:
            raise UnsafeArchiveError(member.name, f"more than {_MAX_MEMBERS} members")
        name = member.name
        _check_name(name)
        if member.issym() or member.islnk():
            raise UnsafeArchiveError(name, f"is a link (to {member.linkname!r})")
        if member.ischr() or member.isblk():
            raise UnsafeArchiveError(name, "is a device")
        if member.isfifo():
            raise UnsafeArchiveError(name, "is a FIFO")
        if member.isdir():
            raise UnsafeArchiveError(name, "is a directory")
        if not member.isreg():
            raise UnsafeArchiveError(name, f"is not a regular file (type {member.type!r})")
        if name in members:
            raise UnsafeArchiveError(name, "appears twice")
        if name != MANIFEST and name != STORE and not _INDEX_MEMBER.fullmatch(name):
            raise UnsafeArchiveError(name, "is not a member of the checkpoint format")
        limit = _MAX_MANIFEST_BYTES if name == MANIFEST else max_member_bytes
        if member.size > limit:
            raise ArchiveMemberTooLargeError(
                name, f"is {member.size} bytes; the limit is {limit} bytes"
            )
        members[name] = member
    if MANIFEST not in members:
        raise CheckpointFormatError("not a semcache checkpoint: no manifest.json")
    return members


def _check_name(name: str) -> None:
    if "\x00" in name or "\\" in name:
        raise UnsafeArchiveError(name, "has a NUL or backslash in its name")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise UnsafeArchiveError(name, "is an absolute path")
    parts = name.split("/")
    if ".." in parts:
        raise UnsafeArchiveError(name, "contains '..'")
    if any(part in ("", ".") for part in parts):
        raise UnsafeArchiveError(name, "is not a normalized relative name")


def _manifest(tar: tarfile.TarFile, members: Mapping[str, tarfile.TarInfo]) -> dict[str, Any]:
    """The manifest, checked against the members."""
    fh = tar.extractfile(members[MANIFEST])
    assert fh is not None  # a regular file
    try:
        manifest = json.loads(fh.read(_MAX_MANIFEST_BYTES + 1))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointFormatError(f"the checkpoint manifest is not JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointFormatError("not a semcache checkpoint: unknown manifest format")
    version = manifest.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointFormatError(f"malformed checkpoint format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointVersionError(
            f"the checkpoint has format version {version}; this semcache reads up to "
            f"{FORMAT_VERSION}: upgrade semcache"
        )
    files = manifest.get("files")
    entries = manifest.get("entries")
    if (
        not isinstance(files, dict)
        or not isinstance(entries, dict)
        or manifest.get("dtype") not in ("float32", "float16")
        or not all(
            isinstance(f, dict)
            and isinstance(f.get("size"), int)
            and isinstance(f.get("sha256"), str)
            for f in files.values()
        )
    ):
        raise CheckpointFormatError("malformed checkpoint manifest")
    for name in members:
        if name != MANIFEST and name not in files:
            raise UnsafeArchiveError(name, "is not listed in the manifest")
    for name in files:
        if name not in members:
            raise CheckpointFormatError(f"the manifest lists {name!r} but the archive lacks it")
    if STORE not in files:
        raise CheckpointFormatError("the checkpoint holds no store")
    if version < _PROTOTYPES_SINCE and _PROTOTYPES_MEMBER in files:
        raise CheckpointFormatError(
            f"format version {version} has no {_PROTOTYPES_MEMBER}: the archive was altered"
        )
    seq = manifest.get("seq")
    if (
        isinstance(seq, list)
        and len(seq) == 1
        and isinstance(seq[0], int)
        and not isinstance(seq[0], bool)
    ):
        seq = manifest["seq"] = seq[0]  # earlier semcache wrote a one-item list
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise CheckpointFormatError(f"malformed checkpoint manifest: seq {seq!r}")
    return manifest


def _check_compatible(
    manifest: Mapping[str, Any], embedder: Embedder | None, vector_dtype: str | None
) -> None:
    fingerprint, dim = manifest.get("fingerprint"), manifest.get("dim")
    if embedder is not None:
        if fingerprint is not None and fingerprint != embedder.fingerprint:
            raise CheckpointMismatchError(
                f"the checkpoint was made with embedder {fingerprint!r}, not "
                f"{embedder.fingerprint!r}; restore it with that embedder"
            )
        if dim is not None and dim != int(embedder.dim):
            raise CheckpointMismatchError(
                f"the checkpoint holds {dim}-dimensional vectors; the embedder makes "
                f"{int(embedder.dim)}"
            )
    if vector_dtype is not None and vector_dtype != manifest["dtype"]:
        raise CheckpointMismatchError(
            f"the checkpoint holds {manifest['dtype']} vectors, not {vector_dtype}"
        )


def _extract(
    tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, expected: Mapping[str, Any]
) -> None:
    """Stream one member to ``dest`` (a name chosen here), checking size and SHA-256."""
    dest.parent.mkdir(exist_ok=True)
    src = tar.extractfile(member)
    assert src is not None  # checked: a regular file
    sha = hashlib.sha256()
    size = 0
    with open(dest, "xb") as out:
        while chunk := src.read(_CHUNK):
            size += len(chunk)
            if size > expected["size"]:
                break
            sha.update(chunk)
            out.write(chunk)
    if size != expected["size"] or sha.hexdigest() != expected["sha256"]:
        raise CheckpointChecksumError(
            f"checkpoint member {member.name!r} does not match the manifest's size and "
            "SHA-256: the archive is damaged or was altered"
        )


def _check_store_copy(path: Path, manifest: Mapping[str, Any]) -> None:
    """The store copy must be a store exactly as semcache makes it, agreeing with itself
    and with the manifest (see :meth:`SQLiteStore.check_copy`: format version 1 carries
    a SQLite store)."""
    SQLiteStore.check_copy(path)
    facts = SQLiteStore.inspect_copy(path)
    for name in ("fingerprint", "dim", "dtype", "entries", "seq"):
        if facts[name] != manifest.get(name):
            raise CheckpointFormatError(
                f"the checkpoint's store does not match its manifest ({name}: "
                f"{facts[name]!r} != {manifest.get(name)!r})"
            )


# -- leftovers of a killed dumps or loads ---------------------------------------------------
#: ``dumps`` works in ``<folder of the store>/.semcache-dump-<pid>-<random>/`` (the store
#: copy and the index snapshots) and writes the archive to
#: ``<folder of dest>/.semcache-checkpoint-<pid>-<random>.tmp`` before renaming it;
#: ``loads`` stages in ``<path>.restoring/``. Each holds a POSIX lock while its owner
#: works (on ``.owner`` inside a folder, on the file itself), which the kernel drops
#: when the owner dies, SIGKILL included: a leftover whose lock is free and whose owner
#: is another process is removed by the next ``dumps`` beside it, the next ``loads``
#: into that path and the next open of a cache in that folder.
_DUMP_PREFIX: Final = ".semcache-dump-"
_ARCHIVE_PREFIX: Final = ".semcache-checkpoint-"
_ARCHIVE_SUFFIX: Final = ".tmp"
_RESTORING: Final = ".restoring"
_OWNER: Final = ".owner"
_LEFTOVER = re.compile(
    rf"({re.escape(_DUMP_PREFIX)}(\d+)-[^/]+|{re.escape(_ARCHIVE_PREFIX)}(\d+)-[^/]+"
    rf"{re.escape(_ARCHIVE_SUFFIX)}|.+{re.escape(_RESTORING)})"
)

#: A test hook: called with a step's name at the points where a test kills a dumps.
_pause: Callable[[str], None] = lambda where: None  # noqa: E731


def _lock_fd(fd: int) -> None:
    if fcntl is not None:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _own(folder: Path) -> int:
    """Mark ``folder`` as this process's: ``.owner`` (holding the pid), locked, appears
    under its name only once locked. Returns the descriptor to close when done."""
    tmp = folder / f"{_OWNER}.{os.getpid()}"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        _lock_fd(fd)
        os.write(fd, str(os.getpid()).encode())
        os.replace(tmp, folder / _OWNER)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _owned_dir(folder: str, prefix: str) -> tuple[Path, int]:
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=folder))
    try:
        return work, _own(work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _owner_pid(path: Path) -> int | None:
    match = _LEFTOVER.fullmatch(path.name)
    if match is None:
        return None
    pid = match.group(2) or match.group(3)
    if pid is None:  # a .restoring folder: the pid is in its .owner file
        try:
            pid = (path / _OWNER).read_text(encoding="ascii")[:20]
        except (OSError, ValueError):
            return None
    return int(pid) if pid.isdigit() else None


def _is_stale(path: Path) -> bool:
    """Whether ``path`` is a leftover of a dead ``dumps`` or ``loads``: a name of ours
    with an owner pid that is not this process, and an owner lock nobody holds (taking
    it here proves the owner is gone). Checking one of this process's own would drop
    its lock (closing any descriptor of a file drops the process's POSIX locks on it),
    so those are never touched."""
    if fcntl is None or not os.path.lexists(path):  # pragma: no cover - not POSIX
        return False
    pid = _owner_pid(path)
    if pid is None or pid == os.getpid():
        return False
    lock = path if path.name.endswith(_ARCHIVE_SUFFIX) and not path.is_dir() else path / _OWNER
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # the owner is alive
    finally:
        os.close(fd)
    return True


def sweep_stale(folder: str | os.PathLike[str]) -> list[str]:
    """Remove the leftovers of killed ``dumps`` and ``loads`` runs in ``folder`` (see
    above); return what was removed. Never raises: a folder that cannot be listed is
    left alone."""
    removed: list[str] = []
    try:
        with os.scandir(folder) as entries:
            names = [
                e.name
                for e in entries
                if e.name.startswith(".semcache-") or e.name.endswith(_RESTORING)
            ]
    except OSError:
        return removed
    for name in names:
        path = Path(folder, name)
        try:
            if not _is_stale(path):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(str(path))
        except OSError:
            continue
    if removed:
        logger.info("semcache: removed leftovers of killed checkpoint runs: %s", removed)
    return removed
