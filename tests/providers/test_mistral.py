"""The Mistral adapter: OpenAI wire format with Mistral's renames, vocabulary, tool-call ids,
list-shaped reasoning content and 422 ``detail`` errors; unit-level, against the faithful
fake over a socket, and through the gateway."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from tests.conftest import make_config
from tests.fakes.common import run_fake
from tests.fakes.mistral import TOOL_ARGUMENTS, fake_provider, mistral_app
from tests.providers import support
from tests.providers.support import reassemble
from uniinfer.errors import (
    AuthenticationError,
    ConfigError,
    ContextLengthExceededError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderOverloadedError,
    ProviderResponseError,
    RateLimitError,
    UniInferError,
    UnsupportedFeatureError,
    UnsupportedParamError,
)
from uniinfer.gateway import Gateway
from uniinfer.http import HttpClient, HttpRequest, Timeouts
from uniinfer.providers.base import Endpoint, ProviderAdapter
from uniinfer.providers.mistral import MistralAdapter, mistral_tool_id
from uniinfer.providers.openai import OpenAIAdapter
from uniinfer.providers.registry import default_registry
from uniinfer.stages import RequestContext
from uniinfer.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest

KEY = "mi-test-key"
MISTRAL_ID = re.compile(r"^[a-zA-Z0-9]{9}$")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


def make_adapter(url: str = "https://api.mistral.ai/v1", key: str | None = KEY, **kw: Any) -> ProviderAdapter:
    reg = default_registry()
    return reg.create(reg.get("mistral"), Endpoint(base_url=url, api_key=key, **kw))


def chat(messages: list[dict[str, Any]] | None = None, **kw: Any) -> ChatRequest:
    data = {
        "model": "mistral-small-latest",
        "messages": messages or [{"role": "user", "content": "hi"}],
        **kw,
    }
    return ChatRequest.model_validate(data)


def sent(request: ChatRequest, *, stream: bool = False, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(
        make_adapter(**kw).chat_request(request, "mistral-up", stream=stream).body
    )
    return body


def foreign_history(
    ids: tuple[str, str] = ("call_abc123xyz789DEF", "toolu_01A09q90qw90lq917835"),
) -> list[dict[str, Any]]:
    """A tool loop as OpenAI and Anthropic number their calls."""
    calls = [
        {"id": ids[0], "type": "function", "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS}},
        {"id": ids[1], "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
    ]
    return [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": ids[0], "content": "sunny"},
        {"role": "tool", "tool_call_id": ids[1], "content": "rainy"},
    ]


# --- request translation ---------------------------------------------------------------


def test_registry_builds_a_mistral_flavoured_openai_adapter() -> None:
    adapter = make_adapter()
    assert isinstance(adapter, MistralAdapter)
    assert isinstance(adapter, OpenAIAdapter)
    req = adapter.chat_request(chat(), "mistral-up", stream=False)
    assert req.url == "https://api.mistral.ai/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"


def test_params_are_renamed_and_stream_options_never_sent() -> None:
    body = sent(chat(seed=42, max_completion_tokens=30, temperature=0.3, top_p=0.9, stop=["x"], n=2))
    assert body == {
        "model": "mistral-up",
        "messages": [{"role": "user", "content": "hi"}],
        "random_seed": 42,
        "max_tokens": 30,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["x"],
        "n": 2,
    }
    streamed = sent(chat(stream=True, stream_options={"include_usage": True}), stream=True)
    assert streamed["stream"] is True
    assert "stream_options" not in streamed
    assert "stream" not in sent(chat(stream=True), stream=False)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("required", "any"),
        ("auto", "auto"),
        ("none", "none"),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice_vocabulary(choice: Any, expected: Any) -> None:
    assert sent(chat(tools=[WEATHER], tool_choice=choice))["tool_choice"] == expected


@pytest.mark.parametrize(
    ("effort", "expected"),
    [
        ("minimal", "none"),
        ("none", "none"),
        ("low", "low"),
        ("high", "high"),
        ("xhigh", "high"),
        ("max", "high"),
    ],
)
def test_reasoning_effort(effort: str, expected: str) -> None:
    assert sent(chat(reasoning_effort=effort))["reasoning_effort"] == expected


def test_messages_lose_what_mistral_forbids() -> None:
    cache = {"type": "ephemeral"}
    body = sent(
        chat(
            [
                {"role": "developer", "content": "Be brief.", "name": "ops"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi", "cache_control": cache}],
                    "name": "bob",
                },
                {"role": "assistant", "content": "Hello", "reasoning_content": "thought", "refusal": "no"},
                {"role": "user", "content": "again"},
            ]
        )
    )
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "again"},
    ]


def test_a_trailing_assistant_message_is_a_prefix() -> None:
    body = sent(
        chat([{"role": "user", "content": "Write a haiku"}, {"role": "assistant", "content": "Autumn"}])
    )
    assert body["messages"][-1] == {"role": "assistant", "content": "Autumn", "prefix": True}
    assert "prefix" not in sent(chat(foreign_history()))["messages"][1]


def test_foreign_tool_ids_map_to_9_alphanumerics_consistently() -> None:
    messages = sent(chat(foreign_history()))["messages"]
    first, second = (c["id"] for c in messages[1]["tool_calls"])
    assert MISTRAL_ID.match(first)
    assert MISTRAL_ID.match(second)
    assert first != second
    assert [messages[2]["tool_call_id"], messages[3]["tool_call_id"]] == [first, second]
    assert first == mistral_tool_id("call_abc123xyz789DEF")  # deterministic across requests
    assert sent(chat(foreign_history()))["messages"][1]["tool_calls"][0]["id"] == first


def test_compliant_ids_are_kept_and_collisions_are_avoided() -> None:
    foreign = "call_abc123xyz789DEF"
    taken = mistral_tool_id(foreign)  # a native id that equals the foreign id's hash
    messages = sent(chat(foreign_history((foreign, taken))))["messages"]
    ids = [c["id"] for c in messages[1]["tool_calls"]]
    assert ids[1] == taken  # Mistral's own id is untouched
    assert ids[0] != taken
    assert MISTRAL_ID.match(ids[0])
    assert ids[0] == mistral_tool_id(foreign, 1)
    assert [messages[2]["tool_call_id"], messages[3]["tool_call_id"]] == ids


def test_mistral_tool_id_is_base62_of_length_9() -> None:
    ids = {mistral_tool_id(f"call_{i}") for i in range(500)}
    assert len(ids) == 500
    assert all(MISTRAL_ID.match(i) for i in ids)


def test_safe_prompt_option_and_bad_options() -> None:
    assert sent(chat(), options={"safe_prompt": True})["safe_prompt"] is True
    assert "safe_prompt" not in sent(chat())
    with pytest.raises(ConfigError, match="safe_promt"):
        make_adapter(options={"safe_promt": True})


def test_supported_params_exclude_what_mistral_rejects() -> None:
    params = MistralAdapter.supported_params
    assert params <= set(ChatRequest.model_fields)
    assert {
        "seed",
        "n",
        "tools",
        "tool_choice",
        "response_format",
        "stream_options",
        "reasoning_effort",
    } <= params
    for lacking in (
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "user",
        "metadata",
        "top_k",
        "store",
        "service_tier",
    ):
        assert lacking not in params


def test_embed_request_translation() -> None:
    req = make_adapter().embed_request(
        EmbeddingRequest(model="e", input=["a"], dimensions=512, user="u"), "mistral-embed"
    )
    assert req.url == "https://api.mistral.ai/v1/embeddings"
    assert orjson.loads(req.body) == {
        "model": "mistral-embed",
        "input": ["a"],
        "encoding_format": "float",
        "output_dimension": 512,
    }
    with pytest.raises(InvalidRequestError) as info:
        make_adapter().embed_request(EmbeddingRequest(model="e", input=[[1, 2]]), "m")
    assert info.value.param == "input"


# --- response parsing ------------------------------------------------------------------


def completion(message: dict[str, Any], finish: str = "stop") -> bytes:
    return orjson.dumps(
        {
            "id": "cmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "mistral-up",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }
    )


def test_parse_list_content_into_text_and_reasoning() -> None:
    content = [
        {
            "type": "thinking",
            "thinking": [{"type": "text", "text": "Let me "}, {"type": "text", "text": "think."}],
        },
        {"type": "text", "text": "The answer"},
        {"type": "text", "text": " is 4."},
    ]
    resp = make_adapter().parse_chat(completion({"content": content}), "m")
    assert resp.choices[0].message.content == "The answer is 4."
    assert resp.choices[0].message.reasoning_content == "Let me think."
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (11, 7)


def test_parse_tool_calls_with_empty_content() -> None:
    call = {
        "id": "D681PevKs",
        "type": "function",
        "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS},
    }
    choice = (
        make_adapter()
        .parse_chat(completion({"content": "", "tool_calls": [call]}, "tool_calls"), "m")
        .choices[0]
    )
    assert choice.message.content is None
    assert [(c.id, c.function.arguments) for c in choice.message.tool_calls or ()] == [
        ("D681PevKs", TOOL_ARGUMENTS)
    ]
    assert choice.finish_reason == "tool_calls"


@pytest.mark.parametrize("body", [b"nope", b'{"choices": [{"message": {"content": [{"type": "text"}]}}]}'])
def test_bad_bodies_are_provider_response_errors(body: bytes) -> None:
    with pytest.raises(ProviderResponseError):
        make_adapter().parse_chat(body, "m")


# --- stream decoding -------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "s1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "mistral-up",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


USAGE = {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}


def reasoning_tool_stream() -> bytes:
    think = {"type": "thinking", "thinking": [{"type": "text", "text": "Weather ✓ "}]}
    return b"".join(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": [think]}),
            chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "needed."}]}]}),
            chunk({"content": "Checking."}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "Abc123XYZ",
                            "function": {"name": "get_weather", "arguments": '{"loc'},
                        }
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ation": "Paris"}'}}]}),
            chunk(
                {
                    "tool_calls": [
                        {"index": 1, "id": "Def456uvw", "function": {"name": "now", "arguments": "{}"}}
                    ]
                }
            ),
            chunk({"content": ""}, "tool_calls", USAGE),
            b"data: [DONE]\n\n",
        ]
    )


def decode_bytewise(data: bytes) -> list[ChatChunk]:
    return support.decode_bytewise(make_adapter().stream_decoder("m"), data)


def test_stream_decoded_byte_by_byte_with_list_content_and_tool_deltas() -> None:
    chunks = decode_bytewise(reasoning_tool_stream())
    got = reassemble(chunks)
    assert got["thinking"] == "Weather ✓ needed."
    assert got["text"] == "Checking."
    assert got["finish"] == "tool_calls"
    assert got["calls"] == {
        0: {"id": "Abc123XYZ", "name": "get_weather", "arguments": TOOL_ARGUMENTS},
        1: {"id": "Def456uvw", "name": "now", "arguments": "{}"},
    }


def test_stream_usage_from_the_last_chunk_becomes_a_final_usage_chunk() -> None:
    chunks = decode_bytewise(reasoning_tool_stream())
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (20, 9)
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "tool_calls"


def test_stream_without_done_is_a_connection_error() -> None:
    decoder = make_adapter().stream_decoder("m")
    decoder.feed(chunk({"role": "assistant", "content": "par"}))
    with pytest.raises(ProviderConnectionError):
        decoder.close()


# --- error mapping ---------------------------------------------------------------------


def detail(
    loc: list[Any], kind: str = "extra_forbidden", msg: str = "Extra inputs are not permitted"
) -> list[Any]:
    return [{"type": kind, "loc": loc, "msg": msg, "input": None}]


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        (  # the shape quoted in github.com/Gage-Technologies/mistral-go/pull/2
            {
                "object": "error",
                "message": {
                    "detail": detail(["body", "random_seed"], "int_type", "Input should be a valid integer")
                },
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            },
            "seed",
            "mistral: seed: Input should be a valid integer",
        ),
        (
            {
                "object": "error",
                "message": {"detail": detail(["body", "messages", 0, "user", "name"])},
                "type": "x",
            },
            "messages[0].name",
            "messages[0].name: Extra inputs are not permitted",
        ),
        (  # the newer shape (github.com/partITech/php-mistral/issues/76)
            {
                "object": "Error",
                "detail": detail(
                    ["body", "messages", 2, "user", "content", 1, "text"], "missing", "Field required"
                ),
                "message": detail(
                    ["body", "messages", 2, "user", "content", 1, "text"], "missing", "Field required"
                ),
                "type": "invalid_request_error",
                "code": 3001,
            },
            "messages[2].content[1].text",
            "Field required",
        ),
        ({"detail": detail(["body", "stream_options"])}, "stream_options", "stream_options: Extra inputs"),
    ],
)
def test_422_detail_errors_name_the_param(body: dict[str, Any], param: str, fragment: str) -> None:
    err = make_adapter().parse_error(422, {}, orjson.dumps(body))
    assert type(err) is InvalidRequestError
    assert err.param == param
    assert fragment in err.message
    assert err.upstream_status == 422


@pytest.mark.parametrize(
    ("status", "body", "cls", "param"),
    [
        (
            400,
            {
                "object": "error",
                "message": "Tool call id was call_abc but must be a-z, A-Z, 0-9, with a length of 9.",
                "type": "invalid_function_call",
                "param": None,
                "code": "3280",
            },
            InvalidRequestError,
            "messages",
        ),
        (
            400,
            {
                "object": "error",
                "message": "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 "
                "maximum context length",
                "type": "invalid_request_error",
            },
            ContextLengthExceededError,
            None,
        ),
        (401, {"message": "Unauthorized", "request_id": "abc"}, AuthenticationError, None),
        (
            429,
            {"object": "error", "message": "Requests rate limit exceeded", "type": "rate_limited"},
            RateLimitError,
            None,
        ),
        (500, {"object": "error", "message": "Internal server error"}, ProviderError, None),
        (503, {"object": "error", "message": "Service unavailable"}, ProviderOverloadedError, None),
    ],
)
def test_error_mapping(
    status: int, body: dict[str, Any], cls: type[UniInferError], param: str | None
) -> None:
    err = make_adapter().parse_error(status, {}, orjson.dumps(body))
    assert type(err) is cls
    assert err.param == param
    assert err.message == f"mistral: {body['message']}"


def test_rate_limit_keeps_retry_after_only_when_sent_and_key_is_redacted() -> None:
    adapter = make_adapter()
    body = orjson.dumps({"object": "error", "message": f"Requests rate limit exceeded for {KEY}"})
    err = adapter.parse_error(429, {"retry-after": "7"}, body)
    assert err.retry_after == 7.0
    assert KEY not in err.message
    assert KEY not in (err.upstream_body or "")
    assert adapter.parse_error(429, {}, body).retry_after is None


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
        items = [c async for data in upstream.iter_bytes() for c in decoder.feed(data)]
        chunks = support.modelled([*items, *decoder.close()])
        complete = True
        return chunks
    finally:
        HttpClient.close_stream(upstream, complete=complete)


async def test_fake_provider_descriptor_serves_its_key_only(client: HttpClient) -> None:
    fake = fake_provider()
    assert (fake.type, fake.base_path, fake.chat_model, fake.embed_model) == (
        "mistral",
        "/v1",
        "mistral-small-latest",
        "mistral-embed",
    )
    body = orjson.dumps({"model": fake.chat_model, "messages": [{"role": "user", "content": "hi"}]})
    async with run_fake(fake.app()) as url:
        statuses = []
        for key in (fake.api_key, "sk-other"):
            headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
            resp = await client.send(
                HttpRequest(url + "/v1/chat/completions", body, headers), Timeouts(), "mistral"
            )
            statuses.append(resp.status)
    assert statuses == [200, 401]


async def test_fake_echo_with_exact_usage_and_recorded_request(client: HttpClient) -> None:
    app = mistral_app(api_key=KEY)
    async with run_fake(app) as url:
        resp = await call(
            client, make_adapter(url + "/v1"), chat(seed=1, max_completion_tokens=50, model="mistral-x")
        )
    assert resp.choices[0].message.content == "echo: hi"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (4, 2, 6)
    recorded = app["requests"][-1]
    assert recorded["path"] == "/v1/chat/completions"
    assert recorded["body"]["random_seed"] == 1
    assert recorded["body"]["max_tokens"] == 50
    assert "seed" not in recorded["body"]


async def test_a_cache_key_a_cache_breakpoint_and_a_tool_without_parameters_reach_mistral(
    client: HttpClient,
) -> None:
    # prompt_cache_key is Mistral's prompt caching (docs.mistral.ai, "Prompt caching"); OpenAI's
    # breakpoint on a part has no place there; a function without arguments may leave its
    # parameters out in OpenAI's format, not in Mistral's
    app = mistral_app(api_key=KEY)
    part = {"type": "text", "text": "hi", "prompt_cache_breakpoint": {"type": "ephemeral"}}
    now = {"type": "function", "function": {"name": "now", "description": "The time"}}
    request = chat([{"role": "user", "content": [part]}], prompt_cache_key="session-1", tools=[now])
    async with run_fake(app) as url:
        await call(client, make_adapter(url + "/v1"), request)
    sent_body = app["requests"][-1]["body"]
    assert sent_body["prompt_cache_key"] == "session-1"
    assert sent_body["messages"][0]["content"] == [{"type": "text", "text": "hi"}]
    assert sent_body["tools"][0]["function"]["parameters"] == {"type": "object", "properties": {}}


async def test_fake_stream_text_with_usage_and_no_stream_options(client: HttpClient) -> None:
    app = mistral_app()
    request = chat(
        [{"role": "user", "content": "héllo wörld ✓"}], stream=True, stream_options={"include_usage": True}
    )
    async with run_fake(app) as url:
        chunks = await stream(client, make_adapter(url + "/v1"), request)
    assert "stream_options" not in app["requests"][-1]["body"]
    got = reassemble(chunks)
    assert (got["text"], got["finish"]) == ("echo: héllo wörld ✓", "stop")
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (6, 4)


async def test_fake_tool_call_plain_and_streamed(client: HttpClient) -> None:
    async with run_fake(mistral_app()) as url:
        adapter = make_adapter(url + "/v1")
        plain = await call(client, adapter, chat(model="tool-m", tools=[WEATHER]))
        chunks = await stream(client, adapter, chat(tools=[WEATHER], tool_choice="required", stream=True))
    calls = plain.choices[0].message.tool_calls or []
    assert plain.choices[0].finish_reason == "tool_calls"
    assert plain.choices[0].message.content is None
    assert MISTRAL_ID.match(calls[0].id)
    got = reassemble(chunks)
    assert got["finish"] == "tool_calls"
    assert list(got["calls"]) == [0]
    assert got["calls"][0]["name"] == "get_weather"
    assert orjson.loads(got["calls"][0]["arguments"]) == {"location": "Paris"}


async def test_fake_accepts_another_provider_history_after_id_mapping(client: HttpClient) -> None:
    app = mistral_app()
    async with run_fake(app) as url:
        adapter = make_adapter(url + "/v1")
        resp = await call(client, adapter, chat(foreign_history(), tools=[WEATHER]))
        # sent as-is, the same history is refused with the real message
        status, payload = await raw(client, url, chat_body(foreign_history()))
    assert resp.choices[0].message.content == "echo: rainy"
    ids = [c["id"] for c in app["requests"][0]["body"]["messages"][1]["tool_calls"]]
    assert all(MISTRAL_ID.match(i) for i in ids)
    assert status == 400
    assert payload["message"] == (
        "Tool call id was call_abc123xyz789DEF but must be a-z, A-Z, 0-9, with a length of 9."
    )


async def test_fake_tool_loop_round_trip_keeps_mistral_ids(client: HttpClient) -> None:
    app = mistral_app()
    async with run_fake(app) as url:
        adapter = make_adapter(url + "/v1")
        first = await call(client, adapter, chat(model="tool-1", tools=[WEATHER]))
        call_id = (first.choices[0].message.tool_calls or [])[0].id
        history = [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [c.model_dump() for c in first.choices[0].message.tool_calls or ()],
            },
            {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
        ]
        second = await call(client, adapter, chat(history, model="tool-1", tools=[WEATHER]))
    assert second.choices[0].message.content == "echo: sunny"
    assert app["requests"][-1]["body"]["messages"][2]["tool_call_id"] == call_id


async def test_fake_reasoning_plain_and_streamed(client: HttpClient) -> None:
    async with run_fake(mistral_app()) as url:
        adapter = make_adapter(url + "/v1")
        plain = await call(client, adapter, chat(reasoning_effort="high"))
        chunks = await stream(client, adapter, chat(model="magistral-medium-latest", stream=True))
    assert (plain.choices[0].message.content, plain.choices[0].message.reasoning_content) == (
        "echo: hi",
        "The user wants an echo.",
    )
    got = reassemble(chunks)
    assert (got["text"], got["thinking"]) == ("echo: hi", "The user wants an echo.")


async def test_fake_stream_cut_is_a_connection_error(client: HttpClient) -> None:
    async with run_fake(mistral_app()) as url:
        with pytest.raises(ProviderConnectionError):
            await stream(client, make_adapter(url + "/v1"), chat(model="cut-1", stream=True))


@pytest.mark.parametrize(
    ("model", "cls", "retry_after"),
    [
        ("error-429", RateLimitError, 7.0),
        ("error-500", ProviderError, None),
        ("error-503", ProviderOverloadedError, None),
        ("context-m", ContextLengthExceededError, None),
    ],
)
async def test_fake_failures_map_to_errors(
    client: HttpClient, model: str, cls: type[UniInferError], retry_after: float | None
) -> None:
    async with run_fake(mistral_app()) as url:
        with pytest.raises(cls) as info:
            await call(client, make_adapter(url + "/v1"), chat(model=model))
    assert type(info.value) is cls
    assert info.value.retry_after == retry_after


@pytest.mark.parametrize("key", ["mi-wrong-secret", None])
async def test_fake_rejects_wrong_or_missing_key_without_leaking_it(
    client: HttpClient, key: str | None
) -> None:
    async with run_fake(mistral_app(api_key=KEY)) as url:
        with pytest.raises(AuthenticationError) as info:
            await call(client, make_adapter(url + "/v1", key=key), chat())
    if key is not None:
        assert key not in info.value.message
        assert key not in (info.value.upstream_body or "")


async def test_fake_embeddings_over_socket(client: HttpClient) -> None:
    app = mistral_app()
    async with run_fake(app) as url:
        adapter = make_adapter(url + "/v1")
        req = adapter.embed_request(
            EmbeddingRequest(model="e", input=["one two", "three"], dimensions=16), "mistral-embed"
        )
        resp = await client.send(req, Timeouts(), "mistral")
        parsed = adapter.parse_embed(resp.body, "mistral-embed")
    assert [len(e.embedding) for e in parsed.data] == [16, 16]
    assert (parsed.usage.prompt_tokens, parsed.usage.total_tokens) == (3, 3)
    assert "dimensions" not in app["requests"][-1]["body"]


# --- through the gateway ------------------------------------------------------------------


async def test_gateway_rejects_or_drops_params_mistral_lacks(make_gateway: Callable[..., Gateway]) -> None:
    app = mistral_app()
    async with run_fake(app) as url:
        yaml = f"providers:\n  mi: {{type: mistral, api_key: {KEY}, base_url: {url}/v1}}\n"
        with pytest.raises(UnsupportedParamError) as info:
            await make_gateway(make_config(yaml)).chat(
                chat(model="mi/mistral-small-latest", logit_bias={"1": 2})
            )
        assert info.value.param == "logit_bias"
        assert app["requests"] == []  # refused before the wire
        ctx = RequestContext("chat")
        dropping = make_gateway(make_config(yaml + "settings: {drop_unsupported_params: true}\n"))
        resp = await dropping.chat(chat(model="mi/mistral-small-latest", user="u-1", seed=5), ctx)
    assert resp.choices[0].message.content == "echo: hi"
    assert ctx.route is not None
    assert ctx.route.dropped_params == ("user",)
    assert app["requests"][-1]["body"]["random_seed"] == 5


# --- the fake itself checks what the real API checks -------------------------------------


def chat_body(messages: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {"model": "mistral-small-latest", "messages": messages, **kw}


async def raw(client: HttpClient, url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    req = HttpRequest(url + "/v1/chat/completions", orjson.dumps(body), headers)
    resp = await client.send(req, Timeouts(), "mistral")
    payload: dict[str, Any] = orjson.loads(resp.body)
    return resp.status, payload


USER = [{"role": "user", "content": "hi"}]
CALL = {"id": "Abc123XYZ", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("body", "loc", "msg"),
    [
        (chat_body(USER, seed=1), ["body", "seed"], "Extra inputs are not permitted"),
        (
            chat_body(USER, stream=True, stream_options={"include_usage": True}),
            ["body", "stream_options"],
            "Extra",
        ),
        (chat_body(USER, logit_bias={"1": 1}), ["body", "logit_bias"], "Extra"),
        (
            chat_body([{"role": "user", "content": "x", "name": "bob"}]),
            ["body", "messages", 0, "user", "name"],
            "Extra",
        ),
        (
            chat_body([{"role": "developer", "content": "x"}]),
            ["body", "messages", 0],
            "Input tag 'developer'",
        ),
        (chat_body(USER, tool_choice="required_now"), ["body", "tool_choice"], "'any'"),
        (chat_body(USER, top_p=1.5), ["body", "top_p"], "less than or equal to 1"),
        (chat_body(USER, reasoning_effort="extreme"), ["body", "reasoning_effort"], "'none'"),
        (
            chat_body(USER, tools=[{"type": "function", "function": {"name": "now"}}]),
            ["body", "tools", 0, "function", "parameters"],
            "Field required",
        ),
        (
            chat_body(
                [{"role": "user", "content": [{"type": "text", "text": "x", "prompt_cache_breakpoint": {}}]}]
            ),
            ["body", "messages", 0, "user", "content", 0, "prompt_cache_breakpoint"],
            "Extra",
        ),
    ],
)
async def test_fake_answers_422_with_a_detail_list(
    client: HttpClient, body: dict[str, Any], loc: list[Any], msg: str
) -> None:
    async with run_fake(mistral_app()) as url:
        status, payload = await raw(client, url, body)
    assert status == 422
    assert payload["object"] == "error"
    first = payload["message"]["detail"][0]
    assert first["loc"] == loc
    assert msg in first["msg"]


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        (
            [
                *USER,
                {"role": "assistant", "tool_calls": [{**CALL, "id": "call_1"}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
            ],
            "Tool call id was call_1 but must be",
        ),
        (
            [*USER, {"role": "assistant", "tool_calls": [CALL]}, *USER],
            "Not the same number of function calls and responses",
        ),
        (
            [*USER, {"role": "tool", "tool_call_id": "Abc123XYZ", "content": "x"}],
            "Unexpected role 'tool' after role 'user'",
        ),
        (
            [*USER, {"role": "assistant", "content": "x"}],
            "Expected last role User or Tool (or Assistant with prefix True)",
        ),
    ],
)
async def test_fake_rejects_bad_conversations_like_the_real_api(
    client: HttpClient, messages: list[dict[str, Any]], fragment: str
) -> None:
    async with run_fake(mistral_app()) as url:
        status, payload = await raw(client, url, chat_body(messages))
    assert status == 400
    assert fragment in payload["message"]


async def test_fake_accepts_an_assistant_prefix_and_n_choices(client: HttpClient) -> None:
    async with run_fake(mistral_app()) as url:
        status, payload = await raw(
            client, url, chat_body([*USER, {"role": "assistant", "content": "x", "prefix": True}], n=2)
        )
    assert status == 200
    assert [c["index"] for c in payload["choices"]] == [0, 1]
    assert payload["usage"]["completion_tokens"] == 4


def test_model_length_is_length_in_answers_and_streams() -> None:
    # Mistral's FinishReason: stop, length, model_length, error, tool_calls
    answer = make_adapter().parse_chat(completion({"content": "partial"}, "model_length"), "m")
    assert answer.choices[0].finish_reason == "length"
    assert answer.choices[0].message.content == "partial"  # the text is kept
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    stream = (
        chunk({"role": "assistant", "content": "hi"}) + chunk({}, "model_length", usage) + b"data: [DONE]\n\n"
    )
    chunks = decode_bytewise(stream)
    assert [c.choices[0].finish_reason for c in chunks if c.choices] == [None, "length"]


def test_finish_reason_error_is_a_provider_error_after_the_text_before_it() -> None:
    from uniinfer.errors import ProviderError
    from uniinfer.providers.base import PartialStreamError

    usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    with pytest.raises(ProviderError, match="generation failed") as failed:
        make_adapter().parse_chat(completion({"content": "partial"}, "error"), "m")
    assert failed.value.usage is not None
    assert failed.value.usage.total_tokens == 18
    decoder = make_adapter().stream_decoder("m")
    with pytest.raises(PartialStreamError) as info:  # one read: the text, then the failure
        decoder.feed(chunk({"role": "assistant", "content": "hi"}) + chunk({}, "error", usage))
    assert isinstance(info.value.error, ProviderError)
    assert info.value.error.usage is not None
    assert info.value.error.usage.prompt_tokens == 9
    assert len(info.value.items) == 1


async def test_a_user_message_after_tool_results_gets_the_assistant_turn_mistral_requires(
    client: HttpClient,
) -> None:
    # OpenAI and Anthropic take tool results then a user message (a client speaking before the
    # model answered them; every Messages client whose turn holds results and text); Mistral
    # refuses it ("Unexpected role 'user' after role 'tool'"): an assistant turn between, not an
    # empty one (refused too, "Assistant message must have either content or tool_calls")
    app = mistral_app(api_key=KEY)
    history = [*foreign_history(), {"role": "user", "content": "and in Celsius?"}]
    async with run_fake(app) as url:
        resp = await call(client, make_adapter(url + "/v1"), chat(history, tools=[WEATHER]))
    assert resp.choices[0].message.content == "echo: and in Celsius?"
    roles = [m["role"] for m in app["requests"][-1]["body"]["messages"]]
    assert roles == ["user", "assistant", "tool", "tool", "assistant", "user"]
    assert app["requests"][-1]["body"]["messages"][4] == {"role": "assistant", "content": "Ok."}


@pytest.mark.parametrize(
    "part",
    [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ],
)
def test_files_and_audio_in_openai_s_shape_are_refused_naming_the_part(part: dict[str, Any]) -> None:
    request = chat([{"role": "user", "content": [{"type": "text", "text": "summarise"}, part]}])
    with pytest.raises(UnsupportedFeatureError) as info:
        make_adapter().chat_request(request, "mistral-small-latest", stream=False)
    assert info.value.param == "messages[0].content[1]"
