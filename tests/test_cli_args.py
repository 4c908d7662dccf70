"""The ``semcache`` command's surface: ``--version``, a description for every
subcommand, and ``demo --path`` refused before any model is loaded."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from pathlib import Path

import apsw
import pytest

import semcache
from semcache import SemanticCache
from semcache import _cli as cli
from semcache._cli import main
from semcache.embedders import HashingEmbedder

ROOT = Path(__file__).resolve().parents[1]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"semcache-engine {semcache.__version__}\n"


def test_every_subcommand_has_a_description_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli._parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert set(sub.choices) == {"demo", "stats", "ls", "vacuum", "eval", "calibrate", "serve"}
    for name, command in sub.choices.items():
        assert command.description, name
        assert helps.get(name), name
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        assert command.description.split()[0] in capsys.readouterr().out


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The demo's embedder, replaced by one that records that it was asked for."""
    asked: list[str] = []

    def embedder() -> HashingEmbedder:
        asked.append("embedder")
        return HashingEmbedder(dim=16)

    monkeypatch.setattr(cli, "_demo_embedder", embedder)
    return asked


def _foreign_sqlite(path: Path) -> Path:
    conn = apsw.Connection(str(path))
    conn.execute("CREATE TABLE notes(x)")
    conn.close()
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing" / "c.sqlite", "does not exist"),
        (lambda d: d, "is a directory"),
        (lambda d: (d / "notes.txt", (d / "notes.txt").write_text("x" * 200))[0], "not a semcache"),
        (lambda d: _foreign_sqlite(d / "other.sqlite"), "not a semcache"),
    ],
    ids=["no-folder", "directory", "text-file", "other-sqlite"],
)
def test_demo_path_is_checked_before_the_model_loads(
    tmp_path: Path,
    no_model: list[str],
    capsys: pytest.CaptureFixture[str],
    make: object,
    message: str,
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    before = path.read_bytes() if path.is_file() else None
    assert main(["demo", "--llm-latency", "0", "--path", str(path)]) == 1
    captured = capsys.readouterr()
    assert message in captured.err
    assert f"--path {path}" in captured.err
    assert no_model == []  # refused before the embedder was even made
    assert "semcache demo:" not in captured.out
    if before is not None:
        assert path.read_bytes() == before
    else:
        assert not path.is_file() or path.is_dir()


def test_demo_path_held_by_another_process_is_refused(
    tmp_path: Path, no_model: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.sqlite"
    SemanticCache(path, HashingEmbedder(dim=16)).close()
    code = textwrap.dedent(
        f"""
        import sys
        from semcache import SemanticCache
        cache = SemanticCache({str(path)!r})
        print("ready", flush=True)
        sys.stdin.read()
        cache.close()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        assert main(["demo", "--llm-latency", "0", "--path", str(path)]) == 1
        err = capsys.readouterr().err
        assert f"process {child.pid}" in err
        assert no_model == []
    finally:
        child.stdin.close()
        assert child.wait(timeout=60) == 0
        child.stdout.close()


def test_demo_accepts_a_new_file_or_its_own_cache(
    tmp_path: Path, no_model: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "demo.sqlite"
    for _ in range(2):  # a new file, then the cache the first run left
        assert main(["demo", "--llm-latency", "0", "--path", str(path)]) == 0
        assert "summary" in capsys.readouterr().out
    assert no_model == ["embedder", "embedder"]
    empty = tmp_path / "empty.sqlite"
    empty.touch()  # an empty file is a new database to SQLite
    assert main(["demo", "--llm-latency", "0", "--path", str(empty)]) == 0
    capsys.readouterr()


def test_demo_path_of_another_embedder_is_refused_before_the_model_loads(
    tmp_path: Path,
    no_model: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "c.sqlite"
    with SemanticCache(path, HashingEmbedder(dim=8)) as cache:
        cache.put("q", "a")
    loaded: list[object] = []
    monkeypatch.setattr(cli, "_load_model", lambda embedder, bar: loaded.append(embedder))
    before = path.read_bytes()
    assert main(["demo", "--llm-latency", "0", "--path", str(path)]) == 1
    err = capsys.readouterr().err
    assert "was built with the embedder 'hashing-v1:dim=8" in err
    assert loaded == []
    assert path.read_bytes() == before


@pytest.mark.parametrize("argv", [["ls", "x", "--limit", "-1"], ["ls", "x", "--limit", "a"]])
def test_bad_ls_limits_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: semcache ls" in capsys.readouterr().err
