"""Pure-NumPy twin of the native top-k kernel (``_native/_kernel.pyx``).

Same signatures, same results: the ``k`` live rows of ``mat[:n]`` with the largest inner
product with the query, best first, ties broken by the lower row, scores in float32.
Used when the extension is not built or ``SEMCACHE_PURE_PYTHON=1`` is set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "I8_MAX_ABS",
    "I8_MAX_DIM",
    "NAME",
    "bounds_i8",
    "configure",
    "info",
    "quantize_query",
    "quantize_rows",
    "search_i8",
    "stream_bytes",
    "topk",
    "topk_batch",
    "topk_i8",
    "topk_rows",
]

NAME = "numpy"

_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)
# float16 rows are widened to float32 in chunks of this many rows during a scan.
_F16_CHUNK = 8192

Rows = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float32]

#: The int8 path's limits: elements up to 2**40 in magnitude (every bound stays far
#: below float32's range), dimensions up to 65536 (int32 sums of 127 * 127 products).
I8_MAX_ABS = 2.0**40
I8_MAX_DIM = 65536
_I8_TAU = np.float32(2.0**-100)
_I8_CHUNK = 8192
_UP = 1.0 + 2.0**-30


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
    _check_live(live, n)


def _check_live(live: Any, n: int) -> None:
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


# -- the int8 shadow -------------------------------------------------------------------
def _up_f32(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """The least float32 >= ``x (1 + 2**-30)`` (x >= 0), elementwise."""
    x = x * _UP
    f = x.astype(np.float32)
    low = f.astype(np.float64) < x
    f[low] = np.nextafter(f[low], np.float32(np.inf))
    return f


def quantize_rows(
    x: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]] | None:
    """Int8 codes ``(m, d)`` and ``aux`` ``(3, m)`` float32 for float32 rows, or None
    when an element exceeds :data:`I8_MAX_ABS` (or the dimension :data:`I8_MAX_DIM`).

    Per row, as for a query (:func:`quantize_query`): ``delta = float32(max|x| / 127)``,
    codes ``clip(rint(x * (1 / delta)), -127, 127)`` (float64; 0 where ``delta == 0``),
    so ``x^ = delta * codes``; ``aux[0] = delta``, ``aux[1] = up(delta |codes|)`` >=
    ``|x^|`` and ``aux[2] = up(|x - x^|)`` (float64, the squares summed left to right).
    The native kernel's ``quantize_rows`` computes the same bits.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    m, d = x.shape
    codes = np.zeros((m, d), dtype=np.int8)
    aux = np.zeros((3, m), dtype=np.float32)
    if m == 0:
        return codes, aux
    peak = np.abs(x).max(axis=1).astype(np.float64) if d else np.zeros(m)
    if d > I8_MAX_DIM or not (peak <= I8_MAX_ABS).all():
        return None
    delta = (peak / 127.0).astype(np.float32)
    d64 = delta.astype(np.float64)
    inv = np.divide(1.0, d64, out=np.zeros(m), where=d64 > 0)
    x64 = x.astype(np.float64)
    c = np.clip(np.rint(x64 * inv[:, None]), -127.0, 127.0)
    codes[:] = c
    aux[0] = delta
    aux[1] = _up_f32(d64 * np.sqrt(np.einsum("ij,ij->i", c, c)))
    r = x64 - d64[:, None] * c
    aux[2] = _up_f32(np.sqrt(np.cumsum(r * r, axis=1)[:, -1] if d else np.zeros(m)))
    return codes, aux


