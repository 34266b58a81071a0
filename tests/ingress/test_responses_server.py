"""``POST /v1/responses`` end to end: the official openai SDK -> uniinfer server -> OpenAI, Anthropic and Gemini fakes.

The same ``client.responses`` calls work whichever provider the model name
routes to: plain and streamed text, instructions, function tools round trip
(plain and with streamed arguments), structured output, image input,
reasoning, the refusals of a stateless gateway and upstream errors.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from pydantic import BaseModel

from tests.conftest import make_config
from tests.fakes.anthropic import anthropic_app
from tests.fakes.common import run_fake
from tests.fakes.gemini import API_KEY as GEMINI_KEY
from tests.fakes.gemini import gemini_app
from tests.fakes.openai import openai_app
from tests.ingress.test_responses_ingress import PNG, event_model
from tests.server_helpers import serve
from uniinfer.server import create_app, responses_api


@dataclass(frozen=True)
class Native:
    type: str
    app: Callable[[], web.Application]
    path: str
    key: str
    model: str
    #: A model of this fake that answers with a reasoning (thinking) part first.
    thinking: str


NATIVES = [
    Native("openai", lambda: openai_app(api_key="sk-o"), "/v1", "sk-o", "gpt-4o-mini", ""),
    Native(
        "anthropic", lambda: anthropic_app(api_key="sk-a"), "", "sk-a", "claude-sonnet-4-5", "claude-think"
    ),
    Native("gemini", gemini_app, "/v1beta", GEMINI_KEY, "gemini-2.5-flash", "gemini-think"),
]
IDS = [n.type for n in NATIVES]
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    "strict": None,
}
SCHEMA: Any = {
    "type": "json_schema",
    "name": "echo",
    "schema": {
        "type": "object",
        "properties": {"echo": {"type": "string"}},
        "required": ["echo"],
        "additionalProperties": False,
    },
    "strict": True,
}


@dataclass
class Gateway:
    base: str
    client: openai.AsyncOpenAI
    fakes: dict[str, web.Application]


async def start(stack: AsyncExitStack, *, drop: bool = False) -> Gateway:
    """One uniinfer server with the Responses routes in front of the three fakes."""
    lines = ["providers:"]
    fakes = {}
    for native in NATIVES:
        fakes[native.type] = fake = native.app()
        url = await stack.enter_async_context(run_fake(fake))
        lines.append(f"  {native.type}: {{base_url: '{url}{native.path}', api_key: {native.key}}}")
    lines.append(f"settings: {{drop_unsupported_params: {str(drop).lower()}}}")
    lines.append("routing: {retry: {max_retries: 0}}")  # a 429 reaches the caller at once
    app = create_app(make_config("\n".join(lines) + "\n"))
    app.add_routes(responses_api.ROUTES)
    base = await stack.enter_async_context(serve(app))
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    stack.push_async_callback(client.close)
    return Gateway(base, client, fakes)


@pytest.fixture
async def gw() -> AsyncIterator[Gateway]:
    async with AsyncExitStack() as stack:
        yield await start(stack)


@pytest.mark.parametrize("native", NATIVES, ids=IDS)
async def test_create_answers_with_output_text_usage_and_route_headers(gw: Gateway, native: Native) -> None:
    raw = await gw.client.responses.with_raw_response.create(
        model=f"{native.type}/{native.model}", input="hello there"
    )
    response = raw.parse()
    assert response.output_text == "echo: hello there"
    assert response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.usage is not None
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert raw.headers["x-uniinfer-provider"] == native.type
    assert raw.headers["x-uniinfer-model"] == native.model


async def test_instructions_reach_the_provider_as_a_system_message(gw: Gateway) -> None:
    response = await gw.client.responses.create(
        model="openai/gpt-4o-mini", instructions="Answer briefly.", input="hello there"
    )
    assert response.instructions == "Answer briefly."
    sent = gw.fakes["openai"]["requests"][-1]["body"]
    assert sent["messages"][0] == {"role": "system", "content": "Answer briefly."}
    assert "store" not in sent
    anthropic = await gw.client.responses.create(
        model="anthropic/claude-sonnet-4-5", instructions="Answer briefly.", input="hello there"
    )
    assert anthropic.output_text == "echo: hello there"
    assert gw.fakes["anthropic"]["requests"][-1]["system"] in (
        "Answer briefly.",
        [{"type": "text", "text": "Answer briefly."}],
    )


@pytest.mark.parametrize("native", NATIVES, ids=IDS)
async def test_stream_helper_text_deltas_and_final_usage(gw: Gateway, native: Native) -> None:
    deltas: list[str] = []
    async with gw.client.responses.stream(
        model=f"{native.type}/{native.model}", input="hello there"
    ) as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = await stream.get_final_response()
    assert "".join(deltas) == "echo: hello there"
    assert len(deltas) > 1
    assert final.output_text == "echo: hello there"
    assert final.usage is not None
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("native", NATIVES, ids=IDS)
async def test_function_tool_round_trip(gw: Gateway, native: Native) -> None:
    model = f"{native.type}/{native.model}"
    first = await gw.client.responses.create(
        model=f"{native.type}/tool-{native.model}", input="weather in Paris?", tools=[WEATHER]
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"location": "Paris"}
    assert call.id is not None
    assert call.id.startswith("fc_")
    assert first.tools[0].name == "get_weather"  # type: ignore[union-attr]

    follow = await gw.client.responses.create(
        model=model,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "weather in Paris?"},
            *first.output,  # type: ignore[list-item]
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 21}'},
        ],
    )
    assert [item.type for item in follow.output] == ["message"]
    assert follow.output_text.startswith("echo: ")


@pytest.mark.parametrize("native", NATIVES, ids=IDS)
async def test_streamed_function_call_arguments(gw: Gateway, native: Native) -> None:
    pieces: list[str] = []
    done: list[tuple[str, str]] = []
    async with gw.client.responses.stream(
        model=f"{native.type}/tool-{native.model}", input="weather in Paris?", tools=[WEATHER]
    ) as stream:
        async for event in stream:
            if event.type == "response.function_call_arguments.delta":
                pieces.append(event.delta)
            elif event.type == "response.function_call_arguments.done":
                done.append((event.name, event.arguments))
        final = await stream.get_final_response()
    arguments = "".join(pieces)
    assert json.loads(arguments) == {"location": "Paris"}
    assert done == [("get_weather", arguments)]
    call = final.output[-1]
    assert call.type == "function_call"
    assert (call.name, call.arguments, call.status) == ("get_weather", arguments, "completed")


async def test_json_schema_text_format(gw: Gateway) -> None:
    response = await gw.client.responses.create(
        model="openai/gpt-4o-mini", input="hello there", text={"format": SCHEMA}
    )
    assert json.loads(response.output_text) == {"echo": "hello there"}
    assert response.text is not None
    assert response.text.format is not None
    assert response.text.format.type == "json_schema"
    sent = gw.fakes["openai"]["requests"][-1]["body"]["response_format"]
    assert sent == {
        "type": "json_schema",
        "json_schema": {k: SCHEMA[k] for k in ("name", "schema", "strict")},
    }

    await gw.client.responses.create(
        model="gemini/gemini-2.5-flash", input="hello there", text={"format": SCHEMA}
    )
    config = gw.fakes["gemini"]["requests"][-1]["body"]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == SCHEMA["schema"]


class Echo(BaseModel):
    echo: str


async def test_parse_helper_with_a_pydantic_text_format(gw: Gateway) -> None:
    parsed = await gw.client.responses.parse(
        model="openai/gpt-4o-mini", input="hello there", text_format=Echo
    )
    assert parsed.output_parsed == Echo(echo="hello there")


async def test_stateless_options_are_accepted_and_echoed(gw: Gateway) -> None:
    """What a stateless client (store false, encrypted reasoning asked for) sends works as is."""
    response = await gw.client.responses.create(
        model="openai/gpt-4o-mini",
        input=[
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello there"}]}
        ],
        store=False,
        include=["reasoning.encrypted_content"],
        metadata={"trace": "t-1"},
        max_tool_calls=3,
        reasoning={"summary": "auto"},
        temperature=0.3,
        stream_options={"include_obfuscation": False},
        stream=False,
    )
    assert response.output_text == "echo: hello there"
    assert (response.metadata, response.max_tool_calls, response.temperature) == ({"trace": "t-1"}, 3, 0.3)
    assert response.reasoning is not None
    assert response.reasoning.summary == "auto"
    sent = gw.fakes["openai"]["requests"][-1]["body"]
    assert sent["temperature"] == 0.3
    assert not {"metadata", "store", "reasoning_effort", "stream_options"} & sent.keys()


async def test_json_schema_on_a_provider_without_it_names_text_format(gw: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await gw.client.responses.create(
            model="anthropic/claude-3-5-haiku-20241022", input="hello there", text={"format": SCHEMA}
        )
    body: Any = info.value.body
    assert body["param"] == "text.format"
    assert "text.format json_schema" in body["message"]


@pytest.mark.parametrize("native", NATIVES, ids=IDS)
async def test_image_input(gw: Gateway, native: Native) -> None:
    response = await gw.client.responses.create(
        model=f"{native.type}/{native.model}",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "describe this"},
                    {"type": "input_image", "image_url": PNG, "detail": "auto"},
                ],
            }
        ],
    )
    assert response.output_text == "echo: describe this"


@pytest.mark.parametrize("native", [n for n in NATIVES if n.thinking], ids=["anthropic", "gemini"])
async def test_reasoning_becomes_a_reasoning_item_plain_and_streamed(gw: Gateway, native: Native) -> None:
    model = f"{native.type}/{native.thinking}"
    response = await gw.client.responses.create(model=model, input="hello there")
    reasoning = response.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text
    assert response.output_text == "echo: hello there"

    summary: list[str] = []
    async with gw.client.responses.stream(model=model, input="hello there") as stream:
        async for event in stream:
            if event.type == "response.reasoning_summary_text.delta":
                summary.append(event.delta)
        final = await stream.get_final_response()
    assert "".join(summary) == reasoning.summary[0].text
    assert [item.type for item in final.output] == ["reasoning", "message"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"store": True}, "store"),
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ],
)
async def test_stateful_and_hosted_features_are_a_400_naming_the_param(
    gw: Gateway, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await gw.client.responses.create(model="openai/gpt-4o-mini", input="hi", **extra)
    body: Any = info.value.body
    assert body["param"] == param
    assert body["code"] == "unsupported_feature"
    assert gw.fakes["openai"]["requests"] == []  # refused before any provider was asked


async def test_unknown_field_is_a_400(gw: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await gw.client.responses.create(
            model="openai/gpt-4o-mini", input="hi", extra_body={"tempreature": 1}
        )
    body: Any = info.value.body
    assert body == {
        "message": "Unknown parameter: 'tempreature'.",
        "type": "invalid_request_error",
        "param": "tempreature",
        "code": "invalid_request",
    }


async def read_all(gw: Gateway, model: str, *, stream: bool) -> None:
    if not stream:
        await gw.client.responses.create(model=model, input="hi")
        return
    async with gw.client.responses.stream(model=model, input="hi") as events:
        async for _ in events:
            pass


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_429_is_a_rate_limit_error_with_retry_after(gw: Gateway, stream: bool) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        await read_all(gw, "openai/error-429", stream=stream)
    assert info.value.response.headers["retry-after"] == "7"


async def test_cut_output_is_incomplete(gw: Gateway) -> None:
    words = " ".join(f"w{i}" for i in range(30))
    response = await gw.client.responses.create(model="openai/gpt-4o-mini", input=words, max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert len(response.output_text.split()) == 16
    assert gw.fakes["openai"]["requests"][-1]["body"]["max_completion_tokens"] == 16


async def test_mid_stream_failure_is_response_failed(gw: Gateway) -> None:
    stream = await gw.client.responses.create(model="openai/cut-model", input="hello there", stream=True)
    events = [event async for event in stream]
    assert events[0].type == "response.created"
    last = events[-1]
    assert last.type == "response.failed"
    assert last.response.status == "failed"
    assert last.response.error is not None
    assert last.response.error.code == "server_error"
    assert "connection closed" in last.response.error.message


async def test_raw_stream_is_typed_sse_that_the_sdk_models_validate(gw: Gateway) -> None:
    """On the wire: ``event:`` names match the data, sequence numbers count up from 0, no [DONE]."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gw.base + "/v1/responses",
            json={"model": "openai/gpt-4o-mini", "input": "hello there", "stream": True},
        ) as resp,
    ):
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-uniinfer-provider"] == "openai"
        text = await resp.text()
    frames = [f for f in text.split("\n\n") if f]
    events = []
    for frame in frames:
        event_line, data_line = frame.split("\n")
        event = json.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {event['type']}"
        event_model(event)
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["usage"]["output_tokens"] > 0


