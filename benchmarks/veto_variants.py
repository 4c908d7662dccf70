"""The prototype veto and the variants measured beside it, on a cluster set's static
replay, in NumPy (docs/quality.md, "The prototype veto").

Each query's 8 nearest stored texts at or above 0.5 are scored as the shipped cache
scores them (support scores, the favoured answer and its lead:
``favoured_variants.RULES["lead"]``), then the best is served at its score. Columns:

- ``no veto``: that;
- ``veto``: the shipped veto: a candidate is declined when the prototype (normalized
  sum of every stored text) of another answer stored twice or more is nearer the
  query than its own answer's (an answer stored once: the candidate's similarity);
- ``soft W``: instead of declined, its score's distance to 1 multiplied by
  ``exp(W x (rival - own))``;
- ``own = max``: declined only when the rival beats both its answer's prototype and
  its own similarity;
- ``global lead``: the global prototypes in place of the local ones: the favoured
  answer is the nearest prototype's, raised by its lead over the next one, then the
  veto;
- ``whitened``: the veto in a whitened space: nearest answer mean by Euclidean
  distance after whitening by the within-answer covariance (Ledoit-Wolf shrinkage,
  no constant chosen here);
- ``typical``: the veto, and the served answer (stored twice or more) declined too
  when the query is less near its prototype than the least typical of its own stored
  prompts is to the prototype of the others (leave one out; no constant);
- ``winner``: the veto, but where it and the favoured answer decline every candidate
  (the local favoured answer is not the nearest prototype's), the nearest prototype's
  candidates are served at their similarity.

No guards (the cache runs numbers and negation guards on top: its figures are
``semcache eval --protocol static``'s). Hit rate at precision >= 0.95 / >= 0.99 on the
whole file and on its two halves (every other intent), S stored texts per intent.

Run:  .venv/bin/python benchmarks/veto_variants.py ../shared/data/eval/clinc150.csv \\
          --embedding-cache /tmp/quality-emb/clinc150-minilm.npz
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from favoured_variants import RULES, _headlines, cluster_sets, heads, static_vectors

from semcache._agreement import SUPPORT_FLOOR, SUPPORT_WEIGHT, support_scores

COLUMNS = (
    "no veto",
    "veto",
    "soft 2",
    "soft 8",
    "own = max",
    "global lead",
    "whitened",
    "typical",
    "winner",
)
Array = npt.NDArray[np.float64]


def _whitening(residuals: Array) -> Array:
    """The inverse square root of the Ledoit-Wolf shrunk covariance of ``residuals``."""
    n, d = residuals.shape
    cov = residuals.T @ residuals / n
    mu = np.trace(cov) / d
    delta = np.linalg.norm(cov - mu * np.eye(d)) ** 2 / d
    beta = sum(np.linalg.norm(np.outer(r, r) - cov) ** 2 for r in residuals) / d / n**2
    a = min(beta, delta) / delta if delta > 0 else 1.0
    w, u = np.linalg.eigh(a * mu * np.eye(d) + (1 - a) * cov)
    return np.asarray(u @ np.diag(w**-0.5) @ u.T)


def _scores(
    column: str,
    s: list[float],
    keys: list[str],
    gram: list[list[float]],
    view: dict[str, float],
    alone: list[float],
) -> list[float]:
    """A query's candidates' scores under ``column``; ``view``: each answer's nearness
    to the query (higher is nearer: a prototype's cosine, or minus a whitened squared
    distance to its mean), answers stored once absent; ``alone``: each candidate's own
    nearness, for an answer stored once."""
    if column == "global lead":
        scores = support_scores(s, keys)
        ranked = sorted(view, key=view.__getitem__, reverse=True)
        if ranked and keys.count(ranked[0]) > 1:
            rival = view[ranked[1]] if len(ranked) > 1 else SUPPORT_FLOOR
            lead = view[ranked[0]] - max(rival, SUPPORT_FLOOR)
            if lead > 0:
                f = math.exp(-SUPPORT_WEIGHT * lead)
                scores = [
                    1 - (1 - x) * f if k == ranked[0] else x
                    for x, k in zip(scores, keys, strict=True)
                ]
    else:
        scores = RULES["lead"](s, keys, gram)
    if column == "no veto" or not view:
        return scores
    first_key = max(view, key=view.__getitem__)
    first = view[first_key]
    out = []
    for x, k, sim, mine in zip(scores, keys, s, alone, strict=True):
        own = view.get(k, mine)
        if column == "own = max":
            own = max(own, sim)
        if k == first_key or first <= own or x <= -1.0:
            out.append(x)
        elif column.startswith("soft"):
            out.append(1 - (1 - x) * math.exp(float(column.split()[1]) * (first - own)))
        else:
            out.append(-1.0)
    if column == "winner" and max(out) <= -1.0 and first_key in keys:
        # every candidate declined (the local favoured answer is not the nearest
        # prototype's): the nearest prototype's candidates served at their similarity
        out = [sim if k == first_key else x for x, k, sim in zip(out, keys, s, strict=True)]
    return out


def main() -> None:
    for name, clusters, per, embed in cluster_sets(__doc__, COLUMNS):
        st = static_vectors(clusters, per, embed)
        vs, vq, asked = st.vs, st.vq, st.asked
        labels, which, counts, cosine = st.labels, st.which, st.counts, st.cosine
        in_scope = st.in_scope
        queries = asked
        repeated = [i for i in range(len(labels)) if counts[i] >= 2]
        sums = np.zeros((len(labels), vs.shape[1]))
        np.add.at(sums, which, vs)
        means = sums / counts[:, None]
        w = _whitening((vs - means[which])[counts[which] >= 2])
        rest = sums[which] - vs  # each stored prompt's answer less itself
        norms = np.linalg.norm(rest, axis=1)
        loo = np.where(norms > 0, (vs * rest).sum(axis=1) / np.maximum(norms, 1e-12), 1.0)
        least = np.full(len(labels), np.inf)
        np.minimum.at(least, which, loo)
        least[counts < 2] = -np.inf
        typical = {str(labels[i]): float(least[i]) for i in repeated}
        mq, mm, mv = vq @ w, means @ w, vs @ w
        cells = []
        for column in COLUMNS:
            score = np.full(len(queries), -np.inf)
            right = np.zeros(len(queries), dtype=bool)
            for q, near, keys, s in heads(st):
                if column == "whitened":
                    dist = ((mq[q] - mm[repeated]) ** 2).sum(axis=1)
                    view = {str(labels[i]): -float(d) for i, d in zip(repeated, dist, strict=True)}
                    alone = [-float(((mq[q] - mv[j]) ** 2).sum()) for j in near]
                else:
                    view = {str(labels[i]): float(cosine[q, i]) for i in repeated}
                    alone = s
                gram = (vs[near] @ vs[near].T).tolist()
                scores = _scores(column, s, keys, gram, view, alone)
                best = int(np.argmax(scores))
                if column == "typical" and view.get(keys[best], 1.0) < typical.get(
                    keys[best], -1.0
                ):
                    continue
                if scores[best] > -1.0:
                    score[q], right[q] = scores[best], keys[best] == asked[q]
            cells.append(_headlines(score, right, in_scope))
        print(f"| {name} | {per} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
