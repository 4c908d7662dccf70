"""The doors with an error budget: their own LLM calls teach it as ``get_or_put``'s do,
and a hit they serve can be reported wrong (``cache.feedback``).

The official ``openai`` client (CachingTransport, AsyncCachingTransport, the proxy's
app), LiteLLM and LangChain's cache path, against the real OpenAI-compatible upstream on
127.0.0.1 (``tests/chat_upstream.py``). Similarities are exact: the cache's embedder maps
``"topic <t> #<i>"`` to the i-th paraphrase of topic ``t`` at cosine 0.95 from the
topic's axis (``"topic <t>"``), as ``tests/test_error_budget.py`` does with
``embedding=``. Where a test is about one decision (a verification, a hit), the
namespace policy's ``decide`` is replaced, as there.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from chat_upstream import Upstream, running_upstream  # noqa: E402

from semcache import (  # noqa: E402
    AsyncSemanticCache,
    CallableEmbedder,
    InvalidInputError,
    SemanticCache,
)
from semcache._budget_policy import Decision  # noqa: E402
from semcache._cache import engine_of  # noqa: E402
from semcache.integrations._flow import core_of  # noqa: E402
from semcache.integrations._wire import completion_answer  # noqa: E402
from semcache.integrations.openai import AsyncCachingTransport, CachingTransport  # noqa: E402

DIM = 16
SYSTEM = {"role": "system", "content": "You are terse."}
_TOPIC = re.compile(r"topic (\d+)(?: #(\d+))?$")


class Clock:
    """A clock that stands still (counts sync every 32 observations)."""

    def __call__(self) -> float:
        return 1000.0


def vec(topic: int, i: int, sim: float = 0.95) -> np.ndarray:
    """The i-th paraphrase of ``topic`` (i = -1: its axis); see tests/test_error_budget.py."""
    v = np.zeros(DIM, dtype=np.float32)
    if i < 0:
        v[topic] = 1.0
        return v
    v[topic] = sim
    angle = (i // 8) * 0.37
    v[8 + (i % 8)] = math.sqrt(1 - sim * sim) * math.cos(angle)
    v[8 + ((i + 1) % 8)] += math.sqrt(1 - sim * sim) * math.sin(angle)
    return v


def _embed(texts: Sequence[str]) -> np.ndarray:
    rows = []
    for text in texts:
        m = _TOPIC.match(text)
        assert m is not None, text
        rows.append(vec(int(m.group(1)), -1 if m.group(2) is None else int(m.group(2))))
    return np.stack(rows)


EMBEDDER = CallableEmbedder(_embed, DIM, "topics:16")


def cache_kwargs(**kw: Any) -> dict[str, Any]:
    return {
        "error_budget": 0.1,
        "guards": None,  # "#3" and "#5" differ by a number: the guards would refuse
        "index_backend": "flat",
        "clock": Clock(),
        **kw,
    }


def force(cache: Any, ns: str, action: str) -> None:
    """Make namespace ``ns``'s policy decide ``action`` for every candidate."""
    budgets = engine_of(core_of(cache)).budgets
    assert budgets is not None
    pol = budgets.policy(ns)
    real = pol.decide

    def decide(ev: Any, record: Any = None, features: Any = None) -> Decision:
        d = real(ev, record, features)
        if ev is not None:
            d = Decision(action, d.risk, d.upper, 0.3, 1.0)  # type: ignore[arg-type]
        return d

    pol.decide = decide


def only_namespace(cache: Any) -> str:
    (ns,) = core_of(cache).stats()["entries"]
    return str(ns)


def record(cache: Any, ns: str, text: str) -> list[list[float]] | None:
    """The budget record of the entry stored for ``text`` (its pairs)."""
    eng = engine_of(core_of(cache))
    entry = eng.store.get_by_key(eng.key(ns, text))
    assert entry is not None
    fresh = eng.store.get_by_ids([entry.id])[entry.id]
    return None if fresh.record is None else json.loads(fresh.record)


def budget_stats(cache: Any) -> dict[str, Any]:
    return dict(core_of(cache).stats()["budget"])


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with running_upstream() as state:
        yield state


def paris_for(topic: int) -> Any:
    """Upstream: ``"Paris."`` to every question of ``topic``, another answer otherwise."""
    prefix = f"topic {topic}"

    def reply(text: str, n: int) -> str:
        return "Paris." if text.startswith(prefix) else f"answer #{n}"

    return reply


