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
from ._guard_evidence import PairCheck, overruled
from ._store import StoredEntry
from ._types import Hit

__all__ = ["accept", "confidence_of", "head_evidence"]

logger = logging.getLogger("semcache")


def accept(
    eng: Engine,
    query: str,
    hit: Hit,
    evidence: Callable[[list[PairCheck]], bool] | None = None,
) -> bool:
    """Whether the guards (semantic hits) and the validator let ``hit`` be served; one
    that raises rejects it. ``evidence``: given the pair checks of the built-in guards
    that rejected it (every rejecting part being one), whether the get's candidates
    overrule them (:mod:`semcache._guard_evidence`); None: no guard yields."""
    guards, validator = eng.guards, eng.validator
    if validator is None and (guards is None or hit.layer == "exact"):
        return True
    try:
        rejected = guards is not None and hit.layer != "exact" and not guards(query, hit)
        checks = _yielding(eng, query, hit) if rejected and evidence is not None else None
    except Exception:
        logger.exception("semcache: validator raised; treating the candidate as rejected")
        return False
    if rejected and (checks is None or evidence is None or not evidence(checks)):
        return False
    try:
        return validator is None or bool(validator(query, hit))
    except Exception:
        logger.exception("semcache: validator raised; treating the candidate as rejected")
        return False


def _yielding(eng: Engine, query: str, hit: Hit) -> list[PairCheck] | None:
    """The pair checks of the guards' parts that reject ``hit``; None when one that
    rejects it is no built-in guard (it never yields)."""
    checks: list[PairCheck] = []
    for part, check in eng.guard_parts or ():
        if part(query, hit):
            continue
        if check is None:
            return None
        checks.append(check)
    return checks


def confidence_of(eng: Engine, query: str, hit: Hit) -> float | None:
    assert eng.confidence_fn is not None
    try:
        value = float(eng.confidence_fn(query, hit))
    except Exception:
        logger.exception("semcache: confidence_fn raised; treating the candidate as rejected")
        return None
    return value if math.isfinite(value) else None


def head_evidence(
    eng: Engine, entries: list[StoredEntry], keys: list[bytes] | None
) -> Callable[[int | None, float], Callable[[list[PairCheck]], bool] | None]:
    """For the head candidate ``entries[p]`` (similarity ``sim``), the evidence its
    built-in guards yield to (:func:`~semcache._guard_evidence.overruled`): the head's
    prompts, answers' keys (``keys``, or worked out when first needed) and vectors
    (read once, when a guard first rejects); None for one outside the head (``p`` None),
    or with fewer than two in it."""
    gram: list[list[float]] | None = None

    def of(p: int | None, sim: float) -> Callable[[list[PairCheck]], bool] | None:
        if p is None or len(entries) < 2:
            return None

        def overrules(checks: list[PairCheck]) -> bool:
            nonlocal gram, keys
            if keys is None:
                keys = _answer_memo.answer_keys(eng, entries)
            if keys.count(keys[p]) < 2:
                return False  # no evidence for without another of its answer: nothing read
            if gram is None:
                vectors = _answer_memo.candidate_vectors(eng, entries)
                if vectors is None:
                    return False
                gram = (vectors @ vectors.T).tolist()
            return overruled(checks, p, [e.query for e in entries], keys, gram, sim)

        return overrules

    return of
