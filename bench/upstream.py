"""A minimal, fast fake OpenAI upstream for benchmarks.

One uvloop event loop, a raw :class:`asyncio.Protocol` per connection and the
httptools request parser: no framework, so the upstream costs a few tens of
microseconds per request and is never the bottleneck of a gateway benchmark.

Routes:

- ``POST /v1/chat/completions``: a fixed, realistic ``chat.completion`` JSON
  body; with ``"stream": true`` an SSE stream of 20 content chunks, a final
  chunk with ``finish_reason``, a usage chunk (when the request asks for
  ``stream_options.include_usage``) and ``data: [DONE]``, chunked-encoded.
- ``GET /health``: ``{"status":"ok"}``.
- anything else: 404.

The model name in the request picks how the "model" behaves, so one process
serves every scenario of bench/run.py:

- a name ending in ``-slow`` waits ``--slow-ms`` (default 50) before it
  answers (or starts its stream): a model's think time;
- a name ending in ``-paced`` streams its events ``--event-interval-ms``
  (default 10) apart, as a model generating about 100 tokens a second;
- any other name answers at once (``--delay-ms`` adds a wait to all of them).

Usage: ``python bench/upstream.py --port 9100``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
from typing import cast

import httptools
import orjson
import uvloop

__all__ = ["CHAT_BODY", "STREAM_CHUNKS", "main"]

_ID = "chatcmpl-bench0123456789abcdefABCDEF"
_CREATED = 1_735_689_600
_MODEL = "gpt-bench-2024-08-06"
_FINGERPRINT = "fp_bench000001"
_ANSWER = (
    "Sure! Here is a short answer to your question. A load balancer spreads incoming requests "
    "across several servers so that no single machine is overwhelmed, which improves both "
    "throughput and availability. Common strategies are round robin, least connections and "
    "consistent hashing."
)
_ANSWER_WORDS = _ANSWER.split()
_USAGE = {
    "prompt_tokens": 42,
    "completion_tokens": len(_ANSWER_WORDS),
    "total_tokens": 42 + len(_ANSWER_WORDS),
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
#: Number of content chunks in a streamed answer.
STREAM_CONTENT_CHUNKS = 20


def _chat_body() -> bytes:
    return orjson.dumps(
        {
            "id": _ID,
            "object": "chat.completion",
            "created": _CREATED,
            "model": _MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": " ".join(_ANSWER_WORDS),
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _USAGE,
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
        }
    )


def _chunk(delta: dict[str, object], finish: str | None, usage: object = None, empty: bool = False) -> bytes:
    choices = [] if empty else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    payload = {
        "id": _ID,
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": _MODEL,
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
        "choices": choices,
        "usage": usage,
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _stream_events() -> list[bytes]:
    """The SSE events of one streamed answer (without the usage chunk and [DONE])."""
    per = max(1, len(_ANSWER_WORDS) // STREAM_CONTENT_CHUNKS)
    pieces = [
        " ".join(_ANSWER_WORDS[i * per : (i + 1) * per if i < STREAM_CONTENT_CHUNKS - 1 else None])
        for i in range(STREAM_CONTENT_CHUNKS)
    ]
    events = [_chunk({"role": "assistant", "content": "", "refusal": None}, None)]
    events += [_chunk({"content": (" " if i else "") + p}, None) for i, p in enumerate(pieces)]
    events.append(_chunk({}, "stop"))
    return events


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


CHAT_BODY = _chat_body()
STREAM_CHUNKS = _stream_events()
_USAGE_EVENT = _chunk({}, None, usage=_USAGE, empty=True)
_DONE_EVENT = b"data: [DONE]\n\n"

_JSON_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nopenai-processing-ms: 1\r\n"
    b"x-request-id: req_bench\r\ncontent-length: %d\r\n\r\n"
)
_CHAT_RESPONSE = _JSON_HEAD % len(CHAT_BODY) + CHAT_BODY
_HEALTH_BODY = b'{"status":"ok"}'
_HEALTH_RESPONSE = _JSON_HEAD % len(_HEALTH_BODY) + _HEALTH_BODY
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\nx-request-id: req_bench\r\ntransfer-encoding: chunked\r\n\r\n"
)
_SSE_EVENTS = [_http_chunk(e) for e in STREAM_CHUNKS]
_SSE_TAIL_USAGE = _http_chunk(_USAGE_EVENT) + _http_chunk(_DONE_EVENT) + b"0\r\n\r\n"
_SSE_TAIL = _http_chunk(_DONE_EVENT) + b"0\r\n\r\n"


#: Seconds every chat answer waits before it is written (``--delay-ms``): a model's think time.
DELAY = 0.0
#: Seconds a ``*-slow`` model waits before it answers (``--slow-ms``).
SLOW = 0.05
#: Seconds between the events of a ``*-paced`` model's stream (``--event-interval-ms``).
INTERVAL = 0.01


class _Upstream(asyncio.Protocol):
    """One client connection: parse requests, write canned responses."""

    __slots__ = ("_body", "_parser", "_path", "_transport")

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._path = b""
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            assert self._transport is not None
            self._transport.close()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self._path = url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        transport = self._transport
        assert transport is not None
        method = self._parser.get_method()
        body = b"".join(self._body)
        self._body = []
        if method == b"POST" and self._path == b"/v1/chat/completions":
            compact = body.replace(b" ", b"")
            delay = DELAY + (SLOW if b'-slow"' in compact else 0.0)
            if b'"stream":true' in compact:
                usage = b'"include_usage":true' in compact
                interval = INTERVAL if b'-paced"' in compact else 0.0
                if delay:
                    asyncio.get_running_loop().call_later(delay, self._stream, transport, usage, interval)
                else:
                    self._stream(transport, usage, interval)
            elif delay:
                asyncio.get_running_loop().call_later(delay, _write_if_open, transport, _CHAT_RESPONSE)
            else:
                transport.write(_CHAT_RESPONSE)
        elif method == b"GET" and self._path == b"/health":
            transport.write(_HEALTH_RESPONSE)
        else:
            transport.write(_NOT_FOUND)
        if not self._parser.should_keep_alive():
            transport.close()

    @staticmethod
    def _stream(transport: asyncio.Transport, usage: bool, interval: float) -> None:
        # One write per event, as a real provider's token stream arrives.
        if transport.is_closing():
            return
        tail = _SSE_TAIL_USAGE if usage else _SSE_TAIL
        if interval:
            loop = asyncio.get_running_loop()
            transport.write(_SSE_HEAD + _SSE_EVENTS[0])
            for i, event in enumerate([*_SSE_EVENTS[1:], tail], start=1):
                loop.call_later(i * interval, _write_if_open, transport, event)
            return
        transport.write(_SSE_HEAD)
        for event in _SSE_EVENTS:
            transport.write(event)
        transport.write(tail)


def _write_if_open(transport: asyncio.Transport, data: bytes) -> None:
    if not transport.is_closing():
        transport.write(data)


async def _serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Upstream, host, port, backlog=2048, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="wait this long before each chat answer")
    parser.add_argument("--slow-ms", type=float, default=50.0, help="how long a *-slow model waits")
    parser.add_argument(
        "--event-interval-ms", type=float, default=10.0, help="time between a *-paced model's events"
    )
    args = parser.parse_args()
    global DELAY, SLOW, INTERVAL
    DELAY = args.delay_ms / 1000.0
    SLOW = args.slow_ms / 1000.0
    INTERVAL = args.event_interval_ms / 1000.0
    uvloop.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
