"""Structured outputs on ``/v1/messages``: ``output_config.format``, strict tools and the SDK's
``messages.parse``, through the official ``anthropic`` SDK in front of the repo's fakes.

A Claude model with structured outputs gets them back as the client sent them; OpenAI and
Gemini get their own structured output; a Claude model without them refuses with an
Anthropic-shaped 400 that names the Messages field, before anything is sent upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest
from aiohttp import web
from anthropic.lib._parse._transform import transform_schema
from pydantic import BaseModel

from tests.contract.harness import contract_config, find_fake, provider_entry
from tests.fakes.common import run_fake
from tests.server_helpers import serve
from uniinfer.ingress.anthropic import MessagesRequest, messages_field, parse_anthropic, to_chat_request
from uniinfer.providers.registry import default_registry
from uniinfer.server import create_app
from uniinfer.types.chat import JSONSchemaFormat

CLAUDE = "anthropic/claude-sonnet-4-5"
OLD_CLAUDE = "anthropic/claude-sonnet-4-0"
GPT = "openai/gpt-4o-mini"
GEMINI = "gemini/gemini-fake"
QUESTION: Any = [{"role": "user", "content": [{"type": "text", "text": "Ada Lovelace"}]}]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "born": {"type": "integer"}},
    "required": ["name", "born"],
    "additionalProperties": False,
}
OUTPUT_CONFIG: Any = {"format": {"type": "json_schema", "schema": SCHEMA}}
STRICT_TOOL: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
        "additionalProperties": False,
    },
    "strict": True,
}


class Echo(BaseModel):
    """A schema whose instance the fakes generate is ``{"echo": <last user text>}`` (they answer a
    JSON schema with an instance of it, every string the last user text)."""

    echo: str


@dataclass
class Gateway:
    url: str
    client: anthropic.AsyncAnthropic
    fakes: dict[str, web.Application]

    def sent(self, provider: str) -> list[dict[str, Any]]:
        """The bodies the provider's fake received (chat requests only)."""
        if provider == "anthropic":
            return list(self.fakes[provider]["requests"])
        return [r["body"] for r in self.fakes[provider]["requests"] if r["path"].endswith("completions")]

    def gemini_configs(self) -> list[dict[str, Any]]:
        return [r["body"].get("generationConfig", {}) for r in self.fakes["gemini"]["requests"]]


async def _gateway(stack: AsyncExitStack, *, drop: bool) -> Gateway:
    fakes: dict[str, web.Application] = {}
    entries = {}
    for name in ("openai", "anthropic", "gemini"):
        fake = find_fake(default_registry().get(name))
        app = fakes[name] = fake.app()
        url = await stack.enter_async_context(run_fake(app))
        entries[name] = provider_entry(name, fake, url)
    base = await stack.enter_async_context(serve(create_app(contract_config(entries, drop=drop))))
    client = anthropic.AsyncAnthropic(base_url=base, api_key="unused", max_retries=0)
    stack.push_async_callback(client.close)
    return Gateway(base, client, fakes)


@pytest.fixture
async def gw() -> AsyncIterator[Gateway]:
    async with AsyncExitStack() as stack:
        yield await _gateway(stack, drop=False)


@pytest.fixture
async def dropping() -> AsyncIterator[Gateway]:
    """A gateway with ``settings.drop_unsupported_params``."""
    async with AsyncExitStack() as stack:
        yield await _gateway(stack, drop=True)


async def _ask(client: anthropic.AsyncAnthropic, *, stream: bool, **kw: Any) -> anthropic.types.Message:
    if stream:
        async with client.messages.stream(max_tokens=1024, **kw) as events:
            return await events.get_final_message()
    return await client.messages.create(max_tokens=1024, **kw)


def _error_of(exc: anthropic.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict)
    error: dict[str, Any] = body["error"]
    return error


def _text(message: anthropic.types.Message) -> str:
    [block] = message.content
    assert block.type == "text"
    return block.text


# --- translation -------------------------------------------------------------------------


def _obj(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
        **extra,
    }


