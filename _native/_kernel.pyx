# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Native fused top-k kernel (the twin of ``semcache._index._kernel_py``).

``topk(mat, n, live, query, k)`` returns the rows and float32 scores of the ``k`` rows
among ``mat[:n]`` (float16 or float32, C-contiguous) with the largest inner product with
``query``, skipping rows whose ``live`` flag is false, best first, ties broken by the lower
row. The scan runs without the GIL, with SIMD loops picked at run time and extra threads
only when the matrix is large enough to pay for them. The C code is in
``_kernel_impl.h``.
"""

import os

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int64_t, uint8_t, uint64_t

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


NAME = "native"

_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)


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
