"""Cached ``litellm.completion`` / ``litellm.acompletion`` (extra ``litellm``)::

    llm = SemanticLiteLLM(SemanticCache("llm.sqlite3", default_embedder()))
    response = llm.completion(model="openai/gpt-4o-mini", messages=[...], temperature=0)

The arguments are LiteLLM's own; the result is a real ``litellm.ModelResponse``. Requests
are split and judged as by every other door (:mod:`semcache.integrations.chat`): the last
user message is matched, everything else that changes the answer (the model, earlier
messages, parameters, ``api_base``) is the namespace. Concurrent identical misses make
one LiteLLM call (single-flight, as ``get_or_put``). A hit is a ``ModelResponse`` with a
fresh ``id`` and ``created``, zero ``usage`` and ``response._hidden_params["semcache"] ==
{"layer": ..., "similarity": ..., "id": ...}``. ``stream=True`` calls pass through uncached.

With a cache made with ``error_budget=``, the LiteLLM calls the budget asked for (a
verification, or a miss with candidates) teach it as ``get_or_put`` does (answers
compared by their messages' content). ``llm.feedback(response.id, correct)`` reports
whether a hit was right (``SemanticCache.feedback``).

Why not a LiteLLM cache backend (``litellm.cache = Cache(type="custom", ...)``)? LiteLLM
hands a backend one opaque key built from all messages joined together: the backend never
sees the model, the system prompt or the last user message apart, so it can neither match
the question semantically nor keep a model's answers away from another model's. For
LiteLLM's *proxy*, point its ``api_base`` at ``semcache serve`` instead (see
docs/integrations.md): every team and language behind the proxy shares the cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from . import require
from ._flow import (
    AnyCache,
    Fetched,
    HitLog,
    Served,
    afeedback,
    aserve,
    core_of,
    feedback,
    read_answers,
    serve,
    sync_core,
)
from ._wire import comparable, completion_answer, fresh, storable
from .chat import ChatKey, ChatPolicy, Uncacheable, chat_key

if TYPE_CHECKING:
    import litellm
else:
    litellm = require("litellm", "litellm", "semcache.integrations.litellm")

__all__ = ["LITELLM_IGNORED", "SemanticLiteLLM"]

#: LiteLLM arguments that reach the provider but do not change the answer (credentials,
#: retries, timeouts, logging) and are left out of the namespace.
LITELLM_IGNORED: Final = frozenset(
    {
        "api_key",
        "timeout",
        "request_timeout",
        "num_retries",
        "max_retries",
        "metadata",
        "caching",
        "cache",
        "extra_headers",
        "headers",
        "litellm_logging_obj",
        "logger_fn",
        "client",
        "proxy_server_request",
        "litellm_call_id",
        "mock_response",
    }
)


class SemanticLiteLLM:
    """``completion`` and ``acompletion`` answered from a semcache cache.

    Args:
        cache: a :class:`~semcache.SemanticCache` or :class:`~semcache.AsyncSemanticCache`.
        policy: what may be cached (default :class:`ChatPolicy()`).
        tenant: kept apart from other tenants (e.g. ``tenant_of(api_key)``).
        ttl: seconds a stored answer lives (None: the cache's ``default_ttl``).

    Raises:
        TypeError: ``cache`` is not a semcache cache.
    """

    def __init__(
        self,
        cache: AnyCache,
        *,
        policy: ChatPolicy | None = None,
        tenant: str | None = None,
        ttl: float | None = None,
    ) -> None:
        self._core = core_of(cache)
        self._cache = cache
        self._policy = policy if policy is not None else ChatPolicy()
        self._tenant = tenant
        self._ttl = ttl
        self._hits = HitLog()
        read_answers(cache, "chat:", completion_answer)

    def _key(self, kwargs: Mapping[str, Any]) -> ChatKey | None:
        if kwargs.get("stream"):
            return None
        request = {k: v for k, v in kwargs.items() if k not in LITELLM_IGNORED}
        try:
            self._policy.check_request(request)
            return chat_key(request, tenant=self._tenant)
        except Uncacheable:
            return None

    def _fetched(self, response: Any) -> Fetched[Any]:
        try:
            data = response.model_dump()
        except Exception:
            return Fetched(response, None)
        text = storable(200, data, self._policy)
        return Fetched(response, text, None if text is not None else comparable(200, data))

    def _result(self, served: Served[Any]) -> Any:
        if served.hit is None:
            assert served.fetched is not None
            return served.fetched.value
        response = litellm.ModelResponse(**fresh(served.hit.response))
        self._hits.remember(response.id, served.hit)
        hidden = getattr(response, "_hidden_params", None)
        if isinstance(hidden, dict):
            hidden["semcache"] = {
                "layer": served.hit.layer,
                "similarity": served.hit.similarity,
                "id": response.id,
            }
            hidden["cache_hit"] = True
        return response

    def feedback(self, answer_id: str, correct: bool) -> bool:
        """Report whether a hit this object served was right (``SemanticCache.feedback``):
        ``answer_id`` is the response's ``id``. One report per answer.

        Returns:
            True if it was a hit served here (among the latest 4096) and its entry learnt
            the report; False otherwise (a miss, an unknown or old id, or one already
            reported), and nothing is written.

        Raises:
            InvalidInputError: ``answer_id`` is not a str, or ``correct`` not a bool.
            CacheClosedError, StoreError: as ``SemanticCache.feedback``.
        """
        return feedback(self._cache, self._hits, answer_id, correct)

    async def afeedback(self, answer_id: str, correct: bool) -> bool:
        """:meth:`feedback` without blocking the event loop.

        Raises:
            The same as :meth:`feedback`.
        """
        return await afeedback(self._cache, self._hits, answer_id, correct)

    def completion(self, **kwargs: Any) -> Any:
        """``litellm.completion(**kwargs)``, from the cache when it may be.

        Returns:
            A ``litellm.ModelResponse`` (or what LiteLLM returns for ``stream=True``).

        Raises:
            ConfigurationError: the cache's embedder is async (use :meth:`acompletion`).
            Exception: whatever ``litellm.completion`` raises (nothing is stored; callers
                waiting for the same answer receive the same error).
        """
        core = sync_core(self._cache, "SemanticLiteLLM.completion")
        key = self._key(kwargs)
        if key is None:
            return litellm.completion(**kwargs)

        def fetch() -> Fetched[Any]:
            return self._fetched(litellm.completion(**kwargs))

        metadata = {"semcache.chat": dict(key.label)}
        served = serve(core, key.text, key.namespace, fetch, metadata, self._ttl)
        return self._result(served)

    async def acompletion(self, **kwargs: Any) -> Any:
        """``await litellm.acompletion(**kwargs)``, from the cache when it may be.

        Raises:
            Exception: whatever ``litellm.acompletion`` raises (nothing is stored).
        """
        key = self._key(kwargs)
        if key is None:
            return await litellm.acompletion(**kwargs)

        async def fetch() -> Fetched[Any]:
            return self._fetched(await litellm.acompletion(**kwargs))

        metadata = {"semcache.chat": dict(key.label)}
        served = await aserve(self._cache, key.text, key.namespace, fetch, metadata, self._ttl)
        return self._result(served)
