"""Core-engine benchmarks on SQLiteStore (pytest-benchmark; not part of the test run).

Run:  .venv/bin/python -m pytest benchmarks/test_bench_cache.py \
          --benchmark-columns=min,median,mean,ops --benchmark-sort=name

Floors measured in the same run, so ratios are meaningful on any machine:
``apsw_point_lookup`` (one indexed SELECT through apsw, the exact hit's irreducible
cost), ``normalize_and_hash`` (NFKC+casefold+blake2b of a typical prompt) and
``put_floor_sqlite_insert`` (the one INSERT a put of a new key executes, through apsw on
the store's own schema: the row, its key index, the change-log and count triggers, and
the WAL commit).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import numpy as np
import pytest

from semcache import SemanticCache
from semcache._agreement import answer_digest
from semcache._budget_policy import RiskTable
from semcache._budgets import cell
from semcache._cache import engine_of
from semcache._model_bands import TESTED
from semcache._risk_model import TESTABLE
from semcache._store import SQLiteStore
from semcache._store._sqlite import _INSERT_NEW, DEFAULT_PRAGMAS
from semcache._text import make_key, normalize_text

DIM = 384
N = 10_000
PROMPT = "How do I configure connection pooling for PostgreSQL in a Django app?"


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    rng = np.random.default_rng(42)
    return unit(rng.standard_normal((N, DIM)))


@pytest.fixture(scope="module")
def filled(
    tmp_path_factory: pytest.TempPathFactory, vectors: np.ndarray
) -> Iterator[SemanticCache]:
    path = tmp_path_factory.mktemp("bench") / "filled.db"
    cache = SemanticCache(str(path))
    queries = [f"{PROMPT} (variant {i})" for i in range(N)]
    cache.put_many(queries, [f"answer {i}" for i in range(N)], embeddings=vectors)
    yield cache
    cache.close()


def test_apsw_point_lookup(benchmark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    conn = apsw.Connection(str(tmp_path / "floor.db"))
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, key BLOB UNIQUE, v TEXT)")
    with conn:
        conn.executemany(
            "INSERT INTO t(key, v) VALUES (?, ?)",
            ((make_key("default", str(i)), "x" * 200) for i in range(N)),
        )
    key = make_key("default", "77")

    def lookup() -> object:
        for row in conn.execute("SELECT id, v FROM t WHERE key = ?", (key,)):
            return row
        return None

    assert benchmark(lookup) is not None


def test_normalize_and_hash(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark(lambda: make_key("default", normalize_text(PROMPT)))


def test_get_exact_hit(benchmark, filled: SemanticCache) -> None:  # type: ignore[no-untyped-def]
    query = f"{PROMPT} (variant 1234)"
    hit = benchmark(filled.get, query)
    assert hit is not None
    assert hit.layer == "exact"


def test_get_miss_exact_only(benchmark, filled: SemanticCache) -> None:  # type: ignore[no-untyped-def]
    assert benchmark(filled.get, "a question nobody asked") is None


def test_get_semantic_hit_precomputed_10k(  # type: ignore[no-untyped-def]
    benchmark, filled: SemanticCache, vectors: np.ndarray
) -> None:
    rng = np.random.default_rng(1)
    query = unit(vectors[4321] + 0.01 * rng.standard_normal(DIM))
    # the number matches the stored text's, so the default guards pass it (and are timed)
    hit = benchmark(filled.get, "a paraphrase (variant 4321)", embedding=query)
    assert hit is not None
    assert hit.layer == "semantic"


def test_get_semantic_miss_precomputed_10k(  # type: ignore[no-untyped-def]
    benchmark, filled: SemanticCache
) -> None:
    rng = np.random.default_rng(2)
    query = unit(rng.standard_normal(DIM))
    assert benchmark(filled.get, "unrelated", embedding=query) is None


def test_put_floor_sqlite_insert(benchmark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "floor.db"
    SQLiteStore(path).close()  # the schema
    conn = apsw.Connection(str(path))
    for name, value in DEFAULT_PRAGMAS.items():
        conn.pragma(name, value)
    cursor = conn.cursor()
    response = "an answer of modest length " * 8
    keys = iter([make_key("default", f"{PROMPT} {i}") for i in range(200_000)])

    def insert() -> None:
        row = (next(keys), "default", PROMPT, response, None, 1.0, None, 1.0, None, None)
        cursor.execute(_INSERT_NEW, row)

    benchmark(insert)
    conn.close()


def test_put(benchmark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache = SemanticCache(str(tmp_path / "put.db"))
    counter = itertools.count()
    benchmark(lambda: cache.put(f"{PROMPT} {next(counter)}", "an answer of modest length " * 8))
    cache.close()


def _puts_with_embedding(benchmark, cache: SemanticCache, vectors: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """Benchmark a put of a new prompt with its embedding given, then close ``cache``."""
    counter = itertools.count()

    def put() -> None:
        i = next(counter)
        cache.put(f"{PROMPT} {i}", "an answer", embedding=vectors[i % N])

    benchmark(put)
    cache.close()


def test_put_with_embedding(benchmark, tmp_path: Path, vectors: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    _puts_with_embedding(benchmark, SemanticCache(str(tmp_path / "put.db")), vectors)


def test_put_with_embedding_answer_similarity(  # type: ignore[no-untyped-def]
    benchmark, tmp_path: Path, vectors: np.ndarray
) -> None:
    """A put under ``error_budget`` with ``answer_similarity``: the answer embedded (the
    hash stand-in, one text) and its vector stored with the entry in the put's write."""
    cache = SemanticCache(
        str(tmp_path / "put.db"),
        embedder=_HashEmbedder(),
        error_budget=0.01,
        answer_similarity=0.95,
    )
    _puts_with_embedding(benchmark, cache, vectors)


