"""The contract seen by a real client: the official openai SDK -> one uniinfer server ->
every chat provider's fake. Chat, a stream with its final usage chunk, and the visible drop
of a param the provider cannot honour (``x-uniinfer-dropped-params``).

One server fronts all the fakes (module scope) to keep this fast; a provider whose fake
cannot be found fails its own test here, as in the contract suite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import openai
import pytest
import pytest_asyncio

from tests.contract.harness import (
    adapter_of,
    contract_config,
    find_fake,
    provider_entry,
    provider_types,
    rejected_params,
)
from tests.contract.test_contract import SAMPLES
from tests.fakes.common import FakeProvider, run_fake
from tests.server_helpers import serve
from uniinfer.gateway import Gateway
from uniinfer.providers.registry import default_registry
from uniinfer.server import create_app

CHAT_PROVIDERS = [n for n in provider_types() if default_registry().get(n).capabilities.chat]
MSG = [{"role": "user", "content": "hello there"}]


@dataclass
class Sdk:
    client: openai.AsyncOpenAI
    fakes: dict[str, FakeProvider]
    missing: dict[str, Exception]
    droppable: dict[str, str | None]


def droppable(gateway: Gateway, name: str, model: str) -> str | None:
    """A param this provider cannot honour for ``model`` that needs no other feature, if any."""
    rejected = rejected_params(adapter_of(gateway, name), model)
    plain = sorted(p for p in rejected if set(SAMPLES[p]) == {p})
    return plain[0] if plain else None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sdk() -> AsyncIterator[Sdk]:
    async with AsyncExitStack() as stack:
        fakes: dict[str, FakeProvider] = {}
        missing: dict[str, Exception] = {}
        entries = {}
        for name in CHAT_PROVIDERS:
            try:
                fake = fakes[name] = find_fake(default_registry().get(name))
            except ImportError as exc:
                missing[name] = exc
                continue
            url = await stack.enter_async_context(run_fake(fake.app()))
            entries[name] = provider_entry(name, fake, url)
        config = contract_config(entries, drop=True)
        probe = Gateway(config)
        dropped = {name: droppable(probe, name, fakes[name].chat_model) for name in entries}
        await probe.aclose()
        base = await stack.enter_async_context(serve(create_app(config)))
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        stack.push_async_callback(client.close)
        yield Sdk(client, fakes, missing, dropped)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("name", CHAT_PROVIDERS)
async def test_official_sdk_through_the_server(sdk: Sdk, name: str) -> None:
    if name in sdk.missing:
        pytest.fail(f"no fake for provider type '{name}': {sdk.missing[name]}")
    client, model = sdk.client, f"{name}/{sdk.fakes[name].chat_model}"
    completion = await client.chat.completions.create(model=model, messages=MSG)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "echo: hello there"

    stream = await client.chat.completions.create(
        model=model,
        messages=MSG,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello there"
    if default_registry().get(name).stream_usage != "never":
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None

    param = sdk.droppable[name]
    if param is not None:
        raw = await client.chat.completions.with_raw_response.create(
            model=model,
            messages=MSG,  # type: ignore[arg-type]
            extra_body=SAMPLES[param],
        )
        assert param in raw.headers["x-uniinfer-dropped-params"].split(",")
        assert raw.parse().choices[0].message.content == "echo: hello there"
