"""Every native wire format end to end: the official openai SDK -> uniinfer server -> provider fake.

The same OpenAI-shaped calls work whichever provider the model name picks:
plain chat, streaming with a final usage chunk, and tool calls (plain and
streamed) translated both ways.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from aiohttp import web

from tests.conftest import make_config
from tests.fakes.anthropic import anthropic_app
from tests.fakes.common import run_fake
from tests.fakes.gemini import API_KEY as GEMINI_KEY
from tests.fakes.gemini import gemini_app
from tests.fakes.ollama import ollama_app
from tests.fakes.openai import openai_app
from tests.server_helpers import serve
from uniinfer.server import create_app


@dataclass(frozen=True)
class Native:
    type: str
    app: Callable[[], web.Application]
    path: str
    key: str | None
    model: str


NATIVES = [
    Native("openai", lambda: openai_app(api_key="sk-o"), "/v1", "sk-o", "gpt-4o-mini"),
    Native("anthropic", lambda: anthropic_app(api_key="sk-a"), "", "sk-a", "claude-sonnet-4-5"),
    Native("gemini", gemini_app, "/v1beta", GEMINI_KEY, "gemini-2.5-flash"),
    Native("ollama", lambda: ollama_app(["llama3.2", "tool-llama"]), "", None, "llama3.2"),
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
        },
    }
]
MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def sdk() -> AsyncIterator[openai.AsyncOpenAI]:
    """One gateway in front of all four fakes; providers named after their type."""
    async with AsyncExitStack() as stack:
        lines = ["providers:"]
        for native in NATIVES:
            url = await stack.enter_async_context(run_fake(native.app()))
            key = f", api_key: {native.key}" if native.key else ""
            # a short read timeout: the stall test waits it out
            lines.append(f"  {native.type}: {{base_url: '{url}{native.path}'{key}, timeout: {{read: 0.5}}}}")
        # no retry rounds: upstream 429s are asserted, not waited out
        lines.append("routing: {retry: {max_retries: 0}}")
        app = create_app(make_config("\n".join(lines) + "\n"))
        base = await stack.enter_async_context(serve(app))
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        stack.push_async_callback(client.close)
        yield client


@pytest.mark.parametrize("native", NATIVES, ids=lambda n: n.type)
async def test_chat(sdk: openai.AsyncOpenAI, native: Native) -> None:
    completion = await sdk.chat.completions.create(model=f"{native.type}/{native.model}", messages=MSG)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0


@pytest.mark.parametrize("native", NATIVES, ids=lambda n: n.type)
async def test_stream_with_usage(sdk: openai.AsyncOpenAI, native: Native) -> None:
    stream = await sdk.chat.completions.create(
        model=f"{native.type}/{native.model}",
        messages=MSG,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


LOGPROB_NATIVES = [n for n in NATIVES if n.type != "anthropic"]


def _check_entries(entries: list[Any], top: int) -> str:
    """The tokens the entries spell; each has its UTF-8 bytes and ``top`` alternatives, itself first."""
    for entry in entries:
        assert entry.bytes == list(entry.token.encode())
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == top
        if top:
            assert entry.top_logprobs[0].token == entry.token
            assert entry.top_logprobs[0].logprob == entry.logprob
    return "".join(entry.token for entry in entries)


@pytest.mark.parametrize("native", LOGPROB_NATIVES, ids=lambda n: n.type)
async def test_logprobs_plain_and_streamed(sdk: openai.AsyncOpenAI, native: Native) -> None:
    """Each provider's own logprobs reach the caller in OpenAI's shape, a stream's on its chunks."""
    model = f"{native.type}/{native.model}"
    completion = await sdk.chat.completions.create(
        model=model,
        messages=MSG,  # type: ignore[arg-type]
        logprobs=True,
        top_logprobs=2,
    )
    choice = completion.choices[0]
    assert choice.logprobs is not None
    assert choice.logprobs.content
    assert _check_entries(choice.logprobs.content, 2) == choice.message.content == "echo: hello there"

    stream = await sdk.chat.completions.create(model=model, messages=MSG, logprobs=True, stream=True)  # type: ignore[arg-type]
    text, entries = "", []
    async for chunk in stream:
        for streamed in chunk.choices:
            text += streamed.delta.content or ""
            if streamed.delta.content:
                assert streamed.logprobs is not None, "a content chunk without its logprobs"
            entries += streamed.logprobs.content or [] if streamed.logprobs else []
    assert _check_entries(entries, 0) == text == "echo: hello there"


@pytest.mark.parametrize(
    "native", [n for n in NATIVES if n.type in ("openai", "gemini")], ids=lambda n: n.type
)
async def test_several_choices_plain_and_streamed(sdk: openai.AsyncOpenAI, native: Native) -> None:
    """``n`` > 1 (Gemini's ``candidateCount``): each choice whole, with its own index and finish."""
    model = f"{native.type}/{native.model}"
    completion = await sdk.chat.completions.create(model=model, messages=MSG, n=2)  # type: ignore[arg-type]
    assert [(c.index, c.message.content) for c in completion.choices] == [
        (0, "echo: hello there"),
        (1, "echo: hello there"),
    ]
    stream = await sdk.chat.completions.create(model=model, messages=MSG, n=2, stream=True)  # type: ignore[arg-type]
    texts: dict[int, str] = {}
    finishes: dict[int, list[str]] = {}
    async for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes.setdefault(choice.index, []).append(choice.finish_reason)
    assert texts == {0: "echo: hello there", 1: "echo: hello there"}
    assert finishes == {0: ["stop"], 1: ["stop"]}


