"""The OpenAI chat-completions wire format, without I/O (shared by the transport and the
proxy): which requests the cache handles, how a stored completion is served (JSON or
server-sent events) and how a streamed answer is put back together to be stored."""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .._types import Hit
from .chat import ChatKey, ChatPolicy, Uncacheable, canonical_json, chat_key

__all__ = [
    "HEADER",
    "Plan",
    "StreamAssembler",
    "answer_id",
    "comparable",
    "completion_answer",
    "hit_header",
    "is_chat_completions",
    "plan_request",
    "serve_json",
    "serve_sse",
    "storable",
]

#: The response header that says what the cache did.
HEADER: Final = "x-semcache"

#: Hop-by-hop or body-encoding headers that do not survive re-serving a decoded body.
DROPPED_HEADERS: Final = frozenset(
    {"content-length", "content-encoding", "transfer-encoding", "connection", "keep-alive"}
)


def is_chat_completions(method: str, path: str) -> bool:
    """Whether a request is a chat completion (``POST .../chat/completions``)."""
    return method.upper() == "POST" and path.rstrip("/").endswith("/chat/completions")


@dataclass(frozen=True, slots=True)
class Plan:
    """A chat request the cache handles: its key and how to answer."""

    key: ChatKey
    request: Mapping[str, Any]
    stream: bool
    include_usage: bool


