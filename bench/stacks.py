"""Which server and HTTP client stack a proxy should use: measured, not assumed.

Runs the minimal proxy of bench/refproxy.py (read, parse, substitute the
model, forward, parse the answer, serialize it back; for ``"stream": true``
relay the upstream's SSE bytes as they arrive) with each candidate client and
server, all at once on core 0, and loads them one at a time in alternating
rounds (this VM's speed drifts by tens of percent within minutes, so only
interleaved rounds compare fairly). Reports each stack's CPU per request (the
median over rounds, and its ratio to aiohttp on uvicorn, median of the
per-round ratios), for JSON answers and for 24-event streams.

The candidates that are not uniinfer dependencies come in for the run only::

    uv run --with pyreqwest==0.15.1 --with granian==2.8.9 --with aiosonic==1.3.3 --with httpx==0.28.1 \\
        python bench/stacks.py [--rounds 4] [--seconds 3] [--concurrency 16]

A candidate whose package is missing is skipped with a note. ``--gateway``
adds ``uniinfer serve`` (auth, routing and usage accounting on, as in
bench/run.py) as one more row, so the gateway's cost can be read against the
bare stack it is built on, measured in the same rounds. Results and
conclusions: docs/benchmarks.md ("Choosing the stack").
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import orjson

__all__ = ["main", "make_app"]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream")]


class Upstream(Protocol):
    """What the proxy needs of an HTTP client: one POST read whole, one read as it arrives."""

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]: ...

    def stream(self, url: str, body: bytes, headers: dict[str, str]) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class AiohttpUpstream:
    def __init__(self) -> None:
        import aiohttp

        self._s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        async with self._s.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.read()

    async def stream(self, url: str, body: bytes, headers: dict[str, str]) -> AsyncIterator[bytes]:
        async with self._s.post(url, data=body, headers=headers) as resp:
            while data := await resp.content.readany():
                yield data

    async def aclose(self) -> None:
        await self._s.close()


class PyreqwestUpstream:
    """reqwest (Rust, hyper) on its own Tokio thread; Python sees one wake-up per answer or chunk."""

    def __init__(self) -> None:
        from pyreqwest.client import ClientBuilder

        self._c = ClientBuilder().follow_redirects(False).build()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        resp = await self._c.post(url).headers(headers).body_bytes(body).build().send()
        return resp.status, bytes(await resp.bytes())

    async def stream(self, url: str, body: bytes, headers: dict[str, str]) -> AsyncIterator[bytes]:
        async with self._c.post(url).headers(headers).body_bytes(body).build_streamed() as resp:
            reader = resp.body_reader
            while (data := await reader.read_chunk()) is not None:
                yield bytes(data)

    async def aclose(self) -> None:
        await self._c.close()


class AiosonicUpstream:
    def __init__(self) -> None:
        import aiosonic

        self._c = aiosonic.HTTPClient()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        resp = await self._c.post(url, data=body, headers=headers)
        return resp.status_code, await resp.content()

    async def stream(self, url: str, body: bytes, headers: dict[str, str]) -> AsyncIterator[bytes]:
        resp = await self._c.post(url, data=body, headers=headers)
        async for data in resp.read_chunks():
            yield data

    async def aclose(self) -> None:
        await self._c.shutdown()


class HttpxUpstream:
    def __init__(self) -> None:
        import httpx

        self._c = httpx.AsyncClient(limits=httpx.Limits(max_connections=1000))

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        resp = await self._c.post(url, content=body, headers=headers)
        return resp.status_code, resp.content

    async def stream(self, url: str, body: bytes, headers: dict[str, str]) -> AsyncIterator[bytes]:
        async with self._c.stream("POST", url, content=body, headers=headers) as resp:
            async for data in resp.aiter_raw():
                yield data

    async def aclose(self) -> None:
        await self._c.aclose()


#: client name -> (the package it needs, the adapter)
CLIENTS: dict[str, tuple[str, Callable[[], Upstream]]] = {
    "aiohttp": ("aiohttp", AiohttpUpstream),
    "pyreqwest": ("pyreqwest", PyreqwestUpstream),
    "aiosonic": ("aiosonic", AiosonicUpstream),
    "httpx": ("httpx", HttpxUpstream),
}
SERVERS = {"uvicorn": "uvicorn", "granian": "granian"}
#: The stacks compared: (server, client). The first is the baseline of the ratios.
STACKS = [
    ("uvicorn", "aiohttp"),
    ("uvicorn", "pyreqwest"),
    ("uvicorn", "aiosonic"),
    ("uvicorn", "httpx"),
    ("granian", "aiohttp"),
    ("granian", "pyreqwest"),
]


def make_app(upstream: str, client: str) -> Callable[..., Awaitable[None]]:
    """The minimal proxy (see bench/refproxy.py) over ``client``, with SSE relayed as it arrives."""
    url = upstream.rstrip("/") + "/chat/completions"
    headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
    factory = CLIENTS[client][1]
    state: dict[str, Upstream] = {}

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    state["up"] = factory()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await state["up"].aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/health":
            await send({"type": "http.response.start", "status": 200, "headers": _JSON})
            await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        payload = orjson.loads(b"".join(chunks))
        payload["model"] = "gpt-bench"
        up = state["up"]
        if payload.get("stream"):
            await send({"type": "http.response.start", "status": 200, "headers": _SSE})
            async for data in up.stream(url, orjson.dumps(payload), headers):
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        status, body = await up.post(url, orjson.dumps(payload), headers)
        await send({"type": "http.response.start", "status": status, "headers": _JSON})
        await send({"type": "http.response.body", "body": orjson.dumps(orjson.loads(body))})

    return app


def app_from_env() -> Callable[..., Awaitable[None]]:
    """granian's ``--factory`` entry: the app for STACK_UPSTREAM and STACK_CLIENT."""
    return make_app(os.environ["STACK_UPSTREAM"], os.environ["STACK_CLIENT"])


