"""The static replay's ``default`` family reads the answer support score from its record
(:meth:`StaticResult.supported`); these tests check that record against the cache itself:
for each threshold, ``SemanticCache(answer_support=True)`` serves exactly the hits the
record says it serves."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import pytest

from semcache import SemanticCache
from semcache._agreement import support_scores
from semcache.quality._clusters import ClusterSet, StaticResult, shipped_defaults, static_replay
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
    clusters: ClusterSet,
    vectors: dict[str, npt.NDArray[np.float32]],
    threshold: float,
    guards: Literal["default"] | None = None,
) -> list[tuple[bool, bool]]:
    """(served a semantic hit, was it right) per asked query, from the cache itself
    (``guards``: its own, as the constructor takes them)."""
    stored = clusters.static_sample(10)
    cache = SemanticCache(
        similarity_threshold=threshold, index_backend="flat", guards=guards, answer_support=True
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


@pytest.mark.parametrize("seed", [0, 1])
def test_guards_yield_in_the_record_as_in_the_cache(seed: int) -> None:
    """Every text holds numbers ("intent 3 phrasing 7"), so the shipped numbers guard
    rejects every semantic candidate and only the head's evidence lets one through
    (semcache/_guard_evidence.py): the record's ``yielding`` serves what the cache
    serves with its default guards."""
    clusters, vectors = _clustered(seed)
    guard = shipped_defaults()[1]
    assert guard is not None
    record = static_replay(clusters, _embed(vectors), guards={"default": guard})
    view = record.supported(yielding={"default": guard})
    held = record.supported()
    changed = 0
    stored = clusters.static_sample(10)
    for threshold in (0.6, 0.7, 0.8, 0.9):
        rule = Rule(threshold, None, ("default",))
        served, right = view._served(rule)
        changed += int((served != held._served(rule)[0]).sum())
        with SemanticCache(similarity_threshold=threshold, index_backend="flat") as cache:
            texts = [clusters.texts[i] for i in stored]
            cache.put_many(
                texts,
                [clusters.clusters[i] for i in stored],
                embeddings=np.stack([vectors[t] for t in texts]),
            )
            hits = [
                cache.get(clusters.texts[i], embedding=vectors[clusters.texts[i]])
                for i in clusters.static_queries()
            ]
        assert [h is not None for h in hits] == served.tolist(), threshold
        answers = [clusters.clusters[i] for i in clusters.static_queries()]
        got = [h is not None and h.response == a for h, a in zip(hits, answers, strict=True)]
        assert got == right.tolist(), threshold
    assert changed > 0  # the evidence decided some of these gets


def test_yielding_needs_a_recorded_guard_and_texts() -> None:
    clusters, vectors = _clustered(0)
    guard = shipped_defaults()[1]
    assert guard is not None
    record = static_replay(clusters, _embed(vectors), guards={"default": guard})
    with pytest.raises(ValueError, match="no guard 'numbers'"):
        record.supported(yielding={"numbers": guard})
    record.texts = None
    with pytest.raises(ValueError, match="no texts"):
        record.supported(yielding={"default": guard})


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


def _hand_record(
    near: Sequence[float], answers: Sequence[str], residual: Sequence[int], asked: str
) -> StaticResult:
    """One query (the unit vector e0) and its candidates, nearest first: candidate i
    at similarity ``near[i]`` with answer ``answers[i]``, its stored vector
    ``near[i] e0 + sqrt(1 - near[i]**2) e_residual[i]`` (candidates sharing a residual
    axis lie to one side of the query; on distinct axes they surround it)."""
    width = len(near)
    v = np.zeros((width, 8))
    for i, (s, axis) in enumerate(zip(near, residual, strict=True)):
        v[i, 0], v[i, axis] = s, np.sqrt(1.0 - s * s)
    dots = np.full((1, 8, 8), np.nan, dtype=np.float32)
    stored = v.astype(np.float32)
    dots[0, :width, :width] = stored @ stored.T
    record = StaticResult(
        floor=0.5,
        exact=np.zeros(1, dtype=bool),
        should_hit=np.ones(1, dtype=bool),
        similarity=np.array([near], dtype=np.float64),
        correct=np.array([[a == asked for a in answers]]),
        score=np.full((1, width), np.nan),
        guards={"not y": np.array([[a != "y" for a in answers]])},
        truncated=0,
        stored=width,
    )
    record.answers = [list(answers)]
    record.head_dots = dots
    return record


def test_a_cluster_around_the_query_outranks_a_nearer_prompt_alone() -> None:
    # y's prompts surround the query: their prototype (~0.937) is nearer than x's
    # prompt (0.90), so x's candidate is declined; y's best is served at its support
    # score raised by y's lead (0.937 - 0.90), and not x once a guard rejects y's
    record = _hand_record([0.90, 0.89, 0.88], ["x", "y", "y"], [1, 2, 3], asked="y")
    view = record.supported()
    support = support_scores([0.90, 0.89, 0.88], ["x", "y", "y"])
    lead = math.exp(-2 * (0.89 + 0.88) / math.sqrt(2 + 2 * 0.89 * 0.88) + 2 * 0.90)
    raised = [1 - (1 - support[1]) * lead, 1 - (1 - support[2]) * lead]
    assert view.similarity[0].tolist() == pytest.approx([*raised, -1.0], abs=1e-6)
    assert raised[0] > support[1]
    assert view.correct[0].tolist() == [True, True, False]
    served, right = view._served(Rule(0.9))
    assert served[0]
    assert right[0]
    assert support[0] >= 0.5  # (x's support score alone would serve it at 0.5)
    served, _ = view._served(Rule(0.5, None, ("not y",)))
    assert not served[0]


def test_a_prompt_alone_outranks_a_cluster_to_one_side_of_the_query() -> None:
    # y's prompts lie to one side of the query: their prototype (~0.845) is farther
    # than x's prompt (0.90), so y's candidates are declined and x keeps its support
    # score (pulled down by y's cluster)
    record = _hand_record([0.90, 0.85, 0.84], ["x", "y", "y"], [1, 2, 2], asked="x")
    view = record.supported()
    support = support_scores([0.90, 0.85, 0.84], ["x", "y", "y"])
    assert view.similarity[0].tolist() == [support[0], -1.0, -1.0]
    served, _ = view._served(Rule(0.9))
    assert not served[0]  # (by support scores alone y's best, ~0.92, would be served)
    served, right = view._served(Rule(0.6))
    assert served[0]
    assert right[0]


def test_a_record_without_answers_cannot_be_supported() -> None:
    clusters, vectors = _clustered(0)
    record = static_replay(clusters, _embed(vectors))
    bare = dataclasses.replace(record)  # its fields; not what static_replay adds after
    assert bare.answers is None
    with pytest.raises(ValueError, match="keeps no answers"):
        bare.supported()
    bare.answers = record.answers
    with pytest.raises(ValueError, match="keeps no dot products"):
        bare.supported()
