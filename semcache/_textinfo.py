"""What the guards and the verifier read from a text: words, numbers, dates, negations,
named things (capitalized words), the question word, n-grams.

Plain Python on short texts, cached per text (:func:`text_info`). Used on the serving
path by the default guards (:mod:`semcache._guards`) and by the verifier's features
(:mod:`semcache.quality._features`).
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Final

from ._number_words import spelt_numbers

__all__ = ["STOPWORDS", "TextInfo", "stem", "text_info"]


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


_WORD: Final = re.compile("[^\\W_]+(?:['\u2019][^\\W_]+)*|\\d+(?:[.,]\\d+)*")
_NUMBER: Final = re.compile(r"\d+(?:[.,]\d+)*")
_CAPITALIZED: Final = re.compile("\\b[A-Z][\\w'\u2019.-]*")
_MONTHS: Final = _word_set(
    "january february march april may june july august september october november "
    "december jan feb mar apr jun jul aug sep sept oct nov dec"
)
_NEGATIONS: Final = _word_set(
    "not no never none nobody nothing nowhere neither nor without cannot cant dont doesnt "
    "didnt isnt arent wasnt werent wont wouldnt shouldnt couldnt hasnt havent hadnt "
    "mustnt neednt"
)
_QUESTION_WORDS: Final = _word_set(
    "what how why when where who whom whose which is are was were do does did can could "
    "should would will shall may might must has have had"
)
# Function words: sharing them says little, missing one says little.
STOPWORDS: Final = _word_set(
    "a an the of to in on at for from by with about as into over after before between "
    "and or but if then so than that this these those there here it its it's i me my "
    "mine we us our you your he him his she her they them their be been being am is are "
    "was were do does did doing have has had having can could should would will shall "
    "may might must what how why when where who whom whose which some any all most more "
    "much many very just also too get got one s t"
)
# Contractions that negate ("don't", "isn\u2019t").
_NOT_SUFFIXES: Final = ("n't", "n\u2019t")
# Adverbs between a negation and what it negates ("not really sure", "never even tried").
_NEGATION_ADVERBS: Final = _word_set(
    "really even ever yet quite actually necessarily always exactly entirely fully"
)
# Words that name no entity even when capitalized (sentence starts, the pronoun I).
_NOT_ENTITIES: Final = STOPWORDS | _QUESTION_WORDS | frozenset({"i", "i'm", "i've", "i'd"})


def _apostrophe_free(word: str) -> str:
    return word.replace("'", "").replace("\u2019", "")


def stem(word: str) -> str:
    """A light stem of a lower-case word for matching across inflections ("charging",
    "charges", "charge" -> "charg"; "eating", "eats" -> "eat"): apostrophes dropped, one
    of the suffixes ing, ed, es, s, ly removed where three letters remain, then a final
    e."""
    w = _apostrophe_free(word)
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3 and not w.endswith("ss"):
            w = w[: -len(suffix)]
            break
    return w[:-1] if len(w) > 3 and w.endswith("e") else w


def _is_negation(word: str, plain: str) -> bool:
    return plain in _NEGATIONS or word.endswith(_NOT_SUFFIXES)


def _negated(words: tuple[str, ...], plain: list[str]) -> frozenset[str]:
    """The stem of what each negation in a text negates: the first word after it that
    is no function word, negation or adverb of degree ("i don't understand your
    language" -> "understand"); "" for a negation that negates anything: one with no
    such word after it ("... or not"), and "without", which excludes something from
    the answer whether or not the other text names it ("... without surgery")."""
    out = set()
    for i, (word, p) in enumerate(zip(words, plain, strict=True)):
        if not _is_negation(word, p):
            continue
        if p == "without":
            out.add("")
            continue
        out.add(
            next(
                (
                    stem(w)
                    for w, q in zip(words[i + 1 :], plain[i + 1 :], strict=True)
                    if q not in STOPWORDS and q not in _NEGATION_ADVERBS and not _is_negation(w, q)
                ),
                "",
            )
        )
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class TextInfo:
    """What the features need from one text, computed once per text."""

    words: tuple[str, ...]
    word_set: frozenset[str]
    content: AbstractSet[str]
    bigrams: frozenset[tuple[str, str]]
    char3: AbstractSet[str]
    char5: AbstractSet[str]
    numbers: frozenset[str]
    #: The numbers it holds, spelt-out ones too ("two plus two" holds 2; see
    #: :mod:`semcache._number_words`); ``numbers`` has the digits only (what the
    #: verifier's and the risk model's features read).
    values: frozenset[str]
    dates: frozenset[str]
    negations: int
    #: The stems of what the negations negate (:func:`_negated`; "" for one that
    #: negates anything: "without", or nothing after it).
    negated: frozenset[str]
    entities: frozenset[str]
    question_word: str
    length: int


def _starts_sentence(text: str, at: int) -> bool:
    """Whether the word at ``at`` opens a sentence (capitalized for that reason only)."""
    i = at - 1
    while i >= 0 and (text[i].isspace() or text[i] in "\"'([\u201c\u2018"):
        i -= 1
    return i < 0 or text[i] in ".?!:"


@lru_cache(maxsize=8192)
def text_info(text: str) -> TextInfo:
    """Tokens, n-grams, numbers, dates, negations and entities of ``text`` (cached)."""
    lowered = text.lower()
    words = tuple(_WORD.findall(lowered))
    plain = [_apostrophe_free(w) for w in words]
    numbers = frozenset(n.replace(",", "") for n in _NUMBER.findall(text))
    years = {n for n in numbers if len(n) == 4 and n[:2] in ("19", "20")}
    months = {w for w in words if w in _MONTHS and w != "may"}
    negations = sum(1 for w in plain if w in _NEGATIONS) + sum(
        1 for w in words if w.endswith(_NOT_SUFFIXES)
    )
    entities = frozenset(
        name
        for m in _CAPITALIZED.finditer(text)
        if (name := m.group().rstrip(".").lower()) not in _NOT_ENTITIES
        and not _starts_sentence(text, m.start())
    )
    question_word = next((w for w in words[:3] if w in _QUESTION_WORDS), "")
    squeezed = " ".join(words)
    padded = f" {squeezed} "
    return TextInfo(
        words=words,
        word_set=frozenset(words),
        content={w for w in words if w not in STOPWORDS},
        bigrams=frozenset(pairwise(words)),
        char3={padded[i : i + 3] for i in range(len(padded) - 2)},
        char5={padded[i : i + 5] for i in range(len(padded) - 4)},
        numbers=numbers,
        values=numbers | spelt_numbers(words),
        dates=frozenset(years | months),
        negations=negations,
        negated=_negated(words, plain) if negations else frozenset(),
        entities=entities,
        question_word=question_word,
        length=len(squeezed),
    )
