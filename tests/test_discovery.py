"""Local servers' models appear in /v1/models (Ollama's /api/tags), and local deployments cost nothing."""

from __future__ import annotations

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
