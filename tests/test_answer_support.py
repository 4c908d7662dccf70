"""``answer_support`` (the default without an error budget): the semantic layer applies
the threshold to each candidate's support score (``semcache._agreement.support_scores``)
instead of its cosine.

Real SQLite files; the embeddings are given with each call, built so that each stored
prompt has a chosen cosine to the query (``_at``): the rule under test is our own.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from conftest import FakeClock

import semcache._answer_memo
from semcache import AsyncSemanticCache, Hit, SemanticCache
from semcache._agreement import support_scores
from semcache._cache import engine_of

DIM = 32
THRESHOLD = 0.85
#: The query's direction; stored prompts lean towards it by a chosen cosine.
QUERY = np.eye(DIM, dtype=np.float32)[0]


def _at(cosine: float, axis: int) -> npt.NDArray[np.float32]:
    """A unit vector at ``cosine`` to :data:`QUERY` (its rest along ``axis``, one per
    stored prompt, so that stored prompts are apart from each other)."""
    v = np.zeros(DIM, dtype=np.float32)
    v[0] = cosine
    v[axis] = math.sqrt(1.0 - cosine * cosine)
    return v


def _words(i: int) -> str:
    """A name for ``i`` without digits (the default guards compare numbers)."""
    return "abcdefghijklmnopqrstuvwxyz"[i % 26] * (1 + i // 26)


def _fill(cache: SemanticCache, stored: list[tuple[str, float]], **put: Any) -> list[str]:
    """Put one prompt per ``(answer, cosine)``; returns the prompts."""
    prompts = []
    for n, (answer, cosine) in enumerate(stored):
        prompt = f"stored prompt {_words(n)}"
        cache.put(prompt, answer, embedding=_at(cosine, n + 1), **put)
        prompts.append(prompt)
    return prompts


def _ask(cache: SemanticCache) -> Hit | None:
    return cache.get("the question asked", embedding=QUERY)


def _open(tmp_path: Path, name: str = "c.db", **kwargs: Any) -> SemanticCache:
    kwargs.setdefault("similarity_threshold", THRESHOLD)
    # (the support score's arithmetic: the answer model, which adds to it, is off
    # here; tests/test_answer_model.py)
    kwargs.setdefault("answer_model", False)
    return SemanticCache(str(tmp_path / name), **kwargs)


#: Three prompts near the query at 0.7 that got the same answer (after
#: normalization): each one's score reaches the threshold, two's do not.
AGREEING = [("Paris", 0.7), ("paris ", 0.7), ("PARIS", 0.7)]
#: A lone candidate above the threshold by cosine (0.88), next to a repeated rival
#: answer at 0.6: no score reaches the threshold.
CONTESTED = [("lone answer", 0.88), ("rival", 0.6), ("rival", 0.6)]


def _scores(stored: list[tuple[str, float]]) -> list[float]:
    return support_scores([c for _, c in stored], [a.casefold().strip() for a, _ in stored])


def test_the_scores_the_tests_rely_on() -> None:
    assert min(_scores(AGREEING)) >= THRESHOLD > max(_scores(AGREEING[:2]))
    assert max(_scores(CONTESTED)) < THRESHOLD


def test_unique_answers_hit_exactly_as_the_cosine_threshold_does(
    tmp_path: Path, clock: FakeClock
) -> None:
    rng = np.random.default_rng(13)
    centres = rng.standard_normal((12, DIM))
    rows = centres[rng.integers(0, 12, 300)] + 0.6 * rng.standard_normal((300, DIM))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    queries = centres[rng.integers(0, 12, 150)] + 0.6 * rng.standard_normal((150, DIM))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    prompts = [f"stored prompt {_words(i)}" for i in range(300)]
    answers = [f"answer {i}" for i in range(300)]
    on = _open(tmp_path, "on.db", clock=clock)
    off = _open(tmp_path, "off.db", clock=clock, answer_support=False)
    served = 0
    with on, off:
        for cache in (on, off):
            cache.put_many(prompts, answers, embeddings=rows)
        for threshold in (0.3, 0.6, 0.75, 0.85, 0.95):
            on.set_similarity_threshold(threshold)
            off.set_similarity_threshold(threshold)
            for q in queries:
                a = on.get("asked", embedding=q)
                b = off.get("asked", embedding=q)
                assert a == b
                served += a is not None
        assert on.stats()["misses"] == off.stats()["misses"]
        assert on.stats()["hits"] == off.stats()["hits"]
    assert 0 < served < 5 * len(queries)  # some hits and some misses were compared


def test_agreeing_neighbours_serve_below_the_threshold_at_their_cosine(tmp_path: Path) -> None:
    with _open(tmp_path) as cache, _open(tmp_path, "off.db", answer_support=False) as off:
        _fill(cache, AGREEING)
        _fill(off, AGREEING)
        hit = _ask(cache)
        assert hit is not None
        assert hit.response in {"Paris", "paris ", "PARIS"}
        assert hit.similarity == pytest.approx(0.7, abs=1e-5)  # the cosine, not the score
        assert hit.runner_up == pytest.approx(0.7, abs=1e-5)
        assert _ask(off) is None
        assert off.stats()["misses"]["below_threshold"] == 1


def recording_validator(
    passes: Callable[[str], bool],
) -> tuple[list[str], Callable[[str, Hit], bool]]:
    """A validator that lets a hit through when ``passes(hit.response)``, and the list
    of the responses it was asked about, in order."""
    tried: list[str] = []

    def validator(query: str, hit: Hit) -> bool:
        tried.append(hit.response)
        return passes(hit.response)

    return tried, validator


def support_miss_served_without(
    cache: SemanticCache, off: SemanticCache, ask: Callable[[SemanticCache], Hit | None]
) -> str:
    """Asserts that ``ask(cache)`` is a miss whose only reason is ``support``, and
    returns the answer the same question gets from ``off`` (``answer_support=False``)."""
    assert ask(cache) is None
    stats = cache.stats()["misses"]
    assert stats["support"] == 1
    assert sum(stats.values()) == 1
    hit = ask(off)
    assert hit is not None
    return hit.response


def test_a_candidate_next_to_a_repeated_rival_answer_is_a_support_miss(tmp_path: Path) -> None:
    with _open(tmp_path) as cache, _open(tmp_path, "off.db", answer_support=False) as off:
        _fill(cache, CONTESTED)
        _fill(off, CONTESTED)
        assert support_miss_served_without(cache, off, _ask) == "lone answer"


def test_a_declined_candidate_is_not_served_by_the_widened_search(tmp_path: Path) -> None:
    # eight candidates: the lone one (0.95) and three of rival c (0.6), declined by
    # their scores (rival b's prototype, at 0.962, is nearer than the lone 0.95; b is
    # the favoured answer), and four of rival b (0.87), which the validator rejects
    # (c's prototype at 0.792 leaves b a standing of 1 - exp(-3.4) = 0.967). Every one
    # of the eight being rejected, the search widens; those read already are not
    # tried again.
    stored = [("lone answer", 0.95)] + [("rival b", 0.87)] * 4 + [("rival c", 0.6)] * 3
    stored += [(f"far {_words(i)}", 0.1) for i in range(12)]
    tried, validator = recording_validator(lambda response: response == "lone answer")

    with _open(tmp_path, validator=validator) as cache:
        _fill(cache, stored)
        assert _ask(cache) is None
        assert "lone answer" not in tried
        assert tried == ["rival b"] * 4
        assert cache.stats()["misses"]["validator"] == 1
    with _open(tmp_path, "off.db", validator=validator, answer_support=False) as off:
        _fill(off, stored)
        hit = _ask(off)
        assert hit is not None
        assert hit.response == "lone answer"


def test_only_candidates_whose_score_reaches_the_threshold_are_checked(tmp_path: Path) -> None:
    # the lone answer at 0.88 scores 0.88 - 0.5 * (0.36 + 0.34 + 0.33) < 0.85; the
    # rival answer's candidates score above 1
    stored = [("lone answer", 0.88), ("rival", 0.86), ("rival", 0.84), ("rival", 0.83)]
    confidences: list[str] = []
    validated: list[str] = []
    runners_up: list[float | None] = []

    def confidence_fn(query: str, hit: Hit) -> float:
        confidences.append(hit.query)
        runners_up.append(hit.runner_up)  # known before the checks, as without support
        return 1.0

    def validator(query: str, hit: Hit) -> bool:
        validated.append(hit.query)
        return len(validated) > 1  # the best one is rejected

    with _open(tmp_path, confidence_fn=confidence_fn, validator=validator) as cache:
        prompts = _fill(cache, stored)
        hit = _ask(cache)
        assert hit is not None
        assert validated == [prompts[1], prompts[2]]  # best score first; not the lone one
        assert confidences == validated
        assert hit.query == prompts[2]
        assert hit.response == "rival"
        assert hit.similarity == pytest.approx(0.84, abs=1e-5)
        assert hit.confidence == 1.0
        assert runners_up == [pytest.approx(0.88, abs=1e-5)] * 2  # the best other: lone
        assert hit.runner_up == pytest.approx(0.88, abs=1e-5)


def test_an_expired_entry_neither_supports_nor_opposes(tmp_path: Path, clock: FakeClock) -> None:
    with _open(tmp_path, clock=clock) as cache:
        _fill(cache, AGREEING[:1])
        cache.put("short lived", "PARIS", embedding=_at(0.7, 20), ttl=10)
        assert _ask(cache) is not None  # two agree: 0.8, raised by their lead to 0.89
        clock.advance(11)
        assert _ask(cache) is None  # one alone: 0.7
        assert cache.stats()["misses"]["below_threshold"] == 1
    with _open(tmp_path, "opposed.db", clock=clock) as cache:
        _fill(cache, CONTESTED[:1])
        cache.put("rival one", "rival", embedding=_at(0.6, 20), ttl=10)
        cache.put("rival two", "rival", embedding=_at(0.6, 21), ttl=10)
        assert _ask(cache) is None  # opposed
        clock.advance(11)
        hit = _ask(cache)
        assert hit is not None
        assert hit.response == "lone answer"


def test_an_entry_deleted_by_another_process_neither_supports_nor_opposes(
    tmp_path: Path, clock: FakeClock
) -> None:
    # the reader checks for others' changes once an hour: its index still holds the
    # deleted entry, whose read finds nothing
    shared: dict[str, Any] = {"multi_process_mode": "shared", "clock": clock}
    with (
        _open(tmp_path, stale_check_interval=3600.0, **shared) as reader,
        _open(tmp_path, **shared) as writer,
    ):
        prompts = _fill(writer, CONTESTED)
        clock.advance(3601)
        assert _ask(reader) is None  # opposed (and now synced)
        assert reader.stats()["misses"]["support"] == 1
        writer.delete(prompts[1])
        hit = _ask(reader)  # the rival left alone is no cluster
        assert hit is not None
        assert hit.response == "lone answer"
        assert len(reader.stats()["indexed"]) == 1
        assert reader.stats()["indexed"]["default"] == 2  # the stale id was dropped


def test_another_cache_on_the_file_sees_support_from_the_first_ones_puts(
    tmp_path: Path,
) -> None:
    shared: dict[str, Any] = {"multi_process_mode": "shared"}
    with _open(tmp_path, **shared) as reader, _open(tmp_path, **shared) as writer:
        assert _ask(reader) is None
        _fill(writer, AGREEING[:1])
        assert _ask(reader) is None  # one alone: 0.7
        writer.put("second", "Paris", embedding=_at(0.7, 20))  # two agree: 0.89
        hit = _ask(reader)
        assert hit is not None
        assert hit.similarity == pytest.approx(0.7, abs=1e-5)


def test_a_miss_that_no_score_can_reach_reads_no_entry(tmp_path: Path) -> None:
    with _open(tmp_path, multi_process_mode="shared") as cache:  # no hot map: reads count
        # bound: 1 - 0.48 * exp(-2 * 0.03) = 0.548, raised by the largest lead (0.5)
        # to 1 - 0.452 * exp(-1) = 0.834
        _fill(cache, [("a", 0.52), ("a", 0.52), ("b", 0.51)])
        reads: list[list[int]] = []
        store: Any = cache.store
        get_by_ids = store.get_by_ids

        def counting(ids: list[int], **kwargs: Any) -> Any:
            if kwargs.get("vectors"):  # (the prototype veto's one read of every answer
                reads.append(list(ids))  # at its first need asks for no vectors)
            return get_by_ids(ids, **kwargs)

        store.get_by_ids = counting
        assert _ask(cache) is None
        assert reads == []
        assert cache.stats()["misses"]["below_threshold"] == 1
        _fill(cache, AGREEING)  # now some score can
        assert _ask(cache) is not None
        assert len(reads) == 1


def test_the_async_cache_answers_alike(tmp_path: Path) -> None:
    async def main() -> tuple[Hit | None, Hit | None, dict[str, int]]:
        agreeing = AsyncSemanticCache(str(tmp_path / "a.db"), similarity_threshold=THRESHOLD)
        contested = AsyncSemanticCache(str(tmp_path / "b.db"), similarity_threshold=THRESHOLD)
        async with agreeing, contested:
            for cache, stored in ((agreeing, AGREEING), (contested, CONTESTED)):
                for n, (answer, cosine) in enumerate(stored):
                    await cache.put(f"stored {_words(n)}", answer, embedding=_at(cosine, n + 1))
            a = await agreeing.get("the question asked", embedding=QUERY)
            b = await contested.get("the question asked", embedding=QUERY)
            return a, b, (await contested.stats())["misses"]

    a, b, misses = asyncio.run(main())
    assert a is not None
    assert a.similarity == pytest.approx(0.7, abs=1e-5)
    assert b is None
    assert misses["support"] == 1


def test_off_is_the_cosine_threshold(tmp_path: Path) -> None:
    with _open(tmp_path, "a.db", answer_support=False) as cache:
        _fill(cache, AGREEING)
        assert _ask(cache) is None
    with _open(tmp_path, "b.db", answer_support=False) as cache:
        _fill(cache, CONTESTED)
        hit = _ask(cache)
        assert hit is not None
        assert hit.similarity == pytest.approx(0.88, abs=1e-5)
        assert hit.runner_up == pytest.approx(0.6, abs=1e-5)
        assert cache.stats()["misses"]["support"] == 0


def test_an_error_budget_decides_alone(tmp_path: Path) -> None:
    # the same candidates, the same verdicts whether answer_support is on or off
    outcomes = []
    for flag in (True, False):
        seen = []
        for name, stored in (("a", AGREEING), ("b", CONTESTED)):
            with _open(tmp_path, f"{name}{flag}.db", error_budget=0.05, answer_support=flag) as c:
                _fill(c, stored)
                hit = _ask(c)
                seen.append((None if hit is None else hit.response, c.stats()["misses"]))
        outcomes.append(seen)
    assert outcomes[0] == outcomes[1]
    assert all(misses["support"] == 0 for _, misses in outcomes[0])


def test_answer_keys_are_kept_by_entry_id_bounded_and_dropped_on_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(semcache._answer_memo, "ANSWER_KEYS", 3)
    with _open(tmp_path) as cache:
        keys = engine_of(cache).answer_keys
        prompts = _fill(cache, AGREEING)
        assert _ask(cache) is not None
        assert len(keys) == 3
        # a put replacing an entry gives it a new id: its new answer is what counts
        cache.put(prompts[2], "Lyon", embedding=_at(0.7, 3))
        assert _ask(cache) is None  # two agree: 0.8
        assert len(keys) == 3  # the oldest out
        cache.put(prompts[2], "Paris", embedding=_at(0.7, 3))
        assert _ask(cache) is not None
        cache.clear()
        assert keys == {}


def test_a_candidate_below_the_floor_neither_counts_nor_makes_an_answer_repeat(
    tmp_path: Path,
) -> None:
    # a lone rival at 0.6 opposes nothing; a second "rival" at 0.45 (below the 0.5
    # floor) must not make it a repeated answer that pulls "Paris" under the threshold
    stored = [*AGREEING, ("rival", 0.6), ("rival", 0.45)]
    assert min(_scores(AGREEING)) >= THRESHOLD
    with _open(tmp_path) as cache:
        _fill(cache, stored)
        hit = _ask(cache)
    assert hit is not None
    assert hit.response.casefold().strip() == "paris"


def test_after_a_support_decline_the_wider_search_serves_nothing_by_its_cosine(
    tmp_path: Path,
) -> None:
    # the 8 nearest: "lone" (0.95) and seven "rival" (0.86-0.92); the validator rejects
    # "rival", and the seven rivals pull "lone" under the threshold: the neighbourhood is
    # contested, so "other" (the 9th, 0.855 by cosine) is not served either
    rivals = [("rival", 0.86 + 0.01 * i) for i in range(7)]
    stored = [("lone", 0.95), *rivals, ("other", 0.855)]
    assert _scores([("lone", 0.95), *rivals])[0] < THRESHOLD

    def no_rival(query: str, hit: Hit) -> bool:
        return hit.response != "rival"

    with _open(tmp_path, validator=no_rival) as cache:
        _fill(cache, stored)
        assert _ask(cache) is None
    with _open(tmp_path, "off.db", validator=no_rival, answer_support=False) as off:
        _fill(off, stored)
        hit = _ask(off)
        assert hit is not None
        assert hit.response == "lone"  # the plain threshold serves the nearest
