"""A get: the exact layer, then the semantic layer, as one operation.

:func:`start_get` is the get's first step (checks, then the exact layer), run under the
engine's lock. It returns the answer (a :class:`Hit` or None) when the exact layer
settles it, or the generator that continues: embed the query if needed (yielding its
text to the driver, outside the lock) and search the namespace's index. The drivers in
:mod:`semcache._drive` run both; :func:`get_steps` is the whole get as one generator
(for get_or_put).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Generator
from time import perf_counter
from types import GeneratorType
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt

from . import _answer_memo
from ._accept import accept, confidence_of, head_evidence
from ._agreement import (
    SUPPORT_FLOOR,
    SUPPORT_K,
    favoured_bound,
    favoured_scores,
    raised_bound,
    standing_scores,
    support_scores,
)
from ._answer_model import Reading, combined
from ._answer_steps import fill_steps
from ._budgets import BUDGET_K, Judgement
from ._candidates import checked_candidates, entries_by_id, own_score
from ._checks import check_flag
from ._drive import Unlocked
from ._engine import Engine
from ._errors import CacheClosedError, InvalidInputError, QueryTooLargeError, StoreUnavailableError
from ._index import IdArray, ScoreArray, SearchIndex
from ._index._graph import GraphReader as Reader
from ._ownership import Lifecycle
from ._store import StoredEntry
from ._text import check_size
from ._types import Hit, Layer, MissReason

__all__ = ["GetSteps", "get_steps", "make_hit", "start_get"]

logger = logging.getLogger("semcache")

#: Candidates fetched per semantic lookup; widened when candidates turn out stale.
_CANDIDATES: Final = 4
_OPEN: Final = Lifecycle.OPEN

#: The rest of a get after its first step: yields texts to embed, returns the answer.
GetSteps = Generator[Any, Any, Hit | None]


def make_hit(entry: StoredEntry, similarity: float, layer: Layer, confidence: float | None) -> Hit:
    """The one place a :class:`Hit` is made from a stored entry."""
    return Hit(
        entry.response,
        similarity,
        layer,
        entry.query,
        entry.namespace,
        None if entry.metadata is None else json.loads(entry.metadata),
        entry.created_at,
        entry.expires_at,
        confidence,
        None,
        entry.id,
    )


def get_steps(
    eng: Engine,
    query: str,
    embedding: npt.ArrayLike | None,
    namespace: str,
    bypass: bool,
    judged: list[Judgement] | None = None,
) -> GetSteps:
    """The whole of a get as one generator; its first step runs :func:`start_get`
    (``judged``: see there)."""
    first = start_get(eng, query, embedding, namespace, bypass, judged)
    if type(first) is GeneratorType:
        return (yield from cast(GetSteps, first))
    return first  # type: ignore[return-value]


def start_get(
    eng: Engine,
    query: str,
    embedding: npt.ArrayLike | None,
    namespace: str,
    bypass: bool,
    judged: list[Judgement] | None = None,
) -> Hit | GetSteps | None:
    """A get's first step, under the lock: checks, then the exact layer.

    Returns the answer (a Hit or None), or the generator of the semantic layer. With
    an error budget, a semantic layer that does not serve appends what its candidates
    said (a :class:`~semcache._budgets.Judgement`) to ``judged`` if given (get_or_put
    learns from it).
    """
    t0 = perf_counter()
    if eng.owner.state is not _OPEN:
        eng.check_open()
    ns = namespace if namespace in eng.namespaces_ok else eng.check_ns(namespace)
    # A query in the memo was checked when its key was computed (its size and text
    # cannot have changed: same string, same limit), so only a new one is checked.
    memo = eng.key_memo
    per_ns = memo.by_ns.get(ns)
    key = per_ns.get(query) if per_ns is not None and type(query) is str else None
    if key is None:
        check_size(query, "query", eng.max_query, QueryTooLargeError)
    vector = None if embedding is None else eng.unit_rows(embedding, 1, "embedding")
    if bypass is not False and check_flag(bypass, "bypass", InvalidInputError):
        return miss(eng, ns, "bypass", None, t0)
    now = eng.clock()
    computed = key is None
    if key is None:
        key = memo.compute(ns, query)
    hot = eng.hot.entries
    entry = hot.get(key)
    if entry is not None:
        hot.move_to_end(key)
    else:
        try:
            kf = eng.key_filter
            entry = (
                None if kf is not None and not kf.may_contain(key) else eng.store.get_by_key(key)
            )
        except StoreUnavailableError:
            logger.warning("semcache: store unreachable on get; answering a miss")
            return miss(eng, ns, "store_unavailable", None, t0)
        if entry is not None and eng.hot.capacity:
            eng.hot.remember(key, entry)
    reason: MissReason | None = None
    if entry is not None:
        if computed:  # keep it for the next ask
            memo.remember(ns, query, key)
        expires = entry.expires_at
        if expires is not None and expires <= now:
            reason = "expired"
        else:
            meta = entry.metadata
            hit = Hit(
                entry.response,
                1.0,
                "exact",
                entry.query,
                entry.namespace,
                None if meta is None else json.loads(meta),
                entry.created_at,
                expires,
                1.0,
                None,
                entry.id,
            )
            if eng.validator is None or accept(eng, query, hit):
                # found(), inline (every exact hit): the recency record and the count.
                recency = eng.recency
                pending = recency.pending
                pending[entry.id] = now
                if len(pending) >= recency.limit:
                    try:
                        eng.flush_touches()
                    except StoreUnavailableError:  # kept pending: the next flush retries
                        logger.warning("semcache: store unreachable; recency not written yet")
                metrics = eng.metrics
                metrics.hits["exact"] += 1
                if metrics.hook is not None:
                    metrics.emit_hit(hit, t0)
                if eng.budgets is not None:
                    eng.budgets.exact(ns)
                return hit
            reason = "validator"
    try:
        if eng.shared or eng.indexes.suspect:
            eng.indexes.maybe_sync(now)
        if vector is None and eng.embedder is None:  # nothing to search with
            return _nothing(eng, ns, reason, t0)
        index = eng.indexes.of(ns)
        if index is None or not len(index):
            return _nothing(eng, ns, reason, t0)
    except StoreUnavailableError:
        return miss(eng, ns, "store_unavailable", None, t0)
    seen = {entry.id} if entry is not None else set()
    return _semantic(eng, query, ns, vector, reason, seen, now, t0, judged)


def _semantic(
    eng: Engine,
    query: str,
    ns: str,
    vector: npt.NDArray[np.float32] | None,
    reason: MissReason | None,
    seen: set[int],
    now: float,
    t0: float,
    judged: list[Judgement] | None = None,
) -> GetSteps:
    """A get's semantic layer: embed the query if needed (outside the lock), search."""
    if vector is None:
        try:
            raw = yield (query,)
            eng.check_open()
            vector = eng.unit_rows(raw, 1, "embedder output", from_embedder=True)
        except CacheClosedError:
            raise
        except Exception:
            logger.exception("semcache: embedder failed on get; answering a miss")
            return miss(eng, ns, "embedder_error", None, t0)
        eng.keep_query_vector(query, vector)
    try:
        index = eng.indexes.of(ns)  # the lock may have been released meanwhile
        if index is None or not len(index):
            return _nothing(eng, ns, reason, t0)
        first = None
        reader = _reader(index)
        budgeted = eng.budgets is not None
        if reader is not None:
            k = BUDGET_K if budgeted else SUPPORT_K if eng.answer_support else _CANDIDATES
            scan = _Scan(reader, vector[0], min(k, len(index)))
            first = yield scan  # scanned outside the lock (see _Scan)
            eng.check_open()
            if eng.indexes.of(ns) is not index:  # cleared or rebuilt meanwhile
                index, first = eng.indexes.of(ns), None
                if index is None or not len(index):
                    return _nothing(eng, ns, reason, t0)
        if budgeted:
            return (
                yield from _judge(
                    eng, query, vector[0], ns, index, reason, seen, now, t0, first, judged
                )
            )
        return _search(eng, query, vector[0], ns, index, reason, seen, now, t0, first)
    except StoreUnavailableError:
        return miss(eng, ns, "store_unavailable", None, t0)


