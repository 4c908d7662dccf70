"""Exact brute-force index over a growable row-major matrix, scanned by the fused top-k
kernel (native when built, NumPy otherwise): the reference every other backend is
tested against."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ._base import IdArray, ScoreArray
from ._common import (
    RowIndexBase,
    RowTable,
    check_dim,
    check_dtype,
    check_k,
    prepare_add,
    prepare_queries,
    prepare_query,
    read_snapshot,
    snapshot_array,
    snapshot_field,
    write_snapshot,
)
from ._kernel import Kernel, get_kernel

__all__ = ["FlatIndex"]

#: A float32 matrix at least this large gets a float16 shadow copy (``shadow=None``).
SHADOW_MIN_BYTES = 4 << 20
#: Candidates the shadow scan keeps per wanted hit, and at least.
_SHADOW_FACTOR = 8
_SHADOW_MIN_CANDIDATES = 32
#: Bound on |float16 score - float32 score| per unit of ``|q| * |x|``: float16 keeps 11
#: significant bits (relative error <= 2**-11 per element, so <= 2**-11 |q||x| on the
#: inner product by Cauchy-Schwarz); twice that covers float32 accumulation.
_SHADOW_EPS = 2.0**-10


class FlatIndex(RowIndexBase):
    """Brute-force inner-product index over a growable row-major matrix.

    Rows are appended; removal flips a live bit (a tombstone) and :meth:`compact`
    rewrites the matrix at its live size. ``dtype`` is float32 or float16 (half the
    memory; scores stay within about 1e-3 of float32); scores are always accumulated in
    float32. ``kernel`` picks the scan: ``"native"``, ``"numpy"``, or None for the
    active one (see :func:`semcache._index.kernel_name`).

    A float32 index may keep a float16 *shadow* of its matrix (``shadow``: True, False,
    or None for "once the matrix reaches :data:`SHADOW_MIN_BYTES`"). A search then
    scans the shadow (half the bytes: the scan is bound by memory bandwidth), rescores
    the best candidates from the float32 rows, and widens the candidate set until no row
    left out can beat the k-th result (float16 scores are within ``2**-11 |q||x|`` of
    float32 ones): the results are those of a float32 scan, for 50% more memory.

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
        self._half: npt.NDArray[np.float16] | None = None  # rows [:n] mirror self._mat
        self._max_norm = 0.0  # of any row ever added (a bound; never lowered)

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
        """Whether searches scan a float16 shadow of the float32 matrix."""
        return self._half is not None

    @property
    def nbytes(self) -> int:
        """Bytes held by vectors (the shadow included), ids and flags (allocated
        capacity included)."""
        self._check_open()
        half = 0 if self._half is None else self._half.nbytes
        return int(self._mat.nbytes + half + self._rows.ids.nbytes + self._rows.live.nbytes)

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
        self._rows.remove(id_arr)
        start, stop = self._rows.n, self._rows.n + id_arr.shape[0]
        self._reserve(stop)
        self._mat[start:stop] = vecs
        self._rows.append(id_arr)
        if self._dtype == np.float32 and self._shadow_mode is not False:
            norms = np.sqrt(np.einsum("ij,ij->i", vecs, vecs, dtype=np.float64))
            self._max_norm = max(self._max_norm, float(norms.max()))
            if self._half is not None:
                with np.errstate(over="ignore"):
                    self._half[start:stop] = self._mat[start:stop]
                if not np.isfinite(self._half[start:stop]).all():
                    self._half, self._shadow_mode = None, False  # beyond float16's range
            else:
                self._maybe_shadow()

    def remove(self, ids: npt.ArrayLike) -> int:
        """Tombstone the live ones among ``ids``; return how many.

        Raises:
            CacheClosedError: the index is closed.
        """
        self._check_open()
        return len(self._rows.remove(ids))

    def compact(self) -> int:
        """Rewrite the matrix at its live size; return the tombstones reclaimed.

        Raises:
            CacheClosedError: the index is closed.
        """
        self._check_open()
        reclaimed = self._rows.tombstones
        if reclaimed == 0:
            return 0
        rows = self._rows.live_rows()
        live = rows.shape[0]
        cap = max(64, live)
        mat = np.zeros((cap, self._dim), dtype=self._dtype)
        mat[:live] = self._mat[rows]
        self._rows.reset(self._rows.ids[rows], cap)
        self._mat = mat
        if self._half is not None:
            self._half = None
            self._maybe_shadow()
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
        if t.live_count == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        live = t.live if t.live_count < t.n else None
        if self._half is not None:
            rows, scores = self._shadow_topk(live, q, k)
        else:
            rows, scores = self._kernel.topk(self._mat, t.n, live, q, k)
        return t.ids[rows], scores

    def _shadow_topk(
        self, live: npt.NDArray[np.bool_] | None, q: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], ScoreArray]:
        """The float32 top-k through the float16 shadow (see the class docstring)."""
        assert self._half is not None
        t = self._rows
        k = min(k, t.live_count)
        qnorm = float(np.sqrt(np.dot(q, q)))
        # relative rounding, plus float16's subnormal spacing for tiny elements
        eps = qnorm * (_SHADOW_EPS * self._max_norm + 2.0**-24 * np.sqrt(self._dim))
        wanted = max(k * _SHADOW_FACTOR, _SHADOW_MIN_CANDIDATES)
        while wanted < t.live_count:
            cand, approx = self._kernel.topk(self._half, t.n, live, q, wanted)
            # Rescore in row order, so that ties break by row as in a float32 scan.
            cand = np.sort(cand)
            sub, scores = self._kernel.topk(self._mat[cand], cand.shape[0], None, q, k)
            # A row left out scores at most approx[-1] in float16, so at most
            # approx[-1] + eps in float32: it cannot beat (or tie) the k-th result.
            if float(approx[-1]) + eps < float(scores[-1]):
                return cand[sub], scores
            wanted *= 4
        return self._kernel.topk(self._mat, t.n, live, q, k)

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
        dim = int(snapshot_field(snap, "dim", path))
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
        self._half = None
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
        if self._half is not None:
            half = np.zeros((new_cap, self._dim), dtype=np.float16)
            half[:n] = self._half[:n]
            self._half = half
        self._rows.grow_to(new_cap)

    def _maybe_shadow(self) -> None:
        """Build the float16 shadow when it is wanted and absent."""
        if self._half is not None or self._dtype != np.float32 or self._shadow_mode is False:
            return
        n = self._rows.n
        if self._shadow_mode is None and n * self._dim * 4 < SHADOW_MIN_BYTES:
            return
        with np.errstate(over="ignore"):
            half = self._mat.astype(np.float16)
        if not np.isfinite(half[:n]).all():
            # A value beyond float16's range (65504): the shadow would mislead.
            self._shadow_mode = False
            return
        self._half = half
