"""What an OpenAI-style chat request means to the cache (no dependencies).

Every door (the httpx transport, the proxy, LangChain, LiteLLM) asks this module the same
three questions, so a model or a system prompt never leaks a hit into another door's
answers:

* **What is matched semantically?** The last message, which must come from the user
  (:attr:`ChatKey.text`). Its content is a string, or a list of parts whose ``text``
  parts are joined with a newline. A request whose last message is not the user's (a
  tool result, an assistant prefill) is not cached: the answer depends on that message,
  which is not a question to match.
* **Which namespace (a hard wall)?** A BLAKE2b hash of the canonical JSON (sorted keys,
  no spaces) of everything else that changes the answer: the model, every earlier
  message (the system prompt and earlier turns, with their roles, names and tool
  calls), and every other request field (``tools``, ``tool_choice``,
  ``response_format``, ``temperature``, ``top_p``, ``max_tokens``, ``stop``, ``seed``,
  penalties, ``logit_bias``, ``logprobs`` ... and any field this module does not know:
  an unknown field is assumed to change the answer). Only fields that cannot change the
  answer are left out: see :data:`IGNORED_FIELDS`. The tenant, when given, is hashed in
  too. The namespace reads ``chat:<model>:<hash>`` so ``cache.stats()["entries"]`` shows
  which model each namespace serves; :attr:`ChatKey.label` (stored as each entry's
  ``metadata["semcache.chat"]``) describes it further.
* **May it be cached at all?** See :meth:`ChatPolicy.check_request` and
  :meth:`ChatPolicy.check_response`; each refusal has a reason string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, Final

from .._errors import ConfigurationError, SemanticCacheError

__all__ = [
    "IGNORED_FIELDS",
    "ChatKey",
    "ChatPolicy",
    "Uncacheable",
    "canonical_json",
    "chat_key",
    "tenant_of",
]

#: Request fields that never change the answer, left out of the namespace: how the answer
#: is delivered (``stream``, ``stream_options``), bookkeeping on the provider's side
#: (``user``, ``metadata``, ``store``, ``service_tier``, ``safety_identifier``,
#: ``prompt_cache_key``) and ``n`` (only ``n`` of 1 or unset is cacheable, and those are
#: the same request).
IGNORED_FIELDS: Final = frozenset(
    {
        "messages",
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
        "n",
    }
)

#: OpenAI's documented default when ``temperature`` is not sent.
DEFAULT_TEMPERATURE: Final = 1.0

_MODEL_CHARS: Final = 64


class Uncacheable(SemanticCacheError):
    """A request (or response) the cache must not serve or store; ``reason`` says why.
    The doors catch it and forward the request uncached."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no spaces: the same data, the same text.

    Raises:
        Uncacheable: ``value`` is not JSON (reason ``"not_json"``).
    """
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise Uncacheable("not_json") from exc


def tenant_of(secret: str) -> str:
    """A tenant name from a secret (an API key): 16 hex digits of its BLAKE2b hash. The
    secret itself is never stored."""
    return blake2b(secret.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class ChatKey:
    """Where a chat request lives in the cache.

    Attributes:
        text: the last user message, matched exactly then semantically.
        namespace: ``chat:<model>:<hash>``, the hard wall (see the module docstring).
        label: a readable summary of what the hash covers (model, system prompt start,
            earlier turn count, parameters, tenant); stored as entry metadata.
    """

    text: str
    namespace: str
    label: Mapping[str, Any]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if not isinstance(part, Mapping):
                raise Uncacheable("malformed_content")
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                # An image, audio or file changes the answer and cannot be matched as text.
                raise Uncacheable("non_text_content")
            texts.append(part["text"])
        return "\n".join(texts)
    raise Uncacheable("malformed_content")


def _readable(model: str) -> str:
    shown = "".join(ch for ch in model if ch.isascii() and (ch.isalnum() or ch in "._-/@+"))
    return shown[:_MODEL_CHARS] or "?"


def chat_key(request: Mapping[str, Any], *, tenant: str | None = None) -> ChatKey:
    """The text and namespace of an OpenAI-style chat request (``model``, ``messages``
    and parameters, as sent to ``/chat/completions``).

    Args:
        request: the request body.
        tenant: kept apart from other tenants (e.g. :func:`tenant_of` an API key).

    Raises:
        Uncacheable: no usable last user message (``"no_messages"``,
            ``"last_message_not_user"``, ``"non_text_content"``, ``"malformed_content"``),
            no model (``"no_model"``) or a body that is not JSON (``"not_json"``).
    """
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Uncacheable("no_messages")
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "user":
        raise Uncacheable("last_message_not_user")
    text = _text_of(last.get("content"))
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise Uncacheable("no_model")
    # The last message's other fields (a name) change the answer too.
    last_rest = {k: v for k, v in last.items() if k != "content"}
    params = {k: v for k, v in request.items() if k not in IGNORED_FIELDS}
    scope = {
        "v": 1,
        "params": params,
        "history": messages[:-1],
        "last": last_rest,
        "tenant": tenant,
    }
    digest = blake2b(canonical_json(scope).encode(), digest_size=12).hexdigest()
    system = next(
        (
            m.get("content")
            for m in messages[:-1]
            if isinstance(m, Mapping) and m.get("role") in ("system", "developer")
        ),
        None,
    )
    label: dict[str, Any] = {"model": model, "turns": len(messages) - 1}
    if system is not None:
        label["system"] = (system if isinstance(system, str) else canonical_json(system))[:80]
    others = sorted(k for k in params if k != "model")
    if others:
        label["params"] = others
    if tenant is not None:
        label["tenant"] = tenant
    return ChatKey(text=text, namespace=f"chat:{_readable(model)}:{digest}", label=label)


@dataclass(frozen=True, slots=True)
class ChatPolicy:
    """Which chat requests and responses the cache serves and stores.

    Args:
        max_temperature: requests sampled above this temperature are not cached (their
            answers are meant to vary). A request without ``temperature`` counts as
            OpenAI's default, 1.0, so the default cap of 0.5 caches only requests that
            ask for (nearly) deterministic answers; ``temperature=0`` is always
            cacheable. Raise it to 1.0 (or ``math.inf``) to cache sampled answers too.
        cache_tool_calls: also store answers that call tools (``finish_reason ==
            "tool_calls"``). Off by default: a tool call usually acts on the world, and
            replaying it is the application's decision.

    Raises:
        ConfigurationError: ``max_temperature`` is negative, NaN or not a number.
    """

    max_temperature: float = 0.5
    cache_tool_calls: bool = False

    def __post_init__(self) -> None:
        value = self.max_temperature
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ConfigurationError(
                f"max_temperature must be a number >= 0, got {self.max_temperature!r}"
            )

    def check_request(self, request: Mapping[str, Any]) -> None:
        """Refuse a request the cache must neither serve nor store.

        Raises:
            Uncacheable: ``"n_above_1"`` (several samples are asked for: one cached answer
                is not several), ``"temperature"`` (above :attr:`max_temperature`, or not
                a number).
        """
        n = request.get("n")
        if n is not None and n != 1:
            raise Uncacheable("n_above_1")
        temperature = request.get("temperature", DEFAULT_TEMPERATURE)
        if temperature is None:
            temperature = DEFAULT_TEMPERATURE
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise Uncacheable("temperature")
        if temperature != 0 and not temperature <= self.max_temperature:
            raise Uncacheable("temperature")

    def check_response(self, completion: Mapping[str, Any]) -> None:
        """Refuse to store an answer that is not one complete choice.

        Raises:
            Uncacheable: ``"not_one_choice"``, ``"finish_reason"`` (anything but
                ``"stop"``: cut by ``length``, filtered, or calling tools without
                :attr:`cache_tool_calls`), ``"tool_calls"`` (a ``"stop"`` answer that
                still carries tool calls, without :attr:`cache_tool_calls`).
        """
        choices = completion.get("choices")
        if not isinstance(choices, list) or len(choices) != 1:
            raise Uncacheable("not_one_choice")
        choice = choices[0]
        if not isinstance(choice, Mapping):
            raise Uncacheable("not_one_choice")
        reason = choice.get("finish_reason")
        message = choice.get("message")
        calls = isinstance(message, Mapping) and bool(
            message.get("tool_calls") or message.get("function_call")
        )
        if self.cache_tool_calls:
            if reason not in ("stop", "tool_calls", "function_call"):
                raise Uncacheable("finish_reason")
            return
        if reason != "stop":
            raise Uncacheable("finish_reason")
        if calls:
            raise Uncacheable("tool_calls")
