"""The translation matrix: every ingress x every native provider family, through the official SDKs.

Ingress: OpenAI Chat Completions, OpenAI Responses, Anthropic Messages.
Providers: OpenAI, Anthropic, Gemini, Bedrock, Cohere, and an OpenAI-compatible row (Groq).
Cases: plain text, streaming, a tool round trip, a streamed tool call, an image input,
usage numbers (identical whichever ingress asked, since the fakes are deterministic),
and an upstream 429 arriving in the caller's own error format with Retry-After kept.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Protocol

import anthropic
import openai
import pytest
import pytest_asyncio

from tests.contract.harness import sdk_gateway
from tests.fakes.common import FakeProvider

PROVIDERS = ["openai", "anthropic", "gemini", "bedrock", "cohere", "groq"]
#: Providers whose 429 carries Retry-After (AWS sends none on throttling).
SENDS_RETRY_AFTER = {"openai", "anthropic", "gemini", "cohere", "groq"}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
}


@dataclass
class Clients:
    openai: openai.AsyncOpenAI
    anthropic: anthropic.AsyncAnthropic
    fakes: dict[str, FakeProvider]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def clients() -> AsyncIterator[Clients]:
    async with AsyncExitStack() as stack:
        gw = await sdk_gateway(stack, PROVIDERS)
        yield Clients(gw.openai, gw.anthropic, gw.fakes)


class Ingress(Protocol):
    async def plain(self, model: str, text: str) -> tuple[str, tuple[int, int]]: ...
    async def stream(self, model: str, text: str) -> tuple[str, tuple[int, int]]: ...
    async def tool_call(self, model: str) -> tuple[str, dict[str, Any], str]: ...
    async def tool_result(self, model: str, call: tuple[str, dict[str, Any], str], result: str) -> str: ...
    async def streamed_tool_call(self, model: str) -> tuple[str, dict[str, Any]]: ...
    async def image(self, model: str) -> str: ...
    async def rate_limited(self, model: str) -> tuple[int, str | None, Any]: ...


class Chat:
    """OpenAI Chat Completions through the openai SDK."""

    def __init__(self, c: Clients) -> None:
        self.c = c.openai

    async def plain(self, model: str, text: str) -> tuple[str, tuple[int, int]]:
        r = await self.c.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
        assert r.usage is not None
        return r.choices[0].message.content or "", (r.usage.prompt_tokens, r.usage.completion_tokens)

    async def stream(self, model: str, text: str) -> tuple[str, tuple[int, int]]:
        s = await self.c.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": text}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in s]
        assert chunks[-1].usage is not None
        out = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return out, (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens)

    async def tool_call(self, model: str) -> tuple[str, dict[str, Any], str]:
        r = await self.c.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "weather in Paris?"}],
            tools=[{"type": "function", "function": WEATHER}],
        )
        call = (r.choices[0].message.tool_calls or [])[0]
        assert r.choices[0].finish_reason == "tool_calls"
        return call.function.name, json.loads(call.function.arguments), call.id  # type: ignore[union-attr]

    async def tool_result(self, model: str, call: tuple[str, dict[str, Any], str], result: str) -> str:
        name, args, call_id = call
        r = await self.c.chat.completions.create(
            model=model,
            messages=[
                {"role": "user", "content": "weather in Paris?"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": json.dumps(args)},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": call_id, "content": result},
            ],
            tools=[{"type": "function", "function": WEATHER}],
        )
        return r.choices[0].message.content or ""

    async def streamed_tool_call(self, model: str) -> tuple[str, dict[str, Any]]:
        s = await self.c.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "weather in Paris?"}],
            tools=[{"type": "function", "function": WEATHER}],
            stream=True,
        )
        name, args = "", ""
        async for chunk in s:
            for d in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                assert d.index == 0
                name += (d.function.name or "") if d.function else ""
                args += (d.function.arguments or "") if d.function else ""
        return name, json.loads(args)

    async def image(self, model: str) -> str:
        r = await self.c.chat.completions.create(
            model=model,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    ],
                }
            ],
        )
        return r.choices[0].message.content or ""

    async def rate_limited(self, model: str) -> tuple[int, str | None, Any]:
        with pytest.raises(openai.RateLimitError) as info:
            await self.c.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        return info.value.status_code, info.value.response.headers.get("retry-after"), info.value.body


class Responses:
    """OpenAI Responses through the openai SDK."""

    def __init__(self, c: Clients) -> None:
        self.c = c.openai

    async def plain(self, model: str, text: str) -> tuple[str, tuple[int, int]]:
        r = await self.c.responses.create(model=model, input=text)
        assert r.usage is not None
        return r.output_text, (r.usage.input_tokens, r.usage.output_tokens)

    async def stream(self, model: str, text: str) -> tuple[str, tuple[int, int]]:
        deltas = []
        async with self.c.responses.stream(model=model, input=text) as s:
            async for event in s:
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
            final = await s.get_final_response()
        assert final.usage is not None
        assert "".join(deltas) == final.output_text
        return final.output_text, (final.usage.input_tokens, final.usage.output_tokens)

    async def tool_call(self, model: str) -> tuple[str, dict[str, Any], str]:
        r = await self.c.responses.create(
            model=model, input="weather in Paris?", tools=[{"type": "function", **WEATHER}]
        )  # type: ignore[list-item]
        call = next(i for i in r.output if i.type == "function_call")
        return call.name, json.loads(call.arguments), call.call_id  # type: ignore[union-attr]

    async def tool_result(self, model: str, call: tuple[str, dict[str, Any], str], result: str) -> str:
        name, args, call_id = call
        r = await self.c.responses.create(
            model=model,
            input=[
                {"role": "user", "content": "weather in Paris?"},
                {"type": "function_call", "call_id": call_id, "name": name, "arguments": json.dumps(args)},
                {"type": "function_call_output", "call_id": call_id, "output": result},
            ],  # type: ignore[list-item]
            tools=[{"type": "function", **WEATHER}],  # type: ignore[list-item]
        )
        return r.output_text

    async def streamed_tool_call(self, model: str) -> tuple[str, dict[str, Any]]:
        args = ""
        async with self.c.responses.stream(
            model=model, input="weather in Paris?", tools=[{"type": "function", **WEATHER}]
        ) as s:  # type: ignore[list-item]
            async for event in s:
                if event.type == "response.function_call_arguments.delta":
                    args += event.delta
            final = await s.get_final_response()
        call = next(i for i in final.output if i.type == "function_call")
        assert json.loads(call.arguments) == json.loads(args)  # type: ignore[union-attr]
        return call.name, json.loads(args)  # type: ignore[union-attr]

    async def image(self, model: str) -> str:
        r = await self.c.responses.create(
            model=model,
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "what is this"},
                        {
                            "type": "input_image",
                            "image_url": f"data:image/png;base64,{PNG}",
                            "detail": "auto",
                        },
                    ],
                }
            ],  # type: ignore[list-item]
        )
        return r.output_text

    async def rate_limited(self, model: str) -> tuple[int, str | None, Any]:
        with pytest.raises(openai.RateLimitError) as info:
            await self.c.responses.create(model=model, input="hi")
        return info.value.status_code, info.value.response.headers.get("retry-after"), info.value.body


class Messages:
    """Anthropic Messages through the anthropic SDK."""

    def __init__(self, c: Clients) -> None:
        self.c = c.anthropic

    @staticmethod
    def _usage(u: Any) -> tuple[int, int]:
        return (
            u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0),
            u.output_tokens,
        )

    async def plain(self, model: str, text: str) -> tuple[str, tuple[int, int]]:
        m = await self.c.messages.create(
            model=model, max_tokens=256, messages=[{"role": "user", "content": text}]
        )
        return "".join(b.text for b in m.content if b.type == "text"), self._usage(m.usage)

    async def stream(self, model: str, text: str) -> tuple[str, tuple[int, int]]:
        async with self.c.messages.stream(
            model=model, max_tokens=256, messages=[{"role": "user", "content": text}]
        ) as s:
            streamed = "".join([t async for t in s.text_stream])
            final = await s.get_final_message()
        return streamed, self._usage(final.usage)

    async def tool_call(self, model: str) -> tuple[str, dict[str, Any], str]:
        m = await self.c.messages.create(
            model=model, max_tokens=256, messages=[{"role": "user", "content": "weather in Paris?"}],
            tools=[{"name": WEATHER["name"], "description": WEATHER["description"], "input_schema": WEATHER["parameters"]}],  # type: ignore[list-item]
        )  # fmt: skip
        assert m.stop_reason == "tool_use"
        block = next(b for b in m.content if b.type == "tool_use")
        return block.name, dict(block.input), block.id  # type: ignore[arg-type]

    async def tool_result(self, model: str, call: tuple[str, dict[str, Any], str], result: str) -> str:
        name, args, call_id = call
        m = await self.c.messages.create(
            model=model,
            max_tokens=256,
            messages=[
                {"role": "user", "content": "weather in Paris?"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": call_id, "name": name, "input": args}],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": call_id, "content": result}],
                },
            ],
            tools=[
                {
                    "name": WEATHER["name"],
                    "description": WEATHER["description"],
                    "input_schema": WEATHER["parameters"],
                }
            ],  # type: ignore[list-item]
        )
        return "".join(b.text for b in m.content if b.type == "text")

    async def streamed_tool_call(self, model: str) -> tuple[str, dict[str, Any]]:
        async with self.c.messages.stream(
            model=model, max_tokens=256, messages=[{"role": "user", "content": "weather in Paris?"}],
            tools=[{"name": WEATHER["name"], "description": WEATHER["description"], "input_schema": WEATHER["parameters"]}],  # type: ignore[list-item]
        ) as s:  # fmt: skip
            partial = "".join([e.partial_json async for e in s if e.type == "input_json"])
            final = await s.get_final_message()
        block = next(b for b in final.content if b.type == "tool_use")
        assert json.loads(partial) == block.input
        return block.name, dict(block.input)  # type: ignore[arg-type]

    async def image(self, model: str) -> str:
        m = await self.c.messages.create(
            model=model,
            max_tokens=256,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                    ],
                }
            ],
        )
        return "".join(b.text for b in m.content if b.type == "text")

    async def rate_limited(self, model: str) -> tuple[int, str | None, Any]:
        with pytest.raises(anthropic.RateLimitError) as info:
            await self.c.messages.create(
                model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
            )
        return info.value.status_code, info.value.response.headers.get("retry-after"), info.value.body


INGRESS = {"chat": Chat, "responses": Responses, "messages": Messages}
CASES = [(i, p) for i in INGRESS for p in PROVIDERS]


def driver(name: str, clients: Clients) -> Ingress:
    return INGRESS[name](clients)  # type: ignore[abstract,no-any-return]


def model(clients: Clients, provider: str, prefix: str = "") -> str:
    return f"{provider}/{prefix}{clients.fakes[provider].chat_model}"


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize(("ingress", "provider"), CASES)
async def test_plain_text_and_usage_agree_across_ingresses(
    clients: Clients, ingress: str, provider: str
) -> None:
    text, usage = await driver(ingress, clients).plain(model(clients, provider), "hello there")
    assert text == "echo: hello there"
    reference = await Chat(clients).plain(model(clients, provider), "hello there")
    assert usage == reference[1]  # the provider's numbers, whichever API asked
    assert usage[0] > 0
    assert usage[1] > 0


@pytest.mark.parametrize(("ingress", "provider"), CASES)
async def test_streaming_with_usage(clients: Clients, ingress: str, provider: str) -> None:
    text, usage = await driver(ingress, clients).stream(model(clients, provider), "hello there")
    assert text == "echo: hello there"
    assert usage == (await Chat(clients).plain(model(clients, provider), "hello there"))[1]


@pytest.mark.parametrize(("ingress", "provider"), CASES)
async def test_tool_round_trip(clients: Clients, ingress: str, provider: str) -> None:
    d = driver(ingress, clients)
    call = await d.tool_call(model(clients, provider, "tool-"))
    assert call[0] == "get_weather"
    assert call[1]
    answer = await d.tool_result(model(clients, provider), call, '{"temperature": 21}')
    assert answer.startswith("echo:")


@pytest.mark.parametrize(("ingress", "provider"), CASES)
async def test_streamed_tool_call(clients: Clients, ingress: str, provider: str) -> None:
    d = driver(ingress, clients)
    name, args = await d.streamed_tool_call(model(clients, provider, "tool-"))
    plain = await d.tool_call(model(clients, provider, "tool-"))
    assert (name, args) == (plain[0], plain[1])


@pytest.mark.parametrize(("ingress", "provider"), CASES)
async def test_image_input(clients: Clients, ingress: str, provider: str) -> None:
    assert await driver(ingress, clients).image(model(clients, provider)) == "echo: what is this"


@pytest.mark.parametrize(("ingress", "provider"), CASES)
async def test_upstream_429_in_the_caller_s_format(clients: Clients, ingress: str, provider: str) -> None:
    # one model name per ingress, so each sees the upstream's own 429 (not a cool-down)
    status, retry_after, body = await driver(ingress, clients).rate_limited(f"{provider}/error-429-{ingress}")
    assert status == 429
    if provider in SENDS_RETRY_AFTER:
        assert retry_after is not None
        assert float(retry_after) >= 1
    if ingress == "messages":
        assert body["type"] == "error"
        assert body["error"]["type"] == "rate_limit_error"
    else:
        assert body["code"] == "rate_limited"


#: Providers with an end-user field of their own (OpenAI's ``user``, Claude's ``metadata.user_id``).
TAKES_USER_ID = {"openai", "anthropic", "groq"}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_claude_code_user_id_never_refuses_the_request(clients: Clients, provider: str) -> None:
    """Claude Code sends ``metadata.user_id`` on every request: a provider without an end-user
    field goes without it, and the header says so (``drop_unsupported_params`` is off here)."""
    raw = await clients.anthropic.messages.with_raw_response.create(
        model=model(clients, provider),
        max_tokens=256,
        messages=[{"role": "user", "content": "hello there"}],
        metadata={"user_id": "user_2f1c_account_7_session_9"},
    )
    message = await raw.parse()
    assert "".join(b.text for b in message.content if b.type == "text") == "echo: hello there"
    dropped = raw.headers.get("x-uniinfer-dropped-params", "")
    assert ("metadata.user_id" in dropped.split(", ")) is (provider not in TAKES_USER_ID), dropped
