"""Bedrock structured outputs: ``response_format`` json_schema and strict tools, per model.

Converse takes them as ``outputConfig.textFormat`` (the schema as a JSON string) and a
``toolSpec``'s ``strict`` (https://docs.aws.amazon.com/bedrock/latest/userguide/structured-output.html)
for the models of ``bedrock_models.STRUCTURED_OUTPUTS``. Every other model gets a 400 naming
what it cannot honour, or (a strict tool, with ``settings.drop_unsupported_params``) the request
without it and the drop named in ``x-uniinfer-dropped-params``: never a silent drop.
Through the server with the official ``openai`` SDK, over the faithful fake.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import openai
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import BaseModel

from tests.contract.harness import contract_config, provider_entry
from tests.fakes.bedrock import bedrock_app, fake_provider
from tests.fakes.common import run_fake
from tests.providers.test_bedrock import WEATHER, chat, make_adapter, sent
from tests.server_helpers import serve
from uniinfer.errors import InvalidRequestError, UnsupportedFeatureError, UnsupportedParamError
from uniinfer.fitting import RequestFitter
from uniinfer.providers.bedrock_models import structured_outputs
from uniinfer.routing.group import Target
from uniinfer.server import create_app

#: Models with structured outputs (Claude Sonnet 4.5 through a profile, Opus 4.6, gpt-oss).
SONNET_45 = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
WITH = [
    SONNET_45,
    "anthropic.claude-haiku-4-5-20251001-v1:0",
    "global.anthropic.claude-opus-4-6-v1",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-opus-4-5-20251101-v1:0",
    "openai.gpt-oss-120b-1:0",
]
#: Models without: older Claude, other families, an ARN naming no model.
LEGACY = "anthropic.claude-3-5-sonnet-20240620-v1:0"
WITHOUT = [
    LEGACY,
    "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
    "anthropic.claude-sonnet-4-20250514-v1:0",
    "anthropic.claude-opus-4-20250514-v1:0",
    "anthropic.claude-opus-4-1-20250805-v1:0",
    "anthropic.claude-v2:1",
    "anthropic.claude-instant-v1",
    "us.amazon.nova-pro-v1:0",
    "meta.llama3-70b-instruct-v1:0",
    "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3",
]
SCHEMA = {
    "type": "object",
    "properties": {"echo": {"type": "string"}},
    "required": ["echo"],
    "additionalProperties": False,
}
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "Echo", "description": "An echo", "schema": SCHEMA},
}


def strict_weather() -> dict[str, Any]:
    tool = copy.deepcopy(WEATHER)
    tool["function"]["strict"] = True
    return tool


class Echo(BaseModel):
    echo: str


class GetWeather(BaseModel):
    location: str


# --- the per-model table and the request -----------------------------------------------------


@pytest.mark.parametrize("model", WITH)
def test_models_with_structured_outputs(model: str) -> None:
    adapter = make_adapter()
    assert structured_outputs(model)
    assert adapter.structured_outputs(model)
    assert "response_format" in adapter.supported_for(model)
    assert adapter.values_refused(chat(tools=[strict_weather()]), model) == ()


@pytest.mark.parametrize("model", WITHOUT)
def test_models_without_structured_outputs(model: str) -> None:
    adapter = make_adapter()
    assert not adapter.structured_outputs(model)
    assert "response_format" not in adapter.supported_for(model)
    request = chat(tools=[WEATHER, strict_weather()])
    assert adapter.values_refused(request, model) == ("tools[1].function.strict",)


def test_json_schema_becomes_output_config_with_the_schema_as_a_string() -> None:
    body = sent(chat(response_format=JSON_SCHEMA), SONNET_45)
    definition = body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
    assert body["outputConfig"]["textFormat"]["type"] == "json_schema"
    assert definition == {"schema": definition["schema"], "name": "Echo", "description": "An echo"}
    assert isinstance(definition["schema"], str)
    assert json.loads(definition["schema"]) == SCHEMA
    # text asks for nothing; it is sent as no outputConfig at all
    assert "outputConfig" not in sent(chat(response_format={"type": "text"}), SONNET_45)


def test_strict_tools_carry_strict_for_models_with_structured_outputs() -> None:
    specs = sent(chat(tools=[WEATHER, strict_weather()]), SONNET_45)["toolConfig"]["tools"]
    assert "strict" not in specs[0]["toolSpec"]
    assert specs[1]["toolSpec"]["strict"] is True


def test_without_structured_outputs_nothing_is_sent_silently() -> None:
    with pytest.raises(UnsupportedFeatureError) as feature:
        sent(chat(response_format=JSON_SCHEMA), LEGACY)
    assert feature.value.param == "response_format"
    assert LEGACY in feature.value.message
    with pytest.raises(UnsupportedParamError) as param:
        sent(chat(tools=[WEATHER, strict_weather()]), LEGACY)
    assert param.value.param == "tools[1].function.strict"
    assert param.value.provider == "bedrock"
    with pytest.raises(InvalidRequestError):  # a json_schema without a schema
        sent(chat(response_format={"type": "json_schema", "json_schema": {"name": "x"}}), SONNET_45)


def test_the_fitter_drops_a_strict_tool_visibly_when_configured() -> None:
    adapter = make_adapter()
    request = chat(tools=[strict_weather()])
    fitted, dropped = RequestFitter(drop=True).chat(request, Target("bedrock", LEGACY, adapter))
    assert dropped == ("tools[0].function.strict",)
    assert fitted.tools is not None
    assert fitted.tools[0].function.strict is None
    assert "strict" not in sent(fitted, LEGACY)["toolConfig"]["tools"][0]["toolSpec"]
    # kept where it can be honoured
    kept, none = RequestFitter(drop=True).chat(request, Target("bedrock", SONNET_45, adapter))
    assert none == ()
    assert kept is request


# --- the fake refuses what Bedrock refuses ---------------------------------------------------


@pytest.mark.parametrize(
    ("model", "schema", "text"),
    [
        (LEGACY, SCHEMA, "does not support structured outputs"),
        (SONNET_45, {**SCHEMA, "properties": {"n": {"type": "integer", "minimum": 1}}}, "'minimum'"),
        (SONNET_45, {**SCHEMA, "additionalProperties": True}, "additionalProperties"),
    ],
)
async def test_the_fake_refuses_unsupported_models_and_schemas(model: str, schema: Any, text: str) -> None:
    import aiohttp

    body = {
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "outputConfig": {
            "textFormat": {
                "type": "json_schema",
                "structure": {"jsonSchema": {"schema": json.dumps(schema), "name": "x"}},
            }
        },
    }
    async with run_fake(bedrock_app()) as url, aiohttp.ClientSession() as session:
        headers = {"authorization": "Bearer bedrock-api-key-test"}
        async with session.post(f"{url}/model/{model}/converse", json=body, headers=headers) as resp:
            status, payload = resp.status, await resp.json()
            kind = resp.headers["x-amzn-ErrorType"].split(":")[0]
        as_object = {
            **body,
            "outputConfig": {
                "textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": schema}}}
            },
        }
        async with session.post(f"{url}/model/{SONNET_45}/converse", json=as_object, headers=headers) as resp:
            not_a_string = resp.status
    assert (status, kind) == (400, "ValidationException")
    assert text in payload["message"]
    assert not_a_string == 400  # the schema travels as a JSON string, not an object


# --- through the server, with the official openai SDK ---------------------------------------


@dataclass
class Env:
    client: openai.AsyncOpenAI
    app: web.Application

    def bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.app["requests"]]


async def _env(drop: bool) -> AsyncIterator[Env]:
    async with AsyncExitStack() as stack:
        app = bedrock_app()
        url = await stack.enter_async_context(run_fake(app))
        config = contract_config({"bedrock": provider_entry("bedrock", fake_provider(), url)}, drop=drop)
        base = await stack.enter_async_context(serve(create_app(config)))
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        stack.push_async_callback(client.close)
        yield Env(client, app)


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    async for e in _env(drop=False):
        yield e


@pytest_asyncio.fixture
async def lenient() -> AsyncIterator[Env]:
    async for e in _env(drop=True):
        yield e


async def test_sdk_parse_and_stream_with_a_pydantic_response_format(env: Env) -> None:
    messages: Any = [{"role": "user", "content": "hello there"}]
    parsed = await env.client.chat.completions.parse(
        model=f"bedrock/{SONNET_45}", messages=messages, response_format=Echo
    )
    assert parsed.choices[0].message.parsed == Echo(echo="hello there")
    assert parsed.choices[0].finish_reason == "stop"
    definition = env.bodies()[-1]["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
    assert definition["name"] == "Echo"
    schema = json.loads(definition["schema"])
    assert schema["properties"] == {"echo": {"title": "Echo", "type": "string"}}
    assert schema["additionalProperties"] is False

    async with env.client.chat.completions.stream(
        model=f"bedrock/{SONNET_45}", messages=messages, response_format=Echo
    ) as stream:
        done = [e.parsed for e in [e async for e in stream] if e.type == "content.done"]
        final = await stream.get_final_completion()
    assert done == [Echo(echo="hello there")]
    assert final.choices[0].message.parsed == Echo(echo="hello there")
    assert "outputConfig" in env.bodies()[-1]


async def test_sdk_strict_pydantic_tool_reaches_bedrock_as_strict(env: Env) -> None:
    tool = openai.pydantic_function_tool(GetWeather)
    resp = await env.client.chat.completions.parse(
        model=f"bedrock/{SONNET_45}",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[tool],
        tool_choice="required",
    )
    call = resp.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.parsed_arguments == GetWeather(location="Paris")
    spec = env.bodies()[-1]["toolConfig"]["tools"][0]["toolSpec"]
    assert spec["strict"] is True


async def test_sdk_gets_openai_shaped_refusals_for_a_model_without(env: Env) -> None:
    messages: Any = [{"role": "user", "content": "hello"}]
    with pytest.raises(openai.BadRequestError) as feature:
        await env.client.chat.completions.parse(
            model=f"bedrock/{LEGACY}", messages=messages, response_format=Echo
        )
    assert isinstance(feature.value.body, dict)
    assert feature.value.body["code"] == "unsupported_feature"
    assert feature.value.body["param"] == "response_format"
    assert LEGACY in feature.value.message
    with pytest.raises(openai.BadRequestError):
        async with env.client.chat.completions.stream(
            model=f"bedrock/{LEGACY}", messages=messages, response_format=Echo
        ) as stream:
            await stream.get_final_completion()
    with pytest.raises(openai.BadRequestError) as param:
        await env.client.chat.completions.create(
            model=f"bedrock/{LEGACY}", messages=messages, tools=[strict_weather()]
        )
    assert isinstance(param.value.body, dict)
    assert param.value.body["code"] == "unsupported_param"
    assert param.value.body["param"] == "tools[0].function.strict"
    assert env.bodies() == []  # nothing reached Bedrock


async def test_sdk_strict_tool_dropped_visibly_when_configured(lenient: Env) -> None:
    raw = await lenient.client.chat.completions.with_raw_response.create(
        model=f"bedrock/{LEGACY}",
        messages=[{"role": "user", "content": "hello"}],
        tools=[strict_weather()],
    )
    assert raw.headers["x-uniinfer-dropped-params"] == "tools[0].function.strict"
    assert raw.parse().choices[0].message.content == "echo: hello"
    spec = lenient.bodies()[-1]["toolConfig"]["tools"][0]["toolSpec"]
    assert "strict" not in spec
    # json_schema is a capability, not a droppable param: still refused
    with pytest.raises(openai.BadRequestError):
        await lenient.client.chat.completions.create(
            model=f"bedrock/{LEGACY}",
            messages=[{"role": "user", "content": "hi"}],
            response_format=JSON_SCHEMA,
        )
    assert len(lenient.bodies()) == 1
    assert orjson.dumps(lenient.bodies()).count(b"outputConfig") == 0
