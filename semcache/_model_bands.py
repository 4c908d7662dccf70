"""The risk model's estimates, checked by band against the LLM calls' outcomes.

The error budget's model (:mod:`semcache._risk_model`) is fitted on the LLM calls'
outcomes, most of them risky candidates, and its lowest estimates are an extrapolation:
on CLINC150 the candidates it rated below 0.001 were wrong 5 to 10 times as often as it
said (docs/quality.md, "The model's lowest estimates, raised by band"). At 0.01 its
estimates above 0.02, too high, made up for that in the sum the budget keeps; at 0.001
every answer it serves is in its lowest range, and a namespace that had seen about
three streams' traffic went over the budget once the model decided.

So every LLM call (a miss or a verification) whose candidate the fitted model
estimated, before it learnt the outcome, is counted in the band of that estimate
(:data:`EDGES`, two a decade): the wrong answers the estimates predicted there and the
wrong answers found. Where a band's count is higher, the model's estimates in it are
raised by ``(found + 1) / (predicted + 1)`` (:meth:`ModelBands.factor`): one wrong
answer predicted at the estimate joins both sides, the device the table's prior and
the budget's correction use, so that a band that has seen little moves little. Where
it is significantly higher (its Poisson lower bound, :data:`Z_BANDS`, above the
prediction), the found side is the count's upper bound, as the correction's is: the
point ratio left the tested bands 1.3 to 1.45 times low over five streams at 0.001,
and one such chain over the budget (docs/quality.md, "A band raised to its count's
upper bound").

A band whose count is lower is lowered only on the verified candidates' word: where
those counted in it (each a candidate the budget was about to serve, verified at
random given its estimate) were wrong significantly less often than predicted (a
Poisson count's upper bound, :data:`Z_BANDS`, below the prediction), its estimates
are lowered by the higher of the two ratios, every call's and theirs (one more on
each side of each); else they are kept. At 0.01 the model's estimates from 0.03 up
were too high, and the answers served there spent the allowance on that. A miss is
no evidence for lowering: it is a candidate the budget refused (while the table
decided, one the table rated riskier), and lowering a band on every call's count
served, in one stream, answers wrong 1.8 times as often as the lowered estimates
said, since once a band is served its own calls are few (docs/quality.md, "Bands
lowered on the verified candidates' word").

That factor is drawn towards 1 where a band has seen little, and once the model decides
its lowest bands see few LLM calls (the answers it serves there are verified at 0.5%
at 0.001): over five streams' traffic at 0.001 it still went over, its answers below
0.0001 wrong about 10 times as often as its raised estimates said. A band whose calls
predicted fewer than :data:`TESTED` wrong answers has not tested the model, and the
model is not trusted to rank below the lowest band that has: an estimate below it is
raised to that band's lowest estimate, raised by its factor (:meth:`ModelBands.floor`).
It still orders the candidates above the floor. The price, at 0.01, is about 0.03 of
hit rate (docs/quality.md, "Below the lowest band tested, a floor").

The counts are additive, named counters (:meth:`ModelBands.counts`), kept with the
budget's others in the store and shared by every process.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from typing import Final

__all__ = ["EDGES", "NAMES", "TESTED", "Z_BANDS", "ModelBands", "poisson_bounds"]

#: The upper edges of the estimate's bands (the last band runs to 1).
EDGES: Final = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3)
#: The counters' names: ``bands.p.<band>`` (wrong answers predicted) and
#: ``bands.w.<band>`` (found) over every LLM call, ``bands.vp.<band>`` and
#: ``bands.vw.<band>`` over the verifications alone.
NAMES: Final = tuple(
    f"bands.{k}.{b}" for k in ("p", "w", "vp", "vw") for b in range(len(EDGES) + 1)
)
#: The wrong answers a band's LLM calls must have predicted for it to count as tested:
#: below the lowest band tested, the model's estimates have a floor (:meth:`ModelBands.floor`).
TESTED: Final = 1.0
#: The standard normal quantile of the bands' tests: a band is raised to the Poisson
#: upper bound of the wrong answers its LLM calls found where their lower bound is above
#: the prediction, and lowered where its verified candidates' upper bound is below
#: theirs (as the budget's correction tests).
Z_BANDS: Final = 1.645


class ModelBands:
    """The LLM calls' outcomes by the band of the model's estimate of their candidate.

    Attributes:
        predicted: per band, the sum of the estimates counted.
        wrong: per band, how many of their stored answers were wrong.
        verified_predicted: per band, the sum of the verified candidates' estimates
            (counted in :attr:`predicted` as well).
        verified_wrong: per band, how many of those were wrong.
        pending: the changes since :meth:`drain` (by counter name).
    """

    #: the wrong answers a band's calls must predict to count as tested (:meth:`floor`)
    tested_at: float = TESTED

    def __init__(self) -> None:
        bands = len(EDGES) + 1
        self.predicted = [0.0] * bands
        self.wrong = [0.0] * bands
        self.verified_predicted = [0.0] * bands
        self.verified_wrong = [0.0] * bands
        self.pending: dict[str, float] = {}

    @staticmethod
    def band(estimate: float) -> int:
        """The band of an estimate."""
        return bisect_right(EDGES, estimate)

    def add(self, estimate: float, correct: bool, verified: bool = False) -> None:
        """Count one outcome: the model estimated ``estimate``; the stored answer was
        right or not; ``verified``: the call was a verification (the candidate was to
        be served), not a miss."""
        b = self.band(estimate)
        self.predicted[b] += estimate
        self._note(f"bands.p.{b}", estimate)
        if not correct:
            self.wrong[b] += 1.0
            self._note(f"bands.w.{b}", 1.0)
        if verified:
            self.verified_predicted[b] += estimate
            self._note(f"bands.vp.{b}", estimate)
            if not correct:
                self.verified_wrong[b] += 1.0
                self._note(f"bands.vw.{b}", 1.0)

    def _note(self, name: str, delta: float) -> None:
        self.pending[name] = self.pending.get(name, 0.0) + delta

    def factor(self, estimate: float) -> float:
        """What the model's estimates in ``estimate``'s band are multiplied by: where
        its LLM calls found significantly more wrong answers than predicted (the
        count's Poisson lower bound at :data:`Z_BANDS` above the prediction), the
        count's upper bound over the prediction, one more on each side; else the wrong
        answers found over those predicted, one more on each side, where that is at
        least 1. Where it is below 1 and the verified candidates' count is
        significantly below their prediction (its upper bound is), the higher of that
        ratio and theirs, likewise; else 1."""
        b = self.band(estimate)
        m, w = self.predicted[b], self.wrong[b]
        lower, upper = poisson_bounds(w, Z_BANDS)
        if lower > m:
            return (upper + 1.0) / (m + 1.0)
        ratio = (w + 1.0) / (m + 1.0)
        if ratio >= 1.0:
            return ratio
        m, w = self.verified_predicted[b], self.verified_wrong[b]
        if poisson_bounds(w, Z_BANDS)[1] < m:
            return max(ratio, (w + 1.0) / (m + 1.0))
        return 1.0

    def floor(self, estimate: float) -> float:
        """The least an estimate of ``estimate`` stands for: 0 in the lowest band whose
        LLM calls predicted :data:`TESTED` wrong answers, or above it, or where no band's
        did; below it, that band's lowest estimate (its lower edge) times its
        :meth:`factor`."""
        b = self.band(estimate)
        for t in range(len(self.predicted)):
            if self.predicted[t] >= self.tested_at:
                return 0.0 if b >= t else EDGES[t - 1] * self.factor(EDGES[t - 1])
        return 0.0

    def drain(self) -> dict[str, float]:
        """The changes since the last drain (by counter name), and none kept."""
        out, self.pending = self.pending, {}
        return out

    def counts(self) -> dict[str, float]:
        """Every counter by name (:data:`NAMES`: the predictions, then the wrong
        answers, then the verified candidates' of each, each band in order)."""
        values = [*self.predicted, *self.wrong, *self.verified_predicted, *self.verified_wrong]
        return dict(zip(NAMES, values, strict=True))

    @classmethod
    def from_counts(cls, count: Callable[[str], float]) -> ModelBands:
        """The bands whose counter of each name (:data:`NAMES`) is ``count(name)``."""
        out = cls()
        values = [float(count(name)) for name in NAMES]
        n = len(out.predicted)
        out.predicted, out.wrong = values[:n], values[n : 2 * n]
        out.verified_predicted, out.verified_wrong = values[2 * n : 3 * n], values[3 * n :]
        return out


def poisson_bounds(count: float, z: float) -> tuple[float, float]:
    """A Poisson count's lower and upper confidence bounds at ``z`` standard deviations
    (the score form: the means ``mu`` with ``(count - mu) ** 2 = z ** 2 mu``), which
    the bands' tests and the budget's correction use."""
    z2 = z * z
    spread = z * math.sqrt(count + z2 / 4)
    return count + z2 / 2 - spread, count + z2 / 2 + spread
