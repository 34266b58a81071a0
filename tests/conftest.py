"""Shared fixtures: fake providers on 127.0.0.1 and gateways configured against them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from hypothesis import settings

from tests.fakes.common import run_fake
from tests.fakes.openai import openai_app
from uniinfer.config import Config, parse_config
from uniinfer.gateway import Gateway

#: Property tests draw the same examples on every run, so a run passes or fails on the code,
#: not on chance; UNIINFER_FUZZ_EXPLORE=1 draws new ones (see CONTRIBUTING.md).
settings.register_profile("uniinfer", derandomize=not os.environ.get("UNIINFER_FUZZ_EXPLORE"), database=None)
settings.load_profile("uniinfer")

FAKE_KEY = "sk-test-upstream-key-1234567890"


@pytest.fixture(autouse=True)
def _no_aws_region(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The machine's AWS region settings stay out of the tests (a Bedrock provider without
    ``options.region`` reads them); tests that need them set their own."""
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path_factory.getbasetemp() / "no-aws-config"))


@pytest.fixture
def openai_fake_app() -> web.Application:
    return openai_app(api_key=FAKE_KEY)


@pytest.fixture
async def openai_url(openai_fake_app: web.Application) -> AsyncIterator[str]:
    """Base URL (with /v1) of a running fake OpenAI server."""
    async with run_fake(openai_fake_app) as url:
        yield url + "/v1"


def make_config(yaml_text: str) -> Config:
    return parse_config(yaml_text, source="test.yaml", env={})


@pytest.fixture
def config_for(openai_url: str) -> Callable[..., Config]:
    """A config with provider ``up`` pointing at the fake; ``extra`` YAML is appended."""

    def build(
        extra: str = "", *, drop: bool = False, master_key: str | None = None, retries: int = 0
    ) -> Config:
        """Retry rounds are off by default here: the router tests exercise them with a fake clock."""
        server = f"server: {{master_key: {master_key}}}\n" if master_key else ""
        return make_config(
            f"""{server}
providers:
  up:
    type: openai
    api_key: {FAKE_KEY}
    base_url: {openai_url}
    timeout: {{connect: 2, read: 5, total: 10}}
settings:
  drop_unsupported_params: {str(drop).lower()}
routing:
  retry: {{max_retries: {retries}}}
{extra}"""
        )

    return build


@pytest.fixture
async def make_gateway() -> AsyncIterator[Callable[..., Gateway]]:
    """Build gateways that are closed after the test, whatever it did."""
    made: list[Gateway] = []

    def build(config: Config, **kwargs: object) -> Gateway:
        gw = Gateway(config, **kwargs)  # type: ignore[arg-type]
        made.append(gw)
        return gw

    yield build
    for gw in made:
        await gw.aclose()


@pytest.fixture
def gateway(config_for: Callable[..., Config], make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway(config_for("models:\n  chat: {deployments: [up/gpt-4o-mini]}\n"))


def services_required() -> bool:
    """In CI (``UNIINFER_REQUIRE_SERVICES=1``) an absent PostgreSQL or Redis fails instead of skipping."""
    return os.environ.get("UNIINFER_REQUIRE_SERVICES") == "1"
