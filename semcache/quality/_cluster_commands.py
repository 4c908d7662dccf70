"""``semcache eval`` on a cluster set: the static and stream replays (see ``_clusters``)."""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from .._cache import SemanticCache
from .._errors import ConfigurationError
from .._progress import ProgressBar
from .._types import Hit
from ._cache_replay import cache_stream_replay
from ._clusters import (
    AGREE,
    StaticResult,
    StreamPoint,
    StreamVectors,
    load_clusters,
    shipped_defaults,
    shipped_support,
    static_replay,
)
from ._clusters import stream_replay as _stream_run
from ._replay import QualityPoint, Rule
from ._report import format_table, plot_curves
from ._source import GUARD_NAMES, Source

__all__ = ["STREAM_GRID", "run_cluster_eval"]

Judge = Callable[[str, Hit], bool]
#: The precision targets of the static headline and the error budgets of the stream's.
PRECISIONS = (0.95, 0.99)
BUDGETS = (0.01, 0.001)
#: The cosine thresholds every stream sweep runs (refined by 0.0025 near each budget).
STREAM_GRID = tuple(sorted({round(0.70 + 0.02 * i, 2) for i in range(15)} | {0.85, 0.95, 0.99}))
#: The resolution the stream sweep refines each budget's threshold to.
_RESOLUTION = 0.0025
#: The step of the stream grid below its lowest threshold (:func:`_sweep`).
_GRID_STEP = 0.02
#: The support floor: the static replay records candidates down to this similarity,
#: and the stream sweep goes no lower.
_FLOOR = 0.5


def _guard_names(args: argparse.Namespace) -> list[str]:
    guards = list(GUARD_NAMES) if args.guards == "all" else [g for g in args.guards.split(",") if g]
    unknown = sorted(set(guards) - set(GUARD_NAMES))
    if unknown:
        raise ConfigurationError(f"unknown guard(s) {unknown}; known: {GUARD_NAMES}")
    return guards


def _refuse_pair_options(args: argparse.Namespace) -> None:
    used = [
        flag
        for flag, value in [
            ("--verifier", args.verifier),
            ("--heldout", args.heldout),
            ("--sample", args.sample),
            ("--false-hits", args.false_hits),
        ]
        if value
    ]
    if used:
        raise ConfigurationError(
            f"{args.pairs} is a cluster set: {', '.join(used)} apply to pair files only"
        )


