"""The Embedder contract."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["Embedder"]


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
