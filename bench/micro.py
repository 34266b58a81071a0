"""Where the gateway's CPU per request goes, measured without load-test noise.

Four tables, every figure CPU microseconds per request, the process pinned to
core 0:

1. each pure step the gateway adds to a non-streaming chat request
   (``timeit``, best of 5), same body and upstream answer as bench/run.py;
2. what the minimal reference proxy (bench/refproxy.py) does instead;
3. the whole ASGI app driven in process, 64 requests at a time, with the
   upstream call answered from memory (no sockets, no uvicorn): the gateway's
   ``App`` against the reference app, and the same conversation sent to the
   gateway as an Anthropic Messages and a Responses API request (translated
   to the same upstream call and back); then a streamed answer (bench/run.py's
   24 events, usage chunk and ``[DONE]``, in one read as an instant stream
   arrives under load) through both;
4. the upstream call alone over 127.0.0.1 to bench/upstream.py (on core 1):
   uniinfer's ``HttpClient.send`` against a bare pooled aiohttp session.

(3) + (4) is what the gateway costs above uvicorn itself; compare with the
end-to-end CPU per request of bench/run.py.

Usage: ``uv run python bench/micro.py [--profile N]`` (``--profile``: also a
cProfile of the in-process gateway App, top N functions by own time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import os
import pstats
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aiohttp
import orjson
import uvloop
from benchlib import fake_upstream
from refproxy import make_app
from run import CHAT_BODY, CONFIG, STREAM_BODY
from upstream import _DONE_EVENT, _USAGE_EVENT, STREAM_CHUNKS
from upstream import CHAT_BODY as UPSTREAM_BODY

from uniinfer.config import parse_config
from uniinfer.gateway import Gateway
from uniinfer.http import HttpClient, HttpRequest, HttpResponse, StreamingResponse, Timeouts
from uniinfer.server import create_app
from uniinfer.stages import RequestContext, Route
from uniinfer.types import ChatRequest
from uniinfer.validation import parse_request

__all__ = ["CannedHttp", "CannedSession", "canned_gateway_app", "main"]


def _us(fn: Callable[[], object], number: int = 20_000) -> float:
    """Best-of-5 microseconds per call of ``fn``."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def _disconnect_timer_cost(number: int = 20_000) -> float:
    """The timer App._run arms per request (and cancels): the disconnect watcher starts only after it."""

    async def body() -> float:
        loop = asyncio.get_running_loop()
        start = time.process_time()
        for _ in range(number):
            loop.call_later(0.05, _noop).cancel()
        return (time.process_time() - start) / number * 1e6

    return uvloop.run(body())


def _noop() -> None:
    return None


def _route_headers() -> Callable[[str, Route | None], object] | None:
    """The server's response-header builder, wherever the (moving) source keeps it."""
    for module, name in (
        ("uniinfer.server.wire", "route_headers"),
        ("uniinfer.server.app", "_route_headers"),
    ):
        found = getattr(importlib.import_module(module), name, None)
        if callable(found):
            return cast(Callable[[str, Route | None], object], found)
    return None


def steps() -> list[tuple[str, float]]:
    config = parse_config(CONFIG.format(key="sk-master", upstream=9, model="bench-model"))
    gateway = Gateway(config)
    target = gateway.router.group("bench-model").members[0].target
    adapter = target.adapter
    raw = orjson.dumps(CHAT_BODY)
    data = orjson.loads(raw)
    chat = parse_request(ChatRequest, data)
    route = Route("bench-model", provider="mock", upstream_model="gpt-bench", attempts=1)
    headers = _route_headers()
    app = create_app(gateway=gateway)
    scope_headers = _HEADERS
    ctx = RequestContext("chat", request_id="x")
    return [
        ("orjson.loads(request body)", _us(lambda: orjson.loads(raw))),
        ("parse_request(ChatRequest)", _us(lambda: parse_request(ChatRequest, data))),
        ("headers dict + request id (App._http)", _us(lambda: (dict(scope_headers), app._new_request_id()))),
        (
            "router.decide + gateway.fit.chat",
            _us(lambda: (gateway.router.decide("bench-model", chat, ctx), gateway.fit.chat(chat, target))),
        ),
        (
            "adapter.chat_request (model_dump + orjson.dumps)",
            _us(lambda: adapter.chat_request(chat, "gpt-bench", stream=False)),
        ),
        (
            "adapter.chat_json (check the answer, forward its bytes)",
            _us(lambda: adapter.chat_json(UPSTREAM_BODY, "gpt-bench")),
        ),
        (
            "RequestContext + Route",
            _us(lambda: (RequestContext("chat", request_id="x"), Route("bench-model"))),
        ),
        (
            "route headers (x-uniinfer-*)",
            _us(lambda: headers("0123456789abcdef", route)) if headers else float("nan"),
        ),
        ("disconnect timer armed and cancelled (App._run)", _disconnect_timer_cost()),
    ]