#: Indexes with at least this many vector elements (rows x dim) are scanned outside the
#: engine's lock; a smaller scan costs less than the extra step.
UNLOCKED_SCAN_MIN = 1 << 16
#: Tests: called outside the lock between the unlocked scan and the step that checks
#: its candidates (to make another thread change the index there, deterministically).
scan_hook: Callable[[], object] | None = None


class _Scan(Unlocked):
    """A search over a read view of a flat index (:meth:`FlatIndex.reader`) or an
    hnswlib graph (:meth:`HnswlibIndex.reader`: None when it cannot answer alone), run
    by the driver outside the engine's lock (the native kernel and hnswlib release the
    GIL, so other threads' gets, puts and scans run meanwhile). The step after it runs
    under the lock again and checks the result against the index as it is then: the
    index replaced (clear, rebuild) or any id of the result removed meanwhile means a
    search again under the lock, as if there had been no scan outside it. Otherwise every id still
    names the entry (and vector) it named when scanned (ids are never reissued within
    one index object; a store that reissues them is resynced into new ones), and its
    candidates are checked as any others are (:func:`own_score`)."""

    __slots__ = ("k", "reader", "vector")

    def __init__(self, reader: Reader, vector: npt.NDArray[np.float32], k: int) -> None:
        self.reader, self.vector, self.k = reader, vector, k

    def run(self) -> tuple[IdArray, ScoreArray] | None:
        out = self.reader(self.vector, self.k)
        hook = scan_hook
        if hook is not None:
            hook()
        return out


