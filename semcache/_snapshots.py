"""Index snapshots beside a persistent store: the warm start.

On close the cache saves every namespace's index into ``<store path>.index/`` together
with ``manifest.json``, which records the store's identity, the change sequence the
indexes reflect, and the settings they were built with. On open the cache loads them
and replays the store's change log from that sequence (``Store.changes_since``). The
snapshot is only an optimisation: whenever anything does not match (another store,
another dimension, dtype or backend, a sequence the log no longer reaches, a file that
does not load or belongs to another save), the caller rebuilds from the store.

Replaying the log is idempotent (a put re-adds the stored vector, a delete removes), so
a snapshot whose files were written after the manifest still converges to the store.

``prototypes.npz`` beside them holds ``answer_support``'s prototype tables of the same
save (its header names the sequence), when a get had read them: restored by
``Prototypes.restore``, which checks every claim, before the log is replayed.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import blake2b
from pathlib import Path
from typing import IO, Any, Final, TypeAlias

import numpy.typing as npt

from ._index import VectorIndex, load_index, snapshot_info
from ._index._common import SNAPSHOT_TMP_PREFIX, read_snapshot, write_snapshot

__all__ = ["SnapshotPlan", "load_prototypes", "load_snapshots", "save_snapshots", "snapshot_dir"]

logger = logging.getLogger("semcache")

FORMAT: Final = 1
MANIFEST: Final = "manifest.json"
#: The answers' prototypes (``answer_support``'s veto), saved with the indexes.
PROTOTYPES: Final = "prototypes.npz"
PROTOTYPES_KIND: Final = "prototypes"


@dataclass(frozen=True, slots=True)
class SnapshotPlan:
    """What a snapshot must match to be used."""

    store_id: str
    dim: int
    dtype: str
    backend: str


def snapshot_dir(store_path: object) -> Path | None:
    """The snapshot folder for a store file (a str or a Path), or None for stores
    without one."""
    if isinstance(store_path, Path):
        store_path = str(store_path)
    if not isinstance(store_path, str) or store_path in ("", ":memory:"):
        return None
    return Path(store_path + ".index")


_FILE_NAME: Final = re.compile(r"ns-[0-9a-f]{32}\.npz")
_TMP_NAME: Final = re.compile(re.escape(SNAPSHOT_TMP_PREFIX) + r"(\d+)-.+\.tmp")


def _file_name(namespace: str) -> str:
    return "ns-" + blake2b(namespace.encode(), digest_size=16).hexdigest() + ".npz"


#: Extra state saved with the indexes: a header and arrays (``Prototypes.snapshot``).
Extra: TypeAlias = "tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]"


def save_snapshots(
    folder: Path,
    plan: SnapshotPlan,
    seq: int,
    indexes: Mapping[str, VectorIndex],
    prototypes: Extra | None = None,
) -> None:
    """Write every index (and ``prototypes``, the answers' prototypes, when given; else
    drop a saved one), then the manifest (atomically), then drop files no manifest
    names.

    Raises:
        OSError: the folder or a file cannot be written.
    """
    folder.mkdir(exist_ok=True)
    with open(folder / ".lock", "a+b") as lock:
        if not _try_lock(lock):
            logger.info("semcache: another process is saving index snapshots; skipped")
            return
        if prototypes is None:
            (folder / PROTOTYPES).unlink(missing_ok=True)
        else:  # (before the manifest: a crash in between leaves it unmatched, unused)
            header, arrays = prototypes
            write_snapshot(folder / PROTOTYPES, PROTOTYPES_KIND, {**header, "seq": seq}, arrays)
        _save_locked(folder, plan, seq, indexes)


def load_prototypes(folder: Path, seq: int) -> Extra | None:
    """The answers' prototypes saved with the indexes of sequence ``seq``: their header
    and arrays (read within the file's size, as an index snapshot is; their contents
    are checked by ``Prototypes.restore``), or None when there are none of that save
    or the file does not read (logged)."""
    path = folder / PROTOTYPES
    if not path.is_file():
        return None
    try:
        snap = read_snapshot(path)
        if snap.backend != PROTOTYPES_KIND or snap.header.get("seq") != seq:
            logger.info("semcache: saved answer prototypes belong to another save; not used")
            return None
    except (OSError, ValueError) as exc:
        logger.warning("semcache: saved answer prototypes unreadable (%s); not used", exc)
        return None
    return snap.header, snap.arrays


def _try_lock(fh: IO[bytes]) -> bool:
    """An exclusive, non-blocking lock on ``fh`` (released when it is closed): two
    processes closing at once must not interleave their files."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return True
    try:
        fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _save_locked(
    folder: Path, plan: SnapshotPlan, seq: int, indexes: Mapping[str, VectorIndex]
) -> None:
    files: dict[str, str] = {}
    for ns, index in sorted(indexes.items()):
        name = _file_name(ns)
        index.save(folder / name, meta={"seq": seq, "namespace": ns})
        files[ns] = name
    manifest = {
        "format": FORMAT,
        "store_id": plan.store_id,
        "dim": plan.dim,
        "dtype": plan.dtype,
        "backend": plan.backend,
        "seq": seq,
        "namespaces": files,
    }
    tmp = folder / (MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / MANIFEST)
    keep = {*files.values(), MANIFEST}
    for path in folder.iterdir():
        if path.name not in keep and path.name.startswith("ns-"):
            path.unlink(missing_ok=True)
        # A temporary file of another process, while this one holds the folder's lock:
        # the leftover of a writer that was killed.
        match = _TMP_NAME.fullmatch(path.name)
        if match is not None and int(match.group(1)) != os.getpid():
            path.unlink(missing_ok=True)


