"""Estimator variants of the error budget, measured, not shipped (docs/quality.md,
"Learning the record's weight and the top bins' prior" and "The record's weight,
learnt").

Each variant is an :class:`~semcache._budget_policy.ErrorBudget` (or its
:class:`~semcache._budget_policy.RiskTable`) with one part of the estimate changed;
``budget_streams.py --variant NAME`` runs the research replay with it:

- ``fixed-weight``: the table's estimate counts as ``ENTRY_PRIOR`` (4) of an entry's
  own observations, always (the build before the weight was learnt; shipped now: the
  weight of :data:`~semcache._budget_policy.ENTRY_PRIORS` whose estimates gave the LLM
  calls' outcomes the lowest log-loss). ``learnt-weight-verified``: the weight learnt
  as shipped, but scored on the verified candidates only (a sample of the answers
  served, drawn without regard to their outcome, where the misses are the candidates
  the records made riskier).
- ``normal-spare``: the target keeps the spare by the normal approximation of the
  count of wrong answers, ``budget * (1 - SPARE_SD / sqrt(budget * gets))`` (0 until
  ``budget * gets`` exceeds ``SPARE_SD`` squared; the build before), not by the
  Poisson count's own tail (:func:`~semcache._budget_policy.spare_mean`, shipped).
- ``below-prior``: the table's one pseudo-observation is at the fitted risk of the
  nearest bins below that are riskier (risk does not rise with similarity, so it bounds
  the bin's), not at 1/2. The first block keeps 1/2.
- ``learnt-prior``: the pseudo-observation's rate is learnt the same way among
  1/2 and 1, 2, 4, 8 times the rate below (at most 1/2), by every observation;
  ``learnt-prior-verified``: by the verified candidates' only (a sample of the answers
  the budget serves, drawn without regard to their outcome).
- ``record-free-table``: the risk table learns only from the candidates whose entry's
  record said nothing at the similarity (the others' misses are the candidates their
  records made riskier); their records learn as shipped.
- ``posterior-verify``: an uncertain candidate (its estimate at or below the level, its
  upper bound above) is verified with the probability that its risk is above the
  level, its estimate read as a normal whose one-sided ``Z_UPPER`` quantile is the
  upper bound (probability matching), not with the bound's reach past the level over
  its reach past the estimate (1 at the level, however well measured).
- ``model-risk``: the estimate (and its upper bound) is the logistic model of
  ``risk_model.py`` over the candidate's features (the table's and the record's
  estimates among them, the words of the query and of the candidates' prompts),
  learnt from the LLM calls' outcomes; the shipped estimate until its first fit. The
  research replay gives it the get's candidates through its ``inspect`` hook
  (:attr:`VariantBudget.inspect`). ``model-risk-no-words``: without the lexical
  features; ``model-risk-no-estimates``: without the table's and the record's
  estimates among them. ``model-axis``: the model's probability as the axis of a
  risk table (one curve, six bins a decade, rebuilt from every outcome at each fit),
  whose estimate and bound (the 1/2 prior, the pooled bounds) the budget decides on.
  ``model-risk-ipw``: ``model-risk`` with each verified outcome counted 1 / the
  probability it was verified with in the fit (a miss is always observed, a candidate
  served only when verified: so weighted, the outcomes stand for every get's).
  ``model-when-testable``: ``model-risk`` once the verified candidates' predicted wrong
  answers reach :data:`TESTABLE` (the verified gets' test can then catch a model whose
  estimates are too low), the shipped estimate before. ``model-local-words``: the
  words weighed by their document frequency among the get's candidates' prompts (no
  state kept), not among the queries seen so far; joined with a ``model-`` part
  (``model-when-testable+model-local-words``). ``model-rows-5000``: the model fitted on
  the newest 5,000 outcomes only (a bounded log), joined likewise. (The three together
  are what ships now: ``semcache._risk_model``.)
- ``shipped-model``: the shipped budget, model included (what the replay runs without a
  variant), as the base of the parts that change it: ``platt``, a recalibration of the
  model's estimate by a logistic curve of its logit fitted on the verified candidates
  it decided on (each weighed by 1 / its verification probability, the weights scaled
  to Kish's effective number; refitted every 25 once 10 were wrong), with that fit's
  Laplace upper bound. Without a model part the variants start from the table alone
  (the budget as shipped before the model).
- ``model-squares``: a research model (``model-`` parts) whose features are joined by
  their squares, raw (a curve per feature; the first try of docs/quality.md, "A curve
  per feature"; the shipped model squares them centred). ``posterior-verify-model``:
  while a model's estimate decides, an uncertain candidate is verified with the
  probability its Laplace posterior (a normal on the logit, whose ``Z_UPPER`` quantile
  is the upper bound) gives a risk above the level, not with the bound's reach past
  the level over its reach past the estimate. ``untested``: the shipped model
  (``shipped-model``) decides as soon as it is fitted, before the verified candidates'
  predicted wrong answers reach ``TESTABLE``. ``similarity-cross`` (with
  ``shipped-model``): the shipped model with the similarity's products with each other
  feature (centred) among its inputs (:class:`CrossModel`).
- ``floor`` (with ``shipped-model``): the shipped model with a floor, a risk of the
  form ``f + (1 - f) sigmoid(z)`` fitted by expectation-maximization
  (:class:`FloorModel`; with ``untested`` it decides at 0.001 before it can be
  tested: docs/quality.md, "The allowance left, carried"). ``window-slack``: the
  level's allowance joined by what the window's served answers left of the window's
  allowance, not by what every answer served so far left of the allowance so far
  (:attr:`~semcache._budget_policy.ErrorBudget.room`): the build before the ledger.
- ``own-testable`` (with the shipped model): the model decides once its own estimates
  of the verified candidates' risks (from its first fit, whether or not it decided
  them; each read before it learns the outcome) sum to ``Z_CORRECTION ** 2`` (2.71:
  the least prediction at which the verified candidates' test rejects a count twice
  as large), not once the deciding estimates' (the table's, until then) sum to
  :data:`TESTABLE` (10). docs/quality.md, "The model, tested on its own estimates"
  (not shipped: it goes over at 0.001).
- ``upper-correction``: where the verified candidates' test finds the estimates too
  low, the correction is ``upper / predicted``, the build before "The correction of a
  small prediction" in docs/quality.md (shipped now: ``(upper + 1) / (predicted +
  1)``, one wrong answer predicted at the estimate joining both, so that a single
  wrong answer among verified candidates predicted at 0.04 no longer divides the
  allowance by about 100). It was measured the other way round, as a variant that
  shrank the build before's correction; each reproduces the other's figures.
- ``range-check`` (with ``shipped-model``, and ``own-testable`` or the shipped gate):
  the model decides only where it passes a test in the range the level serves from
  (:class:`RangeCheck`): the LLM calls whose candidate it estimated in the bands
  below the level and the level's own must predict at least ``Z_CORRECTION ** 2``
  wrong answers, and the wrong answers found there must not be significantly more.
  Not shipped: it refuses the model at 0.01 where the table's refused candidates
  make it look low, and at 0.001 does not see the answers it serves
  (docs/quality.md, "The model's lowest estimates, raised by band").
- ``no-bands``: the model's estimates as fitted, not raised by their band's factor
  (:mod:`semcache._model_bands`; the build before "The model's lowest estimates,
  raised by band").
- ``band-upper``: the model's upper bound raised by its band's factor at the Poisson
  upper bound of the wrong answers found there (``Z_UPPER``), not by the estimate's:
  a band that has seen little doubts more, and verifies more (docs/quality.md, "The
  model's lowest estimates, raised by band").
- ``no-floor``: the model's estimates below the lowest band its LLM calls tested not
  raised to that band's floor (``ModelBands.floor``; the build before "Below the
  lowest band tested, a floor" in docs/quality.md).
- ``calls-floor``: instead of that floor, the share of wrong answers among the LLM
  calls counted in the estimate's band and every band below (one call more on the
  right side): tried first, not shipped (it includes the candidates the table refused,
  and at 0.01 it cost 0.15 of hit rate).
- ``table-untested``: instead of that floor, the table's estimate (and bound) as the
  least the model's stand for in a band not tested: tried, not shipped (0.14 at 0.01).
- ``tested-z2``: the floor with a band tested once its calls predicted
  ``Z_CORRECTION ** 2`` wrong answers, not :data:`~semcache._model_bands.TESTED` (1).
  ``no-floor``, ``calls-floor``, ``table-untested`` and ``tested-z2`` raise a band
  only, as the build they were measured on did (``up-only``).
- ``up-only``: a band's estimates raised where its calls were wrong more often, never
  lowered (the build before "Bands lowered on the verified candidates' word" in
  docs/quality.md).
- ``band-down-calls``: a band lowered where every LLM call counted in it, misses too,
  was wrong significantly less often, not only where its verified candidates were:
  tried first, not shipped (it served answers wrong more often than the lowered
  estimates said, where once a band is served its calls are few).
- ``band-down-upper``: as ``band-down-calls``, lowered by the count's Poisson upper
  bound over the prediction (as the correction is), not by ``(found + 1) / (predicted
  + 1)``: tried, not shipped.
- ``point-up``: a band whose calls found significantly more wrong answers than
  predicted raised by ``(found + 1) / (predicted + 1)``, not by the count's Poisson
  upper bound over the prediction (the build before "A band raised to its count's
  upper bound" in docs/quality.md).
- The bands' variants are in ``budget_bands.py`` (:data:`budget_bands.BANDS`).
- Every variant builds on the shipped budget: the figures docs/quality.md gives for a
  variant measured before the ledger (all of them up to "The allowance left,
  carried") are its command's with ``+window-slack`` joined to the variant.
- Joined with ``+``: ``fixed-weight+normal-spare`` is the build before this one,
  ``normal-spare+below-prior`` and so on.

The names of the first round (docs/quality.md, "Learning the record's weight and the
top bins' prior", measured on the build before) read, on this one: its shipped row is
``fixed-weight+normal-spare``, ``learnt-weight`` is ``normal-spare``,
``learnt-weight+below-prior`` is ``normal-spare+below-prior``, ``below-prior`` alone is
``fixed-weight+normal-spare+below-prior``, and so on.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from budget_bands import BANDS
from risk_model import LEXICAL, RiskModel

import semcache._budget_policy
import semcache._model_bands
from semcache._agreement import ALONE, Agreement
from semcache._budget_policy import (
    Decision,
    EntryRecord,
    ErrorBudget,
    RiskTable,
    _log_loss,
    _wilson_upper,
)
from semcache._model_bands import TESTED, poisson_bounds
from semcache._risk_model import TESTABLE, _logit, _sigmoid, fit_logistic
from semcache._risk_model import RiskModel as ShippedModel
from semcache._types import Hit

#: ``own-testable``'s gate: the least prediction at which the verified candidates' test
#: (two-sided at ``Z_CORRECTION``) rejects a count twice as large, ``m + z^2 / 2 -
#: z sqrt(2 m + z^2 / 4) = m``, i.e. ``m = z^2`` (2.71).
OWN_TESTABLE = semcache._budget_policy.Z_CORRECTION**2


#: The priors ``learnt-prior`` chooses among: None is 1/2 (shipped), c is c times the
#: fitted risk of the bins below (at most 1/2).
PRIORS: tuple[float | None, ...] = (None, 1.0, 2.0, 4.0, 8.0)
VARIANTS = (
    "fixed-weight",
    "learnt-weight-verified",
    "normal-spare",
    "below-prior",
    "learnt-prior",
    "learnt-prior-verified",
    "record-free-table",
    "posterior-verify",
    "model-risk",
    "model-risk-no-words",
    "model-risk-no-estimates",
    "model-axis",
    "model-risk-ipw",
    "model-when-testable",
    "model-local-words",
    "model-rows-5000",
    "shipped-model",
    "platt",
    "posterior-verify-model",
    "model-squares",
    "untested",
    "similarity-cross",
    "floor",
    "window-slack",
    "own-testable",
    "upper-correction",
    "range-check",
    "no-bands",
    "band-upper",
    "no-floor",
    "calls-floor",
    "table-untested",
    "tested-z2",
    "up-only",
    "band-down-upper",
    "band-down-calls",
    "point-up",
)


class RangeCheck:
    """``range-check``: the LLM calls' outcomes by the band of the model's estimate of
    their candidate (three bands a decade), and the test the model must pass in the
    range a level serves from: the bands below the level and its own predicted at
    least ``Z_CORRECTION ** 2`` wrong answers, and the wrong answers found there are
    not significantly more (one-sided, ``Z_CORRECTION``)."""

    EDGES = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)

    def __init__(self) -> None:
        self.predicted = [0.0] * (len(self.EDGES) + 1)
        self.wrong = [0.0] * (len(self.EDGES) + 1)

    def add(self, estimate: float, correct: bool) -> None:
        """Count one outcome at the model's ``estimate``."""
        b = bisect.bisect_right(self.EDGES, estimate)
        self.predicted[b] += estimate
        self.wrong[b] += 0.0 if correct else 1.0

    def passes(self, level: float) -> bool:
        """Whether the model may decide at ``level``."""
        top = bisect.bisect_right(self.EDGES, level) + 1
        m, w = sum(self.predicted[:top]), sum(self.wrong[:top])
        z = semcache._budget_policy.Z_CORRECTION
        return m >= z * z and poisson_bounds(w, z)[0] <= m


