"""Shared fixtures. Under CI (``CI`` set) a skipped test is a failure: a missing
dependency must never pass silently."""

from __future__ import annotations

import os

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
