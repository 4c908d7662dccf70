"""The default embedder beside the torch model, measured side by side in one run, as a
markdown table for docs/embedders.md: cosine agreement on a labelled-pairs file's texts,
one query's embedding and a new paraphrase answered end to end (p50/p99 over many gets,
on 1 and 2 threads), batch throughput, cold start (a fresh process: import, load, first
vector) and install size (the files of each extra's distributions and their
dependencies, as installed in this environment).

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/embedders_report.py \
          ../shared/data/eval/qqp.csv --texts 2000 --gets 400
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata as md
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from semcache import SemanticCache
from semcache._demo_data import SESSION
from semcache.embedders import Embedder, OnnxEmbedder, SentenceTransformerEmbedder

COLD = {
    "onnx": "from semcache.embedders import OnnxEmbedder as E; E(threads=1).embed(['x'])",
    "torch": "from semcache.embedders import SentenceTransformerEmbedder as E; "
    "E(num_threads=1).embed(['x'])",
}
EXTRA = {"onnx": "onnx", "torch": "st"}


def texts_of(path: Path, n: int) -> list[str]:
    out: list[str] = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            out += [row["text_a"], row["text_b"]]
            if len(out) >= n:
                break
    return out[:n]


def make(kind: str, threads: int) -> Embedder:
    if kind == "onnx":
        e: Embedder = OnnxEmbedder(threads=threads)
    else:
        import torch

        torch.set_num_threads(threads)
        e = SentenceTransformerEmbedder(num_threads=threads)
    e.embed(["warm up"])
    return e


def pct(samples: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(samples), q)) * 1e3


def spread(samples: list[float]) -> str:
    return f"{pct(samples, 0.5):.2f} / {pct(samples, 0.99):.2f}"


def cold_start(kind: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", COLD[kind]], check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _requires(dist: str, extra: str | None) -> list[str]:
    names = []
    for req in md.requires(dist) or []:
        name, _, marker = req.partition(";")
        if extra is None and "extra ==" in marker:
            continue
        if extra is not None and f'extra == "{extra}"' not in marker:
            continue
        names.append(re.split(r"[\[<>=!~ ]", name.strip(), maxsplit=1)[0])
    return names


def install_bytes(extra: str) -> int:
    """Bytes on disk of the extra's distributions and all they depend on (the core's
    numpy and apsw excluded: every install has them)."""
    core = set(_requires("semcache-engine", None))
    seen: set[str] = set()
    todo = [n for n in _requires("semcache-engine", extra) if n != "semcache-engine"]
    total = 0
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen or name in core:
            continue
        seen.add(name)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        for f in dist.files or []:
            p = Path(str(dist.locate_file(f)))
            if p.is_file():
                total += p.stat().st_size
        todo += _requires(name, None)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", type=Path)
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--gets", type=int, default=400)
    ap.add_argument("--cold-runs", type=int, default=3)
    args = ap.parse_args()
    texts = texts_of(args.pairs, args.texts)
    print(f"load average at start: {os.getloadavg()}", file=sys.stderr)

    rows: dict[str, dict[str, str]] = {"onnx": {}, "torch": {}}
    vectors = {}
    for kind in ("onnx", "torch"):
        e = make(kind, 1)
        t = time.perf_counter()
        vectors[kind] = e.embed(texts)
        rows[kind]["batch texts/s (1 thread)"] = f"{len(texts) / (time.perf_counter() - t):.0f}"
    cos = (vectors["onnx"] * vectors["torch"]).sum(axis=1)
    print(
        f"cosine(onnx, torch) over {len(texts)} texts: min {cos.min():.5f}, "
        f"p01 {np.quantile(cos, 0.01):.5f}, median {np.median(cos):.5f}"
    )

    questions = [q for q, _ in SESSION]
    gets = texts[: args.gets]
    for threads in (1, 2):
        for kind in ("onnx", "torch"):
            e = make(kind, threads)
            one = []
            for text in gets:
                t = time.perf_counter()
                e.embed([text])
                one.append(time.perf_counter() - t)
            with (
                tempfile.TemporaryDirectory() as d,
                SemanticCache(str(Path(d) / "c.db"), e) as cache,
            ):
                cache.put_many(questions, [f"answer {i}" for i in range(len(questions))])
                end = []
                for text in gets:  # never put: an exact miss, then embed + search
                    t = time.perf_counter()
                    cache.get(text)
                    end.append(time.perf_counter() - t)
            rows[kind][f"embed one, {threads}t p50/p99 ms"] = spread(one)
            rows[kind][f"get, new text, {threads}t p50/p99 ms"] = spread(end)
    for kind in ("onnx", "torch"):
        cold = cold_start(kind, args.cold_runs)
        rows[kind]["cold start s (process: import, load, 1st vector)"] = f"{cold:.2f}"
        size = install_bytes(EXTRA[kind]) / 1e6
        rows[kind]["install MB (extra + deps, beyond numpy/apsw)"] = f"{size:.0f}"
    print(f"load average at end: {os.getloadavg()}", file=sys.stderr)
    print("\n| | onnx (int8, default) | torch (sentence-transformers) |\n|---|---|---|")
    for key in rows["onnx"]:
        print(f"| {key} | {rows['onnx'][key]} | {rows['torch'][key]} |")


if __name__ == "__main__":
    main()
