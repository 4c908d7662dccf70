"""The error budget's model of a candidate's risk: a logistic regression of "the
candidate's answer was wrong" on features of the candidate and its query, learnt
online from the LLM calls' outcomes (docs/quality.md, "A model of the candidate's
features" and "The error budget in the cache").

Features (:func:`features`, in :data:`FEATURES`' order): the candidate's similarity;
its margin over the nearest candidate of another answer (over the floor without one);
the candidates read and the share that agree with it; its support score
(:func:`~semcache._agreement.support_scores`); the evidence class (one-hot); the
entry's record (right answers at or below the similarity, wrong ones at or above); the
budget's table estimate alone and moved by the record (as logits); and lexical ones,
each of the query's words weighed by its inverse document frequency among the get's
candidates' prompts (so no state is kept for them): the share of the query's weight
found in the judged prompt, in the nearest (most overlapping) prompt of its answer
among the candidates and in that of another answer, their difference, the share found
in none of its answer's prompts; the words' Jaccard overlap with the judged prompt; the
query's word count; last, the answer model's reading of the query
(``semcache._answer_model``): the probability of the candidate's answer (0 where the
model does not know that answer, or there is no model) and whether it knows it.

The model (:class:`RiskModel`) is a logistic regression on each feature and its
square (:func:`inputs`), fitted on the newest :data:`ROWS` outcomes by
Newton's method (L2-penalized, standardized features), again every :data:`REFIT` new
outcomes once both kinds were seen :data:`MIN_CLASS` times; its upper bound is the
Laplace approximation's. The cache keeps the outcomes in the store's outcome log
(:class:`~semcache._store.OutcomeLog`, one row of text per outcome:
:func:`encode_row`), so that every process learns from all of them and a reopened
cache refits on them.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Final, Protocol

import numpy as np
import numpy.typing as npt

from . import _agreement
from ._agreement import support_scores

if TYPE_CHECKING:
    from ._agreement import Agreement


class EntryRecord(Protocol):
    """What the features read of an entry's record
    (:class:`~semcache._budget_policy.EntryRecord`, which imports this module)."""

    def evidence(self, similarity: float) -> tuple[int, int]:
        """(wrong answers seen at ``similarity`` or above, right ones at or below)."""
        ...


__all__ = [
    "ANSWER",
    "FEATURES",
    "LEXICAL",
    "MIN_CLASS",
    "REFIT",
    "ROWS",
    "TESTABLE",
    "RiskModel",
    "decode_row",
    "encode_row",
    "features",
    "fit_logistic",
    "inputs",
    "lexical",
    "logit",
    "words",
]

#: Refit after this many new outcomes.
REFIT: Final = 500
#: Outcomes of each kind (right, wrong) before the first fit.
MIN_CLASS: Final = 20
#: The outcomes the model is fitted on (the newest); what the store's log keeps.
ROWS: Final = 5000
#: The L2 penalty (on standardized features; the intercept is not penalized).
L2: Final = 1.0
#: The verified candidates' predicted wrong answers (under the estimates the budget
#: used) before the model's estimate decides: from then on the verified gets' test
#: (the budget's correction) can tell estimates that are half the truth (a Poisson
#: count of 20 against 10 expected is three standard deviations off).
TESTABLE: Final = 10.0
#: The upper bound's quantile of the logit (the budget's ``Z_UPPER``).
_Z_UPPER: Final = 1.645
_WORD = re.compile(r"[^\W_]+")
#: The features' names, in :func:`features`' order.
FEATURES: Final = (
    *("similarity", "margin", "examined", "agreeing share", "support score"),
    *("alone", "split", "mixed", "unanimous", "record right", "record wrong"),
    *("table logit", "record logit"),
    *("words in judged", "words in own", "words in other", "words lead"),
    *("words missing", "jaccard", "query words"),
    *("answer probability", "answer known"),
)
#: The lexical ones.
LEXICAL: Final = frozenset(FEATURES[13:20])
#: The answer model's.
ANSWER: Final = frozenset(FEATURES[20:])

Array = npt.NDArray[np.float64]


def words(text: str) -> set[str]:
    """The distinct words of ``text``, casefolded."""
    return set(_WORD.findall(text.casefold()))


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1.0 - 1e-4)
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def features(
    query: str,
    prompts: Sequence[str],
    keys: Sequence[object],
    similarities: Sequence[float],
    served: int,
    ev: Agreement,
    record: EntryRecord | None,
    table: float,
    moved: float,
    *,
    floor: float,
    idf: dict[str, float] | None = None,
    prompt_words: Sequence[AbstractSet[str]] | None = None,
    answer_p: float | None = None,
) -> list[float]:
    """The module docstring's features of the candidate ``served`` (an index into the
    candidates, given in the vote's order by their ``prompts``, answer ``keys`` and
    ``similarities``) for ``query``: ``ev`` its agreement, ``record`` its entry's,
    ``table`` and ``moved`` the budget's estimates of its risk without and with the
    record. ``idf``: the query's words' weights (None: counted among ``prompts``).
    ``prompt_words``: the prompts' :func:`words`, where the caller keeps them (None:
    read from ``prompts`` here). ``answer_p``: the answer model's probability of the
    candidate's answer (None: the model does not know it, or there is none)."""
    wrong, right = record.evidence(ev.similarity) if record is not None else (0, 0)
    order = [served, *(j for j in range(len(prompts)) if j != served)]
    support = support_scores([similarities[j] for j in order], [keys[j] for j in order])
    q = sorted(words(query))  # (one order: the sums below add in it)
    texts = [words(p) for p in prompts] if prompt_words is None else prompt_words
    mine = keys[served]
    own = [k == mine for k in keys]
    weights = None if idf is None else [idf[w] for w in q]
    lex = _LEXICAL(q, texts, own, served, weights)
    evidence = [0.0] * 4
    evidence[ev.evidence] = 1.0
    return [
        ev.similarity,
        ev.similarity - (ev.rival if ev.rival is not None else floor),
        float(ev.examined),
        ev.support / ev.examined,
        support[0],
        *evidence,
        float(right),
        float(wrong),
        _logit(table),
        _logit(moved),
        lex[0],
        lex[1],
        lex[2],
        lex[1] - lex[2],
        lex[3],
        lex[4],
        float(len(q)),
        0.0 if answer_p is None else float(answer_p),
        0.0 if answer_p is None else 1.0,
    ]


