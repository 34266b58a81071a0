"""OpenAI's ``messages[].name`` through the real server, the official SDKs as clients, fakes as upstreams.

A participant's name on a system, developer, user or assistant message is part of OpenAI's
Chat Completions spec. Anthropic's, Gemini's and Ollama's message formats have no place for
it, so a request naming one and routed there is a 400 ``unsupported_param`` naming the first
named message (``messages[i].name``) and the provider, unless ``drop_unsupported_params`` is
on: then it goes without the names and ``x-uniinfer-dropped-params`` says ``messages[].name``.
An OpenAI-format provider gets the names as they were sent. The Anthropic Messages and
Responses ingresses never produce a name, so their requests never meet the refusal.
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

from tests.contract.harness import find_fake, provider_entry
from tests.fakes.common import run_fake
from tests.server_helpers import serve
from uniinfer.config import Config
from uniinfer.providers.registry import default_registry
from uniinfer.server import create_app

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: The upstream model each provider is asked for (a Claude model the Anthropic fake knows).
MODELS = {
    "openai": "openai/gpt-4o-mini",
    "anthropic": "anthropic/claude-sonnet-4-5",
    "gemini": "gemini/gemini-2.5-flash",
    "ollama": "ollama/llama3.2",
}
#: The providers whose message format has no participant name.
WITHOUT_NAMES = ["anthropic", "gemini", "ollama"]
#: A group whose first deployment cannot take names and whose second can.
GROUP = "named-chat"
#: The first named message is ``messages[1]``, so the error's index is checked.
NAMED: list[Any] = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "hello there", "name": "participant_a"},
    {"role": "assistant", "content": "Hello.", "name": "participant_b"},
    {"role": "user", "content": "hello again", "name": "participant_a"},
]
NAMES = ("participant_a", "participant_b")
DROPPED = "x-uniinfer-dropped-params"


@dataclass
class Env:
    #: A server answering 400 for what a provider cannot take, and one dropping it visibly.
    strict: openai.AsyncOpenAI
    lenient: openai.AsyncOpenAI
    messages: anthropic.AsyncAnthropic
    apps: dict[str, web.Application]

    def received(self, provider: str) -> list[Any]:
        """What the provider's fake has received so far, in order."""
        return list(self.apps[provider]["requests"])


