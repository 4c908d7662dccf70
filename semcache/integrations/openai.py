"""httpx transports that cache chat completions for the ``openai`` SDK (extra ``openai``).

::

    cache = SemanticCache("llm.sqlite3", default_embedder())
    client = openai.OpenAI(http_client=httpx.Client(transport=CachingTransport(cache)))

Any httpx-based OpenAI-compatible client works the same way. ``POST .../chat/completions``
requests that :mod:`semcache.integrations.chat` finds cacheable are looked up: a hit is
answered from the cache (the stored completion with a fresh ``id`` and ``created``,
``usage`` zeroed, as JSON or as server-sent events for ``stream: true``) without a network
call; a miss is forwarded and a complete answer stored. Every response to a chat request
carries an ``x-semcache`` header: ``hit; layer=exact|semantic; similarity=0.9731``,
``miss`` (forwarded; ``miss; shared`` when another caller's concurrent request for the
same thing answered it) or ``bypass; reason=...`` (not cacheable, forwarded untouched).
Every other request passes through untouched.

Concurrent identical non-streaming misses make one upstream call (single-flight); the
others receive its answer, whatever it was. A streaming miss is not single-flighted (its
caller wants the first token as soon as upstream sends it): it is forwarded as it comes
and stored once the stream has ended with ``[DONE]``.

With a cache made with ``error_budget=``, every upstream call the budget asked for (a
verification, or a miss with candidates) teaches it, as ``get_or_put`` does: the
fresh answer's content is compared with the candidates' (``same_answer`` on the
messages' content, see :func:`~semcache.integrations._wire.completion_answer`),
streamed or not, stored or not (a tool call the policy does not store still
teaches; an error or an answer cut short does not). A hit's completion ``id``
identifies it to :meth:`CachingTransport.feedback`, which reports a wrong answer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import require
from ._flow import (
    AnyCache,
    Fetched,
    HitLog,
    Served,
    afeedback,
    alearn,
    alook,
    aput,
    aserve,
    core_of,
    feedback,
    learn,
    look,
    put,
    read_answers,
    serve,
    sync_core,
)
from ._wire import (
    DROPPED_HEADERS,
    HEADER,
    Plan,
    StreamAssembler,
    answer_id,
    comparable,
    completion_answer,
    hit_header,
    is_chat_completions,
    plan_request,
    serve_json,
    serve_sse,
    storable,
)
from .chat import ChatPolicy

if TYPE_CHECKING:
    import httpx
else:
    httpx = require("httpx", "openai", "semcache.integrations.openai")

__all__ = ["AsyncCachingTransport", "CachingTransport", "Tenant"]


#: How many namespace labels a transport remembers (see ``labels``).
_LABELS = 4096

#: A fixed tenant, or a function of the request (the proxy hashes a header with it).
Tenant = str | Callable[["httpx.Request"], str | None] | None


@dataclass(frozen=True, slots=True)
class _Raw:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _kept_headers(headers: httpx.Headers) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers.multi_items() if k.lower() not in DROPPED_HEADERS]


class _Door:
    """What the sync and async transports share: everything but the I/O."""

    def __init__(
        self,
        cache: AnyCache,
        policy: ChatPolicy | None,
        tenant: Tenant,
        ttl: float | None,
    ) -> None:
        self.core = core_of(cache)
        self.cache = cache
        self.policy = policy if policy is not None else ChatPolicy()
        self.tenant = tenant
        self.ttl = ttl
        #: The hits served lately, by completion id (for ``feedback``).
        self.hits = HitLog()
        read_answers(cache, "chat:", completion_answer)
        #: What the namespace of each cacheable request seen covers (the latest _LABELS).
        self.labels: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._labels_lock = threading.Lock()

    def tenant_of(self, request: httpx.Request) -> str | None:
        return self.tenant(request) if callable(self.tenant) else self.tenant

    def metadata(self, plan: Plan) -> Mapping[str, Any]:
        label = dict(plan.key.label)
        with self._labels_lock:
            self.labels[plan.key.namespace] = label
            self.labels.move_to_end(plan.key.namespace)
            while len(self.labels) > _LABELS:
                self.labels.popitem(last=False)
        return {"semcache.chat": label}

    def hit_response(self, plan: Plan, hit: Any) -> httpx.Response | None:
        """The answer to ``plan`` from ``hit``, or None if the entry is not a completion.
        Its id is remembered for :meth:`CachingTransport.feedback`."""
        new_id = answer_id()
        try:
            if plan.stream:
                events = serve_sse(hit.response, plan.include_usage, new_id)
                self.hits.remember(new_id, hit)
                return httpx.Response(
                    200,
                    headers=[("content-type", "text/event-stream"), (HEADER, hit_header(hit))],
                    content=b"".join(events),
                )
            body = serve_json(hit.response, new_id)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return None
        self.hits.remember(new_id, hit)
        return httpx.Response(
            200,
            headers=[("content-type", "application/json"), (HEADER, hit_header(hit))],
            content=body,
        )

    def raw(self, response: httpx.Response, body: bytes) -> Fetched[_Raw]:
        raw = _Raw(response.status_code, _kept_headers(response.headers), body)
        text = storable(raw.status, body, self.policy)
        return Fetched(raw, text, None if text is not None else comparable(raw.status, body))

    def fetched_response(self, served: Served[_Raw]) -> httpx.Response:
        assert served.fetched is not None
        raw = served.fetched.value
        note = "miss; shared" if served.shared else "miss"
        return httpx.Response(raw.status, headers=[*raw.headers, (HEADER, note)], content=raw.body)

    def tee_headers(self, response: httpx.Response) -> list[tuple[str, str]]:
        return [*_kept_headers(response.headers), (HEADER, "miss")]

    def stored_text(
        self, response: httpx.Response, assembler: StreamAssembler
    ) -> tuple[str | None, str | None]:
        """What to store of a streamed answer, and what the budget learns from it."""
        completion = assembler.completion()
        if completion is None:
            return None, None
        text = storable(response.status_code, completion, self.policy)
        return text, text if text is not None else comparable(response.status_code, completion)


class _Tee(httpx.SyncByteStream):
    """Hands a streamed answer on as it comes, and has it stored once it is complete: as
    soon as ``[DONE]`` arrives, before that last chunk is handed on (so a client that
    asks again at once finds it; the ``openai`` SDK stops reading at ``[DONE]``)."""

    def __init__(self, response: httpx.Response, done: Callable[[StreamAssembler], None]) -> None:
        self._response = response
        self._done: Callable[[StreamAssembler], None] | None = done
        self._assembler = StreamAssembler()

    def _finish(self) -> None:
        done, self._done = self._done, None
        if done is not None and self._assembler.done:
            done(self._assembler)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._response.iter_bytes():
            self._assembler.feed(chunk)
            if self._assembler.done:
                self._finish()  # stored before the client sees [DONE]
            yield chunk
        self._finish()

    def close(self) -> None:
        try:
            self._finish()
        finally:
            self._response.close()


class _AsyncTee(httpx.AsyncByteStream):
    """:class:`_Tee` for async clients."""

    def __init__(
        self, response: httpx.Response, done: Callable[[StreamAssembler], Awaitable[None]]
    ) -> None:
        self._response = response
        self._done: Callable[[StreamAssembler], Awaitable[None]] | None = done
        self._assembler = StreamAssembler()

    async def _finish(self) -> None:
        done, self._done = self._done, None
        if done is not None and self._assembler.done:
            await done(self._assembler)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.aiter_bytes():
            self._assembler.feed(chunk)
            if self._assembler.done:
                await self._finish()  # stored before the client sees [DONE]
            yield chunk
        await self._finish()

    async def aclose(self) -> None:
        try:
            await self._finish()
        finally:
            await self._response.aclose()


class CachingTransport(httpx.BaseTransport):
    """An httpx transport that answers cacheable chat completions from ``cache``.

    Args:
        cache: the cache (a :class:`~semcache.SemanticCache`; the core of an
            :class:`~semcache.AsyncSemanticCache` is used if one is given).
        transport: the transport that reaches the network (default
            ``httpx.HTTPTransport()``); closed with this one.
        policy: what may be cached (default :class:`ChatPolicy()`).
        tenant: kept apart from other tenants (e.g. ``tenant_of(api_key)``), or a
            function of the ``httpx.Request`` that returns the tenant (None: shared).
        ttl: seconds a stored answer lives (None: the cache's ``default_ttl``).

    Raises:
        TypeError: ``cache`` is not a semcache cache.
        ConfigurationError: the cache's embedder is async (use
            :class:`AsyncCachingTransport`).
    """

    def __init__(
        self,
        cache: AnyCache,
        transport: httpx.BaseTransport | None = None,
        *,
        policy: ChatPolicy | None = None,
        tenant: Tenant = None,
        ttl: float | None = None,
    ) -> None:
        sync_core(cache, "CachingTransport")
        self._door = _Door(cache, policy, tenant, ttl)
        self._inner = transport if transport is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request``: from the cache, or through the wrapped transport.

        Raises:
            httpx.HTTPError: the wrapped transport's errors (nothing is stored).
        """
        if not is_chat_completions(request.method, request.url.path):
            return self._inner.handle_request(request)
        door = self._door
        plan, reason = plan_request(request.read(), door.policy, door.tenant_of(request))
        if plan is None:
            response = self._inner.handle_request(request)
            response.headers[HEADER] = f"bypass; reason={reason}"
            return response
        key = plan.key
        if plan.stream:
            looked = look(door.core, key.text, key.namespace)
            hit = looked.hit
            if hit is not None and (answer := door.hit_response(plan, hit)) is not None:
                return answer
            response = self._inner.handle_request(request)

            def done(assembler: StreamAssembler) -> None:
                text, fresh = door.stored_text(response, assembler)
                learn(door.core, looked.judged, fresh)
                if text is not None:
                    put(door.core, key.text, text, key.namespace, door.metadata(plan), door.ttl)

            return httpx.Response(
                response.status_code,
                headers=door.tee_headers(response),
                stream=_Tee(response, done),
                extensions=response.extensions,
            )

        def fetch() -> Fetched[_Raw]:
            response = self._inner.handle_request(request)
            try:
                body = response.read()
            finally:
                response.close()
            return door.raw(response, body)

        served = serve(door.core, key.text, key.namespace, fetch, door.metadata(plan), door.ttl)
        if served.hit is not None:
            answer = door.hit_response(plan, served.hit)
            if answer is not None:
                return answer
            return self._inner.handle_request(request)
        return door.fetched_response(served)

    @property
    def labels(self) -> dict[str, dict[str, Any]]:
        """What the namespace of each cacheable request this transport has seen covers
        (model, system prompt start, turns, parameter names, tenant), for the most recent
        4096: the readable side of ``cache.stats()["entries"]``."""
        with self._door._labels_lock:
            return {ns: dict(label) for ns, label in self._door.labels.items()}

    def feedback(self, answer_id: str, correct: bool) -> bool:
        """Report whether an answer this transport served from the cache was right (see
        ``SemanticCache.feedback``): ``answer_id`` is the completion's ``id``
        (``completion.id``; every chunk's ``id`` for a stream). One report per answer.

        Returns:
            True if it was a hit of this transport (among the latest 4096 served) and
            its entry learnt the report; False otherwise (a miss, an unknown or old id,
            or one already reported), and nothing is written.

        Raises:
            InvalidInputError: ``answer_id`` is not a str, or ``correct`` not a bool.
            CacheClosedError, StoreError: as ``SemanticCache.feedback``.
        """
        return feedback(self._door.core, self._door.hits, answer_id, correct)

    def close(self) -> None:
        """Close the wrapped transport (not the cache)."""
        self._inner.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()


