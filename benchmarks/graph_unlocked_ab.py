"""One thread, one cache: what the semantic get's search outside the lock costs against
the same search under it, alternating rounds on the same cache (so load drifts hit both
alike). Prints the median and minimum µs per get of each.

Run::

    PYTHONPATH=. .venv/bin/python benchmarks/graph_unlocked_ab.py hnswlib   # or flat
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("SEMCACHE_KERNEL_THREADS", "1")

import numpy as np
from scaling_report import data, queries

from semcache import SemanticCache, _get


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "hnswlib"
    n = 10_000
    names, x = data(n)
    path = os.path.join(tempfile.mkdtemp(prefix="semcache-ab-"), "c.db")
    cache = SemanticCache(path, index_backend=backend)
    cache.put_many(names, [f"a{i}" for i in range(n)], embeddings=x)
    qs = queries("semantic", n, 0, x)
    for q, v in qs[:200]:
        cache.get(q, embedding=v)
    unlocked = _get.UNLOCKED_SCAN_MIN
    res: dict[str, list[float]] = {"unlocked": [], "locked": []}
    for r in range(12):
        for mode in ("unlocked", "locked") if r % 2 else ("locked", "unlocked"):
            _get.UNLOCKED_SCAN_MIN = unlocked if mode == "unlocked" else 1 << 62
            t0 = time.perf_counter()
            for q, v in qs[:300]:
                cache.get(q, embedding=v)
            res[mode].append((time.perf_counter() - t0) / 300 * 1e6)
    cache.close()
    for mode, us in res.items():
        print(f"{backend} {mode}: median {np.median(us):.0f} µs/get, min {min(us):.0f}")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
