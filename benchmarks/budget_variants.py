"""Estimator variants of the error budget, measured, not shipped (docs/quality.md,
"Learning the record's weight and the top bins' prior").

Each variant is an :class:`~semcache._budget_policy.ErrorBudget` (or its
:class:`~semcache._budget_policy.RiskTable`) with one part of the estimate changed;
``budget_streams.py --variant NAME`` runs the research replay with it:

- ``learnt-weight``: the weight of the table's estimate against an entry's own
  observations (shipped: ``ENTRY_PRIOR`` = 4) is learnt: among
  :data:`KAPPAS`, the one whose estimates gave the LLM calls' outcomes the lowest
  log-loss so far, each outcome scored before it is learnt (prequential; the shipped 4
  until then). Only the calls whose entry's record said something at the similarity
  count.
- ``below-prior``: the table's one pseudo-observation is at the fitted risk of the
  nearest bins below that are riskier (risk does not rise with similarity, so it bounds
  the bin's), not at 1/2. The first block keeps 1/2.
- ``learnt-prior``: the pseudo-observation's rate is learnt the same way among
  1/2 and 1, 2, 4, 8 times the rate below (at most 1/2), by every observation;
  ``learnt-prior-verified``: by the verified candidates' only (a sample of the answers
  the budget serves, drawn without regard to their outcome).
- Joined with ``+``: ``learnt-weight+below-prior`` and so on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from semcache._agreement import Agreement
from semcache._budget_policy import Decision, EntryRecord, ErrorBudget, RiskTable

#: The weights ``learnt-weight`` chooses among (the table's estimate counted as this
#: many of the entry's own observations).
KAPPAS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
#: The priors ``learnt-prior`` chooses among: None is 1/2 (shipped), c is c times the
#: fitted risk of the bins below (at most 1/2).
PRIORS: tuple[float | None, ...] = (None, 1.0, 2.0, 4.0, 8.0)
VARIANTS = (
    "learnt-weight",
    "below-prior",
    "learnt-prior",
    "learnt-prior-verified",
)


def _log_loss(p: float, correct: bool) -> float:
    p = min(max(p, 1e-6), 1.0 - 1e-6)
    return -math.log(1.0 - p if correct else p)


class PriorTable(RiskTable):
    """A :class:`RiskTable` whose pseudo-observation is at ``PRIORS[mode]``."""

    def __init__(self, mode: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode

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


class VariantBudget(ErrorBudget):
    """An :class:`ErrorBudget` with the parts ``variant`` names changed."""

    def __init__(self, budget: float, *, variant: str, **kwargs: Any) -> None:
        parts = set(variant.split("+"))
        unknown = parts - set(VARIANTS)
        if unknown:
            raise ValueError(f"unknown variant part(s): {sorted(unknown)}")
        self.learn_weight = "learnt-weight" in parts
        self.learn_prior = bool(parts & {"learnt-prior", "learnt-prior-verified"})
        self.prior_from_verified = "learnt-prior-verified" in parts
        mode = 1 if "below-prior" in parts else 0
        kwargs.setdefault("table", PriorTable(mode, floor=kwargs.get("floor", 0.5)))
        super().__init__(budget, **kwargs)
        self.weight_loss = [0.0] * len(KAPPAS)
        self.prior_loss = [0.0] * len(PRIORS)

    @property
    def entry_prior(self) -> float:
        """The table's weight against an entry's observations now (what
        :meth:`ErrorBudget.risk` weighs the record with)."""
        shipped = super().entry_prior
        if not self.learn_weight:
            return shipped
        # the lowest log-loss; on a tie (before any observation) the shipped weight
        best = min(
            range(len(KAPPAS)),
            key=lambda i: (self.weight_loss[i], abs(math.log(KAPPAS[i] / shipped))),
        )
        return KAPPAS[best]

    def observe(
        self,
        ev: Agreement,
        record: EntryRecord | None,
        correct: bool,
        decision: Decision | None = None,
    ) -> None:
        """Score each candidate weight and prior on this outcome, then learn it."""
        if ev.similarity >= self.floor:
            table = self.table
            assert isinstance(table, PriorTable)
            if self.learn_weight and record is not None:
                wrong, right = record.evidence(ev.similarity)
                if wrong + right:
                    m = table.risk(ev.evidence, ev.similarity)[0]
                    for i, k in enumerate(KAPPAS):
                        p = (k * m + wrong) / (k + wrong + right)
                        self.weight_loss[i] += _log_loss(p, correct)
            verified = decision is not None and decision.action == "verify"
            if self.learn_prior and (verified or not self.prior_from_verified):
                for i in range(len(PRIORS)):
                    p = table.risk_with(ev.evidence, ev.similarity, i)[0]
                    self.prior_loss[i] += _log_loss(p, correct)
                table.mode = min(range(len(PRIORS)), key=self.prior_loss.__getitem__)
        super().observe(ev, record, correct, decision)
