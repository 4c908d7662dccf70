"""``SemanticCache(..., error_budget=...)``: the budget in the engine (issue 13).

Real SQLite files in tmp_path, the real policy (``semcache._budget_policy``), seeded;
the clock injected. Queries carry their embeddings (``embedding=``), so the
similarities are exact: every paraphrase of topic ``t`` sits at a chosen cosine from
the topic's axis. Where a test is about what the engine does with one decision (a
verification), the policy's ``decide`` is replaced on the cache's policy object.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import multiprocessing as mp
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semcache import (
    AsyncSemanticCache,
    ConfigurationError,
    Hit,
    InvalidInputError,
    MemoryStore,
    SemanticCache,
    SQLiteStore,
    StoreError,
)
from semcache._budget_policy import ENTRY_PRIORS, SPARE_SD, Decision, spare_mean
from semcache._budgets import Budgets, weight_counter
from semcache._cache import engine_of
from semcache._engine import Engine
from semcache._store import NewEntry

DIM = 16


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def vec(topic: int, i: int, sim: float = 0.95) -> np.ndarray:
    """The i-th paraphrase of ``topic``: cosine ``sim`` to the topic's axis (i = -1:
    the axis itself), its other part along one of the remaining axes."""
    v = np.zeros(DIM, dtype=np.float32)
    if i < 0:
        v[topic] = 1.0
        return v
    v[topic] = sim
    other = 8 + (i % 8)  # topics use axes 0..7, paraphrases spread over 8..15
    angle = (i // 8) * 0.37
    v[other] = math.sqrt(1 - sim * sim) * math.cos(angle)
    v[8 + ((i + 1) % 8)] += math.sqrt(1 - sim * sim) * math.sin(angle)
    return v


def budget_cache(path: Path | None = None, **kwargs: Any) -> SemanticCache:
    kwargs.setdefault("error_budget", 0.1)
    kwargs.setdefault("clock", Clock())
    return SemanticCache(path, guards=None, index_backend="flat", **kwargs)


def engine(cache: SemanticCache) -> Engine:
    return engine_of(cache)


class Counter:
    """compute(): returns ``answer`` and counts its calls."""

    def __init__(self, answer: str | Callable[[int], str]) -> None:
        self.answer = answer
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.answer if isinstance(self.answer, str) else self.answer(self.calls)


def force(cache: SemanticCache, action: str, ns: str = "default") -> list[Decision]:
    """Make the namespace's policy decide ``action`` for every candidate (records the
    calls' decisions)."""
    budgets = engine(cache).budgets
    assert budgets is not None
    pol = budgets.policy(ns)
    real = pol.decide
    made: list[Decision] = []

    def decide(ev: Any, record: Any = None, features: Any = None) -> Decision:
        d = real(ev, record, features)
        if ev is not None:
            d = Decision(action, d.risk, d.upper, 0.3, 1.0)  # type: ignore[arg-type]
        made.append(d)
        return d

    pol.decide = decide
    return made


def spy(cache: SemanticCache, ns: str = "default") -> list[tuple[Any, Any]]:
    """Record what the namespace's policy is asked to decide on: ``(evidence, record)``
    per call (the decisions are the policy's own)."""
    budgets = engine(cache).budgets
    assert budgets is not None
    pol = budgets.policy(ns)
    real = pol.decide
    asked: list[tuple[Any, Any]] = []

    def decide(ev: Any, record: Any = None, features: Any = None) -> Decision:
        asked.append((ev, record))
        return real(ev, record, features)

    pol.decide = decide
    return asked


def record_of(store: Any, entry_id: int) -> list[list[float]] | None:
    text = store.get_by_ids([entry_id])[entry_id].record
    return None if text is None else json.loads(text)


def entry_id(cache: SemanticCache, query: str, ns: str = "default") -> int:
    eng = engine(cache)
    stored = eng.store.get_by_key(eng.key(ns, query))
    assert stored is not None
    return stored.id


