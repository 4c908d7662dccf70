"""What semcache is called on PyPI, and the one place its version is written.

The import name is ``semcache``; the distribution is ``semcache-engine`` (the PyPI name
``semcache`` belongs to another project). Every install hint is built here, so that no
message can name a package that is not ours.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DISTRIBUTION", "EXTRAS", "VERSION", "install_hint"]

#: The distribution name: ``pip install semcache-engine``.
DISTRIBUTION: Final = "semcache-engine"
#: The version; ``pyproject.toml`` reads it from here (``[tool.setuptools.dynamic]``).
VERSION: Final = "0.2.0.dev0"
#: The extras ``pyproject.toml`` defines (checked by a test).
EXTRAS: Final = frozenset(
    {
        "onnx",
        "st",
        "faiss",
        "hnswlib",
        "plot",
        "redis",
        "postgres",
        "dynamodb",
        "openai",
        "serve",
        "langchain",
        "litellm",
        "dev",
        "all",
    }
)


def install_hint(extra: str | None = None) -> str:
    """The command that installs semcache with ``extra``: ``pip install 'semcache-engine[onnx]'``.

    Raises:
        ValueError: ``extra`` is not one of :data:`EXTRAS`.
    """
    if extra is None:
        return f"pip install {DISTRIBUTION}"
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {sorted(EXTRAS)}")
    return f"pip install '{DISTRIBUTION}[{extra}]'"
