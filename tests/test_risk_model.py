"""The error budget's risk model (``semcache._risk_model``) and the cache's outcome log:
the model's features, fit and rows; the cache learning every LLM call into the store's
log, refitting on it after a reopen, sharing it between caches and carrying it in a
checkpoint. Real SQLite files in tmp_path, seeded data, the clock injected; the model's
refit interval lowered (monkeypatched) where a test needs a fit from a few outcomes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_error_budget import Clock, budget_cache, engine, force, two_shared_caches, vec

import semcache._risk_model as risk_model
from semcache import MemoryStore, SemanticCache, StoreError
from semcache._agreement import ALONE, SPLIT, Agreement
from semcache._budget_policy import ErrorBudget
from semcache._risk_model import (
    ANSWER,
    FEATURES,
    LEXICAL,
    RiskModel,
    decode_row,
    encode_row,
    features,
)


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model refits every 4 outcomes, once it saw 2 of each kind."""
    monkeypatch.setattr(risk_model, "REFIT", 4)
    monkeypatch.setattr(risk_model, "MIN_CLASS", 2)


def _x(**named: float) -> list[float]:
    x = [0.0] * len(FEATURES)
    for name, value in named.items():
        x[FEATURES.index(name.replace("_", " "))] = value
    return x


# -- the model alone ----------------------------------------------------------------------------
def test_a_row_round_trips_exactly_and_a_bad_row_is_skipped() -> None:
    x = [0.1 + 0.2, 1e-17, -3.5, *range(len(FEATURES) - 3)]
    assert decode_row(encode_row(x, correct=False)) == (1.0, [float(v) for v in x])
    assert decode_row(encode_row(x, correct=True)) == (0.0, [float(v) for v in x])
    for bad in (
        "",
        "{}",
        "[1,2]",
        "[2" + ",0" * len(FEATURES) + "]",
        "[0,NaN" + ",0" * (len(FEATURES) - 1) + "]",
    ):
        assert decode_row(bad) is None


def test_the_fit_learns_a_risk_that_rises_with_a_feature() -> None:
    rng = np.random.default_rng(3)
    model = RiskModel()
    for _ in range(3000):
        s = float(rng.uniform(0.5, 1.0))
        wrong = rng.random() < 1.0 / (1.0 + math.exp(-(12.0 * (0.75 - s))))
        model.learn(_x(similarity=s), correct=not wrong)
    assert model.due()
    model.refit()
    assert model.fitted_at == 3000
    assert not model.due()
    low, high = model.estimate(_x(similarity=0.6)), model.estimate(_x(similarity=0.95))
    assert low is not None
    assert high is not None
    assert low[0] == pytest.approx(1.0 / (1.0 + math.exp(-1.8)), abs=0.08)
    assert high[0] == pytest.approx(1.0 / (1.0 + math.exp(2.4)), abs=0.03)
    assert low[0] < low[1]
    assert high[0] < high[1]  # the upper bound is above the mean


def test_the_fit_follows_a_risk_that_is_no_line_in_the_logit() -> None:
    # the logit falls steeply at first and then levels off (a floor of wrong answers that
    # no similarity removes): a line through it misses the middle, the squares do not
    rng = np.random.default_rng(5)
    model = RiskModel()

    def true_logit(s: float) -> float:
        return -4.0 + 60.0 * (0.95 - s) ** 2

    seen: list[tuple[float, float]] = []
    for _ in range(4000):
        s = float(rng.uniform(0.5, 1.0))
        wrong = rng.random() < 1.0 / (1.0 + math.exp(-true_logit(s)))
        model.learn(_x(similarity=s), correct=not wrong)
        seen.append((s, float(wrong)))
    model.refit()
    assert model.fit is not None
    assert len(model.fit[0]) == 2 * len(FEATURES)  # each feature and its square
    assert risk_model.inputs([3.0, -3.0], [1.0, 0.0], [2.0, 1.0]) == [1.0, -3.0, 1.0, 9.0]
    # the fit's inputs (all rows at once) are the estimate's (a row at a time), exactly
    rows = np.array([x for _, x in list(model.log)[:50]])
    centre, spread = (np.array(v) for v in model.basis)
    design = RiskModel._design((rows - centre) / spread)
    assert [list(r) for r in design] == [risk_model.inputs(list(r), *model.basis) for r in rows]
    for s in (0.55, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0):
        estimate = model.estimate(_x(similarity=s))
        assert estimate is not None
        assert estimate[0] == pytest.approx(1.0 / (1.0 + math.exp(-true_logit(s))), abs=0.03)
    # a line in the similarity, fitted on the same outcomes, misses by more
    s_all, y = np.array(seen).T
    w, _ = risk_model.fit_logistic(((s_all - 0.75) * 4.0)[:, None], y)
    points = (0.6, 0.75, 0.95)
    line = [1.0 / (1.0 + math.exp(-(w[0] * (s - 0.75) * 4.0 + w[1]))) for s in points]
    truth = [1.0 / (1.0 + math.exp(-true_logit(s))) for s in points]
    assert max(abs(a - b) for a, b in zip(line, truth, strict=True)) > 0.05
    assert line[2] < truth[2] / 4  # (the floor: a line's tail goes to 0)
    # raw squares are nearly collinear with the similarity: the penalty keeps them a line
    raw = np.stack([s_all, s_all * s_all], axis=1)
    centre, spread = raw.mean(axis=0), raw.std(axis=0)
    w, _ = risk_model.fit_logistic((raw - centre) / spread, y)
    a = (np.array([0.95, 0.95 * 0.95]) - centre) / spread
    assert 1.0 / (1.0 + math.exp(-(a @ w[:2] + w[2]))) < truth[2] / 4


