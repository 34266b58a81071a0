"""A small closed-loop HTTP/1.1 load generator (the fallback when ``wrk`` is absent).

``C`` keep-alive connections each send the same POST, wait for the whole
response, record its latency and send the next, until ``--requests`` have
been sent or ``--duration`` seconds have passed, whichever comes first. It is
a raw :class:`asyncio.Protocol` with the httptools response parser on uvloop
(the aiohttp client costs several times more CPU per request, which would make
the load generator, not the server, the thing being measured).

With ``--stream`` it also records time to first body byte (TTFB) and counts
SSE events (``\\n\\n``-terminated) per response.

``--stagger S`` spreads the connections' first requests evenly over ``S``
seconds. Without it all ``C`` start at once, and responses that all take the
same time (a paced stream of fixed length) keep them in step for the whole
run: every request starts in a burst of ``C``, and its latency includes
waiting for the other ``C - 1``. Independent clients do not move in step.

Only 127.0.0.1 / localhost URLs are accepted. Prints one JSON object.

Usage::

    python bench/loadgen.py --url http://127.0.0.1:9100/v1/chat/completions \\
        --body-file body.json --concurrency 64 --duration 10 --requests 200000
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import httptools
import orjson
import uvloop

__all__ = ["LoadStats", "percentile", "run_load"]

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})


@dataclass
class LoadStats:
    """What one load run observed (latencies in seconds)."""

    latencies: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0
    events: int = 0
    sent: int = 0


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (0.0 for an empty list)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, round(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class _Client(asyncio.Protocol):
    """One keep-alive connection; ``request()`` sends and awaits a full response."""

    def __init__(self, stats: LoadStats) -> None:
        self._stats = stats
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._done: asyncio.Future[int] | None = None
        self._first_body: float = 0.0
        self._tail = b""
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError("connection closed mid-response"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._done is not None and not self._done.done():
                self._done.set_exception(exc)

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        if not self._first_body:
            self._first_body = time.perf_counter()
        joined = self._tail + body
        self._stats.events += joined.count(b"\n\n")
        self._tail = joined[-1:]

    def on_message_complete(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(self._parser.get_status_code())

    async def request(self, payload: bytes) -> tuple[int, float]:
        """Send ``payload``; return the status and the time of the first body byte."""
        assert self._transport is not None
        self._done = asyncio.get_running_loop().create_future()
        self._first_body = 0.0
        self._tail = b""
        self._transport.write(payload)
        status = await self._done
        return status, self._first_body

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _payload(url: str, body: bytes, auth: str | None) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host not in _LOCAL_HOSTS:
        raise SystemExit(f"refusing to send load to {host!r}: only 127.0.0.1 is allowed")
    port = parts.port or 80
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if auth:
        lines.append(f"Authorization: Bearer {auth}")
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _worker(
    host: str, port: int, payload: bytes, stats: LoadStats, budget: list[int], deadline: float, delay: float
) -> None:
    loop = asyncio.get_running_loop()
    client: _Client | None = None
    if delay:
        await asyncio.sleep(delay)
    while budget[0] > 0 and time.perf_counter() < deadline:
        budget[0] -= 1
        if client is None:
            _, client = await loop.create_connection(lambda: _Client(stats), host, port)
        started = time.perf_counter()
        stats.sent += 1
        try:
            status, first = await asyncio.wait_for(client.request(payload), timeout=30)
        except (ConnectionError, TimeoutError, httptools.HttpParserError):
            stats.transport_errors += 1
            client.close()
            client = None
            continue
        now = time.perf_counter()
        stats.latencies.append(now - started)
        if first:
            stats.ttfb.append(first - started)
        stats.statuses[status] = stats.statuses.get(status, 0) + 1
    if client is not None:
        client.close()


async def run_load(
    url: str,
    body: bytes,
    *,
    concurrency: int,
    requests: int,
    duration: float,
    auth: str | None = None,
    stagger: float = 0.0,
) -> tuple[LoadStats, float]:
    """Run the closed loop; return the stats and the elapsed wall time in seconds."""
    host, port, payload = _payload(url, body, auth)
    stats = LoadStats()
    budget = [requests]
    started = time.perf_counter()
    deadline = started + duration
    workers = [
        _worker(host, port, payload, stats, budget, deadline, i * stagger / concurrency)
        for i in range(concurrency)
    ]
    await asyncio.gather(*workers)
    return stats, time.perf_counter() - started


def summarize(stats: LoadStats, elapsed: float) -> dict[str, object]:
    """The JSON summary printed by the CLI (latencies in microseconds)."""
    lat, ttfb = stats.latencies, stats.ttfb
    done = len(lat)
    non_200 = sum(n for status, n in stats.statuses.items() if status != 200)
    return {
        "requests": done,
        "sent": stats.sent,
        "duration_us": round(elapsed * 1e6),
        "errors": {"status": non_200, "transport": stats.transport_errors},
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "latency_us": {
            "mean": round(sum(lat) / done * 1e6, 1) if done else 0.0,
            "p50": round(percentile(lat, 50) * 1e6),
            "p90": round(percentile(lat, 90) * 1e6),
            "p99": round(percentile(lat, 99) * 1e6),
            "max": round(max(lat, default=0.0) * 1e6),
        },
        "ttfb_us": {"p50": round(percentile(ttfb, 50) * 1e6), "p99": round(percentile(ttfb, 99) * 1e6)},
        "events": stats.events,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--auth", default=None, help="bearer token")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--requests", type=int, default=100_000, help="upper bound on requests sent")
    parser.add_argument("--duration", type=float, default=10.0, help="upper bound in seconds")
    parser.add_argument("--stagger", type=float, default=0.0, help="start the connections over S seconds")
    args = parser.parse_args()
    body = args.body_file.read_bytes()
    stats, elapsed = uvloop.run(
        run_load(
            args.url,
            body,
            concurrency=args.concurrency,
            requests=args.requests,
            duration=args.duration,
            auth=args.auth,
            stagger=args.stagger,
        )
    )
    sys.stdout.write("BENCH_JSON " + orjson.dumps(summarize(stats, elapsed)).decode() + "\n")


if __name__ == "__main__":
    main()
