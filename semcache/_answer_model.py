"""The answer model: per namespace, a classifier of the stored answers learnt from the
stored prompts (``answer_support``; docs/quality.md, "The answer model").

Where a namespace's answers repeat (the same answer, after normalization, stored for
several prompts: an assistant whose answer depends on the intent), the answers are
classes and their prompts' vectors are examples. A multinomial logistic regression of
the answer on the vector learns which directions tell the answers apart, where a
cosine (or a prototype) weighs every direction alike. Its classes are the answers
stored twice or more (at most :data:`MODEL_CLASSES`, the largest) and, where answers
are stored once too, one more class for all of those together (*unique*), so that a
query in their part of the space is not forced onto a repeated answer.

A get in a namespace with a model (:meth:`AnswerModels.model`) where no candidate
was served by its support score reads the probabilities of the answers (one small
matrix product) and ``semcache._get._supported`` uses them:

- a candidate whose answer is a class is raised to :func:`combined`, the mean of its
  support score and its answer's :func:`model_score`, where that is higher; they are
  tried again in the same order;
- the answer of highest probability, where it is not among the candidates, is tried
  last from its own stored prompt nearest the query (a lookup beyond the 8 nearest),
  at the mean of that prompt's similarity and its model score, with the guards
  applied as to any hit.

So the model serves only where the support score alone would not, and never where the
neighbourhood is far: at the shipped threshold, 0.85, a candidate needs a support
score (or similarity) of at least 0.7.

Fitting reads the classes' prompts' vectors from the store (at most
:data:`MODEL_MEMBERS` per answer, :data:`MODEL_UNIQUE` of the unique ones) and runs
:data:`FIT_STEPS` steps of full-batch gradient descent: 0.8 s for 1,500 prompts of
150 answers on the 2-core VM, 8.4 s at the bounds. It runs on a thread of its own,
never in a get: the first get of a namespace whose answers repeat starts it (one
thread per cache fits the namespaces waiting one after another), and gets go on
without a model until it is in; the gets after :data:`REFIT_SHARE` of the namespace's
entries changed start a refit, and use the model before it meanwhile (an answer it
does not know is scored as without it). A model is used only with the prototypes'
table it was fitted from: one read again (the store changed under it) starts a fit
anew. Each process fits its own
from the shared store: the same entries give the same model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt

from . import _agreement
from ._agreement import SUPPORT_FLOOR
from ._prototypes import Prototypes

__all__ = [
    "FIT_STEPS",
    "MODEL_CLASSES",
    "MODEL_MEMBERS",
    "MODEL_UNIQUE",
    "REFIT_SHARE",
    "AnswerModels",
    "Fitted",
    "Reading",
    "combined",
    "fit_softmax",
    "model_score",
]

logger = logging.getLogger("semcache")

#: The most answers a model tells apart (the most stored first; ties by key): the
#: product at a get is one row per class.
MODEL_CLASSES: Final = 256
#: The prompts per answer a fit reads (the lowest ids, the oldest): the fit's cost grows
#: with them, what it learns little past a few dozen.
MODEL_MEMBERS: Final = 32
#: The unique answers' prompts a fit reads (evenly over their ids).
MODEL_UNIQUE: Final = 1024
#: A refit starts once the entries added or removed since the fit are 1/REFIT_SHARE of
#: the namespace's entries then (at least one).
REFIT_SHARE: Final = 8
#: The fit: a multinomial logistic regression on the unit vectors times
#: :data:`FIT_SCALE` (the logits' range: the contrastive scale of the embedders, 20,
#: halved), L2-penalized by :data:`FIT_L2`, :data:`FIT_STEPS` steps of full-batch
#: gradient descent at rate :data:`FIT_RATE` from zero. Chosen a priori, before any
#: measurement in the cache; in the research replay three settings (scale 10 or 20,
#: L2 1e-3 or 1e-2) serve within 0.006 of each other (``benchmarks/static_classifier.py``).
FIT_SCALE: Final = 10.0
FIT_L2: Final = 1e-3
FIT_STEPS: Final = 300
FIT_RATE: Final = 0.5

#: The unique answers' class, in :attr:`Fitted.keys` (an answer's key is 16 bytes).
UNIQUE: Final = b""


def fit_softmax(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.intp], k: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The weights (``dim x k``, :data:`FIT_SCALE` folded in) and biases of a multinomial
    logistic regression of the classes ``y`` (0 to ``k - 1``) on the rows of ``x``
    (:data:`FIT_STEPS` steps of full-batch gradient descent, float32)."""
    xs = np.ascontiguousarray(x, dtype=np.float32) * np.float32(FIT_SCALE)
    n = len(xs)
    w = np.zeros((xs.shape[1], k), dtype=np.float32)
    b = np.zeros(k, dtype=np.float32)
    onehot = np.zeros((n, k), dtype=np.float32)
    onehot[np.arange(n), y] = 1.0
    rate, l2 = np.float32(FIT_RATE), np.float32(FIT_L2)
    for _ in range(FIT_STEPS):
        z = xs @ w + b
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        z -= onehot
        z /= np.float32(n)
        w -= rate * (xs.T @ z + l2 * w)
        b -= rate * z.sum(axis=0)
    return w * np.float32(FIT_SCALE), b


