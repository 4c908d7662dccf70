"""Adapters that turn a user function (an HTTP embedding API, a local model) into an
embedder."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import ConfigurationError, EmbedderError

__all__ = ["AsyncCallableEmbedder", "CallableEmbedder"]

EmbedFn = Callable[[list[str]], Any]
AsyncEmbedFn = Callable[[list[str]], Awaitable[Any]]


def _check_args(fn: object, dim: object, fingerprint: object, batch_size: object) -> None:
    if not callable(fn):
        raise ConfigurationError(f"fn must be callable, got {type(fn).__name__}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ConfigurationError(f"dim must be an int >= 1, got {dim!r}")
    if not isinstance(fingerprint, str) or not fingerprint.strip():
        raise ConfigurationError(
            "fingerprint must be a non-empty str naming the model and its settings, "
            "e.g. 'openai:text-embedding-3-small:dim=1536'"
        )
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ConfigurationError(f"batch_size must be None or an int >= 1, got {batch_size!r}")


def _chunks(texts: Sequence[str], batch_size: int | None) -> list[list[str]]:
    items = list(texts)
    if batch_size is None or len(items) <= batch_size:
        return [items]
    return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]


def _as_rows(value: object, n: int, dim: int) -> npt.NDArray[np.float32]:
    """The function's output as an ``(n, dim)`` float32 array.

    Raises:
        EmbedderError: it is not one.
    """
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise EmbedderError(f"the embedding function returned no array of numbers: {exc}") from exc
    if arr.ndim == 1 and n == 1:
        arr = arr.reshape(1, -1)
    if arr.shape != (n, dim):
        raise EmbedderError(
            f"the embedding function returned shape {arr.shape} for {n} texts; "
            f"expected ({n}, {dim})"
        )
    return arr


def _join(parts: list[npt.NDArray[np.float32]], dim: int) -> npt.NDArray[np.float32]:
    if not parts:
        return np.zeros((0, dim), dtype=np.float32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


class _CallableBase:
    def __init__(
        self, fn: object, dim: int, fingerprint: str, *, batch_size: int | None = None
    ) -> None:
        _check_args(fn, dim, fingerprint, batch_size)
        self._dim = dim
        self._fingerprint = fingerprint
        self._batch_size = batch_size

    @property
    def dim(self) -> int:
        """Vector length."""
        return self._dim

    @property
    def fingerprint(self) -> str:
        """The fingerprint given to the constructor."""
        return self._fingerprint

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._fingerprint!r} dim={self._dim}>"


class CallableEmbedder(_CallableBase):
    """An :class:`~semcache.embedders.Embedder` around ``fn(texts) -> (n, dim) array``.

    Args:
        fn: called with a list of texts; returns one vector per text, in order (a NumPy
            array or nested lists). It may raise; the cache turns that into a miss on
            ``get`` and an ``EmbedderError`` on ``put``.
        dim: the length of every vector.
        fingerprint: a stable name for the model and its settings (for example
            ``"openai:text-embedding-3-small:dim=1536"``). The cache stores it and
            refuses to reopen with another one: change it whenever the vectors change.
        batch_size: call ``fn`` with at most this many texts at a time (None: all).

    Raises:
        ConfigurationError: ``fn`` is not callable, ``dim`` < 1, an empty fingerprint or
            a bad ``batch_size``.
    """

    def __init__(
        self, fn: EmbedFn, dim: int, fingerprint: str, *, batch_size: int | None = None
    ) -> None:
        super().__init__(fn, dim, fingerprint, batch_size=batch_size)
        self._fn = fn

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Vectors of shape ``(len(texts), dim)``.

        Raises:
            EmbedderError: ``fn`` returned something of the wrong shape.
            Exception: whatever ``fn`` raises.
        """
        parts = []
        for chunk in _chunks(texts, self._batch_size):
            if chunk:
                parts.append(_as_rows(self._fn(chunk), len(chunk), self._dim))
        return _join(parts, self._dim)


class AsyncCallableEmbedder(_CallableBase):
    """An :class:`~semcache.embedders.AsyncEmbedder` around ``async fn(texts)``.

    The same as :class:`CallableEmbedder`, for a coroutine function (an async HTTP
    client, for example); :class:`~semcache.AsyncSemanticCache` awaits it on the event
    loop. Batches (``batch_size``) are awaited one after another.

    Raises:
        ConfigurationError: as :class:`CallableEmbedder`.
    """

    def __init__(
        self, fn: AsyncEmbedFn, dim: int, fingerprint: str, *, batch_size: int | None = None
    ) -> None:
        super().__init__(fn, dim, fingerprint, batch_size=batch_size)
        self._fn = fn

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Vectors of shape ``(len(texts), dim)``.

        Raises:
            EmbedderError: ``fn`` returned something of the wrong shape.
            Exception: whatever ``fn`` raises.
        """
        parts = []
        for chunk in _chunks(texts, self._batch_size):
            if chunk:
                parts.append(_as_rows(await self._fn(chunk), len(chunk), self._dim))
        return _join(parts, self._dim)
