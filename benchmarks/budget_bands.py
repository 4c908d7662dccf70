"""The error budget's variants of the risk model's bands (``semcache._model_bands``),
for ``budget_variants.py``: each a :class:`ModelBands` with its factor or floor changed,
by the part of a variant's name that selects it (:data:`BANDS`; docs/quality.md, "The
model's lowest estimates, raised by band" and the sections after it).
"""

from __future__ import annotations

import semcache._budget_policy
from semcache._model_bands import Z_BANDS, ModelBands, poisson_bounds

__all__ = ["BANDS"]


class FlatBands(ModelBands):
    """``no-bands``: the bands counted, their factor always 1 (the build before "The
    model's lowest estimates, raised by band")."""

    def factor(self, estimate: float) -> float:
        """1: the model's estimate as it is."""
        return 1.0

    def floor(self, estimate: float) -> float:
        """0: no floor either."""
        return 0.0


class UpOnlyBands(ModelBands):
    """``up-only``: a band is only raised, never lowered (the build before "Bands
    lowered where their calls were wrong significantly less often"); the variants of
    the floor below were measured on it, and keep it."""

    def factor(self, estimate: float) -> float:
        """``(found + 1) / (predicted + 1)`` where that is above 1; else 1."""
        b = self.band(estimate)
        return max(1.0, (self.wrong[b] + 1.0) / (self.predicted[b] + 1.0))


class NoFloorBands(UpOnlyBands):
    """``no-floor`` and ``table-untested``: the factor (raising only), no floor."""

    def floor(self, estimate: float) -> float:
        """0: the model's estimate, raised by its factor only."""
        return 0.0


class CallsFloorBands(UpOnlyBands):
    """``calls-floor``: the floor is the share of wrong answers among the LLM calls
    counted in the estimate's band and every band below, one call more on the right."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = [0.0] * len(self.predicted)

    def add(self, estimate: float, correct: bool) -> None:
        """As shipped, and the call counted."""
        super().add(estimate, correct)
        self.calls[self.band(estimate)] += 1.0

    def floor(self, estimate: float) -> float:
        """The wrong answers over the calls, in the band and below."""
        top = self.band(estimate) + 1
        return sum(self.wrong[:top]) / (sum(self.calls[:top]) + 1.0)


class Z2TestedBands(UpOnlyBands):
    """``tested-z2``: a band tested once its calls predicted ``Z_CORRECTION ** 2``."""

    tested_at = semcache._budget_policy.Z_CORRECTION**2


class CallsDownBands(UpOnlyBands):
    """``band-down-calls``: a band lowered where every LLM call counted in it, misses
    and verifications, found significantly fewer wrong answers than predicted (its
    Poisson upper bound at ``Z_BANDS`` below the prediction), by their ratio, one more
    on each side; the verified candidates' own count not read."""

    def factor(self, estimate: float) -> float:
        """Raised as shipped; lowered on every call's count."""
        b = self.band(estimate)
        m, w = self.predicted[b], self.wrong[b]
        if poisson_bounds(w, Z_BANDS)[1] < m:
            return (w + 1.0) / (m + 1.0)
        return super().factor(estimate)


class DownUpperBands(UpOnlyBands):
    """``band-down-upper``: as ``band-down-calls``, but lowered by the count's upper
    bound over the prediction (as the correction is), not by ``(found + 1) /
    (predicted + 1)``."""

    def factor(self, estimate: float) -> float:
        """Raised as shipped; lowered on every call's count, to its upper bound."""
        b = self.band(estimate)
        m, w = self.predicted[b], self.wrong[b]
        upper = poisson_bounds(w, Z_BANDS)[1]
        return upper / m if upper < m else super().factor(estimate)


class PointUpBands(ModelBands):
    """``point-up``: a band whose LLM calls found significantly more wrong answers
    than predicted raised by ``(found + 1) / (predicted + 1)``, not by the count's
    upper bound (the build before "A band raised to its count's upper bound" in
    docs/quality.md); lowered as shipped."""

    def factor(self, estimate: float) -> float:
        """The count's ratio where it is significantly high; else as shipped."""
        b = self.band(estimate)
        m, w = self.predicted[b], self.wrong[b]
        if poisson_bounds(w, Z_BANDS)[0] > m:
            return (w + 1.0) / (m + 1.0)
        return super().factor(estimate)


#: the variants' bands, by the part that names them
BANDS: dict[str, type[ModelBands]] = {
    "no-bands": FlatBands,
    "no-floor": NoFloorBands,
    "table-untested": NoFloorBands,
    "calls-floor": CallsFloorBands,
    "tested-z2": Z2TestedBands,
    "up-only": UpOnlyBands,
    "band-down-upper": DownUpperBands,
    "band-down-calls": CallsDownBands,
    "point-up": PointUpBands,
}
