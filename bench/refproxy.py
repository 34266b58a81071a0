"""The "minimal proxy" reference: plain ASGI + orjson + aiohttp on uvicorn.

This is the floor the gateway is compared against on the same machine, in the
same run: it does the least a proxy must do for ``POST /v1/chat/completions``
(read the body, parse it, substitute the upstream model, send it through one
pooled aiohttp session, parse the answer, serialize it back; for
``"stream": true`` relay the upstream's SSE bytes as they arrive) and nothing
else: no validation, routing, auth, stages, response model, or event
framing. The issue's reference figures (about 3,900 req/s and 0.26 ms CPU
per request on one core) come from a program of this shape.

Usage: ``python bench/refproxy.py --port 9300 --upstream http://127.0.0.1:9100/v1``.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import uvicorn

__all__ = ["make_app"]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream")]


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": body})


def _pooled_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))


def make_app(upstream: str, api_key: str, session_factory: Callable[[], Any] = _pooled_session) -> ASGIApp:
    """The ASGI app proxying chat completions to ``upstream`` (a ``.../v1`` base URL).

    ``session_factory`` builds the client session at lifespan start-up
    (bench/micro.py passes one answering from memory).
    """
    url = upstream.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    state: dict[str, Any] = {}

    async def lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                state["session"] = session_factory()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await state["session"].close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["path"] == "/health":
            await _respond(send, 200, b'{"status":"ok"}')
            return
        if scope["method"] != "POST" or scope["path"] != "/v1/chat/completions":
            await _respond(send, 404, b"{}")
            return
        payload = orjson.loads(await _read_body(receive))
        payload["model"] = _UPSTREAM_MODELS.get(payload.get("model"), "gpt-bench")
        async with state["session"].post(url, data=orjson.dumps(payload), headers=headers) as resp:
            if payload.get("stream") and resp.status == 200:
                await send({"type": "http.response.start", "status": 200, "headers": _SSE})
                while data := await resp.content.readany():
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return
            answer = orjson.loads(await resp.read())
            await _respond(send, resp.status, orjson.dumps(answer))

    return app


#: The gateway's model groups in bench/run.py, as the reference maps them.
_UPSTREAM_MODELS = {"bench-slow": "gpt-slow", "bench-paced": "gpt-paced"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9300)
    parser.add_argument("--upstream", default="http://127.0.0.1:9100/v1")
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.upstream, "sk-bench"),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        server_header=False,
    )


if __name__ == "__main__":
    main()
