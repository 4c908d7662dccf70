"""The stream replay's ``default`` family run through a real cache.

:func:`cache_stream_replay` replays a cluster set's stream (``_clusters``: every text in
the order ``numpy.random.default_rng(0).permutation(n)``) as an application would:
``SemanticCache(path, error_budget=B)`` with every other setting as shipped (the
default guards, ``index_backend="auto"``, the default ``same_answer``), on a SQLite file
in a temporary directory, and one ``get_or_put(text, compute, embedding=vector)`` per
text. ``compute()`` is the "LLM": it answers the text's cluster and is counted, so the
LLM calls are the misses and the verifications the budget chose, and a get that does
not call it was served from the cache (right when the answer is the text's cluster).

Why a SQLite file and not the memory store: it is what ``SemanticCache(path)`` gives
an application, and the budget's state then takes the path it takes there (each
entry's record written with the entry and read back with it, the namespace's counts
added to the file and read back at every sync). The memory store keeps the same state
through the same ``QualityState`` calls, so the two decide alike; the file adds the
cost of those writes, which is part of what the budget costs.

The vectors come from the replay's :class:`~semcache.quality._clusters.StreamVectors`
(the embedding file): no model runs during the replay, and the cache has no embedder.

:func:`~semcache.quality._budget_replay.budget_stream_replay` is the same policy driven
outside the cache (its candidates read through a recording ``confidence_fn``): the
research tool, where each signal can be switched off. This one measures what ships.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any, TextIO

from .._budgets import BUDGET_FLOOR
from .._cache import SemanticCache, engine_of
from .._progress import ProgressCallback, as_progress
from ._clusters import StreamPoint, StreamVectors

__all__ = ["CacheReplay", "cache_stream_replay"]


@dataclass(frozen=True)
class CacheReplay:
    """One replay through the cache.

    Attributes:
        point: the figures (``llm_calls``: ``compute()`` calls, misses and
            verifications; ``verifications``: from ``stats()["budget"]``;
            ``p50_get_us``: the median time of the get part of a ``get_or_put``, up to
            its answer when served, up to the ``compute()`` call otherwise).
        served: per get in stream order, the answer served from the cache, or None
            where ``compute()`` answered.
        get_us: per get, that time in microseconds.
        call_us: per get, the whole ``get_or_put`` in microseconds (a put included
            after an LLM call; ``compute()`` itself costs nothing here).
        stats: the cache's ``stats()`` at the end.
    """

    point: StreamPoint
    served: list[str | None] = field(repr=False)
    get_us: list[float] = field(repr=False)
    call_us: list[float] = field(repr=False)
    stats: dict[str, Any] = field(repr=False)

    @property
    def p50_hit_us(self) -> float:
        """The median ``get_or_put`` that was served from the cache, in microseconds."""
        times = [t for t, s in zip(self.call_us, self.served, strict=True) if s is not None]
        return statistics.median(times) if times else math.nan


class _LLM:
    """``compute()`` of one get: answers ``answer`` and notes when it was called."""

    __slots__ = ("answer", "at", "calls")

    def __init__(self) -> None:
        self.answer = ""
        self.at: float | None = None
        self.calls = 0

    def ask(self, answer: str) -> None:
        """Set up the next get: the answer to give, not called yet."""
        self.answer, self.at = answer, None

    def called_at(self) -> float | None:
        """When ``compute()`` was called in this get (None: not called)."""
        return self.at

    def __call__(self) -> str:
        self.at = perf_counter()
        self.calls += 1
        return self.answer


def cache_stream_replay(
    data: StreamVectors,
    budget: float,
    *,
    path: str | Path | None = None,
    label: str | None = None,
    make_cache: Callable[[Path, float], SemanticCache] | None = None,
    progress: ProgressCallback | TextIO | None = None,
) -> CacheReplay:
    """The stream replay through ``SemanticCache(..., error_budget=budget)``.

    Args:
        data: the texts, clusters and vectors in stream order.
        budget: the cache's ``error_budget``.
        path: the SQLite file to use (must not exist yet; None: one in a temporary
            directory, removed after).
        label: names the result (default ``"default, budget B"``).
        make_cache: ``make_cache(path, budget)`` builds the cache (default: the
            shipped settings with ``error_budget=budget``; tests pass others).
        progress: a :data:`~semcache.ProgressCallback` or a stream (None: silent).

    Raises:
        ValueError: ``path`` exists already.
        ConfigurationError: ``budget`` is not in (0, 1) (the cache refuses it).
    """
    if path is not None and Path(path).exists():
        raise ValueError(f"{path} exists: the replay starts from an empty cache")
    if path is None:
        with tempfile.TemporaryDirectory(prefix="semcache-replay-") as tmp:
            return _run(data, budget, Path(tmp) / "replay.db", label, make_cache, progress)
    return _run(data, budget, Path(path), label, make_cache, progress)


def _shipped(path: Path, budget: float) -> SemanticCache:
    return SemanticCache(path, error_budget=budget)


def _run(
    data: StreamVectors,
    budget: float,
    path: Path,
    label: str | None,
    make_cache: Callable[[Path, float], SemanticCache] | None,
    progress: ProgressCallback | TextIO | None,
) -> CacheReplay:
    label = label or f"default, budget {budget}"
    report = as_progress(progress)
    cache = (make_cache or _shipped)(path, budget)
    models = engine_of(cache).answer_models
    if models is not None:  # (fitted in the get that starts a fit: no timing decides)
        models.background = False
    llm = _LLM()
    n = len(data.texts)
    served: list[str | None] = []
    get_us: list[float] = []
    call_us: list[float] = []
    hits = wrong = 0
    try:
        for k, (text, cluster, vector) in enumerate(
            zip(data.texts, data.clusters, data.vectors, strict=True)
        ):
            if report is not None and k % 512 == 0:
                report(label, k, n)
            llm.ask(cluster)
            t0 = perf_counter()
            answer = cache.get_or_put(text, llm, embedding=vector)
            t1 = perf_counter()
            call_us.append((t1 - t0) * 1e6)
            called = llm.called_at()
            if called is None:  # served from the cache
                get_us.append((t1 - t0) * 1e6)
                served.append(answer)
                hits += 1
                wrong += answer != cluster
            else:
                get_us.append((called - t0) * 1e6)
                served.append(None)
        if report is not None:
            report(label, n, n)
        stats = cache.stats()
        guarded = engine_of(cache).guards is not None
    finally:
        cache.close()
    budget_stats = stats.get("budget") or {}
    point = StreamPoint(
        label=label,
        min_similarity=BUDGET_FLOOR,  # the budget decides above its floor
        guards=("default",) if guarded else (),
        gets=n,
        hits=hits,
        wrong=wrong,
        exact_hits=int(stats["hits"].get("exact", 0)),
        llm_calls=llm.calls,
        hit_rate=hits / n if n else math.nan,
        error_rate=wrong / n if n else math.nan,
        p50_get_us=statistics.median(get_us) if get_us else math.nan,
        verifications=int(budget_stats.get("verifications", 0)),
    )
    return CacheReplay(point, served, get_us, call_us, stats)
