"""An error budget the cache keeps: serve, verify or miss, learnt online.

In the spirit of vCache (ICLR 2026: per-entry decision thresholds learnt online from
observations of (similarity, was the cached answer correct)); written from the idea,
not from its code. The pieces, each small and testable on its own:

- :class:`RiskTable`: the estimated probability that serving a candidate is wrong, as
  a function of its similarity, one curve per evidence class of
  :func:`~semcache._agreement.agreement` (alone, split, mixed, unanimous).
  Counts per similarity bin; the estimate is the pooled-adjacent-violators fit
  (risk does not rise with similarity) shrunk towards 1/2 by one pseudo-observation,
  with an upper bound: the lowest Wilson bound of the bin's block or of the bin
  pooled with the bins below it (each such pool is at least as risky as the bin).
- :class:`EntryRecord`: what one entry has been observed to do (the similarities at
  which its answer was right or wrong), at most :data:`MAX_OBSERVATIONS`, newest
  kept. A wrong answer at similarity s is evidence against serving it at s or below; a
  right answer at s is evidence for serving it at s or above. It is meant to be
  persisted with the entry (:meth:`EntryRecord.to_json`).
- :class:`ErrorBudget`: the policy. For each get it estimates the candidate's risk
  (table and record combined), and serves when that risk is below a level chosen
  from the budget itself: the largest level such that serving every recent get whose
  risk is at or below it would, by the estimates, have cost at most ``budget`` wrong
  answers per get. Where the estimate is uncertain (its upper bound above the
  level) it sometimes verifies instead: calls the LLM anyway, serves the fresh answer,
  and records whether the stored one was right. A small share of confident hits is
  verified too, so a drifting curve is noticed. Every LLM call of a miss is an
  observation as well (the fresh answer is compared with the rejected candidate), so
  the risky region is learnt at no extra cost. The verified candidates check the
  estimates (their wrong answers against the risks predicted for them; the level is
  scaled when a two-sided test rejects them), and the allowance the answers served so
  far left unspent (the allowance of every get so far, less the served answers'
  estimated risks: :attr:`ErrorBudget.room`) is added to the window's (at most
  doubling it). Where the risk model decides, its estimates are raised in the bands
  where the LLM calls' candidates were wrong more often than it said (to the count's
  upper bound where significantly more), lowered where the verified candidates were
  wrong significantly less often, and below the lowest band those calls tested raised
  to that band's lowest estimate (:mod:`semcache._model_bands`).

What it guarantees, and under which assumptions, is in docs/quality.md ("An error
budget the cache keeps"): the wrong answers per get stay within the budget in
expectation when the estimates are calibrated, i.e. when the observations within an
evidence class and similarity bin are exchangeable with the gets that follow.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ._agreement import EVIDENCE_CLASSES, Agreement
from ._model_bands import ModelBands, poisson_bounds
from ._risk_model import TESTABLE, RiskModel

__all__ = [
    "ENTRY_PRIORS",
    "MAX_OBSERVATIONS",
    "Decision",
    "EntryRecord",
    "ErrorBudget",
    "RiskTable",
]

#: Observations an :class:`EntryRecord` keeps (the newest).
MAX_OBSERVATIONS = 16
#: The decimals of a similarity an :class:`EntryRecord` keeps: its JSON stays short,
#: and a record read back is the record written.
_DECIMALS = 6
#: How many observations of its own the table's estimate counts as, for one entry,
#: until the namespace's LLM calls have chosen among :data:`ENTRY_PRIORS` (and on a
#: tie): the weight :attr:`ErrorBudget.entry_prior` starts at.
ENTRY_PRIOR = 4.0
#: The weights of the table's estimate against an entry's own observations that the
#: budget chooses among, by the log-loss of the LLM calls' outcomes (each scored before
#: it is learnt): the record's weight is learnt, not fixed (docs/quality.md, "The
#: record's weight, learnt"). Fixed at 4 until this version, it moved the estimates about
#: three times too far, and at 0.001 took 2 of 23 streams over.
ENTRY_PRIORS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
#: The one-sided normal quantile of the upper bound (95%).
Z_UPPER = 1.645
#: The two-sided normal quantile of the correction's test (90%: 5% each side).
Z_CORRECTION = 1.645
#: The highest risk ever served: an answer more likely wrong than right is not, however
#: much of the budget is left.
MAX_LEVEL = 0.5
#: The spare kept on the count of wrong answers (:attr:`ErrorBudget.target`), as the
#: standard deviations of a normal whose tail it leaves: two, so that a calibrated
#: estimate leaves a stream's measured rate within the budget about 39 times in 40
#: (with one, about 7 times in 8: docs/quality.md, "The spare: two standard
#: deviations"). The tail is the Poisson count's own, not its normal approximation.
SPARE_SD = 2.0
#: How far the served answers' estimated risks may sum from the truth, relative to the
#: sum (one standard deviation), kept spare besides the Poisson count's own spread. The
#: estimates that choose what is served are those least likely to be too high (the
#: cheapest risks are served first), so over a long stream their sum errs low: on the
#: protocol's stream with ten verification draws, the served answers' wrong count
#: ran 0.97-1.38 times their estimates' sum, and a spare of the count's Poisson spread
#: alone let four of ten draws over at 0.01 (docs/quality.md, "The spare on the
#: estimates"). It matters where the count is large: at 237 wrong answers allowed the
#: aim is 177.5 (208.2 with the Poisson spread alone); at 23.7, 14.3 (15.2).
ESTIMATE_SPREAD = 0.15

Action = Literal["serve", "verify", "miss"]


def _log_loss(p: float, correct: bool) -> float:
    """The log-loss of the estimate ``p`` (that the answer is wrong) on one outcome."""
    p = min(max(p, 1e-6), 1.0 - 1e-6)
    return -math.log(1.0 - p if correct else p)


def spare_mean(allowed: float, sd: float, spread: float | None = None) -> float:
    """The most wrong answers the served answers' estimated risks may sum to and the
    count still exceed ``allowed`` no more often than a normal exceeds ``sd`` standard
    deviations (2.3% for 2), where that sum may itself err by ``spread`` of it (one
    standard deviation; default :data:`ESTIMATE_SPREAD`).

    The Poisson count's own tail (:func:`poisson_spare`), scaled by what the estimates'
    error takes from a normal's: ``normal(spread) / normal(0)``, where ``normal(c)`` is
    the ``mu`` with ``mu + sd * sqrt(mu + (c * mu) ** 2) = allowed``. Where the count is
    small its own spread dominates and the scale is near 1 (23.7 allowed: 14.3 of the
    Poisson's 15.2); where it is large the estimates' does (237: 177.5 of 208.2).
    """
    mu = poisson_spare(allowed, sd)
    c = ESTIMATE_SPREAD if spread is None else spread
    plain = _normal_spare(allowed, sd, 0.0)
    if c <= 0.0 or plain <= 0.0:
        return mu
    return mu * _normal_spare(allowed, sd, c) / plain


def _normal_spare(allowed: float, sd: float, c: float) -> float:
    """The ``mu`` with ``mu + sd * sqrt(mu + (c * mu) ** 2) = allowed`` (0 where none
    is): the smaller root of ``(1 - sd^2 c^2) mu^2 - (2 allowed + sd^2) mu + allowed^2``."""
    z2 = sd * sd
    a = 1.0 - z2 * c * c
    if a <= 0.0 or allowed <= 0.0:
        return 0.0  # (an error that wide leaves nothing to spend)
    b = 2.0 * allowed + z2
    return max(0.0, (b - math.sqrt(max(0.0, b * b - 4.0 * a * allowed * allowed))) / (2.0 * a))


def poisson_spare(allowed: float, sd: float) -> float:
    """The most wrong answers a Poisson count may expect and still exceed ``allowed``
    (``floor`` of it: the count is whole) no more often than a normal exceeds ``sd``
    standard deviations (2.3% for 2).

    ``P(Poisson(mu) <= k) = P(Gamma(k + 1) > mu)``, so ``mu`` is the lower quantile of
    a Gamma(k + 1), here by Wilson and Hilferty's approximation: below the exact
    quantile at every k (the tail it leaves is at most the aim), by 8% of it at k = 1,
    3% at 2, under 1% from 4 on (against a bisection of the exact Poisson sum).
    The normal approximation of the count (``allowed - sd * sqrt(allowed)``) is 0 up
    to ``sd`` squared where the count's own tail already allows some (1.57 of 4), and
    keeps more spare than it says at any count (0.9% tail, not 2.3%, at 23.7).
    """
    if allowed < 0.0:
        return 0.0
    a = math.floor(allowed) + 1.0
    return a * max(0.0, 1.0 - 1.0 / (9.0 * a) - sd / (3.0 * math.sqrt(a))) ** 3


def _wilson_upper(wrong: float, n: float, z: float = Z_UPPER) -> float:
    """The Wilson score upper bound of a proportion (1 with no observation)."""
    if n <= 0:
        return 1.0
    p = wrong / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(max(0.0, p * (1 - p) / n + z2 / (4 * n * n)))
    return min(1.0, (centre + spread) / (1 + z2 / n))


def _pav_nonincreasing(
    rates: Sequence[float], weights: Sequence[float]
) -> tuple[list[float], list[float]]:
    """Pool adjacent violators: the weighted least-squares nonincreasing fit of
    ``rates``; per position, the fitted rate and the total weight of its block.
    Positions of weight 0 take the block below them (the higher risk), or the first
    block when none is below."""
    blocks: list[list[float]] = []  # [rate, weight, first, last]
    for i, (r, w) in enumerate(zip(rates, weights, strict=True)):
        if w <= 0:
            continue
        blocks.append([r, w, i, i])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            r2, w2, _, last = blocks.pop()
            b = blocks[-1]
            b[0] = (b[0] * b[1] + r2 * w2) / (b[1] + w2)
            b[1] += w2
            b[3] = last
    n = len(rates)
    fit = [math.nan] * n
    mass = [0.0] * n
    for k, (r, w, first, _) in enumerate(blocks):
        lo = 0 if k == 0 else int(first)
        hi = n - 1 if k == len(blocks) - 1 else int(blocks[k + 1][2]) - 1
        for i in range(lo, hi + 1):
            fit[i], mass[i] = r, w
    return fit, mass


class RiskTable:
    """The probability that serving a candidate is wrong, per evidence class and
    similarity bin, learnt from observations.

    Args:
        floor: the lowest similarity considered (lower ones share the first bin).
        width: the width of a similarity bin.

    Raises:
        ValueError: ``floor`` not in [-1, 1) or ``width`` not in (0, 1].
    """

    def __init__(self, *, floor: float = 0.5, width: float = 0.02) -> None:
        if not -1.0 <= floor < 1.0:
            raise ValueError(f"floor must be in [-1, 1), got {floor}")
        if not 0.0 < width <= 1.0:
            raise ValueError(f"width must be in (0, 1], got {width}")
        self.floor = floor
        self.width = width
        self.bins = max(1, math.ceil((1.0 - floor) / width - 1e-9))
        classes = len(EVIDENCE_CLASSES)
        self.n = [[0.0] * self.bins for _ in range(classes)]
        self.wrong = [[0.0] * self.bins for _ in range(classes)]
        self._fit: list[tuple[list[float], list[float]] | None] = [None] * classes
        self._bounds: list[dict[int, float]] = [{} for _ in range(classes)]

    def bin(self, similarity: float) -> int:
        """The bin of a similarity."""
        b = int((similarity - self.floor) / self.width)
        return min(self.bins - 1, max(0, b))

    def add(self, evidence: int, similarity: float, correct: bool, weight: float = 1.0) -> None:
        """Record one observation."""
        b = self.bin(similarity)
        self.n[evidence][b] += weight
        if not correct:
            self.wrong[evidence][b] += weight
        self._fit[evidence] = None
        self._bounds[evidence] = {}

    def risk(self, evidence: int, similarity: float) -> tuple[float, float]:
        """The estimated risk of serving at ``similarity`` in ``evidence`` and its
        upper bound: (mean, upper)."""
        fit = self._fit[evidence]
        if fit is None:
            counts, bad = self.n[evidence], self.wrong[evidence]
            rates = [w / c if c > 0 else 0.0 for w, c in zip(bad, counts, strict=True)]
            fit = self._fit[evidence] = _pav_nonincreasing(rates, counts)
        b = self.bin(similarity)
        rate, mass = fit[0][b], fit[1][b]
        if math.isnan(rate):
            return 0.5, 1.0
        wrong = rate * mass
        mean = (wrong + self._prior(fit[0], b)) / (mass + 1.0)
        upper = min(_wilson_upper(wrong, mass), self._pooled_bound(evidence, b))
        return mean, max(mean, upper)

    def _prior(self, fit: Sequence[float], b: int) -> float:
        """The risk of bin ``b``'s one pseudo-observation, given the fitted rates
        ``fit``: 1/2, no data meaning "as likely wrong as right" (a hook for the
        variants measured in ``benchmarks/budget_variants.py``)."""
        return 0.5

    def _pooled_bound(self, evidence: int, b: int) -> float:
        """The lowest Wilson upper bound of the observations of bins ``b0..b`` pooled,
        over ``b0 <= b``: risk does not rise with similarity, so each such pool's rate is
        at least bin ``b``'s, and its bound bounds bin ``b``'s risk. A bin the cache
        serves from learns only through verification; this lends it the weight of the
        bins below it (which every miss teaches) without lending it their lower risk."""
        cached = self._bounds[evidence].get(b)
        if cached is not None:
            return cached
        counts, bad = self.n[evidence], self.wrong[evidence]
        best = 1.0
        wrong = n = 0.0
        for i in range(b, -1, -1):
            wrong += bad[i]
            n += counts[i]
            if n > 0:
                best = min(best, _wilson_upper(wrong, n))
        self._bounds[evidence][b] = best
        return best

    def to_json(self) -> dict[str, Any]:
        """The counts, JSON-ready."""
        return {"floor": self.floor, "width": self.width, "n": self.n, "wrong": self.wrong}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RiskTable:
        """The table :meth:`to_json` wrote.

        Raises:
            ValueError: malformed data.
        """
        try:
            table = cls(floor=float(data["floor"]), width=float(data["width"]))
            n = [[float(x) for x in row] for row in data["n"]]
            wrong = [[float(x) for x in row] for row in data["wrong"]]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a risk table: {exc}") from None
        shape = (len(EVIDENCE_CLASSES), table.bins)
        for rows in (n, wrong):
            if len(rows) != shape[0] or any(len(r) != shape[1] for r in rows):
                raise ValueError("a risk table of another shape")
        table.n, table.wrong = n, wrong
        return table


@dataclass
class EntryRecord:
    """What one stored entry has been observed to do: (similarity, was its answer
    right) pairs, the newest :data:`MAX_OBSERVATIONS` kept; and, with
    ``answer_similarity``, the embedding of its answer (``answer``: float16 unit
    vector, base64, made at put; None: not made yet)."""

    observations: list[tuple[float, bool]] = field(default_factory=list)
    answer: str | None = None

    def add(self, similarity: float, correct: bool) -> None:
        """Record one observation (dropping the oldest beyond the cap), its similarity to
        :data:`_DECIMALS` decimals."""
        self.observations.append((round(float(similarity), _DECIMALS), bool(correct)))
        if len(self.observations) > MAX_OBSERVATIONS:
            del self.observations[: len(self.observations) - MAX_OBSERVATIONS]

    def evidence(self, similarity: float) -> tuple[int, int]:
        """(wrong answers seen at ``similarity`` or above, right answers seen at it or
        below): the observations that speak about serving at ``similarity`` when risk
        does not rise with similarity."""
        at = round(similarity, _DECIMALS)  # to the decimals the observations keep
        wrong = sum(1 for s, c in self.observations if not c and s >= at)
        right = sum(1 for s, c in self.observations if c and s <= at)
        return wrong, right

    def to_json(self) -> list[list[float]] | dict[str, Any]:
        """JSON-ready: ``[[similarity, 1 or 0], ...]``; with an answer vector
        ``{"o": [[similarity, 1 or 0], ...], "a": "<base64>"}``."""
        obs = [[round(s, _DECIMALS), 1.0 if c else 0.0] for s, c in self.observations]
        return obs if self.answer is None else {"o": obs, "a": self.answer}

    @classmethod
    def from_json(cls, data: Any) -> EntryRecord:
        """The record :meth:`to_json` wrote (either form).

        Raises:
            ValueError: malformed data.
        """
        answer = None
        if isinstance(data, dict):
            answer = data.get("a")
            if answer is not None and not isinstance(answer, str):
                raise ValueError("not an entry record: its answer vector is not text")
            data = data.get("o", [])
        try:
            obs = [(float(s), bool(c)) for s, c in data]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not an entry record: {exc}") from None
        return cls(obs[-MAX_OBSERVATIONS:], answer)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a get's candidate.

    Attributes:
        action: ``"serve"`` the stored answer, ``"verify"`` (call the LLM, serve its
            answer, observe whether the stored one was right) or ``"miss"``.
        risk: the estimated probability that the stored answer is wrong (1 with no
            candidate).
        upper: its upper bound.
        level: the risk level the budget allowed at this get.
        share: the probability with which a servable candidate was verified (0 for a
            miss).
    """

    action: Action
    risk: float
    upper: float
    level: float
    share: float = 0.0


class ErrorBudget:
    """The serve / verify / miss policy that keeps wrong answers per get within
    ``budget``.

    Args:
        budget: the wrong answers per get allowed (0 < budget < 1).
        floor: the lowest similarity a candidate is considered at.
        width: the similarity bins' width.
        window: how many recent gets the serving level is chosen from.
        refresh: recompute the serving level every this many gets.
        verify_share: the share of confident hits verified anyway (None: the budget,
            at least 0.5%, at most 5%).
        seed: the random draws of verification.
        table: learnt counts to start from (:meth:`RiskTable.from_json`).
        model: a model of the candidates' risk from their features
            (:class:`~semcache._risk_model.RiskModel`), whose estimate replaces the
            table's once it is fitted and the verified candidates' predicted wrong
            answers reach :data:`~semcache._risk_model.TESTABLE`, for a get whose
            features are given (:meth:`decide`), raised where its band's LLM calls
            were wrong more often (:attr:`bands`); None: the table's always.

    Raises:
        ValueError: a setting out of range.
    """

    def __init__(
        self,
        budget: float,
        *,
        floor: float = 0.5,
        width: float = 0.02,
        window: int = 4096,
        refresh: int = 32,
        verify_share: float | None = None,
        seed: int = 0,
        table: RiskTable | None = None,
        model: RiskModel | None = None,
    ) -> None:
        if not 0.0 < budget < 1.0:
            raise ValueError(f"budget must be in (0, 1), got {budget}")
        if window < 1 or refresh < 1:
            raise ValueError("window and refresh must be >= 1")
        if verify_share is None:
            verify_share = min(0.05, max(0.005, budget))
        if not 0.0 <= verify_share <= 1.0:
            raise ValueError(f"verify_share must be in [0, 1], got {verify_share}")
        self.budget = budget
        self.floor = floor
        self.table = table if table is not None else RiskTable(floor=floor, width=width)
        self.verify_share = verify_share
        self._risks: deque[float] = deque(maxlen=window)
        self._refresh = refresh
        self._since = refresh
        self._level = 0.0
        self._rng = random.Random(seed)
        self.gets = 0
        self.verifications = 0
        self.observations = 0
        #: the wrong answers the estimates predicted for the verified candidates (the
        #: sum of their risks, added when :meth:`decide` verifies)
        self.predicted = 0.0
        #: the same, measured: how many of the verified candidates were wrong (added
        #: when :meth:`observe` learns the answer)
        self.measured = 0.0
        self._weight_loss = [0.0] * len(ENTRY_PRIORS)
        self._weight: float | None = None  # entry_prior, until the losses change
        self.model = model
        #: the sum of the estimated risks of the answers served in the ledger's gets
        #: (:attr:`spent_gets`): what their allowance was spent on (:attr:`room`)
        self.spent = 0.0
        #: the gets counted since the ledger began: :attr:`gets`, for a budget that
        #: kept it from its first get (a namespace older than the ledger starts it at 0)
        self.spent_gets = 0
        #: the LLM calls' outcomes by the band of the model's estimate, which raise its
        #: estimates where they were too low
        self.bands = ModelBands()

    @property
    def level(self) -> float:
        """The risk level serving is allowed at now."""
        return self._level

    @property
    def correction(self) -> float:
        """How far the estimates are off, by the verified candidates: the estimates
        are scaled by it when the level is chosen.

        A verification is drawn at random given the estimate, so the verified
        candidates' wrong answers (:attr:`measured`, a count) have the sum of their
        estimated risks (:attr:`predicted`) as expectation when the estimates are
        calibrated: no weights are needed, unlike an estimate of every served
        answer's errors from a 1% sample. The correction is 1 until a two-sided test
        (a Poisson count, :data:`Z_CORRECTION`) rejects that expectation; then it is
        the count's upper confidence bound over the prediction, so that it is below 1
        (the estimates too high: the level rises) only when even that bound is below
        the prediction. When the count is significantly higher it is above 1: that
        bound and the prediction, each with one wrong answer more, so that a count of
        1 where 0.04 were predicted scales the estimates by 5.3, not by the 100 that
        a ratio of so few wrong answers would give (docs/quality.md, "The correction
        of a small prediction").
        """
        m, w = self.predicted, self.measured
        if m <= 0.0:
            return 1.0
        lower, upper = poisson_bounds(w, Z_CORRECTION)
        if upper < m:
            return upper / m
        if lower > m:
            return (upper + 1.0) / (m + 1.0)
        return 1.0

    @property
    def target(self) -> float:
        """The wrong answers per get the level aims at: the most a Poisson count of
        them may expect over the gets so far and still exceed the ``budget * gets``
        allowed no more often than a normal exceeds :data:`SPARE_SD` standard
        deviations (:func:`spare_mean`), per get; so that chance seldom leaves the
        measured rate above the budget. 0 before the first get."""
        if self.gets <= 0:
            return 0.0
        return spare_mean(self.budget * self.gets, SPARE_SD) / self.gets

    @property
    def room(self) -> float:
        """What the answers served so far left of the allowance so far: the wrong
        answers a Poisson count may expect over the ledger's gets (:attr:`spent_gets`,
        as :attr:`target` counts them), less the sum of the served answers' estimated
        risks (:attr:`spent`); negative where they spent more. A verified or missed
        candidate serves no stored answer and a get without one cannot be wrong, yet
        the allowance counts every get: this is what they left. 0 before the ledger's
        first get."""
        if self.spent_gets <= 0:
            return 0.0
        return spare_mean(self.budget * self.spent_gets, SPARE_SD) - self.spent

    def _update_level(self) -> None:
        # the window's allowance, plus what every answer served so far left of the
        # allowance so far (the promise is on the count over every get, not over the
        # window's: docs/quality.md, "The allowance left, carried"): at most one
        # window's allowance more, less when the answers served spent more than it
        window = self.target * len(self._risks)
        allowed = max(0.0, window + self._slack(window)) / self.correction
        total = 0.0
        level = 0.0
        for r in sorted(self._risks):
            if total + r > allowed:
                break
            total += r
            level = r
        self._level = min(level, MAX_LEVEL)

    def _slack(self, window: float) -> float:
        """What is added to the ``window``'s allowance: what every answer served so far
        left of the allowance so far (:attr:`room`), at most the window's own."""
        return min(window, self.room)

    @property
    def weight_loss(self) -> list[float]:
        """Per weight of :data:`ENTRY_PRIORS`: the log-loss its estimates gave the LLM
        calls' outcomes so far (those whose entry's record said something at the
        similarity); the lowest chooses :attr:`entry_prior`. Change it by assigning a
        new list or through :meth:`learn_weight`."""
        return self._weight_loss

    @weight_loss.setter
    def weight_loss(self, losses: Sequence[float]) -> None:
        self._weight_loss = [float(x) for x in losses]
        self._weight = None

    @property
    def entry_prior(self) -> float:
        """How many of an entry's own observations the table's estimate counts as now:
        the weight of :data:`ENTRY_PRIORS` whose estimates gave the LLM calls' outcomes
        the lowest log-loss (:attr:`weight_loss`); :data:`ENTRY_PRIOR` before any, and
        the nearest to it on a tie. Chosen again only when the losses change (it is
        read at every estimate)."""
        if self._weight is None:
            loss = self._weight_loss
            best = min(
                range(len(ENTRY_PRIORS)),
                key=lambda i: (loss[i], abs(math.log(ENTRY_PRIORS[i] / ENTRY_PRIOR))),
            )
            self._weight = ENTRY_PRIORS[best]
        return self._weight

    def weight_losses(
        self, ev: Agreement, record: EntryRecord | None, correct: bool
    ) -> list[float] | None:
        """What one LLM call's outcome adds to :attr:`weight_loss`, per weight: the
        log-loss of the estimate each weight gives the candidate ``ev`` describes (the
        table's, before it learns this outcome, moved by ``record``); None where the
        record says nothing at the similarity (every weight gives the table's
        estimate) or the candidate is below the floor. Nothing is added here."""
        if record is None or ev.similarity < self.floor:
            return None
        wrong, right = record.evidence(ev.similarity)
        if wrong + right == 0:
            return None
        mean = self.table.risk(ev.evidence, ev.similarity)[0]
        return [_log_loss((k * mean + wrong) / (k + wrong + right), correct) for k in ENTRY_PRIORS]

    def learn_weight(self, losses: Sequence[float] | None) -> None:
        """Add :meth:`weight_losses`' result to :attr:`weight_loss`."""
        if losses is not None:
            for i, x in enumerate(losses):
                self._weight_loss[i] += x
            self._weight = None

    @property
    def modelled(self) -> bool:
        """Whether the model's estimate decides now (for a get with features): it is
        fitted, and the verified candidates' predicted wrong answers reached
        :data:`~semcache._risk_model.TESTABLE`, so that the correction can catch it."""
        return self.model is not None and self.model.fit is not None and self.predicted >= TESTABLE

    def risk(
        self,
        ev: Agreement,
        record: EntryRecord | None = None,
        features: Sequence[float] | None = None,
    ) -> tuple[float, float]:
        """The estimated risk of serving the candidate ``ev`` describes, and its upper
        bound: the model's for ``features`` when it decides (:attr:`modelled`), each
        multiplied by its band's factor (:meth:`ModelBands.factor
        <semcache._model_bands.ModelBands.factor>`), at least the floor below the
        lowest band tested (:meth:`ModelBands.floor
        <semcache._model_bands.ModelBands.floor>`; the bound at least the estimate) and
        at most 1; else :meth:`table_risk`'s."""
        if features is not None and self.modelled:
            assert self.model is not None
            estimate = self.model.estimate(features)
            if estimate is not None:
                f = self.bands.factor(estimate[0])
                least = self.bands.floor(estimate[0])
                mean = min(1.0, max(estimate[0] * f, least))
                return mean, min(1.0, max(estimate[1] * f, mean))
        return self.table_risk(ev, record)

    def table_risks(self, ev: Agreement, record: EntryRecord | None) -> tuple[float, float]:
        """The table's estimated risk of the candidate ``ev`` describes, alone and moved
        by ``record``: ``table_risk(ev)[0]`` and ``table_risk(ev, record)[0]`` (the
        table read once)."""
        mean = self.table.risk(ev.evidence, ev.similarity)[0]
        return mean, self._moved(ev, record, mean)[0]

    def table_risk(self, ev: Agreement, record: EntryRecord | None = None) -> tuple[float, float]:
        """The table's estimated risk of serving the candidate ``ev`` describes, and its
        upper bound: the table's curve, updated by the entry's own observations (the
        table counting as :attr:`entry_prior` of them)."""
        mean, upper = self._moved(ev, record, *self.table.risk(ev.evidence, ev.similarity))
        return mean, upper

    def _moved(
        self, ev: Agreement, record: EntryRecord | None, *values: float
    ) -> tuple[float, ...]:
        """``values`` (the table's estimates) moved by the entry's observations that
        speak about ``ev``'s similarity, the table counting as :attr:`entry_prior` of
        them; as they are where the record says nothing there."""
        if record is None or not record.observations:
            return values
        wrong, right = record.evidence(ev.similarity)
        if wrong + right == 0:
            return values
        k = self.entry_prior
        total = k + wrong + right
        return tuple((k * v + wrong) / total for v in values)

    def decide(
        self,
        ev: Agreement | None,
        record: EntryRecord | None = None,
        features: Sequence[float] | None = None,
    ) -> Decision:
        """What to do at this get: ``ev`` sums up its best candidate (None: no
        candidate at or above the floor), ``record`` is that entry's, ``features``
        its features for the model (:func:`~semcache._risk_model.features`; None:
        the table's estimate decides)."""
        self.gets += 1
        self.spent_gets += 1
        self._since += 1
        if self._since >= self._refresh:
            self._since = 0
            self._update_level()
        level = self._level
        if ev is None or ev.similarity < self.floor:
            self._risks.append(0.0)
            return Decision("miss", 1.0, 1.0, level)
        mean, upper = self.risk(ev, record, features)
        self._risks.append(mean)
        if mean > level:
            return Decision("miss", mean, upper, level)
        share = self.verify_share
        if upper > level:  # uncertain: verify in proportion to the doubt
            share = max(share, self._doubt(mean, upper, level))
        if self._rng.random() < share:
            self.verifications += 1
            self.predicted += mean
            return Decision("verify", mean, upper, level, share)
        self.spent += mean
        return Decision("serve", mean, upper, level, share)

    def _doubt(self, mean: float, upper: float, level: float) -> float:
        """The share of gets verified whose estimate ``mean`` is at or below the
        ``level`` and whose upper bound ``upper`` is above it: how far the bound
        reaches past the level, of its reach past the estimate."""
        return (upper - level) / (upper - mean)

    def observe(
        self,
        ev: Agreement,
        record: EntryRecord | None,
        correct: bool,
        decision: Decision | None = None,
        features: Sequence[float] | None = None,
    ) -> None:
        """Learn whether the candidate ``ev`` describes had the right answer (from a
        verification or from the LLM call of a miss); ``decision``: what :meth:`decide`
        said at that get (a verification also measures the budget's own accuracy).
        ``record`` (the candidate's entry's) is scored for the record's weight
        (:meth:`weight_losses`) before it learns the outcome too. ``features``: the
        candidate's, which the model learns with the outcome (refitted by whoever
        holds it, when :meth:`RiskModel.due <semcache._risk_model.RiskModel.due>`); once
        it is fitted, its estimate of them is counted in its band first (:attr:`bands`)."""
        if ev.similarity < self.floor:
            return
        if self.model is not None and features is not None:
            estimate = self.model.estimate(features)
            if estimate is not None:
                verified = decision is not None and decision.action == "verify"
                self.bands.add(estimate[0], correct, verified)
            self.model.learn(features, correct)
        if decision is not None and decision.action == "verify" and not correct:
            self.measured += 1.0
        self.learn_weight(self.weight_losses(ev, record, correct))
        self.observations += 1
        self.table.add(ev.evidence, ev.similarity, correct)
        if record is not None:
            record.add(ev.similarity, correct)

    def to_json(self) -> dict[str, Any]:
        """What the budget has learnt, JSON-ready, to persist per namespace beside the
        entries' records: the table, the correction's counts, the gets seen, the
        ledger (:attr:`room`) and the model's bands (:attr:`bands`; the window of
        recent risks is not kept: it refills)."""
        return {
            "budget": self.budget,
            "table": self.table.to_json(),
            "predicted": self.predicted,
            "measured": self.measured,
            "gets": self.gets,
            "weight_loss": list(self.weight_loss),
            "spent": self.spent,
            "spent_gets": self.spent_gets,
            "bands": self.bands.counts(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], **options: Any) -> ErrorBudget:
        """The budget :meth:`to_json` wrote; ``options`` as the constructor's.

        Raises:
            ValueError: malformed data.
        """
        try:
            table = RiskTable.from_json(data["table"])
            out = cls(float(data["budget"]), floor=table.floor, table=table, **options)
            out.predicted = float(data["predicted"])
            out.measured = float(data["measured"])
            out.gets = int(data["gets"])
            # (absent before the ledger: it starts now, with nothing carried)
            out.spent = float(data.get("spent", 0.0))
            out.spent_gets = int(data.get("spent_gets", 0))
            bands = data.get("bands", {})  # (absent before the bands were kept)
            if not isinstance(bands, dict):
                raise ValueError("bands is not a mapping of counters")
            out.bands = ModelBands.from_counts(lambda name: bands.get(name, 0.0))
            loss = data.get("weight_loss")  # (absent before the weight was learnt)
            if loss is not None:
                if len(loss) != len(ENTRY_PRIORS):
                    raise ValueError(f"weight_loss has {len(loss)} values, not {len(ENTRY_PRIORS)}")
                out.weight_loss = loss
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an error budget: {exc}") from None
        return out

    def feedback(self, record: EntryRecord, similarity: float, correct: bool) -> None:
        """An application's report on a hit it was served: only the entry learns (a
        report is not a random sample of hits, so the table does not)."""
        record.add(similarity, correct)