def model_axis(p: float) -> float:
    """The similarity axis ``model-axis`` bins a model's probability ``p`` on: 1/2 at
    ``p`` = 1 to 1 at 10^-4 and below, by its logarithm (0.02 wide bins: six a decade)."""
    return 0.5 + 0.5 * min(1.0, max(0.0, -math.log10(max(p, 1e-12)) / 4.0))


class PriorTable(RiskTable):
    """A :class:`RiskTable` whose pseudo-observation is at ``PRIORS[mode]``."""

    def __init__(self, mode: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode
        #: True: :meth:`add` learns nothing (``record-free-table``)
        self.frozen = False

    def add(self, evidence: int, similarity: float, correct: bool, weight: float = 1.0) -> None:
        if not self.frozen:
            super().add(evidence, similarity, correct, weight)

    def _prior(self, fit: Sequence[float], b: int) -> float:
        c = PRIORS[self.mode]
        if c is None:
            return 0.5
        below = (fit[i] for i in range(b - 1, -1, -1))
        riskier = next((r for r in below if not math.isnan(r) and r > fit[b]), None)
        return 0.5 if riskier is None else min(0.5, c * riskier)

    def risk_with(self, evidence: int, similarity: float, mode: int) -> tuple[float, float]:
        """:meth:`RiskTable.risk` with the pseudo-observation at ``PRIORS[mode]``."""
        kept, self.mode = self.mode, mode
        try:
            return self.risk(evidence, similarity)
        finally:
            self.mode = kept


class CrossModel(ShippedModel):
    """The shipped model with the similarity's products with each other feature (all
    centred) among its inputs (``similarity-cross``)."""

    @staticmethod
    def _cross(z: Any) -> Any:
        return z[..., :1] * z[..., 1:]

    @staticmethod
    def _design(z: Any) -> Any:
        return np.hstack([z, z * z, CrossModel._cross(z)])

    def _inputs(self, x: Sequence[float]) -> list[float]:
        a = super()._inputs(x)
        return [*a, *self._cross(np.asarray(a[: len(x)])).tolist()]


class FloorModel(ShippedModel):
    """The shipped model with a floor (``floor``): the risk is ``f + (1 - f) sigmoid(z)``,
    ``f`` a share of wrong answers no feature removes, fitted with the curve by
    expectation-maximization (a wrong outcome is the floor's with the posterior
    probability ``f / (f + (1 - f) sigmoid(z))``; the curve is fitted on the rest,
    each wrong row weighed by the complement). The upper bound is the floor's upper
    Wilson bound joined with the curve's Laplace bound."""

    #: EM rounds per fit
    ROUNDS = 30

    def __init__(self) -> None:
        super().__init__()
        #: the floor and its upper bound (one-sided, ``Z_UPPER``)
        self.floor = (0.0, 0.0)

    def _fit(self, x: Any, y: Any) -> tuple[Any, Any]:
        """The curve fitted with the floor (expectation-maximization), which it keeps
        in :attr:`floor` with its upper Wilson bound."""
        f = 0.0
        w, cov = fit_logistic(x, y)
        a = np.hstack([x, np.ones((len(x), 1))])
        for _ in range(self.ROUNDS):
            s = 1.0 / (1.0 + np.exp(-(a @ w)))
            r = np.where(y > 0, f / np.maximum(f + (1.0 - f) * s, 1e-300), 0.0)
            f_new = float(r.mean()) if f > 0 else float(y.mean()) / 10.0
            w, cov = fit_logistic(x, y, weights=1.0 - r)
            if abs(f_new - f) < 1e-7:
                f = f_new
                break
            f = f_new
        n = float(len(y))
        self.floor = (f, _wilson_upper(f * n, n))  # (f n: the floor's wrong answers)
        return w, cov

    def estimate(self, x: Sequence[float]) -> tuple[float, float] | None:
        raw = super().estimate(x)
        if raw is None:
            return None
        f, f_up = self.floor
        return f + (1.0 - f) * raw[0], f_up + (1.0 - f_up) * raw[1]


class VariantBudget(ErrorBudget):
    """An :class:`ErrorBudget` with the parts ``variant`` names changed."""

    def __init__(self, budget: float, *, variant: str, **kwargs: Any) -> None:
        parts = set(variant.split("+"))
        unknown = parts - set(VARIANTS)
        if unknown:
            raise ValueError(f"unknown variant part(s): {sorted(unknown)}")
        self.fixed_weight = "fixed-weight" in parts
        self.weight_from_verified = "learnt-weight-verified" in parts
        self.normal_spare = "normal-spare" in parts
        self.learn_prior = bool(parts & {"learnt-prior", "learnt-prior-verified"})
        self.prior_from_verified = "learnt-prior-verified" in parts
        self.record_free_table = "record-free-table" in parts
        self.posterior_verify = "posterior-verify" in parts
        #: with ``posterior-verify-model``: while the model decides, an uncertain
        #: candidate is verified with its Laplace posterior's probability of a risk
        #: above the level
        self.model_posterior_verify = "posterior-verify-model" in parts
        #: whether the last :meth:`risk` was a model's
        self.from_model = False
        #: with ``untested``: the shipped model decides once fitted, before the
        #: verified gets' test could catch it (no :data:`TESTABLE`)
        self.untested = "untested" in parts
        #: with ``own-testable``: the model decides once its own estimates of the
        #: verified candidates' risks (from its first fit, whether or not it decided
        #: them) reach :data:`OWN_TESTABLE`, not once the deciding estimates' do
        #: (:data:`TESTABLE`)
        self.own_testable = "own-testable" in parts
        #: the model's own estimates of the verified candidates' risks, so far
        self.model_predicted = 0.0
        #: with ``model-risk``: the model, and the features of the get being decided
        self.research: RiskModel | None = None
        #: with ``model-axis``: the table on the model's axis (rebuilt at each fit)
        self.axis_table: RiskTable | None = None
        #: with ``model-risk-ipw``: a verified outcome counts 1 / its verification
        #: probability in the model's fit
        self.inverse_weights = "model-risk-ipw" in parts
        #: with ``model-when-testable``: the model decides only once the verified
        #: candidates' predicted wrong answers reach :data:`TESTABLE`
        self.when_testable = "model-when-testable" in parts
        if "model-axis" in parts:
            self.axis_table = RiskTable(floor=0.5)
        if any(part.startswith("model-") for part in parts):
            without: frozenset[str] = frozenset()
            if "model-risk-no-words" in parts:
                without = LEXICAL
            elif "model-risk-no-estimates" in parts:
                without = frozenset({"table logit", "record logit"})
            local = "model-local-words" in parts
            rows = 5000 if "model-rows-5000" in parts else None
            self.research = RiskModel(
                kwargs.get("floor", 0.5),
                without=without,
                local=local,
                rows=rows,
                squares="model-squares" in parts,
            )
        if "shipped-model" in parts:
            if "similarity-cross" in parts:
                kwargs["model"] = CrossModel()
            elif "floor" in parts:
                kwargs["model"] = FloorModel()
            else:
                kwargs["model"] = ShippedModel()
        #: with ``platt``: the verified candidates' (logit of the model's estimate,
        #: wrong, weight), and the recalibration fitted on them
        self.platt = "platt" in parts
        self.calibration_rows: list[tuple[float, float, float]] = []
        self.calibration: tuple[Any, Any] | None = None
        mode = 1 if "below-prior" in parts else 0
        kwargs.setdefault("table", PriorTable(mode, floor=kwargs.get("floor", 0.5)))
        super().__init__(budget, **kwargs)
        self.prior_loss = [0.0] * len(PRIORS)
        self._scoring = True
        #: with ``window-slack``: per recent get (as the window's risks), the risk of
        #: the answer served, 0 where none was
        self.window_slack: deque[float] | None = None
        if "window-slack" in parts:
            self.window_slack = deque(maxlen=kwargs.get("window", 4096))
        #: with ``upper-correction``: where the verified candidates' test finds the
        #: estimates too low, the correction is the count's upper bound over the
        #: prediction (the build before), not with one wrong answer added to each
        self.upper_correction = "upper-correction" in parts
        #: with ``range-check``: the LLM calls' outcomes by the band of the model's
        #: estimate, which the model must pass in the range it would serve from
        self.tested: RangeCheck | None = RangeCheck() if "range-check" in parts else None
        for part, bands in BANDS.items():  # (the first named)
            if part in parts:
                self.bands = bands()
                break
        #: with ``table-untested``: in a band not tested the table's estimate is the
        #: least the model's stands for
        self.table_untested = "table-untested" in parts
        #: with ``band-upper``: the model's upper bound is raised by its band's upper
        #: factor (the wrong answers found there, at their Poisson upper bound), not by
        #: the estimate's
        self.band_upper = "band-upper" in parts

    @property
    def correction(self) -> float:
        """As shipped; with ``upper-correction``, where the count is significantly
        above the prediction, ``upper / predicted`` (the build before) instead of
        ``(upper + 1) / (predicted + 1)`` (one verified wrong answer where 0.04 were
        predicted: 112, not 5.3)."""
        shipped = super().correction
        m = self.predicted
        if not self.upper_correction or shipped <= 1.0 or m <= 0.0:
            return shipped
        return (shipped * (m + 1.0) - 1.0) / m

    def _slack(self, window: float) -> float:
        """As shipped; with ``window-slack`` what the answers served in the window left
        of the ``window``'s allowance, not what every answer served so far left of the
        allowance so far (:attr:`ErrorBudget.room`; the build before)."""
        if self.window_slack is None:
            return super()._slack(window)
        return window - sum(self.window_slack)

    @property
    def modelled(self) -> bool:
        """As shipped; with ``untested``, as soon as the model is fitted; with
        ``own-testable`` once its own estimates of the verified candidates reach
        :data:`OWN_TESTABLE`; with ``range-check`` only where it passes the test of the
        range the level serves from (:class:`RangeCheck`)."""
        fitted = self.model is not None and self.model.fit is not None
        if self.untested:
            gate = fitted
        elif self.own_testable:
            gate = fitted and self.model_predicted >= OWN_TESTABLE
        else:
            gate = super().modelled
        return gate and (self.tested is None or self.tested.passes(self.level))

    @property
    def inspect(self) -> Callable[[str, Sequence[Hit], int | None], None] | None:
        """The research replay's ``inspect`` hook this variant needs (None: none)."""
        return None if self.research is None else self.research.inspect

    def decide(
        self,
        ev: Agreement | None,
        record: EntryRecord | None = None,
        features: Sequence[float] | None = None,
    ) -> Decision:
        """As shipped before the model (the table's estimate); with ``model-risk`` the
        get's features are taken first."""
        if self.research is not None:
            self.research.take(ev, record, self)
        decision = super().decide(ev, record, features)
        if self.window_slack is not None:
            self.window_slack.append(decision.risk if decision.action == "serve" else 0.0)
        return decision

    def risk(
        self,
        ev: Agreement,
        record: EntryRecord | None = None,
        features: Sequence[float] | None = None,
    ) -> tuple[float, float]:
        """The table's (as shipped before the model); with ``model-risk``, the research
        model's once it is fitted."""
        self.from_model = False
        if self.research is not None:
            estimate = self.research.estimate()
            if self.when_testable and self.predicted < TESTABLE:
                estimate = None
            if estimate is not None and self.axis_table is not None:
                return self.axis_table.risk(ALONE, model_axis(estimate[0]))
            if estimate is not None:
                self.from_model = True
                return estimate
        if self.table_untested and features is not None and self.modelled:
            assert self.model is not None
            est = self.model.estimate(features)
            if est is not None and self.bands.predicted[self.bands.band(est[0])] < TESTED:
                mean, upper = super().risk(ev, record, features)
                table = self.table_risk(ev, record)
                return max(mean, table[0]), max(upper, table[1])
        if self.band_upper and features is not None and self.modelled:
            assert self.model is not None
            est = self.model.estimate(features)
            if est is not None:
                bands = self.bands
                b = bands.band(est[0])
                w, z = bands.wrong[b], semcache._budget_policy.Z_UPPER
                high = poisson_bounds(w, z)[1]
                up = max(1.0, (high + 1.0) / (bands.predicted[b] + 1.0))
                mean = min(1.0, est[0] * bands.factor(est[0]))
                return mean, max(mean, min(1.0, est[1] * up))
        if self.calibration is not None and features is not None and self.modelled:
            assert self.model is not None
            raw = self.model.estimate(features)
            if raw is not None:
                return self._calibrated(raw[0])
        self.from_model = features is not None and self.modelled
        return super().risk(ev, record, features)

    def _calibrated(self, p: float) -> tuple[float, float]:
        """``platt``: the model's estimate ``p`` through the recalibration, and the
        upper bound of its logit (Laplace, as the model's)."""
        assert self.calibration is not None
        w, cov = self.calibration
        a = np.array([_logit(p), 1.0])
        z = float(a @ w)
        sd = math.sqrt(max(float(a @ cov @ a), 0.0))
        return _sigmoid(z), _sigmoid(z + semcache._budget_policy.Z_UPPER * sd)

    def _learn_calibration(
        self, decision: Decision | None, features: Sequence[float] | None, correct: bool
    ) -> None:
        """``platt``: a verified candidate the model decided on joins the rows (weighed
        1 / its verification probability); refit every 25 rows once 10 were wrong,
        the weights scaled to the rows' effective number (Kish's), so that the
        bound does not count a row drawn at 1% as 100 observations."""
        if decision is None or decision.action != "verify" or features is None:
            return
        if not self.modelled or self.model is None:
            return
        raw = self.model.estimate(features)
        if raw is None:
            return
        self.calibration_rows.append(
            (_logit(raw[0]), 0.0 if correct else 1.0, 1.0 / decision.share)
        )
        rows = self.calibration_rows
        if sum(y for _, y, _ in rows) < 10 or len(rows) % 25:
            return
        weights = np.array([c for _, _, c in rows])
        weights *= weights.sum() / float(weights @ weights)  # sum = Kish's n
        x = np.array([[z] for z, _, _ in rows])
        y = np.array([y for _, y, _ in rows])
        self.calibration = fit_logistic(x, y, l2=1e-6, weights=weights)

    @property
    def entry_prior(self) -> float:
        """The table's weight against an entry's observations now (what
        :meth:`ErrorBudget.risk` weighs the record with): with ``fixed-weight``,
        ``ENTRY_PRIOR`` (read when asked, so that ``--entry-prior`` sets it)."""
        if self.fixed_weight:
            return semcache._budget_policy.ENTRY_PRIOR
        return super().entry_prior

    @property
    def target(self) -> float:
        """With ``normal-spare``: the normal approximation's target; else the shipped."""
        if not self.normal_spare:
            return super().target
        sd = semcache._budget_policy.SPARE_SD
        expected = self.budget * self.gets
        if expected <= sd * sd:
            return 0.0
        return self.budget * (1.0 - sd / math.sqrt(expected))

    def _doubt(self, mean: float, upper: float, level: float) -> float:
        """With ``posterior-verify``: P(risk > level) under a normal of the estimate."""
        if self.model_posterior_verify and self.from_model:
            # the model's bound is the logit's normal quantile: read its posterior
            sd = (_logit(upper) - _logit(mean)) / semcache._budget_policy.Z_UPPER
            if sd <= 0.0:
                return 0.0
            return 0.5 * math.erfc((_logit(level) - _logit(mean)) / (sd * math.sqrt(2.0)))
        if not self.posterior_verify:
            return super()._doubt(mean, upper, level)
        sd = (upper - mean) / semcache._budget_policy.Z_UPPER
        return 0.5 * math.erfc((level - mean) / (sd * math.sqrt(2.0)))

    def weight_losses(
        self, ev: Agreement, record: EntryRecord | None, correct: bool
    ) -> list[float] | None:
        """As shipped; with ``learnt-weight-verified`` only on a verified candidate."""
        if not self._scoring:
            return None
        return super().weight_losses(ev, record, correct)

    def observe(
        self,
        ev: Agreement,
        record: EntryRecord | None,
        correct: bool,
        decision: Decision | None = None,
        features: Sequence[float] | None = None,
    ) -> None:
        """Score each candidate prior on this outcome, then learn it (and the model
        with ``model-risk``)."""
        if self.research is not None:
            fitted_at = self.research.fitted_at
            estimate = self.research.estimate()
            if self.axis_table is not None and estimate is not None:
                self.axis_table.add(ALONE, model_axis(estimate[0]), correct)
            weight = 1.0
            if self.inverse_weights and decision is not None and decision.action == "verify":
                weight = 1.0 / decision.share
            self.research.learn(correct, weight)
            if self.axis_table is not None and self.research.fitted_at != fitted_at:
                self.axis_table = RiskTable(floor=0.5)
                for p, y in zip(self.research.probabilities(), self.research.ys, strict=True):
                    self.axis_table.add(ALONE, model_axis(float(p)), y == 0.0)
        verified = decision is not None and decision.action == "verify"
        if ev.similarity >= self.floor:
            table = self.table
            assert isinstance(table, PriorTable)
            if self.learn_prior and (verified or not self.prior_from_verified):
                for i in range(len(PRIORS)):
                    p = table.risk_with(ev.evidence, ev.similarity, i)[0]
                    self.prior_loss[i] += _log_loss(p, correct)
                table.mode = min(range(len(PRIORS)), key=self.prior_loss.__getitem__)
        self._scoring = verified or not self.weight_from_verified
        # with record-free-table, where the entry's record spoke the record learns the
        # outcome and the table does not
        told = record is not None and sum(record.evidence(ev.similarity)) > 0
        table = self.table
        assert isinstance(table, PriorTable)
        table.frozen = self.record_free_table and told
        if self.platt:
            self._learn_calibration(decision, features, correct)
        if (
            verified
            and features is not None
            and self.model is not None
            and ev.similarity >= self.floor
        ):
            estimate = self.model.estimate(features)  # (before it learns this outcome)
            self.model_predicted += 0.0 if estimate is None else estimate[0]
        if (
            self.tested is not None
            and features is not None
            and self.model is not None
            and ev.similarity >= self.floor
        ):
            estimate = self.model.estimate(features)  # (before it learns this outcome)
            if estimate is not None:
                self.tested.add(estimate[0], correct)
        try:
            super().observe(ev, record, correct, decision, features)
        finally:
            self._scoring = True
            table.frozen = False