def _available(server: str, client: str) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in (SERVERS[server], CLIENTS[client][0]))


def _argv(server: str, client: str, port: int, upstream: str) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "STACK_UPSTREAM": upstream, "STACK_CLIENT": client}
    if server == "uvicorn":
        return [sys.executable, __file__, "--serve", client, "--port", str(port), "--upstream", upstream], env
    env["PYTHONPATH"] = str(Path(__file__).parent)
    granian = str(Path(sys.executable).parent / "granian")
    return [granian, "--interface", "asgi", "--loop", "uvloop", "--workers", "1", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            "stacks:app_from_env"], env  # fmt: skip


def _worker_pid(pid: int) -> int:
    """granian serves from a child process; uvicorn from the one we started."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # the field after the state is the parent's PID
            return int(stat.parent.name)
    return pid


def _serve(client: str, port: int, upstream: str) -> None:
    import uvicorn

    uvicorn.run(make_app(upstream, client), host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--gateway", action="store_true", help="also measure uniinfer serve")
    parser.add_argument("--serve", metavar="CLIENT", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port, args.upstream)
        return 0

    from benchlib import Server, free_port
    from load import Phase, detect_tool, run_phase
    from run import CHAT_BODY, CONFIG, GATEWAY_CORE, MASTER_KEY, MODEL, STREAM_BODY, UPSTREAM_CORE

    stacks = [s for s in STACKS if _available(*s)]
    for server, client in STACKS:
        if (server, client) not in stacks:
            print(f"skipped {client} on {server}: not installed (see the usage line)")
    with tempfile.TemporaryDirectory(prefix="uniinfer-stacks-") as tmp:
        work = Path(tmp)
        up_port = free_port()
        upstream = Server("upstream", [sys.executable, str(Path(__file__).parent / "upstream.py"), "--port",
                                       str(up_port)], UPSTREAM_CORE, up_port, work / "upstream.log")  # fmt: skip
        proxies: list[tuple[str, Server, dict[str, str], str | None]] = []
        for server, client in stacks:
            port = free_port()
            argv, env = _argv(server, client, port, f"http://127.0.0.1:{up_port}/v1")
            name = f"{client} on {server}"
            proxies.append(
                (name, Server(name, argv, GATEWAY_CORE, port, work / f"{server}-{client}.log"), env, None)
            )
        if args.gateway:
            port = free_port()
            config = work / "config.yaml"
            config.write_text(CONFIG.format(key=MASTER_KEY, upstream=up_port, model=MODEL))
            argv = [str(Path(sys.executable).parent / "uniinfer"), "serve", "--config", str(config),
                    "--port", str(port), "--log-level", "warning"]  # fmt: skip
            gateway = Server("uniinfer serve", argv, GATEWAY_CORE, port, work / "gateway.log")
            proxies.append(("uniinfer serve", gateway, dict(os.environ), MASTER_KEY))
        try:
            upstream.start()
            upstream.wait_ready()
            for _, proxy, env, _ in proxies:
                proxy.start(env=env)
            for _, proxy, _, _ in proxies:
                proxy.wait_ready()
            for kind, body in (("JSON answer", CHAT_BODY), ("24-event stream", STREAM_BODY)):
                body_file = work / "body.json"
                body_file.write_bytes(orjson.dumps(body))
                tool = "python" if body is STREAM_BODY else detect_tool("auto")
                cpu: dict[str, list[float]] = {name: [] for name, _, _, _ in proxies}
                for round_ in range(args.rounds + 1):
                    order = proxies if round_ % 2 else proxies[::-1]
                    for name, proxy, _, auth in order:
                        result = run_phase(Phase(
                            label=name, url=f"http://127.0.0.1:{proxy.port}/v1/chat/completions",
                            body_file=body_file, concurrency=args.concurrency,
                            duration=args.seconds if round_ else 1.0, requests=1_000_000, auth=auth,
                            tool=tool, server_pid=_worker_pid(proxy.pid), server_core=GATEWAY_CORE,
                            stream=body is STREAM_BODY, quiet_core=GATEWAY_CORE,
                        ))  # fmt: skip
                        if result.error_total:
                            print(f"{name}: {result.error_total} errors", file=sys.stderr)
                            return 1
                        if round_:  # round 0 warms up
                            cpu[name].append(result.server_cpu_ms_per_req * 1000)
                base = cpu[proxies[0][0]]
                print(f"\n{kind}, c={args.concurrency}, {args.rounds} rounds of {args.seconds:g} s ({tool}):")
                print("| stack | CPU µs per request (median) | against aiohttp on uvicorn |\n|---|---|---|")
                for name, values in cpu.items():
                    ratio = statistics.median(v / b - 1 for v, b in zip(values, base, strict=True))
                    print(f"| {name} | {statistics.median(values):.0f} | {ratio:+.0%} |")
        finally:
            for _, proxy, _, _ in proxies:
                proxy.stop()
            upstream.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
