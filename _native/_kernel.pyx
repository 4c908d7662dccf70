# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Native fused top-k kernel (the twin of ``semcache._index._kernel_py``).

``topk(mat, n, live, query, k)`` returns the rows and float32 scores of the ``k`` rows
among ``mat[:n]`` (float16 or float32, C-contiguous) with the largest inner product with
``query``, skipping rows whose ``live`` flag is false, best first, ties broken by the lower
row. The scan runs without the GIL, with SIMD loops picked at run time and extra threads
only when the matrix is large enough to pay for them. The C code is in
``_kernel_impl.h``.

``topk_i8`` scans an int8 shadow (codes plus per-row scale and error terms, see
``_kernel_py.quantize_rows``) and ranks rows by an upper bound on their float32 score;
``topk_rows`` rescores chosen rows of a float matrix in place.
"""

import os

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int8_t, int64_t, uint8_t, uint64_t

cnp.import_array()


cdef extern from "_kernel_impl.h" nogil:
    int sc_simd_enabled
    int sc_max_threads
    int64_t sc_parallel_min_bytes
    int64_t sc_stream_min_bytes
    int sc_cpu_has_avx2()
    const char *sc_simd_name()
    int64_t sc_topk(const void *mat, int is_f16, int64_t n, int64_t d, const uint8_t *live,
                    const float *queries, int64_t nq, int64_t k, int64_t *out_rows,
                    float *out_scores)
    uint64_t sc_stream(const void *p, int64_t nbytes)
    int64_t sc_topk_i8(const int8_t *codes, const float *aux, int64_t stride, int64_t n,
                       int64_t d, const uint8_t *live, const float *q, int64_t k,
                       int64_t *out_rows, float *out_scores)
    int64_t sc_topk_rows(const void *mat, int is_f16, int64_t d, const int64_t *idx,
                         int64_t m, const float *q, int64_t k, int64_t *out_rows,
                         float *out_scores)
    int sc_i8_query(const float *q, int64_t d, int8_t *qc, uint8_t *qm, float *c)
    int sc_i8_quantize_rows(const float *x, int64_t m, int64_t d, int8_t *codes, float *aux,
                            int64_t stride)
    int64_t sc_search_i8(const int8_t *codes, const float *aux, int64_t stride, int64_t n,
                         int64_t d, const uint8_t *live, const float *mat, const float *q,
                         int64_t k, int64_t max_cand, int64_t *out_rows, float *out_scores,
                         int64_t *ncand, int64_t *nrescored)
    int sc_bounds_i8(const int8_t *codes, const float *aux, int64_t stride, int64_t n,
                     int64_t d, const float *q, float *up, float *low)


NAME = "native"

_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)
_I8 = np.dtype(np.int8)
_I64 = np.dtype(np.int64)


def _default_threads():
    env = os.environ.get("SEMCACHE_KERNEL_THREADS", "")
    if env.strip().isdigit():
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


sc_max_threads = min(_default_threads(), 64)
if os.environ.get("SEMCACHE_KERNEL_SIMD") == "0":
    sc_simd_enabled = 0


def info():
    """The kernel's name and run-time settings."""
    return {
        "name": NAME,
        "simd": sc_simd_name().decode("ascii"),
        "cpu_has_avx2": bool(sc_cpu_has_avx2()),
        "max_threads": sc_max_threads,
        "parallel_min_bytes": sc_parallel_min_bytes,
        "stream_min_bytes": sc_stream_min_bytes,
    }


