"""Closing the SDK clients, by hand or with their event loop: later calls refused, work in
flight cut off as cancelled, streams closed.

A close is the caller's doing: whatever it cuts off is a ``RequestCancelledError``
(never a provider's failure, so nothing is retried, fallen back to, or held against
a deployment's health), and it leaves nothing open behind it.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.conftest import FAKE_KEY, make_config
from uniinfer import AsyncClient, Client
from uniinfer.config import Config
from uniinfer.errors import RequestCancelledError
from uniinfer.gateway import Gateway
from uniinfer.routing.breaker import BreakerState
from uniinfer.streaming import ChatStream
from uniinfer.types import ChatChunk

MSG = [{"role": "user", "content": "one two three four five six seven eight"}]


@pytest.fixture
def strict_config(openai_url: str) -> Callable[[str], Config]:
    """Provider ``up`` on the fake; one failure opens a circuit; a failure retried once, then fallen back."""

    def build(models: str) -> Config:
        return make_config(
            f"""
providers:
  up: {{type: openai, api_key: {FAKE_KEY}, base_url: {openai_url}, timeout: {{connect: 2, read: 5, total: 10}}}}
routing:
  retry: {{max_retries: 1, initial_backoff_seconds: 0}}
  circuit_breaker: {{min_requests: 1, failure_rate: 0.5}}
models:
{models}"""
        )

    return build


@contextmanager
def no_resource_warnings() -> Iterator[None]:
    """Fail on any ResourceWarning, also from objects the garbage collector finalises here."""
    gc.collect()  # what earlier tests left is theirs
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield
        gc.collect()
    leaks = [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)]
    assert leaks == []


def _requests_for(app: Any, model: str) -> int:
    return sum(1 for r in app["requests"] if (r["body"] or {}).get("model") == model)


async def _until(condition: Callable[[], object]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out waiting")


async def test_a_closed_async_client_refuses_calls_and_opens_nothing(
    config_for: Callable[..., Config], openai_fake_app: Any
) -> None:
    client = AsyncClient(config_for())
    await client.acomplete(model="up/gpt-4o-mini", messages=MSG)
    await client.aclose()
    sent = len(openai_fake_app["requests"])
    with no_resource_warnings():
        with pytest.raises(RuntimeError, match="this AsyncClient is closed"):
            await client.acomplete(model="up/gpt-4o-mini", messages=MSG)
        with pytest.raises(RuntimeError, match="this AsyncClient is closed"):
            await client.astream(model="up/gpt-4o-mini", messages=MSG)
        with pytest.raises(RuntimeError, match="this AsyncClient is closed"):
            await client.aembed(model="up/text-embedding-3-small", input="hi")
        await client.aclose()  # closed once is closed
    assert len(openai_fake_app["requests"]) == sent  # nothing went out
    assert client.gateway.http.open_connections == 0  # and no pool was opened again


@pytest.mark.parametrize("call", ["acomplete", "astream", "aembed"])
async def test_a_request_in_flight_at_the_close_is_cancelled_not_a_provider_failure(
    strict_config: Callable[[str], Config], openai_fake_app: Any, call: str
) -> None:
    """It is not retried, not sent to the next deployment, and no circuit opens for it."""
    client = AsyncClient(strict_config("  m: {deployments: [up/slow-1, up/gpt-4o-mini]}\n"))
    params: dict[str, Any] = {"input": "hi"} if call == "aembed" else {"messages": MSG}
    task = asyncio.create_task(getattr(client, call)(model="m", **params))
    await _until(lambda: client.gateway.http.busy_connections)
    with no_resource_warnings():
        await client.aclose()
        with pytest.raises(RequestCancelledError, match="was closed") as info:
            await task
    assert info.value.provider is None  # no provider blamed
    assert (_requests_for(openai_fake_app, "slow-1"), _requests_for(openai_fake_app, "gpt-4o-mini")) == (1, 0)
    assert client.gateway.router.states["up/slow-1"].breaker.state is BreakerState.CLOSED


async def test_a_request_asleep_between_retries_at_the_close_sends_nothing_after_it(
    openai_url: str, openai_fake_app: Any
) -> None:
    config = make_config(
        f"""
providers:
  up: {{type: openai, api_key: {FAKE_KEY}, base_url: {openai_url}}}
routing:
  retry: {{max_retries: 1, initial_backoff_seconds: 0.3, jitter: 0}}
