"""Layer-2 vector indexes behind the :class:`VectorIndex` protocol.

Backends (``make_index(name, dim, dtype, options)``):

* ``"flat"``: :class:`FlatIndex`, exact, scanned by the fused native kernel (or its NumPy
  twin). Options: ``kernel``.
* ``"faiss"``: :class:`FaissIndex`, ``kind="flat"`` (exact) or ``"hnsw"``. Options:
  ``kind``, ``M``, ``ef_construction``, ``ef_search``, ``build_threads``.
* ``"hnswlib"``: :class:`HnswlibIndex`. Options: ``M``, ``ef_construction``,
  ``ef_search``, ``build_threads``.
* ``"auto"``: :class:`AutoIndex`, flat until ``switch_at`` live rows, then a graph.
  Options: ``switch_at``, ``graph``, ``background``, ``M``, ``ef_construction``,
  ``ef_search``, ``build_threads``, ``kernel``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import ConfigurationError
from ._auto import DEFAULT_SWITCH_AT, AutoIndex
from ._base import IdArray, ScoreArray, SearchIndex, VectorIndex
from ._common import read_snapshot
from ._faiss import FaissIndex
from ._flat import FlatIndex
from ._graph import HnswlibIndex
from ._kernel import available_kernels, kernel_name

__all__ = [
    "DEFAULT_SWITCH_AT",
    "AutoIndex",
    "FaissIndex",
    "FlatIndex",
    "HnswlibIndex",
    "IdArray",
    "IndexFactory",
    "ScoreArray",
    "SearchIndex",
    "SnapshotInfo",
    "VectorIndex",
    "available_kernels",
    "backend_names",
    "check_index_options",
    "kernel_name",
    "load_index",
    "make_index",
    "snapshot_info",
]

#: A callable building an empty index: ``factory(dim, dtype, options)``.
IndexFactory = Callable[[int, np.dtype[Any], Mapping[str, Any]], VectorIndex]

#: The built-in backends by name, the one registry: each class builds an empty index
#: (``from_options``) and restores one from its snapshot (``_from_snapshot``).
_BACKENDS: dict[str, Any] = {
    "auto": AutoIndex,
    "faiss": FaissIndex,
    "flat": FlatIndex,
    "hnswlib": HnswlibIndex,
}


def backend_names() -> list[str]:
    """The names ``index_backend=`` accepts."""
    return sorted(_BACKENDS)


def make_index(
    backend: str | IndexFactory,
    dim: int,
    dtype: npt.DTypeLike,
    options: Mapping[str, Any] | None = None,
) -> VectorIndex:
    """Build an empty index for one namespace.

    Raises:
        ConfigurationError: ``backend`` is not a known name or a callable; an unknown
            option key or a bad value; a dtype other than float32/float16.
        MissingDependencyError: the backend's extra is not installed (an ``ImportError``
            whose message names the pip command).
    """
    dt = np.dtype(dtype)
    opts: Mapping[str, Any] = {} if options is None else options
    if callable(backend):
        return backend(dim, dt, opts)
    try:
        factory: IndexFactory = _BACKENDS[backend].from_options
    except KeyError:
        raise ConfigurationError(
            f"unknown index_backend {backend!r}; expected one of {backend_names()}"
        ) from None
    return factory(dim, dt, opts)


def check_index_options(
    backend: str | IndexFactory, dtype: npt.DTypeLike, options: Mapping[str, Any]
) -> None:
    """Check ``options`` for ``backend`` before any vector (or dimension) is known: a
    named backend builds and discards an empty one-dimensional index with them, which
    checks every key, value, kernel and extra exactly as the real indexes will. (No
    built-in option depends on the dimension.) A factory's options are its own
    business; ``"store"`` takes none.

    Raises:
        ConfigurationError: an unknown key or a bad value.
        MissingDependencyError: the options need an extra that is not installed.
    """
    if callable(backend):
        return
    if backend == "store":
        if options:
            raise ConfigurationError(
                f'index_backend="store" takes no index_options, got {sorted(map(str, options))}'
            )
        return
    make_index(backend, 1, dtype, options).close()


@dataclass(frozen=True)
class SnapshotInfo:
    """What a snapshot header says, read without loading the vectors."""

    backend: str
    dim: int
    dtype: str
    count: int
    meta: dict[str, Any] = field(default_factory=dict)


def snapshot_info(path: str | os.PathLike[str]) -> SnapshotInfo:
    """Read a snapshot's header (backend, dim, dtype, live count, the ``meta`` saved).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a semcache index snapshot, or it is corrupt.
    """
    snap = read_snapshot(path, header_only=True)
    h = snap.header
    try:
        meta = h.get("meta", {})
        if not isinstance(meta, dict):
            raise TypeError("meta is not an object")
        return SnapshotInfo(
            snap.backend, int(h["dim"]), str(h["dtype"]), int(h.get("count", -1)), meta
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{os.fspath(path)!r}: bad snapshot header: {exc}") from exc


def load_index(path: str | os.PathLike[str]) -> VectorIndex:
    """Load any snapshot written by an index's ``save``, dispatching on its backend.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a semcache index snapshot, or it is corrupt.
        MissingDependencyError: the snapshot's backend library is not installed.
    """
    snap = read_snapshot(path, defer_crc=True)  # every _from_snapshot verifies it
    try:
        cls = _BACKENDS[snap.backend]
    except KeyError:
        raise ValueError(f"{os.fspath(path)!r}: unknown index backend {snap.backend!r}") from None
    index: VectorIndex = cls._from_snapshot(snap, path)
    return index
