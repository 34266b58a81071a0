"""Text and tool calls a model interleaves keep their order through the Anthropic Messages ingress.

Claude (content blocks, on the API and on Bedrock's Converse) and Gemini (parts) can answer
``[text, tool_use, text, tool_use]``; OpenAI's message has one content string, so the adapters
keep the order beside it (``ResponseMessage.content_blocks``). Through the official SDKs against
the real server and the fakes: a Messages client gets the blocks as the model produced them,
non-streamed as streamed, and its replayed turn reaches Claude, Bedrock and Gemini in that order
(Gemini 3's thought signature still on its call); an OpenAI client still gets the joined text and
both calls, and nothing more.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest
import pytest_asyncio
from aiohttp import web

from tests.contract.harness import sdk_gateway
from tests.fakes.anthropic import INTERLUDE, PREAMBLE
from tests.fakes.gemini import signature_of
from uniinfer.providers.gemini_request import gemini_call_id

PROVIDERS = ["anthropic", "bedrock", "gemini"]
QUESTION = [{"role": "user", "content": "Weather and time in Paris?"}]
SCHEMA = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
TOOLS = [
    {"name": "get_weather", "description": "Current weather for a city", "input_schema": SCHEMA},
    {"name": "get_time", "description": "Local time in a city", "input_schema": SCHEMA},
]
#: The same tools in OpenAI's shape.
FUNCTIONS = [
    {"name": t["name"], "description": t["description"], "parameters": t["input_schema"]} for t in TOOLS
]
PARIS = {"location": "Paris"}
#: What the ``interleave`` models answer (see the fakes): a text before each call.
INTERLEAVED = [
    ("text", PREAMBLE),
    ("tool_use", "get_weather", PARIS),
    ("text", INTERLUDE),
    ("tool_use", "get_time", PARIS),
]
THINKING = {"type": "enabled", "budget_tokens": 1024}

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Env:
    openai: openai.AsyncOpenAI
    anthropic: anthropic.AsyncAnthropic
    apps: dict[str, web.Application]
    models: dict[str, str]

    def interleaving(self, provider: str, extra: str = "") -> str:
        """A model of ``provider`` that calls both tools with a text before each."""
        return f"{provider}/tool-interleave-parallel{extra}-{self.models[provider]}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[Env]:
    async with AsyncExitStack() as stack:
        gw = await sdk_gateway(stack, PROVIDERS)
        models = {name: fake.chat_model for name, fake in gw.fakes.items()}
        yield Env(gw.openai, gw.anthropic, gw.apps, models)


def shape(message: anthropic.types.Message) -> list[tuple[Any, ...]]:
    """The blocks, in order, without the ids each answer draws anew."""
    out: list[tuple[Any, ...]] = []
    for block in message.content:
        if block.type == "text":
            out.append(("text", block.text))
        elif block.type == "tool_use":
            out.append(("tool_use", block.name, block.input))
        elif block.type == "thinking":
            out.append(("thinking", block.thinking, block.signature))
        else:
            out.append((block.type,))
    return out


async def ask(env: Env, model: str, *, stream: bool, **extra: Any) -> anthropic.types.Message:
    kw: dict[str, Any] = {"model": model, "max_tokens": 2048, "messages": QUESTION, "tools": TOOLS, **extra}
    if not stream:
        return await env.anthropic.messages.create(**kw)
    async with env.anthropic.messages.stream(**kw) as events:
        return await events.get_final_message()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_interleaved_answer_keeps_its_blocks_in_order_streamed_or_not(
    env: Env, provider: str
) -> None:
    model = env.interleaving(provider)
    answer = await ask(env, model, stream=False)
    assert shape(answer) == INTERLEAVED
    assert answer.stop_reason == "tool_use"
    streamed = await ask(env, model, stream=True)
    assert shape(streamed) == shape(answer)


async def test_thinking_keeps_its_place_among_interleaved_blocks(env: Env) -> None:
    model = env.interleaving("anthropic", "-think")
    answer = await ask(env, model, stream=False)
    assert [b[0] for b in shape(answer)] == ["thinking", "text", "tool_use", "text", "tool_use"]
    assert shape(answer)[1:] == INTERLEAVED
    assert shape(await ask(env, model, stream=True)) == shape(answer)  # signed, in its place


#: The fields of a block as the API takes it back (the SDK's models add null ones).
WIRE = ("type", "text", "thinking", "signature", "id", "name", "input")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_an_interleaved_turn_goes_back_to_claude_as_the_model_produced_it(
    env: Env, stream: bool
) -> None:
    """The SDK's tool loop with thinking on: the turn replayed, signed thinking first, then the
    texts and calls in their order; Claude (the fake) checks the signature and keeps thinking on."""
    model = env.interleaving("anthropic")
    first = await ask(env, model, stream=stream, thinking=THINKING)
    assert [b[0] for b in shape(first)] == ["thinking", "text", "tool_use", "text", "tool_use"]
    results = [
        {"type": "tool_result", "tool_use_id": b.id, "content": "sunny"}
        for b in first.content
        if b.type == "tool_use"
    ]
    turns = [*QUESTION, {"role": "assistant", "content": first.content}, {"role": "user", "content": results}]
    answer = await ask(env, model, stream=False, thinking=THINKING, messages=turns)
    assert (answer.stop_reason, shape(answer)[-1]) == ("end_turn", ("text", "echo: sunny"))
    sent = env.apps["anthropic"]["requests"][-1]
    assert sent["thinking"] == THINKING
    replayed = [{k: v for k, v in b.model_dump().items() if k in WIRE} for b in first.content]
    assert sent["messages"][1]["content"] == replayed


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_openai_caller_still_gets_the_joined_text_and_both_calls(env: Env, provider: str) -> None:
    raw = await env.openai.chat.completions.with_raw_response.create(
        model=env.interleaving(provider),
        messages=QUESTION,  # type: ignore[arg-type]
        tools=[
            {"type": "function", "function": FUNCTIONS[0]},
            {"type": "function", "function": FUNCTIONS[1]},
        ],
    )
    completion = raw.parse()
    message = completion.choices[0].message
    assert message.content == PREAMBLE + INTERLUDE
    calls = message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("get_weather", PARIS),
        ("get_time", PARIS),
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    # OpenAI's fields only: the order stays out of the JSON
    sent = json.loads(raw.text)["choices"][0]["message"]
    assert set(sent) <= {"role", "content", "refusal", "tool_calls", "reasoning_content", "annotations"}


def sent_turn(env: Env, provider: str) -> list[dict[str, Any]]:
    """The assistant turn of the last request ``provider`` (its fake) received, in its format."""
    body = env.apps[provider]["requests"][-1]["body"]
    return body["messages"][1]["content"] if provider == "bedrock" else body["contents"][1]["parts"]


def converse_turn(first: anthropic.types.Message) -> list[dict[str, Any]]:
    """``first``'s blocks as Converse takes them back."""
    return [
        {"text": b.text}
        if b.type == "text"
        else {"toolUse": {"toolUseId": b.id, "name": b.name, "input": b.input}}
        for b in first.content
        if b.type in ("text", "tool_use")
    ]


