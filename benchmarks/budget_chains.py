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
(``shipped-model+no-bands``: the build before the bands).

Run:  OPENBLAS_NUM_THREADS=1 PYTHONPATH=.:benchmarks .venv/bin/python \\
          benchmarks/budget_chains.py ../shared/data/eval/clinc150.csv \\
          --embedding-cache /tmp/quality-emb/clinc150-minilm.npz --budget 0.001 \\
          --chains "order 3>order 4>order 5" "order 1>order 2>order 6" --jobs 2
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from budget_streams import stream_set
from budget_variants import VariantBudget

from semcache._budget_policy import ErrorBudget
from semcache._risk_model import RiskModel
from semcache.embedders import default_embedder
from semcache.quality._budget_replay import budget_stream_replay
from semcache.quality._clusters import StreamVectors, shipped_defaults
from semcache.quality._embedding_cache import EmbeddingFile


def _run(job: tuple[str, float, str, str, str | None]) -> str:
    chain, budget, path, cache_path, variant = job
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

    def noting(*args: Any, **kwargs: Any) -> Any:
        decision = decide(*args, **kwargs)
        if not first and policy.modelled:
            first.append(policy.gets)
        return decision

    policy.decide = noting  # type: ignore[method-assign]
    parts = []
    gets = wrong = hits = 0
    for stream in streams:
        clusters, stream_seed = stream_set(stream, path)
        p = budget_stream_replay(
            StreamVectors(clusters, embed),
            budget,
            guard=shipped_defaults()[1],
            seed=stream_seed,
            policy=policy,
            inspect=policy.inspect if isinstance(policy, VariantBudget) else None,
        )
        gets, wrong, hits = gets + p.gets, wrong + p.wrong, hits + p.hits
        parts.append(f"{stream}: {p.hit_rate:.3f}, {p.wrong} / {budget * p.gets:.1f}")
    within = "within" if wrong <= budget * gets else "**over**"
    decided = f"{first[0]:,}" if first else "never"
    return (
        f"| {' > '.join(streams)} | {budget:g} | {'; '.join(parts)} | {hits / gets:.3f} | "
        f"{wrong} / {budget * gets:.1f} | {within} | {decided} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clusters")
    parser.add_argument("--embedding-cache", required=True)
    parser.add_argument("--budget", type=float, nargs="+", default=[0.001])
    parser.add_argument("--chains", nargs="+", required=True, help='e.g. "order 3>order 4"')
    parser.add_argument("--variant", default=None, help="a variant of budget_variants.py")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    if args.variant is not None:
        VariantBudget(0.01, variant=args.variant)  # a misspelt part fails here, not in a worker
    print(
        "| chain | budget | per stream: hit rate, wrong / allowed | hit rate | wrong / "
        "allowed | budget kept | the model decided from get |"
    )
    print("|---|---|---|---|---|---|---|")
    jobs = [
        (c, b, args.clusters, args.embedding_cache, args.variant)
        for b in args.budget
        for c in args.chains
    ]
    with ProcessPoolExecutor(args.jobs) as pool:
        for row in pool.map(_run, jobs):
            print(row, flush=True)


if __name__ == "__main__":
    main()
