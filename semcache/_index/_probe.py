"""What ``auto``'s probe measures with: a cost model (seconds per search; tests inject
one), near-duplicate queries drawn from a namespace's own rows, and the searches it
times or checks for recall."""

from __future__ import annotations

import math
from collections.abc import Callable
from time import perf_counter
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["CostModel", "measured_cost", "probe_queries", "timer", "top1"]

#: ``cost(backend, rows, run, calls)``: seconds per search of ``run()``, which makes
#: ``calls`` searches on ``backend`` holding ``rows`` rows. Tests inject a model; the
#: default times it.
CostModel = Callable[[str, int, Callable[[], object], int], float]


def measured_cost(backend: str, rows: int, run: Callable[[], object], calls: int) -> float:
    """The best of two timed runs after a warm one, per search (the minimum: other load
    only ever adds time)."""
    run()
    best = math.inf
    for _ in range(2):
        t0 = perf_counter()
        run()
        best = min(best, perf_counter() - t0)
    return best / max(calls, 1)


def probe_queries(
    mat: npt.NDArray[Any], rows: npt.NDArray[Any], n: int, seed: int
) -> npt.NDArray[np.float32]:
    """Near duplicates (a paraphrase's distance: cosine ~0.95) of ``n`` of ``rows``."""
    rng = np.random.default_rng(seed)
    pick = rows[rng.choice(rows.shape[0], size=min(n, rows.shape[0]), replace=False)]
    base = np.asarray(mat[np.sort(pick)], dtype=np.float32)
    noise = rng.standard_normal(base.shape).astype(np.float32)
    noise *= 0.3 / np.linalg.norm(noise, axis=1, keepdims=True)
    q = base + noise
    out: npt.NDArray[np.float32] = q / np.linalg.norm(q, axis=1, keepdims=True)
    return out


def top1(index: Any, queries: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
    """Each query's nearest id by ``index``."""
    return np.array([int(index.search(q, 1)[0][0]) for q in queries], dtype=np.int64)


def timer(index: Any, queries: npt.NDArray[np.float32]) -> Callable[[], object]:
    """A run of one search per query on ``index``, to time."""

    def run() -> object:
        for q in queries:
            index.search(q, 1)
        return None

    return run
