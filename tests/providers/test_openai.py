"""OpenAIAdapter (and every OpenAI-compatible registry row), its stream decoder, the
pooled HttpClient and the stream framers: pure unit tests plus end-to-end tests over
a real socket against the fake OpenAI server (tests/fakes/openai.py)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import email.utils
import re
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiohttp import web
from hypothesis import example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from tests.fakes.common import run_fake
from tests.fakes.openai import TOOL_ARGUMENTS, embedding_vector, openai_app, prompt_tokens
from tests.providers.support import modelled
from uniinfer.errors import (
    AuthenticationError,
    ContextLengthExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderOverloadedError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
    UniInferError,
    UnsupportedFeatureError,
)
from uniinfer.framing import NDJSONFramer, SSEBytesFramer, SSEFramer
from uniinfer.http import HttpClient, HttpRequest, Timeouts, retry_after_seconds
from uniinfer.providers.base import Endpoint, PartialStreamError, ProviderSpec
from uniinfer.providers.openai import OpenAIAdapter, url_placeholders
from uniinfer.providers.openai_shape import is_plain_chunk
from uniinfer.providers.registry import default_registry
from uniinfer.types import ChatChunk, ChatRequest, EmbeddingRequest, RawEvents, Usage

KEY = "sk-test-0123456789abcdef"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


def make_adapter(
    name: str = "openai",
    base_url: str = "https://api.openai.com/v1",
    *,
    api_key: str | None = KEY,
    headers: dict[str, str] | None = None,
    options: dict[str, object] | None = None,
) -> OpenAIAdapter:
    registry = default_registry()
    endpoint = Endpoint(base_url, api_key=api_key, headers=headers or {}, options=options or {})
    adapter = registry.create(registry.get(name), endpoint)
    assert isinstance(adapter, OpenAIAdapter)
    return adapter


def chat(**fields: Any) -> ChatRequest:
    fields.setdefault("model", "my-alias")
    fields.setdefault("messages", [{"role": "user", "content": "hello there"}])
    return ChatRequest.model_validate(fields)


def sent(req: HttpRequest) -> dict[str, Any]:
    body = orjson.loads(req.body)
    assert isinstance(body, dict)
    return body


def sse(*events: Any) -> bytes:
    return b"".join(
        b"data: " + (e.encode() if isinstance(e, str) else orjson.dumps(e)) + b"\n\n" for e in events
    )


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = (
        [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_1",
        "choices": choices,
        **extra,
    }


USAGE = {
    "prompt_tokens": 9,
    "completion_tokens": 2,
    "total_tokens": 11,
    "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}


def feed_bytewise(decoder: Any, data: bytes) -> list[ChatChunk]:
    return modelled(item for i in range(len(data)) for item in decoder.feed(data[i : i + 1]))


# --- request building -------------------------------------------------------------------


def test_chat_request_substitutes_model_and_omits_unset_fields() -> None:
    adapter = make_adapter()
    req = adapter.chat_request(chat(temperature=0.5, seed=7), "gpt-4o-mini", stream=False)
    assert req.method == "POST"
    assert req.url == "https://api.openai.com/v1/chat/completions"
    assert sent(req) == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello there"}],
        "temperature": 0.5,
        "seed": 7,
    }


def test_chat_request_keeps_wire_names_and_nested_messages() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    req = make_adapter().chat_request(
        chat(
            messages=messages,
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            response_format={"type": "json_schema", "json_schema": {"name": "out", "schema": schema}},
        ),
        "gpt-4o",
        stream=False,
    )
    body = sent(req)
    expected_messages = [dict(m) for m in messages]
    del expected_messages[2]["content"]  # None is omitted, like every unset field
    assert body["messages"] == expected_messages
    assert body["tools"] == [WEATHER_TOOL]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    # The alias, not the Python attribute name, goes on the wire.
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": schema},
    }


def test_stream_request_always_asks_for_usage() -> None:
    adapter = make_adapter()
    body = sent(adapter.chat_request(chat(), "gpt-4o-mini", stream=True))
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}

    caller_options = chat(stream=True, stream_options={"include_usage": False, "include_obfuscation": False})
    body = sent(adapter.chat_request(caller_options, "gpt-4o-mini", stream=True))
    assert body["stream_options"] == {"include_usage": True, "include_obfuscation": False}


def test_non_stream_request_drops_stream_fields() -> None:
    req = make_adapter().chat_request(
        chat(stream=True, stream_options={"include_usage": True}), "gpt-4o-mini", stream=False
    )
    body = sent(req)
    assert "stream" not in body
    assert "stream_options" not in body


def test_auth_and_endpoint_headers() -> None:
    req = make_adapter(headers={"OpenAI-Organization": "org-1"}).chat_request(chat(), "m", stream=False)
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["OpenAI-Organization"] == "org-1"

    keyless = make_adapter("vllm", "http://127.0.0.1:8000/v1", api_key=None).chat_request(
        chat(), "m", stream=False
    )
    assert {k.lower() for k in keyless.headers} == {"content-type"}


def test_endpoint_header_overrides_generated_header_case_insensitively() -> None:
    req = make_adapter(headers={"Authorization": "Bearer proxy-token"}).chat_request(
        chat(), "m", stream=False
    )
    auth = [v for k, v in req.headers.items() if k.lower() == "authorization"]
    assert auth == ["Bearer proxy-token"]


# --- every OpenAI-compatible registry row ----------------------------------------------------


def _openai_rows() -> list[ProviderSpec]:
    registry = default_registry()
    return [s for s in registry.specs.values() if s.adapter == "uniinfer.providers.openai:OpenAIAdapter"]


OPENAI_ROWS = _openai_rows()


def test_registry_has_the_openai_compatible_rows() -> None:
    names = {s.name for s in OPENAI_ROWS}
    assert {
        "openai",
        "groq",
        "xai",
        "deepseek",
        "together",
        "openrouter",
        "vllm",
        "openai_compatible",
    } <= names


#: Key variables named by the provider's own documentation rather than <NAME>_API_KEY.
DOCUMENTED_KEY_VARS = {"huggingface": "HF_TOKEN"}


@pytest.mark.parametrize("spec", OPENAI_ROWS, ids=lambda s: s.name)
def test_openai_compatible_row_builds_requests_to_its_own_base_url(spec: ProviderSpec) -> None:
    options: dict[str, object] = {name: f"my-{name}" for name in url_placeholders(spec.base_url)}
    adapter = make_adapter(spec.name, spec.base_url, api_key="k-123", options=options)
    base = spec.base_url.format_map(options).rstrip("/")
    assert "{" not in base
    req = adapter.chat_request(chat(), "some-model", stream=False)
    assert req.url == base + "/chat/completions"
    assert req.headers["authorization"] == "Bearer k-123"
    assert sent(req)["model"] == "some-model"

    local = re.match(r"https?://(127\.0\.0\.1|localhost)[:/]", spec.base_url)
    assert local or spec.base_url.startswith("https://")
    if spec.api_key_env is None:
        assert not spec.key_required
    elif spec.name in DOCUMENTED_KEY_VARS:
        assert spec.api_key_env == DOCUMENTED_KEY_VARS[spec.name]
    else:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*_API_KEY", spec.api_key_env)
        assert spec.api_key_env.startswith(spec.name.upper().replace("-", "_") + "_")
    if spec.key_required:
        assert spec.api_key_env is not None
    # A row may only reject params the protocol has (a typo here would never trigger).
    assert spec.unsupported_params <= OpenAIAdapter.supported_params
    assert adapter.unsupported() == spec.unsupported_params

    embed = EmbeddingRequest(model="e", input="hi")
    if spec.capabilities.embeddings:
        assert adapter.embed_request(embed, "e").url == base + "/embeddings"
    else:
        with pytest.raises(UnsupportedFeatureError):
            adapter.embed_request(embed, "e")


# --- parse_chat ---------------------------------------------------------------------------------


def test_parse_chat_reads_the_real_response_shape() -> None:
    body = {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4.1-2025-04-14",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi!", "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 19,
            "completion_tokens": 10,
            "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_fc9f1d7035",
        "some_new_field": {"ignored": True},
    }
    resp = make_adapter().parse_chat(orjson.dumps(body), "gpt-4.1")
    assert resp.id == "chatcmpl-123"
    assert resp.model == "gpt-4.1-2025-04-14"
    assert resp.choices[0].message.content == "Hi!"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (19, 10, 29)
    assert resp.usage.cached_tokens == 8
    assert resp.usage.reasoning_tokens == 3


def test_parse_chat_reads_tool_calls() -> None:
    body = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
    }
    resp = make_adapter().parse_chat(orjson.dumps(body), "m")
    calls = resp.choices[0].message.tool_calls
    assert calls is not None
    assert (calls[0].id, calls[0].function.name, calls[0].function.arguments) == ("call_9", "f", "{}")
    assert resp.choices[0].finish_reason == "tool_calls"


def test_parse_chat_rejects_invalid_json_and_wrong_shapes() -> None:
    adapter = make_adapter()
    with pytest.raises(ProviderResponseError) as info:
        adapter.parse_chat(b"<html>oops</html>", "m")
    assert info.value.upstream_body == "<html>oops</html>"
    assert not info.value.retryable
    with pytest.raises(ProviderResponseError, match="unexpected chat response shape"):
        adapter.parse_chat(b'{"id": "x", "model": "m"}', "m")


ANSWER = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    "x_provider_extra": {"kept": True},
}


def test_chat_json_forwards_an_answer_that_checks_out_as_it_came() -> None:
    body = orjson.dumps(ANSWER)
    forwarded = make_adapter().chat_json(body, "m")
    assert forwarded is not None
    sent, usage = forwarded
    assert sent is body  # not re-serialised: the provider's own fields survive
    assert usage is not None
    assert (usage.prompt_tokens, usage.total_tokens) == (3, 4)
    assert make_adapter().chat_json(orjson.dumps({**ANSWER, "usage": None}), "m") == (
        orjson.dumps({**ANSWER, "usage": None}),
        None,
    )


@pytest.mark.parametrize(
    "change",
    [
        {"choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": "eos"}]},  # not OpenAI's
        {"choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": ["stop"]}]},
        {"choices": [{"index": 0, "finish_reason": "content_filter"}]},  # no message (Azure filter)
        {"choices": "x"},
        {"id": None},
        {"usage": {"prompt_tokens": "many"}},
    ],
)
def test_chat_json_leaves_anything_else_to_parse_chat(change: dict[str, Any]) -> None:
    assert make_adapter().chat_json(orjson.dumps({**ANSWER, **change}), "m") is None
    assert make_adapter().chat_json(b"<html>", "m") is None
    assert make_adapter().chat_json(b"[1]", "m") is None


def test_chat_json_never_forwards_invalid_utf8() -> None:
    adapter = make_adapter()
    body = orjson.dumps(ANSWER).replace(b'"Hi"', b'"H\xffi"')
    assert adapter.chat_json(body, "m") is None
    with pytest.raises(ProviderResponseError, match="invalid JSON"):
        adapter.parse_chat(body, "m")
    accented = orjson.dumps(ANSWER).replace(b'"Hi"', '"Hé 👋"'.encode())
    assert adapter.chat_json(accented, "m") == (
        accented,
        Usage(prompt_tokens=3, completion_tokens=1, total_tokens=4),
    )


def test_rows_that_rewrite_answers_are_not_forwarded() -> None:
    spec = default_registry().get("openai")
    mapped = OpenAIAdapter(
        dataclasses.replace(spec, finish_reason_map={"eos": "stop"}), Endpoint(base_url="http://x/v1")
    )
    assert mapped.chat_json(orjson.dumps(ANSWER), "m") is None


# --- stream decoding ------------------------------------------------------------------------------

CONTENT_CHUNKS = [
    chunk({"role": "assistant", "content": "", "refusal": None}),
    chunk({"content": "Hé"}),
    chunk({"content": "llo 👋"}),
]


@pytest.mark.parametrize(
    "events",
    [
        # OpenAI: usage: null on every chunk, then a chunk with empty choices carrying usage.
        [
            *[{**c, "usage": None} for c in CONTENT_CHUNKS],
            chunk({}, "stop", usage=None),
            chunk(None, usage=USAGE),
            "[DONE]",
        ],
        # Others (e.g. Groq, vLLM variants): usage on the last content chunk.
        [*CONTENT_CHUNKS, chunk({}, "stop", usage=USAGE), "[DONE]"],
    ],
    ids=["separate-usage-chunk", "usage-on-content-chunk"],
)
def test_stream_decoder_normalises_usage_into_a_final_chunk(events: list[Any]) -> None:
    decoder = make_adapter().stream_decoder("gpt-4o-mini")
    chunks = feed_bytewise(decoder, sse(*events))
    chunks += modelled(decoder.close())

    *content, last = chunks
    assert "".join(c.choices[0].delta.content or "" for c in content) == "Héllo 👋"
    assert [c.choices[0].finish_reason for c in content][-1] == "stop"
    assert all(c.usage is None for c in content)
    assert last.choices == []
    assert last.id == "chatcmpl-abc"
    assert last.usage is not None
    assert last.usage.model_dump(exclude_none=True) == {
        "prompt_tokens": 9,
        "completion_tokens": 2,
        "total_tokens": 11,
        "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_a_chunk_the_decoder_remodels_keeps_every_field_the_provider_sent() -> None:
    # usage on a content chunk is split off (the usage chunk comes last): both halves keep what
    # uniinfer does not model, a legacy function_call delta, audio, obfuscation, token details
    usage = {**USAGE, "prompt_tokens_details": {"cached_tokens": 4, "text_tokens": 5, "image_tokens": 0}}
    delta = {"function_call": {"name": "get", "arguments": "{}"}, "audio": {"id": "audio_1"}}
    last = {**chunk(delta, "function_call", usage=usage), "obfuscation": "xyz", "service_tier": "default"}
    decoder = make_adapter().stream_decoder("gpt-4o-mini")
    items = [*decoder.feed(sse(chunk({"role": "assistant"}), last, "[DONE]")), *decoder.close()]
    content, usage_chunk = modelled(items)[-2:]
    sent = content.model_dump(exclude_none=True)
    assert sent["choices"][0]["delta"] == delta
    assert (sent["obfuscation"], sent["service_tier"]) == ("xyz", "default")
    details = usage_chunk.model_dump(exclude_none=True)["usage"]["prompt_tokens_details"]
    assert details == {"cached_tokens": 4, "text_tokens": 5, "image_tokens": 0}


def test_stream_decoder_without_usage_emits_no_usage_chunk() -> None:
    decoder = make_adapter().stream_decoder("m")
    chunks = modelled(decoder.feed(sse(*CONTENT_CHUNKS, chunk({}, "stop"), "[DONE]")))
    assert decoder.close() == []
    assert len(chunks) == 4
    assert all(c.choices for c in chunks)


def test_stream_decoder_skips_comments_and_handles_crlf() -> None:
    # OpenRouter sends ": OPENROUTER PROCESSING" keep-alive comments; some servers use CRLF.
    data = b": OPENROUTER PROCESSING\r\n\r\n" + sse(CONTENT_CHUNKS[1], "[DONE]").replace(b"\n", b"\r\n")
    decoder = make_adapter("openrouter", "https://openrouter.ai/api/v1").stream_decoder("m")
    chunks = feed_bytewise(decoder, data) + modelled(decoder.close())
    assert [c.choices[0].delta.content for c in chunks] == ["Hé"]


def test_stream_without_done_is_a_connection_error() -> None:
    decoder = make_adapter().stream_decoder("m")
    assert len(modelled(decoder.feed(sse(*CONTENT_CHUNKS)))) == 3
    with pytest.raises(ProviderConnectionError, match=r"\[DONE\]"):
        decoder.close()


def test_stream_cut_mid_event_is_a_connection_error() -> None:
    decoder = make_adapter().stream_decoder("m")
    data = sse(*CONTENT_CHUNKS)
    decoder.feed(data + b'data: {"id":"chatcmpl-abc","cho')
    with pytest.raises(ProviderConnectionError):
        decoder.close()


def test_stream_chunk_with_null_error_is_content() -> None:
    # Some OpenAI-compatible servers put "error": null on every chunk; null is no error.
    decoder = make_adapter().stream_decoder("m")
    events = [{**c, "error": None} for c in CONTENT_CHUNKS]
    chunks = modelled(decoder.feed(sse(*events, "[DONE]")))
    assert decoder.close() == []
    assert [c.choices[0].delta.content for c in chunks] == [
        c["choices"][0]["delta"].get("content") for c in CONTENT_CHUNKS
    ]


def test_mid_stream_error_raises_mapped_error() -> None:
    decoder = make_adapter().stream_decoder("m")
    error = {
        "error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    assert len(decoder.feed(sse(CONTENT_CHUNKS[0]))) == 1
    with pytest.raises(ProviderError) as info:
        feed_bytewise(decoder, sse(error, "[DONE]"))
    exc = info.value
    assert "The server had an error" in exc.message
    assert exc.provider == "openai"
    assert exc.retryable
    assert exc.upstream_body is not None
    assert "server_error" in exc.upstream_body


def test_plain_events_and_the_usage_chunk_pass_through_as_the_providers_json() -> None:
    decoder = make_adapter().stream_decoder("m")
    extra = chunk({"content": "Hi"}, x_groq={"id": "req_1"})  # a provider's own field survives
    events = [*CONTENT_CHUNKS, extra, chunk({}, "stop"), chunk(None, usage=USAGE), "[DONE]"]
    items = [*decoder.feed(sse(*events)), *decoder.close()]

    assert all(isinstance(item, RawEvents) for item in items)
    # exactly what the provider sent
    assert [orjson.loads(json) for item in items for json in item.payloads()] == events[:6]
    *content, usage_chunk = items
    assert all(item.usage is None for item in content)
    assert usage_chunk.usage is not None  # validated, for the gateway's accounting
    assert usage_chunk.usage.total_tokens == 11
    assert usage_chunk.usage.prompt_tokens_details is not None
    assert usage_chunk.usage.prompt_tokens_details.cached_tokens == 4
    assert ChatChunk.model_validate_json(usage_chunk.payloads()[0]).usage == usage_chunk.usage


def test_a_usage_chunk_is_held_to_the_end_and_a_later_usage_wins() -> None:
    decoder = make_adapter().stream_decoder("m")
    early = chunk(None, usage=USAGE)
    later = chunk({"content": "x"}, usage={**USAGE, "completion_tokens": 9, "total_tokens": 19})
    items = [
        *decoder.feed(sse(early, CONTENT_CHUNKS[0])),
        *decoder.feed(sse(later, "[DONE]")),
        *decoder.close(),
    ]
    assert [item.usage is not None for item in items] == [False, False, True]
    final = items[-1]
    assert isinstance(final, ChatChunk)  # the later usage rode on a content chunk: modelled
    assert final.choices == []
    assert final.usage is not None
    assert final.usage.completion_tokens == 9


@pytest.mark.parametrize(
    "usage_event",
    [
        chunk(None, usage={"prompt_tokens": "many"}),  # not a usage: the slow path says so
        chunk(None, usage=None),
        {**chunk(None, usage=USAGE), "choices": [{"index": 0, "delta": {}}]},  # rides on a choice
    ],
)
def test_other_usage_events_are_modelled(usage_event: dict[str, Any]) -> None:
    decoder = make_adapter().stream_decoder("m")
    assert decoder._usage_chunk(orjson.dumps(usage_event)) is None


@pytest.mark.parametrize(
    ("event", "has_usage"),
    [
        (b'{"choices":[]}', False),
        (b'{"usage":null}', False),
        (b'{"usage": null}', False),
        (b'{"c":"a \\"usage\\": 1 inside a string"}', False),
        (b'{"usage":{"prompt_tokens":1}}', True),
        (b'{"usage" :\n null,"choices":[{"usage":{"total_tokens":3}}]}', True),  # Moonshot's place
    ],
)
def test_usage_is_spotted_without_parsing(event: bytes, has_usage: bool) -> None:
    from uniinfer.providers.openai_stream import _has_usage

    assert _has_usage(event) is has_usage


PLAIN = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}


@pytest.mark.parametrize(
    ("change", "passed_on"),
    [
        ({}, True),
        ({"usage": None, "error": None, "x_extra": [1, {"a": None}]}, True),
        ({"choices": []}, True),
        ({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}, True),
        ({"choices": [{"delta": {"content": "héllo 👋"}}]}, True),
        ({"choices": [{"delta": {}, "finish_reason": "eos"}]}, False),  # not OpenAI's vocabulary
        ({"choices": [{"delta": None}]}, False),
        ({"choices": [{"message": {}}]}, False),
        ({"choices": [{"delta": {}, "usage": {"total_tokens": 3}}]}, False),  # Moonshot's usage
        ({"choices": {"delta": {}}}, False),
        ({"id": 7}, False),
        ({"model": None}, False),
        ({"usage": {"total_tokens": 3}}, False),
        ({"error": {"message": "overloaded"}}, False),
    ],
)
def test_which_events_pass_through_unmodelled(change: dict[str, Any], passed_on: bool) -> None:
    assert is_plain_chunk(orjson.dumps({**PLAIN, **change})) is passed_on


@pytest.mark.parametrize(
    "data", [b'{"id":"c","model":"m","choices":[{"delta":{"content":"a\xffb"}}]}', b"[1]", b'{"id":"c"', b""]
)
def test_malformed_events_never_pass_through(data: bytes) -> None:
    assert is_plain_chunk(data) is False


#: Events a read may hold, for the one-pass check of whole reads against the general path.
_READ_EVENTS = [
    *(sse(event) for event in CONTENT_CHUNKS),
    sse(chunk({"content": 'data: [DONE]\\n\\n "usage": {} \u2028'})),  # the markers, inside a string
    sse(chunk({}, "stop")),
    sse(chunk(None, usage=USAGE)),
    sse(chunk(None, usage=None)),
    sse(chunk({"content": "x"}, usage=USAGE)),  # usage riding on a content chunk
    sse(chunk(None, usage={"prompt_tokens": "many"})),
    sse(chunk({}, "eos")),
    sse({"error": {"message": "overloaded", "type": "server_error"}}),
    sse("[DONE]"),
    b'data: {"id":"c","model":"m","choices":[{"delta":{"content":"a\xffb"}}]}\n\n',
    b": keep-alive\n\n",
    b"event: message\n" + sse(CONTENT_CHUNKS[1]),
    b"data:" + sse(CONTENT_CHUNKS[1])[5:].lstrip(),
    sse(CONTENT_CHUNKS[1]).replace(b"\n", b"\r\n"),
    sse(CONTENT_CHUNKS[1])[:-2] + b"\r\n\n",  # a CR the JSON would take for whitespace
    b"data: " + orjson.dumps(CONTENT_CHUNKS[1]) + b"\ndata: \n\n",  # one event on two lines
    b"\n\n",  # a blank line between events
    # events that are no one JSON object, though joined they would make an array of them
    b'data: {"id":"c","model":"m","choices":[]},{"id":"c","model":"m","choices":[]}\n\n',
    b'data: {"id":"c","model":"m"\n\n',
    b'data: "choices":[]}\n\n',
    # a duplicate key: the first usage is not null
    b'data: {"id":"c","model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,'
    b'"total_tokens":2},"usage":null}\n\n',
]
_USAGE_READ = [sse(chunk(None, usage=USAGE)), sse("[DONE]")]


def _outcome(decoder: Any, reads: list[bytes], *, general: bool) -> list[Any]:
    out: list[Any] = []
    try:
        for data in reads:
            out.append(decoder._decode(decoder._framer.feed(data)) if general else decoder.feed(data))
        out.append(decoder.close())
    except PartialStreamError as exc:  # events, then the failure they came with
        out += [exc.items, (type(exc.error), exc.error.message)]
    except (ProviderError, ProviderResponseError) as exc:
        out.append((type(exc), exc.message))
    return [
        [(i.sse, i.usage) if isinstance(i, RawEvents) else i.model_dump() for i in step]
        if isinstance(step, list)
        else step
        for step in out
    ]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_READ_EVENTS), min_size=1, max_size=6), min_size=1, max_size=3))
@example([_USAGE_READ[:1]])
@example([_USAGE_READ])
@example([[_READ_EVENTS[0], b"\n\n", _READ_EVENTS[1]]])
@example([[_READ_EVENTS[-4], _USAGE_READ[1]]])  # two objects in one event
@example([[_READ_EVENTS[-3], _READ_EVENTS[-2], _USAGE_READ[1]]])  # one object over two events
@example([[_READ_EVENTS[0], _READ_EVENTS[-1], _USAGE_READ[1]]])  # usage given twice
def test_a_whole_read_checked_in_one_pass_gives_what_the_general_path_gives(reads: list[list[bytes]]) -> None:
    data = [b"".join(read) for read in reads]
    fast, general = make_adapter().stream_decoder("m"), make_adapter().stream_decoder("m")
    assert _outcome(fast, data, general=False) == _outcome(general, data, general=True)


class _Unframed:
    idle = True

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        raise AssertionError("framed")


def test_an_instant_stream_in_one_read_is_checked_in_one_pass_and_passed_on_as_it_came() -> None:
    decoder = make_adapter().stream_decoder("m")
    body = sse(*CONTENT_CHUNKS, chunk({}, "stop"), chunk(None, usage=USAGE), "[DONE]")
    framer = decoder._framer
    decoder._framer = _Unframed()  # the one-pass path needs no framing
    (run,) = decoder.feed(body)
    assert isinstance(run, RawEvents)
    assert run.sse == sse(*CONTENT_CHUNKS, chunk({}, "stop"))  # the bytes as they came
    decoder._framer = framer
    (usage_chunk,) = decoder.close()
    assert usage_chunk.sse == sse(chunk(None, usage=USAGE))
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.prompt_tokens_details.cached_tokens == 4


def test_the_usage_chunk_takes_id_and_model_from_the_last_event_passed_on() -> None:
    decoder = make_adapter().stream_decoder("m")
    last = chunk({}, "stop") | {"id": "chatcmpl-last", "created": 7, "system_fingerprint": "fp_9"}
    with_usage = chunk({"content": "x"}, usage=USAGE)  # usage riding on a content chunk: modelled
    items = [*decoder.feed(sse(with_usage, last, "[DONE]")), *decoder.close()]
    assert isinstance(items[1], RawEvents)
    usage_chunk = items[-1]
    assert isinstance(usage_chunk, ChatChunk)
    assert usage_chunk.choices == []
    assert (usage_chunk.id, usage_chunk.created, usage_chunk.system_fingerprint) == (
        "chatcmpl-last",
        7,
        "fp_9",
    )


def test_an_event_that_is_not_a_plain_chunk_is_modelled_not_passed_through() -> None:
    decoder = make_adapter().stream_decoder("m")
    on_content = chunk({"content": "x"}, "stop", usage=USAGE)  # usage riding on a content chunk
    (item,) = decoder.feed(sse(on_content))
    assert isinstance(item, ChatChunk)
    assert item.usage is None
    with pytest.raises(ProviderResponseError, match="unexpected stream chunk shape"):
        decoder.feed(sse({"id": "x", "model": "m", "choices": "nope"}))


def test_stream_decoder_rejects_garbage_chunks() -> None:
    decoder = make_adapter().stream_decoder("m")
    with pytest.raises(ProviderResponseError):
        decoder.feed(b"data: {not json}\n\n")
    decoder = make_adapter().stream_decoder("m")
    with pytest.raises(ProviderResponseError, match="unexpected stream chunk shape"):
        decoder.feed(sse({"id": "x"}))


def test_stream_decoder_survives_invalid_utf8() -> None:
    decoder = make_adapter().stream_decoder("m")
    raw = sse(chunk({"content": "PLACEHOLDER"})).replace(b"PLACEHOLDER", b"a\xffb")
    chunks = modelled(decoder.feed(raw))
    assert chunks[0].choices[0].delta.content == "a\ufffdb"


# --- errors -----------------------------------------------------------------------------------------


def test_401_is_authentication_error_without_the_key() -> None:
    adapter = make_adapter()
    body = orjson.dumps(
        {
            "error": {
                "message": f"Incorrect API key provided: {KEY}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
    )
    exc = adapter.parse_error(401, CIMultiDict(), body)
    assert isinstance(exc, AuthenticationError)
    assert exc.upstream_status == 401
    assert exc.provider == "openai"
    assert "Incorrect API key provided" in exc.message
    assert KEY not in exc.message
    assert exc.upstream_body is not None
    assert KEY not in exc.upstream_body
    assert KEY not in str(exc.to_openai())


def test_429_is_rate_limit_error_with_retry_after() -> None:
    body = orjson.dumps(
        {
            "error": {
                "message": "Rate limit reached for gpt-4o-mini on requests per min (RPM).",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
    )
    headers = CIMultiDict({"Retry-After": "7", "x-ratelimit-remaining-requests": "0"})
    exc = make_adapter().parse_error(429, headers, body)
    assert isinstance(exc, RateLimitError)
    assert exc.retry_after == 7.0
    assert exc.retryable
    assert "Rate limit reached" in exc.message


def test_400_context_length_is_its_own_error() -> None:
    body = orjson.dumps(
        {
            "error": {
                "message": "This model's maximum context length is 8192 tokens. However, your messages "
                "resulted in 9000 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        }
    )
    exc = make_adapter().parse_error(400, CIMultiDict(), body)
    assert isinstance(exc, ContextLengthExceededError)
    assert exc.upstream_status == 400


@pytest.mark.parametrize(
    ("status", "cls", "http_status"),
    [(500, ProviderError, 502), (503, ProviderOverloadedError, 503), (502, ProviderError, 502)],
)
def test_5xx_are_retryable_provider_errors(status: int, cls: type[UniInferError], http_status: int) -> None:
    body = orjson.dumps({"error": {"message": "The server had an error", "type": "server_error"}})
    exc = make_adapter().parse_error(status, CIMultiDict(), body)
    assert type(exc) is cls
    assert exc.retryable
    assert exc.http_status == http_status
    assert exc.upstream_status == status
    assert "The server had an error" in exc.message


def test_non_json_error_body_keeps_the_text() -> None:
    exc = make_adapter().parse_error(502, CIMultiDict(), b"<html><title>502 Bad Gateway</title></html>")
    assert type(exc) is ProviderError
    assert "502 Bad Gateway" in exc.message
    exc = make_adapter().parse_error(500, CIMultiDict(), b"")
    assert "HTTP 500" in exc.message


def test_upstream_param_is_kept() -> None:
    body = orjson.dumps(
        {
            "error": {
                "message": "Invalid 'temperature': decimal above maximum value.",
                "type": "invalid_request_error",
                "param": "temperature",
                "code": "decimal_above_max_value",
            }
        }
    )
    exc = make_adapter().parse_error(400, CIMultiDict(), body)
    assert isinstance(exc, InvalidRequestError)
    assert exc.param == "temperature"


# --- embeddings (pure) ------------------------------------------------------------------------------


def test_embed_request_and_parse() -> None:
    adapter = make_adapter()
    req = adapter.embed_request(
        EmbeddingRequest(model="alias", input=["a", "b"], encoding_format="base64", dimensions=4),
        "te-3-small",
    )
    assert req.url == "https://api.openai.com/v1/embeddings"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    # The gateway encodes base64 itself, so upstream always returns floats.
    assert sent(req) == {
        "model": "te-3-small",
        "input": ["a", "b"],
        "encoding_format": "float",
        "dimensions": 4,
    }

    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
            {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]},
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
    resp = adapter.parse_embed(orjson.dumps(body), "te-3-small")
    assert [d.embedding for d in resp.data] == [[0.1, 0.2], [0.3, 0.4]]
    assert resp.usage.prompt_tokens == 2
    with pytest.raises(ProviderResponseError):
        adapter.parse_embed(b'{"data": 3}', "m")
    with pytest.raises(ProviderResponseError):
        adapter.parse_embed(b"nope", "m")


# --- end to end against the fake ----------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[tuple[web.Application, str]]:
    app = openai_app(api_key=KEY)
    async with run_fake(app) as url:
        yield app, url + "/v1"


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    http = HttpClient()
    try:
        yield http
    finally:
        await http.aclose()
        assert http.open_connections == 0


async def read_stream(client: HttpClient, adapter: OpenAIAdapter, req: HttpRequest) -> list[ChatChunk]:
    stream = await client.open_stream(req, Timeouts(), adapter.name)
    assert stream.status == 200, await stream.read()
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    decoder = adapter.stream_decoder("m")
    chunks: list[ChatChunk] = []
    complete = False
    try:
        async for data in stream.iter_bytes():
            chunks += modelled(decoder.feed(data))
        chunks += modelled(decoder.close())
        complete = True
    finally:
        HttpClient.close_stream(stream, complete=complete)
    return chunks


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
async def test_the_output_limit_reaches_a_reasoning_model_under_the_name_it_takes(
    fake: tuple[web.Application, str], client: HttpClient, limit: str
) -> None:
    """OpenAI's reasoning models refuse ``max_tokens`` (400): the row renames it to its successor,
    ``max_completion_tokens``, which every OpenAI chat model takes as the same limit."""
    app, url = fake
    adapter = make_adapter(base_url=url)
    for model in ("o4-mini", "gpt-5-mini", "gpt-4o-mini"):
        req = adapter.chat_request(chat(**{limit: 2}), model, stream=False)
        resp = await client.send(req, Timeouts(), "openai")
        assert resp.status == 200, resp.body
        assert adapter.parse_chat(resp.body, model).choices[0].finish_reason == "length"
        body = app["requests"][-1]["body"]
        assert body["max_completion_tokens"] == 2
        assert "max_tokens" not in body


async def test_e2e_chat(fake: tuple[web.Application, str], client: HttpClient) -> None:
    app, url = fake
    adapter = make_adapter(base_url=url)
    request = chat(
        messages=[{"role": "system", "content": "be nice"}, {"role": "user", "content": "hello there"}]
    )
    req = adapter.chat_request(request, "gpt-4o-mini", stream=False)
    resp = await client.send(req, Timeouts(), "openai")
    assert resp.status == 200, resp.body
    parsed = adapter.parse_chat(resp.body, "gpt-4o-mini")
    assert parsed.choices[0].message.content == "echo: hello there"
    assert parsed.choices[0].finish_reason == "stop"
    assert parsed.usage is not None
    # 2 + 2 words, plus 3 per message.
    assert parsed.usage.prompt_tokens == 10
    assert parsed.usage.completion_tokens == 3
    assert parsed.usage.total_tokens == 13
    assert parsed.usage.cached_tokens == 0

    (recorded,) = app["requests"]
    assert recorded["path"] == "/v1/chat/completions"
    assert recorded["body"] == sent(req)
    assert recorded["headers"]["Authorization"] == f"Bearer {KEY}"
    assert recorded["headers"]["User-Agent"] == "uniinfer"  # ours, not aiohttp's
    assert client.busy_connections == 0
    assert client.open_connections == 1  # kept alive for the next request


async def test_e2e_stream_with_tool_call(fake: tuple[web.Application, str], client: HttpClient) -> None:
    _app, url = fake
    adapter = make_adapter(base_url=url)
    request = chat(messages=[{"role": "user", "content": "weather in Paris?"}], tools=[WEATHER_TOOL])
    chunks = await read_stream(client, adapter, adapter.chat_request(request, "tool-model", stream=True))

    *body, usage_chunk = chunks
    deltas = [d for c in body for d in c.choices[0].delta.tool_calls or ()]
    assert len(deltas) > 2  # streamed in pieces
    assert {d.index for d in deltas} == {0}
    assert deltas[0].id is not None
    assert deltas[0].id.startswith("call_")
    assert deltas[0].function is not None
    assert deltas[0].function.name == "get_weather"
    assert all(d.id is None for d in deltas[1:])
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert orjson.loads(arguments) == {"location": "Paris"}
    assert arguments == TOOL_ARGUMENTS
    assert body[-1].choices[0].finish_reason == "tool_calls"
    assert len({c.id for c in chunks}) == 1
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.prompt_tokens == prompt_tokens([{"content": "weather in Paris?"}])
    assert client.busy_connections == 0


async def test_e2e_stream_content_usage_and_reasoning(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    _app, url = fake
    adapter = make_adapter(base_url=url)
    text = "naïve café, ünïcödé ✓ streaming test"
    req = adapter.chat_request(
        chat(messages=[{"role": "user", "content": text}]), "reason-cached", stream=True
    )
    chunks = await read_stream(client, adapter, req)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == f"echo: {text}"
    assert chunks[0].choices[0].delta.role == "assistant"
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage is not None
    assert usage.completion_tokens == len(content.split()) + 5
    assert usage.reasoning_tokens == 5
    assert usage.cached_tokens == usage.prompt_tokens // 2 > 0


async def test_e2e_embeddings(fake: tuple[web.Application, str], client: HttpClient) -> None:
    _app, url = fake
    adapter = make_adapter(base_url=url)
    req = adapter.embed_request(
        EmbeddingRequest(model="e", input=["one two", "three"], dimensions=16), "te-3"
    )
    resp = await client.send(req, Timeouts(), "openai")
    assert resp.status == 200, resp.body
    parsed = adapter.parse_embed(resp.body, "te-3")
    assert [d.index for d in parsed.data] == [0, 1]
    assert all(isinstance(d.embedding, list) and len(d.embedding) == 16 for d in parsed.data)
    assert parsed.data[0].embedding != parsed.data[1].embedding
    assert parsed.usage.prompt_tokens == 3
    assert parsed.data[0].embedding == embedding_vector("te-3", "one two", 16)  # deterministic


async def test_fake_encodes_base64_embeddings_like_the_real_api(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    _app, url = fake
    body = orjson.dumps({"model": "te-3", "input": "hi", "encoding_format": "base64"})
    req = HttpRequest(url + "/embeddings", body, {"authorization": f"Bearer {KEY}"})
    resp = await client.send(req, Timeouts(), "openai")
    data = orjson.loads(resp.body)["data"][0]["embedding"]
    floats = list(struct.unpack("<8f", base64.b64decode(data)))
    assert floats == embedding_vector("te-3", "hi", 8)
    assert abs(sum(v * v for v in floats) - 1.0) < 1e-5


@pytest.mark.parametrize(
    ("model", "cls"),
    [
        ("error-429", RateLimitError),
        ("error-500", ProviderError),
        ("error-503", ProviderOverloadedError),
        ("error-502", ProviderError),
        ("error-404", ModelNotFoundError),
        ("gpt-context-small", ContextLengthExceededError),
    ],
)
async def test_e2e_upstream_errors_are_mapped(
    fake: tuple[web.Application, str], client: HttpClient, model: str, cls: type[UniInferError]
) -> None:
    _app, url = fake
    adapter = make_adapter(base_url=url)
    for stream in (False, True):
        req = adapter.chat_request(chat(), model, stream=stream)
        if stream:
            response = await client.open_stream(req, Timeouts(), "openai")
            status, headers, body = response.status, response.headers, await response.read()
            HttpClient.close_stream(response, complete=True)
        else:
            sent_resp = await client.send(req, Timeouts(), "openai")
            status, headers, body = sent_resp.status, sent_resp.headers, sent_resp.body
        exc = adapter.parse_error(status, headers, body)
        assert type(exc) is cls
        if cls is RateLimitError:
            assert exc.retry_after == 7.0
    assert client.busy_connections == 0


async def test_e2e_wrong_key_never_leaks(fake: tuple[web.Application, str], client: HttpClient) -> None:
    _app, url = fake
    wrong = "sk-proj-wrongwrongwrong-0123456789"
    adapter = make_adapter(base_url=url, api_key=wrong)
    resp = await client.send(adapter.chat_request(chat(), "gpt-4o-mini", stream=False), Timeouts(), "openai")
    assert resp.status == 401
    exc = adapter.parse_error(resp.status, resp.headers, resp.body)
    assert isinstance(exc, AuthenticationError)
    assert "Incorrect API key provided" in exc.message
    assert wrong not in exc.message
    assert exc.upstream_body is not None
    assert wrong not in exc.upstream_body


async def test_e2e_cut_stream_is_a_connection_error(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    _app, url = fake
    adapter = make_adapter(base_url=url)
    with pytest.raises(ProviderConnectionError):
        await read_stream(client, adapter, adapter.chat_request(chat(), "cut-model", stream=True))
    assert client.busy_connections == 0


@pytest.mark.parametrize("spec", [s for s in OPENAI_ROWS if s.capabilities.chat], ids=lambda s: s.name)
async def test_e2e_every_openai_row_talks_to_the_fake(
    spec: ProviderSpec, fake: tuple[web.Application, str], client: HttpClient
) -> None:
    app, url = fake
    adapter = make_adapter(spec.name, url)
    resp = await client.send(adapter.chat_request(chat(), "gpt-4o-mini", stream=False), Timeouts(), spec.name)
    assert resp.status == 200, resp.body
    assert adapter.parse_chat(resp.body, "m").choices[0].message.content == "echo: hello there"
    assert app["requests"][-1]["path"] == "/v1/chat/completions"


@pytest.mark.parametrize(
    "messages",
    [
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
            }
        ],
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello", "reasoning_content": "thinking..."},
            {"role": "user", "content": "again"},
        ],
    ],
    ids=["cache_control", "reasoning_content"],
)
async def test_e2e_cross_provider_message_fields_are_not_forwarded(
    fake: tuple[web.Application, str], client: HttpClient, messages: list[dict[str, Any]]
) -> None:
    _app, url = fake
    adapter = make_adapter(base_url=url)
    req = adapter.chat_request(chat(messages=messages), "gpt-4o-mini", stream=False)
    resp = await client.send(req, Timeouts(), "openai")
    assert resp.status == 200, resp.body


def test_a_tool_loops_reasoning_goes_back_where_the_provider_requires_it() -> None:
    """DeepSeek's and Kimi's thinking models require a tool-calling turn's reasoning_content in
    every later request (a 400 without it); OpenRouter takes its reasoning_details back. Every
    other row gets neither, and a turn without tool calls keeps no reasoning anywhere."""
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    details = [{"type": "reasoning.text", "text": "hmm", "format": "anthropic-claude-v1"}]
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "ok", "reasoning_content": "plain turn"},
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "tool_calls": [call],
            "reasoning_content": "need a tool",
            "reasoning_details": details,
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]

    def sent(row: str) -> list[dict[str, Any]]:
        body = orjson.loads(make_adapter(row).chat_request(chat(messages=messages), "m", stream=False).body)
        return body["messages"]  # type: ignore[no-any-return]

    for row in ("deepseek", "moonshot"):
        turns = sent(row)
        assert "reasoning_content" not in turns[1]
        assert turns[3]["reasoning_content"] == "need a tool"
        assert "reasoning_details" not in turns[3]
    openrouter = sent("openrouter")
    assert (openrouter[3]["reasoning_content"], openrouter[3]["reasoning_details"]) == (
        "need a tool",
        details,
    )
    for row in ("openai", "groq", "vllm", "openai_compatible"):
        assert not {"reasoning_content", "reasoning_details"} & {k for t in sent(row) for k in t}, row


def test_an_error_sent_with_a_200_is_the_error_its_code_says() -> None:
    """OpenRouter, once a request is under way, answers errors with a 200: in the body, or as a
    stream event. Classified by their code, they fall back where they should (a 502 body was
    "unexpected chat response shape", never retried; every stream error a 500)."""
    from uniinfer.errors import InvalidRequestError, ProviderError, RateLimitError
    from uniinfer.providers.base import PartialStreamError

    adapter = make_adapter("openrouter")
    for code, kind in (
        (502, ProviderError),
        (429, RateLimitError),
        (400, InvalidRequestError),
        ("x", ProviderError),
    ):
        body = orjson.dumps({"error": {"code": code, "message": "Provider returned error"}})
        with pytest.raises(kind) as info:
            adapter.parse_chat(body, "m")
        assert "Provider returned error" in info.value.message
        event = {"id": "gen-1", "object": "chat.completion.chunk", "created": 1, "model": "x",
                 "error": {"code": code, "message": "Provider disconnected"},
                 "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]}  # fmt: skip
        with pytest.raises((PartialStreamError, kind)) as raised:
            adapter.stream_decoder("m").feed(
                b": OPENROUTER PROCESSING\n\ndata: " + orjson.dumps(event) + b"\n\n"
            )
        error = raised.value.error if isinstance(raised.value, PartialStreamError) else raised.value
        assert isinstance(error, kind), (code, error)
    assert isinstance(error, ProviderError)
    assert error.retryable


@pytest.mark.parametrize(
    ("row", "status", "error", "kind"),
    [
        # llama.cpp's server (format_error_response): its integer code hides its type
        (
            "llamacpp",
            400,
            {
                "code": 400,
                "type": "exceed_context_size_error",
                "message": "request (9412 tokens) exceeds the available context size (8192 tokens), try increasing it",
            },
            "ContextLengthExceededError",
        ),
        (
            "together",
            400,
            {
                "message": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 32769. "
                "Given: 32000 `inputs` tokens and 2048 `max_new_tokens`"
            },
            "ContextLengthExceededError",
        ),
        (
            "xai",
            400,
            {
                "message": "This model's maximum prompt length is 131072 but the request contains 140000 tokens."
            },
            "ContextLengthExceededError",
        ),
        # Groq: its flex tier full ("add jittered backoff and retries"), its tokens-per-minute limit
        (
            "groq",
            498,
            {
                "message": "Flex tier capacity exceeded.",
                "type": "capacity_exceeded",
                "code": "capacity_exceeded",
            },
            "ProviderOverloadedError",
        ),
        (
            "groq",
            413,
            {
                "message": "Request too large for model on tokens per minute (TPM): Limit 6000, Requested 7532",
                "type": "tokens",
                "code": "rate_limit_exceeded",
            },
            "RateLimitError",
        ),
    ],
)
def test_providers_own_errors_are_classified_so_the_router_can_act_on_them(
    row: str, status: int, error: dict[str, Any], kind: str
) -> None:
    """A context-length error goes to the group's context_length fallback; an overloaded or
    rate-limited deployment is retried elsewhere (each was a plain, final 400 or a 413 that
    pointed at server.max_body_bytes)."""
    body = orjson.dumps({"error": error} if "code" in error or row == "xai" else error)
    found = make_adapter(row).parse_error(status, {"retry-after": "2"}, body)
    assert type(found).__name__ == kind
    if kind != "ContextLengthExceededError":
        assert found.retryable


# --- the fake itself validates like the real API ---------------------------------------------------

_USER = [{"role": "user", "content": "hi"}]
_CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("body", "param", "code", "message"),
    [
        (
            {"model": "m", "messages": _USER, "foo": 1},
            None,
            None,
            "Unrecognized request argument supplied: foo",
        ),
        ({"messages": _USER}, None, None, "you must provide a model parameter"),
        ({"model": "m"}, "messages", "missing_required_parameter", "Missing required parameter: 'messages'."),
        ({"model": "m", "messages": []}, "messages", "empty_array", "Invalid 'messages': empty array."),
        (
            {"model": "m", "messages": _USER, "temperature": 3},
            "temperature",
            "decimal_above_max_value",
            "<= 2",
        ),
        (
            {"model": "m", "messages": _USER, "temperature": -1},
            "temperature",
            "decimal_below_min_value",
            ">= 0",
        ),
        ({"model": "m", "messages": _USER, "top_p": 1.5}, "top_p", "decimal_above_max_value", "<= 1"),
        ({"model": "m", "messages": _USER, "n": 0}, "n", "integer_below_min_value", ">= 1"),
        ({"model": "m", "messages": _USER, "n": 129}, "n", "integer_above_max_value", "<= 128"),
        ({"model": "m", "messages": _USER, "max_tokens": 0}, "max_tokens", "integer_below_min_value", ">= 1"),
        ({"model": "m", "messages": _USER, "n": "2"}, "n", "invalid_type", "expected an integer"),
        (
            {"model": "m", "messages": [{"role": "bot", "content": "x"}]},
            "messages[0].role",
            "invalid_value",
            "Invalid value: 'bot'. Supported values are:",
        ),
        (
            {"model": "m", "messages": [*_USER, {"role": "tool", "tool_call_id": "call_1", "content": "x"}]},
            "messages.[1].role",
            None,
            "messages with role 'tool' must be a response to a preceeding message with 'tool_calls'",
        ),
        (
            {"model": "m", "messages": [*_USER, {"role": "assistant", "tool_calls": [_CALL]}, *_USER]},
            "messages.[2].role",
            None,
            "did not have response messages: call_1",
        ),
        (
            {"model": "m", "messages": _USER, "stream_options": {"include_usage": True}},
            "stream_options",
            None,
            "only allowed when 'stream' is enabled",
        ),
        (
            {"model": "m", "messages": _USER, "response_format": {"type": "json_object"}},
            "messages",
            None,
            "must contain the word 'json'",
        ),
        (
            {"model": "m", "messages": _USER, "tool_choice": "auto"},
            "tool_choice",
            None,
            "only allowed when 'tools' are specified",
        ),
        (
            {"model": "o4-mini", "messages": _USER, "max_tokens": 5},
            "max_tokens",
            "unsupported_parameter",
            "Use 'max_completion_tokens' instead.",
        ),
        (
            {
                "model": "m",
                "messages": _USER,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "out",
                        "strict": True,
                        "schema": {
                            "type": "object",
                            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                            "required": ["a"],
                            "additionalProperties": False,
                        },
                    },
                },
            },
            "response_format",
            None,
            "Invalid schema for response_format 'out': In context=(), 'required' is required to be "
            "supplied and to be an array including every key in properties. Missing 'b'.",
        ),
        (
            {
                "model": "m",
                "messages": _USER,
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "strict": True,
                            "parameters": {
                                "type": "object",
                                "properties": {"xs": {"type": "array", "items": {"type": "object"}}},
                                "required": ["xs"],
                                "additionalProperties": False,
                            },
                        },
                    }
                ],
            },
            "tools[0].function.parameters",
            "invalid_function_parameters",
            "Invalid schema for function 'f': In context=('properties', 'xs', 'items'), "
            "'additionalProperties' is required to be supplied and to be false.",
        ),
        (
            {"model": "m", "messages": _USER, "stop": ["a", "b", "c", "d", "e"]},
            "stop",
            "array_above_max_length",
            "array too long",
        ),
        (
            {"model": "context-m", "messages": _USER},
            "messages",
            "context_length_exceeded",
            "maximum context length is 8192 tokens",
        ),
    ],
)
async def test_fake_rejects_invalid_chat_bodies_like_the_real_api(
    fake: tuple[web.Application, str],
    client: HttpClient,
    body: dict[str, Any],
    param: str | None,
    code: str | None,
    message: str,
) -> None:
    _app, url = fake
    req = HttpRequest(url + "/chat/completions", orjson.dumps(body), {"authorization": f"Bearer {KEY}"})
    resp = await client.send(req, Timeouts(), "openai")
    assert resp.status == 400
    error = orjson.loads(resp.body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)
    assert message in error["message"]


async def test_fake_accepts_a_full_tool_round_trip(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    _app, url = fake
    messages = [
        *_USER,
        {"role": "assistant", "content": None, "tool_calls": [_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": "thanks, as json please"},
    ]
    body = {"model": "m", "messages": messages, "n": 2, "response_format": {"type": "json_object"}}
    req = HttpRequest(url + "/chat/completions", orjson.dumps(body), {"authorization": f"Bearer {KEY}"})
    resp = await client.send(req, Timeouts(), "openai")
    assert resp.status == 200, resp.body
    data = orjson.loads(resp.body)
    assert [c["index"] for c in data["choices"]] == [0, 1]
    assert orjson.loads(data["choices"][0]["message"]["content"]) == {"echo": "thanks, as json please"}
    assert data["usage"]["completion_tokens"] == 2 * len(data["choices"][0]["message"]["content"].split())


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "code"),
    [
        ("POST", "/chat/completions", {}, 401, None),
        (
            "POST",
            "/chat/completions",
            {"authorization": "Bearer sk-nope-nope-nope-1234"},
            401,
            "invalid_api_key",
        ),
        ("GET", "/models", {"authorization": f"Bearer {KEY}"}, 200, None),
        ("GET", "/models/gpt-4o-mini", {"authorization": f"Bearer {KEY}"}, 200, None),
        ("GET", "/models/nope", {"authorization": f"Bearer {KEY}"}, 404, "model_not_found"),
        ("POST", "/nothing-here", {"authorization": f"Bearer {KEY}"}, 404, None),
    ],
)
async def test_fake_auth_models_and_unknown_urls(
    fake: tuple[web.Application, str],
    client: HttpClient,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    app, url = fake
    body = orjson.dumps({"model": "m", "messages": _USER}) if method == "POST" else b""
    resp = await client.send(HttpRequest(url + path, body, headers, method), Timeouts(), "openai")
    assert resp.status == status
    data = orjson.loads(resp.body)
    if status == 200:
        ids = [m["id"] for m in data["data"]] if "data" in data else [data["id"]]
        assert set(ids) <= {"gpt-4o-mini", "text-embedding-3-small"}
        assert resp.headers["x-request-id"].startswith("req_")
    else:
        assert data["error"]["code"] == code
        assert "nope-nope-nope" not in data["error"]["message"]
    assert app["requests"][-1]["path"] == "/v1" + path


# --- transport ----------------------------------------------------------------------------------------


def _req(url: str, model: str) -> HttpRequest:
    return make_adapter(base_url=url).chat_request(chat(), model, stream=False)


async def test_dropped_connection_is_a_connection_error(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    _app, url = fake
    with pytest.raises(ProviderConnectionError) as info:
        await client.send(_req(url, "drop-it"), Timeouts(), "openai")
    assert info.value.provider == "openai"
    assert client.busy_connections == 0
    # The pool still works afterwards.
    assert (await client.send(_req(url, "gpt-4o-mini"), Timeouts(), "openai")).status == 200


async def test_read_timeout_is_a_timeout_error(fake: tuple[web.Application, str], client: HttpClient) -> None:
    _app, url = fake
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError) as info:
        await client.send(_req(url, "slow-1"), Timeouts(read=0.2), "openai")
    assert time.monotonic() - started < 0.9
    assert info.value.http_status == 504
    assert "timeout.read" in info.value.message  # which setting to look at
    assert client.busy_connections == 0


async def test_a_read_timeout_no_shorter_than_the_total_is_left_to_the_total(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    _app, url = fake
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match=r"timeout\.total"):  # as the read timeout would have
        await client.send(_req(url, "slow-1"), Timeouts(read=0.3, total=0.2), "openai")
    assert time.monotonic() - started < 0.9
    assert client._timeout(Timeouts(read=5, total=5)).sock_read is None  # no timer rearmed per read
    assert client._timeout(Timeouts(read=5, total=60)).sock_read == 5


async def test_a_host_name_lookup_that_never_answers_is_a_connect_timeout_not_the_total(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No socket timeout covers DNS: a resolver that does not answer held a request for all of
    timeout.total; it is bounded (by the gateway's longest timeout.connect) and fails over."""
    loop = asyncio.get_running_loop()
    lookups: list[str] = []

    async def unanswered(host: str, *args: object, **kwargs: object) -> list[object]:
        lookups.append(host)
        await asyncio.sleep(3600)
        return []

    monkeypatch.setattr(loop, "getaddrinfo", unanswered)
    client = HttpClient(dns_timeout=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(ProviderTimeoutError, match=r"timeout\.connect"):
            await client.send(_req("http://api.example.invalid/v1", "m"), Timeouts(total=60), "openai")
        with pytest.raises(ProviderTimeoutError, match=r"timeout\.connect"):
            await client.open_stream(_req("http://api.example.invalid/v1", "m"), Timeouts(total=60), "openai")
        assert time.monotonic() - started < 5  # not 2 x 60 s
        assert lookups == ["api.example.invalid"] * 2
        assert client.busy_connections == 0
    finally:
        await client.aclose()


def test_the_gateways_lookups_are_bounded_by_its_longest_connect_timeout() -> None:
    from tests.conftest import make_config
    from uniinfer.gateway import Gateway

    config = make_config(
        "providers:\n  a: {type: openai, api_key: k, timeout: {connect: 3}}\n"
        "  b: {type: ollama, timeout: {connect: 7}}\n"
    )
    assert Gateway(config).http._dns_timeout == 7


async def test_closed_port_is_a_connection_error(client: HttpClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProviderConnectionError, match=f"127.0.0.1:{port}"):
        await client.send(_req(f"http://127.0.0.1:{port}/v1", "m"), Timeouts(connect=1), "openai")
    with pytest.raises(ProviderConnectionError):
        await client.open_stream(_req(f"http://127.0.0.1:{port}/v1", "m"), Timeouts(connect=1), "openai")
    assert client.busy_connections == 0


async def test_cancelled_send_leaks_no_connection(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    app, url = fake
    task = asyncio.create_task(client.send(_req(url, "slow-0.5"), Timeouts(), "openai"))
    for _ in range(200):
        if app["requests"]:
            break
        await asyncio.sleep(0.005)
    assert app["requests"], "the request never reached the fake"
    assert client.busy_connections == 1  # mid-send: the connection is checked out
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.busy_connections == 0


async def test_cancelled_stream_read_leaks_no_connection(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    _app, url = fake
    adapter = make_adapter(base_url=url)
    stream = await client.open_stream(adapter.chat_request(chat(), "m", stream=True), Timeouts(), "openai")
    assert client.busy_connections == 1
    async for _ in stream.iter_bytes():
        break  # the caller gives up after the first bytes
    HttpClient.close_stream(stream, complete=False)
    assert client.busy_connections == 0


async def test_aclose_closes_every_connection(fake: tuple[web.Application, str]) -> None:
    _app, url = fake
    http = HttpClient()
    results = await asyncio.gather(*(http.send(_req(url, "m"), Timeouts(), "openai") for _ in range(3)))
    assert [r.status for r in results] == [200, 200, 200]
    assert http.open_connections == 3
    assert http.busy_connections == 0
    await http.aclose()
    assert http.open_connections == 0
    # A closed client reopens its pool on next use.
    assert (await http.send(_req(url, "m"), Timeouts(), "openai")).status == 200
    await http.aclose()
    assert http.open_connections == 0


# --- retry_after_seconds ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # ms is the finer, preferred value
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(headers) == expected


def test_retry_after_case_insensitive_headers() -> None:
    assert retry_after_seconds(CIMultiDict({"Retry-After": "7"})) == 7.0
    assert retry_after_seconds(CIMultiDict({"Retry-After-Ms": "20"})) == 0.02


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    future = email.utils.format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True)
    past = email.utils.format_datetime(datetime.fromtimestamp(now - 30, UTC), usegmt=True)
    assert retry_after_seconds({"retry-after": future}, now=now) == 30.0
    assert retry_after_seconds({"retry-after": past}, now=now) == 0.0
    # Without `now` the wall clock is used.
    live = email.utils.format_datetime(datetime.fromtimestamp(time.time() + 60, UTC), usegmt=True)
    seconds = retry_after_seconds({"retry-after": live})
    assert seconds is not None
    assert 58 <= seconds <= 60


@pytest.fixture
def new_york_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("new_york_tz")
def test_retry_after_asctime_date_is_gmt() -> None:
    now = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC).timestamp()
    assert retry_after_seconds({"retry-after": "Wed Oct 21 07:28:00 2015"}, now=now) == 30.0


# --- framers ---------------------------------------------------------------------------------------------


def feed_all(framer: Any, data: bytes, step: int) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(data), step):
        out += framer.feed(data[i : i + step])
    return out + framer.close()


