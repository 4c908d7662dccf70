"""The semantic get scans a flat index outside the engine's lock (``_get._Scan``), then
checks the result under the lock again. These tests force the interleavings: a hook
(``_get.scan_hook``) runs between the unlocked scan and the step that re-takes the lock,
and there deletes, puts, compacts, clears or closes; a seeded free-running test has
writer and reader threads race (no sleeps: barriers and fixed iteration counts).

What must hold: no wrong hit (an entry served is live and scores at least the threshold
from its own vector), no crash, no lost entry (an entry live during the whole get is
found), and the scan really runs with the lock free.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semcache import AsyncSemanticCache, CacheClosedError, SemanticCache, _get
from semcache._cache import engine_of

DIM = 16
THRESHOLD = 0.9
#: The indexes whose search runs outside the lock: the flat scan and the hnswlib graph
#: (tests/test_unlocked_graph.py has the graph's own).
BACKENDS = ["flat", "hnswlib"]


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, rng: np.random.Generator, eps: float = 0.02) -> np.ndarray:
    w = v + eps * rng.standard_normal(DIM).astype(np.float32)
    return (w / np.linalg.norm(w)).astype(np.float32)


@pytest.fixture(autouse=True)
def unlocked_always(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every index is scanned outside the lock, however small."""
    monkeypatch.setattr(_get, "UNLOCKED_SCAN_MIN", 0)


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], object]], list[int]]:
    """Install a one-shot scan hook; returns a list that counts its calls."""

    def install(fn: Callable[[], object]) -> list[int]:
        calls: list[int] = []

        def once() -> None:
            calls.append(1)
            if len(calls) == 1:
                fn()

        monkeypatch.setattr(_get, "scan_hook", once)
        return calls

    return install


def make(tmp_path: Path, **kw: Any) -> SemanticCache:
    kw.setdefault("similarity_threshold", THRESHOLD)
    kw.setdefault("index_backend", "flat")
    kw.setdefault("guards", None)
    return SemanticCache(str(tmp_path / "c.db"), **kw)


def fill(
    cache: SemanticCache, rng: np.random.Generator, n: int, prefix: str = "q"
) -> list[np.ndarray]:
    """``n`` random entries: prompt ``<prefix><i>``, answer ``r<i>``."""
    vs = [unit(rng) for _ in range(n)]
    for i, v in enumerate(vs):
        cache.put(f"{prefix}{i}", f"r{i}", embedding=v)
    return vs


def assert_the_search_leaves_the_lock_free(
    cache: SemanticCache, hook: Any, rng: np.random.Generator, vs: list[np.ndarray]
) -> None:
    """A get near ``vs[7]`` whose search lets another thread take the cache's lock (the
    hook runs between the search and the re-lock), and still hits ``r7``."""
    lock = engine_of(cache).lock
    free: list[bool] = []

    def try_lock() -> None:
        got = lock.acquire(blocking=False)
        free.append(got)
        if got:
            lock.release()

    def other_thread_takes_the_lock() -> None:
        t = threading.Thread(target=try_lock)
        t.start()
        t.join()

    calls = hook(other_thread_takes_the_lock)
    hit = cache.get("paraphrase", embedding=near(vs[7], rng))
    assert calls
    assert free == [True]
    assert hit is not None
    assert hit.response == "r7"


def test_the_scan_runs_with_the_lock_free(tmp_path: Path, hook: Any) -> None:
    rng = np.random.default_rng(1)
    with make(tmp_path) as cache:
        vs = fill(cache, rng, 50)
        assert_the_search_leaves_the_lock_free(cache, hook, rng, vs)


def test_a_put_then_delete_during_the_scan_loses_nothing(tmp_path: Path, hook: Any) -> None:
    """The best candidate is deleted while the scan runs, after a better-matching entry
    was put: some matching entry existed at every moment, so the get must hit, and it
    must not serve the deleted one (the scan's result is checked under the lock)."""
    rng = np.random.default_rng(2)
    with make(tmp_path) as cache:
        vs = fill(cache, rng, 50)
        query = near(vs[3], rng, 0.01)

        def put_then_delete() -> None:
            cache.put("newcomer", "r-new", embedding=near(query, rng, 0.001))
            assert cache.delete("q3")

        calls = hook(put_then_delete)
        hit = cache.get("paraphrase", embedding=query)
        assert calls
        assert hit is not None
        assert hit.response == "r-new"
        assert cache.get("q3") is None


def test_a_compaction_during_the_scan(tmp_path: Path, hook: Any) -> None:
    """Half the rows deleted and the index compacted (rows renumbered, arrays replaced)
    while the scan reads the old ones: the hit is still the live entry it names."""
    rng = np.random.default_rng(3)
    with make(tmp_path) as cache:
        vs = fill(cache, rng, 60)
        query = near(vs[41], rng)

        def delete_and_compact() -> None:
            for i in range(40):
                cache.delete(f"q{i}")
            cache.compact()

        calls = hook(delete_and_compact)
        hit = cache.get("paraphrase", embedding=query)
        assert calls
        assert hit is not None
        assert hit.response == "r41"
        assert hit.similarity == pytest.approx(float(vs[41] @ query), abs=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_delete_of_the_hit_during_the_scan_is_a_miss(
    tmp_path: Path, hook: Any, backend: str
) -> None:
    rng = np.random.default_rng(4)
    with make(tmp_path, index_backend=backend) as cache:
        vs = fill(cache, rng, 50)
        hook(lambda: cache.delete("q9"))
        assert cache.get("paraphrase", embedding=near(vs[9], rng)) is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["clear_namespace", "clear"])
