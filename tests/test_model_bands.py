"""The risk model's estimates checked by band (``semcache._model_bands``): the bands,
the factor that raises an estimate, the named counts; the budget raising the model's
estimates by it and counting every LLM call's; the cache keeping the counts in the
store, reading them back after a reopen and sharing them between caches. Real SQLite
files in tmp_path, the clock injected; the model's refit interval lowered
(monkeypatched) where a test needs a fit from a few outcomes."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_error_budget import budget_cache, engine, force, two_shared_caches, vec
from test_risk_model import _verify_many, _x, quick  # noqa: F401 (fixtures)

import semcache._risk_model as risk_model
from semcache._agreement import ALONE, Agreement
from semcache._budget_policy import Decision, ErrorBudget
from semcache._model_bands import EDGES, NAMES, TESTED, Z_BANDS, ModelBands
from semcache._risk_model import RiskModel


# -- the bands alone ----------------------------------------------------------------------------
def test_an_estimate_falls_in_the_band_its_upper_edge_closes() -> None:
    assert ModelBands.band(0.0) == 0
    assert ModelBands.band(0.99e-4) == 0
    assert ModelBands.band(1e-4) == 1  # (an edge opens the band above it)
    assert ModelBands.band(0.002) == EDGES.index(0.003)
    assert ModelBands.band(0.9) == len(EDGES)
    assert list(EDGES) == sorted(EDGES)
    assert len(NAMES) == 4 * (len(EDGES) + 1)


def _upper(count: float) -> float:
    """A Poisson count's upper bound at Z_BANDS (the correction's form)."""
    return count + Z_BANDS**2 / 2 + Z_BANDS * (count + Z_BANDS**2 / 4) ** 0.5


def test_a_band_whose_calls_were_wrong_more_often_raises_its_estimates() -> None:
    bands = ModelBands()
    assert bands.factor(0.00005) == 1.0  # nothing seen: as estimated
    for i in range(2000):  # 0.2 wrong answers predicted, 4 found
        bands.add(0.0001 if i % 2 else 0.0, correct=i >= 4)
    assert bands.predicted[0] == pytest.approx(0.0)  # (the band below 1e-4: the zeros)
    assert bands.wrong[0] == 2.0
    assert bands.predicted[1] == pytest.approx(0.1)
    assert bands.wrong[1] == 2.0
    # significantly more (the count's lower bound, 0.66, above 0.1): raised to the
    # count's upper bound, one wrong answer more on each side: (6.05 + 1) / (0.1 + 1)
    assert bands.factor(0.00015) == pytest.approx((_upper(2.0) + 1.0) / 1.1)
    assert bands.factor(0.00005) == pytest.approx(_upper(2.0) + 1.0)
    assert bands.factor(0.05) == 1.0  # (another band)
    for i in range(60):  # from 0.03 to 0.1: 3 predicted, 5 found, not significantly
        bands.add(0.05, correct=i >= 5)
    assert bands.factor(0.05) == pytest.approx(6.0 / 4.0)  # the ratio, one more each side


def test_a_band_whose_calls_were_wrong_less_often_keeps_its_estimates() -> None:
    bands = ModelBands()
    for i in range(60):  # verified: 3 predicted, 1 found: fewer, not significantly
        bands.add(0.05, correct=i > 0, verified=True)
    assert bands.factor(0.05) == 1.0
    for _ in range(100):  # verified: 0.5 predicted, none found
        bands.add(0.005, correct=True, verified=True)
    assert bands.factor(0.005) == 1.0
    for _ in range(1000):  # misses: 200 predicted, none found; the verified none
        bands.add(0.2, correct=True)
    assert bands.factor(0.2) == 1.0  # (a miss is no answer the budget would serve)


def test_a_band_whose_verified_candidates_were_wrong_significantly_less_often() -> None:
    bands = ModelBands()
    for i in range(400):  # verified: 20 predicted, 5 found: the count's upper bound 10.3
        bands.add(0.05, correct=i >= 5, verified=True)
    upper = 5 + Z_BANDS**2 / 2 + Z_BANDS * (5 + Z_BANDS**2 / 4) ** 0.5
    assert upper < 20.0
    assert (bands.verified_predicted[6], bands.verified_wrong[6]) == pytest.approx((20.0, 5.0))
    assert bands.factor(0.05) == pytest.approx(6.0 / 21.0)  # one more on each side
    assert bands.factor(0.02) == 1.0  # (another band)
    for i in range(200):  # misses in the same band: 10 predicted, 9 found
        bands.add(0.05, correct=i >= 9)
    # lowered by the higher ratio: every call's, (14 + 1) / (30 + 1), not the verified
    assert bands.factor(0.05) == pytest.approx(15.0 / 31.0)
    for _ in range(20):  # from 0.1 to 0.3, verified: 4 predicted, none found (the
        bands.add(0.2, correct=True, verified=True)  # upper bound 2.7): lowered by 1 / 5
    assert bands.factor(0.2) == pytest.approx(1.0 / 5.0)


def test_the_floor_follows_a_lowered_band() -> None:
    bands = ModelBands()
    for _ in range(1000):  # from 0.01 to 0.03, the lowest band tested, verified:
        bands.add(0.02, correct=True, verified=True)  # 20 predicted, none found
    assert bands.factor(0.02) == pytest.approx(1.0 / 21.0)
    assert bands.floor(0.0001) == pytest.approx(0.01 / 21.0)


def test_below_the_lowest_band_tested_estimates_stand_for_its_lowest_raised() -> None:
    bands = ModelBands()
    assert bands.floor(0.00005) == 0.0  # nothing tested
    for _ in range(400):  # 0.0002 predicted 400 times: 0.08, below TESTED
        bands.add(0.0002, correct=True)
    for i in range(1000):  # 0.002 predicted 1,000 times: 2 wrong answers, 7 found
        bands.add(0.002, correct=i >= 7)
    assert not bands.predicted[1] >= TESTED
    t = ModelBands.band(0.002)
    assert bands.predicted[t] == pytest.approx(2.0)
    assert bands.predicted[t] >= TESTED
    # the lowest band tested opens at 0.001; 7 is significantly more than 2: its factor
    # (upper bound of 7 + 1) / (2 + 1)
    f = (_upper(7.0) + 1.0) / 3.0
    assert bands.floor(0.00005) == pytest.approx(0.001 * f)
    assert bands.floor(0.0002) == pytest.approx(0.001 * f)  # (a band seen, not tested)
    assert bands.floor(0.002) == 0.0  # in the lowest band tested, or above: none
    assert bands.floor(0.5) == 0.0
    for _ in range(20000):  # the band below tested as well (2 predicted), none wrong
        bands.add(0.0001, correct=True)
    assert bands.floor(0.00005) == pytest.approx(0.0001)  # (factor 1)
    assert bands.floor(0.0002) == 0.0


def test_the_changes_are_drained_by_name_and_the_counts_round_trip() -> None:
    bands = ModelBands()
    bands.add(0.002, correct=False)
    bands.add(0.002, correct=True)
    bands.add(0.5, correct=True)
    bands.add(0.05, correct=False, verified=True)
    b, top, v = ModelBands.band(0.002), len(EDGES), ModelBands.band(0.05)
    assert bands.drain() == pytest.approx(
        {
            f"bands.p.{b}": 0.004,
            f"bands.w.{b}": 1.0,
            f"bands.p.{top}": 0.5,
            f"bands.p.{v}": 0.05,
            f"bands.w.{v}": 1.0,
            f"bands.vp.{v}": 0.05,
            f"bands.vw.{v}": 1.0,
        }
    )
    assert bands.drain() == {}
    counts = bands.counts()
    assert set(counts) == set(NAMES)
    again = ModelBands.from_counts(counts.__getitem__)
    assert (again.predicted, again.wrong) == (bands.predicted, bands.wrong)
    assert (again.verified_predicted, again.verified_wrong) == (
        bands.verified_predicted,
        bands.verified_wrong,
    )
    assert again.pending == {}


# -- in the budget ------------------------------------------------------------------------------
def _fitted_budget() -> ErrorBudget:
    budget = ErrorBudget(0.01, model=RiskModel())
    assert budget.model is not None
    for i in range(8):
        budget.model.learn(_x(similarity=0.6 + i / 40), correct=i % 2 == 0)
    budget.model.refit()
    return budget


@pytest.mark.usefixtures("quick")
def test_the_models_estimate_is_raised_by_its_bands_factor() -> None:
    budget = _fitted_budget()
    assert budget.model is not None
    budget.predicted = risk_model.TESTABLE  # (the model decides)
    ev = Agreement(0.7, 1, 1, None, ALONE)
    x = _x(similarity=0.7)
    mean, upper = budget.model.estimate(x)  # type: ignore[misc]
    b = ModelBands.band(mean)
    budget.bands.predicted[b] = TESTED  # (tested: the model's estimate stands alone)
    assert budget.risk(ev, None, x) == (mean, upper)
    budget.bands.wrong[b] = 2.0  # more, not significantly: the ratio, one more each side
    f = 3.0 / (TESTED + 1.0)
    assert budget.risk(ev, None, x) == (
        pytest.approx(min(1.0, mean * f)),
        pytest.approx(min(1.0, upper * f)),
    )
    # the table's estimate, where the model does not decide, is not the bands' to move
    budget.predicted = 0.0
    assert budget.risk(ev, None, x) == budget.table_risk(ev, None)


@pytest.mark.usefixtures("quick")
def test_below_the_lowest_band_tested_the_models_estimate_has_that_bands_floor() -> None:
    budget = ErrorBudget(0.01, model=RiskModel())
    assert budget.model is not None
    for i in range(8):  # wrong below 0.8, right above: low estimates near 1
        budget.model.learn(_x(similarity=0.6 + i / 20), correct=i >= 4)
    budget.model.refit()
    budget.predicted = risk_model.TESTABLE  # (the model decides)
    ev = Agreement(1.0, 1, 1, None, ALONE)
    x = _x(similarity=1.0)
    mean, upper = budget.model.estimate(x)  # type: ignore[misc]
    b = ModelBands.band(mean)
    assert b < len(EDGES)  # (a band above it, to be the lowest tested)
    budget.bands.predicted[b + 1], budget.bands.wrong[b + 1] = 4.0, 7.0  # factor 1.6
    least = EDGES[b] * 1.6
    assert budget.bands.floor(mean) == pytest.approx(least)
    assert budget.risk(ev, None, x) == (
        pytest.approx(max(mean, least)),
        pytest.approx(max(upper, mean, least)),
    )
    budget.bands.predicted[b] = TESTED  # its own band tested: no floor
    assert budget.risk(ev, None, x) == (mean, upper)


@pytest.mark.usefixtures("quick")
def test_every_llm_call_is_counted_at_the_estimate_made_before_it_is_learnt() -> None:
    budget = _fitted_budget()
    assert budget.model is not None
    ev = Agreement(0.8, 1, 1, None, ALONE)
    x = _x(similarity=0.8)
    before = budget.model.estimate(x)
    assert before is not None
    budget.observe(ev, None, False, None, x)  # a miss's LLM call, the stored answer wrong
    b = ModelBands.band(before[0])
    assert budget.bands.predicted[b] == pytest.approx(before[0])
    assert budget.bands.wrong == [1.0 if i == b else 0.0 for i in range(len(EDGES) + 1)]
    assert budget.model.outcomes == 9  # (and the model learnt it after)
    assert sum(budget.bands.verified_wrong) == 0.0  # (a miss is no verification)
    again = budget.model.estimate(x)
    assert again is not None
    verify = Decision("verify", again[0], again[1], 0.5, 1.0)
    budget.observe(ev, None, False, verify, x)  # a verification's, wrong as well
    v = ModelBands.band(again[0])
    assert budget.bands.verified_predicted[v] == pytest.approx(again[0])
    assert budget.bands.verified_wrong[v] == 1.0
    assert sum(budget.bands.wrong) == 2.0
    # below the floor nothing is learnt, nor counted
    budget.observe(Agreement(0.3, 1, 1, None, ALONE), None, False, None, _x(similarity=0.3))
    assert sum(budget.bands.wrong) == 2.0


def test_an_unfitted_model_counts_nothing() -> None:
    budget = ErrorBudget(0.01, model=RiskModel())
    budget.observe(Agreement(0.8, 1, 1, None, ALONE), None, False, None, _x(similarity=0.8))
    assert sum(budget.bands.wrong) == 0.0
    assert budget.bands.pending == {}


@pytest.mark.usefixtures("quick")
def test_the_bands_round_trip_with_the_budget_and_an_older_budget_has_none() -> None:
    budget = _fitted_budget()
    budget.observe(Agreement(0.8, 1, 1, None, ALONE), None, False, None, _x(similarity=0.8))
    data = budget.to_json()
    again = ErrorBudget.from_json(data)
    assert again.bands.counts() == budget.bands.counts()  # (the verified counts with them)
    del data["bands"]
    older = ErrorBudget.from_json(data)
    assert sum(older.bands.wrong) == 0.0
    with pytest.raises(ValueError, match="bands"):
        ErrorBudget.from_json({**data, "bands": [1.0, 2.0]})


# -- in the cache -------------------------------------------------------------------------------
@pytest.mark.usefixtures("quick")
def test_the_cache_keeps_the_bands_in_the_store(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with budget_cache(path) as cache:
        _verify_many(cache, 8)  # a fit at 4: the 4 after it are counted, 2 of them wrong
        pol = engine(cache).budgets.policy("default")  # type: ignore[union-attr]
        assert sum(pol.bands.wrong) == 2.0
        assert sum(pol.bands.predicted) > 0.0
        assert sum(pol.bands.verified_wrong) == 2.0  # (verifications, all of them)
        assert pol.bands.verified_predicted == pol.bands.predicted
        counted = pol.bands.counts()
    with budget_cache(path) as cache:
        again = engine(cache).budgets.policy("default")  # type: ignore[union-attr]
        assert again.bands.counts() == pytest.approx(counted)
        stored = cache.store.read_counts("default")  # type: ignore[attr-defined]
    assert {k: v for k, v in stored.items() if k.startswith("bands.")} == pytest.approx(
        {k: v for k, v in counted.items() if v}
    )


@pytest.mark.usefixtures("quick")
def test_two_caches_on_one_file_share_the_bands(tmp_path: Path) -> None:
    with two_shared_caches(tmp_path / "c.db") as (a, b, hand_over):
        _verify_many(a, 6)  # a fit at 4: 2 counted, 1 wrong
        hand_over()
        pol_b = engine(b).budgets.policy("default")  # type: ignore[union-attr]
        assert sum(pol_b.bands.wrong) == 1.0
        force(b, "verify")  # b's own call, wrong, joins a's
        b.get_or_put("paraphrase 7", lambda: "B", embedding=vec(0, 107))
        assert sum(pol_b.bands.wrong) == 2.0
        engine(b).budgets.sync("default")  # type: ignore[union-attr]
        engine(a).budgets.sync("default")  # type: ignore[union-attr]
        pol_a = engine(a).budgets.policy("default")  # type: ignore[union-attr]
        assert sum(pol_a.bands.wrong) == 2.0
        assert sum(pol_a.bands.verified_wrong) == 2.0
