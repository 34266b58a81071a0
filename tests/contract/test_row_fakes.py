"""The OpenAI fake impersonating registry rows (tests/fakes/openai.py ``row_fake``), checked
on the wire with raw HTTP: what the contract suite relies on must really happen."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.contract.harness import OPENAI_ADAPTER
from tests.fakes.common import run_fake
from tests.fakes.openai import ROW_KEY, openai_app, row_fake
from uniinfer.providers.registry import default_registry

ROWS = [s for s in default_registry() if s.adapter == OPENAI_ADAPTER and s.capabilities.chat]
BODY = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}


async def post(url: str, body: dict[str, Any], key: str | None = ROW_KEY) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as resp:
        raw = await resp.read()
    if resp.content_type == "text/event-stream":
        events = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
        return resp.status, [orjson.loads(e) for e in events if e != "[DONE]"]
    return resp.status, orjson.loads(raw)


@pytest.fixture
async def fake_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The row's fake, and the URL its chat endpoint answers at (placeholders filled)."""
    spec = request.param
    fake = row_fake(spec)
    async with run_fake(fake.app()) as url:
        yield url + fake.base_path.format_map(fake.options(url)) + "/chat/completions"


@pytest.mark.parametrize("fake_url", ROWS, ids=lambda s: s.name, indirect=True)
async def test_row_fake_rejects_what_the_row_declares(fake_url: str, request: pytest.FixtureRequest) -> None:
    spec = request.node.callspec.params["fake_url"]
    key = ROW_KEY if spec.key_required else None
    status, body = await post(fake_url, BODY, key)
    assert status == 200, body
    rejected = spec.unsupported_params | set(spec.param_renames)
    for param in sorted(rejected):
        status, body = await post(fake_url, {**BODY, param: 1}, key)
        assert status == 400
        assert body["error"]["param"] == param
        assert body["error"]["code"] == "unsupported_parameter"
    if spec.stream_usage != "stream_options":
        status, body = await post(fake_url, {**BODY, "stream": True, "stream_options": {}}, key)
        assert (status, body["error"]["param"]) == (400, "stream_options")
    if spec.key_required:
        status, body = await post(fake_url, BODY, "sk-wrong")
        assert status == 401


async def test_row_fake_serves_under_the_rows_path_only() -> None:
    fake = row_fake(default_registry().get("cloudflare"))
    async with run_fake(fake.app()) as url:
        good = url + "/client/v4/accounts/fake-account-id/ai/v1/chat/completions"
        assert (await post(good, BODY))[0] == 200
        status, body = await post(url + "/client/v4/accounts/other/ai/v1/chat/completions", BODY)
        assert status == 404
        assert "Invalid URL" in body["error"]["message"]


async def stream(app_kwargs: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
    async with run_fake(openai_app(api_key=None, **app_kwargs)) as url:
        status, chunks = await post(url + "/v1/chat/completions", {**BODY, "stream": True, **body}, None)
    assert status == 200, chunks
    assert isinstance(chunks, list)
    return chunks


async def test_stream_usage_stream_options_only_when_asked() -> None:
    assert all("usage" not in c for c in await stream({}, {}))
    *rest, last = await stream({}, {"stream_options": {"include_usage": True}})
    assert last["choices"] == []
    assert last["usage"]["total_tokens"] > 0
    assert all(c["usage"] is None for c in rest)


async def test_stream_usage_always_rides_on_the_finish_chunk() -> None:
    *rest, last = await stream({"stream_usage": "always"}, {})
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["usage"]["completion_tokens"] > 0
    assert all("usage" not in c for c in rest)


async def test_stream_usage_never_reports_none_even_when_asked() -> None:
    chunks = await stream({"stream_usage": "never"}, {"stream_options": {"include_usage": True}})
    assert all("usage" not in c for c in chunks)
    assert all(c["choices"] for c in chunks)


async def test_usage_in_choice_and_foreign_finish_reasons() -> None:
    moonshot = {"usage_in_choice": True, "finish_reasons": {"stop": "eos"}}
    assert all("usage" not in ch for c in await stream(moonshot, {}) for ch in [c, *c["choices"]])
    chunks = await stream(moonshot, {"stream_options": {"include_usage": True}})
    last = chunks[-1]["choices"][0]
    assert last["finish_reason"] == "eos"
    assert last["usage"]["prompt_tokens"] > 0
    assert "usage" not in chunks[-1]
    async with run_fake(openai_app(api_key=None, finish_reasons={"stop": "eos"})) as url:
        status, body = await post(url + "/v1/chat/completions", BODY, None)
    assert (status, body["choices"][0]["finish_reason"]) == (200, "eos")


async def test_local_fake_needs_no_key_and_the_default_needs_one() -> None:
    async with run_fake(openai_app(api_key=None)) as url:
        assert (await post(url + "/v1/chat/completions", BODY, None))[0] == 200
    async with run_fake(openai_app()) as url:
        assert (await post(url + "/v1/chat/completions", BODY, None))[0] == 401