async def test_logprobs_where_the_provider_has_none_is_a_400_naming_it(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(
            model="anthropic/claude-sonnet-4-5",
            messages=MSG,  # type: ignore[arg-type]
            logprobs=True,
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "logprobs"
    assert "anthropic" in error["message"]


@pytest.mark.parametrize("native", NATIVES, ids=lambda n: n.type)
async def test_tool_calls_plain_and_streamed(sdk: openai.AsyncOpenAI, native: Native) -> None:
    model = f"{native.type}/tool-{native.model}"
    completion = await sdk.chat.completions.create(model=model, messages=MSG, tools=TOOLS)  # type: ignore[arg-type]
    calls = completion.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    expected = json.loads(calls[0].function.arguments)  # type: ignore[union-attr]
    assert isinstance(expected, dict)
    assert expected
    assert completion.choices[0].finish_reason == "tool_calls"

    stream = await sdk.chat.completions.create(model=model, messages=MSG, tools=TOOLS, stream=True)  # type: ignore[arg-type]
    name, args, ids = "", "", set()
    async for chunk in stream:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            assert delta.index == 0
            if delta.id:
                ids.add(delta.id)
            if delta.function:
                name += delta.function.name or ""
                args += delta.function.arguments or ""
    assert name == "get_weather"
    assert json.loads(args) == expected
    assert len(ids) == 1

    # The result goes back as a tool message and the provider accepts the translated history.
    follow = await sdk.chat.completions.create(
        model=f"{native.type}/{native.model}",
        messages=[
            *MSG,
            {"role": "assistant", "tool_calls": [c.model_dump() for c in calls]},
            {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temp": 21}'},
        ],  # type: ignore[list-item]
        tools=TOOLS,  # type: ignore[arg-type]
    )
    assert follow.choices[0].message.content is not None


@pytest.mark.parametrize("native", NATIVES, ids=lambda n: n.type)
async def test_rate_limit_and_cut_stream(sdk: openai.AsyncOpenAI, native: Native) -> None:
    if native.type != "ollama":  # Ollama has no rate limits
        with pytest.raises(openai.RateLimitError):
            await sdk.chat.completions.create(model=f"{native.type}/error-429", messages=MSG)  # type: ignore[arg-type]
    stream = await sdk.chat.completions.create(model=f"{native.type}/cut", messages=MSG, stream=True)  # type: ignore[arg-type]
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


@pytest.mark.parametrize("native", NATIVES, ids=lambda n: n.type)
async def test_a_stream_that_stalls_ends_at_the_read_timeout_after_what_came(
    sdk: openai.AsyncOpenAI, native: Native
) -> None:
    # the provider sends its first events, then nothing: timeout.read (0.5 s here) cuts it
    stream = await sdk.chat.completions.create(model=f"{native.type}/stall", messages=MSG, stream=True)  # type: ignore[arg-type]
    got: list[str] = []

    async def read_all() -> None:
        async for chunk in stream:
            got.extend(c.delta.content or "" for c in chunk.choices)

    started = time.monotonic()
    with pytest.raises(openai.APIError, match=r"timeout\.read"):
        await read_all()
    assert 0.4 < time.monotonic() - started < 5
    assert "".join(got)  # what came before the stall reached the caller


@pytest.mark.parametrize("native", NATIVES, ids=lambda n: n.type)
async def test_a_stream_flushed_an_event_at_a_time_is_relayed_whole(
    sdk: openai.AsyncOpenAI, native: Native
) -> None:
    # real providers write each token's event whole: for an OpenAI-format one, each read is
    # relayed as it came (ChatStream.sse_batches), the others decoded; the caller sees the same
    stream = await sdk.chat.completions.create(
        model=f"{native.type}/whole", messages=MSG, stream=True, stream_options={"include_usage": True}
    )  # type: ignore[arg-type]
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0


async def test_a_stream_from_a_thinking_claude_has_no_empty_chunks(sdk: openai.AsyncOpenAI) -> None:
    """The signature that completes Claude's thinking is for Anthropic clients: an OpenAI client
    gets no chunk that says nothing."""
    stream = await sdk.chat.completions.create(
        model="anthropic/claude-sonnet-4-5",
        messages=MSG,  # type: ignore[arg-type]
        reasoning_effort="low",
        max_tokens=4096,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    reasoning = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices
    )
    assert reasoning  # it thought, and said so
    for chunk in chunks:
        if not chunk.choices:
            assert chunk.usage is not None
            continue
        choice = chunk.choices[0]
        said = choice.delta.model_dump(exclude_none=True)
        assert said or choice.finish_reason, chunk