_OPEN: list[Any] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


# -- openai, sync ---------------------------------------------------------------------------
class OpenAIDoor:
    """The official client on a CachingTransport (``transport`` for feedback)."""

    def __init__(self, upstream: Upstream, cache: SemanticCache) -> None:
        self.transport = CachingTransport(cache)
        self.client = openai.OpenAI(
            base_url=upstream.url,
            api_key="sk-test",
            max_retries=0,
            http_client=httpx.Client(transport=self.transport),
        )
        _OPEN.append(self.client)

    def ask(self, text: str, **kw: Any) -> Any:
        return self.client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[SYSTEM, {"role": "user", "content": text}],
            temperature=0,
            **kw,
        )


def test_openai_verification_serves_the_fresh_answer_and_learns(
    upstream: Upstream, tmp_path: Path
) -> None:
    with SemanticCache(tmp_path / "c.db", EMBEDDER, **cache_kwargs()) as cache:
        door = OpenAIDoor(upstream, cache)
        upstream.reply = paris_for(0)
        assert door.ask("topic 0").headers["x-semcache"] == "miss"
        ns = only_namespace(cache)
        force(cache, ns, "verify")
        verified = door.ask("topic 0 #1")
        assert verified.headers["x-semcache"] == "miss"
        assert verified.parse().choices[0].message.content == "Paris."
        assert upstream.chat_calls == 2
        # Same content, other id, created and usage: the stored answer was right.
        assert record(cache, ns, "topic 0") == [[pytest.approx(0.95, abs=1e-3), 1.0]]
        stats = budget_stats(cache)
        assert (stats["verifications"], stats["observations"]) == (1, 1)
        # Another answer now: the stored one was wrong at this similarity.
        upstream.reply = lambda text, n: "Lyon."
        assert door.ask("topic 0 #2").parse().choices[0].message.content == "Lyon."
        pairs = record(cache, ns, "topic 0")
        assert pairs is not None
        assert [p[1] for p in pairs] == [1.0, 0.0]
        assert budget_stats(cache)["verifications"] == 2
        # Both fresh answers were stored, as on any miss.
        assert core_of(cache).stats()["total_entries"] == 3


def test_openai_traffic_learns_to_serve_and_never_serves_the_wrong_answer(
    upstream: Upstream, tmp_path: Path
) -> None:
    with SemanticCache(tmp_path / "c.db", EMBEDDER, **cache_kwargs()) as cache:
        door = OpenAIDoor(upstream, cache)
        upstream.reply = lambda text, n: "Lyon."  # stored for the topic's axis: wrong
        door.ask("topic 0")
        ns = only_namespace(cache)
        upstream.reply = paris_for(0)
        served = []
        for i in range(1, 161):
            response = door.ask(f"topic 0 #{i}")
            content = response.parse().choices[0].message.content
            assert content == "Paris."  # never the wrong stored answer
            served.append(response.headers["x-semcache"].startswith("hit"))
        stats = budget_stats(cache)
        pairs = record(cache, ns, "topic 0")
    # Nothing is known at first; the door's own calls teach the budget to serve.
    assert not any(served[:20])
    assert sum(served[-60:]) > 20
    assert stats["observations"] >= 20
    assert stats["verifications"] > 0
    assert pairs is not None
    assert pairs
    assert all(right == 0.0 for _, right in pairs)


