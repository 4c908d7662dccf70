"""Hit quality you can measure and control.

- :func:`replay` runs the replay protocol of labelled pairs through a cache and measures
  hit rate, precision and false hits for any decision rule (``semcache eval``).
- :class:`Verifier` is a small learned model that decides whether a semantic candidate
  asks the same thing as the query; :func:`calibrate` trains one and picks its
  threshold for a target precision on pairs it was not trained on
  (``semcache calibrate``). Plug it in with ``SemanticCache(...,
  **verifier.cache_options())``.
- The guards (:func:`numbers_agree`, :func:`negation_agrees`,
  :func:`word_order_agrees`; all three: :func:`default_guards`; combine with
  :func:`all_of`) are validators that block classic false hits; ``SemanticCache``
  applies numbers and negation unless built with ``guards=None`` (``guards=``
  :func:`default_guards` adds word order).
- ``semcache eval`` also runs the static and stream replays of a cluster set
  (``text,cluster,split``; see ``_clusters``).

Everything here needs NumPy only.
"""

from __future__ import annotations

from ._boost import BoostedTrees, fit_boosted_trees
from ._calibrate import Calibration, calibrate, holdout_split
from ._embedding_cache import EmbeddingFile
from ._features import FEATURE_NAMES, pair_features
from ._guards import all_of, default_guards, negation_agrees, numbers_agree, word_order_agrees
from ._pairs import LabelledPair, PairSet, load_pairs
from ._replay import FalseHit, QualityPoint, ReplayResult, Rule, replay
from ._verifier import Verifier

#: The guards by name, as ``semcache eval --guards`` knows them.
GUARDS = {
    "numbers": numbers_agree,
    "negation": negation_agrees,
    "order": word_order_agrees,
}

__all__ = [
    "FEATURE_NAMES",
    "GUARDS",
    "BoostedTrees",
    "Calibration",
    "EmbeddingFile",
    "FalseHit",
    "LabelledPair",
    "PairSet",
    "QualityPoint",
    "ReplayResult",
    "Rule",
    "Verifier",
    "all_of",
    "calibrate",
    "default_guards",
    "fit_boosted_trees",
    "holdout_split",
    "load_pairs",
    "negation_agrees",
    "numbers_agree",
    "pair_features",
    "replay",
    "word_order_agrees",
]
