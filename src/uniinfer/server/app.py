"""The HTTP server: a plain ASGI callable over the gateway.

Why not a framework: on these machines a plain ASGI callable on uvicorn
(httptools + uvloop) with orjson serves several times the requests per core
of FastAPI for the same work (docs/architecture.md has the figures). The data
plane is five routes; a table of them is all the routing it needs.

Every response carries ``x-request-id``. Routed responses also carry
``x-uniinfer-provider``, ``x-uniinfer-model``, ``x-uniinfer-attempts``,
``x-uniinfer-fallbacks`` and ``x-uniinfer-dropped-params`` so a caller can
see what happened without logs. A client that disconnects cancels its
request, including the upstream call.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from uniinfer.config import Config
from uniinfer.errors import (
    AuthenticationError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    RequestTooLargeError,
    ServiceUnavailableError,
    UniInferError,
)
from uniinfer.gateway import Gateway
from uniinfer.server.wire import (
    SSE_DONE,
    SSE_HEADERS,
    Headers,
    Message,
    Receive,
    Send,
    error_body,
    error_headers,
    float_embeddings_to_base64,
    send_bytes,
    sse_event,
)
from uniinfer.stages import RequestContext, Route
from uniinfer.types import ChatRequest, EmbeddingRequest
from uniinfer.validation import parse_request

__all__ = ["App", "create_app"]

log = logging.getLogger("uniinfer.server")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_PUBLIC = frozenset({"/health", "/ready"})


class _ClientGoneError(Exception):
    """The client went away while we were reading its body."""


class _Request:
    """What a handler needs of one HTTP request."""

    __slots__ = ("body", "headers", "path", "request_id", "send")

    def __init__(
        self, headers: dict[bytes, bytes], request_id: str, body: bytes, send: Send, path: str
    ) -> None:
        self.headers = headers
        self.request_id = request_id
        self.body = body
        self.send = send
        self.path = path

    def text_headers(self) -> dict[str, str]:
        """Headers as text (ASGI names are already lower-case), for routing rules."""
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self.headers.items()}


Handler = Callable[["App", _Request], Awaitable[None]]


class App:
    """The ASGI application; ``create_app(config)`` builds one."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.config = gateway.config
        key = self.config.server.master_key
        self._master_key = key.get_secret_value().encode() if key else None
        self._max_body = self.config.server.max_body_bytes
        self.draining = False
        self.in_flight = 0
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): App._chat,
            ("POST", "/v1/embeddings"): App._embeddings,
            ("GET", "/v1/models"): App._models,
            ("POST", "/v1/route/explain"): App._route_explain,
            ("POST", "/v1/feedback"): App._feedback,
            ("GET", "/v1/experiments"): App._experiments,
            ("GET", "/health"): App._health,
            ("GET", "/ready"): App._ready,
        }
        self._paths = {path for _, path in self._routes}

    # --- ASGI entry ---------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.draining = True
                await self.gateway.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = rid if _REQUEST_ID.match(rid) else uuid.uuid4().hex
        started = _Started(send)
        self.in_flight += 1
        try:
            handler = self._route(scope["method"], scope["path"])
            if scope["path"] not in _PUBLIC:
                self._authenticate(headers)
            body = await self._read_body(headers, receive)
            await self._run(handler, _Request(headers, request_id, body, started, scope["path"]), receive)
        except _ClientGoneError:
            return
        except UniInferError as exc:
            await self._send_error(started, request_id, exc)
        except Exception:  # never a stack trace to the caller
            log.exception("unhandled error (request %s)", request_id)
            await self._send_error(started, request_id, UniInferError("internal error"))
        finally:
            self.in_flight -= 1

    async def _run(self, handler: Handler, request: _Request, receive: Receive) -> None:
        """Run the handler; a client disconnect cancels it (and its upstream call)."""
        task = asyncio.current_task()
        assert task is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone = True
                    task.cancel()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await handler(self, request)
        except asyncio.CancelledError:
            if not gone:
                raise
            # The caller left: the upstream request was cancelled with us.
            uncancel = getattr(task, "uncancel", None)
            if uncancel is not None:
                uncancel()
        finally:
            watcher.cancel()

    def _route(self, method: str, path: str) -> Handler:
        handler = self._routes.get((method, path))
        if handler is not None:
            return handler
        if method == "GET" and path.startswith("/v1/experiments/"):
            return App._experiments
        if path in self._paths:
            raise MethodNotAllowedError(f"method {method} is not allowed on {path}")
        raise NotFoundError(f"no route for {method} {path}")

    def _authenticate(self, headers: dict[bytes, bytes]) -> None:
        if self._master_key is None:
            return
        auth = headers.get(b"authorization", b"")
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            raise AuthenticationError(
                "You didn't provide an API key. Send it in the Authorization header as 'Bearer <key>'."
            )
        if not hmac.compare_digest(token.strip(), self._master_key):
            raise AuthenticationError("Incorrect API key provided.")

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            raise _too_large(self._max_body)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGoneError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise _too_large(self._max_body)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _send_error(self, send: _Started, request_id: str, exc: UniInferError) -> None:
        if send.started:
            return  # headers are out; the stream handler reports errors in-band
        await send_bytes(
            send,
            exc.http_status,
            error_body(exc),
            [(b"x-request-id", request_id.encode()), *error_headers(exc)],
        )

    # --- handlers -------------------------------------------------------------------------

    async def _chat(self, request: _Request) -> None:
        data = _json(request.body)
        chat = parse_request(ChatRequest, data)
        ctx = RequestContext("chat", request_id=request.request_id, headers=request.text_headers())
        if chat.stream:
            await self._stream_chat(request, chat, ctx)
            return
        response = await self.gateway.chat(chat, ctx)
        body = response.model_dump_json(exclude_none=True).encode()
        await send_bytes(request.send, 200, body, _route_headers(request.request_id, ctx.route))

    async def _stream_chat(self, request: _Request, chat: ChatRequest, ctx: RequestContext) -> None:
        stream = await self.gateway.stream(chat, ctx)
        send = request.send
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": SSE_HEADERS + _route_headers(request.request_id, ctx.route),
                }
            )
            try:
                async for chunk in stream:
                    payload = chunk.model_dump_json(exclude_none=True).encode()
                    await send({"type": "http.response.body", "body": sse_event(payload), "more_body": True})
            except UniInferError as exc:
                # Mid-stream failure: an OpenAI-style error event, then the end.
                await send(
                    {"type": "http.response.body", "body": sse_event(error_body(exc)), "more_body": True}
                )
                await send({"type": "http.response.body", "body": b""})
                return
            await send({"type": "http.response.body", "body": SSE_DONE})
        finally:
            await stream.aclose()

    async def _embeddings(self, request: _Request) -> None:
        data = _json(request.body)
        embed = parse_request(EmbeddingRequest, data)
        ctx = RequestContext("embeddings", request_id=request.request_id)
        response = await self.gateway.embed(embed, ctx)
        if embed.encoding_format == "base64":
            response = float_embeddings_to_base64(response)
        body = response.model_dump_json().encode()
        await send_bytes(request.send, 200, body, _route_headers(request.request_id, ctx.route))

    async def _models(self, request: _Request) -> None:
        body = self.gateway.list_models().model_dump_json().encode()
        await send_bytes(request.send, 200, body, [(b"x-request-id", request.request_id.encode())])

    async def _route_explain(self, request: _Request) -> None:
        """Dry run of routing for a chat request body: nothing is sent upstream."""
        chat = parse_request(ChatRequest, _json(request.body))
        ctx = RequestContext("chat", request_id=request.request_id, headers=request.text_headers())
        body = orjson.dumps(self.gateway.router.explain(chat, ctx))
        await send_bytes(request.send, 200, body, [(b"x-request-id", request.request_id.encode())])

    async def _feedback(self, request: _Request) -> None:
        """``{"request_id", "score"}``: user feedback on an answer, attributed to its experiment variant."""
        data = _json(request.body)
        request_id, score = data.get("request_id"), data.get("score")
        if not isinstance(request_id, str) or not request_id:
            raise InvalidRequestError(
                "'request_id' must be the x-request-id of an answer", param="request_id"
            )
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise InvalidRequestError("'score' must be a number", param="score")
        if not self.gateway.router.experiments.feedback(request_id, float(score)):
            raise NotFoundError(
                f"request '{request_id}' is not part of an experiment (or too old to remember)",
                param="request_id",
            )
        await send_bytes(
            request.send, 200, b'{"recorded":true}', [(b"x-request-id", request.request_id.encode())]
        )

    async def _experiments(self, request: _Request) -> None:
        """``GET /v1/experiments`` lists them; ``GET /v1/experiments/<name>`` reports one."""
        store = self.gateway.router.experiments
        name = request.path.removeprefix("/v1/experiments").strip("/")
        if not name:
            body = orjson.dumps({"object": "list", "data": store.experiments()})
        elif name not in store.experiments():
            raise NotFoundError(f"no experiment named '{name}'", param="name")
        else:
            body = orjson.dumps(store.report(name).to_dict())
        await send_bytes(request.send, 200, body, [(b"x-request-id", request.request_id.encode())])

    async def _health(self, request: _Request) -> None:
        await send_bytes(
            request.send, 200, b'{"status":"ok"}', [(b"x-request-id", request.request_id.encode())]
        )

    async def _ready(self, request: _Request) -> None:
        if self.draining:
            raise ServiceUnavailableError("the gateway is shutting down")
        providers = [p.name for p in self.gateway.provider_status() if p.available]
        body = orjson.dumps({"status": "ready", "providers": providers})
        await send_bytes(request.send, 200, body, [(b"x-request-id", request.request_id.encode())])


