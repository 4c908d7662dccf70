"""SemanticCache on the server stores: Redis, PostgreSQL with a local index,
PostgreSQL searching on the server (pgvector, ``index_backend="store"``), and DynamoDB
(dynalite)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FakeClock
from test_favoured_answer import CONTEST, THRESHOLD, TIGHT_ELSEWHERE
from test_favoured_answer import _ask as ask_contest
from test_favoured_answer import _fill as fill_contest
from test_store_conformance import (
    drop_dynamodb,
    drop_postgres,
    drop_redis,
    open_dynamodb,
    open_postgres,
    open_redis,
)

from semcache import ConfigurationError, SemanticCache, SQLiteStore
from semcache._store import PostgresStore, Store
from semcache.embedders import HashingEmbedder

EMBEDDER = HashingEmbedder(64)
KINDS = ("redis", "postgres", "postgres-search", "dynamodb")
DROP = {"redis": drop_redis, "dynamodb": drop_dynamodb}


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_cache(kind: str, tmp_path: Path) -> Iterator[Callable[..., SemanticCache]]:
    """Opens caches on one server store (the same store every call), drops it after."""
    opened: list[SemanticCache] = []

    def open_store() -> Store:
        if kind == "redis":
            return open_redis(tmp_path, {})
        if kind == "dynamodb":
            return open_dynamodb(tmp_path, {})
        return open_postgres(tmp_path, {"vector_search": kind == "postgres-search"})

    def make(**options: Any) -> SemanticCache:
        options.setdefault("similarity_threshold", 0.6)
        if kind == "postgres-search":
            options.setdefault("index_backend", "store")
        cache = SemanticCache(store=open_store(), embedder=EMBEDDER, **options)
        opened.append(cache)
        return cache

    yield make
    for cache in opened:
        cache.close()
    DROP.get(kind, drop_postgres)(tmp_path)


def test_put_get_exact_semantic_delete(open_cache: Callable[..., SemanticCache]) -> None:
    cache = open_cache()
    cache.put("What is the capital of France?", "Paris", metadata={"src": "t"})
    cache.put("How tall is Mount Everest?", "8849 m")
    exact = cache.get("what is the capital of france?")
    assert exact is not None
    assert (exact.layer, exact.response, exact.metadata) == ("exact", "Paris", {"src": "t"})
    near = cache.get("What is the capital city of France?")
    assert near is not None
    assert (near.layer, near.response) == ("semantic", "Paris")
    assert near.similarity >= 0.6
    assert cache.get("Completely unrelated gardening advice") is None
    assert cache.delete("What is the capital of France?")
    assert cache.get("What is the capital city of France?") is None
    assert cache.get("What is the capital of France?") is None


def test_the_favoured_answer_is_served_with_the_vectors_read_from_the_store(
    open_cache: Callable[..., SemanticCache],
) -> None:
    # "tight"'s nearest has the best support score, "spread"'s local prototype is
    # nearer: a second cache on the store reads the candidates' vectors to see it
    fill_contest(open_cache(similarity_threshold=THRESHOLD), [*CONTEST, *TIGHT_ELSEWHERE])
    hit = ask_contest(open_cache(similarity_threshold=THRESHOLD))
    assert hit is not None
    assert hit.response == "spread"


def test_namespaces_are_walls(open_cache: Callable[..., SemanticCache]) -> None:
    cache = open_cache()
    cache.put("What is the capital of France?", "Paris", namespace="a")
    assert cache.get("What is the capital city of France?", namespace="b") is None
    hit = cache.get("What is the capital city of France?", namespace="a")
    assert hit is not None
    assert hit.namespace == "a"
    assert cache.clear_namespace("a") == 1
    assert cache.get("What is the capital of France?", namespace="a") is None


def test_quota_and_max_entries_evict_least_recently_used(
    open_cache: Callable[..., SemanticCache],
) -> None:
    clock = FakeClock(1000.0)
    cache = open_cache(max_entries=5, namespace_quotas={"q": 2}, clock=clock)
    topics = ["volcanoes erupt", "penguins swim", "bread rises"]
    for i, topic in enumerate(topics):
        clock.advance(1)
        cache.put(f"why {topic}", f"a{i}", namespace="q")
    assert cache.stats()["entries"] == {"q": 2}
    assert cache.get("why volcanoes erupt", namespace="q") is None
    assert cache.get("why bread rises", namespace="q") is not None
    for i in range(6):
        clock.advance(1)
        cache.put(f"global question {i}", f"g{i}")
    assert cache.stats()["total_entries"] == 5
    assert cache.get("global question 5") is not None


def test_ttl_expiry_and_vacuum(open_cache: Callable[..., SemanticCache]) -> None:
    clock = FakeClock(1000.0)
    cache = open_cache(clock=clock)
    cache.put("What is the capital of France?", "Paris", ttl=10)
    cache.put("How tall is Mount Everest?", "8849 m")
    clock.advance(11)
    assert cache.get("What is the capital of France?") is None
    assert cache.get("What is the capital city of France?") is None
    assert cache.stats()["misses"]["expired"] >= 1
    assert cache.vacuum() == 1
    assert cache.stats()["total_entries"] == 1


def test_shared_mode_catches_up_from_another_process_writes(
    open_cache: Callable[..., SemanticCache],
) -> None:
    writer = open_cache(multi_process_mode="shared")
    reader = open_cache(multi_process_mode="shared")
    assert reader.get("What is the capital of France?") is None
    writer.put("What is the capital of France?", "Paris")
    hit = reader.get("What is the capital city of France?")
    assert hit is not None
    assert hit.response == "Paris"
    writer.delete("What is the capital of France?")
    assert reader.get("What is the capital city of France?") is None
    writer.put("What is the capital of France?", "Paris again")
    hit = reader.get("What is the capital city of France?")
    assert hit is not None
    assert hit.response == "Paris again"


def test_reopening_keeps_entries(open_cache: Callable[..., SemanticCache]) -> None:
    cache = open_cache()
    cache.put_many(["q one", "q two", "q three"], ["1", "2", "3"])
    cache.close()
    again = open_cache()
    assert again.stats()["total_entries"] == 3
    hit = again.get("q two")
    assert hit is not None
    assert hit.response == "2"


def test_store_search_needs_a_searching_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="SQLiteStore cannot"):
        SemanticCache(store=SQLiteStore(tmp_path / "c.db"), index_backend="store")
    store = open_postgres(tmp_path, {"vector_search": False})
    try:
        assert isinstance(store, PostgresStore)
        with pytest.raises(ConfigurationError, match="vector_search=False"):
            SemanticCache(store=store, embedder=EMBEDDER, index_backend="store")
    finally:
        drop_postgres(tmp_path)


def test_store_search_keeps_no_local_index(tmp_path: Path) -> None:
    store = open_postgres(tmp_path, {"vector_search": True, "exact_search_below": 0})
    try:
        cache = SemanticCache(
            store=store, embedder=EMBEDDER, index_backend="store", similarity_threshold=0.6
        )
        rng = np.random.default_rng(5)
        words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "zeta"]
        questions = [" ".join(rng.choice(words, 5)) + f" item {i}" for i in range(60)]
        cache.put_many(questions, [str(i) for i in range(60)])
        hit = cache.get(questions[17] + "!")
        assert hit is not None
        assert hit.response == "17"
        assert all(v == 0 for v in cache.stats()["tombstones"].values())
        cache.close()
    finally:
        drop_postgres(tmp_path)