def _reader(index: SearchIndex) -> Reader | None:
    """The index's read view to scan outside the lock, if it has one (flat, hnswlib,
    auto while either) and is large enough for that to pay; None otherwise (faiss is
    searched under the lock: see docs/performance.md)."""
    if len(index) * index.dim < UNLOCKED_SCAN_MIN:
        return None
    make = getattr(index, "reader", None)
    return None if make is None else cast("Reader | None", make())


def _runner_up(ids: npt.NDArray[Any], sims: npt.NDArray[Any], entry_id: int) -> float | None:
    """The similarity of the best search result other than ``entry_id`` (sorted results)."""
    if len(sims) < 2:
        return None
    other = sims[1] if int(ids[0]) == entry_id else sims[0]
    return max(-1.0, min(1.0, float(other)))


def _search(
    eng: Engine,
    query: str,
    vector: npt.NDArray[np.float32],
    ns: str,
    index: SearchIndex,
    reason: MissReason | None,
    seen: set[int],
    now: float,
    t0: float,
    first: tuple[IdArray, ScoreArray] | None = None,
) -> Hit | None:
    """The semantic search and its candidates' checks; ``first``: the first search's
    result if it ran outside the lock (:class:`_Scan`), against the index as it was.

    With ``answer_support`` the first search's candidates are judged by their support
    scores (:func:`_supported`); if none is served and none was declined by its score
    (all were gone, or rejected by confidence_fn, the guards or the validator), the
    candidates beyond them are searched and checked by their cosine as without it
    (those already read are not tried again)."""
    threshold = eng.threshold
    support = eng.answer_support
    k = min(SUPPORT_K if support else _CANDIDATES, len(index))
    best: float | None = None
    if first is not None and not all(i in index for i in first[0].tolist()):
        first = None  # a result removed since: search again, under the lock
    while True:
        if first is None:
            ids, sims = index.search(vector, k)
        else:
            (ids, sims), first = first, None
        if best is None and len(sims):
            best = min(1.0, float(sims[0]))
        candidates = [
            (i, s) for i, s in zip(ids.tolist(), sims.tolist(), strict=True) if i not in seen
        ]
        above = [(i, s) for i, s in candidates if s >= threshold]
        if support:
            support = False
            judged_ = _supported(eng, query, vector, ns, index, ids, sims, candidates, seen, now)
            if judged_ is None:  # no candidate could reach the threshold: nothing read
                if candidates:
                    reason = reason or "below_threshold"
                break
            hit, why, removed, declined = judged_
            if hit is not None:
                return found(eng, cast(int, hit.entry_id), hit, now, t0)
            reason = reason or why
            # a candidate the support score declined makes its neighbourhood contested:
            # the candidates beyond it are not served by their cosine either
            if declined or len(above) < len(candidates) or k >= len(index) + removed:
                break
            k = min(k * 4, len(index))
            if not len(index):
                break
            continue
        if not above:
            if candidates:
                reason = reason or "below_threshold"
            break
        rows, fetched = entries_by_id(eng, [i for i, _ in above])
        stale: list[int] = []
        for entry_id, sim in above:
            seen.add(entry_id)
            entry = rows.get(entry_id)
            if entry is None:  # deleted by another process; the index lags
                stale.append(entry_id)
                continue
            score = own_score(eng, entry, ns, vector, sim, entry_id in fetched)
            if score is None:
                stale.append(entry_id)  # the id now names another entry
                continue
            if score < threshold:  # the index scored a row the store no longer has
                reason = reason or "below_threshold"
                continue
            sim = score
            if entry_id in fetched and eng.hot.capacity:
                eng.hot.remember(entry.key, entry)
            if entry.expires_at is not None and entry.expires_at <= now:
                stale.append(entry_id)  # expiry is final: tombstone in memory only
                reason = reason or "expired"
                continue
            hit = make_hit(entry, max(-1.0, min(1.0, sim)), "semantic", None)
            hit.runner_up = _runner_up(ids, sims, entry_id)
            if eng.confidence_fn is not None:
                confidence = confidence_of(eng, query, hit)
                if confidence is None or confidence < eng.options.min_confidence:
                    reason = reason or "confidence"
                    continue
                hit.confidence = confidence
            if not accept(eng, query, hit):
                reason = reason or "validator"
                continue
            if stale:
                index.remove(stale)
            return found(eng, entry_id, hit, now, t0)
        if stale:
            index.remove(stale)
        # Every candidate above the threshold was rejected. Look further only if the
        # next ones could still be above it.
        if len(above) < len(candidates) or k >= len(index) + len(stale):
            break
        k = min(k * 4, len(index))
        if not len(index):
            break
    return miss(eng, ns, reason or "no_candidate", best, t0)


