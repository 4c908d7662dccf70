"""What a failed loads or a killed dumps leaves behind is removed: a failed loads
removes the lock file it created, and the temporary folders and files of a dumps (or
loads) killed with SIGKILL are swept by the next open, dumps or loads beside them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import unit

from semcache import ConfigurationError, SemanticCache
from semcache._checkpoint import sweep_stale

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX locks and signals")

DIM = 8


def make_cache(path: Path, n: int = 20) -> None:
    with SemanticCache(str(path)) as cache:
        for i in range(n):
            cache.put(f"q{i}", f"a{i}", embedding=unit(i, DIM))


def test_a_failed_loads_leaves_no_lock_file(tmp_path: Path) -> None:
    make_cache(tmp_path / "src.db")
    with SemanticCache(str(tmp_path / "src.db")) as cache:
        cache.dumps(tmp_path / "cp.tar.gz")
    before = set(os.listdir(tmp_path))

    def failing_factory(dim: int, dtype: object, options: object) -> object:
        raise RuntimeError("factory failed")  # after the lock was taken

    # The factory's failure reaches the caller as a ConfigurationError (issue 10, item 4).
    with pytest.raises(ConfigurationError, match="factory failed"):
        SemanticCache.loads(
            tmp_path / "cp.tar.gz", tmp_path / "r.db", None, index_backend=failing_factory
        )
    assert set(os.listdir(tmp_path)) == before  # no r.db, no r.db.lock


CHILD = textwrap.dedent(
    """
    import sys
    from semcache import SemanticCache
    from semcache import _checkpoint

    stop = sys.argv[3]

    def pause(where):
        if where == stop:
            print(where, flush=True)
            sys.stdin.readline()  # killed here

    _checkpoint._pause = pause
    with SemanticCache(sys.argv[1]) as cache:
        cache.dumps(sys.argv[2])
    """
)


def kill_dumps_at(tmp_path: Path, where: str) -> None:
    """Run dumps in a child process and SIGKILL it at ``where``."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path / "c.db"),
            str(tmp_path / "out" / "cp.tar.gz"),
            where,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.stdout is not None
    assert child.stdout.readline().decode().strip() == where
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=60) == -signal.SIGKILL
    child.stdin.close()  # type: ignore[union-attr]
    child.stdout.close()


def leftovers(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(".semcache-"))


def test_a_dumps_killed_while_copying_is_swept_on_the_next_open(tmp_path: Path) -> None:
    make_cache(tmp_path / "c.db")
    (tmp_path / "out").mkdir()
    kill_dumps_at(tmp_path, "dump:copied")
    (left,) = leftovers(tmp_path)  # a folder with a full store copy
    assert (tmp_path / left / "store.sqlite").stat().st_size > 0
    with SemanticCache(str(tmp_path / "c.db")) as cache:
        assert leftovers(tmp_path) == []
        assert cache.get("q3", embedding=unit(3, DIM)).response == "a3"  # type: ignore[union-attr]


def test_a_dumps_killed_while_writing_the_archive_is_swept_by_the_next_dumps(
    tmp_path: Path,
) -> None:
    make_cache(tmp_path / "c.db")
    (tmp_path / "out").mkdir()
    kill_dumps_at(tmp_path, "dump:archive")
    assert len(leftovers(tmp_path)) == 1  # the work folder
    assert len(leftovers(tmp_path / "out")) == 1  # the half-written archive
    with SemanticCache(str(tmp_path / "c.db")) as cache:
        cache.dumps(tmp_path / "out" / "cp.tar.gz")
    assert leftovers(tmp_path) == []
    assert os.listdir(tmp_path / "out") == ["cp.tar.gz"]
    with SemanticCache.loads(tmp_path / "out" / "cp.tar.gz", tmp_path / "r.db", None) as cache:
        assert cache.stats()["entries"] == {"default": 20}


def test_a_live_owners_files_are_never_swept(tmp_path: Path) -> None:
    make_cache(tmp_path / "c.db")
    seen: list[list[str]] = []

    import semcache._checkpoint as checkpoint

    def pause(where: str) -> None:
        # this process's own work in progress, and a live process's (the pid in the
        # name is another's, the lock is held here)
        seen.append(sweep_stale(tmp_path))

    original = checkpoint._pause
    checkpoint._pause = pause
    try:
        with SemanticCache(str(tmp_path / "c.db")) as cache:
            cache.dumps(tmp_path / "cp.tar.gz")
    finally:
        checkpoint._pause = original
    assert seen == [[], []]
    # a leftover of a live other process: its lock is held (here, by a child)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
            " fcntl.lockf(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.readline()",
            str(tmp_path / ".semcache-checkpoint-1-abc.tmp"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert holder.stdin is not None
    assert holder.stdout.readline() == b"locked\n"
    assert sweep_stale(tmp_path) == []
    holder.stdin.close()
    holder.wait(timeout=60)
    holder.stdout.close()
    assert sweep_stale(tmp_path) == [str(tmp_path / ".semcache-checkpoint-1-abc.tmp")]


def test_a_killed_loads_staging_folder_is_swept_by_the_next_loads(tmp_path: Path) -> None:
    make_cache(tmp_path / "src.db")
    with SemanticCache(str(tmp_path / "src.db")) as cache:
        cache.dumps(tmp_path / "cp.tar.gz")
    staging = tmp_path / "r.db.restoring"
    staging.mkdir()
    (staging / "store.sqlite").write_bytes(b"half")
    (staging / ".owner").write_text("1")  # pid 1 never holds our lock
    with SemanticCache.loads(tmp_path / "cp.tar.gz", tmp_path / "r.db", None) as cache:
        assert cache.stats()["entries"] == {"default": 20}
    assert not staging.exists()


def test_a_killed_snapshot_writers_temporary_file_is_swept_by_the_next_save(
    tmp_path: Path,
) -> None:
    make_cache(tmp_path / "c.db")
    folder = tmp_path / "c.db.index"
    dead = folder / ".semcache-index-999999999-x1.tmp"  # no process has this pid
    dead.write_bytes(b"half a snapshot")
    mine = folder / f".semcache-index-{os.getpid()}-x2.tmp"  # this process's: kept
    mine.write_bytes(b"in progress")
    with SemanticCache(str(tmp_path / "c.db")) as cache:
        cache.put("more", "x", embedding=unit(99, DIM))
    assert not dead.exists()
    assert mine.exists()


def test_hnswlib_scratch_folders_of_dead_processes_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("hnswlib")
    import tempfile

    from semcache._index import make_index

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / f"semcache-hnsw-{2**22 + 1}-abc"  # above any Linux pid_max
    dead.mkdir()
    (dead / "graph.bin").write_bytes(b"a graph")
    mine = tmp_path / f"semcache-hnsw-{os.getpid()}-def"
    mine.mkdir()
    index = make_index("hnswlib", DIM, np.float32, {})
    index.add(np.arange(3), np.stack([unit(i, DIM) for i in range(3)]))
    index.save(tmp_path / "g.npz")
    assert not dead.exists()
    assert mine.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.npz", mine.name]
