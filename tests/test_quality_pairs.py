"""Pair sets: reading CSVs, clusters by positive pairs, distinct stored texts, splits."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_quality_fixtures import synthetic_pairs, write_csv

from semcache import InvalidInputError
from semcache.quality import LabelledPair, PairSet, load_pairs


def test_clusters_are_transitive_over_positive_pairs_only() -> None:
    s = PairSet(
        [
            LabelledPair("A one", "B two", 1),
            LabelledPair("b  TWO", "C three", 1),  # linked through a normalized text
            LabelledPair("C three", "D four", 0),
        ]
    )
    assert s.same_cluster("a one", "c three")
    assert not s.same_cluster("A one", "D four")
    assert s.cluster("never seen") == "never seen"


def test_stored_texts_are_distinct_and_the_last_put_wins() -> None:
    s = PairSet(
        [
            LabelledPair("Hello  World", "x", 0),
            LabelledPair("other", "y", 0),
            LabelledPair("hello world", "z", 1),
        ]
    )
    texts, keys = s.stored_texts()
    assert keys == ["hello world", "other"]
    assert texts == ["hello world", "other"]


def test_split_parts_share_no_text_and_are_reproducible() -> None:
    s = PairSet(synthetic_pairs(repeats=2))
    a, b = s.split([0.5, 0.5], seed=1)
    assert len(a) + len(b) == len(s)
    texts_a = {t for p in a.pairs for t in (p.text_a.lower(), p.text_b.lower())}
    texts_b = {t for p in b.pairs for t in (p.text_a.lower(), p.text_b.lower())}
    assert not texts_a & texts_b
    again = s.split([0.5, 0.5], seed=1)
    assert list(again[0].pairs) == a.pairs
    assert s.split([0.5, 0.5], seed=2)[0].pairs != a.pairs
    with pytest.raises(InvalidInputError):
        s.split([0.7, 0.7])


def test_sample_is_seeded() -> None:
    s = PairSet(synthetic_pairs())
    assert s.sample(20, seed=4).pairs == s.sample(20, seed=4).pairs
    assert len(s.sample(10**6)) == len(s)


def test_load_pairs_reads_a_csv_and_rejects_bad_rows(tmp_path: Path) -> None:
    pairs = synthetic_pairs()[:10]
    loaded = load_pairs(write_csv(tmp_path / "p.csv", pairs))
    assert loaded.pairs == pairs
    bad = tmp_path / "bad.csv"
    bad.write_text("text_a,text_b,label\na,b,2\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="label"):
        load_pairs(bad)
    cols = tmp_path / "cols.csv"
    cols.write_text("question,label\na,1\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="missing column"):
        load_pairs(cols)
    with pytest.raises(FileNotFoundError):
        load_pairs(tmp_path / "nope.csv")
