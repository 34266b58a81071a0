"""The official SDKs' higher-level helpers through one uniinfer server, over each provider family.

What users call, not the raw endpoints: openai's ``chat.completions.stream`` (content and
``tool_calls.function.arguments`` events, strict pydantic tools, ``get_final_completion``),
``chat.completions.parse`` / ``stream(response_format=Model)``, ``responses.stream`` /
``responses.parse`` (function calls fed back, ``text_format``, reasoning items), and
anthropic's ``messages.stream`` (``text_stream``, ``input_json``, ``stop_reason``, usage on
``message_delta``, ``tool_result`` with ``is_error``, ``count_tokens``). Backends: the
OpenAI, Anthropic, Gemini and Ollama fakes (Ollama's tool calls fill the declared schema, so a
strict pydantic tool parses them; the Anthropic Messages tool loop below still runs without it).
Model names pick the fakes' behaviour:
``tool-parallel-*`` calls every declared tool in one answer, ``tool-preamble-*`` says
``"Let me check."`` before its call (see tests/fakes/). Claude is a model with structured outputs
(strict tools, ``response_format`` json_schema); :data:`LEGACY_CLAUDE` one without.

Usage must reach every SDK exactly as the provider reported it: prompt (with cached) and
completion (with reasoning) tokens, whichever API family asked.
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
from pydantic import BaseModel

from tests.contract.harness import SdkGateway, sdk_gateway

PROVIDERS = ["openai", "anthropic", "gemini"]
WITH_OLLAMA = [*PROVIDERS, "ollama"]
#: The Claude model the helpers run on: one with structured outputs (the docs list Sonnet 4.5).
CLAUDE = "claude-sonnet-4-5"
#: A Claude model without structured outputs (Claude 3.5 Haiku).
LEGACY_CLAUDE = "claude-3-5-haiku-20241022"
#: The fakes say this before their tool calls (``preamble`` models).
PREAMBLE = "Let me check."
VARIANTS = ["parallel", "preamble", "preamble-parallel"]


class GetWeather(BaseModel):
    location: str


class GetTime(BaseModel):
    location: str


class Echo(BaseModel):
    echo: str


PYDANTIC_TOOLS = [openai.pydantic_function_tool(GetWeather), openai.pydantic_function_tool(GetTime)]
_PARAMS = {
    "type": "object",
    "properties": {"location": {"type": "string"}},
    "required": ["location"],
    "additionalProperties": False,
}
RESPONSES_TOOLS: list[Any] = [
    {"type": "function", "name": name, "parameters": _PARAMS, "strict": True}
    for name in ("get_weather", "get_time")
]
ANTHROPIC_TOOLS: list[Any] = [
    {"name": name, "description": f"{name} for a city", "input_schema": _PARAMS}
    for name in ("get_weather", "get_time")
]


@dataclass
class Env(SdkGateway):
    """The gateway and its SDK clients, with what these tests ask of them."""

    def model(self, provider: str, prefix: str = "") -> str:
        if provider == "ollama":  # failure-mode names are always installed; others must be pulled
            return f"ollama/{prefix.rstrip('-')}" if prefix else "ollama/llama3.2"
        chat_model = CLAUDE if provider == "anthropic" else self.fakes[provider].chat_model
        return f"{provider}/{prefix}{chat_model}"

    def upstream(self, provider: str) -> list[dict[str, Any]]:
        """Bodies of the requests the provider's fake received (Anthropic's and Ollama's record bare bodies)."""
        recorded = self.apps[provider]["requests"]
        if provider in ("anthropic", "ollama"):
            return [r for r in recorded if isinstance(r, dict)]
        return [r["body"] for r in recorded if isinstance(r.get("body"), dict)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[Env]:
    async with AsyncExitStack() as stack:
        gw = await sdk_gateway(stack, WITH_OLLAMA)
        yield Env(gw.openai, gw.anthropic, gw.fakes, gw.apps)


pytestmark = pytest.mark.asyncio(loop_scope="module")
QUESTION = "weather in Paris?"


def _calls(variant: str) -> list[str]:
    return ["get_weather", "get_time"] if "parallel" in variant else ["get_weather"]


# --- 1. chat.completions.stream: content and tool-call events ---------------------------------


@pytest.mark.parametrize("provider", WITH_OLLAMA)
async def test_chat_stream_helper_text(env: Env, provider: str) -> None:
    deltas, done = [], None
    async with env.openai.chat.completions.stream(
        model=env.model(provider), messages=[{"role": "user", "content": "hello there"}]
    ) as stream:
        async for event in stream:
            if event.type == "content.delta":
                deltas.append(event.delta)
                assert event.snapshot == "".join(deltas)
            elif event.type == "content.done":
                done = event.content
        final = await stream.get_final_completion()
    assert "".join(deltas) == done == final.choices[0].message.content == "echo: hello there"
    assert final.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("provider", WITH_OLLAMA)
async def test_chat_stream_helper_strict_pydantic_tools(env: Env, provider: str, variant: str) -> None:
    """Parallel calls and a call after text: each call's arguments events, parsed, and the final message."""
    names = {"get_weather": "GetWeather", "get_time": "GetTime"}
    expected = [names[n] for n in _calls(variant)]
    arg_deltas: dict[int, str] = {}
    done: list[tuple[int, str, Any, str]] = []
    content_done = None
    async with env.openai.chat.completions.stream(
        model=env.model(provider, f"tool-{variant}-"),
        messages=[{"role": "user", "content": QUESTION}],
        tools=PYDANTIC_TOOLS,
    ) as stream:
        async for event in stream:
            if event.type == "tool_calls.function.arguments.delta":
                arg_deltas[event.index] = arg_deltas.get(event.index, "") + event.arguments_delta
                assert event.arguments == arg_deltas[event.index]
            elif event.type == "tool_calls.function.arguments.done":
                done.append((event.index, event.name, event.parsed_arguments, event.arguments))
            elif event.type == "content.done":
                content_done = event.content
        final = await stream.get_final_completion()

    assert [(i, name) for i, name, _, _ in done] == list(enumerate(expected))
    for i, name, parsed, arguments in done:
        assert type(parsed).__name__ == name
        assert parsed.location == "Paris"
        assert arg_deltas[i] == arguments
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert content_done == choice.message.content == (PREAMBLE if "preamble" in variant else None)
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == expected
    assert [type(c.function.parsed_arguments).__name__ for c in calls] == expected
    assert all(getattr(c.function.parsed_arguments, "location", None) == "Paris" for c in calls)
    assert len({c.id for c in calls}) == len(calls)

    # the results fed back, one per call (the SDK's parsed message echoed as plain params)
    history: Any = [
        {"role": "user", "content": QUESTION},
        {
            "role": "assistant",
            "content": choice.message.content,
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments},
                }
                for c in calls
            ],
        },
        *({"role": "tool", "tool_call_id": c.id, "content": f"sunny {c.function.name}"} for c in calls),
    ]
    answer = await env.openai.chat.completions.create(
        model=env.model(provider), messages=history, tools=PYDANTIC_TOOLS
    )
    assert (answer.choices[0].message.content or "").startswith("echo:")