def lexical(
    q: Sequence[str],
    texts: Sequence[AbstractSet[str]],
    own: Sequence[bool],
    served: int,
    weights: Sequence[float] | None,
) -> tuple[float, float, float, float, float]:
    """The lexical features of the candidate ``served`` for a query of the distinct
    words ``q`` (in the order their weights are added in), among the candidates'
    prompts' words ``texts`` (``own[j]``: candidate ``j`` has the served one's
    answer): the share of the query's weight in the judged prompt, the most in one of
    its answer's prompts and in one of another answer's (0 without one), the share in
    none of its answer's prompts, and the Jaccard overlap of the words with the judged
    prompt's. ``weights``: the words' (None: each ``log((n + 2) / (d + 2)) + 1`` for a
    word in ``d`` of the ``n`` prompts). ``_native/_support.pyx`` has its C twin (the
    same results bit for bit), used where it is built."""
    n = len(texts)
    if weights is None:
        weights = [math.log((n + 2) / (sum([w in t for t in texts]) + 2)) + 1.0 for w in q]
    pairs = list(zip(q, weights, strict=True))
    total = 0.0
    for c in weights:
        total += c
    if total == 0.0:
        total = 1.0
    shares = []
    for t in texts:
        s = 0.0
        for w, c in pairs:
            if w in t:
                s += c
        shares.append(s / total)
    near_same = max([sh for sh, o in zip(shares, own, strict=True) if o])
    near_other = max([sh for sh, o in zip(shares, own, strict=True) if not o], default=0.0)
    mine = [t for t, o in zip(texts, own, strict=True) if o]
    missing = 0.0
    for w, c in pairs:
        if not any(w in t for t in mine):
            missing += c
    judged = texts[served]
    inside = sum([w in judged for w in q])
    return (
        shares[served],
        near_same,
        near_other,
        missing / total,
        inside / max(1, len(q) + len(judged) - inside),
    )