def test_a_clear_and_refill_during_the_scan(
    tmp_path: Path, hook: Any, how: str, backend: str
) -> None:
    """The namespace cleared and filled again while the scan reads the old index: the
    answer comes from the new entries only."""
    rng = np.random.default_rng(5)
    with make(tmp_path, index_backend=backend) as cache:
        vs = fill(cache, rng, 50)
        query = near(vs[5], rng)

        def clear_and_refill() -> None:
            if how == "clear":
                cache.clear()
            else:
                cache.clear_namespace("default")
            cache.put("fresh", "r-fresh", embedding=near(query, rng, 0.001))

        hook(clear_and_refill)
        hit = cache.get("paraphrase", embedding=query)
        assert hit is not None
        assert hit.response == "r-fresh"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_close_during_the_scan_raises_cache_closed(
    tmp_path: Path, hook: Any, backend: str
) -> None:
    rng = np.random.default_rng(6)
    cache = make(tmp_path, index_backend=backend)
    vs = fill(cache, rng, 50)
    hook(cache.close)
    with pytest.raises(CacheClosedError):
        cache.get("paraphrase", embedding=near(vs[1], rng))


def test_the_async_facade_checks_the_same(tmp_path: Path, hook: Any) -> None:
    """adrive runs the scan on the step's worker thread, outside the lock, and checks
    it the same way: a put and a delete there (as another thread would) lose nothing."""
    rng = np.random.default_rng(7)

    async def main() -> None:
        cache = AsyncSemanticCache(
            str(tmp_path / "a.db"),
            similarity_threshold=THRESHOLD,
            index_backend="flat",
            guards=None,
        )
        vs = [unit(rng) for _ in range(50)]
        for i, v in enumerate(vs):
            await cache.put(f"q{i}", f"r{i}", embedding=v)
        query = near(vs[3], rng, 0.01)
        eng = cache._engine
        new = near(query, rng, 0.001)

        def put_then_delete() -> None:  # on the worker thread: no event loop here
            asyncio.run(cache.put("newcomer", "r-new", embedding=new))
            assert eng.delete("q3", "default")

        calls = hook(put_then_delete)
        hit = await cache.get("paraphrase", embedding=query)
        assert calls
        assert hit is not None
        assert hit.response == "r-new"
        await cache.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("backend", ["flat", "auto", "hnswlib"])
def test_threads_race_writers_and_readers(tmp_path: Path, backend: str) -> None:
    """Seeded: two readers get while a writer puts, deletes, compacts and clears. Every
    hit names an entry that was put, at its own vector's similarity, above the
    threshold; nothing raises; entries never deleted are always found by their own
    vector."""
    rng = np.random.default_rng(8)
    keep = [unit(rng) for _ in range(20)]  # never deleted
    churn = [unit(rng) for _ in range(200)]
    vectors = {f"r-keep{i}": v for i, v in enumerate(keep)}
    vectors.update({f"r-churn{i}": v for i, v in enumerate(churn)})
    with make(tmp_path, index_backend=backend) as cache:
        for i, v in enumerate(keep):
            cache.put(f"keep{i}", f"r-keep{i}", embedding=v, namespace="a")
        start = threading.Barrier(3)
        errors: list[BaseException] = []
        wrong: list[str] = []
        lost: list[str] = []

        def writer() -> None:
            start.wait()
            try:
                for round_ in range(6):
                    for i in range(round_ * 30, round_ * 30 + 30):
                        j = i % len(churn)
                        cache.put(f"churn{j}", f"r-churn{j}", embedding=churn[j], namespace="a")
                        cache.put(f"churn{j}", f"r-churn{j}", embedding=churn[j], namespace="b")
                    for i in range(round_ * 30, round_ * 30 + 25):
                        cache.delete(f"churn{i % len(churn)}", namespace="a")
                    cache.compact()
                    cache.clear_namespace("b")
            except BaseException as exc:
                errors.append(exc)

        def reader(seed: int) -> None:
            r = np.random.default_rng(seed)
            start.wait()
            try:
                for n in range(300):
                    if n % 2:
                        i = int(r.integers(len(keep)))
                        q = near(keep[i], r, 0.01)
                        hit = cache.get(f"p{seed}-{n}", embedding=q, namespace="a")
                        if hit is None or hit.response != f"r-keep{i}":
                            lost.append(f"keep{i}: {hit}")
                    else:
                        q = near(churn[int(r.integers(len(churn)))], r, 0.01)
                        hit = cache.get(f"p{seed}-{n}", embedding=q, namespace="ab"[n % 4 // 2])
                    if hit is not None:
                        own = float(vectors[hit.response] @ q)
                        if own < THRESHOLD - 1e-3 or abs(own - hit.similarity) > 1e-3:
                            wrong.append(f"{hit.response} at {hit.similarity}, own {own}")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer)]
        threads += [threading.Thread(target=reader, args=(s,)) for s in (11, 12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert wrong == []
        assert lost == []
