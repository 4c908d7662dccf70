"""How the answer model's score joins a candidate's, on the static replay of a cluster
set, its two halves and several stored texts per answer (docs/quality.md, "The answer
model's score alone (research, not shipped)"): research only.

Where no candidate is served by its support score, the cache raises each candidate
whose answer the model knows to ``combined(score, p)`` where that is higher, and tries
the model's most likely answer from beyond the candidates at ``combined(similarity,
p)`` (``semcache._get._modelled``; the replay's record does the same). Per variant of
``combined``, the ``default`` family's hit rate at precision >= 0.95 / >= 0.99 (its
threshold swept, as ``semcache eval`` sweeps it), and its hit rate, precision and false
hits per get at the shipped threshold (0.85):

- ``mean`` (shipped): the mean of the score and the model's score ``0.5 + 0.5 p``, so
  that a query far from every stored prompt of the answer is not served on the model's
  word alone;
- ``model``: the model's score alone, wherever the query is;
- ``model, near``: the model's score alone where the score (the candidate's support
  score; from beyond, the answer's nearest stored prompt's similarity) is at or above
  the support floor, none elsewhere.

Run:  PYTHONPATH=.:benchmarks .venv/bin/python benchmarks/model_score_variants.py \\
          ../shared/data/eval/clinc150.csv \\
          --embedding-cache /tmp/quality-emb/clinc150-minilm.npz
"""

from __future__ import annotations

from collections.abc import Callable

from favoured_variants import cluster_sets

from semcache import _answer_model, _get
from semcache._agreement import SUPPORT_FLOOR
from semcache.quality import _clusters
from semcache.quality._clusters import shipped_defaults, static_replay
from semcache.quality._replay import Rule


def _near(score: float, p: float) -> float:
    return _answer_model.model_score(p) if score >= SUPPORT_FLOOR else float("-inf")


VARIANTS: dict[str, Callable[[float, float], float]] = {
    "mean": _answer_model.combined,
    "model": lambda score, p: _answer_model.model_score(p),
    "model, near": _near,
}


def main() -> None:
    columns = [f"{name}: {what}" for name in VARIANTS for what in ("0.95 / 0.99", "at 0.85")]
    threshold, guard = shipped_defaults()
    assert guard is not None
    guards = {"default": guard}
    shipped = _clusters.combined
    for name, clusters, per, embed in cluster_sets(__doc__, columns):
        raw = static_replay(clusters, embed, per_cluster=per, floor=SUPPORT_FLOOR, guards=guards)
        cells = []
        for variant in VARIANTS.values():
            _clusters.combined = _get.combined = variant  # (the record's rule and the cache's)
            try:
                result = raw.supported(yielding=guards)
            finally:
                _clusters.combined = _get.combined = shipped
            points = [result.headline(target, ("default",)) for target in (0.95, 0.99)]
            cells.append(" / ".join("never" if x is None else f"{x.hit_rate:.3f}" for x in points))
            at = result.evaluate(Rule(threshold, None, ("default",)))
            cells.append(f"{at.hit_rate:.3f}, {at.precision:.4f}, {at.false_hits_per_get:.4f}")
        print(f"| {name} | {per} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
