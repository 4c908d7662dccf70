"""The public surface is exactly ``semcache.__all__``, sorted, and every name resolves."""

from __future__ import annotations

import os

import semcache


def test_all_is_sorted_and_complete() -> None:
    names = [n for n in semcache.__all__ if n != "__version__"]
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    public = {n for n in dir(semcache) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(semcache.__all__)
    for name in semcache.__all__:
        assert hasattr(semcache, name), name


def test_every_exception_derives_from_the_root() -> None:
    errors = [
        getattr(semcache, n)
        for n in semcache.__all__
        if isinstance(getattr(semcache, n), type) and n.endswith("Error")
    ]
    assert errors
    assert all(issubclass(e, semcache.SemanticCacheError) for e in errors)


def test_the_active_kernel_is_reported() -> None:
    assert semcache.kernel_name() in semcache.available_kernels()
    if os.environ.get("CI") and not os.environ.get("SEMCACHE_PURE_PYTHON"):
        # CI builds the extension (SEMCACHE_REQUIRE_NATIVE=1): it must be the one in use.
        assert semcache.kernel_name() == "native"