# -- the policy reaches the engine ---------------------------------------------------------
def test_a_fresh_budget_misses_then_learns_to_serve_right_answers(tmp_path: Path) -> None:
    with budget_cache(tmp_path / "c.db") as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        compute = Counter("A")
        served = []
        for i in range(400):
            before = compute.calls
            assert cache.get_or_put(f"q{i}", compute, embedding=vec(0, i)) == "A"
            served.append(compute.calls == before)
        stats = cache.stats()
    # Nothing is known at first: the first gets call the LLM ...
    assert not any(served[:20])
    # ... and once the observations say the answers agree, most are served.
    assert sum(served[-100:]) > 50
    assert stats["hits"]["semantic"] == sum(served)
    assert stats["misses"]["budget"] > 0
    budget = stats["budget"]
    assert budget["observations"] >= 20
    assert 0 < budget["verifications"] < 100  # verified now and then, never free


def test_a_budget_never_serves_answers_that_disagree(tmp_path: Path) -> None:
    with budget_cache(tmp_path / "c.db") as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        compute = Counter(lambda n: f"answer {n}")  # every paraphrase has another answer
        for i in range(300):
            cache.get_or_put(f"q{i}", compute, embedding=vec(0, i, sim=0.9))
        stats = cache.stats()
    assert compute.calls == 300
    assert stats["hits"]["semantic"] == 0


def test_the_threshold_rule_is_unchanged_without_a_budget(tmp_path: Path) -> None:
    with SemanticCache(tmp_path / "c.db", guards=None) as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        compute = Counter("B")
        assert cache.get_or_put("q", compute, embedding=vec(0, 1)) == "A"
        assert compute.calls == 0
        assert cache.stats()["budget"] is None


# -- verification ---------------------------------------------------------------------------
def test_verify_calls_compute_serves_the_fresh_answer_and_records(tmp_path: Path) -> None:
    with budget_cache(tmp_path / "c.db") as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        stored = entry_id(cache, "topic 0")
        made = force(cache, "verify")
        compute = Counter("B")
        assert cache.get_or_put("q1", compute, embedding=vec(0, 1)) == "B"
        assert compute.calls == 1
        assert [d.action for d in made] == ["verify"]
        # the stored answer was wrong at 0.95: its record says so; the fresh one is put
        assert record_of(cache.store, stored) == [[pytest.approx(0.95, abs=1e-3), 0.0]]
        assert cache.get("q1", embedding=vec(0, 1)).response == "B"  # type: ignore[union-attr]
        assert cache.get("topic 0").response == "A"  # type: ignore[union-attr]
        stats = cache.stats()["budget"]
        assert (stats["verifications"], stats["observations"]) == (1, 1)


def test_a_verification_that_agrees_records_a_right_answer(tmp_path: Path) -> None:
    with budget_cache(tmp_path / "c.db", same_answer=lambda a, b: a[0] == b[0]) as cache:
        cache.put("topic 0", "A: yes", embedding=vec(0, -1))
        force(cache, "verify")
        assert cache.get_or_put("q1", lambda: "A, indeed", embedding=vec(0, 1)) == "A, indeed"
        assert record_of(cache.store, entry_id(cache, "topic 0")) == [
            [pytest.approx(0.95, abs=1e-3), 1.0]
        ]


def test_every_candidate_read_is_observed(tmp_path: Path) -> None:
    with budget_cache(tmp_path / "c.db") as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        cache.put("near", "B", embedding=vec(0, 3, sim=0.9))
        force(cache, "miss")
        assert cache.get_or_put("q1", lambda: "A", embedding=vec(0, 1)) == "A"
        first = record_of(cache.store, entry_id(cache, "topic 0"))
        second = record_of(cache.store, entry_id(cache, "near"))
    assert first is not None
    assert first[0][1] == 1.0
    assert second is not None
    assert second[0][1] == 0.0


def test_a_plain_get_serves_only_what_the_budget_serves(tmp_path: Path) -> None:
    with budget_cache(tmp_path / "c.db") as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        made = force(cache, "verify")
        assert cache.get("q1", embedding=vec(0, 1)) is None  # a verify is a miss here
        assert cache.stats()["misses"]["budget"] == 1
        assert cache.stats()["budget"]["verifications"] == 0  # nothing was called
        made.clear()
        force(cache, "serve")
        hit = cache.get("q1", embedding=vec(0, 1))
        assert hit is not None
        assert hit.response == "A"
        assert hit.layer == "semantic"
        assert hit.entry_id == entry_id(cache, "topic 0")


