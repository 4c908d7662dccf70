"""``semcache stats`` and ``semcache ls`` only read: no lock, no index, no write (the file,
its index snapshot and its lock file stay byte for byte and mtime for mtime as they
were), beside an application that has the file open in this process or another one.
``semcache vacuum`` on a file another process owns says which one and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from semcache import SemanticCache
from semcache._cli import main
from semcache._inspect import CacheFile, lock_holder
from semcache.embedders import HashingEmbedder

DIM = 32
ROOT = Path(__file__).resolve().parents[1]


def _fill(path: Path, n: int = 40) -> None:
    with SemanticCache(path, HashingEmbedder(dim=DIM)) as cache:
        cache.put_many([f"question {i}" for i in range(n)], [f"answer {i}" for i in range(n)])
        cache.put("what is the capital of France?", "Paris", namespace="geo", metadata={"k": 1})
        cache.put("gone soon", "x", namespace="geo", ttl=0.0)


def _state(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[str, int, int]]:
    """Every file under ``folder``: (sha256, size, mtime_ns), by relative path."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.endswith(skip):
            data = p.read_bytes()
            st = p.stat()
            out[str(p.relative_to(folder))] = (
                hashlib.sha256(data).hexdigest(),
                st.st_size,
                st.st_mtime_ns,
            )
    return out


@pytest.fixture
def closed_cache(tmp_path: Path) -> Path:
    path = tmp_path / "cache.sqlite"
    _fill(path)
    return path


