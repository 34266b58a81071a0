"""The Anthropic Messages API at ingress: pure translation both ways, the stream renderer, and the
official ``anthropic`` SDK against the real server routed to the OpenAI and the Anthropic fakes.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest
from aiohttp import web
from multidict import CIMultiDict

from tests.conftest import FAKE_KEY, make_config
from tests.fakes.anthropic import REDACTED_DATA, anthropic_app, sign
from tests.fakes.anthropic import error as anthropic_error
from tests.fakes.common import run_fake
from tests.server_helpers import serve
from uniinfer.errors import (
    AllTargetsFailedError,
    AuthenticationError,
    ContextLengthExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderOverloadedError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
    RequestTooLargeError,
    UniInferError,
    UnsupportedFeatureError,
    UnsupportedParamError,
)
from uniinfer.fitting import RequestFitter
from uniinfer.ingress.anthropic import (
    CountTokensRequest,
    MessagesRequest,
    StreamRenderer,
    anthropic_betas,
    error_body,
    estimate_input_tokens,
    parse_anthropic,
    to_chat_request,
    to_message,
)
from uniinfer.providers.anthropic import with_betas
from uniinfer.providers.base import Endpoint
from uniinfer.providers.registry import default_registry
from uniinfer.routing.group import Target
from uniinfer.server import App, anthropic_api, create_app
from uniinfer.types import (
    AssistantMessage,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    MessagesIntent,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from uniinfer.types.chat import (
    ChatChoice,
    ChunkChoice,
    ChunkDelta,
    ResponseMessage,
    SignedThinking,
    ToolCall,
    ToolCallDelta,
)
from uniinfer.types.usage import Usage

MASTER = "sk-master-anthropic-ingress"
ANTHROPIC_KEY = "sk-ant-upstream-key-0123456789"
COUNTED = 4242
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()
HELLO = [{"role": "user", "content": "hello there"}]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
}


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "chat", "max_tokens": 256, "messages": HELLO, **extra}


# --- request translation -------------------------------------------------------------


def test_a_conversation_with_tools_translates_in_openai_order() -> None:
    req = parse_anthropic(
        MessagesRequest,
        body(
            system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            messages=[
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "use the tool", "signature": "sig"},
                        {"type": "redacted_thinking", "data": "opaque"},
                        {"type": "text", "text": "Checking."},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"location": "Paris"},
                        },
                        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "and here is a photo"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [
                                {"type": "text", "text": "21 C"},
                                {
                                    "type": "image",
                                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                                },
                            ],
                            "cache_control": {"type": "ephemeral"},
                        },
                    ],
                },
                # consecutive user messages are one turn: this result still answers toolu_2
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True}],
                },
            ],
            tools=[WEATHER_TOOL],
        ),
    )
    chat = to_chat_request(req)
    roles = [m.role for m in chat.messages]
    assert roles == ["system", "user", "assistant", "tool", "tool", "user"]
    system, _, assistant, first, second, user = chat.messages
    assert isinstance(system, SystemMessage)
    assert isinstance(system.content, list)
    assert system.content[0].cache_control == {"type": "ephemeral"}
    assert isinstance(assistant, AssistantMessage)
    assert assistant.content == "Checking."
    assert assistant.reasoning_content == "use the tool"
    # the signed blocks, whole and in order, for an Anthropic upstream
    assert [b.block() for b in assistant.signed_thinking or ()] == [
        {"type": "thinking", "thinking": "use the tool", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
    ]
    assert [(c.id, json.loads(c.function.arguments)) for c in assistant.tool_calls or ()] == [
        ("toolu_1", {"location": "Paris"}),
        ("toolu_2", {}),
    ]
    assert isinstance(first, ToolMessage)
    assert first.tool_call_id == "toolu_1"
    # the result's cache breakpoint is on its last block, the image (below), not on its text
    assert first.content == "21 C"
    assert isinstance(second, ToolMessage)
    assert (second.tool_call_id, second.content, second.is_error) == ("toolu_2", "Error", True)
    assert first.is_error is None
    assert isinstance(user, UserMessage)
    assert isinstance(user.content, list)
    image, text = user.content
    assert image.type == "image_url"
    assert image.image_url.url == f"data:image/png;base64,{PNG}"  # type: ignore[union-attr]
    # marked with its result and its place there, for a Claude upstream to put it back
    assert (image.of_tool_result, image.cache_control) == (("toolu_1", 1), {"type": "ephemeral"})  # type: ignore[union-attr]
    assert text.type == "text"
    assert chat.tools is not None
    assert chat.tools[0].function.parameters == WEATHER_TOOL["input_schema"]


def test_generation_settings_map_to_openai_fields() -> None:
    req = parse_anthropic(
        MessagesRequest,
        body(
            stop_sequences=["END", "STOP"],
            temperature=0.5,
            top_p=0.9,
            top_k=5,
            metadata={"user_id": "user-7"},
            stream=True,
            service_tier="auto",
        ),
    )
    chat = to_chat_request(req)
    assert chat.stop == ["END", "STOP"]
    assert (chat.temperature, chat.top_p, chat.top_k, chat.max_tokens) == (0.5, 0.9, 5, 256)
    assert chat.user == "user-7"
    assert chat.stream is True
    assert chat.include_usage  # always asked for: message_delta needs it
    assert chat.service_tier is None  # accepted, not passed on
    assert chat.messages == [UserMessage(role="user", content="hello there")]
    plain = to_chat_request(parse_anthropic(MessagesRequest, body(top_k=0)))
    assert plain.top_k is None
    assert plain.stream is None
    assert plain.stream_options is None


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        ({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}, "get_weather", False),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: str, parallel: bool | None) -> None:
    chat = to_chat_request(parse_anthropic(MessagesRequest, body(tools=[WEATHER_TOOL], tool_choice=choice)))
    named = getattr(chat.tool_choice, "function", None)
    assert (named.name if named else chat.tool_choice) == expected
    assert chat.parallel_tool_calls is parallel


@pytest.mark.parametrize(
    ("extra", "effort"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "low"),
        ({"thinking": {"type": "enabled", "budget_tokens": 4095}}, "low"),
        ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 16383}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 16384}}, "high"),
        ({"thinking": {"type": "adaptive"}}, "medium"),
        ({"thinking": {"type": "disabled"}}, None),
        ({"thinking": {"type": "disabled"}, "output_config": {"effort": "low"}}, "low"),
        ({"output_config": {"effort": "max"}}, "high"),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 1024}, "output_config": {"effort": "medium"}},
            "medium",
        ),
    ],
)
def test_thinking_budget_becomes_reasoning_effort(extra: dict[str, Any], effort: str | None) -> None:
    chat = to_chat_request(parse_anthropic(MessagesRequest, body(max_tokens=20000, **extra)))
    assert chat.reasoning_effort == effort
    # what was asked goes along, for a Claude upstream
    thinking = extra.get("thinking") or {}
    intent = chat.messages_intent
    if thinking.get("type") is None and "output_config" not in extra:
        assert intent is None
    else:
        assert intent is not None
        assert intent.thinking_off == (thinking.get("type") == "disabled")
        assert intent is not None
        assert intent.thinking == (thinking.get("type") in ("enabled", "adaptive"))
        assert intent.budget == thinking.get("budget_tokens")
        assert intent.effort == extra.get("output_config", {}).get("effort")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking"),
        ({"output_config": {"effort": "low"}}, "output_config.effort"),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2048}, "output_config": {"effort": "high"}},
            "thinking",
        ),
    ],
)
def test_a_refused_effort_is_named_as_the_client_sent_it(extra: dict[str, Any], field: str) -> None:
    """``reasoning_effort`` stands for ``thinking``, or for ``output_config.effort`` sent alone."""
    chat = to_chat_request(parse_anthropic(MessagesRequest, body(max_tokens=20000, **extra)))
    refused = UnsupportedParamError("provider 'p' cannot honour 'reasoning_effort'", param="reasoning_effort")
    message = orjson.loads(error_body(refused, chat))["error"]["message"]
    assert message.startswith(f"{field}: ")


def test_a_thinking_block_without_a_signature_is_reasoning_only() -> None:
    """uniinfer's rendering of another provider's reasoning, sent back: nobody could verify it."""
    assistant = {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "from elsewhere", "signature": ""},
            {"type": "text", "text": "Hi."},
        ],
    }
    chat = to_chat_request(
        parse_anthropic(
            MessagesRequest, body(messages=[*HELLO, assistant, {"role": "user", "content": "more"}])
        )
    )
    message = chat.messages[1]
    assert isinstance(message, AssistantMessage)
    assert (message.reasoning_content, message.signed_thinking) == ("from elsewhere", None)


def interleaved_turn(*blocks: dict[str, Any]) -> AssistantMessage:
    """The assistant message of a history whose assistant turn is ``blocks``."""
    calls = [b["id"] for b in blocks if b["type"] == "tool_use"]
    results = [{"type": "tool_result", "tool_use_id": i, "content": "ok"} for i in calls]
    turns = [*HELLO, {"role": "assistant", "content": list(blocks)}, {"role": "user", "content": results}]
    message = to_chat_request(parse_anthropic(MessagesRequest, body(messages=turns))).messages[1]
    assert isinstance(message, AssistantMessage)
    return message


def test_an_interleaved_assistant_turn_keeps_its_order_for_claude() -> None:
    thought = {"type": "thinking", "thinking": "weather first", "signature": "sig"}
    text = {"type": "text", "text": "Let me check."}
    use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}
    more = {"type": "text", "text": "And also:"}
    again = {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}}
    message = interleaved_turn(thought, text, use, more, again)
    # OpenAI's shape, for every provider: the texts apart, then the calls
    assert [p.text for p in message.content or () if not isinstance(p, str)] == ["Let me check.", "And also:"]
    assert [c.id for c in message.tool_calls or ()] == ["toolu_1", "toolu_2"]
    # and the order, for a Claude upstream: the same objects, as the client sent them
    assert isinstance(message.content, list)
    assert message.tool_calls
    assert message.signed_thinking
    assert message.content_blocks == [
        message.signed_thinking[0],
        message.content[0],
        message.tool_calls[0],
        message.content[1],
        message.tool_calls[1],
    ]
    assert "content_blocks" not in message.model_dump_json()
    # a turn in OpenAI's order has nothing more to say
    assert interleaved_turn(thought, text, more, use, again).content_blocks is None
    assert interleaved_turn(use, text).content_blocks == [message.tool_calls[0], message.content[0]]


def test_documents_and_structured_output() -> None:
    pdf = base64.b64encode(b"%PDF-1.4").decode()
    req = parse_anthropic(
        MessagesRequest,
        body(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "title": "Notes",
                            "source": {"type": "text", "media_type": "text/plain", "data": "a b"},
                        },
                        {
                            "type": "document",
                            "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                    ],
                }
            ],
            output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}},
        ),
    )
    chat = to_chat_request(req)
    user = chat.messages[0]
    assert isinstance(user, UserMessage)
    assert isinstance(user.content, list)
    text, file, image = user.content
    assert text.type == "text"
    assert text.text == "Notes\n\na b"
    assert file.type == "file"
    assert file.file == {"filename": "document.pdf", "file_data": f"data:application/pdf;base64,{pdf}"}
    assert image.type == "image_url"
    assert image.image_url.url == "https://example.com/cat.png"
    assert chat.response_format is not None
    assert chat.response_format.model_dump(by_alias=True, exclude_none=True) == {
        "type": "json_schema",
        # strict only for a schema OpenAI's strict mode takes (this one allows other keys)
        "json_schema": {"name": "output", "schema": {"type": "object"}, "strict": False},
    }


@pytest.mark.parametrize(
    ("data", "error", "param", "fragment"),
    [
        (body(bogus=1), InvalidRequestError, "bogus", "Extra inputs are not permitted"),
        ({"model": "chat", "messages": HELLO}, InvalidRequestError, "max_tokens", "Field required"),
        (body(max_tokens=0), InvalidRequestError, "max_tokens", "greater than or equal to 1"),
        (body(messages=[]), InvalidRequestError, "messages", "at least 1 item"),
        (body(temperature=1.5), InvalidRequestError, "temperature", "less than or equal to 1"),
        (
            body(messages=[{"role": "system", "content": "x"}]),
            InvalidRequestError,
            "messages.0.role",
            "'user' or 'assistant'",
        ),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "look"},
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/tiff", "data": PNG},
                            },
                        ],
                    }
                ]
            ),
            InvalidRequestError,
            "messages.0.content.1.image.source.base64.media_type",
            "'image/jpeg'",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "server_tool_use"}]}]),
            InvalidRequestError,
            "messages.0.content.0",
            "does not match any of the expected tags",
        ),
        (
            body(
                messages=[
                    {"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]}
                ]
            ),
            InvalidRequestError,
            "messages.0.content.0.type",
            "not allowed in 'user' messages",
        ),
        (
            body(messages=[{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]),
            InvalidRequestError,
            "messages.0",
            "non-empty content",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]}]),
            InvalidRequestError,
            "messages.0.content.0",
            "unexpected `tool_use_id`",
        ),
        (
            body(
                messages=[
                    *HELLO,
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "toolu_1", "name": "n", "input": {}}],
                    },
                    {"role": "user", "content": "never mind"},
                    {"role": "assistant", "content": "ok"},
                ]
            ),
            InvalidRequestError,
            "messages.1",
            "without `tool_result` blocks",
        ),
        (
            body(tools=[{"name": "x", "input_schema": {"type": "array"}}]),
            InvalidRequestError,
            "tools.0.custom.input_schema.type",
            "'object'",
        ),
        (
            body(tools=[{"type": "web_search_20250305", "name": "web_search"}]),
            UnsupportedFeatureError,
            "tools.0.type",
            "web_search_20250305",
        ),
        (body(tool_choice={"type": "auto"}), InvalidRequestError, "tool_choice", "while providing tools"),
        (
            body(tools=[WEATHER_TOOL], tool_choice={"type": "tool", "name": "nope"}),
            InvalidRequestError,
            "tool_choice.tool.name",
            "'nope' not found",
        ),
        (
            body(thinking={"type": "enabled", "budget_tokens": 512}),
            InvalidRequestError,
            "thinking.enabled.budget_tokens",
            "1024",
        ),
        (
            body(thinking={"type": "enabled", "budget_tokens": 2048}),
            InvalidRequestError,
            "max_tokens",
            "greater than `thinking.budget_tokens`",
        ),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "document", "source": {"type": "file", "file_id": "file_1"}}],
                    }
                ]
            ),
            UnsupportedFeatureError,
            "messages.0.content.0.source.type",
            "'file'",
        ),
    ],
)
def test_invalid_requests_name_the_field(
    data: dict[str, Any], error: type[UniInferError], param: str, fragment: str
) -> None:
    with pytest.raises(error) as info:
        to_chat_request(parse_anthropic(MessagesRequest, data))
    assert info.value.param == param
    assert fragment in info.value.message
    if param != "stop":  # the one limit of the OpenAI shape: named by its OpenAI field
        assert info.value.message.startswith(f"{param}: ")


def test_count_tokens_request_has_no_generation_fields() -> None:
    req = parse_anthropic(CountTokensRequest, {"model": "chat", "messages": HELLO, "tools": [WEATHER_TOOL]})
    assert to_chat_request(req).max_tokens is None
    with pytest.raises(InvalidRequestError, match="max_tokens: Extra inputs"):
        parse_anthropic(CountTokensRequest, body())


def test_token_estimate_counts_every_part() -> None:
    base = estimate_input_tokens(parse_anthropic(CountTokensRequest, {"model": "m", "messages": HELLO}))
    assert base == 3 + 3 + 2  # per request, per message, "hello there"
    bigger = parse_anthropic(
        CountTokensRequest,
        {
            "model": "m",
            "system": "You are a weather bot.",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hello there"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                    ],
                }
            ],
            "tools": [WEATHER_TOOL],
        },
    )
    assert estimate_input_tokens(bigger) > base + 1600 + 20


# --- response translation --------------------------------------------------------------


def _response(message: ResponseMessage, finish: str | None, usage: Usage | None = None) -> ChatResponse:
    return ChatResponse(
        id="chatcmpl-abc123",
        model="gpt-4o-mini",
        choices=[ChatChoice(message=message, finish_reason=finish)],  # type: ignore[arg-type]
        usage=usage,
    )


def test_message_has_the_signed_thinking_blocks_as_anthropic_sent_them() -> None:
    signed = [
        SignedThinking(type="redacted_thinking", data="opaque=="),
        SignedThinking(type="thinking", thinking="thinking...", signature="sig-1"),
    ]
    msg = ResponseMessage(content="Hi.", reasoning_content="thinking...", signed_thinking=signed)
    out = to_message(_response(msg, "stop"), "my-model")
    assert out["content"] == [
        {"type": "redacted_thinking", "data": "opaque=="},
        {"type": "thinking", "thinking": "thinking...", "signature": "sig-1"},
        {"type": "text", "text": "Hi."},
    ]
    anthropic.types.Message.model_validate(out)


def test_message_has_the_blocks_in_the_order_the_provider_kept() -> None:
    calls = [
        ToolCall.model_validate({"id": f"toolu_{k}", "function": {"name": "get_weather", "arguments": "{}"}})
        for k in (1, 2)
    ]
    signed = [SignedThinking(type="thinking", thinking="And the time.", signature="sig-1")]
    order = ["Let me check.", calls[0], signed[0], "And also:", calls[1]]
    msg = ResponseMessage(
        content="Let me check.And also:",
        reasoning_content="And the time.",
        tool_calls=calls,
        signed_thinking=signed,
        content_blocks=order,
    )
    uses = [{"type": "tool_use", "id": f"toolu_{k}", "name": "get_weather", "input": {}} for k in (1, 2)]
    out = to_message(_response(msg, "tool_calls"), "m")
    assert out["content"] == [
        {"type": "text", "text": "Let me check."},
        uses[0],
        {"type": "thinking", "thinking": "And the time.", "signature": "sig-1"},
        {"type": "text", "text": "And also:"},
        uses[1],
    ]
    assert out["stop_reason"] == "tool_use"
    anthropic.types.Message.model_validate(out)
    # another provider's (unsigned) reasoning still comes first
    gemini = ResponseMessage(
        content="Let me check.And also:",
        reasoning_content="hmm",
        tool_calls=calls,
        content_blocks=["Let me check.", calls[0], "And also:", calls[1]],
    )
    assert [b["type"] for b in to_message(_response(gemini, "tool_calls"), "m")["content"]] == [
        "thinking",
        "text",
        "tool_use",
        "text",
        "tool_use",
    ]
    # an order a stage made stale (the text rewritten) is not used: OpenAI's shape is
    stale = msg.model_copy(update={"content": "[redacted]"})
    assert to_message(_response(stale, "tool_calls"), "m")["content"] == [
        {"type": "thinking", "thinking": "And the time.", "signature": "sig-1"},
        {"type": "text", "text": "[redacted]"},
        *uses,
    ]


def test_message_has_thinking_text_and_tool_use_blocks() -> None:
    call = ToolCall.model_validate(
        {"id": "call_1", "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}
    )
    usage = Usage.of(100, 20, cached=60, cache_write=10, reasoning=5)
    msg = ResponseMessage(content="Let me check.", reasoning_content="thinking...", tool_calls=[call])
    out = to_message(_response(msg, "tool_calls", usage), "my-model")
    assert out["id"] == "msg_abc123"
    assert (out["type"], out["role"], out["model"]) == ("message", "assistant", "my-model")
    assert out["content"] == [
        {"type": "thinking", "thinking": "thinking...", "signature": ""},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
    ]
    assert (out["stop_reason"], out["stop_sequence"]) == ("tool_use", None)
    assert out["usage"] == {
        "input_tokens": 30,
        "cache_creation_input_tokens": 10,
        "cache_read_input_tokens": 60,
        "output_tokens": 20,
        "output_tokens_details": {"thinking_tokens": 5},
    }
    # the SDK's own model accepts it as a Message
    parsed = anthropic.types.Message.model_validate(out)
    assert parsed.usage.input_tokens == 30


@pytest.mark.parametrize(
    ("finish", "tools", "expected"),
    [
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("content_filter", False, "refusal"),
        ("tool_calls", True, "tool_use"),
        ("stop", True, "tool_use"),
        ("length", True, "max_tokens"),
        (None, False, "end_turn"),
    ],
)
def test_stop_reasons(finish: str | None, tools: bool, expected: str) -> None:
    calls = (
        [ToolCall.model_validate({"id": "c", "function": {"name": "f", "arguments": ""}})] if tools else None
    )
    out = to_message(_response(ResponseMessage(content="x", tool_calls=calls), finish), "m")
    assert out["stop_reason"] == expected
    if tools:
        assert out["content"][-1]["input"] == {}


def test_more_stop_sequences_than_openai_allows_are_passed_on() -> None:
    stops = [f"stop-{i}" for i in range(6)]
    chat = to_chat_request(parse_anthropic(MessagesRequest, body(stop_sequences=stops)))
    assert chat.stop == stops


def test_anthropic_ids_are_kept_and_bad_tool_arguments_are_an_error() -> None:
    resp = _response(ResponseMessage(content="hi"), "stop").model_copy(update={"id": "msg_01XYZ"})
    assert to_message(resp, "m")["id"] == "msg_01XYZ"
    assert to_message(resp, "m")["usage"]["input_tokens"] == 0
    bad = ToolCall.model_validate({"id": "c", "function": {"name": "f", "arguments": "[1, 2"}})
    with pytest.raises(ProviderResponseError, match="'f'"):
        to_message(_response(ResponseMessage(tool_calls=[bad]), "tool_calls"), "m")


def cut_call(arguments: str = '{"location": "Par') -> ToolCall:
    return ToolCall.model_validate(
        {"id": "call_1", "function": {"name": "get_weather", "arguments": arguments}}
    )


def test_a_tool_call_cut_by_max_tokens_is_a_max_tokens_answer_streamed_or_not() -> None:
    """Anthropic answers output cut off in a tool_use block with stop_reason max_tokens, not an error."""
    out = to_message(_response(ResponseMessage(tool_calls=[cut_call()]), "length"), "m")
    assert out["stop_reason"] == "max_tokens"
    assert out["content"] == [{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}]
    events = render(
        [
            chunk(tool_delta(0, id="call_1", name="get_weather", args='{"location":')),
            chunk(tool_delta(0, args=' "Par'), finish="length"),
        ]
    )
    assert [n for n, _ in events][-2:] == ["message_delta", "message_stop"]
    message = assemble(events)
    assert message.stop_reason == "max_tokens"
    assert [(b.type, b.input) for b in message.content] == [("tool_use", {})]  # type: ignore[union-attr]


@pytest.mark.parametrize("arguments", ['{"location": "Par', "[1, 2]"])
def test_tool_arguments_not_an_object_without_a_cut_are_an_error_streamed_or_not(arguments: str) -> None:
    with pytest.raises(ProviderResponseError, match="'get_weather'"):
        to_message(_response(ResponseMessage(tool_calls=[cut_call(arguments)]), "tool_calls"), "m")
    events = render(
        [chunk(tool_delta(0, id="call_1", name="get_weather", args=arguments), finish="tool_calls")]
    )
    names = [n for n, _ in events]
    assert names[-1] == "error"
    assert "message_delta" not in names
    assert "message_stop" not in names
    assert events[-1][1]["error"]["type"] == "api_error"
    assert "'get_weather'" in events[-1][1]["error"]["message"]


def test_the_matched_stop_sequence_is_passed_on_when_the_provider_says_which() -> None:
    said = ChatChoice(message=ResponseMessage(content="hello "), finish_reason="stop", stop_sequence="there")
    resp = _response(ResponseMessage(content="hello "), "stop").model_copy(update={"choices": [said]})
    out = to_message(resp, "m")
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "there")
    stopped = chunk({"content": "hello "}, finish="stop")
    stopped.choices[0].stop_sequence = "there"
    final = render([stopped])[-2][1]
    assert final["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "there"}
    # only "stop": whether a sequence matched is unknown, so nothing is guessed
    plain = to_message(_response(ResponseMessage(content="hello "), "stop"), "m")
    assert (plain["stop_reason"], plain["stop_sequence"]) == ("end_turn", None)
    assert render([chunk({"content": "hi"}, finish="stop")])[-2][1]["delta"]["stop_sequence"] is None


def test_message_start_carries_the_early_input_usage() -> None:
    first = chunk({"role": "assistant"})
    first.early_usage = Usage.of(125, 1, cached=100, cache_write=0)
    events = render(
        [first, chunk({"content": "hi"}, finish="stop"), chunk(None, usage=Usage.of(125, 7, cached=100))]
    )
    start = events[0][1]["message"]["usage"]
    assert (start["input_tokens"], start["cache_read_input_tokens"], start["output_tokens"]) == (25, 100, 1)
    assert events[-2][1]["usage"]["output_tokens"] == 7
    # without a final usage chunk, message_delta keeps what message_start said (not zeros)
    alone = render([first, chunk({"content": "hi"}, finish="stop")])
    assert alone[-2][1]["usage"]["input_tokens"] == 25


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (InvalidRequestError("bad"), "invalid_request_error"),
        (UnsupportedParamError("p"), "invalid_request_error"),
        (RequestTooLargeError("big"), "request_too_large"),
        (AuthenticationError("who"), "authentication_error"),
        (ModelNotFoundError("none"), "not_found_error"),
        (RateLimitError("slow", retry_after=7), "rate_limit_error"),
        (ProviderOverloadedError("busy"), "overloaded_error"),
        (ProviderTimeoutError("late"), "api_error"),
        (UniInferError("bug"), "api_error"),
        (AllTargetsFailedError("m", [("a/b", RateLimitError("slow"))]), "rate_limit_error"),
    ],
)
def test_error_body_type_by_class(exc: UniInferError, kind: str) -> None:
    payload = orjson.loads(error_body(exc))
    assert payload["type"] == "error"
    assert payload["error"]["type"] == kind
    assert payload["error"]["message"] == exc.message


def test_error_messages_speak_anthropic() -> None:
    too_long = orjson.loads(error_body(ContextLengthExceededError("8192 tokens max")))
    assert too_long["error"]["message"] == "prompt is too long: 8192 tokens max"
    dropped = UnsupportedParamError(
        "provider 'up' does not support reasoning_effort", param="reasoning_effort"
    )
    assert orjson.loads(error_body(dropped))["error"]["message"].startswith("thinking: provider 'up'")


# --- stream renderer ---------------------------------------------------------------------


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, usage: Usage | None = None
) -> ChatChunk:
    choices = (
        [] if delta is None else [ChunkChoice(delta=ChunkDelta.model_validate(delta), finish_reason=finish)]
    )  # type: ignore[arg-type]
    return ChatChunk(id="chatcmpl-s1", model="up-model", choices=choices, usage=usage)


def tool_delta(
    index: int, *, id: str | None = None, name: str | None = None, args: str | None = None
) -> dict[str, Any]:
    function = {k: v for k, v in (("name", name), ("arguments", args)) if v is not None}
    call = ToolCallDelta.model_validate({"index": index, "id": id, "function": function or None})
    return {"tool_calls": [call.model_dump(exclude_none=True)]}


def render(chunks: list[ChatChunk]) -> list[tuple[str, dict[str, Any]]]:
    renderer = StreamRenderer("asked-model")
    raw = b"".join(renderer.feed(c) for c in chunks) + renderer.finish()
    return parse_sse(raw)


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in raw.decode().split("\n\n"):
        if frame:
            name_line, data_line = frame.split("\n")
            name, data = name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))
            assert data["type"] == name
            events.append((name, data))
    return events


def assemble(events: list[tuple[str, dict[str, Any]]]) -> anthropic.types.Message:
    """What the official SDK's stream accumulator builds from the events (its real code)."""
    from anthropic.lib.streaming._messages import accumulate_event

    snapshot = None
    bufs: dict[int, bytes] = {}
    for name, data in events:
        if name in ("ping", "error"):
            continue
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    return snapshot


