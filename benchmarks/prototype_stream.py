"""The global-prototype veto on a cluster set's stream, in NumPy (docs/quality.md,
"Signals measured and left for later").

Get-then-put over the file in the protocol's order: each text is first looked up
exactly (a stored repeat is served), then its 8 nearest stored texts at or above 0.5
are scored as the shipped cache scores them (support scores, the favoured answer and
its lead: ``semcache._agreement``), and the best is served when its score reaches the
threshold; otherwise the text is put with its cluster. Rules:

- ``shipped``: that;
- ``veto``: the same, but declined when another answer's global prototype (the
  normalized sum of every stored text of that answer; an answer stored once is its own
  text) is nearer the text than the served answer's.

No guards, and a declined candidate does not widen the search: the cache's own figures
are ``semcache eval --protocol stream``'s ``threshold`` family. Prints hit rate, error
rate (wrong answers per get) and LLM calls per threshold, one rule after the other.

Run:  .venv/bin/python benchmarks/prototype_stream.py ../shared/data/eval/clinc150.csv \\
          --embedding-cache /tmp/quality-emb/clinc150-minilm.npz --threshold 0.76 0.8
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import numpy.typing as npt

from semcache._agreement import SUPPORT_FLOOR, SUPPORT_K, favoured_scores, support_scores
from semcache.embedders import default_embedder
from semcache.quality._clusters import load_clusters
from semcache.quality._embedding_cache import EmbeddingFile


def replay(
    texts: list[str], labels: list[str], vectors: npt.NDArray[np.float32], t: float, veto: bool
) -> tuple[float, float, int]:
    """One stream at threshold ``t``: (hit rate, error rate, LLM calls)."""
    n, dim = vectors.shape
    stored = np.zeros((n, dim), np.float32)
    answers: list[str] = []
    exact: dict[str, str] = {}
    sums: dict[str, npt.NDArray[np.float64]] = {}
    count: dict[str, int] = {}
    protos = np.zeros((n, dim))  # the prototypes of the answers stored twice or more
    names: list[str] = []
    row: dict[str, int] = {}
    hits = wrong = 0
    for i in range(n):
        q = vectors[i]
        if texts[i] in exact:
            hits += 1
            wrong += exact[texts[i]] != labels[i]
            continue
        served = None
        if answers:
            sims = stored[: len(answers)] @ q
            near = np.argsort(-sims)[:SUPPORT_K]
            near = near[sims[near] >= SUPPORT_FLOOR]
            if len(near):
                keys = [answers[j] for j in near]
                s = [float(x) for x in sims[near]]
                scores = support_scores(s, keys)
                if len(set(keys)) < len(keys):
                    gram = stored[near] @ stored[near].T
                    scores = favoured_scores(scores, s, keys, gram.tolist())
                best = int(np.argmax(scores))
                if scores[best] >= t:
                    served = keys[best]
                if served is not None and veto:
                    nearest, at = None, -2.0
                    if names:
                        dots = protos[: len(names)] @ q
                        j = int(np.argmax(dots))
                        nearest, at = names[j], float(dots[j])
                    for x, k in zip(s, keys, strict=True):
                        if count[k] == 1 and x > at:
                            nearest, at = k, x
                    if nearest != served:
                        served = None
        if served is not None:
            hits += 1
            wrong += served != labels[i]
            continue
        label = labels[i]
        stored[len(answers)] = q
        answers.append(label)
        exact[texts[i]] = label
        sums[label] = sums[label] + q if label in sums else q.astype(np.float64)
        count[label] = count.get(label, 0) + 1
        if count[label] == 2:
            row[label] = len(names)
            names.append(label)
        if count[label] >= 2:
            total = sums[label]
            protos[row[label]] = total / math.sqrt(float(total @ total))
    return hits / n, wrong / n, n - hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clusters")
    parser.add_argument("--embedding-cache", required=True)
    parser.add_argument("--threshold", type=float, nargs="+", default=[0.76, 0.78, 0.8])
    args = parser.parse_args()
    clusters = load_clusters(args.clusters)
    order = clusters.stream_order()
    texts = [clusters.texts[i] for i in order]
    labels = [clusters.clusters[i] for i in order]
    vectors = EmbeddingFile(default_embedder(), args.embedding_cache).embed(texts)
    vectors = np.asarray(vectors, dtype=np.float32)
    print("| rule | threshold | hit rate | error rate | LLM calls |")
    print("|---|---|---|---|---|")
    for veto in (False, True):
        for t in args.threshold:
            hit, err, calls = replay(texts, labels, vectors, t, veto)
            rule = "veto" if veto else "shipped"
            print(f"| {rule} | {t:g} | {hit:.3f} | {err:.4f} | {calls:,} |", flush=True)


if __name__ == "__main__":
    main()