def reference_steps() -> list[tuple[str, float]]:
    raw = orjson.dumps(CHAT_BODY)

    def request() -> bytes:
        payload = orjson.loads(raw)
        payload["model"] = "gpt-bench"
        return orjson.dumps(payload)

    return [
        ("reference: request loads + dumps", _us(request)),
        ("reference: response loads + dumps", _us(lambda: orjson.dumps(orjson.loads(UPSTREAM_BODY)))),
    ]


#: A whole streamed answer in one read, as an instant stream arrives under load.
STREAM_READ = b"".join([*STREAM_CHUNKS, _USAGE_EVENT, _DONE_EVENT])


class CannedStream:
    """An upstream stream that is one read (the gateway's StreamingResponse, aiohttp's for the reference)."""

    status = 200

    def __init__(self) -> None:
        self.headers = {"content-type": "text/event-stream"}
        self._left = [STREAM_READ]
        self.content = self

    async def read_chunk(self) -> bytes:
        return self._left.pop() if self._left else b""

    readany = read_chunk

    def at_eof(self) -> bool:
        return not self._left


class CannedHttp(HttpClient):
    """The gateway's HTTP client answering every request with the upstream's canned body or stream."""

    async def send(self, request: HttpRequest, timeouts: Timeouts, provider: str) -> HttpResponse:
        return HttpResponse(200, {"content-type": "application/json"}, UPSTREAM_BODY)

    async def open_stream(self, request: HttpRequest, timeouts: Timeouts, provider: str) -> StreamingResponse:
        return cast(StreamingResponse, CannedStream())

    @staticmethod
    def close_stream(stream: StreamingResponse, *, complete: bool) -> None:
        return None


class CannedResponse:
    status = 200

    def __init__(self) -> None:
        self.content = CannedStream()  # read when the request asked for a stream

    async def read(self) -> bytes:
        return UPSTREAM_BODY

    async def __aenter__(self) -> CannedResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class CannedSession:
    """What refproxy.py's app needs of an aiohttp session."""

    def post(self, url: str, **kwargs: Any) -> CannedResponse:
        return CannedResponse()

    async def close(self) -> None:
        return None