def test_text_stream_sequence_and_usage() -> None:
    usage = Usage.of(12, 3, cached=4)
    events = render(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "echo: "}),
            chunk({"content": "hi"}),
            chunk({}, finish="stop"),
            chunk(None, usage=usage),
        ]
    )
    names = [n for n, _ in events]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert (start["id"], start["model"], start["content"]) == ("msg_s1", "asked-model", [])
    assert start["usage"]["input_tokens"] == 0  # not known yet
    final = events[-2][1]
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"] == {
        "input_tokens": 8,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 4,
        "output_tokens": 3,
    }
    message = assemble(events)
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hi"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (8, 3)


def test_thinking_text_and_two_tool_calls_become_numbered_blocks() -> None:
    events = render(
        [
            chunk({"role": "assistant", "reasoning_content": "Let me "}),
            chunk({"reasoning_content": "think."}),
            chunk({"content": "Calling tools."}),
            chunk(tool_delta(0, id="call_a", name="get_weather", args="")),
            chunk(tool_delta(0, args='{"location":')),
            chunk(tool_delta(0, args=' "Paris"}')),
            chunk(tool_delta(1, id="call_b", name="get_time", args='{"tz": "CET"}')),
            chunk({}, finish="tool_calls"),
        ]
    )
    starts = [(d["index"], d["content_block"]) for n, d in events if n == "content_block_start"]
    assert starts == [
        (0, {"type": "thinking", "thinking": "", "signature": ""}),
        (1, {"type": "text", "text": ""}),
        (2, {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}),
        (3, {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}}),
    ]
    # each block stops before the next one starts
    order = [
        (n, d.get("index"))
        for n, d in events
        if n.startswith("content_block_") and n != "content_block_delta"
    ]
    assert order == [(kind, i) for i in range(4) for kind in ("content_block_start", "content_block_stop")]
    deltas = [d["delta"]["type"] for n, d in events if n == "content_block_delta"]
    assert deltas == ["thinking_delta"] * 2 + ["text_delta"] + ["input_json_delta"] * 3
    message = assemble(events)
    assert message.stop_reason == "tool_use"
    assert [getattr(b, "input", None) for b in message.content[2:]] == [{"location": "Paris"}, {"tz": "CET"}]
    assert message.content[0].thinking == "Let me think."  # type: ignore[union-attr]