def test_no_fit_before_both_outcomes_were_seen_and_the_rows_are_bounded() -> None:
    model = RiskModel(rows=600)
    for i in range(700):
        model.learn(_x(similarity=i / 700), correct=True)
    assert not model.due()  # no wrong answer yet
    model.refit()
    assert model.fit is None
    assert model.estimate(_x()) is None
    assert len(model.log) == 600
    assert model.outcomes == 700
    assert len(model.pending) == 600  # (the newest: the store keeps no more)


def test_the_wrong_answers_are_counted_among_the_rows_kept() -> None:
    model = RiskModel(rows=50)
    for i in range(100):
        model.learn(_x(similarity=0.5), correct=i >= 40)  # 40 wrong, then 60 right
    assert model.wrong == 0.0  # (the wrong ones were the oldest: gone)
    assert not model.ready()
    for _ in range(25):
        model.learn(_x(similarity=0.5), correct=False)
    assert model.wrong == sum(y for y, _ in model.log) == 25.0
    assert model.ready()  # 25 wrong, 25 right among the 50 kept
    model.replace([encode_row(_x(), correct=False)] * 3)
    assert model.wrong == 3.0


def test_the_features_read_the_candidates_words_and_agreement() -> None:
    ev = Agreement(0.9, 2, 3, 0.7, ALONE)
    x = features(
        "how do I reset my password",
        ["reset my password please", "reset password", "what is my balance"],
        [b"a", b"a", b"b"],
        [0.9, 0.85, 0.7],
        0,
        ev,
        None,
        0.02,
        0.02,
        floor=0.5,
    )
    named = dict(zip(FEATURES, x, strict=True))
    assert named["similarity"] == 0.9
    assert named["margin"] == pytest.approx(0.2)
    assert named["examined"] == 3.0
    assert named["agreeing share"] == pytest.approx(2 / 3)
    assert named["alone"] == 1.0
    assert named["split"] == 0.0
    assert named["table logit"] == pytest.approx(math.log(0.02 / 0.98))
    assert named["query words"] == 6.0
    # each word weighed by its rarity among the three prompts: "reset", "my" and
    # "password" are in two of them, "how", "do" and "i" in none
    common, rare = math.log(5 / 4) + 1.0, math.log(5 / 2) + 1.0
    assert named["words in judged"] == pytest.approx(common / (common + rare))
    assert named["words in own"] == named["words in judged"]
    assert named["words in other"] == pytest.approx(common / 3 / (common + rare))  # "my"
    assert named["words lead"] == pytest.approx(named["words in own"] - named["words in other"])
    assert named["jaccard"] == pytest.approx(3 / 7)
    assert named["words missing"] == pytest.approx(1.0 - named["words in own"])
    # no answer model's reading given: both of its features 0
    assert (named["answer probability"], named["answer known"]) == (0.0, 0.0)


def test_the_answer_models_reading_is_the_last_two_features() -> None:
    ev = Agreement(0.9, 1, 2, 0.7, SPLIT)
    args = ("reset my password", ["reset password", "my balance"], [b"a", b"b"], [0.9, 0.7])
    plain = features(*args, 0, ev, None, 0.02, 0.02, floor=0.5)
    read = features(*args, 0, ev, None, 0.02, 0.02, floor=0.5, answer_p=0.25)
    unsure = features(*args, 0, ev, None, 0.02, 0.02, floor=0.5, answer_p=0.0)
    assert len(read) == len(FEATURES)
    assert read[:-2] == plain[:-2]
    assert dict(zip(FEATURES, read, strict=True))["answer probability"] == 0.25
    assert read[-1] == 1.0
    assert plain[-1] == 0.0
    # a known answer at probability 0 is told apart from no reading
    assert unsure[-2:] == [0.0, 1.0]
    assert {"answer probability", "answer known"} == ANSWER
    assert not ANSWER & LEXICAL


