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
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from semcache._agreement import Agreement, answer_digest, support_scores
from semcache._budget_policy import Z_UPPER, EntryRecord, ErrorBudget
from semcache._types import Hit

#: Refit after this many new outcomes.
REFIT = 500
#: Outcomes of each kind (right, wrong) before the first fit.
MIN_CLASS = 20
#: The L2 penalty (on standardized features; the intercept is not penalized).
L2 = 1.0
_WORD = re.compile(r"[^\W_]+")
#: The features' names, in :meth:`RiskModel.features`' order.
FEATURES = (
    *("similarity", "margin", "examined", "agreeing share", "support score"),
    *("alone", "split", "mixed", "unanimous", "record right", "record wrong"),
    *("table logit", "record logit"),
    *("words in judged", "words in own", "words in other", "words lead"),
    *("words missing", "jaccard", "query words"),
)
#: The lexical ones (``model-risk-no-words`` leaves them out).
LEXICAL = frozenset(FEATURES[13:])

Array = npt.NDArray[np.float64]


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.casefold()))


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1.0 - 1e-4)
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def fit_logistic(
    x: Array, y: Array, l2: float = L2, weights: Array | None = None
) -> tuple[Array, Array]:
    """The weights (intercept last) of an L2-penalized logistic regression of ``y``
    (0/1) on ``x`` (each row counted ``weights`` times: 1 by default), by Newton's
    method, and the inverse of the penalized Hessian at them (the Laplace
    approximation's covariance)."""
    c = np.ones(len(x)) if weights is None else weights
    a = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(a.shape[1])
    penalty = np.full(a.shape[1], l2)
    penalty[-1] = 1e-9
    hess = np.diag(penalty)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(a @ w)))
        grad = a.T @ (c * (p - y)) + penalty * w
        hess = (a * (c * p * (1.0 - p))[:, None]).T @ a + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w, np.linalg.inv(hess)


class RiskModel:
    """The features of a get's judged candidate, and a logistic model of its risk."""

    def __init__(
        self,
        floor: float = 0.5,
        *,
        without: frozenset[str] = frozenset(),
        local: bool = False,
        rows: int | None = None,
    ) -> None:
        self.floor = floor
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
            table = ErrorBudget.risk(budget, ev, None)[0]
            moved = ErrorBudget.risk(budget, ev, record)[0]
            full = self.features(query, found, served, ev, record, table, moved)
            x = [full[i] for i in self.kept]
        if query and not self.local:
            self.queries += 1
            self.df.update(_words(query))
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
        """The module docstring's features, in its order."""
        judged = found[served]
        right, wrong = record.evidence(ev.similarity) if record is not None else (0, 0)
        keys = [answer_digest(h.response) for h in found]
        order = [served, *(j for j in range(len(found)) if j != served)]
        support = support_scores([found[j].similarity for j in order], [keys[j] for j in order])
        q = _words(query)
        if self.local:
            texts = [_words(h.query) for h in found]
            idf = {
                w: math.log((len(texts) + 2) / (sum(w in t for t in texts) + 2)) + 1.0 for w in q
            }
        else:
            idf = {w: math.log((self.queries + 1) / (self.df[w] + 1)) + 1.0 for w in q}
        total = sum(idf.values()) or 1.0

        def share(text: str) -> float:
            return sum(idf[w] for w in q & _words(text)) / total

        same = [h.query for j, h in enumerate(found) if keys[j] == keys[served]]
        other = [h.query for j, h in enumerate(found) if keys[j] != keys[served]]
        own_words = set().union(*map(_words, same))
        near_same = max(map(share, same))
        near_other = max(map(share, other), default=0.0)
        judged_words = _words(judged.query)
        evidence = [0.0] * 4
        evidence[ev.evidence] = 1.0
        return [
            ev.similarity,
            ev.similarity - (ev.rival if ev.rival is not None else self.floor),
            float(ev.examined),
            ev.support / ev.examined,
            support[0],
            *evidence,
            float(right),
            float(wrong),
            _logit(table),
            _logit(moved),
            share(judged.query),
            near_same,
            near_other,
            near_same - near_other,
            sum(idf[w] for w in q - own_words) / total,
            len(q & judged_words) / max(1, len(q | judged_words)),
            float(len(q)),
        ]

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
