"""The integrations are optional: ``import semcache`` imports none of their libraries, and
each adapter without its library names the extra that installs it (runs without any
extra installed)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from semcache import MissingDependencyError


@pytest.mark.parametrize(
    ("module", "missing", "extra"),
    [
        ("semcache.integrations.openai", "httpx", "openai"),
        ("semcache.integrations.server", "starlette", "serve"),
        ("semcache.integrations.server", "httpx", "serve"),
        ("semcache.integrations.langchain", "langchain_core", "langchain"),
        ("semcache.integrations.litellm", "litellm", "litellm"),
    ],
)
def test_an_integration_without_its_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, missing: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(MissingDependencyError, match=rf"semcache-engine\[{extra}\]"):
        importlib.import_module(module)


def test_import_semcache_imports_no_integration_library() -> None:
    code = (
        "import sys, semcache, semcache.integrations, semcache.embedders; "
        "print(sorted(m for m in ('httpx', 'openai', 'starlette', 'langchain_core', "
        "'litellm') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
