"""OpenAIEmbedder (against a real OpenAI-compatible server on 127.0.0.1), LangChainEmbedder
(langchain-core's deterministic embeddings) and their automatic fingerprints."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semcache import (
    AsyncSemanticCache,
    ConfigurationError,
    EmbedderMismatchError,
    MissingDependencyError,
    SemanticCache,
)
from semcache.embedders import (
    AsyncLangChainEmbedder,
    AsyncOpenAIEmbedder,
    LangChainEmbedder,
    OpenAIEmbedder,
)

openai = pytest.importorskip("openai")
pytest.importorskip("langchain_core")

from chat_upstream import Upstream, running_upstream  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with running_upstream() as state:
        yield state


# -- OpenAIEmbedder ----------------------------------------------------------------------------
def test_openai_embedder_learns_an_unknown_dimension_and_fingerprints_the_server(
    upstream: Upstream,
) -> None:
    with openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as client:
        embedder = OpenAIEmbedder(client, model="local-embed")
        assert embedder.dim == 3  # one probe call
        host = upstream.url.split("//")[1].split("/")[0]
        assert embedder.fingerprint == f"openai:local-embed@{host}:dim=3"
        rows = embedder.embed(["a", "abcd"])
        np.testing.assert_array_equal(rows, [[1.0, 1.0, 0.5], [1.0, 4.0, 0.5]])
        assert embedder.embed([]).shape == (0, 3)
        with SemanticCache(embedder=embedder) as cache:
            cache.put("abcd", "four")
            hit = cache.get("wxyz")  # the same vector: a semantic hit
            assert hit is not None
            assert hit.layer == "semantic"
        assert upstream.other_calls.count("POST /v1/embeddings") >= 4


def test_openai_embedder_known_models_need_no_call(upstream: Upstream) -> None:
    with openai.OpenAI(api_key="sk-test") as client:
        small = OpenAIEmbedder(client)
        assert small.dim == 1536
        assert small.fingerprint == "openai:text-embedding-3-small:dim=1536"
        short = OpenAIEmbedder(client, model="text-embedding-3-large", dimensions=256)
        assert short.fingerprint == "openai:text-embedding-3-large:dim=256"
    assert upstream.other_calls == []


def test_a_cache_refuses_another_openai_model(upstream: Upstream, tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    with openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as client:
        with SemanticCache(path, OpenAIEmbedder(client, model="local-embed")) as cache:
            cache.put("q", "a")
        with pytest.raises(EmbedderMismatchError):
            SemanticCache(path, OpenAIEmbedder(client, model="other-embed"))


@pytest.mark.parametrize("bad", [{"model": ""}, {"dimensions": 0}, {"dimensions": True}])
def test_openai_embedder_rejects_bad_settings(bad: dict[str, Any]) -> None:
    with openai.OpenAI(api_key="sk-test") as client, pytest.raises(ConfigurationError):
        OpenAIEmbedder(client, **bad)


def test_async_openai_embedder(upstream: Upstream) -> None:
    async def main() -> None:
        client = openai.AsyncOpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0)
        embedder = AsyncOpenAIEmbedder(client, model="local-embed", dimensions=3)
        async with AsyncSemanticCache(embedder=embedder) as cache:
            await cache.put("abcd", "four")
            hit = await cache.get("wxyz")
            assert hit is not None
        await client.close()
        with pytest.raises(ConfigurationError, match="dimensions="):
            AsyncOpenAIEmbedder(client, model="local-embed")

    asyncio.run(main())


def test_openai_embedder_without_the_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(MissingDependencyError, match=r"semcache-engine\[openai\]"):
        OpenAIEmbedder()


# -- LangChainEmbedder -------------------------------------------------------------------------
def test_langchain_embedder_fingerprint_from_the_model_settings() -> None:
    embedder = LangChainEmbedder(DeterministicFakeEmbedding(size=16))
    assert embedder.dim == 16
    assert embedder.fingerprint == "langchain:DeterministicFakeEmbedding:size=16:dim=16"
    rows = embedder.embed(["a", "b"])
    assert rows.shape == (2, 16)
    np.testing.assert_array_equal(rows[0], embedder.embed(["a"])[0])
    with SemanticCache(embedder=embedder) as cache:
        cache.put("a", "A")
        hit = cache.get("a")
        assert hit is not None
        assert hit.response == "A"


class _Anonymous:
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[1.0, float(len(t))] for t in texts]


def test_langchain_embedder_without_a_model_name_needs_a_fingerprint() -> None:
    with pytest.raises(ConfigurationError, match="fingerprint="):
        LangChainEmbedder(_Anonymous())
    assert LangChainEmbedder(_Anonymous(), fingerprint="mine:v1").fingerprint == "mine:v1"


def test_async_langchain_embedder() -> None:
    async def main() -> None:
        embedder = await AsyncLangChainEmbedder.create(DeterministicFakeEmbedding(size=8))
        assert embedder.fingerprint == "langchain:DeterministicFakeEmbedding:size=8:dim=8"
        async with AsyncSemanticCache(embedder=embedder) as cache:
            await cache.put("a", "A")
            assert await cache.get("a") is not None

    asyncio.run(main())
