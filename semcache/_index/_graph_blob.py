"""The file side of the graph indexes (see ``_graph``): hnswlib's scratch folder, the
checks of an hnswlib graph blob's upper-level links, and a bounded faiss deserialize."""

from __future__ import annotations

import bisect
import os
import shutil
import sys
import tempfile
import threading
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "UpperLinks",
    "check_upper_links",
    "deserialize_bounded",
    "hnsw_scratch",
    "upper_link_bytes",
]

_HNSW_SCRATCH = "semcache-hnsw-"


def hnsw_scratch() -> tempfile.TemporaryDirectory[str]:
    """A temporary folder for hnswlib's file I/O, named with this process's pid; the
    folders of processes that died (SIGKILL leaves a graph-sized file behind) are
    removed first."""
    root = tempfile.gettempdir()
    try:
        with os.scandir(root) as entries:
            names = [e.name for e in entries if e.name.startswith(_HNSW_SCRATCH)]
    except OSError:
        names = []
    for name in names:
        pid = name[len(_HNSW_SCRATCH) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"{_HNSW_SCRATCH}{os.getpid()}-")


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a reused pid counts as alive: kept)."""
    if sys.platform == "win32":  # pragma: no cover - os.kill(pid, 0) sends CTRL_C there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    return True


class UpperLinks(NamedTuple):
    """Where hnswlib's upper-level link lists lie in a graph blob (see
    :func:`check_upper_links`)."""

    #: The entry point's level.
    entry_level: int
    #: The rows that have upper levels, their level counts, and where their lists start
    #: (past the byte count), in row order.
    rows: npt.NDArray[np.int64]
    levels: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]


def check_upper_links(
    blob: npt.NDArray[np.uint8], pos: int, n: int, m: int, max_level: int, entry: int
) -> UpperLinks:
    """Walk hnswlib's upper-level link lists (per row: a uint32 byte count, then one
    block of a count and ``m`` links per level) and check each against the blob's end,
    ``max_level`` and the rows, so that no search or add reads outside the graph. The
    walk is one pass over the counts; the blocks are checked together.

    Returns:
        The entry point's level, and where the rows with upper levels keep them.

    Raises:
        ValueError: a list that does not fit or links outside the graph.
    """
    per_level = (m + 1) * 4
    blob = np.ascontiguousarray(blob)
    end = blob.shape[0]
    if pos > end or (end - pos) % 4:
        raise ValueError("the upper-level links do not fill whole words")
    # Every list is a uint32 byte count and a multiple of 4 bytes, so the section is
    # uint32 words and a row without upper levels is one zero word. The walk jumps over
    # runs of those to the next nonzero word: Python steps only for the rows that have
    # upper levels (about 1 in M), the others are counted.
    words = blob[pos:end].view("<u4")
    total = words.shape[0]
    nonzero = np.flatnonzero(words).tolist()
    rows: list[int] = []
    sizes: list[int] = []
    starts: list[int] = []
    entry_level = 0
    row = i = 0
    while row < n:
        j = bisect.bisect_left(nonzero, i)
        nxt = nonzero[j] if j < len(nonzero) else total
        if row + (nxt - i) >= n:  # the rest of the rows are empty
            i += n - row
            row = n
            break
        if nxt == total:
            raise ValueError("the upper-level links end early")
        row += nxt - i
        i = nxt
        size = int(words[i])
        levels, rest = divmod(size, per_level)
        if rest or pos + 4 * (i + 1) + size > end or levels > max_level:
            raise ValueError(f"row {row}'s upper-level links do not fit")
        rows.append(row)
        sizes.append(size)
        starts.append(pos + 4 * (i + 1))
        if row == entry:
            entry_level = levels
        i += 1 + size // 4
        row += 1
    if i > total:
        raise ValueError("the upper-level links end early")
    if i != total:
        raise ValueError("bytes after the last link list")
    row_arr = np.asarray(rows, dtype=np.int64)
    level_arr = np.asarray(sizes, dtype=np.int64) // per_level
    start_arr = np.asarray(starts, dtype=np.int64)
    if rows:
        at = np.repeat(start_arr, level_arr) + per_level * (
            np.arange(int(level_arr.sum()), dtype=np.int64)
            - np.repeat(np.cumsum(level_arr) - level_arr, level_arr)
        )
        counts = blob[at].astype(np.int64) | (blob[at + 1].astype(np.int64) << 8)
        cells = at[:, None] + 4 + 4 * np.arange(m, dtype=np.int64)[None, :]
        links = (
            blob[cells].astype(np.int64)
            | (blob[cells + 1].astype(np.int64) << 8)
            | (blob[cells + 2].astype(np.int64) << 16)
            | (blob[cells + 3].astype(np.int64) << 24)
        )
        used = np.arange(m)[None, :] < counts[:, None]
        if (counts > m).any() or (links[used] >= n).any():
            raise ValueError("an upper-level link points outside the graph")
    return UpperLinks(entry_level, row_arr, level_arr, start_arr)


def upper_link_bytes(
    blob: npt.NDArray[np.uint8], upper: UpperLinks, m: int
) -> npt.NDArray[np.int8]:
    """The upper-level lists of :class:`UpperLinks` back to back, without their byte
    counts (hnswlib's ``link_lists`` in its pickle state)."""
    per_level = (m + 1) * 4
    if upper.rows.shape[0] == 0:
        return np.zeros(0, dtype=np.int8)
    sizes = upper.levels * per_level
    total = int(sizes.sum())
    offsets = np.cumsum(sizes) - sizes
    at = np.repeat(upper.starts - offsets, sizes) + np.arange(total, dtype=np.int64)
    out: npt.NDArray[np.int8] = np.asarray(blob)[at].view(np.int8)
    return out


_FAISS_LIMIT_LOCK = threading.Lock()


def deserialize_bounded(faiss: Any, blob: npt.NDArray[np.uint8]) -> Any:
    """``faiss.deserialize_index`` with every vector it reads capped at the blob's size
    (faiss >= 1.14.2; its default cap is 1 TB, and a vector is allocated and zeroed
    before its bytes are read), so a blob that claims more than it holds fails fast."""
    setter = getattr(faiss, "set_deserialization_vector_byte_limit", None)
    if setter is None:  # pragma: no cover - older faiss: the header checks only
        return faiss.deserialize_index(blob)
    with _FAISS_LIMIT_LOCK:
        previous = faiss.get_deserialization_vector_byte_limit()
        setter(max(int(blob.shape[0]), 1 << 16))
        try:
            return faiss.deserialize_index(blob)
        finally:
            setter(previous)
