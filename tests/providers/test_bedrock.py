"""The Bedrock adapter: Converse translation both ways, the event-stream decoder,
SigV4 signing (checked by hand and by the fake over a real socket), the AWS
credential chain, embeddings and error mapping."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import re
import struct
import threading
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import botocore.session
import orjson
import pytest
from aiohttp import web
from botocore.credentials import RefreshableCredentials
from botocore.eventstream import EventStreamBuffer
from yarl import URL

from tests.conftest import make_config
from tests.fakes.bedrock import (
    ACCESS_KEY,
    API_KEY,
    CHAT_MODEL,
    SECRET_KEY,
    AwsError,
    bedrock_app,
    event_frame,
    exception_frame,
    fake_provider,
    frame,
    stream_events,
    validate,
)
from tests.fakes.common import run_fake
from tests.providers import support
from tests.providers.support import reassemble
from uniinfer.errors import (
    AuthenticationError,
    ConfigError,
    ContextLengthExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderError,
    ProviderOverloadedError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
    UniInferError,
    UnsupportedFeatureError,
    UnsupportedParamError,
)
from uniinfer.gateway import Gateway
from uniinfer.http import HttpClient, HttpRequest, Timeouts
from uniinfer.providers import bedrock
from uniinfer.providers.base import Endpoint, PartialStreamError, ProviderAdapter
from uniinfer.providers.bedrock import BedrockAdapter, BedrockOptions
from uniinfer.providers.eventstream import EventStreamDecoder, EventStreamError
from uniinfer.providers.registry import default_registry
from uniinfer.stages import RequestContext
from uniinfer.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    MessagesIntent,
)

DEFAULT_URL = "https://bedrock-runtime.us-east-1.amazonaws.com"
KEYS = {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}
ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


def make_adapter(
    url: str = DEFAULT_URL, *, key: str | None = None, headers: dict[str, str] | None = None, **options: Any
) -> BedrockAdapter:
    reg = default_registry()
    endpoint = Endpoint(
        base_url=url, api_key=key, headers=headers or {}, options=options if options or key else KEYS
    )
    adapter = reg.create(reg.get("bedrock"), endpoint)
    assert isinstance(adapter, BedrockAdapter)
    return adapter


def chat(messages: list[dict[str, Any]] | None = None, **kw: Any) -> ChatRequest:
    data = {"model": "m", "messages": messages or [{"role": "user", "content": "hi"}], **kw}
    return ChatRequest.model_validate(data)


def sent(request: ChatRequest, model: str = CHAT_MODEL, *, stream: bool = False) -> dict[str, Any]:
    req = make_adapter().chat_request(request, model, stream=stream)
    body: dict[str, Any] = orjson.loads(req.body)
    return body


def tool_history() -> list[dict[str, Any]]:
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
        },
        {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
    ]
    return [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": calls, "reasoning_content": "secret"},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rainy"}]},
        {"role": "user", "content": "and so?"},
    ]


# --- options, URLs and signing ------------------------------------------------------------


def test_registry_builds_the_adapter_with_typed_options() -> None:
    adapter = make_adapter(region="eu-west-3", **KEYS)
    assert isinstance(adapter.options, BedrockOptions)
    assert adapter.region == "eu-west-3"
    # the row's default base URL follows the region; a configured one is kept
    assert adapter.base_url == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    assert make_adapter("http://fake:9/", **KEYS).base_url == "http://fake:9"
    assert str(adapter.options.secret_access_key) == "**********"


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"access_key_id": "AKID"}, "together"),
        ({"secret_access_key": "s"}, "together"),
        ({"session_token": "t"}, "session_token needs"),
        ({**KEYS, "profile": "dev"}, "either profile"),
        ({"region": "us-east-1.evil.com"}, "region"),
        ({"regoin": "us-east-1"}, "regoin"),
    ],
)
def test_options_are_validated(options: dict[str, Any], text: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(text)) as info:
        make_adapter(**options)
    assert "providers.bedrock.options" in info.value.message


@pytest.mark.parametrize(
    ("model", "path"),
    [
        (CHAT_MODEL, "/model/anthropic.claude-3-7-sonnet-20250219-v1:0/converse"),
        (ARN, "/model/" + ARN.replace("/", "%2F") + "/converse"),
        ("my model+v1", "/model/my%20model%2Bv1/converse"),
    ],
)
def test_model_id_is_one_path_segment_that_aiohttp_sends_unchanged(model: str, path: str) -> None:
    req = make_adapter().chat_request(chat(), model, stream=False)
    assert req.url == DEFAULT_URL + path
    # what we signed is what aiohttp (yarl) puts on the wire
    assert str(URL(req.url)) == req.url
    assert URL(req.url).raw_path == path
    assert make_adapter().chat_request(chat(), model, stream=True).url.endswith("/converse-stream")


def hand_signature(req: HttpRequest, secret: str = SECRET_KEY, region: str = "us-east-1") -> tuple[str, str]:
    """(canonical request, signature) computed from the SigV4 spec, independently of botocore."""
    headers = {k.lower(): v for k, v in req.headers.items()}
    match = re.search(r"SignedHeaders=([^,]+)", headers["authorization"])
    assert match is not None
    signed = match.group(1).split(";")
    amz_date = headers["x-amz-date"]
    parts = urlsplit(req.url)
    # AWS URI-encodes each segment of the path as received (so %2F becomes %252F)
    canonical_uri = "/".join(quote(segment, safe="~") for segment in parts.path.split("/"))
    values = {**headers, "host": parts.netloc}
    lines = "".join(f"{name}:{' '.join(values[name].split())}\n" for name in signed)
    body_hash = hashlib.sha256(req.body).hexdigest()
    canonical = "\n".join(["POST", canonical_uri, "", lines, ";".join(signed), body_hash])
    scope = f"{amz_date[:8]}/{region}/bedrock/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (amz_date[:8], region, "bedrock", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return canonical, hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("model", "canonical_path"),
    [
        (CHAT_MODEL, "/model/anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse"),
        (ARN, "/model/" + quote(ARN.replace("/", "%2F"), safe="") + "/converse"),
    ],
)
def test_sigv4_signature_matches_the_spec_computed_by_hand(model: str, canonical_path: str) -> None:
    req = make_adapter().chat_request(chat(), model, stream=False)
    auth = req.headers["Authorization"]
    date = req.headers["X-Amz-Date"]
    assert re.fullmatch(r"\d{8}T\d{6}Z", date)
    assert auth.startswith(
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{date[:8]}/us-east-1/bedrock/aws4_request, "
    )
    assert "SignedHeaders=content-type;host;x-amz-date, " in auth
    canonical, signature = hand_signature(req)
    assert canonical.split("\n")[1] == canonical_path
    assert "%253A" not in canonical  # the colon went on the wire literally: encoded once here
    assert auth.endswith(f"Signature={signature}")


def test_session_token_and_configured_headers_are_signed() -> None:
    adapter = make_adapter(headers={"X-Trace": "abc"}, **KEYS, session_token="tok-123")
    req = adapter.chat_request(chat(), CHAT_MODEL, stream=False)
    assert req.headers["X-Amz-Security-Token"] == "tok-123"
    assert (
        "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-trace,"
        in req.headers["Authorization"]
    )
    assert req.headers["Authorization"].endswith(f"Signature={hand_signature(req)[1]}")


def test_bearer_api_key_replaces_sigv4() -> None:
    req = make_adapter(key=API_KEY).chat_request(chat(), CHAT_MODEL, stream=False)
    assert req.headers["authorization"] == f"Bearer {API_KEY}"
    assert not any(h.lower().startswith("x-amz-") for h in req.headers)


# --- request translation ------------------------------------------------------------------


def test_basic_fields_and_inference_config() -> None:
    body = sent(chat(temperature=0.5, top_p=0.9, stop="END", max_tokens=10, max_completion_tokens=20))
    assert body == {
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "inferenceConfig": {"maxTokens": 20, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
        # Claude's response says which stop sequence ended it, when asked by this pointer
        "additionalModelResponseFieldPaths": ["/stop_sequence"],
    }
    assert sent(chat()) == {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    assert sent(chat(stream=True, stream_options={"include_usage": True}), stream=True) == sent(chat())


def test_system_and_developer_messages_become_system_blocks() -> None:
    body = sent(
        chat(
            [
                {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": "hi"},
                {"role": "developer", "content": "Use French."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "again"}, {"type": "text", "text": ""}],
                },
            ]
        )
    )
    assert body["system"] == [{"text": "Be brief."}, {"text": "Use French."}]
    # the two user messages are adjacent now and merge; the blank part is dropped
    assert body["messages"] == [{"role": "user", "content": [{"text": "hi"}, {"text": "again"}]}]


def test_data_url_images_become_image_bytes() -> None:
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG}"}},
    ]
    content = sent(chat([{"role": "user", "content": parts}]))["messages"][0]["content"]
    assert content[1] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    assert content[2]["image"]["format"] == "jpeg"


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("https://example.com/cat.png", "image bytes, not image URLs"),
        ("data:image/bmp;base64,AAAA", "not 'image/bmp'"),
        ("data:image/png,rawbytes", "base64 data: URL"),
    ],
)
def test_unusable_images_are_invalid_requests_naming_the_part(url: str, text: str) -> None:
    request = chat([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    with pytest.raises(InvalidRequestError, match=re.escape(text)) as info:
        sent(request)
    assert info.value.param == "messages[0].content[0]"
    assert info.value.provider == "bedrock"


def test_audio_parts_are_an_unsupported_feature() -> None:
    part = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(UnsupportedFeatureError) as info:
        sent(chat([{"role": "user", "content": [part]}]))
    assert info.value.param == "messages[0].content[0]"


def test_a_tool_result_of_several_text_parts_keeps_them_apart() -> None:
    history = tool_history()[:4]
    history[3]["content"] = [{"type": "text", "text": "21"}, {"type": "text", "text": "degrees"}]
    results = sent(chat(history, tools=[WEATHER]))["messages"][2]["content"]
    assert results[1] == {"toolResult": {"toolUseId": "call_2", "content": [{"text": "21\ndegrees"}]}}


def test_tool_calls_and_results_translate_and_merge() -> None:
    body = sent(chat(tool_history(), tools=[WEATHER]))
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"text": "Checking."},
        {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"location": "Paris"}}},
        {"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {}}},
    ]
    assert "secret" not in orjson.dumps(body).decode()  # reasoning_content is not sent back
    assert body["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "call_1", "content": [{"json": {"temp": 21}}]}},
        {"toolResult": {"toolUseId": "call_2", "content": [{"text": "rainy"}]}},
        {"text": "and so?"},
    ]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_invalid_tool_arguments_name_the_message(arguments: str) -> None:
    history = tool_history()[:3]
    history[1]["tool_calls"] = [history[1]["tool_calls"][0]]
    history[1]["tool_calls"][0]["function"]["arguments"] = arguments
    with pytest.raises(InvalidRequestError) as info:
        sent(chat(history, tools=[WEATHER]))
    assert info.value.param == "messages[1].tool_calls"


def test_tools_translation() -> None:
    bare = {"type": "function", "function": {"name": "now", "description": ""}}
    assert sent(chat(tools=[WEATHER, bare]))["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "inputSchema": {"json": WEATHER["function"]["parameters"]},
                }
            },
            {"toolSpec": {"name": "now", "inputSchema": {"json": {"type": "object", "properties": {}}}}},
        ]
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        ("auto", None),  # Converse's default, unsaid: not every model family takes toolChoice
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"tool": {"name": "get_weather"}}),
    ],
)
def test_tool_choice_variants(choice: Any, expected: dict[str, Any] | None) -> None:
    assert sent(chat(tools=[WEATHER], tool_choice=choice))["toolConfig"].get("toolChoice") == expected


def test_tool_choice_none_sends_no_tools_and_cannot_be_kept_with_tool_history() -> None:
    assert "toolConfig" not in sent(chat(tools=[WEATHER], tool_choice="none"))
    with pytest.raises(UnsupportedParamError) as info:
        sent(chat(tool_history(), tools=[WEATHER], tool_choice="none"))
    assert info.value.param == "tool_choice"
    assert info.value.provider == "bedrock"


def test_top_k_goes_where_the_model_family_takes_it() -> None:
    assert sent(chat(top_k=40))["additionalModelRequestFields"] == {"top_k": 40}
    nova = sent(chat(top_k=40), "us.amazon.nova-pro-v1:0")
    assert nova["additionalModelRequestFields"] == {"inferenceConfig": {"topK": 40}}
    with pytest.raises(UnsupportedParamError) as info:
        sent(chat(top_k=40), "meta.llama3-70b-instruct-v1:0")
    assert info.value.param == "top_k"


@pytest.mark.parametrize(("effort", "budget"), [("low", 1024), ("medium", 4096), ("high", 16384)])
def test_reasoning_effort_becomes_claude_thinking(effort: str, budget: int) -> None:
    body = sent(chat(reasoning_effort=effort), ARN)
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": budget}}
    assert body["inferenceConfig"] == {"maxTokens": budget + 4096}


def test_thinking_budget_stays_below_the_limit_and_is_off_in_a_tool_loop() -> None:
    body = sent(chat(reasoning_effort="high", max_completion_tokens=5000))
    assert body["additionalModelRequestFields"]["thinking"]["budget_tokens"] == 4999
    with pytest.raises(InvalidRequestError) as info:
        sent(chat(reasoning_effort="low", max_tokens=1000))
    assert info.value.param == "max_tokens"
    in_loop = chat(tool_history()[:4], tools=[WEATHER], reasoning_effort="low")
    assert "additionalModelRequestFields" not in sent(in_loop)
    # ... and the adapter says so, for the gateway's x-uniinfer-dropped-params
    assert make_adapter().params_left_out(in_loop, CHAT_MODEL) == ("reasoning_effort",)
    assert make_adapter().params_left_out(chat(reasoning_effort="low"), CHAT_MODEL) == ()
    with pytest.raises(UnsupportedParamError):
        sent(chat(reasoning_effort="low"), "amazon.nova-pro-v1:0")


OPUS_46 = "us.anthropic.claude-opus-4-6-v1"


def test_an_anthropic_clients_thinking_and_effort_reach_claude_as_asked() -> None:
    effort_only = chat(reasoning_effort="low", max_tokens=700).with_messages_intent(
        MessagesIntent(thinking=False, effort="low")
    )
    body = sent(effort_only, OPUS_46)
    assert "additionalModelRequestFields" not in body
    assert body["outputConfig"] == {"effort": "low"}
    assert body["inferenceConfig"] == {"maxTokens": 700}
    exact = chat(reasoning_effort="medium", max_tokens=9000).with_messages_intent(
        MessagesIntent(thinking=True, budget=6000, effort="max")
    )
    body = sent(exact, f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{OPUS_46}")
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 6000}}
    assert body["outputConfig"] == {"effort": "max"}


def test_thinking_display_and_a_tool_loop_on_opus_4_7() -> None:
    """A Messages client's display is passed on; in an open tool loop an OpenAI client's
    thinking is left out, and the effort that stood for it with it."""
    opus = "global.anthropic.claude-opus-4-7"
    mine = chat(reasoning_effort="low", max_tokens=9000).with_messages_intent(
        MessagesIntent(thinking=True, budget=2048, display="omitted")
    )
    assert sent(mine, OPUS_46)["additionalModelRequestFields"]["thinking"] == {
        "type": "enabled",
        "budget_tokens": 2048,
        "display": "omitted",
    }
    in_loop = sent(chat(tool_history()[:4], tools=[WEATHER], reasoning_effort="low"), opus)
    assert "additionalModelRequestFields" not in in_loop
    assert "outputConfig" not in in_loop


def test_claude_from_opus_4_7_takes_no_sampling_params() -> None:
    adapter = make_adapter()
    assert {"temperature", "top_p", "top_k"} <= adapter.supported_for(OPUS_46)
    assert not {"temperature", "top_p", "top_k"} & adapter.supported_for("us.anthropic.claude-opus-4-7-v1")
    # Claude 2 as Bedrock names it is one of the older models
    assert {"temperature", "top_p", "top_k"} <= adapter.supported_for("anthropic.claude-v2:1")


def test_reasoning_effort_is_adaptive_thinking_for_claude_from_opus_4_7() -> None:
    body = sent(chat(reasoning_effort="medium"), "us.anthropic.claude-opus-4-7-v1")
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "adaptive", "display": "summarized"}}
    assert body["outputConfig"] == {"effort": "medium"}
    assert body["inferenceConfig"] == {"maxTokens": 4096 + 4096}
    older = sent(chat(reasoning_effort="medium"), OPUS_46)
    assert older["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 4096}}
    assert "outputConfig" not in older


@pytest.mark.parametrize(("model", "effort"), [(CHAT_MODEL, "low"), (ARN, "low"), (OPUS_46, "xhigh")])
def test_an_effort_the_claude_model_lacks_is_refused_or_dropped(model: str, effort: str) -> None:
    request = chat(reasoning_effort="high", max_tokens=700).with_messages_intent(
        MessagesIntent(thinking=False, effort=effort)
    )
    with pytest.raises(UnsupportedParamError) as info:
        sent(request, model)
    assert info.value.param == "output_config.effort"
    adapter = make_adapter()
    assert adapter.values_refused(request, model) == ("output_config.effort",)
    dropped = adapter.without_values(request, model, ("output_config.effort",))
    body = sent(dropped, model)
    assert "outputConfig" not in body
    assert "additionalModelRequestFields" not in body  # effort alone: no thinking either


def test_family_params_are_supported_per_model() -> None:
    adapter = make_adapter()
    assert adapter.supported_for(CHAT_MODEL) == adapter.supported_for(ARN) == BedrockAdapter.supported_params
    nova = adapter.supported_for("us.amazon.nova-pro-v1:0")
    assert "top_k" in nova
    assert "reasoning_effort" not in nova
    assert not {"top_k", "reasoning_effort"} & adapter.supported_for("meta.llama3-70b-instruct-v1:0")
    assert "temperature" in adapter.supported_for("meta.llama3-70b-instruct-v1:0")


def test_supported_params_are_chat_fields_and_exclude_what_converse_lacks() -> None:
    params = BedrockAdapter.supported_params
    assert params <= set(ChatRequest.model_fields)
    assert {"temperature", "top_p", "top_k", "stop", "tools", "tool_choice", "reasoning_effort"} <= params
    for lacking in (
        "n",
        "seed",
        "logprobs",
        "response_format",
        "parallel_tool_calls",
        "user",
        "presence_penalty",
    ):
        assert lacking not in params


# --- response parsing -----------------------------------------------------------------------


def converse(content: list[dict[str, Any]], stop: str = "end_turn", **usage: int) -> bytes:
    body = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": usage or {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
        "metrics": {"latencyMs": 100},
    }
    return orjson.dumps(body)


def parse(body: bytes) -> ChatResponse:
    return make_adapter().parse_chat(body, "m-x")


def test_parse_text_and_usage_with_cache_numbers() -> None:
    usage_in = {"inputTokens": 10, "outputTokens": 5, "totalTokens": 135}
    resp = parse(
        converse(
            [{"text": "Hello"}, {"text": " world"}],
            **usage_in,
            cacheReadInputTokens=100,
            cacheWriteInputTokens=20,
        )
    )
    assert resp.id.startswith("chatcmpl-")
    assert resp.model == "m-x"
    assert resp.choices[0].message.content == "Hello world"
    assert resp.choices[0].finish_reason == "stop"
    usage = resp.usage
    assert usage is not None
    # inputTokens excludes cache reads and writes; totalTokens is kept as reported
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (130, 5, 135)
    assert (usage.cached_tokens, usage.cache_write_tokens) == (100, 20)
    plain = parse(converse([{"text": "x"}])).usage
    assert plain is not None
    assert (plain.prompt_tokens, plain.total_tokens, plain.prompt_tokens_details) == (10, 15, None)


def test_parse_tool_use_and_reasoning() -> None:
    body = converse(
        [
            {"reasoningContent": {"reasoningText": {"text": "Need weather.", "signature": "sig"}}},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"location": "Paris"}}},
            {"toolUse": {"toolUseId": "tooluse_2", "name": "now", "input": {}}},
        ],
        stop="tool_use",
    )
    choice = parse(body).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.reasoning_content == "Need weather."
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls] == [("tooluse_1", "get_weather"), ("tooluse_2", "now")]
    assert orjson.loads(calls[0].function.arguments) == {"location": "Paris"}
    assert calls[1].function.arguments == "{}"


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("an_unknown_reason", "stop"),
    ],
)
def test_stop_reasons(reason: str, finish: str) -> None:
    assert parse(converse([{"text": "x"}], stop=reason)).choices[0].finish_reason == finish


@pytest.mark.parametrize("reason", ["malformed_model_output", "malformed_tool_use"])
def test_a_malformed_answer_is_a_retryable_provider_error(reason: str) -> None:
    # not a clean "stop": an agent would take the unusable answer as the model's last word
    with pytest.raises(ProviderError, match=reason) as info:
        parse(converse([{"text": "x"}], stop=reason))
    assert info.value.retryable


@pytest.mark.parametrize(
    "body", [b"not json", b'{"output": {}}', b'{"output": {"message": {"content": [{"toolUse": {}}]}}}']
)
def test_bad_bodies_are_provider_response_errors(body: bytes) -> None:
    with pytest.raises(ProviderResponseError):
        parse(body)


# --- event-stream framing ---------------------------------------------------------------------


def full_frame_with_every_header_type() -> bytes:
    headers = (
        b"\x01a\x00"  # true
        + b"\x01b\x01"  # false
        + b"\x01c\x02"
        + struct.pack(">b", -5)
        + b"\x01d\x03"
        + struct.pack(">h", 300)
        + b"\x01e\x04"
        + struct.pack(">i", -70000)
        + b"\x01f\x05"
        + struct.pack(">q", 2**40)
        + b"\x01g\x06"
        + struct.pack(">H", 3)
        + b"\x00\xff\x01"
        + b"\x01h\x07"
        + struct.pack(">H", 2)
        + "é".encode()
        + b"\x01i\x08"
        + struct.pack(">q", 1700000000000)
        + b"\x01j\x09"
        + bytes(range(16))
    )
    payload = b'{"x": 1}'
    prelude = struct.pack(">II", 16 + len(headers) + len(payload), len(headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def test_decoder_reads_every_header_type_byte_by_byte() -> None:
    data = full_frame_with_every_header_type() * 2
    decoder = EventStreamDecoder()
    messages = [m for i in range(len(data)) for m in decoder.feed(data[i : i + 1])]
    assert decoder.pending == 0
    assert len(messages) == 2
    assert dict(messages[0].headers) == {
        "a": True, "b": False, "c": -5, "d": 300, "e": -70000, "f": 2**40,
        "g": b"\x00\xff\x01", "h": "é", "i": 1700000000000, "j": bytes(range(16)),
    }  # fmt: skip
    assert messages[0].payload == b'{"x": 1}'
    assert messages[0].header("h") == "é"
    assert messages[0].header("a") is None  # not a string header


def test_fake_frames_agree_with_botocores_parser() -> None:
    data = event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hé"}})
    data += exception_frame("throttlingException", "slow down")
    reference = EventStreamBuffer()
    reference.add_data(data)
    expected = [(m.headers, m.payload) for m in reference]
    ours = EventStreamDecoder().feed(data)
    assert [(dict(m.headers), m.payload) for m in ours] == expected
    assert expected[1][0][":exception-type"] == "throttlingException"


@pytest.mark.parametrize(
    ("position", "text"),
    [(9, "prelude CRC"), (14, "message CRC"), (-1, "message CRC")],
)
def test_corrupted_frames_are_detected(position: int, text: str) -> None:
    data = bytearray(event_frame("messageStart", {"role": "assistant"}))
    data[position] ^= 0x01
    with pytest.raises(EventStreamError, match=text):
        EventStreamDecoder().feed(bytes(data))


def test_a_corrupted_frame_keeps_the_events_before_it_in_the_same_read() -> None:
    good = event_frame("messageStart", {"role": "assistant"})
    good += event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "kept"}})
    bad = bytearray(event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}}))
    bad[-1] ^= 0xFF
    with pytest.raises(PartialStreamError) as info:  # the chunks decoded before it go with the error
        make_adapter().stream_decoder("m").feed(good + bytes(bad))
    assert [c.choices[0].delta.content for c in info.value.items] == ["", "kept"]  # type: ignore[union-attr]
    assert isinstance(info.value.error, ProviderResponseError)
    assert "message CRC" in info.value.error.message


def test_impossible_lengths_and_bad_headers_are_detected() -> None:
    prelude = struct.pack(">II", 10, 0)
    with pytest.raises(EventStreamError, match="impossible lengths"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))
    with pytest.raises(EventStreamError, match="header value type 42"):
        EventStreamDecoder().feed(_raw_frame(b"\x01a\x2a", b""))
    with pytest.raises(EventStreamError, match="malformed"):
        EventStreamDecoder().feed(_raw_frame(b"\x05ab", b""))


def _raw_frame(headers: bytes, payload: bytes) -> bytes:
    prelude = struct.pack(">II", 16 + len(headers) + len(payload), len(headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


# --- stream decoding --------------------------------------------------------------------------------


def delta(index: int, **d: Any) -> bytes:
    return event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": d})


def tool_start(index: int, tool_id: str, name: str) -> bytes:
    start = {"toolUse": {"toolUseId": tool_id, "name": name}}
    return event_frame("contentBlockStart", {"contentBlockIndex": index, "start": start})


def stop(index: int) -> bytes:
    return event_frame("contentBlockStop", {"contentBlockIndex": index})


START = event_frame("messageStart", {"role": "assistant"})
METADATA = event_frame(
    "metadata",
    {
        "usage": {"inputTokens": 25, "outputTokens": 42, "totalTokens": 167, "cacheReadInputTokens": 100},
        "metrics": {"latencyMs": 321},
    },
)


def tool_stream() -> bytes:
    return b"".join(
        [
            START,
            delta(0, reasoningContent={"text": "Hm, "}),
            delta(0, reasoningContent={"text": "weather."}),
            delta(0, reasoningContent={"signature": "sig"}),
            stop(0),
            delta(1, text="Let me check ✓ "),
            delta(1, text="now."),
            stop(1),
            tool_start(2, "tooluse_1", "get_weather"),
            delta(2, toolUse={"input": '{"loca'}),
            delta(2, toolUse={"input": 'tion": "Par'}),
            delta(2, toolUse={"input": 'is"}'}),
            stop(2),
            tool_start(3, "tooluse_2", "now"),
            delta(3, toolUse={"input": ""}),
            delta(3, toolUse={"input": "{}"}),
            stop(3),
            event_frame("messageStop", {"stopReason": "tool_use"}),
            event_frame("someFutureEvent", {"detail": 1}),
            METADATA,
        ]
    )


def decode_bytewise(data: bytes) -> list[ChatChunk]:
    return support.decode_bytewise(make_adapter().stream_decoder("m-x"), data)


def test_stream_decoded_byte_by_byte() -> None:
    chunks = decode_bytewise(tool_stream())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    assert {c.model for c in chunks} == {"m-x"}
    got = reassemble(chunks)
    assert got["text"] == "Let me check ✓ now."
    assert got["thinking"] == "Hm, weather."
    assert got["finish"] == "tool_calls"
    assert sorted(got["calls"]) == [0, 1]  # numbered by tool block, not content block index
    assert (got["calls"][0]["id"], got["calls"][0]["name"]) == ("tooluse_1", "get_weather")
    assert orjson.loads(got["calls"][0]["arguments"]) == {"location": "Paris"}
    assert (got["calls"][1]["name"], got["calls"][1]["arguments"]) == ("now", "{}")


def test_stream_tool_call_deltas_are_openai_shaped() -> None:
    chunks = decode_bytewise(tool_stream())
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
    starts = [call for call in calls if call.id is not None]
    assert [(s.index, s.id, s.type) for s in starts] == [
        (0, "tooluse_1", "function"),
        (1, "tooluse_2", "function"),
    ]
    assert starts[0].function is not None
    assert (starts[0].function.name, starts[0].function.arguments) == ("get_weather", "")
    pieces = [call for call in calls if call.id is None]
    assert [p.index for p in pieces] == [0, 0, 0, 1]  # the empty input piece is skipped
    assert all(p.type is None and p.function is not None and p.function.name is None for p in pieces)


def test_stream_final_usage_chunk() -> None:
    chunks = decode_bytewise(tool_stream())
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (125, 42, 167)
    assert last.usage.cached_tokens == 100
    assert all(c.usage is None for c in chunks[:-1])


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (START + delta(0, text="par"), "before messageStop"),
        (START + delta(0, text="x") + event_frame("messageStop", {"stopReason": "end_turn"}), "metadata"),
        (START + METADATA[:-3], "middle of an event"),
    ],
)
def test_incomplete_streams_are_connection_errors(data: bytes, text: str) -> None:
    decoder = make_adapter().stream_decoder("m-x")
    decoder.feed(data)
    with pytest.raises(ProviderConnectionError, match=text):
        decoder.close()


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("throttlingException", RateLimitError),
        ("validationException", InvalidRequestError),
        ("modelStreamErrorException", ProviderError),
        ("internalServerException", ProviderError),
        ("serviceUnavailableException", ProviderOverloadedError),
    ],
)
def test_exception_frames_raise_the_mapped_error(kind: str, cls: type[UniInferError]) -> None:
    decoder = make_adapter().stream_decoder("m-x")
    decoder.feed(START)
    with pytest.raises(cls) as info:
        decoder.feed(exception_frame(kind, "Something broke"))
    assert type(info.value) is cls
    assert info.value.provider == "bedrock"
    assert info.value.message == f"bedrock: {kind[0].upper()}{kind[1:]}: Something broke"


def test_an_exception_frame_after_events_in_one_read_hands_them_over_with_the_error() -> None:
    from uniinfer.providers.base import PartialStreamError

    decoder = make_adapter().stream_decoder("m-x")
    text = event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "kept"}})
    with pytest.raises(PartialStreamError) as info:
        decoder.feed(START + text + exception_frame("throttlingException", "slow down"))
    assert [c.choices[0].delta.content for c in info.value.items if c.choices] == ["", "kept"]
    assert isinstance(info.value.error, RateLimitError)


def test_error_frames_and_bad_payloads() -> None:
    headers = {
        ":message-type": "error",
        ":error-code": "ThrottlingException",
        ":error-message": "Rate exceeded",
    }
    with pytest.raises(RateLimitError, match="Rate exceeded"):
        make_adapter().stream_decoder("m").feed(frame(headers, b""))
    with pytest.raises(ProviderResponseError, match="contentBlockDelta"):
        make_adapter().stream_decoder("m").feed(event_frame("contentBlockDelta", {"delta": {"text": "x"}}))
    corrupted = bytearray(START)
    corrupted[-1] ^= 0xFF
    with pytest.raises(ProviderResponseError, match="CRC"):
        make_adapter().stream_decoder("m").feed(bytes(corrupted))


# --- error mapping -----------------------------------------------------------------------------------


def aws_error(kind: str | None, message: str, status: int) -> UniInferError:
    headers = (
        {"X-Amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"} if kind else {}
    )
    return make_adapter().parse_error(status, headers, orjson.dumps({"message": message}))


@pytest.mark.parametrize(
    ("status", "kind", "cls"),
    [
        (400, "ValidationException", InvalidRequestError),
        (403, "AccessDeniedException", PermissionDeniedError),
        (403, "InvalidSignatureException", AuthenticationError),
        (403, "UnrecognizedClientException", AuthenticationError),
        (403, "ExpiredTokenException", AuthenticationError),
        (404, "ResourceNotFoundException", ModelNotFoundError),
        (408, "ModelTimeoutException", ProviderTimeoutError),
        (424, "ModelErrorException", ProviderError),
        (429, "ThrottlingException", RateLimitError),
        (429, "ModelNotReadyException", RateLimitError),
        (400, "ServiceQuotaExceededException", RateLimitError),
        (500, "InternalServerException", ProviderError),
        (503, "ServiceUnavailableException", ProviderOverloadedError),
        (403, None, PermissionDeniedError),
        (502, "SomethingNewException", ProviderError),
    ],
)
def test_error_mapping_by_type_then_status(status: int, kind: str | None, cls: type[UniInferError]) -> None:
    err = aws_error(kind, "it failed", status)
    assert type(err) is cls
    assert err.upstream_status == status
    assert err.message == (f"bedrock: {kind}: it failed" if kind else "bedrock: it failed")
    assert err.retry_after is None  # Bedrock sends no Retry-After


def test_validation_details_become_context_length_and_param() -> None:
    assert (
        type(aws_error("ValidationException", "Input is too long for requested model.", 400))
        is ContextLengthExceededError
    )
    err = aws_error(
        "ValidationException",
        "1 validation error detected: Value '1.5' at 'inferenceConfig.temperature' failed to satisfy "
        "constraint: Member must have value less than or equal to 1",
        400,
    )
    assert err.param == "temperature"
    body_type = make_adapter().parse_error(
        400, {}, b'{"__type": "com.amazon.coral#ValidationException", "Message": "bad"}'
    )
    assert body_type.message == "bedrock: ValidationException: bad"
    assert make_adapter().parse_error(500, {}, b"<html>oops</html>").message == "bedrock: <html>oops</html>"


def test_credentials_are_redacted_from_errors() -> None:
    adapter = make_adapter(**KEYS, session_token="SESSIONTOKEN123")
    echoed = f"canonical: x-amz-security-token:SESSIONTOKEN123 {SECRET_KEY} Credential={ACCESS_KEY}/x"
    err = adapter.parse_error(
        403, {"x-amzn-errortype": "InvalidSignatureException"}, orjson.dumps({"message": echoed})
    )
    for secret in ("SESSIONTOKEN123", SECRET_KEY, ACCESS_KEY):
        assert secret not in err.message
        assert secret not in (err.upstream_body or "")
    keyed = make_adapter(key=API_KEY).parse_error(403, {}, orjson.dumps({"message": f"bad key {API_KEY}"}))
    assert API_KEY not in keyed.message


# --- credentials --------------------------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> pytest.MonkeyPatch:
    """An environment where the AWS chain finds nothing unless a test puts it there."""
    for var in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_BEARER_TOKEN_BEDROCK", "AWS_REGION", "AWS_DEFAULT_REGION",
    ):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def test_an_unset_region_is_the_environments_then_the_profiles_then_us_east_1(
    aws_env: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    assert chain_adapter().region == "us-east-1"  # nothing anywhere: the long-standing default
    (tmp_path / "config").write_text("[default]\nregion = eu-central-1\n[profile eu]\nregion = eu-west-3\n")
    assert chain_adapter().region == "eu-central-1"
    assert chain_adapter(profile="eu").region == "eu-west-3"
    aws_env.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert chain_adapter().region == "ap-south-1"
    aws_env.setenv("AWS_REGION", "eu-west-1")
    adapter = chain_adapter()
    assert adapter.region == "eu-west-1"  # as the AWS SDKs read it, before AWS_DEFAULT_REGION
    assert adapter.base_url == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    assert chain_adapter(region="us-west-2").region == "us-west-2"  # the configured one wins
    aws_env.setenv("AWS_REGION", "eu-west-1.evil.com")
    with pytest.raises(ConfigError, match="AWS_REGION is no AWS region name") as info:
        chain_adapter()
    assert "evil" not in info.value.message


def chain_adapter(url: str = DEFAULT_URL, **options: Any) -> BedrockAdapter:
    reg = default_registry()
    adapter = reg.create(reg.get("bedrock"), Endpoint(base_url=url, options=options))
    assert isinstance(adapter, BedrockAdapter)
    return adapter


def count_sessions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Thread ids of every botocore session the adapter creates."""
    threads: list[int] = []
    original = botocore.session.get_session

    def recording(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return original(*args, **kwargs)

    monkeypatch.setattr(botocore.session, "get_session", recording)
    return threads


async def test_chain_resolves_env_keys_once_in_a_thread(
    aws_env: pytest.MonkeyPatch, client: HttpClient
) -> None:
    aws_env.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    threads = count_sessions(aws_env)
    app = bedrock_app()
    async with run_fake(app) as url:
        adapter = chain_adapter(url)
        with pytest.raises(AuthenticationError, match="prepare_credentials"):
            adapter.chat_request(chat(), CHAT_MODEL, stream=False)
        await adapter.prepare_credentials(client)
        await adapter.prepare_credentials(client)
        resp = await call(client, adapter, chat(messages=[{"role": "user", "content": "from env"}]))
    assert resp.choices[0].message.content == "echo: from env"
    assert len(threads) == 1  # resolved once, then cached
    assert threads[0] != threading.get_ident()  # off the event loop
    assert app["requests"][-1]["auth"] == "sigv4"


async def test_no_credentials_is_a_clear_authentication_error(
    aws_env: pytest.MonkeyPatch, client: HttpClient
) -> None:
    threads = count_sessions(aws_env)
    adapter = chain_adapter()
    with pytest.raises(AuthenticationError) as info:
        await adapter.prepare_credentials(client)
    message = info.value.message
    assert message.startswith("bedrock: no AWS credentials found")
    for hint in ("access_key_id", "AWS_BEARER_TOKEN_BEDROCK", "AWS_ACCESS_KEY_ID", "profile"):
        assert hint in message
    assert info.value.provider == "bedrock"
    with pytest.raises(AuthenticationError):
        await adapter.prepare_credentials(client)
    assert len(threads) == 1  # the failed lookup is not repeated at once


async def test_profile_option_selects_a_shared_credentials_profile(
    aws_env: pytest.MonkeyPatch, tmp_path: Any, client: HttpClient
) -> None:
    (tmp_path / "credentials").write_text(
        f"[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = nope\n\n"
        f"[dev]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    )
    async with run_fake(bedrock_app()) as url:
        adapter = chain_adapter(url, profile="dev")
        await adapter.prepare_credentials(client)
        resp = await call(client, adapter, chat())
    assert resp.choices[0].message.content == "echo: hi"
    with pytest.raises(AuthenticationError, match=r"ProfileNotFound.*\(prod\)"):
        await chain_adapter(profile="prod").prepare_credentials(client)


class FakeSession:
    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials

    def set_config_variable(self, name: str, value: Any) -> None:
        raise AssertionError("no profile was configured")

    def get_credentials(self) -> Any:
        return self.credentials


async def test_expiring_credentials_are_refreshed_once_in_a_thread(
    monkeypatch: pytest.MonkeyPatch, client: HttpClient
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    clock = [now]
    refreshed: list[int] = []

    def refresh() -> dict[str, str]:
        refreshed.append(threading.get_ident())
        expiry = clock[0] + datetime.timedelta(hours=1)
        return {
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "token": "tok-2",
            "expiry_time": expiry.isoformat(),
        }

    creds = RefreshableCredentials(
        ACCESS_KEY,
        SECRET_KEY,
        "tok-1",
        now + datetime.timedelta(hours=1),
        refresh,
        "test",
        time_fetcher=lambda: clock[0],
    )
    frozen_calls: list[int] = []
    original = creds.get_frozen_credentials

    def get_frozen_credentials() -> Any:
        frozen_calls.append(threading.get_ident())
        return original()

    monkeypatch.setattr(creds, "get_frozen_credentials", get_frozen_credentials)
    monkeypatch.setattr(botocore.session, "get_session", lambda: FakeSession(creds))
    adapter = chain_adapter()

    def token() -> str:
        return adapter.chat_request(chat(), CHAT_MODEL, stream=False).headers["X-Amz-Security-Token"]

    await adapter.prepare_credentials(client)
    assert (token(), refreshed) == ("tok-1", [])
    clock[0] = now + datetime.timedelta(minutes=54)  # 6 minutes left: still fine
    await adapter.prepare_credentials(client)
    assert (token(), refreshed) == ("tok-1", [])
    clock[0] = now + datetime.timedelta(minutes=56)  # 4 minutes left: refresh, single-flight
    await asyncio.gather(*(adapter.prepare_credentials(client) for _ in range(5)))
    assert token() == "tok-2"
    assert len(refreshed) == 1
    assert len(frozen_calls) == 2  # the first lookup, then one refresh for five waiting requests
    assert threading.get_ident() not in {*refreshed, *frozen_calls}


async def test_api_key_mode_needs_no_aws_credentials(aws_env: pytest.MonkeyPatch, client: HttpClient) -> None:
    threads = count_sessions(aws_env)
    app = bedrock_app()
    async with run_fake(app) as url:
        adapter = make_adapter(url, key=API_KEY)
        await adapter.prepare_credentials(client)
        resp = await call(client, adapter, chat())
        wrong = make_adapter(url, key="bedrock-api-key-wrong")
        with pytest.raises(AuthenticationError, match="UnrecognizedClientException") as info:
            await call(client, wrong, chat())
    assert resp.choices[0].message.content == "echo: hi"
    assert app["requests"][0]["auth"] == "bearer"
    assert threads == []
    assert "bedrock-api-key-wrong" not in info.value.message


# --- against the fake, over a socket --------------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    http = HttpClient()
    yield http
    await http.aclose()


@pytest.fixture
async def fake() -> AsyncIterator[tuple[web.Application, str]]:
    app = bedrock_app()
    async with run_fake(app) as url:
        yield app, url


async def ready(url: str, client: HttpClient, **options: Any) -> BedrockAdapter:
    adapter = make_adapter(url, **(options or KEYS))
    await adapter.prepare_credentials(client)
    return adapter


async def call(
    client: HttpClient, adapter: ProviderAdapter, request: ChatRequest, model: str = CHAT_MODEL
) -> ChatResponse:
    resp = await client.send(adapter.chat_request(request, model, stream=False), Timeouts(), adapter.name)
    if resp.status >= 400:
        raise adapter.parse_error(resp.status, resp.headers, resp.body)
    return adapter.parse_chat(resp.body, model)


async def stream(
    client: HttpClient, adapter: ProviderAdapter, request: ChatRequest, model: str = CHAT_MODEL
) -> list[ChatChunk]:
    upstream = await client.open_stream(
        adapter.chat_request(request, model, stream=True), Timeouts(), adapter.name
    )
    complete = False
    try:
        if upstream.status >= 400:
            raise adapter.parse_error(upstream.status, upstream.headers, await upstream.read())
        assert upstream.headers["Content-Type"] == "application/vnd.amazon.eventstream"
        decoder = adapter.stream_decoder(model)
        chunks = [c async for data in upstream.iter_bytes() for c in decoder.feed(data)]
        chunks += decoder.close()
        complete = True
        return chunks
    finally:
        HttpClient.close_stream(upstream, complete=complete)


async def embed(
    client: HttpClient, adapter: ProviderAdapter, request: EmbeddingRequest, model: str
) -> EmbeddingResponse:
    resp = await client.send(adapter.embed_request(request, model), Timeouts(), adapter.name)
    if resp.status >= 400:
        raise adapter.parse_error(resp.status, resp.headers, resp.body)
    return adapter.parse_embed(resp.body, model)


async def test_fake_echo_with_usage_and_recorded_request(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    app, url = fake
    adapter = await ready(url, client)
    request = chat(
        [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello there"}], stop=["zzz"]
    )
    resp = await call(client, adapter, request)
    assert resp.choices[0].message.content == "echo: hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (3, 3, 6)
    recorded = app["requests"][-1]
    assert (recorded["model"], recorded["action"], recorded["auth"]) == (CHAT_MODEL, "converse", "sigv4")
    assert recorded["path"] == f"/model/{CHAT_MODEL}/converse"
    assert recorded["body"]["system"] == [{"text": "sys"}]
    assert recorded["body"]["inferenceConfig"] == {"stopSequences": ["zzz"]}


async def test_fake_cache_usage_arn_models_and_stop_reasons(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    app, url = fake
    adapter = await ready(url, client)
    cached = await call(client, adapter, chat(), "anthropic.claude-cached-v1:0")
    assert cached.usage is not None
    assert (cached.usage.prompt_tokens, cached.usage.cached_tokens, cached.usage.cache_write_tokens) == (
        121,
        100,
        20,
    )
    assert cached.usage.total_tokens == cached.usage.prompt_tokens + cached.usage.completion_tokens
    assert (await call(client, adapter, chat(), ARN)).choices[0].message.content == "echo: hi"
    assert app["requests"][-1]["model"] == ARN
    words = chat([{"role": "user", "content": "one two three four"}], max_tokens=2)
    cut = await call(client, adapter, words)
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("echo: one", "length")


async def test_signature_over_a_reencoded_path_is_rejected(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    """Why the colon stays literal: aiohttp sends ``:`` for ``%3A``, so a signature over
    ``%3A`` (what boto3 signs) does not match what the server receives."""
    _, url = fake
    adapter = await ready(url, client)
    good = adapter.chat_request(chat(), CHAT_MODEL, stream=False)
    encoded_url = good.url.replace("v1:0", "v1%3A0")
    headers = bedrock._sign(
        encoded_url,
        good.body,
        {"content-type": "application/json"},
        adapter._credentials.frozen(),
        "us-east-1",
    )
    resp = await client.send(HttpRequest(encoded_url, good.body, headers), Timeouts(), "bedrock")
    assert resp.status == 403
    assert resp.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException:")


async def test_wrong_secret_and_unknown_key_are_authentication_errors_without_secrets(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    _, url = fake
    wrong = await ready(
        url, client, access_key_id=ACCESS_KEY, secret_access_key="not-the-secret", session_token="TOKEN-XYZ"
    )
    with pytest.raises(AuthenticationError) as info:
        await call(client, wrong, chat())
    err = info.value
    assert err.upstream_status == 403
    assert "InvalidSignatureException" in err.message
    assert "Canonical String" in (err.upstream_body or "")  # AWS echoes the canonical request...
    for secret in ("not-the-secret", "TOKEN-XYZ", ACCESS_KEY):  # ... with the token: redacted
        assert secret not in err.message
        assert secret not in (err.upstream_body or "")
    unknown = await ready(url, client, access_key_id="AKIDUNKNOWN", secret_access_key=SECRET_KEY)
    with pytest.raises(AuthenticationError, match="UnrecognizedClientException"):
        await call(client, unknown, chat())
    other_region = await ready(url, client, region="eu-west-1", **KEYS)
    with pytest.raises(AuthenticationError, match="scoped to a valid region"):
        await call(client, other_region, chat())


async def test_fake_stream_with_final_usage_chunk(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    _, url = fake
    adapter = await ready(url, client)
    chunks = await stream(client, adapter, chat([{"role": "user", "content": "hello stream ✓"}], stream=True))
    got = reassemble(chunks)
    assert got["text"] == "echo: hello stream ✓"
    assert got["finish"] == "stop"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


async def test_fake_stream_tool_call_and_reasoning(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    _, url = fake
    adapter = await ready(url, client)
    chunks = await stream(
        client, adapter, chat(tools=[WEATHER], stream=True, reasoning_effort="low"), "tool-anthropic.claude-x"
    )
    got = reassemble(chunks)
    assert got["finish"] == "tool_calls"
    assert got["thinking"] == "The user wants an echo."
    assert list(got["calls"]) == [0]
    assert got["calls"][0]["name"] == "get_weather"
    assert got["calls"][0]["id"].startswith("tooluse_")
    assert orjson.loads(got["calls"][0]["arguments"]) == {"location": "Paris"}
    assert chunks[-1].usage is not None


async def test_a_streamed_tool_call_without_arguments_gets_an_empty_object(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    """ConverseStream sends no input at all for a call without arguments (the block's start
    and stop only): the call's arguments are ``{}``, as unstreamed, not an empty string that
    an OpenAI client's ``json.loads`` refuses."""
    _, url = fake
    adapter = await ready(url, client)
    now = {"name": "now", "strict": True, "parameters": {"type": "object", "properties": {}}}
    request = chat(tools=[{"type": "function", "function": now}], stream=True)
    model = "anthropic.claude-sonnet-4-5-tool-v1:0"
    chunks = await stream(client, adapter, request, model)
    use = {"toolUse": {"toolUseId": "tooluse_1", "name": "now", "input": {}}}
    message = {
        "output": {"message": {"content": [use]}},
        "stopReason": "tool_use",
        "usage": {},
        "metrics": {},
    }
    frames = b"".join(stream_events(message))
    assert b'"input"' not in frames  # the fake streams it as Bedrock does
    got = reassemble(chunks)
    assert got["calls"][0]["name"] == "now"
    assert got["calls"][0]["arguments"] == "{}"
    answer = await call(client, adapter, request.model_copy(update={"stream": False}), model)
    assert (answer.choices[0].message.tool_calls or [])[0].function.arguments == "{}"


async def test_a_tool_history_without_tools_declares_the_historys_tools(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    """A last turn without ``tools`` (a summary of a tool loop): Converse refuses tool blocks
    without a toolConfig, so the history's tools are declared, said to be unavailable now."""
    app, url = fake
    adapter = await ready(url, client)
    call_ = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    history = [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call_, {**call_, "id": "call_2"}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "22C"},
        {"role": "user", "content": "summarise in one line"},
    ]
    answer = await call(client, adapter, chat(history))
    assert answer.choices[0].message.content == "echo: summarise in one line"
    config = app["requests"][-1]["body"]["toolConfig"]
    assert config == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Called earlier in this conversation; not available now.",
                    "inputSchema": {"json": {"type": "object"}},
                }
            }
        ]
    }
    # a conversation without tool calls still sends none
    await call(client, adapter, chat())
    assert "toolConfig" not in app["requests"][-1]["body"]


async def test_fake_tool_round_trip_is_accepted(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    """The fake checks toolResult ids against the previous toolUse ids, and thinking in a tool loop."""
    app, url = fake
    adapter = await ready(url, client)
    first = await call(client, adapter, chat(tools=[WEATHER]), "tool-anthropic.claude-x")
    calls = first.choices[0].message.tool_calls or []
    history = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temp": 21}'},
    ]
    second = await call(
        client, adapter, chat(history, tools=[WEATHER], reasoning_effort="low"), "tool-anthropic.claude-x"
    )
    assert second.choices[0].message.content == 'echo: {"temp":21}'
    assert "additionalModelRequestFields" not in app["requests"][-1]["body"]


async def test_fake_cut_and_midstream_exception(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    _, url = fake
    adapter = await ready(url, client)
    with pytest.raises(ProviderConnectionError):
        await stream(client, adapter, chat(stream=True), "cut-anthropic.claude-x")
    with pytest.raises(RateLimitError, match="Too many tokens"):
        await stream(client, adapter, chat(stream=True), "midstream-anthropic.claude-x")


@pytest.mark.parametrize(
    ("model", "cls"),
    [
        ("error-400", InvalidRequestError),
        ("error-403", PermissionDeniedError),
        ("error-404", ModelNotFoundError),
        ("error-408", ProviderTimeoutError),
        ("error-424", ProviderError),
        ("error-429", RateLimitError),
        ("error-500", ProviderError),
        ("error-503", ProviderOverloadedError),
    ],
)
async def test_fake_failure_modes_map_to_errors(
    fake: tuple[web.Application, str], client: HttpClient, model: str, cls: type[UniInferError]
) -> None:
    _, url = fake
    adapter = await ready(url, client)
    with pytest.raises(cls) as info:
        await call(client, adapter, chat(), model)
    assert type(info.value) is cls
    assert info.value.retry_after is None
    with pytest.raises(cls):
        await stream(client, adapter, chat(stream=True), model)


async def test_fake_validation_errors_name_the_field(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    _, url = fake
    adapter = await ready(url, client)
    with pytest.raises(InvalidRequestError) as info:
        await call(client, adapter, chat(temperature=1.5))
    assert info.value.param == "temperature"
    assert "at 'inferenceConfig.temperature'" in info.value.message
    with pytest.raises(ContextLengthExceededError):
        await call(client, adapter, chat([{"role": "user", "content": "word " * 60_000}]))
    with pytest.raises(InvalidRequestError, match="must start with a user message"):
        await call(client, adapter, chat([{"role": "assistant", "content": "hello"}]))
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    ok = await call(
        client, adapter, chat([{"role": "user", "content": [{"type": "text", "text": "see"}, image]}])
    )
    assert ok.choices[0].message.content == "echo: see"


async def test_fake_embeddings_titan_and_cohere(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    app, url = fake
    adapter = await ready(url, client)
    titan = await embed(
        client,
        adapter,
        EmbeddingRequest(model="e", input="hello world", dimensions=256),
        "amazon.titan-embed-text-v2:0",
    )
    assert len(titan.data) == 1
    assert len(titan.data[0].embedding) == 256
    assert (titan.usage.prompt_tokens, titan.usage.total_tokens) == (2, 2)
    assert app["requests"][-1]["body"] == {"inputText": "hello world", "dimensions": 256}
    texts = ["a", "b c", "d"]
    cohere = await embed(client, adapter, EmbeddingRequest(model="e", input=texts), "cohere.embed-english-v3")
    assert [d.index for d in cohere.data] == [0, 1, 2]
    assert all(len(d.embedding) == 1024 for d in cohere.data)
    assert cohere.usage.prompt_tokens == 0
    assert app["requests"][-1]["body"] == {"texts": texts, "input_type": "search_document"}
    # a provider entry for queries embeds them as queries (retrieval needs both kinds)
    queries = await ready(url, client, embed_input_type="search_query", **KEYS)
    await embed(client, queries, EmbeddingRequest(model="e", input=["where?"]), "cohere.embed-english-v3")
    assert app["requests"][-1]["body"] == {"texts": ["where?"], "input_type": "search_query"}
    sent_before = len(app["requests"])
    with pytest.raises(UnsupportedFeatureError, match="at most 1 input") as info:
        adapter.embed_request(EmbeddingRequest(model="e", input=["a", "b"]), "amazon.titan-embed-text-v2:0")
    assert (info.value.param, info.value.provider) == ("input", "bedrock")
    assert len(app["requests"]) == sent_before


@pytest.mark.parametrize(
    ("request_data", "model", "param", "error"),
    [
        # what another deployment may take is a target mismatch: a group goes on to its next
        ({"input": [1, 2, 3]}, "amazon.titan-embed-text-v2:0", "input", UnsupportedFeatureError),
        ({"input": ["x"] * 97}, "cohere.embed-english-v3", "input", UnsupportedFeatureError),
        ({"input": "x", "dimensions": 256}, "cohere.embed-english-v3", "dimensions", UnsupportedParamError),
        # Titan Text Embeddings G1: "The only available field is inputText"
        (
            {"input": "x", "dimensions": 256},
            "amazon.titan-embed-text-v1",
            "dimensions",
            UnsupportedParamError,
        ),
        ({"input": "x"}, "meta.llama3-70b-instruct-v1:0", "model", InvalidRequestError),
    ],
)
def test_unusable_embedding_requests(
    request_data: dict[str, Any], model: str, param: str, error: type[InvalidRequestError]
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        make_adapter().embed_request(EmbeddingRequest(model="e", **request_data), model)
    assert (type(info.value), info.value.param) == (error, param)


def test_titan_multimodal_embeddings_take_dimensions_as_their_output_length() -> None:
    # https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-mm.html
    sent = make_adapter().embed_request(
        EmbeddingRequest(model="e", input="x", dimensions=384), "amazon.titan-embed-image-v1"
    )
    assert orjson.loads(sent.body) == {"inputText": "x", "embeddingConfig": {"outputEmbeddingLength": 384}}


def test_cohere_embed_v4_takes_dimensions_as_output_dimension() -> None:
    # https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed-v4.html
    sent = make_adapter().embed_request(
        EmbeddingRequest(model="e", input="x", dimensions=512), "cohere.embed-v4:0"
    )
    assert orjson.loads(sent.body) == {
        "texts": ["x"],
        "input_type": "search_document",
        "output_dimension": 512,
    }


def test_embedding_response_shapes() -> None:
    adapter = make_adapter()
    typed = adapter.parse_embed(b'{"embeddings": {"float": [[0.1, 0.2]]}, "id": "x"}', "cohere.embed-v4:0")
    assert typed.data[0].embedding == [0.1, 0.2]
    with pytest.raises(ProviderResponseError):
        adapter.parse_embed(b'{"embeddings": "nope"}', "cohere.embed-english-v3")


async def test_gateway_end_to_end_with_configured_options(make_gateway: Callable[..., Gateway]) -> None:
    app = bedrock_app()
    async with run_fake(app) as url:
        config = make_config(
            "providers:\n  aws:\n    type: bedrock\n"
            f"    base_url: {url}\n"
            f"    options: {{region: us-east-1, access_key_id: {ACCESS_KEY}, secret_access_key: '{SECRET_KEY}'}}\n"
        )
        gateway = make_gateway(config)
        resp = await gateway.chat(chat(model=f"aws/{CHAT_MODEL}"))
        chunks = [c async for c in await gateway.stream(chat(model=f"aws/{CHAT_MODEL}", stream=True))]
        vectors = await gateway.embed(EmbeddingRequest(model="aws/amazon.titan-embed-text-v2:0", input="hi"))
    assert resp.choices[0].message.content == "echo: hi"
    assert reassemble(chunks)["text"] == "echo: hi"
    assert len(vectors.data[0].embedding) == 1024
    assert {r["auth"] for r in app["requests"]} == {"sigv4"}


async def test_gateway_rejects_or_drops_params_the_family_lacks(make_gateway: Callable[..., Gateway]) -> None:
    app = bedrock_app()
    async with run_fake(app) as url:
        yaml = (
            "providers:\n  bedrock:\n"
            f"    base_url: {url}\n"
            f"    options: {{access_key_id: {ACCESS_KEY}, secret_access_key: '{SECRET_KEY}'}}\n"
        )
        strict = make_gateway(make_config(yaml))
        with pytest.raises(UnsupportedParamError) as info:
            await strict.chat(chat(model="bedrock/meta.llama3-70b-instruct-v1:0", top_k=5))
        assert info.value.param == "top_k"
        lenient = make_gateway(make_config(yaml + "settings:\n  drop_unsupported_params: true\n"))
        ctx = RequestContext("chat")
        resp = await lenient.chat(chat(model="bedrock/meta.llama3-70b-instruct-v1:0", top_k=5), ctx)
    assert resp.choices[0].message.content == "echo: hi"
    assert ctx.route is not None
    assert ctx.route.dropped_params == ("top_k",)
    assert "additionalModelRequestFields" not in app["requests"][-1]["body"]


def test_fake_provider_descriptor() -> None:
    provider = fake_provider()
    assert provider.type == "bedrock"
    assert provider.api_key is None
    options = provider.options("http://x")
    assert options["access_key_id"] == ACCESS_KEY
    assert (provider.chat_model, provider.embed_model) == (CHAT_MODEL, "cohere.embed-english-v3")


def test_a_gemini_signed_call_id_goes_to_bedrock_without_its_signature() -> None:
    # Bedrock caps toolUseId at 64 characters; a Gemini 3 call id carries hundreds
    from uniinfer.providers.gemini_request import call_id

    signed = call_id("A" * 400)
    history = tool_history()[:3]
    history[1]["tool_calls"] = history[1]["tool_calls"][:1]
    history[1]["tool_calls"][0]["id"] = signed
    history[2]["tool_call_id"] = signed
    turns = sent(chat([*history, {"role": "user", "content": "and so?"}], tools=[WEATHER]))["messages"]
    use = next(b["toolUse"] for t in turns for b in t["content"] if "toolUse" in b)
    result = next(b["toolResult"] for t in turns for b in t["content"] if "toolResult" in b)
    assert use["toolUseId"] == result["toolUseId"] == signed.partition("__ts")[0]
    assert len(use["toolUseId"]) <= 64


def test_other_providers_call_ids_go_to_bedrock_in_its_alphabet_and_length() -> None:
    ids = ["functions.get_weather:0", "x" * 70 + ".", "x" * 70 + ":"]
    calls = [
        {"id": i, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}} for i in ids
    ]
    history = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        *({"role": "tool", "tool_call_id": i, "content": "sunny"} for i in ids),
        {"role": "user", "content": "and so?"},
    ]
    turns = sent(chat(history, tools=[WEATHER]))["messages"]
    uses = [b["toolUse"]["toolUseId"] for b in turns[1]["content"]]
    results = [b["toolResult"]["toolUseId"] for b in turns[2]["content"] if "toolResult" in b]
    assert uses == results
    assert len(set(uses)) == 3
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", i) for i in uses)


@pytest.mark.parametrize("side", ["toolUse", "toolResult"])
def test_fake_refuses_a_tool_use_id_outside_the_documented_pattern(side: str) -> None:
    body = sent(chat(tool_history()[:4], tools=[WEATHER]))
    for turn in body["messages"]:
        for block in turn["content"]:
            if side in block:
                block[side]["toolUseId"] = "functions.get_weather:0"
    with pytest.raises(AwsError, match="toolUseId matching"):
        validate(body, CHAT_MODEL)


@pytest.mark.parametrize(
    ("fields", "conflict"),
    [
        ({"tools": [WEATHER], "tool_choice": "required"}, "reasoning_effort"),
        ({"temperature": 0.2}, "temperature"),
    ],
)
def test_what_cannot_go_with_claude_s_thinking_is_refused_or_dropped(
    fields: dict[str, Any], conflict: str
) -> None:
    request = chat(reasoning_effort="low", max_tokens=4000, **fields)
    with pytest.raises(UnsupportedParamError) as info:
        sent(request)
    assert info.value.param == conflict
    adapter = make_adapter()
    assert adapter.values_refused(request, CHAT_MODEL) == (conflict,)
    body = sent(adapter.without_values(request, CHAT_MODEL, (conflict,)))
    if conflict == "reasoning_effort":
        assert "thinking" not in body.get("additionalModelRequestFields", {})
    else:
        assert "temperature" not in body["inferenceConfig"]
        assert body["additionalModelRequestFields"]["thinking"]["type"] == "enabled"


async def test_blank_text_never_reaches_converse_and_an_empty_tool_result_says_so(
    fake: tuple[web.Application, str], client: HttpClient
) -> None:
    # Converse refuses a blank text block (400) anywhere, so an empty tool result would stick
    # the conversation: every later turn would send it again
    history = tool_history()[:3]
    history[1]["tool_calls"] = history[1]["tool_calls"][:1]
    history[1]["content"] = "\n"
    history[2]["content"] = ""
    messages = [
        {"role": "system", "content": "\n\n"},
        *history,
        {"role": "user", "content": [{"type": "text", "text": " "}, {"type": "text", "text": "and so?"}]},
    ]
    _, url = fake
    reply = await call(client, await ready(url, client), chat(messages, tools=[WEATHER]))
    assert reply.choices[0].message.content
    body = sent(chat(messages, tools=[WEATHER]))
    assert "system" not in body
    assert body["messages"][1]["content"] == [
        {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"location": "Paris"}}}
    ]
    assert body["messages"][2]["content"][0]["toolResult"]["content"] == [{"text": "(no output)"}]


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
async def test_the_stop_sequence_that_ended_a_claude_answer_comes_back(
    fake: tuple[web.Application, str], client: HttpClient, streamed: bool
) -> None:
    # an Anthropic Messages client reads it as stop_reason "stop_sequence" and stop_sequence
    _, url = fake
    adapter = await ready(url, client)
    request = chat([{"role": "user", "content": "say it END and more"}], stop=["XYZ", "END"], stream=streamed)
    if streamed:
        chunks = await stream(client, adapter, request)
        last = next(c.choices[0] for c in reversed(chunks) if c.choices and c.choices[0].finish_reason)
        assert (last.finish_reason, last.stop_sequence) == ("stop", "END")
    else:
        reply = await call(client, adapter, request)
        assert (reply.choices[0].finish_reason, reply.choices[0].stop_sequence) == ("stop", "END")


def test_reasoning_effort_none_asks_nothing_of_a_model_without_reasoning() -> None:
    from uniinfer.fitting import RequestFitter
    from uniinfer.routing.group import Target

    target = Target("bedrock", "meta.llama3-70b-instruct-v1:0", make_adapter())
    fitted, dropped = RequestFitter(drop=False).chat(chat(reasoning_effort="none"), target)
    assert (fitted.reasoning_effort, dropped) == (None, ())  # no reasoning: honoured, not a 400
    with pytest.raises(UnsupportedParamError):
        RequestFitter(drop=False).chat(chat(reasoning_effort="low"), target)  # asking for it still is


def test_an_anthropic_client_s_images_in_tool_results_stay_in_their_tool_result() -> None:
    from uniinfer.ingress.anthropic import MessagesRequest, parse_anthropic, to_chat_request

    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}
    uses = [{"type": "tool_use", "id": f"toolu_{n}", "name": "get_weather", "input": {}} for n in (1, 2)]
    request = to_chat_request(
        parse_anthropic(
            MessagesRequest,
            {
                "model": "m",
                "max_tokens": 64,
                "messages": [
                    {"role": "user", "content": "look"},
                    {"role": "assistant", "content": uses},
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "toolu_1",
                                "content": [{"type": "text", "text": "one"}, image],
                            },
                            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [image]},
                        ],
                    },
                ],
                "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            },
        )
    )
    last = sent(request)["messages"][-1]["content"]
    picture = {"image": {"format": "png", "source": {"bytes": png}}}
    assert last == [
        {"toolResult": {"toolUseId": "toolu_1", "content": [{"text": "one"}, picture]}},
        {"toolResult": {"toolUseId": "toolu_2", "content": [picture]}},  # no "(no output)" beside it
    ]