def configure(*, max_threads=None, parallel_min_bytes=None, simd=None, stream_min_bytes=None):
    """Change the threading and SIMD settings for later calls (process-wide).

    ``max_threads``: the most threads one scan may use (1 disables threading).
    ``parallel_min_bytes``: matrix bytes each thread must have to scan before another
    thread is started. ``simd``: False forces the portable loops.
    ``stream_min_bytes``: single-query scans of at least this many bytes use the
    one-row streaming loops (DRAM-bound), smaller ones the four-row loops (cache-bound).
    """
    global sc_max_threads, sc_parallel_min_bytes, sc_simd_enabled, sc_stream_min_bytes
    if max_threads is not None:
        if max_threads < 1:
            raise ValueError(f"max_threads must be >= 1, got {max_threads}")
        sc_max_threads = min(int(max_threads), 64)
    if parallel_min_bytes is not None:
        if parallel_min_bytes < 1:
            raise ValueError(f"parallel_min_bytes must be >= 1, got {parallel_min_bytes}")
        sc_parallel_min_bytes = int(parallel_min_bytes)
    if simd is not None:
        sc_simd_enabled = 1 if simd else 0
    if stream_min_bytes is not None:
        if stream_min_bytes < 0:
            raise ValueError(f"stream_min_bytes must be >= 0, got {stream_min_bytes}")
        sc_stream_min_bytes = int(stream_min_bytes)


cdef object _check_matrix(object mat, Py_ssize_t n):
    if not isinstance(mat, np.ndarray) or mat.ndim != 2:
        raise ValueError("mat must be a 2-d numpy array")
    if mat.dtype != _F16 and mat.dtype != _F32:
        raise ValueError(f"mat must be float16 or float32, got {mat.dtype}")
    if not mat.flags.c_contiguous:
        raise ValueError("mat must be C-contiguous")
    if n < 0 or n > mat.shape[0]:
        raise ValueError(f"n must be in [0, {mat.shape[0]}], got {n}")
    return mat


cdef object _check_live(object live, Py_ssize_t n):
    if live is None:
        return None
    if (not isinstance(live, np.ndarray) or live.ndim != 1 or live.itemsize != 1
            or live.dtype.kind not in "bu" or not live.flags.c_contiguous):
        raise ValueError("live must be None or a contiguous 1-d bool array")
    if live.shape[0] < n:
        raise ValueError(f"live has {live.shape[0]} flags for {n} rows")
    return live


cdef tuple _run(object mat, Py_ssize_t n, object live, object queries, Py_ssize_t k):
    cdef cnp.ndarray m = mat
    cdef cnp.ndarray q = queries
    cdef Py_ssize_t nq = q.shape[0]
    cdef Py_ssize_t d = m.shape[1]
    cdef Py_ssize_t kk = min(k, n)
    cdef cnp.ndarray rows = np.empty((nq, kk), dtype=np.int64)
    cdef cnp.ndarray scores = np.empty((nq, kk), dtype=np.float32)
    cdef const void *mp = cnp.PyArray_DATA(m)
    cdef const float *qp = <const float *>cnp.PyArray_DATA(q)
    cdef const uint8_t *lp = NULL
    cdef int is_f16 = m.dtype == _F16
    cdef int64_t *rp = <int64_t *>cnp.PyArray_DATA(rows)
    cdef float *sp = <float *>cnp.PyArray_DATA(scores)
    cdef int64_t found
    if live is not None:
        lp = <const uint8_t *>cnp.PyArray_DATA(<cnp.ndarray>live)
    if kk == 0 or nq == 0:
        return rows, scores
    with nogil:
        found = sc_topk(mp, is_f16, n, d, lp, qp, nq, kk, rp, sp)
    if found < 0:
        raise MemoryError("semcache kernel: out of memory")
    if found < kk:
        rows = rows[:, :found]
        scores = scores[:, :found]
    return rows, scores


