"""How many of the observations several processes make of one entry its error-budget
record keeps (docs/quality.md, "The error budget in the cache": guarantees).

One store shared by every process (``--store``: a SQLite file in shared mode, or a
server of ``scripts/services``: its URL from ``SEMCACHE_REDIS_URL``,
``SEMCACHE_POSTGRES_DSN`` or ``SEMCACHE_DYNAMODB_URL``, a fresh prefix, schema or table
per round); an entry (topic 0) is put, then P processes each run G ``get_or_put`` calls
with paraphrases of it at once (a barrier starts them together).
A fresh budget knows nothing, so every call is a miss that calls the "LLM" (a sleep of
``--llm-ms``) with topic 0 among its candidates: each call adds one observation to
topic 0's record (P x G in all; keep it at most 16, the record's cap). Prints how many
the record holds at the end, per round.

Run:  PYTHONPATH=. .venv/bin/python benchmarks/record_sharing.py [--processes 4] [--gets 4]
          [--store sqlite|redis|postgres|dynamodb]
(servers: ``eval "$(scripts/services start)"`` first; to measure another checkout, put it
first on PYTHONPATH)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time
import uuid
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


def open_cache(kind: str, where: str, **options: Any) -> SemanticCache:
    """The cache on store ``kind`` at ``where`` (a SQLite path, or the round's name on
    the server), shared by the processes."""
    if kind == "sqlite":
        return SemanticCache(where, multi_process_mode="shared", guards=None, **options)
    if kind == "redis":
        from semcache._store import RedisStore

        store: Any = RedisStore(os.environ["SEMCACHE_REDIS_URL"], prefix=f"{where}:")
    elif kind == "postgres":
        from semcache._store import PostgresStore

        store = PostgresStore(os.environ["SEMCACHE_POSTGRES_DSN"], schema=where)
    else:
        import boto3

        from semcache._store import DynamoDBStore

        client = boto3.session.Session().client(
            "dynamodb",
            endpoint_url=os.environ["SEMCACHE_DYNAMODB_URL"],
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        store = DynamoDBStore(where, client=client, create=True)
    return SemanticCache(store=store, multi_process_mode="shared", guards=None, **options)


def worker(kind: str, where: str, first: int, gets: int, llm_s: float, barrier: Any) -> int:
    with open_cache(kind, where, error_budget=0.1) as cache:
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
    parser.add_argument(
        "--store", choices=("sqlite", "redis", "postgres", "dynamodb"), default="sqlite"
    )
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    made = args.processes * args.gets
    kept = []
    with ctx.Manager() as manager, ProcessPoolExecutor(args.processes, mp_context=ctx) as pool:
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as folder:
                where = str(Path(folder) / "c.db")
                if args.store != "sqlite":  # a fresh prefix, schema or table
                    where = f"semcache_sharing_{uuid.uuid4().hex[:12]}"
                axis = np.eye(DIM, dtype=np.float32)[0]
                with open_cache(args.store, where) as cache:
                    cache.put("topic 0", "A", embedding=axis)
                    entry_id = cache.get("topic 0").entry_id  # type: ignore[union-attr]
                barrier = manager.Barrier(args.processes)
                llm_s = args.llm_ms / 1000
                futures = [
                    pool.submit(worker, args.store, where, k * 1000, args.gets, llm_s, barrier)
                    for k in range(args.processes)
                ]
                assert sum(f.result(timeout=300) for f in futures) == made
                with open_cache(args.store, where) as cache:
                    text = cache.store.get_by_ids([entry_id])[entry_id].record
                    if args.store != "sqlite":
                        cache.clear()
                record = json.loads(text) if text else []
                kept.append(len(record["o"] if isinstance(record, dict) else record))
    print(
        f"{args.store}: {args.processes} processes x {args.gets} gets = {made} observations "
        "of one entry;"
    )
    print(f"its record kept: {kept} (rounds)")


if __name__ == "__main__":
    main()
