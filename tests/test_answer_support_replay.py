"""The static replay's ``default`` family reads the answer support score from its record
(:meth:`StaticResult.supported`); these tests check that record against the cache itself:
for each threshold, ``SemanticCache(answer_support=True)`` serves exactly the hits the
record says it serves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from semcache import SemanticCache
from semcache.quality._clusters import ClusterSet, StaticResult, static_replay
from semcache.quality._replay import Rule

DIM = 24


def _clustered(seed: int) -> tuple[ClusterSet, dict[str, npt.NDArray[np.float32]]]:
    """Eight clusters whose members scatter around a centre (some pairs of centres
    close, so clusters collide), 4 stored and 5 asked each, and 6 out-of-scope rows."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, DIM))
    centres[1::2] = centres[0::2] + rng.normal(scale=0.6, size=(4, DIM))  # near pairs
    texts: list[str] = []
    clusters: list[str] = []
    splits: list[str] = []
    vectors: dict[str, npt.NDArray[np.float32]] = {}
    for c in range(8):
        for k in range(9):
            text = f"intent {c} phrasing {k}"
            v = centres[c] + rng.normal(scale=0.55, size=DIM)
            texts.append(text)
            clusters.append(f"c{c}")
            splits.append("train" if k < 4 else "test")
            vectors[text] = (v / np.linalg.norm(v)).astype(np.float32)
    for k in range(6):
        text = f"something else {k}"
        v = centres[k % 8] + rng.normal(scale=1.2, size=DIM)
        texts.append(text)
        clusters.append(f"oos:{k}")
        splits.append("oos_test")
        vectors[text] = (v / np.linalg.norm(v)).astype(np.float32)
    return ClusterSet(texts, clusters, splits), vectors


def _embed(vectors: dict[str, npt.NDArray[np.float32]]):  # type: ignore[no-untyped-def]
    def embed(batch: Sequence[str]) -> npt.NDArray[np.float32]:
        return np.stack([vectors[t] for t in batch])

    return embed


def _served_by_the_cache(
    clusters: ClusterSet, vectors: dict[str, npt.NDArray[np.float32]], threshold: float
) -> list[tuple[bool, bool]]:
    """(served a semantic hit, was it right) per asked query, from the cache itself."""
    stored = clusters.static_sample(10)
    cache = SemanticCache(
        similarity_threshold=threshold, index_backend="flat", guards=None, answer_support=True
    )
    try:
        texts = [clusters.texts[i] for i in stored]
        cache.put_many(
            texts,
            [clusters.clusters[i] for i in stored],
            embeddings=np.stack([vectors[t] for t in texts]),
        )
        out = []
        for i in clusters.static_queries():
            text = clusters.texts[i]
            hit = cache.get(text, embedding=vectors[text])
            semantic = hit is not None and hit.layer == "semantic"
            out.append(
                (semantic, semantic and hit is not None and hit.response == clusters.clusters[i])
            )
        return out
    finally:
        cache.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_support_record_serves_what_the_cache_serves(seed: int) -> None:
    clusters, vectors = _clustered(seed)
    record = static_replay(clusters, _embed(vectors))
    view = record.supported()
    changed = 0
    for threshold in (0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9):
        served, right = view._served(Rule(threshold))
        plain, _ = record._served(Rule(threshold))
        changed += int((served != plain).sum())
        cache = _served_by_the_cache(clusters, vectors, threshold)
        assert [s for s, _ in cache] == served.tolist(), threshold
        assert [r for _, r in cache] == right.tolist(), threshold
    assert changed > 0  # the support score decided some of these gets


def test_without_repeated_answers_the_support_record_is_the_plain_record() -> None:
    clusters, vectors = _clustered(3)
    one_each = ClusterSet(
        clusters.texts,
        [
            c if s != "train" else f"{c}/{i}"
            for i, (c, s) in enumerate(zip(clusters.clusters, clusters.splits, strict=True))
        ],
        clusters.splits,
    )
    record = static_replay(one_each, _embed(vectors))
    view = record.supported()
    assert np.array_equal(view.similarity, record.similarity)
    assert np.array_equal(view.correct, record.correct)


def test_a_record_without_answers_cannot_be_supported() -> None:
    clusters, vectors = _clustered(0)
    record = static_replay(clusters, _embed(vectors))
    bare = StaticResult(
        floor=record.floor,
        exact=record.exact,
        should_hit=record.should_hit,
        similarity=record.similarity,
        correct=record.correct,
        score=record.score,
        guards=record.guards,
        truncated=record.truncated,
        stored=record.stored,
    )
    with pytest.raises(ValueError, match="keeps no answers"):
        bare.supported()