def quantize_query(
    query: npt.ArrayLike,
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]] | None:
    """The query's int8 codes and float32 constants ``(delta_q, s_q, n_q, tau)``, the
    very values the native kernel computes, or None when out of range.

    ``delta_q = float32(max|q| / 127)``, codes ``e = clip(rint(q * (1 / delta_q)), -127,
    127)`` (float64, half to even);
    in float64, summed left to right: ``sigma = sqrt(sum (q - delta_q e)**2)``,
    ``nq = sqrt(sum q**2)``; with ``eps = (d + 64) 2**-22``:
    ``s_q = up(sigma + eps (nq + sigma))``, ``n_q = up(nq (1 + eps))``, ``tau = 2**-100``.
    """
    q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
    d = q.shape[0]
    peak = float(np.abs(q).max()) if d else 0.0
    if d > I8_MAX_DIM or not peak <= I8_MAX_ABS:
        return None
    dq = np.float32(peak / 127.0)
    q64 = q.astype(np.float64)
    e = np.zeros(d, dtype=np.float64)
    if dq > 0:
        e = np.clip(np.rint(q64 * (1.0 / np.float64(dq))), -127.0, 127.0)
    t = q64 - np.float64(dq) * e
    s2 = float(np.cumsum(t * t)[-1]) if d else 0.0  # left to right, as in C
    n2 = float(np.cumsum(q64 * q64)[-1]) if d else 0.0
    sig, nq = np.sqrt(s2), np.sqrt(n2)
    eps = (d + 64) * 2.0**-22
    consts = np.empty(4, dtype=np.float32)
    consts[0] = dq
    consts[1:3] = _up_f32(np.array([sig + eps * (nq + sig), nq * (1.0 + eps)]))
    consts[3] = _I8_TAU
    return e.astype(np.int8), consts


