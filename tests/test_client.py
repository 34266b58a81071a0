"""The SDK: AsyncClient and its synchronous twin Client, in-process over the gateway."""

from __future__ import annotations

import asyncio
import base64
import struct
import threading
from collections.abc import Callable
from typing import Any

import pytest

from uniinfer import AsyncClient, Client
from uniinfer.config import Config
from uniinfer.errors import InvalidRequestError, RateLimitError
from uniinfer.types import ChatRequest

MSG = [{"role": "user", "content": "hello there"}]


async def test_async_client_complete_stream_embed(config_for: Callable[..., Config]) -> None:
    async with AsyncClient(config_for()) as client:
        reply = await client.acomplete(model="up/gpt-4o-mini", messages=MSG)
        assert reply.choices[0].message.content == "echo: hello there"

        stream = await client.astream(model="up/gpt-4o-mini", messages=MSG)
        async with stream:
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "echo: hello there"

        request = ChatRequest.model_validate({"model": "up/gpt-4o-mini", "messages": MSG})
        assert (await client.acomplete(request)).choices[0].message.content == "echo: hello there"

        vectors = await client.aembed(model="up/text-embedding-3-small", input="hi")
        assert len(vectors.data) == 1
        # base64 in process too: the same float32 little-endian bytes the server sends
        packed = await client.aembed(model="up/text-embedding-3-small", input="hi", encoding_format="base64")
        encoded = packed.data[0].embedding
        assert isinstance(encoded, str)
        floats = vectors.data[0].embedding
        assert isinstance(floats, list)
        assert list(struct.unpack(f"<{len(floats)}f", base64.b64decode(encoded))) == pytest.approx(floats)
        assert any(card.id == "up/*" for card in client.models().data)
        http = client.gateway.http
        assert http.open_connections > 0
    assert http.open_connections == 0


async def test_async_client_errors_are_typed(config_for: Callable[..., Config]) -> None:
    async with AsyncClient(config_for()) as client:
        with pytest.raises(InvalidRequestError) as info:
            await client.acomplete(model="up/gpt-4o-mini", messages=MSG, temperature=9)
        assert info.value.param == "temperature"
        with pytest.raises(RateLimitError) as rate:
            await client.acomplete(model="up/error-429", messages=MSG)
        assert rate.value.retry_after == 7.0


def _run_sync(fn: Callable[[], None]) -> None:
    """Sync clients run outside the test's event loop, as in a user's script."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    if errors:
        raise errors[0]


async def test_sync_client_is_the_same_logic(config_for: Callable[..., Config]) -> None:
    config = config_for()
    seen: dict[str, object] = {}

    def script() -> None:
        with Client(config) as client:
            seen["reply"] = client.complete(model="up/gpt-4o-mini", messages=MSG).choices[0].message.content
            seen["stream"] = "".join(
                c.choices[0].delta.content or ""
                for c in client.stream(
                    model="up/gpt-4o-mini", messages=MSG, stream_options={"include_usage": True}
                )
                if c.choices
            )
            seen["embed"] = len(client.embed(model="up/text-embedding-3-small", input=["a", "b"]).data)
            # Leaving a stream early closes its upstream connection.
            for _ in client.stream(model="up/gpt-4o-mini", messages=MSG):
                break
            seen["busy"] = client.gateway.http.busy_connections
            try:
                client.complete(model="up/error-500", messages=MSG)
            except Exception as exc:
                seen["error"] = type(exc).__name__
            seen["http"] = client.gateway.http
        seen["open_after_close"] = client.gateway.http.open_connections
        with pytest.raises(RuntimeError, match="closed"):
            client.complete(model="up/gpt-4o-mini", messages=MSG)

    await asyncio.to_thread(_run_sync, script)
    assert seen["reply"] == "echo: hello there"
    assert seen["stream"] == "echo: hello there"
    assert seen["embed"] == 2
    assert seen["busy"] == 0
    assert seen["error"] == "ProviderError"
    assert seen["open_after_close"] == 0


async def test_keywords_beside_a_request_object_override_its_fields(
    config_for: Callable[..., Config], openai_fake_app: Any
) -> None:
    request = ChatRequest.model_validate({"model": "up/gpt-4o-mini", "messages": MSG, "temperature": 1.0})
    async with AsyncClient(config_for()) as client:
        await client.acomplete(request, temperature=0.3, max_tokens=5)
        sent = openai_fake_app["requests"][-1]["body"]
        # used to be dropped silently (OpenAI gets the limit as max_completion_tokens)
        assert (sent["temperature"], sent["max_completion_tokens"]) == (0.3, 5)
        with pytest.raises(InvalidRequestError) as info:
            await client.acomplete(request, temperature=9)  # checked like any request
        assert info.value.param == "temperature"
        stream = await client.astream(request, max_tokens=5)
        async with stream:
            assert [c async for c in stream]
        assert openai_fake_app["requests"][-1]["body"]["max_completion_tokens"] == 5


async def test_tuples_are_the_lists_a_python_caller_means(
    config_for: Callable[..., Config], openai_fake_app: Any
) -> None:
    """The request models are strict about JSON types; tuples from Python code are lists."""
    messages = ({"role": "user", "content": ({"type": "text", "text": "hello there"},)},)
    async with AsyncClient(config_for()) as client:
        reply = await client.acomplete(model="up/gpt-4o-mini", messages=messages, stop=("x", "y"))
        assert reply.choices[0].message.content == "echo: hello there"
        assert openai_fake_app["requests"][-1]["body"]["stop"] == ["x", "y"]
        vectors = await client.aembed(model="up/text-embedding-3-small", input=("a", "b"))
        assert len(vectors.data) == 2
        with pytest.raises(InvalidRequestError) as info:  # still strict about everything else
            await client.acomplete(model="up/gpt-4o-mini", messages=messages, max_tokens="5")
        assert info.value.param == "max_tokens"


async def test_a_stream_dropped_without_closing_still_frees_its_connection(
    config_for: Callable[..., Config],
) -> None:
    async with AsyncClient(config_for("models:\n  m: {deployments: [up/gpt-4o-mini]}\n")) as client:
        stream = await client.astream(model="m", messages=MSG)
        async for _ in stream:
            break
        assert client.gateway.http.busy_connections == 1
        with pytest.warns(ResourceWarning, match="dropped without being closed"):
            del stream  # the last reference: finalised at once
        assert client.gateway.http.busy_connections == 0
        assert client.gateway.router.states["up/gpt-4o-mini"].in_flight == 0  # routing sees it gone


async def test_a_sync_client_whose_pool_fails_to_close_still_ends_its_thread(
    config_for: Callable[..., Config],
) -> None:
    seen: dict[str, object] = {}

    def script() -> None:
        client = Client(config_for())

        async def failing_close() -> None:
            raise OSError("the pool could not close")

        client.gateway.http.aclose = failing_close  # type: ignore[method-assign]
        with pytest.raises(OSError, match="could not close"):
            client.close()
        seen["thread_alive"] = client._thread.is_alive()
        seen["loop_closed"] = client._loop.is_closed()
        seen["left_to_the_collector"] = client._finalizer.alive  # closed by hand: not again when dropped
        client.close()  # closed once is closed: nothing is raised again
        with pytest.raises(RuntimeError, match="closed"):
            client.complete(model="up/gpt-4o-mini", messages=MSG)

    await asyncio.to_thread(_run_sync, script)
    assert seen == {"thread_alive": False, "loop_closed": True, "left_to_the_collector": False}
