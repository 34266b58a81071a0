"""The Anthropic Messages adapter: request translation, response and stream
parsing, error mapping; unit-level and against the faithful fake over a socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.conftest import make_config
from tests.fakes.anthropic import REDACTED_DATA, anthropic_app, sign
from tests.fakes.common import run_fake
from tests.providers import support
from tests.providers.support import reassemble
from uniinfer.errors import (
    AuthenticationError,
    ContextLengthExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderError,
    ProviderOverloadedError,
    ProviderQuotaExceededError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
    RequestTooLargeError,
    UniInferError,
    UnsupportedFeatureError,
    UnsupportedParamError,
)
from uniinfer.fitting import check_features
from uniinfer.gateway import Gateway
from uniinfer.http import HttpClient, HttpRequest, Timeouts
from uniinfer.providers.anthropic import AnthropicAdapter
from uniinfer.providers.anthropic_request import THINKING_BUDGETS
from uniinfer.providers.base import Endpoint, ProviderAdapter
from uniinfer.providers.registry import default_registry
from uniinfer.stages import RequestContext
from uniinfer.types import AssistantMessage, ChatChunk, ChatRequest, ChatResponse, MessagesIntent, ToolMessage
from uniinfer.types.chat import SignedThinking

KEY = "sk-ant-test"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


def make_adapter(url: str = "https://api.anthropic.com", key: str | None = KEY, **kw: Any) -> ProviderAdapter:
    reg = default_registry()
    return reg.create(reg.get("anthropic"), Endpoint(base_url=url, api_key=key, **kw))


def chat(messages: list[dict[str, Any]] | None = None, **kw: Any) -> ChatRequest:
    data = {"model": "claude-x", "messages": messages or [{"role": "user", "content": "hi"}], **kw}
    return ChatRequest.model_validate(data)


def sent(request: ChatRequest, model: str = "claude-opus-4-6", *, stream: bool = False) -> dict[str, Any]:
    """The body sent for ``request`` to ``model`` (by default one whose thinking takes a budget)."""
    body: dict[str, Any] = orjson.loads(make_adapter().chat_request(request, model, stream=stream).body)
    return body


def gateway_at(url: str, *, drop: bool) -> Gateway:
    """A gateway with the ``anthropic`` provider at ``url``, dropping unsupported params or not."""
    return Gateway(
        make_config(
            f"settings: {{drop_unsupported_params: {str(drop).lower()}}}\n"
            f"providers:\n  anthropic: {{base_url: '{url}', api_key: {KEY}}}\n"
        )
    )


async def refused_or_dropped(request: ChatRequest, param: str, dropped: tuple[str, ...]) -> dict[str, Any]:
    """``request`` against the fake: refused naming ``param`` before anything is sent, then, with
    ``settings.drop_unsupported_params``, answered with ``dropped`` named (x-uniinfer-dropped-params).
    Returns the body the fake received the second time."""
    app = anthropic_app()
    async with run_fake(app) as url:
        for drop in (False, True):
            gateway = gateway_at(url, drop=drop)
            ctx = RequestContext("chat")
            try:
                if drop:
                    answer = await gateway.chat(request, ctx)
                    assert answer.choices[0].message.content
                    assert ctx.route is not None
                    assert ctx.route.dropped_params == dropped
                else:
                    with pytest.raises(UnsupportedParamError) as info:
                        await gateway.chat(request, ctx)
                    assert info.value.param == param
                    assert not app["requests"]
            finally:
                await gateway.aclose()
    body: dict[str, Any] = app["requests"][-1]
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
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rainy"}]},
        {"role": "user", "content": "and so?"},
    ]


# --- request translation ---------------------------------------------------------------


def test_registry_builds_the_anthropic_adapter() -> None:
    assert isinstance(make_adapter(), AnthropicAdapter)


def test_request_url_and_headers() -> None:
    adapter = make_adapter(headers={"anthropic-beta": "x"})
    req = adapter.chat_request(chat(), "claude-up", stream=False)
    assert req.url == "https://api.anthropic.com/v1/messages"
    assert req.headers["x-api-key"] == KEY
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["anthropic-beta"] == "x"
    assert "authorization" not in {h.lower() for h in req.headers}
    assert (
        make_adapter("http://proxy/v1/").chat_request(chat(), "m", stream=False).url
        == "http://proxy/v1/messages"
    )


def test_basic_fields_and_defaults() -> None:
    body = sent(chat(temperature=0.5, top_k=40, stop="END", user="u-1"))
    assert body == {
        "model": "claude-opus-4-6",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "temperature": 0.5,
        "top_k": 40,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
    }


def test_max_completion_tokens_wins_and_stream_flag() -> None:
    body = sent(
        chat(max_tokens=10, max_completion_tokens=20, stream=True, stream_options={"include_usage": True}),
        stream=True,
    )
    assert body["max_tokens"] == 20
    assert body["stream"] is True
    assert "stream_options" not in body
    assert sent(chat(max_tokens=10))["max_tokens"] == 10
    assert "stream" not in sent(chat())


def test_system_and_developer_messages_become_system_blocks_with_cache_control() -> None:
    cache = {"type": "ephemeral"}
    body = sent(
        chat(
            [
                {
                    "role": "system",
                    "content": [{"type": "text", "text": "Be brief.", "cache_control": cache}],
                },
                {"role": "user", "content": "hi"},
                {"role": "developer", "content": "Use French."},
                {"role": "user", "content": [{"type": "text", "text": "again", "cache_control": cache}]},
            ]
        )
    )
    assert body["system"] == [
        {"type": "text", "text": "Be brief.", "cache_control": cache},
        {"type": "text", "text": "Use French."},
    ]
    # the two user messages are now adjacent and merge into one turn
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "text", "text": "again", "cache_control": cache},
            ],
        }
    ]


def test_images_data_and_http_urls() -> None:
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
    ]
    content = sent(chat([{"role": "user", "content": parts}]))["messages"][0]["content"]
    assert content[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }
    assert content[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}


def test_media_types_in_data_urls_are_case_insensitive() -> None:
    # RFC 2397 / RFC 2045: "image/JPEG" is image/jpeg, which is all Claude takes
    pdf = {"type": "file", "file": {"file_data": f"DATA:Application/PDF;BASE64,{PNG}"}}
    parts = [{"type": "image_url", "image_url": {"url": f"data:image/PNG;Base64,{PNG}"}}, pdf]
    content = sent(chat([{"role": "user", "content": parts}]))["messages"][0]["content"]
    assert content[0]["source"] == {"type": "base64", "media_type": "image/png", "data": PNG}
    assert content[1]["source"] == {"type": "base64", "media_type": "application/pdf", "data": PNG}


@pytest.mark.parametrize(
    "url", ["data:image/bmp;base64,AAAA", "data:image/png,rawbytes", "ftp://example.com/x.png"]
)
def test_unusable_images_are_invalid_requests(url: str) -> None:
    request = chat([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    with pytest.raises(InvalidRequestError) as info:
        sent(request)
    assert info.value.param == "messages[0].content[0]"
    assert info.value.provider == "anthropic"


def test_audio_parts_are_an_unsupported_feature() -> None:
    part = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(UnsupportedFeatureError) as info:
        sent(chat([{"role": "user", "content": [part]}]))
    assert info.value.param == "messages[0].content[0]"


def test_tool_calls_and_results_translate_and_merge() -> None:
    body = sent(chat(tool_history(), tools=[WEATHER]))
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assistant = body["messages"][1]["content"]
    assert assistant == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
    ]
    assert "secret" not in orjson.dumps(body).decode()  # reasoning_content is not sent back
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "rainy"}]},
        {"type": "text", "text": "and so?"},
    ]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"text"'])
def test_invalid_tool_arguments_name_the_message(arguments: str) -> None:
    history = tool_history()[:3]
    history[1]["tool_calls"] = [history[1]["tool_calls"][0]]
    history[1]["tool_calls"][0]["function"]["arguments"] = arguments
    with pytest.raises(InvalidRequestError) as info:
        sent(chat(history))
    assert info.value.param == "messages[1].tool_calls"
    assert "messages[1].tool_calls[0]" in info.value.message


def test_tools_translation() -> None:
    bare = {"type": "function", "function": {"name": "now"}}
    assert sent(chat(tools=[WEATHER, bare]))["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": WEATHER["function"]["parameters"],
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        (None, None, None),
        (None, True, None),
    ],
)
def test_tool_choice_variants(choice: Any, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    body = sent(chat(tools=[WEATHER], tool_choice=choice, parallel_tool_calls=parallel))
    assert body.get("tool_choice") == expected


def test_parallel_tool_calls_without_tools_sends_no_tool_choice() -> None:
    assert "tool_choice" not in sent(chat(parallel_tool_calls=False))


@pytest.mark.parametrize(
    ("effort", "budget"), [("minimal", 1024), ("low", 1024), ("medium", 4096), ("high", 16384)]
)
def test_reasoning_effort_becomes_thinking(effort: str, budget: int) -> None:
    body = sent(chat(reasoning_effort=effort))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == budget + 4096


def test_thinking_budget_stays_below_an_explicit_limit() -> None:
    assert (
        sent(chat(reasoning_effort="high", max_completion_tokens=5000))["thinking"]["budget_tokens"] == 4999
    )
    assert sent(chat(reasoning_effort="low", max_tokens=8000))["thinking"]["budget_tokens"] == 1024
    with pytest.raises(InvalidRequestError) as info:
        sent(chat(reasoning_effort="low", max_tokens=1000))
    assert info.value.param == "max_tokens"


def test_thinking_is_left_off_while_a_tool_loop_is_open() -> None:
    history = tool_history()[:4]
    request = chat(history, reasoning_effort="low")
    assert "thinking" not in sent(request)
    # ... and the adapter says so, for the gateway's x-uniinfer-dropped-params
    assert make_adapter().params_left_out(request, "claude-up") == ("reasoning_effort",)
    assert make_adapter().params_left_out(chat(history), "claude-up") == ()
    closed = chat([*tool_history(), {"role": "assistant", "content": "ok"}], reasoning_effort="low")
    assert "thinking" in sent(closed)
    assert make_adapter().params_left_out(closed, "claude-up") == ()


# --- extended thinking kept whole ----------------------------------------------------------

THOUGHT = SignedThinking(type="thinking", thinking="Use the tool.", signature="sig-1")
REDACTED = SignedThinking(type="redacted_thinking", data="opaque==")


def with_signed(history: list[dict[str, Any]], *signed: SignedThinking) -> list[Any]:
    """The history with the first assistant message carrying ``signed`` (as the ingress sets it)."""
    out: list[Any] = list(history)
    i = next(i for i, m in enumerate(out) if m["role"] == "assistant")
    message = AssistantMessage.model_validate(out[i])
    out[i] = message.model_copy(update={"signed_thinking": list(signed)})
    return out


@pytest.mark.parametrize(
    ("budget", "max_tokens", "expected"),
    [(2048, 3000, 2048), (10000, 16000, 10000), (30000, 32000, 30000), (5000, 4000, 3999)],
)
def test_an_anthropic_clients_thinking_budget_is_sent_exactly(
    budget: int, max_tokens: int, expected: int
) -> None:
    request = chat(reasoning_effort="medium", max_tokens=max_tokens).with_messages_intent(
        MessagesIntent(thinking=True, budget=budget)
    )
    body = sent(request)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": expected}
    assert body["max_tokens"] == max_tokens
    # without a budget, the effort's
    assert sent(chat(reasoning_effort="medium", max_tokens=max_tokens))["thinking"]["budget_tokens"] == min(
        4096, max_tokens - 1
    )


def test_a_thinking_budget_survives_the_gateways_copies_and_is_never_serialised() -> None:
    intent = MessagesIntent(thinking=True, budget=30000, effort="max")
    request = chat(reasoning_effort="high", max_tokens=40000).with_messages_intent(intent)
    copied = request.model_copy(update={"top_p": None})
    assert copied.messages_intent == intent
    assert sent(copied)["thinking"]["budget_tokens"] == 30000
    assert "30000" not in request.model_dump_json()
    assert "max" not in request.model_dump_json().replace("max_tokens", "").replace("max_completion", "")
    assert chat().messages_intent is None


@pytest.mark.parametrize(
    ("model", "effort", "refused"),
    [
        ("claude-sonnet-4-5-20250929", "low", True),
        ("claude-haiku-4-5", "medium", True),
        ("claude-3-7-sonnet-latest", "high", True),
        ("claude-opus-4-5", "high", False),
        ("claude-opus-4-5", "max", True),
        ("claude-opus-4-6", "max", False),
        ("claude-opus-4-6", "xhigh", True),
        ("claude-sonnet-4-6", "xhigh", True),
        ("claude-opus-4-7", "xhigh", False),
        ("claude-sonnet-5", "max", False),
    ],
)
def test_an_effort_level_the_model_lacks_is_refused_or_dropped(
    model: str, effort: str, refused: bool
) -> None:
    request = chat(reasoning_effort="high", max_tokens=20000).with_messages_intent(
        MessagesIntent(thinking=True, budget=2048, effort=effort)
    )
    adapter = make_adapter()
    if not refused:
        assert adapter.values_refused(request, model) == ()
        assert sent(request, model)["output_config"] == {"effort": effort}
        return
    assert adapter.values_refused(request, model) == ("output_config.effort",)
    with pytest.raises(UnsupportedParamError) as info:
        sent(request, model)
    assert info.value.param == "output_config.effort"
    body = sent(adapter.without_values(request, model, ("output_config.effort",)), model)
    assert "output_config" not in body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}  # thinking stays


@pytest.mark.parametrize(
    ("effort", "level"), [("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high")]
)
def test_reasoning_effort_is_adaptive_thinking_from_opus_4_7(effort: str, level: str) -> None:
    """Opus 4.7 and later refuse a thinking budget (400): they think adaptively, steered by effort."""
    body = sent(chat(reasoning_effort=effort), "claude-opus-4-7")
    # summarized: from Opus 4.7 on thinking text is omitted by default, and it is reasoning_content
    assert body["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert body["output_config"] == {"effort": level}
    assert body["max_tokens"] == THINKING_BUDGETS[effort] + 4096
    assert sent(chat(reasoning_effort=effort, max_tokens=500), "claude-opus-4-7")["max_tokens"] == 500
    # before Opus 4.7, a budget and no effort (Opus 4.5 has effort, but thinking is the budget's)
    older = sent(chat(reasoning_effort=effort), "claude-opus-4-5")
    assert older["thinking"] == {"type": "enabled", "budget_tokens": THINKING_BUDGETS[effort]}
    assert "output_config" not in older


@pytest.mark.parametrize(
    ("model", "thinking"),
    [
        ("claude-opus-4-6", {"type": "adaptive"}),
        ("claude-sonnet-4-6", {"type": "adaptive"}),
        ("claude-opus-4-8", {"type": "adaptive"}),
        ("claude-sonnet-4-5", {"type": "enabled", "budget_tokens": 4096}),
    ],
)
def test_an_anthropic_clients_adaptive_thinking_is_adaptive_where_the_model_takes_it(
    model: str, thinking: dict[str, Any]
) -> None:
    request = chat(reasoning_effort="medium").with_messages_intent(
        MessagesIntent(thinking=True, adaptive=True)
    )
    body = sent(request, model)
    assert body["thinking"] == thinking
    assert "output_config" not in body  # no effort unless the client set one


@pytest.mark.parametrize(
    "model",
    [
        "claude-sonnet-4@20250514",  # Vertex AI's names for Sonnet 4 and Opus 4
        "claude-opus-4@20250514",
        "deepseek-chat",  # an Anthropic-compatible server's own model
    ],
)
def test_older_and_non_claude_names_keep_budget_thinking_and_sampling(model: str) -> None:
    adapter = make_adapter()
    assert {"temperature", "top_p", "top_k"} <= adapter.supported_for(model)
    body = sent(chat(reasoning_effort="low", temperature=1.0), model)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert "output_config" not in body


def test_an_open_tool_loop_leaves_adaptive_thinking_and_its_effort_out() -> None:
    request = chat(tool_history()[:4], reasoning_effort="low")
    body = sent(request, "claude-opus-4-7")
    assert "thinking" not in body
    assert "output_config" not in body
    assert make_adapter().params_left_out(request, "claude-opus-4-7") == ("reasoning_effort",)


@pytest.mark.parametrize("display", ["summarized", "omitted"])
def test_an_anthropic_clients_thinking_display_is_sent_as_it_is(display: str) -> None:
    adaptive = chat(reasoning_effort="medium").with_messages_intent(
        MessagesIntent(thinking=True, adaptive=True, display=display)
    )
    assert sent(adaptive, "claude-opus-4-7")["thinking"] == {"type": "adaptive", "display": display}
    enabled = chat(reasoning_effort="low", max_tokens=8000).with_messages_intent(
        MessagesIntent(thinking=True, budget=2048, display=display)
    )
    assert sent(enabled)["thinking"] == {"type": "enabled", "budget_tokens": 2048, "display": display}


async def test_sampling_params_are_refused_or_dropped_for_opus_4_7_and_later(client: HttpClient) -> None:
    """Opus 4.7 refuses temperature, top_p and top_k (400): the gateway says so before sending,
    or drops them visibly; the models before it take them."""
    adapter = make_adapter()
    assert {"temperature", "top_p", "top_k"} <= adapter.supported_for("claude-opus-4-6")
    assert not {"temperature", "top_p", "top_k"} & adapter.supported_for("claude-opus-4-7")
    assert "response_format" in adapter.supported_for("claude-opus-4-7")
    request = chat(model="anthropic/claude-opus-4-7", temperature=0.2, top_p=0.9, reasoning_effort="low")
    body = await refused_or_dropped(request, "temperature", ("temperature", "top_p"))
    assert "temperature" not in body


async def test_a_whitespace_stop_sequence_is_refused_or_dropped() -> None:
    # OpenAI clients often stop at "\n"; Claude refuses a stop sequence of only whitespace: said
    # before sending (a target mismatch, the group's next deployment is tried), or dropped visibly
    request = chat(model="anthropic/claude-sonnet-4-5", stop=["\n", "END"])
    body = await refused_or_dropped(request, "stop", ("stop",))
    assert body["stop_sequences"] == ["END"]
    body = await refused_or_dropped(chat(model="anthropic/claude-sonnet-4-5", stop="\n\n"), "stop", ("stop",))
    assert "stop_sequences" not in body


async def test_reasoning_effort_is_refused_or_dropped_for_claude_models_without_thinking() -> None:
    """Extended thinking came with Claude 3.7 Sonnet: the models before it answer ``thinking``
    with a 400, so ``reasoning_effort`` is a param they do not take (refused naming it, or
    dropped visibly); ``none`` asks for nothing and is honoured."""
    from uniinfer.providers.bedrock_models import unsupported_for

    adapter = make_adapter()
    for model in (
        "claude-3-5-sonnet-20241022",
        "claude-3-5-haiku-latest",
        "claude-3-opus-20240229",
        "claude-3-haiku@20240307",
    ):
        assert "reasoning_effort" not in adapter.supported_for(model)
        assert "reasoning_effort" in unsupported_for(f"anthropic.{model}-v1:0")
    for model in ("claude-3-7-sonnet-20250219", "claude-sonnet-4-5", "claude-opus-4-1"):
        assert "reasoning_effort" in adapter.supported_for(model)
        assert "reasoning_effort" not in unsupported_for(f"us.anthropic.{model}-v1:0")
    request = chat(model="anthropic/claude-3-5-sonnet-20241022", reasoning_effort="low")
    body = await refused_or_dropped(request, "reasoning_effort", ("reasoning_effort",))
    assert "thinking" not in body
    app = anthropic_app()
    async with run_fake(app) as url:
        gateway = gateway_at(url, drop=False)
        try:  # none asks for nothing: honoured
            await gateway.chat(request.model_copy(update={"reasoning_effort": "none"}))
        finally:
            await gateway.aclose()


async def test_temperature_beside_top_p_is_refused_or_top_p_dropped_from_opus_4_1_on() -> None:
    """From Opus 4.1 on a Claude model takes temperature or top_p, not both (the API's 400
    "temperature and top_p cannot both be specified for this model"): the gateway says so
    before sending, naming top_p, or drops top_p visibly; older models take both."""
    both = {"temperature": 0.5, "top_p": 0.9}
    for older in ("claude-3-7-sonnet-20250219", "claude-sonnet-4-0", "claude-opus-4-20250514", "my-model"):
        assert sent(chat(**both), older)["top_p"] == 0.9
        assert make_adapter().values_refused(chat(**both), older) == ()
    assert sent(chat(top_p=0.9), "claude-sonnet-4-5")["top_p"] == 0.9  # one of them: sent
    for model in ("claude-opus-4-1", "claude-sonnet-4-5-20250929", "claude-haiku-4-5", "claude-opus-4-6"):
        with pytest.raises(UnsupportedParamError, match="cannot both be set") as info:
            sent(chat(**both), model)
        assert info.value.param == "top_p"
        assert make_adapter().values_refused(chat(**both), model) == ("top_p",)
    # with thinking on, a low top_p is named once (it conflicts both ways)
    thinking = chat(temperature=1, top_p=0.5, reasoning_effort="low")
    assert make_adapter().values_refused(thinking, "claude-sonnet-4-5") == ("top_p",)

    body = await refused_or_dropped(chat(model="anthropic/claude-sonnet-4-5", **both), "top_p", ("top_p",))
    assert body["temperature"] == 0.5
    assert "top_p" not in body


def test_an_anthropic_clients_own_budget_is_sent_as_it_is_even_to_an_adaptive_only_model() -> None:
    request = chat(reasoning_effort="low", max_tokens=8000).with_messages_intent(
        MessagesIntent(thinking=True, budget=2048)
    )
    assert sent(request, "claude-opus-4-7")["thinking"] == {"type": "enabled", "budget_tokens": 2048}


async def test_fake_opus_4_7_thinks_adaptively_for_an_openai_client(client: HttpClient) -> None:
    app = anthropic_app()
    async with run_fake(app) as url:
        answer = await call(client, make_adapter(url), chat(model="claude-opus-4-7", reasoning_effort="high"))
    assert answer.choices[0].message.reasoning_content
    assert app["requests"][-1]["thinking"] == {"type": "adaptive", "display": "summarized"}


@pytest.mark.parametrize(
    ("fields", "conflict", "kept"),
    [
        # the API: "Thinking may not be enabled when tool_choice forces tool use"
        ({"tools": [WEATHER], "tool_choice": "required"}, "reasoning_effort", "tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
            "reasoning_effort",
            "tool_choice",
        ),
        # "temperature may only be set to 1 when thinking is enabled"; top_k never; top_p from 0.95
        ({"temperature": 0.2}, "temperature", "thinking"),
        ({"top_p": 0.5}, "top_p", "thinking"),
    ],
)
async def test_what_cannot_go_with_thinking_is_refused_or_dropped_before_sending(
    fields: dict[str, Any], conflict: str, kept: str
) -> None:
    app = anthropic_app()
    async with run_fake(app) as url:
        for drop in (False, True):
            gateway = gateway_at(url, drop=drop)
            ctx = RequestContext("chat")
            request = chat(
                model="anthropic/claude-sonnet-4-5", reasoning_effort="low", max_tokens=4000, **fields
            )
            try:
                if drop:
                    await gateway.chat(request, ctx)  # the fake would 400 the conflict
                    assert ctx.route is not None
                    assert ctx.route.dropped_params == (conflict,)
                    sent_body = app["requests"][-1]
                    assert ("thinking" if conflict == "reasoning_effort" else conflict) not in sent_body
                    assert kept in sent_body
                else:
                    with pytest.raises(UnsupportedParamError) as info:
                        await gateway.chat(request, ctx)
                    assert info.value.param == conflict
                    assert "settings.drop_unsupported_params" in info.value.message
                    assert not app["requests"]  # refused before sending
            finally:
                await gateway.aclose()


def test_sampling_that_thinking_allows_still_goes_with_it() -> None:
    # (both on a model from before Opus 4.1: the later ones take one of them, see above)
    body = sent(chat(reasoning_effort="low", max_tokens=4000, temperature=1, top_p=0.97), "claude-3-7-sonnet")
    assert (body["temperature"], body["top_p"], body["thinking"]["type"]) == (1, 0.97, "enabled")
    body = sent(chat(reasoning_effort="low", max_tokens=4000, top_p=0.97))
    assert (body["top_p"], body["thinking"]["type"]) == (0.97, "enabled")
    # and with thinking left out of an open tool loop, nothing conflicts
    loop = sent(chat(tool_history()[:4], reasoning_effort="low", temperature=0.2, tools=[WEATHER]))
    assert "thinking" not in loop
    assert loop["temperature"] == 0.2


def test_every_reasoning_effort_level_reaches_claude() -> None:
    assert "thinking" not in sent(chat(reasoning_effort="none"))  # none: no thinking
    assert "output_config" not in sent(chat(reasoning_effort="none"), "claude-opus-4-7")
    assert sent(chat(reasoning_effort="xhigh"))["thinking"]["budget_tokens"] == 24576
    maxed = sent(chat(reasoning_effort="max"))
    assert (maxed["thinking"]["budget_tokens"], maxed["max_tokens"]) == (27904, 32000)  # Opus 4's limit
    # adaptive models take the level itself as output_config.effort; one without it, the nearest below
    assert sent(chat(reasoning_effort="xhigh"), "claude-opus-4-7")["output_config"] == {"effort": "xhigh"}
    assert sent(chat(reasoning_effort="xhigh"), "claude-mythos-preview")["output_config"] == {
        "effort": "high"
    }
    assert sent(chat(reasoning_effort="max"), "claude-mythos-preview")["output_config"] == {"effort": "max"}
    assert make_adapter().values_refused(chat(reasoning_effort="xhigh"), "claude-mythos-preview") == ()


def test_an_effort_is_not_sent_once_reasoning_effort_was_dropped() -> None:
    request = chat(reasoning_effort="low", max_tokens=900).with_messages_intent(
        MessagesIntent(thinking=False, effort="low")
    )
    assert "output_config" not in sent(
        request.model_copy(update={"reasoning_effort": None}), "claude-opus-4-6"
    )


def test_an_upstream_error_about_effort_names_it() -> None:
    body = orjson.dumps(
        {"type": "error", "error": {"type": "invalid_request_error", "message": "output_config.effort: nope"}}
    )
    assert make_adapter().parse_error(400, {}, body).param == "output_config.effort"
    fmt = orjson.dumps(
        {"type": "error", "error": {"type": "invalid_request_error", "message": "output_config.format: bad"}}
    )
    assert make_adapter().parse_error(400, {}, fmt).param == "response_format"


def test_an_anthropic_clients_effort_alone_is_effort_not_thinking() -> None:
    """``output_config.effort`` works with thinking off: a client lowering it to save
    tokens must not get thinking (and its budget) turned on."""
    request = chat(reasoning_effort="low", max_tokens=900).with_messages_intent(
        MessagesIntent(thinking=False, effort="low")
    )
    body = sent(request)
    assert "thinking" not in body
    assert body["output_config"] == {"effort": "low"}
    assert body["max_tokens"] == 900
    # with thinking asked for too, both, and the effort as sent (max has no OpenAI level)
    both = chat(reasoning_effort="high", max_tokens=20000).with_messages_intent(
        MessagesIntent(thinking=True, budget=2048, effort="max")
    )
    body = sent(both)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["output_config"] == {"effort": "max"}
    # an OpenAI client's reasoning_effort stays thinking, with no effort field
    assert "output_config" not in sent(chat(reasoning_effort="low"))


def test_signed_thinking_starts_the_assistant_turn_unmodified_and_keeps_thinking_on() -> None:
    request = chat(with_signed(tool_history()[:4], THOUGHT, REDACTED), reasoning_effort="low")
    body = sent(request)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert body["messages"][1]["content"][:3] == [
        {"type": "thinking", "thinking": "Use the tool.", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "opaque=="},
        {"type": "text", "text": "Checking."},
    ]
    assert make_adapter().params_left_out(request, "claude-up") == ()
    # OpenAI's format never carries them
    assert "sig-1" not in request.model_dump_json()


def test_a_failed_tool_result_is_flagged_without_the_error_prefix() -> None:
    def result(content: Any) -> dict[str, Any]:
        history: list[Any] = tool_history()[:3]
        history[1] = {**history[1], "tool_calls": history[1]["tool_calls"][:1]}
        tool = ToolMessage.model_validate({"role": "tool", "tool_call_id": "call_1", "content": content})
        history[2] = tool.model_copy(update={"is_error": True})
        block: dict[str, Any] = sent(chat(history))["messages"][2]["content"][0]
        return block

    assert result("Error: city unknown") == {
        "type": "tool_result",
        "tool_use_id": "call_1",
        "is_error": True,
        "content": "city unknown",
    }
    assert result("Error") == {"type": "tool_result", "tool_use_id": "call_1", "is_error": True}
    parts = [{"type": "text", "text": "Error: timeout", "cache_control": {"type": "ephemeral"}}]
    assert result(parts)["content"] == [
        {"type": "text", "text": "timeout", "cache_control": {"type": "ephemeral"}}
    ]
    # an unflagged result keeps its text as it is
    assert sent(chat(tool_history()))["messages"][2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "call_1",
        "content": "sunny",
    }


def test_supported_params_are_chat_fields_and_exclude_what_anthropic_lacks() -> None:
    params = AnthropicAdapter.supported_params | AnthropicAdapter.per_model_params
    assert params <= set(ChatRequest.model_fields)
    assert {"temperature", "top_k", "stop", "tools", "tool_choice", "user", "reasoning_effort"} <= params
    for lacking in ("n", "seed", "logprobs", "logit_bias", "presence_penalty", "metadata"):
        assert lacking not in params


# --- response parsing ------------------------------------------------------------------


def message(content: list[dict[str, Any]], stop_reason: str | None = "end_turn", **usage: int) -> bytes:
    body = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-up",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 10, "output_tokens": 5},
    }
    return orjson.dumps(body)


def parse(body: bytes) -> ChatResponse:
    return make_adapter().parse_chat(body, "claude-x")


def test_parse_text_and_usage_with_cache_numbers() -> None:
    body = message(
        [{"type": "text", "text": "Hello"}, {"type": "text", "text": " world"}],
        input_tokens=10,
        output_tokens=5,
        cache_read_input_tokens=100,
        cache_creation_input_tokens=20,
    )
    resp = parse(body)
    assert resp.id == "msg_01"
    assert resp.model == "claude-up"
    assert resp.choices[0].message.content == "Hello world"
    assert resp.choices[0].message.tool_calls is None
    assert resp.choices[0].finish_reason == "stop"
    usage = resp.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (130, 5, 135)
    assert (usage.cached_tokens, usage.cache_write_tokens) == (100, 20)
    assert usage.completion_tokens_details is None
    # the writes by lifetime: an hour's are priced apart (and not in OpenAI's usage JSON)
    hour = {"ephemeral_5m_input_tokens": 5, "ephemeral_1h_input_tokens": 15}
    usage = parse(
        message(
            [{"type": "text", "text": "x"}],
            input_tokens=10,
            output_tokens=5,
            cache_creation_input_tokens=20,
            cache_creation=hour,
        )
    ).usage
    assert usage is not None
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens) == (20, 15)
    assert "cache_write_1h_tokens" not in usage.model_dump_json()


def test_parse_usage_without_cache_fields_has_no_details() -> None:
    usage = parse(message([{"type": "text", "text": "x"}], input_tokens=3, output_tokens=1)).usage
    assert usage is not None
    assert usage.prompt_tokens == 3
    assert usage.prompt_tokens_details is None


def test_parse_tool_use_and_thinking() -> None:
    body = message(
        [
            {"type": "thinking", "thinking": "Need weather.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque=="},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
        ],
        stop_reason="tool_use",
    )
    choice = parse(body).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.reasoning_content == "Need weather."
    # the blocks themselves, in order, for the Anthropic ingress; never in OpenAI's JSON
    assert [b.block() for b in choice.message.signed_thinking or ()] == [
        {"type": "thinking", "thinking": "Need weather.", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque=="},
    ]
    assert b"opaque" not in parse(body).model_dump_json().encode()
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls] == [("toolu_1", "get_weather"), ("toolu_2", "now")]
    assert orjson.loads(calls[0].function.arguments) == {"location": "Paris"}
    assert calls[1].function.arguments == "{}"


def test_interleaved_blocks_keep_their_order_beside_openai_s_flat_message() -> None:
    body = message(
        [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
            {"type": "thinking", "thinking": "The time too.", "signature": "sig"},
            {"type": "text", "text": "And "},
            {"type": "text", "text": "also:"},  # adjacent texts are one, as a stream shows them
            {"type": "text", "text": ""},
            {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
            {"type": "text", "text": "Done."},
        ],
        stop_reason="tool_use",
    )
    response = parse(body)
    msg = response.choices[0].message
    calls, signed = msg.tool_calls or [], msg.signed_thinking or []
    assert msg.content == "Let me check.And also:Done."
    assert [c.id for c in calls] == ["toolu_1", "toolu_2"]
    assert msg.content_blocks == ["Let me check.", calls[0], signed[0], "And also:", calls[1], "Done."]
    # OpenAI's JSON is unchanged: the joined text and both calls, no new field
    dumped = orjson.loads(response.model_dump_json())["choices"][0]["message"]
    assert set(dumped) == {"role", "content", "refusal", "tool_calls", "reasoning_content", "annotations"}
    assert dumped["content"] == "Let me check.And also:Done."


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "text", "text": "Hello"}, {"type": "text", "text": " world"}],
        [
            {"type": "redacted_thinking", "data": "opaque=="},
            {"type": "thinking", "thinking": "Need weather.", "signature": "sig"},
            {"type": "text", "text": "Let me "},
            {"type": "text", "text": "check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
            {"type": "text", "text": ""},
            {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
        ],
    ],
)
def test_blocks_in_openai_s_order_keep_no_second_copy(content: list[dict[str, Any]]) -> None:
    assert parse(message(content)).choices[0].message.content_blocks is None


def interleaved_turn(content_blocks: bool = True) -> ChatRequest:
    """``tool_history`` whose assistant turn said a text before each of its two calls."""
    history: list[Any] = tool_history()
    turn = AssistantMessage.model_validate(
        {**history[1], "content": [{"type": "text", "text": "Checking."}, {"type": "text", "text": "Then:"}]}
    )
    texts, calls = turn.content, turn.tool_calls
    assert isinstance(texts, list)
    assert calls is not None
    if content_blocks:
        turn = turn.model_copy(update={"content_blocks": [texts[0], calls[0], texts[1], calls[1]]})
    history[1] = turn
    return chat(history)


def test_an_assistant_turn_goes_back_in_the_order_its_client_sent() -> None:
    uses = [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
    ]
    texts = [{"type": "text", "text": "Checking."}, {"type": "text", "text": "Then:"}]
    assert sent(interleaved_turn())["messages"][1]["content"] == [texts[0], uses[0], texts[1], uses[1]]
    # without an order, or with one a stage made stale, OpenAI's: the texts, then the calls
    assert sent(interleaved_turn(False))["messages"][1]["content"] == [*texts, *uses]
    request = interleaved_turn()
    turn = request.messages[1]
    changed = turn.model_copy(update={"content": "Rewritten."})
    stale = request.model_copy(update={"messages": [request.messages[0], changed, *request.messages[2:]]})
    assert sent(stale)["messages"][1]["content"] == [{"type": "text", "text": "Rewritten."}, *uses]


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, None),
    ],
)
def test_stop_reasons(reason: str | None, finish: str | None) -> None:
    assert (
        parse(message([{"type": "text", "text": "x"}], stop_reason=reason)).choices[0].finish_reason == finish
    )


@pytest.mark.parametrize("body", [b"not json", b'{"id": "x"}', b'{"id": "x", "content": [{"text": "t"}]}'])
def test_bad_bodies_are_provider_response_errors(body: bytes) -> None:
    with pytest.raises(ProviderResponseError):
        parse(body)


# --- stream decoding -------------------------------------------------------------------


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in events)


START = {
    "type": "message_start",
    "message": {
        "id": "msg_s1",
        "type": "message",
        "role": "assistant",
        "model": "claude-up",
        "content": [],
        "stop_reason": None,
        "usage": {
            "input_tokens": 25,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 0,
            "output_tokens": 1,
        },
    },
}


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, **d: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": d}


def tool_stream() -> bytes:
    tool_1 = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    tool_2 = {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}
    return sse(
        START,
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        {"type": "ping"},
        delta(0, type="thinking_delta", thinking="Hm, "),
        delta(0, type="thinking_delta", thinking="weather."),
        delta(0, type="signature_delta", signature="sig"),
        {"type": "content_block_stop", "index": 0},
        block_start(1, {"type": "text", "text": ""}),
        delta(1, type="text_delta", text="Let me check ✓ "),
        delta(1, type="text_delta", text="now."),
        {"type": "content_block_stop", "index": 1},
        block_start(2, tool_1),
        delta(2, type="input_json_delta", partial_json=""),
        delta(2, type="input_json_delta", partial_json='{"loca'),
        delta(2, type="input_json_delta", partial_json='tion": "Par'),
        delta(2, type="input_json_delta", partial_json='is"}'),
        {"type": "content_block_stop", "index": 2},
        block_start(3, tool_2),
        delta(3, type="input_json_delta", partial_json="{}"),
        {"type": "content_block_stop", "index": 3},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 42},
        },
        {"type": "some_future_event", "detail": 1},
        {"type": "message_stop"},
    )


def test_a_stream_cut_after_message_delta_keeps_its_output_count() -> None:
    # message_delta's counts are cumulative; a stream cut (or failing) before message_stop is
    # recorded with them, not with message_start's output_tokens: 1
    decoder = make_adapter().stream_decoder("claude-x")
    chunks = decoder.feed(tool_stream().split(b"event: some_future_event")[0])
    (finish,) = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish.early_usage is not None
    assert (finish.early_usage.prompt_tokens, finish.early_usage.completion_tokens) == (125, 42)


def signed_of(chunks: list[ChatChunk]) -> list[SignedThinking]:
    return [b for c in chunks if c.choices for b in c.choices[0].delta.signed_thinking or ()]


def test_stream_signature_and_redacted_thinking_come_in_order_and_stay_out_of_openai_json() -> None:
    chunks = decode_bytewise(
        sse(
            START,
            block_start(0, {"type": "redacted_thinking", "data": "opaque=="}),
            {"type": "content_block_stop", "index": 0},
            block_start(1, {"type": "thinking", "thinking": "", "signature": ""}),
            delta(1, type="thinking_delta", thinking="Hm."),
            delta(1, type="signature_delta", signature="sig"),
            {"type": "content_block_stop", "index": 1},
            block_start(2, {"type": "text", "text": ""}),
            delta(2, type="text_delta", text="Hi."),
            {"type": "content_block_stop", "index": 2},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}},
            {"type": "message_stop"},
        )
    )
    carried: list[tuple[str, str]] = []  # what the chunks carry, in order
    for c in chunks:
        d = c.choices[0].delta if c.choices else None
        if d is not None:
            carried += [(b.type, b.data or b.signature) for b in d.signed_thinking or ()]
            carried += [("reasoning", d.reasoning_content)] if d.reasoning_content else []
            carried += [("text", d.content)] if d.content else []
    assert carried == [
        ("redacted_thinking", "opaque=="),
        ("reasoning", "Hm."),
        ("thinking", "sig"),
        ("text", "Hi."),
    ]
    openai_json = b"".join(c.model_dump_json(exclude_none=True).encode() for c in chunks)
    assert b"opaque" not in openai_json
    assert b'"sig"' not in openai_json


def decode_bytewise(data: bytes) -> list[ChatChunk]:
    return support.decode_bytewise(make_adapter().stream_decoder("claude-x"), data)


def test_stream_decoded_byte_by_byte() -> None:
    chunks = decode_bytewise(tool_stream())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.id for c in chunks} == {"msg_s1"}
    assert {c.model for c in chunks} == {"claude-up"}
    got = reassemble(chunks)
    assert got["text"] == "Let me check ✓ now."
    assert got["thinking"] == "Hm, weather."
    assert [b.block() for b in signed_of(chunks)] == [
        {"type": "thinking", "thinking": "", "signature": "sig"}
    ]
    assert got["finish"] == "tool_calls"
    assert sorted(got["calls"]) == [0, 1]  # numbered by tool_use block, not content block index
    assert got["calls"][0]["id"] == "toolu_1"
    assert got["calls"][0]["name"] == "get_weather"
    assert orjson.loads(got["calls"][0]["arguments"]) == {"location": "Paris"}
    assert (got["calls"][1]["name"], got["calls"][1]["arguments"]) == ("now", "{}")


def test_stream_tool_call_deltas_are_openai_shaped() -> None:
    chunks = decode_bytewise(tool_stream())
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
    starts = [call for call in calls if call.id is not None]
    assert [(s.index, s.id, s.type) for s in starts] == [
        (0, "toolu_1", "function"),
        (1, "toolu_2", "function"),
    ]
    assert starts[0].function is not None
    assert (starts[0].function.name, starts[0].function.arguments) == ("get_weather", "")
    pieces = [call for call in calls if call.id is None]
    assert [p.index for p in pieces] == [0, 0, 0, 1]  # empty partial_json pieces are skipped
    assert all(p.type is None and p.function is not None and p.function.name is None for p in pieces)


def test_stream_final_usage_chunk() -> None:
    chunks = decode_bytewise(tool_stream())
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (125, 42)
    assert (last.usage.cached_tokens, last.usage.cache_write_tokens) == (100, 0)
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_with_crlf_line_endings() -> None:
    text = sse(
        START,
        block_start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="hi"),
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}},
        {"type": "message_stop"},
    ).replace(b"\n", b"\r\n")
    assert reassemble(decode_bytewise(text))["text"] == "hi"


def test_stream_without_message_stop_is_a_connection_error() -> None:
    decoder = make_adapter().stream_decoder("claude-x")
    decoder.feed(
        sse(START, block_start(0, {"type": "text", "text": ""}), delta(0, type="text_delta", text="par"))
    )
    with pytest.raises(ProviderConnectionError, match="message_stop"):
        decoder.close()


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("overloaded_error", ProviderOverloadedError),
        ("rate_limit_error", RateLimitError),
        ("api_error", ProviderError),
        ("invalid_request_error", InvalidRequestError),
    ],
)
def test_stream_error_event_raises_the_mapped_error(kind: str, cls: type[UniInferError]) -> None:
    decoder = make_adapter().stream_decoder("claude-x")
    decoder.feed(sse(START))
    with pytest.raises(cls) as info:
        decoder.feed(sse({"type": "error", "error": {"type": kind, "message": "Overloaded"}}))
    assert info.value.provider == "anthropic"
    assert "Overloaded" in info.value.message


def test_stream_garbage_is_a_provider_response_error() -> None:
    decoder = make_adapter().stream_decoder("claude-x")
    with pytest.raises(ProviderResponseError):
        decoder.feed(b'event: content_block_delta\ndata: {"type": "content_block_delta"}\n\n')


# --- error mapping ---------------------------------------------------------------------


def anthropic_error(kind: str, text: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": text}, "request_id": "req_1"})


@pytest.mark.parametrize(
    ("status", "kind", "text", "cls", "param"),
    [
        (
            400,
            "invalid_request_error",
            "temperature: Input should be less than or equal to 1",
            InvalidRequestError,
            "temperature",
        ),
        (
            400,
            "invalid_request_error",
            "stop_sequences: each stop sequence must contain non-whitespace",
            InvalidRequestError,
            "stop",
        ),
        (
            400,
            "invalid_request_error",
            "messages.1.content.0: unexpected `tool_use_id`",
            InvalidRequestError,
            "messages",
        ),
        (
            400,
            "invalid_request_error",
            "prompt is too long: 208310 tokens > 200000 maximum",
            ContextLengthExceededError,
            None,
        ),
        (  # as reported in anthropics/claude-code#4951
            400,
            "invalid_request_error",
            "input length and `max_tokens` exceed context limit: 178959 + 64000 > 200000, decrease "
            "input length or `max_tokens` and try again",
            ContextLengthExceededError,
            None,
        ),
        (
            400,
            "invalid_request_error",
            "Input is too long for requested model.",
            ContextLengthExceededError,
            None,
        ),
        (  # an account out of credit: a 400, not the documented 402 (anthropics/claude-code#4684)
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing "
            "to upgrade or purchase credits.",
            ProviderQuotaExceededError,
            None,
        ),
        (401, "authentication_error", "invalid x-api-key", AuthenticationError, None),
        (403, "permission_error", "Your API key does not have permission", PermissionDeniedError, None),
        (404, "not_found_error", "model: claude-nope", ModelNotFoundError, None),
        (
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
            RequestTooLargeError,
            None,
        ),
        (500, "api_error", "Internal server error", ProviderError, None),
        (529, "overloaded_error", "Overloaded", ProviderOverloadedError, None),
    ],
)
def test_error_mapping(
    status: int, kind: str, text: str, cls: type[UniInferError], param: str | None
) -> None:
    err = make_adapter().parse_error(status, {}, anthropic_error(kind, text))
    assert type(err) is cls
    assert err.param == param
    assert err.upstream_status == status
    assert err.message == f"anthropic: {text}"


def test_rate_limit_carries_retry_after() -> None:
    err = make_adapter().parse_error(
        429, {"retry-after": "7"}, anthropic_error("rate_limit_error", "slow down")
    )
    assert isinstance(err, RateLimitError)
    assert err.retry_after == 7.0


def test_echoed_key_is_redacted() -> None:
    err = make_adapter().parse_error(
        401, {}, anthropic_error("authentication_error", f"invalid x-api-key {KEY}")
    )
    assert KEY not in err.message
    assert KEY not in (err.upstream_body or "")
    assert "[redacted]" in err.message


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
    req = adapter.chat_request(request, request.model, stream=True)
    upstream = await client.open_stream(req, Timeouts(), adapter.name)
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


async def test_fake_echo_with_usage_and_recorded_request(client: HttpClient) -> None:
    app = anthropic_app(api_key=KEY)
    async with run_fake(app) as url:
        resp = await call(
            client,
            make_adapter(url),
            chat(
                messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "hello there"}],
                stop=["zzz"],
            ),
        )
    assert resp.choices[0].message.content == "echo: hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.id.startswith("msg_")
    assert resp.usage is not None
    assert (resp.usage.cached_tokens, resp.usage.cache_write_tokens) == (0, 0)
    assert resp.usage.completion_tokens == 3
    recorded = app["requests"][-1]
    assert recorded["system"] == [{"type": "text", "text": "sys"}]
    assert recorded["max_tokens"] == 4096
    assert recorded["stop_sequences"] == ["zzz"]


async def test_fake_reports_cache_reads_for_cache_control(client: HttpClient) -> None:
    system = [{"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}]
    request = chat([{"role": "system", "content": system}, {"role": "user", "content": "q"}])
    async with run_fake(anthropic_app()) as url:
        resp = await call(client, make_adapter(url), request)
    assert resp.usage is not None
    assert resp.usage.cached_tokens == 100
    assert resp.usage.cache_write_tokens == 0
    assert resp.usage.prompt_tokens == 100 + 3  # input words of system + messages, plus the cache read


async def test_fake_stream_text_over_socket(client: HttpClient) -> None:
    async with run_fake(anthropic_app()) as url:
        chunks = await stream(
            client,
            make_adapter(url),
            chat([{"role": "user", "content": "héllo wörld ✓ ünïcode"}], stream=True),
        )
    got = reassemble(chunks)
    assert got["text"] == "echo: héllo wörld ✓ ünïcode"
    assert got["finish"] == "stop"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3  # several deltas
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


async def test_fake_stream_tool_call_and_thinking(client: HttpClient) -> None:
    request = chat(
        [{"role": "user", "content": "weather?"}], model="tool-think", tools=[WEATHER], stream=True
    )
    async with run_fake(anthropic_app()) as url:
        chunks = await stream(client, make_adapter(url), request)
    got = reassemble(chunks)
    assert got["finish"] == "tool_calls"
    assert got["thinking"]
    assert list(got["calls"]) == [0]
    assert got["calls"][0]["id"].startswith("toolu_")
    assert got["calls"][0]["name"] == "get_weather"
    assert orjson.loads(got["calls"][0]["arguments"]) == {"location": "Paris"}
    arg_chunks = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert len(arg_chunks) > 2  # the input arrived in pieces


async def test_fake_tool_loop_round_trip(client: HttpClient) -> None:
    app = anthropic_app()
    async with run_fake(app) as url:
        adapter = make_adapter(url)
        first = await call(
            client, adapter, chat([{"role": "user", "content": "weather?"}], model="tool-1", tools=[WEATHER])
        )
        calls = first.choices[0].message.tool_calls or []
        assert first.choices[0].finish_reason == "tool_calls"
        history = [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
            {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny, 21C"},
        ]
        second = await call(
            client, adapter, chat(history, model="tool-1", tools=[WEATHER], reasoning_effort="low")
        )
    assert second.choices[0].message.content == "echo: sunny, 21C"
    assert "thinking" not in app["requests"][-1]  # left off: the tool loop is open


@pytest.mark.parametrize("output", ["", " \n", [{"type": "text", "text": " "}]])
async def test_a_tool_that_printed_nothing_is_a_result_without_content(
    client: HttpClient, output: str | list[dict[str, str]]
) -> None:
    # OpenAI's format takes a blank tool result; Claude refuses one (the fake, as reported)
    app = anthropic_app()
    call_ = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    history = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call_]},
        {"role": "tool", "tool_call_id": "call_1", "content": output},
    ]
    async with run_fake(app) as url:
        answer = await call(client, make_adapter(url), chat(history, model="tool-1", tools=[WEATHER]))
    assert answer.choices[0].finish_reason is not None
    assert app["requests"][-1]["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "call_1"}]


async def test_fake_tool_loop_with_other_providers_call_ids(client: HttpClient) -> None:
    # Claude takes only ^[a-zA-Z0-9_-]+$ ids; Kimi's are "functions.get_weather:0"
    ids = ["functions.get_weather:0", "functions.get_weather:1", "call 1", "call_1"]
    calls = [
        {"id": i, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}} for i in ids
    ]
    history = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        *({"role": "tool", "tool_call_id": i, "content": f"result {n}"} for n, i in enumerate(ids)),
    ]
    app = anthropic_app()
    async with run_fake(app) as url:
        reply = await call(client, make_adapter(url), chat(history, model="tool-1", tools=[WEATHER]))
    assert reply.choices[0].message.content
    turns = app["requests"][-1]["messages"]
    uses = [b["id"] for b in turns[1]["content"]]
    results = [b["tool_use_id"] for b in turns[2]["content"]]
    assert uses == results  # each call still paired with its result, in order
    assert len(set(uses)) == 4  # "call 1" and "call_1" stay two calls
    assert uses[3] == "call_1"  # an id Claude takes passes as it is


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
async def test_fake_tool_loop_with_signed_thinking_keeps_thinking_on(
    client: HttpClient, streamed: bool
) -> None:
    app = anthropic_app()
    question = {"role": "user", "content": "weather?"}
    async with run_fake(app) as url:
        adapter = make_adapter(url)
        first = chat(
            [question], model="tool-redact", tools=[WEATHER], reasoning_effort="low", stream=streamed or None
        )
        if streamed:
            chunks = await stream(client, adapter, first)
            signed = signed_of(chunks)
            calls = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in reassemble(chunks)["calls"].values()
            ]
            thought = reassemble(chunks)["thinking"]
            # a stream's signature completes the thinking streamed before it
            signed = [
                b.model_copy(update={"thinking": thought}) if b.type == "thinking" else b for b in signed
            ]
        else:
            answer = (await call(client, adapter, first)).choices[0].message
            signed = answer.signed_thinking or []
            calls = [c.model_dump() for c in answer.tool_calls or ()]
        assert [b.type for b in signed] == ["redacted_thinking", "thinking"]
        assert signed[0].data == REDACTED_DATA
        assert signed[1].signature == sign(signed[1].thinking)
        assistant = AssistantMessage.model_validate(
            {"role": "assistant", "content": None, "tool_calls": calls}
        )
        history = [
            question,
            assistant.model_copy(update={"signed_thinking": signed}),
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny, 21C"},
        ]
        second = await call(
            client, adapter, chat(history, model="claude-x", tools=[WEATHER], reasoning_effort="low")
        )
    assert second.choices[0].message.content == "echo: sunny, 21C"
    sent_back = app["requests"][-1]
    # a model after Opus 4.7 (any unknown claude- name) thinks adaptively, steered by the effort
    assert sent_back["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert sent_back["output_config"] == {"effort": "low"}
    assert sent_back["messages"][1]["content"][:2] == [b.block() for b in signed]


async def test_fake_stream_cut_is_a_connection_error(client: HttpClient) -> None:
    async with run_fake(anthropic_app()) as url:
        with pytest.raises(ProviderConnectionError):
            await stream(client, make_adapter(url), chat(model="cut-1", stream=True))


@pytest.mark.parametrize("key", ["sk-ant-wrong", None])
async def test_fake_rejects_wrong_or_missing_key(client: HttpClient, key: str | None) -> None:
    async with run_fake(anthropic_app(api_key=KEY)) as url:
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
        ("error-529", ProviderOverloadedError, None),
        ("error-500", ProviderError, None),
    ],
)
async def test_fake_failure_modes_map_to_errors(
    client: HttpClient, model: str, cls: type[UniInferError], retry_after: float | None
) -> None:
    async with run_fake(anthropic_app()) as url:
        with pytest.raises(cls) as info:
            await call(client, make_adapter(url), chat(model=model))
    assert type(info.value) is cls
    assert info.value.retry_after == retry_after
    assert KEY not in info.value.message


async def test_fake_stream_error_status_maps_before_streaming(client: HttpClient) -> None:
    async with run_fake(anthropic_app()) as url:
        with pytest.raises(ProviderOverloadedError):
            await stream(client, make_adapter(url), chat(model="error-529", stream=True))


async def test_fake_rejects_openai_temperature_range_naming_the_param(client: HttpClient) -> None:
    async with run_fake(anthropic_app()) as url:
        with pytest.raises(InvalidRequestError) as info:
            await call(client, make_adapter(url), chat(temperature=1.5))
    assert info.value.param == "temperature"
    assert "less than or equal to 1" in info.value.message


# --- the fake itself checks what the real API checks -------------------------------------


async def raw(
    client: HttpClient, url: str, body: dict[str, Any], **headers: str
) -> tuple[int, dict[str, Any]]:
    base = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    req = HttpRequest(url + "/v1/messages", orjson.dumps(body), {**base, **headers})
    resp = await client.send(req, Timeouts(), "anthropic")
    payload: dict[str, Any] = orjson.loads(resp.body)
    return resp.status, payload


MINIMAL = {"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
TOOL = {"name": "get_weather", "input_schema": {"type": "object"}}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({**MINIMAL, "n": 2}, "n: Extra inputs are not permitted"),
        ({k: v for k, v in MINIMAL.items() if k != "max_tokens"}, "max_tokens: Field required"),
        ({**MINIMAL, "max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        ({**MINIMAL, "messages": []}, "at least one message"),
        ({**MINIMAL, "messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        ({**MINIMAL, "temperature": 1.2}, "temperature: Input should be less than or equal to 1"),
        ({**MINIMAL, "system": [{"type": "image"}]}, "system.0.type"),
        ({**MINIMAL, "metadata": {"trace": "1"}}, "metadata.trace: Extra inputs are not permitted"),
        (
            {**MINIMAL, "tool_choice": {"type": "auto"}},
            "tool_choice may only be specified while providing tools",
        ),
        ({**MINIMAL, "tools": [{"name": "get_weather"}]}, "tools.0.input_schema: Field required"),
        (
            {
                **MINIMAL,
                "messages": [
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]}
                ],
            },
            "unexpected `tool_use_id`",
        ),
        (
            {
                **MINIMAL,
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": [USE]},
                    {"role": "user", "content": "no result"},
                ],
            },
            "`tool_use` ids were found without `tool_result` blocks",
        ),
        (
            {
                **MINIMAL,
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": [{**USE, "id": "call:1"}]},
                ],
            },
            "messages.1.content.0.id: String should match pattern",
        ),
        (
            {**MINIMAL, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
            "text content blocks must be non-empty",
        ),
        (
            {**MINIMAL, "model": "claude-opus-4-6", "thinking": {"type": "enabled", "budget_tokens": 2048}},
            "`max_tokens` must be greater than",
        ),
        (
            {
                **MINIMAL,
                "model": "claude-opus-4-6",
                "max_tokens": 4096,
                "temperature": 0.5,
                "thinking": {"type": "enabled", "budget_tokens": 1024},
            },
            "`temperature` may only be set to 1",
        ),
        (
            {
                **MINIMAL,
                "model": "claude-opus-4-6",
                "max_tokens": 4096,
                "tools": [TOOL],
                "thinking": {"type": "enabled", "budget_tokens": 1024},
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": [USE]},
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}],
                    },
                ],
            },
            "Expected `thinking` or `redacted_thinking`",
        ),
        (
            {
                **MINIMAL,
                "model": "claude-opus-4-7",
                "max_tokens": 4096,
                "thinking": {"type": "enabled", "budget_tokens": 1024},
            },
            '"thinking.type.enabled" is not supported for this model',
        ),
        (
            {**MINIMAL, "model": "claude-sonnet-4-5", "max_tokens": 4096, "thinking": {"type": "adaptive"}},
            "thinking.type.adaptive is not supported for this model",
        ),
        (
            {
                **MINIMAL,
                "messages": [
                    {"role": "user", "content": "q"},
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "thinking", "thinking": "changed", "signature": sign("original")}
                        ],
                    },
                    {"role": "user", "content": "again"},
                ],
            },
            "messages.1.content.0: Invalid `signature` in `thinking` block",
        ),
        (
            {
                **MINIMAL,
                "messages": [
                    {"role": "user", "content": "q"},
                    {
                        "role": "assistant",
                        "content": [{"type": "thinking", "thinking": "t", "signature": ""}],
                    },
                    {"role": "user", "content": "again"},
                ],
            },
            "Invalid `signature` in `thinking` block",
        ),
        (
            {
                **MINIMAL,
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "forged"}]},
                    {"role": "user", "content": "again"},
                ],
            },
            "Invalid `data` in `redacted_thinking` block",
        ),
    ],
)
async def test_fake_validates_like_the_real_api(
    client: HttpClient, body: dict[str, Any], fragment: str
) -> None:
    async with run_fake(anthropic_app()) as url:
        status, payload = await raw(client, url, body)
    assert status == 400
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "invalid_request_error"
    assert fragment in payload["error"]["message"]


async def test_fake_requires_the_version_header_and_merges_same_role_turns(client: HttpClient) -> None:
    async with run_fake(anthropic_app()) as url:
        status, payload = await raw(client, url, MINIMAL, **{"anthropic-version": ""})
        assert (status, payload["error"]["message"]) == (400, "anthropic-version: header is required")
        body = {
            **MINIMAL,
            "messages": [
                {"role": "assistant", "content": "Hi!"},
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
            ],
        }
        status, payload = await raw(client, url, body)
    assert status == 200
    assert payload["content"] == [{"type": "text", "text": "echo: a b"}]


async def test_fake_cuts_at_max_tokens_and_stop_sequences(client: HttpClient) -> None:
    async with run_fake(anthropic_app()) as url:
        _, short = await raw(
            client,
            url,
            {**MINIMAL, "max_tokens": 2, "messages": [{"role": "user", "content": "one two three"}]},
        )
        _, stopped = await raw(
            client,
            url,
            {**MINIMAL, "stop_sequences": ["two"], "messages": [{"role": "user", "content": "one two"}]},
        )
    assert (short["content"][0]["text"], short["stop_reason"]) == ("echo: one", "max_tokens")
    assert (stopped["stop_reason"], stopped["stop_sequence"]) == ("stop_sequence", "two")
    assert stopped["content"][0]["text"] == "echo: one "


# --- PDF documents, stop sequences, stream start ------------------------------------------

PDF = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK"


def pdf_part(**file: str) -> dict[str, Any]:
    return {"type": "file", "file": file}


def test_a_pdf_file_part_becomes_a_document_block() -> None:
    content = [
        {"type": "text", "text": "Summarise."},
        pdf_part(filename="report.pdf", file_data=f"data:application/pdf;base64,{PDF}"),
        pdf_part(file_data=f"data:application/pdf;base64,{PDF}"),
    ]
    blocks = sent(chat([{"role": "user", "content": content}]))["messages"][0]["content"]
    source = {"type": "base64", "media_type": "application/pdf", "data": PDF}
    assert blocks[1:] == [
        {"type": "document", "source": source, "title": "report.pdf"},
        {"type": "document", "source": source},
    ]


@pytest.mark.parametrize(
    ("file", "error", "fragment"),
    [
        ({"file_id": "file-abc"}, UnsupportedFeatureError, "'file_id'"),
        ({"filename": "a.pdf"}, UnsupportedFeatureError, "without 'file_data'"),
        ({"file_data": f"data:text/csv;base64,{PDF}"}, InvalidRequestError, "data:text/csv"),
        ({"file_data": "https://example.com/a.pdf"}, InvalidRequestError, "PDF"),
    ],
)
def test_file_parts_anthropic_cannot_take_are_a_clear_400(
    file: dict[str, str], error: type[UniInferError], fragment: str
) -> None:
    request = chat([{"role": "user", "content": [{"type": "text", "text": "q"}, pdf_part(**file)]}])
    with pytest.raises(error) as info:
        sent(request)
    assert info.value.http_status == 400
    assert info.value.param is not None
    assert info.value.param.startswith("messages[0].content[1].file")
    assert fragment in info.value.message


def test_parse_keeps_the_matched_stop_sequence() -> None:
    data = orjson.loads(message([{"type": "text", "text": "hello "}], "stop_sequence"))
    choice = parse(orjson.dumps({**data, "stop_sequence": "there"})).choices[0]
    assert (choice.finish_reason, choice.stop_sequence) == ("stop", "there")
    assert "stop_sequence" not in choice.model_dump_json()  # not part of OpenAI's format
    assert parse(message([{"type": "text", "text": "x"}])).choices[0].stop_sequence is None


def test_stream_role_chunk_has_no_content_and_carries_the_input_usage() -> None:
    events = sse(
        START,
        block_start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="hello "),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "stop_sequence", "stop_sequence": "there"},
            "usage": {"output_tokens": 2},
        },
        {"type": "message_stop"},
    )
    chunks = decode_bytewise(events)
    first = chunks[0].choices[0].delta
    assert (first.role, first.content) == ("assistant", None)
    assert b'"content"' not in chunks[0].model_dump_json(exclude_none=True).encode()
    early = chunks[0].early_usage
    assert early is not None
    assert (early.prompt_tokens, early.cached_tokens) == (125, 100)
    assert "early_usage" not in chunks[0].model_dump_json()
    stop = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert (stop.choices[0].finish_reason, stop.choices[0].stop_sequence) == ("stop", "there")
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2


async def test_fake_reads_a_pdf_document_and_checks_its_source(client: HttpClient) -> None:
    data_url = f"data:application/pdf;base64,{PDF}"
    request = chat(
        [{"role": "user", "content": [{"type": "text", "text": "read"}, pdf_part(file_data=data_url)]}]
    )
    app = anthropic_app()
    async with run_fake(app) as url:
        resp = await call(client, make_adapter(url), request)
        doc = {"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": PDF}}
        body = {**MINIMAL, "messages": [{"role": "user", "content": [doc]}]}
        status, payload = await raw(client, url, body)
    assert resp.choices[0].message.content == "echo: read"
    assert app["requests"][0]["messages"][0]["content"][1]["type"] == "document"
    assert status == 400
    assert "messages.0.content.0.source.base64.media_type" in payload["error"]["message"]


# --- structured outputs (https://docs.anthropic.com/en/docs/build-with-claude/structured-outputs) ---

ECHO_SCHEMA = {
    "type": "object",
    "properties": {"echo": {"type": "string"}},
    "required": ["echo"],
    "additionalProperties": False,
}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "Echo", "schema": ECHO_SCHEMA, "strict": True}}
STRICT_PARAMS = {
    "type": "object",
    "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["location", "unit"],
    "additionalProperties": False,
}
STRICT_WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": STRICT_PARAMS, "strict": True},
}
WITH = ["claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "claude-haiku-4-5", "claude-opus-4-5-20251101"]
WITH += ["claude-opus-4-6", "claude-sonnet-4-6", "claude-opus-4-7"]
WITHOUT = ["claude-3-5-haiku-20241022", "claude-3-7-sonnet-latest", "claude-3-haiku-20240307", "claude-2.1"]
WITHOUT += ["claude-sonnet-4-20250514", "claude-sonnet-4-0", "claude-opus-4-20250514", "claude-opus-4-0"]
WITHOUT += ["claude-opus-4-1", "claude-opus-4-1-20250805"]


@pytest.mark.parametrize("model", WITH)
def test_json_schema_is_sent_as_output_config_format_without_a_beta_header(model: str) -> None:
    adapter = make_adapter()
    assert "response_format" in adapter.supported_for(model)
    upstream = adapter.chat_request(chat(response_format=JSON_SCHEMA), model, stream=False)
    body = orjson.loads(upstream.body)
    # the generally available shape; the beta's top-level output_format is deprecated
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": ECHO_SCHEMA}}
    assert "output_format" not in body
    assert "anthropic-beta" not in upstream.headers


def test_text_response_format_sends_nothing() -> None:
    body = sent(chat(response_format={"type": "text"}))
    assert "output_config" not in body


def test_a_strict_tool_keeps_strict_and_others_send_none() -> None:
    tools = sent(chat(tools=[STRICT_WEATHER, WEATHER]))["tools"]
    assert tools[0] == {"name": "get_weather", "input_schema": STRICT_PARAMS, "strict": True}
    assert "strict" not in tools[1]
    loose = {"type": "function", "function": {**WEATHER["function"], "strict": False}}
    assert "strict" not in sent(chat(tools=[loose]))["tools"][0]


@pytest.mark.parametrize("model", WITHOUT)
def test_models_without_structured_outputs_refuse_them_naming_the_param(model: str) -> None:
    adapter = make_adapter()
    assert "response_format" not in adapter.supported_for(model)
    request = chat(tools=[WEATHER, STRICT_WEATHER])
    assert adapter.values_refused(request, model) == ("tools[1].function.strict",)
    with pytest.raises(UnsupportedParamError) as info:  # a value it cannot honour: droppable
        adapter.chat_request(request, model, stream=True)
    assert (info.value.param, info.value.provider) == ("tools[1].function.strict", "anthropic")
    assert model in info.value.message
    dropped = adapter.without_values(request, model, ("tools[1].function.strict",))
    tools = orjson.loads(adapter.chat_request(dropped, model, stream=False).body)["tools"]
    assert [t["name"] for t in tools] == ["get_weather", "get_weather"]
    assert not any("strict" in t for t in tools)
    with pytest.raises(UnsupportedFeatureError) as info:
        adapter.chat_request(chat(response_format=JSON_SCHEMA), model, stream=False)
    assert (info.value.param, info.value.provider) == ("response_format", "anthropic")
    # without strict, tools go as before
    assert orjson.loads(adapter.chat_request(chat(tools=[WEATHER]), model, stream=False).body)["tools"]


@pytest.mark.parametrize("model", WITHOUT)
def test_the_gateway_refuses_json_schema_per_model_before_anything_is_sent(model: str) -> None:
    adapter = make_adapter()
    with pytest.raises(UnsupportedFeatureError) as info:
        check_features(chat(response_format=JSON_SCHEMA), adapter, model)
    assert (info.value.param, info.value.provider) == ("response_format", "anthropic")
    assert "provider 'anthropic'" in info.value.message
    assert f"model '{model}'" in info.value.message
    assert "structured output (response_format json_schema)" in info.value.message


def test_the_gateway_lets_json_schema_through_for_a_model_with_it_and_still_refuses_json_object() -> None:
    adapter = make_adapter()
    check_features(chat(response_format=JSON_SCHEMA), adapter, "claude-sonnet-4-5")
    with pytest.raises(UnsupportedFeatureError) as info:
        check_features(chat(response_format={"type": "json_object"}), adapter, "claude-sonnet-4-5")
    assert "JSON mode (response_format json_object)" in info.value.message
    # and the adapter itself, for direct callers: no faithful equivalent, so refused
    with pytest.raises(UnsupportedFeatureError) as info:
        adapter.chat_request(chat(response_format={"type": "json_object"}), "claude-sonnet-4-5", stream=False)
    assert info.value.param == "response_format"


async def test_fake_answers_json_matching_the_schema_plain_and_streamed(client: HttpClient) -> None:
    app = anthropic_app(api_key=KEY)
    request = chat(
        [{"role": "user", "content": "hello there"}], model="claude-sonnet-4-5", response_format=JSON_SCHEMA
    )
    async with run_fake(app) as url:
        adapter = make_adapter(url)
        resp = await call(client, adapter, request)
        chunks = await stream(client, adapter, request)
        cut = await call(client, adapter, request.model_copy(update={"max_tokens": 1}))
    assert orjson.loads(resp.choices[0].message.content or "") == {"echo": "hello there"}
    assert resp.choices[0].finish_reason == "stop"
    whole = reassemble(chunks)
    assert orjson.loads(whole["text"]) == {"echo": "hello there"}
    assert whole["finish"] == "stop"
    # cut by max_tokens: the JSON may be incomplete, and the finish reason says so
    assert cut.choices[0].finish_reason == "length"
    assert app["requests"][0]["output_config"] == {"format": {"type": "json_schema", "schema": ECHO_SCHEMA}}


async def test_fake_strict_tool_call_matches_its_schema(client: HttpClient) -> None:
    app = anthropic_app()
    request = chat(model="claude-haiku-4-5", tools=[STRICT_WEATHER], tool_choice="required")
    async with run_fake(app) as url:
        resp = await call(client, make_adapter(url), request)
    calls = resp.choices[0].message.tool_calls or []
    assert [orjson.loads(c.function.arguments) for c in calls] == [{"location": "Paris", "unit": "c"}]
    assert app["requests"][0]["tools"][0]["strict"] is True


async def test_a_schema_the_api_cannot_compile_is_a_400_naming_response_format(client: HttpClient) -> None:
    schema = {**ECHO_SCHEMA, "properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "N", "schema": schema}}
    async with run_fake(anthropic_app()) as url:
        with pytest.raises(InvalidRequestError) as info:
            await call(client, make_adapter(url), chat(model="claude-sonnet-4-5", response_format=fmt))
    assert info.value.param == "response_format"
    assert info.value.upstream_status == 400
    assert "minimum" in info.value.message


STRUCTURED = {**MINIMAL, "model": "claude-sonnet-4-5"}
JSON_OUTPUT = {"format": {"type": "json_schema", "schema": ECHO_SCHEMA}}
STRICT_TOOL = {"name": "f", "input_schema": STRICT_PARAMS, "strict": True}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            {**MINIMAL, "model": "claude-3-5-haiku-20241022", "output_config": JSON_OUTPUT},
            "output_config.format",
        ),
        ({**MINIMAL, "model": "claude-opus-4-1", "tools": [STRICT_TOOL]}, "tools.0.strict"),
        (
            {**STRUCTURED, "output_format": JSON_OUTPUT["format"]},
            "output_format: Extra inputs are not permitted",
        ),
        ({**STRUCTURED, "output_config": {"format": {"type": "json_object"}}}, "output_config.format.type"),
        ({**STRUCTURED, "output_config": {"format": {"type": "json_schema"}}}, "schema: Field required"),
        (
            {
                **STRUCTURED,
                "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}, "x": 1}},
            },
            "output_config.format.x: Extra inputs are not permitted",
        ),
        (
            {**STRUCTURED, "tools": [{**STRICT_TOOL, "strict": "yes"}]},
            "tools.0.strict: Input should be a valid boolean",
        ),
        (
            {
                **STRUCTURED,
                "output_config": {
                    "format": {
                        "type": "json_schema",
                        "schema": {"type": "object", "additionalProperties": True},
                    }
                },
            },
            "'additionalProperties' must be false",
        ),
        (
            {
                **STRUCTURED,
                "tools": [
                    {
                        **STRICT_TOOL,
                        "input_schema": {
                            "type": "object",
                            "properties": {"node": {"$ref": "#/$defs/Node"}},
                            "$defs": {
                                "Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}
                            },
                        },
                    }
                ],
            },
            "Too many recursive definitions in schema",
        ),
        (
            {
                **STRUCTURED,
                "output_config": JSON_OUTPUT,
                "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "{"}],
            },
            "prefilling",
        ),
    ],
)
async def test_fake_checks_structured_outputs_like_the_real_api(
    client: HttpClient, body: dict[str, Any], fragment: str
) -> None:
    async with run_fake(anthropic_app()) as url:
        status, payload = await raw(client, url, body)
    assert status == 400
    assert payload["error"]["type"] == "invalid_request_error"
    assert fragment in payload["error"]["message"]


@pytest.mark.parametrize("drop", [False, True])
async def test_a_strict_tool_for_an_older_claude_is_refused_or_dropped_visibly(drop: bool) -> None:
    """The openai SDK's pydantic tools are strict: a Claude model without structured outputs cannot
    honour that. A 400 naming the param, or with drop_unsupported_params the tool without it."""
    from tests.conftest import make_config
    from uniinfer.gateway import Gateway
    from uniinfer.stages import RequestContext

    app = anthropic_app(api_key=KEY)
    async with run_fake(app) as url:
        config = make_config(
            f"providers:\n  anthropic: {{api_key: {KEY}, base_url: '{url}'}}\n"
            f"settings: {{drop_unsupported_params: {str(drop).lower()}}}\n"
        )
        gateway = Gateway(config)
        request = chat(model="anthropic/claude-3-5-haiku-20241022", tools=[STRICT_WEATHER])
        ctx = RequestContext("chat")
        try:
            if not drop:
                with pytest.raises(UnsupportedParamError) as info:
                    await gateway.chat(request, ctx)
                assert info.value.param == "tools[0].function.strict"
                assert not app["requests"]  # nothing sent
                return
            await gateway.chat(request, ctx)
        finally:
            await gateway.aclose()
    assert ctx.route is not None
    assert ctx.route.dropped_params == ("tools[0].function.strict",)  # x-uniinfer-dropped-params
    sent_tool = app["requests"][-1]["tools"][0]
    assert sent_tool["name"] == "get_weather"
    assert "strict" not in sent_tool


def test_a_streamed_tool_call_without_input_has_the_arguments_of_an_empty_object() -> None:
    # the API streams one empty partial_json for a tool without input: the call's arguments
    # were "", where the same answer not streamed (and OpenAI's) gives "{}"
    chunks = decode_bytewise(
        sse(
            START,
            block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}),
            delta(0, type="input_json_delta", partial_json=""),
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}},
            {"type": "message_stop"},
        )
    )
    assert support.reassemble(chunks)["calls"][0]["arguments"] == "{}"


def test_blank_texts_a_refusal_and_a_prefill_s_trailing_space_go_as_claude_takes_them() -> None:
    # OpenAI takes "" and "  " as content, and a refusal part in an assistant turn; Claude refuses
    # blank text blocks and a final assistant turn ending in whitespace, and has no refusal part
    request = ChatRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "  "}]},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}]},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "Answer: "},
            ],
        }
    )
    sent = orjson.loads(make_adapter().chat_request(request, "claude-sonnet-4-5", stream=False).body)
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "I can't help with that."}]},
        {"role": "user", "content": [{"type": "text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Answer:"}]},
    ]
    # a user message with nothing but blank text is refused: left out, the assistant turn before
    # it would be answered (continued, as a prefill) in its place
    for blank in ("", "  ", [{"type": "text", "text": "\n"}]):
        history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello."}]
        blank_last = ChatRequest.model_validate(
            {"model": "m", "messages": [*history, {"role": "user", "content": blank}]}
        )
        with pytest.raises(InvalidRequestError) as info:
            make_adapter().chat_request(blank_last, "claude-sonnet-4-5", stream=False)
        assert info.value.param == "messages[2].content"


@pytest.mark.parametrize(
    ("kind", "error"),
    [("timeout_error", ProviderTimeoutError), ("billing_error", ProviderQuotaExceededError)],
)
def test_stream_error_events_of_every_documented_type_map_to_their_status(kind: str, error: type) -> None:
    # https://docs.anthropic.com/en/api/errors: 402 billing_error, 504 timeout_error (a 502 before)
    decoder = make_adapter().stream_decoder("claude-x")
    decoder.feed(sse(START))
    event = {"type": "error", "error": {"type": kind, "message": "x"}}
    with pytest.raises(error):
        decoder.feed(sse(event))
