"""The in-process SDK: ``AsyncClient`` and ``Client`` over the same gateway as the server.

``AsyncClient`` is the implementation. ``Client`` is its synchronous face: it
runs the async client on a private event loop in a background thread and
waits for each call, so there is one copy of the logic and the same pooled
HTTP client serves every call. Both close their resources when used as
context managers (or by ``close()`` / ``aclose()``): the connection pool and
the streams they handed out. Closed, a client refuses new calls with
``RuntimeError``; a call or stream cut off by the close raises
:class:`~uniinfer.errors.RequestCancelledError`, which is the caller's doing, not
the provider's: nothing is retried or fallen back to because of it, and no
deployment's health counts it.

    async with AsyncClient(config) as client:
        reply = await client.acomplete(model="openai/gpt-4o-mini", messages=[...])

    with Client(config) as client:
        for chunk in client.stream(model="anthropic/claude-sonnet-4-5", messages=[...]):
            print(chunk.choices[0].delta.content or "", end="")
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import AsyncGenerator, Coroutine, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from uniinfer.config import Config, load_config
from uniinfer.errors import RequestCancelledError, UniInferError
from uniinfer.gateway import Gateway
from uniinfer.streaming import ChatStream
from uniinfer.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelList,
)
from uniinfer.validation import parse_request

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")

log = logging.getLogger("uniinfer.client")

_CLOSED = "the client was closed while this stream was open"
_CUT = "the client was closed while this request was in flight"
_LOOP_ENDED = "the event loop this stream ran on shut down"


class AsyncClient:
    """Chat, streams and embeddings in-process, with the gateway's routing and fallback.

    Close it (``aclose()``, or ``async with``) when done: that ends the streams it
    handed out and closes the gateway's connection pool, for good (a gateway passed in is
    left open: it may serve others, and its owner closes it).
    A call made afterwards raises ``RuntimeError``; one in flight at the close, and
    a stream iterated after it, raise :class:`~uniinfer.errors.RequestCancelledError`.

    **One event loop at a time.** Pooled connections belong to the event loop they
    were opened on, so a client serves the loop of its first call until that loop
    shuts down: then (when ``asyncio.run`` returns, or any ``asyncio.Runner`` such as
    a test framework's per-test loop closes) the client ends its open streams and
    closes its pool on that loop, before the loop closes, and its next call, on a new
    loop, opens a fresh pool there. A script may ``asyncio.run`` one call after
    another with the same client. Calling it from a second loop while the first is
    still open raises ``RuntimeError``: use one client per event loop (per thread). A
    loop closed without shutting down its async generators (``loop.close()`` alone)
    leaves the pool's sockets open until they are collected, with a ``ResourceWarning``.
    """

    def __init__(self, config: Config | None = None, *, gateway: Gateway | None = None) -> None:
        #: A gateway passed in may be shared: closing this client must not end it for good.
        self._owns_gateway = gateway is None
        self.gateway = gateway or Gateway(config if config is not None else load_config())
        self._closed = False
        #: The event loop the client serves: None before its first call and once that loop shut down.
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Suspended for the life of ``_loop``, which closes it as it shuts down (see _closes_with_its_loop).
        self._loop_end: AsyncGenerator[None, None] | None = None
        #: Streams handed out, ended by a close if still open. Weak: one its caller drops
        #: is freed (connection and routing slot) by its own finaliser.
        self._streams: weakref.WeakSet[ChatStream] = weakref.WeakSet()

    async def acomplete(self, request: ChatRequest | None = None, /, **params: Any) -> ChatResponse:
        """A chat completion; pass a :class:`ChatRequest`, its fields as keywords, or both (keywords win)."""
        chat = _chat_request(request, params, stream=False)
        return await self._call(self.gateway.chat(chat))

    async def astream(self, request: ChatRequest | None = None, /, **params: Any) -> ChatStream:
        """A chat stream: iterate it with ``async for``; close it (or ``async with``) to stop early."""
        chat = _chat_request(request, params, stream=True)
        stream = await self._call(self.gateway.stream(chat))
        if self._closed:  # opened as the client was closing: nothing else would close it
            await stream.cancel(RequestCancelledError(_CLOSED))
            raise RequestCancelledError(_CUT)
        self._streams.add(stream)
        return stream

    async def aembed(self, request: EmbeddingRequest | None = None, /, **params: Any) -> EmbeddingResponse:
        """Embeddings for ``input`` (a string or a list of strings)."""
        embed = _embed_request(request, params)
        return await self._call(self.gateway.embed(embed))

    def models(self) -> ModelList:
        return self.gateway.list_models()

    async def _call(self, call: Coroutine[Any, Any, T]) -> T:
        """Run a gateway call: refused once closed; a failure after the close is reported as the close.

        A failure once the client is closed comes of the close (the pool went under a
        request, or the last of several attempts was cut): an error naming a provider,
        or every target failing, would send the caller after the wrong cause.
        """
        if self._closed or self._loop is not asyncio.get_running_loop():
            try:
                await self._serve_this_loop()
            except BaseException:
                call.close()
                raise
        try:
            return await call
        except UniInferError as exc:
            if not self._closed or isinstance(exc, RequestCancelledError):
                raise
            raise RequestCancelledError(_CUT) from exc

    async def _serve_this_loop(self) -> None:
        """Refuse a closed client; serve the running loop if there is none, or the last one has ended."""
        if self._closed:
            raise RuntimeError("this AsyncClient is closed")
        loop = asyncio.get_running_loop()
        if self._loop is not None and not self._loop.is_closed():
            raise RuntimeError(
                "this AsyncClient serves another event loop, which is still open (its pooled connections "
                "belong to that loop); use one AsyncClient per event loop"
            )
        # The last loop, if any, closed without shutting down its async generators: its pool
        # cannot be closed any more; the gateway's HTTP client opens a fresh one on this loop.
        self._loop = loop
        self._loop_end = _closes_with_its_loop(weakref.ref(self))
        await self._loop_end.asend(None)

    async def _loop_ended(self) -> None:
        """The client's loop is shutting down: its streams and pool are closed while it still runs."""
        if self._closed:
            return
        self._loop = self._loop_end = None
        await self._shut(_LOOP_ENDED, pool=True)  # the pool belongs to the ending loop, lent or not

    async def aclose(self) -> None:
        """Close the pool and end the streams still open; the client takes no more calls."""
        if self._closed:
            return
        self._closed = True
        # A call in flight (asleep between retries, say) must not open a pool nothing would close.
        if self._owns_gateway:
            self.gateway.http.seal()
        loop_end, self._loop_end, self._loop = self._loop_end, None, None
        try:
            await self._shut(_CLOSED, pool=self._owns_gateway)  # a lent gateway: its owner closes it
        finally:
            if loop_end is not None:  # retired now rather than at the loop's end (a no-op: closed)
                await loop_end.aclose()

    async def _shut(self, why: str, *, pool: bool) -> None:
        """Close the pool, then end the streams handed out.

        The pool first: a stream's read that the closing pool cuts then fails as cut
        by the close, where its connection closed under it first would look like the
        provider dropping it. Ending the streams closes their responses (nothing left
        for the garbage collector to warn about) and records them as cancelled.
        """
        try:
            if pool:
                await self.gateway.aclose()
        finally:
            streams = list(self._streams)
            self._streams.clear()
            for stream in streams:
                try:
                    await stream.cancel(RequestCancelledError(why))
                except UniInferError as exc:  # an after-stage failed: the other streams still end
                    log.error("request %s: ending its stream failed: %s", stream.ctx.request_id, exc)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class Client:
    """The synchronous face of :class:`AsyncClient` (same gateway, same logic).

    ``close()`` (or leaving ``with``) also closes the upstream of a :meth:`stream`
    still open; resuming that generator afterwards raises ``RuntimeError``.
    """

    def __init__(self, config: Config | None = None, *, gateway: Gateway | None = None) -> None:
        self._async = AsyncClient(config, gateway=gateway)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="uniinfer-client", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def gateway(self) -> Gateway:
        return self._async.gateway

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("this Client is closed")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def complete(self, request: ChatRequest | None = None, /, **params: Any) -> ChatResponse:
        return self._call(self._async.acomplete(request, **params))

    def stream(self, request: ChatRequest | None = None, /, **params: Any) -> Iterator[ChatChunk]:
        """Chunks as they arrive; leaving the loop early closes the upstream stream."""
        stream = self._call(self._async.astream(request, **params))
        try:
            while True:
                try:
                    yield self._call(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self._closed:
                self._call(stream.aclose())

    def embed(self, request: EmbeddingRequest | None = None, /, **params: Any) -> EmbeddingResponse:
        return self._call(self._async.aembed(request, **params))

    def models(self) -> ModelList:
        return self._async.models()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._call(self._async.aclose())
        finally:  # also when closing the pool failed (or Ctrl-C interrupted it): the thread ends
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


async def _closes_with_its_loop(client: weakref.ref[AsyncClient]) -> AsyncGenerator[None, None]:
    """Suspended for the life of an event loop, which closes it as it shuts down.

    ``asyncio.run``, every ``asyncio.Runner`` and ``loop.shutdown_asyncgens()``
    close the async generators started on a loop before the loop closes: the last
    moment the client's streams and pool, which belong to the loop, can be closed on
    it. Weak, so that a loop does not keep alive a client its caller dropped.
    """
    try:
        yield
    finally:
        owner = client()
        if owner is not None:
            await owner._loop_ended()


def _chat_request(request: ChatRequest | None, params: dict[str, Any], *, stream: bool) -> ChatRequest:
    """The request to send: ``request``, its fields overridden by the keywords (checked like a new one)."""
    if request is None:
        params = _as_json(params)
        if stream:
            params["stream"] = True
        return parse_request(ChatRequest, params)
    if params:
        fields = {**request.model_dump(exclude_unset=True, by_alias=True), **params}
        fields.pop("stream", None)
        return _chat_request(None, fields, stream=stream)
    if bool(request.stream) != stream:
        return request.model_copy(update={"stream": stream or None})
    return request


def _embed_request(request: EmbeddingRequest | None, params: dict[str, Any]) -> EmbeddingRequest:
    """As :func:`_chat_request`, for embeddings."""
    if request is not None:
        if not params:
            return request
        params = {**request.model_dump(exclude_unset=True, by_alias=True), **params}
    return parse_request(EmbeddingRequest, _as_json(params))


def _as_json(params: dict[str, Any]) -> dict[str, Any]:
    """Keyword params with tuples as lists, as JSON would carry them.

    The request models are strict, as OpenAI's API is about JSON types; a Python caller's
    ``stop=("a", "b")`` or tuple of messages is still the list it means.
    """
    return {key: _list_tuples(value) for key, value in params.items()}


def _list_tuples(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_list_tuples(item) for item in value]
    if isinstance(value, dict):
        return {key: _list_tuples(item) for key, item in value.items()}
    return value