def test_signed_thinking_streams_its_signature_before_the_block_stops() -> None:
    signature = {"signed_thinking": [SignedThinking(type="thinking", signature="sig-1")]}
    redacted = {"signed_thinking": [SignedThinking(type="redacted_thinking", data="opaque==")]}
    events = render(
        [
            chunk({"role": "assistant", "reasoning_content": "Let me "}),
            chunk({"reasoning_content": "think."}),
            chunk(signature),
            chunk(redacted),
            chunk(signature),  # thinking that was not shown: an empty block with its signature
            chunk({"content": "Hi."}),
            chunk({}, finish="stop"),
        ]
    )
    blocks = [
        (n, d.get("content_block") or d.get("delta"))
        for n, d in events
        if n in ("content_block_start", "content_block_delta")
    ]
    assert blocks == [
        ("content_block_start", {"type": "thinking", "thinking": "", "signature": ""}),
        ("content_block_delta", {"type": "thinking_delta", "thinking": "Let me "}),
        ("content_block_delta", {"type": "thinking_delta", "thinking": "think."}),
        ("content_block_delta", {"type": "signature_delta", "signature": "sig-1"}),
        ("content_block_start", {"type": "redacted_thinking", "data": "opaque=="}),
        ("content_block_start", {"type": "thinking", "thinking": "", "signature": ""}),
        ("content_block_delta", {"type": "signature_delta", "signature": "sig-1"}),
        ("content_block_start", {"type": "text", "text": ""}),
        ("content_block_delta", {"type": "text_delta", "text": "Hi."}),
    ]
    # every block stops before the next starts, the signature last in its block
    order = [(n, d.get("index")) for n, d in events if n in ("content_block_start", "content_block_stop")]
    assert order == [(kind, i) for i in range(4) for kind in ("content_block_start", "content_block_stop")]
    stop_of_first = events.index(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    assert events[stop_of_first - 1][1]["delta"]["type"] == "signature_delta"
    # what the official SDK assembles from it
    message = assemble(events)
    assert [b.model_dump(exclude_none=True) for b in message.content] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "opaque=="},
        {"type": "thinking", "thinking": "", "signature": "sig-1"},
        {"type": "text", "text": "Hi."},
    ]


