"""The file side of the graph indexes (see ``_graph``): hnswlib's scratch folder, the
checks of an hnswlib graph blob's upper-level links, and a bounded faiss deserialize."""

from __future__ import annotations

import bisect
import os
import shutil
import struct
import sys
import tempfile
import threading
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ._common import MAX_EF

__all__ = [
    "HNSW_HEADER",
    "HnswLayout",
    "UpperLinks",
    "check_hnsw_blob",
    "check_upper_links",
    "deserialize_bounded",
    "hnsw_scratch",
    "hnsw_state",
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


#: hnswlib's file header: offsetLevel0, max_elements, cur_element_count,
#: size_data_per_element, label_offset, offsetData (size_t), maxlevel (int),
#: enterpoint_node (uint32), maxM, maxM0, M (size_t), mult (double), ef_construction.
HNSW_HEADER = struct.Struct("<6QiI3QdQ")


class HnswLayout(NamedTuple):
    """Where an hnswlib blob keeps its parts (found by :func:`check_hnsw_blob`)."""

    head: tuple[Any, ...]  # the header's fields, in HNSW_HEADER's order
    start: int  # the level-0 block's offset
    upper: UpperLinks


def check_hnsw_blob(blob: npt.NDArray[np.uint8], n: int, dim: int, m: int) -> HnswLayout:
    """Refuse an hnswlib blob whose header disagrees with the snapshot's rows, ``dim``
    and ``M`` or claims more bytes than it holds, or whose links point outside the
    graph, before hnswlib reads it; return where its parts lie.

    Raises:
        ValueError: it does.
        struct.error: the header is cut short.
    """
    # hnswlib sizes its arrays by this header (max_elements when the count exceeds the
    # capacity given); every size is checked against the snapshot's rows, dim and M,
    # the level-0 links (count and neighbours) and the upper levels against the rows.
    head = HNSW_HEADER.unpack(blob[: HNSW_HEADER.size].tobytes())
    (off0, _, count, per, label_off, data_off, max_level, entry, max_m, max_m0, mm, _, efc) = head
    links0 = (2 * m + 1) * 4
    expected = (0, n, links0 + dim * 4 + 8, links0 + dim * 4, links0, m, 2 * m)
    if (off0, count, per, label_off, data_off, max_m, max_m0) != expected or mm != m:
        raise ValueError("header does not match the snapshot's rows, dim or M")
    if efc > MAX_EF or not -1 <= max_level <= 64:
        raise ValueError("header parameters out of range")
    if (n == 0) != (entry == 0xFFFFFFFF) or (n and entry >= n):
        raise ValueError("entry point out of range")
    start = HNSW_HEADER.size
    if start + n * per > blob.shape[0]:
        raise ValueError(f"{n} rows of {per} bytes do not fit in {blob.shape[0]}")
    level0 = blob[start : start + n * per].reshape(n, per)
    sizes = level0[:, 0:2].copy().view(np.uint16).reshape(n)
    if (sizes > 2 * m).any():
        raise ValueError("a level-0 link points outside the graph")
    links = level0[:, 4:links0].view(np.uint32)  # (n, 2M), read in place
    # hnswlib zeroes a new row's links and only ever writes ids below its count there,
    # so a slot past a row's size holds 0 or a once-valid id: the maximum over all
    # slots settles it in one pass; only a larger one needs the exact check
    if n and int(links.max()) >= n:
        used = np.arange(2 * m) < sizes[:, None].astype(np.int64)
        if (links[used] >= n).any():
            raise ValueError("a level-0 link points outside the graph")
    upper = check_upper_links(blob, start + n * per, n, m, max_level, entry)
    if n and upper.entry_level != max_level:
        raise ValueError(
            f"the entry point has {upper.entry_level} levels, the header says {max_level}"
        )
    return HnswLayout(head, start, upper)


def hnsw_state(blob: npt.NDArray[np.uint8], n: int, layout: HnswLayout, m: int) -> dict[str, Any]:
    """The graph's part of hnswlib's pickle state (``Index.__getstate__``), taken from
    the blob in place (the level-0 block is a view of it, not a copy)."""
    (_, _, _, per, label_off, data_off, max_level, entry, max_m, max_m0, mm, mult, efc) = (
        layout.head
    )
    start, upper = layout.start, layout.upper
    level0 = blob[start : start + n * per]
    labels = level0.reshape(n, per)[:, label_off : label_off + 8].copy().view("<u8").reshape(n)
    levels = np.zeros(n, dtype=np.int32)
    levels[upper.rows] = upper.levels
    return {
        "cur_element_count": n,
        "ep_added": n > 0,
        "offset_level0": 0,
        "size_data_per_element": per,
        "label_offset": label_off,
        "offset_data": data_off,
        "max_level": max_level,
        "enterpoint_node": entry,
        "max_M": max_m,
        "max_M0": max_m0,
        "M": mm,
        "mult": mult,
        "ef_construction": efc,
        "has_deletions": True,  # counts the marks in the level-0 block
        "allow_replace_deleted": False,
        "label_lookup_external": np.ascontiguousarray(labels, dtype=np.uint64),
        "label_lookup_internal": np.arange(n, dtype=np.uint32),
        "element_levels": levels,
        "data_level0": level0.view(np.int8),
        "link_lists": upper_link_bytes(blob, upper, m),
    }


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
