"""The faiss backend: :class:`FaissIndex` (exact ``IndexFlatIP`` or HNSW, float32 or
fp16), on the row model of :class:`~semcache._index._graph.RowGraphIndex`."""

from __future__ import annotations

import os
import struct
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .._dist import install_hint
from .._errors import ConfigurationError, MissingDependencyError
from ._common import Snapshot, snapshot_field
from ._graph import DEFAULT_EF_CONSTRUCTION, DEFAULT_M, RowGraphIndex
from ._graph_blob import deserialize_bounded

__all__ = ["FaissIndex", "import_faiss"]

_F16 = np.dtype(np.float16)


def import_faiss() -> Any:
    """Import faiss or say how to install it.

    Raises:
        MissingDependencyError: faiss is not installed (an ``ImportError``).
    """
    try:
        import faiss
    except ImportError as exc:
        raise MissingDependencyError(
            f"index backend 'faiss' needs faiss: {install_hint('faiss')}"
        ) from exc
    return faiss


class FaissIndex(RowGraphIndex):
    """faiss index (``pip install 'semcache-engine[faiss]'``): ``kind="flat"`` (exact,
    ``IndexFlatIP`` / fp16 ``IndexScalarQuantizer``) or ``kind="hnsw"``
    (``IndexHNSWFlat`` / ``IndexHNSWSQ`` fp16). ``dtype=float16`` stores vectors as
    fp16 (half the memory). Tombstones are filtered with an ``IDSelectorBitmap``.

    Raises:
        MissingDependencyError: faiss is not installed.
        ConfigurationError: bad parameters.
    """

    backend: ClassVar[str] = "faiss"
    _OPTION_KEYS: ClassVar[tuple[str, ...]] = (
        "kind",
        "M",
        "ef_construction",
        "ef_search",
        "build_threads",
    )

    def __init__(
        self,
        dim: int,
        *,
        dtype: npt.DTypeLike = np.float32,
        kind: str = "flat",
        M: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef_search: int | None = None,
        build_threads: int | None = None,
    ) -> None:
        if kind not in ("flat", "hnsw"):
            raise ConfigurationError(f"faiss kind must be 'flat' or 'hnsw', got {kind!r}")
        self._kind = kind
        self._bitmap = np.zeros(8, dtype=np.uint8)  # bit r set = row r is live
        super().__init__(
            dim,
            dtype=dtype,
            M=M,
            ef_construction=ef_construction,
            ef_search=ef_search,
            build_threads=build_threads,
        )

    @property
    def kind(self) -> str:
        """``"flat"`` or ``"hnsw"``."""
        return self._kind

    def _new_native(self, capacity: int) -> Any:
        faiss = import_faiss()
        ip = faiss.METRIC_INNER_PRODUCT
        fp16 = self._dtype == _F16
        if self._kind == "flat":
            if fp16:
                index = faiss.IndexScalarQuantizer(self._dim, faiss.ScalarQuantizer.QT_fp16, ip)
            else:
                index = faiss.IndexFlatIP(self._dim)
        elif fp16:
            index = faiss.IndexHNSWSQ(self._dim, faiss.ScalarQuantizer.QT_fp16, self._M, ip)
        else:
            index = faiss.IndexHNSWFlat(self._dim, self._M, ip)
        if self._kind == "hnsw":
            index.hnsw.efConstruction = self._ef_construction
            index.hnsw.efSearch = self._ef_search
        self._bitmap = np.zeros(max(8, (capacity + 7) // 8), dtype=np.uint8)
        return index

    def _native_add(self, vecs: npt.NDArray[np.float32], start: int) -> None:
        if self._native.ntotal != start:  # pragma: no cover - internal invariant
            raise RuntimeError("faiss index out of step with the row table")
        self._native.add(vecs)
        stop = start + vecs.shape[0]
        if (stop + 7) // 8 > self._bitmap.shape[0]:
            grown = np.zeros(max((stop + 7) // 8, 2 * self._bitmap.shape[0]), dtype=np.uint8)
            grown[: self._bitmap.shape[0]] = self._bitmap
            self._bitmap = grown
        rows = np.arange(start, stop)
        np.bitwise_or.at(self._bitmap, rows >> 3, (1 << (rows & 7)).astype(np.uint8))

    def _native_tombstone(self, rows: list[int]) -> None:
        r = np.asarray(rows, dtype=np.int64)
        np.bitwise_and.at(self._bitmap, r >> 3, (~(1 << (r & 7))).astype(np.uint8))

    def _tunable(self) -> bool:
        return self._kind == "hnsw"

    def _set_ef(self, ef: int) -> None:
        self._ef_search = ef
        self._native.hnsw.efSearch = ef

    def _search_at(self, q: npt.NDArray[np.float32], ef: int) -> npt.NDArray[np.float32] | None:
        if q.shape[0] == 0:
            return np.empty(0, np.float32)
        faiss = import_faiss()
        kwargs: dict[str, Any] = {"efSearch": ef}
        if self._rows.tombstones:
            kwargs["sel"] = faiss.IDSelectorBitmap(self._rows.n, faiss.swig_ptr(self._bitmap))
        dist, labels = self._native.search(q, 1, params=faiss.SearchParametersHNSW(**kwargs))
        return np.where(labels[:, 0] >= 0, dist[:, 0], -np.inf).astype(np.float32)

    def _native_search(
        self, q: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        faiss = import_faiss()
        kwargs: dict[str, Any] = {}
        if self._rows.tombstones:
            kwargs["sel"] = faiss.IDSelectorBitmap(self._rows.n, faiss.swig_ptr(self._bitmap))
        if self._kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self._ef_search, k), **kwargs)
        elif kwargs:
            params = faiss.SearchParameters(**kwargs)
        else:
            params = None
        dist, labels = self._native.search(q, k, params=params)
        return labels.astype(np.int64), dist.astype(np.float32)

    def _native_vectors(self, rows: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        if rows.size == 0:
            return np.empty((0, self._dim), np.float32)
        return np.asarray(self._native.reconstruct_batch(rows.astype(np.int64)), dtype=np.float32)

    def _native_dump(self) -> npt.NDArray[np.uint8]:
        faiss = import_faiss()
        return np.asarray(faiss.serialize_index(self._native), dtype=np.uint8)

    #: The fourcc of each kind and dtype this class writes (IndexFlatIP,
    #: IndexScalarQuantizer fp16, IndexHNSWFlat, IndexHNSWSQ fp16), then faiss's index
    #: header: d (int32), ntotal (int64).
    _FOURCC: ClassVar[dict[tuple[str, bool], bytes]] = {
        ("flat", False): b"IxFI",
        ("flat", True): b"IxSQ",
        ("hnsw", False): b"IHNf",
        ("hnsw", True): b"IHNs",
    }

    @classmethod
    def _check_blob(
        cls, blob: npt.NDArray[np.uint8], n: int, dim: int, dtype: np.dtype[Any], kw: Any
    ) -> None:
        # faiss sizes every vector it reads by a count in the blob; those are bounded by
        # the blob's size at deserialization (see _native_restore); here the header.
        fourcc = cls._FOURCC.get((kw["kind"], dtype == _F16))
        head = blob[:16].tobytes()
        if len(head) < 16 or head[:4] != fourcc:
            raise ValueError(f"not a faiss {kw['kind']} {dtype.name} index")
        d, ntotal = struct.unpack_from("<iq", head, 4)
        if d != dim or ntotal != n:
            raise ValueError(f"faiss index claims {ntotal} rows of dim {d}")

    def _native_restore(
        self, blob: npt.NDArray[np.uint8], n: int, capacity: int, layout: Any
    ) -> Any:
        faiss = import_faiss()
        index = deserialize_bounded(faiss, np.ascontiguousarray(blob))
        if index.ntotal != n or index.d != self._dim:
            raise ValueError(f"faiss index holds {index.ntotal} rows of dim {index.d}")
        self._bitmap = np.zeros(max(8, (capacity + 7) // 8), dtype=np.uint8)
        rows = np.arange(n)
        np.bitwise_or.at(self._bitmap, rows >> 3, (1 << (rows & 7)).astype(np.uint8))
        return index

    def _native_nbytes(self) -> int:
        per = self._dim * (2 if self._dtype == _F16 else 4)
        if self._kind == "hnsw":
            per += (2 * self._M) * 4 + 8  # level-0 links, level, offsets (approx.)
        return int(self._native.ntotal) * per + self._bitmap.nbytes

    def _header(self) -> dict[str, Any]:
        header = super()._header()
        header["kind"] = self._kind
        return header

    @classmethod
    def _ctor_kwargs(cls, snap: Snapshot, path: str | os.PathLike[str]) -> dict[str, Any]:
        kwargs = super()._ctor_kwargs(snap, path)
        kwargs["kind"] = str(snapshot_field(snap, "kind", path))
        return kwargs
