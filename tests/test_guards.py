"""Guards: validators that block classic false hits, alone and combined."""

from __future__ import annotations

import pytest

from semcache import Hit, SemanticCache
from semcache._guards import numbers_differ, values_differ
from semcache._textinfo import stem, text_info
from semcache.embedders import HashingEmbedder
from semcache.quality import (
    all_of,
    default_guards,
    negation_agrees,
    numbers_agree,
    word_order_agrees,
)


def _hit(stored: str, layer: str = "semantic") -> Hit:
    return Hit("answer", 0.9, layer, stored, "default", None, 0.0, None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("guard", "query", "stored", "ok"),
    [
        (numbers_agree, "Top 10 movies", "Top 5 movies", False),
        (numbers_agree, "Top 10 movies", "top 10 movies!", True),
        (numbers_agree, "Price of iPhone 7", "Price of iPhone", False),
        (numbers_agree, "1,000 dollars in euros", "1000 dollars in euros", True),
        # numbers spelt out are numbers too; digits against words still differ
        (numbers_agree, "what is two plus three", "what's two plus two", False),
        (numbers_agree, "top ten movies", "top 5 movies", False),
        (numbers_agree, "What is 2+2?", "what's two plus two", False),
        (numbers_agree, "set a timer for five minutes", "timer for five minutes", True),
        (negation_agrees, "Can I eat eggs?", "Can't I eat eggs?", False),
        (negation_agrees, "Coffee with sugar", "Coffee without sugar", False),
        (negation_agrees, "Why is it not working?", "Why doesn't it work?", True),
        (
            negation_agrees,
            "Is Python not dynamically typed?",
            "Is Python dynamically typed?",
            False,
        ),
        (negation_agrees, "that's false", "that is not false", False),
        (negation_agrees, "Why doesn't my phone charge?", "Why is my phone charging?", False),
        (negation_agrees, "Is it not really safe?", "Is it safe?", False),
        (negation_agrees, "Is it true or not?", "Is it true?", False),
        (negation_agrees, "How to grow taller without surgery?", "How to grow taller?", False),
        (
            negation_agrees,
            "I don't understand your language, switch it to English",
            "Switch your language setting to English",
            True,
        ),
        (negation_agrees, "I'm not sure how to jump start a car", "How to jump start a car", True),
        (word_order_agrees, "Are tigers afraid of cats?", "Are cats afraid of tigers?", False),
        (
            word_order_agrees,
            "Is Flipkart better than Snapdeal?",
            "Is Snapdeal better than Flipkart?",
            False,
        ),
        (
            word_order_agrees,
            "How do you convert ethene to ethane?",
            "How do you convert ethane to ethene?",
            False,
        ),
        (word_order_agrees, "Are tigers afraid of cats?", "are tigers afraid of cats", True),
        (word_order_agrees, "How do I gain weight?", "How can I gain weight?", True),
        (word_order_agrees, "Best phones in 2017", "Best laptops in 2017", True),
        (word_order_agrees, "Are tigers afraid?", "Are tigers afraid of cats?", True),
        (
            word_order_agrees,
            "What is the difference between a psychopath and a sociopath?",
            "What's the difference between sociopaths and psychopaths?",
            True,
        ),
        (word_order_agrees, "Java vs Python", "Python versus Java", True),
        (word_order_agrees, "Java beats Python", "Python beats Java", False),
    ],
)
def test_guards(guard: object, query: str, stored: str, ok: bool) -> None:
    assert guard(query, _hit(stored)) is ok  # type: ignore[operator]


def test_exact_hits_always_pass() -> None:
    for guard in (numbers_agree, negation_agrees, word_order_agrees, default_guards()):
        assert guard("flights to paris", _hit("Flights to Paris", "exact"))
    assert word_order_agrees("cats afraid of tigers", _hit("tigers afraid of cats", "exact"))


def test_all_of_needs_every_guard() -> None:
    both = all_of(numbers_agree, negation_agrees)
    assert both("Top 10 in Paris", _hit("Top 10 in Paris?"))
    assert not both("Top 10 in Paris", _hit("Top 5 in Paris"))
    assert not both("Top 10 in Paris", _hit("Not the top 10 in Paris"))
    three = default_guards()
    assert three("Best of 2019", _hit("best of 2019!"))
    assert not three("Best of 2019", _hit("Best of 2018"))
    assert not three("Is it safe?", _hit("Is it not safe?"))
    assert not three("Are dogs smarter than cats?", _hit("Are cats smarter than dogs?"))
    assert all_of()("a", _hit("b"))
    with pytest.raises(TypeError):
        all_of(numbers_agree, 3)  # type: ignore[arg-type]


def test_a_guard_blocks_a_hit_in_the_cache() -> None:
    emb = HashingEmbedder()
    with SemanticCache(embedder=emb, similarity_threshold=0.5, validator=numbers_agree) as c:
        c.put("What are the top 10 movies of all time?", "ten")
        assert c.get("What are the top 5 movies of all time?") is None
        assert c.stats()["misses"]["validator"] == 1
        hit = c.get("what are the top 10 movies of all time")
        assert hit is not None


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("two hundred and ten", {"210"}),
        ("one thousand two hundred and thirty four", {"1234"}),
        ("twenty-five dollars", {"25"}),
        ("nine eleven", {"9", "11"}),
        ("three and four", {"3", "4"}),
        ("I have one question and two answers", {"2"}),
        ("which one is better", set()),
        ("hundreds of people", set()),
        ("one hundred", {"100"}),
        ("2 plus two", {"2"}),
        ("top 10 movies", {"10"}),
    ],
)
def test_numbers_spelt_out_are_read_as_values(text: str, values: set[str]) -> None:
    """What the guard evidence reads; the numbers guard itself reads digits only."""
    assert text_info(text).values == values
    assert text_info(text).numbers <= text_info(text).values


def test_values_differ_reads_numbers_spelt_out_numbers_differ_does_not() -> None:
    assert numbers_differ("What is 2+2?", "what's two plus two")
    assert not values_differ("What is 2+2?", "what's two plus two")
    assert values_differ("set a timer for five minutes", "set a timer for 10 minutes")
    assert numbers_differ("two plus two", "two plus three")  # (the guard reads both)
    assert values_differ("two plus two", "two plus three")
    assert not numbers_differ("which one is better", "which is better")


@pytest.mark.parametrize(
    ("word", "stemmed"),
    [
        ("charging", "charg"),
        ("charges", "charg"),
        ("charge", "charg"),
        ("eats", "eat"),
        ("eat", "eat"),
        ("class", "class"),
        ("sing", "sing"),
        ("don't", "dont"),
        ("quickly", "quick"),
    ],
)
def test_stem_matches_inflections(word: str, stemmed: str) -> None:
    assert stem(word) == stemmed


def test_what_each_negation_negates_is_recorded() -> None:
    info = text_info("I don't really want it, and never tried")
    assert info.negated == {"want", "tri"}
    assert text_info("is it true or not").negated == {""}
    assert text_info("taller without surgery").negated == {""}
    assert text_info("is it true").negated == frozenset()