def _judge(
    eng: Engine,
    query: str,
    vector: npt.NDArray[np.float32],
    ns: str,
    index: SearchIndex,
    reason: MissReason | None,
    seen: set[int],
    now: float,
    t0: float,
    first: tuple[IdArray, ScoreArray] | None,
    judged: list[Judgement] | None,
) -> GetSteps:
    """The semantic layer with an error budget: one search for the
    :data:`~semcache._budgets.BUDGET_K` nearest candidates at or above the budget's
    floor (the threshold is the budget's business), read with their records, checked
    as :func:`_search` checks them (own score, namespace, expiry), then
    :meth:`Budgets.judge`: a hit on "serve", else a miss (reason ``"budget"`` when a
    candidate was there) whose :class:`Judgement` goes to ``judged``. With
    ``answer_similarity`` the candidates' answer vectors are read from their records
    (those without one embedded first, yielding their texts: :func:`fill_steps`)."""
    budgets = eng.budgets
    assert budgets is not None
    floor = budgets.floor
    if first is not None and not all(i in index for i in first[0].tolist()):
        first = None  # a result removed since: search again, under the lock
    ids, sims = first if first is not None else index.search(vector, min(BUDGET_K, len(index)))
    best = min(1.0, float(sims[0])) if len(sims) else None
    above = [
        (i, s)
        for i, s in zip(ids.tolist(), sims.tolist(), strict=True)
        if i not in seen and s >= floor
    ]
    found_, expired, _ = checked_candidates(eng, ns, vector, index, above, now, floor)
    if expired:
        reason = reason or "expired"
    found_.sort(key=lambda c: -c[1])
    vetoed: set[int] = set()
    head = [e for e, _ in found_]
    keys: list[bytes] | None = None
    if eng.prototypes is not None and found_:  # the prototype veto (the hard limit of the rivals)
        keys = _answer_memo.answer_keys(eng, head)
        declined = eng.prototypes.declined(ns, vector, keys, [s for _, s in found_])
        if declined is not None:
            vetoed = {e.id for e, no in zip(head, declined, strict=True) if no}
    # (the guards yield to the head's evidence as without a budget, where answer
    # support is on: semcache/_guard_evidence.py)
    yields = eng.guards_yield and eng.options.answer_support
    evidence = head_evidence(eng, head, keys) if yields else None

    def serve(entry: StoredEntry, sim: float) -> Hit | None:
        if entry.id in vetoed:
            return None
        hit = make_hit(entry, sim, "semantic", None)
        if eng.confidence_fn is not None:
            confidence = confidence_of(eng, query, hit)
            if confidence is None or confidence < eng.options.min_confidence:
                return None
            hit.confidence = confidence
        return hit if accept(eng, query, hit, evidence) else None

    records = answers = None
    if budgets.similar is not None and found_:
        entries = [e for e, _ in found_]
        records, answers, missing = budgets.answers_of(entries, eng.indexes.dim)
        if missing:  # put before the option was on: embedded now, once
            answers.update((yield from fill_steps(eng, budgets, ns, missing, records)))
    judgement = budgets.judge(ns, found_, serve, records, answers, query, keys, vector)
    hit = judgement.hit
    if judgement.decision.action == "serve" and hit is not None:
        hit.runner_up = next((s for e, s in found_ if e.id != hit.entry_id), None)
        return found(eng, entry_id=judgement.candidates[0][0].id, hit=hit, now=now, t0=t0)
    if judged is not None:
        judged.append(judgement)
    if hit is not None or found_:
        rejected: MissReason = "support" if len(vetoed) == len(found_) else "validator"
        reason = "budget" if hit is not None else reason or rejected
    return miss(eng, ns, reason or ("below_threshold" if len(sims) else "no_candidate"), best, t0)