# -- nothing is lost when something fails -----------------------------------------------------
def test_a_failing_compute_during_verify_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    with budget_cache(tmp_path / "c.db") as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        stored = entry_id(cache, "topic 0")
        force(cache, "verify")

        def boom() -> str:
            raise RuntimeError("LLM down")

        with pytest.raises(RuntimeError, match="LLM down"):
            cache.get_or_put("q1", boom, embedding=vec(0, 1))
        assert record_of(cache.store, stored) is None
        assert cache.store.count() == 1
        assert cache.get("topic 0").response == "A"  # type: ignore[union-attr]
        assert cache.stats()["budget"]["observations"] == 0
    store = SQLiteStore(tmp_path / "c.db")
    try:
        counts = store.read_counts("default")
        assert not [k for k in counts if k.startswith(("n/", "w/"))], counts
    finally:
        store.close()


def test_a_failing_same_answer_learns_nothing_and_serves_the_fresh_answer(
    tmp_path: Path,
) -> None:
    def broken(a: str, b: str) -> bool:
        raise ValueError("cannot compare")

    with budget_cache(tmp_path / "c.db", same_answer=broken) as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        force(cache, "verify")
        assert cache.get_or_put("q1", lambda: "B", embedding=vec(0, 1)) == "B"
        assert record_of(cache.store, entry_id(cache, "topic 0")) is None
        stats = cache.stats()["budget"]
        assert (stats["learn_errors"], stats["observations"]) == (1, 0)
        assert cache.get("q1", embedding=vec(0, 1)).response == "B"  # type: ignore[union-attr]


class FailingRecords(MemoryStore):
    def write_records(self, records: Any) -> None:
        raise StoreError("disk full")

    def update_records(self, ids: Any, change: Any) -> None:
        raise StoreError("disk full")


def test_a_store_that_fails_to_write_records_loses_nothing() -> None:
    with budget_cache(store=FailingRecords()) as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        force(cache, "verify")
        assert cache.get_or_put("q1", lambda: "B", embedding=vec(0, 1)) == "B"
        assert cache.get("topic 0").response == "A"  # type: ignore[union-attr]
        assert cache.get("q1", embedding=vec(0, 1)).response == "B"  # type: ignore[union-attr]
        assert cache.stats()["budget"]["learn_errors"] == 1


# -- persistence and sharing ----------------------------------------------------------------
def test_records_and_counts_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with budget_cache(path) as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        stored = entry_id(cache, "topic 0")
        force(cache, "verify")
        cache.get_or_put("q1", lambda: "B", embedding=vec(0, 1))
        budgets = engine(cache).budgets
        assert budgets is not None
        table = budgets.policy("default").table.to_json()
    with budget_cache(path) as cache:
        assert record_of(cache.store, stored) == [[pytest.approx(0.95, abs=1e-3), 0.0]]
        budgets = engine(cache).budgets
        assert budgets is not None
        pol = budgets.policy("default")
        assert pol.table.to_json() == table
        assert pol.gets == 1
        assert sum(map(sum, pol.table.wrong)) == 1.0


@contextlib.contextmanager
def two_shared_caches(
    path: Path,
) -> Iterator[tuple[SemanticCache, SemanticCache, Callable[[], None]]]:
    """Two budget caches on one file, each with its own clock, and ``hand_over()``:
    a's next get syncs its counts to the file, then b's next get reads them."""
    clock_a, clock_b = Clock(), Clock()
    a = budget_cache(path, multi_process_mode="shared", clock=clock_a)
    b = budget_cache(path, multi_process_mode="shared", clock=clock_b)

    def hand_over() -> None:
        clock_a.now += 1.0
        a.get("unrelated", embedding=vec(1, -1))
        clock_b.now += 1.0
        b.get("unrelated", embedding=vec(1, -1))

    try:
        yield a, b, hand_over
    finally:
        a.close()
        b.close()


