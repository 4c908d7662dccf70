"""Several processes on one SQLite file: single-mode exclusivity and shared-mode catch-up,
with real processes (multiprocessing, spawn). Every wait is bounded."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import unit

from semcache import (
    DimensionMismatchError,
    EmbedderMismatchError,
    SemanticCache,
    SQLiteStore,
    StoreLockedError,
)
from semcache.embedders import HashingEmbedder

DIM = 16
TIMEOUT = 60.0


def near(i: int) -> np.ndarray:
    """A paraphrase of entry ``i``: cosine with it about 0.999."""
    noise = np.random.default_rng(10_000 + i).standard_normal(DIM).astype(np.float32)
    v = unit(i, DIM) + 0.02 * noise / np.linalg.norm(noise)
    return v / np.linalg.norm(v)


# -- workers (module level: spawn pickles them by name) --------------------------------------
def try_open(path: str, mode: str) -> str:
    """Open ``path`` in ``mode``; answer "ok" or the exception's class name."""
    try:
        cache = SemanticCache(path, multi_process_mode=mode)  # type: ignore[arg-type]
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    cache.close()
    return "ok"


def write_entries(
    path: str, first: int, count: int, max_entries: int | None, namespace: str = "default"
) -> list[int]:
    """Put entries ``first..first+count`` (one put each) in shared mode; return the acked."""
    acked = []
    with SemanticCache(
        path, multi_process_mode="shared", max_entries=max_entries, similarity_threshold=0.99
    ) as cache:
        for i in range(first, first + count):
            cache.put(f"q{i}", f"a{i}", embedding=unit(i, DIM), namespace=namespace)
            acked.append(i)
    return acked


def serve(path: str, entries: list[int]) -> dict[int, str | None]:
    """What a fresh shared-mode process serves for paraphrases of ``entries``."""
    with SemanticCache(path, multi_process_mode="shared", similarity_threshold=0.99) as cache:
        out = {}
        for i in entries:
            hit = cache.get(f"paraphrase {i}", embedding=near(i))
            out[i] = None if hit is None else hit.response
        return out


def open_fresh_files(paths: list[str], barrier: Any) -> list[str]:
    """Open each of ``paths`` (new files) the moment every other worker does too."""
    answers = []
    for path in paths:
        barrier.wait(TIMEOUT)
        try:
            SQLiteStore(path).close()
            answers.append("ok")
        except Exception as exc:
            answers.append(f"{type(exc).__name__}: {exc}")
    return answers


@pytest.fixture
def pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("spawn")) as executor:
        yield executor


# -- single mode owns the file -----------------------------------------------------------------
def test_single_mode_refuses_a_second_process(tmp_path: Path, pool: ProcessPoolExecutor) -> None:
    path = str(tmp_path / "c.db")
    with SemanticCache(path):
        answer = pool.submit(try_open, path, "single").result(TIMEOUT)
        assert answer.startswith("StoreLockedError")
        assert path in answer
        assert "single mode" in answer
        assert pool.submit(try_open, path, "shared").result(TIMEOUT).startswith("StoreLockedError")
    # closed: the lock is released
    assert pool.submit(try_open, path, "single").result(TIMEOUT) == "ok"


def test_shared_mode_excludes_single_mode(tmp_path: Path, pool: ProcessPoolExecutor) -> None:
    path = str(tmp_path / "c.db")
    with SemanticCache(path, multi_process_mode="shared"):
        assert pool.submit(try_open, path, "shared").result(TIMEOUT) == "ok"
        answer = pool.submit(try_open, path, "single").result(TIMEOUT)
        assert answer.startswith("StoreLockedError")
        assert "shared mode" in answer
    assert pool.submit(try_open, path, "single").result(TIMEOUT) == "ok"


def test_one_process_may_mix_modes_and_reopen(tmp_path: Path) -> None:
    """The lock is per process: caches in one process share it (strongest mode wins)."""
    path = str(tmp_path / "c.db")
    shared = SemanticCache(path, multi_process_mode="shared")
    single = SemanticCache(path)
    again = SemanticCache(path)
    for cache in (single, again, shared):
        cache.close()
    with SemanticCache(path, multi_process_mode="shared"):
        pass


