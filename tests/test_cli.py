"""The ``semcache`` command: ``demo`` end to end (as a process, with the real model),
again on the same file, interactively; ``stats`` and ``vacuum`` (more in
test_cli_inspect.py and test_cli_args.py)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from semcache._cli import SimulatedLLM, main
from semcache._demo_data import ANSWERS, SESSION

pytestmark = pytest.mark.slow

CALL = re.compile(
    r"^\s*(?P<n>\d+)  "
    r"(?P<result>hit  exact|hit  semantic (?P<sim>\d\.\d{3})"
    r"|miss(?: \(best (?P<best>-?\d\.\d{3})\))?)"
    r"\s+(?P<latency>[\d.]+ m?s)  (?P<question>.+?)(?P<wrong>  <-- WRONG ANSWER)?$"
)
LOOK_ALIKES = {
    "Can I pause my subscription instead of cancelling?",
    "What is the capital of Austria?",
    "How much does shipping cost?",
    "How do I sort a list in Python?",
    "How do I upgrade my subscription?",
}


def _calls(output: str) -> list[re.Match[str]]:
    return [m for line in output.splitlines() if (m := CALL.match(line))]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """``python -m semcache demo`` in a fresh process, as a user runs it."""
    path = tmp_path_factory.mktemp("demo") / "demo.sqlite"
    done = subprocess.run(
        [sys.executable, "-m", "semcache", "demo", "--llm-latency", "0", "--path", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return path, done.stdout, done.stderr


def test_demo_prints_every_call_and_a_summary(first_run: tuple[Path, str, str]) -> None:
    path, out, err = first_run
    calls = _calls(out)
    assert [int(m["n"]) for m in calls] == list(range(1, len(SESSION) + 1))
    assert [m["question"] for m in calls] == [q for q, _ in SESSION]
    assert not any(m["wrong"] for m in calls)
    by_question = {m["question"]: m for m in calls}
    assert calls[0]["result"] == "miss"  # the cache starts empty
    assert by_question["how do I reset my password?"]["result"] == "hit  exact"
    paraphrase = by_question["I forgot my password. How can I reset it?"]
    assert paraphrase["sim"] is not None
    assert float(paraphrase["sim"]) >= 0.85
    for question in LOOK_ALIKES:  # similar words, another meaning: never served
        assert by_question[question]["result"].startswith("miss"), question
    hits = [m for m in calls if m["result"].startswith("hit")]
    assert len(hits) >= len(SESSION) // 3
    summary = out[out.index("\nsummary\n") :]
    assert f"calls            {len(SESSION)}" in summary
    assert f"hits             {len(hits)} (" in summary
    assert f"LLM calls        {len(SESSION) - len(hits)} made, {len(hits)} saved" in summary
    assert "latency p50 hit" in summary
    assert "latency p50 miss" in summary
    assert "time saved" in summary
    assert "wrong answers    0" in summary
    # the model load is drawn on stderr by semcache.ProgressBar, to its end
    assert re.search(r" \[#{24}\] 100% (\d+)/\1 \(", err), err
    assert path.is_file()


def test_demo_again_on_the_same_file_hits_every_question(
    first_run: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = first_run[0]
    assert main(["demo", "--llm-latency", "0", "--path", str(path)]) == 0
    out = capsys.readouterr().out
    calls = _calls(out)
    assert len(calls) == len(SESSION)
    assert all(m["result"].startswith("hit") for m in calls)
    assert f"LLM calls        0 made, {len(SESSION)} saved" in out


def test_stats_and_vacuum(
    first_run: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = first_run[0]
    misses = sum(m["result"].startswith("miss") for m in _calls(first_run[1]))
    assert main(["stats", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"entries      {misses}\n" in out
    assert f"  demo             {misses}\n" in out
    assert "vectors      dim 384, float32" in out
    assert "all-MiniLM-L6-v2" in out  # the default embedder's fingerprint (onnx or st)
    assert main(["stats", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["total_entries"] == misses
    assert info["entries"] == {"demo": misses}
    assert info["dim"] == 384
    assert main(["vacuum", str(path)]) == 0
    assert capsys.readouterr().out == f"removed 0 expired entries; {misses} entries left\n"


def test_interactive_demo_reads_questions(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    typed = "How do I reset my password?\nI forgot my password. How can I reset it?\n\nignored\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(typed))
    assert main(["demo", "-i", "--llm-latency", "0", "--threshold", "0.8"]) == 0
    out = capsys.readouterr().out
    calls = _calls(out)
    assert [m["result"].split(" ")[0] for m in calls] == ["miss", "hit"]
    assert ANSWERS["reset_password"] in out
    assert "similarity threshold 0.8" in out
    temp = re.search(r"cache file  (\S+) \(temporary", out)
    assert temp is not None
    assert not Path(temp[1]).exists()  # the temporary cache is removed


def test_stats_of_a_missing_file_fails_without_creating_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.sqlite"
    assert main(["stats", str(missing)]) == 1
    assert "no cache file" in capsys.readouterr().err
    assert not missing.exists()
    assert main(["vacuum", str(missing)]) == 1


@pytest.mark.parametrize(
    "argv",
    [["demo", "--threshold", "1.5"], ["demo", "--llm-latency", "-1"], ["nope"], []],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: semcache" in capsys.readouterr().err


def test_simulated_llm_latency_is_reproducible_and_injected() -> None:
    slept: list[float] = []
    llm = SimulatedLLM(1.0, sleep=slept.append)
    question, intent = SESSION[0]
    assert llm(question) == ANSWERS[intent]
    assert llm("something nobody asked").startswith("(simulated LLM)")
    assert slept == [llm.latency(question), llm.latency("something nobody asked")]
    latencies = [llm.latency(q) for q, _ in SESSION]
    assert all(0.55 <= s <= 1.45 for s in latencies)
    assert len(set(latencies)) > len(SESSION) // 2
    assert llm.calls == 2
    assert SimulatedLLM(0.0, sleep=slept.append)(question) == ANSWERS[intent]
    assert len(slept) == 2  # no wait at all with a zero latency


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "semcache"
    assert script.is_file(), "reinstall: pip install -e ."
    done = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0
    for command in ("demo", "stats", "ls", "vacuum"):
        assert command in done.stdout
