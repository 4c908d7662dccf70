"""The rows of ``benchmarks/test_bench_cache.py``, old tree against new, in ONE process.

    python benchmarks/compare_inprocess.py OLD_TREE NEW_TREE --rounds 30

Both trees' ``semcache`` packages are loaded side by side under other names
(``semcache_old``, ``semcache_new``: the package imports itself only relatively, and its
native kernel's init function does not depend on the package name), each with its
kernel built in place. Every round times a batch of each operation on the old cache
and then on the new one (the order alternating), on CPU time: on a machine loaded by
other work, load that comes and goes falls on both within the same second, which
separate processes run one after the other cannot promise. Prints each row's median
batch time per tree and their ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

DIM = 384
N = 10_000
PROMPT = "How do I configure connection pooling for PostgreSQL in a Django app?"


def load(tree: Path, name: str) -> ModuleType:
    package = tree.resolve() / "semcache"
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def operations(pkg: ModuleType, folder: Path, vectors: np.ndarray) -> dict[str, Any]:
    """name -> (callable, calls per batch) on caches of ``pkg``."""
    filled = pkg.SemanticCache(str(folder / "filled.db"))
    queries = [f"{PROMPT} (variant {i})" for i in range(N)]
    filled.put_many(queries, [f"answer {i}" for i in range(N)], embeddings=vectors)
    near = unit(vectors[4321] + 0.01 * np.random.default_rng(1).standard_normal(DIM))
    far = unit(np.random.default_rng(2).standard_normal(DIM))
    exact = f"{PROMPT} (variant 1234)"
    assert filled.get(exact).layer == "exact"
    assert filled.get("a paraphrase (variant 4321)", embedding=near).layer == "semantic"
    puts = pkg.SemanticCache(str(folder / "put.db"))
    counter = itertools.count()
    answer = "an answer of modest length " * 8
    many = itertools.count()
    responses = ["an answer"] * N
    many_queries = [f"{PROMPT} {i}" for i in range(N)]

    def put_many() -> None:
        cache = pkg.SemanticCache(str(folder / f"many{next(many)}.db"))
        cache.put_many(many_queries, responses, embeddings=vectors)
        cache.close()

    return {
        "get_exact_hit": (lambda: filled.get(exact), 2000),
        "get_miss_exact_only": (lambda: filled.get("a question nobody asked"), 2000),
        "get_semantic_hit_precomputed_10k": (
            lambda: filled.get("a paraphrase (variant 4321)", embedding=near),
            40,
        ),
        "get_semantic_miss_precomputed_10k": (
            lambda: filled.get("unrelated", embedding=far),
            40,
        ),
        "put": (lambda: puts.put(f"{PROMPT} {next(counter)}", answer), 200),
        "put_many_10k": (put_many, 1),
    }


def batch(fn: Callable[[], Any], n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    old_pkg, new_pkg = load(args.old, "semcache_old"), load(args.new, "semcache_new")
    vectors = unit(np.random.default_rng(42).standard_normal((N, DIM)))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "old").mkdir()
        (Path(tmp) / "new").mkdir()
        ops = {
            "old": operations(old_pkg, Path(tmp) / "old", vectors),
            "new": operations(new_pkg, Path(tmp) / "new", vectors),
        }
        times: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
        for name in ops["old"]:
            for r in range(args.rounds if name != "put_many_10k" else max(3, args.rounds // 5)):
                for which in ("old", "new") if r % 2 == 0 else ("new", "old"):
                    fn, n = ops[which][name]
                    times[which].setdefault(name, []).append(batch(fn, n))
    print(f"{'benchmark':36} {'old us':>12} {'new us':>12} {'new/old':>8}")
    for name in ops["old"]:
        old = statistics.median(times["old"][name]) * 1e6
        new = statistics.median(times["new"][name]) * 1e6
        print(f"{name:36} {old:12.2f} {new:12.2f} {new / old:8.3f}")


if __name__ == "__main__":
    main()
