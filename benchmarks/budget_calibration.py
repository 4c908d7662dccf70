"""Where the error budget's estimates are off (docs/quality.md, "Where the budget goes
over"): every get with a candidate, its estimated risk against whether the candidate's
answer was right, on the research replay (``budget_stream_replay(..., trace=...)``,
whose decisions are the cache's: ``tests/test_quality_cache_replay.py``).

Rows: the answers served, then the candidates of the LLM calls (misses and
verifications: the budget's observations), each split by evidence class and by what
the entry's record did to the table's estimate (``lowered``, ``raised``, ``none``).
Columns: how many, the wrong answers the budget's estimates predict for them (the
table moved by the record: what it decided on), the same by the table alone, and the
wrong answers there were. A calibrated estimate predicts about the count; the served
rows are the ones the budget's promise is about. Then the answers served again, by
their estimated risk (:data:`BANDS`): where in its range an estimate is off. The
first line gives the verified candidates' test at the end (their predicted wrong
answers, the measured ones, the correction the allowance is divided by) and the factors
of the model's bands (``semcache._model_bands``, lowest first). The last
table groups the LLM calls' candidates (misses and verifications) by the risk model's
estimate, read at each get once the model is fitted, whether or not it decided
(:data:`SHADOW_BANDS`): the model's calibration where the table still decides. (With a
``model-*`` variant the table-alone column repeats the model's estimate.)

Streams as in ``budget_streams.py`` (``protocol``, ``order N``, ``seed N``, ``half
A``, ``half B``); ``--entry-prior N`` runs the budget with another ``ENTRY_PRIOR`` (the
weight it starts at; with ``--variant fixed-weight``, the weight it keeps), ``--variant
NAME`` with an estimator of ``budget_variants.py`` (``fixed-weight+normal-spare``: the
build the docs' tables were measured on).

Run:  PYTHONPATH=.:benchmarks .venv/bin/python benchmarks/budget_calibration.py \\
          ../shared/data/eval/clinc150.csv \\
          --embedding-cache /tmp/quality-emb/clinc150-minilm.npz \\
          --budget 0.001 --streams "order 6" protocol
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from itertools import pairwise
from typing import Any

from budget_streams import _stream_name, set_constants, stream_set
from budget_variants import VariantBudget

from semcache._agreement import ALONE, MIXED, SPLIT, UNANIMOUS
from semcache._budget_policy import ErrorBudget
from semcache._model_bands import EDGES
from semcache._risk_model import RiskModel
from semcache.embedders import default_embedder
from semcache.quality._budget_replay import BudgetTrace, budget_stream_replay
from semcache.quality._clusters import StreamVectors, shipped_defaults
from semcache.quality._embedding_cache import EmbeddingFile

CLASS_NAMES = {ALONE: "alone", SPLIT: "split", MIXED: "mixed", UNANIMOUS: "unanimous"}


#: The estimated risks the served answers are grouped by, lowest first.
BANDS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 1.0)


def _effect(t: BudgetTrace) -> str:
    if t.risk < t.table_risk:
        return "lowered"
    return "raised" if t.risk > t.table_risk else "none"


def _run(job: tuple[str, float, str, str, float | None, str | None]) -> str:
    stream, budget, path, cache_path, entry_prior, variant = job
    set_constants(None, entry_prior)
    clusters, seed = stream_set(stream, path)
    embed = EmbeddingFile(default_embedder(), cache_path).embed
    trace: list[BudgetTrace] = []
    policy = (
        ErrorBudget(budget, floor=0.5, seed=seed, model=RiskModel())
        if variant is None
        else VariantBudget(budget, variant=variant, seed=seed)
    )
    shadow = _shadowing(policy)
    p = budget_stream_replay(
        StreamVectors(clusters, embed),
        budget,
        guard=shipped_defaults()[1],
        seed=seed,
        trace=trace,
        policy=policy,
        inspect=policy.inspect if isinstance(policy, VariantBudget) else None,
    )
    cells: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0])
    for t in trace:
        kind = "served" if t.action == "serve" else "LLM call"
        cell = cells[(kind, CLASS_NAMES[t.evidence], _effect(t))]
        cell[0] += 1
        cell[1] += t.risk
        cell[2] += t.table_risk
        cell[3] += not t.correct
    lines = [
        f"\n{stream}, budget {budget:g}: hit rate {p.hit_rate:.3f}, {p.wrong} wrong "
        f"({budget * p.gets:.1f} allowed; {p.exact_hits} exact hits); the verified "
        f"candidates' test: {policy.predicted:.1f} wrong predicted, {policy.measured:.0f} "
        f"measured, correction {policy.correction:.2f}; {_first_modelled(shadow)}; "
        f"the model's bands' factors at the end: {_factors(policy)}\n",
        "| answers | evidence | record | count | predicted | by the table alone | wrong |",
        "|---|---|---|---|---|---|---|",
    ]
    for (kind, evidence, effect), (n, risk, table, wrong) in sorted(
        cells.items(), key=lambda kv: (kv[0][0] != "served", kv[0][1], kv[0][2])
    ):
        lines.append(
            f"| {kind} | {evidence} | {effect} | {n:,.0f} | {risk:.1f} | {table:.1f} "
            f"| {wrong:.0f} |"
        )
    lines += [
        "",
        "| served at an estimated risk of | count | predicted | wrong |",
        "|---|---|---|---|",
    ]
    for lo, hi in pairwise(BANDS):
        band = [t for t in trace if t.action == "serve" and lo <= t.risk < hi]
        if band:
            predicted = sum(t.risk for t in band)
            wrong = sum(not t.correct for t in band)
            lines.append(f"| [{lo:g}, {hi:g}) | {len(band):,} | {predicted:.1f} | {wrong} |")
    return "\n".join(lines + _shadow_lines(trace, shadow))


def _factors(policy: ErrorBudget) -> str:
    """The model's bands' factors (``semcache._model_bands``), lowest band first."""
    bands = policy.bands
    return " ".join(f"{bands.factor(lo):.2f}" for lo in (0.0, *EDGES))


#: The model's estimates the LLM calls' candidates are grouped by, lowest first.
SHADOW_BANDS = (0.0, 0.0003, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 1.0)


def _shadowing(policy: ErrorBudget) -> dict[int, tuple[float, bool]]:
    """Per get (its position in the stream), the risk model's estimate of its candidate
    whenever the model is fitted, whether or not it decides (``modelled``): filled in
    as ``policy`` decides. Read before the get's outcome is learnt (the replay refits
    after it), so each estimate is the one a get would have been served on."""
    shadow: dict[int, tuple[float, bool]] = {}
    decide = policy.decide

    def noting(ev: Any, record: Any = None, features: Any = None) -> Any:
        if features is not None and policy.model is not None:
            estimate = policy.model.estimate(features)
            if estimate is not None:
                shadow[policy.gets] = (estimate[0], policy.modelled)
        return decide(ev, record, features)

    policy.decide = noting  # type: ignore[method-assign]
    return shadow


def _first_modelled(shadow: dict[int, tuple[float, bool]]) -> str:
    """When the risk model began to decide (the first get it decided)."""
    first = min((g for g, (_, modelled) in shadow.items() if modelled), default=None)
    return "the model never decided" if first is None else f"the model decided from get {first:,}"


def _shadow_lines(trace: list[BudgetTrace], shadow: dict[int, tuple[float, bool]]) -> list[str]:
    """The LLM calls' candidates (misses and verifications: their outcome is known
    whoever decided) by the risk model's estimate, while the table decided and while the
    model did: where in its range the model is off, including where it did not decide."""
    if not shadow:
        return []
    lines = [
        "",
        "| LLM calls, while deciding | the model's estimate | count | predicted by it | wrong |",
        "|---|---|---|---|---|",
    ]
    for who in (False, True):
        calls = [
            (shadow[t.get][0], t.correct)
            for t in trace
            if t.action != "serve" and t.get in shadow and shadow[t.get][1] == who
        ]
        for lo, hi in pairwise(SHADOW_BANDS):
            band = [(p, ok) for p, ok in calls if lo <= p < hi or (hi == 1.0 and p == 1.0)]
            if band:
                lines.append(
                    f"| {'the model' if who else 'the table'} | [{lo:g}, {hi:g}) | {len(band):,} "
                    f"| {sum(p for p, _ in band):.1f} | {sum(not ok for _, ok in band)} |"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clusters")
    parser.add_argument("--embedding-cache", required=True)
    parser.add_argument("--budget", type=float, nargs="+", default=[0.01, 0.001])
    parser.add_argument("--streams", nargs="+", type=_stream_name, default=["protocol"])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--entry-prior", type=float, default=None, help="the budget's ENTRY_PRIOR")
    parser.add_argument("--variant", default=None, help="an estimator of budget_variants.py")
    args = parser.parse_args()
    if args.variant is not None:
        VariantBudget(0.01, variant=args.variant)  # a misspelt part fails here
    jobs = [
        (s, b, args.clusters, args.embedding_cache, args.entry_prior, args.variant)
        for b in args.budget
        for s in args.streams
    ]
    with ProcessPoolExecutor(args.jobs) as pool:
        for text in pool.map(_run, jobs):
            print(text, flush=True)


if __name__ == "__main__":
    main()