def topk(mat, Py_ssize_t n, live, query, Py_ssize_t k):
    """Top-``k`` live rows of ``mat[:n]`` by inner product with ``query``, best first.

    Returns ``(rows, scores)``: int64 row numbers and float32 scores, at most
    ``min(k, live rows)`` of each.

    Raises:
        ValueError: ``k < 1`` or arrays of the wrong shape, dtype or layout.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    _check_matrix(mat, n)
    live = _check_live(live, n)
    q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
    if q.shape[1] != mat.shape[1]:
        raise ValueError(f"query has dimension {q.shape[1]}, mat has {mat.shape[1]}")
    rows, scores = _run(mat, n, live, q, k)
    return rows[0], scores[0]


def topk_batch(mat, Py_ssize_t n, live, queries, Py_ssize_t k):
    """:func:`topk` for each row of ``queries`` in one pass over the matrix.

    Returns ``(rows, scores)`` of shape ``(len(queries), min(k, live rows))``.

    Raises:
        ValueError: ``k < 1`` or arrays of the wrong shape, dtype or layout.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    _check_matrix(mat, n)
    live = _check_live(live, n)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != mat.shape[1]:
        raise ValueError(f"queries must have shape (m, {mat.shape[1]}), got {q.shape}")
    return _run(mat, n, live, q, k)


def stream_bytes(arr):
    """Read every byte of a C-contiguous array once, threaded like :func:`topk`.

    A benchmark helper: its time is the memory-bandwidth floor of a scan.
    """
    cdef cnp.ndarray a = np.ascontiguousarray(arr)
    cdef const void *p = cnp.PyArray_DATA(a)
    cdef int64_t nbytes = a.nbytes
    cdef uint64_t acc
    with nogil:
        acc = sc_stream(p, nbytes)
    return int(acc)


def _query(query, Py_ssize_t d):
    q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
    if q.shape[0] != d:
        raise ValueError(f"query has dimension {q.shape[0]}, mat has {d}")
    return q


cdef object _check_shadow(object codes, object aux, Py_ssize_t n):
    if (not isinstance(codes, np.ndarray) or codes.ndim != 2 or codes.dtype != _I8
            or not codes.flags.c_contiguous):
        raise ValueError("codes must be a C-contiguous 2-d int8 array")
    if (not isinstance(aux, np.ndarray) or aux.ndim != 2 or aux.dtype != _F32
            or not aux.flags.c_contiguous or aux.shape[0] != 3 or aux.shape[1] < codes.shape[0]):
        raise ValueError("aux must be a C-contiguous float32 array of shape (3, rows)")
    if n < 0 or n > codes.shape[0]:
        raise ValueError(f"n must be in [0, {codes.shape[0]}], got {n}")


