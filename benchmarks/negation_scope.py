"""The negation guard in scope against the blanket rule it replaced, on a labelled pair
file (docs/quality.md, "Negation, in scope").

The pairs the blanket rule told apart (exactly one text negated) and the scoped rule
(``semcache._guards.negation_differs``: what is negated is something the other text
says; "without" and a negation with nothing after it count whatever the other says)
lets through, at or above each cosine threshold, by label; and the same for the first
build of the scoped rule, which read "without" like any other negation. A label of 1
means the pair asks the same thing: letting it through is right.

Run:  .venv/bin/python benchmarks/negation_scope.py ../shared/data/eval/qqp.csv \\
          --embedding-cache /tmp/quality-emb/qqp-minilm.npz
"""

from __future__ import annotations

import argparse
import csv
import re

import numpy as np

from semcache._guards import negation_differs
from semcache._textinfo import text_info
from semcache.embedders import default_embedder
from semcache.quality._embedding_cache import EmbeddingFile

_WITHOUT = re.compile(r"\bwithout\b", re.IGNORECASE)


def first_build(a: str, b: str) -> bool:
    """The scoped rule as first built: "without" scoped like any negation (as "not"
    is: the same texts with "without" read as "not")."""
    return negation_differs(_WITHOUT.sub("not", a), _WITHOUT.sub("not", b))


def blanket(a: str, b: str) -> bool:
    """The rule before: exactly one text negated."""
    return (text_info(a).negations > 0) != (text_info(b).negations > 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", help="PAIRS.csv (text_a,text_b,label)")
    parser.add_argument("--embedding-cache", required=True)
    parser.add_argument("--threshold", type=float, nargs="+", default=[0.8, 0.85, 0.9])
    args = parser.parse_args()
    with open(args.pairs, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if blanket(r["text_a"], r["text_b"])]
    vectors = EmbeddingFile(default_embedder(), args.embedding_cache)
    va = vectors.embed([r["text_a"] for r in rows])
    vb = vectors.embed([r["text_b"] for r in rows])
    cos = np.einsum("ij,ij->i", va, vb)
    label = np.array([r["label"] == "1" for r in rows])
    print(f"{len(rows)} pairs with exactly one text negated")
    print("| rule | threshold | let through: right / wrong | share right |")
    print("|---|---|---|---|")
    for name, rule in (("scoped (shipped)", negation_differs), ("first build", first_build)):
        passed = np.array([not rule(r["text_a"], r["text_b"]) for r in rows])
        for t in args.threshold:
            sel = passed & (cos >= t)
            right, wrong = int((sel & label).sum()), int((sel & ~label).sum())
            share = f"{right / (right + wrong):.2f}" if right + wrong else "-"
            print(f"| {name} | {t} | {right} / {wrong} | {share} |")
    vectors.save()


if __name__ == "__main__":
    main()
