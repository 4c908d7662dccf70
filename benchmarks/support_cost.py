"""What answer support adds to a semantic hit, measured get by get (docs/quality.md,
"Answers that agree, by default": cost).

The rows of ``pytest benchmarks/test_bench_cache.py -k answer_support_10k`` run one
setup after another; on a shared VM the machine's speed drifts between them by more
than the difference measured. Here each setup has two caches over the same 10k rows,
``answer_support`` on and off, and their gets alternate one by one, so that drift
falls on both alike. The rows are those of the benchmark's ``clustered`` fixture (100
clusters, 7 neighbours above the support floor): answers unique, repeated (one per
cluster) and mixed (two per cluster).

Run:  .venv/bin/python benchmarks/support_cost.py [--gets 6000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from semcache import SemanticCache

DIM = 384
N = 10_000
QUERY = "a paraphrase (variant 4321)"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _rows() -> np.ndarray:
    """The benchmark's ``clustered`` rows (same seed, same construction)."""
    rng = np.random.default_rng(7)
    centres = _unit(rng.standard_normal((100, DIM)))[np.arange(N) % 100]
    noise = rng.standard_normal((N, DIM))
    noise -= (noise * centres).sum(axis=1, keepdims=True) * centres
    return _unit(0.87 * centres + np.sqrt(1 - 0.87**2) * _unit(noise)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gets", type=int, default=6000, help="pairs of gets per setup")
    args = parser.parse_args()
    rows = _rows()
    query = _unit(rows[4321] + 0.01 * np.random.default_rng(1).standard_normal(DIM))
    prompts = [f"prompt (variant {i})" for i in range(N)]
    with tempfile.TemporaryDirectory() as folder:
        for name, every in (("unique", N), ("repeated", 100), ("mixed", 200)):
            answers = [f"answer {i % every}" for i in range(N)]
            caches = {}
            for on in (True, False):
                cache = SemanticCache(str(Path(folder) / f"{name}-{on}.db"), answer_support=on)
                cache.put_many(prompts, answers, embeddings=rows)
                for _ in range(100):  # warm: the hot map, the memos
                    assert cache.get(QUERY, embedding=query) is not None
                caches[on] = cache
            times: dict[bool, list[int]] = {True: [], False: []}
            for _ in range(args.gets):
                for on in (True, False):
                    t0 = time.perf_counter_ns()
                    caches[on].get(QUERY, embedding=query)
                    times[on].append(time.perf_counter_ns() - t0)
            on_us, off_us = (float(np.median(times[f])) / 1000 for f in (True, False))
            print(f"{name}: on {on_us:.0f} us, off {off_us:.0f} us, +{on_us - off_us:.0f} us p50")
            for cache in caches.values():
                cache.close()


if __name__ == "__main__":
    main()