def test_interleaved_tool_arguments_keep_their_block_index() -> None:
    events = render(
        [
            chunk(tool_delta(0, id="call_a", name="f", args='{"a"')),
            chunk(tool_delta(1, id="call_b", name="g", args='{"b": 2}')),
            chunk(tool_delta(0, args=": 1}")),  # late: block 0 is already closed
            chunk({}, finish="tool_calls"),
        ]
    )
    late = [d for n, d in events if n == "content_block_delta"][-1]
    assert late["index"] == 0
    message = assemble(events)
    assert [b.input for b in message.content] == [{"a": 1}, {"b": 2}]  # type: ignore[union-attr]


def test_length_refusal_and_empty_streams() -> None:
    assert render([chunk({"content": "a"}, finish="length")])[-2][1]["delta"]["stop_reason"] == "max_tokens"
    refused = render([chunk({"refusal": "I can't."}, finish="stop")])
    assert refused[-2][1]["delta"]["stop_reason"] == "refusal"
    assert assemble(refused).content[0].text == "I can't."  # type: ignore[union-attr]
    empty = render([])
    assert [n for n, _ in empty] == ["message_start", "ping", "message_delta", "message_stop"]
    assert empty[0][1]["message"]["id"].startswith("msg_")


def test_calls_a_server_numbers_alike_are_told_apart_by_their_ids() -> None:
    """Ollama's /v1, sglang and others give every parallel call index 0: each id is a call."""
    events = render(
        [
            chunk(tool_delta(0, id="call_1", name="get", args='{"a":')),
            chunk(tool_delta(0, args=" 1}")),
            chunk(tool_delta(0, id="call_2", name="get", args='{"a": 2}')),
            chunk({}, "tool_calls"),
        ]
    )
    message = assemble(events)
    assert [(b.id, b.input) for b in message.content] == [("call_1", {"a": 1}), ("call_2", {"a": 2})]  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"


def test_a_provider_s_call_id_outside_anthropic_s_alphabet_comes_back() -> None:
    """Kimi's ids (``functions.get:0``) reach the client as they are; its next turn carries them."""
    parse_anthropic(
        MessagesRequest,
        {
            "model": "m",
            "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "functions.get:0", "name": "get", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "functions.get:0", "content": "sunny"}]},
            ],
        },
    )  # fmt: skip


async def test_an_answer_that_cannot_be_rendered_is_an_error_with_the_route_headers() -> None:
    """A call whose arguments are no JSON object, non-streamed: the error names the route tried."""

    async def answer(request: web.Request) -> web.Response:
        call = {"id": "c1", "type": "function", "function": {"name": "get", "arguments": '{"a":1'}}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return web.json_response(
            {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
             "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}
        )  # fmt: skip

    upstream = web.Application()
    upstream.router.add_post("/v1/chat/completions", answer)
    async with run_fake(upstream) as url:
        config = make_config(
            f"providers:\n  up: {{type: openai, api_key: {FAKE_KEY}, base_url: '{url}/v1'}}\n"
        )
        async with serve(create_app(config)) as base, aiohttp.ClientSession() as session:
            body = {"model": "up/m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
            async with session.post(base + "/v1/messages", json=body) as resp:
                assert resp.status == 502
                assert resp.headers["x-uniinfer-provider"] == "up"
                assert (await resp.json())["error"]["type"] == "api_error"


def test_mid_stream_error_event() -> None:
    renderer = StreamRenderer("m")
    renderer.feed(chunk({"content": "partial"}))
    [(name, data)] = parse_sse(renderer.error(ProviderOverloadedError("upstream busy")))
    assert name == "error"
    assert data == {"type": "error", "error": {"type": "overloaded_error", "message": "upstream busy"}}


# --- end to end with the official SDK -------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    """One way to serve the tests' models: a provider of a type, in front of its fake."""

    type: str
    provider: str
    model: str  # upstream model name the fake answers normally

    def name(self, model: str | None = None) -> str:
        return f"{self.provider}/{model or self.model}"


OPENAI = Upstream("openai", "up", "gpt-4o-mini")
ANTHROPIC = Upstream("anthropic", "claude", "claude-sonnet-4-5")
UPSTREAMS = [OPENAI, ANTHROPIC]


@dataclass
class Harness:
    url: str
    app: App
    openai_app: web.Application
    anthropic_app: web.Application
    counts: list[dict[str, Any]]

    def upstream_bodies(self, upstream: Upstream) -> list[dict[str, Any]]:
        if upstream is OPENAI:
            return [r["body"] for r in self.openai_app["requests"] if r["path"].endswith("/chat/completions")]
        return list(self.anthropic_app["requests"])


def anthropic_with_count_tokens(counts: list[dict[str, Any]]) -> web.Application:
    """The Anthropic fake, composed with a ``/v1/messages/count_tokens`` route that checks like the API."""
    app = anthropic_app(api_key=ANTHROPIC_KEY)

    async def count(request: web.Request) -> web.Response:
        if request.headers.get("x-api-key") != ANTHROPIC_KEY:
            return anthropic_error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return anthropic_error(400, "anthropic-version: header is required")
        payload = await request.json()
        app["headers"].append(dict(request.headers))
        allowed = {"model", "messages", "system", "tools", "tool_choice", "thinking", "output_config"}
        for name in payload:
            if name not in allowed:
                return anthropic_error(400, f"{name}: Extra inputs are not permitted")
        counts.append(payload)
        if payload["model"] == "claude-overloaded":  # Anthropic's 529
            return anthropic_error(529, "Overloaded")
        return web.json_response({"input_tokens": COUNTED})

    app.router.add_post("/v1/messages/count_tokens", count)
    return app


@pytest.fixture
async def harness(openai_fake_app: web.Application, openai_url: str) -> AsyncIterator[Harness]:
    counts: list[dict[str, Any]] = []
    upstream = anthropic_with_count_tokens(counts)
    async with AsyncExitStack() as stack:
        anthropic_url = await stack.enter_async_context(run_fake(upstream))
        config = make_config(
            f"""server: {{master_key: {MASTER}}}
providers:
  up: {{type: openai, api_key: {FAKE_KEY}, base_url: '{openai_url}'}}
  claude: {{type: anthropic, api_key: {ANTHROPIC_KEY}, base_url: '{anthropic_url}'}}
routing:
  retry: {{max_retries: 0}}
models:
  chat: {{deployments: [up/gpt-4o-mini]}}
  claude-chat: {{deployments: [claude/claude-sonnet-4-5]}}
  claude-down: {{deployments: [claude/claude-overloaded]}}
"""
        )
        app = create_app(config)
        app.add_routes(anthropic_api.ROUTES)
        url = await stack.enter_async_context(serve(app))
        yield Harness(url, app, openai_fake_app, upstream, counts)


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=harness.url, api_key=MASTER, max_retries=0) as c:
        yield c


@pytest.mark.parametrize("upstream", UPSTREAMS, ids=lambda u: u.type)
async def test_plain_text(client: anthropic.AsyncAnthropic, harness: Harness, upstream: Upstream) -> None:
    raw = await client.messages.with_raw_response.create(
        model=upstream.name(), max_tokens=256, messages=HELLO
    )  # type: ignore[arg-type]
    message = await raw.parse()
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hello there"
    assert (message.stop_reason, message.stop_sequence, message.model) == ("end_turn", None, upstream.name())
    assert message.id.startswith("msg_")
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0
    assert raw.headers["x-uniinfer-provider"] == upstream.provider
    assert raw.headers["x-uniinfer-model"] == upstream.model
    assert raw.headers["x-request-id"]
    assert message._request_id == raw.headers["x-request-id"]  # the SDK reads Anthropic's request-id


@pytest.mark.parametrize("upstream", UPSTREAMS, ids=lambda u: u.type)
async def test_stream_helper_with_usage(client: anthropic.AsyncAnthropic, upstream: Upstream) -> None:
    async with client.messages.stream(model=upstream.name(), max_tokens=256, messages=HELLO) as stream:  # type: ignore[arg-type]
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "echo: hello there"
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("upstream", UPSTREAMS, ids=lambda u: u.type)
async def test_tool_use_round_trip(
    client: anthropic.AsyncAnthropic, harness: Harness, upstream: Upstream
) -> None:
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = await client.messages.create(
        model=upstream.name("tool-model"),
        max_tokens=256,
        messages=question,
        tools=[WEATHER_TOOL],  # type: ignore[arg-type, list-item]
    )
    assert first.stop_reason == "tool_use"
    [call] = [b for b in first.content if b.type == "tool_use"]
    assert call.name == "get_weather"
    assert call.input == {"location": "Paris"}
    answer = await client.messages.create(
        model=upstream.name(),
        max_tokens=256,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[
            *question,  # type: ignore[list-item]
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21 degrees"}],
            },
        ],
    )
    assert answer.stop_reason == "end_turn"
    assert answer.content[0].type == "text"
    assert answer.content[0].text.startswith("echo: ")
    sent = harness.upstream_bodies(upstream)[-1]
    if upstream is OPENAI:
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "21 degrees"}
        assert sent["messages"][-2]["tool_calls"][0]["id"] == call.id
    else:
        result = sent["messages"][-1]["content"][0]
        assert (result["type"], result["tool_use_id"], result["content"]) == (
            "tool_result",
            call.id,
            "21 degrees",
        )