# --- 2. response_format from a pydantic model ------------------------------------------------


def _schema_sent(provider: str, body: dict[str, Any]) -> Any:
    """The JSON schema as the provider received it."""
    if provider == "openai":
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema"
        assert fmt["json_schema"]["name"] == "Echo"
        assert fmt["json_schema"]["strict"] is True
        return fmt["json_schema"]["schema"]
    if provider == "gemini":
        assert body["generationConfig"]["responseMimeType"] == "application/json"
        return body["generationConfig"]["responseJsonSchema"]
    if provider == "anthropic":  # generally available shape: output_config, not the beta's output_format
        assert "output_format" not in body
        fmt = body["output_config"]["format"]
        assert fmt["type"] == "json_schema"
        return fmt["schema"]
    return body["format"]  # ollama


# the SDK's own warning when it serialises a parsed message appended back (its ``parsed`` is typed None)
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
@pytest.mark.parametrize("provider", WITH_OLLAMA)
async def test_chat_parse_and_stream_with_a_pydantic_response_format(env: Env, provider: str) -> None:
    messages: Any = [{"role": "user", "content": "hello there"}]
    if provider == "anthropic":
        # A Claude model without structured outputs: refused, in OpenAI's error shape, naming the
        # param, the provider and the model, before anything is sent.
        before = len(env.upstream(provider))
        with pytest.raises(openai.BadRequestError) as info:
            await env.openai.chat.completions.parse(
                model=f"anthropic/{LEGACY_CLAUDE}", messages=messages, response_format=Echo
            )
        assert "structured output" in info.value.message
        assert "provider 'anthropic'" in info.value.message
        assert LEGACY_CLAUDE in info.value.message
        assert isinstance(info.value.body, dict)
        assert info.value.body["code"] == "unsupported_feature"
        assert info.value.body["param"] == "response_format"
        with pytest.raises(openai.BadRequestError):
            async with env.openai.chat.completions.stream(
                model=f"anthropic/{LEGACY_CLAUDE}", messages=messages, response_format=Echo
            ) as stream:
                await stream.get_final_completion()
        assert len(env.upstream(provider)) == before
    parsed = await env.openai.chat.completions.parse(
        model=env.model(provider), messages=messages, response_format=Echo
    )
    assert parsed.choices[0].message.parsed == Echo(echo="hello there")
    schema = _schema_sent(provider, env.upstream(provider)[-1])
    assert schema["properties"] == {"echo": {"title": "Echo", "type": "string"}}
    assert schema["additionalProperties"] is False

    async with env.openai.chat.completions.stream(
        model=env.model(provider), messages=messages, response_format=Echo
    ) as stream:
        parsed_events = [e.parsed for e in [e async for e in stream] if e.type == "content.done"]
        final = await stream.get_final_completion()
    assert parsed_events == [Echo(echo="hello there")]
    assert final.choices[0].message.parsed == Echo(echo="hello there")

    # The parsed answer appended to the conversation as the SDK returned it (its ``parsed``
    # included) is the next turn's history: accepted, and ``parsed`` goes no further.
    again = await env.openai.chat.completions.parse(
        model=env.model(provider),
        messages=[*messages, final.choices[0].message, {"role": "user", "content": "once more"}],
        response_format=Echo,
    )
    assert again.choices[0].message.parsed == Echo(echo="once more")
    assert "parsed" not in json.dumps(env.upstream(provider)[-1])