class AsyncCachingTransport(httpx.AsyncBaseTransport):
    """:class:`CachingTransport` for ``httpx.AsyncClient`` (``openai.AsyncOpenAI``).

    Args:
        cache: an :class:`~semcache.AsyncSemanticCache` (or a
            :class:`~semcache.SemanticCache`, whose blocking work then runs on worker
            threads).
        transport: default ``httpx.AsyncHTTPTransport()``.
        policy, tenant, ttl: as in :class:`CachingTransport`.

    Raises:
        TypeError: ``cache`` is not a semcache cache.
    """

    def __init__(
        self,
        cache: AnyCache,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        policy: ChatPolicy | None = None,
        tenant: Tenant = None,
        ttl: float | None = None,
    ) -> None:
        self._door = _Door(cache, policy, tenant, ttl)
        self._inner = transport if transport is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """As :meth:`CachingTransport.handle_request`, on an event loop.

        Raises:
            httpx.HTTPError: the wrapped transport's errors (nothing is stored).
        """
        if not is_chat_completions(request.method, request.url.path):
            return await self._inner.handle_async_request(request)
        door = self._door
        plan, reason = plan_request(await request.aread(), door.policy, door.tenant_of(request))
        if plan is None:
            response = await self._inner.handle_async_request(request)
            response.headers[HEADER] = f"bypass; reason={reason}"
            return response
        key = plan.key
        if plan.stream:
            looked = await alook(door.cache, key.text, key.namespace)
            hit = looked.hit
            if hit is not None and (answer := door.hit_response(plan, hit)) is not None:
                return answer
            response = await self._inner.handle_async_request(request)

            async def done(assembler: StreamAssembler) -> None:
                text, fresh = door.stored_text(response, assembler)
                await alearn(door.cache, looked.judged, fresh)
                if text is not None:
                    await aput(
                        door.cache, key.text, text, key.namespace, door.metadata(plan), door.ttl
                    )

            return httpx.Response(
                response.status_code,
                headers=door.tee_headers(response),
                stream=_AsyncTee(response, done),
                extensions=response.extensions,
            )

        async def fetch() -> Fetched[_Raw]:
            response = await self._inner.handle_async_request(request)
            try:
                body = await response.aread()
            finally:
                await response.aclose()
            return door.raw(response, body)

        served = await aserve(
            door.cache, key.text, key.namespace, fetch, door.metadata(plan), door.ttl
        )
        if served.hit is not None:
            answer = door.hit_response(plan, served.hit)
            if answer is not None:
                return answer
            return await self._inner.handle_async_request(request)
        return door.fetched_response(served)

    @property
    def labels(self) -> dict[str, dict[str, Any]]:
        """What the namespace of each cacheable request this transport has seen covers
        (model, system prompt start, turns, parameter names, tenant), for the most recent
        4096: the readable side of ``cache.stats()["entries"]``."""
        with self._door._labels_lock:
            return {ns: dict(label) for ns, label in self._door.labels.items()}

    async def feedback(self, answer_id: str, correct: bool) -> bool:
        """:meth:`CachingTransport.feedback`, without blocking the event loop.

        Raises:
            The same as :meth:`CachingTransport.feedback`.
        """
        return await afeedback(self._door.cache, self._door.hits, answer_id, correct)

    async def aclose(self) -> None:
        """Close the wrapped transport (not the cache)."""
        await self._inner.aclose()
