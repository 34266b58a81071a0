"""The sync Client and threads: its own loop thread, other callers' threads, the collector's.

``Client`` runs its ``AsyncClient`` on an event loop in a thread of its own. None
of that may show: a close from another thread wakes every caller, a client dropped
unclosed does not leave its thread and pool behind, and whatever thread the garbage
collector runs a finaliser in, nothing waits for a loop that is waiting for it.

Each test runs its script in a daemon thread and waits for it a bounded time, so a
regression (a hang) fails the test instead of hanging the run.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import FAKE_KEY, make_config
from tests.test_client_close import no_resource_warnings
from uniinfer import Client
from uniinfer.config import Config
from uniinfer.errors import (
    AuthenticationError,
    InvalidRequestError,
    ModelNotFoundError,
    RequestCancelledError,
)

MSG = [{"role": "user", "content": "one two three four five six seven eight"}]

#: Seconds a script gets before it counts as hung: far more than any of them needs.
BOUND = 20.0


async def _finishes(script: Callable[[], None]) -> None:
    """Run ``script`` in a daemon thread; fail if it does not finish within ``BOUND`` (or raises)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            script()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)  # a hung one does not hold the run
    thread.start()
    await asyncio.to_thread(thread.join, BOUND)  # the fakes keep running on this loop meanwhile
    assert not thread.is_alive(), "the script hung"
    if errors:
        raise errors[0]


def _until(condition: Callable[[], object]) -> None:
    for _ in range(500):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("timed out waiting")


def _collect_on_loop_thread(loop: asyncio.AbstractEventLoop) -> None:
    """Run a garbage collection on a client's loop thread, as an allocation there may."""
    collected = threading.Event()

    def collect() -> None:
        gc.collect()
        collected.set()

    loop.call_soon_threadsafe(collect)
    assert collected.wait(5), "the client's loop thread hung in the collection"


async def test_a_sync_stream_collected_on_the_client_loop_thread_does_not_hang_the_client(
    config_for: Callable[..., Config],
) -> None:
    """A stream iterator caught in a reference cycle is closed by whichever thread collects it.

    Often the loop's own (it allocates most): waiting there for the stream's close,
    submitted to that very loop, hung the client for good.
    """
    config = config_for()

    def script() -> None:
        with no_resource_warnings(), Client(config) as client:
            gc.disable()  # the collection happens where this test says, not before
            try:
                chunks = client.stream(model="up/stall", messages=MSG)  # stalls after a few chunks
                next(chunks)  # the consumer stopped reading...
                assert client.gateway.http.busy_connections == 1
                cycle: list[object] = [chunks]
                cycle.append(cycle)  # ...and left the iterator in a cycle (an error's traceback, say)
                del chunks, cycle
                _collect_on_loop_thread(client._loop)
            finally:
                gc.enable()
            reply = client.complete(model="up/gpt-4o-mini", messages=MSG)  # the client still serves
            assert reply.choices[0].message.content == "echo: one two three four five six seven eight"
            _until(lambda: client.gateway.http.busy_connections == 0)  # the stream was closed (usage kept)

    await _finishes(script)


async def test_closing_a_sync_client_wakes_a_call_waiting_in_another_thread(
    openai_url: str, openai_fake_app: Any
) -> None:
    """A call asleep between retries is cut off by the close: it raises, as the async twin's does."""
    config = make_config(
        f"""
providers:
  up: {{type: openai, api_key: {FAKE_KEY}, base_url: {openai_url}}}
routing:
  retry: {{max_retries: 1, initial_backoff_seconds: 60, jitter: 0}}
"""
    )
    outcome: list[BaseException] = []

    def call(client: Client) -> None:
        try:
            client.complete(model="up/error-500", messages=MSG)
        except BaseException as exc:
            outcome.append(exc)

    def script() -> None:
        with no_resource_warnings():
            client = Client(config)
            caller = threading.Thread(target=call, args=(client,), daemon=True)
            caller.start()
            _until(lambda: openai_fake_app["requests"])
            time.sleep(0.05)  # the 500 is in: the call sleeps out its backoff
            client.close()
            caller.join(5)
            assert not caller.is_alive(), "the call never returned"
            assert client.gateway.http.open_connections == 0

    await _finishes(script)
    assert len(outcome) == 1
    assert isinstance(outcome[0], RequestCancelledError)
    assert outcome[0].provider is None  # the close, not the provider
    assert len(openai_fake_app["requests"]) == 1  # the retry was not sent


