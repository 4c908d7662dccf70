"""``semcache eval`` and ``semcache calibrate``: the command-line side of this package."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from .. import _argtypes as argtypes
from .._errors import ConfigurationError
from .._progress import ProgressBar
from .._types import Hit
from ._calibrate import calibrate, holdout_split
from ._cluster_commands import run_cluster_eval
from ._clusters import file_kind, shipped_defaults
from ._pairs import PairSet, load_pairs
from ._replay import FalseHit, QualityPoint, ReplayResult, Rule, replay
from ._report import format_table, plot_curves
from ._source import GUARD_NAMES, Source
from ._verifier import Verifier

__all__ = ["add_calibrate_parser", "add_eval_parser", "run_calibrate", "run_eval"]

#: Thresholds of ``--sweep``: the peers' defaults and the range that matters.
SWEEP = (0.60, 0.70, 0.80, 0.85, 0.90, 0.93, 0.95, 0.97, 0.98, 0.99, 1.0)
_TARGETS = (0.95, 0.99)


def _common(p: argparse.ArgumentParser, *, clusters: bool = False) -> None:
    if clusters:
        p.add_argument(
            "pairs",
            metavar="FILE.csv",
            help="labelled pairs (text_a,text_b,label) or a cluster set (text,cluster,split); "
            "the header tells which",
        )
    else:
        p.add_argument("pairs", metavar="PAIRS.csv", help="labelled pairs: text_a,text_b,label")
    p.add_argument(
        "--embedder",
        choices=("minilm", "onnx", "st", "hashing"),
        default="minilm",
        help="minilm (the default): all-MiniLM-L6-v2, on onnxruntime (int8) when the onnx "
        "extra is installed, else on sentence-transformers; onnx / st: that one; hashing: "
        "the dependency-free test embedder",
    )
    p.add_argument(
        "--embedding-cache",
        metavar="FILE.npz",
        help="keep the vectors in this file between runs (keep it out of the repository)",
    )
    p.add_argument(
        "--sample", type=int, metavar="N", help="use N pairs drawn with --seed (default: all)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for sampling and splits")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_eval_parser(sub: Any) -> None:
    """Add ``eval`` to the CLI's subparsers."""
    p = sub.add_parser(
        "eval",
        help="measure hit quality on labelled pairs (the replay protocol)",
        description=(
            "Replay labelled pairs through a cache: put every distinct text_a, get every "
            "text_b, and report per rule the hit rate, precision, false hits per get and "
            "p50 get latency, and the headline: the hit rate at the lowest threshold whose "
            "precision is >= 0.95 (and 0.99)."
        ),
    )
    _common(p, clusters=True)
    p.add_argument(
        "--protocol",
        choices=("static", "stream"),
        help="on a cluster set (text,cluster,split): the static or the stream replay "
        "(default static); refused on a pair file",
    )
    p.add_argument(
        "--per-cluster",
        type=int,
        metavar="S",
        help="static replay: train texts stored per cluster at most (default 10)",
    )
    p.add_argument(
        "--threshold",
        type=argtypes.similarity,
        action="append",
        metavar="T",
        help="a cosine threshold to report (repeatable)",
    )
    p.add_argument("--sweep", action="store_true", help=f"report thresholds {SWEEP}")
    p.add_argument("--verifier", metavar="FILE", help="also report this verifier's rule")
    p.add_argument(
        "--heldout",
        action="store_true",
        help="with --verifier: only the pairs its calibration held out",
    )
    p.add_argument(
        "--guards",
        default="",
        metavar="LIST",
        help=f"comma-separated guards to measure ({', '.join(GUARD_NAMES)}, or all)",
    )
    p.add_argument(
        "--timing-sample",
        type=int,
        default=500,
        metavar="N",
        help="gets timed per row (default 500; 0: no timing)",
    )
    p.add_argument(
        "--false-hits",
        type=int,
        default=0,
        metavar="N",
        help=(
            "print a seeded sample of N false hits served at each --threshold, at the cosine "
            "threshold reaching precision 0.95 and at the verifier's rule: read them to "
            "judge the labels"
        ),
    )
    p.add_argument("--json", metavar="OUT", help="write every number as JSON")
    p.add_argument(
        "--plot", metavar="OUT.png", help="draw the curves (needs semcache-engine[plot])"
    )


