"""Every bad argument gets a semcache error that names it, before anything is written.

Tables of bad values (wrong types, a bool where a number or count is due, NaN,
infinities, ``10**400``, negatives, huge strings...) for every constructor parameter and
every typed parameter of the public methods, run against both SemanticCache and
AsyncSemanticCache (which share one core). Each case asserts the specific exception,
that its message names the argument, and that nothing was written: a constructor leaves
no file behind, a method leaves the store exactly as it was.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import unit

from semcache import (
    AsyncSemanticCache,
    ConfigurationError,
    DimensionMismatchError,
    HashingEmbedder,
    InvalidEmbeddingError,
    InvalidInputError,
    InvalidMetadataError,
    InvalidNamespaceError,
    InvalidTextError,
    InvalidThresholdError,
    InvalidTTLError,
    MemoryStore,
    QueryTooLargeError,
    ResponseTooLargeError,
    SemanticCache,
    SemanticCacheError,
)
from semcache.integrations._flow import core_of

DIM = 8
HUGE = 10**400
HUGE_TEXT = "x" * (1 << 20)

#: Not a finite real number (a bool is not a number here).
NOT_NUMBERS: list[Any] = [
    "1",
    b"1",
    True,
    False,
    math.nan,
    math.inf,
    -math.inf,
    HUGE,
    -HUGE,
    1j,
    [1],
    {"a": 1},
    object(),
    HUGE_TEXT,
    np.float64("nan"),
]
#: Not a count (an int >= 1 that fits a store's 64-bit integer).
NOT_COUNTS: list[Any] = [
    0,
    -1,
    1.5,
    3.0,
    True,
    "3",
    None,
    HUGE,
    2**63,
    math.nan,
    math.inf,
    [3],
    HUGE_TEXT,
]
NOT_FLAGS: list[Any] = ["yes", "no", 1, 0, None, [True], HUGE]
NOT_CALLABLES: list[Any] = [5, "print", [len], HUGE_TEXT]
NOT_NAMESPACES: list[Any] = ["", "a\x00b", "x" * 256, "\ud800", 3, None, b"ns", HUGE_TEXT]
NOT_TEXTS: list[Any] = [5, None, b"bytes", "lone \ud800", ["q"]]


def _cases(param: str, values: list[Any], error: type[Exception]) -> list[Any]:
    return [pytest.param(param, v, error, id=f"{param}-{_id(v)}") for v in values]


def _id(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "huge-int"
    return text[:24]


CONSTRUCTOR_CASES = [
    *_cases("similarity_threshold", [*NOT_NUMBERS, None, 1.01, -1.5, 2], InvalidThresholdError),
    *_cases("default_ttl", [*NOT_NUMBERS, -1, -0.001], InvalidTTLError),
    *_cases("max_entries", [v for v in NOT_COUNTS if v is not None], ConfigurationError),
    *_cases("max_query_bytes", NOT_COUNTS, ConfigurationError),
    *_cases("max_response_bytes", NOT_COUNTS, ConfigurationError),
    *_cases("max_metadata_bytes", NOT_COUNTS, ConfigurationError),
    *_cases("min_confidence", [*NOT_NUMBERS, None], ConfigurationError),
    *_cases("stale_check_interval", [*NOT_NUMBERS, None, -1, -0.5], ConfigurationError),
    *_cases("embed_timeout", [*NOT_NUMBERS, 0, -1], ConfigurationError),
    *_cases("normalize", NOT_FLAGS, ConfigurationError),
    *_cases("answer_support", NOT_FLAGS, ConfigurationError),
    *_cases("answer_model", NOT_FLAGS, ConfigurationError),
    *_cases("error_budget", [*NOT_NUMBERS, 0, 1, -0.01, 1.5], ConfigurationError),
    *_cases("same_answer", [5, "exact", [len]], ConfigurationError),
    *_cases("answer_similarity", [*NOT_NUMBERS, 0, -0.5, 1.01, 2], ConfigurationError),
    *_cases("vector_dtype", ["float64", np.float32, None, 5, HUGE_TEXT], ConfigurationError),
    *_cases("multi_process_mode", ["both", None, 1, ["single"]], ConfigurationError),
    *_cases("index_backend", ["nope", None, 5, ["flat"], HUGE_TEXT], ConfigurationError),
    *_cases(
        "index_options",
        [
            [("M", 8)],
            5,
            "M",
            {"bogus": 1},
            {1: 2},
            {"M": 1},
            {"M": 0},
            {"M": "8"},
            {"M": True},
            {"M": HUGE},
            {"M": 2048},
            {"ef_search": 0},
            {"ef_construction": -3},
            {"build_threads": 10**6},
            {"switch_at": 1.5},
            {"switch_at": math.nan},
            {"background": 1},
            {"graph": "annoy"},
            {"kernel": "gpu"},
            {"shadow": "yes"},
        ],
        ConfigurationError,
    ),
    *_cases("namespace_quotas", [[("a", 1)], 5, "a"], ConfigurationError),
    *_cases(
        "namespace_quotas",
        [{"a": v} for v in NOT_COUNTS if v is not None],
        ConfigurationError,
    ),
    *_cases("namespace_quotas", [{"": 1}, {1: 1}, {"a\x00": 1}], InvalidNamespaceError),
    *_cases("confidence_fn", NOT_CALLABLES, ConfigurationError),
    *_cases("validator", NOT_CALLABLES, ConfigurationError),
    *_cases("guards", [*NOT_CALLABLES, "all", "Default"], ConfigurationError),
    *_cases("metrics_hook", NOT_CALLABLES, ConfigurationError),
    *_cases("progress", NOT_CALLABLES, ConfigurationError),
    *_cases("clock", [*NOT_CALLABLES, None], ConfigurationError),
    *_cases("embedder", [5, "hashing", object()], ConfigurationError),
]


@pytest.fixture(params=[SemanticCache, AsyncSemanticCache], ids=["sync", "async"])
def cls(request: pytest.FixtureRequest) -> Any:
    return request.param


def _leftovers(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize(("param", "value", "error"), CONSTRUCTOR_CASES)
def test_constructor_refuses(
    tmp_path: Path, cls: Any, param: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        cls(str(tmp_path / "cache.db"), **{param: value})
    assert param in str(info.value), info.value
    assert isinstance(info.value, InvalidInputError)
    assert _leftovers(tmp_path) == []  # refused before the store was opened


@pytest.mark.parametrize("value", [5, b"cache.db", "a\x00b.db", 1.5, ["c.db"]])
def test_constructor_refuses_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cls: Any, value: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="path"):
        cls(value)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("value", [5, "store", object()])
def test_constructor_refuses_store(tmp_path: Path, cls: Any, value: Any) -> None:
    with pytest.raises(ConfigurationError, match="store"):
        cls(store=value)


def test_index_options_for_another_backend(tmp_path: Path, cls: Any) -> None:
    path = str(tmp_path / "cache.db")
    with pytest.raises(ConfigurationError, match="index_options"):
        cls(path, index_backend="flat", index_options={"M": 8})
    with pytest.raises(ConfigurationError, match="index_options"):
        cls(path, index_backend="store", index_options={"kernel": "numpy"})
    assert _leftovers(tmp_path) == []


def test_unknown_index_option_is_refused_before_the_first_put(tmp_path: Path) -> None:
    """It used to be reported at the first put, after the entry was written."""
    path = str(tmp_path / "cache.db")
    with pytest.raises(ConfigurationError, match="bogus"):
        SemanticCache(path, index_options={"bogus": 1})
    assert _leftovers(tmp_path) == []


def test_an_index_that_cannot_be_built_fails_the_put_before_it_writes(tmp_path: Path) -> None:
    """A factory can only be tried once the dimension is known: at the first put of a
    namespace, before the store is written."""
    made: list[int] = []

    def factory(dim: int, dtype: Any, options: Any) -> Any:
        if dim != DIM:
            raise ValueError(f"this factory only builds dimension {DIM}")
        made.append(dim)
        from semcache import FlatIndex

        return FlatIndex(dim, dtype=dtype)

    with SemanticCache(str(tmp_path / "c.db"), index_backend=factory) as cache:
        with pytest.raises(ConfigurationError, match="index_backend"):
            cache.put("q", "a", embedding=np.ones(DIM + 1))
        assert cache.stats()["total_entries"] == 0
        assert cache.dim is None  # the failed put fixed no dimension
        cache.put("q", "a", embedding=np.ones(DIM))
        assert cache.get("other", embedding=np.ones(DIM)) is not None
        assert made == [DIM]

    def not_an_index(dim: int, dtype: Any, options: Any) -> Any:
        return object()

    with SemanticCache(index_backend=not_an_index) as cache:
        with pytest.raises(ConfigurationError, match="VectorIndex"):
            cache.put("q", "a", embedding=np.ones(DIM))
        assert cache.stats()["total_entries"] == 0


# -- methods ------------------------------------------------------------------------------
def _async_fn(prompt: str) -> Any:
    async def fn(prompt: str) -> str:
        return prompt

    return fn


def _sync_fn(prompt: str) -> str:
    return prompt


NOT_EMBEDDINGS: list[Any] = [
    "abc",
    [math.nan] * DIM,
    [math.inf] * DIM,
    [0.0] * DIM,
    [HUGE] * DIM,
    np.ones((2, DIM)),
    object(),
]

# (method, args, kwargs, error, the argument's name in the message)
METHOD_CASES: list[Any] = []


def _method(
    method: str, args: tuple[Any, ...], kwargs: dict[str, Any], error: Any, name: str
) -> None:
    METHOD_CASES.append(
        pytest.param(method, args, kwargs, error, name, id=f"{method}-{name}-{_id((args, kwargs))}")
    )


for _v in [*NOT_TEXTS, HUGE_TEXT]:
    _err = QueryTooLargeError if _v is HUGE_TEXT else InvalidTextError
    _method("get", (_v,), {}, _err, "query")
    _method("put", (_v, "a"), {}, _err, "query")
    _method("delete", (_v,), {}, _err, "query")
    _method("get_or_put", (_v, lambda: "a"), {}, _err, "query")
    _err = ResponseTooLargeError if _v is HUGE_TEXT else InvalidTextError
    _method("put", ("q", _v * 5 if _v is HUGE_TEXT else _v), {}, _err, "response")
for _v in NOT_NAMESPACES:
    for _m, _a in (
        ("get", ("q",)),
        ("put", ("q", "a")),
        ("put_many", (["q"], ["a"])),
        ("delete", ("q",)),
        ("get_or_put", ("q", lambda: "a")),
    ):
        _method(_m, _a, {"namespace": _v}, InvalidNamespaceError, "namespace")
    _method("clear_namespace", (_v,), {}, InvalidNamespaceError, "namespace")
    if _v is not None:
        _method("vacuum", (), {"namespace": _v}, InvalidNamespaceError, "namespace")
for _v in [*NOT_NUMBERS, -1, -0.5]:
    _method("put", ("q", "a"), {"ttl": _v}, InvalidTTLError, "ttl")
    _method("put_many", (["q"], ["a"]), {"ttl": _v}, InvalidTTLError, "ttl")
    _method("get_or_put", ("q", lambda: "a"), {"ttl": _v}, InvalidTTLError, "ttl")
    _method("memoize", (), {"ttl": _v}, InvalidTTLError, "ttl")
for _v in [*NOT_NUMBERS, None, 1.5, -2]:
    _method("set_similarity_threshold", (_v,), {}, InvalidThresholdError, "similarity_threshold")
for _v in NOT_FLAGS:
    _method("get", ("q",), {"bypass": _v}, InvalidInputError, "bypass")
    _method("vacuum", (), {"compact": _v}, InvalidInputError, "compact")
for _v in NOT_EMBEDDINGS:
    _method("get", ("q",), {"embedding": _v}, InvalidEmbeddingError, "embedding")
    _method("put", ("q", "a"), {"embedding": _v}, InvalidEmbeddingError, "embedding")
_method("get", ("q",), {"embedding": np.ones(DIM + 1)}, DimensionMismatchError, "dimension")
_method("put", ("q", "a"), {"embedding": np.ones(3)}, DimensionMismatchError, "dimension")
_method(
    "put_many",
    (["q", "r"], ["a", "b"]),
    {"embeddings": np.ones(DIM)},
    InvalidEmbeddingError,
    "embeddings",
)
for _v in [{"x": object()}, {1: "int key"}, {"nan": math.nan}, ["a"], "text", 5]:
    _method("put", ("q", "a"), {"metadata": _v}, InvalidMetadataError, "metadata")
    _method("get_or_put", ("q", lambda: "a"), {"metadata": _v}, InvalidMetadataError, "metadata")
for _v in [5, "q", None, 3.5]:
    _method("put_many", (_v, ["a"]), {}, InvalidTextError, "queries")
_method("put_many", (["q", "r"], ["a"]), {}, InvalidInputError, "responses")
_method("put_many", (["q"], ["a"]), {"metadata": [{}, {}]}, InvalidMetadataError, "metadata")
for _v in NOT_CALLABLES:
    _method("put_many", (["q"], ["a"]), {"progress": _v}, InvalidInputError, "progress")
for _v in [5, "answer", None]:
    _method("get_or_put", ("q", _v), {}, InvalidInputError, "compute")


def _snapshot(cache: SemanticCache) -> Any:
    store = cache.store
    return (store.seq(), store.namespace_counts(), cache.similarity_threshold)


@pytest.mark.parametrize(("method", "args", "kwargs", "error", "name"), METHOD_CASES)
def test_method_refuses(
    cls: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], error: Any, name: str
) -> None:
    cache = cls(store=MemoryStore(), embedder=HashingEmbedder(DIM))
    core = core_of(cache)  # the sync view of the same engine
    core.put_many(["seed", "other"], ["s", "o"], embeddings=np.stack([unit(1, DIM), unit(2, DIM)]))
    before = _snapshot(core)
    computed: list[int] = []
    args = tuple(_counting(a, computed) for a in args)

    def call() -> Any:
        if method == "memoize":
            fn = _async_fn if cls is AsyncSemanticCache else _sync_fn
            return getattr(cache, method)(*args, **kwargs)(fn)
        result = getattr(cache, method)(*args, **kwargs)
        if inspect.iscoroutine(result):
            return asyncio.run(result)
        return result

    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, SemanticCacheError)
    assert name in str(info.value), info.value
    assert _snapshot(core) == before  # nothing written
    assert computed == []  # get_or_put: the answer was not paid for
    core.close()


def _counting(arg: Any, computed: list[int]) -> Any:
    if callable(arg) and getattr(arg, "__name__", "") == "<lambda>":

        def compute() -> str:
            computed.append(1)
            return "a"

        return compute
    return arg


def test_bad_bool_flags_were_read_as_truthy_before() -> None:
    """``bypass="no"`` used to force a miss (a truthy string); now it is refused."""
    with SemanticCache() as cache:
        cache.put("q", "a")
        with pytest.raises(InvalidInputError, match="bypass"):
            cache.get("q", bypass="no")  # type: ignore[arg-type]
        assert cache.get("q", bypass=np.bool_(False)) is not None
        assert cache.get("q", bypass=True) is None


@pytest.mark.parametrize("value", [1, 2**62, np.int64(7), 1.0e300, 0.0])
def test_good_edges_are_accepted(value: Any) -> None:
    ttl = value
    with SemanticCache(default_ttl=ttl, max_entries=max(1, int(min(value, 2**62)))) as cache:
        cache.put("q", "a", ttl=ttl)
        assert cache.stats()["total_entries"] == 1


def test_every_constructor_parameter_has_a_case() -> None:
    """Adding a parameter without bad-value cases here fails this test."""
    params = set(inspect.signature(SemanticCache.__init__).parameters) - {"self"}
    covered = {p.values[0] for p in CONSTRUCTOR_CASES} | {"path", "store"}
    assert params == covered
    assert inspect.signature(AsyncSemanticCache.__init__).parameters.keys() == (
        inspect.signature(SemanticCache.__init__).parameters.keys()
    )


# -- store constructors -------------------------------------------------------------------
STORE_CASES = [
    *_cases("busy_timeout", [*NOT_NUMBERS, None, -1], ConfigurationError),
    *_cases("max_changes", [-1, 1.5, True, "9", None, HUGE, math.nan], ConfigurationError),
    *_cases("pragmas", [5, "wal", [("a", 1)]], ConfigurationError),
]


@pytest.mark.parametrize(("param", "value", "error"), STORE_CASES)
def test_sqlite_store_refuses(tmp_path: Path, param: str, value: Any, error: Any) -> None:
    from semcache import SQLiteStore

    with pytest.raises(error) as info:
        SQLiteStore(str(tmp_path / "s.db"), **{param: value})
    assert param in str(info.value)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("max_changes", -1),
        ("max_changes", HUGE),
        ("max_changes", "9"),
        ("socket_timeout", HUGE),
        ("socket_timeout", 0),
        ("socket_timeout", math.nan),
        ("connect_timeout", "2"),
        ("connect_timeout", -1),
        ("prefix", 5),
        ("prefix", ""),
        ("url", 5),
    ],
)
def test_redis_store_refuses(param: str, value: Any) -> None:
    """Checked before any connection (the address below is never dialled)."""
    pytest.importorskip("redis")
    from semcache import RedisStore

    kwargs: dict[str, Any] = {"url": "redis://127.0.0.1:9/0", param: value}
    with pytest.raises(ConfigurationError) as info:
        RedisStore(**kwargs)
    assert param in str(info.value)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("max_changes", -1),
        ("max_changes", True),
        ("pool_size", 0),
        ("pool_size", HUGE),
        ("connect_timeout", math.inf),
        ("connect_timeout", HUGE),
        ("ef_search", 0),
        ("ef_search", 10**6),
        ("hnsw_m", 1),
        ("hnsw_m", "16"),
        ("hnsw_ef_construction", 10**9),
        ("exact_search_below", -5),
        ("vector_search", "yes"),
        ("schema", 5),
        ("dsn", 5),
    ],
)
def test_postgres_store_refuses(param: str, value: Any) -> None:
    """Checked before any connection (the address below is never dialled)."""
    pytest.importorskip("psycopg")
    from semcache import PostgresStore

    kwargs: dict[str, Any] = {"dsn": "postgresql://127.0.0.1:9/none", param: value}
    with pytest.raises(ConfigurationError) as info:
        PostgresStore(**kwargs)
    assert param in str(info.value)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("table_name", 5),
        ("table_name", "ab"),
        ("table_name", "has space"),
        ("region", 5),
        ("endpoint_url", b"http://x"),
        ("create", "yes"),
        ("max_changes", -1),
        ("max_changes", True),
        ("lock_lease", 0),
        ("lock_lease", math.nan),
        ("connect_timeout", HUGE),
        ("read_timeout", -1),
        ("max_attempts", 0),
        ("max_attempts", 1.5),
    ],
)
def test_dynamodb_store_refuses(param: str, value: Any) -> None:
    """Checked before any connection (the endpoint below is never dialled)."""
    pytest.importorskip("boto3")
    from semcache import DynamoDBStore

    kwargs: dict[str, Any] = {
        "table_name": "semcache-args",
        "endpoint_url": "http://127.0.0.1:9",
        "region": "us-east-1",
        param: value,
    }
    with pytest.raises(ConfigurationError) as info:
        DynamoDBStore(**kwargs)
    assert param in str(info.value)
