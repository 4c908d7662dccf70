"""The error budget on other traffic: the cluster set's stream in other orders, on two
halves of its intents, and with other verification seeds (docs/quality.md, "An error
budget the cache keeps"), each at the budgets given.

Each run is ``budget_stream_replay`` (the policy the cache runs, with the shipped
guards; ``tests/test_quality_cache_replay.py`` checks that it takes the cache's
decisions) on one stream:

- ``protocol``: the file in the protocol's order (``default_rng(0).permutation(n)``);
- ``order 1``, ``order 2``: the file in the orders ``default_rng(s).permutation(n)``;
- ``half A``, ``half B``: the intents taken alternately in sorted order, 75 each, with
  half the out-of-scope rows each, in the protocol's order of their rows;
- ``seed 1``, ``seed 2``: the protocol's stream, other verification draws.

``--streams`` picks some of them, or more: ``order N`` and ``seed N`` for any N.

Prints one row per stream and budget: hit rate, error rate (wrong answers per get),
whether it is within the budget, LLM calls and verifications; then, per budget, the mean
hit rate over the streams.

With ``--cache`` each run goes through ``SemanticCache(path, error_budget=B)`` itself
(``cache_stream_replay``, what ``semcache eval --protocol stream`` reports as
``default``; the seed streams with the budget's verification draws seeded so), with
every shipped setting, the prototype veto included; and a last column counts the hits
served through a guard the candidates' evidence overruled (semcache/_guard_evidence.py),
right and wrong. ``--spare-sd N`` runs the budget with another ``SPARE_SD`` (the
standard deviations of the wrong-answer count it keeps spare; shipped: 2);
``--estimate-spread C`` with another ``ESTIMATE_SPREAD`` (the relative error of the
served answers' summed risk estimates kept spare besides; shipped: 0.15, 0 for the
Poisson count's spread alone);
``--no-answer-model`` without the answer model's features of the risk model (as the
budget before they shipped);
``--entry-prior N`` with another ``ENTRY_PRIOR`` (the observations of an entry's own
the table's estimate counts as; shipped: 4); ``--refit N`` refits the risk model
every N outcomes (``semcache._risk_model.REFIT``; shipped: 500). ``--variant NAME``
runs the research replay with an estimator variant of ``budget_variants.py`` (``learnt-weight``,
``below-prior``, ``learnt-prior``, ``learnt-prior-verified``, joined with ``+``); a last
column gives the weight and the prior it ended the stream with. ``--cosine`` adds,
per stream and budget, cosine's best threshold in hindsight on the same stream (the
``cosine`` family of ``semcache eval --protocol stream``; a seed's stream is the
protocol's) and the budget's hit rate as a multiple of it.

Run:  .venv/bin/python benchmarks/budget_streams.py ../shared/data/eval/clinc150.csv \\
          --embedding-cache /tmp/quality-emb/clinc150-minilm.npz [--jobs 2]
"""

from __future__ import annotations

import argparse
import functools
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from budget_variants import PRIORS, VariantBudget
from favoured_variants import _halves

import semcache._budget_policy
import semcache._budgets
import semcache._get
import semcache._risk_model
from semcache._budget_policy import ErrorBudget
from semcache.embedders import default_embedder
from semcache.quality._budget_replay import budget_stream_replay
from semcache.quality._cache_replay import cache_stream_replay
from semcache.quality._cluster_commands import STREAM_GRID, _best, _sweep
from semcache.quality._clusters import (
    ClusterSet,
    StreamVectors,
    load_clusters,
    shipped_defaults,
)
from semcache.quality._embedding_cache import EmbeddingFile

STREAMS = ("protocol", "order 1", "order 2", "half A", "half B", "seed 1", "seed 2")


def _reordered(clusters: ClusterSet, seed: int) -> ClusterSet:
    """The set with its rows placed so that its stream (in the protocol's order,
    ``default_rng(0).permutation(n)`` of its rows) is the file in the order
    ``default_rng(seed).permutation(n)``."""
    n = len(clusters.texts)
    rows = np.empty(n, dtype=np.int64)
    rows[np.random.default_rng(0).permutation(n)] = np.random.default_rng(seed).permutation(n)
    return ClusterSet(
        [clusters.texts[i] for i in rows],
        [clusters.clusters[i] for i in rows],
        [clusters.splits[i] for i in rows],
    )


