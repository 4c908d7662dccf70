"""Guards that yield to what the cache itself has seen.

The built-in guards (:func:`~semcache._guards.numbers_agree`,
:func:`~semcache._guards.negation_agrees`, :func:`~semcache._guards.word_order_agrees`)
block a semantic candidate whose prompt differs from the query in what they check,
because for most questions such a difference changes the answer ("What is 2+2?" /
"What is 2+3?"). Where answers repeat, the stored prompts can show that it does not:
"set a timer for 5 minutes" and "set a timer for 10 minutes" stored with one answer.
With answer support (the default), a built-in guard's rejection of a candidate of
answer ``A`` at similarity ``s`` to the query is overruled when, among the get's head
candidates (the :data:`~semcache._agreement.SUPPORT_K` nearest at or above
:data:`~semcache._agreement.SUPPORT_FLOOR`, the ones answer support reads):

- **evidence for**: two candidates of answer ``A`` are told apart by that guard and are
  at least ``s`` similar to each other: prompts at least as close as the case at hand,
  differing the same way, got the same answer. Where the guard tells apart more than a real
  difference (the numbers guard tells "2+2" from "two plus two"), the pair must also
  differ by the stricter reading (:data:`~semcache._guards.EVIDENCE_CHECKS`: the
  numbers, spelt out or not): "what's two plus two" stored beside "What is 2+2?" is no
  evidence that a number changed and the answer held; and
- **no evidence against**: no two candidates of *different* answers are told apart by
  it at least ``s`` similar to each other: nothing near the query shows that
  difference changing an answer.

Every guard that rejects must yield for the candidate to pass; a guard or validator
that is not built in never yields (its meaning is the application's). The rule has no
constant of its own: the closeness it asks of the evidence is the query's own. Where
no answer repeats (free-text LLM answers) no candidate has evidence for, so the
guards hold exactly as before. docs/quality.md ("Guards that yield to evidence") has
the measurements.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from ._guards import EVIDENCE_CHECKS, PAIR_CHECKS, Validator, parts
from ._types import Hit

__all__ = ["GuardParts", "PairCheck", "guard_parts", "overruled", "rejecting"]

#: A check of two texts: True when the guard tells them apart.
PairCheck = Callable[[str, str], bool]
#: A validator's parts (:func:`~semcache._guards.parts`), each with its pair check
#: when it is a built-in guard (None: it never yields).
GuardParts = tuple[tuple[Validator, PairCheck | None], ...]


def guard_parts(guards: Validator | None) -> GuardParts | None:
    """``guards`` opened into its parts with their pair checks (None: no guards)."""
    if guards is None:
        return None
    return tuple((p, PAIR_CHECKS.get(p)) for p in parts(guards))


def rejecting(guard_parts: GuardParts, query: str, hit: Hit) -> list[PairCheck] | None:
    """The pair checks of the parts that reject ``hit``, each part asked once, in
    order (empty: every part accepts it); None as soon as one that rejects it is no
    built-in guard (it never yields; the parts after it are not asked, as
    :func:`~semcache._guards.all_of` would not ask them)."""
    checks: list[PairCheck] = []
    for part, check in guard_parts:
        if part(query, hit):
            continue
        if check is None:
            return None
        checks.append(check)
    return checks


def overruled(
    checks: Sequence[PairCheck],
    j: int,
    texts: Sequence[str],
    keys: Sequence[Hashable],
    gram: Sequence[Sequence[float]],
    similarity: float,
) -> bool:
    """Whether the head candidates overrule every one of ``checks`` (the pair checks of
    the guards that rejected candidate ``j``; see the module's docstring).

    Args:
        checks: the rejecting guards' pair checks.
        j: the candidate's position among the head candidates.
        texts: the head candidates' prompts.
        keys: their answers' keys (equal keys: the same answer).
        gram: their stored vectors' dot products.
        similarity: candidate ``j``'s similarity to the query.
    """
    n = len(texts)
    mine = keys[j]
    for check in checks:
        support = False
        strict = EVIDENCE_CHECKS.get(check)
        for a in range(n):
            row = gram[a]
            for b in range(a + 1, n):
                if row[b] < similarity or not check(texts[a], texts[b]):
                    continue
                if keys[a] != keys[b]:
                    return False  # that difference changed an answer nearby
                if not support and keys[a] == mine:
                    support = strict is None or strict(texts[a], texts[b])
        if not support:
            return False
    return True