def logit(
    x: Sequence[float],
    mean: Sequence[float],
    scale: Sequence[float],
    w: Sequence[float],
    cov: Sequence[Sequence[float]],
) -> tuple[float, float]:
    """The fitted logit of the features ``x`` and its variance under the fit: with
    ``a`` the standardized features and a 1 (``(x - mean) / scale``), ``a . w`` and
    ``a . (cov a)``, each sum added left to right from 0. ``_native/_support.pyx`` has
    its C twin (the same results bit for bit), used where it is built.

    Raises:
        ValueError: ``x`` of another length than ``mean``.
    """
    n = len(mean)
    if len(x) != n:
        raise ValueError("one feature per mean")
    a = [(x[i] - mean[i]) / scale[i] for i in range(n)]
    a.append(1.0)
    z = 0.0
    for i in range(n + 1):
        z += a[i] * w[i]
    var = 0.0
    for i in range(n + 1):
        row = cov[i]
        s = 0.0
        for j in range(n + 1):
            s += row[j] * a[j]
        var += a[i] * s
    return z, var


_LEXICAL = _agreement.native_twin("lexical", lexical)
_LOGIT = _agreement.native_twin("logit", logit)


def inputs(x: Sequence[float], centre: Sequence[float], spread: Sequence[float]) -> list[float]:
    """The model's inputs for the features ``x``: each feature standardized by the
    ``centre`` and ``spread`` of the rows the model was fitted on, then each of those
    squared. So the logit is a curve in each feature, not a line (one line was too
    flat across the risks the budget serves at: docs/quality.md, "A curve per
    feature"); centred, a square is nearly uncorrelated with its feature, and the L2
    penalty weighs the curve itself, not two large weights that cancel. The log keeps
    the features; the inputs are taken at each fit and estimate."""
    z = [(v - c) / d for v, c, d in zip(x, centre, spread, strict=True)]
    return [*z, *(v * v for v in z)]


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


def encode_row(x: Sequence[float], correct: bool) -> str:
    """One outcome as a row of the store's outcome log: ``[wrong, *x]`` as compact JSON
    (floats written exactly, so that a refit on the rows read back is the same fit)."""
    return json.dumps([0.0 if correct else 1.0, *map(float, x)], separators=(",", ":"))


def decode_row(text: str, width: int = len(FEATURES)) -> tuple[float, list[float]] | None:
    """``(wrong, x)`` of a row :func:`encode_row` wrote with ``width`` features; None
    for a row that is not one (another version's, or damaged)."""
    try:
        values = json.loads(text)
    except ValueError:
        return None
    if not isinstance(values, list) or len(values) != width + 1:
        return None
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return None
    if values[0] not in (0, 1):
        return None
    return float(values[0]), [float(v) for v in values[1:]]