@pytest.mark.parametrize("caller", [None, {"type": "direct"}])  # and toolset_name null, as 2.14 dumps
async def test_a_tool_use_block_sent_back_as_the_sdk_dumps_it(
    client: anthropic.AsyncAnthropic, caller: dict[str, str] | None
) -> None:
    # anthropic 2.x blocks carry `caller`; model_dump() writes it, null when the model called
    use = {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {},
        "caller": caller,
        "toolset_name": None,
    }
    answer = await client.messages.create(
        model=OPENAI.name(),
        max_tokens=64,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [use]},  # type: ignore[list-item]
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "21"}]},
        ],
    )
    assert answer.stop_reason == "end_turn"  # accepted and answered


async def test_a_tool_use_block_a_server_tool_called_is_refused_naming_it(
    client: anthropic.AsyncAnthropic,
) -> None:
    use = {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {},
        "caller": {"type": "code_execution_20250825", "tool_id": "srvtoolu_1"},
    }
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(
            model=OPENAI.name(),
            max_tokens=64,
            messages=[{"role": "user", "content": "weather?"}, {"role": "assistant", "content": [use]}],  # type: ignore[list-item]
        )
    assert "caller" in info.value.body["error"]["message"]  # type: ignore[index]


@pytest.mark.parametrize("upstream", UPSTREAMS, ids=lambda u: u.type)
async def test_streamed_tool_call(client: anthropic.AsyncAnthropic, upstream: Upstream) -> None:
    async with client.messages.stream(
        model=upstream.name("tool-model"),
        max_tokens=256,
        messages=HELLO,  # type: ignore[arg-type]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    ) as stream:
        deltas = [e.partial_json async for e in stream if e.type == "input_json"]
        final = await stream.get_final_message()
    assert len(deltas) > 1
    assert json.loads("".join(deltas)) == {"location": "Paris"}
    [call] = [b for b in final.content if b.type == "tool_use"]
    assert call.input == {"location": "Paris"}
    assert final.stop_reason == "tool_use"


@pytest.mark.parametrize("upstream", UPSTREAMS, ids=lambda u: u.type)
async def test_image_system_and_stop_sequences(
    client: anthropic.AsyncAnthropic, harness: Harness, upstream: Upstream
) -> None:
    message = await client.messages.create(
        model=upstream.name(),
        max_tokens=256,
        system="You describe images.",
        stop_sequences=["there"],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "text", "text": "hello there friend"},
                ],
            }
        ],
    )
    sent = harness.upstream_bodies(upstream)[-1]
    if upstream is OPENAI:
        assert sent["messages"][0] == {"role": "system", "content": "You describe images."}
        image = sent["messages"][1]["content"][0]
        assert image == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
        assert sent["stop"] == ["there"]
    else:
        assert sent["system"] == [{"type": "text", "text": "You describe images."}]
        assert sent["messages"][0]["content"][0]["source"] == {
            "type": "base64",
            "media_type": "image/png",
            "data": PNG,
        }
        assert sent["stop_sequences"] == ["there"]
        # the fake stopped on the sequence and said which: passed on
        assert message.content[0].text == "echo: hello "  # type: ignore[union-attr]
        assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "there")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_stop_sequences_reach_anthropic_and_the_matched_one_comes_back(
    client: anthropic.AsyncAnthropic, harness: Harness, stream: bool
) -> None:
    stops = ["zz1", "zz2", "zz3", "zz4", "there"]  # more than OpenAI's 4: Anthropic sets no limit
    kw: dict[str, Any] = {"model": ANTHROPIC.name(), "max_tokens": 256, "messages": HELLO}
    if stream:
        async with client.messages.stream(**kw, stop_sequences=stops) as events:
            message = await events.get_final_message()
    else:
        message = await client.messages.create(**kw, stop_sequences=stops)
    assert harness.upstream_bodies(ANTHROPIC)[-1]["stop_sequences"] == stops
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "there")
    assert message.content[0].text == "echo: hello "  # type: ignore[union-attr]


async def test_message_start_has_the_input_usage_anthropic_reported_at_its_start(harness: Harness) -> None:
    system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            harness.url + "/v1/messages",
            json=body(model=ANTHROPIC.name(), stream=True, system=system),
            headers={"x-api-key": MASTER},
        ) as resp,
    ):
        events = parse_sse(await resp.read())
    start = events[0][1]["message"]["usage"]
    assert (start["input_tokens"], start["cache_read_input_tokens"]) == (4, 100)  # the fake's counts
    final = events[-2][1]["usage"]
    assert (final["input_tokens"], final["cache_read_input_tokens"]) == (4, 100)
    assert final["output_tokens"] == 3


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_pdf_document_reaches_anthropic_as_a_document(
    client: anthropic.AsyncAnthropic, harness: Harness, stream: bool
) -> None:
    pdf = base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode()
    document = {
        "type": "document",
        "title": "report.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
    }
    content = [document, {"type": "text", "text": "summarise"}]
    kw: dict[str, Any] = {
        "model": ANTHROPIC.name(),
        "max_tokens": 256,
        "messages": [{"role": "user", "content": content}],
    }
    if stream:
        async with client.messages.stream(**kw) as events:
            message = await events.get_final_message()
    else:
        message = await client.messages.create(**kw)
    assert message.content[0].text == "echo: summarise"  # type: ignore[union-attr]
    assert harness.upstream_bodies(ANTHROPIC)[-1]["messages"][0]["content"][0] == document


async def test_every_cache_breakpoint_reaches_anthropic_where_the_client_put_it(
    client: anthropic.AsyncAnthropic, harness: Harness
) -> None:
    # the Messages API takes cache_control on tools, images, documents and tool_use blocks too
    cache = {"type": "ephemeral"}
    pdf = base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode()
    tool = {
        "name": "get_weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        "cache_control": cache,
    }
    use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
    messages = [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    "cache_control": cache,
                },
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
                    "cache_control": cache,
                },
                {"type": "text", "text": "weather?"},
            ],
        },
        {"role": "assistant", "content": [{**use, "cache_control": cache}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
    ]
    await client.messages.create(
        model=ANTHROPIC.name(),
        max_tokens=256,
        messages=messages,
        tools=[tool],  # type: ignore[arg-type]
    )
    sent = harness.upstream_bodies(ANTHROPIC)[-1]
    assert sent["tools"][0]["cache_control"] == cache
    image, document, _ = sent["messages"][0]["content"]
    assert (image["cache_control"], document["cache_control"]) == (cache, cache)
    assert sent["messages"][1]["content"][0]["cache_control"] == cache


@pytest.mark.parametrize("ttl", [None, "1h"])
async def test_automatic_caching_puts_its_breakpoint_on_the_last_cacheable_block(
    client: anthropic.AsyncAnthropic, harness: Harness, ttl: str | None
) -> None:
    # a top-level cache_control (automatic caching) caches the prompt up to its last block that
    # takes a breakpoint; the upstream sees an ordinary breakpoint there, and one the client put
    # elsewhere stays where it was
    cache: dict[str, Any] = {"type": "ephemeral"} if ttl is None else {"type": "ephemeral", "ttl": ttl}
    explicit = {"type": "ephemeral"}
    system = [{"type": "text", "text": "Be brief.", "cache_control": explicit}]
    await client.messages.create(
        model=ANTHROPIC.name(),
        max_tokens=256,
        system=system,  # type: ignore[arg-type]
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        ],
        cache_control=cache,  # type: ignore[arg-type]
    )
    sent = harness.upstream_bodies(ANTHROPIC)[-1]
    assert "cache_control" not in sent  # the breakpoint, not the field
    assert sent["system"] == system
    assert sent["messages"][-1]["content"] == [
        {"type": "text", "text": "a"},
        {"type": "text", "text": "b", "cache_control": cache},
    ]
    assert all("cache_control" not in str(m) for m in sent["messages"][:-1])


def test_automatic_caching_skips_thinking_and_keeps_an_explicit_breakpoint() -> None:
    own = {"type": "ephemeral", "ttl": "1h"}
    use = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    req = parse_anthropic(
        MessagesRequest,
        {
            "model": "m",
            "max_tokens": 10,
            "cache_control": {"type": "ephemeral"},
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": [use, {"type": "thinking", "thinking": "t", "signature": "s"}],
                },
            ],
        },
    )
    assert req.messages[1].content[0].cache_control.model_dump(exclude_none=True) == {"type": "ephemeral"}  # type: ignore[union-attr]
    assert req.messages[0].content[0].cache_control is None  # type: ignore[union-attr]
    req = parse_anthropic(
        MessagesRequest,
        {
            "model": "m",
            "max_tokens": 10,
            "cache_control": {"type": "ephemeral"},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": own}]}],
        },
    )
    assert req.messages[0].content[0].cache_control.model_dump(exclude_none=True) == own  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("model", "told"),
    [
        ("ollama/qwen3-think", ("think", False)),
        ("gemini/gemini-2.5-flash", ("thinkingConfig", {"thinkingBudget": 0})),
        # 2.5 Pro cannot stop: its least, and no thoughts asked for (the client turned them off)
        ("gemini/gemini-2.5-pro", ("thinkingConfig", {"thinkingBudget": 128})),
        ("gemini/gemini-3-pro-preview", ("thinkingConfig", {"thinkingLevel": "low"})),
    ],
)
def test_thinking_turned_off_reaches_providers_that_think_by_default(
    model: str, told: tuple[str, Any]
) -> None:
    from uniinfer.config import Config
    from uniinfer.gateway import Gateway

    chat = to_chat_request(parse_anthropic(MessagesRequest, body(model=model, thinking={"type": "disabled"})))
    gateway = Gateway(Config.model_validate({"providers": {"ollama": {}, "gemini": {"api_key": "k"}}}))
    target = gateway.router.group(model).members[0].target
    sent = orjson.loads(target.adapter.chat_request(chat, target.model, stream=False).body)
    key, value = told
    assert (sent[key] if key in sent else sent["generationConfig"][key]) == value
    # a client that said nothing of thinking leaves the model's default alone
    quiet = to_chat_request(parse_anthropic(MessagesRequest, body(model=model)))
    sent = orjson.loads(target.adapter.chat_request(quiet, target.model, stream=False).body)
    assert key not in sent
    assert key not in sent.get("generationConfig", {})


