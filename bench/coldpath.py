"""Why a request costs more when it comes alone: the upstream call after idle time.

At concurrency 1, and for streams whose events arrive 10 ms apart, the
gateway's core idles between pieces of work, and every request then runs
"cold" (caches and branch predictors hold someone else's state). This probe
separates that from the gateway's own code. The fake upstream
(bench/upstream.py) runs on core 1, this process on core 0; each case runs
``--samples`` times and prints median wall and CPU times:

1. time to the response headers of a paced stream (its events 0.5 ms
   apart here), through an aiohttp session against a raw
   ``asyncio.Protocol`` writing the same request bytes (the least any
   asyncio client can do), right after the previous stream ended and after
   10 ms more of idling;
2. a whole JSON request through aiohttp, back to back, after sleeping 5 ms
   and after spinning 5 ms in a tight loop (busy, but touching no other
   code): if the spin restores the back-to-back time, the idle state is the
   cause; if not, it is the state the core lost.

Usage: ``uv run python bench/coldpath.py [--samples 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import aiohttp
import orjson
import uvloop
from benchlib import ROOT, Server, free_port
from run import GATEWAY_CORE, UPSTREAM_CORE

__all__ = ["main"]

#: A paced stream's events this far apart here, so that a stream ends quickly.
EVENT_INTERVAL_MS = 0.5


class _HeadersProtocol(asyncio.Protocol):
    """Writes a request; resolves ``headers`` at the end of the response head, ``done`` at the body's end."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.headers: asyncio.Future[None] | None = None
        self.done: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.headers is not None and not self.headers.done() and b"\r\n\r\n" in self.buffer:
            self.headers.set_result(None)
        if self.done is not None and not self.done.done() and self.buffer.endswith(b"0\r\n\r\n"):
            self.done.set_result(None)

    async def exchange(self, request: bytes) -> tuple[float, float]:
        """Wall and CPU seconds to the response head; returns after the whole (chunked) body."""
        loop = asyncio.get_running_loop()
        self.buffer = b""
        self.headers, self.done = loop.create_future(), loop.create_future()
        assert self.transport is not None
        start, cpu = time.perf_counter(), time.process_time()
        self.transport.write(request)
        await self.headers
        took = time.perf_counter() - start, time.process_time() - cpu
        await self.done
        return took


async def _median_ms(samples: int, once: Callable[[], Awaitable[tuple[float, float]]]) -> tuple[float, float]:
    runs = [await once() for _ in range(samples)]
    return 1e3 * statistics.median(w for w, _ in runs), 1e3 * statistics.median(c for _, c in runs)


async def probe(port: int, samples: int) -> None:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    stream_body = orjson.dumps(
        {"model": "gpt-paced", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    )
    json_body = orjson.dumps({"model": "gpt-bench", "messages": [{"role": "user", "content": "hi"}]})
    headers = {"Content-Type": "application/json"}
    raw_request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(stream_body)}\r\n\r\n"
    ).encode() + stream_body
    loop = asyncio.get_running_loop()
    _, raw = await loop.create_connection(_HeadersProtocol, "127.0.0.1", port)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

        async def aiohttp_headers(gap: float) -> tuple[float, float]:
            await asyncio.sleep(gap)
            start, cpu = time.perf_counter(), time.process_time()
            async with session.post(url, data=stream_body, headers=headers) as resp:
                took = time.perf_counter() - start, time.process_time() - cpu
                await resp.read()
            return took

        async def raw_headers(gap: float) -> tuple[float, float]:
            await asyncio.sleep(gap)
            return await raw.exchange(raw_request)

        print("1. time to a paced stream's response headers (median ms, wall / CPU):\n")
        print("| client | right after the previous stream | after 10 ms more idle |\n|---|---|---|")
        for name, fn in (("aiohttp session", aiohttp_headers), ("raw asyncio.Protocol", raw_headers)):
            cells = []
            for gap in (0.0, 0.01):
                wall, cpu = await _median_ms(samples, lambda fn=fn, gap=gap: fn(gap))
                cells.append(f"{wall:.3f} / {cpu:.3f}")
            print(f"| {name} | {' | '.join(cells)} |")

        async def json_request(before: str) -> tuple[float, float]:
            if before == "sleep":
                await asyncio.sleep(0.005)
            elif before == "spin":
                end = time.perf_counter() + 0.005
                while time.perf_counter() < end:
                    pass
            start, cpu = time.perf_counter(), time.process_time()
            async with session.post(url, data=json_body, headers=headers) as resp:
                await resp.read()
            return time.perf_counter() - start, time.process_time() - cpu

        print("\n2. a whole JSON request through aiohttp (median ms):\n")
        print("| before each request | wall | CPU |\n|---|---|---|")
        for before, label in (
            ("none", "nothing (back to back)"),
            ("sleep", "5 ms asleep"),
            ("spin", "5 ms spinning"),
        ):
            wall, cpu = await _median_ms(samples, lambda before=before: json_request(before))
            print(f"| {label} | {wall:.3f} | {cpu:.3f} |")
    assert raw.transport is not None
    raw.transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="uniinfer-coldpath-") as tmp:
        port = free_port()
        upstream = Server(
            "upstream",
            [sys.executable, str(ROOT / "bench/upstream.py"), "--port", str(port),
             "--event-interval-ms", str(EVENT_INTERVAL_MS)],
            UPSTREAM_CORE, port, Path(tmp) / "upstream.log",
        )  # fmt: skip
        try:
            upstream.start()
            upstream.wait_ready()
            os.sched_setaffinity(0, {GATEWAY_CORE})
            uvloop.run(probe(port, args.samples))
        finally:
            upstream.stop()


if __name__ == "__main__":
    main()