SSE_STREAM = (
    ": keep-alive comment\r\n"
    "\r\n"
    "event: message_start\r\n"
    "id: 1\r\n"
    "retry: 1000\r\n"
    'data: {"a": "héllo 👋"}\r\n'
    "\r\n"
    "data: line one\n"
    "data:line two\n"
    "data\n"
    "\n"
    "event: no-data-so-no-event\n"
    "\n"
    "data:  two spaces\n"
    "\n"
    "data: [DONE]"  # no trailing blank line: close() flushes it
).encode()

SSE_EVENTS = [
    ("message_start", '{"a": "héllo 👋"}'),
    ("", "line one\nline two\n"),
    ("", " two spaces"),
    ("", "[DONE]"),
]


#: Both framers, each with how its events' data compares with text.
FRAMERS = [
    pytest.param(SSEFramer, lambda text: text, id="text"),
    pytest.param(SSEBytesFramer, str.encode, id="bytes"),
]
Framer = Callable[[], SSEFramer | SSEBytesFramer]


@pytest.mark.parametrize(("framer", "data"), FRAMERS)
@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 1000])
def test_sse_framer_any_split(framer: Framer, data: Callable[[str], Any], step: int) -> None:
    assert feed_all(framer(), SSE_STREAM, step) == [(event, data(d)) for event, d in SSE_EVENTS]