def test_a_bare_store_takes_no_lock(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    with SemanticCache(path):
        store = SQLiteStore(path)  # tools (the CLI's stats) read the file directly
        assert store.count() == 0
        store.close()


def test_lock_refusal_leaves_the_cache_unopened(tmp_path: Path, pool: ProcessPoolExecutor) -> None:
    path = str(tmp_path / "c.db")
    with SemanticCache(path, multi_process_mode="shared") as cache:
        cache.put("q", "a")
        assert pool.submit(try_open, path, "single").result(TIMEOUT).startswith("StoreLockedError")
        assert cache.get("q") is not None  # the refused opener changed nothing here
    SemanticCache(path).close()  # and nothing is left locked


def test_lock_error_is_a_store_error(tmp_path: Path, pool: ProcessPoolExecutor) -> None:
    path = str(tmp_path / "c.db")
    with SemanticCache(path):
        answer = pool.submit(try_open_raising, path).result(TIMEOUT)
    assert answer == ["StoreLockedError", "StoreError", "SemanticCacheError"]


def try_open_raising(path: str) -> list[str]:
    try:
        SemanticCache(path).close()
    except StoreLockedError as exc:
        return [c.__name__ for c in type(exc).__mro__[:3]]
    return []


# -- shared mode across processes ---------------------------------------------------------------
def test_puts_in_other_processes_are_served_here(tmp_path: Path, pool: ProcessPoolExecutor) -> None:
    path = str(tmp_path / "c.db")
    with SemanticCache(path, multi_process_mode="shared", similarity_threshold=0.99) as cache:
        cache.put("seed", "s", embedding=unit(999, DIM))  # fixes the dimension
        futures = [pool.submit(write_entries, path, k * 100, 40, None) for k in range(2)]
        acked = [i for f in futures for i in f.result(TIMEOUT)]
        assert len(acked) == 80
        for i in acked:  # stale_check_interval=0: caught up before every get
            hit = cache.get(f"paraphrase {i}", embedding=near(i))
            assert hit is not None
            assert hit.response == f"a{i}"
            assert hit.layer == "semantic"
        # deletes and a clear here are never served by another process afterwards
        for i in acked[:20]:
            assert cache.delete(f"q{i}")
        served = pool.submit(serve, path, acked).result(TIMEOUT)
        assert all(served[i] is None for i in acked[:20])
        assert all(served[i] == f"a{i}" for i in acked[20:])
        cache.clear()
        assert set(pool.submit(serve, path, acked).result(TIMEOUT).values()) == {None}


def test_a_process_with_an_index_never_serves_what_another_removed(
    tmp_path: Path, pool: ProcessPoolExecutor
) -> None:
    """The reader's index is built before the other process deletes, evicts and clears;
    a stale index must still never serve those entries, whatever the check interval."""
    path = str(tmp_path / "c.db")
    write_entries(path, 0, 30, None)
    with SemanticCache(
        path, multi_process_mode="shared", stale_check_interval=3600, similarity_threshold=0.99
    ) as reader:
        assert reader.get("paraphrase 3", embedding=near(3)) is not None  # index loaded
        # another process with a quota of 10 evicts 20 + 10 of these entries
        pool.submit(write_entries, path, 100, 10, 10).result(TIMEOUT)
        served = {i: reader.get(f"paraphrase {i}", embedding=near(i)) for i in range(30)}
        assert all(hit is None for hit in served.values())
        assert reader.stats()["total_entries"] == 10


def test_max_entries_holds_across_processes(tmp_path: Path, pool: ProcessPoolExecutor) -> None:
    path = str(tmp_path / "c.db")
    futures = [pool.submit(write_entries, path, k * 1000, 120, 50) for k in range(2)]
    acked = [i for f in futures for i in f.result(TIMEOUT)]
    assert len(acked) == 240
    with SemanticCache(path, multi_process_mode="shared", similarity_threshold=0.99) as cache:
        stats = cache.stats()
        assert stats["total_entries"] == 50
        assert sum(stats["indexed"].values()) == 50
        hits = [i for i in acked if cache.get(f"paraphrase {i}", embedding=near(i)) is not None]
        assert len(hits) == 50


def test_namespace_quotas_hold_across_processes(tmp_path: Path, pool: ProcessPoolExecutor) -> None:
    path = str(tmp_path / "c.db")

    futures = [
        pool.submit(write_quota_entries, path, k * 1000, 60, "tenant-a" if k else "tenant-b")
        for k in range(2)
    ]
    for f in futures:
        f.result(TIMEOUT)
    with SemanticCache(path, multi_process_mode="shared") as cache:
        assert cache.stats()["entries"] == {"tenant-a": 20, "tenant-b": 60}


def write_quota_entries(path: str, first: int, count: int, namespace: str) -> None:
    with SemanticCache(
        path, multi_process_mode="shared", namespace_quotas={"tenant-a": 20}
    ) as cache:
        for i in range(first, first + count):
            cache.put(f"q{i}", f"a{i}", embedding=unit(i, DIM), namespace=namespace)


def test_processes_creating_one_new_file_together_all_open_it(tmp_path: Path) -> None:
    """Two connections switching a new file to WAL at once get SQLITE_BUSY without the
    busy handler being asked (SQLite's deadlock rule); opening retries that instead of
    failing. Before the retry about a third of these rounds failed."""
    ctx = mp.get_context("spawn")
    workers = 3
    paths = [str(tmp_path / f"c{k}.db") for k in range(30)]
    with ctx.Manager() as manager, ProcessPoolExecutor(workers, mp_context=ctx) as executor:
        barrier = manager.Barrier(workers)
        futures = [executor.submit(open_fresh_files, paths, barrier) for _ in range(workers)]
        answers = [a for f in futures for a in f.result(TIMEOUT)]
    assert answers == ["ok"] * (workers * len(paths))
    for path in paths:
        store = SQLiteStore(path)
        assert store.schema_version() >= 1
        store.close()


def test_first_vectors_written_while_another_process_opens_are_indexed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An open without an embedder reads no dimension from an empty store; another
    process's first put lands before the rebuild reads the vectors (CI hit this across
    processes). The rebuild learns the dimension the put recorded instead of failing."""
    from semcache._indexes import IndexSet

    path = str(tmp_path / "c.db")
    real = IndexSet.check_settings
    opened: list[int | None] = []

    def then_another_writes(self: IndexSet, again: bool = True) -> int | None:
        dim = real(self, again)
        if not opened:  # the first open; the writer's own open runs as usual
            opened.append(dim)
            with SemanticCache(path, multi_process_mode="shared") as other:
                other.put("q1", "a1", embedding=unit(1, DIM))
        return dim

    monkeypatch.setattr(IndexSet, "check_settings", then_another_writes)
    with SemanticCache(path, multi_process_mode="shared") as cache:
        assert opened == [None]
        assert cache.stats()["indexed"] == {"default": 1}
        hit = cache.get("paraphrase 1", embedding=near(1))
        assert hit is not None
        assert (hit.response, hit.layer) == ("a1", "semantic")


def test_two_first_puts_of_another_dimension_leave_the_store_whole(tmp_path: Path) -> None:
    """Two caches (as two processes) open an empty store without an embedder; each
    takes the dimension of its first put. The one whose put comes second gets the
    DimensionMismatchError a known dimension gives, writes nothing, and the file still
    opens: before, its put recorded its own dimension over the first and the file no
    longer opened (StoreCorruptError)."""
    path = str(tmp_path / "c.db")
    with (
        SemanticCache(path, multi_process_mode="shared") as first,
        SemanticCache(path, multi_process_mode="shared") as second,
    ):
        first.put("q1", "a1", embedding=unit(1, DIM))
        with pytest.raises(DimensionMismatchError) as raised:
            second.put("q2", "a2", embedding=unit(2, 2 * DIM))
        assert (raised.value.got, raised.value.expected) == (2 * DIM, DIM)
        second.put("q3", "a3", embedding=unit(3, DIM))  # its dimension is now the store's
    with SemanticCache(path) as cache:
        assert cache.stats()["total_entries"] == 2
        assert cache.stats()["dim"] == DIM
        hit = cache.get("paraphrase 3", embedding=near(3))
        assert hit is not None
        assert hit.response == "a3"


def test_two_embedders_opening_one_empty_store_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two caches with embedders of another dimension open one empty store at once: the
    second records its settings after the first read none, before the first records its
    own. The first's open fails with EmbedderMismatchError instead of recording its
    settings over the second's (whose vectors would then not match them)."""
    path = str(tmp_path / "c.db")
    small, large = HashingEmbedder(dim=DIM), HashingEmbedder(dim=2 * DIM)
    real = SQLiteStore.put_many
    others: list[SemanticCache] = []
    opening: list[bool] = []

    def another_opens_first(self: SQLiteStore, entries: Any, **kwargs: Any) -> Any:
        if not entries and not opening:  # the first open's settings, about to be recorded
            opening.append(True)
            others.append(SemanticCache(path, large, multi_process_mode="shared"))
        return real(self, entries, **kwargs)

    monkeypatch.setattr(SQLiteStore, "put_many", another_opens_first)
    with pytest.raises(EmbedderMismatchError, match="not"):
        SemanticCache(path, small, multi_process_mode="shared")
    monkeypatch.setattr(SQLiteStore, "put_many", real)
    [other] = others
    other.put("a question", "an answer")
    other.close()
    with SemanticCache(path, large) as cache:
        assert cache.stats()["dim"] == 2 * DIM
        assert cache.get("a question") is not None
