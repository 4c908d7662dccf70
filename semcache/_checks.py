"""Argument checks shared by the caches' constructors and methods.

Each check takes the value and the argument's name and raises the specific semcache
error (an :class:`~semcache.InvalidInputError`, so also a ``ValueError``) with that name
in its message: a wrong type (a bool where a number or count is due), NaN, infinity, an
int beyond a float's range (``10**400``) or a value out of range. Nothing builtin
escapes from them.
"""

from __future__ import annotations

import math
import numbers
from typing import Final

import numpy as np

from ._errors import (
    ConfigurationError,
    InvalidInputError,
    InvalidThresholdError,
    InvalidTTLError,
)

__all__ = [
    "MAX_COUNT",
    "check_callable",
    "check_choice",
    "check_count",
    "check_flag",
    "check_int",
    "check_number",
    "check_path",
    "check_seconds",
    "check_stream_target",
    "check_threshold",
    "check_ttl",
    "show",
]

#: The largest count or byte cap accepted (what a store's 64-bit integers hold).
MAX_COUNT: Final = 2**63 - 1


def show(value: object) -> str:
    """``repr(value)`` cut to a length fit for an error message."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge int"
    return text if len(text) <= 60 else f"{text[:57]}..."


def check_number(value: object, what: str, error: type[InvalidInputError]) -> float:
    """``value`` as a finite float: an int or float (NumPy's too), not a bool, not NaN or
    infinite, and not an int too large for a float (``10**400``).

    Raises:
        ``error`` (naming ``what``): anything else.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{what} must be a number, got {show(value)}")
    try:
        v = float(value)
    except (OverflowError, TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v):
        raise error(f"{what} must be a finite number, got {show(value)}")
    return v


def check_threshold(value: object, what: str = "similarity_threshold") -> float:
    """A similarity threshold: a finite number in [-1, 1].

    Raises:
        InvalidThresholdError: anything else.
    """
    v = check_number(value, what, InvalidThresholdError)
    if not -1.0 <= v <= 1.0:
        raise InvalidThresholdError(f"{what} must be in [-1, 1], got {show(value)}")
    return v


def check_ttl(value: object, what: str = "ttl") -> float | None:
    """A TTL: None, or a finite number of seconds >= 0.

    Raises:
        InvalidTTLError: anything else.
    """
    if value is None:
        return None
    v = check_number(value, what, InvalidTTLError)
    if v < 0.0:
        raise InvalidTTLError(f"{what} must be None or seconds >= 0, got {show(value)}")
    return v


def check_int(value: object, what: str, lo: int = 1, hi: int = MAX_COUNT) -> int:
    """An int (not a bool, not a float; NumPy's too) in ``[lo, hi]``.

    Raises:
        ConfigurationError: anything else.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not lo <= int(value) <= hi
    ):
        top = "2**63 - 1" if hi == MAX_COUNT else str(hi)
        raise ConfigurationError(f"{what} must be an int in [{lo}, {top}], got {show(value)}")
    return int(value)


def check_count(value: object, what: str) -> int:
    """A count or byte cap: an int in [1, :data:`MAX_COUNT`].

    Raises:
        ConfigurationError: anything else.
    """
    return check_int(value, what)


def check_seconds(value: object, what: str, *, zero_ok: bool = False) -> float:
    """A finite duration in seconds, > 0 (or >= 0 with ``zero_ok``).

    Raises:
        ConfigurationError: anything else.
    """
    v = check_number(value, what, ConfigurationError)
    if v < 0.0 or (v == 0.0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ConfigurationError(f"{what} must be seconds {bound}, got {show(value)}")
    return v


def check_flag(value: object, what: str, error: type[InvalidInputError]) -> bool:
    """A bool (NumPy's too); ``"no"`` or ``0`` are not read as flags.

    Raises:
        ``error`` (naming ``what``): anything else.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise error(f"{what} must be a bool, got {show(value)}")
    return bool(value)


def check_callable(
    value: object, what: str, error: type[InvalidInputError] = ConfigurationError
) -> None:
    """None or a callable.

    Raises:
        ``error`` (naming ``what``; ``ConfigurationError`` by default): anything else.
    """
    if value is not None and not callable(value):
        raise error(f"{what} must be a callable or None, got {show(value)}")


def check_choice(value: object, what: str, choices: tuple[str, ...]) -> None:
    """One of the strings ``choices``.

    Raises:
        ConfigurationError: anything else.
    """
    if not isinstance(value, str) or value not in choices:
        raise ConfigurationError(f"{what} must be one of {choices}, got {show(value)}")


def check_path(value: object, what: str) -> str:
    """A file-system path: a non-empty ``str`` or ``os.PathLike`` of one.

    Raises:
        InvalidInputError: anything else.
    """
    import os

    if isinstance(value, str | os.PathLike):
        path = os.fspath(value)
        if isinstance(path, str) and path:
            return path
    raise InvalidInputError(f"{what} must be a path (str or os.PathLike), got {show(value)}")


def check_stream_target(value: object, what: str, method: str) -> None:
    """A checkpoint's source or destination: a path (see :func:`check_path`) or a
    binary file object with a ``method`` (``"read"`` or ``"write"``) method.

    Raises:
        InvalidInputError: anything else.
    """
    import os

    if isinstance(value, str | os.PathLike):
        check_path(value, what)
        return
    if not callable(getattr(value, method, None)):
        raise InvalidInputError(
            f"{what} must be a path or a binary file object with .{method}(), got {show(value)}"
        )
