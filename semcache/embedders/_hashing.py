"""A small, dependency-free embedder: hashed character n-grams and words."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .._text import normalize_text
from ._base import unit_rows

__all__ = ["HashingEmbedder"]


class HashingEmbedder:
    """Embeds text as a signed, hashed bag of character n-grams and words.

    Deterministic across processes and platforms (CRC32, no random seed), fast, and
    good enough to tell near-duplicates from unrelated text; it knows nothing of
    meaning, so use a real model (``semcache.embedders.SentenceTransformerEmbedder``)
    for paraphrases. Meant for tests, examples and precomputed-embedding pipelines.

    Args:
        dim: vector length (>= 8).
        ngram_range: inclusive range of character n-gram lengths.
        word_weight: weight of whole-word features relative to n-grams (0 disables).

    Raises:
        ValueError: ``dim`` < 8 or an empty/negative n-gram range.
    """

    def __init__(
        self, dim: int = 256, *, ngram_range: tuple[int, int] = (3, 4), word_weight: float = 1.0
    ) -> None:
        lo, hi = ngram_range
        if dim < 8:
            raise ValueError(f"dim must be >= 8, got {dim}")
        if lo < 1 or hi < lo:
            raise ValueError(f"invalid ngram_range {ngram_range!r}")
        self._dim = int(dim)
        self._range = (int(lo), int(hi))
        self._word_weight = float(word_weight)

    @property
    def dim(self) -> int:
        """Vector length."""
        return self._dim

    @property
    def fingerprint(self) -> str:
        """``hashing-v1:dim=..:ngrams=..-..:words=..``"""
        lo, hi = self._range
        return f"hashing-v1:dim={self._dim}:ngrams={lo}-{hi}:words={self._word_weight:g}"

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Unit vectors of shape ``(len(texts), dim)``; an empty text maps to a fixed
        vector so that it is still a valid embedding."""
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        lo, hi = self._range
        dim = self._dim
        for row, text in enumerate(texts):
            norm = normalize_text(text)
            padded = f" {norm} "
            vec = out[row]
            for n in range(lo, hi + 1):
                for i in range(len(padded) - n + 1):
                    h = zlib.crc32(padded[i : i + n].encode("utf-8", "surrogatepass"))
                    vec[h % dim] += 1.0 if h & 0x80000000 else -1.0
            if self._word_weight:
                for word in norm.split():
                    h = zlib.crc32(b"w:" + word.encode("utf-8", "surrogatepass"))
                    vec[h % dim] += self._word_weight if h & 0x80000000 else -self._word_weight
            if not vec.any():
                vec[0] = 1.0
        return unit_rows(out)
