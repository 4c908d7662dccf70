"""The error budget's research replay on a cluster set's stream
(:func:`budget_stream_replay`): the policy the cache runs with ``error_budget``, driven
outside the cache, where each signal can be switched off (docs/quality.md, "An error
budget the cache keeps"; ``semcache.quality._cache_replay`` runs the cache itself)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import TextIO

import numpy as np

from .._agreement import Agreement, answer_digest
from .._answer_model import AnswerModels
from .._budget_policy import EntryRecord, ErrorBudget
from .._cache import SemanticCache, engine_of
from .._engine import Engine
from .._guard_evidence import GuardParts, guard_parts, overruled, rejecting
from .._progress import ProgressCallback, as_progress
from .._prototypes import Prototypes
from .._risk_model import RiskModel
from .._risk_model import features as risk_features
from .._types import Hit
from ._clusters import Judge, StreamPoint, StreamVectors

__all__ = ["BudgetTrace", "budget_stream_replay", "hit_features"]


@dataclass(frozen=True, slots=True)
class BudgetTrace:
    """One decision of :func:`budget_stream_replay` on a get with a candidate
    (``trace=``): what the budget estimated and what the candidate's answer was.

    Attributes:
        get: the get's position in the stream.
        action: ``"serve"``, ``"verify"`` or ``"miss"``.
        evidence: the candidate's evidence class (:data:`~semcache._agreement.ALONE`...).
        similarity: the candidate's similarity.
        risk: the estimate the budget decided on (its table moved by the entry's
            record: :meth:`~semcache._budget_policy.ErrorBudget.risk`).
        table_risk: the table's estimate alone, at the same moment.
        correct: whether the candidate's answer was right (served or not).
    """

    get: int
    action: str
    evidence: int
    similarity: float
    risk: float
    table_risk: float
    correct: bool


class _Collector:
    """The budget replay's ``confidence_fn``: notes the first ``k`` candidates (nearest
    first) and rejects them, then stops the search."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.hits: list[Hit] = []

    def __call__(self, query: str, hit: Hit) -> float:
        if len(self.hits) >= self.k:
            return 1.0  # stop the search (the hit it returns is not used)
        self.hits.append(hit)
        return -math.inf


def _overruled(eng: Engine, parts: GuardParts, query: str, head: list[Hit], hit: Hit) -> bool:
    """Whether the ``head`` candidates overrule the built-in guards that reject ``hit``
    (one of them), as the cache's do (:mod:`semcache._guard_evidence`)."""
    checks = rejecting(parts, query, hit)
    if not checks or len(head) < 2:
        return False
    rows = eng.store.get_by_ids([int(h.entry_id or 0) for h in head], vectors=True)
    dtype = eng.indexes.dtype
    blobs = [rows[int(h.entry_id or 0)].vector for h in head]
    vectors = np.array([np.frombuffer(b or b"", dtype=dtype).astype(np.float32) for b in blobs])
    keys = [answer_digest(h.response) for h in head]
    texts = [h.query for h in head]
    return overruled(
        checks, head.index(hit), texts, keys, (vectors @ vectors.T).tolist(), hit.similarity
    )


def hit_features(
    query: str,
    found: Sequence[Hit],
    served: int,
    ev: Agreement,
    record: EntryRecord | None,
    table: float,
    moved: float,
    floor: float,
    idf: dict[str, float] | None = None,
    answer_p: float | None = None,
) -> list[float]:
    """The risk model's features (:func:`semcache._risk_model.features`) of the
    candidate ``found[served]``, from the replay's hits (answers keyed by
    :func:`~semcache._agreement.answer_digest`); ``answer_p``: the answer model's
    probability of its answer (None: unknown, or no model)."""
    return risk_features(
        query,
        [h.query for h in found],
        [answer_digest(h.response) for h in found],
        [h.similarity for h in found],
        served,
        ev,
        record,
        table,
        moved,
        floor=floor,
        idf=idf,
        answer_p=answer_p,
    )