class _Started:
    """A ``send`` that remembers whether the response has begun."""

    __slots__ = ("_send", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def _json(body: bytes) -> Any:
    if not body:
        raise InvalidRequestError("The request body is empty; send a JSON object.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    return data


def _too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(f"The request body exceeds the limit of {limit} bytes.")


def _route_headers(request_id: str, route: Route | None) -> Headers:
    headers: Headers = [(b"x-request-id", request_id.encode())]
    if route is None or route.provider is None:
        return headers
    headers += [
        (b"x-uniinfer-provider", route.provider.encode()),
        (b"x-uniinfer-model", (route.upstream_model or "").encode()),
        (b"x-uniinfer-attempts", str(route.attempts).encode()),
    ]
    if route.failed:
        headers.append((b"x-uniinfer-fallbacks", ",".join(route.failed).encode()))
    if route.dropped_params:
        headers.append((b"x-uniinfer-dropped-params", ",".join(route.dropped_params).encode()))
    if route.group is not None:
        headers.append((b"x-uniinfer-group", route.group.encode()))
    if route.fallback_groups:
        headers.append((b"x-uniinfer-fallback-groups", ",".join(route.fallback_groups).encode()))
    if route.retries:
        headers.append((b"x-uniinfer-retries", str(route.retries).encode()))
    for name, value in (
        (b"x-uniinfer-rule", route.rule),
        (b"x-uniinfer-profile", route.profile),
        (b"x-uniinfer-experiment", route.experiment),
        (b"x-uniinfer-variant", route.variant),
    ):
        if value is not None:
            headers.append((name, value.encode()))
    return headers


def create_app(config: Config | None = None, *, gateway: Gateway | None = None) -> App:
    """The ASGI app for ``config`` (default: the embedded default configuration)."""
    if gateway is None:
        if config is None:
            from uniinfer.config import load_config

            config = load_config()
        gateway = Gateway(config)
    return App(gateway)
