"""``memoize`` keeps the wrapped function's signature for type checkers (checked with
mypy on a small program: the decorated functions' types as mypy reveals them)."""

from __future__ import annotations

from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

PROGRAM = """
from semcache import AsyncSemanticCache, SemanticCache

cache = SemanticCache()
acache = AsyncSemanticCache()

@cache.memoize()
def ask(prompt: str, model: str = "x") -> str:
    return prompt

@cache.memoize()
async def aask(prompt: str, n: int = 1) -> str:
    return prompt

@acache.memoize()
async def bask(prompt: str, t: float = 0.0) -> str:
    return prompt

reveal_type(ask)
reveal_type(aask)
reveal_type(bask)
ask("a", model=3)
"""


def test_memoized_functions_keep_their_parameters_for_mypy(tmp_path: Path) -> None:
    source = tmp_path / "program.py"
    source.write_text(PROGRAM, encoding="utf-8")
    out, _, _ = api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), "--follow-imports=silent", str(source)]
    )
    assert 'Revealed type is "def (prompt: str, model: str =) -> str"' in out
    assert "def (prompt: str, n: int =) -> typing.Coroutine[Any, Any, str]" in out
    assert "def (prompt: str, t: float =) -> typing.Coroutine[Any, Any, str]" in out
    assert 'Argument "model" to "ask" has incompatible type "int"; expected "str"' in out
