"""SemanticCache behaviour, on every store, with an injected clock (no sleeps)."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FakeClock

from semcache import (
    CacheClosedError,
    ConfigurationError,
    DimensionMismatchError,
    EmbedderError,
    EmbedderMismatchError,
    HashingEmbedder,
    Hit,
    InvalidEmbeddingError,
    InvalidMetadataError,
    InvalidNamespaceError,
    InvalidTextError,
    InvalidThresholdError,
    InvalidTTLError,
    MemoryStore,
    MetadataTooLargeError,
    MetricsEvent,
    QueryTooLargeError,
    ResponseTooLargeError,
    SemanticCache,
    SQLiteStore,
)
from semcache._cache import engine_of

DIM = 8


def vec(*head: float) -> np.ndarray:
    """A DIM-dimensional vector starting with ``head`` (not normalized)."""
    out = np.zeros(DIM, dtype=np.float32)
    out[: len(head)] = head
    return out


def at_angle(cos: float) -> np.ndarray:
    """A unit vector whose cosine with e0 is ``cos``."""
    return vec(cos, math.sqrt(max(0.0, 1.0 - cos * cos)))


class FakeEmbedder:
    """Maps known texts to fixed vectors; counts calls; can be told to fail."""

    def __init__(self, table: dict[str, np.ndarray], fingerprint: str = "fake-v1") -> None:
        self.table = table
        self._fingerprint = fingerprint
        self.calls: list[list[str]] = []
        self.fail: Exception | None = None

    @property
    def dim(self) -> int:
        return DIM

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if self.fail is not None:
            raise self.fail
        return np.stack([self.table.get(t, vec(0, 0, 0, 0, 0, 0, 0, 1)) for t in texts])


@pytest.fixture(params=["memory", "sqlite"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


CacheFactory = Callable[..., SemanticCache]


@pytest.fixture
def make_cache(store_kind: str, tmp_path: Path, clock: FakeClock) -> Iterator[CacheFactory]:
    """Builds caches on the parametrized store; for SQLite every call (re)opens the same
    file, for memory a call with ``reopen=True`` is not allowed (nothing persists)."""
    opened: list[SemanticCache] = []

    def factory(**kwargs: Any) -> SemanticCache:
        kwargs.setdefault("clock", clock)
        if store_kind == "sqlite":
            cache = SemanticCache(str(tmp_path / "cache.db"), **kwargs)
        else:
            cache = SemanticCache(**kwargs)
        opened.append(cache)
        return cache

    yield factory
    for cache in opened:
        cache.close()


@pytest.fixture
def cache(make_cache: CacheFactory) -> SemanticCache:
    return make_cache()


# -- exact layer ---------------------------------------------------------------------------


def test_exact_hit_returns_the_stored_entry(cache: SemanticCache, clock: FakeClock) -> None:
    cache.put("What is the capital of France?", "Paris", metadata={"model": "m1"}, ttl=60)
    hit = cache.get("What is the capital of France?")
    assert hit == Hit(
        response="Paris",
        similarity=1.0,
        layer="exact",
        query="What is the capital of France?",
        namespace="default",
        metadata={"model": "m1"},
        created_at=clock.now,
        expires_at=clock.now + 60,
        confidence=1.0,
    )


@pytest.mark.parametrize(
    "variant",
    [
        "what is the capital of france?",
        "  WHAT   is the\tcapital of France? ",
        "\uff37hat is the capital of France?",  # fullwidth W
    ],
)
def test_normalization_matches_case_space_and_width(cache: SemanticCache, variant: str) -> None:
    cache.put("What is the capital of France?", "Paris")
    hit = cache.get(variant)
    assert hit is not None
    assert hit.layer == "exact"


def test_normalize_false_matches_text_as_given(make_cache: CacheFactory) -> None:
    cache = make_cache(normalize=False)
    cache.put("Hello World", "hi")
    assert cache.get("Hello World") is not None
    assert cache.get("hello world") is None


def test_without_embedder_only_exact_hits(cache: SemanticCache) -> None:
    cache.put("alpha", "1")
    assert cache.get("alpha") is not None
    assert cache.get("alphabet") is None
    assert cache.stats()["misses"]["no_candidate"] == 1
    assert cache.dim is None


def test_namespaces_are_walls(cache: SemanticCache) -> None:
    cache.put("q", "in a", namespace="a", embedding=vec(1))
    cache.put("other", "in b", namespace="b", embedding=vec(0, 1))
    assert cache.get("q", namespace="b", embedding=vec(1)) is None
    hit = cache.get("q", namespace="a")
    assert hit is not None
    assert hit.namespace == "a"
    assert cache.get("zzz", namespace="a", embedding=vec(0, 1)) is None


# -- semantic layer ------------------------------------------------------------------------


def test_semantic_hit_with_precomputed_embedding(cache: SemanticCache) -> None:
    cache.put("stored question", "answer", embedding=vec(1))
    hit = cache.get("a paraphrase", embedding=at_angle(0.9))
    assert hit is not None
    assert hit.layer == "semantic"
    assert hit.query == "stored question"
    assert hit.similarity == pytest.approx(0.9, abs=1e-6)
    assert hit.confidence is None


def test_threshold_is_inclusive_and_cosine_scaled(make_cache: CacheFactory) -> None:
    cache = make_cache(similarity_threshold=0.5)
    cache.put("s", "r", embedding=vec(2.0))  # normalized on the way in
    assert cache.get("qa", embedding=at_angle(0.5001)) is not None
    assert cache.get("qb", embedding=at_angle(0.4999)) is None
    assert cache.stats()["misses"]["below_threshold"] == 1


def test_zero_and_negative_thresholds_are_real_values(make_cache: CacheFactory) -> None:
    cache = make_cache(similarity_threshold=0.0)
    cache.put("s", "r", embedding=vec(1))
    assert cache.get("orthogonal", embedding=vec(0, 1)) is not None
    assert cache.get("opposite", embedding=vec(-1, 0.01)) is None
    cache.set_similarity_threshold(-1.0)
    hit = cache.get("opposite", embedding=vec(-1))
    assert hit is not None
    assert hit.similarity == pytest.approx(-1.0)


@pytest.mark.parametrize("bad", [1.01, -1.01, float("nan"), float("inf"), True, "0.9", None])
def test_threshold_out_of_range_is_rejected(make_cache: CacheFactory, bad: Any) -> None:
    with pytest.raises(InvalidThresholdError):
        make_cache(similarity_threshold=bad)
    cache = make_cache()
    with pytest.raises(InvalidThresholdError):
        cache.set_similarity_threshold(bad)
    assert cache.similarity_threshold == 0.85


def test_best_candidate_wins(cache: SemanticCache) -> None:
    cache.put("far", "far", embedding=at_angle(0.86))
    cache.put("near", "near", embedding=at_angle(0.99))
    cache.put("unrelated", "x", embedding=vec(0, 0, 1))
    hit = cache.get("q", embedding=vec(1))
    assert hit is not None
    assert hit.response == "near"


def test_embedder_is_called_once_per_get_and_batched_on_put_many(make_cache: CacheFactory) -> None:
    emb = FakeEmbedder({"cat": vec(1), "kitten": at_angle(0.95)})
    cache = make_cache(embedder=emb)
    n = cache.put_many([f"q{i}" for i in range(100)], ["r"] * 100)
    assert n == 100
    assert [len(c) for c in emb.calls] == [64, 36]
    cache.put("cat", "meow")
    emb.calls.clear()
    hit = cache.get("kitten")
    assert hit is not None
    assert hit.response == "meow"
    assert emb.calls == [["kitten"]]
    emb.calls.clear()
    assert cache.get("cat") is not None  # exact: no embedding needed
    assert emb.calls == []


def test_get_on_empty_namespace_does_not_embed(make_cache: CacheFactory) -> None:
    emb = FakeEmbedder({})
    cache = make_cache(embedder=emb)
    assert cache.get("anything") is None
    assert emb.calls == []


def test_confidence_fn_gates_semantic_hits(make_cache: CacheFactory) -> None:
    seen: list[tuple[str, float]] = []

    def confidence(query: str, hit: Hit) -> float:
        seen.append((query, hit.similarity))
        return 0.9 if query == "good" else 0.1

    cache = make_cache(confidence_fn=confidence, min_confidence=0.5)
    cache.put("s", "r", embedding=vec(1))
    hit = cache.get("good", embedding=at_angle(0.95))
    assert hit is not None
    assert hit.confidence == 0.9
    assert cache.get("bad", embedding=at_angle(0.95)) is None
    assert cache.stats()["misses"]["confidence"] == 1
    exact = cache.get("s")
    assert exact is not None
    assert exact.confidence == 1.0  # the exact layer does not ask
    assert [q for q, _ in seen] == ["good", "bad"]


def test_raising_confidence_fn_and_validator_are_misses(
    make_cache: CacheFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(query: str, hit: Hit) -> Any:
        raise RuntimeError("user bug")

    cache = make_cache(confidence_fn=boom)
    cache.put("s", "r", embedding=vec(1))
    with caplog.at_level(logging.ERROR, logger="semcache"):
        assert cache.get("q", embedding=vec(1)) is None
    assert "confidence_fn raised" in caplog.text
    cache.close()
    cache = make_cache(validator=boom)
    cache.put("s", "r")
    with caplog.at_level(logging.ERROR, logger="semcache"):
        assert cache.get("s") is None
    assert cache.stats()["misses"]["validator"] == 1
    assert cache.stats()["total_entries"] == 1  # nothing lost


def test_validator_applies_to_both_layers(make_cache: CacheFactory) -> None:
    def validator(query: str, hit: Hit) -> bool:
        return "2024" not in query

    cache = make_cache(validator=validator)
    cache.put("revenue 2023", "12M", embedding=vec(1))
    assert cache.get("revenue 2023") is not None
    assert cache.get("Revenue 2024", embedding=vec(1)) is None
    assert cache.stats()["misses"]["validator"] == 1


def test_validator_rejection_on_exact_falls_back_to_semantic(make_cache: CacheFactory) -> None:
    cache = make_cache(validator=lambda q, hit: hit.response != "stale")
    cache.put("q", "stale", embedding=vec(1))
    cache.put("qq", "fresh", embedding=at_angle(0.95))
    hit = cache.get("q", embedding=vec(1))
    assert hit is not None
    assert (hit.response, hit.layer) == ("fresh", "semantic")


def test_rejected_candidates_let_the_next_one_answer(make_cache: CacheFactory) -> None:
    cache = make_cache(validator=lambda q, hit: hit.response.startswith("ok"))
    for i in range(6):
        cache.put(f"bad{i}", f"no{i}", embedding=at_angle(0.999 - i * 0.001))
    cache.put("good", "ok", embedding=at_angle(0.95))
    hit = cache.get("q", embedding=vec(1))
    assert hit is not None
    assert hit.response == "ok"


def test_bypass_reads_nothing(cache: SemanticCache) -> None:
    cache.put("q", "r")
    calls: list[bytes] = []
    real = cache.store.get_by_key
    cache.store.get_by_key = lambda key: calls.append(key) or real(key)  # type: ignore[method-assign]
    assert cache.get("q", bypass=True) is None
    assert calls == []
    assert cache.stats()["misses"]["bypass"] == 1


# -- put, replace, delete ------------------------------------------------------------------


def test_put_replaces_and_restarts_ttl(cache: SemanticCache, clock: FakeClock) -> None:
    cache.put("q", "old", ttl=10, embedding=vec(1))
    clock.advance(8)
    cache.put("Q ", "new", ttl=10, embedding=vec(1))
    clock.advance(8)
    hit = cache.get("q")
    assert hit is not None
    assert hit.response == "new"
    assert hit.created_at == clock.now - 8
    assert cache.stats()["total_entries"] == 1
    assert cache.stats()["tombstones"] == {"default": 1}
    semantic = cache.get("other", embedding=vec(1))
    assert semantic is not None
    assert semantic.response == "new"
    assert cache.compact() == 1
    assert cache.stats()["tombstones"] == {"default": 0}


def test_delete(cache: SemanticCache) -> None:
    cache.put("q", "r", embedding=vec(1))
    assert cache.delete(" Q") is True
    assert cache.delete("q") is False
    assert cache.get("q") is None
    assert cache.get("other", embedding=vec(1)) is None
    assert cache.compact() == 1


def test_put_many_metadata_forms(cache: SemanticCache) -> None:
    cache.put_many(["a", "b"], ["1", "2"], metadata={"shared": True})
    cache.put_many(["c", "d"], ["3", "4"], metadata=[{"i": 3}, None])
    assert cache.get("a").metadata == {"shared": True}  # type: ignore[union-attr]
    assert cache.get("c").metadata == {"i": 3}  # type: ignore[union-attr]
    assert cache.get("d").metadata is None  # type: ignore[union-attr]
    with pytest.raises(InvalidMetadataError):
        cache.put_many(["e"], ["5"], metadata=[{"x": 1}, {"y": 2}])
    with pytest.raises(InvalidMetadataError):
        cache.put_many(["e"], ["5"], metadata="nope")  # type: ignore[arg-type]


def test_put_many_repeated_key_last_wins(cache: SemanticCache) -> None:
    assert cache.put_many(["k", "K", "k "], ["1", "2", "3"]) == 3
    assert cache.get("k").response == "3"  # type: ignore[union-attr]
    assert cache.stats()["total_entries"] == 1


def test_put_many_validates_everything_before_writing(cache: SemanticCache) -> None:
    with pytest.raises(ResponseTooLargeError):
        cache.put_many(["a", "b"], ["ok", "x" * (4 * 1048576 + 1)])
    with pytest.raises(InvalidEmbeddingError):
        cache.put_many(["a", "b"], ["1", "2"], embeddings=np.ones((3, DIM)))
    with pytest.raises(InvalidTextError):
        cache.put_many("ab", "12")  # type: ignore[arg-type]
    assert cache.stats()["total_entries"] == 0
    assert cache.put_many([], []) == 0


# -- TTL and vacuum ------------------------------------------------------------------------


def test_ttl_default_and_expiry(make_cache: CacheFactory, clock: FakeClock) -> None:
    cache = make_cache(default_ttl=100)
    cache.put("a", "1", embedding=vec(1))
    cache.put("b", "2", ttl=10, embedding=vec(0, 1))
    cache.put("c", "3", ttl=None)  # falls back to default_ttl
    clock.advance(10)
    assert cache.get("b") is None
    assert cache.get("bb", embedding=vec(0, 1)) is None
    assert cache.stats()["misses"]["expired"] == 2
    assert cache.get("a") is not None
    clock.advance(90)
    assert cache.get("a") is None
    assert cache.get("c") is None
    assert cache.vacuum() == 3
    assert cache.stats()["total_entries"] == 0
    assert cache.stats()["expirations"] == 3


def test_ttl_zero_is_expired_at_once_and_negative_is_rejected(cache: SemanticCache) -> None:
    cache.put("q", "r", ttl=0)
    assert cache.get("q") is None
    for bad in (-1, float("nan"), float("inf"), "10", True):
        with pytest.raises(InvalidTTLError):
            cache.put("q", "r", ttl=bad)


def test_vacuum_is_namespace_scoped(cache: SemanticCache, clock: FakeClock) -> None:
    cache.put("x", "1", namespace="a", ttl=1)
    cache.put("x", "1", namespace="b", ttl=1)
    clock.advance(2)
    assert cache.vacuum(namespace="a") == 1
    assert cache.stats()["entries"] == {"b": 1}


def test_expired_semantic_candidates_do_not_hide_live_ones(
    cache: SemanticCache, clock: FakeClock
) -> None:
    for i in range(10):
        cache.put(f"short{i}", "gone", ttl=5, embedding=at_angle(0.999 - i * 0.0001))
    cache.put("long", "live", embedding=at_angle(0.95))
    clock.advance(6)
    hit = cache.get("q", embedding=vec(1))
    assert hit is not None
    assert hit.response == "live"


# -- limits --------------------------------------------------------------------------------


def test_max_entries_evicts_least_recently_used(make_cache: CacheFactory, clock: FakeClock) -> None:
    cache = make_cache(max_entries=3)
    for name in ("a", "b", "c"):
        cache.put(name, name, embedding=vec(1))
        clock.advance(1)
    assert cache.get("a") is not None  # a is now the most recently used
    clock.advance(1)
    cache.put("d", "d")
    assert cache.get("b") is None
    assert {q for q in "acd" if cache.get(q) is not None} == set("acd")
    assert cache.stats()["evictions"] == 1
    assert cache.stats()["indexed"] == {"default": 2}


def test_hits_do_not_write_to_disk(cache: SemanticCache) -> None:
    cache.put("a", "1")
    touched: list[Any] = []
    cache.store.touch = lambda access: touched.append(access)  # type: ignore[method-assign]
    for _ in range(100):
        assert cache.get("a") is not None
    assert touched == []


def test_expired_entries_are_evicted_first(make_cache: CacheFactory, clock: FakeClock) -> None:
    cache = make_cache(max_entries=2)
    cache.put("old-but-live", "1")
    clock.advance(1)
    cache.put("new-but-expiring", "2", ttl=1)
    clock.advance(2)
    cache.put("third", "3")
    assert cache.get("old-but-live") is not None
    assert cache.stats()["expirations"] == 1
    assert cache.stats()["evictions"] == 0


def test_namespace_quota_evicts_only_inside_its_namespace(
    make_cache: CacheFactory, clock: FakeClock
) -> None:
    events: list[MetricsEvent] = []
    cache = make_cache(namespace_quotas={"small": 2}, metrics_hook=events.append)
    cache.put("other", "x", namespace="big")
    for i in range(5):
        clock.advance(1)
        cache.put(f"q{i}", str(i), namespace="small")
    assert cache.stats()["entries"] == {"big": 1, "small": 2}
    assert cache.get("q4", namespace="small") is not None
    assert cache.get("q3", namespace="small") is not None
    evicts = [e for e in events if e.kind == "evict"]
    assert [(e.namespace, e.count) for e in evicts] == [("small", 1)] * 3


def test_put_many_larger_than_quota_keeps_the_last(make_cache: CacheFactory) -> None:
    cache = make_cache(namespace_quotas={"default": 3})
    cache.put_many([f"q{i}" for i in range(10)], ["r"] * 10, embeddings=np.eye(10, DIM) + 0.1)
    assert cache.stats()["total_entries"] == 3
    assert [cache.get(f"q{i}") is not None for i in range(10)] == [False] * 7 + [True] * 3
    assert cache.stats()["indexed"] == {"default": 3}


def test_recency_survives_reopen(tmp_path: Path, clock: FakeClock) -> None:
    def make_cache(**kwargs: Any) -> SemanticCache:
        return SemanticCache(str(tmp_path / "c.db"), clock=clock, **kwargs)

    cache = make_cache(max_entries=3)
    for name in ("a", "b", "c"):
        cache.put(name, name)
        clock.advance(1)
    cache.get("a")
    cache.close()
    clock.advance(1)
    cache = make_cache(max_entries=3)
    cache.put("d", "d")
    assert cache.get("a") is not None
    assert cache.get("b") is None
    cache.close()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_bad_limits_are_rejected(make_cache: CacheFactory, bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        make_cache(max_entries=bad)
    with pytest.raises(ConfigurationError):
        make_cache(namespace_quotas={"a": bad})


def test_quota_for_an_invalid_namespace_is_rejected(make_cache: CacheFactory) -> None:
    with pytest.raises(InvalidNamespaceError):
        make_cache(namespace_quotas={"": 3})


# -- clear ---------------------------------------------------------------------------------


def test_clear_namespace_and_clear(cache: SemanticCache) -> None:
    cache.put_many(["a", "b"], ["1", "2"], namespace="x", embeddings=np.eye(2, DIM))
    cache.put("a", "1", namespace="y", embedding=vec(1))
    assert cache.clear_namespace("x") == 2
    assert cache.clear_namespace("x") == 0
    assert cache.get("a", namespace="y") is not None
    assert cache.get("zz", namespace="y", embedding=vec(1)) is not None
    assert cache.stats()["entries"] == {"y": 1}
    assert cache.clear() == 1
    assert cache.stats()["total_entries"] == 0
    assert cache.get("zz", namespace="y", embedding=vec(1)) is None


# -- input validation ----------------------------------------------------------------------


def test_byte_caps_at_and_over(make_cache: CacheFactory) -> None:
    cache = make_cache(max_query_bytes=10, max_response_bytes=20, max_metadata_bytes=30)
    cache.put("é" * 5, "r" * 20, metadata={"k": "v" * 22})  # exactly at each cap
    with pytest.raises(QueryTooLargeError) as info:
        cache.put("é" * 5 + "x", "r")
    assert (info.value.size, info.value.limit) == (11, 10)
    with pytest.raises(QueryTooLargeError):
        cache.get("x" * 11)
    with pytest.raises(ResponseTooLargeError):
        cache.put("q", "r" * 21)
    with pytest.raises(MetadataTooLargeError):
        cache.put("q", "r", metadata={"k": "v" * 23})
    assert cache.stats()["total_entries"] == 1
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "metadata", [{"x": object()}, {1: "int key"}, {"nan": float("nan")}, ["a"], "text"]
)
def test_metadata_must_be_a_json_object(cache: SemanticCache, metadata: Any) -> None:
    with pytest.raises(InvalidMetadataError):
        cache.put("q", "r", metadata=metadata)
    assert cache.stats()["total_entries"] == 0


@pytest.mark.parametrize("bad", ["", "a\x00b", "tab\there", "x" * 256, "\ud800", 3, None])
def test_bad_namespaces(cache: SemanticCache, bad: Any) -> None:
    with pytest.raises(InvalidNamespaceError):
        cache.put("q", "r", namespace=bad)
    with pytest.raises(InvalidNamespaceError):
        cache.get("q", namespace=bad)


def test_text_must_be_valid_unicode(cache: SemanticCache) -> None:
    with pytest.raises(InvalidTextError):
        cache.put("lone \ud800 surrogate", "r")
    with pytest.raises(InvalidTextError):
        cache.put("q", b"bytes")  # type: ignore[arg-type]
    with pytest.raises(InvalidTextError):
        cache.get(None)  # type: ignore[arg-type]
    cache.put("nul\x00 rtl \u05e9\u05dc\u05d5\u05dd e\u0301 \U0001f600", "ok\x00")
    assert cache.get("nul\x00 rtl \u05e9\u05dc\u05d5\u05dd e\u0301 \U0001f600").response == "ok\x00"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("embedding", "error"),
    [
        (vec(float("nan")), InvalidEmbeddingError),
        (vec(float("inf")), InvalidEmbeddingError),
        (np.zeros(DIM), InvalidEmbeddingError),
        (np.ones(DIM + 1), DimensionMismatchError),
        (np.ones((2, DIM)), InvalidEmbeddingError),
        (np.ones(DIM, dtype=complex), InvalidEmbeddingError),
        (["a"] * DIM, InvalidEmbeddingError),
        (np.full(DIM, 1e300), InvalidEmbeddingError),
        (np.full(DIM, 1e-30, dtype=np.float32), None),
        (np.full(DIM, 3e38, dtype=np.float32), None),
    ],
)
def test_bad_embeddings(
    cache: SemanticCache, embedding: Any, error: type[Exception] | None
) -> None:
    cache.put("first", "r", embedding=vec(1))
    if error is None:  # extreme but finite magnitudes are fine: only the direction counts
        cache.put("q", "r", embedding=embedding)
        hit = cache.get(
            "qq",
            embedding=embedding,
        )
        assert hit is not None
        assert hit.similarity == pytest.approx(1.0, abs=1e-6)
        return
    with pytest.raises(error):
        cache.put("q", "r", embedding=embedding)
    with pytest.raises(error):
        cache.get("q", embedding=embedding)
    assert cache.stats()["total_entries"] == 1


def test_embeddings_of_any_real_dtype_are_accepted(cache: SemanticCache) -> None:
    cache.put("a", "1", embedding=np.arange(1, DIM + 1, dtype=np.int64))
    cache.put("b", "2", embedding=np.ones(DIM, dtype=np.float64).tolist())
    assert cache.get("x", embedding=np.arange(1, DIM + 1, dtype=np.float16)).response == "1"  # type: ignore[union-attr]


# -- embedder failures ---------------------------------------------------------------------


def test_embedder_failure_is_a_miss_on_get_and_an_error_on_put(
    make_cache: CacheFactory, caplog: pytest.LogCaptureFixture
) -> None:
    emb = FakeEmbedder({"a": vec(1)})
    cache = make_cache(embedder=emb)
    cache.put("a", "1")
    emb.fail = RuntimeError("model server down")
    with caplog.at_level(logging.ERROR, logger="semcache"):
        assert cache.get("b") is None
    assert cache.stats()["misses"]["embedder_error"] == 1
    assert cache.get("a") is not None  # exact hits need no embedder
    with pytest.raises(EmbedderError):
        cache.put("c", "3")
    with pytest.raises(EmbedderError):
        cache.put_many(["c", "d"], ["3", "4"])
    assert cache.stats()["total_entries"] == 1


@pytest.mark.parametrize(
    "output", [np.ones((1, DIM + 1)), np.full((1, DIM), np.nan), np.ones((2, DIM)), "garbage"]
)
def test_embedder_garbage_is_an_embedder_error(make_cache: CacheFactory, output: Any) -> None:
    class Garbage(FakeEmbedder):
        def embed(self, texts: Sequence[str]) -> Any:
            return output

    cache = make_cache(embedder=Garbage({}))
    cache.put("seed", "r", embedding=vec(1))
    with pytest.raises(EmbedderError):
        cache.put("q", "r")
    assert cache.get("other") is None
    assert cache.stats()["misses"]["embedder_error"] == 1


# -- metrics hook --------------------------------------------------------------------------


def test_metrics_events(make_cache: CacheFactory, clock: FakeClock) -> None:
    events: list[MetricsEvent] = []
    cache = make_cache(metrics_hook=events.append, max_entries=2)
    cache.put("a", "1", embedding=vec(1), ttl=5)
    cache.get("a")
    cache.get("b", embedding=at_angle(0.95))
    cache.get("c", embedding=vec(0, 1))
    cache.get("d", bypass=True)
    cache.put_many(["e", "f"], ["5", "6"])
    cache.delete("f")
    clock.advance(10)
    cache.put("g", "7", ttl=1)
    clock.advance(2)
    cache.vacuum()
    summary = [(e.kind, e.hit, e.layer, e.reason, e.count) for e in events]
    assert summary == [
        ("put", None, None, None, 1),
        ("get", True, "exact", None, 1),
        ("get", True, "semantic", None, 1),
        ("get", False, None, "below_threshold", 1),
        ("get", False, None, "bypass", 1),
        ("evict", None, None, None, 1),  # "a" was least recently used
        ("put", None, None, None, 2),
        ("delete", None, None, None, 1),
        ("put", None, None, None, 1),
        ("expire", None, None, None, 1),  # vacuum
    ]
    assert all(e.latency >= 0 for e in events)
    assert events[3].similarity == pytest.approx(0.0, abs=1e-6)


def test_raising_metrics_hook_never_breaks_a_call(
    make_cache: CacheFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def hook(event: MetricsEvent) -> None:
        raise RuntimeError("statsd down")

    cache = make_cache(metrics_hook=hook)
    with caplog.at_level(logging.ERROR, logger="semcache"):
        cache.put("a", "1")
        assert cache.get("a") is not None
    assert "metrics_hook raised" in caplog.text


# -- lifecycle -----------------------------------------------------------------------------


def test_closed_cache_refuses_every_call(cache: SemanticCache) -> None:
    cache.close()
    cache.close()  # idempotent
    calls: list[Callable[[], Any]] = [
        lambda: cache.get("q"),
        lambda: cache.put("q", "r"),
        lambda: cache.put_many(["q"], ["r"]),
        lambda: cache.delete("q"),
        lambda: cache.vacuum(),
        lambda: cache.compact(),
        lambda: cache.clear_namespace("a"),
        lambda: cache.clear(),
        lambda: cache.stats(),
        lambda: cache.__enter__(),
    ]
    for call in calls:
        with pytest.raises(CacheClosedError):
            call()
    assert cache.closed


def test_context_manager_closes(make_cache: CacheFactory) -> None:
    with make_cache() as cache:
        cache.put("q", "r")
    assert cache.closed


def test_constructor_rejects_bad_arguments(tmp_path: Path) -> None:
    bad: list[dict[str, Any]] = [
        {"path": str(tmp_path / "x.db"), "store": MemoryStore()},
        {"embedder": object()},
        {"default_ttl": -1},
        {"index_backend": "nope"},
        {"vector_dtype": "float64"},
        {"multi_process_mode": "many"},
        {"stale_check_interval": -1},
        {"max_query_bytes": 0},
        {"min_confidence": float("nan")},
        {"clock": 3},
    ]
    for kwargs in bad:
        with pytest.raises((ConfigurationError, InvalidTTLError)):
            SemanticCache(**kwargs)


# -- persistence ---------------------------------------------------------------------------


def test_reopen_restores_entries_index_and_settings(tmp_path: Path, clock: FakeClock) -> None:
    path = str(tmp_path / "c.db")
    emb = HashingEmbedder(64)
    with SemanticCache(path, emb, clock=clock, similarity_threshold=0.6) as cache:
        cache.put("how do I reset my password", "Settings > Security", metadata={"n": 1})
        cache.put("what is the refund policy", "30 days")
        cache.delete("what is the refund policy")
    with SemanticCache(path, HashingEmbedder(64), clock=clock, similarity_threshold=0.6) as cache:
        hit = cache.get("how do i reset my password?")
        assert hit is not None
        assert hit.layer == "semantic"
        assert hit.metadata == {"n": 1}
        assert cache.get("what is the refund policy?") is None
        assert cache.stats()["dim"] == 64
        assert cache.stats()["indexed"] == {"default": 1}
    with pytest.raises(EmbedderMismatchError):
        SemanticCache(path, HashingEmbedder(128), clock=clock)
    with pytest.raises(EmbedderMismatchError):
        SemanticCache(path, HashingEmbedder(64, ngram_range=(2, 3)), clock=clock)
    with pytest.raises(EmbedderMismatchError):
        SemanticCache(path, HashingEmbedder(64), clock=clock, vector_dtype="float16")
    with SemanticCache(path, clock=clock) as exact_only:  # no embedder: exact layer works
        assert exact_only.get("How do I reset my password") is not None


def test_precomputed_dimension_is_remembered(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    with SemanticCache(path) as cache:
        cache.put("q", "r", embedding=vec(1))
    with SemanticCache(path) as cache:
        assert cache.dim == DIM
        with pytest.raises(DimensionMismatchError):
            cache.get("x", embedding=np.ones(DIM * 2))
        assert cache.get("x", embedding=vec(1)) is not None


def test_float16_similarities_match_float32(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    stored = rng.standard_normal((200, 64)).astype(np.float32)
    queries = stored + 0.3 * rng.standard_normal((200, 64)).astype(np.float32)
    results = {}
    for dtype in ("float32", "float16"):
        with SemanticCache(
            str(tmp_path / f"{dtype}.db"), vector_dtype=dtype, similarity_threshold=-1.0
        ) as cache:
            cache.put_many([f"s{i}" for i in range(200)], ["r"] * 200, embeddings=stored)
            hits = [cache.get(f"q{i}", embedding=queries[i]) for i in range(200)]
            results[dtype] = [(h.query, h.similarity) for h in hits if h is not None]
    assert [q for q, _ in results["float16"]] == [q for q, _ in results["float32"]]
    diffs = [abs(a[1] - b[1]) for a, b in zip(results["float16"], results["float32"], strict=True)]
    assert max(diffs) < 1e-3


def test_explicit_store_argument(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    with SemanticCache(store=store) as cache:
        cache.put("q", "r")
        assert cache.store is store
    with pytest.raises(CacheClosedError):
        store.count()


# -- concurrency and shared mode ------------------------------------------------------------


def test_threads_share_one_cache(make_cache: CacheFactory) -> None:
    cache = make_cache(embedder=HashingEmbedder(32), max_entries=150)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(60):
                cache.put(f"t{t} question {i}", f"{t}-{i}", namespace=f"n{t % 2}")
                hit = cache.get(f"t{t} question {i}", namespace=f"n{t % 2}")
                assert hit is not None
                assert hit.response == f"{t}-{i}"
                if i % 7 == 0:
                    cache.delete(f"t{t} question {i}", namespace=f"n{t % 2}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stats = cache.stats()
    assert stats["total_entries"] <= 150
    assert sum(stats["indexed"].values()) == stats["total_entries"]


def test_shared_mode_catches_up_with_another_writer(tmp_path: Path, clock: FakeClock) -> None:
    path = str(tmp_path / "shared.db")
    reader = SemanticCache(path, multi_process_mode="shared", clock=clock)
    writer = SemanticCache(path, multi_process_mode="shared", clock=clock)
    try:
        writer.put("stored", "answer", embedding=vec(1))
        hit = reader.get("paraphrase", embedding=at_angle(0.95))
        assert hit is not None
        assert hit.response == "answer"
        writer.delete("stored")
        assert reader.get("paraphrase", embedding=at_angle(0.95)) is None
        writer.put("again", "2", embedding=vec(1))
        writer.clear()
        assert reader.get("paraphrase", embedding=at_angle(0.95)) is None
    finally:
        reader.close()
        writer.close()


def test_shared_mode_respects_the_check_interval(tmp_path: Path, clock: FakeClock) -> None:
    path = str(tmp_path / "shared.db")
    reader = SemanticCache(path, multi_process_mode="shared", stale_check_interval=30, clock=clock)
    writer = SemanticCache(path, clock=clock)
    try:
        reader.get("warm", embedding=vec(1))  # first check happens now
        writer.put("stored", "answer", embedding=vec(1))
        assert reader.get("paraphrase", embedding=at_angle(0.95)) is None  # not yet
        assert reader.get("stored") is not None  # the exact layer is always current
        clock.advance(30)
        assert reader.get("paraphrase", embedding=at_angle(0.95)) is not None
    finally:
        reader.close()
        writer.close()


# -- the exact layer's in-memory map stays coherent ---------------------------------------


def test_recently_read_entries_never_outlive_their_removal(
    make_cache: CacheFactory, clock: FakeClock
) -> None:
    cache = make_cache(max_entries=3)
    cache.put_many(["a", "b", "c"], ["1", "2", "3"], ttl=100)

    def read_all() -> dict[str, str | None]:
        return {q: (h.response if (h := cache.get(q)) else None) for q in "abc"}

    assert read_all() == {"a": "1", "b": "2", "c": "3"}
    cache.put("a", "1b")  # replace
    cache.delete("b")
    assert read_all() == {"a": "1b", "b": None, "c": "3"}
    clock.advance(1)
    cache.put_many(["d", "e"], ["4", "5"])  # evicts c (least recently used) and a
    assert cache.get("c") is None
    clock.advance(200)
    assert cache.get("d") is not None
    cache.put("f", "6", ttl=1)
    assert cache.get("f") is not None
    clock.advance(2)
    assert cache.vacuum() == 1
    assert cache.get("f") is None
    cache.put("g", "7", namespace="other")
    assert cache.get("g", namespace="other") is not None
    assert cache.clear_namespace("other") == 1
    assert cache.get("g", namespace="other") is None
    assert cache.get("d") is not None
    cache.clear()
    assert cache.get("d") is None


def test_shared_mode_exact_layer_sees_other_writers(tmp_path: Path, clock: FakeClock) -> None:
    path = str(tmp_path / "shared.db")
    with (
        SemanticCache(path, multi_process_mode="shared", clock=clock) as reader,
        SemanticCache(path, multi_process_mode="shared", clock=clock) as writer,
    ):
        writer.put("q", "1")
        assert reader.get("q").response == "1"  # type: ignore[union-attr]
        writer.put("q", "2")
        assert reader.get("q").response == "2"  # type: ignore[union-attr]
        writer.delete("q")
        assert reader.get("q") is None


def test_path_may_be_a_pathlike(tmp_path: Path) -> None:
    with SemanticCache(tmp_path / "p.db") as cache:
        cache.put("q", "r")
    with SemanticCache(tmp_path / "p.db") as cache:
        assert cache.get("q") is not None


def test_the_in_memory_exact_map_is_bounded_and_written_through(
    make_cache: CacheFactory,
) -> None:
    from semcache._hot import HOT_CHARS, HOT_ENTRIES, entry_size

    cache = make_cache()
    hot = engine_of(cache).hot
    big = "x" * (HOT_CHARS // 100)
    cache.put_many([f"big {i}" for i in range(200)], [big] * 200)
    assert hot.chars <= HOT_CHARS
    assert 0 < len(hot) < 200
    assert cache.get("big 199").response == big  # type: ignore[union-attr]
    assert cache.get("big 0").response == big  # type: ignore[union-attr]  # from the store
    cache.clear()
    n = HOT_ENTRIES + 10
    cache.put_many([f"q{i}" for i in range(n)], [str(i) for i in range(n)])
    assert len(hot) == HOT_ENTRIES
    assert hot.chars == sum(entry_size(e) for e in hot.entries.values())
    cache.put_many(["dup", "DUP", "dup "], ["1", "2", "3"])
    assert cache.get("dup").response == "3"  # type: ignore[union-attr]
    assert sum(e.query.strip().lower() == "dup" for e in hot.entries.values()) == 1


def test_semantic_hits_read_entries_the_hot_map_holds_without_the_store(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Single mode: a semantic candidate the in-memory map holds is not read from the
    store; one it does not hold is read once, then kept. Whatever replaces, deletes or
    expires the entry is seen at once."""
    vec = np.eye(4, dtype=np.float32)
    near = np.array([0.99, 0.14, 0.0, 0.0], dtype=np.float32)
    with SemanticCache(
        str(tmp_path / "c.db"), clock=clock, similarity_threshold=0.9, guards=None
    ) as cache:  # no guards: "paraphrase" holds no number, "q0" does
        cache.put_many([f"q{i}" for i in range(4)], [f"a{i}" for i in range(4)], embeddings=vec)
        engine_of(cache).hot.clear()
        calls: list[list[int]] = []
        real = cache.store.get_by_ids

        def counting(ids: list[int], **options: Any) -> Any:
            if options.get("vectors"):  # (not answer_support's one read of every
                calls.append(list(ids))  # answer at its first need)
            return real(ids, **options)

        cache.store.get_by_ids = counting  # type: ignore[method-assign]
        assert cache.get("paraphrase", embedding=near).response == "a0"  # type: ignore[union-attr]
        assert len(calls) == 1
        assert cache.get("paraphrase", embedding=near).response == "a0"  # type: ignore[union-attr]
        assert len(calls) == 1  # the second time from memory
        cache.put("q0", "new answer", embedding=vec[0])
        assert cache.get("paraphrase", embedding=near).response == "new answer"  # type: ignore[union-attr]
        cache.put("q0", "short-lived", embedding=vec[0], ttl=5)
        clock.advance(10)
        assert cache.get("paraphrase", embedding=near) is None
        cache.put("q0", "again", embedding=vec[0])
        assert cache.delete("q0")
        assert cache.get("paraphrase", embedding=near) is None
        assert cache.stats()["misses"]["expired"] == 1