def plan_request(
    body: bytes, policy: ChatPolicy, tenant: str | None
) -> tuple[Plan | None, str | None]:
    """``(plan, None)`` for a cacheable chat request body, ``(None, reason)`` otherwise."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, "not_json"
    if not isinstance(request, dict):
        return None, "not_json"
    try:
        policy.check_request(request)
        key = chat_key(request, tenant=tenant)
    except Uncacheable as verdict:
        return None, verdict.reason
    options = request.get("stream_options")
    include_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
    return Plan(key, request, request.get("stream") is True, include_usage), None


#: The policy of :func:`comparable`: any complete answer, tool calls included.
_ANY_COMPLETE: Final = ChatPolicy(max_temperature=float("inf"), cache_tool_calls=True)


def storable(status: int, body: bytes | Mapping[str, Any], policy: ChatPolicy) -> str | None:
    """The text to store for an upstream answer, or None if it must not be stored (not a
    200, not JSON, or refused by :meth:`ChatPolicy.check_response`)."""
    if status != 200:
        return None
    if isinstance(body, Mapping):
        completion: Any = body
    else:
        try:
            completion = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
    if not isinstance(completion, dict):
        return None
    try:
        policy.check_response(completion)
        return canonical_json(completion)
    except Uncacheable:
        return None


def comparable(status: int, body: bytes | Mapping[str, Any]) -> str | None:
    """The text an error budget learns from for an upstream answer the door does not
    store: a 200 with one complete choice (``finish_reason`` stop or a tool call), as
    :func:`storable` would store it; None for an error or an answer cut short (it says
    nothing of whether a stored answer was right)."""
    return storable(status, body, _ANY_COMPLETE)


def _strip_ids(calls: Any) -> Any:
    if not isinstance(calls, list):
        return calls
    return [{k: v for k, v in c.items() if k != "id"} if isinstance(c, dict) else c for c in calls]


@functools.lru_cache(maxsize=512)
def completion_answer(stored: str) -> str:
    """The answer in a stored chat completion: the message's content, or (for a tool
    call or a refusal) the canonical JSON of content, refusal and tool calls without
    their ids; ``stored`` itself if it is not a completion. What the error budget's
    ``same_answer`` compares for the ``chat:`` namespaces (ids, timestamps and usage
    differ between two identical answers)."""
    try:
        message = json.loads(stored)["choices"][0]["message"]
        content = message.get("content")
        calls = message.get("tool_calls") or message.get("function_call")
        refusal = message.get("refusal")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return stored
    if not calls and not refusal and isinstance(content, str):
        return content
    try:
        return canonical_json(
            {"content": content, "refusal": refusal, "tool_calls": _strip_ids(calls)}
        )
    except Uncacheable:  # pragma: no cover - parsed from JSON, so JSON
        return stored


def answer_id() -> str:
    """A fresh completion id for an answer served from the cache."""
    return f"chatcmpl-semcache-{uuid.uuid4().hex}"


def hit_header(hit: Hit) -> str:
    """``hit; layer=exact; similarity=1.0000``."""
    return f"hit; layer={hit.layer}; similarity={hit.similarity:.4f}"


def fresh(stored: str, new_id: str | None = None) -> dict[str, Any]:
    """A stored completion as a new answer: a fresh ``id`` (``new_id``, or
    :func:`answer_id`) and ``created``, ``usage`` zeroed (nothing was spent).

    Raises:
        ValueError: ``stored`` is not a completion (JSON object).
    """
    completion = json.loads(stored)
    if not isinstance(completion, dict):
        raise ValueError("the cached entry is not a chat completion")
    completion["id"] = new_id if new_id is not None else answer_id()
    completion["created"] = int(time.time())
    completion["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    return completion


def serve_json(stored: str, new_id: str | None = None) -> bytes:
    """The body of a hit for a non-streaming request (its id: see :func:`fresh`).

    Raises:
        ValueError: ``stored`` is not a completion.
    """
    return json.dumps(fresh(stored, new_id)).encode()


def _event(data: Any) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def serve_sse(stored: str, include_usage: bool, new_id: str | None = None) -> list[bytes]:
    """The events of a hit for a streaming request: the whole message in one chunk, the
    finish reason in the next, the (zero) usage if asked for, then ``[DONE]`` (their
    id: see :func:`fresh`).

    Raises:
        ValueError: ``stored`` is not a completion.
    """
    completion = fresh(stored, new_id)
    choice = completion["choices"][0]
    message = choice.get("message") or {}
    base = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion.get("model"),
        "system_fingerprint": completion.get("system_fingerprint"),
    }
    if include_usage:
        base["usage"] = None
    delta: dict[str, Any] = {"role": message.get("role", "assistant")}
    if message.get("content") is not None:
        delta["content"] = message["content"]
    if message.get("refusal") is not None:
        delta["refusal"] = message["refusal"]
    if message.get("tool_calls"):
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
    events = [
        _event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}),
        _event(
            {
                **base,
                "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}],
            }
        ),
    ]
    if include_usage:
        events.append(_event({**base, "choices": [], "usage": completion["usage"]}))
    events.append(b"data: [DONE]\n\n")
    return events


class StreamAssembler:
    """Feeds on the bytes of a streamed answer (server-sent events) and puts the
    completion back together, as the non-streaming endpoint would have answered."""

    def __init__(self) -> None:
        self._buffer = b""
        self._head: dict[str, Any] = {}
        self._content: list[str] = []
        self._refusal: list[str] = []
        self._role = "assistant"
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish: Any = None
        self._choices: set[int] = set()
        self._usage: Any = None
        self.broken = False
        self.done = False

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the stream."""
        self._buffer += data.replace(b"\r\n", b"\n")
        while b"\n\n" in self._buffer:
            event, self._buffer = self._buffer.split(b"\n\n", 1)
            self._event(event)

    def feed_all(self, chunks: Iterable[bytes]) -> None:
        """Take several chunks."""
        for chunk in chunks:
            self.feed(chunk)

    def _event(self, event: bytes) -> None:
        lines = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
        if not lines:
            return
        payload = b"\n".join(lines)
        if payload.strip() == b"[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            self.broken = True
            return
        if not isinstance(chunk, dict) or "error" in chunk:
            self.broken = True
            return
        for field in ("id", "created", "model", "system_fingerprint"):
            if chunk.get(field) is not None:
                self._head.setdefault(field, chunk[field])
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            self._choice(choice)

    def _choice(self, choice: Mapping[str, Any]) -> None:
        self._choices.add(choice.get("index", 0))
        delta = choice.get("delta") or {}
        if delta.get("role"):
            self._role = delta["role"]
        if delta.get("content"):
            self._content.append(delta["content"])
        if delta.get("refusal"):
            self._refusal.append(delta["refusal"])
        for call in delta.get("tool_calls") or ():
            slot = self._calls.setdefault(
                call.get("index", 0), {"type": "function", "function": {"arguments": ""}}
            )
            if call.get("id"):
                slot["id"] = call["id"]
            if call.get("type"):
                slot["type"] = call["type"]
            function = call.get("function") or {}
            if function.get("name"):
                slot["function"]["name"] = function["name"]
            if function.get("arguments"):
                slot["function"]["arguments"] += function["arguments"]
        if choice.get("finish_reason") is not None:
            self._finish = choice["finish_reason"]

    def completion(self) -> dict[str, Any] | None:
        """The assembled completion, or None if the stream did not end properly (no
        ``[DONE]``, no finish reason, a malformed or error event, several choices)."""
        if not self.done or self.broken or self._finish is None or len(self._choices) != 1:
            return None
        message: dict[str, Any] = {
            "role": self._role,
            "content": "".join(self._content) if self._content else None,
        }
        if self._refusal:
            message["refusal"] = "".join(self._refusal)
        if self._calls:
            message["tool_calls"] = [self._calls[i] for i in sorted(self._calls)]
        completion: dict[str, Any] = {
            "id": self._head.get("id", ""),
            "object": "chat.completion",
            "created": self._head.get("created", 0),
            "model": self._head.get("model"),
            "choices": [
                {"index": 0, "message": message, "finish_reason": self._finish, "logprobs": None}
            ],
        }
        if self._head.get("system_fingerprint") is not None:
            completion["system_fingerprint"] = self._head["system_fingerprint"]
        if self._usage is not None:
            completion["usage"] = self._usage
        return completion
