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

from ._textinfo import STOPWORDS, stem, text_info
from ._types import Hit

__all__ = ["all_of", "default_guards", "negation_agrees", "numbers_agree", "word_order_agrees"]

Validator = Callable[[str, Hit], bool]


def numbers_differ(a: str, b: str) -> bool:
    """Whether two texts hold different numbers, or only one of them holds any (what
    :func:`numbers_agree` blocks): their digits differ, or their numbers do with numbers
    spelt out read as well ("two plus three" / "two plus two"). A number in digits in
    one text and spelt out in the other ("2+2" / "two plus two") counts as a
    difference, as it did when the guard read digits only."""
    x, y = text_info(a), text_info(b)
    return x.numbers != y.numbers or x.values != y.values


def values_differ(a: str, b: str) -> bool:
    """Whether two texts hold different numbers when numbers spelt out count as the
    digits they stand for ("What is 2+2?" and "what's two plus two" do not; "five
    minutes" and "10 minutes" do)."""
    return text_info(a).values != text_info(b).values


def negation_differs(a: str, b: str) -> bool:
    """Whether exactly one of two texts is negated, and what it negates is something
    the other says (what :func:`negation_agrees` blocks): the first word after the
    negation that is no function word ("Is it *not safe*?" / "Is it safe?"), matched on
    a light stem. A negation with no such word after it, and "without" (an exclusion
    the answer must respect: "grow taller *without surgery*" / "grow taller"), count as
    negating anything."""
    x, y = text_info(a), text_info(b)
    if (x.negations > 0) == (y.negations > 0):
        return False
    negated, other = (x, y) if x.negations else (y, x)
    if "" in negated.negated:
        return True
    said = {stem(w) for w in other.content}  # (only here: most pairs never need it)
    return not negated.negated.isdisjoint(said)


def numbers_agree(query: str, hit: Hit) -> bool:
    """Block a semantic hit when the two texts hold different numbers ("top 10" vs
    "top 5"; "iPhone 6" vs "iPhone 7"; "two plus three" vs "two plus two"), or only one
    of them holds any (:func:`numbers_differ`)."""
    return hit.layer == "exact" or not numbers_differ(query, hit.query)


def negation_agrees(query: str, hit: Hit) -> bool:
    """Block a semantic hit when exactly one side is negated, in what both say ("can I
    eat eggs" vs "can't I eat eggs"; "with sugar" vs "without sugar"). A negation of
    something the other text does not mention passes ("I don't understand your
    language, switch it" vs "switch your language setting"): it qualifies the question
    rather than inverting it."""
    return hit.layer == "exact" or not negation_differs(query, hit.query)


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


def order_differs(a: str, b: str) -> bool:
    """Whether two texts hold the same content words in another order, not both
    comparing things symmetrically (what :func:`word_order_agrees` blocks)."""
    x, y = _content_sequence(a), _content_sequence(b)
    if x == y or sorted(x) != sorted(y) or len(set(x)) < 2:
        return False
    return not (_SYMMETRIC & text_info(a).word_set and _SYMMETRIC & text_info(b).word_set)


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
    return hit.layer == "exact" or not order_differs(query, hit.query)


class AllOf:
    """Validators combined (:func:`all_of`): accepts a hit only when every one of
    :attr:`validators` does, tried in order."""

    __slots__ = ("validators",)

    def __init__(self, validators: tuple[Validator, ...]) -> None:
        self.validators = validators

    def __call__(self, query: str, hit: Hit) -> bool:
        return all(v(query, hit) for v in self.validators)

    def __repr__(self) -> str:
        return "all_of(" + ", ".join(getattr(v, "__name__", repr(v)) for v in self.validators) + ")"


def all_of(*validators: Validator) -> Validator:
    """A validator that accepts a hit only when every one of ``validators`` does.

    Raises:
        TypeError: an argument is not callable.
    """
    for v in validators:
        if not callable(v):
            raise TypeError(f"validators must be callable, got {v!r}")
    return AllOf(tuple(validators))


def parts(validator: Validator) -> tuple[Validator, ...]:
    """The validators that ``validator`` combines (:func:`all_of`, nested ones opened
    too), or ``validator`` alone."""
    if isinstance(validator, AllOf):
        return tuple(p for v in validator.validators for p in parts(v))
    return (validator,)


#: Each built-in guard and what it blocks, as a check of two texts (True: told apart):
#: the guards that yield to the cache's evidence (:mod:`semcache._guard_evidence`).
PAIR_CHECKS: dict[Validator, Callable[[str, str], bool]] = {
    numbers_agree: numbers_differ,
    negation_agrees: negation_differs,
    word_order_agrees: order_differs,
}
#: Where a pair check tells apart more than a pair of prompts must differ in to be
#: evidence *for* a guard yielding (:mod:`semcache._guard_evidence`), the stricter
#: check: a stored "what's two plus two" beside "What is 2+2?" differs from it in
#: digits only, and shows nothing about a number changing an answer.
EVIDENCE_CHECKS: dict[Callable[[str, str], bool], Callable[[str, str], bool]] = {
    numbers_differ: values_differ,
}


def default_guards() -> Validator:
    """The guards that earned their place, combined: numbers, negation, word order."""
    return all_of(numbers_agree, negation_agrees, word_order_agrees)
