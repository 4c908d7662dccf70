"""Small synthetic labelled pairs for the quality tests (the real data sets are never
part of the repository): paraphrases by rewording templates, and look-alikes that
differ in a number, a name or a negation."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from semcache.quality import LabelledPair, PairSet

TOPICS = [
    "reset my password",
    "cancel my subscription",
    "learn python programming",
    "lose weight fast",
    "improve my english speaking",
    "make money online",
    "get a refund for my order",
    "change my email address",
    "start a small business",
    "prepare for a job interview",
    "write a good resume",
    "travel cheaply in europe",
    "fix a slow laptop",
    "grow tomatoes at home",
    "sleep better at night",
    "save money every month",
]
CITIES = ["Paris", "Rome", "Berlin", "Madrid", "Tokyo", "Lima", "Oslo", "Cairo"]
ASK = ["How do I {t}?", "How can I {t}?", "What is the best way to {t}?", "how to {t}"]


def synthetic_pairs(seed: int = 0, repeats: int = 3) -> list[LabelledPair]:
    """About 200 pairs: positives (rewordings), negatives (other numbers, cities,
    negations, topics)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(repeats):
        for topic in TOPICS:
            a, b = rng.sample(ASK, 2)
            pairs.append(LabelledPair(a.format(t=topic), b.format(t=topic), 1))
            other = rng.choice([t for t in TOPICS if t != topic])
            pairs.append(LabelledPair(a.format(t=topic), b.format(t=other), 0))
        for city in CITIES:
            n = rng.randint(2, 9)
            pairs.append(
                LabelledPair(
                    f"Top {n} things to do in {city}", f"top {n} things to do in {city}?", 1
                )
            )
            pairs.append(
                LabelledPair(
                    f"Top {n} things to do in {city}", f"Top {n + 1} things to do in {city}", 0
                )
            )
            other = rng.choice([c for c in CITIES if c != city])
            pairs.append(
                LabelledPair(
                    f"Cheap flights to {city} in 2024", f"Cheap flights to {other} in 2024", 0
                )
            )
            pairs.append(
                LabelledPair(
                    f"Can I visit {city} in winter?", f"Can't I visit {city} in winter?", 0
                )
            )
    return pairs


def synthetic_set(seed: int = 0, repeats: int = 3) -> PairSet:
    return PairSet(synthetic_pairs(seed, repeats))


def write_csv(path: Path, pairs: list[LabelledPair]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text_a", "text_b", "label"])
        for p in pairs:
            w.writerow([p.text_a, p.text_b, p.label])
    return path


def test_the_synthetic_pairs_are_deterministic_and_mixed() -> None:
    a, b = synthetic_pairs(seed=3), synthetic_pairs(seed=3)
    assert a == b
    labels = [p.label for p in a]
    assert 0.2 < sum(labels) / len(labels) < 0.6