async def test_stored_responses_are_not_found(gw: Gateway) -> None:
    with pytest.raises(openai.NotFoundError, match="does not store responses"):
        await gw.client.responses.retrieve("resp_123")
    with pytest.raises(openai.NotFoundError, match="does not store responses"):
        await gw.client.responses.delete("resp_123")
    with pytest.raises(openai.NotFoundError, match="does not store responses"):
        await gw.client.responses.cancel("resp_123")


async def test_dropped_and_refused_params_use_responses_names() -> None:
    async with AsyncExitStack() as stack:
        dropping = await start(stack, drop=True)
        raw = await dropping.client.responses.with_raw_response.create(
            model="anthropic/claude-sonnet-4-5", input="hello there", text={"verbosity": "low"}
        )
        assert raw.parse().output_text == "echo: hello there"
        assert raw.headers["x-uniinfer-dropped-params"] == "text.verbosity"

        strict = await start(stack)
        with pytest.raises(openai.BadRequestError) as info:
            await strict.client.responses.create(
                model="anthropic/claude-sonnet-4-5", input="hello there", text={"verbosity": "low"}
            )
        body: Any = info.value.body
        assert body["param"] == "text.verbosity"
        assert "text.verbosity" in body["message"]
        assert body["code"] == "unsupported_param"


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
async def test_claudes_thinking_survives_a_tool_loop_through_its_reasoning_item(
    gw: Gateway, streamed: bool
) -> None:
    """Claude keeps thinking in a tool loop only with its signed thinking back: the reasoning
    item carries it as ``encrypted_content`` (thinking was switched off from the second turn of
    every Codex tool loop on Claude, with the effort still echoed)."""
    kw: Any = {
        "tools": [WEATHER],
        "reasoning": {"effort": "high"},
        "include": ["reasoning.encrypted_content"],
    }
    if streamed:
        async with gw.client.responses.stream(
            model="anthropic/tool-claude-sonnet-4-5", input="weather in Paris?", **kw
        ) as stream:
            first = await stream.get_final_response()
    else:
        first = await gw.client.responses.create(
            model="anthropic/tool-claude-sonnet-4-5", input="weather in Paris?", **kw
        )
    reasoning = first.output[0]
    assert reasoning.type == "reasoning"
    assert (reasoning.encrypted_content or "").startswith("uniinfer.thinking.v1:")
    call = next(item for item in first.output if item.type == "function_call")
    replay = [
        {"role": "user", "content": "weather in Paris?"},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 21}'},
    ]
    raw = await gw.client.responses.with_raw_response.create(
        model="anthropic/claude-sonnet-4-5", input=replay, **kw
    )
    sent = gw.fakes["anthropic"]["requests"][-1]
    assert sent["thinking"]["type"] == "enabled"  # still thinking on the turn after the call
    assert [block["type"] for block in sent["messages"][1]["content"]] == ["thinking", "tool_use"]
    assert "x-uniinfer-dropped-params" not in raw.headers


