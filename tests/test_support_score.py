"""The support score (``semcache._agreement.support_scores``): a candidate's similarity
moved by the answers of the candidates around it."""

from __future__ import annotations

import numpy as np
import pytest

from semcache._agreement import SUPPORT_FLOOR, answer_key, support_scores


def test_answers_that_never_repeat_leave_every_score_its_similarity() -> None:
    sims = [0.93, 0.88, 0.71, 0.62, 0.55]
    assert support_scores(sims, [answer_key(f"answer {i}") for i in range(5)]) == sims


def test_a_neighbour_with_the_same_answer_adds_half_its_excess_over_the_floor() -> None:
    scores = support_scores([0.8, 0.7, 0.6], ["a", "a", "b"])
    assert scores[0] == pytest.approx(0.8 + 0.5 * (0.7 - SUPPORT_FLOOR))
    assert scores[1] == pytest.approx(0.7 + 0.5 * (0.8 - SUPPORT_FLOOR))
    assert scores[2] == pytest.approx(0.6 - 0.5 * ((0.8 - 0.5) + (0.7 - 0.5)))


def test_a_repeated_rival_answer_subtracts_and_a_lone_one_does_not() -> None:
    lone = support_scores([0.8, 0.75], ["a", "b"])
    repeated = support_scores([0.8, 0.75, 0.7], ["a", "b", "b"])
    assert lone[0] == pytest.approx(0.8)
    assert repeated[0] == pytest.approx(0.8 - 0.5 * ((0.75 - 0.5) + (0.7 - 0.5)))


def test_candidates_at_or_below_the_floor_move_nothing() -> None:
    scores = support_scores([0.8, 0.5, 0.45, 0.3], ["a", "a", "b", "b"])
    assert scores[0] == pytest.approx(0.8)


def test_the_nearest_of_an_answer_scores_highest_of_its_answer() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(2, 9))
        sims = sorted(rng.uniform(0.3, 1.0, n).tolist(), reverse=True)
        keys = [int(k) for k in rng.integers(0, 3, n)]
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
