"""The error budget over longer traffic: one budget over several streams in turn, each
on a fresh cache (docs/quality.md, "The model's lowest estimates, raised by band").

A chain such as ``"order 3>order 4>order 5"`` replays the streams of
``budget_streams.py`` (``protocol``, ``order N``, ``seed N``, ``half A``, ``half B``)
one after another with one budget policy, what a long-lived namespace refilled from
empty sees: the policy keeps what it learnt (its table, risk model, bands, correction
and ledger), the cache starts empty (no stored answer, no entry's record). Each stream is
``budget_stream_replay`` (the cache's decisions: ``tests/test_quality_cache_replay.py``)
with the shipped guards, its verification draws seeded by the chain's first stream.
The promise is over the whole chain: its wrong answers within the budget times its gets.

Prints one row per chain and budget: each stream's hit rate and wrong answers (against
its own share of the allowance), the chain's hit rate and wrong answers against its
allowance, whether it is within, and the get from which the risk model decided (none:
it never did). ``--variant NAME`` runs a variant of ``budget_variants.py``
(``shipped-model+no-bands``: the build before the bands). ``--by-band`` prints, after
the rows, each stream's served answers by the band of the model's estimate
(``semcache._model_bands``; ``table``: served while the table decided): how many, the
wrong answers their estimates predicted, and those found; and after each stream, the
LLM calls counted by band (predicted / wrong), each band's factor and floor, and the
verified candidates' correction.

Run:  OPENBLAS_NUM_THREADS=1 PYTHONPATH=.:benchmarks .venv/bin/python \\
          benchmarks/budget_chains.py ../shared/data/eval/clinc150.csv \\
          --embedding-cache /tmp/quality-emb/clinc150-minilm.npz --budget 0.001 \\
          --chains "order 3>order 4>order 5" "order 1>order 2>order 6" --jobs 2
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from budget_streams import stream_set
from budget_variants import VariantBudget

from semcache._budget_policy import ErrorBudget
from semcache._model_bands import EDGES, ModelBands
from semcache._risk_model import RiskModel
from semcache.embedders import default_embedder
from semcache.quality._budget_replay import budget_stream_replay
from semcache.quality._clusters import StreamVectors, shipped_defaults
from semcache.quality._embedding_cache import EmbeddingFile


def _run(job: tuple[str, float, str, str, str | None, bool]) -> tuple[str, list[str]]:
    chain, budget, path, cache_path, variant, by_band = job
    streams = [s.strip() for s in chain.split(">")]
    embed = EmbeddingFile(default_embedder(), cache_path).embed
    _, seed = stream_set(streams[0], path)
    policy: ErrorBudget
    if variant is not None:
        policy = VariantBudget(budget, variant=variant, seed=seed)
    else:
        policy = ErrorBudget(budget, floor=0.5, seed=seed, model=RiskModel())
    first: list[int] = []
    decide = policy.decide
    bands: list[int | None] = []  # with by_band, per get with features: its band or None

    def noting(*args: Any, **kwargs: Any) -> Any:
        features = kwargs.get("features", args[2] if len(args) > 2 else None)
        if by_band and features is not None:  # (the model's estimate, only when asked)
            model = policy.model if policy.modelled else None
            estimate = None if model is None else model.estimate(features)
            bands.append(None if estimate is None else ModelBands.band(estimate[0]))
        decision = decide(*args, **kwargs)
        if not first and policy.modelled:
            first.append(policy.gets)
        return decision

    policy.decide = noting  # type: ignore[method-assign]
    parts = []
    detail: list[str] = []
    gets = wrong = hits = 0
    for stream in streams:
        clusters, stream_seed = stream_set(stream, path)
        trace: list[Any] = []
        bands.clear()
        p = budget_stream_replay(
            StreamVectors(clusters, embed),
            budget,
            guard=shipped_defaults()[1],
            seed=stream_seed,
            policy=policy,
            inspect=policy.inspect if isinstance(policy, VariantBudget) else None,
            trace=trace if by_band else None,
        )
        if by_band:
            detail.append(f"{chain} ({budget:g}), {stream}: {_by_band(trace, bands)}")
            detail.append(f"{chain} ({budget:g}), after {stream}: {_calls(policy)}")
        gets, wrong, hits = gets + p.gets, wrong + p.wrong, hits + p.hits
        parts.append(f"{stream}: {p.hit_rate:.3f}, {p.wrong} / {budget * p.gets:.1f}")
    within = "within" if wrong <= budget * gets else "**over**"
    decided = f"{first[0]:,}" if first else "never"
    return (
        f"| {' > '.join(streams)} | {budget:g} | {'; '.join(parts)} | {hits / gets:.3f} | "
        f"{wrong} / {budget * gets:.1f} | {within} | {decided} |"
    ), detail


def _by_band(trace: list[Any], bands: list[int | None]) -> str:
    """The served answers of one stream by the band of the model's estimate (``table``
    where it did not decide): count, predicted wrong answers, wrong answers found."""
    assert len(trace) == len(bands)
    served: dict[int, list[float]] = defaultdict(lambda: [0, 0.0, 0])
    for t, band in zip(trace, bands, strict=True):
        if t.action == "serve":
            row = served[-1 if band is None else band]
            row[0] += 1
            row[1] += t.risk
            row[2] += not t.correct
    names = _names()
    return "; ".join(
        f"{names[b]}: {n:,.0f} served, {m:.1f} predicted, {w:.0f} wrong"
        for b, (n, m, w) in sorted(served.items())
    )


def _calls(policy: ErrorBudget) -> str:
    """What the policy has learnt by band so far: the LLM calls' predicted and found
    wrong answers in each band (:attr:`ErrorBudget.bands`), with the band's factor and
    floor, and the verified candidates' correction."""
    b = policy.bands
    names = _names()
    out = []
    for i in range(len(b.predicted)):
        if b.predicted[i] or b.wrong[i]:
            low = 0.0 if i == 0 else EDGES[i - 1]
            out.append(
                f"{names[i]}: {b.predicted[i]:.2f} / {b.wrong[i]:.0f} "
                f"(x{b.factor(low):.2f}, floor {b.floor(low):.2g})"
            )
    return (
        f"calls by band (predicted / wrong): {'; '.join(out)}; correction "
        f"{policy.correction:.2f} ({policy.predicted:.1f} predicted, {policy.measured:.0f} "
        "wrong verified)"
    )


