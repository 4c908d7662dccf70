"""Exact brute-force index in NumPy: the reference every other backend is tested against."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import CacheClosedError, DimensionMismatchError, InvalidEmbeddingError
from ._base import IdArray, ScoreArray

__all__ = ["FlatIndex"]

_SNAPSHOT_KIND = "semcache.flat.v1"
# float16 rows are widened to float32 in chunks of this many rows during a scan.
_F16_CHUNK = 8192


class FlatIndex:
    """Brute-force inner-product index over a growable row-major matrix.

    Rows are appended; removal flips a live bit (a tombstone) and :meth:`compact`
    rewrites the matrix at its live size. ``dtype`` is float32 or float16; scores are
    always accumulated in float32.
    """

    backend = "flat-numpy"

    def __init__(self, dim: int, *, dtype: npt.DTypeLike = np.float32, capacity: int = 64) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float16)):
            raise ValueError(f"dtype must be float32 or float16, got {dt}")
        self._dim = int(dim)
        self._dtype = dt
        cap = max(int(capacity), 1)
        self._mat = np.zeros((cap, self._dim), dtype=dt)
        self._ids = np.zeros(cap, dtype=np.int64)
        self._live = np.zeros(cap, dtype=bool)
        self._n = 0  # rows used (live + tombstones)
        self._row_of: dict[int, int] = {}
        self._closed = False

    # -- properties -------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def tombstones(self) -> int:
        self._check_open()
        return self._n - len(self._row_of)

    def __len__(self) -> int:
        self._check_open()
        return len(self._row_of)

    def __contains__(self, entry_id: object) -> bool:
        self._check_open()
        return entry_id in self._row_of

    # -- mutation ---------------------------------------------------------------------
    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        self._check_open()
        id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        vecs = np.asarray(vectors)
        if vecs.ndim == 1:
            vecs = vecs.reshape(1, -1)
        if vecs.ndim != 2:
            raise InvalidEmbeddingError(f"vectors must be 2-d, got shape {vecs.shape}")
        if vecs.shape[1] != self._dim:
            raise DimensionMismatchError(vecs.shape[1], self._dim)
        if vecs.shape[0] != id_arr.shape[0]:
            raise InvalidEmbeddingError(f"{id_arr.shape[0]} ids but {vecs.shape[0]} vectors")
        n = id_arr.shape[0]
        if n == 0:
            return
        # Later duplicates in one batch win, like successive single adds.
        _, last = np.unique(id_arr[::-1], return_index=True)
        if last.shape[0] != n:
            keep = np.sort(n - 1 - last)
            id_arr, vecs = id_arr[keep], vecs[keep]
            n = id_arr.shape[0]
        self.remove(id_arr)
        self._reserve(self._n + n)
        start, stop = self._n, self._n + n
        self._mat[start:stop] = vecs
        self._ids[start:stop] = id_arr
        self._live[start:stop] = True
        self._row_of.update(zip(id_arr.tolist(), range(start, stop), strict=True))
        self._n = stop

    def remove(self, ids: npt.ArrayLike) -> int:
        self._check_open()
        removed = 0
        row_of = self._row_of
        for i in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            row = row_of.pop(i, None)
            if row is not None:
                self._live[row] = False
                removed += 1
        return removed

    def compact(self) -> int:
        self._check_open()
        reclaimed = self._n - len(self._row_of)
        if reclaimed == 0:
            return 0
        rows = np.flatnonzero(self._live[: self._n])
        live = rows.shape[0]
        cap = max(64, live)
        mat = np.zeros((cap, self._dim), dtype=self._dtype)
        mat[:live] = self._mat[rows]
        ids = np.zeros(cap, dtype=np.int64)
        ids[:live] = self._ids[rows]
        alive = np.zeros(cap, dtype=bool)
        alive[:live] = True
        self._mat, self._ids, self._live, self._n = mat, ids, alive, live
        self._row_of = dict(zip(ids[:live].tolist(), range(live), strict=True))
        return reclaimed

    # -- search -----------------------------------------------------------------------
    def search(self, query: npt.ArrayLike, k: int) -> tuple[IdArray, ScoreArray]:
        self._check_open()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self._dim:
            raise DimensionMismatchError(q.shape[0], self._dim)
        live = len(self._row_of)
        if live == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        scores = self._scores(q)
        if live < self._n:
            scores[~self._live[: self._n]] = -np.inf
        k = min(k, live)
        if k < scores.shape[0]:
            top = np.argpartition(scores, -k)[-k:]
        else:
            top = np.arange(scores.shape[0])
        top = top[np.argsort(-scores[top], kind="stable")]
        return self._ids[top].copy(), scores[top].astype(np.float32, copy=False)

    def _scores(self, q: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        mat = self._mat[: self._n]
        if self._dtype == np.float32:
            return mat @ q
        out = np.empty(self._n, dtype=np.float32)
        for lo in range(0, self._n, _F16_CHUNK):
            hi = min(lo + _F16_CHUNK, self._n)
            out[lo:hi] = mat[lo:hi].astype(np.float32) @ q
        return out

    # -- persistence ------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        self._check_open()
        rows = np.flatnonzero(self._live[: self._n])
        with open(path, "wb") as fh:
            np.savez(
                fh,
                kind=np.array(_SNAPSHOT_KIND),
                dim=np.array(self._dim),
                ids=self._ids[rows],
                vectors=self._mat[rows],
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FlatIndex:
        """Read a snapshot written by :meth:`save`.

        Raises:
            ValueError: the file is not a flat-index snapshot.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["kind"]) != _SNAPSHOT_KIND:
                    raise ValueError(f"{os.fspath(path)!r} is not a flat index snapshot")
                dim = int(data["dim"])
                ids = data["ids"]
                vectors = data["vectors"]
        except (OSError, KeyError, EOFError) as exc:
            raise ValueError(f"{os.fspath(path)!r} is not a flat index snapshot: {exc}") from exc
        index = cls(dim, dtype=vectors.dtype, capacity=max(64, ids.shape[0]))
        index.add(ids, vectors)
        return index

    def close(self) -> None:
        self._closed = True
        self._mat = np.zeros((0, self._dim), dtype=self._dtype)
        self._row_of = {}

    # -- internals --------------------------------------------------------------------
    def _reserve(self, rows: int) -> None:
        cap = self._mat.shape[0]
        if rows <= cap:
            return
        new_cap = max(rows, cap * 2)
        mat = np.zeros((new_cap, self._dim), dtype=self._dtype)
        mat[: self._n] = self._mat[: self._n]
        ids = np.zeros(new_cap, dtype=np.int64)
        ids[: self._n] = self._ids[: self._n]
        alive = np.zeros(new_cap, dtype=bool)
        alive[: self._n] = self._live[: self._n]
        self._mat, self._ids, self._live = mat, ids, alive

    def _check_open(self) -> None:
        if self._closed:
            raise CacheClosedError("index is closed")