def test_put_many_10k(benchmark, tmp_path: Path, vectors: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    queries = [f"{PROMPT} {i}" for i in range(N)]
    responses = ["an answer"] * N
    counter = itertools.count()

    def setup() -> tuple[tuple[SemanticCache], dict[str, object]]:
        cache = SemanticCache(str(tmp_path / f"many{next(counter)}.db"))
        return (cache,), {}

    def run(cache: SemanticCache) -> None:
        cache.put_many(queries, responses, embeddings=vectors)
        cache.close()

    benchmark.pedantic(run, setup=setup, rounds=3)


# -- the error budget (issue 13): get_or_put's semantic hit with and without one ---------------
def _letters(i: int) -> str:
    """A word for ``i`` without digits (the default guards compare numbers)."""
    out = ""
    while True:
        i, r = divmod(i, 26)
        out += chr(97 + r)
        if not i:
            return out


@pytest.fixture(scope="module")
def budgeted(
    tmp_path_factory: pytest.TempPathFactory, vectors: np.ndarray
) -> Iterator[SemanticCache]:
    """The ``filled`` cache with ``error_budget=0.01``, its policy trained: the counters
    say that a lone candidate (evidence class 0) is right in every similarity bin, as
    a long-running cache's would where the answers hold."""
    cache = _trained(tmp_path_factory.mktemp("bench") / "budgeted.db", vectors)
    yield cache
    cache.close()


def _trained(path: Path, vectors: np.ndarray, **options: Any) -> SemanticCache:
    """A cache with ``error_budget=0.01`` (and ``options``) filled with the N variants,
    whose stored counters say a lone candidate (evidence class 0) was right in every
    bin (names from ``semcache._budgets.cell``, the risk table's layout)."""
    cache = SemanticCache(str(path), error_budget=0.01, **options)
    queries = [f"{PROMPT} (variant {i})" for i in range(N)]
    cache.put_many(queries, [f"answer {i}" for i in range(N)], embeddings=vectors)
    table = RiskTable()
    counts = {cell("n", table, 0, b): 1000.0 for b in range(table.bins)}
    cache.store.add_counts("default", {**counts, "gets": 100_000.0})  # type: ignore[attr-defined]
    return cache


def _get_or_put_semantic(  # type: ignore[no-untyped-def]
    benchmark,
    cache: SemanticCache,
    vectors: np.ndarray,
    words: str = "a paraphrase",
    near: int = 4321,
) -> None:
    """Time ``get_or_put`` of new texts (``words`` and a new word each, so that rows
    sharing a cache pass different ones) near entry ``near``: a semantic hit."""
    rng = np.random.default_rng(1)
    query = unit(vectors[near] + 0.01 * rng.standard_normal(DIM))
    names = itertools.count()
    computed = []

    def compute() -> str:
        computed.append(1)
        return f"answer {near}"

    def ask() -> str:
        # a new text each time: the exact layer misses, the semantic layer answers (a
        # verification's put would make a repeated text an exact hit)
        text = f"{words} {_letters(next(names))} (variant {near})"
        return cache.get_or_put(text, compute, embedding=query)

    for _ in range(64):  # the budget's level is set every 32 gets
        ask()
    computed.clear()
    assert benchmark(ask) == f"answer {near}"
    calls = next(names) - 64
    assert len(computed) <= 0.05 * calls  # served, bar the verifications


def test_get_or_put_semantic_hit_10k(  # type: ignore[no-untyped-def]
    benchmark, filled: SemanticCache, vectors: np.ndarray
) -> None:
    _get_or_put_semantic(benchmark, filled, vectors)


def test_get_or_put_semantic_hit_10k_error_budget(  # type: ignore[no-untyped-def]
    benchmark, budgeted: SemanticCache, vectors: np.ndarray
) -> None:
    _get_or_put_semantic(benchmark, budgeted, vectors)


#: Per ``modelled`` cache (its file), an entry whose answer is one of its answer
#: model's classes.
_CLASS: dict[str, int] = {}


@pytest.fixture(scope="module")
def modelled(
    tmp_path_factory: pytest.TempPathFactory, vectors: np.ndarray
) -> Iterator[SemanticCache]:
    """``budgeted`` whose risk model decides: 600 verified gets near random entries
    (similarity 0.75 to 1) taught it, their fresh answer right at similarity 0.9 and
    above, wrong below, and the verified candidates' predicted wrong answers are set
    at ``TESTABLE``, and its lowest band's LLM calls at one wrong answer predicted and
    found (``semcache._model_bands``: else the estimates below the bands the taught
    gets tested are floored, and these near repeats refused); so each timed get
    computes its candidate's features and the model's estimate (reopened: the model is
    fitted on the store's outcome log)."""
    path = tmp_path_factory.mktemp("bench") / "modelled.db"
    rng = np.random.default_rng(2)
    with _trained(path, vectors) as cache:
        policy = engine_of(cache).budgets.policy("default")  # type: ignore[union-attr]
        decide = policy.decide

        def verify(ev: Any, record: Any = None, features: Any = None) -> Any:
            return dataclasses.replace(decide(ev, record, features), action="verify")

        policy.decide = verify  # type: ignore[method-assign]
        taught = []  # entries whose answer the taught gets stored a second time
        for i in range(600):
            j = int(rng.integers(N))
            query = unit(vectors[j] + rng.uniform(0.0, 0.05) * rng.standard_normal(DIM))
            right = float(query @ vectors[j]) >= 0.9
            fresh = f"answer {j}" if right else f"another answer {i}"
            taught += [j] if right else []
            text = f"taught {_letters(i)} (variant {j})"  # (the numbers guard agrees)
            cache.get_or_put(text, lambda f=fresh: f, embedding=query)
        # the lowest band of the model's estimates tested by LLM calls and held (one
        # wrong answer predicted, one found), as over a long-running cache's traffic:
        # no floor below the bands tested, so the model's low estimate decides
        tested = {"predicted": TESTABLE, "bands.p.0": TESTED, "bands.w.0": TESTED}
        cache.store.add_counts("default", tested)  # type: ignore[attr-defined]
    cache = SemanticCache(str(path), error_budget=0.01)
    policy = engine_of(cache).budgets.policy("default")  # type: ignore[union-attr]
    assert policy.modelled
    # the verified gets stored their answers a second time: the namespace has an answer
    # model, whose reading is among the features; fitted here, not on its thread during
    # the timed rounds
    models = engine_of(cache).answer_models
    assert models is not None
    fitted = models.fit("default")
    assert fitted is not None
    _CLASS[str(path)] = next(j for j in taught if answer_digest(f"answer {j}") in fitted.column)
    # One query repeated fills the level's window with its own risk: the level is then
    # that risk, and the model's upper bound (always above its mean) has every such get
    # verified (with a window of varied risks, as traffic has, a third still were). The
    # row times the work of a get the model decides (its features and estimate): its
    # verifications are served instead (this wrapper is in the row too).
    decide = policy.decide

    def serving(ev: Any, record: Any = None, features: Any = None) -> Any:
        decision = decide(ev, record, features)
        if decision.action == "verify":
            return dataclasses.replace(decision, action="serve")
        return decision

    policy.decide = serving  # type: ignore[method-assign]
    yield cache
    cache.close()


def test_get_or_put_semantic_hit_10k_error_budget_model(  # type: ignore[no-untyped-def]
    benchmark, modelled: SemanticCache, vectors: np.ndarray
) -> None:
    _get_or_put_semantic(benchmark, modelled, vectors)
    policy = engine_of(modelled).budgets.policy("default")  # type: ignore[union-attr]
    assert policy.modelled  # (the model's estimate decided these gets)


def test_get_or_put_semantic_hit_10k_error_budget_model_class(  # type: ignore[no-untyped-def]
    benchmark, modelled: SemanticCache, vectors: np.ndarray
) -> None:
    """The row above near an entry whose answer is one of the answer model's classes
    (stored twice): each get reads its probability among the features (the row above
    serves an answer stored once, which the model is not read for)."""
    _get_or_put_semantic(
        benchmark,
        modelled,
        vectors,
        "a class paraphrase",
        near=_CLASS[modelled.store.path],  # type: ignore[attr-defined]
    )


def test_get_or_put_semantic_hit_10k_error_budget_model_off(  # type: ignore[no-untyped-def]
    benchmark, modelled: SemanticCache, vectors: np.ndarray
) -> None:
    """The same cache with its model set aside (the table decides): what the model
    adds is the difference with the row above."""
    policy = engine_of(modelled).budgets.policy("default")  # type: ignore[union-attr]
    model, policy.model = policy.model, None
    try:
        _get_or_put_semantic(benchmark, modelled, vectors, "another paraphrase")
    finally:
        policy.model = model


@pytest.fixture(scope="module")
def modelled_plain(modelled: SemanticCache) -> Iterator[SemanticCache]:
    """The ``modelled`` cache's file opened again without a budget: a plain get on the
    same entries, answers and prototypes (``filled`` has no answer stored twice, so no
    prototypes, and 600 entries fewer)."""
    cache = SemanticCache(modelled.store.path)  # type: ignore[attr-defined]
    yield cache
    cache.close()


def test_get_or_put_semantic_hit_10k_modelled_no_budget(  # type: ignore[no-untyped-def]
    benchmark, modelled_plain: SemanticCache, vectors: np.ndarray
) -> None:
    """The plain get the two rows above add to: the same cache without a budget."""
    _get_or_put_semantic(benchmark, modelled_plain, vectors, "a plain paraphrase")


class _HashEmbedder:
    """A deterministic stand-in for a model (a vector per text from its hash), so that
    ``answer_similarity`` can embed answers at put; the gets below pass their query's
    embedding, so what is timed is the comparison, not a model."""

    dim = DIM
    fingerprint = "bench-hash:dim=384"

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = [
            np.random.default_rng(int.from_bytes(make_key("a", t)[:8], "little"))
            .standard_normal(DIM)
            .astype(np.float32)
            for t in texts
        ]
        return np.stack(rows)


@pytest.fixture(scope="module")
def answer_similar(
    tmp_path_factory: pytest.TempPathFactory, vectors: np.ndarray
) -> Iterator[SemanticCache]:
    """``budgeted`` with ``answer_similarity=0.95``: every entry's record holds its
    answer's vector (made at put), decoded for the candidates of each get."""
    path = tmp_path_factory.mktemp("bench") / "answer_similar.db"
    cache = _trained(path, vectors, embedder=_HashEmbedder(), answer_similarity=0.95)
    yield cache
    cache.close()


def test_get_or_put_semantic_hit_10k_error_budget_answer_similarity(  # type: ignore[no-untyped-def]
    benchmark, answer_similar: SemanticCache, vectors: np.ndarray
) -> None:
    _get_or_put_semantic(benchmark, answer_similar, vectors)


# -- answer_support (issue 13): a semantic get that reads the 8 nearest ----------------------
@pytest.fixture(scope="module")
def clustered() -> np.ndarray:
    """10k prompts in 100 clusters (entry ``i`` in cluster ``i % 100``): each at cosine
    0.87 to its cluster's centre, about 0.76 to the others of its cluster, so that a
    query near one has its 7 next neighbours above the support floor (0.5) and below
    the threshold (0.85): with ``answer_support`` all 8 are read, without it one."""
    rng = np.random.default_rng(7)
    centres = unit(rng.standard_normal((100, DIM)))[np.arange(N) % 100]
    noise = rng.standard_normal((N, DIM))
    noise -= (noise * centres).sum(axis=1, keepdims=True) * centres
    return unit(0.87 * centres + np.sqrt(1 - 0.87**2) * unit(noise))


#: vectors (random: no neighbour above the floor; clustered: 7), answers (unique, or
#: 100 repeating over the 10k: a cluster's prompts share theirs; mixed: 200, a
#: cluster's prompts split between two, so that the favoured answer is chosen from
#: the local prototypes, with the candidates' vectors; the two answers' prototypes
#: are then almost one, each the other's rival, and the get is a miss: the cost of a
#: contested get), answer_support.
SUPPORT_CASES = [
    "random-unique-on",
    "random-unique-off",
    "clustered-unique-on",
    "clustered-unique-off",
    "clustered-repeated-on",
    "clustered-repeated-off",
    "clustered-mixed-on",
    "clustered-mixed-off",
    "clustered-long-on",
    "clustered-long-off",
]
LONG = "To pool connections, set CONN_MAX_AGE and run pgbouncer in transaction mode. " * 20


@pytest.fixture(scope="module", params=SUPPORT_CASES)
def supported(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    vectors: np.ndarray,
    clustered: np.ndarray,
) -> Iterator[tuple[SemanticCache, np.ndarray, str]]:
    """A 10k cache for :data:`SUPPORT_CASES` (``long``: unique answers of 1,500
    characters), its vectors and its case."""
    kind, answers, flag = request.param.split("-")
    rows = vectors if kind == "random" else clustered
    path = tmp_path_factory.mktemp("bench") / f"{request.param}.db"
    cache = SemanticCache(str(path), answer_support=flag == "on")
    queries = [f"{PROMPT} (variant {i})" for i in range(N)]
    if answers == "long":
        texts = [f"answer {i}: {LONG[:1500]}" for i in range(N)]
    else:
        every = {"unique": N, "repeated": 100, "mixed": 200}[answers]
        texts = [f"answer {i % every}" for i in range(N)]
    cache.put_many(queries, texts, embeddings=rows)
    models = engine_of(cache).answer_models
    if models is not None:  # (fitted now, not on its thread during the timed rounds)
        with engine_of(cache).lock:
            models.fit("default")
    yield cache, rows, request.param
    cache.close()


def test_get_semantic_hit_answer_support_10k(  # type: ignore[no-untyped-def]
    benchmark, supported: tuple[SemanticCache, np.ndarray, str]
) -> None:
    cache, rows, case = supported
    rng = np.random.default_rng(1)
    query = unit(rows[4321] + 0.01 * rng.standard_normal(DIM))
    hit = benchmark(cache.get, "a paraphrase (variant 4321)", embedding=query)
    if case == "clustered-mixed-on":
        assert hit is None  # (its answer's rival outweighs it)
        assert cache.stats()["misses"]["support"] > 0
        return
    assert hit is not None
    assert hit.query == f"{PROMPT} (variant 4321)"
