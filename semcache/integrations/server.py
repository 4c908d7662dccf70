"""``semcache serve``: an OpenAI-compatible caching proxy (extra ``serve``).

Point any OpenAI-compatible client, in any language, at the proxy instead of the
provider (``base_url="http://127.0.0.1:8000/v1"``). The proxy is a Starlette app run by
uvicorn; it forwards every request to ``--upstream`` through an
:class:`~semcache.integrations.openai.AsyncCachingTransport`, so chat completions are
cached exactly as with the transport (same namespaces, same ``x-semcache`` header,
streaming, single-flight across all clients of the proxy):

* ``POST /v1/chat/completions``: cached (see :mod:`semcache.integrations.chat`);
* ``GET /v1/models`` and every other ``/v1/...`` request: passed through untouched;
* ``GET /healthz``: ``{"status": "ok"}``;
* ``GET /stats``: the cache's ``stats()``, the proxy's own counts and the upstream calls
  in progress (``{"cache": ..., "proxy": {"hit": n, "miss": n, "bypass": n, "other": n},
  "in_flight": {"flights": n, "followers": n}, "labels": {namespace: label}}``;
  ``followers`` are requests waiting for an identical one's answer; ``labels`` say what
  the namespaces of the cacheable requests seen since the start cover);
* ``POST /feedback`` with ``{"id": "<a hit's completion id>", "correct": false}``:
  report whether an answer the proxy served from the cache was right
  (``SemanticCache.feedback``): 200 ``{"reported": true}``; 404 when the id is not
  a hit of this proxy among its latest 4096 (or was reported already); 400 for a
  malformed body. With ``error_budget=`` the upstream calls the budget asked for
  teach it as ``get_or_put`` does (see :mod:`semcache.integrations.openai`).

The client's ``Authorization`` header is forwarded to the upstream and never stored; with
``tenant_header`` the value of that header (e.g. ``authorization``: one cache per API
key) is hashed (:func:`~semcache.integrations.chat.tenant_of`) into the namespace.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from . import require
from ._flow import AnyCache, core_of, flights_of
from .chat import ChatPolicy, tenant_of

# Before the transport's own check, so that the hint names this extra.
require("httpx", "serve", "semcache.integrations.server")
require("starlette", "serve", "semcache.integrations.server")

import httpx  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.background import BackgroundTask  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from .openai import AsyncCachingTransport  # noqa: E402

__all__ = ["create_app", "run"]

#: Request headers not forwarded: the connection's own, and what httpx sets itself.
_REQUEST_DROPPED = frozenset(
    {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "upgrade"}
)
#: Response headers not copied back: uvicorn writes its own framing, and the body is sent
#: decoded (a cached answer has no encoding of its own).
_RESPONSE_DROPPED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
)


def create_app(
    cache: AnyCache,
    upstream: str,
    *,
    policy: ChatPolicy | None = None,
    tenant_header: str | None = None,
    ttl: float | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float | None = 600.0,
) -> Starlette:
    """The proxy as an ASGI app.

    Args:
        cache: the cache (an :class:`~semcache.AsyncSemanticCache` is best; a
            :class:`~semcache.SemanticCache` works too). Not closed by the app.
        upstream: the provider's API base, e.g. ``https://api.openai.com/v1``; a request
            for ``/v1/<rest>`` goes to ``<upstream>/<rest>``.
        policy: what may be cached (default :class:`ChatPolicy()`).
        tenant_header: a request header whose (hashed) value keeps callers apart.
        ttl: seconds a stored answer lives (None: the cache's ``default_ttl``).
        transport: the transport that reaches the upstream (default: httpx's).
        timeout: seconds an upstream call may take (None: no limit).

    Raises:
        TypeError: ``cache`` is not a semcache cache.
    """
    core = core_of(cache)
    base = upstream.rstrip("/")
    header = tenant_header.lower() if tenant_header else None

    def tenant(request: httpx.Request) -> str | None:
        if header is None:
            return None
        value = request.headers.get(header)
        return None if value is None else tenant_of(value)

    caching = AsyncCachingTransport(
        cache,
        transport if transport is not None else httpx.AsyncHTTPTransport(),
        policy=policy,
        tenant=tenant,
        ttl=ttl,
    )
    client = httpx.AsyncClient(transport=caching, timeout=timeout)
    counts: Counter[str] = Counter()

    async def forward(request: Request) -> Response:
        rest = request.path_params["rest"]
        url = f"{base}/{rest}"
        if request.url.query:
            url = f"{url}?{request.url.query}"
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _REQUEST_DROPPED]
        outgoing = client.build_request(
            request.method, url, headers=headers, content=await request.body()
        )
        try:
            reply = await client.send(outgoing, stream=True)
        except httpx.TimeoutException:
            return JSONResponse(_error("the upstream timed out"), status_code=504)
        except httpx.HTTPError as exc:
            return JSONResponse(_error(f"the upstream failed: {exc}"), status_code=502)
        note = reply.headers.get("x-semcache", "")
        counts[note.split(";", 1)[0] or "other"] += 1
        return StreamingResponse(
            reply.aiter_bytes(),
            status_code=reply.status_code,
            headers={k: v for k, v in reply.headers.items() if k.lower() not in _RESPONSE_DROPPED},
            background=BackgroundTask(reply.aclose),
        )

    async def feedback(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            body = None
        answer_id = body.get("id") if isinstance(body, dict) else None
        correct = body.get("correct") if isinstance(body, dict) else None
        if not isinstance(answer_id, str) or not isinstance(correct, bool):
            message = 'expected {"id": "<completion id>", "correct": true|false}'
            return JSONResponse(_error(message), status_code=400)
        if not await caching.feedback(answer_id, correct):
            message = "not a hit of this proxy (or too old, or reported already)"
            return JSONResponse(_error(message), status_code=404)
        return JSONResponse({"reported": True})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def stats(request: Request) -> Response:
        result = cache.stats()
        numbers: dict[str, Any] = await result if not isinstance(result, dict) else result
        flights = flights_of(core)
        return JSONResponse(
            {
                "cache": numbers,
                "proxy": {k: counts[k] for k in ("hit", "miss", "bypass", "other")},
                "in_flight": {"flights": len(flights), "followers": flights.followers()},
                "labels": caching.labels,
            }
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await client.aclose()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/stats", stats, methods=["GET"]),
            Route("/feedback", feedback, methods=["POST"]),
            Route("/v1/{rest:path}", forward, methods=methods),
        ],
        lifespan=lifespan,
    )


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "semcache_proxy_error"}}


def run(app: Starlette, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``app`` with uvicorn until interrupted.

    Raises:
        MissingDependencyError: uvicorn is not installed.
    """
    uvicorn = require("uvicorn", "serve", "semcache serve")
    uvicorn.run(app, host=host, port=port, log_level="info", workers=1)
