"""The WebSocket streaming endpoint, with the SDK's WebSocketClient and raw frames."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.server_helpers import serve
from uniinfer.config import Config
from uniinfer.errors import (
    AllTargetsFailedError,
    AuthenticationError,
    InvalidRequestError,
    RateLimitError,
    UniInferError,
)
from uniinfer.server import App, create_app
from uniinfer.ws_client import WebSocketClient

MASTER = "sk-master-ws"
MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def app(config_for: Callable[..., Config]) -> App:
    return create_app(config_for(master_key=MASTER))


@pytest.fixture
async def ws_url(app: App) -> AsyncIterator[str]:
    async with serve(app) as base:
        yield base.replace("http://", "ws://") + "/v1/ws"


async def test_stream_over_websocket_with_the_sdk(ws_url: str) -> None:
    async with WebSocketClient(ws_url, api_key=MASTER) as ws:
        chunks = [
            c
            async for c in ws.astream(
                model="up/gpt-4o-mini", messages=MSG, stream_options={"include_usage": True}
            )
        ]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there"
    assert chunks[-1].usage is not None


async def test_concurrent_streams_share_one_connection(ws_url: str) -> None:
    async with WebSocketClient(ws_url, api_key=MASTER) as ws:

        async def one(text: str) -> str:
            parts = [
                c.choices[0].delta.content or ""
                async for c in ws.astream(
                    model="up/gpt-4o-mini", messages=[{"role": "user", "content": text}]
                )
                if c.choices
            ]
            return "".join(parts)

        results = await asyncio.gather(*(one(f"message {i}") for i in range(5)))
    assert results == [f"echo: message {i}" for i in range(5)]


async def test_errors_arrive_typed_per_stream(ws_url: str) -> None:
    async with WebSocketClient(ws_url, api_key=MASTER) as ws:
        with pytest.raises(InvalidRequestError) as info:
            async for _ in ws.astream(model="up/gpt-4o-mini", messages=MSG, temperature=5):
                pass
        assert info.value.param == "temperature"
        with pytest.raises(RateLimitError) as limited:
            async for _ in ws.astream(model="up/error-429", messages=MSG):
                pass
        assert limited.value.retry_after == 7  # what Retry-After says over HTTP
        # the connection survives errors of single streams
        chunks = [c async for c in ws.astream(model="up/gpt-4o-mini", messages=MSG)]
        assert chunks


async def test_every_target_failing_arrives_as_all_targets_failed(config_for: Callable[..., Config]) -> None:
    app = create_app(
        config_for("models:\n  m: {deployments: [up/error-500, up/error-503]}\n", master_key=MASTER)
    )
    async with (
        serve(app) as base,
        WebSocketClient(base.replace("http://", "ws://") + "/v1/ws", api_key=MASTER) as ws,
    ):
        with pytest.raises(AllTargetsFailedError) as info:
            async for _ in ws.astream(model="m", messages=MSG):
                pass
    assert info.value.code == "all_targets_failed"
    assert info.value.http_status == 503  # the last attempt's, as an HTTP answer would have
    assert "up/error-500" in info.value.message


async def test_auth_on_connect(ws_url: str) -> None:
    with pytest.raises(AuthenticationError):
        async with WebSocketClient(ws_url, api_key="wrong"):
            pass
    # browsers authenticate with a subprotocol
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url, protocols=[f"uniinfer.bearer.{MASTER}"]) as ws,
    ):
        assert ws.protocol == f"uniinfer.bearer.{MASTER}"


async def test_without_a_master_key_a_page_of_another_origin_cannot_connect(
    config_for: Callable[..., Config],
) -> None:
    """WebSockets are not held to the same-origin policy: without a master key, a page the
    operator visits could use the gateway on 127.0.0.1. A browser's connection from another
    origin is refused; one from the gateway's own origin, or from outside a browser, is not."""
    async with serve(create_app(config_for())) as base:
        url = base.replace("http://", "ws://") + "/v1/ws"
        own = base.rstrip("/")
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                async with session.ws_connect(url, origin="https://evil.example"):
                    pass
            assert info.value.status == 403
            async with session.ws_connect(url, origin=own) as ws:  # its own page
                assert not ws.closed
        async with WebSocketClient(url) as client:  # outside a browser: no Origin
            chunks = [c async for c in client.astream(model="up/gpt-4o-mini", messages=MSG)]
        assert chunks
    # with a master key, the key decides (a page that has it was given it)
    async with serve(create_app(config_for(master_key=MASTER))) as base:
        url = base.replace("http://", "ws://") + "/v1/ws"
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                url, origin="https://app.example", protocols=[f"uniinfer.bearer.{MASTER}"]
            ) as ws,
        ):
            assert not ws.closed