def _names() -> dict[int, str]:
    """Each band's name (``table``: -1)."""
    return {-1: "table", 0: f"<{EDGES[0]:g}"} | {
        b: f"{EDGES[b - 1]:g}-{EDGES[b]:g}" if b < len(EDGES) else f">={EDGES[-1]:g}"
        for b in range(1, len(EDGES) + 1)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clusters")
    parser.add_argument("--embedding-cache", required=True)
    parser.add_argument("--budget", type=float, nargs="+", default=[0.001])
    parser.add_argument("--chains", nargs="+", required=True, help='e.g. "order 3>order 4"')
    parser.add_argument("--variant", default=None, help="a variant of budget_variants.py")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--by-band", action="store_true", help="each stream's served answers by the model's band"
    )
    args = parser.parse_args()
    if args.variant is not None:
        VariantBudget(0.01, variant=args.variant)  # a misspelt part fails here, not in a worker
    print(
        "| chain | budget | per stream: hit rate, wrong / allowed | hit rate | wrong / "
        "allowed | budget kept | the model decided from get |"
    )
    print("|---|---|---|---|---|---|---|")
    jobs = [
        (c, b, args.clusters, args.embedding_cache, args.variant, args.by_band)
        for b in args.budget
        for c in args.chains
    ]
    details = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for row, detail in pool.map(_run, jobs):
            print(row, flush=True)
            details.extend(detail)
    if details:
        print()
        for line in details:
            print(f"- {line}")


if __name__ == "__main__":
    main()
