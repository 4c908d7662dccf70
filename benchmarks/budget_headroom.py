"""What the error budget's own estimates would serve with a cutoff chosen in hindsight
(docs/quality.md, "What the estimates would serve in hindsight").

The ``cosine`` family of the stream protocol is the best similarity threshold chosen
knowing the outcome; the budget has to find its level online, paying for it in
verifications, a spare and estimates that start at 1/2. This script gives the budget's
estimates the same hindsight, to tell a signal that is too weak from the cost of
learning online: each run is ``budget_stream_replay`` (the shipped guards, vote,
veto, agreement and records, as the budget runs) with a policy that serves a candidate
when its estimated risk is at or below a fixed cutoff, never verifies, and learns from
every miss as the budget does. The cutoffs of :data:`CUTOFFS` (or ``--cutoffs``) are
swept; per budget the best hit rate whose measured error rate is within it is
reported, for two estimates:

- ``table``: the risk table's estimate alone (evidence class and similarity bin);
- ``record``: the table moved by the entry's record (what the budget decides on), the
  table counting as ``ENTRY_PRIOR`` (4) of the entry's observations: the weight of the
  build these figures were first measured on (docs/quality.md); the shipped budget
  learns it.

The streams are those of ``budget_streams.py`` (verification seeds do not apply: a
cutoff draws nothing). Deterministic.

Run:  PYTHONPATH=.:benchmarks .venv/bin/python benchmarks/budget_headroom.py \\
          ../shared/data/eval/clinc150.csv \\
          --embedding-cache /tmp/quality-emb/clinc150-minilm.npz --jobs 2
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from budget_streams import _stream_name, stream_set

from semcache._agreement import Agreement
from semcache._budget_policy import ENTRY_PRIOR, Decision, EntryRecord, ErrorBudget
from semcache.embedders import default_embedder
from semcache.quality._budget_replay import budget_stream_replay
from semcache.quality._clusters import StreamVectors, shipped_defaults
from semcache.quality._embedding_cache import EmbeddingFile

#: The risk cutoffs swept (the estimate a candidate is served at or below).
CUTOFFS = (
    *(0.002, 0.003, 0.004, 0.005, 0.007, 0.01, 0.015, 0.02),
    *(0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.1),
)
ESTIMATES = ("table", "record")
STREAMS = ("protocol", "order 1", "order 2", "half A", "half B")


class Cutoff(ErrorBudget):
    """Serve when the estimated risk is at or below ``cutoff``; never verify."""

    def __init__(self, cutoff: float, *, use_record: bool) -> None:
        super().__init__(0.5)  # the budget is not read: the cutoff decides
        self.cutoff = cutoff
        self.use_record = use_record

    @property
    def entry_prior(self) -> float:
        """The record's weight, fixed: ``ENTRY_PRIOR``."""
        return ENTRY_PRIOR

    def decide(
        self,
        ev: Agreement | None,
        record: EntryRecord | None = None,
        features: Sequence[float] | None = None,
    ) -> Decision:
        self.gets += 1
        if ev is None or ev.similarity < self.floor:
            return Decision("miss", 1.0, 1.0, self.cutoff)
        mean, upper = self.table_risk(ev, record if self.use_record else None)
        action = "serve" if mean <= self.cutoff else "miss"
        return Decision(action, mean, upper, self.cutoff)


Job = tuple[str, str, float, str, str]
#: A run's gets, hits and wrong answers.
Run = tuple[int, int, int]


def _run(job: Job) -> Run:
    stream, estimate, cutoff, path, cache_path = job
    clusters, _ = stream_set(stream, path)
    embed = EmbeddingFile(default_embedder(), cache_path).embed
    p = budget_stream_replay(
        StreamVectors(clusters, embed),
        0.5,
        guard=shipped_defaults()[1],
        policy=Cutoff(cutoff, use_record=estimate == "record"),
    )
    return p.gets, p.hits, p.wrong


def report(
    runs: dict[tuple[str, str], list[tuple[float, int, int, int]]], budgets: list[float]
) -> None:
    """Print, per (stream, estimate), the best hit rate within each budget over the
    cutoffs of ``runs`` (each ``(cutoff, gets, hits, wrong)``), then every cutoff's."""
    print("| stream | estimate | " + " | ".join(f"budget {b:g}" for b in budgets) + " |")
    print("|---|---|" + "---|" * len(budgets))
    for (s, e), points in runs.items():
        cells = []
        for b in budgets:
            within = [
                (hits / gets, c, wrong) for c, gets, hits, wrong in points if wrong <= b * gets
            ]
            if not within:
                cells.append("none within")
                continue
            rate, c, wrong = max(within)
            cells.append(f"{rate:.3f} (cutoff {c:g}, {wrong} wrong)")
        print(f"| {s} | {e} | " + " | ".join(cells) + " |", flush=True)
    print("\nevery cutoff: stream, estimate, cutoff, hit rate, wrong per get")
    for (s, e), points in runs.items():
        for c, gets, hits, wrong in points:
            print(f"{s}, {e}, {c:g}, {hits / gets:.4f}, {wrong / gets:.5f}")


def sweep(description: str, estimates: Sequence[str], run: Callable[[Job], Run]) -> None:
    """The command line of this script and of ``risk_model_headroom.py``: parse it, run
    ``run`` on every (stream, estimate, cutoff) asked for in a process pool, and print
    the :func:`report`; ``estimates``: the ``--estimates`` choices (all by default)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("clusters")
    parser.add_argument("--embedding-cache", required=True)
    parser.add_argument("--budget", type=float, nargs="+", default=[0.01, 0.001])
    parser.add_argument("--streams", nargs="+", type=_stream_name, default=list(STREAMS))
    parser.add_argument("--estimates", nargs="+", choices=estimates, default=list(estimates))
    parser.add_argument("--cutoffs", type=float, nargs="+", default=list(CUTOFFS))
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    jobs: list[Job] = [
        (s, e, c, args.clusters, args.embedding_cache)
        for s in args.streams
        for e in args.estimates
        for c in args.cutoffs
    ]
    runs: dict[tuple[str, str], list[tuple[float, int, int, int]]] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for (gets, hits, wrong), (s, e, c, *_) in zip(pool.map(run, jobs), jobs, strict=True):
            runs.setdefault((s, e), []).append((c, gets, hits, wrong))
    report(runs, args.budget)


def main() -> None:
    sweep(__doc__.split("\n\n")[0], ESTIMATES, _run)


if __name__ == "__main__":
    main()