def _supported(
    eng: Engine,
    query: str,
    vector: npt.NDArray[np.float32],
    ns: str,
    index: SearchIndex,
    ids: IdArray,
    sims: ScoreArray,
    candidates: list[tuple[int, float]],
    seen: set[int],
    now: float,
) -> tuple[Hit | None, MissReason | None, int, bool] | None:
    """``answer_support``: the candidates of the first search (at most
    :data:`~semcache._agreement.SUPPORT_K`, nearest first, ``seen`` left out) judged by
    their support scores (:func:`~semcache._agreement.support_scores`); ``ids`` and
    ``sims``: that search's result (for ``Hit.runner_up``).

    Nothing is read when no candidate's score can reach the threshold: a score is at
    most what it would be with every other candidate agreeing with it, raised by the
    largest lead a favoured answer can have
    (:func:`~semcache._agreement.favoured_bound`), known from the index's scores alone.
    Otherwise the candidates that can count (above the floor) or be served are read
    and checked (:func:`checked_candidates`) and scored from their own similarities and answers;
    an expired or deleted one neither supports nor opposes. Where an answer repeats
    among those that count, the favoured answer decides
    (:func:`~semcache._agreement.favoured_scores`, from the candidates' vectors:
    :func:`~semcache._answer_memo.candidate_vectors`): the other answers' candidates
    are declined, and the favoured one's raised by its lead when it repeats (where
    they share one answer, only once none that reaches the threshold without it was
    served: the lead raises all alike and leaves their order). The rival answers'
    prototypes (:meth:`~semcache._prototypes.Prototypes.standing`, when some score
    reaches the threshold) lower each score, and decline those they outweigh. Those
    whose score reaches the threshold are tried best score first (ties: the higher
    similarity) through confidence_fn and the guards and validator; the first that
    passes is served at its own similarity. Where none is and the namespace has an
    answer model (``semcache._answer_model``), it raises the candidates whose answer it
    knows and tries its own answer from beyond them (:func:`_modelled`); the bounds
    above then read the support score it needs for that, ``2 * threshold - 1``. Every
    candidate read joins ``seen``.

    Returns None when no candidate could reach the threshold (nothing was read); else
    the hit, or None and the miss's reason (that of the best candidate rejected; None:
    every candidate read was gone), how many ids were removed from the index, and
    whether a candidate whose cosine reached the threshold was declined by its support
    score (then the search is not widened: :func:`_search`).
    """
    threshold = eng.threshold
    if not candidates:
        return None
    near_ = [s for _, s in candidates]
    models = eng.answer_models
    model = None if models is None else models.model(ns)
    # the support score a candidate needs: with the answer model, less (its score can
    # be raised to the mean of it and its answer's, at most 1; the answer from beyond
    # the candidates is nearer the query than none of them)
    needed = threshold if model is None else min(threshold, 2.0 * threshold - 1.0)
    # (the bound is at least the highest similarity: it is worked out only when no
    # candidate reaches the threshold by its similarity alone)
    if max(near_) < needed and favoured_bound(near_) < needed:
        return None
    # those that count (at or above the floor) and those a cosine alone could serve (a
    # threshold below the floor); one below the floor is scored at its similarity
    read = [c for c in candidates if c[1] >= SUPPORT_FLOOR or c[1] >= threshold]
    seen.update(i for i, _ in read)
    live, expired, removed = checked_candidates(eng, ns, vector, index, read, now, None)
    scores = [s for _, s in live]
    counted = [j for j, (_, s) in enumerate(live) if s >= SUPPORT_FLOOR]
    lead: Callable[[], list[float] | None] | None = None  # the lead, when still to apply
    entries = [live[j][0] for j in counted]
    near = [live[j][1] for j in counted]
    keys = _answer_memo.answer_keys(eng, entries) if counted else []
    if len(counted) > 1:  # (one alone: its similarity, no answer to compare)
        moved = support_scores(near, keys)

        def favoured() -> list[float] | None:
            vectors = _answer_memo.candidate_vectors(eng, entries)
            if vectors is None:
                return None
            return favoured_scores(moved, near, keys, (vectors @ vectors.T).tolist())

        # where an answer repeats, the favoured answer (and its lead) can still
        # decide; no score can pass its bound from these support scores
        distinct = len(set(keys))
        if distinct < len(keys) and raised_bound(max(moved)) >= needed:
            if distinct == 1 and max(moved) >= threshold:
                # one answer: its lead raises every score by one factor, so the order
                # stays; it can matter only if none that reaches the threshold now is
                # served (then it is applied, and those it lifts are tried)
                lead = favoured
            else:
                moved = favoured() or moved
        for j, score in zip(counted, moved, strict=True):
            scores[j] = score
    prototypes = eng.prototypes
    if prototypes is not None and counted and (lead is not None or max(scores) >= needed):
        # the rival answers' prototypes: each candidate's score lowered by its
        # answer's standing over them, or declined where they outweigh it
        standing = prototypes.standing(ns, vector, keys, near)
        if standing is not None and min(standing) < 1.0:
            # (not into ``moved``: the lead, if it waits, is worked out from those)
            stood = standing_scores([scores[j] for j in counted], standing)
            for j, score in zip(counted, stood, strict=True):
                scores[j] = score
            if lead is not None:  # (it waits only where all share one answer)
                lead = None if 0.0 in standing else _with_rivals(lead, standing)
    wide = -1  # the answer model's answer from beyond the candidates: its place in live
    order = sorted(range(len(live)), key=lambda j: (-scores[j], -live[j][1]))
    evidence = head_evidence(eng, entries, keys) if eng.guards_yield else None
    # The reason of the best candidate rejected: those tried (best score first), an
    # expired one at its similarity, and those whose score fell short ("support" if a
    # cosine alone would have served one of them).
    rejected: list[tuple[int, MissReason]] = []
    tried: set[int] = set()
    while True:
        short: list[int] = []
        for j in order:
            if j in tried:
                continue
            if scores[j] < threshold:
                short.append(j)
                continue
            tried.add(j)
            entry, sim = live[j]
            hit = make_hit(entry, sim, "semantic", None)
            hit.runner_up, hit.score = _runner_up(ids, sims, entry.id), scores[j]
            if eng.confidence_fn is not None:
                confidence = confidence_of(eng, query, hit)
                if confidence is None or confidence < eng.options.min_confidence:
                    rejected.append((j, "confidence"))
                    continue
                hit.confidence = confidence
            if accept(eng, query, hit, None if j == wide else evidence):
                return hit, None, removed, False
            rejected.append((j, "validator"))
        raised = None if lead is None else lead()
        lead = None
        if raised is not None:
            for j, score in zip(counted, raised, strict=True):
                scores[j] = score
            continue
        if model is None:
            break
        # none served by its support score: the answer model raises those whose answer
        # it knows, tried in the same order, then its answer from beyond them
        reading = model.read(vector)
        wide = _modelled(eng, ns, vector, index, reading, (keys, counted, live, scores), seen, now)
        if wide >= 0:
            order.append(wide)
        model = None
    why: list[tuple[float, MissReason]] = [(s, "expired") for s in expired if s >= threshold]
    why += [(scores[j], reason) for j, reason in rejected]
    cosine = any(live[j][1] >= threshold for j in short)
    if short:
        why.append((scores[short[0]], "support" if cosine else "below_threshold"))
    return None, max(why, key=lambda w: w[0])[1] if why else None, removed, cosine