def test_rows_of_another_width_are_left_out_of_the_log() -> None:
    # the outcome log of an earlier version (its rows two features short) is not fitted
    # on: the model starts over on the rows of its own width
    model = RiskModel()
    old = json.dumps([1.0, *[0.5] * (len(FEATURES) - 2)])
    model.replace([old, encode_row(_x(similarity=0.7), correct=True), old])
    assert [x for _, x in model.log] == [_x(similarity=0.7)]
    assert model.wrong == 0.0


def test_the_model_decides_only_once_its_estimates_can_be_tested(quick: None) -> None:
    budget = ErrorBudget(0.01, model=RiskModel())
    for i in range(8):
        budget.model.learn(_x(similarity=0.6 + i / 40), correct=i % 2 == 0)  # type: ignore[union-attr]
    budget.model.refit()  # type: ignore[union-attr]
    ev = Agreement(0.7, 1, 1, None, ALONE)
    x = _x(similarity=0.7)
    assert not budget.modelled
    assert budget.risk(ev, None, x) == budget.table_risk(ev, None)
    budget.predicted = risk_model.TESTABLE
    assert budget.modelled
    assert budget.risk(ev, None, x) == budget.model.estimate(x)  # type: ignore[union-attr]
    assert budget.risk(ev, None) == budget.table_risk(ev, None)  # (no features: the table)


# -- in the cache -------------------------------------------------------------------------------
def _verify_many(cache: SemanticCache, n: int, first: int = 0) -> None:
    """Store topic 0's answer "A", then verify ``n`` paraphrases of it whose fresh answer
    is "A" for the even ones and "B" for the odd ones."""
    if first == 0:
        cache.put("topic 0", "A", embedding=vec(0, -1))
    force(cache, "verify")
    for i in range(first, first + n):
        fresh = "A" if i % 2 == 0 else "B"
        got = cache.get_or_put(f"paraphrase {i}", lambda f=fresh: f, embedding=vec(0, 100 + i))
        assert got == fresh


