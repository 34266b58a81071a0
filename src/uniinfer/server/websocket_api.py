"""Chat streaming over a WebSocket: ``/v1/ws`` (SSE on ``/v1/chat/completions`` stays the default).

One connection carries any number of concurrent streams, told apart by a
client-chosen ``id``. Frames are JSON text:

Client -> server::

    {"type": "chat.completions.create", "id": "r1", "request": { ...chat completion body... }}
    {"type": "cancel", "id": "r1"}

Server -> client::

    {"type": "chunk", "id": "r1", "chunk": { ...chat.completion.chunk... }}
    {"type": "done",  "id": "r1", "request_id": "...", "experiment"?, "variant"?}
    {"type": "error", "id": "r1", "error": {"message", "type", "param", "code"}}

``request`` is validated like the HTTP body; ``stream`` is implied. A
``cancel`` (or the connection closing) cancels the upstream call; a cancelled
stream's last frame is an ``error`` with code ``request_cancelled``, and its id
may be used again once that frame has come (a ``create`` under it before then is
refused as already running). A frame that is JSON but not what the HTTP API takes
(a lone surrogate in a string, a number beyond 64 bits) gets an ``invalid_request``
error frame for its id, as a 400 over HTTP; the other streams go on.

Authentication happens on connect: ``Authorization: Bearer <key>`` or
``x-api-key``, or, for browsers that cannot set headers, the subprotocol
``uniinfer.bearer.<key>``. A failed check rejects the handshake (HTTP 403). A server
without a master key refuses a browser's connection from a page of another origin (its
``Origin`` header names another host than ``Host``), so that no web page the operator visits
can use it.

Backpressure: each stream awaits its own ``send``, so a client that reads
slowly slows the streams it asked for (the upstream is read no faster than
the client takes frames); at most ``MAX_STREAMS`` run at once per
connection, more are refused with a ``rate_limited`` error.

Close codes: 1000 normal; 1001 the server is shutting down; 1003 a binary
frame; 1007 a frame that is not a JSON object; 1009 a frame larger than
``server.max_body_bytes`` (in bytes); 1011 an internal error.

At shutdown a session finishes what it runs: new ``create`` frames get a 503
``service_unavailable`` error frame, running streams go on to their end within
``server.graceful_shutdown_seconds`` (each one still running then gets that
error frame), and the session closes with 1001. During
``server.drain_delay_seconds`` it is served as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from uniinfer.errors import (
    InvalidRequestError,
    RateLimitError,
    RequestCancelledError,
    ServiceUnavailableError,
    UniInferError,
    forget_traceback,
)
from uniinfer.server.app import App, cross_site, header_map
from uniinfer.server.wire import Receive, Send, check_depth
from uniinfer.stages import RequestContext
from uniinfer.types import ChatRequest
from uniinfer.validation import parse_request

__all__ = ["MAX_STREAMS", "PATH", "websocket_chat"]

log = logging.getLogger("uniinfer.server.websocket")

PATH = "/v1/ws"
MAX_STREAMS = 32
SUBPROTOCOL_PREFIX = "uniinfer.bearer."

NORMAL, GOING_AWAY, UNSUPPORTED, INVALID, TOO_BIG, INTERNAL = 1000, 1001, 1003, 1007, 1009, 1011


def _shut_down() -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "The gateway is shutting down: this stream was not served (or not to its end); retry it "
        "on a new connection.",
        retry_after=1.0,
    )


class _CloseError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def websocket_chat(app: App, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The ASGI WebSocket handler for :data:`PATH`."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    # a repeated authorization matches no key, as over HTTP (a proxy in front may read the first)
    headers = header_map(list(scope.get("headers", ())))
    subprotocol = _bearer_subprotocol(scope)
    if subprotocol is not None:
        headers[b"authorization"] = b"Bearer " + subprotocol[len(SUBPROTOCOL_PREFIX) :].encode()
    # a WebSocket is not held to the same-origin policy: any page the operator visits may open
    # one to a gateway on 127.0.0.1 (without a master key, refused: see cross_site)
    if app.keyless and cross_site(headers):
        await send({"type": "websocket.close", "code": 1008, "reason": "cross-origin connection refused"})
        return
    try:
        app.authenticate(headers)
    except UniInferError:
        await send({"type": "websocket.close", "code": 1008, "reason": "authentication failed"})
        return
    accept: dict[str, Any] = {"type": "websocket.accept"}
    if subprotocol is not None:
        accept["subprotocol"] = subprotocol
    await send(accept)
    await _Connection(app, receive, send, headers).run()


def _bearer_subprotocol(scope: dict[str, Any]) -> str | None:
    for proto in scope.get("subprotocols", ()):
        if isinstance(proto, str) and proto.startswith(SUBPROTOCOL_PREFIX):
            return proto
    return None


class _Connection:
    """One accepted WebSocket: a read loop and one task per stream."""

    def __init__(self, app: App, receive: Receive, send: Send, headers: dict[bytes, bytes]) -> None:
        self._app = app
        self._receive = receive
        self._send = send
        self._headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()}
        self._streams: dict[str, asyncio.Task[None]] = {}
        #: Streams the client cancelled (each ends with a ``request_cancelled`` error frame).
        self._cancelled: set[asyncio.Task[None]] = set()
        #: Set while no stream runs, cancelled ones included (what a stopping session waits for).
        self._idle = asyncio.Event()
        self._idle.set()
        self._send_lock = asyncio.Lock()

    async def run(self) -> None:
        code, reason = NORMAL, ""
        receiving: asyncio.Future[Any] | None = None
        try:
            while True:
                if receiving is None:
                    receiving = asyncio.ensure_future(self._receive())
                if not await self._next(receiving):
                    code, reason = GOING_AWAY, "server shutting down"  # its streams all ended
                    break
                message, receiving = receiving.result(), None
                if message["type"] == "websocket.disconnect":
                    return
                await self._handle(message)
        except _CloseError as close:
            code, reason = close.code, close.reason
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._app.stopping.is_set() or task is None:
                raise
            task.uncancel()  # the grace period is over: its streams end here, and say why
            await self._cut_at_shutdown()
            code, reason = GOING_AWAY, "server shutting down"
        except _ClientGoneError as gone:  # a write to a client that has gone
            log.debug("websocket client gone: %r", gone.__cause__)
            return
        except Exception:
            log.exception("websocket connection failed")
            code, reason = INTERNAL, "internal error"
        finally:
            if receiving is not None:
                receiving.cancel()
            live = self._live()
            for task in live:
                task.cancel()
            if live:
                await asyncio.gather(*live, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    async def _next(self, receiving: asyncio.Future[Any]) -> bool:
        """Wait for the next frame; False once the server is stopping and no stream runs.

        While it stops, frames are still read (a ``cancel``), new streams are refused, and the
        session ends when its last stream has (uvicorn's grace period bounds the wait)."""
        stopping = self._app.stopping
        while not receiving.done():
            if stopping.is_set() and self._idle.is_set():
                return False
            wake = self._idle if stopping.is_set() else stopping
            waiter = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait((receiving, waiter), return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
        return True

    async def _cut_at_shutdown(self) -> None:
        """The streams still running when the grace period ends: each gets an error frame."""
        cut = [sid for sid, task in self._streams.items() if task not in self._cancelled]
        live = self._live()
        for task in live:
            task.cancel()
        await asyncio.gather(*live, return_exceptions=True)
        for stream_id in cut:
            with contextlib.suppress(Exception):
                await self._error(stream_id, _shut_down())

    async def _handle(self, message: Mapping[str, Any]) -> None:
        text = message.get("text")
        if text is None:
            raise _CloseError(UNSUPPORTED, "send JSON text frames")
        limit = self._app.config.server.max_body_bytes  # in bytes, as over HTTP (a character is 1 to 4)
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
            raise _CloseError(TOO_BIG, "frame too large")
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError as refused:
            await self._refuse(text, refused)
            return
        if not isinstance(frame, dict):
            raise _CloseError(INVALID, "frames must be JSON objects")
        kind, stream_id = frame.get("type"), frame.get("id")
        if not isinstance(stream_id, str) or not stream_id:
            await self._error(None, InvalidRequestError("every frame needs a string 'id'", param="id"))
        elif kind == "cancel":
            # the id stays taken until the stream's last frame (request_cancelled) is written: a
            # new stream under it would have its frames mixed with that one
            task = self._streams.get(stream_id)
            if task is not None and task not in self._cancelled:
                self._cancelled.add(task)
                task.cancel()
        elif kind == "chat.completions.create":
            try:
                check_depth(text, frame)
            except InvalidRequestError as exc:
                await self._error(stream_id, exc)
                return
            await self._start(stream_id, frame.get("request"))
        else:
            await self._error(stream_id, InvalidRequestError(f"unknown frame type {kind!r}", param="type"))

    async def _refuse(self, text: str, refused: orjson.JSONDecodeError) -> None:
        """A frame orjson refuses: JSON all the same (a lone surrogate, a huge number, which HTTP
        answers with a 400) gets an error frame for its stream; anything else closes (1007)."""
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            raise _CloseError(INVALID, "frames must be JSON objects") from None
        stream_id = frame.get("id") if isinstance(frame, dict) else None
        if not isinstance(stream_id, str) or not stream_id or not _encodes(stream_id):
            raise _CloseError(INVALID, "frames must be JSON objects")
        await self._error(stream_id, InvalidRequestError(f"the frame is not valid JSON: {refused}"))

    async def _start(self, stream_id: str, body: Any) -> None:
        if stream_id in self._streams:
            await self._error(
                stream_id, InvalidRequestError(f"stream '{stream_id}' is already running", param="id")
            )
            return
        if self._app.stopping.is_set():
            await self._error(stream_id, _shut_down())
            return
        if len(self._streams) >= MAX_STREAMS:
            await self._error(
                stream_id, RateLimitError(f"at most {MAX_STREAMS} concurrent streams per connection")
            )
            return
        if not isinstance(body, dict):
            await self._error(
                stream_id, InvalidRequestError("'request' must be a chat completion body", param="request")
            )
            return
        task = asyncio.create_task(self._stream(stream_id, {**body, "stream": True}))
        self._streams[stream_id] = task
        self._idle.clear()
        task.add_done_callback(lambda done: self._ended(stream_id, done))

    def _ended(self, stream_id: str, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # only a write to a client that has gone fails a stream's task (every other error
            # is an error frame): nothing to tell anyone, and retrieved, so asyncio logs nothing
            log.debug("websocket stream %r ended with %r", stream_id, task.exception())
        if self._streams.get(stream_id) is task:  # not a stream that took a cancelled one's id
            del self._streams[stream_id]
        self._cancelled.discard(task)
        if not self._streams and not self._cancelled:
            self._idle.set()

    def _live(self) -> list[asyncio.Task[None]]:
        """Every stream task still running (those the client cancelled included, until their
        last frame is written)."""
        return list(self._streams.values())

    async def _stream(self, stream_id: str, body: dict[str, Any]) -> None:
        try:
            request = parse_request(ChatRequest, body)
            ctx = RequestContext("chat", headers=self._headers)
            stream = await self._app.gateway.stream(request, ctx)
            try:
                prefix = b'{"type":"chunk","id":' + orjson.dumps(stream_id) + b',"chunk":'
                async for batch in stream.json_batches():
                    for data in batch:
                        await self._write((prefix + data + b"}").decode())
            finally:
                await stream.aclose()
            done: dict[str, Any] = {"type": "done", "id": stream_id, "request_id": ctx.request_id}
            route = ctx.route
            if route is not None and route.experiment is not None:  # for POST /v1/feedback
                done["experiment"], done["variant"] = route.experiment, route.variant
            await self._write(orjson.dumps(done).decode())
        except UniInferError as exc:
            await self._last_error(stream_id, exc)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task not in self._cancelled:
                raise  # the session is ending
            await self._last_error(stream_id, None)
        except _ClientGoneError:  # nothing to tell anyone (see _ended)
            raise
        except Exception as exc:  # never a silent end: the client would wait for this stream forever
            log.exception("websocket stream %r failed", stream_id)
            forget_traceback(exc)
            await self._last_error(stream_id, UniInferError("internal error"))

    async def _last_error(self, stream_id: str, error: UniInferError | None) -> None:
        """A stream's last frame: ``error``, or (None: the client cancelled it, the task is
        being cancelled) ``request_cancelled``. A cancel from the client while ``error`` waits to
        be written ends the stream with ``request_cancelled`` instead; a cancellation that is not
        the client's (the session ending) goes on."""
        task = asyncio.current_task()
        assert task is not None
        if error is None:
            task.uncancel()
        try:
            await self._error(stream_id, error or _cancelled_by_client(stream_id))
        except asyncio.CancelledError:
            if error is None or task not in self._cancelled:
                raise
            task.uncancel()
            await self._error(stream_id, _cancelled_by_client(stream_id))

    async def _error(self, stream_id: str | None, exc: UniInferError) -> None:
        forget_traceback(exc)
        frame: dict[str, Any] = {"type": "error", **exc.to_openai()}
        # what an HTTP answer says in its status line and Retry-After header
        frame["error"]["status"] = exc.http_status
        if exc.retry_after is not None:
            frame["error"]["retry_after"] = exc.retry_after
        if stream_id is not None:
            frame["id"] = stream_id
        await self._write(orjson.dumps(frame).decode())

    async def _write(self, text: str) -> None:
        async with self._send_lock:
            try:
                await self._send({"type": "websocket.send", "text": text})
            except OSError as gone:  # uvicorn's ClientDisconnected: the client has gone
                raise _ClientGoneError from gone


class _ClientGoneError(Exception):
    """A frame could not be written: the client has gone (its cause: uvicorn's error)."""


def _encodes(text: str) -> bool:
    """Whether ``text`` is valid UTF-8 text (no lone surrogate), as a frame must carry it."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _cancelled_by_client(stream_id: str) -> RequestCancelledError:
    return RequestCancelledError(f"stream '{stream_id}' cancelled by the client")
