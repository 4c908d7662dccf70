"""The VectorIndex contract: what the cache needs from a Layer-2 index.

An index maps entry ids (``int64``, assigned by the store, never reused) to unit vectors
and answers top-k queries by inner product, which equals cosine similarity because
every vector is unit-normalized before it gets here. Removal is by tombstone: a removed
id is never returned by :meth:`VectorIndex.search`, and :meth:`VectorIndex.compact`
reclaims the space. The built-in backends also compact themselves once tombstones reach
``max(live rows, 1024)`` (``_common.compaction_due``), so churn (a full cache evicting on
every put) never grows an index past about twice its live rows. The store, not the
index, is the source of truth: an index can always be rebuilt from the store's vectors,
so snapshots are an optimisation.

Indexes are not thread-safe by themselves; the cache serializes calls with its lock.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["IdArray", "ScoreArray", "SearchIndex", "VectorIndex"]

IdArray = npt.NDArray[np.int64]
ScoreArray = npt.NDArray[np.float32]


@runtime_checkable
class SearchIndex(Protocol):
    """What a search needs: a tombstoning top-k inner-product index over unit vectors.

    :class:`VectorIndex` is this plus a snapshot (``save``); an index whose rows live on
    a store's server (``index_backend="store"``: the store keeps it, there is nothing to
    snapshot) is a SearchIndex only.

    Contract (checked by ``tests/test_index_contract.py`` for every backend):

    * ``add(ids, vectors)``: ``ids`` is a 1-d int64 array, ``vectors`` a ``(n, dim)``
      array of unit vectors. Adding an id that is already live replaces its vector (the
      old row becomes a tombstone). Raises ``DimensionMismatchError`` on a wrong ``dim``
      and ``InvalidEmbeddingError`` on mismatched lengths.
    * ``remove(ids)``: tombstones the live ones, ignores unknown or already removed
      ids, and returns how many were tombstoned.
    * ``search(query, k)``: the ids and similarities of the ``min(k, len(index))`` live
      rows with the largest inner product, best first (ties in any order). Never
      returns a tombstoned id. An empty index returns two empty arrays. ``k < 1``
      raises ``ValueError``.
    * ``compact()``: rebuilds at the live size, returns the number of tombstones
      reclaimed; search results are unchanged.
    * ``len(index)``: live rows; ``tombstones``: rows removed but not yet reclaimed.
    * After ``close()`` every method raises ``CacheClosedError``.
    """

    @property
    def dim(self) -> int:
        """Vector dimension."""
        ...

    @property
    def dtype(self) -> np.dtype[Any]:
        """Storage dtype of the vectors (float32 or float16)."""
        ...

    @property
    def tombstones(self) -> int:
        """Rows removed but not yet reclaimed by :meth:`compact`."""
        ...

    def __len__(self) -> int: ...

    def __contains__(self, entry_id: object) -> bool: ...

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add (or replace) rows."""
        ...

    def remove(self, ids: npt.ArrayLike) -> int:
        """Tombstone rows; return how many were live."""
        ...

    def search(self, query: npt.ArrayLike, k: int) -> tuple[IdArray, ScoreArray]:
        """Top-k live rows by inner product, best first."""
        ...

    def compact(self) -> int:
        """Reclaim tombstones; return how many."""
        ...

    def close(self) -> None:
        """Release memory; later calls raise ``CacheClosedError``."""
        ...


@runtime_checkable
class VectorIndex(SearchIndex, Protocol):
    """A :class:`SearchIndex` kept in this process, with a snapshot: every built-in
    backend and every ``index_backend`` factory's index.

    Contract (``tests/test_index_contract.py``): the :class:`SearchIndex` contract, and
    ``save(path)`` / ``load(path)``: a snapshot without pickle; ``load`` raises
    ``ValueError`` on a file that is not a snapshot of this backend.
    """

    def save(self, path: str | os.PathLike[str], *, meta: Mapping[str, Any] | None = None) -> None:
        """Write a snapshot to ``path`` (atomically), with ``meta`` (a JSON object) in
        its header for :func:`~semcache._index.snapshot_info`."""
        ...
