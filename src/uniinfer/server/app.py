"""The HTTP server: a plain ASGI callable over the gateway.

Why not a framework: on these machines a plain ASGI callable on uvicorn
(httptools + uvloop) with orjson serves several times the requests per core
of FastAPI for the same work (docs/architecture.md has the figures). The
data plane is a handful of routes; a table of them is all the routing it
needs.

This module is the core every API family shares: dispatch, authentication
(``Authorization: Bearer`` or ``x-api-key``), request ids, body limits, the
limit on concurrent requests, cancellation when the client disconnects, and
errors rendered in the family's own shape. The routes live with their API family:
:mod:`~uniinfer.server.openai_api` (Chat Completions, embeddings, models),
:mod:`~uniinfer.server.admin_api` (health, readiness, routing and
experiments), and further ingress modules that add their own table.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib
import itertools
import logging
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from uniinfer.config import Config
from uniinfer.errors import (
    AuthenticationError,
    MethodNotAllowedError,
    NotFoundError,
    PermissionDeniedError,
    RequestTooLargeError,
    ServiceUnavailableError,
    UniInferError,
    UnsupportedMediaTypeError,
    forget_traceback,
)
from uniinfer.gateway import Gateway
from uniinfer.server.wire import (
    Headers,
    Message,
    Receive,
    Send,
    error_headers,
    openai_error_body,
    route_headers,
    send_bytes,
)
from uniinfer.stages import RequestContext

__all__ = ["App", "Endpoint", "Request", "create_app", "cross_site", "header_map", "log_failure"]

log = logging.getLogger("uniinfer.server")

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
#: A started request runs this long before a task starts watching for the client leaving:
#: quick requests never pay for the watcher, slow ones are cancelled soon after a disconnect.
WATCH_AFTER_SECONDS = 0.05

Handler = Callable[["App", "Request"], Awaitable[None]]
#: Renders an error in an API family's shape: the body bytes.
ErrorRenderer = Callable[[UniInferError], bytes]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A route: its handler, how its errors look, and whether it needs the master key."""

    handler: Handler
    render_error: ErrorRenderer = openai_error_body
    public: bool = False
    #: Also serve every path under this one (e.g. ``/v1/experiments/<name>``).
    prefix: bool = False


class ClientGoneError(Exception):
    """The client went away while we were reading its body."""


class Request:
    """What a handler needs of one HTTP request."""

    __slots__ = ("body", "ctx", "headers", "path", "query", "request_id", "send")

    def __init__(
        self, headers: dict[bytes, bytes], request_id: str, body: bytes, send: Send, path: str, query: bytes
    ) -> None:
        self.headers = headers
        self.request_id = request_id
        self.body = body
        self.send = send
        self.path = path
        self.query = query
        #: The gateway's context of this request, once a handler made it (:meth:`context`).
        self.ctx: RequestContext | None = None

    def context(self, kind: Literal["chat", "embeddings"]) -> RequestContext:
        """A new context for the gateway, kept: an error answered for this request says what
        routing did (the ``x-uniinfer-*`` headers of its route)."""
        ctx = self.ctx = RequestContext(kind, request_id=self.request_id, headers=self.text_headers())
        return ctx

    def text_headers(self) -> Mapping[str, str]:
        """Headers as text (ASGI names are already lower-case), decoded only if a rule reads them."""
        return _TextHeaders(self.headers)


class _TextHeaders(Mapping[str, str]):
    """A read-only text view of ASGI header bytes, decoded on first use."""

    __slots__ = ("_decoded", "_raw")

    def __init__(self, raw: dict[bytes, bytes]) -> None:
        self._raw = raw
        self._decoded: dict[str, str] | None = None

    def _text(self) -> dict[str, str]:
        if self._decoded is None:
            self._decoded = {k.decode("latin-1"): v.decode("latin-1") for k, v in self._raw.items()}
        return self._decoded

    def __getitem__(self, key: str) -> str:
        return self._text()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._text())

    def __len__(self) -> int:
        return len(self._raw)