def topk_i8(codes, aux, Py_ssize_t n, live, query, Py_ssize_t k):
    """Top-``k`` live rows of an int8 shadow by upper bound on their float32 score.

    ``codes``: int8 ``(rows, d)``; ``aux``: float32 ``(3, rows)`` (scale, |x^|, |x - x^|
    per row), both C-contiguous, as ``_kernel_py.quantize_rows`` makes them. Returns
    ``(rows, bounds)`` best first, ties to the lower row, or None when the query is out
    of the int8 path's range (scan float32 instead).

    Raises:
        ValueError: ``k < 1`` or arrays of the wrong shape, dtype or layout.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    _check_shadow(codes, aux, n)
    live = _check_live(live, n)
    cdef cnp.ndarray q = _query(query, codes.shape[1])
    cdef cnp.ndarray c = codes
    cdef cnp.ndarray a = aux
    cdef Py_ssize_t kk = min(k, n)
    cdef cnp.ndarray rows = np.empty(kk, dtype=np.int64)
    cdef cnp.ndarray scores = np.empty(kk, dtype=np.float32)
    cdef const int8_t *cp = <const int8_t *>cnp.PyArray_DATA(c)
    cdef const float *ap = <const float *>cnp.PyArray_DATA(a)
    cdef const float *qp = <const float *>cnp.PyArray_DATA(q)
    cdef const uint8_t *lp = NULL
    cdef int64_t *rp = <int64_t *>cnp.PyArray_DATA(rows)
    cdef float *sp = <float *>cnp.PyArray_DATA(scores)
    cdef int64_t stride = a.shape[1]
    cdef int64_t d = c.shape[1]
    cdef int64_t found
    if live is not None:
        lp = <const uint8_t *>cnp.PyArray_DATA(<cnp.ndarray>live)
    if kk == 0:
        return rows, scores
    with nogil:
        found = sc_topk_i8(cp, ap, stride, n, d, lp, qp, kk, rp, sp)
    if found == -2:
        return None
    if found < 0:
        raise MemoryError("semcache kernel: out of memory")
    if found < kk:
        rows = rows[:found]
        scores = scores[:found]
    return rows, scores


def search_i8(codes, aux, mat, Py_ssize_t n, live, query, Py_ssize_t k,
              Py_ssize_t max_candidates):
    """The float32 top-``k`` of ``mat[:n]`` through its int8 shadow, in one pass.

    Rows whose upper bound reaches the k-th best lower bound are the candidates; they
    are rescored from ``mat`` (float32) in order of upper bound, stopping once the next
    bound is below the k-th score. Returns ``(rows, scores, candidates)``, rows and
    scores as :func:`topk` on ``mat`` gives them, or None when more than
    ``max_candidates`` rows are candidates (scan float32 instead) or the query is out
    of range.

    Raises:
        ValueError: ``k < 1`` or arrays of the wrong shape, dtype or layout.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    _check_shadow(codes, aux, n)
    if (not isinstance(mat, np.ndarray) or mat.ndim != 2 or mat.dtype != _F32
            or not mat.flags.c_contiguous or mat.shape[0] < n or mat.shape[1] != codes.shape[1]):
        raise ValueError("mat must be a C-contiguous float32 array matching the codes")
    live = _check_live(live, n)
    cdef cnp.ndarray q = _query(query, codes.shape[1])
    cdef cnp.ndarray c = codes
    cdef cnp.ndarray a = aux
    cdef cnp.ndarray m = mat
    cdef Py_ssize_t kk = min(k, n)
    cdef cnp.ndarray rows = np.empty(kk, dtype=np.int64)
    cdef cnp.ndarray scores = np.empty(kk, dtype=np.float32)
    cdef const int8_t *cp = <const int8_t *>cnp.PyArray_DATA(c)
    cdef const float *ap = <const float *>cnp.PyArray_DATA(a)
    cdef const float *mp = <const float *>cnp.PyArray_DATA(m)
    cdef const float *qp = <const float *>cnp.PyArray_DATA(q)
    cdef const uint8_t *lp = NULL
    cdef int64_t *rp = <int64_t *>cnp.PyArray_DATA(rows)
    cdef float *sp = <float *>cnp.PyArray_DATA(scores)
    cdef int64_t stride = a.shape[1]
    cdef int64_t d = c.shape[1]
    cdef int64_t found, ncand = 0, nres = 0
    if live is not None:
        lp = <const uint8_t *>cnp.PyArray_DATA(<cnp.ndarray>live)
    if kk == 0:
        return rows, scores, 0
    with nogil:
        found = sc_search_i8(cp, ap, stride, n, d, lp, mp, qp, kk, max_candidates, rp, sp,
                             &ncand, &nres)
    if found == -1:
        raise MemoryError("semcache kernel: out of memory")
    if found < 0:
        return None
    if found < kk:
        rows = rows[:found]
        scores = scores[:found]
    return rows, scores, int(ncand)


def bounds_i8(codes, aux, Py_ssize_t n, query):
    """The upper and lower bounds (float32) of every row of ``codes[:n]``, as the scans
    compute them, or None when the query is out of range."""
    _check_shadow(codes, aux, n)
    cdef cnp.ndarray q = _query(query, codes.shape[1])
    cdef cnp.ndarray c = codes
    cdef cnp.ndarray a = aux
    cdef cnp.ndarray up = np.empty(n, dtype=np.float32)
    cdef cnp.ndarray low = np.empty(n, dtype=np.float32)
    cdef int rc
    with nogil:
        rc = sc_bounds_i8(<const int8_t *>cnp.PyArray_DATA(c), <const float *>cnp.PyArray_DATA(a),
                          a.shape[1], n, c.shape[1], <const float *>cnp.PyArray_DATA(q),
                          <float *>cnp.PyArray_DATA(up), <float *>cnp.PyArray_DATA(low))
    if rc == -1:
        raise MemoryError("semcache kernel: out of memory")
    if rc:
        return None
    return up, low


