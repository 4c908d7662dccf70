"""The verifier: a small learned model deciding whether a semantic candidate asks the
same thing as the query, from cheap features of the pair (see ``_features``).

It plugs into a cache as its ``confidence_fn``::

    verifier = Verifier.load("verifier.json")
    cache = SemanticCache(path, embedder, **verifier.cache_options())

``cache_options()`` sets ``similarity_threshold`` to the verifier's floor (candidates
below it are never served), ``confidence_fn`` to the verifier (its score, a
probability, lands in ``Hit.confidence``) and ``min_confidence`` to the threshold chosen
for the target precision. The file is JSON (no pickle): trees of plain numbers.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np

from .._errors import ConfigurationError
from .._types import Hit
from ._boost import BoostedTrees
from ._features import FEATURE_NAMES, pair_features

__all__ = ["Verifier"]

_FORMAT: Final = "semcache-verifier"
_VERSION: Final = 1


class Verifier:
    """Scores ``(query, candidate)`` pairs; a score is an estimated probability that
    serving the candidate's answer is right.

    Args:
        model: the fitted trees (over :data:`~semcache.quality.FEATURE_NAMES`).
        threshold: the least score served (``min_confidence``).
        min_similarity: the least cosine similarity a candidate needs to be scored at
            all (the cache's ``similarity_threshold``).
        info: what calibration measured (target precision, expected hit rate, data...),
            kept in the file.

    Raises:
        ConfigurationError: a threshold outside its range.
    """

    def __init__(
        self,
        model: BoostedTrees,
        *,
        threshold: float,
        min_similarity: float,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        if not (0.0 <= threshold <= 1.0):
            raise ConfigurationError(f"threshold must be a probability in [0, 1], got {threshold}")
        if not (-1.0 <= min_similarity <= 1.0):
            raise ConfigurationError(f"min_similarity must be in [-1, 1], got {min_similarity}")
        self._model = model
        self._threshold = float(threshold)
        self._min_similarity = float(min_similarity)
        self.info: dict[str, Any] = dict(info or {})

    @property
    def threshold(self) -> float:
        """The least score served."""
        return self._threshold

    @property
    def min_similarity(self) -> float:
        """The least cosine similarity a candidate needs."""
        return self._min_similarity

    @property
    def model(self) -> BoostedTrees:
        """The trees."""
        return self._model

    def with_threshold(self, threshold: float) -> Verifier:
        """The same model with another score threshold.

        Raises:
            ConfigurationError: ``threshold`` outside [0, 1].
        """
        return Verifier(
            self._model, threshold=threshold, min_similarity=self._min_similarity, info=self.info
        )

    def score(self, query: str, cached: str, similarity: float, runner_up: float | None) -> float:
        """The probability that ``cached``'s answer is right for ``query``."""
        x = np.asarray(pair_features(query, cached, similarity, runner_up), dtype=np.float64)
        z = self._model.decision_one(x)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def __call__(self, query: str, hit: Hit) -> float:
        """``confidence_fn(query, hit)``: the score of a cache candidate."""
        return self.score(query, hit.query, hit.similarity, hit.runner_up)

    def accepts(self, query: str, hit: Hit) -> bool:
        """``validator(query, hit)``: whether the candidate passes (exact hits always do)."""
        if hit.layer == "exact":
            return True
        return hit.similarity >= self._min_similarity and self(query, hit) >= self._threshold

    def cache_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~semcache.SemanticCache` that make it serve
        what this verifier accepts: ``similarity_threshold``, ``confidence_fn``,
        ``min_confidence``."""
        return {
            "similarity_threshold": self._min_similarity,
            "confidence_fn": self,
            "min_confidence": self._threshold,
        }

    # -- files --------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The verifier as JSON-ready data."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "features": list(FEATURE_NAMES),
            "threshold": self._threshold,
            "min_similarity": self._min_similarity,
            "model": self._model.to_json(),
            "info": self.info,
        }

    @classmethod
    def from_json(cls, data: Any) -> Verifier:
        """The inverse of :meth:`to_json`.

        Raises:
            ConfigurationError: not a verifier, another format version, features this
                version does not compute, or a malformed model.
        """
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ConfigurationError("not a semcache verifier file")
        if data.get("version") != _VERSION:
            raise ConfigurationError(
                f"verifier format version {data.get('version')!r}; this semcache reads "
                f"{_VERSION}: recalibrate with `semcache calibrate`"
            )
        if data.get("features") != list(FEATURE_NAMES):
            raise ConfigurationError(
                "the verifier was trained on other features than this semcache computes: "
                "recalibrate with `semcache calibrate`"
            )
        try:
            model = BoostedTrees.from_json(data["model"], len(FEATURE_NAMES))
            threshold = float(data["threshold"])
            min_similarity = float(data["min_similarity"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"malformed verifier file: {exc}") from None
        info = data.get("info") or {}
        if not isinstance(info, dict):
            raise ConfigurationError("malformed verifier file: info is not an object")
        return cls(model, threshold=threshold, min_similarity=min_similarity, info=info)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the verifier as JSON (atomically: a temporary file, then a rename).

        Raises:
            OSError: the file cannot be written.
        """
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, target)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Verifier:
        """Read a verifier written by :meth:`save` (or ``semcache calibrate``).

        Raises:
            FileNotFoundError: no such file.
            ConfigurationError: the file is not a valid verifier (see :meth:`from_json`).
        """
        text = Path(path).read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{path}: not JSON ({exc})") from None
        return cls.from_json(data)

    def __repr__(self) -> str:
        return (
            f"<Verifier trees={self._model.feature.shape[0]} threshold={self._threshold:.4f} "
            f"min_similarity={self._min_similarity:.3f}>"
        )