def test_two_caches_on_one_file_share_what_they_learn(tmp_path: Path) -> None:
    with two_shared_caches(tmp_path / "c.db") as (a, b, hand_over):
        a.put("topic 0", "A", embedding=vec(0, -1))
        pol_b = engine(b).budgets.policy("default")  # type: ignore[union-attr]
        assert sum(map(sum, pol_b.table.n)) == 0
        force(a, "verify")
        a.get_or_put("q1", lambda: "B", embedding=vec(0, 1))
        hand_over()
        pol_b = engine(b).budgets.policy("default")  # type: ignore[union-attr]
        assert sum(map(sum, pol_b.table.n)) == 1.0
        assert sum(map(sum, pol_b.table.wrong)) == 1.0
        # the record a wrote is the one b reads with the entry
        stored = entry_id(b, "topic 0")
        assert record_of(b.store, stored) == [[pytest.approx(0.95, abs=1e-3), 0.0]]


def test_the_records_weight_is_learnt_into_shared_counters(tmp_path: Path) -> None:
    """What each weight of the record scored on the LLM calls is added to the
    namespace's counters: another cache on the file reads it, and so does a reopen."""
    path = tmp_path / "c.db"
    with two_shared_caches(path) as (a, b, hand_over):
        a.put("topic 0", "A", embedding=vec(0, -1))
        force(a, "verify")
        pol_a = engine(a).budgets.policy("default")  # type: ignore[union-attr]
        a.get_or_put("q1", lambda: "A", embedding=vec(0, 1))  # on record: right at 0.95
        assert pol_a.weight_loss == [0.0] * len(ENTRY_PRIORS)  # the record was empty
        a.get_or_put("q2", lambda: "B", embedding=vec(0, 2))  # wrong, against the record
        learnt = list(pol_a.weight_loss)
        assert all(x > 0 for x in learnt)
        # the weights that trusted the record most lost most on a wrong answer
        assert learnt == sorted(learnt, reverse=True)
        hand_over()
        pol_b = engine(b).budgets.policy("default")  # type: ignore[union-attr]
        assert pol_b.weight_loss == pytest.approx(learnt)
    with budget_cache(path) as cache:
        pol = engine(cache).budgets.policy("default")  # type: ignore[union-attr]
        assert pol.weight_loss == pytest.approx(learnt)
        counts = cache.store.read_counts("default")  # type: ignore[attr-defined]
        assert counts[weight_counter(4.0)] == pytest.approx(learnt[ENTRY_PRIORS.index(4.0)])


def test_the_allowance_left_is_a_shared_counter(tmp_path: Path) -> None:
    """The ledger the level carries the unspent allowance by (the served answers'
    estimated risks, the gets they were spent over) is the namespace's, as ``gets``
    is: another cache on the file reads it, and so does a reopen."""
    path = tmp_path / "c.db"
    with two_shared_caches(path) as (a, b, hand_over):
        a.put("topic 0", "A", embedding=vec(0, -1))
        pol_a = engine(a).budgets.policy("default")  # type: ignore[union-attr]
        real = pol_a.decide

        def serving(ev: Any, record: Any = None, features: Any = None) -> Decision:
            d = real(ev, record, features)
            if ev is not None:  # as if each candidate were served at risk 1/8
                pol_a.spent += 0.125
            return d

        pol_a.decide = serving  # type: ignore[method-assign]
        for i in range(3):
            a.get_or_put(f"q{i}", lambda: "A", embedding=vec(0, i))
        assert (pol_a.spent, pol_a.spent_gets) == (0.375, 3)
        hand_over()  # (a's get and b's count too: 4 and 5 gets)
        pol_b = engine(b).budgets.policy("default")  # type: ignore[union-attr]
        assert (pol_b.spent, pol_b.spent_gets, pol_b.gets) == (0.375, 5, 5)
        assert pol_b.room == spare_mean(pol_b.budget * 5, SPARE_SD) - 0.375
    with budget_cache(path) as cache:
        pol = engine(cache).budgets.policy("default")  # type: ignore[union-attr]
        assert (pol.spent, pol.spent_gets, pol.gets) == (0.375, 5, 5)
        counts = cache.store.read_counts("default")  # type: ignore[attr-defined]
        assert (counts["spent"], counts["spent_gets"]) == (0.375, 5.0)


