"""Would a learnt model of the candidate's features rank the stream's gets better than
the error budget's risk table? (docs/quality.md, "A model of the candidate's
features").

``budget_headroom.py`` found the budget's estimates short of 1.5x cosine at 0.01 even
with a cutoff chosen in hindsight, and called the signal the limit. Its estimates
are a table (evidence class x similarity bin) moved by the entry's record; the
candidates carry more than that: the margin to the nearest rival answer, the share of
the k nearest that agree, the support score, and the words of the query and of the
stored prompts. This script asks whether those features, weighed by a model learnt
online, rank the gets better: the same replay and cutoff sweep as
``budget_headroom.py`` (the shipped guards, vote, veto, agreement and records; serve
when the estimate is at or below the cutoff, never verify, learn from every miss), with
a third estimate, ``model``: the logistic model of ``risk_model.py`` (the features
above, learnt from every LLM call's outcome so far), the record's estimate until it
is first fitted.

Deterministic. Run:  PYTHONPATH=.:benchmarks .venv/bin/python
benchmarks/risk_model_headroom.py ../shared/data/eval/clinc150.csv
--embedding-cache /tmp/quality-emb/clinc150-minilm.npz --jobs 2
"""

from __future__ import annotations

from collections.abc import Sequence

from budget_headroom import Cutoff, Job, Run, sweep
from budget_streams import stream_set
from risk_model import RiskModel

from semcache._agreement import Agreement
from semcache._budget_policy import Decision, EntryRecord
from semcache.embedders import default_embedder
from semcache.quality._budget_replay import budget_stream_replay
from semcache.quality._clusters import StreamVectors, shipped_defaults
from semcache.quality._embedding_cache import EmbeddingFile

ESTIMATES = ("table", "record", "model")


class ModelCutoff(Cutoff):
    """:class:`Cutoff` on :class:`RiskModel`'s estimate."""

    def __init__(self, cutoff: float) -> None:
        super().__init__(cutoff, use_record=True)
        self.research = RiskModel(self.floor)

    def decide(
        self,
        ev: Agreement | None,
        record: EntryRecord | None = None,
        features: Sequence[float] | None = None,
    ) -> Decision:
        self.research.take(ev, record, self)
        decision = super().decide(ev, record)
        estimate = self.research.estimate()
        if estimate is None:
            return decision
        mean, upper = estimate
        return Decision("serve" if mean <= self.cutoff else "miss", mean, upper, self.cutoff)

    def observe(
        self,
        ev: Agreement,
        record: EntryRecord | None,
        correct: bool,
        decision: Decision | None = None,
        features: Sequence[float] | None = None,
    ) -> None:
        self.research.learn(correct)
        super().observe(ev, record, correct, decision)


def _run(job: Job) -> Run:
    stream, estimate, cutoff, path, cache_path = job
    clusters, _ = stream_set(stream, path)
    embed = EmbeddingFile(default_embedder(), cache_path).embed
    model = ModelCutoff(cutoff) if estimate == "model" else None
    p = budget_stream_replay(
        StreamVectors(clusters, embed),
        0.5,
        guard=shipped_defaults()[1],
        policy=model or Cutoff(cutoff, use_record=estimate == "record"),
        inspect=model.research.inspect if model is not None else None,
    )
    return p.gets, p.hits, p.wrong


def main() -> None:
    sweep(__doc__.split("\n\n")[0], ESTIMATES, _run)


if __name__ == "__main__":
    main()