def model_score(p: float) -> float:
    """The score a candidate whose answer has probability ``p`` is served at, on the
    scale the threshold reads: the support floor plus ``p`` of the way from it to 1
    (the convention of the prototypes' standing, which scales a score's excess over
    the floor by a share: ``semcache._agreement.standing_scores``); a candidate is
    served at the mean of it and its own score (:func:`combined`)."""
    return SUPPORT_FLOOR + (1.0 - SUPPORT_FLOOR) * p


def combined(score: float, p: float) -> float:
    """A candidate's score with the answer model: the mean of its score without it
    (the support score; for the answer served from beyond the candidates, its
    similarity) and :func:`model_score` of its answer's probability ``p``. Both must be
    high: the model alone tells the stored answers apart but knows nothing of the
    questions none of them answers (it gives "Paris" to "capital of Germany" where only
    France's capital is stored), the score alone weighs every direction alike."""
    return 0.5 * (score + model_score(p))


def _softmax_numpy(
    weights: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    query: npt.NDArray[np.float32],
    limit: int,
) -> tuple[npt.NDArray[np.float64], int]:
    """The probabilities of a softmax over ``query @ weights + bias`` (float64) and the
    class of highest probability among the first ``limit`` (the first on ties): the
    NumPy twin of ``_native/_support.pyx``'s ``softmax``, the same to float32 rounding
    (BLAS sums the product in another order), the same errors.

    Raises:
        ValueError: shapes that do not agree, or ``limit`` not in 1 to the classes.
    """
    dim, k = weights.shape
    if query.shape != (dim,) or bias.shape != (k,):
        raise ValueError("weights must be dim x classes, with a bias per class and a query of dim")
    if not 1 <= limit <= k:
        raise ValueError(f"limit must be in 1 to {k}, got {limit}")
    z: npt.NDArray[np.float64] = (query @ weights + bias).astype(np.float64)
    z -= z.max()
    np.exp(z, out=z)
    z /= z.sum()
    return z, int(np.argmax(z[:limit]))


#: The answer model's reading (:func:`_softmax_numpy`'s signature): in C where the
#: extension is built (one call, about twice as fast inside a get as NumPy's nine, whose
#: caches the search has left cold), else :func:`_softmax_numpy`.
_SOFTMAX = _agreement.native_twin("softmax", _softmax_numpy)


@dataclass(frozen=True)
class Fitted:
    """One namespace's model.

    Attributes:
        keys: the classes, answers' keys (:data:`UNIQUE`: the answers stored once).
        weights: ``dim x len(keys)`` (the fit's scale folded in).
        bias: per class.
        members: per answer stored twice or more, the ids and unit vectors (float32)
            of the prompts the fit read, for the lookup beyond the candidates.
        table: the prototypes' table it was fitted from (used only with it).
        changes: that table's count of changes at the fit.
        entries: its entries then.
    """

    keys: tuple[bytes, ...]
    weights: npt.NDArray[np.float32]
    bias: npt.NDArray[np.float32]
    members: dict[bytes, tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]
    table: object
    changes: int
    entries: int
    #: A class's column by its key.
    column: dict[bytes, int]

    def read(self, query: npt.NDArray[np.float32]) -> Reading:
        """The model's reading of a unit ``query`` vector."""
        p, top = self._softmax(query)
        return Reading(self, p, self.keys[top], float(p[top]))

    def probabilities(self, query: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """The classes' probabilities for a unit ``query`` vector."""
        return self._softmax(query)[0]

    def _softmax(self, query: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float64], int]:
        """The classes' probabilities and the repeated answer of highest probability
        (the unique answers' class left out; the first on ties): :data:`_SOFTMAX`."""
        limit = (
            len(self.keys) - 1 if self.keys[-1] == UNIQUE and len(self.keys) > 1 else len(self.keys)
        )
        return cast(
            "tuple[npt.NDArray[np.float64], int]",
            _SOFTMAX(self.weights, self.bias, np.ascontiguousarray(query, dtype=np.float32), limit),
        )

    def probability(self, query: npt.NDArray[np.float32], key: bytes) -> float | None:
        """The probability of the answer ``key`` for a unit ``query`` vector, as
        ``read(query).of(key)`` gives it (the same arithmetic, so the same float), but
        nothing is computed where the answer is no class (stored once, or since the
        fit): None then."""
        c = self.column.get(key)
        if c is None or key == UNIQUE:
            return None
        return float(self._softmax(query)[0][c])

    def nearest(self, key: bytes, query: npt.NDArray[np.float32]) -> list[tuple[int, float]]:
        """The answer's prompts the fit read, nearest ``query`` first, with their
        cosines."""
        ids, vectors = self.members[key]
        sims = vectors @ query
        order = np.argsort(-sims, kind="stable")
        return [(int(ids[i]), float(sims[i])) for i in order]


