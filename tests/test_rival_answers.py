"""The rival answers of ``answer_support`` (``semcache._prototypes.Prototypes.standing``,
``semcache._agreement.standing_scores``): a candidate's score keeps of its excess over
the support floor its answer's standing over the nearest prototypes of other answers,
``1 - sum(exp((rival - own) / T))``, and is declined where that sum reaches 1.

Real SQLite files; vectors placed by hand (the query on the first axis) so that the
figures can be checked on paper. A *rival cluster* is 8 prompts of one answer, each at
the same cosine to the query on an axis of its own: below the support floor (0.5) none
of them is ever a counted candidate, but their prototype (normalized sum) is much
nearer the query than any of them (8 at 0.45: 0.819).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from test_answer_support import recording_validator

import semcache._prototypes
from semcache import Hit, SemanticCache
from semcache._agreement import (
    SUPPORT_FLOOR,
    answer_digest,
    favoured_scores,
    standing_scores,
    support_scores,
)
from semcache._cache import engine_of
from semcache._prototypes import RIVAL_TEMPERATURE, RIVALS

DIM = 128
THRESHOLD = 0.8
QUERY = np.eye(DIM, dtype=np.float32)[0]
#: Prompts per rival cluster.
PER = 8


def _at(cosine: float, axis: int) -> npt.NDArray[np.float32]:
    v = np.zeros(DIM, dtype=np.float32)
    v[0], v[axis] = cosine, math.sqrt(1 - cosine * cosine)
    return v


def _cluster_cosine(cosine: float) -> float:
    """The cosine to the query of a rival cluster's prototype (float32 vectors, summed
    as the cache sums them)."""
    total = np.sum([_at(cosine, 1 + i) for i in range(PER)], axis=0, dtype=np.float64)
    return float(total[0] / np.linalg.norm(total))


def _put_rivals(cache: SemanticCache, count: int, cosine: float, first: int = 0) -> None:
    """``count`` rival clusters ("rival 0", ...), their prompts on axes 8 and up."""
    for r in range(first, first + count):
        for i in range(PER):
            axis = 8 + r * PER + i
            cache.put(f"rival {r} prompt {i}", f"rival {r}", embedding=_at(cosine, axis))


def _open(path: Path, **kwargs: Any) -> SemanticCache:
    kwargs.setdefault("similarity_threshold", THRESHOLD)
    # (the support score's arithmetic: the answer model, which adds to it, is off
    # here; tests/test_answer_model.py)
    kwargs.setdefault("answer_model", False)
    kwargs.setdefault("guards", None)
    return SemanticCache(str(path), **kwargs)


def _ask(cache: SemanticCache) -> Hit | None:
    return cache.get("the question asked", embedding=QUERY)


def _standing(own: float, rivals: list[float]) -> float:
    return 1.0 - sum(math.exp((c - own) / RIVAL_TEMPERATURE) for c in rivals)


def test_the_figures_the_cases_rely_on() -> None:
    assert _cluster_cosine(0.45) == pytest.approx(0.819, abs=1e-3)
    assert _cluster_cosine(0.3) == pytest.approx(0.665, abs=1e-3)
    assert RIVAL_TEMPERATURE == 0.05
    assert RIVALS == 8


def test_one_rival_lowers_the_score_by_the_answer_s_standing(tmp_path: Path) -> None:
    # a lone prompt at 0.9 (its own similarity the score: no other candidate counts)
    # against one rival cluster at 0.819: standing 1 - exp(-1.62) = 0.80, score
    # 0.5 + 0.4 * 0.80 = 0.82
    rival = _cluster_cosine(0.45)
    with _open(tmp_path / "c.db") as cache:
        cache.put("the stored prompt", "A", embedding=_at(0.9, 1))
        _put_rivals(cache, 1, 0.45)
        hit = _ask(cache)
        assert hit is not None
        assert hit.response == "A"
        assert hit.similarity == pytest.approx(0.9, abs=1e-6)
        expected = SUPPORT_FLOOR + (0.9 - SUPPORT_FLOOR) * _standing(0.9, [rival])
        assert hit.score == pytest.approx(expected, abs=1e-5)
        assert hit.score == pytest.approx(0.821, abs=1e-3)


def test_rivals_each_farther_than_the_answer_together_decline_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rival = _cluster_cosine(0.45)
    assert _standing(0.9, [rival] * 2) > 0 > _standing(0.9, [rival] * 6)
    with _open(tmp_path / "c.db") as cache:
        cache.put("the stored prompt", "A", embedding=_at(0.9, 1))
        _put_rivals(cache, 2, 0.45)
        assert _ask(cache) is None  # lowered: 0.5 + 0.4 * 0.60 = 0.74
        assert cache.stats()["misses"]["support"] == 1
        eng = engine_of(cache)
        assert eng.prototypes is not None
        key = answer_digest("A")
        standing = eng.prototypes.standing("default", QUERY, [key], [0.9])
        assert standing == [pytest.approx(_standing(0.9, [rival] * 2), abs=1e-5)]
        _put_rivals(cache, 4, 0.45, first=2)
        assert eng.prototypes.standing("default", QUERY, [key], [0.9]) == [0.0]
        # (the hard veto of the error budget's path: no rival is nearer than 0.9)
        assert eng.prototypes.declined("default", QUERY, [key], [0.9]) == [False]
        assert _ask(cache) is None
        # none is nearer than 0.9: at a temperature near 0 (the hard veto) it is served
        monkeypatch.setattr(semcache._prototypes, "RIVAL_TEMPERATURE", 1e-6)
        hit = _ask(cache)
        assert hit is not None
        assert hit.response == "A"


def test_only_the_nearest_rivals_count(tmp_path: Path) -> None:
    # rival clusters at 0.665 each weigh exp((0.665 - 0.9) / 0.05) = 0.009; twelve of
    # them stored, the RIVALS (8) nearest count
    rival = _cluster_cosine(0.3)
    key = answer_digest("A")
    with _open(tmp_path / "c.db") as cache:
        cache.put("the stored prompt", "A", embedding=_at(0.9, 1))
        _put_rivals(cache, 12, 0.3)
        eng = engine_of(cache)
        assert eng.prototypes is not None
        got = eng.prototypes.standing("default", QUERY, [key], [0.9])
        assert got == [pytest.approx(_standing(0.9, [rival] * RIVALS), abs=1e-5)]
        assert got[0] > _standing(0.9, [rival] * 12) + 0.03


def test_where_no_answer_is_stored_twice_nothing_changes(tmp_path: Path) -> None:
    with _open(tmp_path / "c.db") as cache:
        for i in range(12):
            cache.put(f"prompt {i}", f"answer {i}", embedding=_at(0.85 - 0.01 * i, 1 + i))
        hit = _ask(cache)
        assert hit is not None
        assert hit.response == "answer 0"
        eng = engine_of(cache)
        assert eng.prototypes is not None
        keys = [answer_digest(f"answer {i}") for i in range(3)]
        assert eng.prototypes.standing("default", QUERY, keys, [0.85, 0.84, 0.83]) == [1.0] * 3


def test_a_waiting_lead_is_moved_by_the_standing_once(tmp_path: Path) -> None:
    # one answer twice ("Paris" 0.9, "paris" 0.55, apart): "Paris" is rejected, and the
    # answer's lead lifts "paris"; both scores keep the same standing over a far rival
    # cluster (0.665 against the answer's prototype, 0.839), applied once
    sims, keys = [0.9, 0.55], ["paris", "paris"]
    near, far = _at(0.9, 1), _at(0.55, 2)
    gram = np.stack([near, far]).astype(np.float64) @ np.stack([near, far]).T.astype(np.float64)
    total = near.astype(np.float64) + far
    own = float(total[0] / np.linalg.norm(total))
    standing = _standing(own, [_cluster_cosine(0.3)])
    raised = favoured_scores(support_scores(sims, keys), sims, keys, gram.tolist())
    expected = standing_scores(raised, [standing] * 2)
    assert 0.9 < standing < 1.0
    assert expected[1] >= 0.85
    tried, validator = recording_validator(lambda response: response != "Paris")
    with _open(tmp_path / "c.db", similarity_threshold=0.85, validator=validator) as cache:
        cache.put("near", "Paris", embedding=near)
        cache.put("far", "paris", embedding=far)
        _put_rivals(cache, 1, 0.3)
        hit = _ask(cache)
        assert hit is not None
        assert hit.response == "paris"
        assert tried == ["Paris", "paris"]
        assert hit.score == pytest.approx(expected[1], abs=1e-5)
