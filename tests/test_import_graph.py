"""The package's import graph: acyclic, and no module imports another's private names.

Every ``import`` statement counts, those inside functions and under ``TYPE_CHECKING``
included: an import deferred to a function still ties the two modules together, it
only hides the tie from the interpreter until the call.
"""

from __future__ import annotations

import ast
from pathlib import Path

import semcache

ROOT = Path(semcache.__file__).parent
#: The native extensions (``_native/<name>.pyx`` builds ``semcache.<name>``): submodules
#: without a .py file.
NATIVE = {path.stem for path in (ROOT.parent / "_native").glob("*.pyx")} | {"_kernel"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _imports(modules: dict[str, Path]) -> dict[str, set[tuple[str, str | None]]]:
    """module -> {(imported module, imported name or None)} within the package."""
    graph: dict[str, set[tuple[str, str | None]]] = {}
    for module, path in modules.items():
        edges: set[tuple[str, str | None]] = set()
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges.update((a.name, None) for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                target = (
                    _resolve(module, is_package, node.level, node.module)
                    if node.level
                    else node.module or ""
                )
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules or (target.startswith("semcache") and alias.name in NATIVE):
                        edges.add((sub, None))  # a submodule (a native extension too)
                    elif target in modules:
                        edges.add((target, alias.name))
        # Importing a.b.c runs the package a.b's __init__ first: an edge to every
        # package above the target that the importing module is not inside of.
        for target, _ in list(edges):
            parts = target.split(".")
            for depth in range(2, len(parts)):
                package = ".".join(parts[:depth])
                if package in modules and not (module + ".").startswith(package + "."):
                    edges.add((package, None))
        graph[module] = {(m, n) for m, n in edges if m != module}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as a path), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    modules = _modules()
    graph = {m: {t for t, _ in edges} for m, edges in _imports(modules).items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_module_imports_another_modules_private_names() -> None:
    modules = _modules()
    bad = sorted(
        f"{module} imports {target}.{name}"
        for module, edges in _imports(modules).items()
        for target, name in edges
        if name is not None and name.startswith("_") and not name.startswith("__")
    )
    assert bad == []