async def test_images_in_tool_results_stay_in_their_result_for_claude(
    client: anthropic.AsyncAnthropic, harness: Harness
) -> None:
    # a computer-use loop: two screenshots, each the result of its own call
    def shot(n: int) -> dict[str, Any]:
        return {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/png",
                "data": base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes([n]) * 32).decode(),
            },
        }

    uses = [{"type": "tool_use", "id": f"toolu_{n}", "name": "get_weather", "input": {}} for n in (1, 2)]
    cache = {"type": "ephemeral"}
    results = [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": [{"type": "text", "text": "one"}, shot(4)],
            "cache_control": cache,  # the breakpoint goes on the result's last block: the image
        },
        {
            "type": "tool_result",
            "tool_use_id": "toolu_2",
            "content": [shot(8), {"type": "text", "text": "caption"}],
        },
    ]
    await client.messages.create(
        model=ANTHROPIC.name(),
        max_tokens=64,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "look"},
            {"role": "assistant", "content": uses},  # type: ignore[typeddict-item]
            {"role": "user", "content": [*results, {"type": "text", "text": "and?"}]},  # type: ignore[list-item]
        ],
    )
    last = harness.upstream_bodies(ANTHROPIC)[-1]["messages"][-1]["content"]
    assert [b["type"] for b in last] == ["tool_result", "tool_result", "text"]  # no image outside
    assert last[0]["content"] == [{"type": "text", "text": "one"}, {**shot(4), "cache_control": cache}]
    assert last[1]["content"] == [shot(8), {"type": "text", "text": "caption"}]  # in their places
    # to an OpenAI-format upstream, they follow the results in a user message, as before
    await client.messages.create(
        model=OPENAI.name(),
        max_tokens=64,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "look"},
            {"role": "assistant", "content": uses},  # type: ignore[typeddict-item]
            {"role": "user", "content": results},  # type: ignore[typeddict-item]
        ],
    )
    user = harness.upstream_bodies(OPENAI)[-1]["messages"][-1]
    assert [p["type"] for p in user["content"]] == ["image_url", "image_url"]


async def test_the_client_s_betas_reach_anthropic_with_the_configured_ones(
    client: anthropic.AsyncAnthropic, harness: Harness
) -> None:
    betas = {"anthropic-beta": "context-1m-2025-08-07, interleaved-thinking-2025-05-14"}
    await client.messages.create(model=ANTHROPIC.name(), max_tokens=64, messages=HELLO, extra_headers=betas)
    await client.messages.count_tokens(model=ANTHROPIC.name(), messages=HELLO, extra_headers=betas)
    messages_call, count_call = harness.anthropic_app["headers"][-2:]
    for sent in (messages_call, count_call):
        assert sent["anthropic-beta"] == "context-1m-2025-08-07,interleaved-thinking-2025-05-14"
    await client.messages.create(model=ANTHROPIC.name(), max_tokens=64, messages=HELLO)
    assert "anthropic-beta" not in harness.anthropic_app["headers"][-1]  # only when asked for
    # one feature a line, as some clients send a list field (RFC 9110 5.3): every line counts
    lines = CIMultiDict([("anthropic-beta", "context-1m-2025-08-07"), ("anthropic-beta", "b-2")])
    body = {"model": ANTHROPIC.name(), "max_tokens": 64, "messages": HELLO}
    async with (
        aiohttp.ClientSession(headers={"x-api-key": MASTER}) as session,
        session.post(harness.url + "/v1/messages", json=body, headers=lines) as resp,
    ):
        assert resp.status == 200
    assert harness.anthropic_app["headers"][-1]["anthropic-beta"] == "context-1m-2025-08-07,b-2"


def test_betas_merge_with_the_provider_s_configured_header() -> None:
    chat = ChatRequest.model_validate({"model": "m", "messages": HELLO})
    asked = chat.with_messages_intent(MessagesIntent(False, betas=anthropic_betas(" a-1 ,b-2,,a-1")))
    configured = {"x-api-key": "k", "Anthropic-Beta": "b-2, c-3"}
    assert with_betas(configured, asked) == {"x-api-key": "k", "anthropic-beta": "b-2,c-3,a-1"}
    assert with_betas(configured, chat) is configured


async def test_count_tokens_forwards_the_deprecated_output_format_as_output_config(
    client: anthropic.AsyncAnthropic, harness: Harness
) -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "schema": schema}
    await client.messages.count_tokens(
        model=ANTHROPIC.name(), messages=HELLO, extra_body={"output_format": fmt}
    )
    assert harness.counts[-1]["output_config"] == {"format": fmt}
    assert "output_format" not in harness.counts[-1]


@pytest.mark.parametrize(("budget", "max_tokens"), [(2048, 3000), (10000, 16000), (30000, 32000)])
async def test_the_thinking_budget_reaches_anthropic_exactly(
    client: anthropic.AsyncAnthropic, harness: Harness, budget: int, max_tokens: int
) -> None:
    thinking = {"type": "enabled", "budget_tokens": budget}
    async with client.messages.stream(
        model=ANTHROPIC.name(),
        max_tokens=max_tokens,
        messages=HELLO,
        thinking=thinking,  # type: ignore[arg-type]
    ) as stream:
        await stream.get_final_message()
    sent = harness.upstream_bodies(ANTHROPIC)[-1]
    assert (sent["thinking"], sent["max_tokens"]) == (thinking, max_tokens)


@pytest.mark.parametrize("effort", ["low", "max"])
async def test_effort_alone_reaches_anthropic_as_effort_without_thinking(
    client: anthropic.AsyncAnthropic, harness: Harness, effort: str
) -> None:
    message = await client.messages.create(
        model=ANTHROPIC.name("claude-opus-4-6"),
        max_tokens=512,
        messages=HELLO,
        output_config={"effort": effort},  # type: ignore[typeddict-item]
    )
    assert [block.type for block in message.content] == ["text"]
    sent = harness.upstream_bodies(ANTHROPIC)[-1]
    assert sent["output_config"] == {"effort": effort}
    assert "thinking" not in sent
    assert sent["max_tokens"] == 512


@pytest.mark.parametrize(
    ("model", "thinking"),
    [
        ("claude-opus-4-6", {"type": "adaptive"}),
        ("claude-sonnet-4-5", {"type": "enabled", "budget_tokens": 4096}),
    ],
)
async def test_adaptive_thinking_reaches_the_claude_models_that_take_it(
    client: anthropic.AsyncAnthropic, harness: Harness, model: str, thinking: dict[str, Any]
) -> None:
    message = await client.messages.create(
        model=ANTHROPIC.name(model),
        max_tokens=8192,
        messages=HELLO,
        thinking={"type": "adaptive"},  # type: ignore[typeddict-item]
    )
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert harness.upstream_bodies(ANTHROPIC)[-1]["thinking"] == thinking


@pytest.mark.parametrize(
    ("model", "effort"),
    [("claude-sonnet-4-5", "low"), ("claude-opus-4-5", "max"), ("claude-opus-4-6", "xhigh")],
)
async def test_an_effort_the_model_lacks_is_refused_before_it_is_sent(
    client: anthropic.AsyncAnthropic, harness: Harness, model: str, effort: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(
            model=ANTHROPIC.name(model),
            max_tokens=512,
            messages=HELLO,
            output_config={"effort": effort},  # type: ignore[typeddict-item]
        )
    assert isinstance(info.value.body, dict)
    message = info.value.body["error"]["message"]
    assert message.startswith("output_config.effort: ")
    assert model in message
    assert not harness.upstream_bodies(ANTHROPIC)


async def test_thinking_through_anthropic(client: anthropic.AsyncAnthropic, harness: Harness) -> None:
    thinking = {"type": "enabled", "budget_tokens": 2048}
    message = await client.messages.create(
        model=ANTHROPIC.name(),
        max_tokens=4096,
        messages=HELLO,
        thinking=thinking,  # type: ignore[arg-type]
    )
    assert harness.upstream_bodies(ANTHROPIC)[-1]["thinking"] == thinking
    block = message.content[0]
    assert block.type == "thinking"
    assert (block.thinking, block.signature) == ("The user wants an echo.", sign("The user wants an echo."))
    assert message.content[1].type == "text"
    # the thinking block goes back as-is in the next turn
    follow = await client.messages.create(
        model=ANTHROPIC.name(),
        max_tokens=4096,
        thinking=thinking,  # type: ignore[arg-type]
        messages=[
            *HELLO,
            {"role": "assistant", "content": message.content},
            {"role": "user", "content": "again"},
        ],  # type: ignore[list-item]
    )
    assert follow.content[-1].text == "echo: again"  # type: ignore[union-attr]
    async with client.messages.stream(
        model=ANTHROPIC.name(),
        max_tokens=4096,
        messages=HELLO,
        thinking=thinking,  # type: ignore[arg-type]
    ) as stream:
        thoughts = "".join([e.thinking async for e in stream if e.type == "thinking"])
        streamed = await stream.get_final_message()
    assert thoughts == "The user wants an echo."
    assert streamed.content[0].model_dump() == block.model_dump()  # signed, as non-streamed


TOOL_THINKING = {"type": "enabled", "budget_tokens": 1024}


async def thinking_tool_call(
    client: anthropic.AsyncAnthropic, model: str, *, stream: bool
) -> anthropic.types.Message:
    """A first turn: the model thinks, then calls the weather tool."""
    kw: dict[str, Any] = {
        "model": model,
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "thinking": TOOL_THINKING,
    }
    if not stream:
        return await client.messages.create(**kw)
    async with client.messages.stream(**kw) as events:
        return await events.get_final_message()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_tool_loop_with_thinking_keeps_thinking_on(
    client: anthropic.AsyncAnthropic, harness: Harness, stream: bool
) -> None:
    """The official SDK's two-turn loop: the thinking blocks go back signed, thinking stays on."""
    first = await thinking_tool_call(client, ANTHROPIC.name("tool-redact"), stream=stream)
    assert [b.type for b in first.content] == ["redacted_thinking", "thinking", "tool_use"]
    redacted, thought, call = first.content
    assert redacted.data == REDACTED_DATA  # type: ignore[union-attr]
    assert thought.signature == sign(thought.thinking)  # type: ignore[union-attr]
    assert call.type == "tool_use"
    raw = await client.messages.with_raw_response.create(
        model=ANTHROPIC.name(),
        max_tokens=2048,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        thinking=TOOL_THINKING,  # type: ignore[arg-type]
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
            },
        ],
    )
    answer = await raw.parse()
    assert answer.content[-1].text == "echo: sunny"  # type: ignore[union-attr]
    assert "x-uniinfer-dropped-params" not in raw.headers
    sent = harness.upstream_bodies(ANTHROPIC)[-1]
    assert sent["thinking"] == TOOL_THINKING
    assert sent["messages"][1]["content"][:2] == [
        redacted.model_dump(),
        thought.model_dump(),
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_thinking_left_off_in_a_tool_loop_is_reported(harness: Harness, stream: bool) -> None:
    """History whose tool-calling turn has no signed thinking (it came from another provider):
    Anthropic would refuse thinking, so it is left off, and the dropped-params header says so."""
    history = [
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "from elsewhere", "signature": ""},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}]},
    ]
    payload = body(
        model=ANTHROPIC.name(),
        max_tokens=2048,
        thinking=TOOL_THINKING,
        tools=[WEATHER_TOOL],
        messages=history,
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            harness.url + "/v1/messages", json={**payload, "stream": stream}, headers={"x-api-key": MASTER}
        ) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["x-uniinfer-dropped-params"] == "thinking"  # named as the caller sent it
        await resp.read()
    sent = harness.upstream_bodies(ANTHROPIC)[-1]
    assert "thinking" not in sent
    assert sent["messages"][1]["content"][0]["type"] == "tool_use"