def test_openai_streamed_verification_learns(upstream: Upstream, tmp_path: Path) -> None:
    with SemanticCache(tmp_path / "c.db", EMBEDDER, **cache_kwargs()) as cache:
        door = OpenAIDoor(upstream, cache)
        upstream.reply = paris_for(0)
        door.ask("topic 0")
        ns = only_namespace(cache)
        force(cache, ns, "verify")
        chunks = list(
            door.client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[SYSTEM, {"role": "user", "content": "topic 0 #1"}],
                temperature=0,
                stream=True,
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Paris."
        assert record(cache, ns, "topic 0") == [[pytest.approx(0.95, abs=1e-3), 1.0]]
        assert budget_stats(cache)["verifications"] == 1


def test_an_unstored_tool_call_teaches_and_an_error_does_not(
    upstream: Upstream, tmp_path: Path
) -> None:
    with SemanticCache(tmp_path / "c.db", EMBEDDER, **cache_kwargs()) as cache:
        door = OpenAIDoor(upstream, cache)
        upstream.reply = paris_for(0)
        door.ask("topic 0")
        ns = only_namespace(cache)
        force(cache, ns, "verify")
        upstream.mode = "error"
        with pytest.raises(openai.InternalServerError):
            door.ask("topic 0 #1")
        assert record(cache, ns, "topic 0") is None
        upstream.mode = "length"  # cut short: says nothing of the stored answer
        door.ask("topic 0 #2")
        assert record(cache, ns, "topic 0") is None
        upstream.mode = "tool_calls"  # not stored, but a complete (other) answer
        door.ask("topic 0 #3")
        assert record(cache, ns, "topic 0") == [[pytest.approx(0.95, abs=1e-3), 0.0]]
        assert core_of(cache).stats()["total_entries"] == 1
        # Three verifications paid for (the error came back as a response), one observed.
        stats = budget_stats(cache)
        assert (stats["verifications"], stats["observations"]) == (3, 1)


def test_openai_feedback_on_a_hit(upstream: Upstream, tmp_path: Path) -> None:
    with SemanticCache(tmp_path / "c.db", EMBEDDER, **cache_kwargs()) as cache:
        door = OpenAIDoor(upstream, cache)
        upstream.reply = paris_for(0)
        first = door.ask("topic 0").parse()
        ns = only_namespace(cache)
        force(cache, ns, "serve")
        hit = door.ask("topic 0 #1")
        assert hit.headers["x-semcache"].startswith("hit; layer=semantic")
        answer = hit.parse()
        assert answer.id.startswith("chatcmpl-semcache-")
        with pytest.raises(InvalidInputError):
            door.transport.feedback(answer.id, "no")  # type: ignore[arg-type]
        assert door.transport.feedback(first.id, False) is False  # a miss: nothing to report
        assert door.transport.feedback(answer.id, False) is True
        assert door.transport.feedback(answer.id, False) is False  # one report per answer
        assert record(cache, ns, "topic 0") == [[pytest.approx(0.95, abs=1e-3), 0.0]]
        assert budget_stats(cache)["feedback"] == 1


# -- openai, async ----------------------------------------------------------------------------
def test_async_openai_learns_and_takes_feedback(upstream: Upstream, tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncSemanticCache(tmp_path / "c.db", EMBEDDER, **cache_kwargs()) as cache:
            transport = AsyncCachingTransport(cache)
            client = openai.AsyncOpenAI(
                base_url=upstream.url,
                api_key="sk-test",
                max_retries=0,
                http_client=httpx.AsyncClient(transport=transport),
            )

            async def ask(text: str, **kw: Any) -> Any:
                return await client.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini",
                    messages=[SYSTEM, {"role": "user", "content": text}],
                    temperature=0,
                    **kw,
                )

            try:
                upstream.reply = paris_for(0)
                await ask("topic 0")
                ns = only_namespace(cache)
                force(cache, ns, "verify")
                verified = await ask("topic 0 #1")
                assert verified.headers["x-semcache"] == "miss"
                assert record(cache, ns, "topic 0") == [[pytest.approx(0.95, abs=1e-3), 1.0]]
                stream = await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[SYSTEM, {"role": "user", "content": "topic 0 #2"}],
                    temperature=0,
                    stream=True,
                )
                async for _ in stream:
                    pass
                assert budget_stats(cache)["verifications"] == 2
                force(cache, ns, "serve")
                hit = await ask("topic 0 #3")
                assert hit.headers["x-semcache"].startswith("hit; layer=semantic")
                assert await transport.feedback(hit.parse().id, False) is True
                assert budget_stats(cache)["feedback"] == 1
            finally:
                await client.close()

    asyncio.run(main())


