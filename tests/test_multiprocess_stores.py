"""Several processes share one Redis / PostgreSQL / DynamoDB store through SemanticCache in
shared mode, doing mixed puts, gets and deletes: no acknowledged write is lost, no
acknowledged delete comes back, quotas hold, and every process's index catches up."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from random import Random
from typing import Any

import pytest
from test_store_conformance import (
    drop_dynamodb,
    drop_postgres,
    drop_redis,
    dynamodb_client,
    server_name,
    service_url,
)

from semcache import SemanticCache
from semcache._store import DynamoDBStore, PostgresStore, RedisStore, Store
from semcache.embedders import HashingEmbedder

WORKERS = 4
OPS = 120
SHARED_QUOTA = 5
URLS = {
    "redis": "SEMCACHE_REDIS_URL",
    "postgres": "SEMCACHE_POSTGRES_DSN",
    "dynamodb": "SEMCACHE_DYNAMODB_URL",
}


def open_store(kind: str, url: str, name: str) -> Store:
    if kind == "redis":
        return RedisStore(url, prefix=f"semcache-test:{name}:")
    if kind == "dynamodb":
        return DynamoDBStore(f"semcache-{name}", client=dynamodb_client(), create=True)
    return PostgresStore(url, schema=name)


def open_cache(kind: str, url: str, name: str) -> SemanticCache:
    return SemanticCache(
        store=open_store(kind, url, name),
        embedder=HashingEmbedder(16),
        multi_process_mode="shared",
        namespace_quotas={"shared": SHARED_QUOTA},
    )


def worker(kind: str, url: str, name: str, wid: int) -> dict[str, Any]:
    """Mixed operations; returns the last acknowledged state of this worker's own keys
    (``None`` for deleted) and any read-your-writes violation it saw."""
    rng = Random(wid)
    cache = open_cache(kind, url, name)
    last: dict[str, str | None] = {}
    problems: list[str] = []
    try:
        for i in range(OPS):
            own = f"worker {wid} question {rng.randrange(12)}"
            op = rng.random()
            if op < 0.45:
                answer = f"w{wid} answer {i}"
                cache.put(own, answer)
                last[own] = answer
                hit = cache.get(own)
                if hit is None or hit.response != answer:
                    problems.append(f"put {own!r} then got {hit}")
            elif op < 0.65:
                cache.delete(own)
                last[own] = None
                hit = cache.get(own)
                if hit is not None and hit.layer == "exact":
                    problems.append(f"deleted {own!r} then got {hit}")
            elif op < 0.85:
                cache.put(f"shared question {rng.randrange(20)}", f"w{wid}-{i}", namespace="shared")
            else:
                cache.get(f"shared question {rng.randrange(20)}", namespace="shared")
                cache.get(f"worker {rng.randrange(WORKERS)} question {rng.randrange(12)}")
    finally:
        cache.close()
    return {"last": last, "problems": problems}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["redis", "postgres", "dynamodb"])
def test_processes_sharing_one_store_lose_nothing(kind: str, tmp_path: Path) -> None:
    url = service_url(URLS[kind])
    name = server_name(tmp_path)
    open_cache(kind, url, name).close()  # create the schema once, before the race
    try:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(WORKERS) as pool:
            results = pool.starmap(worker, [(kind, url, name, w) for w in range(WORKERS)])
        assert [r["problems"] for r in results] == [[]] * WORKERS
        cache = open_cache(kind, url, name)
        try:
            for result in results:
                for query, answer in result["last"].items():
                    hit = cache.get(query)
                    if answer is None:
                        assert hit is None or hit.layer != "exact", f"{query!r} came back"
                    else:
                        assert hit is not None, f"acknowledged put of {query!r} lost"
                        assert (hit.layer, hit.response) == ("exact", answer)
            stats = cache.stats()
            assert stats["entries"].get("shared", 0) <= SHARED_QUOTA
            assert stats["entries"]["default"] == sum(
                answer is not None for r in results for answer in r["last"].values()
            )
            assert stats["indexed"] == stats["entries"]
        finally:
            cache.close()
    finally:
        {"redis": drop_redis, "postgres": drop_postgres, "dynamodb": drop_dynamodb}[kind](tmp_path)
