"""Running one registered provider type against its fake, through a real Gateway.

:func:`find_fake` picks the fake: ``tests.fakes.<type>.fake_provider()`` when
that module exists (every native type must have one: a missing module is an
``ImportError``, so the contract fails instead of skipping), otherwise, for an
OpenAI-compatible row, the OpenAI fake impersonating the row
(:func:`tests.fakes.openai.row_fake`).

:func:`harness` starts the fake on 127.0.0.1 and configures a provider named
after the type with ``base_url = <fake url> + base_path``, the fake's key and
options, exactly as a user's ``providers.<name>`` entry would.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
from aiohttp import web

from tests.fakes.common import FakeProvider, run_fake
from tests.fakes.openai import row_fake
from tests.server_helpers import serve
from uniinfer.config import Config
from uniinfer.gateway import Gateway
from uniinfer.http import HttpClient, HttpRequest, HttpResponse, Timeouts
from uniinfer.providers.base import ProviderAdapter, ProviderSpec
from uniinfer.providers.registry import default_registry
from uniinfer.server import create_app

__all__ = [
    "OPENAI_ADAPTER",
    "Harness",
    "RecordingHttpClient",
    "adapter_of",
    "configured",
    "contract_config",
    "find_fake",
    "harness",
    "provider_entry",
    "provider_types",
    "rejected_params",
]

OPENAI_ADAPTER = "uniinfer.providers.openai:OpenAIAdapter"
#: Marks "use the fake's own key" (``None`` means: configure no key at all).
FAKE_KEY: Any = object()


def provider_types() -> list[str]:
    """Every provider type the default registry knows (built-ins and installed plug-ins)."""
    return sorted(default_registry().specs)


def find_fake(spec: ProviderSpec) -> FakeProvider:
    """The fake that stands in for ``spec``'s provider (ImportError when a native type has none)."""
    module = f"tests.fakes.{spec.name}"
    if spec.adapter == OPENAI_ADAPTER and importlib.util.find_spec(module) is None:
        return row_fake(spec)
    fake = importlib.import_module(module).fake_provider()
    assert isinstance(fake, FakeProvider), f"{module}.fake_provider() must return a FakeProvider"
    assert fake.type == spec.name, f"{module}.fake_provider() is for type '{fake.type}'"
    return fake


def adapter_of(gateway: Gateway, name: str) -> ProviderAdapter:
    """The adapter the gateway built for configured provider ``name`` (the one place that looks)."""
    return gateway._adapters[name]


def rejected_params(adapter: ProviderAdapter, model: str) -> set[str]:
    """Chat params a request for ``model`` may carry that this adapter's provider cannot honour."""
    from uniinfer.types import ChatRequest

    optional = set(ChatRequest.model_fields) - {"model", "messages", "stream", "stream_options"}
    return (optional - adapter.supported_for(model)) | (optional & adapter.unsupported())


class RecordingHttpClient(HttpClient):
    """The gateway's pooled client, keeping the last complete upstream response for inspection."""

    last: HttpResponse | None = None

    async def send(self, request: HttpRequest, timeouts: Timeouts, provider: str) -> HttpResponse:
        self.last = await super().send(request, timeouts, provider)
        return self.last


@dataclass
class Harness:
    """One provider type, its running fake and a gateway configured against it."""

    name: str
    spec: ProviderSpec
    fake: FakeProvider
    app: web.Application
    url: str
    gateway: Gateway
    http: RecordingHttpClient
    extra: dict[str, Any] = field(default_factory=dict)

    def model(self, upstream: str | None = None) -> str:
        """``<provider>/<model>``: the fake's chat model unless another is named."""
        return f"{self.name}/{upstream or self.fake.chat_model}"

    def embed_model(self, prefix: str = "") -> str:
        return f"{self.name}/{prefix}{self.fake.embed_model}"

    def usage_of(self, model: str) -> tuple[int, int]:
        """(prompt, completion) tokens the gateway's usage meter recorded for ``model``."""
        totals = self.gateway.usage.totals[model]
        return totals.prompt_tokens, totals.completion_tokens


def provider_entry(name: str, fake: FakeProvider, url: str, api_key: Any = FAKE_KEY) -> dict[str, Any]:
    """``providers.<name>`` for ``fake`` running at ``url``, as a user would write it."""
    key = fake.api_key if api_key is FAKE_KEY else api_key
    entry: dict[str, Any] = {
        "type": name,
        "base_url": url + fake.base_path,
        "options": fake.options(url),
        "timeout": {"connect": 2, "read": 10, "total": 20},
    }
    if key is not None:
        entry["api_key"] = key
    return entry


def contract_config(providers: dict[str, dict[str, Any]], *, drop: bool = False) -> Config:
    """A config with these providers; the contract is the adapters': one attempt, no breaker."""
    return Config.model_validate(
        {
            "providers": providers,
            "settings": {"drop_unsupported_params": drop},
            "routing": {"retry": {"max_retries": 0}, "circuit_breaker": {"enabled": False}},
            "source": "contract",
        }
    )


@asynccontextmanager
async def configured(
    name: str, *, drop: bool = False, api_key: Any = FAKE_KEY
) -> AsyncIterator[tuple[FakeProvider, web.Application, str, Config]]:
    """Start ``name``'s fake; yield it, its app, its URL and a config pointing at it."""
    fake = find_fake(default_registry().get(name))
    app = fake.app()
    async with run_fake(app) as url:
        yield fake, app, url, contract_config({name: provider_entry(name, fake, url, api_key)}, drop=drop)


@asynccontextmanager
async def harness(name: str, *, drop: bool = False, api_key: Any = FAKE_KEY) -> AsyncIterator[Harness]:
    """Start ``name``'s fake and a gateway configured for it; close both afterwards."""
    async with configured(name, drop=drop, api_key=api_key) as (fake, app, url, config):
        http = RecordingHttpClient()
        gateway = Gateway(config, http=http)
        try:
            yield Harness(name, default_registry().get(name), fake, app, url, gateway, http)
        finally:
            await gateway.aclose()


@dataclass
class SdkGateway:
    """A gateway in front of providers' fakes, with the official SDKs as its clients."""

    openai: openai.AsyncOpenAI
    anthropic: anthropic.AsyncAnthropic
    fakes: dict[str, FakeProvider]
    apps: dict[str, web.Application]


async def sdk_gateway(stack: AsyncExitStack, names: Iterable[str]) -> SdkGateway:
    """Each named provider's fake, a gateway (:func:`contract_config`) in front of them all, and
    an openai and an anthropic client of it; ``stack`` closes them."""
    fakes: dict[str, FakeProvider] = {}
    apps: dict[str, web.Application] = {}
    entries = {}
    for name in names:
        fake = fakes[name] = find_fake(default_registry().get(name))
        app = apps[name] = fake.app()
        url = await stack.enter_async_context(run_fake(app))
        entries[name] = provider_entry(name, fake, url)
    base = await stack.enter_async_context(serve(create_app(contract_config(entries))))
    oai = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    ant = anthropic.AsyncAnthropic(base_url=base, api_key="unused", max_retries=0)
    stack.push_async_callback(oai.close)
    stack.push_async_callback(ant.close)
    return SdkGateway(oai, ant, fakes, apps)