def test_each_llm_call_is_logged_in_the_store_with_its_features(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with budget_cache(path) as cache:
        _verify_many(cache, 2)
    with SemanticCache(path) as cache:
        rows = [decode_row(r) for r in cache.store.read_outcomes("default")]  # type: ignore[attr-defined]
        counts = cache.store.read_counts("default")  # type: ignore[attr-defined]
    assert counts["outcomes"] == 2.0
    assert [r[0] for r in rows if r is not None] == [0.0, 1.0]  # right, then wrong
    named = [dict(zip(FEATURES, r[1], strict=True)) for r in rows if r is not None]
    assert [n["similarity"] for n in named] == [pytest.approx(0.95, abs=1e-3)] * 2
    assert [n["query words"] for n in named] == [2.0, 2.0]
    assert [n["examined"] for n in named] == [1.0, 2.0]  # (the first paraphrase, put)


def _two_answers(cache: SemanticCache) -> None:
    """Topics 0 and 1 asked three ways each, answered "A" and "B"."""
    for topic, answer in ((0, "A"), (1, "B")):
        cache.put_many(
            [f"topic {topic} way {i}" for i in range(3)],
            [answer] * 3,
            embeddings=np.stack([vec(topic, i) for i in range(3)]),
        )


@pytest.mark.parametrize("answer_model", [True, False])
def test_the_answer_models_reading_is_logged_with_the_outcome(
    tmp_path: Path, answer_model: bool
) -> None:
    path = tmp_path / "c.db"
    with budget_cache(path, answer_model=answer_model) as cache:
        models = engine(cache).answer_models
        assert (models is not None) == answer_model
        if models is not None:
            models.background = False  # (fitted in the get that starts the fit)
        _two_answers(cache)
        force(cache, "verify")
        assert cache.get_or_put("topic 0 again", lambda: "A", embedding=vec(0, 50)) == "A"
        summary = cache.stats()["answer_model"]
    with SemanticCache(path) as cache:
        rows = [decode_row(r) for r in cache.store.read_outcomes("default")]  # type: ignore[attr-defined]
    (row,) = [r for r in rows if r is not None]
    named = dict(zip(FEATURES, row[1], strict=True))
    if answer_model:  # the model of "A" and "B", fitted under the budget, read the query
        assert summary["models"] == {"default": 2}
        assert named["answer known"] == 1.0
        assert named["answer probability"] > 0.5
    else:
        assert summary is None
        assert (named["answer probability"], named["answer known"]) == (0.0, 0.0)


def test_a_reopened_cache_refits_on_the_logged_outcomes(tmp_path: Path, quick: None) -> None:
    path = tmp_path / "c.db"
    with budget_cache(path) as cache:
        _verify_many(cache, 6)
        model = engine(cache).budgets.policy("default").model  # type: ignore[union-attr]
        assert model is not None
        assert model.fit is not None
        assert model.fitted_at == 4
        _verify_many(cache, 2, first=6)  # a refit at 8
        assert model.fitted_at == 8
        x = model.log[-1][1]
        before = model.estimate(x)
    with budget_cache(path) as cache:
        again = engine(cache).budgets.policy("default").model  # type: ignore[union-attr]
        assert again is not None
        assert again.outcomes == again.fitted_at == 8
        assert len(again.log) == 8
        assert again.estimate(x) == before


def test_stats_name_the_namespaces_whose_model_decides(tmp_path: Path, quick: None) -> None:
    with budget_cache(tmp_path / "c.db") as cache:
        assert cache.stats()["budget"]["modelled"] == []
        _verify_many(cache, 6)
        policy = engine(cache).budgets.policy("default")  # type: ignore[union-attr]
        assert policy.model is not None
        assert policy.model.fit is not None
        policy.predicted = 0.0
        assert cache.stats()["budget"]["modelled"] == []  # fitted, not yet testable
        policy.predicted = risk_model.TESTABLE
        assert cache.stats()["budget"]["modelled"] == ["default"]


def test_two_caches_on_one_file_fit_on_each_others_outcomes(tmp_path: Path, quick: None) -> None:
    with two_shared_caches(tmp_path / "c.db") as (a, b, hand_over):
        _verify_many(a, 3)  # 3 outcomes: no fit yet
        hand_over()
        model_b = engine(b).budgets.policy("default").model  # type: ignore[union-attr]
        assert model_b is not None
        assert model_b.outcomes == 3
        assert model_b.fit is None
        force(b, "verify")
        b.get_or_put("paraphrase 3", lambda: "B", embedding=vec(0, 103))  # the 4th: due
        assert model_b.fit is not None
        assert model_b.fitted_at == 4
        assert [y for y, _ in model_b.log] == [0.0, 1.0, 0.0, 1.0]  # a's three, then b's


def test_a_checkpoint_carries_the_outcome_log(tmp_path: Path) -> None:
    with budget_cache(tmp_path / "c.db") as cache:
        _verify_many(cache, 3)  # (rows still pending: the checkpoint flushes them)
        cache.dumps(tmp_path / "c.tar.gz")
    restored = SemanticCache.loads(
        tmp_path / "c.tar.gz", tmp_path / "r.db", None, error_budget=0.1, guards=None
    )
    with restored:
        rows = restored.store.read_outcomes("default")  # type: ignore[attr-defined]
    assert [decode_row(r)[0] for r in rows] == [0.0, 1.0, 0.0]  # type: ignore[index]


class NoLog(MemoryStore):
    add_outcomes = None  # type: ignore[assignment]


class FailingLog(MemoryStore):
    fail = True

    def add_outcomes(self, namespace: str, rows: object, keep: int) -> None:
        if self.fail:
            raise StoreError("the log is down")
        super().add_outcomes(namespace, rows, keep)  # type: ignore[arg-type]


def test_without_the_store_s_log_the_model_fits_on_this_process_s_rows(quick: None) -> None:
    with budget_cache(store=NoLog()) as cache:
        _verify_many(cache, 4)
        model = engine(cache).budgets.policy("default").model  # type: ignore[union-attr]
        assert model is not None
        assert model.fit is not None
        assert len(model.log) == 4
        assert len(model.pending) == 0  # (nowhere to write them)


def test_a_failing_log_keeps_the_rows_for_the_next_write(quick: None) -> None:
    store = FailingLog()
    clock = Clock()
    with budget_cache(store=store, clock=clock) as cache:
        _verify_many(cache, 4)  # the refit's write fails: fitted on this process's rows
        model = engine(cache).budgets.policy("default").model  # type: ignore[union-attr]
        assert model is not None
        assert model.fit is not None
        assert len(model.pending) == 4
        assert store.read_outcomes("default") == []
        store.fail = False
        clock.now += 1.0
        cache.get("unrelated", embedding=vec(1, -1))  # a sync writes them
        assert len(model.pending) == 0
        assert len(store.read_outcomes("default")) == 4
