"""A logistic model of a candidate's risk from its features, learnt online: the
estimate ``risk_model_headroom.py`` measures with a hindsight cutoff and the
``model-risk`` variant of ``budget_variants.py`` gives the error budget
(docs/quality.md, "A model of the candidate's features").

Features of the candidate judged and its query (:meth:`RiskModel.features`, in order):
its similarity; its margin over the nearest candidate of another answer (over the
floor without one); the candidates read and the share that agree with it; its support
score (:func:`~semcache._agreement.support_scores`); the evidence class (one-hot); the
entry's record (right answers at or below the similarity, wrong ones at or above); the
risk table's estimate and the estimate moved by the record (as logits); and lexical
ones, each word weighed by its inverse document frequency over the queries seen so
far: the share of the query's weight found in the judged prompt, in the nearest (most
overlapping) prompt of its answer among the candidates and in that of another answer,
their difference, the share found in none of its answer's candidates; the words'
Jaccard overlap with the judged prompt; the query's word count. (``local=True``: the
words' document frequency counted among the get's candidates' prompts instead, so
that no state is kept.)

The model is an L2-penalized logistic regression of "the answer was wrong" on the
standardized features, fitted by Newton's method on every outcome added so far,
refitted every :data:`REFIT` new ones once both outcomes were seen :data:`MIN_CLASS`
times. Its upper bound is the Laplace approximation's: the logit's ``Z_UPPER``
quantile under the fit's inverse Hessian.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from semcache._agreement import Agreement
from semcache._budget_policy import Z_UPPER, EntryRecord, ErrorBudget
from semcache._risk_model import (
    FEATURES,
    LEXICAL,
    MIN_CLASS,
    REFIT,
    Array,
    _sigmoid,
    fit_logistic,
    words,
)
from semcache._types import Hit
from semcache.quality._budget_replay import hit_features

__all__ = ["FEATURES", "LEXICAL", "RiskModel", "fit_logistic"]


class RiskModel:
    """The features of a get's judged candidate, and a logistic model of its risk."""

    def __init__(
        self,
        floor: float = 0.5,
        *,
        without: frozenset[str] = frozenset(),
        local: bool = False,
        rows: int | None = None,
        squares: bool = False,
    ) -> None:
        self.floor = floor
        #: True: each feature's square joins the features (a curve per feature)
        self.squares = squares
        #: fit on the newest ``rows`` outcomes only (None: all)
        self.rows = rows
        #: True: a word's document frequency is counted over the get's candidates'
        #: prompts only (smoothed by 2; no state kept), not over the queries seen so far
        self.local = local
        #: the indices of the features the model uses (all but those named ``without``)
        self.kept = [i for i, name in enumerate(FEATURES) if name not in without]
        self.df: Counter[str] = Counter()
        self.queries = 0
        self.xs: list[list[float]] = []
        self.ys: list[float] = []
        self.weights: list[float] = []
        #: the wrong answers among ``ys``
        self.wrong = 0.0
        #: the features :meth:`take` took for the get being decided (None: no
        #: candidate, or learnt already)
        self.last: list[float] | None = None
        self.fitted_at = 0
        self.fit: tuple[Array, Array, Array, Array] | None = None
        self.context: tuple[str, Sequence[Hit], int | None] = ("", (), None)

    def inspect(self, query: str, found: Sequence[Hit], served: int | None) -> None:
        """The research replay's ``inspect`` hook: the get's query and candidates."""
        self.context = (query, found, served)

    def take(
        self, ev: Agreement | None, record: EntryRecord | None, budget: ErrorBudget
    ) -> list[float] | None:
        """The features of this get's judged candidate (None: no candidate), from the
        context :meth:`inspect` was given (read once) and ``budget``'s own estimates
        (:meth:`ErrorBudget.risk`, whatever a subclass makes of it: the table's alone
        and moved by the record), kept as :attr:`last`; then the query joins the word
        counts (not with ``local``: they are not read)."""
        query, found, served = self.context
        self.context = ("", (), None)
        x = None
        if ev is not None and served is not None and ev.similarity >= self.floor:
            table = ErrorBudget.table_risk(budget, ev, None)[0]
            moved = ErrorBudget.table_risk(budget, ev, record)[0]
            full = self.features(query, found, served, ev, record, table, moved)
            x = [full[i] for i in self.kept]
            if self.squares:
                x += [v * v for v in x]
        if query and not self.local:
            self.queries += 1
            self.df.update(words(query))
        self.last = x
        return x

    def features(
        self,
        query: str,
        found: Sequence[Hit],
        served: int,
        ev: Agreement,
        record: EntryRecord | None,
        table: float,
        moved: float,
    ) -> list[float]:
        """The features of :func:`semcache._risk_model.features` (the words weighed
        among the queries seen so far unless ``local``)."""
        idf = None
        if not self.local:
            idf = {w: math.log((self.queries + 1) / (self.df[w] + 1)) + 1.0 for w in words(query)}
        return hit_features(query, found, served, ev, record, table, moved, self.floor, idf)

    def learn(self, correct: bool, weight: float = 1.0) -> None:
        """Learn the outcome of the get :meth:`take` took (nothing without a candidate),
        counted ``weight`` times; refit when :data:`REFIT` new ones are in."""
        x, self.last = self.last, None
        if x is None:
            return
        self.xs.append(x)
        self.ys.append(0.0 if correct else 1.0)
        self.weights.append(weight)
        self.wrong += self.ys[-1]
        if self.rows is not None and len(self.xs) > self.rows:
            self.wrong -= self.ys[0]
            del self.xs[0], self.ys[0], self.weights[0]
            self.fitted_at -= 1
        ready = min(self.wrong, len(self.ys) - self.wrong) >= MIN_CLASS
        if ready and len(self.ys) - self.fitted_at >= REFIT:
            x_all = np.asarray(self.xs)
            mean, scale = x_all.mean(axis=0), x_all.std(axis=0)
            scale[scale == 0] = 1.0
            w, cov = fit_logistic(
                (x_all - mean) / scale, np.asarray(self.ys), weights=np.asarray(self.weights)
            )
            self.fit = (mean, scale, w, cov)
            self.fitted_at = len(self.ys)

    def estimate(self) -> tuple[float, float] | None:
        """The model's probability that the answer of the get :meth:`take` took is wrong,
        and its upper bound (None: not fitted yet, or no candidate)."""
        x = self.last
        if self.fit is None or x is None:
            return None
        mean, scale, w, cov = self.fit
        a = np.append((np.asarray(x) - mean) / scale, 1.0)
        z = float(a @ w)
        sd = math.sqrt(max(float(a @ cov @ a), 0.0))
        return _sigmoid(z), _sigmoid(z + Z_UPPER * sd)

    def probabilities(self) -> Array:
        """The fitted model's probability of a wrong answer for every outcome added so
        far (its features), in order."""
        assert self.fit is not None
        mean, scale, w, _ = self.fit
        a = (np.asarray(self.xs) - mean) / scale
        return 1.0 / (1.0 + np.exp(-(a @ w[:-1] + w[-1])))
