"""The command line's value parsers (one module for every subcommand)."""

from __future__ import annotations

import argparse
import math

import pytest

from semcache import _argtypes as argtypes


@pytest.mark.parametrize(
    ("parse", "good", "bad"),
    [
        (
            argtypes.similarity,
            {"-1": -1.0, "0": 0.0, "0.85": 0.85, "1": 1.0},
            ["1.01", "-2", "nan", "x"],
        ),
        (argtypes.number, {"0": 0.0, "2.5": 2.5, "inf": math.inf}, ["-0.1", "nan", "x"]),
        (argtypes.seconds, {"0": 0.0, "0.8": 0.8}, ["3600", "-1", "nan", "x"]),
        (argtypes.fraction, {"1": 1.0, "0.95": 0.95}, ["0", "1.5", "nan", "x"]),
        (argtypes.count, {"0": 0, "20": 20}, ["-1", "1.5", "x"]),
        (argtypes.port, {"1": 1, "65535": 65535}, ["0", "65536", "x"]),
    ],
)
def test_bounds(parse, good: dict[str, float], bad: list[str]) -> None:  # type: ignore[no-untyped-def]
    for text, value in good.items():
        assert parse(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