def test_counts_are_synced_every_32_observations(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with budget_cache(path) as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        force(cache, "miss")
        reader = SQLiteStore(path)
        try:
            for i in range(31):
                cache.get_or_put(f"q{i}", lambda: "A", embedding=vec(0, i))
            assert "gets" not in reader.read_counts("default")  # buffered (clock still)
            cache.get_or_put("q31", lambda: "A", embedding=vec(0, 31))
            assert reader.read_counts("default")["gets"] == 32.0
        finally:
            reader.close()


def test_clear_forgets_what_the_namespace_learnt(tmp_path: Path) -> None:
    with budget_cache(tmp_path / "c.db") as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        force(cache, "verify")
        cache.get_or_put("q1", lambda: "B", embedding=vec(0, 1))
        engine(cache).budgets.sync("default")  # type: ignore[union-attr]
        cache.clear_namespace("default")
        assert cache.store.read_counts("default") == {}  # type: ignore[attr-defined]
        pol = engine(cache).budgets.policy("default")  # type: ignore[union-attr]
        assert sum(map(sum, pol.table.n)) == 0


def test_a_store_without_the_capability_keeps_the_budget_in_memory() -> None:
    class Bare(MemoryStore):
        write_records = None  # type: ignore[assignment]

    with budget_cache(store=Bare()) as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        stored = entry_id(cache, "topic 0")
        force(cache, "verify")
        cache.get_or_put("q1", lambda: "B", embedding=vec(0, 1))
        budgets = engine(cache).budgets
        assert budgets is not None
        assert budgets.state is None
        entry = cache.store.get_by_ids([stored])[stored]
        assert budgets.record(entry).observations == [(pytest.approx(0.95, abs=1e-3), False)]


# -- feedback ---------------------------------------------------------------------------------
def test_feedback_moves_the_entry_record(tmp_path: Path) -> None:
    with SemanticCache(tmp_path / "c.db", guards=None) as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        hit = cache.get("q", embedding=vec(0, 1))
        assert hit is not None
        assert hit.layer == "semantic"
        cache.feedback(hit, False)
        cache.feedback(cache.get("topic 0"), True)  # type: ignore[arg-type]
        assert record_of(cache.store, entry_id(cache, "topic 0")) == [
            [pytest.approx(0.95, abs=1e-3), 0.0],
            [1.0, 1.0],
        ]


def test_feedback_on_a_budget_cache_changes_what_is_served(tmp_path: Path) -> None:
    with budget_cache(tmp_path / "c.db") as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        force(cache, "serve")
        hit = cache.get("q1", embedding=vec(0, 1))
        assert hit is not None
        budgets = engine(cache).budgets
        assert budgets is not None
        pol = budgets.policy("default")
        entry = cache.store.get_by_ids([hit.entry_id])[hit.entry_id]  # type: ignore[index]
        before = pol.risk(_ev(hit.similarity), budgets.record(entry))[0]
        cache.feedback(hit, False)
        entry = cache.store.get_by_ids([hit.entry_id])[hit.entry_id]  # type: ignore[index]
        after = pol.risk(_ev(hit.similarity), budgets.record(entry))[0]
        assert after > before
        assert cache.stats()["budget"]["feedback"] == 1


def _ev(similarity: float) -> Any:
    from semcache._agreement import ALONE, Agreement

    return Agreement(similarity, 0, 1, None, ALONE)


def test_feedback_refuses_what_is_not_a_hit_of_a_cache(tmp_path: Path) -> None:
    with SemanticCache(tmp_path / "c.db") as cache:
        cache.put("q", "A")
        hit = cache.get("q")
        assert hit is not None
        made = Hit("A", 1.0, "exact", "q", "default", None, 0.0, None, 1.0)
        with pytest.raises(InvalidInputError, match="entry id"):
            cache.feedback(made, True)
        with pytest.raises(InvalidInputError, match="Hit"):
            cache.feedback("A", True)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="correct"):
            cache.feedback(hit, "yes")  # type: ignore[arg-type]
        assert record_of(cache.store, entry_id(cache, "q")) is None


