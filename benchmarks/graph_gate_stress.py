"""Stress for the readers-writer gate of hnswlib searches made outside the caller's lock:
two threads search an hnswlib index through ``reader()`` (taken under a plain lock,
searched outside it, as a get does) while a third adds 50 rows at a time (the capacity
doubles: resizes) and removes 25, under the lock. ``nogate`` makes the gate a no-op.

Run::

    PYTHONPATH=. .venv/bin/python benchmarks/graph_gate_stress.py gate 30
    PYTHONPATH=. .venv/bin/python benchmarks/graph_gate_stress.py nogate 20   # crashes
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np

from semcache._index import HnswlibIndex, _gate


def main() -> None:
    mode, seconds = sys.argv[1], float(sys.argv[2])
    if mode == "nogate":
        for name in ("begin_read", "end_read", "begin_write", "end_write"):
            setattr(_gate.Gate, name, lambda self: None)
    dim = 32
    rng = np.random.default_rng(1)
    index = HnswlibIndex(dim, M=8, ef_construction=32, ef_search=32, build_threads=1)
    x = rng.standard_normal((200_000, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index.add(np.arange(100), x[:100])
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    done = {"searches": 0, "adds": 0, "none": 0}

    def writer() -> None:
        i = 100
        while time.perf_counter() < stop and i < 200_000:
            with lock:
                index.add(np.arange(i, i + 50), x[i : i + 50])
                index.remove(np.arange(i - 100, i - 75))
            i += 50
            done["adds"] += 50

    def reader(seed: int) -> None:
        r = np.random.default_rng(seed)
        while time.perf_counter() < stop:
            with lock:
                view = index.reader()
            out = view(x[int(r.integers(0, 100))], 4)
            done["searches"] += 1
            if out is None:
                done["none"] += 1

    threads = [threading.Thread(target=writer)]
    threads += [threading.Thread(target=reader, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cap = index._native.get_max_elements()
    print(mode, done, "rows", len(index), "capacity", cap)


if __name__ == "__main__":
    main()
