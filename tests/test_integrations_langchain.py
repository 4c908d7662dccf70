"""SemanticLLMCache through LangChain's real cache path (``set_llm_cache``), with
langchain-core's own fake chat and completion models."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.globals import set_llm_cache
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    FakeMessagesListChatModel,
)
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, Generation

from semcache import AsyncSemanticCache, HashingEmbedder, OnnxEmbedder, SemanticCache
from semcache.integrations.chat import ChatPolicy
from semcache.integrations.langchain import SemanticLLMCache

Q = "What is the capital of France?"
PARAPHRASE = "What's the capital city of France?"


@pytest.fixture(scope="module")
def onnx() -> OnnxEmbedder:
    return OnnxEmbedder(threads=1)


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    set_llm_cache(None)


def test_chat_model_repeat_and_paraphrase_hit_other_system_prompt_misses(
    onnx: OnnxEmbedder,
) -> None:
    with SemanticCache(embedder=onnx) as cache:
        set_llm_cache(SemanticLLMCache(cache))
        model = FakeListChatModel(responses=["Paris.", "second", "third", "fourth"])
        system = SystemMessage("You are terse.")
        first = model.invoke([system, HumanMessage(Q)])
        assert first.content == "Paris."
        assert model.invoke([system, HumanMessage(Q)]).content == "Paris."
        assert model.invoke([system, HumanMessage(PARAPHRASE)]).content == "Paris."
        assert model.i == 1  # the model was called once
        other = model.invoke([SystemMessage("Answer in French."), HumanMessage(Q)])
        assert other.content == "second"
        namespaces = list(cache.stats()["entries"])
        assert all(ns.startswith("langchain:fake-list-chat-model:") for ns in namespaces)
        assert len(namespaces) == 2


def test_another_model_setting_is_a_wall() -> None:
    with SemanticCache() as cache:
        set_llm_cache(SemanticLLMCache(cache))
        one = FakeListChatModel(responses=["a", "b"])
        two = FakeListChatModel(responses=["x", "y"], sleep=0.0)
        assert one.invoke(Q).content == "a"
        assert two.invoke(Q).content == "x"
        assert one.invoke(Q, stop=["."]).content == "b"  # other call parameters


def test_generations_round_trip_exactly() -> None:
    message = AIMessage(
        content="Paris.",
        response_metadata={"finish_reason": "stop", "model_name": "m"},
        id="run-1",
    )
    model = FakeMessagesListChatModel(responses=[message, AIMessage("never")])
    with SemanticCache() as cache:
        lc = SemanticLLMCache(cache)
        set_llm_cache(lc)
        first = model.invoke(Q)
        again = model.invoke(Q)
        assert again.content == first.content
        # What was stored comes back, plus the hit's mark (for feedback).
        mark = again.response_metadata.pop("semcache")
        assert set(mark) == {"id", "layer", "similarity"}
        assert again.response_metadata == first.response_metadata
        # The stored value itself round-trips exactly.
        gens = [ChatGeneration(message=message, generation_info={"finish_reason": "stop"})]
        lc.update("[]x", "llm", gens)
        revived = lc.lookup("[]x", "llm")
        assert revived is not None
        revived[0].message.response_metadata.pop("semcache")
        assert revived == gens


def test_cut_or_tool_calling_generations_are_not_stored() -> None:
    with SemanticCache() as cache:
        lc = SemanticLLMCache(cache)
        cut = [Generation(text="Par", generation_info={"finish_reason": "length"})]
        lc.update(Q, "llm", cut)
        call = AIMessage(content="", tool_calls=[{"name": "f", "args": {}, "id": "c1"}])
        lc.update(Q, "llm2", [ChatGeneration(message=call)])
        assert cache.stats()["total_entries"] == 0
        SemanticLLMCache(cache, policy=ChatPolicy(cache_tool_calls=True)).update(
            Q, "llm2", [ChatGeneration(message=call)]
        )
        assert cache.stats()["total_entries"] == 1


def test_completion_model_through_set_llm_cache() -> None:
    with SemanticCache(embedder=HashingEmbedder(dim=64)) as cache:
        set_llm_cache(SemanticLLMCache(cache))
        llm = FakeListLLM(responses=["one", "two"])
        assert llm.invoke(Q) == "one"
        assert llm.invoke(Q) == "one"
        assert llm.i == 1
        assert llm.invoke("Another question") == "two"


def test_image_prompts_are_not_cached() -> None:
    with SemanticCache() as cache:
        set_llm_cache(SemanticLLMCache(cache))
        model = FakeListChatModel(responses=["a", "b"])
        image = HumanMessage(
            content=[
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ]
        )
        assert model.invoke([image]).content == "a"
        assert model.invoke([image]).content == "b"
        assert cache.stats()["total_entries"] == 0


def test_clear_deletes_only_this_doors_entries() -> None:
    with SemanticCache() as cache:
        cache.put("other", "kept")
        lc = SemanticLLMCache(cache)
        lc.update(Q, "llm", [Generation(text="Paris")])
        lc.clear()
        assert cache.stats()["entries"] == {"default": 1}
        assert lc.lookup(Q, "llm") is None


def test_async_chat_model_on_an_async_cache(onnx: OnnxEmbedder) -> None:
    async def main() -> Any:
        async with AsyncSemanticCache(embedder=onnx) as cache:
            lc = SemanticLLMCache(cache)
            set_llm_cache(lc)
            model = FakeListChatModel(responses=["Paris.", "other"])
            assert (await model.ainvoke(Q)).content == "Paris."
            assert (await model.ainvoke(PARAPHRASE)).content == "Paris."
            assert model.i == 1
            # sync and async answer alike
            sync = _unmarked(lc.lookup(*_args(model, Q)))
            assert sync == _unmarked(await lc.alookup(*_args(model, Q)))
            await lc.aclear()
            assert (await cache.stats())["total_entries"] == 0

    asyncio.run(main())


def _unmarked(generations: Any) -> Any:
    """Generations without the hit's mark (its id differs from hit to hit)."""
    assert generations is not None
    for g in generations:
        if isinstance(g, ChatGeneration):
            g.message.response_metadata.pop("semcache")
        else:
            assert g.generation_info is not None
            g.generation_info.pop("semcache")
            g.generation_info = g.generation_info or None
    return generations


def _args(model: Any, text: str) -> tuple[str, str]:
    from langchain_core.load import dumps

    return dumps([HumanMessage(text)]), model._get_llm_string()


def test_async_embedder_serves_the_async_path_and_refuses_the_sync_one() -> None:
    from semcache import AsyncCallableEmbedder, ConfigurationError

    base = HashingEmbedder(dim=32)

    async def embed(texts: list[str]) -> Any:
        return base.embed(texts)

    async def main() -> None:
        embedder = AsyncCallableEmbedder(embed, 32, "hashing-async:32")
        async with AsyncSemanticCache(embedder=embedder) as cache:
            lc = SemanticLLMCache(cache)
            await lc.aupdate(Q, "llm", [Generation(text="Paris")])
            assert _unmarked(await lc.alookup(Q, "llm")) == [Generation(text="Paris")]
            with pytest.raises(ConfigurationError, match="async"):
                lc.lookup(Q, "llm")

    asyncio.run(main())
