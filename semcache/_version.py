"""semcache's version, in a module of its own (``semcache.__version__`` re-exports it):
modules that record the version (checkpoint manifests) import it from here, not from
the package, so that no module imports the package it belongs to."""

from __future__ import annotations

from typing import Final

from ._dist import VERSION

__all__ = ["__version__"]

#: The version (written once, in :mod:`semcache._dist`).
__version__: Final = VERSION