def _config(entries: dict[str, Any], *, drop: bool) -> Config:
    return Config.model_validate(
        {
            "providers": entries,
            "models": {GROUP: {"deployments": [MODELS["anthropic"], MODELS["openai"]]}},
            "settings": {"drop_unsupported_params": drop},
            "routing": {"retry": {"max_retries": 0}, "circuit_breaker": {"enabled": False}},
        }
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[Env]:
    async with AsyncExitStack() as stack:
        apps: dict[str, web.Application] = {}
        entries = {}
        for name in MODELS:
            fake = find_fake(default_registry().get(name))
            app = apps[name] = fake.app()
            url = await stack.enter_async_context(run_fake(app))
            entries[name] = provider_entry(name, fake, url)
        clients = []
        for drop in (False, True):
            base = await stack.enter_async_context(serve(create_app(_config(entries, drop=drop))))
            client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
            stack.push_async_callback(client.close)
            clients.append((base, client))
        (strict_base, strict), (_, lenient) = clients
        messages = anthropic.AsyncAnthropic(base_url=strict_base, api_key="unused", max_retries=0)
        stack.push_async_callback(messages.close)
        yield Env(strict, lenient, messages, apps)


def _without_names(recorded: Any) -> bool:
    """Whether an upstream request (any fake's record of it) carries none of :data:`NAMES`."""
    text = json.dumps(recorded, default=str)
    return "hello again" in text and not any(name in text for name in NAMES)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("provider", WITHOUT_NAMES)
async def test_a_name_is_a_400_naming_the_param_and_the_provider(
    env: Env, provider: str, stream: bool
) -> None:
    before = len(env.received(provider))
    with pytest.raises(openai.BadRequestError) as exc:
        await env.strict.chat.completions.create(model=MODELS[provider], messages=NAMED, stream=stream)
    assert exc.value.status_code == 400
    assert exc.value.code == "unsupported_param"
    assert exc.value.param == "messages[1].name"
    assert isinstance(exc.value.body, dict)
    assert exc.value.body["provider"] == provider
    assert f"provider '{provider}'" in exc.value.message
    assert "messages[1].name" in exc.value.message
    assert len(env.received(provider)) == before  # refused before anything was sent


@pytest.mark.parametrize("provider", WITHOUT_NAMES)
async def test_dropping_sends_no_names_and_says_so(env: Env, provider: str) -> None:
    raw = await env.lenient.chat.completions.with_raw_response.create(model=MODELS[provider], messages=NAMED)
    assert raw.parse().choices[0].message.content
    assert raw.headers[DROPPED] == "messages[].name"
    assert raw.headers["x-uniinfer-provider"] == provider
    assert _without_names(env.received(provider)[-1])


@pytest.mark.parametrize("provider", WITHOUT_NAMES)
async def test_dropping_in_a_stream_says_so_before_the_first_chunk(env: Env, provider: str) -> None:
    raw = await env.lenient.chat.completions.with_raw_response.create(
        model=MODELS[provider], messages=NAMED, stream=True
    )
    assert raw.headers[DROPPED] == "messages[].name"
    text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
    assert text
    assert _without_names(env.received(provider)[-1])


@pytest.mark.parametrize("client", ["strict", "lenient"])
async def test_an_openai_format_provider_gets_the_names_unchanged(env: Env, client: str) -> None:
    sdk: openai.AsyncOpenAI = getattr(env, client)
    raw = await sdk.chat.completions.with_raw_response.create(model=MODELS["openai"], messages=NAMED)
    assert raw.parse().choices[0].message.content
    assert DROPPED not in raw.headers
    sent = env.received("openai")[-1]["body"]
    assert sent["messages"] == NAMED


async def test_a_group_falls_back_to_a_deployment_that_takes_names(env: Env) -> None:
    raw = await env.strict.chat.completions.with_raw_response.create(model=GROUP, messages=NAMED)
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-uniinfer-provider"] == "openai"
    assert raw.headers["x-uniinfer-fallbacks"] == MODELS["anthropic"]
    assert DROPPED not in raw.headers
    assert env.received("openai")[-1]["body"]["messages"] == NAMED


async def test_a_group_drops_names_for_its_first_deployment_when_dropping(env: Env) -> None:
    raw = await env.lenient.chat.completions.with_raw_response.create(model=GROUP, messages=NAMED)
    assert raw.headers["x-uniinfer-provider"] == "anthropic"
    assert raw.headers[DROPPED] == "messages[].name"


async def test_the_anthropic_messages_ingress_sets_no_names(env: Env) -> None:
    raw = await env.messages.messages.with_raw_response.create(
        model=MODELS["anthropic"],
        max_tokens=64,
        system="Answer briefly.",
        messages=[
            {"role": "user", "content": "hello there"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "hello again"},
        ],
    )
    assert (await raw.parse()).content
    assert DROPPED not in raw.headers


@pytest.mark.parametrize("provider", WITHOUT_NAMES)
async def test_the_responses_ingress_sets_no_names(env: Env, provider: str) -> None:
    raw = await env.strict.responses.with_raw_response.create(
        model=MODELS[provider],
        instructions="Answer briefly.",
        input=[
            {"role": "user", "content": "hello there"},
            {"role": "assistant", "content": "Hello."},
            {"role": "developer", "content": "Stay brief."},
            {"role": "user", "content": "hello again"},
        ],
    )
    assert raw.parse().output_text
    assert DROPPED not in raw.headers


async def test_a_null_name_is_no_name(env: Env) -> None:
    raw = await env.strict.chat.completions.with_raw_response.create(
        model=MODELS["anthropic"], messages=[{"role": "user", "content": "hello there", "name": None}]
    )
    assert raw.parse().choices[0].message.content
    assert DROPPED not in raw.headers


async def test_names_are_reported_with_the_other_params_refused(env: Env) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        await env.strict.chat.completions.create(model=MODELS["anthropic"], messages=NAMED, seed=7)
    assert exc.value.param == "seed"
    assert "seed, messages[1].name" in exc.value.message

    raw = await env.lenient.chat.completions.with_raw_response.create(
        model=MODELS["anthropic"], messages=NAMED, seed=7
    )
    assert raw.headers[DROPPED] == "seed,messages[].name"
