"""The stream replay's ``default`` through a real cache (``_cache_replay``), on a
synthetic cluster set (not CLINC150): twelve intents in pairs of near neighbours, so
that a served answer can be wrong, plus out-of-scope singletons; a deterministic fake
embedder (a table of seeded vectors by text). Real SQLite files in tmp_path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import semcache._budget_policy
import semcache._risk_model
from semcache import SemanticCache
from semcache._budget_policy import ErrorBudget
from semcache.quality._budget_replay import budget_stream_replay
from semcache.quality._cache_replay import cache_stream_replay
from semcache.quality._clusters import (
    ClusterSet,
    StreamPoint,
    StreamVectors,
    shipped_defaults,
)

DIM = 32
BUDGET = 0.05


def _word(i: int) -> str:
    """``i`` in letters (the shipped numbers guard would tell digits apart)."""
    out = ""
    while True:
        i, r = divmod(i, 26)
        out = chr(ord("a") + r) + out
        if i == 0:
            return out


def _unit(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _synthetic(per_cluster: int = 100, oos: int = 60) -> tuple[ClusterSet, dict[str, Any]]:
    """Twelve clusters: centres in pairs at cosine ~0.8 of each other, paraphrases at
    cosine 0.75-0.98 of their centre; ``oos`` singletons anywhere. Returns the set and
    its vectors by text."""
    rng = np.random.default_rng(7)
    centres = []
    for _ in range(6):
        a = _unit(rng.standard_normal(DIM))
        b = _unit(a + 0.75 * _unit(rng.standard_normal(DIM)))
        centres += [a, b]
    texts: list[str] = []
    clusters: list[str] = []
    vectors: dict[str, npt.NDArray[np.float32]] = {}
    for c, centre in enumerate(centres):
        for i in range(per_cluster):
            cos = rng.uniform(0.75, 0.98)
            noise = rng.standard_normal(DIM)
            noise -= (noise @ centre) * centre
            v = _unit(cos * centre + np.sqrt(1 - cos * cos) * _unit(noise))
            text = f"intent {_word(c)} asked way {_word(i)}"
            texts.append(text)
            clusters.append(f"intent-{c}")
            vectors[text] = v
    for i in range(oos):
        text = f"something else {_word(i)}"
        texts.append(text)
        clusters.append(f"oos:{i}")
        vectors[text] = _unit(rng.standard_normal(DIM))
    return ClusterSet(texts, clusters, ["train"] * len(texts)), vectors


def _embed(vectors: dict[str, Any]):  # type: ignore[no-untyped-def]
    def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return np.stack([vectors[t] for t in texts])

    return embed


@pytest.fixture(scope="module")
def stream() -> StreamVectors:
    clusters, vectors = _synthetic()
    return StreamVectors(clusters, _embed(vectors))


def test_the_replay_counts_llm_calls_and_errors_from_what_was_served(
    tmp_path: Path, stream: StreamVectors
) -> None:
    run = cache_stream_replay(stream, BUDGET, path=tmp_path / "c.db")
    p = run.point
    n = len(stream.texts)
    assert p.gets == n == len(run.served) == len(run.get_us) == len(run.call_us)
    # a get either served a stored answer or called the LLM (a miss or a verification)
    served = [k for k, s in enumerate(run.served) if s is not None]
    assert p.hits == len(served) > 0
    assert p.llm_calls == n - p.hits
    # the cache's own counts agree: its misses are the LLM calls (a verification is a
    # miss with reason "budget"), its hits the answers served
    stats = run.stats
    assert sum(stats["misses"].values()) == p.llm_calls
    assert sum(stats["hits"].values()) == p.hits
    assert p.exact_hits == stats["hits"]["exact"]
    # verifications: LLM calls made for a candidate that could have been served
    assert p.verifications == stats["budget"]["verifications"]
    assert 0 < p.verifications <= stats["misses"]["budget"]
    assert p.llm_calls - p.verifications > 0  # plain misses
    # the error rate is computed from the answers served, against each text's cluster
    wrong = sum(run.served[k] != stream.clusters[k] for k in served)
    assert p.wrong == wrong > 0  # the near pairs of intents cost some wrong answers
    assert p.error_rate == wrong / n
    assert p.error_rate <= BUDGET
    assert p.hit_rate == p.hits / n
    assert p.p50_get_us > 0
    assert run.p50_hit_us > 0


def test_the_cache_runs_the_policy_the_research_replay_measures(
    tmp_path: Path, stream: StreamVectors
) -> None:
    # budget_stream_replay drives the same policy outside the cache: the shipped guards,
    # the vote, the agreement and the records. Served through the engine, the stream
    # must take the same decisions; if one of them changes, the other must follow.
    run = cache_stream_replay(stream, BUDGET, path=tmp_path / "c.db")
    research = budget_stream_replay(stream, BUDGET, guard=shipped_defaults()[1])
    mine = run.point
    assert (mine.hits, mine.wrong, mine.llm_calls, mine.verifications, mine.exact_hits) == (
        research.hits,
        research.wrong,
        research.llm_calls,
        research.verifications,
        research.exact_hits,
    )


def test_two_replays_serve_alike(tmp_path: Path, stream: StreamVectors) -> None:
    first = cache_stream_replay(stream, BUDGET, path=tmp_path / "a.db")
    second = cache_stream_replay(stream, BUDGET)  # a temporary directory
    assert first.served == second.served


def test_the_cache_is_the_shipped_one_with_the_budget(
    tmp_path: Path, stream: StreamVectors
) -> None:
    made: list[SemanticCache] = []

    def spy(path: Path, budget: float) -> SemanticCache:
        cache = SemanticCache(path, error_budget=budget)
        made.append(cache)
        return cache

    run = cache_stream_replay(stream, 0.01, path=tmp_path / "c.db", make_cache=spy)
    (cache,) = made
    assert cache.closed
    assert run.point.guards == ("default",)  # the shipped guards are on
    assert run.stats["index_backend"] == SemanticCache().stats()["index_backend"]
    assert (tmp_path / "c.db").exists()


def test_an_existing_file_is_refused(tmp_path: Path, stream: StreamVectors) -> None:
    (tmp_path / "c.db").write_bytes(b"")
    with pytest.raises(ValueError, match="exists"):
        cache_stream_replay(stream, BUDGET, path=tmp_path / "c.db")


def test_the_cache_and_the_research_replay_agree_once_the_model_decides(
    tmp_path: Path, stream: StreamVectors, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The risk model refits on the outcome log the cache keeps in its store (the rows
    # read back) and on the research replay's rows in memory: the same rows, the same
    # fits. Refitted every 100 outcomes and trusted from the first verified prediction
    # here, so that it decides most of this short stream.
    monkeypatch.setattr(semcache._risk_model, "REFIT", 100)
    monkeypatch.setattr(semcache._risk_model, "MIN_CLASS", 5)
    monkeypatch.setattr(semcache._budget_policy, "TESTABLE", 0.5)
    run = cache_stream_replay(stream, BUDGET, path=tmp_path / "c.db")
    research = budget_stream_replay(stream, BUDGET, guard=shipped_defaults()[1])
    table = budget_stream_replay(
        stream, BUDGET, guard=shipped_defaults()[1], policy=ErrorBudget(BUDGET)
    )

    def figures(p: StreamPoint) -> tuple[int, ...]:
        return (p.hits, p.wrong, p.llm_calls, p.verifications, p.exact_hits)

    assert figures(run.point) == figures(research)
    assert figures(research) != figures(table)  # (the model decided)
    assert run.point.error_rate <= BUDGET
