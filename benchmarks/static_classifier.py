"""A classifier of the answers learnt from the stored prompts, against the prototypes'
softmax, on the static replay of a cluster set, its two halves and several stored
texts per answer (docs/quality.md, "What the static aim at 0.95 would need"): research
only, nothing of it in the cache.

Per set (``all``: the whole file; halves A and B as ``budget_streams.py`` makes them) and S
(stored texts per cluster), the hit rate at precision >= 0.95 / >= 0.99 of the
in-scope queries, no guards, each rule's confidence swept as the headline sweeps the
cache's:

- ``cosine``: the nearest stored text's answer at its cosine;
- ``prototypes T``: the nearest prototype's answer at its probability in a softmax over
  every prototype at temperature T;
- ``regression s / L2``: the answer of highest probability in a multinomial logistic
  regression of the answer on the stored texts' vectors (``static_ceiling.py``'s
  ``_softmax_regression``), at that probability;
- ``default``: the cache's own rule (``semcache eval``'s ``default`` family: the
  support score, the shipped guards), from the same replay;
- ``among the candidates``: the first regression's answer of highest probability among
  the answers of the query's candidates as the cache finds them (the 8 nearest stored
  texts at or above the support floor, 0.5, in ``semcache eval``'s static replay): an
  answer the cache can serve;
- ``+ the shipped guards``: the same, served only where one of its candidates with that
  answer passes the shipped guards after they yield to the candidates' evidence, as
  in the cache (``StaticResult.supported``'s ``yielding``);
- ``widened, + guards``: the first regression's answer wherever it is (served from that
  answer's stored texts: a lookup beyond the 8 nearest), with the guards yielding as
  above where the answer is among the candidates, and plainly against the answer's
  nearest stored text (a number or a negation that differs blocks it) where it is not.

Run:  PYTHONPATH=.:benchmarks .venv/bin/python benchmarks/static_classifier.py \\
          ../shared/data/eval/clinc150.csv \\
          --embedding-cache /tmp/quality-emb/clinc150-minilm.npz
"""

from __future__ import annotations

from typing import Any

import numpy as np
from favoured_variants import Static, _headlines, cluster_sets, static_vectors
from static_ceiling import _softmax, _softmax_regression

from semcache._agreement import SUPPORT_FLOOR, SUPPORT_K
from semcache._guards import negation_differs, numbers_differ
from semcache.quality._clusters import ClusterSet, shipped_defaults, static_replay

#: The regressions' (scale, L2).
SETTINGS = ((10.0, 1e-3), (20.0, 1e-2))


def _in_the_cache(
    clusters: ClusterSet, per: int, embed: Any, st: Static, p: np.ndarray
) -> list[str]:
    """The cells ``default``, ``among the candidates``, ``+ the shipped guards`` and
    ``widened, + guards`` for the answers' probabilities ``p`` (queries x
    ``st.labels``)."""
    _, guard = shipped_defaults()
    assert guard is not None
    guards = {"default": guard}
    raw = static_replay(clusters, embed, per_cluster=per, floor=SUPPORT_FLOOR, guards=guards)
    assert raw.answers is not None
    assert raw.head_dots is not None
    passed = raw._yielded(guards, SUPPORT_K, SUPPORT_FLOOR, raw.head_dots)["default"]
    supported = raw.supported(yielding=guards)
    points = [supported.headline(target, ("default",)) for target in (0.95, 0.99)]
    default = " / ".join("never" if x is None else f"{x.hit_rate:.3f}" for x in points)
    column = {label: i for i, label in enumerate(st.labels)}
    n = len(st.asked)
    among, guarded, wide = np.full(n, -np.inf), np.full(n, -np.inf), np.full(n, -np.inf)
    chosen = np.full(n, "", dtype=object)
    stored, asked = clusters.static_sample(per), clusters.static_queries()
    which = np.asarray(st.which)
    for q, row in enumerate(raw.answers):
        head = [j for j in range(min(SUPPORT_K, len(row))) if raw.similarity[q, j] >= SUPPORT_FLOOR]
        top = int(p[q].argmax())
        if any(row[j] == st.labels[top] for j in head):
            ok = any(passed[q, j] for j in head if row[j] == st.labels[top])
        else:
            own = np.flatnonzero(which == top)
            near = clusters.texts[stored[own[int(np.argmax(st.sims[q, own]))]]]
            text = clusters.texts[asked[q]]
            ok = not (numbers_differ(text, near) or negation_differs(text, near))
        if ok:
            wide[q] = p[q, top]
        if not head:
            continue
        best = max({row[j] for j in head}, key=lambda a: p[q, column[a]])
        chosen[q], among[q] = best, p[q, column[best]]
        if any(passed[q, j] for j in head if row[j] == best):
            guarded[q] = among[q]
    right = chosen == np.asarray(st.asked)
    free_right = st.labels[p.argmax(axis=1)] == np.asarray(st.asked)
    return [
        default,
        _headlines(among, right, st.in_scope),
        _headlines(guarded, right, st.in_scope),
        _headlines(wide, free_right, st.in_scope),
    ]


def main() -> None:
    columns = ["cosine", "prototypes 0.05", "prototypes 0.07"]
    columns += [f"regression {s:g} / {l2:g}" for s, l2 in SETTINGS]
    columns += ["default", "among the candidates", "+ the shipped guards", "widened, + guards"]
    for name, clusters, per, embed in cluster_sets(__doc__, columns):
        st = static_vectors(clusters, per, embed)
        asked = np.asarray(st.asked)
        nearest = np.asarray(st.answers)[st.sims.argmax(axis=1)]
        cells = [_headlines(st.sims.max(axis=1), nearest == asked, st.in_scope)]
        for t in (0.05, 0.07):
            p = _softmax(st.cosine, t)
            cells.append(
                _headlines(p.max(axis=1), st.labels[p.argmax(axis=1)] == asked, st.in_scope)
            )
        probabilities = []
        for scale, l2 in SETTINGS:
            w, b = _softmax_regression(st.vs, np.asarray(st.which), len(st.labels), scale, l2)
            p = _softmax(st.vq * scale @ w + b, 1.0)
            probabilities.append(p)
            cells.append(
                _headlines(p.max(axis=1), st.labels[p.argmax(axis=1)] == asked, st.in_scope)
            )
        cells += _in_the_cache(clusters, per, embed, st, probabilities[0])
        print(f"| {name} | {per} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
