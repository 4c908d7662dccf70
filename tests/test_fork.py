"""A cache object across ``fork()``: a shared-mode cache works in the child (its own
connection and claim on the file, state caught up), a single-mode one refuses, and the
parent is never disturbed. Children report through a pipe; every wait is bounded."""

from __future__ import annotations

import os
import pickle
import select
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import unit

import semcache._ownership
from semcache import SemanticCache, SQLiteStore, StoreLockedError
from semcache._cache import engine_of

DIM = 8
TIMEOUT = 30.0


def in_child(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a forked child; return its result or re-raise its exception."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read)
            try:
                payload = ("ok", fn())
            except BaseException as exc:
                payload = ("error", f"{type(exc).__name__}: {exc}")
            with os.fdopen(write, "wb") as fh:
                pickle.dump(payload, fh)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    with os.fdopen(read, "rb") as fh:
        while True:
            ready, _, _ = select.select([fh], [], [], TIMEOUT)
            if not ready:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise AssertionError("the forked child did not answer in time")
            chunk = os.read(fh.fileno(), 65536)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "error":
        raise AssertionError(value)
    return value


def test_shared_cache_works_in_a_forked_child(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    # guards off: lookups use a placeholder text ("x" against "q0")
    with SemanticCache(
        path, multi_process_mode="shared", similarity_threshold=0.99, guards=None
    ) as cache:
        cache.put_many(
            ["q0", "q1", "q2"],
            ["a0", "a1", "a2"],
            embeddings=np.stack([unit(i, DIM) for i in range(3)]),
        )

        def child() -> list[str | None]:
            out = [
                h.response if (h := cache.get("x", embedding=unit(i, DIM))) else None
                for i in range(3)
            ]
            cache.put("q3", "a3", embedding=unit(3, DIM))
            cache.delete("q0")
            cache.close()  # the child's close saves nothing over the parent's files
            return out

        assert in_child(child) == ["a0", "a1", "a2"]
        # the parent sees the child's writes and still works on its own connection
        assert cache.get("x", embedding=unit(3, DIM)).response == "a3"  # type: ignore[union-attr]
        assert cache.get("x", embedding=unit(0, DIM)) is None
        cache.put("q4", "a4", embedding=unit(4, DIM))
        assert cache.get("q4") is not None
    store = SQLiteStore(path)
    try:
        assert store._read(lambda c: c.execute("PRAGMA integrity_check").fetchall()) == [("ok",)]
        assert store.count() == 4
    finally:
        store.close()


def test_single_mode_cache_refuses_in_a_forked_child(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    with SemanticCache(path) as cache:
        cache.put("q", "a", embedding=unit(0, DIM))

        def child() -> list[str]:
            seen = []
            for call in (
                lambda: cache.get("q"),
                lambda: cache.put("q2", "b"),
                lambda: cache.stats(),
                lambda: SemanticCache(path),  # a fresh opener is refused too
                lambda: SemanticCache(path, multi_process_mode="shared"),
            ):
                try:
                    call()
                    seen.append("ok")
                except StoreLockedError as exc:
                    seen.append(str(exc))
            cache.close()  # allowed, and writes nothing
            return seen

        answers = in_child(child)
        assert all(a != "ok" for a in answers)
        assert "forked child" in answers[0]
        assert "multi_process_mode='shared'" in answers[0]
        # the parent is untouched: same entries, same connection, still the owner
        assert cache.get("q").response == "a"  # type: ignore[union-attr]
        cache.put("q3", "c")
        assert cache.stats()["total_entries"] == 2


def test_child_of_a_closed_parent_can_open_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    cache = SemanticCache(path)
    cache.put("q", "a")
    cache.close()

    def child() -> str | None:
        with SemanticCache(path) as own:  # the parent released the file
            hit = own.get("q")
            return None if hit is None else hit.response

    assert in_child(child) == "a"


def test_memory_cache_is_copied_into_the_child(tmp_path: Path) -> None:
    with SemanticCache() as cache:
        cache.put("q", "a")

        def child() -> str | None:
            cache.put("only in the child", "x")
            hit = cache.get("q")
            return None if hit is None else hit.response

        assert in_child(child) == "a"
        assert cache.get("only in the child") is None


def test_fork_while_another_thread_holds_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fork that cannot get the cache's lock in time still gives the child a usable
    cache: fresh locks, and indexes rebuilt from the store."""
    monkeypatch.setattr(semcache._ownership, "FORK_WAIT", 0.01)
    path = str(tmp_path / "c.db")
    # guards off: lookups use a placeholder text ("x" against "q0")
    with SemanticCache(
        path, multi_process_mode="shared", similarity_threshold=0.99, guards=None
    ) as cache:
        cache.put("q0", "a0", embedding=unit(0, DIM))
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            with engine_of(cache).lock, cache.store._lock:  # type: ignore[attr-defined]
                holding.set()
                release.wait(TIMEOUT)

        holder = threading.Thread(target=hold)
        holder.start()
        assert holding.wait(TIMEOUT)
        try:

            def child() -> tuple[str | None, bool]:
                hit = cache.get("x", embedding=unit(0, DIM))
                cache.put("q1", "a1", embedding=unit(1, DIM))
                source = engine_of(cache).indexes.source
                return (None if hit is None else hit.response), source == "store"

            assert in_child(child)[0] == "a0"
        finally:
            release.set()
            holder.join(TIMEOUT)
        assert cache.get("x", embedding=unit(1, DIM)).response == "a1"  # type: ignore[union-attr]
