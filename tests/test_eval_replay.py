"""The replay protocol: what it records equals what the cache serves, and the numbers
follow the protocol's definitions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
from test_quality_fixtures import synthetic_set

from semcache.embedders import HashingEmbedder
from semcache.quality import GUARDS, LabelledPair, PairSet, Rule, replay


def _embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
    return HashingEmbedder().embed(list(texts))


def test_a_hand_checked_replay() -> None:
    # Vectors chosen by hand: q1 is near a1 (same cluster), q2 near a1 too (other cluster),
    # q3 is an exact repeat of a2 (correct), q4 is far from everything (a miss).
    vectors = {
        "a1": [1.0, 0.0, 0.0],
        "a2": [0.0, 1.0, 0.0],
        "q1": [0.95, 0.31, 0.0],
        "q2": [0.8, 0.0, 0.6],
        "q4": [0.0, 0.0, 1.0],
    }

    def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return np.array([vectors[t.lower()] for t in texts], dtype=np.float32)

    pairs = PairSet(
        [
            LabelledPair("a1", "q1", 1),
            LabelledPair("a1", "q2", 0),
            LabelledPair("a2", "A2", 1),
            LabelledPair("a2", "q4", 0),
        ]
    )
    result = replay(pairs, embed, floor=0.5)
    assert result.stored == 2
    assert result.gets == 4
    assert result.exact.tolist() == [False, False, True, False]
    assert result.should_hit.tolist() == [True, False, True, False]
    low = result.evaluate(Rule(0.5))  # q1 and q2 both hit a1
    assert (low.hits, low.correct, low.exact_hits) == (3, 2, 1)
    assert low.hit_rate == 1.0
    assert low.precision == pytest.approx(2 / 3)
    assert low.false_hits_per_get == pytest.approx(1 / 4)
    high = result.evaluate(Rule(0.9))  # only q1 (0.95) and the exact repeat
    assert (high.hits, high.correct, high.precision) == (2, 2, 1.0)
    top = result.evaluate(Rule(1.0))
    assert (top.hits, top.correct) == (1, 1)
    assert result.headline(0.99) is not None
    assert result.headline(0.99).rule.min_similarity <= 0.95  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="down to"):
        result.evaluate(Rule(0.4))
    with pytest.raises(ValueError, match="guards"):
        result.evaluate(Rule(0.5, guards=("numbers",)))
    # the one false hit at 0.5: q2 served a1's answer; none at 0.9
    (wrong,) = result.false_hits(Rule(0.5))
    assert (wrong.query, wrong.served, wrong.score) == ("q2", "a1", None)
    assert wrong.similarity == pytest.approx(0.8, abs=1e-6)
    assert result.false_hits(Rule(0.9)) == []
    assert result.false_hits(Rule(0.5), sample=5) == [wrong]
    with pytest.raises(ValueError, match="guards"):
        result.false_hits(Rule(0.5, guards=("numbers",)))


def test_false_hits_are_what_the_rule_serves_wrongly_and_samples_are_seeded() -> None:
    pairs = synthetic_set(repeats=4)
    result = replay(pairs, _embed, floor=0.5)
    rule = Rule(0.5)
    every = result.false_hits(rule)
    point = result.evaluate(rule)
    assert len(every) == point.hits - point.correct > 3
    for fh in every:  # each is served, and in another cluster than the query
        assert fh.similarity >= 0.5
        assert pairs.cluster(fh.served) != pairs.cluster(fh.query)
    picked = result.false_hits(rule, sample=3, seed=7)
    assert len(picked) == 3
    assert set(picked) <= set(every)
    assert picked == result.false_hits(rule, sample=3, seed=7)
    others = [result.false_hits(rule, sample=3, seed=s) for s in range(5)]
    assert any(o != picked for o in others)  # the seed picks


def test_the_record_predicts_every_served_get() -> None:
    pairs = synthetic_set()

    def score(query: str, hit: object) -> float:
        return (len(query) % 7) / 6.0  # any deterministic scorer

    result = replay(pairs, _embed, floor=0.3, verifier=score, verifier_floor=0.5, guards=GUARDS)
    rules = [
        Rule(0.3),
        Rule(0.6),
        Rule(0.9),
        Rule(0.5, 0.5),
        Rule(0.3, guards=("numbers", "negation")),
        Rule(0.5, 0.3, ("negation",)),
    ]
    mismatches = result.time_rules(rules, sample=len(pairs), seed=1)
    assert mismatches == 0
    for rule in rules:
        point = result.evaluate(rule)
        assert point.p50_get_ms is not None
        assert point.p50_get_ms > 0
        assert point.to_json()["rule"] == rule.describe()
    with pytest.raises(RuntimeError):
        result.time_rules(rules, sample=3)


def test_curves_are_monotone_in_hits_and_the_headline_is_the_lowest_threshold() -> None:
    result = replay(synthetic_set(), _embed, floor=0.2)
    curve = result.curve(step=0.01)
    hits = [p.hits for p in curve]
    assert hits == sorted(hits, reverse=True)
    head = result.headline(0.95)
    assert head is not None
    assert head.precision >= 0.95
    earlier = [p for p in curve if p.rule.min_similarity < head.rule.min_similarity - 1e-9]
    assert all(not p.precision >= 0.95 for p in earlier)
    with pytest.raises(ValueError, match="by must"):
        result.curve(by="nothing")
    with pytest.raises(ValueError, match="step"):
        result.curve(step=0.0)
    assert [p.rule.min_score for p in result.curve(by="score", step=0.5)] == [0.0, 0.5, 1.0]


def test_features_are_collected_for_training() -> None:
    result = replay(synthetic_set(), _embed, floor=0.3, feature_floor=0.5)
    assert result.features is not None
    assert result.labels is not None
    assert result.feature_query is not None
    assert result.features.shape[0] == result.labels.shape[0] > 10
    assert np.isfinite(result.features).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="no pairs"):
        replay(PairSet([]), _embed)
    with pytest.raises(ValueError, match="max_candidates"):
        replay(synthetic_set(), _embed, max_candidates=0)


def test_candidates_are_capped() -> None:
    result = replay(synthetic_set(), _embed, floor=-1.0, max_candidates=2)
    assert result.similarity.shape[1] <= 2
    assert result.truncated > 0
    point = result.evaluate(Rule(-1.0))
    assert not math.isnan(point.precision)
