"""A guarded rule against the cosine threshold at equal hit rate, from the JSON of
``semcache eval FILE --sweep --guards ... --json OUT`` on a pair file (docs/quality.md,
"Guards on by default" and "Negation, in scope"): for each point of a family at the
thresholds given, its hit rate and precision, and the precision of the cosine curve
interpolated at that hit rate (the cosine threshold serving as many right answers).
A guard earns its place where its precision is higher.

Run:  .venv/bin/python benchmarks/equal_hit_rate.py OUT.json [--family default] \\
          [--threshold 0.85]
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", help="semcache eval --json output of a pair file")
    parser.add_argument("--family", default="default", help="a curve of the JSON")
    parser.add_argument("--threshold", type=float, nargs="+", default=[0.85])
    args = parser.parse_args()
    with open(args.json, encoding="utf-8") as fh:
        curves = json.load(fh)["curves"]
    cosine = curves["cosine"]
    hit = np.array([p["hit_rate"] for p in cosine])
    precision = np.array([p["precision"] for p in cosine])
    order = np.argsort(hit, kind="stable")
    print(f"| {args.family} at | hit rate | precision | cosine's precision at that hit rate |")
    print("|---|---|---|---|")
    for t in args.threshold:
        point = next((p for p in curves[args.family] if abs(p["min_similarity"] - t) < 1e-9), None)
        if point is None:
            print(f"| {t} | not on the curve | | |")
            continue
        at = float(np.interp(point["hit_rate"], hit[order], precision[order]))
        print(f"| {t} | {point['hit_rate']:.4f} | {point['precision']:.4f} | {at:.4f} |")


if __name__ == "__main__":
    main()
