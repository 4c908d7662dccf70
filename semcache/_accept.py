"""What a semantic candidate must pass before it is served: ``confidence_fn``, the
guards (the built-in ones yielding to the head candidates' evidence:
:mod:`semcache._guard_evidence`) and the validator. One that raises rejects the
candidate (logged)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from . import _answer_memo
from ._engine import Engine
from ._guard_evidence import PairCheck, overruled, rejecting
from ._store import StoredEntry
from ._types import Hit

__all__ = ["Evidence", "accept", "confidence_of", "head_evidence"]

logger = logging.getLogger("semcache")

#: ``evidence(checks, hit)``: whether the candidates overrule the guards whose pair
#: checks are ``checks`` for ``hit`` (:func:`head_evidence`).
Evidence = Callable[[list[PairCheck], Hit], bool]


def accept(eng: Engine, query: str, hit: Hit, evidence: Evidence | None = None) -> bool:
    """Whether the guards (semantic hits) and the validator let ``hit`` be served; one
    that raises rejects it. ``evidence(checks, hit)``: given the pair checks of the
    built-in guards that rejected it (every rejecting part being one), whether the
    get's candidates overrule them (:func:`head_evidence`); None: no guard yields."""
    guards, validator = eng.guards, eng.validator
    if validator is None and (guards is None or hit.layer == "exact"):
        return True
    checks: list[PairCheck] | None = None
    try:
        passed = guards is None or hit.layer == "exact"
        if not passed and evidence is not None and eng.guards_yield:
            checks = rejecting(eng.guard_parts or (), query, hit)
            passed = checks == []  # (None: a guard that never yields rejected it)
        elif not passed:
            passed = bool(guards(query, hit))  # type: ignore[misc]
    except Exception:
        logger.exception("semcache: validator raised; treating the candidate as rejected")
        return False
    overruled = False
    if checks and evidence is not None:
        # (outside the validators' guard: a store error reading the head's vectors
        # fails the get, as the favoured answer's read does)
        overruled = evidence(checks, hit)
    if not (passed or overruled):
        return False
    try:
        accepted = validator is None or bool(validator(query, hit))
    except Exception:
        logger.exception("semcache: validator raised; treating the candidate as rejected")
        return False
    if accepted and overruled:
        eng.metrics.counters["guards_overruled"] += 1
    return accepted


def confidence_of(eng: Engine, query: str, hit: Hit) -> float | None:
    assert eng.confidence_fn is not None
    try:
        value = float(eng.confidence_fn(query, hit))
    except Exception:
        logger.exception("semcache: confidence_fn raised; treating the candidate as rejected")
        return None
    return value if math.isfinite(value) else None


def head_evidence(eng: Engine, entries: list[StoredEntry], keys: list[bytes] | None) -> Evidence:
    """The evidence the built-in guards yield to for the head candidates ``entries``
    (:func:`~semcache._guard_evidence.overruled`): their prompts, their answers' keys
    (``keys``, or worked out when first needed) and their vectors (read once, when a
    guard first rejects one whose answer another of them shares). A hit that is not
    one of them is not overruled."""
    gram: list[list[float]] | None = None

    def overrules(checks: list[PairCheck], hit: Hit) -> bool:
        nonlocal gram, keys
        p = next((n for n, e in enumerate(entries) if e.id == hit.entry_id), None)
        if p is None:
            return False
        if keys is None:
            keys = _answer_memo.answer_keys(eng, entries)
        if keys.count(keys[p]) < 2:
            return False  # no evidence for without another of its answer: nothing read
        if gram is None:
            vectors = _answer_memo.candidate_vectors(eng, entries)
            if vectors is None:
                return False
            gram = (vectors @ vectors.T).tolist()
        return overruled(checks, p, [e.query for e in entries], keys, gram, hit.similarity)

    return overrules
