"""What every fake provider shares: failure modes by model name, awkward stream
splitting, and running an aiohttp app on 127.0.0.1.

Model names that trigger behaviour (the rest of the name is free):

- ``slow``         wait 2 s (``slow-0.3`` waits 0.3 s) before answering
- ``error-429``    429 with ``Retry-After: 7`` in the provider's error shape
- ``error-NNN``    that status with the provider's error body
- ``drop``         close the connection without answering
- ``cut``          (streams) send a few events, then cut the connection
- ``stall``        (streams) send a few events, then nothing more (the client must hang up)
- ``whole``        (streams) write each event whole, a moment apart, as real providers flush
                   them (the default splits events at awkward bytes)
- ``tool``         answer with a tool call to the first declared tool
- anything else    echo the last user text: ``"echo: <text>"``
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web
from aiohttp.test_utils import TestServer

__all__ = ["Mode", "abort", "mode_of", "run_fake", "stream_response", "write_awkward"]

#: Split sizes cycled when streaming: small and odd so that every framer sees
#: events, lines and multi-byte UTF-8 characters cut in the middle.
SPLITS = (1, 7, 2, 13, 3, 31, 5)


@dataclass(frozen=True)
class Mode:
    delay: float = 0.0
    status: int | None = None
    drop: bool = False
    cut: bool = False
    #: Cut the stream after its headers and a keep-alive comment, before any event.
    cut_first: bool = False
    #: Send half the events, then nothing until the client goes away.
    stall: bool = False
    #: Write each event whole, a moment apart (one event a read, as providers stream tokens).
    whole: bool = False
    tool: bool = False


def mode_of(model: str) -> Mode:
    name = model.rsplit("/", 1)[-1]
    if name.startswith("slow"):
        _, _, secs = name.partition("-")
        try:
            return Mode(delay=float(secs) if secs else 2.0)
        except ValueError:
            return Mode(delay=2.0)
    if name.startswith("error-"):
        try:
            return Mode(status=int(name.split("-")[1]))
        except ValueError:
            return Mode(status=500)
    if name.startswith("drop"):
        return Mode(drop=True)
    if name.startswith("cutfirst"):
        return Mode(cut_first=True)
    if name.startswith("cut"):
        return Mode(cut=True)
    if name.startswith("stall"):
        return Mode(stall=True)
    if name.startswith("whole"):
        return Mode(whole=True)
    if name.startswith("tool"):
        return Mode(tool=True)
    return Mode()


def abort(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer (a dropped or crashed upstream)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError  # aiohttp ends the handler quietly


async def write_awkward(resp: web.StreamResponse, data: bytes) -> None:
    """Write ``data`` in odd-sized pieces, flushing each, so clients see real splits."""
    sizes = itertools.cycle(SPLITS)
    pos = 0
    while pos < len(data):
        size = next(sizes)
        await resp.write(data[pos : pos + size])
        pos += size
        await asyncio.sleep(0)


async def stream_response(
    request: web.Request,
    events: list[bytes],
    *,
    content_type: str = "text/event-stream",
    cut: bool = False,
    cut_first: bool = False,
    stall: bool = False,
    whole: bool = False,
) -> web.StreamResponse:
    """Stream pre-framed events awkwardly; with ``cut``, abort half-way through.

    With ``cut_first``, abort after a keep-alive comment (as OpenRouter sends
    while a model starts), before any event: a 200 that fails before its first chunk.
    """
    resp = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
    await resp.prepare(request)
    if cut_first:
        await resp.write(b": PROCESSING\n\n")
        await asyncio.sleep(0.01)
        abort(request)
    if cut or stall:
        for event in events[: max(1, len(events) // 2)]:
            await write_awkward(resp, event)
        await asyncio.sleep(3600 if stall else 0.01)  # stalled: until the client hangs up
        abort(request)
    for event in events:
        if whole:
            await resp.write(event)
            await asyncio.sleep(0.002)  # long enough for the client to read it alone
        else:
            await write_awkward(resp, event)
    await resp.write_eof()
    return resp


@asynccontextmanager
async def run_fake(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (free port) and yield its base URL."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def last_user_text(messages: list[dict[str, object]]) -> str:
    """Text of the last user message (OpenAI/Anthropic shapes: string or parts)."""
    for msg in reversed(messages):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(
                str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
            )
    return ""


@dataclass(frozen=True)
class FakeProvider:
    """How the contract suite runs one provider type against its fake.

    Each fake module exposes ``def fake_provider() -> FakeProvider``; the suite
    starts ``app()``, configures a provider of ``type`` with
    ``base_url = <fake url> + base_path``, ``api_key`` and ``options(<fake url>)``,
    and exercises every capability the registry declares for that type.
    """

    type: str
    app: Callable[[], web.Application]
    base_path: str = ""
    api_key: str | None = "sk-fake-key-0123456789"
    #: Extra ``providers.<name>.options`` given the fake's base URL.
    options: Callable[[str], dict[str, object]] = lambda url: {}
    #: A model the fake answers normally (failure modes are prefixes: "tool-", "error-429"...).
    chat_model: str = "model"
    embed_model: str = "embed-model"


def chaos(plan: dict[str, list[int]]) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """An aiohttp middleware that makes a fake fail on a schedule, by model name.

    ``plan[model]`` is a list of statuses consumed one per request for that
    model (500 -> server error, 429 -> rate limit with ``Retry-After: 1``, -429 ->
    one without it); when it is empty the fake answers normally. Tests mutate
    ``plan`` to break and heal a deployment while the gateway runs.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        model = ""
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                model = str(body.get("model", ""))
        statuses = plan.get(model)
        if statuses:
            status = statuses.pop(0)
            headers = {"Retry-After": "1"} if status == 429 else {}
            status = abs(status)
            error = {"message": f"chaos: {status}", "type": "server_error" if status >= 500 else "requests"}
            return web.json_response({"error": error}, status=status, headers=headers)
        return await handler(request)

    return middleware
