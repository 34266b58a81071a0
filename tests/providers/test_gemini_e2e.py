"""Gemini 3 tool loops end to end: official SDKs -> uniinfer server -> the Gemini fake.

The fake 400s a follow-up whose function call lacks the thought signature it
issued, as Gemini 3 does, so a loop passes only if the signature survives the
client round trip inside the tool call id, through each ingress.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web

from tests.conftest import make_config
from tests.fakes.common import run_fake
from tests.fakes.gemini import API_KEY, gemini_app, signature_of
from tests.server_helpers import serve
from uniinfer.config import Config
from uniinfer.server import create_app

MODEL = "gemini/gemini-3-flash-tool"  # the fake answers every request with a signed call
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


def signed_as_made(parts: list[dict[str, Any]]) -> list[bool]:
    """Whether each call part went back with the signature the fake made for it (over the call
    as it was answered, Gemini's id for it included: which must come back too)."""
    return [
        "id" in p["functionCall"] and p.get("thoughtSignature") == signature_of(p["functionCall"])
        for p in parts
    ]


class Gateway:
    def __init__(self, fake: web.Application, base: str) -> None:
        self.fake, self.base = fake, base

    def last_model_parts(self) -> list[Any]:
        contents = self.fake["requests"][-1]["body"]["contents"]
        return [p for c in contents if c["role"] == "model" for p in c["parts"]]


def _config(gemini_url: str, *, providers: str = "", models: str = "") -> Config:
    """Provider ``gemini`` at the fake (plus ``providers``/``models`` YAML lines), no retry rounds."""
    return make_config(
        f"providers:\n  gemini: {{base_url: '{gemini_url}/v1beta', api_key: {API_KEY}}}\n{providers}"
        + (f"models:\n{models}" if models else "")
        + "routing: {retry: {max_retries: 0}}\n"
    )


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with AsyncExitStack() as stack:
        fake = gemini_app()
        url = await stack.enter_async_context(run_fake(fake))
        base = await stack.enter_async_context(serve(create_app(_config(url))))
        yield Gateway(fake, base)


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_completions_tool_loop(gateway: Gateway, stream: bool) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.base + "/v1", api_key="x", max_retries=0) as sdk:
        messages: list[Any] = [{"role": "user", "content": "weather?"}]
        for _step in range(2):
            if stream:
                chunks = await sdk.chat.completions.create(
                    model=MODEL,
                    messages=messages,
                    tools=[WEATHER],
                    stream=True,
                )
                deltas = [d async for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
                (delta,) = deltas
                assert delta.id is not None
                assert delta.function is not None
                call = {"id": delta.id, "type": "function", "function": delta.function.model_dump()}
            else:
                completion = await sdk.chat.completions.create(
                    model=MODEL, messages=messages, tools=[WEATHER]
                )
                (tool_call,) = completion.choices[0].message.tool_calls or ()
                call = tool_call.model_dump()
            messages += [
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call["id"], "content": '{"temp_c": 21}'},
            ]
        final = await sdk.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    assert final.choices[0].finish_reason == "tool_calls"  # the fake accepted both signed steps
    assert signed_as_made(gateway.last_model_parts()) == [True, True]


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_messages_tool_loop(gateway: Gateway, stream: bool) -> None:
    tool = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}
    async with anthropic.AsyncAnthropic(base_url=gateway.base, api_key="x", max_retries=0) as sdk:
        messages: list[Any] = [{"role": "user", "content": "weather?"}]
        if stream:
            async with sdk.messages.stream(
                model=MODEL,
                max_tokens=100,
                messages=messages,
                tools=[tool],
            ) as events:
                message = await events.get_final_message()
        else:
            message = await sdk.messages.create(model=MODEL, max_tokens=100, messages=messages, tools=[tool])
        (use,) = [b for b in message.content if b.type == "tool_use"]
        messages += [
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
        ]
        reply = await sdk.messages.create(model=MODEL, max_tokens=100, messages=messages, tools=[tool])
    assert reply.stop_reason == "tool_use"  # accepted: the signature came back through the tool_use id
    assert signed_as_made(gateway.last_model_parts()) == [True]


async def test_responses_api_tool_loop(gateway: Gateway) -> None:
    tool = {"type": "function", **WEATHER["function"]}
    async with openai.AsyncOpenAI(base_url=gateway.base + "/v1", api_key="x", max_retries=0) as sdk:
        first = await sdk.responses.create(model=MODEL, input="weather?", tools=[tool])  # type: ignore[list-item]
        (call,) = [item for item in first.output if item.type == "function_call"]
        assert len(call.call_id) > 64  # longer than OpenAI's own ids: it carries the signature
        follow_up: list[Any] = [
            {"role": "user", "content": "weather?"},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 21}'},
        ]
        reply = await sdk.responses.create(model=MODEL, input=follow_up, tools=[tool])  # type: ignore[list-item]
    assert any(item.type == "function_call" for item in reply.output)  # the fake accepted the signed step
    assert signed_as_made(gateway.last_model_parts()) == [True]


