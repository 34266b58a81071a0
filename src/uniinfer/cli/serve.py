"""Running the server with uvicorn, with graceful shutdown.

On SIGTERM/SIGINT the app is marked draining (``/ready`` answers 503) and,
after ``server.drain_delay_seconds`` (default 0) of serving as usual, the time
a load balancer needs to see that and stop sending, uvicorn closes its
listening socket (new connections are refused) and waits up to
``server.graceful_shutdown_seconds`` for in-flight requests and streams to
end. Requests still running then are cut (a request whose answer has not
started gets a 503 ``service_unavailable``, a stream under way that error as
its last event), and the lifespan shutdown closes
the upstream connection pool. A second signal during the delay starts the
drain at once; a second SIGINT (Ctrl-C) during the drain cuts at once. A
shutdown that was asked for exits 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, cast

from uniinfer.config import Config

if TYPE_CHECKING:
    import asyncio

__all__ = ["ListenError", "log_config", "run"]


class ListenError(Exception):
    """The server cannot listen where it was told to; the message names the address and why."""


def _freeze_startup_objects() -> None:
    """Keep what start-up built out of the garbage collector's walks.

    Modules, pydantic schemas, the configuration and the app live as long as
    the process; every full collection would walk them all again.
    ``gc.freeze()`` moves them to a permanent generation, and a higher
    young-generation threshold keeps collections (and their pauses) off the
    request path: requests free what they allocate by reference counting, so
    under load the default threshold ran one young collection per ~18
    requests and this one none (a small CPU saving, see docs/architecture.md).
    No collection runs first: start-up leaves next to no garbage (5
    unreachable objects of 55,000 when measured), and a full collection would
    cost ~20 ms of cold start.
    """
    import gc

    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


async def _cut(tasks: set[asyncio.Task[None]], *, cancel: bool) -> None:
    """Let the requests cut at shutdown answer before the loop ends (on a forced exit: ``cancel`` them).

    Past the grace period uvicorn cancels the requests left and does not wait
    for them; on a second Ctrl-C it cancels nothing. Each cut request still
    answers (a 503 where nothing was sent, see ``App._run``) and closes its
    upstream connection.
    """
    import asyncio

    left = list(tasks)
    if cancel:  # (once: a request cut twice could not answer its 503)
        for task in left:
            task.cancel("the gateway is shutting down")
    if left:
        await asyncio.wait(left, timeout=1.0)


def _check_listen(host: str, port: int) -> None:
    """Bind ``host:port`` the way uvicorn is about to, and let go: a failure is a :class:`ListenError`.

    uvicorn reports a port in use (or a host that is not this machine's) by
    logging the bare ``OSError`` among its start-up lines and exiting 3,
    while every other failure of the CLI is one ``error: ...`` line and exit
    1; it offers no hook to do otherwise. So the address is tried first, as
    asyncio's ``create_server`` binds it (every address the host resolves to,
    ``SO_REUSEADDR`` on POSIX, IPv6 sockets v6-only), so the check fails
    exactly when uvicorn would. It is a check, not a reservation: another
    process taking the port in the milliseconds before uvicorn binds it still
    gets uvicorn's own report.
    """
    import errno
    import os
    import socket
    import sys

    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {where}: cannot resolve the host ({exc.strerror})") from None
    hints = {
        errno.EADDRINUSE: "another process listens there; choose another port with --port or server.port",
        errno.EADDRNOTAVAIL: "the host is not an address of this machine",
        errno.EACCES: "not permitted to this user",
    }
    for family, kind, proto, _, address in dict.fromkeys(infos):  # in order, without repeats
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as exc:  # a family this kernel lacks (IPv6): asyncio skips it too
            if exc.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
                continue
            raise ListenError(f"cannot listen on {where}: {exc.strerror or exc}") from None
        with sock:
            if os.name == "posix" and sys.platform != "cygwin":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                reason = reason[:1].lower() + reason[1:]  # "Address already in use" mid-sentence
                hint = hints.get(exc.errno or 0)
                raise ListenError(
                    f"cannot listen on {where}: {reason}" + (f" ({hint})" if hint else "")
                ) from None


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration with uniinfer's own loggers on its handler, at ``level``
    (without one, they went to Python's last-resort handler: warnings and errors only, and
    ``--log-level debug`` showed none of uniinfer's)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["uniinfer"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def run(config: Config, *, log_level: str = "info") -> None:
    import asyncio
    import socket

    import uvicorn

    from uniinfer import eager_writes
    from uniinfer.server import create_app

    app = create_app(config)
    _freeze_startup_objects()

    delay = config.server.drain_delay_seconds

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            first = not app.draining
            app.draining = True  # /ready answers 503 from now on
            if first and delay > 0:
                # serve on while load balancers take this replica out (signal-safe: the
                # loop's self-pipe), then drain; unless a second signal started it already
                loop = asyncio.get_running_loop()  # a signal handler runs in the loop's thread
                loop.call_soon_threadsafe(loop.call_later, delay, self._drain_after_delay, sig, frame)
                return
            super().handle_exit(sig, frame)

        def _drain_after_delay(self, sig: int, frame: Any) -> None:
            if not self.should_exit:
                super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    # uvicorn raises the signals it caught again once it has shut down (for a
                    # program that embeds it): this process would then die of its SIGTERM
                    # (exit 143) after a clean drain, and a second Ctrl-C became a
                    # KeyboardInterrupt inside the loop (tracebacks, an unclosed pool).
                    # Here the shutdown was asked for and is done: exit 0.
                    self._captured_signals.clear()

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            app.draining = True  # also when asked to exit without a signal
            app.stopping.set()  # WebSocket sessions finish their streams and close (1001)
            await super().shutdown(sockets)
            if self.force_exit:  # not the grace period: a second Ctrl-C ended the drain
                app.cut_reason = "a second Ctrl-C forced the shutdown"
            await _cut(self.server_state.tasks, cancel=self.force_exit)
            if self.force_exit:  # uvicorn skips the lifespan shutdown then: the pool is closed all the same
                await self.lifespan.shutdown()

        async def serve(self, sockets: list[socket.socket] | None = None) -> None:
            eager_writes.install(asyncio.get_running_loop())  # this process owns the loop
            await super().serve(sockets)

    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    class _DrainingWebSockets(WebSocketsSansIOProtocol):
        """uvicorn's WebSocket protocol, except at shutdown: it failed every open session at once
        with 1012, cutting streams mid-answer; a session now finishes its streams within the
        grace period and closes itself with 1001 (``uniinfer.server.websocket_api``)."""

        def shutdown(self) -> None:
            if self.handshake_complete and not self.close_sent:
                return
            super().shutdown()

    server = _Server(
        uvicorn.Config(
            app,
            ws=_DrainingWebSockets,
            http=bounded_head_protocol(),
            # a frame's limit is the body's (uvicorn's own default, 16 MiB, overrode it both ways)
            ws_max_size=config.server.max_body_bytes,
            host=config.server.host,
            port=config.server.port,
            loop="uvloop",
            lifespan="on",
            access_log=False,
            log_level=log_level,
            log_config=log_config(log_level),
            # the seconds as configured (uvicorn's hint says int, it waits with asyncio.wait_for);
            # round() made 0.4 no grace at all
            timeout_graceful_shutdown=cast(int, config.server.graceful_shutdown_seconds),
            server_header=False,
            # uniinfer reads no client address; the X-Forwarded-* rewrite costs every request
            proxy_headers=False,
        )
    )
    _check_listen(config.server.host, config.server.port)
    if config.server.master_key is None:
        _warn_keyless(config.server.host)
    server.run()


#: The most bytes of a request's head (request line and headers) the server buffers: more is
#: a 431 and the connection closed (nginx's default is 8 KiB per line, 32 KiB in all; an
#: Anthropic client's head is about 2 KiB).
MAX_HEAD_BYTES = 64 * 1024

_BOUNDED: list[type] = []
#: How long a refused connection is read (and what comes dropped) before it is closed.
_LINGER_SECONDS = 1.0


def bounded_head_protocol() -> type:
    """uvicorn's httptools protocol refusing a request head still incomplete past
    :data:`MAX_HEAD_BYTES` (a head that comes whole in one read, at most the loop's read size,
    is parsed as ever), and answering bytes that are no HTTP request in OpenAI's error shape
    with a request id, both as the app answers.

    uvicorn bounds none under httptools: a client could make the server hold any amount of
    header bytes before the app saw the request (a 16 MiB header was buffered whole, before
    its 401). Counted in ``data_received`` from uvicorn's own state, one call per read.
    """
    if _BOUNDED:
        return _BOUNDED[0]
    import uuid

    import orjson
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    def refusal(status: bytes, message: str, code: str) -> bytes:
        """A refusal before the app saw the request: OpenAI's error shape and a request id, as
        every answer of the app has (uvicorn's own 400 is plain text without one)."""
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
        body = orjson.dumps({"error": error})
        return b"".join(
            (
                b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n",
                b"x-request-id: " + uuid.uuid4().hex.encode() + b"\r\nconnection: close\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body,
            )
        )

    too_large = f"The request's headers are too large (at most {MAX_HEAD_BYTES // 1024} KiB)."

    class _BoundedHead(HttpToolsProtocol):
        _head = 0  # bytes read while a request's head is incomplete (after the read it began in)
        _seen: Any = None  # the scope of the head counted
        _refused = False

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # what the client still sends after its 431, until the close
            super().data_received(data)
            if self.transport.get_protocol() is not self:
                return  # upgraded (a WebSocket): the connection is another protocol's now
            # a head is under way when a request began (its scope) that has no cycle yet (made
            # when its headers are complete): read from uvicorn's state, no callback of its
            # overridden (one call per read, not three per request)
            cycle, scope = self.cycle, self.scope
            if scope is None or (cycle is not None and cycle.scope is scope):
                self._head = 0
                return
            if scope is not self._seen:  # it began in this read (after earlier requests' bytes)
                self._seen, self._head = scope, 0
                return
            self._head += len(data)
            if self._head > MAX_HEAD_BYTES and not self.transport.is_closing():
                if cycle is not None and not cycle.response_complete:
                    return  # an earlier request's answer is under way: refused after it
                self._refuse()

        def _refuse(self) -> None:
            # a lingering close: the 431, then what still comes is read and dropped for a
            # moment (closed at once, the client's next write would reset the connection and
            # lose the answer)
            self._refused = True
            self.transport.write(
                refusal(b"431 Request Header Fields Too Large", too_large, "request_too_large")
            )
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(_LINGER_SECONDS, self.transport.close)

        def send_400_response(self, msg: str) -> None:
            # bytes that are no HTTP/1.1 request (uvicorn's message: "Invalid HTTP request received.")
            self.transport.write(refusal(b"400 Bad Request", msg, "invalid_request"))
            self.transport.close()

    _BOUNDED.append(_BoundedHead)
    return _BoundedHead


def _warn_keyless(host: str) -> None:
    """Say at start that the gateway takes requests without a key (with uvicorn's first lines)."""
    import ipaddress
    import logging

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        loopback = False
    who = "any program on this machine" if loopback else f"anyone who can reach {host}"
    logging.getLogger("uniinfer.server").warning(
        "no master key (server.master_key): %s can use the configured providers", who
    )