async def test_cancel_stops_the_upstream_call(app: App, ws_url: str) -> None:
    http = app.gateway.http
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url, headers={"x-api-key": MASTER}) as ws,
    ):
        await ws.send_str(
            json.dumps(
                {
                    "type": "chat.completions.create",
                    "id": "a",
                    "request": {"model": "up/slow-5", "messages": MSG},
                }
            )
        )
        for _ in range(300):
            if http.busy_connections:
                break
            await asyncio.sleep(0.01)
        assert http.busy_connections == 1
        await ws.send_str(json.dumps({"type": "cancel", "id": "a"}))
        # the cancelled stream's last frame says it ended; then its id is free again (not before:
        # frames of a new stream under it would mix with the cancelled one's)
        ack = await ws.receive_json(timeout=5)
        assert (ack["type"], ack["id"], ack["error"]["code"]) == ("error", "a", "request_cancelled")
        again = {
            "type": "chat.completions.create",
            "id": "a",
            "request": {"model": "up/gpt-4o-mini", "messages": MSG},
        }
        await ws.send_str(json.dumps(again))
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["type"] != "done":
            frames.append(await ws.receive_json(timeout=5))
        assert {f["type"] for f in frames} == {"chunk", "done"}
        for _ in range(300):
            if not http.busy_connections:
                break
            await asyncio.sleep(0.01)
        assert http.busy_connections == 0


async def test_closing_the_socket_cancels_its_streams(app: App, ws_url: str) -> None:
    http = app.gateway.http
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(ws_url, headers={"x-api-key": MASTER})
        await ws.send_str(
            json.dumps(
                {
                    "type": "chat.completions.create",
                    "id": "a",
                    "request": {"model": "up/slow-5", "messages": MSG},
                }
            )
        )
        for _ in range(300):
            if http.busy_connections:
                break
            await asyncio.sleep(0.01)
        await ws.close()
    for _ in range(300):
        if not http.busy_connections:
            break
        await asyncio.sleep(0.01)
    assert http.busy_connections == 0


@pytest.mark.parametrize(
    ("frame", "code"),
    [("not json", 1007), ("[1]", 1007), (b"\x00binary", 1003)],
)
async def test_bad_frames_close_with_the_documented_code(ws_url: str, frame: str | bytes, code: int) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url, headers={"x-api-key": MASTER}) as ws,
    ):
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert msg.data == code


async def test_protocol_errors_name_the_problem(ws_url: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url, headers={"x-api-key": MASTER}) as ws,
    ):
        await ws.send_str(json.dumps({"type": "chat.completions.create", "request": {}}))
        frame = json.loads((await ws.receive()).data)
        assert frame["type"] == "error"
        assert frame["error"]["param"] == "id"
        await ws.send_str(json.dumps({"type": "bogus", "id": "x"}))
        frame = json.loads((await ws.receive()).data)
        assert frame["error"]["param"] == "type"
        assert frame["id"] == "x"


async def test_two_authorization_lines_are_refused_as_over_http(ws_url: str) -> None:
    from multidict import CIMultiDict

    both = CIMultiDict([("Authorization", "Bearer wrong"), ("Authorization", f"Bearer {MASTER}")])
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            async with session.ws_connect(ws_url, headers=both):
                pass
    assert info.value.status == 403


async def test_json_the_api_refuses_is_an_error_frame_for_its_stream_not_the_socket_s_end(
    ws_url: str,
) -> None:
    # a lone surrogate (what a browser's JSON.stringify writes for a string cut mid-emoji), a
    # number beyond 64 bits: a 400 over HTTP; here the other streams go on
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url, headers={"x-api-key": MASTER}) as ws,
    ):
        for i, bad in enumerate(('"\\ud83d"', "1e400")):
            text = '{"type": "chat.completions.create", "id": "b%d", "request": {"model": "up/m", "messages": %s}}'
            await ws.send_str(text % (i, bad))
            frame = await ws.receive_json(timeout=5)
            assert (frame["type"], frame["id"], frame["error"]["code"]) == (
                "error",
                f"b{i}",
                "invalid_request",
            )
        ok = {
            "type": "chat.completions.create",
            "id": "c",
            "request": {"model": "up/gpt-4o-mini", "messages": MSG},
        }
        await ws.send_str(json.dumps(ok))
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["type"] != "done":
            frames.append(await ws.receive_json(timeout=5))
        # an id no frame can carry back (a lone surrogate): not JSON this protocol can answer
        await ws.send_str('{"type": "chat.completions.create", "id": "\\ud83d", "request": {}}')
        closed = await ws.receive(timeout=5)
        assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 1007)


