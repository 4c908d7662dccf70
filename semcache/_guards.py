"""Guards against classic false hits: validators (``validator(query, hit) -> bool``)
that block a semantic hit when the query and the cached question disagree on
something an embedding blurs. ``SemanticCache`` applies :func:`numbers_agree` and
:func:`negation_agrees` by default (``guards="default"``; ``guards=None`` turns them
off); pass others as ``guards=`` (:func:`default_guards` adds word order) or
``validator=``, several combined with :func:`all_of`. Exact hits always
pass (the texts are the same).

Measured on the project's labelled pairs (docs/quality.md), each of these raises the
hit rate at equal precision (a little on QQP; word order a lot on PAWS). Two more were
measured and dropped: named entities (capitalized words that differ) cost more hit rate
than a higher threshold buying the same precision, and dates (years, months) changed
nothing that the numbers guard did not already catch. Both remain inputs of the
verifier, which weighs them.
"""

from __future__ import annotations

from collections.abc import Callable

from ._textinfo import STOPWORDS, text_info
from ._types import Hit

__all__ = ["all_of", "default_guards", "negation_agrees", "numbers_agree", "word_order_agrees"]

Validator = Callable[[str, Hit], bool]


def numbers_agree(query: str, hit: Hit) -> bool:
    """Block a semantic hit when the two texts hold different numbers ("top 10" vs
    "top 5"; "iPhone 6" vs "iPhone 7"), or only one of them holds any."""
    if hit.layer == "exact":
        return True
    return text_info(query).numbers == text_info(hit.query).numbers


def negation_agrees(query: str, hit: Hit) -> bool:
    """Block a semantic hit when exactly one side is negated ("can I ..." vs "can't I
    ..."; "with" vs "without")."""
    if hit.layer == "exact":
        return True
    return (text_info(query).negations > 0) == (text_info(hit.query).negations > 0)


#: Words that make swapping two things harmless ("the difference between A and B").
_SYMMETRIC = frozenset(
    [
        "difference",
        "differences",
        "between",
        "vs",
        "versus",
        "compare",
        "comparison",
        "similarity",
        "similarities",
    ]
)


def _content_sequence(text: str) -> list[str]:
    out = []
    for word in text_info(text).words:
        if word in STOPWORDS:
            continue
        w = word.replace("'", "").replace("\u2019", "")
        out.append(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return out


def word_order_agrees(query: str, hit: Hit) -> bool:
    """Block a semantic hit when the two texts have the same content words in another
    order ("Are tigers afraid of cats?" vs "Are cats afraid of tigers?"; "voting for A
    over B" vs "for B over A"), unless both compare things symmetrically ("the
    difference between A and B"). Embeddings barely see word order, so such pairs score
    near 1.0; this is the false hit of adversarial word-swap sets (PAWS). It also blocks
    some harmless reorderings ("best time of the year to visit Finland" vs "time of year
    it is best to visit Finland"). Measured (docs/quality.md): on PAWS it lifts the
    precision at cos >= 0.85 from 0.665 to 0.741 and the hit rate at precision 0.95 from
    0.555 to 0.603; on held-out QQP it costs 0.013 of hit rate at cos >= 0.85 and gains
    0.005 at precision 0.95."""
    if hit.layer == "exact":
        return True
    a, b = _content_sequence(query), _content_sequence(hit.query)
    if a == b or sorted(a) != sorted(b) or len(set(a)) < 2:
        return True
    words_q, words_c = text_info(query).word_set, text_info(hit.query).word_set
    return bool(_SYMMETRIC & words_q and _SYMMETRIC & words_c)


def all_of(*validators: Validator) -> Validator:
    """A validator that accepts a hit only when every one of ``validators`` does.

    Raises:
        TypeError: an argument is not callable.
    """
    for v in validators:
        if not callable(v):
            raise TypeError(f"validators must be callable, got {v!r}")
    chosen = tuple(validators)

    def validate(query: str, hit: Hit) -> bool:
        return all(v(query, hit) for v in chosen)

    return validate


def default_guards() -> Validator:
    """The guards that earned their place, combined: numbers, negation, word order."""
    return all_of(numbers_agree, negation_agrees, word_order_agrees)
