"""Build script for the optional native kernel.

Every ``_native/*.pyx`` is compiled into ``semcache.<name>``. The package works without
them (a pure-NumPy twin takes over), so a machine without a compiler still installs:
set ``SEMCACHE_NO_NATIVE=1`` to skip the build on purpose, ``SEMCACHE_REQUIRE_NATIVE=1``
to make a failed build an error (CI does).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
REQUIRE = os.environ.get("SEMCACHE_REQUIRE_NATIVE") == "1"


class OptionalBuildExt(build_ext):
    """Compile the extensions, but fall back to the NumPy twin if that fails."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # pragma: no cover - depends on the machine
            if REQUIRE:
                raise
            print(f"semcache: native kernel not built ({exc}); using NumPy", file=sys.stderr)

    def build_extension(self, ext):  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # pragma: no cover - depends on the machine
            if REQUIRE:
                raise
            print(f"semcache: {ext.name} not built ({exc}); using NumPy", file=sys.stderr)


def extensions() -> list:  # type: ignore[type-arg]
    if os.environ.get("SEMCACHE_NO_NATIVE") == "1":
        return []
    sources = sorted((HERE / "_native").glob("*.pyx"))
    if not sources:
        return []
    try:
        import numpy as np
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError as exc:
        if REQUIRE:
            raise
        print(f"semcache: Cython/NumPy missing ({exc}); using NumPy", file=sys.stderr)
        return []
    # Portable flags only: the kernel picks its AVX2/F16C/FMA loops at run time.
    # SEMCACHE_NATIVE_TUNE=1 adds -march=native for a local, non-shipping build.
    compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-pthread"]
    link_args = ["-pthread"]
    if os.environ.get("SEMCACHE_NATIVE_TUNE") == "1":
        compile_args.append("-march=native")
    if sys.platform == "win32":
        compile_args, link_args = ["/O2"], []
    exts = [
        Extension(
            f"semcache.{src.stem}",
            [str(src.relative_to(HERE))],
            include_dirs=[np.get_include()],
            # (answer support's arithmetic is the twin of Python's, bit for bit: no
            # multiply-add fused into one rounding there)
            extra_compile_args=compile_args
            + (["-ffp-contract=off"] if src.stem == "_support" and sys.platform != "win32" else []),
            extra_link_args=link_args,
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for src in sources
    ]
    return cythonize(exts, compiler_directives={"language_level": "3"}, quiet=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