def _stream_name(name: str) -> str:
    """A stream ``--streams`` accepts: one of :data:`STREAMS`, or ``order N`` / ``seed N``
    for any N >= 1 (more orders and verification draws than the seven)."""
    kind, _, n = name.partition(" ")
    if name in STREAMS or (kind in ("order", "seed") and n.isdigit() and int(n) >= 1):
        return name
    raise argparse.ArgumentTypeError(f"not a stream: {name!r}")


def stream_set(stream: str, path: str) -> tuple[ClusterSet, int]:
    """The cluster set whose protocol stream is ``stream`` (a name ``--streams``
    accepts), read from ``path``, and its verification seed."""
    clusters = load_clusters(path)
    seed = 0
    if stream.startswith("order"):
        clusters = _reordered(clusters, int(stream.split()[1]))
    elif stream.startswith("half"):
        clusters = _halves(clusters)[stream]
    elif stream.startswith("seed"):
        seed = int(stream.split()[1])
    return clusters, seed


def set_constants(
    spare_sd: float | None,
    entry_prior: float | None,
    refit: int | None = None,
    spread: float | None = None,
) -> None:
    """This worker process's budgets keep ``spare_sd`` standard deviations spare and
    ``spread`` of their estimates' sum besides, weigh the table as ``entry_prior``
    observations of an entry's own and refit their risk model every ``refit`` outcomes
    (None: shipped)."""
    if refit is not None:
        semcache._risk_model.REFIT = refit
    if spare_sd is not None:
        semcache._budget_policy.SPARE_SD = spare_sd
    if spread is not None:
        semcache._budget_policy.ESTIMATE_SPREAD = spread
    if entry_prior is not None:
        semcache._budget_policy.ENTRY_PRIOR = entry_prior


Job = tuple[
    str,
    float,
    str,
    str,
    bool,
    float | None,
    float | None,
    str | None,
    int | None,
    bool,
    float | None,
]


def _run(job: Job) -> tuple[str, float]:
    stream, budget, path, cache_path, through_cache, spare_sd, entry_prior, variant, refit = job[:9]
    answer_model, spread = job[9], job[10]
    set_constants(spare_sd, entry_prior, refit, spread)
    clusters, seed = stream_set(stream, path)
    embed = EmbeddingFile(default_embedder(), cache_path).embed
    if through_cache:
        # (this worker process's budgets draw their verifications from ``seed``)
        semcache._budgets.ErrorBudget = functools.partial(ErrorBudget, seed=seed)  # type: ignore[misc]
        overruled: set[str] = set()
        accept = semcache._get.accept

        def noting(eng: Any, query: str, hit: Any, evidence: Any = None) -> bool:
            before = eng.metrics.counters["guards_overruled"]
            ok = accept(eng, query, hit, evidence)
            if eng.metrics.counters["guards_overruled"] > before:
                overruled.add(query)
            return ok

        semcache._get.accept = noting  # type: ignore[assignment]
        data = StreamVectors(clusters, embed)
        run = cache_stream_replay(data, budget)
        p = run.point
        through = [
            answer == cluster
            for text, cluster, answer in zip(data.texts, data.clusters, run.served, strict=True)
            if answer is not None and text in overruled
        ]
        extra = f" {sum(through)} / {len(through) - sum(through)} |"
    else:
        policy = None
        if variant is not None:
            policy = VariantBudget(budget, variant=variant, seed=seed)
        p = budget_stream_replay(
            StreamVectors(clusters, embed),
            budget,
            guard=shipped_defaults()[1],
            seed=seed,
            policy=policy,
            inspect=policy.inspect if policy is not None else None,
            answer_model=answer_model,
        )
        extra = ""
        if isinstance(policy, VariantBudget):
            prior = PRIORS[policy.table.mode]
            extra = f" {policy.entry_prior:g} / {'1/2' if prior is None else f'{prior:g}x'} |"
    within = "within" if p.error_rate <= budget else "**over**"
    row = (
        f"| {stream} | {budget:g} | {p.hit_rate:.3f} | {p.error_rate:.4f} ({p.wrong} wrong, "
        f"{budget * p.gets:.1f} allowed) | {within} | {p.llm_calls:,} | {p.verifications:,} |"
        + extra
    )
    return row, p.hit_rate


