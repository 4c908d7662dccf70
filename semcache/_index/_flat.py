"""Exact brute-force index over a growable row-major matrix, scanned by the fused top-k
kernel (native when built, NumPy otherwise): the reference every other backend is
tested against."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ._base import IdArray, ScoreArray
from ._common import (
    MAX_DIM,
    RowIndexBase,
    RowTable,
    bounded_field,
    check_dim,
    check_dtype,
    check_k,
    prepare_add,
    prepare_queries,
    prepare_query,
    read_snapshot,
    snapshot_array,
    write_snapshot,
)
from ._kernel import Kernel, get_kernel

__all__ = ["FlatIndex", "Reader"]

#: A search over a fixed view of an index (see :meth:`FlatIndex.reader`).
Reader = Callable[[npt.ArrayLike, int], tuple[IdArray, ScoreArray]]

#: A float32 matrix at least this large gets an int8 shadow (``shadow=None``).
SHADOW_MIN_BYTES = 4 << 20
#: More than live rows // this many candidates: scan float32 instead of rescoring.
_SHADOW_MAX_SHARE = 4


class FlatIndex(RowIndexBase):
    """Brute-force inner-product index over a growable row-major matrix.

    Rows are appended; removal flips a live bit (a tombstone) and :meth:`compact`
    rewrites the matrix at its live size, by itself once the tombstones reach
    ``max(live rows, 1024)`` (see ``_common.compaction_due``). ``dtype`` is float32 or
    float16 (half the memory; scores stay within about 1e-3 of float32); scores are
    always accumulated in float32. ``kernel`` picks the scan: ``"native"``, ``"numpy"``,
    or None for the active one (see :func:`semcache._index.kernel_name`).

    A float32 index may keep an int8 *shadow* of its matrix (``shadow``: True, False, or
    None for "once the matrix reaches :data:`SHADOW_MIN_BYTES`"): per row ``r`` a scale
    ``delta_r = max|x_r| / 127`` and codes ``c_r = round(x_r / delta_r)``, so
    ``x^_r = delta_r c_r``, with ``w_r >= |x^_r|`` and ``rho_r >= |x_r - x^_r|``
    (Euclidean norms, computed in float64 and rounded up; 12 bytes per row). A search
    quantizes the query the same way (``q^ = delta_q e``, ``sigma_q = |q - q^|``) and the
    kernel scores each row with an *upper bound* on its float32 score:

        x_r . q = x^_r . q^ + (x_r - x^_r) . q + x^_r . (q - q^)
               <= delta_r delta_q (c_r . e) + rho_r |q| + w_r sigma_q       (Cauchy-Schwarz)

    ``c_r . e`` is an exact int32 sum. A float32 kernel's score ``s_r`` is within
    ``gamma_d sum_i |x_ri q_i| <= gamma_d (w_r + rho_r) |q|`` of ``x_r . q``
    (``gamma_d = d u / (1 - d u)``, ``u = 2**-24``, any summation order, fused or not),
    and evaluating the bound in float32 (six roundings) errs by at most ``7u`` times
    the sum of its terms' magnitudes, itself at most ``w_r (|q| + sigma_q) + ...``
    since ``|x^_r . q^| <= w_r |q^|``. Both slacks are covered by inflating the query's
    constants by ``eps = (d + 64) 2**-22 >= 4 (gamma_d + 4u)``: the kernel uses
    ``s_q = sigma_q + eps (|q| + sigma_q)`` and ``n_q = |q| (1 + eps)`` (rounded up),
    plus ``tau = 2**-100`` for underflow. So every row's float32 score lies between its
    bounds ``lb_r <= s_r <= ub_r`` (``_kernel_py.topk_i8`` spells out the operations).

    The search (``search_i8``) makes one pass over the shadow and keeps the ``k`` largest
    lower bounds; their least, the *floor*, is at most the k-th float32 score. A row
    whose upper bound is below the floor can neither beat nor tie the k-th result; every
    other row is a candidate. Candidates are rescored from the float32 rows in order of
    upper bound, stopping once the next upper bound is below the k-th score so far. So
    the rescored top-k *is* the float32 top-k (ties to the lower row). The native
    kernel rescores each row in the order a plain scan of the same matrix sums it, so its
    ids and scores are a plain scan's to the last bit; the NumPy twin's matrix products
    sum as BLAS pleases, so there rows whose scores differ only by the order of
    summation (a unit in the last place) may trade places. Past a quarter
    of the live rows as candidates, the search scans float32 instead. The shadow costs a
    quarter of the matrix again plus 12 bytes a row; elements beyond ``2**40`` in
    magnitude drop it (a query beyond that scans float32).

    Raises:
        ConfigurationError: ``dim < 1``, a dtype other than float32/float16, or an
            unknown or unbuilt kernel (``ConfigurationError`` is a ``ValueError``).
    """

    backend = "flat"

    def __init__(
        self,
        dim: int,
        *,
        dtype: npt.DTypeLike = np.float32,
        capacity: int = 64,
        kernel: str | None = None,
        shadow: bool | None = None,
    ) -> None:
        self._dim = check_dim(dim)
        self._dtype = check_dtype(dtype)
        self._kernel: Kernel = get_kernel(kernel)
        self._rows = RowTable(capacity)
        self._mat = np.zeros((self._rows.capacity, self._dim), dtype=self._dtype)
        self._closed = False
        self._shadow_mode = None if shadow is None else bool(shadow)
        # the int8 shadow: codes (capacity, dim) and aux (3, capacity), rows [:n] mirror
        # self._mat (see the class docstring)
        self._codes: npt.NDArray[np.int8] | None = None
        self._aux: npt.NDArray[np.float32] | None = None

    @classmethod
    def from_options(cls, dim: int, dtype: npt.DTypeLike, options: Mapping[str, Any]) -> FlatIndex:
        """Build from ``make_index`` options (``kernel``)."""
        from ._common import parse_options

        opts = parse_options("flat", options, ("kernel", "shadow"))
        return cls(dim, dtype=dtype, kernel=opts.get("kernel"), shadow=opts.get("shadow"))

    # -- properties -------------------------------------------------------------------
    @property
    def kernel_name(self) -> str:
        """``"native"`` or ``"numpy"``: which kernel scans this index."""
        return self._kernel.NAME

    @property
    def shadowed(self) -> bool:
        """Whether searches scan an int8 shadow of the float32 matrix."""
        return self._codes is not None

    @property
    def nbytes(self) -> int:
        """Bytes held by vectors (the shadow included), ids and flags (allocated
        capacity included)."""
        self._check_open()
        shadow = 0
        if self._codes is not None and self._aux is not None:
            shadow = self._codes.nbytes + self._aux.nbytes
        return int(self._mat.nbytes + shadow + self._rows.ids.nbytes + self._rows.live.nbytes)

    # -- mutation ---------------------------------------------------------------------
    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add rows; an id already present is replaced (its old row is tombstoned).

        Raises:
            CacheClosedError: the index is closed.
            DimensionMismatchError: vectors of another dimension.
            InvalidEmbeddingError: not 2-d, or ids and vectors of different lengths.
        """
        self._check_open()
        id_arr, vecs = prepare_add(ids, vectors, self._dim)
        if id_arr.shape[0] == 0:
            return
        if self._rows.remove(id_arr):
            self._maybe_compact()  # before growing: replaced rows may make room
        start, stop = self._rows.n, self._rows.n + id_arr.shape[0]
        self._reserve(stop)
        self._mat[start:stop] = vecs
        self._rows.append(id_arr)
        if self._codes is not None and self._aux is not None:
            quantized = self._kernel.quantize_rows(self._mat[start:stop])
            if quantized is None:  # beyond the int8 path's range: drop the shadow
                self._codes, self._aux, self._shadow_mode = None, None, False
            else:
                self._codes[start:stop], self._aux[:, start:stop] = quantized
        else:
            self._maybe_shadow()

    def remove(self, ids: npt.ArrayLike) -> int:
        """Tombstone the live ones among ``ids``; return how many.

        Raises:
            CacheClosedError: the index is closed.
        """
        self._check_open()
        removed = len(self._rows.remove(ids))
        if removed:
            self._maybe_compact()
        return removed

    def compact(self) -> int:
        """Rewrite the matrix at its live size; return the tombstones reclaimed.

        Raises:
            CacheClosedError: the index is closed.
        """
        self._check_open()
        return self._compact(spare=False)

    def _auto_compact(self) -> None:
        # Leave room for as many rows again: a full cache's next cycle of puts then
        # appends without growing (one copy per cycle, not a compaction and a growth).
        self._compact(spare=True)

    def _compact(self, *, spare: bool) -> int:
        reclaimed = self._rows.tombstones
        if reclaimed == 0:
            return 0
        rows = self._rows.live_rows()
        live = rows.shape[0]
        cap = max(64, 2 * live if spare else live)
        mat = np.zeros((cap, self._dim), dtype=self._dtype)
        mat[:live] = self._mat[rows]
        self._rows.reset(self._rows.ids[rows], cap)
        if self._codes is not None and self._aux is not None:
            codes = np.zeros((cap, self._dim), dtype=np.int8)
            codes[:live] = self._codes[rows]
            aux = np.zeros((3, cap), dtype=np.float32)
            aux[:, :live] = self._aux[:, rows]
            self._codes, self._aux = codes, aux
        self._mat = mat
        return reclaimed

    # -- search -----------------------------------------------------------------------
    def search(self, query: npt.ArrayLike, k: int) -> tuple[IdArray, ScoreArray]:
        """The ``min(k, len(self))`` live ids with the largest inner product, best first.

        Raises:
            CacheClosedError: the index is closed.
            ValueError: ``k < 1``.
            DimensionMismatchError: a query of another dimension.
        """
        self._check_open()
        check_k(k)
        q = prepare_query(query, self._dim)
        t = self._rows
        count = t.live_count
        live = t.live if count < t.n else None
        return _scan(self._kernel, self._mat, self._codes, self._aux, t.ids, t.n, live, count, q, k)

    def reader(self) -> Reader:
        """A :meth:`search` over the rows as they are now that may run while the index
        changes (in another thread, without the caller's lock): it holds the arrays the
        scan reads, which no later call writes below row ``n`` (rows are appended past
        it; growth and compaction make new arrays), and a copy of the live flags (a
        removal flips them in place). So it answers as :meth:`search` did when this was
        called; an id it returns may have been removed since.

        Raises:
            CacheClosedError: the index is closed.
        """
        self._check_open()
        t = self._rows
        n, count, dim = t.n, t.live_count, self._dim
        live = t.live[:n].copy() if count < n else None
        kernel, mat, codes, aux, ids = self._kernel, self._mat, self._codes, self._aux, t.ids

        def search(query: npt.ArrayLike, k: int) -> tuple[IdArray, ScoreArray]:
            check_k(k)
            q = prepare_query(query, dim)
            return _scan(kernel, mat, codes, aux, ids, n, live, count, q, k)

        return search

    def search_batch(self, queries: npt.ArrayLike, k: int) -> tuple[IdArray, ScoreArray]:
        """:meth:`search` for each row of ``queries`` in one pass over the matrix.

        Returns ids and scores of shape ``(len(queries), min(k, len(self)))``.

        Raises:
            CacheClosedError: the index is closed.
            ValueError: ``k < 1``.
            DimensionMismatchError: queries of another dimension.
        """
        self._check_open()
        check_k(k)
        q = prepare_queries(queries, self._dim)
        t = self._rows
        if t.live_count == 0:
            m = q.shape[0]
            return np.empty((m, 0), dtype=np.int64), np.empty((m, 0), dtype=np.float32)
        live = t.live if t.live_count < t.n else None
        rows, scores = self._kernel.topk_batch(self._mat, t.n, live, q, k)
        return t.ids[rows], scores

    # -- persistence ------------------------------------------------------------------
    def live_vectors(self) -> tuple[IdArray, npt.NDArray[Any]]:
        """Copies of the live ids and their vectors (storage dtype), in row order.

        Raises:
            CacheClosedError: the index is closed.
        """
        self._check_open()
        rows = self._rows.live_rows()
        return self._rows.ids[rows], self._mat[rows]

    def save(self, path: str | os.PathLike[str], *, meta: Mapping[str, Any] | None = None) -> None:
        """Write a snapshot (atomically: temporary file, then rename).

        ``meta`` is any JSON object, returned by ``snapshot_info(path).meta``.

        Raises:
            CacheClosedError: the index is closed.
            OSError: the file cannot be written.
        """
        self._check_open()
        header, arrays = self._snapshot_parts()
        header["meta"] = dict(meta or {})
        write_snapshot(path, "flat", header, arrays)

    def _snapshot_parts(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        ids, vectors = self.live_vectors()
        header: dict[str, Any] = {
            "dim": self._dim,
            "dtype": self._dtype.name,
            "count": int(ids.shape[0]),
        }
        if self._shadow_mode is not None:
            header["shadow"] = self._shadow_mode
        return header, {"ids": ids, "vectors": vectors}

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, kernel: str | None = None) -> FlatIndex:
        """Read a snapshot written by :meth:`save`.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not a flat-index snapshot, or it is corrupt.
        """
        snap = read_snapshot(path)
        if snap.backend != "flat":
            raise ValueError(f"{os.fspath(path)!r} is not a flat index snapshot")
        return cls._from_snapshot(snap, path, kernel=kernel)

    @classmethod
    def _from_snapshot(
        cls,
        snap: Any,
        path: str | os.PathLike[str],
        *,
        kernel: str | None = None,
        shadow: bool | None = None,
    ) -> FlatIndex:
        dim = bounded_field(snap, "dim", path, MAX_DIM)
        ids = snapshot_array(snap, "ids", path)
        vectors = snapshot_array(snap, "vectors", path)
        if vectors.ndim != 2 or vectors.shape != (ids.shape[0], dim) or ids.dtype != np.int64:
            raise ValueError(f"{os.fspath(path)!r}: snapshot arrays have the wrong shape")
        if shadow is None:
            saved = snap.header.get("shadow")
            shadow = saved if isinstance(saved, bool) else None
        index = cls(
            dim,
            dtype=vectors.dtype,
            capacity=max(64, ids.shape[0]),
            kernel=kernel,
            shadow=shadow,
        )
        index.add(ids, vectors)
        return index

    def close(self) -> None:
        """Release memory; later calls raise ``CacheClosedError``."""
        self._closed = True
        self._mat = np.zeros((0, self._dim), dtype=self._dtype)
        self._codes = self._aux = None
        self._rows = RowTable(1)

    # -- internals --------------------------------------------------------------------
    def _reserve(self, rows: int) -> None:
        cap = self._mat.shape[0]
        if rows <= cap:
            return
        new_cap = max(rows, cap * 2)
        mat = np.zeros((new_cap, self._dim), dtype=self._dtype)
        n = self._rows.n
        mat[:n] = self._mat[:n]
        self._mat = mat
        if self._codes is not None and self._aux is not None:
            codes = np.zeros((new_cap, self._dim), dtype=np.int8)
            codes[:n] = self._codes[:n]
            aux = np.zeros((3, new_cap), dtype=np.float32)
            aux[:, :n] = self._aux[:, :n]
            self._codes, self._aux = codes, aux
        self._rows.grow_to(new_cap)

    def _maybe_shadow(self) -> None:
        """Build the int8 shadow when it is wanted and absent."""
        if self._codes is not None or self._dtype != np.float32 or self._shadow_mode is False:
            return
        n = self._rows.n
        if self._shadow_mode is None and n * self._dim * 4 < SHADOW_MIN_BYTES:
            return
        quantized = self._kernel.quantize_rows(self._mat[:n])
        if quantized is None:
            # An element beyond 2**40 (or a dimension beyond 65536): no shadow.
            self._shadow_mode = False
            return
        cap = self._mat.shape[0]
        self._codes = np.zeros((cap, self._dim), dtype=np.int8)
        self._aux = np.zeros((3, cap), dtype=np.float32)
        self._codes[:n], self._aux[:, :n] = quantized


def _scan(
    kernel: Kernel,
    mat: npt.NDArray[Any],
    codes: npt.NDArray[np.int8] | None,
    aux: npt.NDArray[np.float32] | None,
    ids: IdArray,
    n: int,
    live: npt.NDArray[np.bool_] | None,
    count: int,
    q: npt.NDArray[np.float32],
    k: int,
) -> tuple[IdArray, ScoreArray]:
    """The top-k of rows ``[:n]`` (``count`` of them live): through the int8 shadow when
    there is one (see the :class:`FlatIndex` docstring), else one float32 scan."""
    if count == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    if codes is not None and aux is not None:
        # past a quarter of the live rows as candidates, a contiguous float32 scan is
        # cheaper than rescoring them one by one
        hit = kernel.search_i8(
            codes, aux, mat, n, live, q, min(k, count), count // _SHADOW_MAX_SHARE
        )
        if hit is not None:
            return ids[hit[0]], hit[1]
    rows, scores = kernel.topk(mat, n, live, q, k)
    return ids[rows], scores
