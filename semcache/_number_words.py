"""Numbers spelt out in English, read as the digits they stand for.

``spelt_numbers(("what's", "two", "plus", "two"))`` is ``{"2"}``, as "2 + 2" holds 2.
The numbers guard reads both the digits (:attr:`~semcache._textinfo.TextInfo.numbers`)
and these (:attr:`~semcache._textinfo.TextInfo.values`): "two plus three" and "two plus
two" differ. What it reads here also decides whether two stored prompts are *evidence*
that a number difference kept an answer (:mod:`semcache._guard_evidence`): "What is
2+2?" beside "what's two plus two" is no such evidence, though their digits differ.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["spelt_numbers"]

_UNIT_WORDS: Final = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
)
_TENS_WORDS: Final = "twenty thirty forty fifty sixty seventy eighty ninety"
_UNITS: Final = {w: v for v, w in enumerate(_UNIT_WORDS.split(" "))}
_TENS: Final = {w: 10 * v for v, w in enumerate(_TENS_WORDS.split(" "), 2)}
_SCALES: Final = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 10**9}
_NUMBER_WORDS: Final = frozenset(_UNITS) | frozenset(_TENS) | frozenset(_SCALES)


def spelt_numbers(words: Iterable[str]) -> frozenset[str]:
    """The values of the runs of number words among ``words`` (lower case), as digit
    strings: "twenty five" -> 25, "two hundred and ten" -> 210, "nine eleven" -> 9 and
    11. "one" alone is no number (it is a pronoun as often: "which one is better"), nor
    is a scale word alone ("hundreds of", "a thousand")."""
    found: set[str] = set()
    runs: list[list[str]] = [[]]
    for word in words:
        if word in _NUMBER_WORDS or (word == "and" and runs[-1]):
            runs[-1].append(word)
        elif runs[-1]:
            runs.append([])
    for run in runs:
        while run and run[-1] == "and":
            run.pop()
        if not run or run == ["one"] or (len(run) == 1 and run[0] in _SCALES):
            continue
        found.update(_values(run))
    return frozenset(found)


def _values(run: list[str]) -> list[str]:
    """The numbers one run of number words spells (more than one where a unit or a tens
    word follows one that cannot take it: "nine eleven", "twenty thirty")."""
    out: list[str] = []
    total = current = 0
    last = ""  # the kind of the last number word: "unit", "tens" or "scale"
    for w in run:
        kind = "unit" if w in _UNITS else "tens" if w in _TENS else "scale" if w in _SCALES else ""
        if kind in ("unit", "tens") and (last == "unit" or last == kind == "tens"):
            out.append(str(total + current))
            total = current = 0
        if kind == "unit":
            current += _UNITS[w]
        elif kind == "tens":
            current += _TENS[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        elif kind == "scale":
            total += max(current, 1) * _SCALES[w]
            current = 0
        last = kind or last
    out.append(str(total + current))
    return out