def run_cluster_eval(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``semcache eval CLUSTERS.csv --protocol static|stream``."""
    _refuse_pair_options(args)
    protocol = args.protocol or "static"
    if protocol == "stream" and args.per_cluster is not None:
        raise ConfigurationError("--per-cluster applies to the static replay only")
    per_cluster = 10 if args.per_cluster is None else args.per_cluster
    if per_cluster < 1:
        raise ConfigurationError("--per-cluster must be >= 1")
    if args.timing_sample < 0:
        raise ConfigurationError("--timing-sample must be >= 0")
    guards = _guard_names(args)
    clusters = load_clusters(args.pairs)
    progress = None if args.quiet else ProgressBar(err)
    source = Source(args, progress)
    name = os.path.basename(args.pairs)
    default_threshold, default_guard = shipped_defaults()
    if protocol == "static":
        data = _static(args, clusters, source, progress, guards, per_cluster, out)
    else:
        data = _stream(args, clusters, source, progress, guards, out)
    source.save()
    data = {
        "file": name,
        "protocol": protocol,
        "embedder": source.embedder.fingerprint,
        "defaults": {
            "similarity_threshold": default_threshold,
            "guards": default_guard is not None,
        },
        **data,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return 0


def _families(
    result: StaticResult, guards: Sequence[str], default_guard: Judge | None, support: bool
) -> dict[str, tuple[StaticResult, tuple[str, ...]]]:
    """Rule family -> the record its rules read and the guards they run with (static).
    ``default`` is what ``SemanticCache()`` does: its shipped guards, and the threshold on
    the answer support score when it scores by support (:meth:`StaticResult.supported`),
    on the similarity otherwise."""
    out: dict[str, tuple[StaticResult, tuple[str, ...]]] = {"cosine": (result, ())}
    out["default"] = (
        result.supported(yielding={"default": default_guard} if default_guard else None)
        if support
        else result,
        ("default",) if default_guard is not None else (),
    )
    for g in guards:
        out[f"cosine+{g}"] = (result, (g,))
    if len(guards) > 1:
        out["cosine+" + "+".join(guards)] = (result, tuple(guards))
    return out


def _static(
    args: argparse.Namespace,
    clusters: Any,
    source: Source,
    progress: ProgressBar | None,
    guards: list[str],
    per_cluster: int,
    out: TextIO,
) -> dict[str, Any]:
    from . import GUARDS

    default_threshold, default_guard = shipped_defaults()
    judges: dict[str, Judge] = {g: GUARDS[g] for g in guards}
    if default_guard is not None:
        judges["default"] = default_guard
    floor = min([_FLOOR, *(args.threshold or [])])
    result = static_replay(
        clusters,
        source.embed,
        per_cluster=per_cluster,
        floor=floor,
        guards=judges,
        progress=progress,
    )
    support = shipped_support()
    families = _families(result, guards, default_guard, support)
    headline: dict[str, dict[str, Any]] = {}
    heads: dict[str, dict[float, QualityPoint | None]] = {}
    for family, (rec, fg) in families.items():
        heads[family] = {t: rec.headline(t, fg) for t in PRECISIONS}
        headline[family] = {
            f"precision_{t}": None
            if p is None
            else {"hit_rate": p.hit_rate, "knob": p.rule.min_similarity, "precision": p.precision}
            for t, p in heads[family].items()
        }
    # the rows: the asked thresholds (default: the shipped one) and each family's
    # headline rules; those read from the recording cache's own order are timed (the
    # support score's are read from the record only: tests/test_answer_support_replay.py
    # checks them against the cache)
    thresholds = sorted(set(args.threshold or []) | {default_threshold})
    rows: list[tuple[str, Rule]] = []
    for family, (_, fg) in families.items():
        for t in thresholds:
            rows.append((family, Rule(t, None, fg)))
        for p in heads[family].values():
            if p is not None:
                rows.append((family, p.rule))
    rows = list(dict.fromkeys(rows))
    mismatches = 0
    if args.timing_sample > 0:
        timed = [r for f, r in rows if families[f][0] is result and AGREE not in r.guards]
        timed = list(dict.fromkeys(timed))
        mismatches = result.time_rules(timed, args.timing_sample, seed=args.seed, progress=progress)
    points = [families[f][0].evaluate(r) for f, r in rows]
    curves = {f: rec.curve(fg, step=0.0025) for f, (rec, fg) in families.items()}
    name = os.path.basename(args.pairs)
    scoring = (
        "; the default family thresholds the answer support score, weighed against the "
        "rival answers' prototypes, its guards yielding to the candidates' evidence"
        if support
        else ""
    )
    out.write(
        f"{name}: static replay, S={per_cluster}: {result.stored} stored, {result.gets} gets, "
        f"{int(result.in_scope.sum())} in scope, embedder {source.embedder.fingerprint}\n"
        f"(default: SemanticCache's shipped settings, threshold {default_threshold}"
        f"{' and its default guards' if default_guard is not None else ', no guards'}"
        f"{scoring})\n\n"
    )
    for family, (rec, _) in families.items():
        mine = [p for (f, _), p in zip(rows, points, strict=True) if f == family]
        scored = "" if rec is result else " (cos>= in a rule: the answer support score)"
        out.write(f"{family}{scored}\n{format_table(mine)}\n")
    out.write("\nheadline (lowest threshold reaching the precision; thresholds on a 0.001 grid)\n")
    for family in families:
        for t, p in heads[family].items():
            if p is None:
                out.write(f"  {family:<34} precision >= {t}: never reached\n")
            else:
                rule = p.rule.describe()
                if families[family][0] is not result:
                    rule = rule.replace("cos>=", "support>=", 1)
                out.write(
                    f"  {family:<34} precision >= {t}: hit rate {p.hit_rate:.3f} "
                    f"(precision {p.precision:.3f}, {rule})\n"
                )
    if result.truncated:
        out.write(f"\n({result.truncated} queries had more than 32 candidates above {floor})\n")
    if mismatches:
        out.write(f"\nWARNING: {mismatches} timed gets disagreed with the record\n")
    if args.plot:
        plot_curves(curves, args.plot, title=f"{name} static S={per_cluster}")
    return {
        "per_cluster": per_cluster,
        "stored": result.stored,
        "gets": result.gets,
        "in_scope": int(result.in_scope.sum()),
        "exact_hits": int(result.exact.sum()),
        "rows": [{**p.to_json(), "family": f} for (f, _), p in zip(rows, points, strict=True)],
        "rules": {family: [p.to_json() for p in c] for family, c in curves.items()},
        "headline": headline,
        "timing_mismatches": mismatches,
    }


def _best(points: Sequence[StreamPoint], budget: float) -> StreamPoint | None:
    """The point with the highest hit rate whose error rate is within ``budget`` (ties:
    the lower threshold)."""
    ok = [p for p in points if p.error_rate <= budget]
    if not ok:
        return None
    return max(ok, key=lambda p: (p.hit_rate, -p.min_similarity))


def _sweep(
    data: StreamVectors,
    thresholds: Sequence[float],
    guards: tuple[str, ...],
    progress: ProgressBar | None,
    *,
    shipped: bool = False,
) -> list[StreamPoint]:
    """Stream runs of a cosine threshold (with ``guards``) over ``thresholds``; then, for
    each budget, a bisection between the lowest grid threshold within it and the grid
    threshold below, down to 0.0025 (the error rate falls as the threshold rises, so
    the lowest threshold within the budget serves the most). Where the lowest grid
    threshold is within the budget, the grid goes on down by 0.02 until one is not (the
    bisection then runs between them) or the support floor (0.5) is reached. ``shipped``: instead,
    ``SemanticCache(similarity_threshold=t)`` with every other setting as shipped (its
    guards and answer support)."""
    from . import GUARDS, all_of

    validator = None if not guards else all_of(*(GUARDS[g] for g in guards))
    done: dict[float, StreamPoint] = {}

    def run(t: float) -> None:
        t = round(t, 4)
        if t in done or not -1.0 <= t <= 1.0:
            return
        rule = Rule(t, None, guards)

        def make() -> SemanticCache:
            if shipped:
                return SemanticCache(similarity_threshold=t, index_backend="flat")
            return SemanticCache(
                similarity_threshold=t,
                validator=validator,
                index_backend="flat",
                guards=None,
                answer_support=False,  # the cosine family: a plain threshold
            )

        label = f"shipped threshold>={t:.3f}" if shipped else f"stream {rule.describe()}"
        done[t] = _stream_run(data, make, label=label, guards=guards, progress=progress)

    for t in thresholds:
        run(t)
    for budget in BUDGETS:
        ok = [t for t, p in done.items() if p.error_rate <= budget]
        if not ok:
            continue
        hi = min(ok)
        below = [t for t in done if t < hi]
        while not below and hi - _GRID_STEP >= _FLOOR - 1e-9:
            # the grid's lowest is within: on down by its step, to the floor
            t = round(hi - _GRID_STEP, 4)
            run(t)
            if done[t].error_rate <= budget:
                hi = t
            else:
                below = [t]
        if not below:
            continue
        lo = max(below)
        while hi - lo > _RESOLUTION + 1e-9:
            mid = round(round((lo + hi) / 2 / _RESOLUTION) * _RESOLUTION, 4)
            if mid in (lo, hi):
                break
            run(mid)
            if done[mid].error_rate <= budget:
                hi = mid
            else:
                lo = mid
    return [done[t] for t in sorted(done)]


def _stream(
    args: argparse.Namespace,
    clusters: Any,
    source: Source,
    progress: ProgressBar | None,
    guards: list[str],
    out: TextIO,
) -> dict[str, Any]:
    data = StreamVectors(clusters, source.embed, progress)
    _, default_guard = shipped_defaults()
    grid = sorted(set(STREAM_GRID) | set(args.threshold or []))
    families: dict[str, list[StreamPoint]] = {"cosine": _sweep(data, grid, (), progress)}
    if guards:
        family = "cosine+" + "+".join(guards)
        families[family] = _sweep(data, grid, tuple(guards), progress)
    # threshold: SemanticCache(similarity_threshold=t) as shipped, without a budget (its
    # guards and answer support), swept and chosen in hindsight as cosine is
    families["threshold"] = _sweep(data, grid, (), progress, shipped=True)
    # default: SemanticCache(path, error_budget=budget) as shipped, through get_or_put
    # (_cache_replay), run once per budget, nothing swept
    defaults = {
        budget: cache_stream_replay(
            data, budget, label=f"default, budget {budget}", progress=progress
        ).point
        for budget in BUDGETS
    }
    families["default"] = list(defaults.values())
    headline: dict[str, dict[str, Any]] = {}
    for family, points in families.items():
        entry: dict[str, Any] = {}
        for budget in BUDGETS:
            p = defaults[budget] if family == "default" else _best(points, budget)
            entry[f"error_{budget}"] = (
                None
                if p is None
                else {
                    "hit_rate": p.hit_rate,
                    "error_rate": p.error_rate,
                    "llm_calls": p.llm_calls,
                    "knob": budget if family == "default" else p.min_similarity,
                    "verifications": p.verifications,
                    "within_budget": p.error_rate <= budget,
                }
            )
        headline[family] = entry
    name = os.path.basename(args.pairs)
    out.write(
        f"{name}: stream replay: {len(data.texts)} gets, embedder "
        f"{source.embedder.fingerprint}\n(default: SemanticCache's shipped "
        f"{'guards' if default_guard is not None else 'settings, no guards'} with the error "
        "budget set to each target, run through get_or_put on a SQLite file: agreement "
        "evidence, per-entry records, verification; threshold: SemanticCache(similarity_"
        "threshold=t) as shipped, no budget: its guards and answer support)\n\n"
    )
    rows = [*families["cosine"], *[p for f, ps in families.items() if f != "cosine" for p in ps]]
    out.write(_stream_table(rows) + "\n")
    out.write("\nheadline (cosine: the best threshold within the budget, chosen in hindsight)\n")
    for family, entry in headline.items():
        for key, h in entry.items():
            limit = key.split("_", 1)[1]
            if h is None:
                out.write(f"  {family:<34} error <= {limit}: never reached\n")
            else:
                note = "" if h["within_budget"] else " (over the budget)"
                how = (
                    f"budget {h['knob']} ({h['verifications']} verifications)"
                    if family == "default"
                    else f"threshold {h['knob']:.4f}"
                    if family == "threshold"
                    else f"cos>={h['knob']:.4f}"
                )
                out.write(
                    f"  {family:<34} error <= {limit}: hit rate {h['hit_rate']:.3f}, error "
                    f"{h['error_rate']:.4f}, {h['llm_calls']} LLM calls at {how}{note}\n"
                )
    if args.plot:
        _plot_stream(families, args.plot, title=f"{name} stream")
    return {
        "gets": len(data.texts),
        "rules": {family: [p.to_json() for p in ps] for family, ps in families.items()},
        "headline": headline,
    }


def _stream_table(points: Sequence[StreamPoint]) -> str:
    header = ["rule", "hits", "exact", "wrong", "LLM calls", "hit rate", "error rate", "p50 get"]
    rows = [
        [
            p.label.removeprefix("stream "),
            str(p.hits),
            str(p.exact_hits),
            str(p.wrong),
            str(p.llm_calls),
            f"{p.hit_rate:.3f}",
            f"{p.error_rate:.4f}",
            "-" if math.isnan(p.p50_get_us) else f"{p.p50_get_us:.0f} us",
        ]
        for p in points
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header), *(fmt.format(*r) for r in rows)])


def _plot_stream(families: dict[str, list[StreamPoint]], path: str, *, title: str) -> None:
    """Hit rate against error rate per family, through the pair plot's machinery (the
    error rate drawn as 1 - error so that up is better)."""
    curves = {
        family: [
            QualityPoint(
                rule=Rule(p.min_similarity),
                gets=p.gets,
                should_hit=p.gets,
                hits=p.hits,
                correct=p.hits - p.wrong,
                exact_hits=p.exact_hits,
                hit_rate=p.hit_rate,
                precision=1.0 - p.error_rate,
                false_hits_per_get=p.error_rate,
            )
            for p in ps
        ]
        for family, ps in families.items()
    }
    plot_curves(curves, path, title=title + " (y: 1 - error rate)")
