"""The package stays in rooms a reader can take in (issue 14): no class spans 600 lines
or more, no module 800 or more (ast line spans, docstrings and comments included)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "semcache"
MAX_CLASS = 600
MAX_MODULE = 800


def _spans() -> tuple[dict[str, int], dict[str, int]]:
    """``(module -> lines, "module:Class" -> lines)`` for every file under semcache/."""
    modules: dict[str, int] = {}
    classes: dict[str, int] = {}
    for path in sorted(ROOT.rglob("*.py")):
        name = path.relative_to(ROOT.parent).as_posix()
        text = path.read_text(encoding="utf-8")
        modules[name] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                assert node.end_lineno is not None
                classes[f"{name}:{node.name}"] = node.end_lineno - first + 1
    return modules, classes


def test_the_walk_sees_the_package() -> None:
    modules, classes = _spans()
    assert "semcache/_store/_sqlite.py" in modules
    assert "semcache/_store/_sqlite.py:SQLiteStore" in classes


def test_every_class_is_under_600_lines() -> None:
    _, classes = _spans()
    big = {name: n for name, n in classes.items() if n >= MAX_CLASS}
    assert not big, f"classes of {MAX_CLASS} lines or more (split them): {big}"


def test_every_module_is_under_800_lines() -> None:
    modules, _ = _spans()
    big = {name: n for name, n in modules.items() if n >= MAX_MODULE}
    assert not big, f"modules of {MAX_MODULE} lines or more (split them): {big}"
