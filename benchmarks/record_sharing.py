"""How many of the observations several processes make of one entry its error-budget
record keeps (docs/quality.md, "The error budget in the cache": guarantees).

One SQLite file in shared mode; an entry (topic 0) is put, then P processes each run G
``get_or_put`` calls with paraphrases of it at once (a barrier starts them together).
A fresh budget knows nothing, so every call is a miss that calls the "LLM" (a sleep of
``--llm-ms``) with topic 0 among its candidates: each call adds one observation to
topic 0's record (P x G in all; keep it at most 16, the record's cap). Prints how many
the record holds at the end, per round.

Run:  PYTHONPATH=. .venv/bin/python benchmarks/record_sharing.py [--processes 4] [--gets 4]
(to measure another checkout, put it first on PYTHONPATH)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from semcache import SemanticCache

DIM = 16


def paraphrase(i: int) -> np.ndarray:
    """Cosine about 0.95 with topic 0's axis (e_0), the rest spread by ``i``."""
    rest = np.random.default_rng(i).standard_normal(DIM - 1)
    v = np.concatenate([[0.95], 0.312 * rest / np.linalg.norm(rest)]).astype(np.float32)
    return v / np.linalg.norm(v)


def worker(path: str, first: int, gets: int, llm_s: float, barrier: Any) -> int:
    with SemanticCache(path, multi_process_mode="shared", error_budget=0.1, guards=None) as cache:
        barrier.wait()
        for i in range(first, first + gets):

            def llm() -> str:
                time.sleep(llm_s)  # (the LLM's latency, during which the others learn)
                return "A"

            cache.get_or_put(f"paraphrase {i}", llm, embedding=paraphrase(i))
    return gets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--gets", type=int, default=4)
    parser.add_argument("--llm-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    made = args.processes * args.gets
    kept = []
    with ctx.Manager() as manager, ProcessPoolExecutor(args.processes, mp_context=ctx) as pool:
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as folder:
                path = str(Path(folder) / "c.db")
                axis = np.eye(DIM, dtype=np.float32)[0]
                with SemanticCache(path, multi_process_mode="shared", guards=None) as cache:
                    cache.put("topic 0", "A", embedding=axis)
                    entry_id = cache.get("topic 0").entry_id  # type: ignore[union-attr]
                barrier = manager.Barrier(args.processes)
                futures = [
                    pool.submit(worker, path, k * 1000, args.gets, args.llm_ms / 1000, barrier)
                    for k in range(args.processes)
                ]
                assert sum(f.result(timeout=300) for f in futures) == made
                with SemanticCache(path, multi_process_mode="shared", guards=None) as cache:
                    text = cache.store.get_by_ids([entry_id])[entry_id].record
                record = json.loads(text) if text else []
                kept.append(len(record["o"] if isinstance(record, dict) else record))
    print(f"{args.processes} processes x {args.gets} gets = {made} observations of one entry;")
    print(f"its record kept: {kept} (rounds)")


if __name__ == "__main__":
    main()