def budget_stream_replay(
    data: StreamVectors,
    budget: float,
    *,
    k: int = 8,
    floor: float = 0.5,
    guard: Judge | None = None,
    use_agreement: bool = True,
    use_records: bool = True,
    vote: bool = True,
    veto: bool = True,
    label: str | None = None,
    seed: int = 0,
    policy: ErrorBudget | None = None,
    progress: ProgressCallback | TextIO | None = None,
    trace: list[BudgetTrace] | None = None,
    inspect: Callable[[str, Sequence[Hit], int | None], None] | None = None,
    answer_model: bool = True,
) -> StreamPoint:
    """The stream replay with an :class:`~semcache._budget_policy.ErrorBudget`
    deciding each get, the way ``get_or_put`` with ``error_budget=budget`` will.

    Each get reads the first ``k`` candidates at or above ``floor`` (nearest first,
    through a recording ``confidence_fn``); the candidate to serve is the nearest of
    the answer they vote for (``vote``) if the ``guard`` accepts it, else the next the
    guard accepts, and the others are its agreement evidence. The budget decides:
    serve (a hit), verify (an LLM call: the fresh answer is served and put, and the
    budget observes whether the stored one was right) or miss (an LLM call, put, and the
    same observation for free). Exact repeats are served by the exact layer.

    Args:
        data: the texts, clusters and vectors in stream order.
        budget: wrong answers per get allowed.
        k: candidates read per get.
        floor: the lowest similarity considered.
        guard: ``guard(query, hit) -> bool`` a served candidate must pass (None: none);
            its built-in parts yield to the candidates' evidence as the cache's do
            (:mod:`semcache._guard_evidence`).
        use_agreement: False: every candidate counts as alone (the table is then one
            curve of similarity), to measure what agreement adds.
        use_records: False: no per-entry records, to measure what they add.
        vote: the candidate to serve is the nearest of the answer the ``k`` nearest
            vote for (similarities summed; :func:`~semcache._agreement.voted`);
            False: the nearest the guard accepts.
        veto: the prototype veto, as the cache applies it with a budget
            (:meth:`~semcache._prototypes.Prototypes.declined`, over every answer
            stored so far): a candidate it declines is not served, but still votes and
            counts as evidence.
        label: names the result (default ``"default, budget B"``).
        seed: the budget's verification draws.
        policy: the budget to run (default: a new ``ErrorBudget(budget, floor=floor,
            seed=seed, model=RiskModel())``, as the cache's). With a model, the
            candidate's features are given to it (:func:`~semcache._risk_model.features`,
            the answers keyed by :func:`~semcache._agreement.answer_digest`) and it is
            refitted when due, as the cache does.
        progress: a :data:`~semcache.ProgressCallback` or a stream (None: silent).
        trace: a list to append a :class:`BudgetTrace` to for each get with a
            candidate (None: none kept).
        inspect: ``inspect(query, candidates, served)``, called at each get that is
            not an exact repeat before the budget decides: the candidates read (the
            voted one first), and the index of the one the budget judges (None: the
            guards or the veto declined them all). For research policies that read
            more than the :class:`~semcache._agreement.Agreement` (None: not called).
        answer_model: the answer model (``semcache._answer_model``, fitted on the
            entries stored so far and refitted when due, in the get, as the cache's
            is under a budget) gives the policy's model the features of its reading,
            the probability of the judged candidate's answer and whether it knows it
            (False: both 0 throughout, as in a cache without the model).

    Raises:
        ValueError: ``answer_model`` without ``veto`` (the model reads the veto's
            tables).
    """
    from .._agreement import ALONE, Candidate, agreement, same_answer, voted

    label = label or f"default, budget {budget}"
    report = as_progress(progress)
    if policy is None:
        policy = ErrorBudget(budget, floor=floor, seed=seed, model=RiskModel())
    collector = _Collector(k)
    cache = SemanticCache(
        similarity_threshold=floor,
        confidence_fn=collector,
        min_confidence=0.5,
        index_backend="flat",
        guards=None,
        answer_support=False,  # the candidates collected in similarity order
    )
    eng = engine_of(cache)
    prototypes = None
    if veto:  # kept in step with the cache's puts, as a cache's own are
        prototypes = Prototypes(eng.store, eng.indexes.decode, answer_digest, eng.clock)
        eng.prototypes = eng.indexes.prototypes = prototypes
    models = None
    if answer_model:
        if prototypes is None:
            raise ValueError("answer_model needs veto=True")
        models = AnswerModels(prototypes, lambda: eng.lock, lambda: True)
        models.background = False
    records: dict[str, EntryRecord] = {}
    parts = guard_parts(guard) or ()
    n = len(data.texts)
    hits = wrong = exact = 0
    times: list[float] = []
    try:
        for i, (text, cluster, vector) in enumerate(
            zip(data.texts, data.clusters, data.vectors, strict=True)
        ):
            if report is not None and i % 512 == 0:
                report(label, i, n)
            t0 = perf_counter()
            collector.hits = []
            hit = cache.get(text, embedding=vector)
            if hit is not None and hit.layer == "exact":
                times.append(perf_counter() - t0)
                policy.decide(None)  # a get that cannot be wrong by the budget's count
                hits += 1
                exact += 1
                wrong += hit.response != cluster
                continue
            found = head = collector.hits
            if vote and len(found) > 1:
                top = voted([Candidate(h.similarity, h.response) for h in found], k=k)
                found = [found[top], *found[:top], *found[top + 1 :]]
            vetoed = [False] * len(found)
            if prototypes is not None and found:
                unit = eng.unit_rows(vector, 1, "embedding")[0]
                keys = [answer_digest(h.response) for h in found]
                sims = [h.similarity for h in found]
                vetoed = prototypes.declined("default", unit, keys, sims) or vetoed
            served = next(
                (
                    j
                    for j, h in enumerate(found)
                    if not vetoed[j]
                    and (guard is None or guard(text, h) or _overruled(eng, parts, text, head, h))
                ),
                None,
            )
            ev: Agreement | None = None
            record: EntryRecord | None = None
            if served is not None:
                order = [found[served], *found[:served], *found[served + 1 :]]
                ev = agreement(
                    [Candidate(h.similarity, h.response) for h in order], k=k, budget_us=1e9
                )
                if not use_agreement:
                    ev = Agreement(ev.similarity, 0, 1, None, ALONE)
                if use_records:
                    record = records.setdefault(found[served].query, EntryRecord())
            if inspect is not None:
                inspect(text, found, served)
            x = None
            if policy.model is not None and ev is not None and served is not None:
                table, moved = policy.table_risks(ev, record)
                p = None
                if models is not None:
                    fitted = models.model("default")
                    if fitted is not None:
                        unit = eng.unit_rows(vector, 1, "embedding")[0]
                        p = fitted.probability(unit, answer_digest(found[served].response))
                x = hit_features(text, found, served, ev, record, table, moved, floor, None, p)
            decision = policy.decide(ev, record, x)
            times.append(perf_counter() - t0)
            if trace is not None and ev is not None and served is not None:
                trace.append(
                    BudgetTrace(
                        i,
                        decision.action,
                        ev.evidence,
                        ev.similarity,
                        policy.risk(ev, record, x)[0],
                        policy.table_risk(ev, None)[0],
                        same_answer(found[served].response, cluster),
                    )
                )
            if decision.action == "serve":
                assert served is not None
                hits += 1
                wrong += found[served].response != cluster
                continue
            # an LLM call (a miss or a verification): learn from its answer, and put it
            if ev is not None and served is not None:
                correct = same_answer(found[served].response, cluster)
                policy.observe(ev, record, correct, decision, x)
                if policy.model is not None and policy.model.due():
                    policy.model.refit()
                if use_records:
                    for j, h in enumerate(found):
                        if j != served:
                            records.setdefault(h.query, EntryRecord()).add(
                                h.similarity, same_answer(h.response, cluster)
                            )
            cache.put(text, cluster, embedding=vector)
        if report is not None:
            report(label, n, n)
    finally:
        cache.close()
    return StreamPoint(
        label=label,
        min_similarity=floor,
        guards=(),
        gets=n,
        hits=hits,
        wrong=wrong,
        exact_hits=exact,
        llm_calls=n - hits,
        hit_rate=hits / n if n else math.nan,
        error_rate=wrong / n if n else math.nan,
        p50_get_us=statistics.median(times) * 1e6 if times else math.nan,
        verifications=policy.verifications,
    )