def _cosine(job: tuple[str, str, str, tuple[float, ...]]) -> dict[float, tuple[float, float]]:
    """Cosine's best threshold in hindsight within each budget on ``stream`` (the
    ``cosine`` family of ``semcache eval --protocol stream``: the grid, then the
    bisection): budget -> (hit rate, threshold); a budget never met is left out."""
    stream, path, cache_path, budgets = job
    clusters, _ = stream_set(stream, path)
    data = StreamVectors(clusters, EmbeddingFile(default_embedder(), cache_path).embed)
    points = _sweep(data, sorted(STREAM_GRID), (), None)
    best = {b: _best(points, b) for b in budgets}
    return {b: (p.hit_rate, p.min_similarity) for b, p in best.items() if p is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clusters")
    parser.add_argument("--embedding-cache", required=True)
    parser.add_argument("--budget", type=float, nargs="+", default=[0.01, 0.001])
    parser.add_argument(
        "--streams",
        nargs="+",
        type=_stream_name,
        default=list(STREAMS),
        help="protocol, half A, half B, order N, seed N (default: the seven above)",
    )
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--cache", action="store_true", help="through SemanticCache itself")
    parser.add_argument("--spare-sd", type=float, default=None, help="the budget's SPARE_SD")
    parser.add_argument(
        "--estimate-spread", type=float, default=None, help="the budget's ESTIMATE_SPREAD"
    )
    parser.add_argument("--entry-prior", type=float, default=None, help="the budget's ENTRY_PRIOR")
    parser.add_argument("--variant", default=None, help="an estimator of budget_variants.py")
    parser.add_argument("--refit", type=int, default=None, help="the risk model's REFIT")
    parser.add_argument(
        "--no-answer-model",
        dest="answer_model",
        action="store_false",
        help="research: without the answer model's features (the risk model's last two: "
        "budget_stream_replay's answer_model=False, as the budget before they shipped)",
    )
    parser.add_argument(
        "--cosine",
        action="store_true",
        help="also cosine's best threshold in hindsight per stream, and the budget's multiple",
    )
    args = parser.parse_args()
    if not args.answer_model and args.cache:
        parser.error("--no-answer-model runs the research replay only (not with --cache)")
    if args.variant is not None and args.cache:
        parser.error("--variant runs the research replay only (not with --cache)")
    if args.variant is not None:
        VariantBudget(0.01, variant=args.variant)  # a misspelt part fails here, not in a worker
    jobs: list[Job] = [
        (
            s,
            b,
            args.clusters,
            args.embedding_cache,
            args.cache,
            args.spare_sd,
            args.entry_prior,
            args.variant,
            args.refit,
            args.answer_model,
            args.estimate_spread,
        )
        for b in args.budget
        for s in args.streams
    ]
    head = "| stream | budget | hit rate | error rate | budget kept | LLM calls | verifications |"
    rule = "|---|---|---|---|---|---|---|"
    if args.cache:
        head += " served through an overruled guard: right / wrong |"
        rule += "---|"
    if args.variant is not None:
        head += " weight / prior at the end |"
        rule += "---|"
    print(head)
    print(rule)
    rates: dict[float, list[float]] = {}
    got: dict[tuple[str, float], float] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for (row, rate), job in zip(pool.map(_run, jobs), jobs, strict=True):
            print(row, flush=True)
            rates.setdefault(job[1], []).append(rate)
            got[(job[0], job[1])] = rate
        # a verification seed's stream is the protocol's: its cosine is the protocol's
        orders = {s: "protocol" if s.startswith("seed") else s for s in args.streams}
        distinct = list(dict.fromkeys(orders.values())) if args.cosine else []
        work = [(s, args.clusters, args.embedding_cache, tuple(args.budget)) for s in distinct]
        cosine = dict(zip(distinct, pool.map(_cosine, work), strict=True))
    for budget, hits in rates.items():
        print(
            f"\nmean hit rate at {budget:g}: {sum(hits) / len(hits):.3f} over {len(hits)} streams"
        )
    if cosine:
        print("\n| stream | budget | hit rate | cosine's best in hindsight (cos >=) | x cosine |")
        print("|---|---|---|---|---|")
        for (stream, budget), rate in got.items():
            best = cosine[orders[stream]].get(budget)
            if best is None:
                print(f"| {stream} | {budget:g} | {rate:.3f} | never within | |")
                continue
            print(
                f"| {stream} | {budget:g} | {rate:.3f} | {best[0]:.3f} ({best[1]:.4f}) "
                f"| {rate / best[0]:.2f}x |"
            )


if __name__ == "__main__":
    main()
