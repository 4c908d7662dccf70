"""``semcache serve`` started as a real process, called by the official ``openai`` client,
in front of a real OpenAI-compatible upstream on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from chat_upstream import Upstream, running_upstream  # noqa: E402

from semcache.integrations.chat import tenant_of  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
Q = "What is the capital of France?"
PARAPHRASE = "What's the capital city of France?"
SYSTEM = {"role": "system", "content": "You are terse."}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with running_upstream() as state:
        yield state


def _start(upstream: Upstream, tmp_path: Path, *extra: str) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    log = (tmp_path / "proxy.log").open("wb")
    cmd = [sys.executable, "-m", "semcache", "serve", "--upstream", upstream.url]
    cmd += ["--port", str(port), "--path", str(tmp_path / "proxy.sqlite3"), *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # wait for the process to listen (it loads the embedding model first)
            assert proc.poll() is None, (tmp_path / "proxy.log").read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).json() == {"status": "ok"}:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.fixture
def proxy(upstream: Upstream, tmp_path: Path) -> Iterator[str]:
    yield from _start(upstream, tmp_path)


def client(base: str, key: str = "sk-test") -> Any:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)


def ask(c: Any, text: str = Q, *, system: dict[str, str] = SYSTEM, **kw: Any) -> Any:
    params: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [system, {"role": "user", "content": text}],
        "temperature": 0,
        **kw,
    }
    return c.chat.completions.with_raw_response.create(**params)


@pytest.mark.slow
def test_proxy_serves_repeats_and_paraphrases_and_keeps_walls(
    upstream: Upstream, proxy: str, tmp_path: Path
) -> None:
    with client(proxy) as c:
        first = ask(c)
        assert first.headers["x-semcache"] == "miss"
        text = first.parse().choices[0].message.content
        assert text == f"answer #1 to: {Q}"
        assert upstream.headers[0]["authorization"] == "Bearer sk-test"  # forwarded

        assert ask(c).headers["x-semcache"].startswith("hit; layer=exact")
        para = ask(c, PARAPHRASE)
        assert para.headers["x-semcache"].startswith("hit; layer=semantic")
        assert para.parse().choices[0].message.content == text
        chunks = list(ask(c, PARAPHRASE, stream=True).parse())
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == text
        assert upstream.chat_calls == 1

        assert ask(c, model="gpt-4o").headers["x-semcache"] == "miss"
        other = {"role": "system", "content": "Answer in French."}
        assert ask(c, system=other).headers["x-semcache"] == "miss"
        assert upstream.chat_calls == 3

        # A streamed miss passes through and is stored once complete.
        streamed = list(ask(c, "How do I bake bread?", stream=True).parse())
        assert len(streamed) > 3
        assert ask(c, "How do I bake bread?").headers["x-semcache"].startswith("hit")
        assert upstream.chat_calls == 4

        assert [m.id for m in c.models.list()] == ["m1"]
        assert upstream.other_calls == ["GET /v1/models"]

        upstream.mode = "error"
        with pytest.raises(openai.InternalServerError):
            ask(c, "Is an error stored?")
        upstream.mode = "ok"
        assert ask(c, "Is an error stored?").headers["x-semcache"] == "miss"

    stats = httpx.get(f"{proxy}/stats").json()
    assert stats["proxy"]["hit"] >= 4
    namespaces = stats["cache"]["entries"]
    assert any(ns.startswith("chat:gpt-4o-mini:") for ns in namespaces)
    assert any(ns.startswith("chat:gpt-4o:") for ns in namespaces)
    labels = [stats["labels"][ns] for ns in namespaces]
    assert {
        "model": "gpt-4o-mini",
        "turns": 1,
        "system": "You are terse.",
        "params": ["temperature"],
    } in labels
    assert any(label.get("system") == "Answer in French." for label in labels)
    # The API key is never stored.
    for path in tmp_path.glob("proxy.sqlite3*"):
        assert b"sk-test" not in path.read_bytes()


@pytest.mark.slow
def test_proxy_single_flight_across_clients(upstream: Upstream, proxy: str) -> None:
    gate = upstream.hold()
    results: list[Any] = [None, None]

    def call(i: int) -> None:
        with client(proxy) as c:
            results[i] = ask(c)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    threads[0].start()
    assert upstream.wait_for_calls(1)
    threads[1].start()
    # The second request is in the proxy once the proxy counts two chat requests open;
    # whether it joins the flight or finds the stored answer, upstream sees one call.
    deadline = time.monotonic() + 30
    while httpx.get(f"{proxy}/stats").json()["in_flight"]["followers"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    gate.set()
    for t in threads:
        t.join()
    assert upstream.chat_calls == 1
    assert sorted(r.headers["x-semcache"] for r in results) == ["miss", "miss; shared"]


@pytest.mark.slow
def test_proxy_tenant_header_keeps_keys_apart(upstream: Upstream, tmp_path: Path) -> None:
    for base in _start(upstream, tmp_path, "--tenant-header", "authorization", "--exact-only"):
        with client(base, "sk-a") as a, client(base, "sk-b") as b:
            ask(a)
            assert ask(b).headers["x-semcache"] == "miss"
            assert ask(a).headers["x-semcache"].startswith("hit")
            assert upstream.chat_calls == 2
        namespaces = httpx.get(f"{base}/stats").json()["cache"]["entries"]
        assert len(namespaces) == 2
        assert tenant_of("Bearer sk-a") != tenant_of("Bearer sk-b")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream", "api.openai.com/v1"], "not an http(s) URL"),
        (["--upstream", "ftp://x/v1"], "not an http(s) URL"),
        (["--upstream", "http://x/v1", "--port", "70000"], "1..65535"),
        (["--upstream", "http://x/v1", "--threshold", "2"], "cosine similarity"),
        (["--upstream", "http://x/v1", "--max-temperature", "-1"], ">= 0"),
        (["--upstream", "http://x/v1", "--error-budget", "1"], "an error budget in (0, 1)"),
        (["--upstream", "http://x/v1", "--error-budget", "0"], "an error budget in (0, 1)"),
        (["--upstream", "http://x/v1", "--answer-similarity", "0"], "a cosine in (0, 1]"),
        (["--upstream", "http://x/v1", "--answer-similarity", "1.5"], "a cosine in (0, 1]"),
    ],
)
def test_serve_rejects_bad_arguments(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from semcache._cli import main

    with pytest.raises(SystemExit) as info:
        main(["serve", *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def _budgets_served(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """``semcache serve`` made to start no server; the list gets the budgets
    (``Engine.budgets``) of the caches it builds its app on."""
    import semcache.integrations.server as server
    from semcache._cache import engine_of
    from semcache.integrations._flow import core_of

    budgets: list[Any] = []
    real = server.create_app

    def create_app(cache: Any, upstream: str, **kw: Any) -> Any:
        budgets.append(engine_of(core_of(cache)).budgets)
        return real(cache, upstream, **kw)

    monkeypatch.setattr(server, "create_app", create_app)
    monkeypatch.setattr(server, "run", lambda app, host, port: None)
    return budgets


def test_serve_error_budget_reaches_the_cache(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from semcache._cli import main

    budgets = _budgets_served(monkeypatch)
    args = ["serve", "--upstream", "http://x/v1", "--exact-only", "--error-budget", "0.01"]
    assert main(args) == 0
    (budget,) = budgets
    assert budget is not None
    assert budget.budget == 0.01
    assert "proxy for http://x/v1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ["--answer-similarity", "0.95"],
        ["--answer-similarity", "0.95", "--error-budget", "0.01", "--exact-only"],
    ],
)
def test_serve_answer_similarity_needs_a_budget_and_a_model(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import semcache.integrations.server as server
    from semcache._cli import main

    started: list[Any] = []
    monkeypatch.setattr(server, "create_app", lambda *a, **kw: started.append(a))
    assert main(["serve", "--upstream", "http://x/v1", *args]) == 1
    assert "--answer-similarity needs --error-budget" in capsys.readouterr().err
    assert started == []  # refused before any cache or app


def test_serve_answer_similarity_reaches_the_cache(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from semcache._cli import main

    seen = _budgets_served(monkeypatch)
    args = ["serve", "--upstream", "http://x/v1", "--error-budget", "0.01"]
    assert main([*args, "--answer-similarity", "0.95"]) == 0
    (budgets,) = seen
    assert budgets.similar == 0.95
    assert "proxy for http://x/v1" in capsys.readouterr().out
