"""A request's deadline bounds a stream's wait for its answer, not the answer once it flows.

Real time here (aiohttp's timers do not read the router's clock): an upstream that paces
its events further apart than the request's deadline, and one whose answer never starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.conftest import make_config
from tests.fakes.common import run_fake
from uniinfer.errors import ProviderTimeoutError
from uniinfer.gateway import Gateway
from uniinfer.stages import RequestContext
from uniinfer.types import ChatRequest

#: The request's deadline, and the pause between the paced upstream's events: longer than it.
DEADLINE = 0.3
PAUSE = 0.6


def _chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def _paced(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if body["model"] == "silent":  # no answer at all, for longer than any deadline here
        await asyncio.sleep(5)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    if body["model"] == "late":  # the head at once, then keep-alive comments (a long prefill)
        for _ in range(10):
            await resp.write(b": processing\n\n")
            await asyncio.sleep(PAUSE / 2)
    for word in ("slow ", "and ", "steady"):
        await resp.write(_chunk(word))
        await asyncio.sleep(PAUSE)
    await resp.write(_chunk(None, "stop") + b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _paced)
    async with run_fake(app) as base:
        gw = Gateway(
            make_config(
                f"providers:\n  up: {{type: openai_compatible, base_url: '{base}/v1',"
                " timeout: {connect: 5, read: 5, total: 30}}\n"
                f"routing:\n  retry: {{max_retries: 0, deadline_seconds: {DEADLINE}}}\n"
            )
        )
        try:
            yield gw
        finally:
            assert gw.http.busy_connections == 0, "a connection leaked"
            await gw.aclose()


def _request(model: str) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    )


async def test_a_started_stream_outlives_the_deadline_between_its_events(gateway: Gateway) -> None:
    # each pause is longer than the whole deadline but well inside the provider's timeout.read:
    # the answer is under way, so it is read to its end (it was cut at its first pause,
    # its read timeout cut to the deadline for its whole life)
    stream = await gateway.stream(_request("up/paced"), RequestContext("chat"))
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "slow and steady"


async def test_a_stream_whose_answer_never_starts_ends_at_the_deadline(gateway: Gateway) -> None:
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match=r"first event did not come within what was left"):
        await gateway.stream(_request("up/silent"), RequestContext("chat"))
    assert time.monotonic() - started < 3  # the deadline's 0.3 s, not timeout.read's 5 s


async def test_a_stream_whose_first_event_never_comes_ends_at_the_deadline(gateway: Gateway) -> None:
    # its head came at once, then only comments: the deadline bounds the wait for the answer
    # to start (while the request can still fall back), not for the head alone
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match=r"first event did not come within what was left"):
        await gateway.stream(_request("up/late"), RequestContext("chat"))
    assert time.monotonic() - started < 2  # the deadline's 0.3 s, not the 3 s of comments


async def test_the_head_timer_says_so_and_only_it() -> None:
    """aiohttp's own timeouts (here: no connection within timeout.connect) are TimeoutErrors
    too: they keep their own words under a stream's head timer (they blamed the deadline)."""
    import socket

    from uniinfer.http import HttpClient, Timeouts
    from uniinfer.streaming import open_chat_stream

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):  # a full accept backlog: later connections hang
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    http = HttpClient(proxies={})
    gateway = Gateway(
        make_config(
            f"providers:\n  up: {{type: openai_compatible, base_url: 'http://127.0.0.1:{port}/v1'}}\n"
        )
    )
    adapter = gateway.router.group("up/m").members[0].target.adapter

    async def done(ctx: RequestContext) -> None:
        pass

    try:
        with pytest.raises(ProviderTimeoutError, match=r"timeout\.connect"):
            await open_chat_stream(
                http, adapter, _request("up/m"), "m", RequestContext("chat"), done,
                Timeouts(connect=0.3, read=5.0, total=10.0, head=3.0),
            )  # fmt: skip
    finally:
        await gateway.aclose()
        await http.aclose()
        server.close()
        for filler in fillers:
            filler.close()