@pytest.mark.parametrize(("framer", "data"), FRAMERS)
def test_sse_framer_event_name_resets_after_each_event(framer: Framer, data: Callable[[str], Any]) -> None:
    f = framer()
    events = f.feed(b"event: ping\ndata: 1\n\ndata: 2\n\n")
    assert events == [("ping", data("1")), ("", data("2"))]
    assert f.close() == []


@pytest.mark.parametrize(("framer", "data"), FRAMERS)
def test_sse_framer_crlf_split_between_feeds(framer: Framer, data: Callable[[str], Any]) -> None:
    # A CRLF cut between two reads is one line ending, not a CR line plus an
    # empty LF line (which would end the event early and split x from y).
    f = framer()
    assert f.feed(b"data: x\r") == []
    assert f.feed(b"\ndata: y\r") == []
    assert f.feed(b"\n\r") == [("", data("x\ny"))]
    assert f.feed(b"\n") == []
    assert f.close() == []


@pytest.mark.parametrize(("framer", "data"), FRAMERS)
def test_sse_framer_lone_cr_line_endings(framer: Framer, data: Callable[[str], Any]) -> None:
    assert framer().feed(b"data: a\r\rdata: b\r\r") == [("", data("a")), ("", data("b"))]


def _reference_sse(stream: bytes) -> list[tuple[str, bytes]]:
    """The WHATWG event-stream rules, line by line over the whole input at once."""
    events: list[tuple[str, bytes]] = []
    event, data = "", []
    for line in [*stream.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"), b""]:
        if not line:
            if data:
                events.append((event, b"\n".join(data)))
            event, data = "", []
            continue
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    return events


_SSE_PIECES = st.sampled_from(
    [b"data: {\"a\":1}", b"data:x", b"data", b"data: ", b"event: e", b"event:", b": comment", b"id: 7",
     b"retry: 5", b"\n", b"\n\n", b"\r\n", b"\r", b"\n\n\n", b"data: [DONE]", b"data: a\nb"]
)  # fmt: skip


@given(
    pieces=st.lists(_SSE_PIECES, max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
@settings(max_examples=400, deadline=None)
def test_sse_bytes_framer_matches_the_reference_rules_wherever_the_bytes_are_cut(
    pieces: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(pieces) + b"\n\n"
    framer = SSEBytesFramer()
    out: list[tuple[str, bytes]] = []
    start = 0
    for cut in [*sorted({min(c, len(stream)) for c in cuts}), len(stream)]:
        out += framer.feed(stream[start:cut])
        start = cut
    out += framer.close()
    assert out == _reference_sse(stream)


def test_sse_bytes_framer_keeps_an_event_name_read_in_an_earlier_feed() -> None:
    framer = SSEBytesFramer()
    assert framer.feed(b"event: ping\r\n") == []  # a CRLF feed: read line by line
    assert framer.feed(b"data: 1\n\ndata: 2\n\n") == [("ping", b"1"), ("", b"2")]


def test_sse_bytes_framer_leaves_bad_utf8_in_the_data_for_its_consumer() -> None:
    assert SSEBytesFramer().feed(b"event: \xffx\ndata: a\xffb\n\n") == [("\ufffdx", b"a\xffb")]


@pytest.mark.parametrize("step", [1, 2, 4, 1000])
def test_ndjson_framer(step: int) -> None:
    lines = [b'{"a": "h\xc3\xa9 \xf0\x9f\x91\x8b"}', b'{"b": 2}', b'{"c": 3}']
    data = lines[0] + b"\n\n" + lines[1] + b"\r\n   \n" + lines[2]  # last line has no newline
    out = feed_all(NDJSONFramer(), data, step)
    assert [orjson.loads(line) for line in out] == [{"a": "hé 👋"}, {"b": 2}, {"c": 3}]
    assert len(out) == 3


def test_ndjson_framer_close_is_empty_after_complete_lines() -> None:
    framer = NDJSONFramer()
    assert framer.feed(b'{"a": 1}\n') == [b'{"a": 1}']
    assert framer.close() == []


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": True, "required": ["a"], "additionalProperties": False},
        {"type": "object", "properties": 5, "additionalProperties": False},
        {"type": "object", "properties": {}, "additionalProperties": False, "anyOf": 3},
    ],
)
def test_the_fake_refuses_a_malformed_strict_schema_instead_of_crashing(schema: dict[str, Any]) -> None:
    # found by tests/test_fuzz_http.py: a crash in the fake was a 500 that the gateway passed on as 502
    from tests.fakes.openai import strict_schema_problem

    assert strict_schema_problem(schema) is not None


def test_a_finish_reason_outside_openai_s_five_is_passed_on_not_a_bad_response() -> None:
    # an OpenAI-compatible server's own (vLLM's "abort"...): the answer and its content survive
    answer = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "partial"}, "finish_reason": "abort"}],
    }  # fmt: skip
    parsed = make_adapter().parse_chat(orjson.dumps(answer), "m")
    assert (parsed.choices[0].message.content, parsed.choices[0].finish_reason) == ("partial", "abort")
    decoder = make_adapter().stream_decoder("m")
    chunks = modelled([*decoder.feed(sse(CONTENT_CHUNKS[1], chunk({}, "abort"), "[DONE]")), *decoder.close()])
    assert [c.choices[0].finish_reason for c in chunks] == [None, "abort"]
