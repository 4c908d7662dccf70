"""The favoured answer (``semcache._agreement.favoured_answer``) and its use by
``answer_support``: where an answer repeats among the candidates that count, only the
answer whose candidates' local prototype is nearest the query may be served.

Real SQLite files; the embeddings are given with each call, built so that each stored
prompt has a chosen cosine to the query and, for the prompts of one answer, a chosen
closeness to each other: the rule under test is our own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from test_answer_support import recording_validator, support_miss_served_without

import semcache._answer_memo
from semcache import Hit, SemanticCache
from semcache._agreement import (
    favoured_answer,
    favoured_bound,
    favoured_scores,
    standing_scores,
    support_scores,
)
from semcache._cache import engine_of
from semcache._prototypes import RIVAL_TEMPERATURE

DIM = 64  # the server stores tests (test_redis_postgres_cache) share it
THRESHOLD = 0.85
QUERY = np.eye(DIM, dtype=np.float32)[0]


def _vector(cosine: float, axis: int) -> npt.NDArray[np.float32]:
    """A unit vector at ``cosine`` to :data:`QUERY`, its rest along ``axis``: prompts
    that share an axis are close to each other, prompts on their own axes are apart."""
    v = np.zeros(DIM, dtype=np.float32)
    v[0] = cosine
    v[axis] = math.sqrt(1.0 - cosine * cosine)
    return v


#: ``(prompt, answer, cosine, axis)``. Answer "tight" has two prompts on one axis (close
#: to each other), one of them the nearest candidate; answer "spread" has two prompts
#: on axes of their own. By the support scores "tight"'s nearest is served; "spread"'s
#: local prototype is nearer the query than "tight"'s, so "spread" is favoured and
#: served (its best support score reaches the threshold too).
CONTEST = [
    ("tight first", "tight", 0.80, 1),
    ("tight second", "tight", 0.95, 1),
    ("spread first", "spread", 0.75, 2),
    ("spread second", "spread", 0.95, 3),
]
#: Where "tight" was stored for prompts far from the query too (at cosine 0, never
#: candidates): its prototype (every prompt of it) is then far (0.623), and "spread"'s
#: (0.919) stands above it by ``1 - exp((0.623 - 0.919) / 0.05)`` = 0.997. Without them
#: "tight"'s prototype (0.887) is a rival that outweighs "spread" (the rivals' rule:
#: tests/test_prototype_veto.py), and no answer is served.
TIGHT_ELSEWHERE = [(f"tight elsewhere {i}", "tight", 0.0, 10 + i) for i in range(4)]
#: As :data:`CONTEST`, but "spread"'s best score falls short of the threshold: a miss
#: (by support: "tight"'s nearest passed it by its cosine and by its score).
SHORT = [
    ("tight first", "tight", 0.55, 1),
    ("tight second", "tight", 0.93, 1),
    ("spread first", "spread", 0.55, 2),
    ("spread second", "spread", 0.80, 3),
]


def _gram(stored: Sequence[tuple[str, str, float, int]]) -> Any:
    vectors = np.stack([_vector(c, axis) for _, _, c, axis in stored]).astype(np.float64)
    return (vectors @ vectors.T).tolist()


def _judged(stored: Sequence[tuple[str, str, float, int]]) -> tuple[list[float], object]:
    sims = [c for _, _, c, _ in stored]
    keys = [a for _, a, _, _ in stored]
    return support_scores(sims, keys), favoured_answer(sims, keys, _gram(stored))


def _prototype(stored: Sequence[tuple[str, str, float, int]]) -> float:
    """The cosine to the query of the prototype of ``stored`` (normalized sum)."""
    total = np.sum([_vector(c, axis) for _, _, c, axis in stored], axis=0, dtype=np.float64)
    return float(total[0] / np.linalg.norm(total))


def _fill(cache: SemanticCache, stored: Sequence[tuple[str, str, float, int]]) -> None:
    for prompt, answer, cosine, axis in stored:
        cache.put(prompt, answer, embedding=_vector(cosine, axis))


def _ask(cache: SemanticCache) -> Hit | None:
    return cache.get("the question asked", embedding=QUERY)


def _open(tmp_path: Path, name: str = "c.db", **kwargs: Any) -> SemanticCache:
    kwargs.setdefault("similarity_threshold", THRESHOLD)
    # (the support score's arithmetic: the answer model, which adds to it, is off
    # here; tests/test_answer_model.py)
    kwargs.setdefault("answer_model", False)
    return SemanticCache(str(tmp_path / name), **kwargs)


def test_the_cases_the_tests_rely_on() -> None:
    scores, favoured = _judged(CONTEST)
    assert favoured == "spread"
    assert scores[1] == max(scores) >= scores[3] >= THRESHOLD  # support alone: "tight"
    scores, favoured = _judged(SHORT)
    assert favoured == "spread"
    assert scores[1] >= THRESHOLD > max(scores[2:])


def test_no_answer_repeats_the_nearest_is_favoured_and_no_gram_is_needed() -> None:
    assert favoured_answer([0.7, 0.9, 0.8], ["a", "b", "c"]) == "b"
    assert favoured_answer([0.9, 0.9], ["a", "b"]) == "a"  # a tie: the first


def test_a_cluster_whose_mean_is_nearer_outranks_a_nearer_single_prompt() -> None:
    # three prompts at 0.8 apart from each other: their mean is at 0.8 * 3 / sqrt(3 +
    # 6 * 0.64) = 0.918 to the query, nearer than the single prompt at 0.9
    stored = [("a", "single", 0.9, 1)] + [(f"b{i}", "cluster", 0.8, 2 + i) for i in range(3)]
    assert _judged(stored)[1] == "cluster"
    # the same three prompts close to each other (one axis): their mean is at about 0.8
    tight = [("a", "single", 0.9, 1)] + [(f"b{i}", "cluster", 0.8, 2) for i in range(3)]
    assert _judged(tight)[1] == "single"


def test_favoured_answer_rejects_what_it_cannot_judge() -> None:
    with pytest.raises(ValueError, match="at least one"):
        favoured_answer([], [])
    with pytest.raises(ValueError, match="one answer key per candidate"):
        favoured_answer([0.9], ["a", "b"])
    with pytest.raises(ValueError, match="gram"):
        favoured_answer([0.9, 0.8], ["a", "a"])


def test_where_no_answer_repeats_the_scores_are_left_alone() -> None:
    scores = [0.9, 0.7, 0.6]
    assert favoured_scores(scores, [0.9, 0.7, 0.6], ["a", "b", "c"], []) == scores


def test_a_repeated_favoured_answer_is_raised_by_its_lead_the_others_declined() -> None:
    stored = [("a", "single", 0.9, 1)] + [(f"b{i}", "cluster", 0.8, 2 + i) for i in range(3)]
    sims = [c for _, _, c, _ in stored]
    keys = [a for _, a, _, _ in stored]
    support = support_scores(sims, keys)
    lead = 0.8 * 3 / math.sqrt(3 + 6 * 0.64) - 0.9  # the cluster's prototype over 0.9
    raised = favoured_scores(support, sims, keys, _gram(stored))
    assert raised[0] == -1.0
    assert raised[1:] == pytest.approx([1 - (1 - s) * math.exp(-2 * lead) for s in support[1:]])
    # a favoured answer seen once is not raised, however far its rivals
    lone = [("a", "single", 0.9, 1), ("b", "pair", 0.55, 2), ("c", "pair", 0.55, 2)]
    sims = [c for _, _, c, _ in lone]
    keys = [a for _, a, _, _ in lone]
    support = support_scores(sims, keys)
    assert favoured_scores(support, sims, keys, _gram(lone)) == [support[0], -1.0, -1.0]


def test_no_score_passes_the_bound() -> None:
    rng = np.random.default_rng(5)
    checked = 0
    for _ in range(300):
        n = int(rng.integers(2, 9))
        vectors = rng.standard_normal((n, 6)) + 2.0 * rng.standard_normal(6)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        query = vectors.mean(axis=0) + 0.3 * rng.standard_normal(6)
        query /= np.linalg.norm(query)
        all_sims = vectors @ query
        counted = all_sims >= 0.5  # the cache scores those at or above the floor
        if counted.sum() < 2:
            continue
        vectors, sims = vectors[counted], [float(s) for s in all_sims[counted]]
        keys = [int(k) for k in rng.integers(0, 3, len(sims))]
        scores = favoured_scores(
            support_scores(sims, keys), sims, keys, (vectors @ vectors.T).tolist()
        )
        assert max(scores) <= favoured_bound([float(s) for s in all_sims]) + 1e-12
        checked += len(set(keys)) < len(keys)  # (an answer repeats: the lead can raise)
    assert checked >= 100


def test_agreeing_prompts_are_served_raised_by_their_lead(tmp_path: Path) -> None:
    # two prompts at 0.7, apart from each other, same answer: support 0.8, prototype
    # 1.4 / sqrt(2 + 2 * 0.49) = 0.811, raised by 0.311 to 0.89
    stored = [("first", "Paris", 0.7, 1), ("second", "paris", 0.7, 2)]
    with _open(tmp_path) as cache, _open(tmp_path, "alone.db") as alone:
        _fill(cache, stored)
        hit = _ask(cache)
        assert hit is not None
        assert hit.similarity == pytest.approx(0.7, abs=1e-3)
        _fill(alone, stored[:1])
        assert _ask(alone) is None  # a prompt alone: its cosine


#: One answer, twice: "Paris" at 0.9 reaches the threshold by its support score
#: (0.91); "paris" at 0.55 does not (0.80) until the answer's lead (0.34) raises it
#: (0.90).
ONE_ANSWER = [("near", "Paris", 0.9, 1), ("far", "paris", 0.55, 2)]


def test_with_one_answer_the_lead_is_left_until_it_can_change_the_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sims, keys = [c for *_, c, _ in ONE_ANSWER], ["paris"] * 2  # (keys: normalized)
    scores = support_scores(sims, keys)
    raised = favoured_scores(scores, sims, keys, _gram(ONE_ANSWER))
    assert scores[0] >= THRESHOLD > scores[1]
    assert raised[1] >= THRESHOLD
    computed: list[int] = []
    real = semcache._answer_memo.candidate_vectors

    def counting(eng: Any, entries: Any) -> Any:
        computed.append(len(entries))
        return real(eng, entries)

    monkeypatch.setattr(semcache._answer_memo, "candidate_vectors", counting)
    with _open(tmp_path) as cache:
        _fill(cache, ONE_ANSWER)
        hit = _ask(cache)
        assert hit is not None
        assert hit.response == "Paris"
        assert computed == []  # the nearest is served: its lead could not change that
    tried, validator = recording_validator(lambda response: response != "Paris")
    with _open(tmp_path, "rejected.db", validator=validator) as cache:
        _fill(cache, ONE_ANSWER)
        hit = _ask(cache)
        assert hit is not None
        assert hit.response == "paris"  # lifted by the lead once "Paris" was rejected
        assert tried == ["Paris", "paris"]
        assert computed == [2]
    tried.clear()
    with _open(tmp_path, "alone.db", validator=validator, answer_support=False) as off:
        _fill(off, ONE_ANSWER)
        assert _ask(off) is None
        assert tried == ["Paris"]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_the_favoured_answer_is_served_instead_of_the_nearest(tmp_path: Path, dtype: str) -> None:
    with _open(tmp_path, vector_dtype=dtype) as cache:
        _fill(cache, [*CONTEST, *TIGHT_ELSEWHERE])
        hit = _ask(cache)
        assert hit is not None
        assert hit.response == "spread"
        assert hit.similarity == pytest.approx(0.95, abs=1e-3)  # its cosine, not the score


def test_the_figures_of_tight_elsewhere() -> None:
    spread = _prototype(CONTEST[2:])
    assert _prototype([*CONTEST[:2], *TIGHT_ELSEWHERE]) == pytest.approx(0.623, abs=1e-3)
    assert _prototype(CONTEST[:2]) == pytest.approx(0.887, abs=1e-3)
    assert spread == pytest.approx(0.919, abs=1e-3)


def test_where_the_other_answer_is_a_near_rival_the_contest_is_declined(tmp_path: Path) -> None:
    # "tight"'s prototype (0.887) weighs exp((0.887 - 0.919) / 0.05) = 0.53 against
    # "spread"'s: standing 0.47, and "spread second"'s score (0.872) falls to 0.675
    with _open(tmp_path) as cache:
        _fill(cache, CONTEST)
        assert _ask(cache) is None
        assert cache.stats()["misses"]["support"] == 1


def test_where_the_favoured_answer_falls_short_the_get_is_a_support_miss(
    tmp_path: Path,
) -> None:
    with _open(tmp_path) as cache, _open(tmp_path, "off.db", answer_support=False) as off:
        _fill(cache, SHORT)
        _fill(off, SHORT)
        assert support_miss_served_without(cache, off, _ask) == "tight"


def test_a_candidate_of_another_answer_is_not_served_when_the_favoured_is_rejected(
    tmp_path: Path,
) -> None:
    tried, validator = recording_validator(lambda response: response == "tight")

    with _open(tmp_path, validator=validator) as cache:
        _fill(cache, [*CONTEST, *TIGHT_ELSEWHERE])
        assert _ask(cache) is None
        assert tried == ["spread"]


def test_where_no_answer_repeats_a_rejected_nearest_falls_to_the_next(tmp_path: Path) -> None:
    # every answer its own: judged by similarity alone, as without answer support
    stored = [("pa", "first", 0.95, 1), ("pb", "second", 0.9, 2), ("pc", "third", 0.6, 3)]
    tried, validator = recording_validator(lambda response: response != "first")

    with _open(tmp_path, validator=validator) as cache:
        _fill(cache, stored)
        hit = _ask(cache)
        assert hit is not None
        assert hit.response == "second"
        assert tried == ["first", "second"]


def test_another_cache_on_the_file_reads_the_vectors_it_needs_from_the_store(
    tmp_path: Path,
) -> None:
    shared: dict[str, Any] = {"multi_process_mode": "shared", "vector_dtype": "float16"}
    with _open(tmp_path, **shared) as writer, _open(tmp_path, **shared) as reader:
        _fill(writer, [*CONTEST, *TIGHT_ELSEWHERE])
        hit = _ask(reader)
        assert hit is not None
        assert hit.response == "spread"
        assert len(engine_of(reader).answer_vectors) == len(CONTEST)


def test_the_vectors_kept_are_bounded_by_bytes_and_dropped_on_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _open(tmp_path) as cache:
        vectors = engine_of(cache).answer_vectors
        _fill(cache, [*CONTEST, *TIGHT_ELSEWHERE])
        hit = _ask(cache)
        assert hit is not None
        assert hit.response == "spread"
        assert len(vectors) == len(CONTEST)
        # 3 vectors' bytes: at least the 8 candidates of one get are kept, oldest out
        monkeypatch.setattr(semcache._answer_memo, "ANSWER_VECTOR_BYTES", 3 * DIM * 4)
        for n in range(20):
            semcache._answer_memo.keep_vector(engine_of(cache), 1000 + n, QUERY)
        assert list(vectors) == [1000 + n for n in range(12, 20)]
        cache.clear()
        assert vectors == {}


def test_a_candidate_without_a_readable_vector_leaves_the_support_scores_to_judge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _open(tmp_path) as cache:
        _fill(cache, [*CONTEST, *TIGHT_ELSEWHERE])
        engine = engine_of(cache)
        engine.answer_vectors.clear()
        real = engine.store.get_by_ids

        def without_vectors(ids: Sequence[int], *, vectors: bool = False) -> Any:
            rows = real(ids, vectors=vectors)
            for entry in rows.values():
                entry.vector = None
            return rows

        monkeypatch.setattr(engine.store, "get_by_ids", without_vectors)
        # (the prototype veto reads its vectors on its own: off here, see
        # tests/test_prototype_veto.py)
        monkeypatch.setattr(engine, "prototypes", None)
        hit = _ask(cache)
        assert hit is not None
        assert hit.response == "tight"  # support alone


def test_a_hit_carries_the_score_it_was_served_at(tmp_path: Path) -> None:
    sims = [c for _, _, c, _ in CONTEST]
    keys = [a for _, a, _, _ in CONTEST]
    expected = favoured_scores(support_scores(sims, keys), sims, keys, _gram(CONTEST))
    # then moved by "spread"'s standing over "tight" (TIGHT_ELSEWHERE)
    rival = _prototype([*CONTEST[:2], *TIGHT_ELSEWHERE]) - _prototype(CONTEST[2:])
    expected = standing_scores(expected, [1.0 - math.exp(rival / RIVAL_TEMPERATURE)] * 4)
    with _open(tmp_path) as cache:
        _fill(cache, [*CONTEST, *TIGHT_ELSEWHERE])
        hit = _ask(cache)
        assert hit is not None
        assert hit.query == "spread second"
        assert hit.similarity == pytest.approx(0.95, abs=1e-6)
        assert hit.score == pytest.approx(expected[3], abs=1e-6)
        # lowered by "tight"'s prompts, raised by its lead: not its similarity
        assert THRESHOLD <= hit.score < hit.similarity
    with _open(tmp_path, "plain.db", answer_support=False) as cache:
        _fill(cache, [*CONTEST, *TIGHT_ELSEWHERE])
        hit = _ask(cache)
        assert hit is not None
        assert hit.query == "tight second"
        assert hit.score is None  # the similarity was the score
