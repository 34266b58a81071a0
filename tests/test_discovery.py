"""Local servers' models appear in /v1/models (Ollama's /api/tags), and local deployments cost nothing."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import make_config
from tests.fakes.common import run_fake
from tests.fakes.ollama import ollama_app
from tests.server_helpers import serve
from uniinfer.gateway import Gateway
from uniinfer.server import create_app


async def test_ollama_models_are_discovered_and_a_dead_server_is_skipped() -> None:
    async with run_fake(ollama_app(["llama3.2", "qwen3:8b"])) as url:
        config = make_config(
            f"providers:\n  ollama: {{base_url: '{url}'}}\n  other: {{type: ollama, base_url: 'http://127.0.0.1:9'}}\n"
        )
        async with (
            serve(create_app(config)) as base,
            aiohttp.ClientSession() as session,
            session.get(base + "/v1/models") as resp,
        ):
            ids = [m["id"] for m in (await resp.json())["data"]]
    assert "ollama/llama3.2:latest" in ids  # Ollama reports name:tag
    assert "ollama/qwen3:8b" in ids
    assert "other/*" in ids  # configured, but its server is not running: listed, not discovered


async def test_local_deployments_are_free_for_lowest_cost() -> None:
    config = make_config(
        "providers:\n  ollama: {base_url: 'http://127.0.0.1:9'}\n  openai: {api_key: k}\n"
        "models:\n  m:\n    strategy: lowest_cost\n    deployments:\n"
        "      - {provider: openai, model: gpt-4o-mini, input_cost_per_mtok: 0.15, output_cost_per_mtok: 0.6}\n"
        "      - ollama/llama3.2\n"
    )
    gw = Gateway(config)
    group = gw.router.group("m")
    assert [m.target.label for m in gw.router._ordered(group, set())] == [
        "ollama/llama3.2",
        "openai/gpt-4o-mini",
    ]
    await gw.aclose()


async def test_openai_compatible_local_servers_list_their_models_and_a_dead_one_is_unavailable() -> None:
    from tests.fakes.openai import openai_app

    async with run_fake(openai_app(api_key=None, models=["qwen2.5-7b-instruct"])) as url:
        config = make_config(
            f"providers:\n  vllm: {{base_url: '{url}/v1'}}\n"
            "  lmstudio: {base_url: 'http://127.0.0.1:9/v1'}\n"  # nothing listens on port 9
            "  openai: {api_key: k, base_url: 'http://127.0.0.1:9/v1'}\n"  # hosted: never probed
        )
        gateway = Gateway(config)
        try:
            cards = {card.id: card.available for card in (await gateway.discover_models()).data}
        finally:
            await gateway.aclose()
    assert cards["vllm/qwen2.5-7b-instruct"] is True  # from the server's own GET /v1/models
    assert cards["vllm/*"] is True
    assert cards["lmstudio/*"] is False  # a request to it would fail to connect: said so up front
    assert cards["openai/*"] is True  # a hosted provider is listed as configured, not probed


def _record_asks(gateway: Gateway) -> list[str]:
    """The providers whose servers ``gateway`` asks for their models, in order, from now on."""
    asked: list[str] = []
    ask = gateway.discovery._ask

    async def recording(name: str, adapter: Any) -> list[str] | None:
        asked.append(name)
        return await ask(name, adapter)

    gateway.discovery._ask = recording  # type: ignore[method-assign]
    return asked


async def test_one_model_s_card_says_what_the_list_says() -> None:
    async with run_fake(ollama_app(["llama3.2", "qwen3:8b"])) as url:
        config = make_config(
            f"providers:\n  ollama: {{base_url: '{url}'}}\n  other: {{type: ollama, base_url: 'http://127.0.0.1:9'}}\n"
            "  openai: {api_key: k, base_url: 'http://127.0.0.1:9/v1'}\n"
        )
        gateway = Gateway(config)
        probed = _record_asks(gateway)
        try:

            async def available(model: str) -> bool:
                return (await gateway.retrieve_model(model)).available

            assert await available("ollama/llama3.2")  # served as llama3.2:latest
            assert await available("ollama/qwen3:8b")
            assert not await available("ollama/nope")  # the server has no such model
            assert not await available("other/*")  # nothing answers there, as the list says
            assert not await available("other/llama3.2")
            assert await available("openai/gpt-4o-mini")
            assert "openai" not in probed  # hosted: never probed, listed as configured
            assert "ollama" in probed
        finally:
            await gateway.aclose()


async def test_servers_lists_are_remembered_asked_once_at_a_time_and_a_hung_server_is_unavailable() -> None:
    """A client polling /v1/models sent every local server a request per poll; a server that
    accepts connections and never answers held each listing for the timeout and was listed
    available."""
    import asyncio

    from aiohttp import web

    from uniinfer.discovery import FRESH_SECONDS

    async def hang(_: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({})

    hung = web.Application()
    hung.router.add_get("/api/tags", hang)
    ollama = ollama_app(["llama3.2"])
    async with run_fake(ollama) as url, run_fake(hung) as hung_url:
        gateway = Gateway(
            make_config(
                f"providers:\n  ollama: {{base_url: '{url}'}}\n  stuck: {{type: ollama, base_url: '{hung_url}'}}\n"
            )
        )
        now = [1000.0]
        gateway.discovery._clock = lambda: now[0]
        asked = _record_asks(gateway)
        try:
            lists = await asyncio.gather(*(gateway.discover_models() for _ in range(10)))
            ids = [{c.id: c.available for c in models.data} for models in lists]
            assert all(i == ids[0] for i in ids)
            assert ids[0]["ollama/llama3.2:latest"] is True
            assert ids[0]["stuck/*"] is False  # no answer in time: as unreachable
            assert (
                asked.count("ollama") == asked.count("stuck") == 1
            )  # ten listings at once: one request each
            await gateway.discover_models()
            assert asked.count("ollama") == 1  # remembered
            now[0] += FRESH_SECONDS + 1
            await gateway.discover_models()
            assert asked.count("ollama") == 2  # then asked again
        finally:
            await gateway.aclose()


async def test_the_list_holds_experiments_names_and_no_direct_routes_when_they_are_off() -> None:
    config = make_config(
        "providers:\n  up: {type: openai, api_key: k, base_url: 'http://127.0.0.1:9/v1'}\n"
        "  ollama: {base_url: 'http://127.0.0.1:9'}\n"
        "models:\n  chat-a: {deployments: [up/a]}\n  chat-b: {deployments: [up/b]}\n"
        "routing:\n  experiments:\n    - name: ab\n      model: chat\n"
        "      variants: [{name: control, model: chat-a}, {name: candidate, model: chat-b}]\n"
    )
    gateway = Gateway(config)
    try:
        ids = [c.id for c in (await gateway.discover_models()).data]
        assert ids[:3] == ["chat-a", "chat-b", "chat"]  # a name callers use is listed
        assert (await gateway.retrieve_model("chat")).id == "chat"
        assert "up/*" in ids
    finally:
        await gateway.aclose()
    closed = config.model_copy(
        update={"settings": config.settings.model_copy(update={"allow_direct_routing": False})}
    )
    gateway = Gateway(closed)
    try:
        ids = [c.id for c in (await gateway.discover_models()).data]
        assert ids == ["chat-a", "chat-b", "chat"]  # no provider/* a caller could not route
    finally:
        await gateway.aclose()


async def test_a_listing_under_way_when_the_gateway_closes_ends_with_nothing_found() -> None:
    import asyncio

    from aiohttp import web

    async def hang(_: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({})

    hung = web.Application()
    hung.router.add_get("/api/tags", hang)
    async with run_fake(hung) as url:
        gateway = Gateway(make_config(f"providers:\n  ollama: {{base_url: '{url}'}}\n"))
        listing = asyncio.create_task(gateway.discover_models())
        await asyncio.sleep(0.1)
        await gateway.aclose()  # the caller was not cancelled: it gets an answer, not CancelledError
        models = await asyncio.wait_for(listing, 5)
        assert "ollama/*" in [c.id for c in models.data]
