"""Hostile input, by property (hypothesis) and by hand: every input gets its documented
answer, a stored entry or a specific exception raised before anything is written; and
no namespace ever sees another's entries through get, stats, eviction or clear."""

from __future__ import annotations

import json
import math
import threading
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import unit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semcache import (
    CacheClosedError,
    DimensionMismatchError,
    InvalidEmbeddingError,
    InvalidMetadataError,
    InvalidNamespaceError,
    InvalidTextError,
    InvalidThresholdError,
    InvalidTTLError,
    MetadataTooLargeError,
    QueryTooLargeError,
    ResponseTooLargeError,
    SemanticCache,
)

DIM = 8
CAPS = {"max_query_bytes": 64, "max_response_bytes": 128, "max_metadata_bytes": 256}
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Every kind of code point: lone surrogates, NUL and other controls, RTL, combining
#: marks, 4-byte characters.
any_text = st.text(st.characters(codec=None, categories=None), max_size=40) | st.sampled_from(
    ["", "\x00", "\ud800", "a\udfffb", "\u202eevil", "e\u0301\u0301", "\U0001f600" * 16, " "]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=12,
)


@pytest.fixture(params=["memory", "sqlite"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SemanticCache]:
    path = None if request.param == "memory" else str(tmp_path / "h.db")
    with SemanticCache(path, similarity_threshold=0.99, **CAPS) as c:  # type: ignore[arg-type]
        yield c


def utf8_len(text: str) -> int | None:
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        return None


@SETTINGS
@given(query=any_text, response=any_text)
def test_any_text_is_stored_exactly_or_refused(
    cache: SemanticCache, query: str, response: str
) -> None:
    before = cache.stats()["total_entries"]
    q_size, r_size = utf8_len(query), utf8_len(response)
    if q_size is None or r_size is None:
        with pytest.raises(InvalidTextError):
            cache.put(query, response)
    elif q_size > CAPS["max_query_bytes"]:
        with pytest.raises(QueryTooLargeError):
            cache.put(query, response)
    elif r_size > CAPS["max_response_bytes"]:
        with pytest.raises(ResponseTooLargeError):
            cache.put(query, response)
    else:
        cache.put(query, response)
        hit = cache.get(query)
        assert hit is not None
        assert hit.response == response  # byte for byte: NUL, RTL, combining marks...
        assert hit.query == query
        cache.delete(query)
        return
    assert cache.stats()["total_entries"] == before


@pytest.mark.parametrize("cap", ["max_query_bytes", "max_response_bytes", "max_metadata_bytes"])
def test_each_byte_cap_at_and_over_with_four_byte_characters(
    cache: SemanticCache, cap: str
) -> None:
    limit = CAPS[cap]
    at = "\U0001f600" * (limit // 4) + "x" * (limit % 4)
    over = at + "x"
    errors = {
        "max_query_bytes": QueryTooLargeError,
        "max_response_bytes": ResponseTooLargeError,
        "max_metadata_bytes": MetadataTooLargeError,
    }

    def put(text: str) -> None:
        if cap == "max_query_bytes":
            cache.put(text, "r")
        elif cap == "max_response_bytes":
            cache.put("q", text)
        else:
            cache.put("q", "r", metadata={"k": text[: len(text) - 5]})  # {"k":""} is 8 bytes

    put(at[: len(at) - (3 if cap == "max_metadata_bytes" else 0)])
    with pytest.raises(errors[cap]) as info:
        put(over + "xxxx")
    assert info.value.limit == limit


@SETTINGS
@given(metadata=st.dictionaries(any_text, json_values, max_size=4))
def test_metadata_round_trips_or_is_refused(cache: SemanticCache, metadata: dict[str, Any]) -> None:
    try:
        text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
        size = len(text.encode())
    except UnicodeEncodeError:
        size = None
    if size is None:
        with pytest.raises((InvalidMetadataError, InvalidTextError)):
            cache.put("q", "r", metadata=metadata)
    elif size > CAPS["max_metadata_bytes"]:
        with pytest.raises(MetadataTooLargeError):
            cache.put("q", "r", metadata=metadata)
    else:
        cache.put("q", "r", metadata=metadata)
        assert cache.get("q").metadata == json.loads(text)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "metadata",
    [
        {"set": {1, 2}},
        {"bytes": b"x"},
        {"inf": math.inf},
        {"obj": object()},
        {(1, 2): "tuple key"},
        {"x": [float("nan")]},
    ],
)
def test_non_json_metadata_is_refused(cache: SemanticCache, metadata: Any) -> None:
    with pytest.raises(InvalidMetadataError):
        cache.put("q", "r", metadata=metadata)
    assert cache.stats()["total_entries"] == 0


def test_deeply_nested_metadata_is_refused_not_a_crash(cache: SemanticCache) -> None:
    deep: Any = "leaf"
    for _ in range(100_000):
        deep = {"k": deep}
    with pytest.raises((InvalidMetadataError, MetadataTooLargeError)):
        cache.put("q", "r", metadata=deep)
    shallow: Any = 1
    for _ in range(20):
        shallow = [shallow]
    cache.put("q", "r", metadata={"n": shallow})
    assert cache.get("q").metadata == {"n": shallow}  # type: ignore[union-attr]


@SETTINGS
@given(namespace=any_text | st.text(min_size=200, max_size=400))
def test_any_namespace_name_is_accepted_or_refused(cache: SemanticCache, namespace: str) -> None:
    size = utf8_len(namespace)
    ok = (
        size is not None
        and 0 < size <= 255
        and not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in namespace)
    )
    if not ok:
        with pytest.raises(InvalidNamespaceError):
            cache.put("q", "r", namespace=namespace)
        with pytest.raises(InvalidNamespaceError):
            cache.get("q", namespace=namespace)
        return
    cache.put("q", "r", namespace=namespace)
    assert cache.get("q", namespace=namespace) is not None
    assert cache.get("q", namespace=namespace + "x") is None
    assert cache.stats()["entries"][namespace] == 1
    assert cache.clear_namespace(namespace) == 1