def _beyond(
    eng: Engine,
    ns: str,
    vector: npt.NDArray[np.float32],
    index: SearchIndex,
    reading: Reading,
    seen: set[int],
    now: float,
) -> tuple[StoredEntry, float] | None:
    """The answer model's answer (``reading.top``) from its stored prompt nearest the
    query among those its fit read, read and checked as any candidate (one gone is
    passed over): ``(entry, similarity)``, or None."""
    for entry_id, sim in reading.model.nearest(reading.top, vector):
        if entry_id in seen or entry_id not in index:
            continue
        seen.add(entry_id)
        live, _, _ = checked_candidates(eng, ns, vector, index, [(entry_id, sim)], now, None)
        if live:
            return live[0]
    return None


def _modelled(
    eng: Engine,
    ns: str,
    vector: npt.NDArray[np.float32],
    index: SearchIndex,
    reading: Reading,
    scored: tuple[list[bytes], list[int], list[tuple[StoredEntry, float]], list[float]],
    seen: set[int],
    now: float,
) -> int:
    """The answer model's part of :func:`_supported`, once no candidate was served by
    its support score: each candidate whose answer it knows raised to
    :func:`~semcache._answer_model.combined` where that is higher (``scores`` in
    place); its answer, where no candidate has it and it can reach the threshold, from
    its nearest stored prompt (:func:`_beyond`), appended to ``live`` and ``scores``.
    ``scored``: the candidates' answers' keys, the places in ``live`` of those that
    count, ``live`` and ``scores``. Returns that one's place in ``live``, or -1."""
    keys, counted, live, scores = scored
    for j, key in zip(counted, keys, strict=True):
        p = reading.of(key)
        if p is not None:
            scores[j] = max(scores[j], combined(scores[j], p))
    if combined(1.0, reading.top_p) < eng.threshold or reading.top in keys:
        return -1
    got = _beyond(eng, ns, vector, index, reading, seen, now)
    if got is None:
        return -1
    live.append(got)
    scores.append(combined(got[1], reading.top_p))
    return len(live) - 1


