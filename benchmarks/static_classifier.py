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
  ``_softmax_regression``), at that probability.

Run:  PYTHONPATH=.:benchmarks .venv/bin/python benchmarks/static_classifier.py \\
          ../shared/data/eval/clinc150.csv \\
          --embedding-cache /tmp/quality-emb/clinc150-minilm.npz
"""

from __future__ import annotations

import numpy as np
from favoured_variants import _headlines, cluster_sets, static_vectors
from static_ceiling import _softmax, _softmax_regression

#: The regressions' (scale, L2).
SETTINGS = ((10.0, 1e-3), (20.0, 1e-2))


def main() -> None:
    columns = ["cosine", "prototypes 0.05", "prototypes 0.07"]
    columns += [f"regression {s:g} / {l2:g}" for s, l2 in SETTINGS]
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
        for scale, l2 in SETTINGS:
            w, b = _softmax_regression(st.vs, np.asarray(st.which), len(st.labels), scale, l2)
            p = _softmax(st.vq * scale @ w + b, 1.0)
            cells.append(
                _headlines(p.max(axis=1), st.labels[p.argmax(axis=1)] == asked, st.in_scope)
            )
        print(f"| {name} | {per} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
