"""Server-side search: a store that answers Layer 2 itself (PostgreSQL + pgvector).

``SemanticCache(store=..., index_backend="store")`` keeps no vector index in memory; it
asks the store through :class:`StoreSearchIndex`, which has the part of the
:class:`~semcache.VectorIndex` interface the cache uses (adds and removes are no-ops:
the store indexes its own rows in the put's transaction).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["SearchableStore", "StoreSearchIndex"]


@runtime_checkable
class SearchableStore(Protocol):
    """A store that can find the nearest entries of a namespace itself."""

    @property
    def can_search(self) -> bool:
        """Whether :meth:`search` works (for example: pgvector is installed)."""
        ...

    @property
    def search_unavailable(self) -> str | None:
        """Why :meth:`search` does not work, or None."""
        ...

    def count(self, namespace: str | None = None) -> int:
        """Entries in a namespace."""
        ...

    def search(
        self, namespace: str, vector: npt.ArrayLike, k: int, *, now: float | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """``(ids, cosine similarities)`` of the ``k`` nearest entries, best first,
        leaving out those expired at ``now``."""
        ...


class StoreSearchIndex:
    """One namespace's :class:`~semcache.VectorIndex` that forwards searches to a
    :class:`SearchableStore` (the rows live, and are indexed, on the store's server)."""

    def __init__(
        self,
        store: SearchableStore,
        namespace: str,
        clock: Callable[[], float],
        dim: int,
        dtype: np.dtype[Any],
    ) -> None:
        self._store = store
        self._namespace = namespace
        self._clock = clock
        self._dim = dim
        self._dtype = dtype
        self._size = (0, -math.inf)  # (count, monotonic time read)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def tombstones(self) -> int:
        return 0

    def __len__(self) -> int:
        """The namespace's entries; a non-zero count is reused for up to a second (one
        get asks several times, and the count only bounds ``k``), zero is always
        checked again."""
        size, when = self._size
        now = time.monotonic()
        if size > 0 and now - when < 1.0:
            return size
        size = self._store.count(self._namespace)
        self._size = (size, now)
        return size

    def __contains__(self, entry_id: object) -> bool:
        return False  # membership lives on the server; the cache never asks

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Nothing to do: the store indexed the rows when it wrote them."""

    def remove(self, ids: npt.ArrayLike) -> int:
        """Nothing to do: the store's deletes remove the rows from its index."""
        return 0

    def search(
        self, query: npt.ArrayLike, k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The store's ``k`` nearest live entries of this namespace."""
        return self._store.search(self._namespace, query, k, now=self._clock())

    def compact(self) -> int:
        return 0

    def save(self, path: str | os.PathLike[str], *, meta: Mapping[str, Any] | None = None) -> None:
        """Raises ``NotImplementedError``: the server keeps the index."""
        raise NotImplementedError("a store-side index has no local snapshot")

    def close(self) -> None:
        """Nothing to release."""
