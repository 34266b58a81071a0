"""Ollama tool loops and tool_choice end to end: the official openai SDK -> uniinfer -> the Ollama fake.

Ollama's ``/api/chat`` has no tool call ids before recent servers and no
``tool_choice`` at all; what an OpenAI client relies on must still hold.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from tests.conftest import make_config
from tests.fakes.common import run_fake
from tests.fakes.ollama import ollama_app
from tests.server_helpers import serve
from uniinfer.http import HttpClient, HttpRequest, Timeouts
from uniinfer.server import create_app

TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture
async def fake() -> AsyncIterator[tuple[str, web.Application]]:
    app = ollama_app(["llama3.2"])
    async with run_fake(app) as url:
        yield url, app


@pytest.fixture
async def sdk(fake: tuple[str, web.Application]) -> AsyncIterator[openai.AsyncOpenAI]:
    config = make_config(
        f"providers:\n  ollama: {{base_url: '{fake[0]}'}}\nrouting: {{retry: {{max_retries: 0}}}}\n"
    )
    async with serve(create_app(config)) as base:
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        yield client
        await client.close()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_server_without_call_ids_still_gives_unique_ids_across_a_tool_loop(
    sdk: openai.AsyncOpenAI, fake: tuple[str, web.Application], stream: bool
) -> None:
    """Two turns of a tool loop against a server that sends no ids: each call gets its own id
    (``call_0`` twice would be refused as duplicate tool-use ids by Anthropic and Bedrock when
    the conversation moves there), and each result still reaches Ollama under its tool's name."""
    messages: list[Any] = [{"role": "user", "content": "weather in Paris"}]
    ids: list[str] = []
    for turn in range(2):
        if stream:
            chunks = await sdk.chat.completions.create(
                model="ollama/tool-noid", messages=messages, tools=TOOLS, stream=True
            )
            deltas = [d async for c in chunks for d in (c.choices[0].delta.tool_calls or []) if c.choices]
            assert len(deltas) == 1
            assert deltas[0].function is not None
            call_id, arguments = deltas[0].id or "", deltas[0].function.arguments or ""
        else:
            completion = await sdk.chat.completions.create(
                model="ollama/tool-noid", messages=messages, tools=TOOLS
            )
            assert completion.choices[0].finish_reason == "tool_calls"
            calls = completion.choices[0].message.tool_calls or []
            assert len(calls) == 1
            call_id, arguments = calls[0].id, calls[0].function.arguments  # type: ignore[union-attr]
        assert call_id.startswith("call_")
        ids.append(call_id)
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": call_id, "content": f"{11 + turn} degrees"},
        ]  # fmt: skip
        messages.append({"role": "user", "content": "and tomorrow?"})
    assert len(set(ids)) == 2, ids
    answer = await sdk.chat.completions.create(model="ollama/llama3.2", messages=messages, tools=TOOLS)
    assert answer.choices[0].message.content == "echo: and tomorrow?"
    sent = fake[1]["requests"][-1]["messages"]
    assert [m for m in sent if m["role"] == "tool"] == [
        {"role": "tool", "content": "11 degrees", "tool_name": "get_weather"},
        {"role": "tool", "content": "12 degrees", "tool_name": "get_weather"},
    ]


async def test_tool_choice_auto_and_none_are_honoured(
    sdk: openai.AsyncOpenAI, fake: tuple[str, web.Application]
) -> None:
    user = [{"role": "user", "content": "weather in Paris"}]
    auto = await sdk.chat.completions.create(
        model="ollama/tool-llama", messages=user, tools=TOOLS, tool_choice="auto"
    )  # type: ignore[arg-type]
    assert auto.choices[0].finish_reason == "tool_calls"
    assert fake[1]["requests"][-1]["tools"] == TOOLS
    none = await sdk.chat.completions.create(
        model="ollama/tool-llama", messages=user, tools=TOOLS, tool_choice="none"
    )  # type: ignore[arg-type]
    assert none.choices[0].finish_reason == "stop"
    assert none.choices[0].message.tool_calls is None
    assert none.choices[0].message.content == "echo: weather in Paris"
    assert "tools" not in fake[1]["requests"][-1]  # no tools: the model cannot call one