#: The largest manifest read (it names one file per namespace).
_MAX_MANIFEST_BYTES: Final = 64 << 20


def load_snapshots(
    folder: Path, plan: SnapshotPlan, *, store_seq: int | None = None
) -> tuple[int, dict[str, VectorIndex]] | None:
    """Load the indexes a manifest names, if it matches ``plan``.

    Nothing a snapshot says is trusted before it is bounded: the manifest's size, its
    sequence (not past ``store_seq``, the store's), each file's dimension and dtype (the
    plan's) and live count (at most ``store_seq``: every live entry was put once) are
    checked from the headers before any array is read, and reading never allocates more
    than a file's size (see ``semcache._index``). Any failure, whatever its kind, means
    a rebuild from the store, never an error.

    Returns:
        ``(seq, indexes)``, or None when there is no usable snapshot (the reason is
        logged at INFO, or WARNING for a corrupt one).
    """
    try:
        with open(folder / MANIFEST, encoding="utf-8") as fh:
            if os.fstat(fh.fileno()).st_size > _MAX_MANIFEST_BYTES:
                raise ValueError(f"larger than {_MAX_MANIFEST_BYTES} bytes")
            manifest: Any = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        logger.warning("semcache: unreadable index manifest in %s (%s); rebuilding", folder, exc)
        return None
    expected = {
        "format": FORMAT,
        "store_id": plan.store_id,
        "dim": plan.dim,
        "dtype": plan.dtype,
        "backend": plan.backend,
    }
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in expected.items()):
        logger.info("semcache: index snapshot in %s does not match this cache; rebuilding", folder)
        return None
    seq, files = manifest.get("seq"), manifest.get("namespaces")
    if (
        isinstance(seq, bool)
        or not isinstance(seq, int)
        or seq < 0
        or not isinstance(files, dict)
        or not all(isinstance(n, str) and _FILE_NAME.fullmatch(n) for n in files.values())
    ):
        logger.warning("semcache: malformed index manifest in %s; rebuilding", folder)
        return None
    if store_seq is not None and seq > store_seq:
        logger.info("semcache: index snapshot in %s is newer than the store; rebuilding", folder)
        return None
    # Every live entry was put once, and each put advanced the store's sequence.
    bound = store_seq if store_seq is not None else 1 << 62
    indexes: dict[str, VectorIndex] = {}
    try:
        for ns, name in files.items():
            path = folder / name
            info = snapshot_info(path)
            if info.meta.get("seq") != seq or info.meta.get("namespace") != ns:
                raise ValueError(f"{path.name} belongs to another save")
            if info.dim != plan.dim or info.dtype != plan.dtype or not 0 <= info.count <= bound:
                raise ValueError(
                    f"{path.name} claims {info.count} {info.dtype} vectors of {info.dim}"
                )
            index = load_index(path)
            indexes[str(ns)] = index
            if index.dim != plan.dim or index.dtype.name != plan.dtype or len(index) > bound:
                raise ValueError(f"{path.name} holds {index.dtype.name} vectors of {index.dim}")
    except Exception as exc:  # a snapshot is never trusted: any failure rebuilds
        for index in indexes.values():
            index.close()
        logger.warning("semcache: index snapshot in %s unusable (%s); rebuilding", folder, exc)
        return None
    return seq, indexes