# --- 3. responses.stream / responses.parse -----------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("provider", WITH_OLLAMA)
async def test_responses_stream_function_calls_fed_back(env: Env, provider: str, variant: str) -> None:
    args_done: dict[int, str] = {}
    async with env.openai.responses.stream(
        model=env.model(provider, f"tool-{variant}-"), input=QUESTION, tools=RESPONSES_TOOLS
    ) as stream:
        async for event in stream:
            if event.type == "response.function_call_arguments.done":
                args_done[event.output_index] = event.arguments
        final = await stream.get_final_response()
    kinds = [item.type for item in final.output]
    calls = [item for item in final.output if item.type == "function_call"]
    assert kinds == (["message"] if "preamble" in variant else []) + ["function_call"] * len(calls)
    assert final.output_text == (PREAMBLE if "preamble" in variant else "")
    assert [c.name for c in calls] == _calls(variant)
    first_call = kinds.index("function_call")
    assert args_done == {first_call + k: c.arguments for k, c in enumerate(calls)}
    assert all(c.parsed_arguments == {"location": "Paris"} for c in calls)  # strict tools: parsed

    # second turn: the output items as the SDK returned them, plus one output per call
    items: Any = [
        {"role": "user", "content": QUESTION},
        *final.output,
        *({"type": "function_call_output", "call_id": c.call_id, "output": f"sunny {c.name}"} for c in calls),
    ]
    second = await env.openai.responses.create(
        model=env.model(provider), input=items, tools=RESPONSES_TOOLS, stream=True
    )
    text, completed = "", None
    async for streamed in second:
        if streamed.type == "response.output_text.delta":
            text += streamed.delta
        elif streamed.type == "response.completed":
            completed = streamed.response
    assert completed is not None
    assert text == completed.output_text
    assert text.startswith("echo:")


@pytest.mark.parametrize("provider", WITH_OLLAMA)
async def test_responses_text_format_from_a_pydantic_model(env: Env, provider: str) -> None:
    if provider == "anthropic":  # and refused, naming the Responses field, for a model without it
        with pytest.raises(openai.BadRequestError) as info:
            await env.openai.responses.parse(
                model=f"anthropic/{LEGACY_CLAUDE}", input="hello there", text_format=Echo
            )
        assert "text.format" in info.value.message
        assert isinstance(info.value.body, dict)
        assert info.value.body["param"] == "text.format"
    parsed = await env.openai.responses.parse(
        model=env.model(provider), input="hello there", text_format=Echo
    )
    assert parsed.output_parsed == Echo(echo="hello there")
    assert _schema_sent(provider, env.upstream(provider)[-1])["required"] == ["echo"]
    async with env.openai.responses.stream(
        model=env.model(provider), input="hello there", text_format=Echo
    ) as s:
        final = await s.get_final_response()
    assert final.output_parsed == Echo(echo="hello there")


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
async def test_responses_reasoning_items_and_a_tool_loop(env: Env, provider: str) -> None:
    model = env.model(provider, "tool-think-")
    async with env.openai.responses.stream(
        model=model,
        input=QUESTION,
        tools=RESPONSES_TOOLS,
        reasoning={"effort": "low"},
        max_output_tokens=4096,
    ) as stream:
        summaries = [e async for e in stream if e.type == "response.reasoning_summary_text.done"]
        final = await stream.get_final_response()
    assert [item.type for item in final.output] == ["reasoning", "function_call"]
    assert len(summaries) == 1
    assert summaries[0].text
    call = final.output[1]
    assert call.type == "function_call"
    items: Any = [
        {"role": "user", "content": QUESTION},
        *final.output,
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ]
    answer = await env.openai.responses.create(
        model=env.model(provider),
        input=items,
        tools=RESPONSES_TOOLS,
        reasoning={"effort": "low"},
        max_output_tokens=4096,
    )
    assert answer.output_text.startswith("echo:")