async def test_a_reasoning_items_summary_goes_back_where_the_provider_requires_it() -> None:
    """DeepSeek's thinking models require a tool turn's reasoning back: a replayed reasoning item's
    summary is that turn's reasoning_content (it was dropped: a 400 at the loop's second request)."""
    async with AsyncExitStack() as stack:
        fake = openai_app(api_key="sk-d", prefix="", reasoning_back=frozenset({"reasoning_content"}))
        url = await stack.enter_async_context(run_fake(fake))
        app = create_app(make_config(f"providers:\n  deepseek: {{base_url: '{url}', api_key: sk-d}}\n"))
        app.add_routes(responses_api.ROUTES)
        base = await stack.enter_async_context(serve(app))
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        stack.push_async_callback(client.close)
        replay: Any = [
            {"role": "user", "content": "weather?"},
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "I should call it."}],
            },
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ]
        await client.responses.create(model="deepseek/deepseek-chat", input=replay, tools=[WEATHER])
        turn = fake["requests"][-1]["body"]["messages"][1]
        assert (turn["tool_calls"][0]["id"], turn["reasoning_content"]) == ("call_1", "I should call it.")


async def test_a_parts_prompt_cache_breakpoint_reaches_openai(gw: Gateway) -> None:
    # accepted by the Responses request, it was left out of the Chat part, without a word
    part: Any = {
        "type": "input_text",
        "text": "long stable prefix",
        "prompt_cache_breakpoint": {"ttl": "24h"},
    }
    await gw.client.responses.create(
        model="openai/gpt-4o-mini",
        input=[{"role": "user", "content": [part, {"type": "input_text", "text": "question"}]}],
    )
    sent = gw.fakes["openai"]["requests"][-1]["body"]["messages"][0]["content"][0]
    assert sent["prompt_cache_breakpoint"] == {"ttl": "24h"}
