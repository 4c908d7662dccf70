"""Value parsers for the ``semcache`` command's options (argparse ``type=``): each turns
the text into a value or raises ``argparse.ArgumentTypeError`` with a short reason, which
argparse prints beside the option's name."""

from __future__ import annotations

import argparse
import math

__all__ = ["count", "fraction", "number", "port", "seconds", "similarity"]


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    return value


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None


def similarity(text: str) -> float:
    """A cosine similarity threshold in [-1, 1]."""
    value = _float(text)
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("the threshold is a cosine similarity in [-1, 1]")
    return value


def number(text: str) -> float:
    """A number >= 0 (finite or not: ``inf`` reads as no limit where that makes sense)."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be a number >= 0")
    return value


def seconds(text: str) -> float:
    """Seconds in [0, 3600)."""
    value = _float(text)
    if not 0.0 <= value < 3600.0:
        raise argparse.ArgumentTypeError("seconds in [0, 3600)")
    return value


def fraction(text: str) -> float:
    """A fraction in (0, 1]."""
    value = _float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError("a fraction in (0, 1]")
    return value


def count(text: str) -> int:
    """A whole number >= 0 (0: no limit)."""
    value = _int(text, "whole number")
    if value < 0:
        raise argparse.ArgumentTypeError("a count >= 0 (0: no limit)")
    return value


def port(text: str) -> int:
    """A TCP port, 1..65535."""
    value = _int(text, "port number")
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError("a port is in 1..65535")
    return value
