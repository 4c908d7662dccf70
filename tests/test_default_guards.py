"""SemanticCache's default guards (numbers and negation; word order is opt-in): on
unless ``guards=None``; the issue's three false hits with the real default embedder."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from semcache import AsyncSemanticCache, SemanticCache
from semcache._errors import ConfigurationError
from semcache.embedders import CallableEmbedder, OnnxEmbedder
from semcache.quality import default_guards, numbers_agree

Q1, Q2 = "What are the top 10 movies?", "What are the top 5 movies?"


def _same_vector(texts: Sequence[str]) -> npt.NDArray[np.float32]:
    """Every text the same unit vector: any stored entry is a candidate at 1.0."""
    out = np.zeros((len(texts), 4), dtype=np.float32)
    out[:, 0] = 1.0
    return out


EMB = CallableEmbedder(_same_vector, 4, "same-vector")


def test_guards_are_on_by_default_and_off_with_none() -> None:
    with SemanticCache(embedder=EMB) as c:
        c.put(Q1, "ten")
        assert c.get(Q2) is None  # 1.0 similar, other numbers
        assert c.stats()["misses"]["validator"] == 1
        hit = c.get("what are the top 10 movies")  # same numbers: served
        assert hit is not None
        assert hit.layer == "semantic"
        assert c.get("What are the top 10 movies?") is not None  # exact
    with SemanticCache(embedder=EMB, guards=None) as c:
        c.put(Q1, "ten")
        hit = c.get(Q2)
        assert hit is not None
        assert hit.response == "ten"


def test_word_order_is_not_a_default_guard() -> None:
    """Measured: on QQP it blocks harmless reorderings more than it saves (see
    docs/quality.md); default_guards() adds it for adversarial traffic."""
    swapped = "Are cats afraid of tigers?"
    with SemanticCache(embedder=EMB) as c:
        c.put("Are tigers afraid of cats?", "no")
        assert c.get(swapped) is not None
        assert c.get("Are tigers not afraid of cats?") is None  # negation: blocked
    with SemanticCache(embedder=EMB, guards=default_guards()) as c:
        c.put("Are tigers afraid of cats?", "no")
        assert c.get(swapped) is None


def test_a_negation_blocks_only_what_both_texts_say() -> None:
    """The negation guard reads what is negated: a negated clause about something the
    stored prompt never mentions qualifies the question and is served; a negation of
    the stored prompt's own word is not (docs/quality.md, "Negation, in scope")."""
    with SemanticCache(embedder=EMB) as c:
        c.put("Switch your language setting to English", "switched")
        hit = c.get("I don't understand your language, switch it to English")
        assert hit is not None
        assert hit.response == "switched"
    with SemanticCache(embedder=EMB) as c:
        c.put("Is Python dynamically typed?", "yes")
        assert c.get("Is Python not dynamically typed?") is None
        assert c.stats()["misses"]["validator"] == 1


def test_guards_run_before_the_validator_and_on_semantic_candidates_only() -> None:
    seen: list[str] = []

    def validator(query: str, hit: object) -> bool:
        seen.append(query)
        return True

    with SemanticCache(embedder=EMB, validator=validator) as c:
        c.put(Q1, "ten")
        assert c.get(Q2) is None
        assert seen == []  # the guards rejected it first
        assert c.get(Q1) is not None  # exact: the guards are not asked, the validator is
        assert seen == [Q1]
    with SemanticCache(embedder=EMB, guards=numbers_agree, validator=lambda q, h: False) as c:
        c.put(Q1, "ten")
        assert c.get("what are the top 10 movies") is None  # guards pass, validator not


def test_custom_guards_and_bad_values() -> None:
    calls: list[str] = []

    def mine(query: str, hit: object) -> bool:
        calls.append(query)
        return False

    with SemanticCache(embedder=EMB, guards=mine) as c:
        c.put(Q1, "ten")
        assert c.get("anything") is None
        assert calls == ["anything"]
    for bad in ("all", 3):
        with pytest.raises(ConfigurationError, match="guards must be"):
            SemanticCache(embedder=EMB, guards=bad)  # type: ignore[arg-type]


def test_async_cache_takes_guards() -> None:
    async def run(guards: object) -> object:
        cache = AsyncSemanticCache(embedder=EMB, guards=guards)  # type: ignore[arg-type]
        try:
            await cache.put(Q1, "ten")
            return await cache.get(Q2)
        finally:
            await cache.aclose()

    assert asyncio.run(run("default")) is None
    assert asyncio.run(run(None)) is not None


@pytest.fixture(scope="module")
def onnx() -> OnnxEmbedder:
    return OnnxEmbedder(threads=1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stored", "answer", "asked"),
    [
        ("What is 2+2?", "4", "What is 2+3?"),
        ("Convert 100 USD to EUR", "92 EUR", "Convert 200 USD to EUR"),
        ("Is Python dynamically typed?", "Yes", "Is Python not dynamically typed?"),
    ],
)
def test_the_issues_false_hits_with_the_default_embedder(
    onnx: OnnxEmbedder, stored: str, answer: str, asked: str
) -> None:
    with SemanticCache(embedder=onnx) as c:
        c.put(stored, answer)
        assert c.get(asked) is None
        assert c.stats()["misses"]["validator"] == 1
    with SemanticCache(embedder=onnx, guards=None) as c:  # what the default did before
        c.put(stored, answer)
        hit = c.get(asked)
        assert hit is not None
        assert hit.response == answer
