"""How an instant stream arrives: the reads per stream a pooled aiohttp client sees.

The fake upstream (bench/upstream.py, on core 1) writes each of a stream's 24
events in its own chunk at once; what a relay reading it gets depends on how
busy the relay is. This client (on core 0, as the gateway would be) runs
``--concurrency`` streams at a time, spends ``--work-us`` of CPU after each read
(a stand-in for a relay's work per read), and counts the reads of each stream.
Bounded: ``--streams`` per connection. Only 127.0.0.1.

Usage: ``uv run python bench/reads.py [--concurrency 16] [--streams 100] [--work-us 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter

import aiohttp
import orjson
import uvloop
from benchlib import fake_upstream
from run import STREAM_BODY

__all__ = ["main"]


async def _count(url: str, concurrency: int, streams: int, work: float) -> Counter[int]:
    body = orjson.dumps({**STREAM_BODY, "model": "gpt-bench"})
    counts: Counter[int] = Counter()

    async def worker(session: aiohttp.ClientSession) -> None:
        for _ in range(streams):
            async with session.post(url, data=body, headers={"content-type": "application/json"}) as resp:
                reads = 0
                while await resp.content.readany():
                    reads += 1
                    until = time.perf_counter() + work
                    while time.perf_counter() < until:
                        pass
                counts[reads] += 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--streams", type=int, default=100, help="streams per connection")
    p.add_argument("--work-us", type=float, default=20.0, help="CPU spent after each read")
    a = p.parse_args()
    upstream = fake_upstream()
    port = upstream.port
    try:
        upstream.start()
        upstream.wait_ready()
        os.sched_setaffinity(0, {0})
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        counts = uvloop.run(_count(url, a.concurrency, a.streams, a.work_us / 1e6))
    finally:
        upstream.stop()
    total = sum(counts.values())
    print(f"reads per stream at c={a.concurrency}, {a.work_us:g} µs of work per read, {total} streams:")
    for reads, n in sorted(counts.items()):
        print(f"  {reads:>3} reads: {n:>6} streams ({100 * n / total:.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