def _with_rivals(
    lead: Callable[[], list[float] | None], standing: list[float]
) -> Callable[[], list[float] | None]:
    """``lead``, its raised scores moved by the answers' ``standing`` as well."""

    def rivalled() -> list[float] | None:
        raised = lead()
        return None if raised is None else standing_scores(raised, standing)

    return rivalled


def found(eng: Engine, entry_id: int, hit: Hit, now: float, t0: float) -> Hit:
    """Count a hit and note its recency (written in batches). Every hit runs this: it
    writes the two dicts directly (what :meth:`Recency.touch` and :meth:`Metrics.hit`
    do, without their calls)."""
    recency = eng.recency
    pending = recency.pending
    pending[entry_id] = now
    if len(pending) >= recency.limit:
        try:
            eng.flush_touches()
        except StoreUnavailableError:  # kept pending: the next flush retries
            logger.warning("semcache: store unreachable; recency not written yet")
    metrics = eng.metrics
    metrics.hits[hit.layer] += 1
    if metrics.hook is not None:
        metrics.emit_hit(hit, t0)
    return hit


def _nothing(eng: Engine, ns: str, reason: MissReason | None, t0: float) -> Hit | None:
    """A miss with nothing to search (an empty namespace). With an error budget it is
    a get of risk 0, as one whose candidates are all below the floor is: the budget
    counts wrong answers per get, every get."""
    if eng.budgets is not None:
        eng.budgets.empty(ns)
    return miss(eng, ns, reason or "no_candidate", None, t0)


def miss(
    eng: Engine, ns: str, reason: MissReason, similarity: float | None, t0: float
) -> Hit | None:
    """Count and report a miss; returns None so callers can ``return miss(...)``."""
    eng.metrics.miss(ns, reason, similarity, t0)
    return None