async def test_a_request_nested_too_deep_gets_an_error_frame(ws_url: str) -> None:
    from uniinfer.server.wire import MAX_JSON_DEPTH

    schema: dict[str, object] = {}
    for _ in range(MAX_JSON_DEPTH):
        schema = {"a": schema}
    request = {
        "model": "up/gpt-4o-mini",
        "messages": MSG,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
    }
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url, headers={"x-api-key": MASTER}) as ws,
    ):
        await ws.send_str(json.dumps({"type": "chat.completions.create", "id": "deep", "request": request}))
        frame = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
        assert (frame["type"], frame["id"]) == ("error", "deep")
        assert f"more than {MAX_JSON_DEPTH} levels deep" in frame["error"]["message"]


async def test_an_unexpected_failure_of_a_stream_is_an_error_frame_not_silence(
    app: App, ws_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object) -> None:
        raise RuntimeError("a bug, say")

    app.gateway.stream = broken  # type: ignore[method-assign, assignment]
    async with WebSocketClient(ws_url, api_key=MASTER) as ws:
        with pytest.raises(UniInferError, match="internal error") as info:
            async for _ in ws.astream(model="up/gpt-4o-mini", messages=MSG):
                pass
    assert "a bug" not in str(info.value)  # no internals to the client
    assert "a bug, say" in caplog.text  # the operator's log has them


async def test_a_frame_over_the_body_limit_in_bytes_closes_1009(config_for: Callable[..., Config]) -> None:
    # the limit is the HTTP body's, in bytes: 700 three-byte characters are 2,100 bytes
    app = create_app(config_for("server: {max_body_bytes: 1024}\n"))
    text = "€" * 700
    frame = {"type": "chat.completions.create", "id": "r1", "request": {"model": "up/gpt-4o-mini",
             "messages": [{"role": "user", "content": text}]}}  # fmt: skip
    async with serve(app) as base, aiohttp.ClientSession() as session:
        async with session.ws_connect(base + "/v1/ws") as ws:
            await ws.send_str(json.dumps(frame, ensure_ascii=False))  # 2,100 bytes, ~750 characters
            message = await ws.receive(timeout=5)
        assert message.type == aiohttp.WSMsgType.CLOSE
        assert message.data == 1009


async def test_a_stream_cancelled_while_the_server_stops_says_so_before_the_close(
    app: App, ws_url: str
) -> None:
    # its id is free at once, but the session waits for its task's last frame before closing
    http = app.gateway.http
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(ws_url, headers={"x-api-key": MASTER})
        create = {
            "type": "chat.completions.create",
            "id": "a",
            "request": {"model": "up/slow-5", "messages": MSG},
        }
        await ws.send_str(json.dumps(create))
        for _ in range(300):
            if http.busy_connections:
                break
            await asyncio.sleep(0.01)
        app.stopping.set()
        try:
            await ws.send_str(json.dumps({"type": "cancel", "id": "a"}))
            first = await ws.receive(timeout=5)
            second = await ws.receive(timeout=5)
        finally:
            app.stopping.clear()
            await ws.close()
    assert json.loads(first.data)["error"]["code"] == "request_cancelled"
    assert (second.type, second.data) == (aiohttp.WSMsgType.CLOSE, 1001)


async def test_leaving_a_stream_early_with_the_sdk_leaves_no_unretrieved_task_error(ws_url: str) -> None:
    # the SDK's early exit sends cancel and closes the socket: the stream's failed last write
    # was an exception nobody retrieved (asyncio logged it each time)
    from uniinfer.ws_client import WebSocketClient

    loop = asyncio.get_running_loop()
    errors: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: errors.append(str(context.get("message"))))
    try:
        for _ in range(3):
            async with WebSocketClient(ws_url.replace("http", "ws"), api_key=MASTER) as client:
                async for _chunk in client.astream(model="up/stall", messages=MSG):  # first chunk, then waits
                    break
        await asyncio.sleep(0.3)
        gc.collect()
        await asyncio.sleep(0.1)
    finally:
        loop.set_exception_handler(previous)
    assert errors == []