@pytest.mark.parametrize(
    ("embedding", "error"),
    [
        (np.full(DIM, np.nan), InvalidEmbeddingError),
        (np.full(DIM, -np.inf), InvalidEmbeddingError),
        (np.zeros(DIM), InvalidEmbeddingError),
        (np.ones((1, 1, DIM)), InvalidEmbeddingError),
        (np.ones(0), InvalidEmbeddingError),
        (np.array("text"), InvalidEmbeddingError),
        (np.ones(DIM, dtype=bool), InvalidEmbeddingError),
        (np.ones(DIM, dtype=np.complex64), InvalidEmbeddingError),
        (np.ones(DIM * 2), DimensionMismatchError),
        ([[1.0] * DIM, [1.0] * DIM], InvalidEmbeddingError),
        ({"not": "an array"}, InvalidEmbeddingError),
    ],
)
def test_bad_embeddings_are_refused(cache: SemanticCache, embedding: Any, error: type) -> None:
    cache.put("first", "r", embedding=unit(0, DIM))
    with pytest.raises(error):
        cache.put("q", "r", embedding=embedding)
    with pytest.raises(error):
        cache.get("q", embedding=embedding)
    assert cache.stats()["total_entries"] == 1


@pytest.mark.parametrize("value", [-1.0001, 1.0001, math.nan, math.inf, -math.inf, "0.5", True])
def test_thresholds_out_of_range(cache: SemanticCache, value: Any) -> None:
    with pytest.raises(InvalidThresholdError):
        cache.set_similarity_threshold(value)
    with pytest.raises(InvalidThresholdError):
        SemanticCache(similarity_threshold=value)
    for edge in (-1.0, 0.0, 1.0):
        cache.set_similarity_threshold(edge)


def test_ttl_zero_is_stored_expired_and_negative_is_refused(cache: SemanticCache) -> None:
    cache.put("zero", "r", ttl=0)
    assert cache.get("zero") is None
    assert cache.stats()["misses"]["expired"] == 1
    for bad in (-1, -1e-9, math.nan, math.inf, "10"):
        with pytest.raises(InvalidTTLError):
            cache.put("neg", "r", ttl=bad)
    assert cache.vacuum() == 1
    assert cache.stats()["total_entries"] == 0


