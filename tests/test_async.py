"""AsyncSemanticCache: the same answers as SemanticCache (a parity test runs one scenario
list through both), the event loop is never blocked, async embedders are awaited, and
embedder failures and timeouts make misses."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from conftest import FakeClock

from semcache import (
    AsyncCallableEmbedder,
    AsyncSemanticCache,
    CacheClosedError,
    EmbedderError,
    HashingEmbedder,
    Hit,
    MemoryStore,
    MetricsEvent,
    SemanticCache,
)
from semcache._store import NewEntry

# -- parity ---------------------------------------------------------------------------------
# Each step: (method, args, kwargs). "advance" moves the injected clock. Every result (or
# the exception's type and message) is recorded and compared between the two classes.
Step = tuple[str, tuple[Any, ...], dict[str, Any]]

SCENARIO: list[Step] = [
    ("get", ("how do I reset my password",), {}),
    ("put", ("how do I reset my password", "Settings > Security"), {}),
    ("get", ("how do I reset my password",), {}),
    ("get", ("How do I  RESET my password",), {}),
    ("get", ("how do I reset my password?",), {}),
    ("get", ("how do I reset my password?",), {"namespace": "other"}),
    ("get", ("how do I reset my password",), {"bypass": True}),
    (
        "put_many",
        (["what is the capital of France", "what is the capital of Spain", "shipping costs"],),
        {"responses": ["Paris", "Madrid", "free over $50"], "metadata": {"src": "faq"}},
    ),
    ("get", ("what is the capital of France?",), {}),
    ("get", ("an unrelated question about quantum chromodynamics",), {}),
    ("put", ("short lived", "gone soon"), {"ttl": 10}),
    ("get", ("short lived",), {}),
    ("advance", (11.0,), {}),
    ("get", ("short lived",), {}),
    ("put", ("tenant question", "tenant answer"), {"namespace": "tenant-a"}),
    ("get", ("tenant question",), {"namespace": "tenant-b"}),
    ("get", ("tenant question",), {"namespace": "tenant-a"}),
    ("put", ("with a vector", "v"), {"embedding": [1.0] + [0.0] * 63}),
    ("get", ("anything",), {"embedding": [1.0, 0.01] + [0.0] * 62}),
    ("get", ("anything",), {"embedding": [float("nan")] * 64}),
    ("get", ("x" * 80,), {}),
    ("get_or_put", ("what is the capital of Spain",), {"compute": "fail"}),
    ("get_or_put", ("what is the capital of Italy",), {"compute": "Rome"}),
    ("get_or_put", ("what is the capital of Italy?",), {"compute": "fail"}),
    ("get_or_put", ("explain the offside rule",), {"compute": "fail"}),
    ("get", ("explain the offside rule",), {}),
    ("delete", ("what is the capital of Spain",), {}),
    ("delete", ("what is the capital of Spain",), {}),
    ("get", ("what is the capital of Spain",), {}),
    ("set_similarity_threshold", (0.99,), {}),
    ("get", ("what is the capital of France?",), {}),
    ("set_similarity_threshold", (2.0,), {}),
    ("vacuum", (), {}),
    ("compact", (), {}),
    ("stats", (), {}),
    ("clear_namespace", ("tenant-a",), {}),
    ("clear", (), {}),
    ("stats", (), {}),
]


def _compute(spec: str) -> Callable[[], str]:
    def compute() -> str:
        if spec == "fail":
            raise RuntimeError("the LLM is down")
        return spec

    return compute


def _record(value: Any) -> Any:
    if isinstance(value, Hit):
        # created_at comes from the injected clock, so it is comparable too.
        return (
            "hit",
            value.response,
            round(value.similarity, 6),
            value.layer,
            value.query,
            value.namespace,
            value.metadata,
            value.created_at,
            value.expires_at,
        )
    return value


def _make(cls: type, clock: FakeClock, events: list[MetricsEvent], path: Path) -> Any:
    return cls(
        str(path),
        HashingEmbedder(64),
        clock=clock,
        metrics_hook=events.append,
        max_query_bytes=64,
    )


def _run_sync(tmp_path: Path) -> tuple[list[Any], list[tuple[Any, ...]]]:
    clock, events, out = FakeClock(), [], []
    cache = _make(SemanticCache, clock, events, tmp_path / "sync.sqlite")
    for method, args, kwargs in SCENARIO:
        if method == "advance":
            clock.now += args[0]
            continue
        kwargs = dict(kwargs)
        if "compute" in kwargs:
            args = (*args, _compute(kwargs.pop("compute")))
        try:
            out.append(_record(getattr(cache, method)(*args, **kwargs)))
        except Exception as exc:
            out.append(("raised", type(exc).__name__, str(exc)))
    cache.close()
    return out, _events(events)


async def _run_async(tmp_path: Path) -> tuple[list[Any], list[tuple[Any, ...]]]:
    clock, events, out = FakeClock(), [], []
    cache = _make(AsyncSemanticCache, clock, events, tmp_path / "async.sqlite")
    async with cache:
        for method, args, kwargs in SCENARIO:
            if method == "advance":
                clock.now += args[0]
                continue
            kwargs = dict(kwargs)
            if "compute" in kwargs:
                args = (*args, _compute(kwargs.pop("compute")))
            try:
                result = getattr(cache, method)(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                out.append(_record(result))
            except Exception as exc:
                out.append(("raised", type(exc).__name__, str(exc)))
    return out, _events(events)


def _events(events: list[MetricsEvent]) -> list[tuple[Any, ...]]:
    return [
        (e.kind, e.namespace, e.hit, e.layer, e.reason,
         None if e.similarity is None else round(e.similarity, 6), e.count)
        for e in events
    ]  # fmt: skip


def test_async_answers_exactly_like_sync(tmp_path: Path) -> None:
    sync_results, sync_events = _run_sync(tmp_path)
    async_results, async_events = asyncio.run(_run_async(tmp_path))
    assert len(sync_results) == len(async_results) == sum(s[0] != "advance" for s in SCENARIO)
    for step, a, b in zip(
        [s for s in SCENARIO if s[0] != "advance"], sync_results, async_results, strict=True
    ):
        assert a == b, step
    assert sync_events == async_events
    # The scenario exercises what it claims to.
    kinds = {r[3] for r in sync_results if isinstance(r, tuple) and r[0] == "hit"}
    assert kinds == {"exact", "semantic"}
    raised = {r[1] for r in sync_results if isinstance(r, tuple) and r[0] == "raised"}
    assert raised == {
        "RuntimeError",
        "InvalidEmbeddingError",
        "QueryTooLargeError",
        "InvalidThresholdError",
    }


def test_the_two_classes_have_the_same_surface() -> None:
    sync_sig = inspect.signature(SemanticCache.__init__)
    async_sig = inspect.signature(AsyncSemanticCache.__init__)
    assert list(sync_sig.parameters) == list(async_sig.parameters)
    for name, p in sync_sig.parameters.items():
        q = async_sig.parameters[name]
        assert (p.kind, p.default) == (q.kind, q.default), name
    public = {n for n in dir(SemanticCache) if not n.startswith("_")}
    expected = (public - {"close"}) | {"aclose"}
    assert expected <= {n for n in dir(AsyncSemanticCache) if not n.startswith("_")}
    for name in ("get", "put", "put_many", "get_or_put", "delete", "vacuum", "compact",
                 "clear_namespace", "clear", "stats", "aclose"):  # fmt: skip
        assert inspect.iscoroutinefunction(getattr(AsyncSemanticCache, name)), name
        if name != "aclose":
            sync_params = inspect.signature(getattr(SemanticCache, name)).parameters
            async_params = inspect.signature(getattr(AsyncSemanticCache, name)).parameters
            assert list(sync_params) == list(async_params), name
    assert not inspect.iscoroutinefunction(AsyncSemanticCache.set_similarity_threshold)


# -- the event loop keeps running ---------------------------------------------------------
class GatedStore(MemoryStore):
    """put_many waits until the test's ticker opens the gate. If the cache ran put_many
    on the event loop, the ticker could never run and the wait would time out."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gated = False
        self.opened_in_time: bool | None = None

    def put_many(self, entries: Sequence[NewEntry], **kwargs: Any) -> Any:
        if self.gated:
            self.opened_in_time = self.gate.wait(10)
        return super().put_many(entries, **kwargs)


class GatedEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__(32)
        self.gate = threading.Event()
        self.gated = False
        self.opened_in_time: bool | None = None

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if self.gated:
            self.opened_in_time = self.gate.wait(10)
        return super().embed(texts)


async def _tick_until(task: asyncio.Task[Any], gate: threading.Event, open_after: int) -> int:
    ticks = 0
    while not task.done():
        ticks += 1
        if ticks == open_after:
            gate.set()
        await asyncio.sleep(0)  # yields to the loop; no waiting
    return ticks


def test_a_slow_store_does_not_block_the_event_loop() -> None:
    async def scenario() -> None:
        store = GatedStore()
        async with AsyncSemanticCache(store=store, embedder=HashingEmbedder(32)) as cache:
            store.gated = True
            queries = [f"question {i}" for i in range(200)]
            task = asyncio.create_task(cache.put_many(queries, ["answer"] * 200))
            ticks = await _tick_until(task, store.gate, open_after=5)
            assert await task == 200
            assert store.opened_in_time is True
            assert ticks >= 5
            hit = await cache.get("question 7")
            assert hit is not None

    asyncio.run(scenario())


def test_a_slow_sync_embedder_does_not_block_the_event_loop() -> None:
    async def scenario() -> None:
        emb = GatedEmbedder()
        async with AsyncSemanticCache(embedder=emb) as cache:
            emb.gated = True
            task = asyncio.create_task(cache.put_many(["a b c", "d e f"], ["1", "2"]))
            await _tick_until(task, emb.gate, open_after=5)
            assert await task == 2
            assert emb.opened_in_time is True

    asyncio.run(scenario())


