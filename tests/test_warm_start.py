"""Index snapshots: a reopened cache loads them and catches up from the change log, or
rebuilds from the store when they are missing, stale, foreign or corrupt. Either way it
never serves a deleted entry and never misses a live one."""

from __future__ import annotations

import fcntl
import json
import logging
import multiprocessing
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import unit_rows

from semcache import SemanticCache, SQLiteStore
from semcache._indexes import IndexSet

DIM = 16


VECS = unit_rows(60, DIM, 3)


def open_cache(path: Path, **kwargs: Any) -> SemanticCache:
    kwargs.setdefault("similarity_threshold", 0.99)
    kwargs.setdefault("guards", None)  # placeholder texts: "paraphrase 40" vs "n0" differ
    return SemanticCache(str(path), **kwargs)


def served(cache: SemanticCache, i: int, namespace: str = "default") -> str | None:
    """What a semantic lookup near stored vector ``i`` answers (no exact match)."""
    hit = cache.get(f"paraphrase {i}", embedding=VECS[i], namespace=namespace)
    return None if hit is None else hit.response


def fill(path: Path) -> None:
    with open_cache(path) as cache:
        cache.put_many(
            [f"q{i}" for i in range(40)], [f"a{i}" for i in range(40)], embeddings=VECS[:40]
        )
        cache.put_many(["n0", "n1"], ["b0", "b1"], embeddings=VECS[40:42], namespace="other")


def test_reopen_loads_the_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.db"
    fill(path)
    assert (tmp_path / "c.db.index" / "manifest.json").exists()

    def no_rebuild(self: IndexSet, progress: object = None) -> None:
        raise AssertionError("rebuilt although a valid snapshot exists")

    monkeypatch.setattr(IndexSet, "rebuild", no_rebuild)
    with open_cache(path) as cache:
        assert cache.stats()["index_source"] == "snapshot"
        assert [served(cache, i) for i in range(40)] == [f"a{i}" for i in range(40)]
        assert served(cache, 40, "other") == "b0"
        assert cache.stats()["indexed"] == {"default": 40, "other": 2}


def test_stale_snapshot_is_caught_up_from_the_change_log(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    fill(path)
    old = tmp_path / "old-snapshot"
    shutil.copytree(tmp_path / "c.db.index", old)
    with open_cache(path) as cache:
        cache.delete("q3")
        cache.put("q3 again", "new3", embedding=VECS[50])
        cache.put("q5", "replaced5", embedding=VECS[51])  # replaces q5's entry
        cache.clear_namespace("other")
    shutil.rmtree(tmp_path / "c.db.index")
    shutil.copytree(old, tmp_path / "c.db.index")  # as if the last close had crashed
    with open_cache(path) as cache:
        assert cache.stats()["index_source"] == "snapshot"
        assert served(cache, 3) is None
        assert served(cache, 50) == "new3"
        assert served(cache, 5) is None
        assert served(cache, 51) == "replaced5"
        assert served(cache, 40, "other") is None
        assert served(cache, 7) == "a7"
        assert cache.stats()["indexed"] == {"default": 40, "other": 0}


def test_snapshot_older_than_the_log_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    fill(path)
    old = tmp_path / "old-snapshot"
    shutil.copytree(tmp_path / "c.db.index", old)
    with SemanticCache(store=SQLiteStore(path, max_changes=3), similarity_threshold=0.99) as cache:
        for i in range(10):
            cache.delete(f"q{i}")
    shutil.rmtree(tmp_path / "c.db.index")
    shutil.copytree(old, tmp_path / "c.db.index")
    with open_cache(path) as cache:
        assert cache.stats()["index_source"] == "store"
        assert [served(cache, i) for i in range(12)] == [None] * 10 + ["a10", "a11"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "manifest", "missing-file"])
def test_corrupt_snapshot_is_rebuilt(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.db"
    fill(path)
    folder = tmp_path / "c.db.index"
    files = sorted(folder.glob("ns-*.npz"))
    if damage == "flip":
        data = bytearray(files[0].read_bytes())
        for at in range(len(data) // 3, len(data) // 3 + 64):
            data[at] ^= 0xFF
        files[0].write_bytes(bytes(data))
    elif damage == "truncate":
        files[0].write_bytes(files[0].read_bytes()[:100])
    elif damage == "manifest":
        (folder / "manifest.json").write_text("{not json", encoding="utf-8")
    else:
        files[0].unlink()
    with caplog.at_level(logging.WARNING, logger="semcache"), open_cache(path) as cache:
        assert cache.stats()["index_source"] == "store"
        assert [served(cache, i) for i in range(40)] == [f"a{i}" for i in range(40)]
    assert "rebuilding" in caplog.text


def test_snapshot_of_another_store_is_not_used(tmp_path: Path) -> None:
    fill(tmp_path / "a.db")
    with open_cache(tmp_path / "b.db") as cache:
        cache.put("only in b", "b", embedding=VECS[55])
    shutil.rmtree(tmp_path / "b.db.index")
    shutil.copytree(tmp_path / "a.db.index", tmp_path / "b.db.index")
    with open_cache(tmp_path / "b.db") as cache:
        assert cache.stats()["index_source"] == "store"
        assert served(cache, 1) is None
        assert served(cache, 55) == "b"


def test_other_settings_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    fill(path)
    with open_cache(path, index_backend="flat") as cache:
        assert cache.stats()["index_source"] == "store"
        assert served(cache, 2) == "a2"
    with open_cache(path, index_backend="flat") as cache:
        assert cache.stats()["index_source"] == "snapshot"
    manifest = json.loads((tmp_path / "c.db.index" / "manifest.json").read_text())
    assert manifest["backend"].startswith("flat")


def test_memory_caches_keep_no_snapshot(tmp_path: Path) -> None:
    with SemanticCache(similarity_threshold=0.99) as cache:
        cache.put("q", "a", embedding=VECS[0])
        assert cache.stats()["index_source"] == "store"
    assert list(tmp_path.iterdir()) == []


def test_a_concurrent_save_is_skipped_not_interleaved(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    fill(path)
    manifest = (tmp_path / "c.db.index" / "manifest.json").read_bytes()
    with open(tmp_path / "c.db.index" / ".lock", "a+b") as held:
        fcntl.lockf(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Another process holds the lock: this close must not write (lockf locks are
        # per process, so take it from a child).
        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(target=_put_and_close, args=(str(path),))
        proc.start()
        proc.join(60)
        assert proc.exitcode == 0
    assert (tmp_path / "c.db.index" / "manifest.json").read_bytes() == manifest
    with open_cache(path) as cache:  # the snapshot is stale but caught up
        assert cache.stats()["index_source"] == "snapshot"
        assert served(cache, 59) == "late"


def _put_and_close(path: str) -> None:
    cache = open_cache(Path(path), multi_process_mode="shared")
    cache.put("late", "late", embedding=VECS[59])
    cache.close()
