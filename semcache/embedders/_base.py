"""The Embedder and AsyncEmbedder contracts."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["AsyncEmbedder", "Embedder", "LazyModel", "is_async_embedder"]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors.

    * ``dim``: the length of every vector.
    * ``fingerprint``: a stable string naming the model, its dimension and its
      normalization. The cache stores it and refuses to reopen with another one, so it
      must change whenever the vectors would.
    * ``embed(texts)``: an array of shape ``(len(texts), dim)``, one row per text, in
      order. Rows need not be normalized (the cache normalizes them). It may raise; the
      cache turns that into a miss on ``get`` and an ``EmbedderError`` on ``put``.
    """

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> npt.NDArray[Any]: ...


def unit_rows(rows: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    out = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.maximum(norms, np.finfo(np.float32).tiny, out=norms)
    result: npt.NDArray[np.float32] = out / norms
    return result


@runtime_checkable
class AsyncEmbedder(Protocol):
    """:class:`Embedder` with a coroutine ``embed``, for embedding services reached over
    the network (use it with :class:`~semcache.AsyncSemanticCache`, which awaits it on
    the event loop instead of spending a thread on it).

    ``isinstance(obj, AsyncEmbedder)`` only checks that the attributes exist; use
    :func:`is_async_embedder` to tell an async embedder from a sync one.
    """

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[Any]: ...


def is_async_embedder(embedder: object) -> bool:
    """Whether ``embedder.embed`` is a coroutine function (an :class:`AsyncEmbedder`)."""
    embed = getattr(embedder, "embed", None)
    return embed is not None and inspect.iscoroutinefunction(embed)


class LazyModel:
    """What the model-backed embedders share: a model that loads on first use (or on
    ``load``), a ``name`` that identifies it in the fingerprint, and a ``dim`` that is
    known without loading when it was given (else loading tells it).

    Subclasses set ``_name`` and ``_dim`` (None when unknown) and implement
    :meth:`load`, which must set ``_dim``.
    """

    _name: str
    _dim: int | None

    @property
    def name(self) -> str:
        """The model's identity, as used in the fingerprint."""
        return self._name

    @property
    def dim(self) -> int:
        """Vector length (loads the model if it was not given and is not known).

        Raises:
            MissingDependencyError, EmbedderError: see the subclass's ``load``.
        """
        if self._dim is None:
            self.load()
        assert self._dim is not None
        return self._dim

    def load(self, progress: Any = None) -> None:
        """Load the model now (subclasses implement it)."""
        raise NotImplementedError
