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
from concurrent.futures import CancelledError, Future
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


#: How long a Client dropped without ``close()`` gets to close its pool and end its thread:
#: its finaliser runs in whichever thread collected it, which must not hang there.
_DROPPED_CLOSE_SECONDS = 5.0


class Client:
    """The synchronous face of :class:`AsyncClient` (same gateway, same logic).

    The async client runs on a private event loop in a daemon thread; any thread
    may call it. ``close()`` (or leaving ``with``) closes the pool and the upstream
    of a :meth:`stream` still open (reading it afterwards raises ``RuntimeError``),
    and cuts off the calls other threads are waiting for: they raise
    :class:`~uniinfer.errors.RequestCancelledError`, and any call made from then on
    ``RuntimeError``. A client dropped without ``close()`` is closed when it is
    collected (at the latest when the interpreter exits), so that neither its thread
    nor its pool outlives it.
    """

    def __init__(self, config: Config | None = None, *, gateway: Gateway | None = None) -> None:
        self._runner = _Runner(AsyncClient(config, gateway=gateway))
        self._async = self._runner.client
        self._loop = self._runner.loop
        self._thread = self._runner.thread
        #: Closes the runner if this client is dropped unclosed: it holds the runner, never the client.
        self._finalizer = weakref.finalize(self, self._runner.close_dropped)

    @property
    def gateway(self) -> Gateway:
        return self._async.gateway

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.call(coro)

    def complete(self, request: ChatRequest | None = None, /, **params: Any) -> ChatResponse:
        return self._call(self._async.acomplete(request, **params))

    def stream(self, request: ChatRequest | None = None, /, **params: Any) -> Iterator[ChatChunk]:
        """Chunks as they arrive; leaving the loop early closes the upstream stream.

        The stream is opened here, as ``astream`` opens it: a request that fails
        before its first chunk (refused, unknown model, every deployment failing)
        raises at this call, not at the first ``next()``. The iterator also has
        ``close()`` and is a context manager; dropping it closes it too.
        """
        return _SyncStream(self, self._call(self._async.astream(request, **params)))

    def embed(self, request: EmbeddingRequest | None = None, /, **params: Any) -> EmbeddingResponse:
        return self._call(self._async.aembed(request, **params))

    def models(self) -> ModelList:
        return self._async.models()

    def close(self) -> None:
        """Close the pool and the streams still open, cut off the calls in flight, and end the thread.

        A failure closing the pool is raised, once the thread has ended all the same.
        """
        self._finalizer.detach()  # closed by hand: nothing left for the collector to do
        self._runner.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Runner:
    """A :class:`Client`'s event loop, the thread running it, and the :class:`AsyncClient` it serves.

    Kept apart from the Client, which nothing here refers to: the Client's finaliser
    holds the runner, to close all of it when the Client is dropped unclosed.
    """

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.loop = asyncio.new_event_loop()
        self.closed = False
        #: Orders the close against submissions: none is accepted once the close is. Reentrant:
        #: a stream that a collection inside a submission finalises submits its own close.
        self._lock = threading.RLock()
        #: Closes scheduled without waiting (from the loop's own thread), kept until they are done.
        self._scheduled: set[Future[Any]] = set()
        #: The streams the sync iterators read, until those close them. An iterator dropped in a
        #: reference cycle would otherwise be collected with its stream, which the collector may
        #: finalise first: its connection dropped from the wrong thread, its usage unrecorded.
        self.streams: set[ChatStream] = set()
        self.thread = threading.Thread(target=self._run, name="uniinfer-client", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        """Run the loop until its close; then, as ``asyncio.run`` does, cancel what is left and close it.

        A call still waiting when the loop stops (asleep between retries, fetching a
        credential) is cancelled and awaited, so that its caller's thread wakes up to
        an error instead of waiting for good on a loop that will never run it.
        """
        loop = self.loop
        try:
            loop.run_forever()
        finally:
            try:
                if tasks := asyncio.all_tasks(loop):
                    for task in tasks:
                        task.cancel()
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self.thread.ident

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T] | None:
        """Schedule ``coro`` on the loop; None (and ``coro`` closed) once the client is closed."""
        with self._lock:
            if self.closed:
                coro.close()
                return None
            return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it; cut off by the close, it raises ``RequestCancelledError``."""
        if self.on_loop_thread():  # it would wait for the loop it blocks: the client would hang for good
            coro.close()
            raise RuntimeError("a Client cannot be called from its own event loop's thread")
        future = self.submit(coro)
        if future is None:
            raise RuntimeError("this Client is closed")
        try:
            return future.result()
        except CancelledError:  # the close cancelled it; nothing else cancels the client's tasks
            if not self.closed:
                raise
            raise RequestCancelledError(_CUT) from None
        except KeyboardInterrupt:
            future.cancel()
            raise

    def end(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a stream's close: waited for, except on the loop's own thread, where it is only scheduled.

        A close may come from a finaliser, which runs in whichever thread the garbage
        collector does, often the loop's own (it allocates most): waiting there would
        wait for the loop forever. Once the client is closed there is nothing left to
        do: its close ended its streams.
        """
        if not self.on_loop_thread():
            try:
                self.call(coro)
            except (RuntimeError, RequestCancelledError):
                if not self.closed:
                    raise
            return
        future = self.submit(coro)
        if future is not None:
            self._scheduled.add(future)
            future.add_done_callback(self._ended)

    def _ended(self, future: Future[Any]) -> None:
        self._scheduled.discard(future)
        if not future.cancelled() and (exc := future.exception()) is not None:
            log.error("closing a stream failed: %s", exc)

    def close(self, timeout: float | None = None) -> None:
        """Close the async client on the loop, then stop the loop and wait for the thread to end.

        Submitted under the lock submissions take, so that no call slips in after it
        (to be scheduled on a loop that stops before running it): those before it are
        cut off by it, those after it refused. From the loop's own thread (a finaliser)
        the close is only scheduled: the loop stops once it has run.
        """
        with self._lock:
            if self.closed:
                shutdown = None
            else:
                self.closed = True
                shutdown = asyncio.run_coroutine_threadsafe(self.client.aclose(), self.loop)
                # Done, failed or cancelled (Ctrl-C): the loop stops, and _run cancels what is left.
                shutdown.add_done_callback(lambda _: self.loop.call_soon_threadsafe(self.loop.stop))
        if self.on_loop_thread():
            return
        try:
            if shutdown is not None:
                try:
                    shutdown.result(timeout)
                except BaseException:
                    shutdown.cancel()  # interrupted, or out of time: the loop stops all the same
                    raise
        finally:  # also when another thread is closing it: this returns once that close is done
            self.thread.join(timeout)

    def close_dropped(self) -> None:
        """The finaliser of a Client dropped unclosed: :meth:`close`, bounded in time, raising nothing."""
        try:
            self.close(_DROPPED_CLOSE_SECONDS)
        except Exception as exc:
            log.warning("closing a Client dropped without close() failed: %r", exc)


class _SyncStream:
    """The chunks of a stream :meth:`Client.stream` opened, each read through the client's loop.

    Closing it (``close()``, leaving ``with``, or dropping it, as a ``for`` loop left
    early does) closes the upstream and runs the after-stages, as ``ChatStream.aclose``
    does; so does a read that fails. It holds its client, which is therefore not
    closed under it by being collected.
    """

    def __init__(self, client: Client, stream: ChatStream) -> None:
        self._client = client
        self._stream: ChatStream | None = stream
        client._runner.streams.add(stream)

    def __iter__(self) -> _SyncStream:
        return self

    def __next__(self) -> ChatChunk:
        stream = self._stream
        if stream is None:
            raise StopIteration
        try:
            return self._client._call(stream.__anext__())
        except StopAsyncIteration:
            self.close()
            raise StopIteration from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            runner = self._client._runner
            runner.streams.discard(stream)
            runner.end(stream.aclose())

    def __enter__(self) -> _SyncStream:
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception as exc:  # a finaliser must not raise
            log.error("closing a dropped stream failed: %s", exc)


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
