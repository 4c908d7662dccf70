"""Guards against classic false hits: validators (``validator(query, hit) -> bool``)
that block a semantic hit when the query and the cached question disagree on
something an embedding blurs. Pass one as ``SemanticCache(validator=...)``, or several
combined with :func:`all_of`. Exact hits always pass (the texts are the same).

Measured on the project's labelled pairs (docs/quality.md), each of these raises the
hit rate at equal precision a little. Two more were measured and dropped: named
entities (capitalized words that differ) cost more hit rate than a higher threshold
buying the same precision, and dates (years, months) changed nothing that the numbers
guard did not already catch. Both remain inputs of the verifier, which weighs them.
"""

from __future__ import annotations

from collections.abc import Callable

from .._types import Hit
from ._features import text_info

__all__ = ["all_of", "default_guards", "negation_agrees", "numbers_agree"]

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
    """The guards that earned their place, combined: numbers and negation."""
    return all_of(numbers_agree, negation_agrees)
