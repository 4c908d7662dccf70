"""Small value types shared by the cache, its stores and its users."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["MISS_REASONS", "Hit", "Layer", "MetricsEvent", "MissReason"]

Layer = Literal["exact", "semantic"]
MissReason = Literal[
    "bypass",
    "no_candidate",
    "below_threshold",
    "confidence",
    "validator",
    "expired",
    "embedder_error",
    "store_unavailable",
    "budget",
    "support",
]
#: Every reason a get can miss for, in the order ``stats()`` lists them.
MISS_REASONS: tuple[MissReason, ...] = (
    "bypass",
    "no_candidate",
    "below_threshold",
    "confidence",
    "validator",
    "expired",
    "embedder_error",
    "store_unavailable",
    "budget",
    "support",
)


@dataclass(slots=True)
class Hit:
    """A cached answer.

    Attributes:
        response: the stored response.
        similarity: cosine similarity in [-1, 1] between the query and the stored
            query's embedding; exactly 1.0 for an exact hit.
        layer: ``"exact"`` (normalized-text match) or ``"semantic"`` (vector match).
        query: the stored query as it was given to ``put`` (not the one just asked).
        namespace: the namespace the entry lives in.
        metadata: the metadata stored with the entry (a fresh copy), or None.
        created_at: when the entry was written (the cache's clock, seconds).
        expires_at: when it stops being served, or None for never.
        confidence: what ``confidence_fn`` said of this hit; 1.0 for an exact hit and
            None when no ``confidence_fn`` is configured.
        runner_up: for a semantic hit, the similarity of the best *other* candidate the
            search found (None for an exact hit or when there was no other candidate).
            ``similarity - runner_up`` is the margin a verifier can weigh: a query
            close to two different stored questions is ambiguous.
        entry_id: the store's id of the entry served (what ``feedback`` reports on);
            None for a Hit that no cache made. Not compared: two hits with the same
            contents are equal whichever entry they came from.
        score: for a semantic hit served by ``answer_support`` (the default), the score
            the threshold saw: its support score, raised by its answer's lead where
            that answer is favoured (docs/quality.md); equal to the similarity where
            no other candidate moved it. None for an exact hit, with
            ``answer_support=False``, and with an error budget (it judges the
            similarity). Not compared, as ``entry_id``.
    """

    response: str
    similarity: float
    layer: Layer
    query: str
    namespace: str
    metadata: dict[str, Any] | None
    created_at: float
    expires_at: float | None
    confidence: float | None
    runner_up: float | None = None
    entry_id: int | None = field(default=None, compare=False)
    score: float | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class MetricsEvent:
    """What ``metrics_hook`` receives once per operation.

    Attributes:
        kind: ``"get"``, ``"put"``, ``"delete"``, ``"evict"`` or ``"expire"``.
        namespace: the namespace concerned.
        hit: for a get, whether it hit; None for other kinds.
        layer: for a hit, the layer that answered.
        reason: for a miss, one of :data:`MISS_REASONS`.
        similarity: for a semantic hit or a semantic miss with a candidate, the best
            candidate's similarity; 1.0 for an exact hit.
        latency: seconds the operation took (0.0 for evict/expire).
        count: entries concerned (a put_many counts its entries; an eviction its victims).
    """

    kind: Literal["get", "put", "delete", "evict", "expire"]
    namespace: str
    hit: bool | None = None
    layer: Layer | None = None
    reason: MissReason | None = None
    similarity: float | None = None
    latency: float = 0.0
    count: int = 1
