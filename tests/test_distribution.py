"""The distribution is ours: its name, its version in one place, and install hints that
name it (the PyPI name ``semcache`` belongs to another project)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
from pathlib import Path

import pytest
import tomllib

import semcache
from semcache._dist import DISTRIBUTION, EXTRAS, install_hint

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
HINT = re.compile(r"pip install ['\"]?([A-Za-z0-9_.\-]+)(\[([a-z0-9_,\-]+)\])?")


def test_pyproject_names_the_distribution_and_reads_the_version_from_one_place() -> None:
    project = PYPROJECT["project"]
    assert project["name"] == DISTRIBUTION == "semcache-engine"
    assert "version" not in project
    assert project["dynamic"] == ["version"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "semcache._dist.VERSION"
    # SPDX expression (the table form is deprecated), with the licence file shipped.
    assert project["license"] == "Apache-2.0"
    assert (ROOT / "LICENSE").is_file()


def test_installed_metadata_matches_the_package() -> None:
    assert importlib.metadata.version(DISTRIBUTION) == semcache.__version__
    dist = importlib.metadata.distribution(DISTRIBUTION)
    assert dist.metadata["Name"] == DISTRIBUTION


def test_extras_list_matches_pyproject() -> None:
    assert set(PYPROJECT["project"]["optional-dependencies"]) == EXTRAS


def test_install_hint() -> None:
    assert install_hint() == "pip install semcache-engine"
    assert install_hint("onnx") == "pip install 'semcache-engine[onnx]'"
    with pytest.raises(ValueError, match="unknown extra"):
        install_hint("torch")


def _texts() -> list[tuple[Path, str]]:
    files = [*ROOT.glob("semcache/**/*.py"), *ROOT.glob("docs/*.md"), ROOT / "README.md"]
    files += [*ROOT.glob("scripts/*"), *ROOT.glob("benchmarks/**/*.py")]
    return [(f, f.read_text()) for f in files if f.is_file()]


def test_every_install_hint_names_our_distribution_and_a_real_extra() -> None:
    """No text tells a user to install the other project's ``semcache``."""
    seen = 0
    for path, text in _texts():
        for match in HINT.finditer(text):
            name, extras = match.group(1), match.group(3)
            if not name.lower().startswith("semcache"):
                continue  # a third-party package (pip install diskcache ...)
            seen += 1
            where = f"{path.relative_to(ROOT)}: {match.group(0)}"
            assert name == DISTRIBUTION, where
            for extra in (extras or "").split(","):
                assert not extra or extra in EXTRAS, where
    assert seen >= 10


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = body[0] if body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_messages_build_install_commands_with_install_hint() -> None:
    """Code never spells an install command by hand in a message: it calls
    ``install_hint``, so that a renamed distribution or extra cannot go stale."""
    checked = 0
    for path, text in _texts():
        if path.suffix != ".py" or path.name == "_dist.py" or "semcache" not in path.parts:
            continue
        tree = ast.parse(text)
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in docstrings:
                    continue
                checked += 1
                where = f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
                names = [m.group(1) for m in HINT.finditer(node.value)]
                assert not [n for n in names if n.lower().startswith("semcache")], where
    assert checked > 100


def test_every_folder_of_the_package_is_shipped() -> None:
    """A folder missing from ``packages`` is left out of the wheel (the vendored
    tokenizer was, at first: an editable install hid it)."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(d.relative_to(ROOT).parts)
        for d in [ROOT / "semcache", *(ROOT / "semcache").rglob("*")]
        if d.is_dir() and d.name != "__pycache__" and any(f.is_file() for f in d.iterdir())
    }
    assert on_disk == listed
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["semcache.embedders._data"]
    assert "*.json" in data
