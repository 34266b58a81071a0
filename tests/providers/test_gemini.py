"""The Gemini adapter: translation both ways, SSE streams, embeddings, errors, and the fake over a socket."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.fakes.common import run_fake
from tests.fakes.gemini import DUMMY_SIGNATURES, gemini_app, signature_of
from tests.providers import support
from uniinfer.errors import (
    AuthenticationError,
    ContentFilteredError,
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
from uniinfer.http import HttpClient, HttpRequest, Timeouts
from uniinfer.providers.base import Endpoint, PartialStreamError
from uniinfer.providers.gemini import GeminiAdapter
from uniinfer.providers.gemini_request import SKIP_SIGNATURE, split_call_id
from uniinfer.providers.registry import default_registry
from uniinfer.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest
from uniinfer.types.chat import ToolCall

KEY = "gm-test"
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
            "additionalProperties": False,
        },
    },
}


def adapter_for(url: str = "http://h:1/v1beta", key: str | None = KEY) -> GeminiAdapter:
    reg = default_registry()
    adapter = reg.create(reg.get("gemini"), Endpoint(base_url=url, api_key=key))
    assert isinstance(adapter, GeminiAdapter)
    return adapter


def chat(**fields: Any) -> ChatRequest:
    fields.setdefault("model", "gemini/gemini-2.5-flash")
    fields.setdefault("messages", [{"role": "user", "content": "hi"}])
    return ChatRequest.model_validate(fields)


def sent(request: HttpRequest) -> Any:
    return orjson.loads(request.body)


def config_of(model: str = "m", **fields: Any) -> Any:
    return sent(adapter_for().chat_request(chat(**fields), model, stream=False)).get("generationConfig")


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)


def decode_bytewise(data: bytes, model: str = "gemini-2.5-flash") -> list[ChatChunk]:
    return support.decode_bytewise(adapter_for().stream_decoder(model), data)


def text_of(chunks: list[ChatChunk], field: str = "content") -> str:
    return "".join(getattr(c.choices[0].delta, field) or "" for c in chunks if c.choices)


def candidate(*parts: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, **extra}
    if finish:
        cand["finishReason"] = finish
    return cand


def response(*cands: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"candidates": list(cands), **extra})


def rpc(status: int, name: str, message: str, details: list[Any] | None = None) -> bytes:
    error: dict[str, Any] = {"code": status, "message": message, "status": name}
    if details is not None:
        error["details"] = details
    return orjson.dumps({"error": error})


# --- request translation ------------------------------------------------------------


def test_urls_and_key_header_keep_the_key_out_of_the_url() -> None:
    adapter = adapter_for("http://h:1/v1beta/")
    plain = adapter.chat_request(chat(), "gemini-2.5-flash", stream=False)
    streamed = adapter.chat_request(chat(), "gemini-2.5-flash", stream=True)
    assert plain.url == "http://h:1/v1beta/models/gemini-2.5-flash:generateContent"
    assert streamed.url == "http://h:1/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    for http in (plain, streamed):
        assert http.method == "POST"
        assert http.headers["x-goog-api-key"] == KEY
        assert "authorization" not in http.headers
        assert KEY not in http.url
        assert KEY.encode() not in http.body
    assert sent(plain) == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def test_model_paths() -> None:
    adapter = adapter_for()
    assert (
        "/models/gemini-2.0-flash:"
        in adapter.chat_request(chat(), "models/gemini-2.0-flash", stream=False).url
    )
    assert "/tunedModels/my-tune:" in adapter.chat_request(chat(), "tunedModels/my-tune", stream=False).url


def test_no_key_sends_no_key_header() -> None:
    assert "x-goog-api-key" not in adapter_for(key=None).chat_request(chat(), "m", stream=False).headers


def test_generation_config_maps_every_sampling_param() -> None:
    assert config_of(
        temperature=0.3, top_p=0.9, top_k=40, n=2, seed=7, presence_penalty=0.5,
        frequency_penalty=-0.5, max_tokens=64, stop=["A", "B"],
    ) == {
        "temperature": 0.3, "topP": 0.9, "topK": 40, "candidateCount": 2, "seed": 7,
        "presencePenalty": 0.5, "frequencyPenalty": -0.5, "maxOutputTokens": 64,
        "stopSequences": ["A", "B"],
    }  # fmt: skip


def test_defaults_send_no_generation_config() -> None:
    assert config_of() is None


def test_max_completion_tokens_wins_and_stop_string_becomes_a_list() -> None:
    assert config_of(max_tokens=9, max_completion_tokens=5, stop="END") == {
        "maxOutputTokens": 5,
        "stopSequences": ["END"],
    }


def test_response_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False}
    assert config_of(response_format={"type": "json_object"}) == {"responseMimeType": "application/json"}
    assert config_of(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": schema, "strict": True},
        }
    ) == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    assert config_of(response_format={"type": "text"}) is None


@pytest.mark.parametrize(
    ("effort", "thinking"),
    [
        ("minimal", {"thinkingBudget": 0}),
        ("low", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("medium", {"thinkingBudget": 8192, "includeThoughts": True}),
        ("high", {"thinkingBudget": 24576, "includeThoughts": True}),
    ],
)
def test_reasoning_effort_sets_a_thinking_budget(effort: str, thinking: dict[str, Any]) -> None:
    assert config_of(reasoning_effort=effort) == {"thinkingConfig": thinking}
    assert config_of("gemini-2.5-flash", reasoning_effort=effort) == {"thinkingConfig": thinking}


@pytest.mark.parametrize(
    ("model", "budget", "sent"),
    [
        ("gemini-2.5-flash", 2048, 2048),  # exactly (it was rounded to its tier: 1024)
        ("gemini-2.5-flash", 10000, 10000),
        ("gemini-2.5-flash", 100_000, 24576),  # within the model's range
        ("gemini-2.5-pro", 100_000, 32768),
        ("gemini-2.5-pro", 50, 128),
    ],
)
def test_an_anthropic_clients_own_thinking_budget_reaches_gemini_as_it_is(
    model: str, budget: int, sent: int
) -> None:
    from uniinfer.types import MessagesIntent

    request = chat(reasoning_effort="medium").with_messages_intent(
        MessagesIntent(thinking=True, budget=budget)
    )
    config = orjson.loads(adapter_for().chat_request(request, model, stream=False).body)["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingBudget": sent, "includeThoughts": True}


LEVELS = {"thinkingLevel": "low", "includeThoughts": True}


@pytest.mark.parametrize(
    ("model", "effort", "thinking"),
    [
        # 2.5 Pro cannot turn thinking off: "minimal" is its smallest budget, not 0
        ("gemini-2.5-pro", "minimal", {"thinkingBudget": 128, "includeThoughts": True}),
        ("models/gemini-2.5-pro", "minimal", {"thinkingBudget": 128, "includeThoughts": True}),
        ("gemini-2.5-pro", "high", {"thinkingBudget": 24576, "includeThoughts": True}),
        ("gemini-2.5-flash-lite", "minimal", {"thinkingBudget": 0}),
        ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
        ("gemini-2.5-pro", "none", {"thinkingBudget": 128}),  # cannot stop: its least, no thoughts
        ("gemini-2.5-flash", "max", {"thinkingBudget": 24576, "includeThoughts": True}),
        ("gemini-3-flash-preview", "none", {"thinkingLevel": "minimal"}),
        ("gemini-3-pro-preview", "xhigh", {**LEVELS, "thinkingLevel": "high"}),
        # Gemini 3 takes levels; 3 Pro only low and high, 3.1 Pro no minimal
        ("gemini-3-pro-preview", "minimal", LEVELS),
        ("gemini-3-pro-preview", "low", LEVELS),
        ("gemini-3-pro-preview", "medium", {**LEVELS, "thinkingLevel": "high"}),
        ("gemini-3-pro-preview", "high", {**LEVELS, "thinkingLevel": "high"}),
        ("gemini-3.1-pro-preview", "minimal", LEVELS),
        ("gemini-3.1-pro-preview", "medium", {**LEVELS, "thinkingLevel": "medium"}),
        ("gemini-3-flash-preview", "minimal", {"thinkingLevel": "minimal"}),
        ("models/gemini-3-flash-preview", "low", LEVELS),
        ("gemini-3-flash-preview", "medium", {**LEVELS, "thinkingLevel": "medium"}),
        ("gemini-3-flash-preview", "high", {**LEVELS, "thinkingLevel": "high"}),
        # Google's -latest aliases stand for Gemini 3 models (3 Pro: "Budget 0 is invalid")
        ("gemini-pro-latest", "none", {"thinkingLevel": "low"}),
        ("models/gemini-pro-latest", "medium", {**LEVELS, "thinkingLevel": "medium"}),
        ("gemini-flash-latest", "none", {"thinkingLevel": "minimal"}),
        ("gemini-flash-lite-latest", "high", {**LEVELS, "thinkingLevel": "high"}),
    ],
)
def test_reasoning_effort_follows_the_model(model: str, effort: str, thinking: dict[str, Any]) -> None:
    assert config_of(model, reasoning_effort=effort) == {"thinkingConfig": thinking}


def test_logprobs() -> None:
    assert config_of(logprobs=True, top_logprobs=3) == {"responseLogprobs": True, "logprobs": 3}
    assert config_of(logprobs=False) is None


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tools_and_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    no_params = {"type": "function", "function": {"name": "now"}}
    body = sent(
        adapter_for().chat_request(chat(tools=[WEATHER, no_params], tool_choice=choice), "m", stream=False)
    )
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parametersJsonSchema": WEATHER["function"]["parameters"],
                },
                {"name": "now"},
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": config}


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        (None, {"mode": "VALIDATED"}),
        ("auto", {"mode": "VALIDATED"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_strict_tools_constrain_the_calls_the_model_chooses(choice: Any, config: dict[str, Any]) -> None:
    """A strict tool promises schema-valid arguments: Gemini's VALIDATED mode where the
    model may answer in text, ANY (constrained already) where it must call."""
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    loose = {"type": "function", "function": {"name": "now"}}
    fields: dict[str, Any] = {"tools": [strict, loose]}
    if choice is not None:
        fields["tool_choice"] = choice
    body = sent(adapter_for().chat_request(chat(**fields), "m", stream=False))
    assert body["toolConfig"] == {"functionCallingConfig": config}
    assert "strict" not in body["tools"][0]["functionDeclarations"][0]


def test_loose_tools_without_tool_choice_send_no_tool_config() -> None:
    body = sent(adapter_for().chat_request(chat(tools=[WEATHER]), "m", stream=False))
    assert "toolConfig" not in body


def conversation() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here and there?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a/photo.PNG?s=1"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/img"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Oslo"}'},
                },
                {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 3}'},
        {"role": "tool", "tool_call_id": "c2", "content": "noon"},
        {"role": "user", "content": "Thanks"},
    ]


def test_messages_become_contents_with_system_instruction_and_merged_turns() -> None:
    body = sent(adapter_for().chat_request(chat(messages=conversation()), "m", stream=False))
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use metric."}]}
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Weather here and there?"},
                {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
                {"fileData": {"mimeType": "image/png", "fileUri": "https://x.test/a/photo.PNG?s=1"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/img"}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {"functionCall": {"name": "get_weather", "args": {"location": "Oslo"}}},
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"result": {"temp": 3}}}},
                {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
                {"text": "Thanks"},
            ],
        },
    ]


def test_assistant_with_only_tool_calls_sends_no_empty_text_and_audio_is_inline() -> None:
    messages = [
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}]},
        {"role": "assistant", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "a", "content": "[1, 2]"},
    ]  # fmt: skip
    contents = sent(adapter_for().chat_request(chat(messages=messages), "m", stream=False))["contents"]
    assert contents[0]["parts"] == [{"inlineData": {"mimeType": "audio/wav", "data": "UklG"}}]
    assert contents[1]["parts"] == [{"functionCall": {"name": "f", "args": {}}}]
    # a JSON array is not an object: passed on as the string it is
    assert contents[2]["parts"][0]["functionResponse"]["response"] == {"result": "[1, 2]"}


def test_a_tool_result_of_several_text_parts_keeps_them_apart() -> None:
    # an MCP tool's result is a list of text items: "21" and "degrees" are not "21degrees"
    messages = [
        {"role": "assistant", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "a", "content": [
            {"type": "text", "text": "21"}, {"type": "text", "text": "degrees"}]},
    ]  # fmt: skip
    contents = sent(adapter_for().chat_request(chat(messages=messages), "m", stream=False))["contents"]
    assert contents[1]["parts"][0]["functionResponse"]["response"] == {"result": "21\ndegrees"}


def test_results_of_two_calls_to_one_function_follow_the_calls_order() -> None:
    # a functionResponse names only the function: Gemini pairs results with calls by position
    messages = [*support.results_out_of_order(), {"role": "user", "content": "so?"}]
    contents = sent(adapter_for().chat_request(chat(messages=messages), "m", stream=False))["contents"]
    results = [
        p["functionResponse"]["response"]["result"] for p in contents[2]["parts"] if "functionResponse" in p
    ]
    assert results == ["Paris 21C", "Rome 30C"]
    assert contents[2]["parts"][-1] == {"text": "so?"}


def test_reused_tool_call_ids_resolve_to_the_latest_assistant_turn() -> None:
    def turn(name: str) -> list[dict[str, Any]]:
        call = {"id": "call_0", "type": "function", "function": {"name": name, "arguments": "{}"}}
        return [
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_0", "content": "ok"},
        ]

    messages = [{"role": "user", "content": "go"}, *turn("first"), *turn("second")]
    contents = sent(adapter_for().chat_request(chat(messages=messages), "m", stream=False))["contents"]
    responses = [
        p["functionResponse"]["name"] for c in contents for p in c["parts"] if "functionResponse" in p
    ]
    assert responses == ["first", "second"]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"text"'])
def test_invalid_tool_arguments_name_the_message(arguments: str) -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "a", "content": "done"},
    ]  # fmt: skip
    with pytest.raises(InvalidRequestError) as info:
        adapter_for().chat_request(chat(messages=messages), "m", stream=False)
    assert info.value.param is not None
    assert info.value.param.startswith("messages[1].tool_calls[0]")
    assert "messages[1].tool_calls[0]" in info.value.message


def test_media_types_in_data_urls_go_in_lower_case() -> None:
    messages = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:Image/JPEG;base64,AAAA"}}],
        }
    ]
    body = sent(adapter_for().chat_request(chat(messages=messages), "m", stream=False))
    assert body["contents"][0]["parts"][0] == {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}}


@pytest.mark.parametrize(
    "url", ["data:image/png,notbase64", "data:;base64,AAAA", "ftp://x.test/a.png", "file:///etc/passwd"]
)
def test_unusable_image_urls_are_rejected(url: str) -> None:
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
    with pytest.raises(InvalidRequestError) as info:
        adapter_for().chat_request(chat(messages=messages), "m", stream=False)
    assert info.value.param == "messages[0].content[0]"


def test_file_parts_need_inline_data() -> None:
    inline = {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PNG_B64}"}}
    body = sent(
        adapter_for().chat_request(chat(messages=[{"role": "user", "content": [inline]}]), "m", stream=False)
    )
    assert body["contents"][0]["parts"] == [{"inlineData": {"mimeType": "application/pdf", "data": PNG_B64}}]
    by_id = {"type": "file", "file": {"file_id": "file-123"}}
    with pytest.raises(InvalidRequestError):
        adapter_for().chat_request(chat(messages=[{"role": "user", "content": [by_id]}]), "m", stream=False)


def test_only_system_messages_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequestError) as info:
        adapter_for().chat_request(chat(messages=[{"role": "system", "content": "x"}]), "m", stream=False)
    assert info.value.param == "messages"


def test_supported_params() -> None:
    supported = GeminiAdapter.supported_params
    assert {"top_k", "tools", "reasoning_effort", "response_format", "logprobs", "seed"} <= supported
    assert not {"logit_bias", "parallel_tool_calls", "user", "audio", "modalities", "store"} & supported


# --- response parsing -------------------------------------------------------------------


def test_parse_text_thoughts_and_exact_usage() -> None:
    body = response(
        candidate({"text": "Hmm...", "thought": True}, {"text": "Hello"}, {"text": " world"}, finish="STOP"),
        usageMetadata={
            "promptTokenCount": 100,
            "cachedContentTokenCount": 60,
            "candidatesTokenCount": 2,
            "thoughtsTokenCount": 30,
            "totalTokenCount": 132,
        },
        modelVersion="gemini-2.5-flash-001",
        responseId="abc123",
    )
    result = adapter_for().parse_chat(body, "gemini-2.5-flash")
    assert result.id == "chatcmpl-abc123"
    assert result.model == "gemini-2.5-flash-001"
    (choice,) = result.choices
    assert choice.index == 0
    assert choice.message.content == "Hello world"
    assert choice.message.reasoning_content == "Hmm..."
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    usage = result.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (100, 32, 132)
    assert usage.cached_tokens == 60
    assert usage.reasoning_tokens == 30


def test_usage_total_is_taken_as_reported_and_details_only_when_reported() -> None:
    meta = {
        "promptTokenCount": 10,
        "toolUsePromptTokenCount": 4,
        "candidatesTokenCount": 3,
        "totalTokenCount": 99,
    }
    usage = (
        adapter_for()
        .parse_chat(response(candidate({"text": "x"}, finish="STOP"), usageMetadata=meta), "m")
        .usage
    )
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (14, 3, 99)
    assert usage.prompt_tokens_details is None
    assert usage.completion_tokens_details is None


def test_parse_function_calls() -> None:
    body = response(
        candidate(
            {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
            {"functionCall": {"name": "now"}},
            finish="STOP",
        )
    )
    (choice,) = adapter_for().parse_chat(body, "m").choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None
    assert [(c.type, c.function.name, orjson.loads(c.function.arguments)) for c in calls] == [
        ("function", "get_weather", {"location": "Paris"}),
        ("function", "now", {}),
    ]
    assert all(c.id.startswith("call_") for c in calls)
    assert len({c.id for c in calls}) == 2


def test_parts_that_interleave_text_and_calls_keep_their_order() -> None:
    body = response(
        candidate(
            {"text": "Thinking it over.", "thought": True},
            {"text": "Let me "},
            {"text": "check."},  # adjacent text parts are one text, as streamed
            {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
            {"text": ""},
            {"text": "And also:"},
            {"functionCall": {"name": "now"}},
            finish="STOP",
        )
    )
    answer = adapter_for().parse_chat(body, "m")
    message = answer.choices[0].message
    calls = message.tool_calls or []
    assert (message.content, message.reasoning_content) == ("Let me check.And also:", "Thinking it over.")
    assert [c.function.name for c in calls] == ["get_weather", "now"]
    assert message.content_blocks == ["Let me check.", calls[0], "And also:", calls[1]]
    assert "content_blocks" not in answer.model_dump_json()
    # parts in OpenAI's order (text, then the calls) need no second copy
    call = {"functionCall": {"name": "now"}}
    plain = response(candidate({"text": "Let me "}, {"text": "check."}, call, call, finish="STOP"))
    assert adapter_for().parse_chat(plain, "m").choices[0].message.content_blocks is None


# --- thought signatures (Gemini 3) -------------------------------------------------------

SIG = "CiQBcsjafE3wYQ+/x9Qh5mE2dZxWkq0ulBw3Q0f7WuUC1sFRYngSKwFyyNp8gv0pd4w="  # base64, as Gemini sends it
ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]+$")  # tool_use ids on /v1/messages
PARIS = {"name": "get_weather", "args": {"location": "Paris"}}


def signed_calls(signature: str = SIG, **extra: Any) -> bytes:
    """A Gemini 3 answer with parallel calls: only the first functionCall part is signed."""
    first = {"functionCall": PARIS, "thoughtSignature": signature}
    return response(candidate(first, {"functionCall": {"name": "now"}}, finish="STOP"), **extra)


@pytest.mark.parametrize("signature", [SIG, "SIG_ABC", "a-b_c", "é+/=", "AAAA"])
def test_tool_call_ids_carry_the_thought_signature(signature: str) -> None:
    (choice,) = adapter_for().parse_chat(signed_calls(signature), "gemini-3-pro-preview").choices
    assert choice.message.tool_calls is not None
    first, second = choice.message.tool_calls
    assert split_call_id(first.id) == (first.id.partition("__")[0], signature)
    assert split_call_id(second.id) == (second.id, None)  # parallel calls after the first are unsigned
    assert all(ANTHROPIC_ID.match(c.id) for c in (first, second))


def test_base64_signatures_make_the_id_no_longer_than_the_signature_needs() -> None:
    (choice,) = adapter_for().parse_chat(signed_calls(), "gemini-3-pro-preview").choices
    assert choice.message.tool_calls is not None
    call_id = choice.message.tool_calls[0].id
    assert len(call_id) <= len("call_") + 24 + len("__tsb") + len(SIG)


def test_signatures_are_carried_only_from_gemini_3_models() -> None:
    adapter = adapter_for()
    (older,) = adapter.parse_chat(signed_calls(), "gemini-2.5-flash").choices
    assert older.message.tool_calls is not None
    assert [len(c.id) for c in older.message.tool_calls] == [29, 29]  # call_<24 hex>: no signature
    # an alias that resolves to a Gemini 3 model: the answer's modelVersion says so
    (alias,) = adapter.parse_chat(
        signed_calls(modelVersion="gemini-3-flash-preview"), "gemini-flash-latest"
    ).choices
    assert alias.message.tool_calls is not None
    assert split_call_id(alias.message.tool_calls[0].id)[1] == SIG
    # and a history of calls it did not sign goes to the alias with the docs' dummy, as to Gemini 3
    unsigned = [
        ToolCall.model_validate(
            {"id": f"call_{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        )
        for i in range(2)
    ]
    body = orjson.loads(
        adapter.chat_request(chat(messages=loop(unsigned)), "gemini-pro-latest", stream=False).body
    )
    assert body["contents"][1]["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"


def loop(calls: list[Any]) -> list[dict[str, Any]]:
    """The conversation an OpenAI client sends after running ``calls``."""
    return [
        {"role": "user", "content": "weather and time?"},
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
        *({"role": "tool", "tool_call_id": c.id, "content": "ok"} for c in calls),
    ]


def test_the_signature_goes_back_on_the_function_call_part_it_came_with() -> None:
    adapter = adapter_for()
    (choice,) = adapter.parse_chat(signed_calls(), "gemini-3-pro-preview").choices
    assert choice.message.tool_calls is not None
    request = chat(messages=loop(choice.message.tool_calls), tools=[WEATHER])
    contents = sent(adapter.chat_request(request, "gemini-3-pro-preview", stream=False))["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {"functionCall": PARIS, "thoughtSignature": SIG},
            {"functionCall": {"name": "now", "args": {}}},
        ],
    }
    assert [p["functionResponse"]["name"] for p in contents[2]["parts"]] == ["get_weather", "now"]


def test_unsigned_calls_to_gemini_3_get_the_documented_dummy_and_others_nothing() -> None:
    adapter = adapter_for()
    messages = [*conversation(), {"role": "assistant", "content": "Sure."}]
    for model in ("gemini-3-flash-preview", "gemini-2.5-flash"):
        contents = sent(adapter.chat_request(chat(messages=messages), model, stream=False))["contents"]
        signatures = [
            [p.get("thoughtSignature") for p in c["parts"]] for c in contents if c["role"] == "model"
        ]
        if model.startswith("gemini-3"):  # history from another provider: only its first call is signed
            assert signatures == [[None, SKIP_SIGNATURE, None], [None]]
        else:
            assert signatures == [[None, None, None], [None]]


def test_stream_tool_call_ids_carry_the_signature() -> None:
    text_signed = {"text": "", "thoughtSignature": "dGV4dA=="}  # text-part signatures are optional: dropped
    data = sse(
        {"candidates": [candidate({"functionCall": PARIS, "thoughtSignature": SIG})]},
        {"candidates": [candidate(text_signed, finish="STOP")], "modelVersion": "gemini-3-flash-preview"},
    )
    calls = support.reassemble(decode_bytewise(data, "gemini-3-flash-preview"))["calls"]
    assert split_call_id(calls[0]["id"])[1] == SIG
    assert ANTHROPIC_ID.match(calls[0]["id"])
    (older,) = support.reassemble(decode_bytewise(data, "gemini-2.5-flash"))["calls"].values()
    assert split_call_id(older["id"]) == (older["id"], None)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("IMAGE_PROHIBITED_CONTENT", "content_filter"),
        ("IMAGE_RECITATION", "content_filter"),
        ("LANGUAGE", "content_filter"),
        ("OTHER", "content_filter"),
        ("IMAGE_OTHER", "content_filter"),
        ("NO_IMAGE", "content_filter"),
        ("SOME_FUTURE_REASON", "content_filter"),
        ("FINISH_REASON_UNSPECIFIED", "stop"),
    ],
)
def test_finish_reasons(reason: str, expected: str) -> None:
    (choice,) = adapter_for().parse_chat(response(candidate({"text": "x"}, finish=reason)), "m").choices
    assert choice.finish_reason == expected
    chunks = decode_bytewise(sse({"candidates": [candidate({"text": "x"}, finish=reason)]}))
    assert chunks[-1].choices[0].finish_reason == expected


FAILED_REASONS = [
    "MALFORMED_FUNCTION_CALL",
    "UNEXPECTED_TOOL_CALL",
    "TOO_MANY_TOOL_CALLS",
    "MALFORMED_RESPONSE",
]


@pytest.mark.parametrize("reason", FAILED_REASONS)
def test_failed_generations_are_retryable_provider_errors(reason: str) -> None:
    cand = candidate({"text": "Let me call"}, finish=reason, finishMessage="Malformed function call: x")
    with pytest.raises(ProviderError) as info:
        adapter_for().parse_chat(response(cand), "m")
    err = info.value
    assert type(err) is ProviderError
    assert err.retryable
    assert err.http_status == 502
    assert reason in err.message
    assert "Malformed function call: x" in err.message
    decoder = adapter_for().stream_decoder("m")
    with pytest.raises(PartialStreamError) as partial:  # the text before it still goes out
        decoder.feed(sse({"candidates": [candidate({"text": "Let me call"}, finish=reason)]}))
    assert type(partial.value.error) is ProviderError
    assert reason in partial.value.error.message
    assert partial.value.items[0].choices[0].delta.content == "Let me call"


def test_missing_thought_signature_finish_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequestError, match="thought signature"):
        adapter_for().parse_chat(response(candidate(finish="MISSING_THOUGHT_SIGNATURE")), "m")


def test_multiple_candidates_keep_their_index() -> None:
    body = response(candidate({"text": "a"}, finish="STOP"), candidate({"text": "b"}, finish="STOP", index=1))
    result = adapter_for().parse_chat(body, "m")
    assert [(c.index, c.message.content) for c in result.choices] == [(0, "a"), (1, "b")]


def test_logprobs_are_translated() -> None:
    lp = {
        "chosenCandidates": [{"token": "Hi", "logProbability": -0.1}],
        "topCandidates": [{"candidates": [{"token": "Hi", "logProbability": -0.1}, {"token": "Yo", "logProbability": -2.5}]}],
    }  # fmt: skip
    (choice,) = (
        adapter_for()
        .parse_chat(response(candidate({"text": "Hi"}, finish="STOP", logprobsResult=lp)), "m")
        .choices
    )
    assert choice.logprobs == {
        "content": [
            {
                "token": "Hi", "logprob": -0.1, "bytes": [72, 105],
                "top_logprobs": [
                    {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                    {"token": "Yo", "logprob": -2.5, "bytes": [89, 111]},
                ],
            }
        ],
        "refusal": None,
    }  # fmt: skip


def test_blocked_prompt_is_content_filtered() -> None:
    body = orjson.dumps(
        {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
    )
    with pytest.raises(ContentFilteredError, match="SAFETY"):
        adapter_for().parse_chat(body, "m")


@pytest.mark.parametrize("body", [b"{}", b"not json", b"[1]", b'{"candidates": [1]}'])
def test_unusable_bodies_are_provider_response_errors(body: bytes) -> None:
    with pytest.raises(ProviderResponseError):
        adapter_for().parse_chat(body, "m")


# --- stream decoding ------------------------------------------------------------------------


def test_stream_decodes_byte_by_byte_with_usage_last() -> None:
    data = sse(
        {
            "candidates": [candidate({"text": "Hé"})],
            "usageMetadata": {"promptTokenCount": 4},
            "responseId": "r1",
        },
        {"candidates": [candidate({"text": "llo ✓"})], "usageMetadata": {"promptTokenCount": 4}},
        {
            "candidates": [candidate({"text": ""}, finish="STOP")],
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6},
            "modelVersion": "gemini-2.5-flash-002",
        },
    )
    chunks = decode_bytewise(data)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
    assert text_of(chunks) == "Héllo ✓"
    assert {c.id for c in chunks} == {"chatcmpl-r1"}
    assert len({c.created for c in chunks}) == 1
    finish, usage = chunks[-2], chunks[-1]
    assert finish.choices[0].finish_reason == "stop"
    assert finish.choices[0].delta.content is None
    assert usage.choices == []
    assert usage.model == "gemini-2.5-flash-002"
    assert usage.usage is not None
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens, usage.usage.total_tokens) == (4, 2, 6)
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_function_calls_are_complete_deltas_with_stable_indexes() -> None:
    data = sse(
        {"candidates": [candidate({"functionCall": {"name": "a", "args": {"x": 1}}})]},
        {"candidates": [candidate({"functionCall": {"name": "b", "args": {}}}, finish="STOP")]},
    )
    chunks = decode_bytewise(data)
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert [(d.index, d.type, d.function.name if d.function else None) for d in deltas] == [
        (0, "function", "a"),
        (1, "function", "b"),
    ]
    assert [orjson.loads(d.function.arguments or "") for d in deltas if d.function] == [{"x": 1}, {}]
    assert all(d.id and d.id.startswith("call_") for d in deltas)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"  # no usageMetadata: no usage chunk


def test_stream_thoughts_go_to_reasoning_content() -> None:
    data = sse(
        {"candidates": [candidate({"text": "pondering", "thought": True})]},
        {
            "candidates": [candidate({"text": "42"}, finish="STOP")],
            "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "thoughtsTokenCount": 9, "totalTokenCount": 11},
        },
    )  # fmt: skip
    chunks = decode_bytewise(data)
    assert text_of(chunks, "reasoning_content") == "pondering"
    assert text_of(chunks) == "42"
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.completion_tokens, usage.reasoning_tokens, usage.total_tokens) == (10, 9, 11)


def test_stream_with_two_candidates_finishes_when_both_did() -> None:
    decoder = adapter_for().stream_decoder("m")
    chunks = decoder.feed(
        sse({"candidates": [candidate({"text": "a"}, finish="STOP"), candidate({"text": "b"}, index=1)]})
    )
    assert sorted({c.choices[0].index for c in chunks}) == [0, 1]
    with pytest.raises(ProviderConnectionError):
        decoder.close()
    decoder = adapter_for().stream_decoder("m")
    decoder.feed(
        sse({"candidates": [candidate({"text": "a"}, finish="STOP"), candidate({"text": "b"}, index=1)]})
    )
    last = decoder.feed(sse({"candidates": [candidate({"text": "!"}, finish="MAX_TOKENS", index=1)]}))
    assert last[-1].choices[0].finish_reason == "length"
    assert decoder.close() == []


def test_stream_without_finish_reason_is_a_connection_error() -> None:
    with pytest.raises(ProviderConnectionError, match="finishReason"):
        decode_bytewise(sse({"candidates": [candidate({"text": "partial"})]}))
    with pytest.raises(ProviderConnectionError):
        decode_bytewise(b"")


def test_stream_error_event_raises_the_mapped_error() -> None:
    event = {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}]}}  # fmt: skip
    decoder = adapter_for().stream_decoder("m")
    decoder.feed(sse({"candidates": [candidate({"text": "a"})]}))
    with pytest.raises(RateLimitError) as info:
        decoder.feed(sse(event))
    assert info.value.retry_after == 3.0
    with pytest.raises(ProviderOverloadedError):
        decode_bytewise(sse({"error": {"message": "overloaded", "status": "UNAVAILABLE"}}))


def test_stream_blocked_prompt_is_content_filtered() -> None:
    with pytest.raises(ContentFilteredError):
        decode_bytewise(sse({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}))
    # feedback that blocks nothing (its safety ratings only) is no failure: the answer follows
    ratings = {"promptFeedback": {"safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT"}]}}
    chunks = decode_bytewise(sse(ratings, {"candidates": [candidate({"text": "hi"}, finish="STOP")]}))
    assert text_of(chunks) == "hi"


# --- embeddings -------------------------------------------------------------------------------


def test_single_embedding_request() -> None:
    http = adapter_for().embed_request(
        EmbeddingRequest(model="e", input="hello", dimensions=4), "gemini-embedding-001"
    )
    assert http.url == "http://h:1/v1beta/models/gemini-embedding-001:embedContent"
    assert http.headers["x-goog-api-key"] == KEY
    assert sent(http) == {"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4}


def test_an_embedding_task_type_from_the_provider_s_options() -> None:
    from uniinfer.errors import ConfigError

    reg = default_registry()
    queries = reg.create(
        reg.get("gemini"),
        Endpoint(base_url="http://h:1/v1beta", api_key=KEY, options={"embed_task_type": "RETRIEVAL_QUERY"}),
    )
    one = sent(queries.embed_request(EmbeddingRequest(model="e", input="where?"), "gemini-embedding-001"))
    assert one["taskType"] == "RETRIEVAL_QUERY"
    batch = sent(queries.embed_request(EmbeddingRequest(model="e", input=["a", "b"]), "gemini-embedding-001"))
    assert [r["taskType"] for r in batch["requests"]] == ["RETRIEVAL_QUERY"] * 2
    with pytest.raises(ConfigError, match="embed_task_type"):
        reg.create(
            reg.get("gemini"),
            Endpoint(base_url="http://h:1", api_key=KEY, options={"embed_task_type": "QUERY"}),
        )


def test_batch_embedding_request() -> None:
    http = adapter_for().embed_request(EmbeddingRequest(model="e", input=["a", "b"]), "text-embedding-004")
    assert http.url == "http://h:1/v1beta/models/text-embedding-004:batchEmbedContents"
    assert sent(http) == {
        "requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}},
        ]
    }


@pytest.mark.parametrize("tokens", [[1, 2, 3], [[1, 2], [3]]])
def test_token_id_embedding_input_is_rejected(tokens: Any) -> None:
    # a target mismatch (another deployment may take token ids): a group goes on to its next
    with pytest.raises(UnsupportedFeatureError) as info:
        adapter_for().embed_request(EmbeddingRequest(model="e", input=tokens), "m")
    assert info.value.param == "input"


def test_more_texts_than_one_batch_takes_are_refused_before_sending() -> None:
    # batchEmbedContents: "at most 100 requests can be in one batch" (OpenAI's limit is 2048)
    adapter = adapter_for()
    sent = adapter.embed_request(EmbeddingRequest(model="e", input=["x"] * 100), "text-embedding-004")
    assert len(orjson.loads(sent.body)["requests"]) == 100
    with pytest.raises(UnsupportedFeatureError, match="at most 100 input") as info:
        adapter.embed_request(EmbeddingRequest(model="e", input=["x"] * 101), "text-embedding-004")
    assert info.value.param == "input"


def test_parse_embeddings() -> None:
    single = adapter_for().parse_embed(orjson.dumps({"embedding": {"values": [0.1, 0.2]}}), "e")
    assert [(d.index, d.embedding) for d in single.data] == [(0, [0.1, 0.2])]
    assert (single.model, single.usage.prompt_tokens, single.usage.total_tokens) == ("e", 0, 0)
    batch = adapter_for().parse_embed(
        orjson.dumps({"embeddings": [{"values": [1.0]}, {"values": [2.0]}]}), "e"
    )
    assert [(d.index, d.embedding) for d in batch.data] == [(0, [1.0]), (1, [2.0])]
    with pytest.raises(ProviderResponseError):
        adapter_for().parse_embed(b'{"embeddings": [{"nope": 1}]}', "e")


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "cls"),
    [
        (400, "INVALID_ARGUMENT", InvalidRequestError),
        (401, "UNAUTHENTICATED", AuthenticationError),
        (403, "PERMISSION_DENIED", PermissionDeniedError),
        (404, "NOT_FOUND", ModelNotFoundError),
        (429, "RESOURCE_EXHAUSTED", RateLimitError),
        (500, "INTERNAL", ProviderError),
        (503, "UNAVAILABLE", ProviderOverloadedError),
        (504, "DEADLINE_EXCEEDED", ProviderTimeoutError),
    ],
)
def test_error_statuses(status: int, name: str, cls: type[UniInferError]) -> None:
    err = adapter_for().parse_error(status, {}, rpc(status, name, "it broke"))
    assert type(err) is cls
    assert err.message == "gemini: it broke"
    assert err.upstream_status == status
    assert err.provider == "gemini"


def test_invalid_api_key_is_an_authentication_error_and_the_key_is_redacted() -> None:
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
    body = rpc(400, "INVALID_ARGUMENT", f"API key not valid: {KEY}", details)
    err = adapter_for().parse_error(400, {}, body)
    assert isinstance(err, AuthenticationError)
    assert KEY not in err.message
    assert err.upstream_body is not None
    assert KEY not in err.upstream_body
    assert "[redacted]" in err.upstream_body


def test_retry_after_from_header_or_retry_info() -> None:
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.5s"},
    ]
    body = rpc(429, "RESOURCE_EXHAUSTED", "quota", details)
    assert adapter_for().parse_error(429, {}, body).retry_after == 12.5
    assert adapter_for().parse_error(429, {"retry-after": "2"}, body).retry_after == 2.0
    assert adapter_for().parse_error(429, {}, rpc(429, "RESOURCE_EXHAUSTED", "quota")).retry_after is None


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ("Penalty is not enabled for models/gemini-2.5-flash", "presence_penalty"),
        ("Logprobs is not enabled for models/gemini-2.5-pro", "logprobs"),
        ("Function calling with a response mime type: 'application/json' is unsupported", None),
        ("Tool use with a response mime type: 'application/json' is unsupported", "response_format"),
    ],
)
def test_a_param_the_model_refuses_is_unsupported_there_and_another_deployment_is_tried(
    message: str, param: str | None
) -> None:
    from uniinfer.routing.retry import is_target_mismatch

    err = adapter_for().parse_error(400, {}, rpc(400, "INVALID_ARGUMENT", message))
    if param is None:  # other words: the caller's request, as before
        assert type(err) is InvalidRequestError
        return
    assert isinstance(err, UnsupportedParamError)
    assert err.param == param
    assert is_target_mismatch(err)


def test_context_length_and_failed_precondition() -> None:
    message = "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
    err = adapter_for().parse_error(400, {}, rpc(400, "INVALID_ARGUMENT", message))
    assert isinstance(err, ContextLengthExceededError)
    region = rpc(400, "FAILED_PRECONDITION", "User location is not supported for the API use.")
    assert isinstance(adapter_for().parse_error(400, {}, region), PermissionDeniedError)


def test_non_json_error_body() -> None:
    err = adapter_for().parse_error(502, {}, b"<html>Bad Gateway</html>")
    assert isinstance(err, ProviderError)
    assert "Bad Gateway" in err.message


# --- the fake over a real socket -----------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[tuple[web.Application, GeminiAdapter, HttpClient]]:
    app = gemini_app()
    async with run_fake(app) as url:
        client = HttpClient()
        try:
            yield app, adapter_for(url + "/v1beta"), client
        finally:
            await client.aclose()


async def complete(
    client: HttpClient, adapter: GeminiAdapter, request: ChatRequest, model: str
) -> ChatResponse:
    resp = await client.send(adapter.chat_request(request, model, stream=False), Timeouts(), "gemini")
    if resp.status != 200:
        raise adapter.parse_error(resp.status, resp.headers, resp.body)
    return adapter.parse_chat(resp.body, model)


async def stream(
    client: HttpClient, adapter: GeminiAdapter, request: ChatRequest, model: str
) -> list[ChatChunk]:
    s = await client.open_stream(adapter.chat_request(request, model, stream=True), Timeouts(), "gemini")
    complete_ = False
    try:
        if s.status != 200:
            raise adapter.parse_error(s.status, s.headers, await s.read())
        decoder = adapter.stream_decoder(model)
        out: list[ChatChunk] = []
        async for data in s.iter_bytes():
            out += decoder.feed(data)
        out += decoder.close()
        complete_ = True
        return out
    finally:
        HttpClient.close_stream(s, complete=complete_)


Fake = tuple[web.Application, GeminiAdapter, HttpClient]


async def test_fake_echo_with_exact_usage_and_key_only_in_header(fake: Fake) -> None:
    app, adapter, client = fake
    request = chat(
        messages=[{"role": "system", "content": "be nice"}, {"role": "user", "content": "hello there"}]
    )
    result = await complete(client, adapter, request, "gemini-2.5-flash")
    assert result.choices[0].message.content == "echo: hello there"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    # words: prompt "hello there" + "be nice" = 4, answer "echo: hello there" = 3
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (
        4,
        3,
        7,
    )
    (seen,) = app["requests"]
    assert seen["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen["query"] == {}
    assert seen["headers"]["x-goog-api-key"] == KEY
    assert seen["body"]["systemInstruction"] == {"parts": [{"text": "be nice"}]}


async def test_fake_stream_over_socket(fake: Fake) -> None:
    app, adapter, client = fake
    chunks = await stream(
        client, adapter, chat(messages=[{"role": "user", "content": "héllo wörld ✓"}]), "gemini-x"
    )
    assert text_of(chunks) == "echo: héllo wörld ✓"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 3 + 4
    assert app["requests"][0]["query"] == {"alt": "sse"}


async def test_fake_tool_round_trip(fake: Fake) -> None:
    app, adapter, client = fake
    first = chat(messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER], tool_choice="required")
    result = await complete(client, adapter, first, "tool-model")
    calls = result.choices[0].message.tool_calls
    assert calls is not None
    assert result.choices[0].finish_reason == "tool_calls"
    assert (calls[0].function.name, orjson.loads(calls[0].function.arguments)) == (
        "get_weather",
        {"location": "Paris"},
    )
    follow_up = chat(
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "tool_calls": [c.model_dump() for c in calls]},
            {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temp_c": 21}'},
        ],
    )
    answer = await complete(client, adapter, follow_up, "gemini-2.5-flash")  # the fake validates the pairing
    assert answer.choices[0].message.content == "echo: weather?"
    assert app["requests"][1]["body"]["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"result": {"temp_c": 21}}}}
    ]
    streamed = await stream(client, adapter, first, "tool-model")
    deltas = [d for c in streamed if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert [(d.index, d.function.name if d.function else None) for d in deltas] == [(0, "get_weather")]
    assert streamed[-2].choices[0].finish_reason == "tool_calls"


async def test_fake_gemini_3_tool_loop_sends_each_signature_back(fake: Fake) -> None:
    """Two steps of one turn, streamed and not: the fake 400s any step whose signature is missing."""
    app, adapter, client = fake
    model = "gemini-3-flash-tool"  # answers every request with a call, signed as Gemini 3 does
    for streamed in (False, True):
        messages: list[dict[str, Any]] = [{"role": "user", "content": "weather?"}]
        for _step in range(2):
            request = chat(messages=messages, tools=[WEATHER])
            if streamed:
                (call,) = support.reassemble(await stream(client, adapter, request, model))["calls"].values()
                tool_call = {"id": call["id"], "type": "function", "function": {
                    "name": call["name"], "arguments": call["arguments"]}}  # fmt: skip
            else:
                result = await complete(client, adapter, request, model)
                assert result.choices[0].message.tool_calls is not None
                tool_call = result.choices[0].message.tool_calls[0].model_dump()
            assert ANTHROPIC_ID.match(tool_call["id"])
            messages += [
                {"role": "assistant", "tool_calls": [tool_call]},
                {"role": "tool", "tool_call_id": tool_call["id"], "content": '{"temp_c": 21}'},
            ]
        answer = await complete(client, adapter, chat(messages=messages, tools=[WEATHER]), model)
        assert answer.choices[0].finish_reason == "tool_calls"  # accepted: both steps signed
        last = app["requests"][-1]["body"]["contents"]
        calls = [p for c in last if c["role"] == "model" for p in c["parts"]]
        # each call back with its signature and Gemini's id for it, which its result names too
        assert [p.get("thoughtSignature") for p in calls] == [signature_of(p["functionCall"]) for p in calls]
        assert [{**p["functionCall"], "id": None} for p in calls] == [{**PARIS, "id": None}] * 2
        answers = [p["functionResponse"]["id"] for c in last for p in c["parts"] if "functionResponse" in p]
        assert answers == [p["functionCall"]["id"] for p in calls]


async def test_fake_gemini_3_rejects_follow_ups_without_their_signature(fake: Fake) -> None:
    _, adapter, client = fake
    (choice,) = adapter.parse_chat(signed_calls(signature_of(PARIS)), "gemini-3-pro-preview").choices
    assert choice.message.tool_calls is not None
    good = adapter.chat_request(
        chat(messages=loop(choice.message.tool_calls)), "gemini-3-pro-preview", stream=False
    )

    async def send(signature: str | None, model: str = "gemini-3-pro-preview") -> tuple[int, Any]:
        body = sent(good)
        part = body["contents"][1]["parts"][0]
        part.pop("thoughtSignature")
        if signature is not None:
            part["thoughtSignature"] = signature
        url = good.url.replace("gemini-3-pro-preview", model)
        resp = await client.send(HttpRequest(url, orjson.dumps(body), good.headers), Timeouts(), "gemini")
        return resp.status, orjson.loads(resp.body)

    assert (await send(signature_of(PARIS)))[0] == 200
    for dummy in DUMMY_SIGNATURES:
        assert (await send(dummy))[0] == 200
    status, body = await send(None)
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert "missing a thought_signature" in body["error"]["message"]
    assert isinstance(adapter.parse_error(400, {}, orjson.dumps(body)), InvalidRequestError)
    status, body = await send("AAAA")
    assert (status, body["error"]["message"]) == (400, "Corrupted thought signature.")
    status, body = await send("not base64!")
    assert status == 400
    assert "TYPE_BYTES" in body["error"]["message"]
    assert (await send(None, "gemini-2.5-flash"))[0] == 200  # only Gemini 3 insists


@pytest.mark.parametrize(
    "model",
    [
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-3-pro-preview",
        "gemini-3.1-pro-preview",
        "gemini-3-flash-preview",
    ],
)
async def test_fake_accepts_every_reasoning_effort(fake: Fake, model: str) -> None:
    _, adapter, client = fake
    for effort in ("minimal", "low", "medium", "high"):
        result = await complete(client, adapter, chat(reasoning_effort=effort), model)
        assert result.choices[0].message.content == "echo: hi"


async def test_fake_rejects_thinking_settings_the_model_cannot_take(fake: Fake) -> None:
    _, adapter, client = fake

    async def status(model: str, thinking: dict[str, Any]) -> tuple[int, str]:
        good = adapter.chat_request(chat(), model, stream=False)
        body = {**sent(good), "generationConfig": {"thinkingConfig": thinking}}
        resp = await client.send(
            HttpRequest(good.url, orjson.dumps(body), good.headers), Timeouts(), "gemini"
        )
        return resp.status, orjson.loads(resp.body)["error"]["message"] if resp.status != 200 else ""

    assert await status("gemini-2.5-pro", {"thinkingBudget": 0}) == (
        400,
        "Budget 0 is invalid. This model only works in thinking mode.",
    )
    assert (await status("gemini-2.5-flash", {"thinkingLevel": "low"}))[0] == 400
    assert (await status("gemini-3-pro-preview", {"thinkingLevel": "minimal"}))[0] == 400
    assert (await status("gemini-3-flash-preview", {"thinkingLevel": "minimal"}))[0] == 200


async def test_fake_thinking_and_cached_usage(fake: Fake) -> None:
    _, adapter, client = fake
    request = chat(messages=[{"role": "user", "content": "one two three four"}], reasoning_effort="low")
    result = await complete(client, adapter, request, "think-cache")
    message, usage = result.choices[0].message, result.usage
    assert message.reasoning_content == "Let me think."
    assert message.content == "echo: one two three four"
    assert usage is not None
    assert (usage.prompt_tokens, usage.cached_tokens) == (4, 2)
    assert (usage.completion_tokens, usage.reasoning_tokens, usage.total_tokens) == (5 + 5, 5, 4 + 5 + 5)
    chunks = await stream(client, adapter, request, "think-cache")
    assert text_of(chunks, "reasoning_content") == "Let me think."
    assert chunks[-1].usage == usage


async def test_fake_candidates_json_schema_and_options_are_accepted(fake: Fake) -> None:
    app, adapter, client = fake
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    request = chat(
        n=2, temperature=1.5, top_k=3, stop="x", seed=1, logprobs=True, top_logprobs=2, reasoning_effort="minimal",
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    )  # fmt: skip
    result = await complete(client, adapter, request, "gemini-2.5-flash")
    assert [c.index for c in result.choices] == [0, 1]
    assert app["requests"][0]["body"]["generationConfig"]["responseJsonSchema"] == schema


async def test_fake_rejects_unknown_fields_like_the_real_api(fake: Fake) -> None:
    _, adapter, client = fake
    good = adapter.chat_request(chat(), "gemini-2.5-flash", stream=False)
    body = sent(good)
    body["generationConfig"] = {"foo": 1}
    resp = await client.send(HttpRequest(good.url, orjson.dumps(body), good.headers), Timeouts(), "gemini")
    err = adapter.parse_error(resp.status, resp.headers, resp.body)
    assert type(err) is InvalidRequestError
    assert "Unknown name \"foo\" at 'generation_config'" in err.message


async def test_fake_context_length(fake: Fake) -> None:
    _, adapter, client = fake
    with pytest.raises(ContextLengthExceededError, match="input token count"):
        await complete(client, adapter, chat(messages=[{"role": "user", "content": "w " * 40}]), "tiny")


async def test_fake_rate_limit_and_server_errors(fake: Fake) -> None:
    _, adapter, client = fake
    with pytest.raises(RateLimitError) as info:
        await complete(client, adapter, chat(), "error-429")
    assert info.value.retry_after == 7.0
    with pytest.raises(ProviderOverloadedError):
        await stream(client, adapter, chat(), "error-503")
    with pytest.raises(ModelNotFoundError):
        await complete(client, adapter, chat(), "error-404")


async def test_fake_cut_and_dropped_connections(fake: Fake) -> None:
    _, adapter, client = fake
    request = chat(messages=[{"role": "user", "content": "a b c d e f g h"}])
    with pytest.raises(ProviderConnectionError):
        await stream(client, adapter, request, "cut-model")
    with pytest.raises(ProviderConnectionError):
        await complete(client, adapter, request, "drop-model")


async def test_fake_keys(fake: Fake) -> None:
    _, adapter, client = fake
    url = adapter.endpoint.base_url
    with pytest.raises(PermissionDeniedError, match="unregistered callers"):
        await complete(client, adapter_for(url, key=None), chat(), "gemini-2.5-flash")
    wrong = "gm-wrong-secret"
    with pytest.raises(AuthenticationError) as info:
        await complete(client, adapter_for(url, key=wrong), chat(), "gemini-2.5-flash")
    assert wrong not in info.value.message
    assert wrong not in (info.value.upstream_body or "")


async def test_fake_embeddings(fake: Fake) -> None:
    app, adapter, client = fake

    async def embed(request: EmbeddingRequest) -> list[Any]:
        resp = await client.send(adapter.embed_request(request, "text-embedding-004"), Timeouts(), "gemini")
        assert resp.status == 200, resp.body
        return [d.embedding for d in adapter.parse_embed(resp.body, "text-embedding-004").data]

    (single,) = await embed(EmbeddingRequest(model="e", input="alpha"))
    batch = await embed(EmbeddingRequest(model="e", input=["alpha", "beta", "alpha"], dimensions=5))
    assert len(single) == 8
    assert [len(v) for v in batch] == [5, 5, 5]
    assert batch[0] == batch[2] == single[:5]
    assert batch[0] != batch[1]
    assert [r["path"].rsplit(":", 1)[-1] for r in app["requests"]] == ["embedContent", "batchEmbedContents"]


async def test_fake_takes_back_a_history_with_an_empty_answer_and_an_image_jpg(fake: Fake) -> None:
    # an answer cut by MAX_TOKENS or SAFETY comes back to the client as content "", which it sends
    # back; Gemini refuses an empty text part, and the media type image/jpg (OpenAI clients send it)
    app, adapter, client = fake
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    request = chat(
        messages=[
            {"role": "system", "content": ""},
            {"role": "user", "content": "hello there"},
            {"role": "assistant", "content": ""},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "and this"},
                    {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{png}"}},
                ],
            },
        ]
    )
    result = await complete(client, adapter, request, "gemini-2.5-flash")
    assert result.choices[0].message.content
    body = app["requests"][-1]["body"]
    assert "systemInstruction" not in body
    assert [c["role"] for c in body["contents"]] == ["user"]  # the empty turn left out, the rest merged
    assert body["contents"][0]["parts"][-1]["inlineData"]["mimeType"] == "image/jpeg"


@pytest.mark.parametrize("provider", ["gemini", "ollama"])
def test_a_legacy_function_call_in_the_history_is_refused_not_lost(provider: str) -> None:
    reg = default_registry()
    adapter = reg.create(reg.get(provider), Endpoint(base_url="http://h:1", api_key=KEY))
    request = chat(
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "function_call": {"name": "get", "arguments": "{}"}},
            {"role": "user", "content": "and?"},
        ]
    )
    with pytest.raises(InvalidRequestError) as info:
        adapter.chat_request(request, "m", stream=False)
    assert info.value.param == "messages[1].function_call"


def test_a_user_message_with_nothing_but_empty_text_is_refused() -> None:
    # left out, the model's turn before it would be answered in its place
    request = chat(
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": ""},
        ]
    )
    with pytest.raises(InvalidRequestError) as info:
        adapter_for().chat_request(request, "gemini-2.5-flash", stream=False)
    assert info.value.param == "messages[2].content"