@pytest.mark.parametrize(
    "choice",
    ["required", {"type": "function", "function": {"name": "get_weather"}}],
    ids=["required", "named"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_forcing_a_tool_call_is_refused_naming_the_param(
    sdk: openai.AsyncOpenAI, fake: tuple[str, web.Application], choice: Any, stream: bool
) -> None:
    sent_before = len(fake[1]["requests"])
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.chat.completions.create(
            model="ollama/tool-llama",
            messages=[{"role": "user", "content": "weather in Paris"}],
            tools=TOOLS,
            tool_choice=choice,
            stream=stream,
        )
    error = info.value.body
    assert isinstance(error, dict)
    assert error["param"] == "tool_choice"
    assert error["code"] == "unsupported_param"
    assert "ollama" in error["message"]
    assert len(fake[1]["requests"]) == sent_before  # refused before anything went upstream


async def test_a_tool_call_counts_as_completion_tokens(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="ollama/tool-llama", messages=[{"role": "user", "content": "weather"}], tools=TOOLS
    )
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0  # Ollama's eval_count counts the generated call


@pytest.mark.parametrize(
    "body",
    [
        {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        {"model": "llama3.2", "messages": [{"role": "user", "content": "hi", "name": "bob"}]},
        {"model": "llama3.2", "messages": [{"role": "user", "content": "hi", "images": "abc"}]},
        {"model": "llama3.2", "messages": [{"role": "user", "content": "hi", "images": [7]}]},
        {"model": "llama3.2", "messages": [{"role": "tool", "content": "x", "tool_name": 3}]},
        {"model": "llama3.2", "messages": {"role": "user", "content": "hi"}},
        {"model": 7, "messages": [{"role": "user", "content": "hi"}]},
        {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "tools": {"a": 1}},
        {"model": "llama3.2", "messages": [{"role": "assistant", "content": "",
                                            "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]},
    ],
    ids=["unknown-field", "unknown-message-field", "images-not-a-list", "image-not-a-string",
         "tool-name-not-a-string", "messages-not-a-list", "model-not-a-string", "tools-not-a-list",
         "unknown-tool-call-field"],
)  # fmt: skip
async def test_the_fake_refuses_what_ollama_would_not_take(
    fake: tuple[str, web.Application], body: Any
) -> None:
    http = HttpClient()
    try:
        resp = await http.send(HttpRequest(f"{fake[0]}/api/chat", orjson.dumps(body)), Timeouts(), "ollama")
    finally:
        await http.aclose()
    assert resp.status == 400, resp.body
    assert orjson.loads(resp.body)["error"]


async def test_the_fake_truncates_a_number_for_an_integer_option_as_go_does(
    fake: tuple[str, web.Application],
) -> None:
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "a b c"}], "stream": False,
            "options": {"num_predict": 2.0, "seed": 7.5}}  # fmt: skip
    http = HttpClient()
    try:
        resp = await http.send(HttpRequest(f"{fake[0]}/api/chat", orjson.dumps(body)), Timeouts(), "ollama")
    finally:
        await http.aclose()
    assert resp.status == 200, resp.body


@pytest.mark.parametrize(
    "choice",
    ["required", {"type": "function", "function": {"name": "get_weather"}}],
    ids=["required", "named"],
)
async def test_with_drop_on_a_forced_tool_call_is_dropped_visibly(
    fake: tuple[str, web.Application], choice: Any
) -> None:
    """settings.drop_unsupported_params: the tools go out, the model decides, and the header says so."""
    config = make_config(
        f"providers:\n  ollama: {{base_url: '{fake[0]}'}}\n"
        "settings: {drop_unsupported_params: true}\nrouting: {retry: {max_retries: 0}}\n"
    )
    async with serve(create_app(config)) as base:
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model="ollama/tool-llama",
                messages=[{"role": "user", "content": "weather in Paris"}],
                tools=TOOLS,
                tool_choice=choice,
            )
        finally:
            await client.close()
    assert raw.headers["x-uniinfer-dropped-params"] == "tool_choice"
    assert raw.parse().choices[0].finish_reason == "tool_calls"
    assert fake[1]["requests"][-1]["tools"] == TOOLS