def _bounds(
    codes: npt.NDArray[np.int8], aux: npt.NDArray[np.float32], n: int, q: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None:
    prepared = quantize_query(q)
    if prepared is None:
        return None
    qc, c = prepared
    dq, sq, qn, tau = (np.float32(v) for v in c)
    dots = np.empty(n, dtype=np.float32)
    qc64 = qc.astype(np.float64)
    for lo in range(0, n, _I8_CHUNK):
        hi = min(lo + _I8_CHUNK, n)
        # integer sums below 2**53 are exact in float64, then rounded once to float32
        dots[lo:hi] = codes[lo:hi].astype(np.float64) @ qc64
    a = aux[0, :n] * (dots * dq)
    err = (aux[1, :n] * sq + aux[2, :n] * qn) + tau
    return a + err, a - err


def bounds_i8(
    codes: Any, aux: Any, n: int, query: npt.ArrayLike
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None:
    """Upper and lower bounds on the float32 score of every row of ``codes[:n]``, or None
    when the query is out of range.

    Float32 operations, each rounded to nearest, no fused multiply-add, with ``D_r`` the
    exact integer sum of code products and the query's constants from
    :func:`quantize_query`: ``a = delta_r * (float32(D_r) * delta_q)``,
    ``err = (w_r * s_q + rho_r * n_q) + tau``, bounds ``a + err`` and ``a - err``
    (see ``_flat.FlatIndex`` for why they hold).

    Raises:
        ValueError: arrays of the wrong shape, dtype or layout.
    """
    _check_i8(codes, aux, n, 1)
    q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
    if q.shape[0] != codes.shape[1]:
        raise ValueError(f"query has dimension {q.shape[0]}, mat has {codes.shape[1]}")
    return _bounds(codes, aux, n, q)


def _check_i8(codes: Any, aux: Any, n: int, k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if (
        not isinstance(codes, np.ndarray)
        or codes.ndim != 2
        or codes.dtype != np.int8
        or not codes.flags.c_contiguous
    ):
        raise ValueError("codes must be a C-contiguous 2-d int8 array")
    if (
        not isinstance(aux, np.ndarray)
        or aux.ndim != 2
        or aux.dtype != _F32
        or not aux.flags.c_contiguous
        or aux.shape[0] != 3
        or aux.shape[1] < codes.shape[0]
    ):
        raise ValueError("aux must be a C-contiguous float32 array of shape (3, rows)")
    if n < 0 or n > codes.shape[0]:
        raise ValueError(f"n must be in [0, {codes.shape[0]}], got {n}")


def _i8_search_setup(
    codes: Any, aux: Any, n: int, live: Any, query: npt.ArrayLike, k: int
) -> (
    tuple[npt.NDArray[np.float32], tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]], Rows]
    | None
):
    """Checked arguments of an int8 search: the query as a float32 vector, every row's
    ``(upper, lower)`` bounds and the live rows; None when the query is out of range.

    Raises:
        ValueError: ``k < 1``, arrays of the wrong shape, dtype or layout, or a query of
            another dimension.
    """
    _check_i8(codes, aux, n, k)
    _check_live(live, n)
    q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
    if q.shape[0] != codes.shape[1]:
        raise ValueError(f"query has dimension {q.shape[0]}, mat has {codes.shape[1]}")
    bounds = _bounds(codes, aux, n, q)
    if bounds is None:
        return None
    rows = np.arange(n, dtype=np.int64) if live is None else np.flatnonzero(live[:n])
    return q, bounds, rows


def topk_i8(
    codes: Any, aux: Any, n: int, live: Any, query: npt.ArrayLike, k: int
) -> tuple[Rows, Scores] | None:
    """Top-``k`` live rows of an int8 shadow by upper bound on their float32 score, best
    first, ties to the lower row, or None when the query is out of range.

    The bounds are those of :func:`bounds_i8`.

    Raises:
        ValueError: ``k < 1`` or arrays of the wrong shape, dtype or layout.
    """
    checked = _i8_search_setup(codes, aux, n, live, query, k)
    if checked is None:
        return None
    _, (ub, _), rows = checked
    kk = min(k, rows.shape[0])
    if kk == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    if rows.shape[0] < n:
        ub = ub[rows]
    return _select(np.ascontiguousarray(ub), rows.astype(np.int64), kk)


def topk_rows(mat: Any, rows: npt.ArrayLike, query: npt.ArrayLike, k: int) -> tuple[Rows, Scores]:
    """Top-``k`` of the given rows of ``mat`` by inner product with ``query``, best
    first, ties to the lower row (a rescore).

    Raises:
        ValueError: ``k < 1``, a row out of range, or arrays of the wrong shape, dtype or
            layout.
    """
    _check(mat, mat.shape[0] if isinstance(mat, np.ndarray) and mat.ndim == 2 else 0, None, k)
    idx = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
    if idx.shape[0] and (idx.min() < 0 or idx.max() >= mat.shape[0]):
        raise ValueError("rows out of range")
    q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
    if q.shape[1] != mat.shape[1]:
        raise ValueError(f"query has dimension {q.shape[1]}, mat has {mat.shape[1]}")
    kk = min(k, idx.shape[0])
    if kk == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    order = np.argsort(idx, kind="stable")  # _select breaks ties by position
    idx = idx[order]
    scores = _scores(mat[idx], idx.shape[0], q)[:, 0]
    return _select(np.ascontiguousarray(scores), idx, kk)


def search_i8(
    codes: Any,
    aux: Any,
    mat: Any,
    n: int,
    live: Any,
    query: npt.ArrayLike,
    k: int,
    max_candidates: int,
) -> tuple[Rows, Scores, int] | None:
    """The float32 top-``k`` of ``mat[:n]`` through its int8 shadow.

    The candidates are the live rows whose upper bound reaches the k-th largest lower
    bound; they are rescored from ``mat`` (the native kernel stops early once the next
    upper bound is below the k-th score: the same hits). Returns ``(rows, scores,
    candidates)``, or None when more than ``max_candidates`` rows are candidates or the
    query is out of range.

    Raises:
        ValueError: ``k < 1`` or arrays of the wrong shape, dtype or layout.
    """
    if (
        not isinstance(mat, np.ndarray)
        or mat.ndim != 2
        or mat.dtype != _F32
        or not mat.flags.c_contiguous
        or mat.shape[0] < n
        or mat.shape[1] != codes.shape[1]
    ):
        raise ValueError("mat must be a C-contiguous float32 array matching the codes")
    checked = _i8_search_setup(codes, aux, n, live, query, k)
    if checked is None:
        return None
    q, (up, low), rows = checked
    kk = min(k, rows.shape[0])
    if kk == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), 0
    floor = np.partition(low[rows], rows.shape[0] - kk)[rows.shape[0] - kk]
    cand = rows[up[rows] >= floor]
    if cand.shape[0] > max_candidates:
        return None
    top, scores = topk_rows(mat, cand, q, kk)
    return top, scores, int(cand.shape[0])
