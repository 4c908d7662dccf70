"""Reopening a large float16 cache: load the index snapshot vs rebuild from the store.

Run (builds a 1M-entry, 384-d cache once, about 2 GB on disk; a few minutes):

    .venv/bin/python -m pytest benchmarks/test_bench_reopen.py -s \\
        --benchmark-columns=min,median,max,rounds

``SEMCACHE_BENCH_REOPEN_N`` sets the size (default 1,000,000). Each round opens the
cache, serves its first semantic get, and closes it without saving snapshots (so every
round starts from the same files). The flat backend is used so that the figures are
about I/O, not a graph build.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from semcache import SemanticCache
from semcache._cache import engine_of

N = int(os.environ.get("SEMCACHE_BENCH_REOPEN_N", "1000000"))
DIM = 384
BATCH = 50_000
OPTS = {"index_backend": "flat", "vector_dtype": "float16", "similarity_threshold": 0.9}


@pytest.fixture(scope="module")
def big_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("reopen") / "big.db"
    rng = np.random.default_rng(5)
    probe = None
    with SemanticCache(str(path), **OPTS) as cache:  # type: ignore[arg-type]
        for lo in range(0, N, BATCH):
            vecs = rng.standard_normal((min(BATCH, N - lo), DIM)).astype(np.float32)
            if probe is None:
                probe = vecs[0] / np.linalg.norm(vecs[0])
            cache.put_many(
                [f"question {i}" for i in range(lo, lo + len(vecs))],
                [f"answer {i}" for i in range(lo, lo + len(vecs))],
                embeddings=vecs,
            )
    assert probe is not None
    return path, probe


def reopen_and_get(path: Path, probe: np.ndarray, expect: str) -> None:
    cache = SemanticCache(str(path), **OPTS)  # type: ignore[arg-type]
    try:
        assert cache.stats()["index_source"] == expect
        hit = cache.get("a paraphrase of question 0", embedding=probe)
        assert hit is not None
        assert hit.response == "answer 0"
    finally:
        engine_of(cache).indexes.save = lambda folder=None: None  # type: ignore[method-assign]
        cache.close()


def test_reopen_from_snapshot(benchmark, big_cache: tuple[Path, np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    path, probe = big_cache
    benchmark.pedantic(reopen_and_get, args=(path, probe, "snapshot"), rounds=3)


def test_reopen_by_rebuild(benchmark, big_cache: tuple[Path, np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    path, probe = big_cache
    folder = Path(str(path) + ".index")
    saved = folder.with_name("saved.index")
    shutil.move(folder, saved)
    try:
        benchmark.pedantic(reopen_and_get, args=(path, probe, "store"), rounds=2)
    finally:
        shutil.move(saved, folder)