def add_calibrate_parser(sub: Any) -> None:
    """Add ``calibrate`` to the CLI's subparsers."""
    p = sub.add_parser(
        "calibrate",
        help="train a verifier on labelled pairs for a target precision",
        description=(
            "Train a small verifier on the candidates a cache finds for the pairs, choose "
            "its threshold for the target precision on pairs it was not trained on, and "
            "write it as JSON."
        ),
    )
    _common(p)
    p.add_argument("--target-precision", type=argtypes.fraction, default=0.95, metavar="P")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the verifier")
    p.add_argument(
        "--min-similarity",
        type=argtypes.similarity,
        default=0.7,
        metavar="T",
        help="cosine floor: candidates below it are never served (default 0.7)",
    )
    p.add_argument(
        "--holdout",
        type=float,
        default=0.5,
        metavar="F",
        help="share of the pairs never read, for `semcache eval --heldout` (default 0.5; 0: none)",
    )
    p.add_argument(
        "--calibration-fraction",
        type=float,
        default=0.3,
        metavar="F",
        help="share of the rest on which the threshold is chosen (default 0.3)",
    )
    p.add_argument("--trees", type=int, default=150, help="boosting rounds (default 150)")


def _pairs(args: argparse.Namespace) -> PairSet:
    pairs = load_pairs(args.pairs)
    if args.sample is not None:
        if args.sample < 1:
            raise ConfigurationError("--sample must be >= 1")
        pairs = pairs.sample(args.sample, seed=args.seed)
    return pairs


def _headlines(result: ReplayResult, label: str, rule: Rule | None, by: str) -> list[str]:
    lines = []
    for target in _TARGETS:
        p = result.headline(target, by=by, rule=rule)
        if p is None:
            lines.append(f"  {label:<22} precision >= {target}: never reached")
            continue
        lines.append(
            f"  {label:<22} precision >= {target}: hit rate {p.hit_rate:.3f} "
            f"(precision {p.precision:.3f}, {p.rule.describe()})"
        )
    return lines


def _audit(
    result: ReplayResult,
    verifier: Verifier | None,
    thresholds: Sequence[float],
    n: int,
    seed: int,
) -> dict[str, list[FalseHit]]:
    """Samples of false hits: at each ``--threshold``, at the cosine headline for
    precision 0.95 and at the verifier's rule."""
    if n < 1:
        raise ConfigurationError("--false-hits must be >= 1")
    rules = [Rule(t) for t in thresholds]
    point = result.headline(0.95)
    if point is not None and point.rule not in rules:
        rules.append(point.rule)
    if verifier is not None:
        rules.append(Rule(verifier.min_similarity, verifier.threshold))
    return {r.describe(): result.false_hits(r, sample=n, seed=seed) for r in rules}