# -- the proxy's app --------------------------------------------------------------------------
def test_proxy_feedback_endpoint(upstream: Upstream, tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from semcache.integrations.server import create_app

    with SemanticCache(tmp_path / "c.db", EMBEDDER, **cache_kwargs()) as cache:
        upstream.reply = paris_for(0)
        with TestClient(create_app(cache, upstream.url)) as proxy:

            def ask(text: str) -> Any:
                body = {
                    "model": "gpt-4o-mini",
                    "messages": [SYSTEM, {"role": "user", "content": text}],
                    "temperature": 0,
                }
                return proxy.post("/v1/chat/completions", json=body)

            assert ask("topic 0").headers["x-semcache"] == "miss"
            ns = only_namespace(cache)
            force(cache, ns, "serve")
            hit = ask("topic 0 #1")
            assert hit.headers["x-semcache"].startswith("hit; layer=semantic")
            answer_id = hit.json()["id"]
            assert proxy.post("/feedback", content=b"{").status_code == 400
            assert proxy.post("/feedback", json={"id": answer_id}).status_code == 400
            reported = proxy.post("/feedback", json={"id": answer_id, "correct": False})
            assert (reported.status_code, reported.json()) == (200, {"reported": True})
            again = proxy.post("/feedback", json={"id": answer_id, "correct": False})
            assert again.status_code == 404
        assert record(cache, ns, "topic 0") == [[pytest.approx(0.95, abs=1e-3), 0.0]]


# -- the answer read from a stored completion ---------------------------------------------------
def test_completion_answer_reads_content_and_tool_calls_without_ids() -> None:
    def completion(message: dict[str, Any], n: int) -> str:
        body = {"id": f"c{n}", "created": n, "choices": [{"index": 0, "message": message}]}
        return json.dumps({**body, "usage": {"total_tokens": n}})

    assert completion_answer(completion({"content": "Paris."}, 1)) == "Paris."
    call = {"type": "function", "function": {"name": "f", "arguments": "{}"}}
    one = completion({"content": None, "tool_calls": [{"id": "a", **call}]}, 1)
    two = completion({"content": None, "tool_calls": [{"id": "b", **call}]}, 2)
    assert (
        completion_answer(one)
        == completion_answer(two)
        != completion_answer(completion({"content": ""}, 3))
    )
    assert completion_answer("plain text") == "plain text"
    assert completion_answer('{"choices": []}') == '{"choices": []}'


# -- LiteLLM ----------------------------------------------------------------------------------
@pytest.fixture
def litellm() -> Iterator[Any]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
    module = pytest.importorskip("litellm")
    yield module
    with warnings.catch_warnings():  # its logging worker's event loop, left unclosed
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def litellm_params(upstream: Upstream, text: str) -> dict[str, Any]:
    return {
        "model": "openai/gpt-4o-mini",
        "messages": [SYSTEM, {"role": "user", "content": text}],
        "temperature": 0,
        "api_base": upstream.url,
        "api_key": "sk-test",
        "num_retries": 0,
    }


@pytest.mark.filterwarnings(r"ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning")
def test_litellm_learns_and_takes_feedback(
    upstream: Upstream, tmp_path: Path, litellm: Any
) -> None:
    from semcache.integrations.litellm import SemanticLiteLLM

    with SemanticCache(tmp_path / "c.db", EMBEDDER, **cache_kwargs()) as cache:
        llm = SemanticLiteLLM(cache)
        upstream.reply = paris_for(0)
        llm.completion(**litellm_params(upstream, "topic 0"))
        ns = only_namespace(cache)
        force(cache, ns, "verify")
        fresh = llm.completion(**litellm_params(upstream, "topic 0 #1"))
        assert fresh.choices[0].message.content == "Paris."
        assert "semcache" not in fresh._hidden_params
        assert record(cache, ns, "topic 0") == [[pytest.approx(0.95, abs=1e-3), 1.0]]
        assert budget_stats(cache)["verifications"] == 1
        force(cache, ns, "serve")
        hit = llm.completion(**litellm_params(upstream, "topic 0 #2"))
        assert hit._hidden_params["semcache"]["id"] == hit.id
        assert llm.feedback(hit.id, False) is True
        assert llm.feedback(hit.id, False) is False
        pairs = record(cache, ns, "topic 0")
        assert pairs is not None
        assert [p[1] for p in pairs] == [1.0, 0.0]
        assert upstream.chat_calls == 2


@pytest.mark.filterwarnings(r"ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning")
def test_litellm_async_learns_and_takes_feedback(
    upstream: Upstream, tmp_path: Path, litellm: Any
) -> None:
    from semcache.integrations.litellm import SemanticLiteLLM

    async def main() -> None:
        async with AsyncSemanticCache(tmp_path / "c.db", EMBEDDER, **cache_kwargs()) as cache:
            llm = SemanticLiteLLM(cache)
            upstream.reply = paris_for(0)
            await llm.acompletion(**litellm_params(upstream, "topic 0"))
            ns = only_namespace(cache)
            force(cache, ns, "verify")
            upstream.reply = lambda text, n: "Lyon."
            fresh = await llm.acompletion(**litellm_params(upstream, "topic 0 #1"))
            assert fresh.choices[0].message.content == "Lyon."
            assert record(cache, ns, "topic 0") == [[pytest.approx(0.95, abs=1e-3), 0.0]]
            force(cache, ns, "serve")
            hit = await llm.acompletion(**litellm_params(upstream, "topic 0 #2"))
            assert await llm.afeedback(hit.id, True) is True
            assert budget_stats(cache)["feedback"] == 1

    asyncio.run(main())


# -- LangChain: lookup, then the model, then update ----------------------------------------------
def test_langchain_update_teaches_what_lookup_judged(tmp_path: Path) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.globals import set_llm_cache
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from semcache.integrations.langchain import SemanticLLMCache

    with SemanticCache(tmp_path / "c.db", EMBEDDER, **cache_kwargs()) as cache:
        lc = SemanticLLMCache(cache)
        set_llm_cache(lc)
        try:
            model = FakeListChatModel(responses=["Paris.", "Paris.", "Lyon.", "unused"])
            assert model.invoke("topic 0").content == "Paris."
            ns = only_namespace(cache)
            force(cache, ns, "verify")
            assert model.invoke("topic 0 #1").content == "Paris."
            assert record(cache, ns, "topic 0") == [[pytest.approx(0.95, abs=1e-3), 1.0]]
            assert model.invoke("topic 0 #2").content == "Lyon."
            pairs = record(cache, ns, "topic 0")
            assert pairs is not None
            assert [p[1] for p in pairs] == [1.0, 0.0]
            assert budget_stats(cache)["verifications"] == 2
            force(cache, ns, "serve")
            hit = model.invoke("topic 0 #3")
            assert model.i == 3  # served from the cache
            mark = hit.response_metadata["semcache"]
            assert mark["layer"] == "semantic"
            assert lc.feedback(mark["id"], False) is True
            assert budget_stats(cache)["feedback"] == 1
        finally:
            set_llm_cache(None)


def test_langchain_async_update_teaches_what_alookup_judged(tmp_path: Path) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.globals import set_llm_cache
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from semcache.integrations.langchain import SemanticLLMCache

    async def main() -> None:
        async with AsyncSemanticCache(tmp_path / "c.db", EMBEDDER, **cache_kwargs()) as cache:
            lc = SemanticLLMCache(cache)
            set_llm_cache(lc)
            model = FakeListChatModel(responses=["Paris.", "Lyon.", "unused"])
            assert (await model.ainvoke("topic 0")).content == "Paris."
            ns = only_namespace(cache)
            force(cache, ns, "verify")
            assert (await model.ainvoke("topic 0 #1")).content == "Lyon."
            assert record(cache, ns, "topic 0") == [[pytest.approx(0.95, abs=1e-3), 0.0]]
            force(cache, ns, "serve")
            hit = await model.ainvoke("topic 0 #2")
            assert model.i == 2
            assert await lc.afeedback(hit.response_metadata["semcache"]["id"], True) is True
            assert budget_stats(cache)["feedback"] == 1

    try:
        asyncio.run(main())
    finally:
        set_llm_cache(None)


def test_the_answer_view_covers_the_doors_namespaces_only(upstream: Upstream) -> None:
    with SemanticCache(None, EMBEDDER, **cache_kwargs()) as cache:
        budgets = engine_of(cache).budgets
        assert budgets is not None
        OpenAIDoor(upstream, cache)
        OpenAIDoor(upstream, cache)  # registered once
        assert list(budgets.views) == ["chat:"]
        one = json.dumps({"id": "a", "choices": [{"message": {"content": "Paris."}}]})
        two = json.dumps({"id": "b", "choices": [{"message": {"content": "paris. "}}]})
        assert budgets.same_in("chat:gpt-4o-mini:abc")(one, two)
        assert budgets.same_in("default") is budgets.same
        assert not budgets.same_in("default")(one, two)
    with SemanticCache(None, EMBEDDER, guards=None) as plain:  # no budget: nothing to do
        OpenAIDoor(upstream, plain)
        assert engine_of(plain).budgets is None