@pytest.mark.parametrize(
    ("schema", "strict"),
    [
        (SCHEMA, True),
        (_obj({"a": {"type": "string"}}, required=[]), False),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}, False),
        (_obj({"xs": {"type": "array", "items": _obj({"b": {"type": "integer"}})}}), True),
        (_obj({"xs": {"type": "array", "items": _obj({"b": {"type": "integer"}}, required=[])}}), False),
        (_obj({"x": {"anyOf": [{"type": "null"}, {"type": "object"}]}}), False),
        (_obj({"x": {"$ref": "#/$defs/X"}}, **{"$defs": {"X": _obj({"y": {"type": "string"}}, [])}}), False),
        (_obj({"x": {"$ref": "#/$defs/X"}}, **{"$defs": {"X": _obj({"y": {"type": "string"}})}}), True),
        # malformed: OpenAI's own 400 says what is wrong (this check used to raise TypeError: a 500)
        ({"type": "object", "properties": {"a": {}}, "required": True, "additionalProperties": False}, False),
        ({"type": "object", "properties": 5, "additionalProperties": False}, False),
        (_obj({"a": {"allOf": 7}}), False),
    ],
    ids=[
        "all-required",
        "optional",
        "open-object",
        "nested",
        "nested-optional",
        "any-of",
        "defs",
        "defs-ok",
        "required-not-a-list",
        "properties-not-an-object",
        "all-of-not-a-list",
    ],
)
def test_strict_is_asked_of_openai_only_for_a_schema_its_strict_mode_takes(
    schema: dict[str, Any], strict: bool
) -> None:
    """OpenAI's strict mode needs every object closed and all its properties required."""
    config = {"format": {"type": "json_schema", "schema": schema}}
    req = parse_anthropic(
        MessagesRequest, {"model": "m", "max_tokens": 9, "messages": QUESTION, "output_config": config}
    )
    fmt = to_chat_request(req).response_format
    assert isinstance(fmt, JSONSchemaFormat)
    assert fmt.json_schema.strict is strict


def test_output_config_format_is_a_strict_json_schema_response_format() -> None:
    req = parse_anthropic(
        MessagesRequest,
        {"model": "m", "max_tokens": 9, "messages": QUESTION, "output_config": OUTPUT_CONFIG},
    )
    fmt = to_chat_request(req).response_format
    assert isinstance(fmt, JSONSchemaFormat)
    assert fmt.model_dump(by_alias=True, exclude_none=True) == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": SCHEMA, "strict": True},
    }


def test_chat_params_are_named_as_the_messages_api_names_them() -> None:
    assert messages_field("response_format") == "output_config.format"
    assert messages_field("tools[3].function.strict") == "tools.3.strict"
    assert messages_field("tools[0].function.parameters") == "tools.0.input_schema"
    assert messages_field("temperature") is None


