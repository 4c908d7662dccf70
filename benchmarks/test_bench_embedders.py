"""The default embedder (OnnxEmbedder, int8 on onnxruntime) beside the torch model
(SentenceTransformerEmbedder), side by side in one run: one query embedded, a batch, and a
new paraphrase answered end to end by a SemanticCache (exact miss, embed, index search,
hit), each on 1 and 2 threads.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python -m pytest benchmarks/test_bench_embedders.py \
          --benchmark-columns=min,median,mean,ops --benchmark-sort=name -p no:cacheprovider

Percentiles (p50/p99) of the end-to-end get: ``benchmarks/embedders_report.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from semcache import SemanticCache
from semcache._demo_data import SESSION
from semcache.embedders import Embedder, OnnxEmbedder, SentenceTransformerEmbedder

QUESTIONS = [q for q, _ in SESSION]
PARAPHRASES = [
    "How can I change my password if I forgot it?",
    "What's the capital city of Australia?",
    "Best way to reverse a list in Python?",
    "How do I get a refund for my order?",
    "What time does customer support open?",
    "Difference between inner join and left join?",
]


def make(kind: str, threads: int) -> Embedder:
    if kind == "onnx":
        emb: Embedder = OnnxEmbedder(threads=threads)
        emb.load()  # type: ignore[attr-defined]
    else:
        emb = SentenceTransformerEmbedder(num_threads=threads)
        emb.load()  # type: ignore[attr-defined]
    return emb


CASES = [("onnx", 1), ("onnx", 2), ("torch", 1), ("torch", 2)]


@pytest.fixture(scope="module", params=CASES, ids=[f"{k}-{t}t" for k, t in CASES])
def embedder(request: pytest.FixtureRequest) -> Embedder:
    kind, threads = request.param
    emb = make(kind, threads)
    if kind == "torch":
        import torch

        torch.set_num_threads(threads)  # process-wide: set again for this case
    return emb


def test_embed_one_query(benchmark, embedder: Embedder) -> None:  # type: ignore[no-untyped-def]
    texts = itertools.cycle(QUESTIONS)
    benchmark(lambda: embedder.embed([next(texts)]))


def test_embed_batch_64(benchmark, embedder: Embedder) -> None:  # type: ignore[no-untyped-def]
    batch = (QUESTIONS * 2)[:64]
    benchmark.pedantic(embedder.embed, args=(batch,), rounds=10, warmup_rounds=1)


@pytest.fixture
def cache(embedder: Embedder, tmp_path: Path) -> Iterator[SemanticCache]:
    with SemanticCache(str(tmp_path / "bench.db"), embedder) as c:
        c.put_many(QUESTIONS, [f"answer {i}" for i in range(len(QUESTIONS))])
        yield c


def test_get_new_paraphrase_end_to_end(benchmark, cache: SemanticCache) -> None:  # type: ignore[no-untyped-def]
    """Every get asks a text never seen before (a numbered variant of a paraphrase: the
    cache keeps the vectors of recent misses, so a repeated text would skip the
    embedder): an exact miss, then embed + search (+ the hit's read)."""
    counter = itertools.count()
    texts = itertools.cycle(PARAPHRASES)

    def ask() -> object:
        return cache.get(f"{next(texts)} (#{next(counter)})")

    benchmark(ask)