async def test_a_call_made_while_a_sync_client_closes_is_refused_at_once(
    config_for: Callable[..., Config], openai_fake_app: Any
) -> None:
    """No call slips in between the start of the close and its end, to wait on a stopped loop."""
    config = config_for()
    outcome: list[BaseException] = []

    def call(client: Client) -> None:
        try:
            client.complete(model="up/gpt-4o-mini", messages=MSG)
        except BaseException as exc:
            outcome.append(exc)

    def script() -> None:
        client = Client(config)
        aclose = client._async.aclose

        async def closing() -> None:  # another thread calls while the pool is being closed
            caller = threading.Thread(target=call, args=(client,), daemon=True)
            caller.start()
            await asyncio.get_running_loop().run_in_executor(None, caller.join, 5)
            await aclose()

        client._async.aclose = closing  # type: ignore[method-assign]
        client.close()

    await _finishes(script)
    assert len(outcome) == 1
    assert isinstance(outcome[0], RuntimeError)
    assert str(outcome[0]) == "this Client is closed"
    assert openai_fake_app["requests"] == []  # nothing went out


async def test_a_sync_client_dropped_unclosed_ends_its_thread_and_closes_its_pool(
    config_for: Callable[..., Config],
) -> None:
    config = config_for()

    def script() -> None:
        with no_resource_warnings():
            client = Client(config)
            client.complete(model="up/gpt-4o-mini", messages=MSG)
            thread, loop, http = client._thread, client._loop, client.gateway.http
            assert http.open_connections == 1
            del client
            gc.collect()
            thread.join(5)
            assert not thread.is_alive()
            assert loop.is_closed()
            assert http.open_connections == 0

    await _finishes(script)


async def test_a_sync_client_collected_on_its_own_loop_thread_still_ends(
    config_for: Callable[..., Config],
) -> None:
    """Its finaliser runs on the loop it closes: it cannot wait for that loop, which ends by itself."""
    config = config_for()

    def script() -> None:
        with no_resource_warnings():
            client = Client(config)
            client.complete(model="up/gpt-4o-mini", messages=MSG)
            thread, loop, http = client._thread, client._loop, client.gateway.http
            gc.disable()
            try:
                client.itself = client  # type: ignore[attr-defined]  # collectable only by the collector
                del client
                _collect_on_loop_thread(loop)
            finally:
                gc.enable()
            thread.join(5)
            assert not thread.is_alive()
            assert loop.is_closed()
            assert http.open_connections == 0

    await _finishes(script)


async def test_a_sync_stream_is_opened_at_the_call_as_astream_opens_it(
    config_for: Callable[..., Config], openai_fake_app: Any
) -> None:
    """Its errors raise at the call, where a try around it catches them, not at the first next()."""
    config = config_for()

    def script() -> None:
        with no_resource_warnings(), Client(config) as client:
            with pytest.raises(AuthenticationError):
                client.stream(model="up/error-401", messages=MSG)
            with pytest.raises(ModelNotFoundError):
                client.stream(model="no-such-model", messages=MSG)
            with pytest.raises(InvalidRequestError) as info:
                client.stream(model="up/gpt-4o-mini", messages=MSG, temperature=9)
            assert info.value.param == "temperature"

            sent = len(openai_fake_app["requests"])
            chunks = client.stream(model="up/stall", messages=MSG)  # stalls after a few chunks
            assert len(openai_fake_app["requests"]) == sent + 1  # sent at the call
            assert client.gateway.http.busy_connections == 1
            del chunks  # dropped before reading a chunk: its upstream is closed all the same
            assert client.gateway.http.busy_connections == 0

            with client.stream(model="up/stall", messages=MSG) as chunks:
                next(chunks)
                assert client.gateway.http.busy_connections == 1
            assert client.gateway.http.busy_connections == 0
            assert list(chunks) == []  # closed: nothing more comes out

    await _finishes(script)
