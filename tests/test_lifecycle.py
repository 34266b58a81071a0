"""The real ``uniinfer serve`` process across its lifecycle: drain on SIGTERM/SIGINT, the cut
past the grace period, a forced exit, client disconnects, start-up errors and upstream sockets.

Each test starts the installed ``uniinfer serve`` on a free 127.0.0.1 port in front of the
repo's fake OpenAI server, and stops it by its PID. The fake gains one mode here, ``trickle-N``:
a stream of N chunks 0.1 s apart (``trickle`` alone: forever), which notices when the gateway
closes its connection, so a test can see the upstream call end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import FAKE_KEY
from tests.fakes.common import run_fake
from tests.fakes.openai import openai_app

MSG = [{"role": "user", "content": "hello there"}]


@dataclass
class Upstream:
    """The fake's base URL and what it saw: requests started, and connections the gateway closed."""

    url: str
    started: int = 0
    closed_early: int = 0
    open: int = 0
    models: list[str] = field(default_factory=list)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    # https://platform.openai.com/docs/api-reference/chat-streaming/streaming
    chunk = {
        "id": "chatcmpl-trickle",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "trickle",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _closed(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def _watching(seen: Upstream) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else {}
        model = str(body.get("model", ""))
        seen.started += 1
        seen.open += 1
        seen.models.append(model)
        try:
            if model.startswith("trickle"):
                return await _trickle(request, model)
            task = asyncio.ensure_future(handler(request))
            try:
                while not task.done():  # a slow answer: notice the gateway hanging up
                    await asyncio.wait([task], timeout=0.02)
                    if not task.done() and _closed(request):
                        raise asyncio.CancelledError
            finally:
                task.cancel()
            return task.result()
        except asyncio.CancelledError:  # hung up on (seen here, or by aiohttp cancelling us)
            seen.closed_early += 1
            raise
        finally:
            seen.open -= 1

    return middleware


async def _trickle(request: web.Request, model: str) -> web.StreamResponse:
    _, _, count = model.partition("-")
    n = int(count) if count else 10**9
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(_chunk({"role": "assistant", "content": ""}))
    for i in range(n):
        await asyncio.sleep(0.1)
        if _closed(request):
            raise asyncio.CancelledError
        await resp.write(_chunk({"content": f"t{i} "}))
    await resp.write(_chunk({}, "stop"))
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    seen = Upstream("")
    app = openai_app(api_key=FAKE_KEY)
    app.middlewares.append(_watching(seen))
    async with run_fake(app) as url:
        seen.url = url + "/v1"
        yield seen


def _uniinfer() -> str:
    return str(Path(sys.executable).with_name("uniinfer"))


@dataclass
class Served:
    proc: asyncio.subprocess.Process
    base: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def exit(self, within: float) -> tuple[int, str]:
        """The exit status (waited for at most ``within`` seconds) and everything it printed."""
        code = await asyncio.wait_for(self.proc.wait(), within)
        assert self.proc.stdout is not None
        return code, (await self.proc.stdout.read()).decode()


@pytest.fixture
async def serve(
    tmp_path: Path, upstream: Upstream, unused_tcp_port_factory: Callable[[], int]
) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """Start ``uniinfer serve`` with ``server:`` settings; killed by PID if a test leaves it running."""
    started: list[asyncio.subprocess.Process] = []

    async def start(server: str = "graceful_shutdown_seconds: 5", up: str = "") -> Served:
        port = unused_tcp_port_factory()
        config = tmp_path / f"c{port}.yaml"
        config.write_text(
            f"providers:\n  up: {{type: openai, api_key: {FAKE_KEY}, base_url: {upstream.url}{up}}}\n"
            f"server: {{{server}}}\nrouting: {{retry: {{max_retries: 0}}}}\n"
        )
        proc = await asyncio.create_subprocess_exec(
            _uniinfer(), "serve", "-c", str(config), "--port", str(port), "--log-level", "info",
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        started.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(base + "/health") as resp:
                        if resp.status == 200:
                            return Served(proc, base)
                except aiohttp.ClientConnectionError:
                    if time.monotonic() > deadline or proc.returncode is not None:
                        raise
                    await asyncio.sleep(0.05)

    yield start
    for proc in started:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()


async def _post(base: str, model: str, *, stream: bool = False) -> tuple[int, dict[str, str], str]:
    """Status, headers and body; a body cut short is returned as far as it came, + ``<cut>``."""
    body = {"model": model, "messages": MSG, "stream": stream}
    async with (
        aiohttp.ClientSession() as session,
        session.post(base + "/v1/chat/completions", json=body) as resp,
    ):
        text = b""
        try:
            async for data in resp.content.iter_any():
                text += data
        except aiohttp.ClientPayloadError:
            return resp.status, dict(resp.headers), text.decode() + "<cut>"
        return resp.status, dict(resp.headers), text.decode()


def _last_event(body: str) -> Any:
    """The data of the last SSE event of a body read to its end (not cut)."""
    assert not body.endswith("<cut>"), body[-200:]
    return json.loads(body.strip().rsplit("\n\n", 1)[-1].removeprefix("data: "))


async def _until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_drains_requests_and_streams_then_exits_0(
    serve: Callable[..., Awaitable[Served]], upstream: Upstream, sig: signal.Signals
) -> None:
    served = await serve("graceful_shutdown_seconds: 5")
    answer = asyncio.create_task(_post(served.base, "up/slow-0.6"))
    stream = asyncio.create_task(_post(served.base, "up/trickle-8", stream=True))
    await _until(lambda: upstream.started == 2)
    os.kill(served.pid, sig)
    signalled = time.monotonic()
    # the listener is closed at once: a new connection is refused, not queued behind the drain
    await asyncio.sleep(0.3)
    with pytest.raises(aiohttp.ClientConnectionError):
        await _post(served.base, "up/gpt-4o")

    status, _, body = await answer
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == "echo: hello there"
    status, _, body = await stream
    assert status == 200
    assert body.endswith("data: [DONE]\n\n")  # the whole stream, to its end
    assert "t7 " in body
    # drained: it exits at once, and a shutdown that was asked for is a success
    code, output = await served.exit(within=3)
    assert code == 0, output
    assert time.monotonic() - signalled < 3
    assert "Traceback" not in output
    assert "ERROR" not in output


async def test_past_the_grace_period_requests_get_a_503_streams_are_cut_and_it_exits(
    serve: Callable[..., Awaitable[Served]], upstream: Upstream
) -> None:
    # 1.4 s, not rounded to 1 s: the 1.2 s answer still makes it
    served = await serve("graceful_shutdown_seconds: 1.4")
    in_time = asyncio.create_task(_post(served.base, "up/slow-1.2"))
    answer = asyncio.create_task(_post(served.base, "up/slow-20"))
    stream = asyncio.create_task(_post(served.base, "up/trickle", stream=True))
    await _until(lambda: upstream.started == 3)
    os.kill(served.pid, signal.SIGTERM)
    signalled = time.monotonic()

    status, _, body = await in_time
    assert status == 200, body
    status, headers, body = await answer
    assert status == 503  # an answer in the API's shape, one the SDKs retry
    error = json.loads(body)["error"]
    assert error["code"] == "service_unavailable"
    assert "server.graceful_shutdown_seconds passed" in error["message"]
    assert headers["Retry-After"] == "1"
    status, _, body = await stream
    assert status == 200
    # it says why it ended, in-band, and never with a [DONE] it did not have
    assert not body.endswith("<cut>")
    assert "[DONE]" not in body
    assert _last_event(body)["error"]["code"] == "service_unavailable"

    code, output = await served.exit(within=5)
    assert code == 0, output
    assert time.monotonic() - signalled < 4
    assert "Traceback" not in output
    assert "Unclosed" not in output
    await _until(lambda: upstream.open == 0)
    assert upstream.closed_early == 2  # both upstream calls were hung up on


async def test_a_second_ctrl_c_cuts_at_once_and_still_closes_cleanly(
    serve: Callable[..., Awaitable[Served]], upstream: Upstream
) -> None:
    served = await serve("graceful_shutdown_seconds: 30")
    answer = asyncio.create_task(_post(served.base, "up/slow-20"))
    stream = asyncio.create_task(_post(served.base, "up/trickle", stream=True))
    await _until(lambda: upstream.started == 2)
    os.kill(served.pid, signal.SIGINT)
    await asyncio.sleep(0.3)
    os.kill(served.pid, signal.SIGTERM)  # a second SIGTERM changes nothing: still draining
    await asyncio.sleep(0.3)
    assert not answer.done()
    assert served.proc.returncode is None
    os.kill(served.pid, signal.SIGINT)  # a second Ctrl-C does not wait

    status, _, body = await asyncio.wait_for(answer, 3)
    assert status == 503
    error = json.loads(body)["error"]
    assert error["code"] == "service_unavailable"
    assert "a second Ctrl-C forced the shutdown" in error["message"]  # not the grace period
    status, _, body = await asyncio.wait_for(stream, 3)
    assert _last_event(body)["error"]["code"] == "service_unavailable"  # why it ended, in-band
    code, output = await served.exit(within=3)
    assert code == 0, output
    assert "Traceback" not in output
    assert "KeyboardInterrupt" not in output
    assert "Unclosed client session" not in output  # the pool was closed, not abandoned
    await _until(lambda: upstream.open == 0)
    assert upstream.closed_early == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_that_leaves_ends_the_upstream_call_and_logs_no_error(
    serve: Callable[..., Awaitable[Served]], upstream: Upstream, stream: bool
) -> None:
    served = await serve()
    model = "up/trickle" if stream else "up/slow-20"
    call = asyncio.create_task(_post(served.base, model, stream=stream))
    await _until(lambda: upstream.started == 1)
    await asyncio.sleep(0.3)
    call.cancel()
    left = time.monotonic()
    await _until(lambda: upstream.closed_early == 1, within=2)
    assert time.monotonic() - left < 0.5  # promptly
    os.kill(served.pid, signal.SIGTERM)
    code, output = await served.exit(within=5)
    assert code == 0
    assert "ERROR" not in output
    assert "Traceback" not in output


async def test_a_client_leaving_its_stream_during_the_drain_is_no_shutdown_cut(
    serve: Callable[..., Awaitable[Served]], upstream: Upstream
) -> None:
    """The client's leaving, not the grace period, ended it: nothing to warn of a 503."""
    served = await serve("graceful_shutdown_seconds: 10")
    call = asyncio.create_task(_post(served.base, "up/trickle", stream=True))
    await _until(lambda: upstream.started == 1)
    os.kill(served.pid, signal.SIGTERM)
    await asyncio.sleep(0.3)
    call.cancel()
    await _until(lambda: upstream.closed_early == 1, within=2)
    code, output = await served.exit(within=5)
    assert code == 0
    assert "service_unavailable" not in output
    assert "graceful_shutdown_seconds passed" not in output
    assert "Traceback" not in output


def _fds(pid: int) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = target.split(":")[0] if ":" in target else "file"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


_TCP_STATES = {"01": "ESTABLISHED", "0A": "LISTEN", "08": "CLOSE_WAIT", "06": "TIME_WAIT"}


def _sockets(pid: int) -> list[str]:
    """Each socket the process holds, as ``tcp STATE :remote_port`` or ``unix``, from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            _, _, remote, state, *_, inode = line.split()[:10]
            if inode in inodes:
                inodes.discard(inode)
                port = int(remote.rpartition(":")[2], 16)
                found.append(f"tcp {_TCP_STATES.get(state, state)} :{port}")
    for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        inode = line.split()[6]
        if inode in inodes:
            inodes.discard(inode)
            found.append("unix")
    return sorted(found + ["other"] * len(inodes))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts the process's fds in /proc")
async def test_failing_upstreams_and_leaving_clients_leak_no_sockets(
    serve: Callable[..., Awaitable[Served]], upstream: Upstream
) -> None:
    served = await serve(up=", timeout: {read: 0.3}")
    connector = aiohttp.TCPConnector(force_close=True)  # no keep-alive sockets of ours in the count
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(model: str, stream: bool = False) -> int:
            body = {"model": model, "messages": MSG, "stream": stream}
            async with session.post(served.base + "/v1/chat/completions", json=body) as resp:
                await resp.read()
                return resp.status

        async def leave(model: str, stream: bool) -> None:
            task = asyncio.create_task(post(model, stream))
            await asyncio.sleep(0.15)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        async def failures() -> dict[str, int]:
            statuses = await asyncio.gather(
                *[post(f"up/error-500-{i}") for i in range(10)],
                *[post(f"up/drop-{i}") for i in range(10)],
                *[post(f"up/cut-{i}", stream=True) for i in range(10)],
                *[post(f"up/slow-x{i}") for i in range(10)],
                *[leave("up/trickle", stream=True) for _ in range(10)],
                *[leave(f"up/slow-x{i}", stream=False) for i in range(10)],
            )
            # 500 and drop: 502; cut mid-stream: 200 and an error event; read timeout: 504
            assert sorted(set(statuses[:40])) == [200, 502, 504]
            await _until(lambda: upstream.open == 0)
            await asyncio.sleep(0.2)
            return _fds(served.pid)

        upstream_port = f":{int(upstream.url.split(':')[2].split('/')[0])}"

        def tally() -> list[str]:
            held = _sockets(served.pid)
            pooled = held.count("tcp ESTABLISHED " + upstream_port)
            expected = held.count("tcp LISTEN :0") == 1 and held.count("unix") == 2 and 1 <= pooled <= 10
            return [] if expected and len(held) == 3 + pooled else held

        async def accounted() -> None:
            # every socket is the listener, the event loop's self-pipe pair, or a live pooled
            # upstream connection; a 500 is a whole answer, so its connection is kept: at most
            # one per concurrent 500 (10). Any other socket (a client's, one the upstream hung
            # up on, one past a timeout or a cut stream) is a leak: one that stays. (A loaded
            # machine may take a moment to close the last of them: a leak never closes.)
            with contextlib.suppress(AssertionError):
                await _until(lambda: not tally())
            held = tally()
            assert not held, held

        # the first round fills the pool; more rounds of failures must not add a descriptor
        # beyond it: sockets are all accounted for, and nothing else grows
        first = await failures()
        await accounted()
        for _ in range(2):
            again = await failures()
            await accounted()
            grown = [kind for kind, n in again.items() if kind != "socket" and n > first.get(kind, 0)]
            assert not grown, (first, again)
    os.kill(served.pid, signal.SIGTERM)
    code, output = await served.exit(within=5)
    assert code == 0
    assert "Traceback" not in output


async def test_a_port_in_use_is_one_clear_error_and_a_failed_exit(tmp_path: Path, upstream: Upstream) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "c.yaml"
        config.write_text(
            f"providers:\n  up: {{type: openai, api_key: {FAKE_KEY}, base_url: {upstream.url}}}\n"
        )
        out = await asyncio.to_thread(
            subprocess.run,
            [_uniinfer(), "serve", "-c", str(config), "--port", str(port)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, out.stderr
    assert "address already in use" in errors[0]
    assert "Traceback" not in out.stderr


async def test_a_drain_delay_keeps_serving_with_ready_503_then_drains(
    serve: Callable[..., Awaitable[Served]], upstream: Upstream
) -> None:
    # the time a load balancer needs to take the replica out: still served, but not ready
    served = await serve("graceful_shutdown_seconds: 5, drain_delay_seconds: 1.0")
    stream = asyncio.create_task(_post(served.base, "up/trickle-15", stream=True))
    await _until(lambda: upstream.started == 1)
    os.kill(served.pid, signal.SIGTERM)
    signalled = time.monotonic()
    await asyncio.sleep(0.2)
    async with aiohttp.ClientSession() as session:
        async with session.get(served.base + "/ready") as resp:
            assert resp.status == 503
        async with session.get(served.base + "/health") as resp:
            assert resp.status == 200
    status, _, body = await _post(served.base, "up/gpt-4o")  # a request that still arrives is served
    assert status == 200, body
    assert time.monotonic() - signalled < 1.0
    await asyncio.sleep(1.2)  # the delay is over: the listener is closed, the stream still drains
    with pytest.raises(aiohttp.ClientConnectionError):
        await _post(served.base, "up/gpt-4o")
    status, _, body = await stream
    assert status == 200
    assert body.endswith("data: [DONE]\n\n")
    code, output = await served.exit(within=3)
    assert code == 0, output
    assert "Traceback" not in output


async def test_a_second_signal_during_the_drain_delay_starts_the_drain_at_once(
    serve: Callable[..., Awaitable[Served]], upstream: Upstream
) -> None:
    served = await serve("graceful_shutdown_seconds: 5, drain_delay_seconds: 30")
    os.kill(served.pid, signal.SIGTERM)
    await asyncio.sleep(0.2)
    signalled = time.monotonic()
    os.kill(served.pid, signal.SIGTERM)
    code, output = await served.exit(within=3)  # not 30 s later
    assert code == 0, output
    assert time.monotonic() - signalled < 3


async def _ws_frames(ws: aiohttp.ClientWebSocketResponse, within: float) -> list[Any]:
    """Every frame until the server closes the session (its close code last)."""
    frames: list[Any] = []
    async with asyncio.timeout(within):
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                frames.append(json.loads(message.data))
    frames.append(ws.close_code)
    return frames


def _create(stream_id: str, model: str) -> dict[str, Any]:
    return {"type": "chat.completions.create", "id": stream_id, "request": {"model": model, "messages": MSG}}


async def test_a_websocket_session_finishes_its_streams_at_shutdown_then_closes_1001(
    serve: Callable[..., Awaitable[Served]], upstream: Upstream
) -> None:
    # it was failed at once with 1012, its streams cut mid-answer without a word
    served = await serve("graceful_shutdown_seconds: 5")
    async with aiohttp.ClientSession() as session, session.ws_connect(served.base + "/v1/ws") as ws:
        await ws.send_json(_create("r1", "up/trickle-8"))  # 0.8 s of answer
        first = await ws.receive_json(timeout=5)
        assert first["type"] == "chunk"
        os.kill(served.pid, signal.SIGTERM)
        await asyncio.sleep(0.3)
        await ws.send_json(_create("r2", "up/trickle-1"))  # too late: refused, in its own frame
        frames = await _ws_frames(ws, within=5)
    assert frames[-1] == 1001  # going away
    ends = [(f["type"], f["id"]) for f in frames[:-1] if f["type"] != "chunk"]
    assert ends == [("error", "r2"), ("done", "r1")]
    refused = next(f for f in frames[:-1] if f["type"] == "error")
    assert (refused["error"]["status"], refused["error"]["code"]) == (503, "service_unavailable")
    text = "".join(c["chunk"]["choices"][0]["delta"].get("content") or "" for c in [first, *frames[:-1]]
                   if c["type"] == "chunk" and c["chunk"]["choices"])  # fmt: skip
    assert text == "".join(f"t{i} " for i in range(8))  # all of it
    code, output = await served.exit(within=5)
    assert code == 0, output
    assert "Traceback" not in output


async def test_past_the_grace_period_a_websocket_stream_says_why_it_ended(
    serve: Callable[..., Awaitable[Served]], upstream: Upstream
) -> None:
    served = await serve("graceful_shutdown_seconds: 0.6")
    async with aiohttp.ClientSession() as session, session.ws_connect(served.base + "/v1/ws") as ws:
        await ws.send_json(_create("r1", "up/trickle"))  # never ends
        assert (await ws.receive_json(timeout=5))["type"] == "chunk"
        os.kill(served.pid, signal.SIGTERM)
        frames = await _ws_frames(ws, within=5)
    assert frames[-1] == 1001
    last = frames[-2]
    assert (last["type"], last["id"], last["error"]["code"]) == ("error", "r1", "service_unavailable")
    code, output = await served.exit(within=5)
    assert code == 0, output
    assert "Traceback" not in output


async def test_during_the_drain_delay_a_websocket_session_is_served_as_usual(
    serve: Callable[..., Awaitable[Served]], upstream: Upstream
) -> None:
    # any frame sent then closed the session (1001) and cut its streams without a word
    served = await serve("graceful_shutdown_seconds: 5, drain_delay_seconds: 1")
    async with aiohttp.ClientSession() as session, session.ws_connect(served.base + "/v1/ws") as ws:
        await ws.send_json(_create("r1", "up/trickle-3"))
        assert (await ws.receive_json(timeout=5))["type"] == "chunk"
        os.kill(served.pid, signal.SIGTERM)
        await asyncio.sleep(0.2)
        await ws.send_json(_create("r2", "up/trickle-2"))
        frames = await _ws_frames(ws, within=8)
    assert frames[-1] == 1001
    assert sorted(f["id"] for f in frames[:-1] if f["type"] == "done") == ["r1", "r2"]
    code, output = await served.exit(within=8)
    assert code == 0, output
