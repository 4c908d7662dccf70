"""Run ``benchmarks/test_bench_cache.py`` against two source trees, interleaved, and
print each benchmark's median per tree and their ratio (median of the rounds' medians).

    PYTHONPATH= python benchmarks/compare_trees.py OLD_TREE NEW_TREE --rounds 6

Each tree must have its native kernel built in place (``setup.py build_ext --inplace``).
Times are CPU time of the benchmarking process (``time.process_time``), so that
other processes on a loaded machine do not blur the comparison. Rounds alternate
old/new (new/old on odd rounds) so that what load remains falls on both alike; the
benchmark file used is NEW_TREE's, run with each tree on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def _run(tree: Path, bench: Path, out: Path) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(bench),
            "-q",
            "-p",
            "no:cacheprovider",
            f"--rootdir={tree}",
            f"--benchmark-json={out}",
            # CPU time of the benchmark process: other processes' load on a shared
            # machine does not count (it would blur a few percent into noise).
            "--benchmark-timer=time.process_time",
        ],
        check=True,
        env=env,
        cwd=tree,
        stdout=subprocess.DEVNULL,
    )
    data = json.loads(out.read_text())
    return {b["name"]: b["stats"]["median"] for b in data["benchmarks"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    bench = args.new / "benchmarks" / "test_bench_cache.py"
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            for which in order:
                tree = args.old if which == "old" else args.new
                runs[which].append(_run(tree.resolve(), bench, Path(tmp) / f"{which}{r}.json"))
    names = sorted(runs["old"][0])
    print(f"{'benchmark':42} {'old us':>10} {'new us':>10} {'new/old':>8}")
    for name in names:
        old = statistics.median(run[name] for run in runs["old"]) * 1e6
        new = statistics.median(run[name] for run in runs["new"]) * 1e6
        print(f"{name:42} {old:10.2f} {new:10.2f} {new / old:8.3f}")


if __name__ == "__main__":
    main()