@dataclass(frozen=True)
class Reading:
    """A model's probabilities for one query.

    Attributes:
        model: the model.
        p: per class (``model.keys``).
        top: the repeated answer of highest probability (its key).
        top_p: its probability.
    """

    model: Fitted
    p: npt.NDArray[np.float64]
    top: bytes
    top_p: float

    def of(self, key: bytes) -> float | None:
        """The probability of the answer ``key``; None where it is no class (stored
        once, or after the fit)."""
        c = self.model.column.get(key)
        return None if c is None or key == UNIQUE else float(self.p[c])


@dataclass(frozen=True)
class _Mark:
    """A table as a fit found it: the table, its changes and its entries then."""

    table: object
    changes: int
    entries: int


@dataclass
class _Job:
    """What a fit reads under the lock: the examples and their classes."""

    namespace: str
    keys: tuple[bytes, ...]
    ids: npt.NDArray[np.int64]
    vectors: npt.NDArray[np.float32]
    labels: npt.NDArray[np.intp]
    table: object
    changes: int
    entries: int


class AnswerModels:
    """Every namespace's answer model of one cache (see the module docstring). Its
    methods are called under the engine's lock, except the fit itself."""

    #: Fits run on a thread of their own (tests and ``semcache eval`` set False: a fit
    #: then runs in the get that starts it).
    background: bool = True

    def __init__(
        self, prototypes: Prototypes, lock: Callable[[], Any], is_open: Callable[[], bool]
    ) -> None:
        self._prototypes = prototypes
        self._lock = lock  # () -> the engine's lock, as it is now (a fork replaces it)
        self._open = is_open
        self._fitted: dict[str, Fitted] = {}
        self._fitting: set[str] = set()  # waiting or being fitted
        self._queue: list[str] = []  # waiting, first come first fitted
        self._worker = False  # a fitting thread runs
        #: Per namespace, the table (and its changes) of the last fit that failed: the
        #: next is tried once as much changed as a refit waits for.
        self._failed: dict[str, _Mark] = {}
        self.fits = 0  # completed, for stats()
        self.failed = 0

    def drop(self, namespace: str | None) -> None:
        """Forget the namespace's model (None: every namespace's): its entries were
        removed, or the store changed under them."""
        if namespace is None:
            self._fitted.clear()
            self._failed.clear()
        else:
            self._fitted.pop(namespace, None)
            self._failed.pop(namespace, None)

    def forked(self) -> None:
        """In a forked child: the parent's fitting thread is not here."""
        self._fitting.clear()
        self._queue.clear()
        self._worker = False

    def summary(self) -> dict[str, Any]:
        """For ``stats()``: per namespace with a model, its classes; fits done, failed."""
        return {
            "models": {ns: len(f.keys) for ns, f in sorted(self._fitted.items())},
            "fits": self.fits,
            "failed": self.failed,
        }

    def model(self, namespace: str) -> Fitted | None:
        """The namespace's model if one fits its table (else None), starting a fit
        where none is in or the table changed enough since (in the background, or
        here when :attr:`background` is False)."""
        table = self._prototypes.table(namespace)
        if table is None:
            self._fitted.pop(namespace, None)
            return None
        fitted = self._fitted.get(namespace)
        if fitted is not None and fitted.table is not table:
            fitted = None
            del self._fitted[namespace]
        since = fitted if fitted is not None else self._failed.get(namespace)
        due = (
            since is None
            or since.table is not table
            or (table.changes - since.changes >= max(1, since.entries // REFIT_SHARE))
        )
        if due and namespace not in self._fitting and table.repeated():
            self._start(namespace)
            fitted = self._fitted.get(namespace, fitted)
        return fitted

    def fit(self, namespace: str) -> Fitted | None:
        """Fit the namespace's model now, here (under the engine's lock): None where no
        answer is stored twice."""
        table = self._prototypes.table(namespace)
        if table is None:
            return None
        job = self._read(namespace, table)
        if job is None:
            self._fitted.pop(namespace, None)
            return None
        self._install(job, fit_softmax(job.vectors, job.labels, len(job.keys)))
        return self._fitted.get(namespace)

    # -- the fit --------------------------------------------------------------------------
    def _start(self, namespace: str) -> None:
        if not self.background:
            try:
                self.fit(namespace)
            except Exception:
                self._failure(namespace)
            return
        self._fitting.add(namespace)
        self._queue.append(namespace)
        if not self._worker:  # one thread fits the namespaces one after another
            self._worker = True
            threading.Thread(target=self._work, name="semcache-answer-model", daemon=True).start()

    def _work(self) -> None:
        lock = self._lock()
        while True:
            with lock:
                if not self._queue or not self._open():
                    self._worker = False
                    self._queue.clear()
                    self._fitting.clear()
                    return
                namespace = self._queue.pop(0)
            self._run(namespace, lock)

    def _run(self, namespace: str, lock: Any) -> None:
        try:
            with lock:
                table = self._prototypes.table(namespace) if self._open() else None
                job = None if table is None else self._read(namespace, table)
            if job is None:
                return
            weights = fit_softmax(job.vectors, job.labels, len(job.keys))
            with lock:
                if self._open():
                    self._install(job, weights)
        except Exception:
            with lock:
                self._failure(namespace)
        finally:
            with lock:
                self._fitting.discard(namespace)

    def _failure(self, namespace: str) -> None:
        """Note a fit that raised (logged): the next waits for changes."""
        self.failed += 1
        logger.exception("semcache: fitting the answer model failed")
        table = self._prototypes.table(namespace)
        if table is not None:
            self._failed[namespace] = _Mark(table, table.changes, len(table))

    def _read(self, namespace: str, table: Any) -> _Job | None:
        """The examples of a fit, read from the store: None where no answer is stored
        twice, or one is and nothing else is stored."""
        changes, entries = table.changes, len(table)
        groups = sorted(
            ((k, m) for k, m in table.members.items() if len(m) >= 2),
            key=lambda km: (-len(km[1]), km[0]),
        )[:MODEL_CLASSES]
        if not groups:
            return None
        single = sorted(i for k, m in table.members.items() if len(m) == 1 for i in m)
        if len(single) > MODEL_UNIQUE:
            single = [single[i] for i in np.linspace(0, len(single) - 1, MODEL_UNIQUE).astype(int)]
        keys = [k for k, _ in groups] + ([UNIQUE] if single else [])
        if len(keys) < 2:
            return None  # (one class: every query would be it, at probability 1)
        ids: list[int] = []
        labels: list[int] = []
        for c, (_, members) in enumerate(groups):
            chosen = sorted(members)[:MODEL_MEMBERS]
            ids += chosen
            labels += [c] * len(chosen)
        ids += single
        labels += [len(groups)] * len(single)
        here, rows = self._prototypes.vectors(ids)
        if not here:
            return None
        where = {i: r for r, i in enumerate(here)}
        keep = [n for n, i in enumerate(ids) if i in where]
        vectors = rows[[where[ids[n]] for n in keep]].astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.where(norms > 0, norms, 1.0)
        return _Job(
            namespace=namespace,
            keys=tuple(keys),
            ids=np.asarray([ids[n] for n in keep], dtype=np.int64),
            vectors=vectors,
            labels=np.asarray([labels[n] for n in keep], dtype=np.intp),
            table=table,
            changes=changes,
            entries=entries,
        )

    def _install(
        self, job: _Job, weights: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]
    ) -> None:
        if self._prototypes.table(job.namespace) is not job.table:
            return  # read again meanwhile: the next get starts a fit on the new table
        members: dict[bytes, tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]] = {}
        for c, key in enumerate(job.keys):
            if key == UNIQUE:
                continue
            rows = job.labels == c
            members[key] = (job.ids[rows], job.vectors[rows])
        self._failed.pop(job.namespace, None)
        self._fitted[job.namespace] = Fitted(
            keys=job.keys,
            weights=weights[0],
            bias=weights[1],
            members=members,
            table=job.table,
            changes=job.changes,
            entries=job.entries,
            column={key: c for c, key in enumerate(job.keys)},
        )
        self.fits += 1