# --- 4. anthropic messages.stream ---------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_messages_stream_tool_use_and_an_error_result(env: Env, provider: str, variant: str) -> None:
    system: Any = [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Use tools."}]
    text, usage = "", None
    partial: dict[int, str] = {}
    async with env.anthropic.messages.stream(
        model=env.model(provider, f"tool-{variant}-"),
        max_tokens=256,
        system=system,
        messages=[{"role": "user", "content": QUESTION}],
        tools=ANTHROPIC_TOOLS,
    ) as stream:
        async for event in stream:
            if event.type == "text":
                text += event.text
            elif event.type == "input_json":
                index = len(stream.current_message_snapshot.content) - 1
                partial[index] = partial.get(index, "") + event.partial_json
            elif event.type == "message_delta":
                usage = event.usage
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert text == (PREAMBLE if "preamble" in variant else "")
    uses = [b for b in final.content if b.type == "tool_use"]
    kinds = [b.type for b in final.content]
    assert kinds == (["text"] if "preamble" in variant else []) + ["tool_use"] * len(uses)
    assert [b.name for b in uses] == _calls(variant)
    assert all(b.input == {"location": "Paris"} for b in uses)
    assert {i: json.loads(p) for i, p in partial.items()} == {
        kinds.index("tool_use") + k: b.input for k, b in enumerate(uses)
    }
    assert len({b.id for b in uses}) == len(uses)
    assert usage is not None
    assert usage.output_tokens == final.usage.output_tokens > 0

    # tool results fed back, the first one failed (is_error)
    before = len(env.upstream(provider))
    answer = await env.anthropic.messages.create(
        model=env.model(provider),
        max_tokens=256,
        system=system,
        tools=ANTHROPIC_TOOLS,
        messages=[
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": final.content},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": b.id,
                        "content": f"boom {b.name}",
                        "is_error": k == 0,
                    }
                    for k, b in enumerate(uses)
                ],
            },
        ],
    )
    assert answer.stop_reason == "end_turn"
    assert answer.content[0].type == "text"
    assert answer.content[0].text.startswith("echo:")
    sent = env.upstream(provider)[before:]
    assert len(sent) == 1
    assert _failed_result(provider, sent[0]) == "boom get_weather"


def _failed_result(provider: str, body: dict[str, Any]) -> str:
    """The text of the first (failed) tool result as the provider received it, checking its error mark."""
    if provider == "anthropic":
        block = body["messages"][-1]["content"][0]
        assert block["is_error"] is True
        return str(block["content"])
    if provider == "openai":
        tool = next(m for m in body["messages"] if m["role"] == "tool")
        return str(tool["content"]).removeprefix("Error: ")
    response = body["contents"][-1]["parts"][0]["functionResponse"]["response"]
    return str(response["result"]).removeprefix("Error: ")


@pytest.mark.parametrize("provider", WITH_OLLAMA)
async def test_messages_stream_stop_reasons(env: Env, provider: str) -> None:
    async def run(**kw: Any) -> anthropic.types.Message:
        async with env.anthropic.messages.stream(
            model=env.model(provider), messages=[{"role": "user", "content": "hello there friend"}], **kw
        ) as stream:
            deltas = [e for e in [e async for e in stream] if e.type == "message_delta"]
            final = await stream.get_final_message()
        assert [d.delta.stop_reason for d in deltas] == [final.stop_reason]
        return final

    cut = await run(max_tokens=2)
    assert cut.stop_reason == "max_tokens"
    assert cut.content[0].type == "text"
    assert cut.content[0].text.split() == ["echo:", "hello"]
    stopped = await run(max_tokens=256, stop_sequences=["friend"])
    assert stopped.content[0].type == "text"
    assert stopped.content[0].text.strip() == "echo: hello there"
    if provider == "anthropic":
        assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "friend")
    else:  # the other APIs do not say a stop sequence ended the answer
        assert (stopped.stop_reason, stopped.stop_sequence) == ("end_turn", None)