# -- async embedders --------------------------------------------------------------------------
def test_an_async_embedder_is_awaited_on_the_loop() -> None:
    inner = HashingEmbedder(32)
    threads: set[int] = set()

    async def embed(texts: list[str]) -> npt.NDArray[Any]:
        threads.add(threading.get_ident())
        await asyncio.sleep(0)
        return inner.embed(texts)

    async def scenario() -> int:
        emb = AsyncCallableEmbedder(embed, 32, inner.fingerprint)
        async with AsyncSemanticCache(embedder=emb) as cache:
            await cache.put("how do I reset my password", "Settings > Security")
            hit = await cache.get("how do I reset my password?")
            assert hit is not None
            assert hit.layer == "semantic"
        return threading.get_ident()

    loop_thread = asyncio.run(scenario())
    assert threads == {loop_thread}


def test_async_embedder_failure_and_timeout_make_misses() -> None:
    inner = HashingEmbedder(32)
    mode = {"value": "ok"}

    async def embed(texts: list[str]) -> npt.NDArray[Any]:
        if mode["value"] == "fail":
            raise ConnectionError("embedding service unreachable")
        if mode["value"] == "hang":
            await asyncio.Event().wait()  # never set: cancelled by the deadline
        return inner.embed(texts)

    async def scenario() -> None:
        emb = AsyncCallableEmbedder(embed, 32, inner.fingerprint)
        # The deadline is under test: the cache waits it out (0.05 s); the test doesn't.
        async with AsyncSemanticCache(embedder=emb, embed_timeout=0.05) as cache:
            await cache.put("how do I reset my password", "Settings > Security")
            mode["value"] = "fail"
            assert await cache.get("how do I reset my password?") is None
            with pytest.raises(EmbedderError, match="nothing was written"):
                await cache.put("new", "answer")
            mode["value"] = "hang"
            assert await cache.get("how do I reset my password?") is None
            with pytest.raises(EmbedderError, match=r"within 0\.05 s"):
                await cache.put("new", "answer")
            stats = await cache.stats()
            assert stats["misses"]["embedder_error"] == 2
            assert stats["total_entries"] == 1

    asyncio.run(scenario())


def test_closed_async_cache_raises() -> None:
    async def scenario() -> None:
        cache = AsyncSemanticCache(embedder=HashingEmbedder(32))
        await cache.aclose()
        await cache.aclose()  # idempotent
        assert cache.closed
        with pytest.raises(CacheClosedError):
            await cache.get("x")
        with pytest.raises(CacheClosedError):
            await cache.put("x", "y")
        with pytest.raises(CacheClosedError):
            async with cache:
                pass

    asyncio.run(scenario())
    assert repr(AsyncSemanticCache()).startswith("<AsyncSemanticCache store=MemoryStore")