def run_eval(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``semcache eval``: the replay protocol on a pair file, the static or stream
    replay on a cluster set (told apart by the CSV's header)."""
    kind = file_kind(args.pairs)
    if kind == "clusters":
        return run_cluster_eval(args, out, err)
    if args.protocol is not None or args.per_cluster is not None:
        raise ConfigurationError(
            f"{args.pairs} is a pair file (text_a,text_b,label): --protocol and "
            "--per-cluster apply to cluster sets (text,cluster,split) only"
        )
    pairs = _pairs(args)
    verifier = None if args.verifier is None else Verifier.load(args.verifier)
    if args.heldout:
        if verifier is None:
            raise ConfigurationError("--heldout needs --verifier")
        split = verifier.info.get("split") or {}
        holdout, seed = float(split.get("holdout") or 0.0), int(split.get("seed") or 0)
        if holdout <= 0:
            raise ConfigurationError("this verifier was calibrated without a held-out part")
        _, pairs = holdout_split(pairs, holdout, seed)
    guards = list(GUARD_NAMES) if args.guards == "all" else [g for g in args.guards.split(",") if g]
    unknown = sorted(set(guards) - set(GUARD_NAMES))
    if unknown:
        raise ConfigurationError(f"unknown guard(s) {unknown}; known: {GUARD_NAMES}")
    thresholds = sorted(set(args.threshold or []) | (set(SWEEP) if args.sweep else set()))
    if not thresholds and verifier is None:
        thresholds = [0.85]
    floor = min([*thresholds, *([verifier.min_similarity] if verifier else [])])
    progress = None if args.quiet else ProgressBar(err)
    source = Source(args, progress)
    from . import GUARDS

    # "default": the guards SemanticCache applies with its shipped settings
    _, default_guard = shipped_defaults()
    judges: dict[str, Callable[[str, Hit], bool]] = {g: GUARDS[g] for g in guards}
    if default_guard is not None:
        judges["default"] = default_guard
    default_rule = Rule(floor, None, ("default",) if default_guard is not None else ())
    combo = tuple(guards) if len(guards) > 1 else None
    result = replay(
        pairs,
        source.embed,
        floor=floor,
        verifier=verifier,
        verifier_floor=verifier.min_similarity if verifier else -1.0,
        guards=judges,
        progress=progress,
    )
    source.save()
    rules = [Rule(t) for t in thresholds]
    if verifier is not None:
        rules.append(Rule(verifier.min_similarity, verifier.threshold))
    guard_rules = []
    for t in [0.85, *([] if verifier is None else [None])] if guards else []:
        for combo in [*[(g,) for g in guards], *([tuple(guards)] if len(guards) > 1 else [])]:
            if t is None:
                assert verifier is not None
                guard_rules.append(Rule(verifier.min_similarity, verifier.threshold, combo))
            elif t >= floor:
                guard_rules.append(Rule(t, None, combo))
    mismatches = 0
    if args.timing_sample > 0:
        mismatches = result.time_rules(
            [*rules, *guard_rules], args.timing_sample, seed=args.seed, progress=progress
        )
    points = [result.evaluate(r) for r in rules]
    guard_points = [result.evaluate(r) for r in guard_rules]
    name = os.path.basename(args.pairs)
    out.write(
        f"{name}: {result.gets} gets, {result.stored} stored texts, "
        f"{int(result.should_hit.sum())} should hit, embedder {source.embedder.fingerprint}\n\n"
    )
    out.write(format_table(points) + "\n")
    if guard_points:
        out.write("\nguards\n" + format_table(guard_points) + "\n")
    out.write("\nheadline (lowest threshold reaching the precision; thresholds on a 0.001 grid)\n")
    lines = _headlines(result, "cosine threshold", None, "similarity")
    if verifier is not None:
        lines += _headlines(
            result, "verifier threshold", Rule(verifier.min_similarity, 0.0), "score"
        )
    guard_headlines: dict[str, list[str]] = {}
    for g in guards:
        guard_headlines[g] = _headlines(
            result, f"cosine +{g}", Rule(floor, None, (g,)), "similarity"
        )
        lines += guard_headlines[g]
    if combo is not None:
        lines += _headlines(
            result, "cosine +" + "+".join(combo), Rule(floor, None, combo), "similarity"
        )
    lines += _headlines(result, "default (shipped guards)", default_rule, "similarity")
    out.write("\n".join(lines) + "\n")
    if result.truncated:
        out.write(f"\n({result.truncated} queries had more than 32 candidates above {floor})\n")
    if mismatches:
        out.write(f"\nWARNING: {mismatches} timed gets disagreed with the record\n")
    audited = (
        _audit(result, verifier, sorted(set(args.threshold or [])), args.false_hits, args.seed)
        if args.false_hits
        else {}
    )
    for label, hits in audited.items():
        out.write(f"\nfalse hits at {label}: {len(hits)} sampled (seed {args.seed})\n")
        for fh in hits:
            score = "" if fh.score is None else f" score {fh.score:.3f}"
            out.write(f"  {fh.similarity:.3f}{score}  asked:  {fh.query}\n")
            out.write(f"  {'':>5}{' ' * len(score)}  served: {fh.served}\n")
    curves: dict[str, Sequence[QualityPoint]] = {
        "cosine": result.curve(step=0.0025),
        "default": result.curve(rule=default_rule, step=0.0025),
    }
    if verifier is not None:
        curves["verifier"] = result.curve(
            by="score", rule=Rule(verifier.min_similarity, 0.0), step=0.0025
        )
    if args.json:
        data = {
            "pairs": name,
            "gets": result.gets,
            "stored": result.stored,
            "should_hit": int(result.should_hit.sum()),
            "embedder": source.embedder.fingerprint,
            "rows": [p.to_json() for p in points],
            "guards": [p.to_json() for p in guard_points],
            "headline": {
                kind: {
                    str(t): (
                        None if (h := result.headline(t, by=by, rule=r)) is None else h.to_json()
                    )
                    for t in _TARGETS
                }
                for kind, by, r in [
                    ("cosine", "similarity", None),
                    ("default", "similarity", default_rule),
                ]
                + (
                    []
                    if combo is None
                    else [("cosine+" + "+".join(combo), "similarity", Rule(floor, None, combo))]
                )
                + (
                    []
                    if verifier is None
                    else [("verifier", "score", Rule(verifier.min_similarity, 0.0))]
                )
            },
            "curves": {k: [p.to_json() for p in v] for k, v in curves.items()},
            "timing_mismatches": mismatches,
            "false_hits": {
                label: [dataclasses.asdict(fh) for fh in hits] for label, hits in audited.items()
            },
        }
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    if args.plot:
        plot_curves(curves, args.plot, title=name)
    return 0


def run_calibrate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``semcache calibrate``."""
    pairs = _pairs(args)
    if not 0.0 <= args.holdout < 1.0:
        raise ConfigurationError("--holdout must be in [0, 1)")
    progress = None if args.quiet else ProgressBar(err)
    source = Source(args, progress)
    cal = calibrate(
        pairs,
        source.embed,
        target_precision=args.target_precision,
        min_similarity=args.min_similarity,
        holdout=args.holdout,
        calibration_fraction=args.calibration_fraction,
        seed=args.seed,
        trees=args.trees,
        source=os.path.basename(args.pairs),
        progress=progress,
    )
    source.save()
    cal.verifier.save(args.out)
    size = os.path.getsize(args.out)
    out.write(
        f"trained on {cal.fit_candidates} candidates from {cal.fit_pairs} pairs; threshold "
        f"chosen on {cal.calibration_pairs} other pairs; {cal.holdout_pairs} held out\n"
    )
    target = args.target_precision
    if cal.chosen is None:
        out.write(f"no verifier threshold reached precision {target}: nothing semantic is served\n")
    else:
        out.write(
            f"verifier threshold {cal.verifier.threshold:.4f} (cosine floor "
            f"{cal.verifier.min_similarity}): expected precision {cal.chosen.precision:.3f}, "
            f"hit rate {cal.chosen.hit_rate:.3f}\n"
        )
    if cal.cosine is not None:
        out.write(
            f"a plain cosine threshold on the same pairs: {cal.cosine.rule.min_similarity:.3f} "
            f"for precision {cal.cosine.precision:.3f}, hit rate {cal.cosine.hit_rate:.3f}\n"
        )
    out.write(f"wrote {args.out} ({size / 1024:.0f} KiB)\n")
    if cal.holdout_pairs:
        out.write(
            f"measure it on the held-out pairs: semcache eval {args.pairs} "
            f"--verifier {args.out} --heldout --sweep\n"
        )
    return 0