class RiskModel:
    """A logistic model of a candidate's risk from its features, and the outcomes it
    is fitted on (the newest ``rows``).

    Attributes:
        outcomes: the outcomes learnt so far (every process's, where the cache shares
            them; :meth:`learn` adds 1).
        fitted_at: :attr:`outcomes` at the last fit.
        pending: rows (:func:`encode_row`) learnt here and not yet in the store's log
            (the newest ``rows`` of them: the log keeps no more).
    """

    def __init__(self, rows: int = ROWS) -> None:
        self.rows = rows
        #: the outcomes fitted on, oldest first: ``(wrong, features)``
        self.log: deque[tuple[float, list[float]]] = deque(maxlen=rows)
        #: the wrong answers among :attr:`log`'s rows
        self.wrong = 0.0
        self.outcomes = 0
        self.fitted_at = 0
        self.pending: deque[str] = deque(maxlen=rows)
        #: the last fit (None: none yet): the features' means and scales, the weights
        #: (intercept last) and their covariance, as :func:`logit` reads them
        self.fit: tuple[list[float], list[float], list[float], list[list[float]]] | None = None
        #: the features' means and standard deviations over the rows of the last fit
        #: (what :func:`inputs` centres them by)
        self.basis: tuple[list[float], list[float]] = ([], [])

    def learn(self, x: Sequence[float], correct: bool) -> None:
        """Add one outcome: the candidate with features ``x`` had the right answer or
        not."""
        row = [float(v) for v in x]
        y = 0.0 if correct else 1.0
        if len(self.log) == self.log.maxlen:
            self.wrong -= self.log[0][0]  # (the oldest row goes)
        self.log.append((y, row))
        self.wrong += y
        self.outcomes += 1
        self.pending.append(encode_row(row, correct))

    def replace(self, rows: Sequence[str]) -> None:
        """Fit on ``rows`` (the store's log, oldest first) from now on: the newest
        :attr:`rows` of them that decode with this model's width."""
        width = len(self.log[0][1]) if self.log else len(FEATURES)
        decoded = (decode_row(text, width) for text in rows)
        self.log = deque((d for d in decoded if d is not None), maxlen=self.rows)
        self.wrong = sum(y for y, _ in self.log)

    def ready(self) -> bool:
        """Whether both outcomes were seen :data:`MIN_CLASS` times among the rows."""
        return min(self.wrong, len(self.log) - self.wrong) >= MIN_CLASS

    def due(self) -> bool:
        """Whether :data:`REFIT` outcomes came in since the last fit and it can fit."""
        return self.outcomes - self.fitted_at >= REFIT and self.ready()

    def refit(self) -> None:
        """Fit on the rows now (nothing when :meth:`ready` is false)."""
        if not self.ready():
            return
        base = np.asarray([x for _, x in self.log])
        centre, spread = base.mean(axis=0), base.std(axis=0)
        spread[spread == 0] = 1.0
        self.basis = (centre.tolist(), spread.tolist())
        x_all = self._design((base - centre) / spread)
        mean, scale = x_all.mean(axis=0), x_all.std(axis=0)
        scale[scale == 0] = 1.0
        y = np.asarray([y for y, _ in self.log])
        w, cov = self._fit((x_all - mean) / scale, y)
        self.fit = (mean.tolist(), scale.tolist(), w.tolist(), cov.tolist())
        self.fitted_at = self.outcomes

    def _fit(self, x: Array, y: Array) -> tuple[Array, Array]:
        """The weights and their covariance fitted on the standardized inputs ``x`` and
        the outcomes ``y`` (1: wrong): :func:`fit_logistic`'s."""
        return fit_logistic(x, y)

    @staticmethod
    def _design(z: Array) -> Array:
        """The inputs of the standardized features' rows ``z``: :func:`inputs`, all
        rows at once."""
        return np.hstack([z, z * z])

    def estimate(self, x: Sequence[float]) -> tuple[float, float] | None:
        """The probability that the candidate with features ``x`` has a wrong answer,
        and its upper bound; None before the first fit (or ``x`` of another width)."""
        fit = self.fit
        if fit is None or len(x) != len(self.basis[0]):
            return None
        z, var = _LOGIT(self._inputs(x), *fit)
        return _sigmoid(z), _sigmoid(z + _Z_UPPER * math.sqrt(max(var, 0.0)))

    def _inputs(self, x: Sequence[float]) -> list[float]:
        """The inputs of the features ``x``: :func:`inputs` (one row of what
        :meth:`_design` makes of the fit's rows)."""
        return inputs(x, *self.basis)