# --- a Claude model with structured outputs ----------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_json_output_round_trips_through_claude(gw: Gateway, stream: bool) -> None:
    message = await _ask(
        gw.client, stream=stream, model=CLAUDE, messages=QUESTION, output_config=OUTPUT_CONFIG
    )
    assert orjson.loads(_text(message)) == {"name": "Ada Lovelace", "born": 1}
    assert message.stop_reason == "end_turn"
    [sent] = gw.sent("anthropic")
    assert sent["output_config"] == OUTPUT_CONFIG
    assert sent["messages"] == QUESTION
    assert (sent["model"], sent["max_tokens"]) == ("claude-sonnet-4-5", 1024)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_strict_tool_round_trips_through_claude(gw: Gateway, stream: bool) -> None:
    message = await _ask(
        gw.client,
        stream=stream,
        model=CLAUDE,
        messages=QUESTION,
        tools=[STRICT_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    [call] = message.content
    assert call.type == "tool_use"
    assert (call.name, call.input) == ("get_weather", {"location": "Paris"})
    assert message.stop_reason == "tool_use"
    [sent] = gw.sent("anthropic")
    assert sent["tools"] == [STRICT_TOOL]


async def test_the_parse_helper_through_claude(gw: Gateway) -> None:
    class Person(BaseModel):
        name: str
        born: int

    parsed = await gw.client.messages.parse(
        model=CLAUDE, max_tokens=1024, messages=QUESTION, output_format=Person
    )
    assert parsed.parsed_output == Person(name="Ada Lovelace", born=1)
    [sent] = gw.sent("anthropic")
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": transform_schema(Person)}}


async def test_the_deprecated_output_format_reaches_claude_as_output_config(gw: Gateway) -> None:
    """The beta's top-level ``output_format`` (older SDKs' ``beta.messages``) still works."""
    message = await gw.client.messages.create(
        model=CLAUDE,
        max_tokens=1024,
        messages=QUESTION,
        extra_body={"output_format": OUTPUT_CONFIG["format"]},
        extra_headers={"anthropic-beta": "structured-outputs-2025-11-13"},
    )
    assert orjson.loads(_text(message)) == {"name": "Ada Lovelace", "born": 1}
    [sent] = gw.sent("anthropic")
    assert sent["output_config"] == OUTPUT_CONFIG
    assert "output_format" not in sent


async def test_output_format_and_output_config_format_together_are_refused(gw: Gateway) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await gw.client.messages.create(
            model=CLAUDE,
            max_tokens=1024,
            messages=QUESTION,
            output_config=OUTPUT_CONFIG,
            extra_body={"output_format": OUTPUT_CONFIG["format"]},
        )
    error = _error_of(caught.value)
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("output_format: ")
    assert gw.sent("anthropic") == []


# --- OpenAI and Gemini -----------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_openai_gets_the_schema_as_a_strict_response_format(gw: Gateway, stream: bool) -> None:
    message = await _ask(gw.client, stream=stream, model=GPT, messages=QUESTION, output_config=OUTPUT_CONFIG)
    assert orjson.loads(_text(message)) == {"name": "Ada Lovelace", "born": 1}  # of SCHEMA
    assert message.stop_reason == "end_turn"
    [sent] = gw.sent("openai")
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": SCHEMA, "strict": True},
    }


async def test_a_schema_with_optional_properties_reaches_openai_without_strict(gw: Gateway) -> None:
    """Anthropic takes optional properties; OpenAI's strict mode refuses them (every property
    must be required), so such a schema goes with strict false rather than into a 400."""
    schema = {
        "type": "object",
        "properties": {"echo": {"type": "string"}, "note": {"type": "string"}},
        "required": ["echo"],
        "additionalProperties": False,
    }
    message = await gw.client.messages.create(
        model=GPT,
        max_tokens=1024,
        messages=QUESTION,
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    assert orjson.loads(_text(message)) == {"echo": "Ada Lovelace"}  # the required property only
    [sent] = gw.sent("openai")
    assert sent["response_format"]["json_schema"] == {"name": "output", "schema": schema, "strict": False}


async def test_openai_gets_a_strict_tool_as_a_strict_function(gw: Gateway) -> None:
    message = await gw.client.messages.create(
        model=GPT,
        max_tokens=1024,
        messages=QUESTION,
        tools=[STRICT_TOOL],
        tool_choice={"type": "any"},
    )
    assert message.stop_reason == "tool_use"
    [sent] = gw.sent("openai")
    [tool] = sent["tools"]
    assert tool["function"]["strict"] is True
    assert tool["function"]["parameters"] == STRICT_TOOL["input_schema"]


LOOSE_TOOL: Any = {
    **STRICT_TOOL,
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["location"],
        "additionalProperties": False,
    },
}


async def test_a_strict_tool_with_optional_properties_reaches_openai_loose_and_claude_strict(
    gw: Gateway,
) -> None:
    """OpenAI's strict mode would refuse the optional ``unit``: its function goes with strict
    false there, and stays strict for Claude, whose structured outputs allow it."""
    for model in (GPT, CLAUDE):
        message = await gw.client.messages.create(
            model=model, max_tokens=1024, messages=QUESTION, tools=[LOOSE_TOOL], tool_choice={"type": "any"}
        )
        assert message.stop_reason == "tool_use"
    [to_openai] = gw.sent("openai")
    assert to_openai["tools"][0]["function"]["strict"] is False
    assert to_openai["tools"][0]["function"]["parameters"] == LOOSE_TOOL["input_schema"]
    [to_claude] = gw.sent("anthropic")
    assert to_claude["tools"][0]["strict"] is True
    assert to_claude["tools"][0]["input_schema"] == LOOSE_TOOL["input_schema"]


@pytest.mark.parametrize("model", [GPT, GEMINI])
async def test_the_parse_helper_through_other_providers(gw: Gateway, model: str) -> None:
    parsed = await gw.client.messages.parse(
        model=model, max_tokens=1024, messages=QUESTION, output_format=Echo
    )
    assert parsed.parsed_output == Echo(echo="Ada Lovelace")
    schema = transform_schema(Echo)
    if model == GPT:
        [sent] = gw.sent("openai")
        assert sent["response_format"]["json_schema"] == {"name": "output", "schema": schema, "strict": True}
    else:
        [config] = gw.gemini_configs()
        assert (config["responseMimeType"], config["responseJsonSchema"]) == ("application/json", schema)


# --- a Claude model without structured outputs -------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"output_config": OUTPUT_CONFIG}, "output_config.format"),
        ({"tools": [STRICT_TOOL]}, "tools.0.strict"),
        ({"tools": [{**STRICT_TOOL, "strict": False}, {**STRICT_TOOL, "name": "other"}]}, "tools.1.strict"),
    ],
    ids=["format", "strict-tool", "second-tool"],
)
async def test_an_older_claude_refuses_naming_the_messages_field(
    gw: Gateway, stream: bool, extra: dict[str, Any], field: str
) -> None:
    body = {"model": OLD_CLAUDE, "max_tokens": 1024, "messages": QUESTION, "stream": stream, **extra}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gw.url}/v1/messages", json=body, headers={"x-api-key": "unused"}) as resp,
    ):
        status, kind, text = resp.status, resp.headers["content-type"], await resp.text()
    assert status == 400
    assert kind.startswith("application/json")
    answer = orjson.loads(text)
    assert answer["type"] == "error"
    assert answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["message"].startswith(f"{field}: ")
    assert "claude-sonnet-4-0" in answer["error"]["message"]
    assert "Traceback" not in text
    assert gw.sent("anthropic") == []


