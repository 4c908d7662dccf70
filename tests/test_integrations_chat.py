"""semcache.integrations.chat: the matched text, the namespace wall, and what is cacheable
(one test per documented decision)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from semcache import ConfigurationError, HashingEmbedder, SemanticCache
from semcache.integrations.chat import (
    IGNORED_FIELDS,
    ChatPolicy,
    Uncacheable,
    chat_key,
    tenant_of,
)


def req(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "temperature": 0,
    }
    base.update(over)
    return base


def reason(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(Uncacheable) as info:
        fn(*args, **kwargs)
    return info.value.reason


def test_text_is_the_last_user_message() -> None:
    key = chat_key(req())
    assert key.text == "What is the capital of France?"


def test_text_parts_are_joined_and_match_the_string_form() -> None:
    parts = [
        {"type": "text", "text": "What is the capital"},
        {"type": "text", "text": "of France?"},
    ]
    key = chat_key(req(messages=[{"role": "user", "content": parts}]))
    assert key.text == "What is the capital\nof France?"
    plain = chat_key(req(messages=[{"role": "user", "content": "x"}]))
    assert key.namespace == plain.namespace  # the content form is not part of the wall


def test_image_parts_make_the_request_uncacheable() -> None:
    parts = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]
    assert reason(chat_key, req(messages=[{"role": "user", "content": parts}])) == (
        "non_text_content"
    )


@pytest.mark.parametrize(
    ("messages", "why"),
    [
        ([], "no_messages"),
        (None, "no_messages"),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "prefill"}],
            "last_message_not_user",
        ),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "tool", "content": "42", "tool_call_id": "c1"},
            ],
            "last_message_not_user",
        ),
        ([{"role": "user", "content": 42}], "malformed_content"),
        ([{"role": "user", "content": ["not a part"]}], "malformed_content"),
    ],
)
def test_requests_without_a_usable_last_user_message(messages: Any, why: str) -> None:
    assert reason(chat_key, req(messages=messages)) == why


def test_no_model_is_uncacheable() -> None:
    assert reason(chat_key, req(model=None)) == "no_model"


def test_not_json_is_uncacheable() -> None:
    assert reason(chat_key, req(logit_bias={"1": float("nan")})) == "not_json"


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {
            "messages": [
                {"role": "system", "content": "You are verbose."},
                {"role": "user", "content": "What is the capital of France?"},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "What is the capital of France?"},
            ]
        },
        {
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "name": "bob", "content": "What is the capital of France?"},
            ]
        },
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"tool_choice": "none"},
        {"response_format": {"type": "json_object"}},
        {"temperature": 0.2},
        {"top_p": 0.5},
        {"max_tokens": 10},
        {"max_completion_tokens": 10},
        {"stop": ["\n"]},
        {"seed": 7},
        {"presence_penalty": 0.5},
        {"frequency_penalty": 0.5},
        {"logit_bias": {"1234": -100}},
        {"logprobs": True},
        {"some_future_parameter": 1},
    ],
)
def test_everything_that_changes_the_answer_changes_the_namespace(change: dict[str, Any]) -> None:
    base = chat_key(req())
    other = chat_key(req(**change))
    assert other.namespace != base.namespace


@pytest.mark.parametrize("field", sorted(IGNORED_FIELDS - {"messages", "n"}))
def test_delivery_and_bookkeeping_fields_do_not_change_the_namespace(field: str) -> None:
    value: Any = {"include_usage": True} if field == "stream_options" else True
    assert chat_key(req(**{field: value})).namespace == chat_key(req()).namespace


def test_n_of_one_is_the_same_request_as_no_n() -> None:
    assert chat_key(req(n=1)).namespace == chat_key(req()).namespace


def test_namespace_is_stable_and_order_independent() -> None:
    a = chat_key(req(temperature=0, seed=1))
    b = chat_key(
        {"seed": 1, "temperature": 0, "messages": req()["messages"], "model": "gpt-4o-mini"}
    )
    assert a == b
    # A pinned value: the hash must not change between releases (stored caches rely on it).
    assert a.namespace == "chat:gpt-4o-mini:38cc55460884f6f70cd3baf9"


def test_tenant_is_a_wall_and_the_secret_is_not_in_it() -> None:
    secret = "sk-very-secret"
    one = chat_key(req(), tenant=tenant_of(secret))
    two = chat_key(req(), tenant=tenant_of("sk-other"))
    assert one.namespace != two.namespace != chat_key(req()).namespace
    assert secret not in one.namespace
    assert secret not in str(one.label)
    assert one.label["tenant"] == tenant_of(secret)


def test_label_is_readable_in_stats() -> None:
    key = chat_key(req(seed=3))
    assert key.label == {
        "model": "gpt-4o-mini",
        "turns": 1,
        "system": "You are terse.",
        "params": ["seed", "temperature"],
    }
    with SemanticCache(embedder=HashingEmbedder(dim=64)) as cache:
        cache.put(key.text, "Paris", namespace=key.namespace, metadata={"semcache.chat": key.label})
        assert list(cache.stats()["entries"]) == [key.namespace]
        hit = cache.get(key.text, namespace=key.namespace)
        assert hit is not None
        assert hit.metadata == {"semcache.chat": key.label}


def test_odd_model_names_still_make_a_valid_namespace() -> None:
    key = chat_key(req(model="modèle\x00" + "x" * 400))
    assert key.namespace.startswith("chat:modle")
    assert len(key.namespace.encode()) < 255
    with SemanticCache() as cache:
        cache.put(key.text, "a", namespace=key.namespace)


# -- the policy ----------------------------------------------------------------------------
def test_n_above_one_is_not_cached() -> None:
    assert reason(ChatPolicy().check_request, req(n=2)) == "n_above_1"
    ChatPolicy().check_request(req(n=1))


def test_temperature_zero_is_always_cacheable() -> None:
    ChatPolicy(max_temperature=0).check_request(req(temperature=0))
    ChatPolicy(max_temperature=0).check_request(req(temperature=0.0))


def test_temperature_cap_default_is_half() -> None:
    policy = ChatPolicy()
    policy.check_request(req(temperature=0.5))
    assert reason(policy.check_request, req(temperature=0.51)) == "temperature"


def test_missing_temperature_counts_as_the_provider_default_of_one() -> None:
    request = req()
    del request["temperature"]
    assert reason(ChatPolicy().check_request, request) == "temperature"
    assert reason(ChatPolicy().check_request, req(temperature=None)) == "temperature"
    ChatPolicy(max_temperature=1.0).check_request(request)
    ChatPolicy(max_temperature=math.inf).check_request(req(temperature=2))


def test_non_numeric_temperature_is_not_cached() -> None:
    assert reason(ChatPolicy().check_request, req(temperature="0")) == "temperature"
    assert reason(ChatPolicy().check_request, req(temperature=True)) == "temperature"


@pytest.mark.parametrize("bad", [-0.1, float("nan"), -math.inf, True, "1"])
def test_policy_rejects_a_bad_cap(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_temperature"):
        ChatPolicy(max_temperature=bad)


def completion(finish: str = "stop", **message: Any) -> dict[str, Any]:
    msg = {"role": "assistant", "content": "Paris", **message}
    return {"choices": [{"index": 0, "message": msg, "finish_reason": finish}]}


def test_only_a_complete_stop_answer_is_stored() -> None:
    policy = ChatPolicy()
    policy.check_response(completion())
    for finish in ("length", "content_filter", None, "tool_calls"):
        assert reason(policy.check_response, completion(finish)) == "finish_reason"
    assert reason(policy.check_response, {"choices": []}) == "not_one_choice"
    two = {"choices": completion()["choices"] * 2}
    assert reason(policy.check_response, two) == "not_one_choice"


def test_tool_calls_are_stored_only_when_asked() -> None:
    call = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    answer = completion("tool_calls", content=None, tool_calls=call)
    assert reason(ChatPolicy().check_response, answer) == "finish_reason"
    assert reason(ChatPolicy().check_response, completion("stop", tool_calls=call)) == (
        "tool_calls"
    )
    ChatPolicy(cache_tool_calls=True).check_response(answer)
    assert reason(ChatPolicy(cache_tool_calls=True).check_response, completion("length")) == (
        "finish_reason"
    )