def test_feedback_on_an_entry_gone_since_changes_nothing(tmp_path: Path) -> None:
    with SemanticCache(tmp_path / "c.db") as cache:
        cache.put("q", "A")
        hit = cache.get("q")
        assert hit is not None
        cache.put("q", "A2")  # replaced: another entry now
        cache.feedback(hit, False)
        assert record_of(cache.store, entry_id(cache, "q")) is None
        cache.delete("q")
        cache.feedback(hit, False)
        assert cache.store.count() == 0


# -- arguments ------------------------------------------------------------------------------
@pytest.mark.parametrize("budget", [0, 1, -0.1, 1.5, math.nan, math.inf, True, "0.1", [0.1]])
def test_a_bad_budget_is_refused_before_anything_is_created(tmp_path: Path, budget: Any) -> None:
    path = tmp_path / "c.db"
    with pytest.raises(ConfigurationError, match="error_budget"):
        SemanticCache(path, error_budget=budget)
    with pytest.raises(ConfigurationError, match="error_budget"):
        AsyncSemanticCache(path, error_budget=budget)
    assert not path.exists()


def test_a_same_answer_that_is_not_callable_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="same_answer"):
        SemanticCache(tmp_path / "c.db", error_budget=0.01, same_answer="exact")  # type: ignore[arg-type]
    assert not (tmp_path / "c.db").exists()


