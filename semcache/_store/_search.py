"""Server-side search: a store that answers Layer 2 itself (PostgreSQL + pgvector).

``SemanticCache(store=..., index_backend="store")`` keeps no vector index in memory: it
takes the store's index factory once (the ``search_index_factory`` capability, see
``semcache._store._base``; :func:`search_factory` makes it for a
:class:`SearchableStore`), and each namespace's :class:`StoreSearchIndex` asks the store.
The index is a live view of the store's rows: the store indexes them in the put's
transaction and drops them in the delete's, so ``add`` and ``remove`` have nothing left
to do (``remove`` finds the rows already gone and answers 0), membership and size are
the store's, and there are no tombstones. It has no local snapshot, so it is a
:class:`~semcache._index.SearchIndex`, not a :class:`~semcache.VectorIndex` (which adds
``save``): a store that searches keeps no local file, and the cache snapshots only the
indexes it keeps itself.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from .._errors import CacheClosedError, ConfigurationError
from ._base import SearchIndexFactory

__all__ = ["SearchableStore", "StoreSearchIndex", "search_factory", "search_index_factory"]


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

    def get_by_ids(self, ids: Any, *, vectors: bool = False) -> Mapping[int, Any]:
        """The entries among ``ids`` that exist, by id (with a ``namespace``)."""
        ...

    def search(
        self, namespace: str, vector: npt.ArrayLike, k: int, *, now: float | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """``(ids, cosine similarities)`` of the ``k`` nearest entries, best first,
        leaving out those expired at ``now``."""
        ...


def search_factory(store: SearchableStore) -> SearchIndexFactory:
    """The ``search_index_factory`` of a store that searches: one
    :class:`StoreSearchIndex` per namespace.

    Raises:
        ConfigurationError: the store cannot search here (its ``search_unavailable``).
    """
    if not store.can_search:
        raise ConfigurationError(
            f'index_backend="store": {type(store).__name__} cannot search here: '
            f'{store.search_unavailable}; use a local index_backend such as "auto"'
        )
    return functools.partial(StoreSearchIndex, store)


def search_index_factory(store: object) -> SearchIndexFactory | None:
    """``store.search_index_factory()`` (see ``semcache._store._base``); for a store
    without that member, :func:`search_factory` when it is a :class:`SearchableStore`,
    else None.

    Raises:
        ConfigurationError: the store searches, but not here.
    """
    method = getattr(store, "search_index_factory", None)
    if callable(method):
        factory: SearchIndexFactory | None = method()
        return factory
    return search_factory(store) if isinstance(store, SearchableStore) else None


class StoreSearchIndex:
    """One namespace's :class:`~semcache._index.SearchIndex` that forwards searches to a
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
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise CacheClosedError("the index is closed")

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
        self._check_open()
        size, when = self._size
        now = time.monotonic()
        if size > 0 and now - when < 1.0:
            return size
        size = self._store.count(self._namespace)
        self._size = (size, now)
        return size

    def __contains__(self, entry_id: object) -> bool:
        """Whether the store holds ``entry_id`` in this namespace (one round trip)."""
        self._check_open()
        if isinstance(entry_id, bool) or not isinstance(entry_id, (int, np.integer)):
            return False
        found = self._store.get_by_ids([int(entry_id)]).get(int(entry_id))
        return found is not None and found.namespace == self._namespace

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Nothing to do: the store indexed the rows when it wrote them."""
        self._check_open()

    def remove(self, ids: npt.ArrayLike) -> int:
        """Nothing to do: the store's deletes removed the rows from its index (0 of
        ``ids`` are still here to remove)."""
        self._check_open()
        return 0

    def search(
        self, query: npt.ArrayLike, k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The store's ``k`` nearest live entries of this namespace.

        Raises:
            ValueError: ``k < 1``.
        """
        self._check_open()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return self._store.search(self._namespace, query, k, now=self._clock())

    def compact(self) -> int:
        """Nothing to reclaim (no tombstones)."""
        self._check_open()
        return 0

    def close(self) -> None:
        """Later calls raise ``CacheClosedError`` (the store stays open)."""
        self._closed = True
