"""The favoured answer and the variants measured beside it, in NumPy on a cluster set's
static replay (docs/quality.md, "Answers that agree, by default").

For each query: its 8 nearest stored texts at or above 0.5, their support scores
(``semcache._agreement.support_scores``) and each answer's local prototype. The rules:

- ``support``: the support scores alone (the default before the favoured answer);
- ``favoured``: only the favoured answer may be served, at its support score;
- ``lead`` (shipped): ``favoured``, its scores raised by its lead when it repeats
  (``favoured_scores``);
- ``ratio``: as ``lead``, but a favoured answer seen once is raised too;
- ``margin D``: ``favoured``, its scores lowered when it leads the next by less than D;
- ``global veto``: ``lead``, but declined where another answer's global prototype (the
  normalized sum of the vectors of *every* stored prompt with that answer, not only the
  8 candidates') is nearer the query than the served answer's (not shipped: the cache
  keeps no per-answer state).

No guards (the shipped cache runs numbers and negation guards on top; its figures are
``semcache eval --protocol static``'s). Hit rate at precision >= 0.95 / >= 0.99 on the
whole file and on its two halves (every other intent), S stored texts per intent.

Run:  .venv/bin/python benchmarks/favoured_variants.py ../shared/data/eval/clinc150.csv \\
          --embedding-cache /tmp/quality-emb/clinc150-minilm.npz
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from semcache._agreement import (
    SUPPORT_FLOOR,
    SUPPORT_WEIGHT,
    _prototypes,
    favoured_scores,
    support_scores,
)
from semcache.embedders import default_embedder
from semcache.quality._clusters import ClusterSet, load_clusters
from semcache.quality._embedding_cache import EmbeddingFile

K = 8
Rule = Callable[[list[float], list[str], list[list[float]]], list[float]]


def _raised(sims: list[float], keys: list[str], gram: list[list[float]], *, alone: bool,
            margin: float | None = None) -> list[float]:  # fmt: skip
    """The favoured answer's candidates at their support scores, moved by its lead: raised
    (``alone``: also when it is seen once) or, with ``margin``, only lowered below it."""
    scores = support_scores(sims, keys)
    protos = _prototypes(sims, keys, gram)
    favoured = max(protos, key=lambda key: protos[key])
    rival = max([SUPPORT_FLOOR] + [p for k, (p, _) in protos.items() if k != favoured])
    lead = protos[favoured][0] - rival
    if margin is not None:
        lead = min(0.0, lead - margin)
    elif not alone and keys.count(favoured) < 2:
        lead = 0.0
    factor = math.exp(-SUPPORT_WEIGHT * lead)
    return [
        1 - (1 - s) * factor if k == favoured else -1.0 for s, k in zip(scores, keys, strict=True)
    ]


RULES: dict[str, Rule] = {
    "support": lambda sims, keys, gram: support_scores(sims, keys),
    "favoured": lambda sims, keys, gram: _raised(sims, keys, gram, alone=False, margin=0.0),
    "lead": lambda sims, keys, gram: (
        favoured_scores(support_scores(sims, keys), sims, keys, gram)
        if len(set(keys)) < len(keys)
        else support_scores(sims, keys)
    ),
    "ratio": lambda sims, keys, gram: _raised(sims, keys, gram, alone=True),
    "margin 0.1": lambda sims, keys, gram: _raised(sims, keys, gram, alone=False, margin=0.1),
    "margin 0.2": lambda sims, keys, gram: _raised(sims, keys, gram, alone=False, margin=0.2),
}


def _head(sims: np.ndarray) -> np.ndarray:
    """A query's candidates as the cache reads them: its ``K`` nearest stored texts
    (``sims``: its similarity to each), those at or above the support floor."""
    near = np.argsort(-sims)[:K]
    return near[sims[near] >= SUPPORT_FLOOR]


def _halves(clusters: ClusterSet) -> dict[str, ClusterSet]:
    intents = sorted({c for c in clusters.clusters if not c.startswith("oos:")})
    out = {"all": clusters}
    for name, half in (("half A", set(intents[0::2])), ("half B", set(intents[1::2]))):
        keep = [
            i
            for i, c in enumerate(clusters.clusters)
            if c in half or (c.startswith("oos:") and i % 2 == (name == "half A"))
        ]
        out[name] = ClusterSet(
            [clusters.texts[i] for i in keep],
            [clusters.clusters[i] for i in keep],
            [clusters.splits[i] for i in keep],
        )
    return out


def _headlines(score: np.ndarray, right: np.ndarray, in_scope: int) -> str:
    order = np.argsort(-score, kind="stable")
    correct = np.cumsum(right[order])
    precision = correct / np.arange(1, len(order) + 1)
    hit_rate = correct / in_scope
    served = score[order] > -np.inf
    cells = []
    for target in (0.95, 0.99):
        ok = (precision >= target) & served
        cells.append(f"{hit_rate[ok].max():.3f}" if ok.any() else "never")
    return " / ".join(cells)


def cluster_sets(
    doc: str, columns: Sequence[str]
) -> Iterator[tuple[str, ClusterSet, int, Callable[[list[str]], np.ndarray]]]:
    """The command line of the static variant reports (a cluster set, its embedding
    file, ``--per-cluster``), their table's head printed (``columns``), then each set
    (the whole file, its two halves) and S, with the embedding function."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("clusters")
    parser.add_argument("--embedding-cache", required=True)
    parser.add_argument("--per-cluster", type=int, nargs="+", default=[5, 10, 20])
    args = parser.parse_args()
    embed = EmbeddingFile(default_embedder(), args.embedding_cache).embed
    print("| set | S | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for name, clusters in _halves(load_clusters(args.clusters)).items():
        for per in args.per_cluster:
            yield name, clusters, per, embed


@dataclass
class Static:
    """One static replay's vectors in float64 (:func:`static_vectors`)."""

    vs: np.ndarray  # the stored texts'
    vq: np.ndarray  # the queries'
    answers: list[str]  # the stored texts' clusters
    asked: list[str]  # the queries' clusters
    in_scope: int
    sims: np.ndarray  # queries x stored
    labels: np.ndarray  # the answers, sorted
    which: np.ndarray  # each stored text's answer, an index into ``labels``
    counts: np.ndarray  # per answer, its stored texts
    cosine: np.ndarray  # queries x answers: to each answer's prototype


def static_vectors(
    clusters: ClusterSet, per: int, embed: Callable[[list[str]], np.ndarray]
) -> Static:
    """The static replay of ``clusters`` (``per`` stored texts per cluster) as the
    variant reports read it: vectors, similarities and every answer's prototype."""
    stored, queries = clusters.static_sample(per), clusters.static_queries()
    vs = np.asarray(embed([clusters.texts[i] for i in stored]), dtype=np.float64)
    vq = np.asarray(embed([clusters.texts[i] for i in queries]), dtype=np.float64)
    answers = [clusters.clusters[i] for i in stored]
    asked = [clusters.clusters[i] for i in queries]
    labels, which = np.unique(answers, return_inverse=True)
    sums = np.zeros((len(labels), vs.shape[1]))
    np.add.at(sums, which, vs)
    return Static(
        vs,
        vq,
        answers,
        asked,
        sum(not c.startswith("oos:") for c in asked),
        vq @ vs.T,
        labels,
        which,
        np.bincount(which),
        vq @ (sums / np.linalg.norm(sums, axis=1)[:, None]).T,
    )


def heads(st: Static) -> Iterator[tuple[int, np.ndarray, list[str], list[float]]]:
    """Each query that has candidates: its index, its head (:func:`_head`: indices of
    stored texts), their answers and their similarities."""
    for q in range(len(st.asked)):
        near = _head(st.sims[q])
        if len(near):
            yield q, near, [st.answers[i] for i in near], [float(x) for x in st.sims[q, near]]


def main() -> None:
    for name, clusters, per, embed in cluster_sets(__doc__, [*RULES, "global veto"]):
        stored, queries = clusters.static_sample(per), clusters.static_queries()
        vs = embed([clusters.texts[i] for i in stored])
        vq = embed([clusters.texts[i] for i in queries])
        answers = [clusters.clusters[i] for i in stored]
        asked = [clusters.clusters[i] for i in queries]
        in_scope = sum(not c.startswith("oos:") for c in asked)
        sims = vq @ vs.T
        labels, which = np.unique(answers, return_inverse=True)
        sums = np.zeros((len(labels), vs.shape[1]))
        np.add.at(sums, which, vs)
        nearest = labels[np.argmax(vq @ (sums / np.linalg.norm(sums, axis=1)[:, None]).T, 1)]
        cells = []
        for name_, rule in [*RULES.items(), ("global veto", RULES["lead"])]:
            score = np.full(len(queries), -np.inf)
            right = np.zeros(len(queries), dtype=bool)
            for q in range(len(queries)):
                near = _head(sims[q])
                if not len(near):
                    continue
                keys = [answers[i] for i in near]
                gram = (vs[near] @ vs[near].T).tolist()
                scores = rule([float(s) for s in sims[q, near]], keys, gram)
                best = int(np.argmax(scores))
                if name_ == "global veto" and keys[best] != nearest[q]:
                    continue
                if scores[best] > -1.0:
                    score[q], right[q] = scores[best], keys[best] == asked[q]
            cells.append(_headlines(score, right, in_scope))
        print(f"| {name} | {per} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
