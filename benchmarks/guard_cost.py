"""What the default guards' checks cost (docs/quality.md, "Guards on by default" and
"Negation, in scope"): per pair of texts, the numbers and negation checks with both
texts' token info cached and with neither cached, and ``text_info`` per uncached text.

Pairs are drawn from a cluster or pair file with ``numpy.random.default_rng(0)``; each
figure is the median over the pairs, best of ``--passes`` passes. Only names every
version since the guards came in has, so one checkout's copy of this script times
another's code (``PYTHONPATH=OTHER_CHECKOUT``).

Run:  PYTHONPATH=. .venv/bin/python benchmarks/guard_cost.py \\
          ../shared/data/eval/clinc150.csv [--pairs 2000] [--passes 5]
"""

from __future__ import annotations

import argparse
import csv
import time

import numpy as np

from semcache._guards import negation_differs, numbers_differ
from semcache._textinfo import text_info


def _texts(path: str) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "text" in rows[0]:
        return [r["text"] for r in rows]
    return [t for r in rows for t in (r["text_a"], r["text_b"])]


def _median_us(pairs: list[tuple[str, str]], *, cached: bool, passes: int) -> float:
    best = float("inf")
    for _ in range(passes):
        times = []
        for a, b in pairs:
            if cached:
                text_info(a), text_info(b)
            else:
                text_info.cache_clear()
            start = time.perf_counter()
            numbers_differ(a, b) or negation_differs(a, b)
            times.append(time.perf_counter() - start)
        best = min(best, float(np.median(times)) * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="a cluster set (text,...) or a pair file (text_a,text_b)")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    texts = _texts(args.file)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(texts), size=(args.pairs, 2))
    pairs = [(texts[i], texts[j]) for i, j in picks]
    cached = _median_us(pairs, cached=True, passes=args.passes)
    uncached = _median_us(pairs, cached=False, passes=args.passes)
    best = float("inf")
    sample = [a for a, _ in pairs]
    for _ in range(args.passes):
        text_info.cache_clear()
        start = time.perf_counter()
        for text in sample:
            text_info(text)
        best = min(best, (time.perf_counter() - start) / len(sample) * 1e6)
    print(
        f"numbers + negation check, median per pair: {cached:.1f} us cached, "
        f"{uncached:.1f} us uncached; text_info per uncached text: {best:.1f} us"
    )


if __name__ == "__main__":
    main()
