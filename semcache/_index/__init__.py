"""Layer-2 vector indexes behind the :class:`VectorIndex` protocol."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import ConfigurationError
from ._base import IdArray, ScoreArray, VectorIndex
from ._flat import FlatIndex

__all__ = ["FlatIndex", "IdArray", "IndexFactory", "ScoreArray", "VectorIndex", "make_index"]

#: A callable building an empty index: ``factory(dim, dtype, options)``.
IndexFactory = Callable[[int, np.dtype[Any], Mapping[str, Any]], VectorIndex]


def _flat(dim: int, dtype: np.dtype[Any], options: Mapping[str, Any]) -> VectorIndex:
    return FlatIndex(dim, dtype=dtype)


_BACKENDS: dict[str, IndexFactory] = {"flat": _flat, "auto": _flat}


def backend_names() -> list[str]:
    """The names ``index_backend=`` accepts."""
    return sorted(_BACKENDS)


def make_index(
    backend: str | IndexFactory, dim: int, dtype: npt.DTypeLike, options: Mapping[str, Any]
) -> VectorIndex:
    """Build an empty index for one namespace.

    Raises:
        ConfigurationError: ``backend`` is not a known name or a callable.
    """
    dt = np.dtype(dtype)
    if callable(backend):
        return backend(dim, dt, options)
    try:
        factory = _BACKENDS[backend]
    except KeyError:
        raise ConfigurationError(
            f"unknown index_backend {backend!r}; expected one of {backend_names()}"
        ) from None
    return factory(dim, dt, options)
