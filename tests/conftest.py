"""Shared fixtures. Under CI (``CI`` set) a skipped test is a failure: a missing
dependency must never pass silently."""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt
import pytest

STRICT_SKIPS = bool(os.environ.get("CI")) or os.environ.get("SEMCACHE_STRICT_SKIPS") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if STRICT_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under CI (skips are failures here): {reason}"


@pytest.fixture(autouse=True)
def _answer_model_fits_in_the_get(monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer model is fitted in the get that starts its fit, not on a thread of its
    own (``semcache._answer_model``), so that what a get serves does not depend on
    timing; ``tests/test_answer_model.py`` tests the thread."""
    from semcache._answer_model import AnswerModels

    monkeypatch.setattr(AnswerModels, "background", False)


# -- shared helpers (import them: ``from conftest import FakeClock, unit, unit_rows``) ----
def unit(seed: int, dim: int) -> npt.NDArray[np.float32]:
    """A random unit vector of ``dim`` float32 values, fixed by ``seed``."""
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    out: npt.NDArray[np.float32] = v / np.linalg.norm(v)
    return out


def unit_rows(n: int, dim: int, seed: int | np.random.Generator = 0) -> npt.NDArray[np.float32]:
    """``n`` random unit rows of ``dim`` float32 values, from ``seed`` (or a generator,
    which advances)."""
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    out: npt.NDArray[np.float32] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


class FakeClock:
    """A clock that moves only when told: call it for the time (a cache's ``clock=``),
    or use it as a module's ``time`` (``monotonic()``; ``sleep()`` advances it)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A :class:`FakeClock` at 1,000,000 s."""
    return FakeClock()
