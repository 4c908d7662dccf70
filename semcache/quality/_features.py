"""Cheap features of a (query, cached candidate) pair, for the verifier and the guards.

Everything here is plain Python on short texts: a pair costs tens of microseconds.
The features compare what embeddings blur: the exact numbers, years and months, a
negation on one side, the named things (capitalized words), the question word, the
words only one side has, and the word order (bigrams).
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any, Final

from .._textinfo import TextInfo, text_info

__all__ = ["FEATURE_NAMES", "TextInfo", "pair_features", "text_info"]


#: The verifier's inputs, in order (see :func:`pair_features`).
FEATURE_NAMES: Final[tuple[str, ...]] = (
    "cosine",
    "margin",
    "word_jaccard",
    "content_jaccard",
    "content_only_query",
    "content_only_cached",
    "content_only_min",
    "content_only_max",
    "bigram_jaccard",
    "char3_jaccard",
    "char5_jaccard",
    "length_ratio",
    "word_count_diff",
    "numbers_differ",
    "numbers_one_side",
    "years_or_months_differ",
    "negation_differs",
    "entities_only_query",
    "entities_only_cached",
    "question_word_differs",
    "same_words_other_order",
    "word_count_min",
)


def _jaccard(a: AbstractSet[Any], b: AbstractSet[Any]) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def pair_features(
    query: str, cached: str, similarity: float, runner_up: float | None
) -> list[float]:
    """The verifier's features of serving ``cached``'s answer for ``query``.

    Args:
        query: the text just asked.
        cached: the stored text of the candidate.
        similarity: their cosine similarity.
        runner_up: the similarity of the best other candidate (``Hit.runner_up``), or
            None when there was none.

    Returns:
        One float per name in :data:`FEATURE_NAMES`.
    """
    q, c = text_info(query), text_info(cached)
    only_q = len(q.content - c.content)
    only_c = len(c.content - q.content)
    return [
        similarity,
        1.0 if runner_up is None else similarity - runner_up,
        _jaccard(q.word_set, c.word_set),
        _jaccard(q.content, c.content),
        float(only_q),
        float(only_c),
        float(min(only_q, only_c)),
        float(max(only_q, only_c)),
        _jaccard(q.bigrams, c.bigrams),
        _jaccard(q.char3, c.char3),
        _jaccard(q.char5, c.char5),
        min(q.length, c.length) / max(q.length, c.length, 1),
        float(abs(len(q.words) - len(c.words))),
        float(bool(q.numbers) and bool(c.numbers) and q.numbers != c.numbers),
        float(bool(q.numbers) != bool(c.numbers)),
        float(q.dates != c.dates),
        float((q.negations > 0) != (c.negations > 0)),
        float(len(q.entities - c.entities)),
        float(len(c.entities - q.entities)),
        float(q.question_word != c.question_word),
        float(q.word_set == c.word_set and q.words != c.words),
        float(min(len(q.words), len(c.words))),
    ]
