"""Training a :class:`Verifier` on labelled pairs and choosing its threshold on pairs
it was not trained on."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from .._errors import InvalidInputError
from .._progress import ProgressCallback, as_progress
from ._boost import fit_boosted_trees
from ._pairs import PairSet
from ._replay import Embed, QualityPoint, Rule, replay
from ._verifier import Verifier

__all__ = ["Calibration", "calibrate", "holdout_split"]


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` produced and measured.

    Attributes:
        verifier: the verifier, its threshold set for the target precision.
        chosen: the verifier's point on the calibration part (the expected precision
            and hit rate), or None when no threshold reached the target.
        cosine: a plain cosine threshold's point at the same target on the same part.
        fit_candidates: candidate pairs the model was trained on.
        fit_pairs, calibration_pairs, holdout_pairs: sizes of the parts.
    """

    verifier: Verifier
    chosen: QualityPoint | None
    cosine: QualityPoint | None
    fit_candidates: int
    fit_pairs: int
    calibration_pairs: int
    holdout_pairs: int


def holdout_split(pairs: PairSet, holdout: float, seed: int) -> tuple[PairSet, PairSet]:
    """``(training part, held-out part)``: the split :func:`calibrate` makes and
    ``semcache eval --heldout`` repeats (parts share no text).

    Raises:
        InvalidInputError: ``holdout`` outside (0, 1).
    """
    if not 0.0 < holdout < 1.0:
        raise InvalidInputError(f"holdout must be in (0, 1), got {holdout}")
    train, held = pairs.split([1.0 - holdout, holdout], seed=seed)
    return train, held


def calibrate(
    pairs: PairSet,
    embed: Embed,
    *,
    target_precision: float = 0.95,
    min_similarity: float = 0.7,
    holdout: float = 0.0,
    calibration_fraction: float = 0.3,
    seed: int = 0,
    trees: int = 150,
    depth: int = 3,
    source: str | None = None,
    progress: ProgressCallback | TextIO | None = None,
) -> Calibration:
    """Train a verifier and pick its threshold for ``target_precision``.

    The pairs (less a held-out part, if ``holdout`` > 0, never read) are split into a
    fitting part and a calibration part sharing no text. The fitting part is replayed
    through a cache (the protocol of :func:`~semcache.quality.replay`) and every
    candidate at or above ``min_similarity`` becomes a training example, labelled by the
    clusters. The calibration part is replayed with the trained verifier, in a cache
    that also holds the fitting part's questions (as distractors, so that it is as
    crowded as a cache of the whole data), and the threshold is the lowest score at
    which the served hits reach ``target_precision``.

    Args:
        pairs: labelled pairs.
        embed: ``embed(texts) -> vectors``.
        target_precision: the precision to reach on the calibration part.
        min_similarity: the cosine floor under which no candidate is served.
        holdout: share of the pairs kept out entirely (for an honest test later).
        calibration_fraction: share of the rest used to choose the threshold.
        seed: drives the splits.
        trees, depth: the model's size.
        source: a name for the data, kept in the file.
        progress: a :data:`~semcache.ProgressCallback` (the stages of
            :func:`~semcache.quality.replay`, twice), or a stream to draw them on.

    Returns:
        The :class:`Calibration`.

    Raises:
        InvalidInputError: bad fractions or target, or too few candidates to learn from.
    """
    if not 0.0 < target_precision <= 1.0:
        raise InvalidInputError(f"target_precision must be in (0, 1], got {target_precision}")
    if not 0.0 < calibration_fraction < 1.0:
        raise InvalidInputError("calibration_fraction must be in (0, 1)")
    if not -1.0 <= min_similarity < 1.0:
        raise InvalidInputError("min_similarity must be in [-1, 1)")
    train, held = holdout_split(pairs, holdout, seed) if holdout > 0 else (pairs, PairSet([]))
    # another seed: the held-out split already fixed which hashes fall where under `seed`
    fit_part, cal_part = train.split(
        [1.0 - calibration_fraction, calibration_fraction], seed=seed + 1
    )
    if not len(fit_part) or not len(cal_part):
        raise InvalidInputError("too few pairs to split into fitting and calibration parts")
    progress = as_progress(progress)
    fitted = replay(
        fit_part, embed, floor=min_similarity, feature_floor=min_similarity, progress=progress
    )
    assert fitted.features is not None
    assert fitted.labels is not None
    labels = fitted.labels
    if labels.size < 20 or labels.all() or not labels.any():
        raise InvalidInputError(
            f"{labels.size} candidates above {min_similarity} with "
            f"{int(labels.sum())} correct: too few (or of one kind) to learn from"
        )
    model = fit_boosted_trees(fitted.features, labels.astype(np.float64), trees=trees, depth=depth)
    draft = Verifier(model, threshold=0.5, min_similarity=min_similarity)
    # The fitting part's questions crowd the calibration cache as a cache of the
    # deployed size would be: a threshold chosen in a sparse cache is too lenient.
    checked = replay(
        cal_part,
        embed,
        floor=min_similarity,
        verifier=draft,
        verifier_floor=min_similarity,
        distractors=fit_part.stored_texts()[0],
        progress=progress,
    )
    chosen = checked.headline(target_precision, by="score", rule=Rule(min_similarity, 0.0))
    cosine = checked.headline(target_precision)
    threshold = 1.0 if chosen is None or chosen.rule.min_score is None else chosen.rule.min_score

    def point(p: QualityPoint | None) -> dict[str, float] | None:
        if p is None:
            return None
        return {
            "hit_rate": p.hit_rate,
            "precision": p.precision,
            "false_hits_per_get": p.false_hits_per_get,
            "threshold": (p.rule.min_similarity if p.rule.min_score is None else p.rule.min_score),
        }

    info = {
        "source": source,
        "target_precision": target_precision,
        "expected": point(chosen),
        "cosine_at_target": point(cosine),
        "split": {
            "seed": seed,
            "holdout": holdout,
            "calibration_fraction": calibration_fraction,
            "fit_pairs": len(fit_part),
            "calibration_pairs": len(cal_part),
            "holdout_pairs": len(held),
        },
        "model": {
            "trees": trees,
            "depth": depth,
            "fit_candidates": int(labels.size),
            "fit_positive": int(labels.sum()),
        },
    }
    verifier = Verifier(model, threshold=threshold, min_similarity=min_similarity, info=info)
    if chosen is not None and math.isnan(chosen.precision):
        chosen = None
    return Calibration(
        verifier=verifier,
        chosen=chosen,
        cosine=cosine,
        fit_candidates=int(labels.size),
        fit_pairs=len(fit_part),
        calibration_pairs=len(cal_part),
        holdout_pairs=len(held),
    )