"""
    )
    client = AsyncClient(config)
    task = asyncio.create_task(client.acomplete(model="up/error-500", messages=MSG))
    await _until(lambda: openai_fake_app["requests"])
    await asyncio.sleep(0.05)  # the 500 is in: the request waits out its backoff
    with no_resource_warnings():
        await client.aclose()
        with pytest.raises(RequestCancelledError, match="client"):
            await task
    assert len(openai_fake_app["requests"]) == 1  # the retry was not sent
    assert client.gateway.http.open_connections == 0


async def test_closing_ends_the_streams_it_handed_out(
    strict_config: Callable[[str], Config],
) -> None:
    """One being read at the close, one left unread: both raise the close, and nothing leaks."""
    client = AsyncClient(
        strict_config("  m: {deployments: [up/stall-a]}\n  n: {deployments: [up/stall-b]}\n")
    )
    read_at_close = await client.astream(model="m", messages=MSG)
    left_unread = await client.astream(model="n", messages=MSG)
    got: list[ChatChunk] = []

    async def read(stream: ChatStream) -> None:
        async for chunk in stream:
            got.append(chunk)

    reader = asyncio.create_task(read(read_at_close))
    await _until(lambda: got)  # the upstream stalls after a few chunks: the reader waits for more
    assert client.gateway.http.busy_connections == 2
    with no_resource_warnings():
        await client.aclose()
        assert client.gateway.http.open_connections == 0
        with pytest.raises(RequestCancelledError, match="was closed"):
            await reader
        with pytest.raises(RequestCancelledError, match="was closed"):
            await left_unread.__anext__()  # nothing more comes out of a closed stream
        del read_at_close, left_unread
    states = client.gateway.router.states
    for name in ("up/stall-a", "up/stall-b"):
        assert (states[name].in_flight, states[name].breaker.state) == (0, BreakerState.CLOSED)


async def test_closing_a_sync_client_closes_its_open_stream_quietly(
    config_for: Callable[..., Config],
) -> None:
    seen: dict[str, object] = {}

    def script() -> None:
        with no_resource_warnings():
            with Client(config_for()) as client:
                chunks = client.stream(model="up/stall", messages=MSG)
                next(chunks)
                seen["busy"] = client.gateway.http.busy_connections
            seen["open_after_close"] = client.gateway.http.open_connections
            with pytest.raises(RuntimeError, match="closed"):
                next(chunks)
            del chunks

    await asyncio.to_thread(script)
    assert seen == {"busy": 1, "open_after_close": 0}


async def test_an_async_client_closes_its_pool_when_its_event_loop_ends(
    config_for: Callable[..., Config],
) -> None:
    client = AsyncClient(config_for())
    seen: list[object] = []

    def script() -> None:  # a script calling asyncio.run twice, or per-test event loops
        with no_resource_warnings():
            for _ in range(2):
                reply = asyncio.run(client.acomplete(model="up/gpt-4o-mini", messages=MSG))
                seen.append(reply.choices[0].message.content)
                seen.append(client.gateway.http.open_connections)  # closed with its loop
            asyncio.run(client.aclose())

    await asyncio.to_thread(script)
    assert seen == ["echo: one two three four five six seven eight", 0] * 2


async def test_an_async_client_refuses_a_second_event_loop_while_the_first_is_open(
    config_for: Callable[..., Config],
) -> None:
    client = AsyncClient(config_for())

    def script() -> None:
        first = asyncio.new_event_loop()
        try:
            first.run_until_complete(client.acomplete(model="up/gpt-4o-mini", messages=MSG))
            with pytest.raises(RuntimeError, match="another event loop"):
                asyncio.run(client.acomplete(model="up/gpt-4o-mini", messages=MSG))
            first.run_until_complete(client.acomplete(model="up/gpt-4o-mini", messages=MSG))  # still fine
            first.run_until_complete(client.aclose())
        finally:
            first.close()

    await asyncio.to_thread(script)


async def test_closing_a_client_does_not_end_a_gateway_it_was_lent(config_for: Callable[..., Config]) -> None:
    gateway = Gateway(config_for())
    first, second = AsyncClient(gateway=gateway), AsyncClient(gateway=gateway)
    try:
        await second.acomplete(model="up/gpt-4o-mini", messages=MSG)  # the pool is open
        pool = gateway.http._session
        await first.aclose()
        assert gateway.http._session is pool  # left open for the others: in flight, nothing is cut
        assert pool is not None
        assert not pool.closed
        reply = await second.acomplete(model="up/gpt-4o-mini", messages=MSG)
        assert reply.choices[0].message.content
    finally:
        await second.aclose()
        await gateway.aclose()