# -- async parity -----------------------------------------------------------------------------
def _stream(i: int) -> tuple[str, np.ndarray, str]:
    topic = i % 3
    return f"q{i}", vec(topic, i // 3, sim=0.93), "yes" if topic != 2 else f"no {i}"


def _run_sync(path: Path) -> tuple[list[str], int, dict[str, Any]]:
    out = []
    compute = Counter("")
    with budget_cache(path) as cache:
        for t in range(3):
            cache.put(f"topic {t}", "yes" if t != 2 else "no", embedding=vec(t, -1))
        for i in range(240):
            q, v, answer = _stream(i)
            compute.answer = answer
            out.append(cache.get_or_put(q, compute, embedding=v))
        stats = cache.stats()
    return out, compute.calls, stats


async def _run_async(path: Path) -> tuple[list[str], int, dict[str, Any]]:
    out = []
    calls = 0
    async with AsyncSemanticCache(
        path, guards=None, index_backend="flat", error_budget=0.1, clock=Clock()
    ) as cache:
        for t in range(3):
            await cache.put(f"topic {t}", "yes" if t != 2 else "no", embedding=vec(t, -1))
        for i in range(240):
            q, v, answer = _stream(i)

            async def compute(answer: str = answer) -> str:
                nonlocal calls
                calls += 1
                return answer

            out.append(await cache.get_or_put(q, compute, embedding=v))
        stats = await cache.stats()
    return out, calls, stats


def test_sync_and_async_decide_alike(tmp_path: Path) -> None:
    sync = _run_sync(tmp_path / "s.db")
    asynced = asyncio.run(_run_async(tmp_path / "a.db"))
    assert sync[0] == asynced[0]
    assert sync[1] == asynced[1]
    assert sync[2]["budget"] == asynced[2]["budget"]
    assert sync[2]["hits"] == asynced[2]["hits"]
    assert sync[1] < 240  # the stream is learnt: some answers are served


def test_async_feedback(tmp_path: Path) -> None:
    async def run() -> list[list[float]] | None:
        async with AsyncSemanticCache(tmp_path / "c.db", guards=None) as cache:
            await cache.put("topic 0", "A", embedding=vec(0, -1))
            hit = await cache.get("q", embedding=vec(0, 1))
            assert hit is not None
            await cache.feedback(hit, False)
            return record_of(cache.store, hit.entry_id)  # type: ignore[arg-type]

    assert asyncio.run(run()) == [[pytest.approx(0.95, abs=1e-3), 0.0]]


def test_the_next_get_sees_the_record_just_written(tmp_path: Path) -> None:
    # single mode keeps entries in memory (the hot map): they must carry the new record
    with budget_cache(tmp_path / "c.db") as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        force(cache, "verify")
        cache.get_or_put("q1", lambda: "B", embedding=vec(0, 1))
        asked = spy(cache)
        cache.get("q2", embedding=vec(0, 2))
        assert [r.observations for _, r in asked if r is not None] == [
            [(pytest.approx(0.95, abs=1e-3), False)]
        ]


def test_exact_hits_count_as_gets_of_the_budget(tmp_path: Path) -> None:
    with budget_cache(tmp_path / "c.db") as cache:
        cache.put("q", "A", embedding=vec(0, -1))
        for _ in range(5):
            assert cache.get("q") is not None
        budgets = engine(cache).budgets
        assert budgets is not None
        assert budgets.policy("default").gets == 5


def test_a_checkpoint_carries_what_the_budget_learnt(tmp_path: Path) -> None:
    with budget_cache(tmp_path / "c.db") as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        stored = entry_id(cache, "topic 0")
        force(cache, "verify")
        cache.get_or_put("q1", lambda: "B", embedding=vec(0, 1))  # counts still pending
        cache.dumps(tmp_path / "c.tar.gz")
    restored = SemanticCache.loads(
        tmp_path / "c.tar.gz", tmp_path / "r.db", None, error_budget=0.1, guards=None
    )
    with restored:
        assert record_of(restored.store, stored) == [[pytest.approx(0.95, abs=1e-3), 0.0]]
        counts = restored.store.read_counts("default")  # type: ignore[attr-defined]
        assert counts["gets"] == 1.0
        assert sum(v for k, v in counts.items() if k.startswith("w/")) == 1.0


def _learn_in_a_child(path: str) -> str:
    """A worker (module level: spawn pickles it by name): verify once and close."""
    with budget_cache(Path(path), multi_process_mode="shared") as cache:
        force(cache, "verify")
        return cache.get_or_put("q1", lambda: "B", embedding=vec(0, 1))


def test_another_process_learns_into_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    clock = Clock()
    with budget_cache(path, multi_process_mode="shared", clock=clock) as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        budgets = engine(cache).budgets
        assert budgets is not None
        assert sum(map(sum, budgets.policy("default").table.n)) == 0
        with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
            assert pool.submit(_learn_in_a_child, str(path)).result(timeout=120) == "B"
        clock.now += 1.0  # this process's next get syncs
        cache.get("unrelated", embedding=vec(1, -1))
        pol = budgets.policy("default")
        assert sum(map(sum, pol.table.wrong)) == 1.0
        assert record_of(cache.store, entry_id(cache, "topic 0")) == [
            [pytest.approx(0.95, abs=1e-3), 0.0]
        ]


def test_what_another_cache_learnt_during_the_llm_call_is_kept(tmp_path: Path) -> None:
    """Two caches on one file (as two processes are) observe one entry: the second
    learns while the first waits for its LLM. The first's write adds its observation
    to the record as stored then, not to the copy its get read (which would drop the
    second's)."""
    path = tmp_path / "c.db"
    with (
        budget_cache(path, multi_process_mode="shared") as first,
        budget_cache(path, multi_process_mode="shared") as second,
    ):
        first.put("topic 0", "A", embedding=vec(0, -1))
        stored = entry_id(first, "topic 0")
        force(first, "verify")
        force(second, "verify")

        def slow_llm() -> str:
            assert second.get_or_put("q2", lambda: "A", embedding=vec(0, 2, sim=0.9)) == "A"
            assert record_of(second.store, stored) == [[pytest.approx(0.9, abs=1e-3), 1.0]]
            return "B"

        assert first.get_or_put("q1", slow_llm, embedding=vec(0, 1)) == "B"
        assert record_of(first.store, stored) == [
            [pytest.approx(0.9, abs=1e-3), 1.0],
            [pytest.approx(0.95, abs=1e-3), 0.0],
        ]


class TwoSteps(MemoryStore):
    """A store without ``update_records``: the cache reads, then writes."""

    update_records = None  # type: ignore[assignment]


@pytest.mark.parametrize("kind", [MemoryStore, TwoSteps])
def test_observations_of_an_entry_are_not_written_into_another_at_its_id(
    kind: type[MemoryStore],
) -> None:
    """A store that lost its tail may hold another entry at an id a get read (see
    ``semcache._store``): ``Budgets.update`` compares what it reads again with what the
    get read (response, created_at) and leaves another entry's record alone, in the
    store's atomic step or in two."""
    store = kind()
    new = NewEntry(b"k", "default", "q", "A", None, vec(0, -1).tobytes(), 5.0, None)
    [entry_id] = store.put_many([new], now=5.0).ids
    read = store.get_by_ids([entry_id])[entry_id]
    budgets = Budgets(0.1, None, store, Clock())
    observe = {entry_id: lambda record: record.add(0.9, False)}
    older = dataclasses.replace(read, response="B", created_at=1.0)  # what a get had read
    budgets.update(observe, [older])
    assert record_of(store, entry_id) is None
    budgets.update(observe, [read])  # the entry the get read: its record learns
    assert record_of(store, entry_id) == [[0.9, 0.0]]


def test_the_default_same_answer_ignores_case_and_spacing(tmp_path: Path) -> None:
    with budget_cache(tmp_path / "c.db") as cache:
        cache.put("topic 0", "Paris", embedding=vec(0, -1))
        force(cache, "verify")
        assert cache.get_or_put("q1", lambda: "  paris ", embedding=vec(0, 1)) == "  paris "
        assert record_of(cache.store, entry_id(cache, "topic 0")) == [
            [pytest.approx(0.95, abs=1e-3), 1.0]
        ]


def test_gets_with_nothing_to_search_count_as_gets_of_the_budget(tmp_path: Path) -> None:
    # Wrong answers per get: a get on an empty namespace cannot be wrong, and counts, as
    # one whose candidates are all below the floor does (the budget's gets, its target).
    with budget_cache(tmp_path / "c.db") as cache:
        compute = Counter("A")
        assert cache.get_or_put("q0", compute, embedding=vec(0, 0)) == "A"  # empty: no index
        assert cache.get("elsewhere", embedding=vec(1, 0), namespace="other") is None
        cache.put("far", "B", embedding=vec(7, -1))
        assert cache.get("q1", embedding=vec(0, 1)) is None  # a candidate, below the floor
        budgets = engine(cache).budgets
        assert budgets is not None
        assert budgets.policy("default").gets == 2
        assert budgets.policy("other").gets == 1


def test_the_evidence_does_not_depend_on_how_long_the_comparisons_take(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The agreement's default time limit, 50 us, cut the reading short on a busy machine:
    # the decision then depended on the load (and a read cut after the candidates that
    # agree looks unanimous). A clock that moves 1 ms a reading stands for that load.
    from semcache import _agreement

    ticks = iter(range(0, 10**12, 1_000_000))
    monkeypatch.setitem(_agreement.agreement.__kwdefaults__, "clock", lambda: next(ticks))
    with budget_cache(tmp_path / "c.db") as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        cache.put("near 1", "A", embedding=vec(0, 1, sim=0.9))
        cache.put("near 2", "B", embedding=vec(0, 2, sim=0.85))
        asked = spy(cache)
        cache.get("q", embedding=vec(0, 3))
    ((ev, _),) = asked
    assert (ev.examined, ev.truncated) == (3, False)
    assert ev.evidence == _agreement.MIXED  # not UNANIMOUS from the first two alone


def test_the_counters_name_their_layout_and_another_layouts_are_not_read(
    tmp_path: Path,
) -> None:
    # A cell's counters carry the table's floor and bin width: counts learnt under another
    # bin layout (a later release's, say) must not land in this table's bins.
    with budget_cache(tmp_path / "c.db") as cache:
        cache.put("topic 0", "A", embedding=vec(0, -1))
        force(cache, "verify")
        cache.get_or_put("q1", lambda: "B", embedding=vec(0, 1))
    store = SQLiteStore(tmp_path / "c.db")
    try:
        counts = store.read_counts("default")
        cells = [k for k in counts if k.startswith(("n/", "w/"))]
        assert cells
        assert all(k.split("/")[1] == "0.5,0.02" for k in cells), cells
        # the same cells under another layout (bins twice as wide)
        store.add_counts("default", {k.replace("0.5,0.02", "0.5,0.04"): 50.0 for k in cells})
    finally:
        store.close()
    with budget_cache(tmp_path / "c.db") as cache:
        budgets = engine(cache).budgets
        assert budgets is not None
        table = budgets.policy("default").table
        assert sum(map(sum, table.n)) == 1.0  # the one observation, none of the 50s
        assert sum(map(sum, table.wrong)) == 1.0
