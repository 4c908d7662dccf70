"""A LangChain LLM cache (extra ``langchain``)::

    from langchain_core.globals import set_llm_cache
    set_llm_cache(SemanticLLMCache(SemanticCache("llm.sqlite3", default_embedder())))

Chat models and completion models both work. LangChain hands the cache a ``prompt`` (for
a chat model, its message list serialized with ``langchain_core.load.dumps``) and an
``llm_string`` (the model's class, settings and call parameters). The cache splits them
as every other door does (:mod:`semcache.integrations.chat`): the last user message is
matched semantically; the earlier messages (system prompt, turns) and the whole
``llm_string`` make the namespace (``langchain:<model>:<hash>``), so another model,
setting or system prompt is never served. A chat prompt whose last message is not the
user's, or has image parts, is not cached. Generations are stored with LangChain's own
``dumps`` and come back with its ``loads``: they round-trip exactly.

Unlike the other doors, no temperature cap applies: with ``set_llm_cache`` (or a model's
``cache=``) the application has already decided that this model's answers are cached.
Generations that were cut short (``finish_reason`` other than ``"stop"`` when the model
reports one) or that call tools (unless ``ChatPolicy(cache_tool_calls=True)``) are not
stored.

With a cache made with ``error_budget=``, the model calls the budget asked for (a
verification, or a miss with candidates) teach it as ``get_or_put`` does: ``lookup``
keeps what the candidates said, and the ``update`` of the same prompt and model that
follows compares the fresh generations' text with theirs (tool calls included; a
generation cut short teaches nothing). A hit carries
``response_metadata["semcache"] == {"id": ..., "layer": ..., "similarity": ...}`` on its
message (``generation_info["semcache"]`` for a completion model);
``SemanticLLMCache.feedback(id, correct)`` reports whether it was right.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from .._budgets import Judgement
from . import require
from ._flow import (
    AnyCache,
    HitLog,
    Looked,
    afeedback,
    alearn,
    alook,
    aput,
    core_of,
    feedback,
    learn,
    look,
    put,
    read_answers,
    sync_core,
)
from .chat import ChatKey, ChatPolicy, Uncacheable, chat_key

if TYPE_CHECKING:
    from langchain_core.caches import BaseCache
    from langchain_core.load import dumps, loads
    from langchain_core.messages import BaseMessage, convert_to_openai_messages
    from langchain_core.outputs import Generation
else:
    require("langchain_core", "langchain", "semcache.integrations.langchain")
    from langchain_core.caches import BaseCache
    from langchain_core.load import dumps, loads
    from langchain_core.messages import BaseMessage, convert_to_openai_messages
    from langchain_core.outputs import Generation

__all__ = ["SemanticLLMCache", "generations_answer"]

#: The policy of what teaches the budget: any complete answer, tool calls included.
_ANY_COMPLETE: Final = ChatPolicy(cache_tool_calls=True)

_PREFIX = "langchain:"

#: Lookups whose judgement waits for their ``update`` (the latest ones).
_PENDING: Final = 1024


def _calls(kwargs: Any) -> Any:
    message = kwargs.get("message")
    inner = message.get("kwargs") if isinstance(message, dict) else None
    calls = inner.get("tool_calls") if isinstance(inner, dict) else None
    if not isinstance(calls, list):
        return None
    return [{k: v for k, v in c.items() if k != "id"} if isinstance(c, dict) else c for c in calls]


@functools.lru_cache(maxsize=512)
def generations_answer(stored: str) -> str:
    """The answer in stored generations (LangChain's ``dumps`` of a list): their text,
    with their tool calls (without ids) when they call tools; ``stored`` itself if it is
    not such a list. What the error budget's ``same_answer`` compares for the
    ``langchain:`` namespaces (message ids and metadata differ between two identical
    answers)."""
    try:
        items = json.loads(stored)
        parts = [(item["kwargs"].get("text", ""), _calls(item["kwargs"])) for item in items]
    except (ValueError, KeyError, TypeError, AttributeError):
        return stored
    if not parts or any(not isinstance(text, str) for text, _ in parts):
        return stored
    if all(not calls for _, calls in parts):
        return "\n".join(text for text, _ in parts)
    return json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _loads(text: str, allowed: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "loads is in beta"
        try:
            return loads(text, allowed_objects=allowed)
        except TypeError:  # langchain-core before allowed_objects
            return loads(text)


def _dumps(value: Any) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(dumps(value))


#: ``('model', 'gpt-4o')`` in the ``str(sorted(params))`` form of a non-serializable model.
_PARAM = re.compile(r"\('(model|model_name|model_id|_type)', '([^']{1,200})'\)")


def _model_name(llm_string: str) -> str:
    """The model's name from an ``llm_string`` when it says (for the readable prefix of
    the namespace; the whole string is hashed anyway)."""
    head = llm_string.split("---", 1)[0]
    try:
        spec = json.loads(head)
    except ValueError:
        spec = None
    if isinstance(spec, dict):
        kwargs = spec.get("kwargs") or {}
        for field in ("model", "model_name", "model_id"):
            if isinstance(kwargs.get(field), str):
                return str(kwargs[field])
        ids = spec.get("id")
        if isinstance(ids, list) and ids:
            return str(ids[-1])
    found: dict[str, str] = {m.group(1): m.group(2) for m in _PARAM.finditer(llm_string)}
    for field in ("model", "model_name", "model_id", "_type"):
        if field in found:
            return found[field]
    return "langchain"


class SemanticLLMCache(BaseCache):
    """A LangChain ``BaseCache`` on a semcache cache.

    Args:
        cache: a :class:`~semcache.SemanticCache` or :class:`~semcache.AsyncSemanticCache`
            (either serves both the sync and the async methods).
        policy: which generations are stored (only ``cache_tool_calls`` applies).
        ttl: seconds a stored answer lives (None: the cache's ``default_ttl``).

    Raises:
        TypeError: ``cache`` is not a semcache cache.
    """

    def __init__(
        self, cache: AnyCache, *, policy: ChatPolicy | None = None, ttl: float | None = None
    ) -> None:
        self._core = core_of(cache)
        self._cache = cache
        self._policy = policy if policy is not None else ChatPolicy()
        self._ttl = ttl
        self._hits = HitLog()
        #: What a lookup's candidates said, by (namespace, text), until its update.
        self._pending: OrderedDict[tuple[str, str], Judgement] = OrderedDict()
        self._pending_lock = threading.Lock()
        read_answers(cache, _PREFIX, generations_answer)

    # -- the split ---------------------------------------------------------------------
    def _key(self, prompt: str, llm_string: str) -> ChatKey | None:
        messages: Any = None
        if prompt.startswith("["):
            try:
                messages = _loads(prompt, "messages")
            except Exception:
                messages = None
        if (
            isinstance(messages, list)
            and messages
            and all(isinstance(m, BaseMessage) for m in messages)
        ):
            kind, wire = "chat", convert_to_openai_messages(messages)
        else:
            kind, wire = "llm", [{"role": "user", "content": prompt}]
        request = {
            "model": _model_name(llm_string),
            "messages": wire,
            "langchain": {"kind": kind, "llm_string": llm_string},
        }
        try:
            key = chat_key(request)
        except Uncacheable:
            return None
        # Its own prefix, so that clear() deletes this door's entries and no others.
        return replace(key, namespace=_PREFIX + key.namespace.removeprefix("chat:"))

    def _storable(
        self, return_val: Sequence[Generation], policy: ChatPolicy | None = None
    ) -> str | None:
        policy = policy if policy is not None else self._policy
        if not return_val:
            return None
        for generation in return_val:
            info = generation.generation_info or {}
            reason = info.get("finish_reason")
            message = getattr(generation, "message", None)
            calls = bool(getattr(message, "tool_calls", None))
            if reason is None and message is not None:
                metadata = getattr(message, "response_metadata", None) or {}
                reason = metadata.get("finish_reason")
            allowed = ("stop", "tool_calls") if policy.cache_tool_calls else ("stop",)
            if reason is not None and reason not in allowed:
                return None
            if calls and not policy.cache_tool_calls:
                return None
        return _dumps(list(return_val))

    def _texts(self, return_val: Sequence[Generation]) -> tuple[str | None, str | None]:
        """What to store of the generations, and what the budget learns from them (a
        complete answer, tool calls included)."""
        text = self._storable(return_val)
        if text is not None:
            return text, text
        return None, self._storable(return_val, _ANY_COMPLETE)

    def _revive(self, text: str) -> list[Generation] | None:
        try:
            value = _loads(text, "core")
        except Exception:
            return None
        if isinstance(value, list) and all(isinstance(g, Generation) for g in value):
            return value
        return None

    def _served(self, key: ChatKey, looked: Looked) -> list[Generation] | None:
        """The generations of a hit, marked with its id; on a miss, keep what the
        budget's candidates said for the update."""
        hit = looked.hit
        if hit is None:
            if looked.judged is not None:
                with self._pending_lock:
                    self._pending[(key.namespace, key.text)] = looked.judged
                    self._pending.move_to_end((key.namespace, key.text))
                    while len(self._pending) > _PENDING:
                        self._pending.popitem(last=False)
            return None
        generations = self._revive(hit.response)
        if generations is None:
            return None
        answer_id = f"semcache-{uuid.uuid4().hex}"
        mark = {"id": answer_id, "layer": hit.layer, "similarity": hit.similarity}
        for generation in generations:
            message = getattr(generation, "message", None)
            if message is not None and isinstance(message.response_metadata, dict):
                message.response_metadata["semcache"] = mark
            else:
                generation.generation_info = {
                    **(generation.generation_info or {}),
                    "semcache": mark,
                }
        self._hits.remember(answer_id, hit)
        return generations

    def _judged(self, key: ChatKey) -> Judgement | None:
        with self._pending_lock:
            return self._pending.pop((key.namespace, key.text), None)

    @staticmethod
    def _metadata(key: ChatKey) -> dict[str, Any]:
        label = dict(key.label)
        label.pop("params", None)
        return {"semcache.langchain": label}

    # -- BaseCache ---------------------------------------------------------------------
    def lookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        """The cached generations for ``prompt`` with this model, or None.

        Raises:
            ConfigurationError: the cache's embedder is async (LangChain's async path
                calls :meth:`alookup`).
        """
        core = sync_core(self._cache, "SemanticLLMCache.lookup")
        key = self._key(prompt, llm_string)
        if key is None:
            return None
        return self._served(key, look(core, key.text, key.namespace))

    def update(self, prompt: str, llm_string: str, return_val: Sequence[Generation]) -> None:
        """Store ``return_val`` (if cacheable); a failure to store is logged, not raised.

        Raises:
            ConfigurationError: the cache's embedder is async.
        """
        core = sync_core(self._cache, "SemanticLLMCache.update")
        key = self._key(prompt, llm_string)
        if key is None:
            return
        text, fresh = self._texts(return_val)
        learn(core, self._judged(key), fresh)
        if text is not None:
            put(core, key.text, text, key.namespace, self._metadata(key), self._ttl)

    def clear(self, **kwargs: Any) -> None:
        """Delete every entry this door wrote (the namespaces starting with
        ``langchain:``); other entries of the cache are kept."""
        for namespace in list(self._core.stats()["entries"]):
            if namespace.startswith(_PREFIX):
                self._core.clear_namespace(namespace)

    async def alookup(self, prompt: str, llm_string: str) -> list[Generation] | None:
        """:meth:`lookup` without blocking the event loop."""
        key = self._key(prompt, llm_string)
        if key is None:
            return None
        return self._served(key, await alook(self._cache, key.text, key.namespace))

    async def aupdate(self, prompt: str, llm_string: str, return_val: Sequence[Generation]) -> None:
        """:meth:`update` without blocking the event loop."""
        key = self._key(prompt, llm_string)
        if key is None:
            return
        text, fresh = self._texts(return_val)
        await alearn(self._cache, self._judged(key), fresh)
        if text is not None:
            await aput(self._cache, key.text, text, key.namespace, self._metadata(key), self._ttl)

    def feedback(self, answer_id: str, correct: bool) -> bool:
        """Report whether a hit this cache served LangChain was right
        (``SemanticCache.feedback``): ``answer_id`` is
        ``message.response_metadata["semcache"]["id"]`` of the answer (a chat model's;
        ``generation_info["semcache"]["id"]`` of a completion model's generation). One
        report per answer.

        Returns:
            True if it was a hit served here (among the latest 4096) and its entry learnt
            the report; False otherwise, and nothing is written.

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

    async def aclear(self, **kwargs: Any) -> None:
        """:meth:`clear` without blocking the event loop."""
        import asyncio

        await asyncio.to_thread(self.clear)
