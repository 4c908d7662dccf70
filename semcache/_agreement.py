"""Answers that agree: evidence from the stored answers of the k nearest candidates.

A stored answer is safer to serve when the stored prompts around the query got the
same answer, and riskier when a nearby prompt got another one ("What is 2+2?" next to
"What is 2+3?"). :func:`agreement` reads the candidates a semantic search returns
(nearest first) and sums that up as an :class:`Agreement`: the candidate to serve,
how many of the others share its answer, how near the nearest other answer is, and an
evidence class (:data:`ALONE`, :data:`SPLIT`, :data:`MIXED`, :data:`UNANIMOUS`) that the
error budget (``_budget``) learns a risk curve for.

Answers are compared with ``same_answer(a, b) -> bool``: by default
:func:`same_answer`, equality after normalization (NFKC, casefold, collapsed
whitespace) for text, plain equality otherwise. An application whose answers vary in
wording passes its own (for instance a comparison of answer embeddings made at put).

The cost is bounded twice: at most ``k`` candidates are read, and reading stops once
``budget_us`` microseconds have passed (the evidence is then what was read so far).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from operator import itemgetter
from time import perf_counter_ns
from types import ModuleType
from typing import Any, cast

from ._text import normalize_text

__all__ = [
    "ALONE",
    "EVIDENCE_CLASSES",
    "MIXED",
    "SPLIT",
    "UNANIMOUS",
    "Agreement",
    "Candidate",
    "agreement",
    "answer_digest",
    "answer_key",
    "favoured_answer",
    "favoured_bound",
    "favoured_scores",
    "raised_bound",
    "same_answer",
    "standing_scores",
    "support_bound",
    "support_scores",
    "voted",
]

#: ``same(a, b)``: whether two answers are the same (any answer type: the cache passes
#: its stored texts, the replays their cluster labels).
SameAnswer = Callable[[Any, Any], bool]

#: The candidate served is the only one read (nothing near it to agree or disagree).
ALONE = 0
#: The nearest other candidate has another answer.
SPLIT = 1
#: The nearest other candidate has the same answer; some candidate read has another.
MIXED = 2
#: Every candidate read (two or more) has the same answer.
UNANIMOUS = 3
#: The classes, in order.
EVIDENCE_CLASSES = (ALONE, SPLIT, MIXED, UNANIMOUS)

#: The support score's candidates: the nearest read, and the similarity below which a
#: candidate is no evidence (the error budget's k and floor).
SUPPORT_K = 8
SUPPORT_FLOOR = 0.5
#: How strongly the candidates around one move its support score: its distance to the
#: query (1 - similarity) is multiplied by exp(-SUPPORT_WEIGHT x the net excess over the
#: floor of the candidates that agree with it) (docs/quality.md, "Answers that agree by
#: default").
SUPPORT_WEIGHT = 2.0


def _load_native() -> ModuleType | None:
    """The C twins of :func:`support_scores` and :func:`favoured_scores`
    (``_native/_support.pyx``: the same results bit for bit, about 8 times faster), or
    None where they are not built or ``SEMCACHE_PURE_PYTHON`` is set (as for the
    search kernel)."""
    if os.environ.get("SEMCACHE_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from . import _support  # type: ignore[attr-defined]
    except ImportError:
        return None
    return cast(ModuleType, _support)


_NATIVE = _load_native()


def native_twin(name: str, python: Callable[..., Any]) -> Callable[..., Any]:
    """The C twin of ``python`` (the function of that ``name`` in ``_native/_support``,
    same signature and errors) where the extension is built and
    ``SEMCACHE_PURE_PYTHON`` is not set, else ``python``: resolved once, at import, by
    the module that keeps it."""
    native = getattr(_NATIVE, name, None)
    return native if callable(native) else python


def same_answer(a: object, b: object) -> bool:
    """Whether two answers are the same: equal after normalization (NFKC, casefold,
    collapsed whitespace) when both are text, equal otherwise."""
    if isinstance(a, str) and isinstance(b, str):
        return a == b or normalize_text(a) == normalize_text(b)
    if isinstance(a, bytes | bytearray) and isinstance(b, bytes | bytearray):
        return bytes(a) == bytes(b)
    try:
        return bool(a == b)
    except Exception:  # an answer whose == raises is not the same as anything
        return False


def answer_key(answer: object) -> object:
    """A hashable key under which answers :func:`same_answer` calls equal fall
    together: the normalized text of a text, the bytes of bytes, the answer itself if
    hashable, else its identity (equal to nothing else)."""
    if isinstance(answer, str):
        return normalize_text(answer)
    if isinstance(answer, bytes | bytearray):
        return bytes(answer)
    try:
        hash(answer)
    except TypeError:
        return ("unhashable", id(answer))
    return answer


def answer_digest(response: str) -> bytes:
    """A stored answer's key as the cache keeps it: the 16-byte digest of its
    :func:`answer_key` (equal for answers :func:`same_answer` calls equal). Saved with
    the index snapshots (the prototype tables): a change here must raise
    ``semcache._prototypes._SAVED_FORMAT``."""
    text = normalize_text(response)
    return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def support_scores(
    similarities: Sequence[float],
    keys: Sequence[object],
    *,
    floor: float = SUPPORT_FLOOR,
    weight: float = SUPPORT_WEIGHT,
) -> list[float]:
    """Each candidate's support score: its similarity ``s`` moved by the answers of the
    candidates around it, ``1 - (1 - s) * exp(-weight * net)``, where ``net`` is the
    excess over ``floor`` of every other candidate with the same answer, minus that of
    every candidate of another answer that itself repeats among them.

    A stored prompt near the query is stronger evidence when the stored prompts around
    it got the same answer, weaker when another answer's cluster is as near. An answer
    seen once is no cluster: it neither supports nor opposes, so where no answer
    repeats (free-text LLM answers, every prompt its own answer) each score is exactly
    the candidate's similarity and a threshold on it is the plain cosine threshold.
    Support shrinks the distance to the query, so a score never passes 1 and every
    threshold up to 1 stays reachable; of one answer's candidates the nearest scores
    highest (for ``weight`` up to 2 over a floor of 0.5 or more).

    Args:
        similarities: the candidates' similarities to the query.
        keys: their answers' keys (:func:`answer_key`), one per candidate.
        floor: a similarity at or below it adds and subtracts nothing.
        weight: how strongly the net excess moves the score.

    Raises:
        ValueError: ``similarities`` and ``keys`` differ in length.
    """
    if _NATIVE is not None:
        return cast("list[float]", _NATIVE.support_scores(similarities, keys, floor, weight))
    return _support_scores_py(similarities, keys, floor, weight)


def _support_scores_py(
    similarities: Sequence[float], keys: Sequence[object], floor: float, weight: float
) -> list[float]:
    """:func:`support_scores` in Python (the C twin's reference)."""
    if len(similarities) != len(keys):
        raise ValueError("one answer key per candidate")
    excess: dict[object, float] = {}
    count: dict[object, int] = {}
    for s, key in zip(similarities, keys, strict=True):
        excess[key] = excess.get(key, 0.0) + (s - floor if s > floor else 0.0)
        count[key] = count.get(key, 0) + 1
    if len(count) == len(similarities):  # no answer repeats: each its own similarity
        return list(similarities)
    repeated = 0.0
    for key, e in excess.items():
        if count[key] > 1:
            repeated += e
    out = []
    exp = math.exp
    for s, key in zip(similarities, keys, strict=True):
        own = excess[key]
        net = (own - (s - floor if s > floor else 0.0)) - (
            repeated - (own if count[key] > 1 else 0.0)
        )
        out.append(s if net == 0.0 else 1.0 - (1.0 - s) * exp(-weight * net))
    return out


def support_bound(
    similarities: Sequence[float], *, floor: float = SUPPORT_FLOOR, weight: float = SUPPORT_WEIGHT
) -> float:
    """The highest support score any of the candidates could reach, from their
    similarities alone (every other candidate agreeing with it, none opposing): a
    threshold above it is reached by none, whatever their answers.

    Raises:
        ValueError: no candidate.
    """
    if not similarities:
        raise ValueError("a bound needs at least one candidate")
    total = 0.0
    for s in similarities:
        if s > floor:
            total += s - floor
    if floor >= 1.0 - 1.0 / weight:
        # (1 - s) * exp(weight * max(0, s - floor)) never grows with s then (its slope
        # above the floor is exp(...) * (weight * (1 - s) - 1) <= 0): the nearest
        # candidate's score is the highest
        s = max(similarities)
        return 1.0 - (1.0 - s) * math.exp(-weight * (total - max(0.0, s - floor)))
    return max(
        1.0 - (1.0 - s) * math.exp(-weight * (total - max(0.0, s - floor))) for s in similarities
    )


def favoured_answer(
    similarities: Sequence[float],
    keys: Sequence[object],
    gram: Sequence[Sequence[float]] | None = None,
) -> object:
    """The answer the neighbourhood favours: the one whose candidates' local prototype
    (the mean of their stored prompts' vectors, normalized) is nearest the query.

    Of an answer's candidates ``g`` that similarity is ``sum(s_i) / |sum(v_i)|``; for
    an answer seen once it is the candidate's own similarity. An answer whose
    candidates surround the query outranks a single prompt that is a little nearer,
    and an isolated prompt nearer than another answer's whole cluster outranks that
    cluster. Ties go to the answer of the nearest candidate, so where no answer
    repeats the favoured answer is the nearest's.

    Args:
        similarities: the candidates' similarities to the query (unit vectors).
        keys: their answers' keys (:func:`answer_key`), one per candidate.
        gram: the dot products of the candidates' stored vectors, ``gram[i][j] = v_i .
            v_j`` (so ``|sum(v_i)|**2`` is the sum over a group's pairs); needed only
            when an answer repeats.

    Raises:
        ValueError: no candidate, ``similarities`` and ``keys`` differ in length, or an
            answer repeats and ``gram`` is None.
    """
    protos = _prototypes(similarities, keys, gram)
    return max(protos, key=lambda key: protos[key])


def _prototypes(
    similarities: Sequence[float],
    keys: Sequence[object],
    gram: Sequence[Sequence[float]] | None,
) -> dict[object, tuple[float, float]]:
    """Each answer's ``(local prototype's similarity, nearest candidate's)``, in the
    order of their first candidate (see :func:`favoured_answer`)."""
    if not similarities:
        raise ValueError("a favoured answer needs at least one candidate")
    if len(similarities) != len(keys):
        raise ValueError("one answer key per candidate")
    groups: dict[object, list[int]] = {}
    for i, key in enumerate(keys):
        group = groups.get(key)
        if group is None:
            groups[key] = [i]
        else:
            group.append(i)
    out: dict[object, tuple[float, float]] = {}
    for key, members in groups.items():
        if len(members) == 1:
            nearest = similarities[members[0]]
            out[key] = (nearest, nearest)
            continue
        if gram is None:
            raise ValueError("an answer repeats: its prototype needs the gram")
        pick = itemgetter(*members)  # (two or more: a tuple)
        near = pick(similarities)
        nearest = max(near)
        # sums left to right (as the C twin adds; sum() compensates from Python 3.12)
        norm2 = 0.0
        for i in members:
            row = 0.0
            for x in pick(gram[i]):
                row += x
            norm2 += row
        total = 0.0
        for x in near:
            total += x
        out[key] = (total / math.sqrt(norm2) if norm2 > 0 else nearest, nearest)
    return out


def favoured_scores(
    scores: Sequence[float],
    similarities: Sequence[float],
    keys: Sequence[object],
    gram: Sequence[Sequence[float]],
    *,
    floor: float = SUPPORT_FLOOR,
    weight: float = SUPPORT_WEIGHT,
) -> list[float]:
    """The candidates' scores once the favoured answer is known: ``scores`` (their
    :func:`support_scores`) where no answer repeats; else -1 (never served) for the
    candidates of every answer but the favoured one (:func:`favoured_answer`), and, if
    the favoured answer repeats, its candidates' scores raised by its *lead*: ``1 - (1
    - score) * exp(-weight * lead)``, where ``lead`` is how much nearer its prototype
    is than the next answer's (or than ``floor`` when that is nearer, or there is
    none). A prompt that stands alone is never raised, however far its rivals.

    Args:
        scores: the candidates' support scores.
        similarities: their similarities to the query.
        keys: their answers' keys.
        gram: the dot products of their stored vectors (see :func:`favoured_answer`).
        floor: the lead is measured from here at the least.
        weight: how strongly the lead raises a score.

    Raises:
        ValueError: the sequences differ in length, or an answer repeats and ``gram``
            is None.
    """
    if _NATIVE is not None:
        return cast(
            "list[float]",
            _NATIVE.favoured_scores(scores, similarities, keys, gram, floor, weight),
        )
    return _favoured_scores_py(scores, similarities, keys, gram, floor, weight)


def _favoured_scores_py(
    scores: Sequence[float],
    similarities: Sequence[float],
    keys: Sequence[object],
    gram: Sequence[Sequence[float]] | None,
    floor: float,
    weight: float,
) -> list[float]:
    """:func:`favoured_scores` in Python (the C twin's reference)."""
    if not (len(scores) == len(similarities) == len(keys)):
        raise ValueError("one score, similarity and answer key per candidate")
    if len(set(keys)) == len(keys):
        return list(scores)
    protos = _prototypes(similarities, keys, gram)
    favoured = max(protos, key=protos.__getitem__)
    rival = floor
    for key, (p, _) in protos.items():
        if key != favoured and p > rival:
            rival = p
    lead = protos[favoured][0] - rival if keys.count(favoured) > 1 else 0.0
    factor = math.exp(-weight * lead) if lead > 0 else 1.0
    if factor == 1.0:
        return [score if key == favoured else -1.0 for score, key in zip(scores, keys, strict=True)]
    return [
        1.0 - (1.0 - score) * factor if key == favoured else -1.0
        for score, key in zip(scores, keys, strict=True)
    ]


def favoured_bound(
    similarities: Sequence[float], *, floor: float = SUPPORT_FLOOR, weight: float = SUPPORT_WEIGHT
) -> float:
    """The highest score (:func:`support_scores`, then :func:`favoured_scores`) any of
    the candidates could reach, from their similarities alone: the support bound
    (:func:`support_bound`), raised by the largest lead (``1 - floor``) when two or
    more of them reach ``floor`` (an answer can repeat only then).

    Raises:
        ValueError: no candidate.
    """
    bound = support_bound(similarities, floor=floor, weight=weight)
    if len(similarities) < 2 or sorted(similarities)[-2] < floor:  # (fewer than 2 reach it)
        return bound
    return raised_bound(bound, floor=floor, weight=weight)


def raised_bound(
    score: float, *, floor: float = SUPPORT_FLOOR, weight: float = SUPPORT_WEIGHT
) -> float:
    """The highest :func:`favoured_scores` can raise ``score`` to: by the largest lead a
    favoured answer can have (``1 - floor``: a prototype's similarity is at most 1)."""
    return 1.0 - (1.0 - score) * math.exp(-weight * (1.0 - floor))


def standing_scores(
    scores: Sequence[float], standing: Sequence[float], *, floor: float = SUPPORT_FLOOR
) -> list[float]:
    """``scores`` moved by their answers' standing over their rivals
    (:meth:`~semcache._prototypes.Prototypes.standing`, in ``[0, 1]``): a score's excess
    over ``floor`` multiplied by it (a score at or below ``floor`` stays), and -1 (never
    served) where the standing is 0: the rivals outweigh its answer."""
    return [
        -1.0 if x <= 0.0 else floor + (score - floor) * x if score > floor else score
        for score, x in zip(scores, standing, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A semantic candidate: how similar its stored prompt is to the query, and its
    stored answer."""

    similarity: float
    response: object


@dataclass(frozen=True, slots=True)
class Agreement:
    """What the k nearest candidates say about serving the first.

    Attributes:
        similarity: the served candidate's similarity to the query.
        support: the other candidates read that have its answer.
        examined: the candidates read, the served one included.
        rival: the highest similarity of a candidate read with another answer (None:
            none had another answer).
        evidence: :data:`ALONE`, :data:`SPLIT`, :data:`MIXED` or :data:`UNANIMOUS`.
        truncated: reading stopped at the time budget before ``k`` candidates.
    """

    similarity: float
    support: int
    examined: int
    rival: float | None
    evidence: int
    truncated: bool = False

    @property
    def margin(self) -> float | None:
        """``similarity - rival`` (None without a rival)."""
        return None if self.rival is None else self.similarity - self.rival


def agreement(
    candidates: Sequence[Candidate],
    *,
    k: int = 8,
    budget_us: float = 50.0,
    same: SameAnswer = same_answer,
    clock: Callable[[], int] = perf_counter_ns,
) -> Agreement:
    """The evidence the k nearest candidates give about serving ``candidates[0]``.

    Args:
        candidates: nearest first; the first is the one that would be served.
        k: read at most this many (the first included).
        budget_us: stop reading once this many microseconds have passed (the first
            candidate is always read).
        same: ``same(a, b) -> bool``, whether two answers are the same.
        clock: nanoseconds (injectable for tests).

    Raises:
        ValueError: no candidate, ``k`` < 1 or a negative ``budget_us``.
    """
    if not candidates:
        raise ValueError("agreement needs at least one candidate")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if budget_us < 0:
        raise ValueError(f"budget_us must be >= 0, got {budget_us}")
    start = clock()
    limit = int(budget_us * 1000)
    first = candidates[0]
    support = 0
    examined = 1
    rival: float | None = None
    nearest_same: bool | None = None
    truncated = False
    for c in candidates[1:k]:
        if clock() - start > limit:
            truncated = True
            break
        examined += 1
        agrees = same(first.response, c.response)
        if nearest_same is None:
            nearest_same = agrees
        if agrees:
            support += 1
        elif rival is None or c.similarity > rival:
            rival = c.similarity
    if nearest_same is None:
        evidence = ALONE
    elif not nearest_same:
        evidence = SPLIT
    elif rival is not None:
        evidence = MIXED
    else:
        evidence = UNANIMOUS
    return Agreement(first.similarity, support, examined, rival, evidence, truncated)


def voted(candidates: Sequence[Candidate], *, k: int = 8, same: SameAnswer = same_answer) -> int:
    """The index of the candidate to serve by the vote of the ``k`` nearest: the
    nearest candidate of the answer whose candidates' similarities sum highest (ties:
    the nearer answer). 0 when the nearest candidate's answer wins.

    Raises:
        ValueError: no candidate, or ``k`` < 1.
    """
    if not candidates:
        raise ValueError("a vote needs at least one candidate")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    groups: list[tuple[int, float]] = []  # (index of the group's nearest, total)
    for i, c in enumerate(candidates[:k]):
        for g, (first, total) in enumerate(groups):
            if same(candidates[first].response, c.response):
                groups[g] = (first, total + c.similarity)
                break
        else:
            groups.append((i, c.similarity))
    best = max(groups, key=lambda g: (g[1], -g[0]))
    return best[0]