@pytest.mark.parametrize("upstream", UPSTREAMS, ids=lambda u: u.type)
async def test_a_failed_tool_result_keeps_its_flag(
    client: anthropic.AsyncAnthropic, harness: Harness, upstream: Upstream
) -> None:
    call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Atlantis"}}
    await client.messages.create(
        model=upstream.name(),
        max_tokens=256,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "weather in Atlantis?"},
            {"role": "assistant", "content": [call]},  # type: ignore[list-item]
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "no such city",
                        "is_error": True,
                    }
                ],
            },
        ],
    )
    sent = harness.upstream_bodies(upstream)[-1]
    if upstream is OPENAI:  # OpenAI has no such flag: the text says it
        assert sent["messages"][-1] == {
            "role": "tool",
            "tool_call_id": "toolu_1",
            "content": "Error: no such city",
        }
    else:
        assert sent["messages"][-1]["content"] == [
            {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True, "content": "no such city"}
        ]


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (
            {
                "role": "assistant",
                "content": "Hi.",
                "signed_thinking": [{"type": "thinking", "thinking": "t", "signature": "s"}],
            },
            "messages[1].signed_thinking",
        ),
        (
            {"role": "tool", "tool_call_id": "call_1", "content": "boom", "is_error": True},
            "messages[2].is_error",
        ),
        (
            {
                "role": "user",
                "content": [
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://x.test/a.png"},
                        "of_tool_result": "call_1",
                    }
                ],
            },
            "messages[1].content[0].of_tool_result",
        ),
    ],
)
async def test_an_openai_client_cannot_send_what_only_the_anthropic_ingress_sets(
    harness: Harness, message: dict[str, Any], field: str
) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    messages: list[dict[str, Any]] = [{"role": "user", "content": "hi"}]
    if message["role"] == "tool":
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    messages.append(message)
    error = await _refused_chat(harness, messages)
    assert error["message"] == f"Unrecognized request argument supplied: {field}"
    assert error["param"] == field


async def _refused_chat(harness: Harness, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The OpenAI error of a Chat Completions request the gateway must refuse with a 400."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            harness.url + "/v1/chat/completions",
            json={"model": ANTHROPIC.name(), "messages": messages},
            headers={"authorization": f"Bearer {MASTER}"},
        ) as resp,
    ):
        assert resp.status == 400
        error: dict[str, Any] = (await resp.json())["error"]
    return error


async def test_an_openai_client_cannot_send_a_block_order(harness: Harness) -> None:
    """:attr:`AssistantMessage.content_blocks` is the Anthropic ingress's: unknown to OpenAI clients."""
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    turn = {"role": "assistant", "content": "Hi.", "tool_calls": [call], "content_blocks": ["Hi.", call]}
    messages = [*HELLO, turn, {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]
    error = await _refused_chat(harness, messages)
    assert (error["message"], error["param"]) == (
        "Unrecognized request argument supplied: messages[1].content_blocks",
        "messages[1].content_blocks",
    )


@pytest.mark.parametrize("upstream", UPSTREAMS, ids=lambda u: u.type)
async def test_rate_limit_keeps_retry_after(client: anthropic.AsyncAnthropic, upstream: Upstream) -> None:
    with pytest.raises(anthropic.RateLimitError) as info:
        await client.messages.create(model=upstream.name("error-429"), max_tokens=256, messages=HELLO)  # type: ignore[arg-type]
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert info.value.response.headers["x-request-id"]
    assert info.value.request_id == info.value.response.headers["x-request-id"]
    assert info.value.response.headers["x-uniinfer-provider"] == upstream.provider
    # a streamed request fails before the stream starts: a plain 429 too (another deployment:
    # the router is cooling the first one down for the 7 s the provider asked)
    with pytest.raises(anthropic.RateLimitError):
        async with client.messages.stream(
            model=upstream.name("error-429-stream"), max_tokens=256, messages=HELLO
        ) as s:  # type: ignore[arg-type]
            await s.get_final_message()


async def test_bad_requests_name_the_field(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(
            model="chat",
            max_tokens=256,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/bmp", "data": PNG},
                        }
                    ],  # type: ignore[typeddict-item]
                }
            ],
        )
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert info.value.body["error"]["message"].startswith(  # type: ignore[index]
        "messages.0.content.0.image.source.base64.media_type: Input should be"
    )
    with pytest.raises(anthropic.BadRequestError, match="bogus: Extra inputs are not permitted"):
        await client.messages.create(model="chat", max_tokens=256, messages=HELLO, extra_body={"bogus": 1})  # type: ignore[arg-type]
    with pytest.raises(anthropic.NotFoundError) as missing:
        await client.messages.create(model="no-such-model", max_tokens=256, messages=HELLO)  # type: ignore[arg-type]
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


async def test_errors_before_routing_carry_anthropic_s_request_id(harness: Harness) -> None:
    wrong = anthropic.AsyncAnthropic(base_url=harness.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        await wrong.messages.create(model=ANTHROPIC.name(), max_tokens=8, messages=HELLO)  # type: ignore[arg-type]
    assert info.value.request_id == info.value.response.headers["x-request-id"]


async def test_auth_by_x_api_key(harness: Harness) -> None:
    async with anthropic.AsyncAnthropic(base_url=harness.url, api_key="sk-wrong", max_retries=0) as bad:
        with pytest.raises(anthropic.AuthenticationError) as info:
            await bad.messages.create(model="chat", max_tokens=256, messages=HELLO)  # type: ignore[arg-type]
    assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert "sk-wrong" not in str(info.value)
    async with anthropic.AsyncAnthropic(base_url=harness.url, auth_token=MASTER, max_retries=0) as bearer:
        message = await bearer.messages.create(model="chat", max_tokens=256, messages=HELLO)  # type: ignore[arg-type]
    assert message.content[0].text == "echo: hello there"  # type: ignore[union-attr]
    # both headers (a client given a provider key and the gateway's): either one holding the
    # key lets it in, in either place; neither does not
    body = {"model": "chat", "max_tokens": 256, "messages": HELLO}
    async with aiohttp.ClientSession() as session:
        for api_key, token, status in (
            ("sk-ant-the-providers", MASTER, 200),
            (MASTER, "sk-other", 200),
            ("sk-wrong", "sk-also-wrong", 401),
        ):
            headers = {"x-api-key": api_key, "Authorization": f"Bearer {token}"}
            async with session.post(f"{harness.url}/v1/messages", json=body, headers=headers) as resp:
                assert resp.status == status, await resp.text()


async def test_count_tokens_estimated_or_forwarded(
    client: anthropic.AsyncAnthropic, harness: Harness
) -> None:
    params: dict[str, Any] = {"messages": HELLO, "system": "Be brief.", "tools": [WEATHER_TOOL]}
    raw = await client.messages.with_raw_response.count_tokens(model="chat", **params)
    expected = estimate_input_tokens(parse_anthropic(CountTokensRequest, {"model": "chat", **params}))
    assert (await raw.parse()).input_tokens == expected
    assert raw.headers["x-uniinfer-token-count"] == "estimated"
    assert harness.counts == []

    raw = await client.messages.with_raw_response.count_tokens(model="claude-chat", **params)
    assert (await raw.parse()).input_tokens == COUNTED
    assert raw.headers["x-uniinfer-token-count"] == "provider"
    assert raw.headers["x-uniinfer-provider"] == "claude"
    [forwarded] = harness.counts
    assert forwarded == {"model": "claude-sonnet-4-5", **params}

    # the body counted is the client's own: what the gateway would refuse in a message to this
    # model (an effort level Sonnet 4.5 lacks) is the provider's to judge here
    effort: dict[str, Any] = {"messages": HELLO, "output_config": {"effort": "low"}}
    raw = await client.messages.with_raw_response.count_tokens(model="claude-chat", **effort)
    assert raw.headers["x-uniinfer-token-count"] == "provider"
    assert harness.counts[-1] == {"model": "claude-sonnet-4-5", **effort}

    # a body of megabytes is counted off the event loop, to the same count
    big: dict[str, Any] = {"messages": [{"role": "user", "content": "word " * 40_000}]}
    raw = await client.messages.with_raw_response.count_tokens(model="chat", **big)
    assert (await raw.parse()).input_tokens == estimate_input_tokens(
        parse_anthropic(CountTokensRequest, {"model": "chat", **big})
    )

    # the provider unavailable for now (overloaded, 5xx, 429): estimated, and said so
    raw = await client.messages.with_raw_response.count_tokens(model="claude-down", **params)
    assert (await raw.parse()).input_tokens == expected
    assert raw.headers["x-uniinfer-token-count"] == "estimated"

    with pytest.raises(anthropic.NotFoundError):
        await client.messages.count_tokens(model="no-such-model", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Extra inputs"):
        await client.messages.count_tokens(model="chat", messages=HELLO, extra_body={"max_tokens": 5})  # type: ignore[arg-type]


async def test_sync_client_in_a_thread(harness: Harness) -> None:
    def call() -> tuple[str, str, int]:
        with anthropic.Anthropic(base_url=harness.url, api_key=MASTER, max_retries=0) as sync:
            message = sync.messages.create(model="claude-chat", max_tokens=256, messages=HELLO)  # type: ignore[arg-type]
            with sync.messages.stream(model="chat", max_tokens=256, messages=HELLO) as stream:  # type: ignore[arg-type]
                streamed = "".join(stream.text_stream)
                usage = stream.get_final_message().usage
        return message.content[0].text, streamed, usage.output_tokens  # type: ignore[union-attr]

    text, streamed, output_tokens = await asyncio.to_thread(call)
    assert text == streamed == "echo: hello there"
    assert output_tokens == 3


async def test_mid_stream_failure_is_an_error_event(
    client: anthropic.AsyncAnthropic, harness: Harness
) -> None:
    with pytest.raises(anthropic.APIStatusError, match="closed before the response was complete"):
        async with client.messages.stream(model="up/cut-model", max_tokens=256, messages=HELLO) as stream:  # type: ignore[arg-type]
            await stream.get_final_message()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            harness.url + "/v1/messages?beta=true",
            json=body(model="up/cut-model", stream=True),
            headers={"x-api-key": MASTER, "anthropic-version": "2023-06-01"},
        ) as resp,
    ):
        assert resp.status == 200
        events = parse_sse(await resp.read())
    assert events[0][0] == "message_start"
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"
    assert "message_stop" not in [n for n, _ in events]


