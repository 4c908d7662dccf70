"""The rival answers' standing and the variants measured beside it, on a cluster set's
static replay, in NumPy (docs/quality.md, "Rival answers, weighed").

Each query's 8 nearest stored texts at or above 0.5 are scored as the cache scores them
before its prototypes (support scores, the favoured answer and its lead:
``favoured_variants.RULES["lead"]``); then each candidate of answer A is weighed against
A's rivals: the prototypes (normalized sums of every stored text) of the other answers
stored twice or more, nearest the query first. ``own`` is A's prototype's cosine to the
query (A stored once: the candidate's similarity); ``R`` sums ``exp((rival - own) / T)``
over the rivals. The best candidate is served at its new score. Columns:

- ``veto``: the limit T -> 0: declined when one rival is nearer (the default before);
- ``all, T``: every rival counts; the score loses ``T * log(1 - R)``, declined at
  ``R >= 1``;
- ``8, T``: the same over the 8 nearest rivals (as many as a get's candidates);
- ``excess, 0.05`` (shipped): the 8 nearest, T = 0.05; the score's excess over the
  support floor multiplied by ``1 - R`` (declined at ``R >= 1``), so that every score
  stays between the floor and 1;
- ``posterior``: the excess multiplied by ``1 / (1 + R)``, the softmax's probability of
  A against its rivals (never declined).

No guards (the cache runs its guards on top: its figures are ``semcache eval --protocol
static``'s). Hit rate at precision >= 0.95 / >= 0.99 on the whole file and on its two
halves (every other intent), S stored texts per intent; a score at or below the floor
is not served (the cache's threshold cannot go below it and keep its meaning).

Run:  PYTHONPATH=benchmarks .venv/bin/python benchmarks/rival_variants.py \\
          ../shared/data/eval/clinc150.csv \\
          --embedding-cache /tmp/quality-emb/clinc150-minilm.npz
"""

from __future__ import annotations

import math

import numpy as np
from favoured_variants import RULES, _headlines, cluster_sets, heads, static_vectors

from semcache._agreement import SUPPORT_FLOOR

#: (column, rivals counted (0: all), temperature (0: the veto), form)
COLUMNS = (
    ("veto", 0, 0.0, "add"),
    ("all, 0.05", 0, 0.05, "add"),
    ("all, 0.1", 0, 0.1, "add"),
    ("8, 0.03", 8, 0.03, "add"),
    ("8, 0.05", 8, 0.05, "add"),
    ("8, 0.07", 8, 0.07, "add"),
    ("8, 0.1", 8, 0.1, "add"),
    ("excess, 0.05 (shipped)", 8, 0.05, "excess"),
    ("posterior", 8, 0.05, "posterior"),
)


def _moved(x: float, own: float, rivals: np.ndarray, count: int, t: float, form: str) -> float:
    """``x``, the candidate's score, moved by its answer's rivals (-1: declined)."""
    if count:
        rivals = np.sort(rivals)[-count:]
    if t == 0.0:
        return -1.0 if (rivals > own).any() else x
    mass = float(np.exp((rivals - own) / t).sum())
    if form == "posterior":
        return SUPPORT_FLOOR + (x - SUPPORT_FLOOR) / (1.0 + mass) if x > SUPPORT_FLOOR else x
    if mass >= 1.0:
        return -1.0
    if form == "excess":
        return SUPPORT_FLOOR + (x - SUPPORT_FLOOR) * (1.0 - mass) if x > SUPPORT_FLOOR else x
    return x + t * math.log1p(-mass)


def main() -> None:
    for name, clusters, per, embed in cluster_sets(__doc__, [c[0] for c in COLUMNS]):
        st = static_vectors(clusters, per, embed)
        vs, asked, cosine = st.vs, st.asked, st.cosine
        labels, repeated = st.labels, st.counts >= 2
        queries = asked
        index = {str(label): i for i, label in enumerate(labels)}
        score = np.full((len(COLUMNS), len(queries)), -np.inf)
        right = np.zeros((len(COLUMNS), len(queries)), dtype=bool)
        for q, near, keys, s in heads(st):
            base = RULES["lead"](s, keys, (vs[near] @ vs[near].T).tolist())
            for c, (_, count, t, form) in enumerate(COLUMNS):
                out = []
                for x, key, sim in zip(base, keys, s, strict=True):
                    a = index[key]
                    own = float(cosine[q, a]) if repeated[a] else sim
                    others = repeated.copy()
                    others[a] = False
                    moved = _moved(x, own, cosine[q, others], count, t, form) if x > -1 else x
                    out.append(moved)
                best = int(np.argmax(out))
                if out[best] > SUPPORT_FLOOR:
                    score[c, q], right[c, q] = out[best], keys[best] == asked[q]
        cells = [_headlines(score[c], right[c], st.in_scope) for c in range(len(COLUMNS))]
        print(f"| {name} | {per} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
