"""Choose the top-k kernel: the native extension unless it is missing or disabled.

``SEMCACHE_PURE_PYTHON=1`` forces the NumPy twin. :func:`kernel_name` says which one
serves; :func:`get_kernel` returns either by name (the tests run against both).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any, Protocol, cast

import numpy.typing as npt

from . import _kernel_py
from ._kernel_py import Rows, Scores

__all__ = ["Kernel", "available_kernels", "get_kernel", "kernel", "kernel_name"]


class Kernel(Protocol):
    """What both kernels provide (module-level functions)."""

    NAME: str

    def topk(
        self, mat: Any, n: int, live: Any, query: npt.ArrayLike, k: int
    ) -> tuple[Rows, Scores]:
        """Top-k live rows of ``mat[:n]`` for one query."""
        ...

    def topk_batch(
        self, mat: Any, n: int, live: Any, queries: npt.ArrayLike, k: int
    ) -> tuple[Rows, Scores]:
        """Top-k live rows of ``mat[:n]`` for each query."""
        ...

    def topk_i8(
        self, codes: Any, aux: Any, n: int, live: Any, query: npt.ArrayLike, k: int
    ) -> tuple[Rows, Scores] | None:
        """Top-k live rows of an int8 shadow by upper bound on their float32 score."""
        ...

    def search_i8(
        self,
        codes: Any,
        aux: Any,
        mat: Any,
        n: int,
        live: Any,
        query: npt.ArrayLike,
        k: int,
        max_candidates: int,
    ) -> tuple[Rows, Scores, int] | None:
        """The float32 top-k through an int8 shadow (and the candidate count), or None."""
        ...

    def bounds_i8(
        self, codes: Any, aux: Any, n: int, query: npt.ArrayLike
    ) -> tuple[Any, Any] | None:
        """Upper and lower bounds of every shadow row's float32 score."""
        ...

    def topk_rows(
        self, mat: Any, rows: npt.ArrayLike, query: npt.ArrayLike, k: int
    ) -> tuple[Rows, Scores]:
        """Top-k of the given rows of ``mat`` (a rescore)."""
        ...

    def quantize_rows(self, x: Any) -> tuple[Any, Any] | None:
        """Int8 codes and per-row aux of float32 rows (the shadow), or None."""
        ...

    def quantize_query(self, query: npt.ArrayLike) -> tuple[Any, Any] | None:
        """A query's int8 codes and bound constants, as :meth:`topk_i8` computes them."""
        ...

    def stream_bytes(self, arr: npt.ArrayLike) -> int:
        """Read an array once (benchmark helper)."""
        ...

    def info(self) -> dict[str, Any]:
        """Name and settings."""
        ...

    def configure(
        self,
        *,
        max_threads: int | None = None,
        parallel_min_bytes: int | None = None,
        simd: bool | None = None,
        stream_min_bytes: int | None = None,
    ) -> None:
        """Tune threading and SIMD (process-wide)."""
        ...


def _load_native() -> ModuleType | None:
    try:
        from .. import _kernel as native  # type: ignore[attr-defined]
    except ImportError:
        return None
    return cast(ModuleType, native)


_NATIVE = _load_native()
_PURE = os.environ.get("SEMCACHE_PURE_PYTHON", "") not in ("", "0")

#: The kernel in use.
kernel: Kernel = cast(Kernel, _kernel_py if _PURE or _NATIVE is None else _NATIVE)


def kernel_name() -> str:
    """``"native"`` when the Cython kernel serves searches, ``"numpy"`` otherwise."""
    return kernel.NAME


def available_kernels() -> list[str]:
    """Names :func:`get_kernel` accepts on this installation."""
    return ["native", "numpy"] if _NATIVE is not None else ["numpy"]


def get_kernel(name: str | None = None) -> Kernel:
    """The kernel called ``name`` (``"native"`` or ``"numpy"``), or the active one.

    Raises:
        ConfigurationError: ``name`` is unknown, or ``"native"`` when it is not built.
    """
    from .._errors import ConfigurationError

    if name is None or name == "auto":
        return kernel
    if name == "numpy":
        return cast(Kernel, _kernel_py)
    if name == "native":
        if _NATIVE is None:
            raise ConfigurationError(
                "the native kernel is not built; reinstall semcache with a C compiler "
                "(pip install --no-build-isolation -e .) or use kernel='numpy'"
            )
        return cast(Kernel, _NATIVE)
    raise ConfigurationError(f"unknown kernel {name!r}; expected 'native', 'numpy' or 'auto'")
