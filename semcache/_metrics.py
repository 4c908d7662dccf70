"""Operation counters and the metrics hook: what ``stats()`` and ``metrics_hook`` see."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any, Literal

from ._types import MISS_REASONS, Hit, Layer, MetricsEvent, MissReason

__all__ = ["Metrics", "MetricsHook"]

logger = logging.getLogger("semcache")

MetricsHook = Callable[[MetricsEvent], None]


class Metrics:
    """This process's counts since the cache opened, reported to ``hook`` as events
    (exceptions the hook raises are logged and ignored)."""

    __slots__ = ("counters", "hits", "hook", "misses")

    def __init__(self, hook: MetricsHook | None) -> None:
        self.hook = hook
        self.hits: dict[Layer, int] = {"exact": 0, "semantic": 0}
        self.misses: dict[MissReason, int] = dict.fromkeys(MISS_REASONS, 0)
        self.counters = {
            "puts": 0,
            "deletes": 0,
            "evictions": 0,
            "expirations": 0,
            "guards_overruled": 0,
        }

    def emit(self, event: MetricsEvent) -> None:
        hook = self.hook
        if hook is None:
            return
        try:
            hook(event)
        except Exception:
            logger.exception("semcache: metrics_hook raised; ignored")

    def emit_hit(self, hit: Hit, t0: float) -> None:
        """Report a get served (``t0``: its ``perf_counter`` start). The count itself
        (``hits[layer] += 1``) is made by the get, inline: it is on every hit's path."""
        self.emit(
            MetricsEvent(
                "get",
                hit.namespace,
                hit=True,
                layer=hit.layer,
                similarity=hit.similarity,
                latency=perf_counter() - t0,
            )
        )

    def miss(self, ns: str, reason: MissReason, similarity: float | None, t0: float) -> None:
        """Count a get that missed."""
        self.misses[reason] += 1
        if self.hook is not None:
            self.emit(
                MetricsEvent(
                    "get",
                    ns,
                    hit=False,
                    reason=reason,
                    similarity=similarity,
                    latency=perf_counter() - t0,
                )
            )

    def put(self, ns: str, n: int, t0: float) -> None:
        self.counters["puts"] += n
        if self.hook is not None:
            self.emit(MetricsEvent("put", ns, latency=perf_counter() - t0, count=n))

    def delete(self, ns: str, t0: float) -> None:
        self.counters["deletes"] += 1
        self.emit(MetricsEvent("delete", ns, latency=perf_counter() - t0))

    def removals(
        self, removed: Sequence[tuple[int, str]], kind: Literal["evict", "expire"]
    ) -> None:
        """Count entries evicted or expired (``(id, namespace)`` pairs); one event per
        namespace."""
        if not removed:
            return
        self.counters["evictions" if kind == "evict" else "expirations"] += len(removed)
        if self.hook is None:
            return
        per_ns: dict[str, int] = {}
        for _, ns in removed:
            per_ns[ns] = per_ns.get(ns, 0) + 1
        for ns, count in sorted(per_ns.items()):
            self.emit(MetricsEvent(kind, ns, count=count))

    def snapshot(self) -> dict[str, Any]:
        """The counts as ``stats()`` reports them."""
        hits = sum(self.hits.values())
        gets = hits + sum(self.misses.values())
        return {
            "hits": dict(self.hits),
            "misses": dict(self.misses),
            "gets": gets,
            "hit_rate": hits / gets if gets else 0.0,
            **self.counters,
        }
