"""The official ``openai`` client through CachingTransport / AsyncCachingTransport, against
a real OpenAI-compatible HTTP upstream on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from chat_upstream import Upstream, running_upstream  # noqa: E402

from semcache import AsyncSemanticCache, HashingEmbedder, OnnxEmbedder, SemanticCache  # noqa: E402
from semcache.integrations._flow import flight_key, flights_of  # noqa: E402
from semcache.integrations.chat import ChatPolicy, chat_key  # noqa: E402
from semcache.integrations.openai import AsyncCachingTransport, CachingTransport  # noqa: E402

SYSTEM = {"role": "system", "content": "You are terse."}
Q = "What is the capital of France?"
PARAPHRASE = "What's the capital city of France?"


@pytest.fixture(scope="module")
def onnx() -> OnnxEmbedder:
    return OnnxEmbedder(threads=1)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with running_upstream() as state:
        yield state


_OPEN: list[Any] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def make_client(upstream: Upstream, cache: SemanticCache, **kw: Any) -> Any:
    transport = CachingTransport(cache, **kw)
    client = openai.OpenAI(
        base_url=upstream.url,
        api_key="sk-test",
        max_retries=0,
        http_client=httpx.Client(transport=transport),
    )
    _OPEN.append(client)
    return client


def ask(client: Any, text: str = Q, *, raw: bool = False, **kw: Any) -> Any:
    params: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [SYSTEM, {"role": "user", "content": text}],
        "temperature": 0,
    }
    params.update(kw)
    if raw:
        return client.chat.completions.with_raw_response.create(**params)
    return client.chat.completions.create(**params)


def test_repeat_and_paraphrase_are_served_without_upstream_calls(
    upstream: Upstream, onnx: OnnxEmbedder
) -> None:
    with SemanticCache(embedder=onnx) as cache:
        client = make_client(upstream, cache)
        first = ask(client, raw=True)
        assert first.headers["x-semcache"] == "miss"
        answer = first.parse()
        assert answer.choices[0].message.content == f"answer #1 to: {Q}"
        assert answer.usage.total_tokens == 12

        again = ask(client, raw=True)
        assert again.headers["x-semcache"] == "hit; layer=exact; similarity=1.0000"
        hit = again.parse()
        assert hit.choices[0].message.content == answer.choices[0].message.content
        assert hit.id != answer.id
        assert hit.id.startswith("chatcmpl-semcache-")
        assert hit.usage.total_tokens == 0
        assert hit.model == "gpt-4o-mini"

        para = ask(client, PARAPHRASE, raw=True)
        assert para.headers["x-semcache"].startswith("hit; layer=semantic; similarity=0.9")
        assert para.parse().choices[0].message.content == answer.choices[0].message.content
        assert upstream.chat_calls == 1


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {
            "messages": [
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": Q},
            ]
        },
        {"temperature": 0.2},
        {"max_tokens": 5},
    ],
)
def test_another_model_system_prompt_or_parameter_is_never_served(
    upstream: Upstream, change: dict[str, Any]
) -> None:
    with SemanticCache(embedder=HashingEmbedder(dim=64)) as cache:
        client = make_client(upstream, cache)
        ask(client)
        response = ask(client, raw=True, **change)
        assert response.headers["x-semcache"] == "miss"
        assert response.parse().choices[0].message.content.startswith("answer #2")
        assert upstream.chat_calls == 2


def test_upstream_error_is_never_stored(upstream: Upstream) -> None:
    with SemanticCache(embedder=HashingEmbedder(dim=64)) as cache:
        client = make_client(upstream, cache)
        upstream.mode = "error"
        with pytest.raises(openai.InternalServerError):
            ask(client)
        assert cache.stats()["total_entries"] == 0
        upstream.mode = "ok"
        assert ask(client).choices[0].message.content == f"answer #2 to: {Q}"
        assert upstream.chat_calls == 2


def test_a_cut_answer_is_not_stored(upstream: Upstream) -> None:
    with SemanticCache() as cache:
        client = make_client(upstream, cache)
        upstream.mode = "length"
        assert ask(client).choices[0].finish_reason == "length"
        assert cache.stats()["total_entries"] == 0


def test_tool_call_answers_are_stored_only_when_asked(upstream: Upstream) -> None:
    upstream.mode = "tool_calls"
    with SemanticCache() as cache:
        client = make_client(upstream, cache)
        assert ask(client).choices[0].message.tool_calls[0].id == "call_1"
        ask(client)
        assert upstream.chat_calls == 2
        assert cache.stats()["total_entries"] == 0
    with SemanticCache() as cache:
        client = make_client(upstream, cache, policy=ChatPolicy(cache_tool_calls=True))
        ask(client)
        served = ask(client, raw=True)
        assert served.headers["x-semcache"].startswith("hit")
        assert served.parse().choices[0].message.tool_calls[0].id == "call_3"
        assert upstream.chat_calls == 3


def test_uncacheable_requests_pass_through_and_say_why(upstream: Upstream) -> None:
    with SemanticCache() as cache:
        client = make_client(upstream, cache)
        for _ in range(2):
            response = ask(client, raw=True, temperature=1.0)
            assert response.headers["x-semcache"] == "bypass; reason=temperature"
        response = ask(client, raw=True, n=2)
        assert response.headers["x-semcache"] == "bypass; reason=n_above_1"
        assert upstream.chat_calls == 3
        assert cache.stats()["total_entries"] == 0


def test_other_endpoints_pass_through_untouched(upstream: Upstream) -> None:
    with SemanticCache() as cache:
        client = make_client(upstream, cache)
        assert [m.id for m in client.models.list()] == ["m1"]
        assert upstream.other_calls == ["GET /v1/models"]


def test_streaming_miss_passes_through_then_is_served_as_events(
    upstream: Upstream, onnx: OnnxEmbedder
) -> None:
    with SemanticCache(embedder=onnx) as cache:
        client = make_client(upstream, cache)
        chunks = list(ask(client, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == f"answer #1 to: {Q}"
        assert len(chunks) > 3  # really streamed, in pieces
        assert cache.stats()["total_entries"] == 1

        raw = ask(client, PARAPHRASE, raw=True, stream=True)
        assert raw.headers["x-semcache"].startswith("hit; layer=semantic")
        assert raw.headers["content-type"] == "text/event-stream"
        list(raw.parse())
        hit = list(ask(client, PARAPHRASE, stream=True, stream_options={"include_usage": True}))
        assert "".join(c.choices[0].delta.content or "" for c in hit if c.choices) == text
        assert hit[-2].choices[0].finish_reason == "stop"
        assert hit[-1].usage.total_tokens == 0
        # A stored stream serves a non-streaming request too.
        assert ask(client).choices[0].message.content == text
        assert upstream.chat_calls == 1


def test_a_stream_closed_early_is_not_stored(upstream: Upstream) -> None:
    with SemanticCache() as cache:
        client = make_client(upstream, cache)
        stream = ask(client, stream=True)
        next(iter(stream))
        stream.close()
        assert cache.stats()["total_entries"] == 0


def test_two_concurrent_identical_misses_make_one_upstream_call(upstream: Upstream) -> None:
    with SemanticCache(embedder=HashingEmbedder(dim=64)) as cache:
        client = make_client(upstream, cache)
        gate = upstream.hold()
        results: list[Any] = [None, None]

        def call(i: int) -> None:
            results[i] = ask(client, raw=True)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
        threads[0].start()
        assert upstream.wait_for_calls(1)
        threads[1].start()
        key = chat_key(
            {
                "model": "gpt-4o-mini",
                "messages": [SYSTEM, {"role": "user", "content": Q}],
                "temperature": 0,
            }
        )
        assert flights_of(cache).wait_for_followers(flight_key(cache, key.namespace, Q), 1, 30)
        gate.set()
        for t in threads:
            t.join()
        assert upstream.chat_calls == 1
        notes = sorted(r.headers["x-semcache"] for r in results)
        assert notes == ["miss", "miss; shared"]
        contents = {r.parse().choices[0].message.content for r in results}
        assert contents == {f"answer #1 to: {Q}"}


def test_get_or_put_on_the_same_key_never_joins_a_doors_flight(upstream: Upstream) -> None:
    with SemanticCache() as cache:
        client = make_client(upstream, cache)
        gate = upstream.hold()
        door = threading.Thread(target=ask, args=(client,))
        door.start()
        assert upstream.wait_for_calls(1)
        key = chat_key(
            {
                "model": "gpt-4o-mini",
                "messages": [SYSTEM, {"role": "user", "content": Q}],
                "temperature": 0,
            }
        )
        results: list[Any] = []
        other = threading.Thread(
            target=lambda: results.append(
                cache.get_or_put(Q, lambda: "own", namespace=key.namespace)
            )
        )
        other.start()
        other.join(30)  # a bound only: it must not wait for the door's upstream call
        gate.set()
        other.join()
        door.join()
        assert results == ["own"]


def test_concurrent_misses_share_an_upstream_error_and_store_nothing(upstream: Upstream) -> None:
    with SemanticCache() as cache:
        client = make_client(upstream, cache)
        upstream.mode = "error"
        gate = upstream.hold()
        errors: list[BaseException] = []

        def call() -> None:
            try:
                ask(client)
            except openai.InternalServerError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(2)]
        threads[0].start()
        assert upstream.wait_for_calls(1)
        threads[1].start()
        key = chat_key(
            {
                "model": "gpt-4o-mini",
                "messages": [SYSTEM, {"role": "user", "content": Q}],
                "temperature": 0,
            }
        )
        assert flights_of(cache).wait_for_followers(flight_key(cache, key.namespace, Q), 1, 30)
        gate.set()
        for t in threads:
            t.join()
        assert len(errors) == 2
        assert upstream.chat_calls == 1
        assert cache.stats()["total_entries"] == 0


def test_labels_say_what_each_namespace_covers(upstream: Upstream) -> None:
    with SemanticCache() as cache:
        transport = CachingTransport(cache)
        client = openai.OpenAI(
            base_url=upstream.url,
            api_key="sk-test",
            max_retries=0,
            http_client=httpx.Client(transport=transport),
        )
        _OPEN.append(client)
        assert transport.labels == {}
        ask(client, seed=3)
        [namespace] = cache.stats()["entries"]
        label = {
            "model": "gpt-4o-mini",
            "turns": 1,
            "system": "You are terse.",
            "params": ["seed", "temperature"],
        }
        assert transport.labels == {namespace: label}
        hit = cache.get(Q, namespace=namespace)
        assert hit is not None
        assert hit.metadata == {"semcache.chat": label}


def test_tenant_keeps_callers_apart(upstream: Upstream) -> None:
    with SemanticCache() as cache:
        one = make_client(upstream, cache, tenant="a")
        two = make_client(upstream, cache, tenant="b")
        ask(one)
        assert ask(two, raw=True).headers["x-semcache"] == "miss"
        assert ask(one, raw=True).headers["x-semcache"].startswith("hit")
        assert upstream.chat_calls == 2


# -- async -----------------------------------------------------------------------------------
def make_async_client(upstream: Upstream, cache: Any) -> Any:
    return openai.AsyncOpenAI(
        base_url=upstream.url,
        api_key="sk-test",
        max_retries=0,
        http_client=httpx.AsyncClient(transport=AsyncCachingTransport(cache)),
    )


def test_async_client_repeat_paraphrase_and_stream(upstream: Upstream, onnx: OnnxEmbedder) -> None:
    async def main() -> None:
        async with AsyncSemanticCache(embedder=onnx) as cache:
            client = make_async_client(upstream, cache)
            params: dict[str, Any] = {
                "model": "gpt-4o-mini",
                "messages": [SYSTEM, {"role": "user", "content": Q}],
                "temperature": 0,
            }
            first = await client.chat.completions.create(**params)
            text = first.choices[0].message.content
            raw = await client.chat.completions.with_raw_response.create(**params)
            assert raw.headers["x-semcache"].startswith("hit; layer=exact")
            para = {**params, "messages": [SYSTEM, {"role": "user", "content": PARAPHRASE}]}
            hit = await client.chat.completions.create(**para)
            assert hit.choices[0].message.content == text
            chunks = [c async for c in await client.chat.completions.create(**para, stream=True)]
            assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
            # A streamed miss is stored once complete.
            other = {**params, "messages": [SYSTEM, {"role": "user", "content": "How to bake?"}]}
            streamed = [c async for c in await client.chat.completions.create(**other, stream=True)]
            assert len(streamed) > 3
            again = await client.chat.completions.with_raw_response.create(**other)
            assert again.headers["x-semcache"].startswith("hit; layer=exact")
            assert upstream.chat_calls == 2
            await client.close()

    asyncio.run(main())


def test_async_transport_single_flight_with_a_sync_cache(upstream: Upstream) -> None:
    async def main() -> None:
        with SemanticCache() as cache:
            client = make_async_client(upstream, cache)
            gate = upstream.hold()
            params: dict[str, Any] = {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": Q}],
                "temperature": 0,
            }
            key = chat_key(params)
            fkey = flight_key(cache, key.namespace, Q)
            first = asyncio.ensure_future(client.chat.completions.create(**params))
            assert await asyncio.to_thread(upstream.wait_for_calls, 1)
            second = asyncio.ensure_future(client.chat.completions.create(**params))
            assert await asyncio.to_thread(flights_of(cache).wait_for_followers, fkey, 1, 30)
            gate.set()
            a, b = await asyncio.gather(first, second)
            assert a.choices[0].message.content == b.choices[0].message.content
            assert upstream.chat_calls == 1
            await client.close()

    asyncio.run(main())


def _async_embedder() -> Any:
    from semcache import AsyncCallableEmbedder

    base = HashingEmbedder(dim=32)

    async def embed(texts: list[str]) -> Any:
        return base.embed(texts)

    return AsyncCallableEmbedder(embed, 32, "hashing-async:32")


def test_sync_transport_refuses_an_async_embedder() -> None:
    from semcache import ConfigurationError

    async def main() -> None:
        async with AsyncSemanticCache(embedder=_async_embedder()) as cache:
            with pytest.raises(ConfigurationError, match="async"):
                CachingTransport(cache)

    asyncio.run(main())


def test_async_transport_with_an_async_embedder(upstream: Upstream) -> None:
    async def main() -> None:
        async with AsyncSemanticCache(embedder=_async_embedder()) as cache:
            client = make_async_client(upstream, cache)
            params: dict[str, Any] = {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": Q}],
                "temperature": 0,
            }
            await client.chat.completions.create(**params)
            raw = await client.chat.completions.with_raw_response.create(**params)
            assert raw.headers["x-semcache"].startswith("hit")
            assert upstream.chat_calls == 1
            await client.close()

    asyncio.run(main())
