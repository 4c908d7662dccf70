"""Labelled pair sets: reading them, clustering texts by their positive pairs, and
splitting them into parts that share no text."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from pathlib import Path

from .._errors import InvalidInputError
from .._text import normalize_text

__all__ = ["LabelledPair", "PairSet", "load_pairs"]


@dataclass(frozen=True, slots=True)
class LabelledPair:
    """One row of a pair set: ``label`` is 1 when ``text_b`` asks what ``text_a`` asks."""

    text_a: str
    text_b: str
    label: int


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        root = parent.setdefault(x, x)
        while root != parent[root]:
            root = parent[root]
        while x != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # deterministic roots


class PairSet:
    """Labelled pairs with the clusters of the replay protocol.

    Texts are compared normalized (NFKC, casefold, collapsed whitespace, as the cache's
    exact layer does); two texts are in one cluster when positive pairs link them,
    directly or through other texts.

    Args:
        pairs: the labelled pairs.

    Raises:
        InvalidInputError: a label is not 0 or 1, or a text is not a str.
    """

    def __init__(self, pairs: Iterable[LabelledPair]) -> None:
        self.pairs: list[LabelledPair] = list(pairs)
        clusters = _UnionFind()
        for p in self.pairs:
            if p.label not in (0, 1):
                raise InvalidInputError(f"a label must be 0 or 1, got {p.label!r}")
            if not isinstance(p.text_a, str) or not isinstance(p.text_b, str):
                raise InvalidInputError("texts must be str")
            a, b = normalize_text(p.text_a), normalize_text(p.text_b)
            clusters.find(a)
            clusters.find(b)
            if p.label == 1:
                clusters.union(a, b)
        self._clusters = clusters

    def __len__(self) -> int:
        return len(self.pairs)

    def cluster(self, text: str) -> str:
        """The cluster id (a representative normalized text) of ``text``; a text that
        no pair holds is its own cluster."""
        key = normalize_text(text)
        if key not in self._clusters.parent:
            return key
        return self._clusters.find(key)

    def same_cluster(self, a: str, b: str) -> bool:
        """Whether serving ``a``'s answer for ``b`` is correct under the protocol."""
        return self.cluster(a) == self.cluster(b)

    def stored_texts(self) -> tuple[list[str], list[str]]:
        """Step 2 of the protocol: every distinct ``text_a`` once, the last one winning.

        Returns:
            ``(texts, keys)``: the texts as given and their normalized forms, in the
            order of their first appearance.
        """
        last: dict[str, str] = {}
        for p in self.pairs:
            last[normalize_text(p.text_a)] = p.text_a
        return list(last.values()), list(last)

    def split(self, fractions: Sequence[float], *, seed: int = 0) -> list[PairSet]:
        """Split into parts that share no text.

        Pairs are grouped into connected components (over every pair, positive or
        negative); each component goes whole to one part, drawn with a seeded hash so
        that a given seed always gives the same parts.

        Args:
            fractions: the parts' shares (positive, summing to 1).
            seed: picks the assignment.

        Returns:
            One :class:`PairSet` per fraction, in order.

        Raises:
            InvalidInputError: bad fractions.
        """
        if not fractions or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
            raise InvalidInputError(f"fractions must be positive and sum to 1, got {fractions}")
        comps = _UnionFind()
        for p in self.pairs:
            comps.union(normalize_text(p.text_a), normalize_text(p.text_b))
        bounds = [sum(fractions[: i + 1]) for i in range(len(fractions))]
        parts: list[list[LabelledPair]] = [[] for _ in fractions]
        salt = str(seed).encode()
        for p in self.pairs:
            root = comps.find(normalize_text(p.text_a))
            digest = blake2b(root.encode(), digest_size=8, key=salt[:64]).digest()
            u = int.from_bytes(digest, "big") / 2.0**64
            part = next((i for i, b in enumerate(bounds) if u < b), len(bounds) - 1)
            parts[part].append(p)
        return [PairSet(part) for part in parts]

    def sample(self, n: int, *, seed: int = 0) -> PairSet:
        """A seeded random subset of ``n`` pairs (all of them if ``n >= len(self)``).

        Note that clusters are recomputed from the subset's own positive pairs."""
        if n >= len(self.pairs):
            return PairSet(self.pairs)
        rng = random.Random(seed)
        return PairSet(rng.sample(self.pairs, n))


def load_pairs(path: str | Path) -> PairSet:
    """Read a CSV with the columns ``text_a,text_b,label`` (a header row first).

    Raises:
        FileNotFoundError: no such file.
        InvalidInputError: a missing column or a label that is not 0 or 1.
    """
    pairs: list[LabelledPair] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"text_a", "text_b", "label"} - set(reader.fieldnames or ())
        if missing:
            raise InvalidInputError(f"{path}: missing column(s) {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                label = int(row["label"])
            except (TypeError, ValueError):
                raise InvalidInputError(f"{path}:{line}: bad label {row['label']!r}") from None
            if label not in (0, 1):
                raise InvalidInputError(f"{path}:{line}: label must be 0 or 1, got {label}")
            pairs.append(LabelledPair(row["text_a"] or "", row["text_b"] or "", label))
    return PairSet(pairs)
