"""aiohttp's body writer started eagerly on Python 3.11 (``uniinfer.eager_writes``)."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from uniinfer import eager_writes
from uniinfer.eager_writes import _factory_for

pytestmark = pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="aiohttp starts its writer eagerly itself"
)


@pytest.fixture
async def loop_factory() -> AsyncIterator[Callable[[Any], None]]:
    """Set a task factory on the test's loop for one test, and take it off again."""
    loop = asyncio.get_running_loop()

    def set_factory(factory: Any) -> None:
        loop.set_task_factory(factory)

    yield set_factory
    loop.set_task_factory(None)


async def test_a_body_that_need_not_wait_runs_inside_create_task(loop_factory: Callable[[Any], None]) -> None:
    log: list[str] = []

    async def write() -> int:
        log.append("written")
        return 7

    loop_factory(_factory_for(write.__code__))
    started = asyncio.get_running_loop().create_task(write())
    assert log == ["written"]  # before the loop ran another step
    assert started.done()
    assert started.result() == 7


async def test_a_body_that_waits_carries_on_in_a_task(loop_factory: Callable[[Any], None]) -> None:
    log: list[str] = []
    drained = asyncio.Event()

    async def write() -> int:
        log.append("first part")
        await drained.wait()
        log.append("rest")
        return 8

    loop_factory(_factory_for(write.__code__))
    started = asyncio.get_running_loop().create_task(write())
    assert log == ["first part"]
    assert not started.done()
    drained.set()
    assert await started == 8
    assert log == ["first part", "rest"]


async def test_a_failure_in_the_first_step_is_the_future_s(loop_factory: Callable[[Any], None]) -> None:
    async def write() -> None:
        raise ConnectionResetError("gone")

    loop_factory(_factory_for(write.__code__))
    started = asyncio.get_running_loop().create_task(write())
    assert started.done()
    assert isinstance(started.exception(), ConnectionResetError)


async def test_cancelling_the_rest_reaches_the_coroutine(loop_factory: Callable[[Any], None]) -> None:
    log: list[str] = []

    async def write() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            log.append("cancelled")
            raise

    loop_factory(_factory_for(write.__code__))
    started = asyncio.get_running_loop().create_task(write())
    await asyncio.sleep(0)
    started.cancel()
    with pytest.raises(asyncio.CancelledError):
        await started
    assert log == ["cancelled"]


async def test_other_coroutines_get_a_plain_task(loop_factory: Callable[[Any], None]) -> None:
    log: list[str] = []

    async def write() -> None:
        pass

    async def other() -> None:
        log.append("ran")

    loop_factory(_factory_for(write.__code__))
    task = asyncio.get_running_loop().create_task(other())
    assert isinstance(task, asyncio.Task)
    assert log == []  # not started yet: a plain task waits for the loop
    await task
    assert log == ["ran"]


async def test_install_leaves_another_factory_alone(loop_factory: Callable[[Any], None]) -> None:
    loop = asyncio.get_running_loop()
    assert eager_writes.install(loop)
    ours = loop.get_task_factory()
    assert ours is not None
    assert not eager_writes.install(loop)  # once is enough; a user's factory is never replaced
    assert loop.get_task_factory() is ours


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    """A server that answers a POST with the size and SHA-256 of the body it read."""

    async def echo(request: web.Request) -> web.Response:
        if request.query.get("stall"):
            await asyncio.sleep(30)
        body = await request.read()
        return web.json_response({"size": len(body), "sha256": hashlib.sha256(body).hexdigest()})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/echo", echo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/echo"))
    finally:
        await server.close()


async def test_aiohttp_requests_go_out_whole_with_it_installed(
    echo_url: str, loop_factory: Callable[[Any], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    started_eagerly: list[bool] = []
    real = eager_writes._start_eagerly

    def spy(*args: Any) -> asyncio.Future[Any]:
        future = real(*args)
        started_eagerly.append(future.done())
        return future

    monkeypatch.setattr(eager_writes, "_start_eagerly", spy)
    assert eager_writes.install(asyncio.get_running_loop())
    small, large = (
        b'{"hello": "there"}',
        bytes(range(256)) * 32_768,
    )  # 8 MiB: more than a socket takes at once
    async with aiohttp.ClientSession() as session:
        for body in (small, large):
            async with session.post(echo_url, data=body) as resp:
                assert await resp.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        # the small body was written before send returned; whether the large one could
        # finish in its first step depends on the socket buffers, and it arrived whole either way
        assert started_eagerly[0] is True
        assert len(started_eagerly) == 2

        # a large upload cancelled half-way closes its connection; the pool stays usable
        upload = asyncio.create_task(session.post(echo_url + "?stall=1", data=large))
        await asyncio.sleep(0.05)
        upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload
        connector = session.connector
        assert connector is not None
        assert not connector._acquired  # type: ignore[attr-defined]
        async with session.post(echo_url, data=small) as resp:
            assert (await resp.json())["size"] == len(small)
