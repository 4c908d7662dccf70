"""get_or_put (sync and async), single-flight under threads and tasks, and memoize."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy.typing as npt
import pytest

from semcache import (
    AsyncSemanticCache,
    HashingEmbedder,
    InvalidTextError,
    SemanticCache,
)
from semcache._cache import engine_of
from semcache.integrations._flow import core_of, flights_of

QUESTION = "what is the meaning of life"
N = 8


def _key(cache: Any, namespace: str, query: str) -> bytes:
    """The exact-layer key (and single-flight key) of ``query``."""
    return engine_of(core_of(cache)).key(namespace, query)


class CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__(64)
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> npt.NDArray[Any]:
        self.calls += 1
        return super().embed(texts)


# -- get_or_put ---------------------------------------------------------------------------------
def test_get_or_put_computes_on_a_miss_and_serves_afterwards() -> None:
    cache = SemanticCache(embedder=HashingEmbedder(64))
    calls: list[str] = []

    def compute() -> str:
        calls.append("x")
        return "42"

    assert cache.get_or_put(QUESTION, compute, metadata={"model": "m"}, ttl=60) == "42"
    assert cache.get_or_put(QUESTION, compute) == "42"
    assert cache.get_or_put(QUESTION + "?", compute) == "42"  # a semantic hit
    assert calls == ["x"]
    hit = cache.get(QUESTION)
    assert hit is not None
    assert hit.metadata == {"model": "m"}
    assert hit.expires_at is not None


def test_get_or_put_propagates_and_never_caches_an_exception() -> None:
    cache = SemanticCache(embedder=HashingEmbedder(64))

    def broken() -> str:
        raise TimeoutError("the LLM timed out")

    with pytest.raises(TimeoutError, match="timed out"):
        cache.get_or_put(QUESTION, broken)
    assert cache.stats()["total_entries"] == 0
    assert cache.get_or_put(QUESTION, lambda: "fine") == "fine"
    assert len(flights_of(cache)) == 0


def test_get_or_put_needs_a_str_response() -> None:
    cache = SemanticCache(embedder=HashingEmbedder(64))
    with pytest.raises(InvalidTextError, match="got int"):
        cache.get_or_put(QUESTION, lambda: 42)  # type: ignore[arg-type,return-value]

    async def coro() -> str:
        return "x"

    with pytest.raises(TypeError, match="AsyncSemanticCache"):
        cache.get_or_put(QUESTION, coro)  # type: ignore[arg-type]
    assert cache.stats()["total_entries"] == 0


def test_an_answer_that_cannot_be_stored_is_still_returned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = SemanticCache(embedder=HashingEmbedder(64), max_response_bytes=16)
    with caplog.at_level(logging.ERROR, logger="semcache"):
        assert cache.get_or_put(QUESTION, lambda: "a long answer, over the cap") == (
            "a long answer, over the cap"
        )
    assert "could not store" in caplog.text
    assert cache.stats()["total_entries"] == 0


def test_get_or_put_embeds_the_query_once() -> None:
    emb = CountingEmbedder()
    cache = SemanticCache(embedder=emb)
    cache.put("an unrelated seed question", "seed")
    emb.calls = 0
    assert cache.get_or_put(QUESTION, lambda: "42") == "42"
    assert emb.calls == 1


# -- single-flight ------------------------------------------------------------------------------
def _threads_on_one_key(cache: SemanticCache, compute: Any) -> list[Any]:
    results: list[Any] = [None] * N

    def worker(i: int) -> None:
        try:
            results[i] = cache.get_or_put(QUESTION, compute)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    return [threads, results]


def test_threads_missing_on_one_key_call_the_llm_once() -> None:
    cache = SemanticCache(embedder=HashingEmbedder(64))
    gate = threading.Event()
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        assert gate.wait(10)
        return "42"

    threads, results = _threads_on_one_key(cache, compute)
    key = _key(cache, "default", QUESTION)
    assert flights_of(cache).wait_for_followers(key, N - 1, timeout=10)
    gate.set()
    for t in threads:
        t.join()
    assert calls == [1]
    assert results == ["42"] * N
    assert cache.stats()["puts"] == 1
    assert len(flights_of(cache)) == 0


def test_threads_waiting_on_a_failed_computation_get_its_error() -> None:
    cache = SemanticCache(embedder=HashingEmbedder(64))
    gate = threading.Event()
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        assert gate.wait(10)
        raise ConnectionError("the LLM is down")

    threads, results = _threads_on_one_key(cache, compute)
    assert flights_of(cache).wait_for_followers(_key(cache, "default", QUESTION), N - 1, 10)
    gate.set()
    for t in threads:
        t.join()
    assert calls == [1]
    assert all(isinstance(r, ConnectionError) for r in results)
    assert cache.stats()["total_entries"] == 0
    assert cache.get_or_put(QUESTION, lambda: "back") == "back"  # nothing was cached


def test_tasks_missing_on_one_key_call_the_llm_once() -> None:
    async def scenario() -> None:
        async with AsyncSemanticCache(embedder=HashingEmbedder(64)) as cache:
            gate = asyncio.Event()
            calls: list[int] = []

            async def compute() -> str:
                calls.append(1)
                await gate.wait()
                return "42"

            tasks = [asyncio.create_task(cache.get_or_put(QUESTION, compute)) for _ in range(N)]
            key = _key(cache, "default", QUESTION)
            waiting = flights_of(cache).wait_for_followers
            assert await asyncio.to_thread(waiting, key, N - 1, 10)
            gate.set()
            assert await asyncio.gather(*tasks) == ["42"] * N
            assert calls == [1]
            assert (await cache.stats())["puts"] == 1

    asyncio.run(scenario())


def test_a_cancelled_leader_hands_over_to_a_waiting_task() -> None:
    async def scenario() -> None:
        async with AsyncSemanticCache(embedder=HashingEmbedder(64)) as cache:
            started = asyncio.Event()

            async def never() -> str:
                started.set()
                await asyncio.Event().wait()
                return "unreachable"

            async def quick() -> str:
                return "from the second caller"

            leader = asyncio.create_task(cache.get_or_put(QUESTION, never))
            await started.wait()
            follower = asyncio.create_task(cache.get_or_put(QUESTION, quick))
            key = _key(cache, "default", QUESTION)
            waiting = flights_of(cache).wait_for_followers
            assert await asyncio.to_thread(waiting, key, 1, 10)
            leader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await leader
            assert await follower == "from the second caller"
            assert (await cache.get(QUESTION)) is not None

    asyncio.run(scenario())


def test_a_thread_can_wait_for_a_task_on_the_same_flight() -> None:
    """Flights serve threads and event loops alike (one core, two kinds of callers)."""

    async def scenario() -> None:
        cache = SemanticCache(embedder=HashingEmbedder(64))
        gate = asyncio.Event()
        calls: list[int] = []

        @cache.memoize(namespace="mixed")
        async def ask(prompt: str) -> str:
            calls.append(1)
            await gate.wait()
            return "from the task"

        task = asyncio.create_task(ask(QUESTION))
        key = _key(cache, "mixed", QUESTION)
        joined = asyncio.to_thread(cache.get_or_put, QUESTION, lambda: "thread", namespace="mixed")
        thread_result = asyncio.ensure_future(joined)
        assert await asyncio.to_thread(flights_of(cache).wait_for_followers, key, 1, 10)
        gate.set()
        assert await task == "from the task"
        assert await thread_result == "from the task"
        assert calls == [1]

    asyncio.run(scenario())


# -- memoize ------------------------------------------------------------------------------------
def test_memoize_scopes_answers_by_model_and_temperature() -> None:
    cache = SemanticCache(embedder=HashingEmbedder(64))
    calls: list[tuple[str, str, float]] = []

    @cache.memoize(namespace=lambda model, temperature: f"{model}@{temperature}")
    def ask(prompt: str, model: str = "gpt-4o", temperature: float = 0.0) -> str:
        """Ask the model."""
        calls.append((prompt, model, temperature))
        return f"{model} says hi"

    hello = "hello there, how are you doing today"
    assert ask(hello) == "gpt-4o says hi"
    assert ask(hello) == "gpt-4o says hi"
    assert ask(prompt=hello, model="gpt-4o") == "gpt-4o says hi"
    assert ask(hello + "?") == "gpt-4o says hi"  # semantic, same scope
    assert ask(hello, model="small") == "small says hi"
    assert ask(hello, temperature=0.7) == "gpt-4o says hi"
    assert calls == [(hello, "gpt-4o", 0.0), (hello, "small", 0.0), (hello, "gpt-4o", 0.7)]
    assert ask.__name__ == "ask"
    assert ask.__doc__ == "Ask the model."
    assert set(cache.stats()["entries"]) == {"gpt-4o@0.0", "small@0.0", "gpt-4o@0.7"}


def test_memoize_default_namespace_separates_functions_and_arguments() -> None:
    cache = SemanticCache(embedder=HashingEmbedder(64))

    @cache.memoize()
    def first(prompt: str, model: str = "a") -> str:
        return f"first {model}"

    @cache.memoize()
    def second(prompt: str) -> str:
        return "second"

    assert first("the same prompt") == "first a"
    assert second("the same prompt") == "second"
    assert first("the same prompt", model="b") == "first b"
    assert first("the same prompt") == "first a"
    namespaces = set(cache.stats()["entries"])
    assert len(namespaces) == 3
    assert any(ns.endswith(".second") for ns in namespaces)

    @cache.memoize()
    def with_object(prompt: str, client: object) -> str:
        return "x"

    with pytest.raises(TypeError, match=r"\(client\).*pass namespace="):
        with_object("hi", object())


def test_memoize_with_a_custom_prompt_argument_and_bad_uses() -> None:
    cache = SemanticCache(embedder=HashingEmbedder(64))

    @cache.memoize(prompt="question", namespace="faq")
    def answer(question: str) -> str:
        return question.upper()

    assert answer("why is the sky blue") == "WHY IS THE SKY BLUE"
    assert cache.get("why is the sky blue", namespace="faq") is not None
    with pytest.raises(InvalidTextError, match="'question' must be a str"):
        answer(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="no parameter named 'prompt'"):
        cache.memoize()(lambda text: text)
    with pytest.raises(TypeError, match="takes \\['seed'\\]"):
        cache.memoize(namespace=lambda seed: str(seed))(lambda prompt, model="m": prompt)


def test_memoize_does_not_cache_exceptions() -> None:
    cache = SemanticCache(embedder=HashingEmbedder(64))
    attempts: list[int] = []

    @cache.memoize(namespace="flaky")
    def flaky(prompt: str) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("first call fails")
        return "ok"

    with pytest.raises(ConnectionError):
        flaky("a question")
    assert flaky("a question") == "ok"
    assert flaky("a question") == "ok"
    assert len(attempts) == 2


def test_memoize_async_functions_on_both_caches() -> None:
    sync_cache = SemanticCache(embedder=HashingEmbedder(64))
    calls: list[str] = []

    async def scenario() -> None:
        async with AsyncSemanticCache(embedder=HashingEmbedder(64)) as async_cache:
            for cache in (sync_cache, async_cache):

                @cache.memoize(namespace=lambda model: model)
                async def ask(prompt: str, model: str = "m1") -> str:
                    calls.append(model)
                    await asyncio.sleep(0)
                    return f"{model}: {prompt}"

                assert await ask("hello") == "m1: hello"
                assert await ask("hello") == "m1: hello"
                assert await ask("hello", model="m2") == "m2: hello"

            def sync_fn(prompt: str) -> str:
                return prompt

            with pytest.raises(TypeError, match="needs an async function"):
                async_cache.memoize()(sync_fn)  # type: ignore[arg-type]

    asyncio.run(scenario())
    assert calls == ["m1", "m2", "m1", "m2"]
