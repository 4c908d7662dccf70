"""Guards that yield to evidence: the shipped rule and the looser variants measured
before it, on a cluster set's static replay (docs/quality.md, "Guards that yield to
evidence").

Every column is the default family of ``semcache eval --protocol static`` (answer
support, favoured answer and its lead, prototype veto, the shipped numbers and
negation guards, threshold swept), read from one record per set; only the guards'
verdicts differ. A candidate of answer A at similarity s that a guard rejects passes
when:

- ``held``: never (the default before the rule);
- ``any pair``: A's stored prompts (anywhere) hold two that the guard tells apart;
- ``as near``: two of A's stored prompts that it tells apart are at least s similar;
- ``head``: two of the head candidates (the 8 nearest at or above 0.5) of answer A
  that it tells apart are at least s similar;
- ``shipped``: that, and no two head candidates of different answers that it tells
  apart are at least s similar (:func:`semcache._guard_evidence.overruled`, through
  ``StaticResult.supported(yielding=...)``);
- ``no guards``: every candidate passes (the ceiling).

Hit rate at precision >= 0.95 / >= 0.99 on the whole file and on its two halves
(every other intent), S stored texts per intent.

Run:  PYTHONPATH=benchmarks .venv/bin/python benchmarks/guard_evidence_variants.py \\
          ../shared/data/eval/clinc150.csv --embedding-cache /tmp/quality-emb/clinc150-minilm.npz
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
from favoured_variants import cluster_sets

from semcache._guards import negation_differs, numbers_differ
from semcache.quality import negation_agrees, numbers_agree
from semcache.quality._clusters import ClusterSet, StaticResult, static_replay

COLUMNS = ("held", "any pair", "as near", "head", "shipped", "no guards")
GUARDS = {
    "numbers": (numbers_agree, numbers_differ),
    "negation": (negation_agrees, negation_differs),
}


def _cell(record: StaticResult, guards: tuple[str, ...]) -> str:
    heads = [record.headline(t, guards) for t in (0.95, 0.99)]
    return " / ".join("never" if p is None else f"{p.hit_rate:.3f}" for p in heads)


def _loose(
    record: StaticResult,
    clusters: ClusterSet,
    per: int,
    embed: Callable[[list[str]], np.ndarray],
    column: str,
) -> StaticResult:
    """The record with the guards' verdicts of a looser variant (no evidence against)."""
    stored = clusters.static_sample(per)
    texts = [clusters.texts[i] for i in stored]
    answers = [clusters.clusters[i] for i in stored]
    vectors = np.asarray(embed(texts), dtype=np.float32)
    members: dict[str, list[int]] = {}
    for j, a in enumerate(answers):
        members.setdefault(a, []).append(j)
    # per guard and answer: the highest similarity of two of its prompts told apart
    closest: dict[str, dict[str, float]] = {g: {} for g in GUARDS}
    for a, m in members.items():
        gram = vectors[m] @ vectors[m].T
        for g, (_, differ) in GUARDS.items():
            best = -np.inf
            for x in range(len(m)):
                for y in range(x + 1, len(m)):
                    if differ(texts[m[x]], texts[m[y]]):
                        best = max(best, float(gram[x, y]))
            closest[g][a] = best
    assert record.answers is not None
    assert record.texts is not None
    out = copy.copy(record)
    out.guards = {g: v.copy() for g, v in record.guards.items()}
    for g in GUARDS:
        for i, row in enumerate(record.answers):
            for j, a in enumerate(row):
                if out.guards[g][i, j]:
                    continue
                best = closest[g].get(str(a), -np.inf)
                limit = -1.0 if column == "any pair" else record.similarity[i, j]
                out.guards[g][i, j] = best > -np.inf and best >= limit
    if column == "head":
        assert record.head_dots is not None
        for g, (_, differ) in GUARDS.items():
            for i, row in enumerate(record.answers):
                _, prompts = record.texts[i]
                head = [j for j in range(min(8, len(row))) if record.similarity[i, j] >= 0.5]
                for j in head:
                    if record.guards[g][i, j]:
                        out.guards[g][i, j] = True
                        continue
                    out.guards[g][i, j] = any(
                        row[x] == row[j] == row[y]
                        and differ(prompts[x], prompts[y])
                        and record.head_dots[i, x, y] >= record.similarity[i, j]
                        for x in head
                        for y in head
                        if x < y
                    )
    return out


def main() -> None:
    judges = {name: guard for name, (guard, _) in GUARDS.items()}
    both = tuple(GUARDS)
    for name, clusters, per, embed in cluster_sets(__doc__, COLUMNS):
        record = static_replay(clusters, embed, per_cluster=per, guards=judges)
        cells = []
        for column in COLUMNS:
            if column == "held":
                cells.append(_cell(record.supported(), both))
            elif column == "no guards":
                cells.append(_cell(record.supported(), ()))
            elif column == "shipped":
                cells.append(_cell(record.supported(yielding=judges), both))
            else:
                loose = _loose(record, clusters, per, embed, column)
                cells.append(_cell(loose.supported(), both))
        print(f"| {name} | {per} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