async def _drive(
    app: Callable[..., Awaitable[None]],
    headers: list[tuple[bytes, bytes]],
    raw: bytes,
    total: int,
    batch: int,
    path: str = "/v1/chat/completions",
) -> float:
    """CPU microseconds per request of ``total`` ASGI requests, ``batch`` at a time."""
    never: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    statuses: list[int] = []

    def receiver() -> Callable[[], Awaitable[dict[str, Any]]]:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await never  # like uvicorn: nothing more until a disconnect

        return receive

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    started = time.process_time()
    for _ in range(total // batch):
        await asyncio.gather(*(app(scope, receiver(), send) for _ in range(batch)))
    elapsed = time.process_time() - started
    if set(statuses) != {200}:
        raise RuntimeError(f"unexpected statuses {sorted(set(statuses))}")
    return elapsed / len(statuses) * 1e6


async def _lifespan_start(app: Callable[..., Awaitable[None]]) -> asyncio.Task[None]:
    """Run ``app``'s lifespan start-up; the returned task waits for shutdown."""
    messages = iter([{"type": "lifespan.startup"}])

    async def receive() -> dict[str, Any]:
        return next(messages, None) or await asyncio.get_running_loop().create_future()

    async def send(message: dict[str, Any]) -> None:
        return None

    async def lifespan() -> None:
        await app({"type": "lifespan"}, receive, send)

    task = asyncio.create_task(lifespan())
    await asyncio.sleep(0.01)
    return task


_RAW = orjson.dumps(CHAT_BODY)


def _headers(raw: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
        (b"authorization", b"Bearer sk-master"),
    ]


_HEADERS = _headers(_RAW)
_SYSTEM, _USER = (m["content"] for m in CHAT_BODY["messages"])
#: The same conversation in the other API families' shapes, translated to the same upstream call.
_FAMILIES = {
    "/v1/messages": {
        "model": CHAT_BODY["model"],
        "system": _SYSTEM,
        "messages": [{"role": "user", "content": _USER}],
        "temperature": CHAT_BODY["temperature"],
        "max_tokens": CHAT_BODY["max_tokens"],
    },
    "/v1/responses": {
        "model": CHAT_BODY["model"],
        "instructions": _SYSTEM,
        "input": _USER,
        "temperature": CHAT_BODY["temperature"],
        "max_output_tokens": CHAT_BODY["max_tokens"],
    },
}


def canned_gateway_app() -> Callable[..., Awaitable[None]]:
    config = parse_config(CONFIG.format(key="sk-master", upstream=9, model="bench-model"))
    return cast(Callable[..., Awaitable[None]], create_app(gateway=Gateway(config, http=CannedHttp())))


def in_process(total: int = 20_000, batch: int = 64) -> list[tuple[str, float]]:
    """Whole-app CPU per request with canned upstream answers: gateway App vs reference app."""
    raw = _RAW
    gateway_app = canned_gateway_app()

    async def gateway(path: str = "/v1/chat/completions", body: bytes | None = None) -> float:
        if body is None:
            body = orjson.dumps(_FAMILIES[path]) if path in _FAMILIES else raw
        head = _headers(body)
        await _drive(gateway_app, head, body, 2_000, batch, path)  # warm up
        return min([await _drive(gateway_app, head, body, total, batch, path) for _ in range(3)])

    async def reference(body: bytes = raw) -> float:
        app = make_app("http://127.0.0.1:9/v1", "sk-bench", session_factory=CannedSession)
        lifespan = await _lifespan_start(app)
        head = _headers(body)
        await _drive(app, head, body, 2_000, batch)
        try:
            return min([await _drive(app, head, body, total, batch) for _ in range(3)])
        finally:
            lifespan.cancel()

    stream = orjson.dumps(STREAM_BODY)

    return [
        ("gateway App, canned upstream (no sockets)", uvloop.run(gateway())),
        ("reference app, canned upstream (no sockets)", uvloop.run(reference())),
        (
            "gateway App, Anthropic Messages in (`/v1/messages`), same upstream",
            uvloop.run(gateway("/v1/messages")),
        ),
        (
            "gateway App, Responses API in (`/v1/responses`), same upstream",
            uvloop.run(gateway("/v1/responses")),
        ),
        ("gateway App, 24-event stream in one read (no sockets)", uvloop.run(gateway(body=stream))),
        ("reference app, the same stream relayed (no sockets)", uvloop.run(reference(stream))),
    ]


async def _client_loop(send: Callable[[], Awaitable[int]], total: int, concurrency: int) -> float:
    async def worker(n: int) -> None:
        for _ in range(n):
            if await send() != 200:
                raise RuntimeError("upstream answered non-200")

    await asyncio.gather(*(worker(50) for _ in range(concurrency)))  # warm the pool
    started = time.process_time()
    await asyncio.gather(*(worker(total // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / (total // concurrency * concurrency) * 1e6


def http_clients(
    port: int, total: int = 20_000, concurrency: int = 64, rounds: int = 4
) -> list[tuple[str, float]]:
    """CPU per request of the upstream call alone: uniinfer's HttpClient vs a bare aiohttp session.

    The two alternate for ``rounds`` rounds and each keeps its best, so that a
    burst of load from other processes does not favour one of them.
    """
    config = parse_config(CONFIG.format(key="sk-master", upstream=port, model="bench-model"))
    gateway = Gateway(config)
    target = gateway.router.group("bench-model").members[0].target
    chat = parse_request(ChatRequest, CHAT_BODY)
    request = target.adapter.chat_request(chat, target.model, stream=False)
    timeouts = target.adapter.endpoint.timeouts

    async def compare() -> tuple[float, float]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000)) as session:

            async def uniinfer_send() -> int:
                response = await gateway.http.send(request, timeouts, "mock")
                return int(response.status)

            async def bare_send() -> int:
                async with session.post(request.url, data=request.body, headers=request.headers) as resp:
                    await resp.read()
                    return resp.status

            ours, bare = [], []
            try:
                for _ in range(rounds):
                    ours.append(await _client_loop(uniinfer_send, total, concurrency))
                    bare.append(await _client_loop(bare_send, total, concurrency))
            finally:
                await gateway.aclose()
            return min(ours), min(bare)

    ours, bare = uvloop.run(compare())
    return [
        ("uniinfer HttpClient.send", ours),
        ("bare aiohttp session.post + read", bare),
    ]


def _print(title: str, rows: list[tuple[str, float]], total: bool = False) -> None:
    print(f"\n| {title} | CPU µs per request |\n|---|---|")
    for name, us in rows:
        print(f"| {name} | {us:.1f} |")
    if total:
        print(f"| **total** | **{sum(us for _, us in rows):.1f}** |")


def profile_app(top: int, total: int = 20_000, batch: int = 64) -> None:
    """cProfile of the gateway App in process (canned upstream): where its own time goes."""
    app = canned_gateway_app()
    profiler = cProfile.Profile()

    async def drive() -> None:
        await _drive(app, _HEADERS, _RAW, 2_000, batch)
        profiler.enable()
        await _drive(app, _HEADERS, _RAW, total, batch)
        profiler.disable()

    uvloop.run(drive())
    stats = pstats.Stats(profiler)
    print(f"\ncProfile of {total} requests through the gateway App (canned upstream), by own time:")
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profile", type=int, metavar="N", default=0, help="also print the top N of a cProfile"
    )
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    if args.profile:
        profile_app(args.profile)
    _print("gateway step (timeit, best of 5)", steps(), total=True)
    _print("reference proxy step", reference_steps(), total=True)
    _print("whole app in process (best of 3 x 20k requests, 64 concurrent)", in_process())
    upstream = fake_upstream()
    port = upstream.port
    try:
        upstream.start()
        upstream.wait_ready()
        _print(
            "upstream call over 127.0.0.1 (best of 4 alternating rounds x 20k requests, 64 concurrent)",
            http_clients(port),
        )
    finally:
        upstream.stop()


if __name__ == "__main__":
    main()