async def test_the_sdk_sees_the_refusal_as_a_bad_request(gw: Gateway) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await gw.client.messages.parse(
            model=OLD_CLAUDE, max_tokens=1024, messages=QUESTION, output_format=Echo
        )
    assert caught.value.status_code == 400
    assert _error_of(caught.value)["message"].startswith("output_config.format: ")
    assert gw.sent("anthropic") == []


async def test_a_dropped_strict_is_reported_by_its_messages_name(dropping: Gateway) -> None:
    """With ``drop_unsupported_params`` the strict flag is taken out, visibly."""
    raw = await dropping.client.messages.with_raw_response.create(
        model=OLD_CLAUDE,
        max_tokens=1024,
        messages=QUESTION,
        tools=[STRICT_TOOL],
        tool_choice={"type": "any"},
    )
    message = await raw.parse()
    assert message.stop_reason == "tool_use"
    assert raw.headers["x-uniinfer-dropped-params"] == "tools.0.strict"
    [sent] = dropping.sent("anthropic")
    assert sent["tools"] == [{k: v for k, v in STRICT_TOOL.items() if k != "strict"}]


async def test_an_effort_the_model_lacks_is_dropped_visibly(dropping: Gateway) -> None:
    """Sonnet 4.5 has no effort parameter: with ``drop_unsupported_params`` it is left out and
    named as the client sent it; thinking, asked for beside it, stays."""
    raw = await dropping.client.messages.with_raw_response.create(
        model=CLAUDE,
        max_tokens=4096,
        messages=QUESTION,
        output_config={"effort": "low"},  # type: ignore[typeddict-item]
        thinking={"type": "enabled", "budget_tokens": 2048},
    )
    message = await raw.parse()
    assert message.content[-1].type == "text"
    assert raw.headers["x-uniinfer-dropped-params"] == "output_config.effort"
    [sent] = dropping.sent("anthropic")
    assert "output_config" not in sent
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
