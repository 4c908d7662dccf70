"""Pure-NumPy twin of the native top-k kernel (``_native/_kernel.pyx``).

Same signatures, same results: the ``k`` live rows of ``mat[:n]`` with the largest inner
product with the query, best first, ties broken by the lower row, scores in float32.
Used when the extension is not built or ``SEMCACHE_PURE_PYTHON=1`` is set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["NAME", "configure", "info", "stream_bytes", "topk", "topk_batch"]

NAME = "numpy"

_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)
# float16 rows are widened to float32 in chunks of this many rows during a scan.
_F16_CHUNK = 8192

Rows = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float32]


def info() -> dict[str, Any]:
    """The kernel's name and settings."""
    return {"name": NAME, "simd": "numpy", "max_threads": 1}


def configure(
    *,
    max_threads: int | None = None,
    parallel_min_bytes: int | None = None,
    simd: bool | None = None,
    stream_min_bytes: int | None = None,
) -> None:
    """Accepted for parity with the native kernel; NumPy has nothing to tune here.

    Raises:
        ValueError: a setting below 1.
    """
    if max_threads is not None and max_threads < 1:
        raise ValueError(f"max_threads must be >= 1, got {max_threads}")
    if parallel_min_bytes is not None and parallel_min_bytes < 1:
        raise ValueError(f"parallel_min_bytes must be >= 1, got {parallel_min_bytes}")


def _check(mat: Any, n: int, live: Any, k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not isinstance(mat, np.ndarray) or mat.ndim != 2:
        raise ValueError("mat must be a 2-d numpy array")
    if mat.dtype not in (_F16, _F32):
        raise ValueError(f"mat must be float16 or float32, got {mat.dtype}")
    if not mat.flags.c_contiguous:
        raise ValueError("mat must be C-contiguous")
    if n < 0 or n > mat.shape[0]:
        raise ValueError(f"n must be in [0, {mat.shape[0]}], got {n}")
    if live is None:
        return
    if (
        not isinstance(live, np.ndarray)
        or live.ndim != 1
        or live.itemsize != 1
        or live.dtype.kind not in "bu"
        or not live.flags.c_contiguous
    ):
        raise ValueError("live must be None or a contiguous 1-d bool array")
    if live.shape[0] < n:
        raise ValueError(f"live has {live.shape[0]} flags for {n} rows")


def _scores(mat: npt.NDArray[Any], n: int, q: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``mat[:n] @ q.T`` in float32, shape ``(n, m)``."""
    if mat.dtype == _F32:
        return np.asarray(mat[:n] @ q.T, dtype=np.float32)
    out = np.empty((n, q.shape[0]), dtype=np.float32)
    for lo in range(0, n, _F16_CHUNK):
        hi = min(lo + _F16_CHUNK, n)
        out[lo:hi] = mat[lo:hi].astype(np.float32) @ q.T
    return out


def _select(scores: npt.NDArray[np.float32], rows: Rows, k: int) -> tuple[Rows, Scores]:
    """Best ``k`` of ``scores`` (one query), ties to the lower row, best first."""
    if k < scores.shape[0]:
        part = np.argpartition(-scores, k - 1)[:k]
        kth = scores[part].min()
        above = np.flatnonzero(scores > kth)
        ties = np.flatnonzero(scores == kth)[: k - above.shape[0]]
        pick = np.concatenate([above, ties])
    else:
        pick = np.arange(scores.shape[0])
    # rows ascend with position, so ordering by position breaks ties by row
    order = np.lexsort((pick, -scores[pick]))
    pick = pick[order]
    return rows[pick], scores[pick]


def _run(
    mat: npt.NDArray[Any], n: int, live: Any, q: npt.NDArray[np.float32], k: int
) -> tuple[Rows, Scores]:
    m = q.shape[0]
    if live is None:
        rows = np.arange(n, dtype=np.int64)
    else:
        rows = np.flatnonzero(live[:n]).astype(np.int64)
    kk = min(k, rows.shape[0])
    out_rows = np.empty((m, kk), dtype=np.int64)
    out_scores = np.empty((m, kk), dtype=np.float32)
    if kk == 0:
        return out_rows, out_scores
    scores = _scores(mat, n, q)
    if rows.shape[0] < n:
        scores = scores[rows]
    for i in range(m):
        out_rows[i], out_scores[i] = _select(np.ascontiguousarray(scores[:, i]), rows, kk)
    return out_rows, out_scores


def topk(mat: Any, n: int, live: Any, query: npt.ArrayLike, k: int) -> tuple[Rows, Scores]:
    """Top-``k`` live rows of ``mat[:n]`` by inner product with ``query``, best first.

    Returns ``(rows, scores)``: int64 row numbers and float32 scores, at most
    ``min(k, live rows)`` of each.

    Raises:
        ValueError: ``k < 1`` or arrays of the wrong shape, dtype or layout.
    """
    _check(mat, n, live, k)
    q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
    if q.shape[1] != mat.shape[1]:
        raise ValueError(f"query has dimension {q.shape[1]}, mat has {mat.shape[1]}")
    rows, scores = _run(mat, n, live, q, k)
    return rows[0], scores[0]


def topk_batch(mat: Any, n: int, live: Any, queries: npt.ArrayLike, k: int) -> tuple[Rows, Scores]:
    """:func:`topk` for each row of ``queries``.

    Returns ``(rows, scores)`` of shape ``(len(queries), min(k, live rows))``.

    Raises:
        ValueError: ``k < 1`` or arrays of the wrong shape, dtype or layout.
    """
    _check(mat, n, live, k)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != mat.shape[1]:
        raise ValueError(f"queries must have shape (m, {mat.shape[1]}), got {q.shape}")
    return _run(mat, n, live, q, k)


def stream_bytes(arr: npt.ArrayLike) -> int:
    """Read every byte of ``arr`` once (a benchmark helper: the bandwidth floor)."""
    a = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    words = a[: a.shape[0] // 8 * 8].view(np.uint64)
    return int(np.bitwise_xor.reduce(words)) if words.size else 0