def topk_rows(mat, rows, query, Py_ssize_t k):
    """Top-``k`` of the given rows of ``mat`` (float16/float32) by inner product with
    ``query``, best first, ties to the lower row: a rescore without a gather.

    ``rows``: distinct int64 row numbers below ``len(mat)``.

    Raises:
        ValueError: ``k < 1``, a row out of range, or arrays of the wrong shape, dtype or
            layout.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    _check_matrix(mat, mat.shape[0] if isinstance(mat, np.ndarray) and mat.ndim == 2 else 0)
    cdef cnp.ndarray idx = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
    cdef Py_ssize_t m = idx.shape[0]
    if m and (idx.min() < 0 or idx.max() >= mat.shape[0]):
        raise ValueError("rows out of range")
    cdef cnp.ndarray mm = mat
    cdef cnp.ndarray q = _query(query, mm.shape[1])
    cdef Py_ssize_t kk = min(k, m)
    cdef cnp.ndarray out_rows = np.empty(kk, dtype=np.int64)
    cdef cnp.ndarray out_scores = np.empty(kk, dtype=np.float32)
    cdef const void *mp = cnp.PyArray_DATA(mm)
    cdef const int64_t *ip = <const int64_t *>cnp.PyArray_DATA(idx)
    cdef const float *qp = <const float *>cnp.PyArray_DATA(q)
    cdef int64_t *rp = <int64_t *>cnp.PyArray_DATA(out_rows)
    cdef float *sp = <float *>cnp.PyArray_DATA(out_scores)
    cdef int is_f16 = mm.dtype == _F16
    cdef int64_t d = mm.shape[1]
    if kk == 0:
        return out_rows, out_scores
    with nogil:
        sc_topk_rows(mp, is_f16, d, ip, m, qp, kk, rp, sp)
    return out_rows, out_scores


def quantize_query(query):
    """The int8 codes and float32 constants ``(delta_q, s_q, n_q, tau)`` of a query, as
    :func:`topk_i8` computes them, or None when it is out of range."""
    cdef cnp.ndarray q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
    cdef int64_t d = q.shape[0]
    cdef cnp.ndarray qc = np.empty(d, dtype=np.int8)
    cdef cnp.ndarray qm = np.empty(d, dtype=np.uint8)
    cdef cnp.ndarray c = np.empty(4, dtype=np.float32)
    if sc_i8_query(<const float *>cnp.PyArray_DATA(q), d, <int8_t *>cnp.PyArray_DATA(qc),
                   <uint8_t *>cnp.PyArray_DATA(qm), <float *>cnp.PyArray_DATA(c)):
        return None
    return qc, c


def quantize_rows(x):
    """Int8 codes ``(m, d)`` and ``aux`` ``(3, m)`` of float32 rows, the very values
    ``_kernel_py.quantize_rows`` computes, or None when out of range."""
    cdef cnp.ndarray xa = np.ascontiguousarray(x, dtype=np.float32)
    if xa.ndim != 2:
        raise ValueError("x must be 2-d")
    cdef int64_t m = xa.shape[0]
    cdef int64_t d = xa.shape[1]
    cdef cnp.ndarray codes = np.empty((m, d), dtype=np.int8)
    cdef cnp.ndarray aux = np.empty((3, m), dtype=np.float32)
    cdef int rc
    with nogil:
        rc = sc_i8_quantize_rows(<const float *>cnp.PyArray_DATA(xa), m, d,
                                 <int8_t *>cnp.PyArray_DATA(codes),
                                 <float *>cnp.PyArray_DATA(aux), m)
    if rc:
        return None
    return codes, aux
