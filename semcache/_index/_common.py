"""Shared plumbing for the index backends: input checks, the id/row table, options,
and snapshot files (an ``.npz`` container read with ``allow_pickle=False``, written to a
temporary file and renamed into place)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import (
    CacheClosedError,
    ConfigurationError,
    DimensionMismatchError,
    InvalidEmbeddingError,
)
from ._base import IdArray

__all__ = [
    "COMPACT_MIN_TOMBSTONES",
    "SNAPSHOT_KIND",
    "RowTable",
    "Snapshot",
    "check_dtype",
    "check_k",
    "compaction_due",
    "parse_options",
    "prepare_add",
    "prepare_queries",
    "prepare_query",
    "read_snapshot",
    "write_snapshot",
]

#: Format tag of every snapshot this version writes.
SNAPSHOT_KIND = "semcache.index.v2"
#: The format FlatIndex wrote before the other backends existed (still readable).
LEGACY_FLAT_KIND = "semcache.flat.v1"

_F32 = np.dtype(np.float32)
_F16 = np.dtype(np.float16)


# -- input checks -------------------------------------------------------------------------
def check_dtype(dtype: npt.DTypeLike) -> np.dtype[Any]:
    """float32 or float16, else ``ConfigurationError`` (also a ``ValueError``)."""
    dt = np.dtype(dtype)
    if dt not in (_F32, _F16):
        raise ConfigurationError(f"dtype must be float32 or float16, got {dt}")
    return dt


def check_dim(dim: int) -> int:
    """A positive dimension, else ``ConfigurationError``."""
    if int(dim) < 1:
        raise ConfigurationError(f"dim must be >= 1, got {dim}")
    return int(dim)


def check_k(k: int) -> int:
    """``k >= 1``, else ``ValueError``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def prepare_add(
    ids: npt.ArrayLike, vectors: npt.ArrayLike, dim: int
) -> tuple[IdArray, npt.NDArray[Any]]:
    """Validate an ``add`` batch; later duplicates of an id win, like successive adds."""
    id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
    vecs = np.asarray(vectors)
    if vecs.ndim == 1:
        vecs = vecs.reshape(1, -1)
    if vecs.ndim != 2:
        raise InvalidEmbeddingError(f"vectors must be 2-d, got shape {vecs.shape}")
    if vecs.shape[1] != dim:
        raise DimensionMismatchError(vecs.shape[1], dim)
    if vecs.shape[0] != id_arr.shape[0]:
        raise InvalidEmbeddingError(f"{id_arr.shape[0]} ids but {vecs.shape[0]} vectors")
    n = id_arr.shape[0]
    if n > 1:
        _, last = np.unique(id_arr[::-1], return_index=True)
        if last.shape[0] != n:
            keep = np.sort(n - 1 - last)
            id_arr, vecs = id_arr[keep], vecs[keep]
    return id_arr, vecs


def prepare_query(query: npt.ArrayLike, dim: int) -> npt.NDArray[np.float32]:
    """One query as a contiguous float32 vector of length ``dim``."""
    q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
    if q.shape[0] != dim:
        raise DimensionMismatchError(q.shape[0], dim)
    return q


def prepare_queries(queries: npt.ArrayLike, dim: int) -> npt.NDArray[np.float32]:
    """A batch of queries as a contiguous float32 ``(m, dim)`` matrix."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q.reshape(1, -1)
    if q.ndim != 2:
        raise InvalidEmbeddingError(f"queries must be 2-d, got shape {q.shape}")
    if q.shape[1] != dim:
        raise DimensionMismatchError(q.shape[1], dim)
    return q


def closed_error() -> CacheClosedError:
    return CacheClosedError("index is closed")


# -- options ------------------------------------------------------------------------------
def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge int"
    return text if len(text) <= 60 else f"{text[:57]}..."


def _int_in(lo: int, hi: int) -> Any:
    """A check for an int option in ``[lo, hi]`` (the upper bounds keep the native
    libraries' C integers and allocations sane: hnswlib and faiss crash on ``M=1``)."""

    def check(name: str, value: Any) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or not lo <= int(value) <= hi
        ):
            raise ConfigurationError(
                f"index_options[{name!r}] must be an int in [{lo}, {hi}], got {_show(value)}"
            )
        return int(value)

    return check


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"index_options[{name!r}] must be a bool, got {_show(value)}")
    return value


