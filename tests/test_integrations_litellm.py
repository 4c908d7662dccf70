"""SemanticLiteLLM: real ``litellm.completion`` / ``acompletion`` calls against a real
OpenAI-compatible upstream on 127.0.0.1 (``api_base``)."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
litellm = pytest.importorskip("litellm")

from chat_upstream import Upstream, running_upstream  # noqa: E402

from semcache import AsyncSemanticCache, HashingEmbedder, OnnxEmbedder, SemanticCache  # noqa: E402
from semcache.integrations._flow import flight_key, flights_of  # noqa: E402
from semcache.integrations.chat import chat_key  # noqa: E402
from semcache.integrations.litellm import LITELLM_IGNORED, SemanticLiteLLM  # noqa: E402

# LiteLLM's own TypedDicts make pydantic warn when it first validates them.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning"
)

Q = "What is the capital of France?"
PARAPHRASE = "What's the capital city of France?"
SYSTEM = {"role": "system", "content": "You are terse."}


@pytest.fixture(scope="module", autouse=True)
def _litellm_leftovers() -> Iterator[None]:
    """LiteLLM leaves an event loop of its own unclosed (its logging worker); collect it
    here, where its ResourceWarning is known, instead of at the end of the session."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with running_upstream() as state:
        yield state


def params(upstream: Upstream, text: str = Q, **kw: Any) -> dict[str, Any]:
    return {
        "model": "openai/gpt-4o-mini",
        "messages": [SYSTEM, {"role": "user", "content": text}],
        "temperature": 0,
        "api_base": upstream.url,
        "api_key": "sk-test",
        "num_retries": 0,
        **kw,
    }


def test_repeat_and_paraphrase_are_model_responses_without_calls(upstream: Upstream) -> None:
    with SemanticCache(embedder=OnnxEmbedder(threads=1)) as cache:
        llm = SemanticLiteLLM(cache)
        first = llm.completion(**params(upstream))
        assert isinstance(first, litellm.ModelResponse)
        text = first.choices[0].message.content
        assert text == f"answer #1 to: {Q}"
        again = llm.completion(**params(upstream))
        assert isinstance(again, litellm.ModelResponse)
        assert again.choices[0].message.content == text
        assert again.usage.total_tokens == 0
        assert again.id != first.id
        assert again._hidden_params["semcache"]["layer"] == "exact"
        para = llm.completion(**params(upstream, PARAPHRASE))
        assert para.choices[0].message.content == text
        assert para._hidden_params["semcache"]["layer"] == "semantic"
        assert upstream.chat_calls == 1
        # Another model or system prompt is never served.
        llm.completion(**params(upstream, model="openai/gpt-4o"))
        other = params(upstream)
        other["messages"] = [{"role": "system", "content": "French."}, other["messages"][1]]
        llm.completion(**other)
        assert upstream.chat_calls == 3
        # Credentials are not part of the wall (and never stored).
        llm.completion(**params(upstream, api_key="sk-other"))
        assert upstream.chat_calls == 3


def test_upstream_error_is_not_stored(upstream: Upstream) -> None:
    with SemanticCache() as cache:
        llm = SemanticLiteLLM(cache)
        upstream.mode = "error"
        with pytest.raises(litellm.exceptions.InternalServerError):
            llm.completion(**params(upstream))
        assert cache.stats()["total_entries"] == 0
        upstream.mode = "ok"
        llm.completion(**params(upstream))
        assert cache.stats()["total_entries"] == 1


def test_sampled_and_streamed_calls_pass_through(upstream: Upstream) -> None:
    with SemanticCache() as cache:
        llm = SemanticLiteLLM(cache)
        llm.completion(**params(upstream, temperature=1.0))
        chunks = list(llm.completion(**params(upstream, stream=True)))
        assert chunks
        assert cache.stats()["total_entries"] == 0
        assert upstream.chat_calls == 2


def test_two_concurrent_identical_misses_make_one_call(upstream: Upstream) -> None:
    with SemanticCache(embedder=HashingEmbedder(dim=64)) as cache:
        llm = SemanticLiteLLM(cache)
        gate = upstream.hold()
        results: list[Any] = [None, None]

        def call(i: int) -> None:
            results[i] = llm.completion(**params(upstream))

        threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
        threads[0].start()
        assert upstream.wait_for_calls(1)
        threads[1].start()
        wall = {k: v for k, v in params(upstream).items() if k not in LITELLM_IGNORED}
        key = chat_key(wall)
        assert flights_of(cache).wait_for_followers(flight_key(cache, key.namespace, Q), 1, 30)
        gate.set()
        for t in threads:
            t.join()
        assert upstream.chat_calls == 1
        assert results[0].choices[0].message.content == results[1].choices[0].message.content


def test_acompletion_on_an_async_cache(upstream: Upstream) -> None:
    async def main() -> None:
        async with AsyncSemanticCache() as cache:
            llm = SemanticLiteLLM(cache)
            first = await llm.acompletion(**params(upstream))
            again = await llm.acompletion(**params(upstream))
            assert isinstance(again, litellm.ModelResponse)
            assert again.choices[0].message.content == first.choices[0].message.content
            assert upstream.chat_calls == 1

    asyncio.run(main())
