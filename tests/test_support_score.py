"""The support score (``semcache._agreement.support_scores``): a candidate's similarity
moved by the answers of the candidates around it."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import numpy as np
import pytest

from semcache._agreement import (
    SUPPORT_FLOOR,
    SUPPORT_WEIGHT,
    answer_key,
    support_bound,
    support_scores,
)


def _draws(*, seed: int, fewest: int) -> Iterator[tuple[list[float], list[int]]]:
    """200 seeded sets of candidates: ``fewest`` to 8 similarities in [0.3, 1), nearest
    first, with answers drawn from three."""
    rng = np.random.default_rng(seed)
    for _ in range(200):
        n = int(rng.integers(fewest, 9))
        sims = sorted(rng.uniform(0.3, 1.0, n).tolist(), reverse=True)
        yield sims, [int(k) for k in rng.integers(0, 3, n)]


def test_answers_that_never_repeat_leave_every_score_its_similarity() -> None:
    sims = [0.93, 0.88, 0.71, 0.62, 0.55]
    assert support_scores(sims, [answer_key(f"answer {i}") for i in range(5)]) == sims


def _moved(s: float, net: float) -> float:
    return 1.0 - (1.0 - s) * math.exp(-SUPPORT_WEIGHT * net)


def test_a_neighbour_with_the_same_answer_shrinks_the_distance_by_its_excess() -> None:
    scores = support_scores([0.8, 0.7, 0.6], ["a", "a", "b"])
    assert scores[0] == pytest.approx(_moved(0.8, 0.7 - SUPPORT_FLOOR))
    assert scores[1] == pytest.approx(_moved(0.7, 0.8 - SUPPORT_FLOOR))
    assert scores[2] == pytest.approx(_moved(0.6, -((0.8 - 0.5) + (0.7 - 0.5))))
    assert scores[0] > 0.8
    assert scores[2] < 0.6


def test_a_repeated_rival_answer_subtracts_and_a_lone_one_does_not() -> None:
    lone = support_scores([0.8, 0.75], ["a", "b"])
    repeated = support_scores([0.8, 0.75, 0.7], ["a", "b", "b"])
    assert lone[0] == pytest.approx(0.8)
    assert repeated[0] == pytest.approx(_moved(0.8, -((0.75 - 0.5) + (0.7 - 0.5))))


def test_no_score_passes_one_so_every_threshold_stays_reachable() -> None:
    sims = [0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92]
    scores = support_scores(sims, ["a"] * 8)
    assert all(s < 1.0 for s in scores)
    assert scores[0] > 0.999


def test_the_bound_is_reached_when_all_agree_and_never_passed() -> None:
    for sims, keys in _draws(seed=3, fewest=1):
        n = len(sims)
        assert max(support_scores(sims, keys)) <= support_bound(sims) + 1e-12
        assert max(support_scores(sims, [0] * n)) == pytest.approx(support_bound(sims))


def test_the_bound_read_from_the_nearest_is_the_bound_over_every_candidate() -> None:
    # support_bound reads the nearest candidate only where floor >= 1 - 1/weight (the
    # score then never falls as the similarity rises); the definition is the largest
    # score any candidate could reach, every other one agreeing
    rng = random.Random(11)
    for _ in range(5000):
        sims = [rng.uniform(-1.0, 1.0) for _ in range(rng.randint(1, 12))]
        floor, weight = rng.choice([(0.5, 2.0), (0.6, 2.0), (0.9, 1.0), (0.5, 0.5)])
        assert floor >= 1.0 - 1.0 / weight
        total = sum(max(0.0, s - floor) for s in sims)
        every = max(
            1.0 - (1.0 - s) * math.exp(-weight * (total - max(0.0, s - floor))) for s in sims
        )
        assert support_bound(sims, floor=floor, weight=weight) == pytest.approx(every, abs=1e-12)


def test_candidates_at_or_below_the_floor_move_nothing() -> None:
    scores = support_scores([0.8, 0.5, 0.45, 0.3], ["a", "a", "b", "b"])
    assert scores[0] == pytest.approx(0.8)


def test_the_nearest_of_an_answer_scores_highest_of_its_answer() -> None:
    for sims, keys in _draws(seed=7, fewest=2):
        scores = support_scores(sims, keys)
        for key in set(keys):
            mine = [j for j, k in enumerate(keys) if k == key]
            assert max(mine, key=lambda j: scores[j]) == mine[0]


def test_answer_keys_fold_what_same_answer_calls_equal() -> None:
    assert answer_key("Paris ") == answer_key("PARIS")
    assert answer_key(b"x") == answer_key(bytearray(b"x"))
    assert answer_key(["a"]) != answer_key(["a"])  # unhashable: equal to nothing else


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="one answer key per candidate"):
        support_scores([0.9, 0.8], ["a"])