async def test_raw_sse_stream_has_the_real_sequence(harness: Harness) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            harness.url + "/v1/messages",
            json=body(model="up/tool-model", stream=True, tools=[WEATHER_TOOL]),
            headers={"x-api-key": MASTER},
        ) as resp,
    ):
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-uniinfer-provider"] == "up"
        events = parse_sse(await resp.read())
    names = [n for n, _ in events]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"]["input_tokens"] > 0


def _gemini_target() -> Target:
    registry = default_registry()
    adapter = registry.create(registry.get("gemini"), Endpoint(base_url="http://127.0.0.1:9", api_key="k"))
    return Target("gemini", "gemini-2.5-flash", adapter)


def test_a_messages_user_id_is_left_out_where_there_is_no_end_user_field() -> None:
    """Only the Messages client's ``metadata.user_id`` goes without a setting; every other param
    a provider cannot honour is still refused, or dropped and named when configured."""
    target = _gemini_target()
    claude_code = to_chat_request(parse_anthropic(MessagesRequest, body(metadata={"user_id": "u-1"})))
    fitted, dropped = RequestFitter(drop=False).chat(claude_code, target)
    assert fitted.user is None
    assert dropped == ("metadata.user_id",)
    assert claude_code.user == "u-1"  # the caller's request is left as it was

    with_logit_bias = claude_code.model_copy(update={"logit_bias": {"50256": -100}})
    with pytest.raises(UnsupportedParamError) as refused:
        RequestFitter(drop=False).chat(with_logit_bias, target)
    assert refused.value.param == "logit_bias"
    assert "user" not in refused.value.message
    fitted, dropped = RequestFitter(drop=True).chat(with_logit_bias, target)
    assert (fitted.user, fitted.logit_bias) == (None, None)
    assert dropped == ("logit_bias", "metadata.user_id")

    openai_client = ChatRequest.model_validate({"model": "m", "messages": HELLO, "user": "u-1"})
    with pytest.raises(UnsupportedParamError) as openai_refused:  # its own `user`: the usual rule
        RequestFitter(drop=False).chat(openai_client, target)
    assert openai_refused.value.param == "user"


_CLAUDE_TOOL = {
    "name": "get_weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    "eager_input_streaming": True,
    "input_examples": [{"city": "Paris"}],
}


async def test_the_claude_apis_own_fields_reach_it_as_sent(
    client: anthropic.AsyncAnthropic, harness: Harness
) -> None:
    raw = await client.messages.with_raw_response.create(
        model=ANTHROPIC.name(),
        max_tokens=256,
        messages=HELLO,  # type: ignore[arg-type]
        tools=[_CLAUDE_TOOL],  # type: ignore[list-item]
        inference_geo="us",
        speed="fast",
        service_tier="standard_only",
    )
    await raw.parse()
    sent = harness.upstream_bodies(ANTHROPIC)[-1]
    assert (sent["inference_geo"], sent["speed"], sent["service_tier"]) == ("us", "fast", "standard_only")
    assert sent["tools"][0]["eager_input_streaming"] is True
    assert sent["tools"][0]["input_examples"] == [{"city": "Paris"}]
    assert "x-uniinfer-dropped-params" not in raw.headers


async def test_the_claude_apis_own_fields_elsewhere_are_left_out_named_or_refused(
    client: anthropic.AsyncAnthropic, harness: Harness
) -> None:
    # how the model answers (fast mode, capacity tier, streaming granularity): left out, named
    tool = {k: v for k, v in _CLAUDE_TOOL.items() if k != "input_examples"}
    raw = await client.messages.with_raw_response.create(
        model=OPENAI.name(),
        max_tokens=256,
        messages=HELLO,  # type: ignore[arg-type]
        tools=[tool],  # type: ignore[list-item]
        speed="fast",
        service_tier="auto",
    )
    await raw.parse()
    assert raw.headers["x-uniinfer-dropped-params"] == "speed,service_tier,tools.0.eager_input_streaming"
    sent = harness.upstream_bodies(OPENAI)[-1]
    assert not {"speed", "service_tier"} & sent.keys()
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    # the default speed is no drop
    raw = await client.messages.with_raw_response.create(
        model=OPENAI.name(), max_tokens=256, messages=HELLO, speed="standard"
    )  # type: ignore[arg-type]
    await raw.parse()
    assert "x-uniinfer-dropped-params" not in raw.headers
    # where the model runs, and example inputs (what it answers): refused, naming the field
    for extra, param in [
        ({"inference_geo": "eu"}, "inference_geo"),
        ({"tools": [_CLAUDE_TOOL]}, "tools.0.input_examples"),
    ]:
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.create(model=OPENAI.name(), max_tokens=256, messages=HELLO, **extra)  # type: ignore[arg-type]
        error = refused.value.body["error"]  # type: ignore[index]
        assert error["type"] == "invalid_request_error"
        assert f"provider 'up' does not support the parameter(s) {param} " in error["message"]


def test_the_claude_fields_are_dropped_visibly_when_configured_and_never_sent_elsewhere() -> None:
    request = to_chat_request(
        parse_anthropic(MessagesRequest, body(inference_geo="eu", speed="fast", tools=[_CLAUDE_TOOL]))
    )
    target = _gemini_target()
    fitted, dropped = RequestFitter(drop=True).chat(request, target)
    assert dropped == ("inference_geo", "tools.0.input_examples", "speed", "tools.0.eager_input_streaming")
    sent = orjson.loads(target.adapter.chat_request(fitted, target.model, stream=False).body)
    assert not {"inference_geo", "speed", "input_examples", "eager_input_streaming"} & set(
        str(sent).split("'")
    )


async def test_an_account_out_of_credit_is_a_billing_error_no_client_retries(harness: Harness) -> None:
    """An upstream out of credit (a 402, OpenAI's insufficient_quota) was a 429 rate_limit_error,
    which Claude Code retries for minutes, and then "rate limited upstream" while it cooled down:
    it is Anthropic's 402 billing_error, with x-should-retry: false, both times."""
    async with anthropic.AsyncAnthropic(base_url=harness.url, api_key=MASTER, max_retries=0) as client:
        for _ in range(2):
            with pytest.raises(anthropic.APIStatusError) as info:
                await client.messages.create(model="up/error-402", max_tokens=10, messages=HELLO)  # type: ignore[arg-type]
            assert info.value.status_code == 402
            assert info.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
            assert info.value.response.headers["x-should-retry"] == "false"
    assert len([r for r in harness.openai_app["requests"] if r["body"].get("model") == "error-402"]) == 1


@pytest.mark.parametrize("upstream", UPSTREAMS, ids=lambda u: u.type)
async def test_a_pdf_a_tool_read_reaches_the_model(
    client: anthropic.AsyncAnthropic, harness: Harness, upstream: Upstream
) -> None:
    """Claude Code's Read tool on a PDF answers with a document block in the tool_result: a 400
    on every route, and the session broken (every later turn carries it). It follows the tool
    result as a file part (OpenAI) or a document block (Claude)."""
    pdf = base64.b64encode(b"%PDF-1.4 tiny").decode()
    messages: Any = [
        {"role": "user", "content": "read the spec"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [
                        {"type": "text", "text": "spec.pdf:"},
                        {
                            "type": "document",
                            "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
                        },
                    ],
                }
            ],
        },
    ]
    tools: Any = [{"name": "read", "input_schema": {"type": "object"}}]
    await client.messages.create(model=upstream.name(), max_tokens=64, messages=messages, tools=tools)
    sent = harness.upstream_bodies(upstream)[-1]
    if upstream is OPENAI:
        tool, after = sent["messages"][-2:]
        assert (tool["role"], tool["content"]) == ("tool", "spec.pdf:")
        assert after["content"][0]["type"] == "file"
        assert after["content"][0]["file"]["file_data"].endswith(pdf)
    else:
        turn = sent["messages"][-1]["content"]
        assert turn[0]["type"] == "tool_result"
        assert any(block["type"] == "document" and block["source"]["data"] == pdf for block in turn)
