"""The answer model's record in the static replay (``_clusters.static_replay``): what
``semcache._get._supported`` reads of the model, per query, for
:meth:`~semcache.quality._clusters.StaticResult.supported` to apply at every threshold."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt

from .._agreement import SUPPORT_FLOOR, SUPPORT_K, answer_digest
from .._answer_model import AnswerModels
from .._cache import SemanticCache, engine_of
from .._get import make_hit
from .._prototypes import Prototypes
from .._types import Hit

__all__ = ["ModelRecord", "model_record"]

Judge = Callable[[str, Hit], bool]


@dataclass
class ModelRecord:
    """What the answer model (``semcache._answer_model``, fitted on the replay's stored
    entries) says of each query.

    Attributes:
        p: per query and candidate recorded, the probability of its answer (NaN where
            the model does not know it).
        top_p: per query, the probability of the repeated answer of highest
            probability.
        wide_similarity: per query, the similarity of the stored prompt that answer
            is served from beyond the candidates (``semcache._get._beyond``: its
            prompt nearest the query at or above the support floor, where no
            candidate at or above the floor has it); -inf: none.
        wide_correct: whether that answer is the query's cluster.
        wide_guards: per recorded guard, its verdict on that prompt's hit.
    """

    p: npt.NDArray[np.float64]
    top_p: npt.NDArray[np.float64]
    wide_similarity: npt.NDArray[np.float64]
    wide_correct: npt.NDArray[np.bool_]
    wide_guards: dict[str, npt.NDArray[np.bool_]]


def model_record(
    cache: SemanticCache,
    records: Sequence[Sequence[tuple[float, bool, tuple[bool, ...], object]]],
    queries: Sequence[npt.NDArray[np.float32]],
    clusters: Sequence[str],
    texts: Sequence[str],
    guards: Mapping[str, Judge],
    extra: Sequence[str] = (),
) -> ModelRecord | None:
    """The answer model's record (:class:`ModelRecord`): the model fitted on the
    replay's stored entries as ``answer_support`` fits it (``semcache._answer_model``),
    then read per query as ``semcache._get._supported`` reads it; None where it fits
    none (no answer stored twice). ``extra``: the names of guards recorded otherwise
    (verdict False for the answer served from beyond the candidates)."""
    eng = engine_of(cache)
    prototypes = Prototypes(eng.store, eng.indexes.decode, answer_digest, eng.clock)
    models = AnswerModels(prototypes, lambda: eng.lock, lambda: True)
    fitted = models.fit("default")
    if fitted is None:
        return None
    n = len(records)
    width = max(1, max(len(r) for r in records))
    p = np.full((n, width), np.nan)
    top_p = np.zeros(n)
    wide_similarity = np.full(n, -np.inf)
    wide_correct = np.zeros(n, dtype=bool)
    wide_guards = {name: np.zeros(n, dtype=bool) for name in [*guards, *extra]}
    for q, (rows, vector) in enumerate(zip(records, queries, strict=True)):
        unit = eng.unit_rows(vector, 1, "embedding")[0]
        reading = fitted.read(unit)
        top_p[q] = reading.top_p
        keys = [answer_digest(cast(str, row[3])) for row in rows]
        for j, key in enumerate(keys):
            got = reading.of(key)
            if got is not None:
                p[q, j] = got
        head = {keys[j] for j in range(min(SUPPORT_K, len(rows))) if rows[j][0] >= SUPPORT_FLOOR}
        if reading.top in head:
            continue
        for entry_id, similarity in fitted.nearest(reading.top, unit):
            entry = eng.store.get_by_ids([entry_id]).get(entry_id)
            if entry is None:
                continue
            hit = make_hit(entry, similarity, "semantic", None)
            wide_similarity[q] = similarity
            wide_correct[q] = entry.response == clusters[q]
            for name, guard in guards.items():
                wide_guards[name][q] = bool(guard(texts[q], hit))
            break
    return ModelRecord(p, top_p, wide_similarity, wide_correct, wide_guards)
