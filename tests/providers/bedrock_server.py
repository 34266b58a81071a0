"""The real server in front of the Bedrock fake, with the official anthropic and openai SDKs as clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
from aiohttp import web

from tests.contract.harness import contract_config, provider_entry
from tests.fakes.bedrock import bedrock_app, fake_provider
from tests.fakes.common import run_fake
from tests.server_helpers import serve
from uniinfer.server import create_app


@dataclass
class BedrockServer:
    anthropic: anthropic.AsyncAnthropic
    openai: openai.AsyncOpenAI
    #: The fake's app: ``app["requests"]`` holds what reached Bedrock.
    app: web.Application

    def bodies(self) -> list[dict[str, Any]]:
        """The bodies Bedrock received, in order."""
        return [r["body"] for r in self.app["requests"]]

    def last(self) -> dict[str, Any]:
        """The last body Bedrock received."""
        return self.bodies()[-1]


@asynccontextmanager
async def bedrock_server() -> AsyncIterator[BedrockServer]:
    async with AsyncExitStack() as stack:
        app = bedrock_app()
        url = await stack.enter_async_context(run_fake(app))
        config = contract_config({"bedrock": provider_entry("bedrock", fake_provider(), url)})
        base = await stack.enter_async_context(serve(create_app(config)))
        ant = anthropic.AsyncAnthropic(base_url=base, api_key="unused", max_retries=0)
        oai = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        stack.push_async_callback(ant.close)
        stack.push_async_callback(oai.close)
        yield BedrockServer(ant, oai, app)