class App:
    """The ASGI application; ``create_app(config)`` builds one."""

    def __init__(self, gateway: Gateway, routes: Iterable[Mapping[tuple[str, str], Endpoint]] = ()) -> None:
        self.gateway = gateway
        self.config = gateway.config
        key = self.config.server.master_key
        self._master_key = key.get_secret_value().encode() if key else None
        self._max_body = self.config.server.max_body_bytes
        self._max_in_flight = self.config.server.max_concurrent_requests or sys.maxsize
        self.draining = False
        #: Set when the shutdown itself begins (after ``server.drain_delay_seconds``, during which
        #: everything is served as usual): long-lived connections (``/v1/ws``) then take no new
        #: work, finish what runs and close.
        self.stopping = asyncio.Event()
        #: Why requests still in flight at the end of a shutdown are cut (their 503 says it).
        self.cut_reason = "server.graceful_shutdown_seconds passed"
        #: Authenticated API requests being answered (streams until they end), which
        #: ``server.max_concurrent_requests`` bounds; probes and refused requests are not counted.
        self.in_flight = 0
        self._sweeper = _Sweeper()
        # request ids: a random per-process prefix and a counter (unique across replicas,
        # without a system call per request as uuid4 makes)
        self._id_prefix = uuid.uuid4().hex[:16]
        self._id_counter = itertools.count()
        self._routes: dict[tuple[str, str], Endpoint] = {}
        self._prefixes: list[tuple[str, str, Endpoint]] = []
        #: API families not loaded yet, by the path they live at and under (see add_family).
        self._families: dict[str, Callable[[], Mapping[tuple[str, str], Endpoint]]] = {}
        #: WebSocket routes by path: ``handler(app, scope, receive, send)``.
        self.websocket_routes: dict[str, Callable[..., Awaitable[None]]] = {}
        for table in routes:
            self.add_routes(table)

    def _new_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter):016x}"

    def add_routes(self, table: Mapping[tuple[str, str], Endpoint], *, replace: bool = True) -> None:
        """Serve ``table``'s routes; ``replace=False``: not those already served (a family loaded
        late leaves alone a route an integrator added after :func:`create_app`)."""
        for (method, path), endpoint in table.items():
            if not replace and (method, path) in self._routes:
                continue
            self._routes[(method, path)] = endpoint
            if endpoint.prefix:
                self._prefixes.append((method, path.rstrip("/") + "/", endpoint))

    def add_family(self, root: str, load: Callable[[], Mapping[tuple[str, str], Endpoint]]) -> None:
        """Routes at and under ``root`` whose table ``load`` gives when a request first goes there.

        An API family's module (its translation layer and request models) is then imported on
        first use: a process that serves only Chat Completions never pays for the Anthropic and
        Responses families at start-up (about 50 ms of imports, a tenth of a cold start).
        """
        self._families[root] = load

    def _load_family(self, path: str) -> bool:
        """Load the family ``path`` belongs to, if one not loaded yet does (see :meth:`add_family`)."""
        for root, load in self._families.items():
            if path == root or path.startswith(root + "/"):
                table = load()  # an import failing (no file descriptor left...) is tried again next time
                del self._families[root]
                self.add_routes(table, replace=False)
                return True
        return False

    # --- ASGI entry ---------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            handler = self.websocket_routes.get(scope["path"])
            if handler is None:
                await send({"type": "websocket.close", "code": 1008, "reason": "no such endpoint"})
                return
            await handler(self, scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # the HTTP client (and aiohttp, ~0.1 s to import) is ready before the first request
                self.gateway.http.open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.draining = True
                await self.gateway.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        raw = scope["headers"]
        headers = header_map(raw)
        rid = headers.get(b"x-request-id")
        request_id = rid.decode("latin-1") if rid and _REQUEST_ID.match(rid) else self._new_request_id()
        method = scope["method"]
        started = _Started(send, head=method == "HEAD")
        render: ErrorRenderer | None = None  # the endpoint's, once routed
        request: Request | None = None
        counted = False  # in in_flight: authenticated API requests only (probes and strangers never)
        try:
            endpoint = self._route(method, scope["path"])
            render = endpoint.render_error
            if not endpoint.public:
                self.authenticate(headers)
                if self.in_flight >= self._max_in_flight:
                    raise _at_capacity(self._max_in_flight)
                self.in_flight += 1
                counted = True
            try:
                body = await self._read_body(headers, receive)
            except asyncio.CancelledError:  # cut at shutdown while its body was still coming
                task = asyncio.current_task()
                if task is not None:
                    self._cut_at_shutdown(task)
                raise
            request = Request(
                headers, request_id, body, started, scope["path"], scope.get("query_string", b"")
            )
            await self._run(endpoint.handler, request, receive)
        except ClientGoneError:
            return
        except UniInferError as exc:
            extra: Headers = []
            if render is None:  # no endpoint (a 404 or 405): the shape of the path's API family
                render = self._renderer_for(scope["path"])
            if isinstance(exc, MethodNotAllowedError):
                extra.append((b"allow", ", ".join(self._methods(scope["path"])).encode()))
            elif isinstance(exc, AuthenticationError) and exc.provider is None:
                # RFC 9110 11.6.1: a 401 names its scheme (the gateway's; not for a provider's 401,
                # which is about the gateway's key to it, not the caller's)
                extra.append((b"www-authenticate", b'Bearer realm="uniinfer"'))
            route = request.ctx.route if request is not None and request.ctx is not None else None
            if route is not None:  # what routing did: x-uniinfer-* (x-request-id is sent below)
                extra += route_headers(request_id, route)[1:]
            log_failure(request_id, exc)
            try:
                await _send_error(started, request_id, exc, render, extra)
            finally:
                forget_traceback(exc)
        except Exception as exc:  # never a stack trace to the caller
            log.exception("unhandled error (request %s)", request_id)
            try:
                await _send_error(
                    started, request_id, UniInferError("internal error"), render or openai_error_body
                )
            finally:
                forget_traceback(exc)
        finally:
            if counted:
                self.in_flight -= 1

    async def _run(self, handler: Handler, request: Request, receive: Receive) -> None:
        """Run the handler; a client disconnect cancels it (and its upstream call).

        uvicorn's ``send`` silently does nothing once the client has gone, so
        the app must look for the disconnect itself. uvicorn records it on the
        request's cycle, which ``receive`` belongs to: there, one sweep every
        :data:`WATCH_AFTER_SECONDS` checks the requests in flight (a task per
        request cost ~7 % CPU at 128 concurrent 50 ms requests). Under other
        servers a task watches ``receive()`` for ``http.disconnect``, started
        once the request has run that long, so quick requests cost no task.
        """
        task = asyncio.current_task()
        assert task is not None
        cycle = getattr(receive, "__self__", None)
        if isinstance(getattr(cycle, "disconnected", None), bool):
            sweeper = self._sweeper
            sweeper.add(task, cycle)
            try:
                await handler(self, request)
            except asyncio.CancelledError:
                if not sweeper.gone(task):
                    self._cut_at_shutdown(task)
                    raise
                task.uncancel()  # the caller left: the upstream request was cancelled with us
            finally:
                sweeper.discard(task)
            return
        watch = _Watch(task, receive)
        timer = asyncio.get_running_loop().call_later(WATCH_AFTER_SECONDS, watch.start)
        try:
            await handler(self, request)
        except asyncio.CancelledError:
            if not watch.gone:
                self._cut_at_shutdown(task)
                raise
            task.uncancel()
        finally:
            timer.cancel()
            watch.stop()

    def _cut_at_shutdown(self, task: asyncio.Task[Any]) -> None:
        """A request cut while the server shuts down (past its grace period) ends as a 503.

        Raised in place of the ``CancelledError``, so the caller gets an answer in its
        API's shape with ``Retry-After``, and nothing reaches the ASGI server: uvicorn
        logged each cut request's traceback and answered a plain-text 500. (A stream
        under way reports it in-band: :meth:`in_band`.) Any other cancellation goes on.
        """
        error = self._shutdown_cut(task)
        if error is not None:
            raise error from None

    def in_band(self, caught: UniInferError | asyncio.CancelledError, request_id: str) -> UniInferError:
        """What a stream under way reports in its error event for ``caught`` (logged, see
        :func:`log_failure`).

        A :class:`UniInferError` itself; the cut at shutdown (past the grace period) a
        503 ``service_unavailable``, so the client reads why its stream ended instead
        of a connection cut mid-body; any other cancellation is raised again.
        """
        error: UniInferError | None = caught if isinstance(caught, UniInferError) else None
        if error is None:
            task = asyncio.current_task()
            error = self._shutdown_cut(task) if task is not None else None
        if error is None:
            raise caught
        log_failure(request_id, error, mid_stream=True)
        return error

    def _shutdown_cut(self, task: asyncio.Task[Any]) -> ServiceUnavailableError | None:
        # a request whose client left while the server drains was cancelled for that (the
        # sweep's), not cut by the shutdown: nothing to answer, nothing to warn of
        if not (self.draining and task.cancelling()) or self._sweeper.gone(task):
            return None
        task.uncancel()
        return ServiceUnavailableError(
            f"The gateway shut down before this request was answered ({self.cut_reason}); retry it.",
            retry_after=1.0,
        )

    def _route(self, method: str, path: str) -> Endpoint:
        endpoint = self._routes.get((method, path))
        if endpoint is not None:
            return endpoint
        if self._families and self._load_family(path):
            return self._route(method, path)
        for prefix_method, prefix, candidate in self._prefixes:
            if method == prefix_method and path.startswith(prefix):
                return candidate
        if method == "HEAD":  # a GET without its body (see _Started)
            with contextlib.suppress(MethodNotAllowedError):
                return self._route("GET", path)
        if self._methods(path):
            raise MethodNotAllowedError(f"method {method} is not allowed on {path}")
        raise NotFoundError(f"no route for {method} {path}")

    def _methods(self, path: str) -> list[str]:
        """The methods a path answers (for a 405's ``Allow``); HEAD wherever GET."""
        methods = {m for m, p in self._routes if p == path}
        methods |= {m for m, prefix, _ in self._prefixes if path.startswith(prefix)}
        if "GET" in methods:
            methods.add("HEAD")
        return sorted(methods)

    def _renderer_for(self, path: str) -> ErrorRenderer:
        """The error shape of a path's API family, also for a 405 on it, or a 404 under it
        (``/v1/messages/batches`` answers in Anthropic's shape, as ``/v1/messages`` does)."""
        best, render = -1, cast(ErrorRenderer, openai_error_body)
        for (_, route_path), endpoint in self._routes.items():
            if route_path == path:
                return endpoint.render_error
            if len(route_path) > best and path.startswith(route_path.rstrip("/") + "/"):
                best, render = len(route_path), endpoint.render_error
        return render

    @property
    def keyless(self) -> bool:
        """Whether the server has no master key: any client on the network it listens on is let in."""
        return self._master_key is None

    def authenticate(self, headers: Mapping[bytes, bytes]) -> None:
        """The master key as ``Authorization: Bearer <key>`` (OpenAI) or ``x-api-key`` (Anthropic).

        A client may send both (Claude Code with ``ANTHROPIC_API_KEY`` and
        ``ANTHROPIC_AUTH_TOKEN`` set, the first for the provider, the second for the
        gateway): either one holding the key lets it in.
        """
        key = self._master_key
        if key is None:
            if cross_site(headers):
                raise PermissionDeniedError(
                    "A request from a web page of another origin is refused: this gateway has no "
                    "master key (server.master_key), so any page open in a browser could use it."
                )
            return
        api_key = headers.get(b"x-api-key", b"").strip()
        scheme, _, bearer = headers.get(b"authorization", b"").partition(b" ")
        bearer = bearer.strip() if scheme.lower() == b"bearer" else b""
        if not api_key and not bearer:
            raise AuthenticationError(
                "You didn't provide an API key. Send it in the Authorization header as 'Bearer <key>' "
                "(or as x-api-key)."
            )
        # both compared, whichever is present, so that the time taken tells nothing
        matched = hmac.compare_digest(api_key, key) | hmac.compare_digest(bearer, key)
        if not matched:
            raise AuthenticationError("Incorrect API key provided.")

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        kind = headers.get(b"content-type")
        if kind is not None and kind != b"application/json" and self.keyless and _form_like(kind):
            raise UnsupportedMediaTypeError(
                f"Content-Type '{kind.decode('latin-1')[:48]}' is not accepted: send the JSON body "
                "with Content-Type: application/json."
            )
        encoding = headers.get(b"content-encoding")
        if encoding is not None and encoding.strip().lower() not in (b"", b"identity"):
            raise UnsupportedMediaTypeError(
                f"Content-Encoding '{encoding.decode('latin-1')[:32]}' is not supported: "
                "send the JSON body uncompressed."
            )
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            raise _too_large(self._max_body)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGoneError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise _too_large(self._max_body)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


#: The media types a web page may POST to any origin without asking it first (CORS "simple
#: requests"): refused by a gateway without a master key, so that a page in the operator's
#: browser cannot spend its provider credits with a form or a fetch of text. (With a key, such
#: a request cannot carry it: a 401; a client that labels its JSON so, ``curl -d``, is served.)
_FORM_TYPES = frozenset({b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data"})


def cross_site(headers: Mapping[bytes, bytes]) -> bool:
    """Whether a browser sends the request from a page of another origin than the gateway's.

    Its ``Origin`` names another host than ``Host`` (browsers send it with every POST and
    WebSocket, also with a body no form could send: a ``fetch`` of a Blob, ``sendBeacon``), or
    its ``Sec-Fetch-Site`` says ``cross-site``. Clients outside a browser send neither. A
    gateway without a master key refuses such requests: a page the operator visits could
    otherwise spend its provider credits (with a key, the page cannot send it).
    """
    if headers.get(b"sec-fetch-site") == b"cross-site":
        return True
    origin = headers.get(b"origin")
    if origin is None:
        return False
    host = origin.partition(b"://")[2].rstrip(b"/")
    return host.lower() != headers.get(b"host", b"").lower()


def _form_like(kind: bytes) -> bool:
    """Whether the ``Content-Type`` header ``kind`` names one of :data:`_FORM_TYPES`."""
    return kind.partition(b";")[0].strip().lower() in _FORM_TYPES


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """ASGI header lines by name; a field on several lines, its values joined in order (as RFC
    9110 5.3 reads it: see :func:`_combined`)."""
    headers = dict(raw)
    return headers if len(headers) == len(raw) else _combined(raw)


def _combined(raw: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Header lines by name, a repeated field's values joined with ``, `` in order (a list
    field such as ``anthropic-beta`` keeps every value; a repeated ``authorization`` matches
    no key, rather than the last line winning where a proxy in front read the first)."""
    headers: dict[bytes, bytes] = {}
    for name, value in raw:
        headers[name] = headers[name] + b", " + value if name in headers else value
    return headers


class _Sweeper:
    """Cancels the requests whose client has gone, looked for every :data:`WATCH_AFTER_SECONDS`.

    For servers that record a lost connection on the object ``receive`` is a
    method of, as a ``disconnected`` flag (uvicorn's request cycle). The sweep
    runs only while requests are in flight; one that ends before the next
    sweep costs a dict entry.
    """

    __slots__ = ("_cancelled", "_handle", "_loop", "_watched")

    def __init__(self) -> None:
        self._watched: dict[asyncio.Task[Any], Any] = {}
        self._cancelled: set[asyncio.Task[Any]] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, task: asyncio.Task[Any], cycle: Any) -> None:
        self._watched[task] = cycle
        if self._handle is None:
            loop = self._loop = asyncio.get_running_loop()
            self._handle = loop.call_later(WATCH_AFTER_SECONDS, self._sweep)
        elif self._loop is not asyncio.get_running_loop():  # an app served again, on a new loop
            self._handle.cancel()
            self._handle = None
            self.add(task, cycle)

    def discard(self, task: asyncio.Task[Any]) -> None:
        del self._watched[task]
        self._cancelled.discard(task)

    def gone(self, task: asyncio.Task[Any]) -> bool:
        """Whether the sweep cancelled ``task`` because its client left."""
        return task in self._cancelled

    def _sweep(self) -> None:
        for task, cycle in self._watched.items():
            if cycle.disconnected and task not in self._cancelled:
                self._cancelled.add(task)
                task.cancel()
        loop = self._loop
        self._handle = loop.call_later(WATCH_AFTER_SECONDS, self._sweep) if self._watched and loop else None


class _Watch:
    """Cancels a request's task when its client disconnects (started late, see ``App._run``)."""

    __slots__ = ("_receive", "_task", "_watcher", "gone")

    def __init__(self, task: asyncio.Task[Any], receive: Receive) -> None:
        self._task = task
        self._receive = receive
        self._watcher: asyncio.Task[None] | None = None
        self.gone = False

    def start(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            # dropped first: the cancelled task keeps its CancelledError, whose traceback
            # holds this object's frame; a reference back to the task would make each
            # watched request a cycle, freed only by the garbage collector (at 128
            # requests in flight its collections took up to 100 ms: the latency tail)
            watcher.cancel()

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                self._task.cancel()
                return


class _Started:
    """A ``send`` that remembers whether the response has begun; for HEAD, it sends no body.

    (uvicorn drops a HEAD response's body itself; not every ASGI server does.)
    """

    __slots__ = ("_head", "_send", "started")

    def __init__(self, send: Send, *, head: bool = False) -> None:
        self._send = send
        self._head = head
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        elif self._head and message.get("body"):
            message = {**message, "body": b""}
        await self._send(message)


#: Control characters as escapes (``\n`` -> ``\\n``): what a log line quotes of a caller's text.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(32), 127)} | {10: "\\n", 13: "\\r", 9: "\\t"}


def log_failure(request_id: str, exc: UniInferError, *, mid_stream: bool = False) -> None:
    """One line for a request answered with an error: a warning for the gateway's and providers'
    failures (5xx), info for the caller's (4xx). What the caller was told, cut short; its
    message never holds a key (providers' echoes are redacted when the error is made)."""
    status = exc.http_status
    if not log.isEnabledFor(logging.WARNING if status >= 500 else logging.INFO):
        return
    where = f" from provider {exc.provider}" if exc.provider else ""
    when = " mid-stream" if mid_stream else ""
    message = exc.message if len(exc.message) <= 300 else exc.message[:300] + "..."
    message = message.translate(_CONTROLS)  # a caller's text: one line, never a forged one
    log.log(
        logging.WARNING if status >= 500 else logging.INFO,
        "request %s failed%s: %d %s%s: %s",
        request_id,
        when,
        status,
        exc.code,
        where,
        message,
    )


async def _send_error(
    send: _Started,
    request_id: str,
    exc: UniInferError,
    render: ErrorRenderer,
    extra: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    if send.started:
        return  # headers are out; streaming handlers report errors in-band
    # request-id too: Anthropic's name, which its SDKs read (harmless for the other families)
    rid = request_id.encode()
    headers = [(b"x-request-id", rid), (b"request-id", rid), *error_headers(exc), *extra]
    await send_bytes(send, exc.http_status, render(exc), headers)


def _at_capacity(limit: int) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"The gateway is answering its limit of {limit} concurrent requests "
        "(server.max_concurrent_requests); retry shortly.",
        retry_after=1.0,
    )


def _too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(f"The request body exceeds the limit of {limit} bytes.")


def create_app(config: Config | None = None, *, gateway: Gateway | None = None) -> App:
    """The ASGI app for ``config`` (default: the embedded default configuration)."""
    from uniinfer.server import admin_api, openai_api, websocket_api

    if gateway is None:
        if config is None:
            from uniinfer.config import load_config

            config = load_config()
        gateway = Gateway(config)
    app = App(gateway, [openai_api.ROUTES, admin_api.ROUTES])
    app.add_family("/v1/responses", _family("responses_api"))
    app.add_family("/v1/messages", _family("anthropic_api"))
    app.websocket_routes[websocket_api.PATH] = websocket_api.websocket_chat
    return app


def _family(module: str) -> Callable[[], Mapping[tuple[str, str], Endpoint]]:
    """The loader of ``uniinfer.server.<module>``'s ``ROUTES``, imported when first called."""

    def load() -> Mapping[tuple[str, str], Endpoint]:
        routes: Mapping[tuple[str, str], Endpoint] = importlib.import_module(
            f"uniinfer.server.{module}"
        ).ROUTES
        return routes

    return load