def _unit_interval(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0.0 < float(value) <= 1.0
    ):
        raise ConfigurationError(f"index_options[{name!r}] must be in (0, 1], got {_show(value)}")
    return float(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigurationError(
            f"index_options[{name!r}] must be one of {list(choices)}, got {_show(value)}"
        )
    return value


#: Every option key, with its validator.
_OPTION_CHECKS: dict[str, Any] = {
    "M": _int_in(2, 1024),
    "ef_construction": _int_in(1, 1 << 16),
    "ef_search": _int_in(1, 1 << 16),
    "build_threads": _int_in(1, 4096),
    "switch_at": _int_in(1, 2**62),
    "background": _bool,
    "kind": lambda n, v: _choice(n, v, ("flat", "hnsw")),
    "graph": lambda n, v: _choice(n, v, ("auto", "hnswlib", "faiss", "none")),
    "kernel": lambda n, v: _choice(n, v, ("auto", "native", "numpy")),
    "shadow": _bool,
    "decide": lambda n, v: _choice(n, v, ("measure", "rows")),
    "recall": lambda n, v: _unit_interval(n, v),
    "probe_rows": _int_in(256, 1 << 24),
}


def parse_options(
    backend: str, options: Mapping[str, Any], allowed: tuple[str, ...]
) -> dict[str, Any]:
    """Check ``options`` against the keys ``backend`` understands.

    Raises:
        ConfigurationError: an unknown key, or a value of the wrong type or range.
    """
    if not isinstance(options, Mapping):
        raise ConfigurationError(f"index_options must be a mapping, got {type(options).__name__}")
    unknown = sorted(_show(k) for k in options if not isinstance(k, str) or k not in allowed)
    if unknown:
        raise ConfigurationError(
            f"index_options: unknown option(s) {', '.join(unknown)} for index backend "
            f"{backend!r}; it accepts {sorted(allowed)}"
        )
    return {k: _OPTION_CHECKS[k](k, v) for k, v in options.items()}


# -- automatic compaction -----------------------------------------------------------------
#: The fewest tombstones that make an index compact itself (see :func:`compaction_due`).
COMPACT_MIN_TOMBSTONES = 1024


def compaction_due(live: int, tombstones: int) -> bool:
    """Whether an index with ``live`` rows and ``tombstones`` removed rows reclaims them
    now: once ``tombstones >= max(live, COMPACT_MIN_TOMBSTONES)``.

    So at most half of a large index's rows are dead (a full cache whose evictions
    tombstone one row per put holds at most twice its live rows), and a compaction,
    which copies the live rows, comes after at least as many removals as it copies:
    its cost spread over those removals is a constant number of row copies each, and
    no run of puts pays for more than one compaction per doubling of the tombstones.
    """
    return tombstones >= max(live, COMPACT_MIN_TOMBSTONES)


# -- id <-> row bookkeeping ---------------------------------------------------------------
class RowTable:
    """Rows are appended in order; each holds one id and a live flag.

    Replacing an id tombstones its old row. ``compact`` keeps the live rows in order.
    """

    def __init__(self, capacity: int = 64) -> None:
        cap = max(int(capacity), 1)
        self.ids = np.zeros(cap, dtype=np.int64)
        self.live = np.zeros(cap, dtype=bool)
        self.n = 0
        self.row_of: dict[int, int] = {}

    @property
    def capacity(self) -> int:
        return int(self.ids.shape[0])

    @property
    def live_count(self) -> int:
        return len(self.row_of)

    @property
    def tombstones(self) -> int:
        return self.n - len(self.row_of)

    def grow_to(self, cap: int) -> None:
        if cap <= self.capacity:
            return
        ids = np.zeros(cap, dtype=np.int64)
        ids[: self.n] = self.ids[: self.n]
        live = np.zeros(cap, dtype=bool)
        live[: self.n] = self.live[: self.n]
        self.ids, self.live = ids, live

    def remove(self, ids: npt.ArrayLike) -> list[int]:
        """Tombstone the live ones among ``ids``; return their rows."""
        rows = []
        pop = self.row_of.pop
        for i in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            row = pop(i, None)
            if row is not None:
                rows.append(row)
        if rows:
            self.live[rows] = False
        return rows

    def append(self, ids: IdArray) -> tuple[int, int]:
        """Give fresh rows to ``ids`` (already removed, no duplicates); grow first."""
        start, stop = self.n, self.n + ids.shape[0]
        if stop > self.capacity:
            self.grow_to(max(stop, 2 * self.capacity))
        self.ids[start:stop] = ids
        self.live[start:stop] = True
        self.row_of.update(zip(ids.tolist(), range(start, stop), strict=True))
        self.n = stop
        return start, stop

    def live_rows(self) -> npt.NDArray[np.intp]:
        return np.flatnonzero(self.live[: self.n])

    def reset(self, ids: IdArray, capacity: int | None = None) -> None:
        """Start over with ``ids`` in rows ``0..len(ids)-1``, all live."""
        n = ids.shape[0]
        cap = max(64, n) if capacity is None else max(capacity, n, 1)
        self.ids = np.zeros(cap, dtype=np.int64)
        self.ids[:n] = ids
        self.live = np.zeros(cap, dtype=bool)
        self.live[:n] = True
        self.n = n
        self.row_of = dict(zip(ids.tolist(), range(n), strict=True))

    def restore(self, ids: IdArray, live: npt.NDArray[np.bool_], capacity: int) -> None:
        """Reload rows ``0..len(ids)-1`` with their live flags (from a snapshot)."""
        n = ids.shape[0]
        cap = max(capacity, n, 1)
        self.ids = np.zeros(cap, dtype=np.int64)
        self.ids[:n] = ids
        self.live = np.zeros(cap, dtype=bool)
        self.live[:n] = live
        self.n = n
        rows = np.flatnonzero(live)
        self.row_of = dict(zip(ids[rows].tolist(), rows.tolist(), strict=True))
        if len(self.row_of) != rows.shape[0]:
            raise ValueError("snapshot has the same id live in two rows")

    def live_ids(self) -> IdArray:
        return self.ids[self.live_rows()].copy()


class RowIndexBase:
    """What every backend over a :class:`RowTable` answers the same way: dimension,
    dtype, live count, membership, live ids, tombstones, and the closed check.

    Subclasses set ``_dim``, ``_dtype``, ``_rows`` and ``_closed``.
    """

    _dim: int
    _dtype: np.dtype[Any]
    _rows: RowTable
    _closed: bool

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def tombstones(self) -> int:
        self._check_open()
        return self._rows.tombstones

    def __len__(self) -> int:
        self._check_open()
        return self._rows.live_count

    def __contains__(self, entry_id: object) -> bool:
        self._check_open()
        return entry_id in self._rows.row_of

    def ids(self) -> IdArray:
        """The live ids, in insertion order."""
        self._check_open()
        return self._rows.live_ids()

    def compact(self) -> int:
        raise NotImplementedError

    #: Whether removals compact the index by themselves (an AutoIndex turns this off
    #: on its graph, which it compacts on its build thread instead).
    auto_compact: bool = True

    def _maybe_compact(self) -> None:
        """Reclaim the tombstones when :func:`compaction_due` says so (after removals)."""
        rows = self._rows
        if self.auto_compact and compaction_due(rows.live_count, rows.tombstones):
            self._auto_compact()

    def _auto_compact(self) -> None:
        self.compact()

    def _check_open(self) -> None:
        if self._closed:
            raise closed_error()


# -- snapshots ----------------------------------------------------------------------------
@dataclass
class Snapshot:
    """A snapshot read back: which backend wrote it, its JSON header, its arrays, and
    the checks still running on them (``read_snapshot(..., defer_crc=True)``)."""

    backend: str
    header: dict[str, Any]
    arrays: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    pending: list[Callable[[], None]] = field(default_factory=list)

    def verify(self, path: str | os.PathLike[str]) -> None:
        """Wait for the checks still running (a deferred CRC-32).

        Raises:
            ValueError: one failed: the file is corrupt.
        """
        pending, self.pending = self.pending, []
        for check in pending:
            try:
                check()
            except ValueError as exc:
                raise ValueError(
                    f"{os.fspath(path)!r} is not a semcache index snapshot: {exc}"
                ) from exc


def write_snapshot(
    path: str | os.PathLike[str],
    backend: str,
    header: Mapping[str, Any],
    arrays: Mapping[str, npt.NDArray[Any]],
) -> None:
    """Write a snapshot atomically: a temporary file beside ``path``, fsync, rename."""
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    # The pid in the name tells a killed writer's leftover from a live one's (see
    # semcache._snapshots, which sweeps them).
    fd, tmp = tempfile.mkstemp(
        prefix=f"{SNAPSHOT_TMP_PREFIX}{os.getpid()}-", suffix=".tmp", dir=directory
    )
    try:
        with os.fdopen(fd, "wb") as fh:
            payload: dict[str, Any] = {f"a_{k}": v for k, v in arrays.items()}
            np.savez(
                fh,
                kind=np.array(SNAPSHOT_KIND),
                backend=np.array(backend),
                header=np.array(json.dumps(dict(header), sort_keys=True)),
                **payload,
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):
        with contextlib.suppress(OSError):
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


_BAD_FILE = (OSError, KeyError, EOFError, ValueError, zipfile.BadZipFile, json.JSONDecodeError)


def read_snapshot(
    path: str | os.PathLike[str], *, header_only: bool = False, defer_crc: bool = False
) -> Snapshot:
    """Read a snapshot written by :func:`write_snapshot` (or a legacy flat snapshot).

    ``defer_crc``: the CRC-32 of an hnswlib graph blob (an hnswlib snapshot, or an auto
    one serving hnswlib) runs on a thread while the caller goes on; the caller must call
    :meth:`Snapshot.verify` before it uses what it built (the loaders do, last). Only
    hnswlib's blob: its structure is checked in full before hnswlib reads it
    (``_graph_blob.check_hnsw_blob``), so reading it before its CRC is known is safe;
    faiss's is read only after its CRC.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a semcache index snapshot, or it is corrupt.
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise FileNotFoundError(name)
    try:
        with open(name, "rb") as fh:
            _check_container(fh, os.fstat(fh.fileno()).st_size)
            fh.seek(0)
            loaded = np.load(fh, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz container")
            with loaded as data:
                snap = _parse(data, header_only, name, defer_crc)
            return snap
    except FileNotFoundError:
        raise
    except _BAD_FILE as exc:
        raise ValueError(f"{name!r} is not a semcache index snapshot: {exc}") from exc


#: Arrays read by mapping the file rather than copying it into memory: a graph's native
#: blob (a gigabyte at a million rows), which the loader hands on to the library.
_MAPPED: frozenset[str] = frozenset({"a_blob"})


def _mapped_member(
    path: str, info: zipfile.ZipInfo, pending: list[Callable[[], None]] | None = None
) -> npt.NDArray[Any]:
    """The array of a stored ``.npy`` member, mapped read-only from the file (no copy),
    after its CRC-32 is checked against the zip directory as a read of the member would;
    with ``pending``, the CRC runs on a thread and a check that waits for it is appended
    there instead (on a cold file the CRC is the pass that reads it from disk, which
    then overlaps the caller's work: one ``crc32`` call over the whole map, so the
    thread holds no GIL while it runs).

    Raises:
        ValueError: a bad local header, .npy header or CRC.
    """
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise ValueError(f"member {info.filename!r}: bad local header")
        start = info.header_offset + 30 + int.from_bytes(local[26:28], "little")
        start += int.from_bytes(local[28:30], "little")
        fh.seek(start)
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"member {info.filename!r}: .npy version {version}")
        body = fh.tell()
    if fortran or dtype.hasobject:
        raise ValueError(f"member {info.filename!r} is not a plain C-order array")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if body - start + nbytes != info.file_size:
        raise ValueError(f"member {info.filename!r}: its array does not fill it")
    whole = np.memmap(path, dtype=np.uint8, mode="r", offset=start, shape=(info.file_size,))
    array: npt.NDArray[Any] = whole[body - start :].view(dtype).reshape(shape)
    if pending is None:
        if zlib.crc32(whole.data) != info.CRC:  # the check a read of the member makes
            raise ValueError(f"member {info.filename!r}: bad CRC-32")
        return array
    got: list[int] = []
    thread = threading.Thread(
        target=lambda: got.append(zlib.crc32(whole.data)), name="semcache-crc", daemon=True
    )
    thread.start()

    def check() -> None:
        thread.join()
        if got != [info.CRC]:
            raise ValueError(f"member {info.filename!r}: bad CRC-32")

    pending.append(check)
    return array


#: Temporary snapshot files are named ``<prefix><pid>-<random>.tmp``.
SNAPSHOT_TMP_PREFIX = ".semcache-index-"
#: Members a snapshot holds: kind, backend, header and a few arrays.
_MAX_MEMBERS = 16
#: Header fields a loader trusts only within these bounds (every size a snapshot states
#: is checked before anything is allocated from it): the dimension (the widest models
#: make 12,288), a graph's M and its ef values.
MAX_DIM = 1 << 16
MAX_M = 4096
MAX_EF = 1 << 20


def _check_container(fh: Any, file_size: int) -> None:
    """Refuse a snapshot whose arrays claim more bytes than the file holds, before
    NumPy allocates them: every member stored uncompressed (as ``np.savez`` writes it)
    and inside the file, and every array's shape times its item size within its member.
    So reading a snapshot never allocates more than its size on disk, whatever its
    headers say.

    Raises:
        ValueError: a member that breaks these rules.
    """
    with zipfile.ZipFile(fh) as zf:
        infos = zf.infolist()
        if len(infos) > _MAX_MEMBERS:
            raise ValueError(f"{len(infos)} members (at most {_MAX_MEMBERS})")
        for info in infos:
            if (
                info.compress_type != zipfile.ZIP_STORED
                or info.compress_size != info.file_size
                or info.header_offset + info.compress_size > file_size
                or not info.filename.endswith(".npy")
            ):
                raise ValueError(f"member {info.filename!r} is not a stored .npy array")
            with zf.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    raise ValueError(f"member {info.filename!r}: .npy version {version}")
                if dtype.hasobject:
                    raise ValueError(f"member {info.filename!r} holds Python objects")
                count = 1
                for extent in shape:
                    count *= int(extent)
                if count * dtype.itemsize > info.file_size:
                    raise ValueError(
                        f"member {info.filename!r} claims {shape} {dtype} values, more than "
                        f"its {info.file_size} bytes"
                    )


def bounded_field(snap: Snapshot, name: str, path: str | os.PathLike[str], high: int) -> int:
    """An int header field in ``[1, high]``, or ``ValueError`` naming the file."""
    value = snapshot_field(snap, name, path)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ValueError(f"{os.fspath(path)!r}: snapshot {name} {value!r} out of [1, {high}]")
    return value


def _parse(data: Any, header_only: bool, path: str, defer_crc: bool = False) -> Snapshot:
    kind = str(data["kind"])
    if kind == LEGACY_FLAT_KIND:
        arrays = {} if header_only else {"ids": data["ids"], "vectors": data["vectors"]}
        header = {"dim": int(data["dim"]), "dtype": str(data["vectors"].dtype)}
        return Snapshot("flat", header, arrays)
    if kind != SNAPSHOT_KIND:
        raise ValueError(f"unknown snapshot kind {kind!r}")
    backend = str(data["backend"])
    header = json.loads(str(data["header"]))
    if not isinstance(header, dict):
        raise ValueError("snapshot header is not an object")
    if header_only:
        return Snapshot(backend, header)
    infos = {i.filename: i for i in data.zip.infolist()}
    hnswlib = backend == "hnswlib" or (backend == "auto" and header.get("inner") == "hnswlib")
    pending: list[Callable[[], None]] = []
    later = pending if defer_crc and hnswlib else None
    arrays = {
        k[2:]: _mapped_member(path, infos[k + ".npy"], later) if k in _MAPPED else data[k]
        for k in data.files
        if k.startswith("a_")
    }
    return Snapshot(backend, header, arrays, pending)


def snapshot_array(snap: Snapshot, name: str, path: str | os.PathLike[str]) -> npt.NDArray[Any]:
    """``snap.arrays[name]``, or ``ValueError`` naming the file."""
    try:
        return snap.arrays[name]
    except KeyError:
        raise ValueError(f"{os.fspath(path)!r}: snapshot has no {name!r} array") from None


def snapshot_field(snap: Snapshot, name: str, path: str | os.PathLike[str]) -> Any:
    """``snap.header[name]``, or ``ValueError`` naming the file."""
    try:
        return snap.header[name]
    except KeyError:
        raise ValueError(f"{os.fspath(path)!r}: snapshot header has no {name!r}") from None