async def test_a_done_frame_carries_the_request_id_feedback_takes(openai_url: str) -> None:
    """A stream in an experiment: feedback needs its request id, which a WebSocket client never
    saw (its outcome was recorded under an id no frame carried)."""
    from tests.conftest import FAKE_KEY, make_config

    app = create_app(
        make_config(
            f"server: {{master_key: {MASTER}}}\n"
            f"providers:\n  up: {{type: openai, api_key: {FAKE_KEY}, base_url: '{openai_url}'}}\n"
            "models:\n  chat-a: {deployments: [up/gpt-a]}\n  chat-b: {deployments: [up/gpt-b]}\n"
            "routing:\n  experiments:\n    - name: ab\n      model: chat\n"
            "      variants: [{name: control, model: chat-a}, {name: candidate, model: chat-b}]\n"
        )
    )
    async with (
        serve(app) as base,
        aiohttp.ClientSession() as session,
        session.ws_connect(base.replace("http://", "ws://") + "/v1/ws", headers={"x-api-key": MASTER}) as ws,
    ):
        request = {"model": "chat", "user": "u1", "messages": MSG}
        await ws.send_str(json.dumps({"type": "chat.completions.create", "id": "r1", "request": request}))
        done: dict[str, Any] = {}
        for _ in range(100):
            frame = json.loads((await ws.receive(timeout=5)).data)
            if frame["type"] == "done":
                done = frame
                break
        assert (done["id"], done["experiment"]) == ("r1", "ab")
        assert done["variant"] in ("control", "candidate")
        async with session.post(
            base + "/v1/feedback",
            json={"request_id": done["request_id"], "score": 1},
            headers={"Authorization": f"Bearer {MASTER}"},
        ) as resp:
            assert resp.status == 200, await resp.text()


async def test_the_client_says_a_connection_it_cannot_make_as_a_typed_error(
    unused_tcp_port_factory: Callable[[], int],
) -> None:
    from uniinfer.errors import ProviderConnectionError

    client = WebSocketClient(f"ws://127.0.0.1:{unused_tcp_port_factory()}/v1/ws", api_key=MASTER)
    with pytest.raises(ProviderConnectionError, match="cannot connect"):
        await client.connect()
    assert client._session is not None
    assert client._session.closed  # nothing left open


async def test_a_frame_the_client_cannot_read_ends_its_stream_only() -> None:
    # a gateway (or something in between) sending a chunk the client cannot model: that stream
    # fails, typed; the others, and streams started after it, go on
    from aiohttp import web

    from tests.fakes.common import run_fake
    from uniinfer.errors import ProviderConnectionError, ProviderResponseError

    async def gateway(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame["type"] != "chat.completions.create":
                continue
            sid = frame["id"]
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
            if frame["request"]["model"] == "bad":
                await ws.send_str(json.dumps({"type": "chunk", "id": sid, "chunk": {**chunk, "choices": 5}}))
                continue
            if frame["request"]["model"] == "bad-error":
                await ws.send_str(json.dumps({"type": "error", "id": sid, "error": "oops"}))
                continue
            choice = {"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}
            await ws.send_str(
                json.dumps({"type": "chunk", "id": sid, "chunk": {**chunk, "choices": [choice]}})
            )
            await ws.send_str(json.dumps({"type": "done", "id": sid}))
        return ws

    app = web.Application()
    app.router.add_get("/v1/ws", gateway)
    async with run_fake(app) as base:
        async with WebSocketClient(base.replace("http://", "ws://") + "/v1/ws", api_key=MASTER) as client:
            for bad in ("bad", "bad-error"):
                with pytest.raises(ProviderResponseError, match="unreadable frame"):
                    async for _ in client.astream(model=bad, messages=MSG):
                        pass
            texts = [c.choices[0].delta.content async for c in client.astream(model="good", messages=MSG)]
            assert texts == ["ok"]
        with pytest.raises(ProviderConnectionError):  # closed: no stream starts, none hangs
            async for _ in client.astream(model="good", messages=MSG):
                pass
