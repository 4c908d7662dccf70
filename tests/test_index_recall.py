"""Recall of the graph backends against the exact flat oracle, on clustered data that
looks like sentence embeddings (thousands of topics, tight paraphrase neighbourhoods),
with fixed seeds and the default graph settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from semcache._index import FlatIndex, make_index

N = 100_000
DIM = 128
CENTERS = 2_000
QUERIES = 1_000


def clustered(n: int, dim: int, centers: int, seed: int) -> np.ndarray:
    """Unit vectors around ``centers`` random topics (spread like MiniLM neighbourhoods)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, dim)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    x = c[rng.integers(0, centers, n)]
    x += rng.standard_normal((n, dim)).astype(np.float32) * np.float32(0.35 / np.sqrt(dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def near_duplicates(x: np.ndarray, m: int, seed: int) -> np.ndarray:
    """Paraphrase-like queries: a stored vector plus a little noise."""
    rng = np.random.default_rng(seed)
    q = x[rng.integers(0, x.shape[0], m)]
    q = q + rng.standard_normal(q.shape).astype(np.float32) * np.float32(0.15 / np.sqrt(x.shape[1]))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = clustered(N, DIM, CENTERS, seed=7)
    q = near_duplicates(x, QUERIES, seed=8)
    oracle = FlatIndex(DIM, capacity=N)
    oracle.add(np.arange(N), x)
    truth, _ = oracle.search_batch(q, 1)
    oracle.close()
    return x, q, truth[:, 0]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "options", "dtype"),
    # faiss float32 HNSW runs the same graph code as its fp16 variant (only the vector
    # storage differs), so the fp16 case covers it at a third of the suite's time.
    [("hnswlib", {}, np.float32), ("faiss", {"kind": "hnsw"}, np.float16)],
    ids=["hnswlib", "faiss-hnsw-f16"],
)
def test_recall_at_1_near_duplicates_100k(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
    backend: str,
    options: dict[str, Any],
    dtype: Any,
) -> None:
    x, q, truth = data
    index = make_index(backend, DIM, dtype, options)
    index.add(np.arange(N), x)
    got, _ = index.search_batch(q, 1)
    recall = float(np.mean(got[:, 0] == truth))
    index.close()
    assert recall >= 0.99, f"{backend} recall@1 = {recall:.4f}"


@pytest.mark.parametrize("backend", ["hnswlib", "faiss"])
def test_recall_with_tombstones_small(backend: str) -> None:
    """Filtered graph search still finds the best live neighbour after deletions."""
    x = clustered(5_000, 64, 200, seed=3)
    q = near_duplicates(x, 200, seed=4)
    options = {"kind": "hnsw"} if backend == "faiss" else {}
    index = make_index(backend, 64, np.float32, options)
    index.add(np.arange(5_000), x)
    dead = np.arange(0, 5_000, 4)
    index.remove(dead)
    oracle = FlatIndex(64)
    oracle.add(np.arange(5_000), x)
    oracle.remove(dead)
    truth, _ = oracle.search_batch(q, 1)
    got, _ = index.search_batch(q, 1)
    assert not np.isin(got, dead).any()
    assert float(np.mean(got[:, 0] == truth[:, 0])) >= 0.98
