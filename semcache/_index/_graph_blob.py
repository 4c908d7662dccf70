"""The file side of the graph indexes (see ``_graph``): hnswlib's scratch folder, the
checks of an hnswlib graph blob's upper-level links, and a bounded faiss deserialize."""

from __future__ import annotations

import os
import shutil
import struct
import sys
import tempfile
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["check_upper_links", "deserialize_bounded", "hnsw_scratch"]

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


def check_upper_links(
    blob: npt.NDArray[np.uint8], pos: int, n: int, m: int, max_level: int, entry: int
) -> int:
    """Walk hnswlib's upper-level link lists (per row: a uint32 byte count, then one
    block of a count and ``m`` links per level) and check each against the blob's end,
    ``max_level`` and the rows, so that no search or add reads outside the graph. The
    walk is one pass over the counts; the blocks are checked together.

    Returns:
        The entry point's level.

    Raises:
        ValueError: a list that does not fit or links outside the graph.
    """
    per_level = (m + 1) * 4
    blob = np.ascontiguousarray(blob)
    data = memoryview(blob.data)
    end = blob.shape[0]
    size_at = struct.Struct("<I").unpack_from
    starts: list[int] = []  # the offset of every level block
    entry_level = 0
    try:
        for row in range(n):
            (size,) = size_at(data, pos)
            pos += 4
            if size:
                levels, rest = divmod(size, per_level)
                if rest or pos + size > end or levels > max_level:
                    raise ValueError(f"row {row}'s upper-level links do not fit")
                starts.extend(range(pos, pos + size, per_level))
                if row == entry:
                    entry_level = levels
                pos += size
    except struct.error:
        raise ValueError("the upper-level links end early") from None
    if pos != end:
        raise ValueError("bytes after the last link list")
    if starts:
        at = np.asarray(starts, dtype=np.int64)
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
    return entry_level


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