@pytest.mark.parametrize("provider", WITH_OLLAMA)
async def test_count_tokens_counts_system_and_tools(env: Env, provider: str) -> None:
    messages: Any = [{"role": "user", "content": "hello there"}]
    bare = await env.anthropic.messages.count_tokens(model=env.model(provider), messages=messages)
    full = await env.anthropic.messages.count_tokens(
        model=env.model(provider), messages=messages, system="You are terse.", tools=ANTHROPIC_TOOLS
    )
    assert 0 < bare.input_tokens < full.input_tokens


# --- 5. usage exactly as the provider reported it -------------------------------------------


@dataclass(frozen=True)
class Reported:
    """What a provider's fake reports for the usage request (see each fake's docstring)."""

    model: str
    prompt: int  # including cached tokens, as OpenAI counts
    cached: int
    completion: int  # including reasoning tokens
    reasoning: int | None


#: ``be brief`` (system, cache-marked) + ``hello there``, answered ``echo: hello there``.
USAGE = {
    # words + 3 per message; cached half the prompt; 5 reasoning tokens on top of 3 words
    "openai": Reported("cached-reason-model", 10, 5, 8, 5),
    # 4 words + 100 cache reads (a block carried cache_control); no thinking count
    "anthropic": Reported(CLAUDE, 104, 100, 3, None),
    # 4 words, cachedContentTokenCount half of them, thoughtsTokenCount 5
    "gemini": Reported("think-cache-gemini-fake", 4, 2, 8, 5),
}
SYSTEM_PARTS: Any = [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_usage_at_the_end_of_each_sdk_stream(env: Env, provider: str) -> None:
    r = USAGE[provider]
    model = f"{provider}/{r.model}"
    messages: Any = [{"role": "system", "content": SYSTEM_PARTS}, {"role": "user", "content": "hello there"}]

    # Chat Completions: the usage chunk (include_usage), as the helper's final completion carries it
    async with env.openai.chat.completions.stream(
        model=model, messages=messages, stream_options={"include_usage": True}
    ) as stream:
        chunks = [e.chunk async for e in stream if e.type == "chunk"]
        final = await stream.get_final_completion()
    assert [c.usage is not None for c in chunks].count(True) == 1
    assert chunks[-1].choices == []
    usage = final.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (r.prompt, r.completion)
    assert usage.total_tokens == r.prompt + r.completion
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == r.cached
    details = usage.completion_tokens_details
    assert (details.reasoning_tokens if details else None) == r.reasoning

    # Anthropic Messages: totals on message_delta; input_tokens excludes the cache reads
    async with env.anthropic.messages.stream(
        model=model,
        max_tokens=256,
        system=SYSTEM_PARTS,
        messages=[{"role": "user", "content": "hello there"}],
    ) as mstream:
        delta = [e for e in [e async for e in mstream] if e.type == "message_delta"][-1]
        message = await mstream.get_final_message()
    for u in (delta.usage, message.usage):
        assert u.input_tokens == r.prompt - r.cached
        assert u.cache_read_input_tokens == r.cached
        assert u.output_tokens == r.completion

    # Responses: no cache marks in that API, so the Anthropic fake reports no cache reads there
    cached = r.cached if provider != "anthropic" else 0
    prompt = r.prompt if provider != "anthropic" else r.prompt - r.cached
    async with env.openai.responses.stream(
        model=model, instructions="be brief", input="hello there"
    ) as rstream:
        response = await rstream.get_final_response()
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (prompt, r.completion)
    assert response.usage.input_tokens_details.cached_tokens == cached
    assert response.usage.output_tokens_details.reasoning_tokens == (r.reasoning or 0)


async def test_no_usage_chunk_unless_asked(env: Env) -> None:
    for provider in WITH_OLLAMA:
        stream = await env.openai.chat.completions.create(
            model=env.model(provider), messages=[{"role": "user", "content": "hello there"}], stream=True
        )
        chunks = [c async for c in stream]
        assert all(c.choices for c in chunks), provider
        assert json.dumps([c.usage for c in chunks]) == json.dumps([None] * len(chunks)), provider