def test_stats_and_ls_of_a_closed_file_change_nothing(
    closed_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = closed_cache.parent
    before = _state(folder)
    assert (folder / "cache.sqlite.index" / "manifest.json").is_file()
    assert not (folder / "cache.sqlite-wal").exists()
    dir_mtime = folder.stat().st_mtime_ns

    assert main(["stats", str(closed_cache)]) == 0
    out = capsys.readouterr().out
    assert "entries      42\n" in out
    assert "  default          40\n" in out
    assert "  geo              2\n" in out
    assert "expired      1 (semcache vacuum removes them)" in out
    assert f"vectors      dim {DIM}, float32" in out
    assert "hashing-v1" in out
    assert "index        snapshot" in out
    assert main(["stats", str(closed_cache), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["entries"] == {"default": 40, "geo": 2}
    assert info["total_entries"] == 42
    assert info["expired_entries"] == 1
    assert info["dim"] == DIM
    assert info["index_backend"] == "auto"
    assert info["schema_version"] >= 1

    assert main(["ls", str(closed_cache), "--limit", "3"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["id", "namespace", "created"]
    assert "gone soon" in lines[1]
    assert "expired" in lines[1]
    assert "what is the capital of France?" in lines[2]
    assert lines[-1] == "3 of 42 entries, newest first; --limit N shows more, --limit 0 all"
    assert main(["ls", str(closed_cache), "--namespace", "geo", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"] == 2
    assert [e["query"] for e in data["entries"]] == ["gone soon", "what is the capital of France?"]
    first, second = data["entries"]
    assert first["expired"] is True
    assert second["expired"] is False
    assert second["expires_at"] is None
    # the payload: query, response, metadata as UTF-8 and the float32 vector
    assert (
        second["size"]
        == len("what is the capital of France?")
        + len("Paris")
        + len(json.dumps({"k": 1}, separators=(",", ":")))
        + 4 * DIM
    )
    assert main(["ls", str(closed_cache), "--limit", "0", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["entries"]) == 42

    assert _state(folder) == before  # no byte, no mtime changed; no -wal, -shm or lock
    assert folder.stat().st_mtime_ns == dir_mtime  # nothing was even created and removed


def test_reads_alone_beside_a_cache_open_in_this_process_change_nothing(
    closed_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SemanticCache(closed_cache, HashingEmbedder(dim=DIM)) as app:
        app.put("live question", "live answer")
        folder = closed_cache.parent
        before = _state(folder, skip=("-shm",))
        for argv in (["stats"], ["stats", "--json"], ["ls"], ["ls", "--json", "--limit", "0"]):
            assert main([argv[0], str(closed_cache), *argv[1:]]) == 0
        capsys.readouterr()
        assert _state(folder, skip=("-shm",)) == before
        app.put("after inspection", "still works")  # the lock and the file are intact
        assert app.get("after inspection") is not None
        assert lock_holder(str(closed_cache)) is None  # this process: not another one


class _App:
    """A child process with the cache open, as an application would have it."""

    def __init__(self, path: Path, mode: str) -> None:
        code = textwrap.dedent(
            f"""
            import sys
            from semcache import SemanticCache
            from semcache.embedders import HashingEmbedder
            cache = SemanticCache({str(path)!r}, HashingEmbedder(dim={DIM}),
                                  multi_process_mode={mode!r})
            cache.put("from the app", "hello")
            print("ready", flush=True)
            for line in sys.stdin:
                cmd, _, text = line.rstrip("\\n").partition(" ")
                if cmd == "put":
                    cache.put(text, "answer to " + text)
                    print("ok", flush=True)
                elif cmd == "get":
                    hit = cache.get(text)
                    print("hit" if hit is not None else "miss", flush=True)
            cache.close()
            """
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.ask(None) == "ready"

    def ask(self, command: str | None) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        try:
            assert self.proc.wait(timeout=60) == 0
        finally:
            self.proc.stdout.close()


@pytest.fixture
def app(closed_cache: Path, request: pytest.FixtureRequest) -> Iterator[_App]:
    child = _App(closed_cache, getattr(request, "param", "single"))
    try:
        yield child
    finally:
        child.close()


def test_stats_ls_beside_another_process_and_vacuum_refused(
    closed_cache: Path, app: _App, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = closed_cache.parent
    assert app.ask("put written by the app") == "ok"
    before = _state(folder, skip=("-shm",))
    assert main(["stats", str(closed_cache)]) == 0
    assert "entries      44\n" in capsys.readouterr().out
    assert main(["ls", str(closed_cache), "--limit", "2", "--json"]) == 0
    queries = [e["query"] for e in json.loads(capsys.readouterr().out)["entries"]]
    assert queries == ["written by the app", "from the app"]

    holder = lock_holder(str(closed_cache))
    assert holder is not None
    assert (holder.pid, holder.mode) == (app.proc.pid, "single")
    assert main(["vacuum", str(closed_cache)]) == 1
    err = capsys.readouterr().err
    assert f"process {app.proc.pid}" in err
    assert "single mode" in err
    assert "cache.vacuum()" in err
    assert "Nothing was changed" in err
    assert "multi_process_mode" not in err  # no advice a CLI user cannot act on
    assert _state(folder, skip=("-shm",)) == before  # stats, ls and the refusal wrote nothing

    assert app.ask("put still writing") == "ok"  # the application keeps working
    assert app.ask("get written by the app") == "hit"


@pytest.mark.parametrize("app", ["shared"], indirect=True)
def test_vacuum_joins_shared_mode_applications(
    closed_cache: Path, app: _App, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["vacuum", str(closed_cache)]) == 0
    assert capsys.readouterr().out == "removed 1 expired entries; 42 entries left\n"
    assert app.ask("get from the app") == "hit"
    assert app.ask("put after the vacuum") == "ok"


def test_vacuum_refuses_a_file_that_is_not_a_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.sqlite"
    conn = apsw.Connection(str(other))
    conn.execute("CREATE TABLE t(x)")
    conn.close()
    before = other.read_bytes()
    for command in ("vacuum", "stats", "ls"):
        assert main([command, str(other)]) == 1
        assert "not a semcache cache" in capsys.readouterr().err
    assert other.read_bytes() == before  # vacuum did not add semcache's tables
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 100)
    assert main(["stats", str(text)]) == 1
    assert "not a healthy SQLite database" in capsys.readouterr().err


def test_a_file_changed_during_an_immutable_read_is_read_again(closed_cache: Path) -> None:
    """Without a -wal the file is read as immutable; if an application changed it
    meanwhile, the read is repeated."""
    inspected = CacheFile(closed_cache)
    calls = []

    def change_once(conn: object) -> int:
        calls.append(1)
        if len(calls) == 1:
            with SemanticCache(closed_cache, HashingEmbedder(dim=DIM)) as cache:
                cache.put("written meanwhile", "x")
        return len(calls)

    assert inspected._read(change_once) == 2
    assert inspected.count() == 43