async def test_a_malformed_function_call_falls_back_to_the_next_deployment() -> None:
    """MALFORMED_FUNCTION_CALL is a retryable failure, not a clean empty "stop"."""
    async with AsyncExitStack() as stack:
        fake = gemini_app()
        url = await stack.enter_async_context(run_fake(fake))
        config = _config(
            url,
            models="  agent:\n    deployments: [gemini/gemini-3-flash-malformed, gemini/gemini-3-flash-tool]\n",
        )
        base = await stack.enter_async_context(serve(create_app(config)))
        sdk = openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
        stack.push_async_callback(sdk.close)
        messages: list[Any] = [{"role": "user", "content": "weather?"}]
        for stream in (False, True):
            raw = await sdk.chat.completions.with_raw_response.create(
                model="agent", messages=messages, tools=[WEATHER], stream=stream
            )
            assert raw.headers["x-uniinfer-fallbacks"] == "gemini/gemini-3-flash-malformed"
            answer = raw.parse()
            if stream:
                assert [c async for c in answer]
        base = await stack.enter_async_context(serve(create_app(_config(url))))
        with pytest.raises(openai.APIStatusError) as info:
            await sdk.with_options(base_url=base + "/v1").chat.completions.create(
                model="gemini/gemini-3-flash-malformed", messages=messages, tools=[WEATHER]
            )
        assert info.value.status_code == 502
        assert "MALFORMED_FUNCTION_CALL" in info.value.message


@pytest.mark.parametrize("stream", [False, True])
async def test_a_malformed_function_calls_tokens_count_for_the_deployment_that_produced_them(
    stream: bool,
) -> None:
    """Gemini bills a failed generation: its tokens are in the usage totals and tokens per
    minute of the deployment that produced them, not of the one that answered after it."""
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(run_fake(gemini_app()))
        models = "  agent:\n    deployments: [gemini/gemini-3-flash-malformed, gemini/gemini-3-flash-tool]\n"
        app = create_app(_config(url, models=models))
        base = await stack.enter_async_context(serve(app))
        sdk = openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
        stack.push_async_callback(sdk.close)
        messages: list[Any] = [{"role": "user", "content": "weather?"}]
        answer = await sdk.chat.completions.create(
            model="agent", messages=messages, tools=[WEATHER], stream=stream
        )
        if isinstance(answer, openai.AsyncStream):
            assert [chunk async for chunk in answer]
        totals = app.gateway.usage.totals
        failed, served = totals["gemini/gemini-3-flash-malformed"], totals["gemini/gemini-3-flash-tool"]
        assert (failed.requests, served.requests) == (0, 1)
        assert failed.prompt_tokens == served.prompt_tokens > 0  # the same prompt, billed twice
        states = app.gateway.router.states
        assert states["gemini/gemini-3-flash-malformed"].window.totals()[1] == failed.prompt_tokens


async def test_a_gemini_3_tool_loop_can_continue_on_a_provider_that_caps_id_length() -> None:
    """OpenAI refuses tool call ids over 40 characters; a signed id goes there without its signature."""
    from tests.conftest import FAKE_KEY
    from tests.fakes.openai import openai_app

    async with AsyncExitStack() as stack:
        gemini = gemini_app()
        gemini_url = await stack.enter_async_context(run_fake(gemini))
        upstream = openai_app(api_key=FAKE_KEY)
        openai_url = await stack.enter_async_context(run_fake(upstream))
        config = _config(
            gemini_url,
            providers=f"  up: {{type: openai, api_key: {FAKE_KEY}, base_url: '{openai_url}/v1'}}\n",
        )
        base = await stack.enter_async_context(serve(create_app(config)))
        sdk = openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
        stack.push_async_callback(sdk.close)
        messages: list[Any] = [{"role": "user", "content": "weather?"}]
        first = await sdk.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
        (call,) = first.choices[0].message.tool_calls or ()
        assert len(call.id) > 40
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
        ]
        reply = await sdk.chat.completions.create(model="up/gpt-4o-mini", messages=messages, tools=[WEATHER])
        assert reply.choices[0].message is not None  # accepted: the 40-character cap held
        sent = upstream["requests"][-1]["body"]["messages"]
        assert sent[1]["tool_calls"][0]["id"] == sent[2]["tool_call_id"] == call.id.partition("__")[0]


@pytest.mark.parametrize(
    ("model", "tool_choice", "called"),
    [
        ("gemini/gemini-2.5-flash-tool", "none", None),  # a model that would call: not with NONE
        ("gemini/gemini-2.5-flash", "required", "get_weather"),  # one that would not: with ANY
        ("gemini/gemini-2.5-flash", {"type": "function", "function": {"name": "get_time"}}, "get_time"),
    ],
)
async def test_tool_choice_decides_the_call_as_gemini_s_tool_config_does(
    gateway: Gateway, model: str, tool_choice: Any, called: str | None
) -> None:
    clock = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    async with openai.AsyncOpenAI(base_url=gateway.base + "/v1", api_key="x", max_retries=0) as sdk:
        completion = await sdk.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "weather?"}],
            tools=[WEATHER, clock],  # type: ignore[list-item]
            tool_choice=tool_choice,
        )
    calls = completion.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ([called] if called else [])  # type: ignore[union-attr]