def gemini_turn(first: anthropic.types.Message) -> list[dict[str, Any]]:
    """``first``'s blocks as Gemini takes them back: the first call signed (Gemini 3), each with
    Gemini's own id for it (carried in the tool_use id)."""
    parts: list[dict[str, Any]] = []
    for b in first.content:
        if b.type == "text":
            parts.append({"text": b.text})
        elif b.type == "tool_use":
            call = {"name": b.name, "args": b.input, "id": gemini_call_id(b.id)}
            assert call["id"], b.id
            signed = not any("functionCall" in p for p in parts)
            parts.append(
                {"functionCall": call, **({"thoughtSignature": signature_of(call)} if signed else {})}
            )
    return parts


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("provider", ["bedrock", "gemini"])
async def test_an_interleaved_turn_goes_back_to_bedrock_and_gemini_as_the_model_produced_it(
    env: Env, provider: str, stream: bool
) -> None:
    """The SDK's tool loop: the turn replayed reaches the provider with its texts and calls in
    their order (Gemini 3: the thought signature, carried in the first call's id, on that call)."""
    model = (
        env.interleaving(provider)
        if provider == "bedrock"
        else "gemini/gemini-3-flash-tool-interleave-parallel"
    )
    first = await ask(env, model, stream=stream)
    assert shape(first) == INTERLEAVED
    results = [
        {"type": "tool_result", "tool_use_id": b.id, "content": "sunny"}
        for b in first.content
        if b.type == "tool_use"
    ]
    turns = [*QUESTION, {"role": "assistant", "content": first.content}, {"role": "user", "content": results}]
    await ask(env, model, stream=False, messages=turns)
    expected = converse_turn(first) if provider == "bedrock" else gemini_turn(first)
    assert sent_turn(env, provider) == expected


def output_shape(response: Any) -> list[tuple[Any, ...]]:
    """A Responses API answer's output items, in order, without their ids."""
    out: list[tuple[Any, ...]] = []
    for item in response.output:
        if item.type == "message":
            out.append(("text", "".join(part.text for part in item.content)))
        elif item.type == "function_call":
            out.append(("tool_use", item.name, json.loads(item.arguments)))
    return out


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_responses_client_gets_interleaved_items_in_order_streamed_or_not(
    env: Env, provider: str
) -> None:
    # the Responses API lists a message item for each text between the calls, as the model
    # produced them; the stream always rendered them so, the JSON answer now does too
    kw: dict[str, Any] = {
        "model": env.interleaving(provider),
        "input": QUESTION[0]["content"],
        "tools": [{"type": "function", **f} for f in FUNCTIONS],
    }
    answer = await env.openai.responses.create(**kw)
    assert output_shape(answer) == INTERLEAVED
    async with env.openai.responses.stream(**kw) as events:
        streamed = await events.get_final_response()
    assert output_shape(streamed) == output_shape(answer)