def test_every_call_after_close_raises(cache: SemanticCache) -> None:
    cache.close()
    calls = [
        lambda: cache.get("q"),
        lambda: cache.put("q", "r"),
        lambda: cache.put_many(["q"], ["r"]),
        lambda: cache.delete("q"),
        lambda: cache.vacuum(),
        lambda: cache.compact(),
        lambda: cache.clear(),
        lambda: cache.clear_namespace("n"),
        lambda: cache.stats(),
        lambda: cache.get_or_put("q", lambda: "r"),
    ]
    for call in calls:
        with pytest.raises(CacheClosedError):
            call()
    cache.close()  # idempotent


def test_concurrent_close_gives_results_or_cache_closed(cache: SemanticCache) -> None:
    cache.put_many([f"q{i}" for i in range(50)], ["r"] * 50)
    errors: list[BaseException] = []
    closed_seen = threading.Event()
    started = threading.Barrier(5)

    def worker(t: int) -> None:
        started.wait(30)
        i = 0
        while True:
            try:
                cache.put(f"t{t}-{i}", "r", embedding=unit(i, DIM)) if i % 2 else cache.get(
                    f"q{i % 50}"
                )
            except CacheClosedError:
                closed_seen.set()
                return
            except BaseException as exc:
                errors.append(exc)
                return
            i += 1

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    started.wait(30)
    cache.close()
    for t in threads:
        t.join(30)
    assert errors == []
    assert closed_seen.is_set()


# -- namespaces are walls ------------------------------------------------------------------------
NAMESPACES = ["a", "b", "c"]
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(NAMESPACES), st.integers(0, 6)),
        st.tuples(st.just("delete"), st.sampled_from(NAMESPACES), st.integers(0, 6)),
        st.tuples(st.just("clear"), st.sampled_from(NAMESPACES), st.just(0)),
        st.tuples(st.just("get"), st.sampled_from(NAMESPACES), st.integers(0, 6)),
    ),
    max_size=40,
)


@SETTINGS
@given(ops=operations)
def test_no_namespace_sees_another(
    tmp_path_factory: pytest.TempPathFactory, ops: list[Any]
) -> None:
    """Same queries and vectors in every namespace; a quota on "a" only. The model:
    per-namespace dicts with "a" capped by its quota. Each get must answer from its own
    namespace (response names it) or miss; counts, eviction and clear stay inside."""
    quota = 3
    path = tmp_path_factory.mktemp("walls") / "w.db"
    with SemanticCache(  # guards off: lookups use placeholder texts ("x" against "q3")
        str(path), similarity_threshold=0.99, namespace_quotas={"a": quota}, guards=None
    ) as cache:
        model: dict[str, dict[int, str]] = {ns: {} for ns in NAMESPACES}
        for op, ns, k in ops:
            if op == "put":
                cache.put(f"q{k}", f"{ns}:{k}", embedding=unit(k, DIM), namespace=ns)
                model[ns].pop(k, None)
                model[ns][k] = f"{ns}:{k}"
            elif op == "delete":
                assert cache.delete(f"q{k}", namespace=ns) == (k in model[ns])
                model[ns].pop(k, None)
            elif op == "clear":
                assert cache.clear_namespace(ns) == len(model[ns])
                model[ns].clear()
            else:
                for hit in (
                    cache.get(f"q{k}", namespace=ns),
                    cache.get("paraphrase", embedding=unit(k, DIM), namespace=ns),
                ):
                    if hit is not None:
                        assert hit.namespace == ns
                        assert hit.response.startswith(f"{ns}:")
                        assert hit.response in model[ns].values()
            # quota evictions happen in "a" only; the other namespaces are exact
            counts = cache.stats()["entries"]
            assert counts.get("b", 0) == len(model["b"])
            assert counts.get("c", 0) == len(model["c"])
            assert counts.get("a", 0) <= quota
            if len(model["a"]) > quota:
                stored = {
                    k for k in list(model["a"]) if cache.get(f"q{k}", namespace="a") is not None
                }
                model["a"] = {k: v for k, v in model["a"].items() if k in stored}
            assert counts.get("a", 0) == len(model["a"])
        for ns in ("b", "c"):
            for k, response in model[ns].items():
                hit = cache.get("x", embedding=unit(k, DIM), namespace=ns)
                assert hit is not None
                assert hit.response == response
