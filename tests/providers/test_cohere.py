"""The Cohere v2 adapter: request translation, response and stream parsing, embeddings,
error mapping; unit-level and against the faithful fake over a socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.fakes.cohere import TOOL_ARGUMENTS, cohere_app, fake_provider
from tests.fakes.common import run_fake
from tests.providers import support
from tests.providers.support import reassemble
from uniinfer.errors import (
    AuthenticationError,
    ConfigError,
    ContextLengthExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderOverloadedError,
    ProviderQuotaExceededError,
    ProviderResponseError,
    RateLimitError,
    UniInferError,
    UnsupportedFeatureError,
    UnsupportedParamError,
)
from uniinfer.http import HttpClient, HttpRequest, Timeouts
from uniinfer.providers.base import Endpoint, ProviderAdapter
from uniinfer.providers.cohere import CohereAdapter
from uniinfer.providers.registry import default_registry
from uniinfer.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, MessagesIntent

KEY = "co-test"
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


def make_adapter(url: str = "https://api.cohere.com", key: str | None = KEY, **kw: Any) -> ProviderAdapter:
    reg = default_registry()
    return reg.create(reg.get("cohere"), Endpoint(base_url=url, api_key=key, **kw))


def chat(messages: list[dict[str, Any]] | None = None, **kw: Any) -> ChatRequest:
    data = {"model": "command-a-03-2025", "messages": messages or [{"role": "user", "content": "hi"}], **kw}
    return ChatRequest.model_validate(data)


def sent(request: ChatRequest, *, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(
        make_adapter().chat_request(request, "command-up", stream=stream).body
    )
    return body


def tool_history(first_id: str = "call_abc123xyz789", second_id: str = "call_def456") -> list[dict[str, Any]]:
    """A conversation as another provider (OpenAI) produced it."""
    calls = [
        {
            "id": first_id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS},
        },
        {"id": second_id, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
    ]
    return [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Checking both.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": first_id, "content": "sunny"},
        {"role": "tool", "tool_call_id": second_id, "content": [{"type": "text", "text": "rainy"}]},
    ]


# --- request translation ---------------------------------------------------------------


def test_registry_builds_the_cohere_adapter_with_url_and_bearer_auth() -> None:
    adapter = make_adapter(headers={"X-Client-Name": "uniinfer-tests"})
    assert isinstance(adapter, CohereAdapter)
    req = adapter.chat_request(chat(), "command-up", stream=False)
    assert req.url == "https://api.cohere.com/v2/chat"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["X-Client-Name"] == "uniinfer-tests"
    assert (
        make_adapter("http://proxy/v2/").chat_request(chat(), "m", stream=False).url == "http://proxy/v2/chat"
    )


def test_params_are_renamed_and_stream_is_always_sent() -> None:
    body = sent(
        chat(
            temperature=0.4,
            top_p=0.5,
            top_k=40,
            stop="END",
            seed=7,
            max_tokens=10,
            max_completion_tokens=20,
            frequency_penalty=0.2,
            presence_penalty=0.1,
        )
    )
    assert body == {
        "model": "command-up",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
        "temperature": 0.4,
        "p": 0.5,
        "k": 40,
        "stop_sequences": ["END"],
        "seed": 7,
        "max_tokens": 20,
        "frequency_penalty": 0.2,
        "presence_penalty": 0.1,
    }
    assert sent(chat(stream=True, stream_options={"include_usage": True}), stream=True)["stream"] is True
    assert "stream_options" not in sent(
        chat(stream=True, stream_options={"include_usage": True}), stream=True
    )


@pytest.mark.parametrize(("top_p", "p"), [(1.0, 0.99), (0.0, 0.01), (0.3, 0.3)])
def test_top_p_is_clamped_to_cohere_range(top_p: float, p: float) -> None:
    assert sent(chat(top_p=top_p))["p"] == p


def test_system_developer_user_images_and_parts() -> None:
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
    ]
    body = sent(
        chat(
            [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                {"role": "user", "content": parts},
            ]
        )
    )
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": [{"type": "text", "text": "Use French."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
            ],
        },
    ]


def test_audio_parts_are_an_unsupported_feature_naming_the_part() -> None:
    part = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(UnsupportedFeatureError) as info:
        sent(chat([{"role": "user", "content": [part]}]))
    assert info.value.param == "messages[0].content[0]"
    assert info.value.provider == "cohere"
    assert "cohere" in info.value.message


def test_tool_history_translates_with_tool_plan() -> None:
    body = sent(chat(tool_history(), tools=[WEATHER]))
    assert body["messages"][1] == {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_abc123xyz789",
                "type": "function",
                "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS},
            },
            {"id": "call_def456", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
        ],
        "tool_plan": "Checking both.",
    }
    assert body["messages"][2:] == [
        {"role": "tool", "tool_call_id": "call_abc123xyz789", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_def456", "content": [{"type": "text", "text": "rainy"}]},
    ]


def test_reasoning_content_becomes_the_tool_plan_when_there_is_no_text() -> None:
    history = tool_history()
    history[1] = {**history[1], "content": None, "reasoning_content": "I will look it up."}
    assert sent(chat(history))["messages"][1]["tool_plan"] == "I will look it up."
    history[1] = {**history[1], "reasoning_content": None}
    assert "tool_plan" not in sent(chat(history))["messages"][1]


def test_assistant_text_turn_drops_reasoning_and_legacy_function_call_is_rejected() -> None:
    turns = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello"}], "reasoning_content": "secret"},
        {"role": "user", "content": "again"},
    ]
    assert sent(chat(turns))["messages"][1] == {"role": "assistant", "content": "Hello"}
    legacy = {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}
    with pytest.raises(InvalidRequestError) as info:
        sent(chat([{"role": "user", "content": "x"}, legacy]))
    assert info.value.param == "messages[1].function_call"


def test_tools_translation_and_strict_tools() -> None:
    bare = {"type": "function", "function": {"name": "now"}}
    assert sent(chat(tools=[WEATHER, bare]))["tools"] == [
        WEATHER,
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
    ]
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    assert sent(chat(tools=[strict]))["strict_tools"] is True
    assert "strict_tools" not in sent(chat(tools=[bare]))
    # strict on some tools only: Cohere's one switch cannot say it (was left out silently)
    partly = chat(tools=[bare, strict])
    with pytest.raises(UnsupportedParamError) as info:
        sent(partly)
    assert info.value.param == "tools[1].function.strict"
    adapter = make_adapter()
    assert adapter.values_refused(partly, "command-a") == ("tools[1].function.strict",)
    dropped = adapter.without_values(partly, "command-a", ("tools[1].function.strict",))
    assert "strict_tools" not in sent(dropped)


@pytest.mark.parametrize(("choice", "expected"), [("required", "REQUIRED"), ("none", "NONE"), ("auto", None)])
def test_tool_choice_vocabulary(choice: str, expected: str | None) -> None:
    assert sent(chat(tools=[WEATHER], tool_choice=choice)).get("tool_choice") == expected


def test_a_named_tool_choice_is_an_unsupported_param() -> None:
    choice = {"type": "function", "function": {"name": "get_weather"}}
    with pytest.raises(UnsupportedParamError) as info:
        sent(chat(tools=[WEATHER], tool_choice=choice))
    assert info.value.param == "tool_choice"
    assert info.value.provider == "cohere"
    assert "provider 'cohere' does not support forcing a named function" in info.value.message


def test_response_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert sent(chat(response_format=fmt))["response_format"] == {
        "type": "json_object",
        "json_schema": schema,
    }
    assert sent(chat(response_format={"type": "json_object"}))["response_format"] == {"type": "json_object"}
    assert "response_format" not in sent(chat(response_format={"type": "text"}))


@pytest.mark.parametrize(
    ("effort", "budget"), [("minimal", 512), ("low", 1024), ("medium", 4096), ("high", 16384)]
)
def test_reasoning_effort_becomes_thinking(effort: str, budget: int) -> None:
    assert sent(chat(reasoning_effort=effort))["thinking"] == {"type": "enabled", "token_budget": budget}


def test_reasoning_effort_none_turns_thinking_off_and_above_high_gives_more() -> None:
    assert sent(chat(reasoning_effort="none"))["thinking"] == {"type": "disabled"}
    assert sent(chat(reasoning_effort="max"))["thinking"] == {"type": "enabled", "token_budget": 31000}


def test_an_anthropic_client_s_thinking_off_turns_a_reasoning_model_s_thinking_off() -> None:
    # Cohere's reasoning models think unless told not to; the others have no switch to send
    off = chat().with_messages_intent(MessagesIntent(False, thinking_off=True))
    adapter = make_adapter()
    for model, thinking in [
        ("command-a-reasoning-08-2025", {"type": "disabled"}),
        ("command-a-03-2025", None),
    ]:
        assert orjson.loads(adapter.chat_request(off, model, stream=False).body).get("thinking") == thinking
    assert "thinking" not in orjson.loads(
        adapter.chat_request(chat(), "command-a-reasoning-08-2025", stream=False).body
    )


def test_more_texts_than_one_embed_call_takes_are_refused_before_sending() -> None:
    # "Maximum number of texts per call is 96": a target mismatch, so a group tries its next
    with pytest.raises(UnsupportedFeatureError, match="at most 96 input"):
        make_adapter().embed_request(EmbeddingRequest(model="e", input=["x"] * 97), "embed-v4.0")


def test_supported_params_exclude_what_cohere_lacks() -> None:
    params = CohereAdapter.supported_params
    assert params <= set(ChatRequest.model_fields)
    assert {
        "top_k",
        "seed",
        "stop",
        "tools",
        "response_format",
        "reasoning_effort",
        "stream_options",
    } <= params
    for lacking in ("n", "logprobs", "logit_bias", "user", "parallel_tool_calls", "metadata", "service_tier"):
        assert lacking not in params


# --- response parsing ------------------------------------------------------------------


def response(message: dict[str, Any], finish: str = "COMPLETE", **usage: Any) -> bytes:
    default = {
        "billed_units": {"input_tokens": 8.0, "output_tokens": 5.0},
        "tokens": {"input_tokens": 70.0, "output_tokens": 5.0},
    }
    return orjson.dumps(
        {
            "id": "resp-1",
            "finish_reason": finish,
            "message": {"role": "assistant", **message},
            "usage": usage or default,
        }
    )


def parse(body: bytes) -> ChatResponse:
    return make_adapter().parse_chat(body, "command-x")


def test_parse_text_with_token_usage_not_billed_units() -> None:
    resp = parse(
        response({"content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " world"}]})
    )
    assert (resp.id, resp.model) == ("resp-1", "command-x")
    assert resp.choices[0].message.content == "Hello world"
    assert resp.choices[0].message.tool_calls is None
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (70, 5, 75)
    assert resp.usage.prompt_tokens_details is None


def test_parse_usage_cached_tokens_and_billed_fallback() -> None:
    usage = {"tokens": {"input_tokens": 900.0, "output_tokens": 12.0}, "cached_tokens": 512.0}
    parsed = parse(response({"content": [{"type": "text", "text": "x"}]}, **usage)).usage
    assert parsed is not None
    assert (parsed.prompt_tokens, parsed.completion_tokens, parsed.cached_tokens) == (900, 12, 512)
    billed_only = parse(response({"content": []}, billed_units={"input_tokens": 3, "output_tokens": 4})).usage
    assert billed_only is not None
    assert (billed_only.prompt_tokens, billed_only.completion_tokens) == (3, 4)


def test_parse_tool_calls_thinking_and_tool_plan() -> None:
    message = {
        "content": [{"type": "thinking", "thinking": "Need weather."}],
        "tool_plan": "I will call get_weather.",
        "tool_calls": [
            {
                "id": "get_weather_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS},
            },
            {"id": "now_2", "type": "function", "function": {"name": "now"}},
        ],
    }
    choice = parse(response(message, "TOOL_CALL")).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.reasoning_content == "Need weather.\nI will call get_weather."
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("get_weather_1", "get_weather", TOOL_ARGUMENTS),
        ("now_2", "now", "{}"),
    ]


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("COMPLETE", "stop"),
        ("STOP_SEQUENCE", "stop"),
        ("MAX_TOKENS", "length"),
        ("TIMEOUT", "length"),
        ("TOOL_CALL", "tool_calls"),
        ("ERROR_TOXIC", "content_filter"),
    ],
)
def test_finish_reasons(reason: str, finish: str) -> None:
    assert (
        parse(response({"content": [{"type": "text", "text": "x"}]}, reason)).choices[0].finish_reason
        == finish
    )


def test_finish_reason_error_raises_a_provider_error() -> None:
    with pytest.raises(ProviderError, match="finish_reason ERROR") as info:
        parse(response({"content": []}, "ERROR"))
    assert info.value.provider == "cohere"
    usage = info.value.usage  # billed all the same: metered against this deployment
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (70, 5)


@pytest.mark.parametrize(
    "body", [b"not json", b'{"id": "x"}', b'{"id": "x", "message": {"content": [{"text": "t"}]}}']
)
def test_bad_bodies_are_provider_response_errors(body: bytes) -> None:
    with pytest.raises(ProviderResponseError):
        parse(body)


# --- stream decoding -------------------------------------------------------------------


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in events)


def ev(kind: str, index: int | None = None, **delta: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind, "delta": {"message": delta}}
    if index is not None:
        event["index"] = index
    return event


END = {
    "type": "message-end",
    "id": "s1",
    "delta": {
        "finish_reason": "TOOL_CALL",
        "usage": {
            "billed_units": {"input_tokens": 50.0, "output_tokens": 70.0},
            "tokens": {"input_tokens": 61.0, "output_tokens": 77.0},
            "cached_tokens": 32.0,
        },
    },
}


def tool_stream() -> bytes:
    call_1 = {"id": "get_weather_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    call_2 = {"id": "now_b", "type": "function", "function": {"name": "now", "arguments": ""}}
    return sse(
        {"type": "message-start", "id": "s1", "delta": {"message": {"role": "assistant", "content": []}}},
        ev("content-start", 0, content={"type": "thinking", "thinking": ""}),
        ev("content-delta", 0, content={"thinking": "Hm, "}),
        ev("content-delta", 0, content={"thinking": "weather."}),
        {"type": "content-end", "index": 0},
        ev("content-start", 1, content={"type": "text", "text": ""}),
        ev("content-delta", 1, content={"text": "Let me check ✓ "}),
        ev("content-delta", 1, content={"text": "now."}),
        {"type": "content-end", "index": 1},
        ev("tool-plan-delta", tool_plan="I will call "),
        ev("tool-plan-delta", tool_plan="two tools."),
        ev("tool-call-start", 0, tool_calls=call_1),
        ev("tool-call-delta", 0, tool_calls={"function": {"arguments": '{"loca'}}),
        ev("tool-call-delta", 0, tool_calls={"function": {"arguments": 'tion": "Par'}}),
        ev("tool-call-delta", 0, tool_calls={"function": {"arguments": 'is"}'}}),
        {"type": "tool-call-end", "index": 0},
        ev("tool-call-start", 1, tool_calls=call_2),
        ev("tool-call-delta", 1, tool_calls={"function": {"arguments": "{}"}}),
        {"type": "tool-call-end", "index": 1},
        {"type": "citation-start", "index": 0, "delta": {"message": {"citations": {"start": 0}}}},
        {"type": "debug", "prompt": "..."},
        END,
    )


def decode_bytewise(data: bytes) -> list[ChatChunk]:
    return support.decode_bytewise(make_adapter().stream_decoder("command-x"), data)


def test_stream_decoded_byte_by_byte() -> None:
    chunks = decode_bytewise(tool_stream())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.id for c in chunks} == {"s1"}
    assert {c.model for c in chunks} == {"command-x"}
    got = reassemble(chunks)
    assert got["text"] == "Let me check ✓ now."
    assert got["thinking"] == "Hm, weather.I will call two tools."
    assert got["finish"] == "tool_calls"
    assert got["calls"] == {
        0: {"id": "get_weather_a", "name": "get_weather", "arguments": TOOL_ARGUMENTS},
        1: {"id": "now_b", "name": "now", "arguments": "{}"},
    }


def test_stream_tool_call_deltas_keep_a_stable_index() -> None:
    chunks = decode_bytewise(tool_stream())
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
    assert [(c.index, c.id) for c in calls] == [
        (0, "get_weather_a"),
        (0, None),
        (0, None),
        (0, None),
        (1, "now_b"),
        (1, None),
    ]
    assert all(
        c.type is None and c.function is not None and c.function.name is None for c in calls if c.id is None
    )


def test_stream_final_usage_chunk_is_exact() -> None:
    chunks = decode_bytewise(tool_stream())
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.cached_tokens) == (61, 77, 32)
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_events_without_index_and_crlf() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}
    data = sse(
        {"type": "message-start", "id": "s2"},
        ev("tool-call-start", tool_calls=call),
        ev("tool-call-delta", tool_calls={"function": {"arguments": '{"a": 1}'}}),
        {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL"}},
    ).replace(b"\n", b"\r\n")
    chunks = decode_bytewise(data)
    assert reassemble(chunks)["calls"] == {0: {"id": "c1", "name": "f", "arguments": '{"a": 1}'}}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"  # no usage, no usage chunk


def test_stream_without_message_end_is_a_connection_error() -> None:
    decoder = make_adapter().stream_decoder("command-x")
    decoder.feed(tool_stream().split(b"event: message-end")[0] + b'event: message-end\ndata: {"ty')
    with pytest.raises(ProviderConnectionError, match="message-end"):
        decoder.close()


def test_stream_error_finish_raises() -> None:
    decoder = make_adapter().stream_decoder("command-x")
    tokens = {"tokens": {"input_tokens": 12, "output_tokens": 3}}
    end = {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "overloaded", "usage": tokens}}
    with pytest.raises(ProviderError, match="overloaded") as info:
        decoder.feed(sse(end))
    usage = info.value.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (12, 3)


def test_stream_garbage_is_a_provider_response_error() -> None:
    decoder = make_adapter().stream_decoder("command-x")
    with pytest.raises(ProviderResponseError):
        decoder.feed(b'event: tool-call-start\ndata: {"type": "tool-call-start", "index": 0}\n\n')


# --- error mapping ---------------------------------------------------------------------


def cohere_error(text: str) -> bytes:
    return orjson.dumps({"id": "e1", "message": text})


@pytest.mark.parametrize(
    ("status", "text", "cls", "param"),
    [
        (
            422,
            "unknown field: parameter logprobz is not a valid field. For proper usage, please refer to x",
            InvalidRequestError,
            None,
        ),
        (422, "unknown field: parameter k is not a valid field", InvalidRequestError, "top_k"),
        (400, "invalid request: p must be between 0.01 and 0.99, received 1.5", InvalidRequestError, "top_p"),
        (
            400,
            "invalid request: frequency_penalty must be between 0 and 1",
            InvalidRequestError,
            "frequency_penalty",
        ),
        (400, "invalid request: message must be at least 1 token long", InvalidRequestError, None),
        (
            400,
            "too many tokens: total number of tokens in the prompt cannot exceed 128000 - received 130000",
            ContextLengthExceededError,
            None,
        ),
        (401, "invalid api token", AuthenticationError, None),
        (  # the output limit, not the context: the caller's max_tokens (docs.cohere.com/reference/errors)
            400,
            "too many tokens: max tokens must be less than or equal to 4096, the maximum output for this "
            "model - received 8192.",
            InvalidRequestError,
            "max_tokens",
        ),
        # "402 responses are sent when the account has reached its billing limit": another
        # deployment's to serve, as every provider's 402
        (402, "Please add or update your payment method", ProviderQuotaExceededError, None),
        (404, "model 'x' not found", ModelNotFoundError, None),
        (498, "invalid token", AuthenticationError, None),  # the SDK's InvalidTokenError
        (499, "request cancelled", ProviderError, None),
        (500, "internal server error, this has been reported to our developers", ProviderError, None),
        (503, "service unavailable", ProviderOverloadedError, None),
    ],
)
def test_error_mapping(status: int, text: str, cls: type[UniInferError], param: str | None) -> None:
    err = make_adapter().parse_error(status, {}, cohere_error(text))
    assert type(err) is cls
    assert err.param == param
    assert err.upstream_status == status
    assert err.provider == "cohere"
    assert err.message == f"cohere: {text}"


def test_rate_limit_keeps_retry_after_only_when_sent() -> None:
    adapter = make_adapter()
    with_header = adapter.parse_error(429, {"retry-after": "7"}, cohere_error("trial key limit"))
    assert isinstance(with_header, RateLimitError)
    assert with_header.retry_after == 7.0
    assert adapter.parse_error(429, {}, cohere_error("trial key limit")).retry_after is None


def test_echoed_key_is_redacted() -> None:
    err = make_adapter().parse_error(401, {}, cohere_error(f"invalid api token {KEY}"))
    assert KEY not in err.message
    assert KEY not in (err.upstream_body or "")


# --- embeddings ------------------------------------------------------------------------


def test_embed_request_translation_and_options() -> None:
    req = make_adapter().embed_request(
        EmbeddingRequest(model="e", input=["a", "b"], dimensions=256, user="u"), "embed-up"
    )
    assert req.url == "https://api.cohere.com/v2/embed"
    assert orjson.loads(req.body) == {
        "model": "embed-up",
        "texts": ["a", "b"],
        "input_type": "search_document",
        "embedding_types": ["float"],
        "truncate": "NONE",  # an input beyond the model's length is an error, as on OpenAI
        "output_dimension": 256,
    }
    query = make_adapter(options={"embed_input_type": "search_query"})
    assert (
        orjson.loads(query.embed_request(EmbeddingRequest(model="e", input="q"), "m").body)["input_type"]
        == "search_query"
    )
    with pytest.raises(ConfigError, match="embed_input_type"):
        make_adapter(options={"embed_input_type": "images"})
    with pytest.raises(InvalidRequestError) as info:
        make_adapter().embed_request(EmbeddingRequest(model="e", input=[1, 2, 3]), "m")
    assert info.value.param == "input"


def test_parse_embed() -> None:
    body = {
        "id": "x",
        "embeddings": {"float": [[0.1, 0.2], [0.3, 0.4]]},
        "texts": ["a", "b"],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 2.0}},
        "response_type": "embeddings_by_type",
    }
    resp = make_adapter().parse_embed(orjson.dumps(body), "embed-up")
    assert [(e.index, e.embedding) for e in resp.data] == [(0, [0.1, 0.2]), (1, [0.3, 0.4])]
    assert (resp.model, resp.usage.prompt_tokens, resp.usage.total_tokens) == ("embed-up", 2, 2)
    with pytest.raises(ProviderResponseError):
        make_adapter().parse_embed(b'{"embeddings": {"int8": [[1]]}}', "embed-up")


# --- against the fake, over a socket -----------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    http = HttpClient()
    yield http
    await http.aclose()


async def call(client: HttpClient, adapter: ProviderAdapter, request: ChatRequest) -> ChatResponse:
    resp = await client.send(
        adapter.chat_request(request, request.model, stream=False), Timeouts(), adapter.name
    )
    if resp.status >= 400:
        raise adapter.parse_error(resp.status, resp.headers, resp.body)
    return adapter.parse_chat(resp.body, request.model)


async def stream(client: HttpClient, adapter: ProviderAdapter, request: ChatRequest) -> list[ChatChunk]:
    upstream = await client.open_stream(
        adapter.chat_request(request, request.model, stream=True), Timeouts(), "x"
    )
    complete = False
    try:
        if upstream.status >= 400:
            raise adapter.parse_error(upstream.status, upstream.headers, await upstream.read())
        decoder = adapter.stream_decoder(request.model)
        chunks = [c async for data in upstream.iter_bytes() for c in decoder.feed(data)]
        chunks += decoder.close()
        complete = True
        return chunks
    finally:
        HttpClient.close_stream(upstream, complete=complete)


async def test_fake_provider_descriptor_serves_its_key_only(client: HttpClient) -> None:
    fake = fake_provider()
    assert (fake.type, fake.base_path, fake.chat_model, fake.embed_model) == (
        "cohere",
        "",
        "command-a-03-2025",
        "embed-v4.0",
    )
    body = orjson.dumps({"model": fake.chat_model, "messages": [{"role": "user", "content": "hi"}]})
    async with run_fake(fake.app()) as url:
        statuses = []
        for key in (fake.api_key, "sk-other"):
            headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
            resp = await client.send(HttpRequest(url + "/v2/chat", body, headers), Timeouts(), "cohere")
            statuses.append(resp.status)
    assert statuses == [200, 401]


async def test_fake_echo_with_exact_usage_and_recorded_request(client: HttpClient) -> None:
    app = cohere_app(api_key=KEY)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    async with run_fake(app) as url:
        resp = await call(client, make_adapter(url), chat(messages, stop=["zzz"], model="cached-command"))
    assert resp.choices[0].message.content == "echo: hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    # tokens = 4 words + 4 per message; the fake bills 4 words; cached = half of tokens
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.cached_tokens) == (12, 3, 6)
    recorded = app["requests"][-1]
    assert recorded["path"] == "/v2/chat"
    assert recorded["headers"]["Authorization"] == f"Bearer {KEY}"
    assert recorded["body"]["stop_sequences"] == ["zzz"]
    assert recorded["body"]["stream"] is False


async def test_fake_cuts_at_max_tokens_and_answers_json(client: HttpClient) -> None:
    async with run_fake(cohere_app()) as url:
        adapter = make_adapter(url)
        short = await call(
            client, adapter, chat([{"role": "user", "content": "one two three"}], max_tokens=2)
        )
        fmt = await call(client, adapter, chat(response_format={"type": "json_object"}))
    assert (short.choices[0].message.content, short.choices[0].finish_reason) == ("echo: one", "length")
    assert orjson.loads(fmt.choices[0].message.content or "") == {"echo": "hi"}


async def test_fake_stream_text_over_socket(client: HttpClient) -> None:
    async with run_fake(cohere_app()) as url:
        chunks = await stream(
            client, make_adapter(url), chat([{"role": "user", "content": "héllo wörld ✓"}], stream=True)
        )
    got = reassemble(chunks)
    assert got["text"] == "echo: héllo wörld ✓"
    assert got["finish"] == "stop"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 2
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 4)


async def test_fake_stream_tool_call_and_thinking(client: HttpClient) -> None:
    request = chat(
        [{"role": "user", "content": "weather?"}], model="tool-reason", tools=[WEATHER], stream=True
    )
    async with run_fake(cohere_app()) as url:
        chunks = await stream(client, make_adapter(url), request)
    got = reassemble(chunks)
    assert got["finish"] == "tool_calls"
    assert got["thinking"] == "The user wants an echo.I will call get_weather to answer."
    assert list(got["calls"]) == [0]
    assert got["calls"][0]["id"].startswith("get_weather_")
    assert orjson.loads(got["calls"][0]["arguments"]) == {"location": "Paris"}
    assert len([c for c in chunks if c.choices and c.choices[0].delta.tool_calls]) > 3  # arguments in pieces


async def test_fake_tool_loop_round_trip(client: HttpClient) -> None:
    async with run_fake(cohere_app()) as url:
        adapter = make_adapter(url)
        first = await call(
            client, adapter, chat([{"role": "user", "content": "weather?"}], model="tool-1", tools=[WEATHER])
        )
        calls = first.choices[0].message.tool_calls or []
        history = [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "reasoning_content": first.choices[0].message.reasoning_content,
                "tool_calls": [c.model_dump() for c in calls],
            },
            {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny, 21C"},
        ]
        second = await call(client, adapter, chat(history, model="tool-1", tools=[WEATHER]))
    assert second.choices[0].message.content == "echo: sunny, 21C"
    assert second.choices[0].finish_reason == "stop"


async def test_fake_accepts_a_history_produced_by_another_provider(client: HttpClient) -> None:
    async with run_fake(cohere_app()) as url:
        resp = await call(client, make_adapter(url), chat(tool_history(), tools=[WEATHER]))
    assert resp.choices[0].message.content == "echo: rainy"


async def test_fake_stream_cut_is_a_connection_error(client: HttpClient) -> None:
    async with run_fake(cohere_app()) as url:
        with pytest.raises(ProviderConnectionError):
            await stream(client, make_adapter(url), chat(model="cut-1", stream=True))


@pytest.mark.parametrize("key", ["co-wrong-secret", None])
async def test_fake_rejects_wrong_or_missing_key_without_leaking_it(
    client: HttpClient, key: str | None
) -> None:
    async with run_fake(cohere_app(api_key=KEY)) as url:
        with pytest.raises(AuthenticationError) as info:
            await call(client, make_adapter(url, key=key), chat())
    assert info.value.upstream_status == 401
    if key is not None:
        assert key not in info.value.message
        assert key not in (info.value.upstream_body or "")


@pytest.mark.parametrize(
    ("model", "cls", "retry_after"),
    [
        ("error-429", RateLimitError, 7.0),
        ("error-500", ProviderError, None),
        ("error-503", ProviderOverloadedError, None),
        ("error-404", ModelNotFoundError, None),
        ("context-x", ContextLengthExceededError, None),
    ],
)
async def test_fake_failures_map_to_errors(
    client: HttpClient, model: str, cls: type[UniInferError], retry_after: float | None
) -> None:
    async with run_fake(cohere_app()) as url:
        with pytest.raises(cls) as info:
            await call(client, make_adapter(url), chat(model=model))
        with pytest.raises(cls):
            await stream(client, make_adapter(url), chat(model=model, stream=True))
    assert type(info.value) is cls
    assert info.value.retry_after == retry_after
    assert KEY not in info.value.message


async def test_fake_rejects_openai_penalty_range_naming_the_param(client: HttpClient) -> None:
    async with run_fake(cohere_app()) as url:
        with pytest.raises(InvalidRequestError) as info:
            await call(client, make_adapter(url), chat(frequency_penalty=1.5))
    assert info.value.param == "frequency_penalty"
    assert "between 0 and 1" in info.value.message


async def test_fake_embeddings_over_socket(client: HttpClient) -> None:
    app = cohere_app()
    async with run_fake(app) as url:
        adapter = make_adapter(url)
        req = adapter.embed_request(
            EmbeddingRequest(model="e", input=["one two", "three"], dimensions=256), "embed-v4.0"
        )
        resp = await client.send(req, Timeouts(), "cohere")
        parsed = adapter.parse_embed(resp.body, "embed-v4.0")
    assert [len(e.embedding) for e in parsed.data] == [256, 256]
    assert parsed.usage.prompt_tokens == 3
    assert app["requests"][-1]["body"]["input_type"] == "search_document"


# --- the fake itself checks what the real API checks -------------------------------------


async def raw(client: HttpClient, url: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    resp = await client.send(HttpRequest(url + path, orjson.dumps(body), headers), Timeouts(), "cohere")
    payload: dict[str, Any] = orjson.loads(resp.body)
    return resp.status, payload


MINIMAL = {"model": "command-a-03-2025", "messages": [{"role": "user", "content": "hi"}], "stream": False}
CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({**MINIMAL, "top_p": 0.5}, 422, "unknown field: parameter top_p is not a valid field"),
        ({**MINIMAL, "stream_options": {}}, 422, "parameter stream_options"),
        ({**MINIMAL, "messages": [{"role": "user", "content": "x", "name": "bob"}]}, 422, "messages[0].name"),
        ({**MINIMAL, "messages": [{"role": "developer", "content": "x"}]}, 400, "messages[0].role"),
        ({**MINIMAL, "messages": []}, 400, "messages must be a non-empty list"),
        ({**MINIMAL, "p": 1.0}, 400, "p must be between 0.01 and 0.99"),
        ({**MINIMAL, "k": 501}, 400, "k must be between 0 and 500"),
        ({**MINIMAL, "temperature": -1}, 400, "temperature must be at least 0"),
        ({**MINIMAL, "stop_sequences": list("abcdef")}, 400, "at most 5"),
        ({**MINIMAL, "tool_choice": "REQUIRED"}, 400, "needs tools"),
        (
            {**MINIMAL, "tools": [TOOL], "tool_choice": "required"},
            400,
            "tool_choice must be one of REQUIRED, NONE",
        ),
        ({**MINIMAL, "tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "name and parameters"),
        ({**MINIMAL, "response_format": {"type": "json_schema"}}, 400, "response_format.type"),
        ({**MINIMAL, "response_format": {"type": "text", "json_schema": {}}}, 400, "json_schema"),
        ({**MINIMAL, "thinking": {"type": "enabled", "token_budget": 0}}, 400, "token_budget"),
        (
            {
                **MINIMAL,
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "tool", "tool_call_id": "c9", "content": "x"},
                ],
            },
            400,
            "tool_call_id 'c9' does not match",
        ),
        (
            {
                **MINIMAL,
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "tool_calls": [CALL]},
                    {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                    {"role": "user", "content": "more"},
                    {"role": "tool", "tool_call_id": "c1", "content": "late"},
                ],
            },
            400,
            "messages[4].tool_call_id",
        ),
        ({**MINIMAL, "messages": [{"role": "assistant", "content": ""}]}, 400, "content or tool_calls"),
    ],
)
async def test_fake_validates_chat_like_the_real_api(
    client: HttpClient, body: dict[str, Any], status: int, fragment: str
) -> None:
    async with run_fake(cohere_app()) as url:
        got, payload = await raw(client, url, "/v2/chat", body)
    assert got == status
    assert set(payload) == {"id", "message"}
    assert fragment in payload["message"]


EMBED = {"model": "embed-v4.0", "texts": ["a"], "input_type": "search_query", "embedding_types": ["float"]}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({**EMBED, "input": ["a"]}, 422, "parameter input is not a valid field"),
        ({k: v for k, v in EMBED.items() if k != "input_type"}, 400, "valid input_type must be provided"),
        ({k: v for k, v in EMBED.items() if k != "embedding_types"}, 400, "embedding_types is required"),
        ({**EMBED, "texts": ["a"] * 97}, 400, "at most 96"),
        ({**EMBED, "output_dimension": 100}, 400, "output_dimension"),
        ({**EMBED, "model": "embed-english-v3.0", "output_dimension": 256}, 400, "embed-v4"),
    ],
)
async def test_fake_validates_embed_like_the_real_api(
    client: HttpClient, body: dict[str, Any], status: int, fragment: str
) -> None:
    async with run_fake(cohere_app()) as url:
        got, payload = await raw(client, url, "/v2/embed", body)
    assert got == status
    assert fragment in payload["message"]


async def test_fake_embed_v2_models_need_no_input_type(client: HttpClient) -> None:
    body = {"model": "embed-english-v2.0", "texts": ["a b"], "embedding_types": ["float"]}
    async with run_fake(cohere_app()) as url:
        status, payload = await raw(client, url, "/v2/embed", body)
    assert status == 200
    assert len(payload["embeddings"]["float"][0]) == 8
    assert payload["meta"]["billed_units"]["input_tokens"] == 2


def test_a_named_tool_choice_is_the_value_dropped_when_configured() -> None:
    adapter = make_adapter()
    forced = chat(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert adapter.values_refused(forced, "command-a") == ("tool_choice",)
    assert adapter.values_refused(chat(tools=[WEATHER], tool_choice="required"), "command-a") == ()
    dropped = adapter.without_values(forced, "command-a", ("tool_choice",))
    assert "tool_choice" not in orjson.loads(adapter.chat_request(dropped, "command-a", stream=False).body)


def test_a_json_answer_beside_tools_is_refused_or_dropped_visibly() -> None:
    # Cohere's response_format "is not supported when used in combinations with ... tools"
    tool = {"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}
    request = chat(tools=[tool], response_format={"type": "json_object"})
    adapter = make_adapter()
    assert adapter.values_refused(request, "command-a-03-2025") == ("response_format",)
    with pytest.raises(UnsupportedParamError) as info:
        adapter.chat_request(request, "command-a-03-2025", stream=False)
    assert info.value.param == "response_format"
    dropped = adapter.without_values(request, "command-a-03-2025", ("response_format",))
    assert "response_format" not in orjson.loads(
        adapter.chat_request(dropped, "command-a-03-2025", stream=False).body
    )


def test_cost_is_priced_on_the_billed_units_the_counts_shown_are_all_tokens() -> None:
    # Cohere's own example: billed 6772 / 248, tokens 7596 / 645 ("the billed input and output
    # tokens are the tokens that you're actually billed for")
    from uniinfer.stages import Route

    body = {
        "id": "c1",
        "finish_reason": "COMPLETE",
        "message": {"role": "assistant", "content": [{"type": "text", "text": "hi"}]},
        "usage": {
            "billed_units": {"input_tokens": 6772.0, "output_tokens": 248.0},
            "tokens": {"input_tokens": 7596.0, "output_tokens": 645.0},
        },
    }
    usage = make_adapter().parse_chat(orjson.dumps(body), "command-a-03-2025").usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (7596, 645)  # as shown, all tokens
    assert "billed" not in usage.model_dump()
    route = Route("m", prices=(2.5, 10.0, None, None, None))
    assert route.cost(usage) == pytest.approx((6772 * 2.5 + 248 * 10.0) / 1e6)
