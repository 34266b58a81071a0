"""The one place that sends bytes to providers.

:class:`HttpClient` owns a single pooled ``aiohttp`` session (created on first
use inside the running loop, closed by :meth:`HttpClient.aclose`). It maps
transport failures to the error tree: a refused or dropped connection is a
:class:`~uniinfer.errors.ProviderConnectionError`, an exceeded connect, read
or total timeout a :class:`~uniinfer.errors.ProviderTimeoutError`. A request
cut off because the pool itself was closed under it (its client closed) is a
:class:`~uniinfer.errors.RequestCancelledError` instead: the caller's doing, so
the router neither retries it, nor falls back, nor holds it against the
deployment.

Why aiohttp: measured on these machines, its pooled client costs a fraction of
httpx's per request at high concurrency (see docs/architecture.md).

Outbound proxies come from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``,
``NO_PROXY``), read and checked when the client is made: see
:mod:`uniinfer.outbound_proxy`. A proxy that cannot be reached or refuses the
gateway (``407``) is an :class:`~uniinfer.errors.OutboundProxyError`, one that cannot
reach the provider a :class:`~uniinfer.errors.ProviderConnectionError`; neither names
the proxy, repeats what it said or carries aiohttp's exception (its request holds
``Proxy-Authorization``).

This module also holds the incremental stream framers (SSE, NDJSON) that the
provider decoders build on: pure, byte-boundary safe, no I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from uniinfer.errors import (
    OutboundProxyError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RequestCancelledError,
)
from uniinfer.outbound_proxy import DIRECT, Proxies, Route

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "HttpClient",
    "HttpRequest",
    "HttpResponse",
    "NDJSONFramer",
    "SSEBytesFramer",
    "SSEFramer",
    "StreamingResponse",
    "Timeouts",
    "retry_after_seconds",
]


_TIMEOUT_CACHE_LIMIT = 64


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds: to connect, between two reads of the body, and for the whole exchange."""

    connect: float = 10.0
    read: float = 120.0
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A fully built upstream request: what a provider adapter's pure builder returns."""

    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


class StreamingResponse:
    """An open upstream response whose body is read incrementally."""

    def __init__(self, resp: aiohttp.ClientResponse, provider: str, session: aiohttp.ClientSession) -> None:
        self._resp = resp
        self._provider = provider
        #: The pool it came from: a read failing once that is closed was cut off by the close.
        self._session = session
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers

    async def read(self) -> bytes:
        """The whole body (used for error responses)."""
        import aiohttp

        try:
            return await self._resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _transport_error(exc, self._provider, self._session) from exc
        except RuntimeError as exc:  # "Connection closed.": read from a connection aclose() shut
            raise _cut_or_same(exc, self._session)  # noqa: B904 - the cut names its cause itself

    async def read_chunk(self) -> bytes:
        """The next piece of the body as it arrives; ``b""`` at its end."""
        import aiohttp

        try:
            return await self._resp.content.readany()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _transport_error(exc, self._provider, self._session) from exc
        except RuntimeError as exc:  # "Connection closed.": read from a connection aclose() shut
            raise _cut_or_same(exc, self._session)  # noqa: B904 - the cut names its cause itself

    def at_eof(self) -> bool:
        """The whole body has arrived and been read."""
        return self._resp.content.at_eof()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive; a cut connection raises ProviderConnectionError."""
        import aiohttp

        content = self._resp.content
        try:
            while True:
                data = await content.readany()
                if not data:
                    return
                yield data
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _transport_error(exc, self._provider, self._session) from exc
        except RuntimeError as exc:  # "Connection closed.": read from a connection aclose() shut
            raise _cut_or_same(exc, self._session)  # noqa: B904 - the cut names its cause itself


class HttpClient:
    """A pooled async HTTP client shared by every provider of a gateway."""

    def __init__(
        self,
        *,
        limit: int = 1000,
        limit_per_host: int = 0,
        keepalive: float = 30.0,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        """``proxies``: scheme (``http``, ``https``, and ``no`` for the hosts to reach directly)
        to proxy URL; by default the environment's (:mod:`uniinfer.outbound_proxy`; an unusable
        one is a ConfigError here)."""
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._keepalive = keepalive
        self._proxies = Proxies(proxies)
        self._session: aiohttp.ClientSession | None = None
        #: Set by :meth:`seal`: no pool is opened any more.
        self._sealed = False
        #: aiohttp's timeout per Timeouts object, by identity (a dataclass hash and
        #: equality check per request cost more than building the key): (object, timeout)
        self._timeouts: dict[int, tuple[Timeouts, aiohttp.ClientTimeout]] = {}

    def open(self) -> None:
        """Create the pooled session now (inside the running loop) rather than on first use."""
        self._get_session()

    def _get_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed or session._loop.is_closed():
            if self._sealed:
                raise RequestCancelledError("the client is closed: it sends no more requests")
            import aiohttp

            if session is not None and not session.closed:
                _abandon(session)

            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=self._limit_per_host,
                keepalive_timeout=self._keepalive,
                ttl_dns_cache=300,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                # a provider's cookies must not follow one caller's request into another's
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
                # a default User-Agent keeps aiohttp's own out; skip_auto_headers would
                # instead cost a sorted header set built per request (~10 µs)
                headers={"User-Agent": "uniinfer"},
            )
            self._session = session
        return session

    def _timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        hit = self._timeouts.get(id(timeouts))
        if hit is not None and hit[0] is timeouts:
            return hit[1]
        import aiohttp

        made = aiohttp.ClientTimeout(
            total=timeouts.total,
            sock_connect=timeouts.connect,
            # a read timer is rearmed on every read; when the total comes first anyway
            # (a first attempt's timeouts cut to the request's deadline) it is left out
            sock_read=timeouts.read if timeouts.read < timeouts.total else None,
        )
        # configured timeouts are few and live as long as the gateway; one-offs cut to a
        # later attempt's deadline can only fill the bounded cache (the object held here
        # keeps its id unique)
        if len(self._timeouts) < _TIMEOUT_CACHE_LIMIT:
            self._timeouts[id(timeouts)] = (timeouts, made)
        return made

    async def send(self, request: HttpRequest, timeouts: Timeouts, provider: str) -> HttpResponse:
        """Send a request and read the whole response."""
        import aiohttp

        session = self._get_session()
        route = self._proxies.route(request.url) if self._proxies else DIRECT
        try:
            async with session.request(
                request.method,
                request.url,
                data=request.body if request.method != "GET" else None,
                headers=route.headers(request.headers),
                timeout=self._timeout(timeouts),
                proxy=route.proxy,
                proxy_headers=route.proxy_headers,
            ) as resp:
                body = await resp.read()
                return HttpResponse(resp.status, resp.headers, body)
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = _transport_error(exc, provider, session, route)
            if not _of_proxy(exc, route):
                raise failure from exc
        except RuntimeError as exc:  # "Connection closed.": read from a connection aclose() shut
            raise _cut_or_same(exc, session)  # noqa: B904 - the cut names its cause itself
        raise failure  # out of the handler: see _of_proxy

    async def open_stream(self, request: HttpRequest, timeouts: Timeouts, provider: str) -> StreamingResponse:
        """Send a request and return once the status and headers have arrived.

        The caller must ``close_stream(resp)`` on every path (a
        :class:`~uniinfer.streaming.ChatStream` does when it ends, fails or is
        closed), which returns the connection to the pool or closes it.
        """
        import aiohttp

        session = self._get_session()
        route = self._proxies.route(request.url) if self._proxies else DIRECT
        try:
            resp = await session.request(
                request.method,
                request.url,
                data=request.body,
                headers=route.headers(request.headers),
                timeout=self._timeout(timeouts),
                proxy=route.proxy,
                proxy_headers=route.proxy_headers,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = _transport_error(exc, provider, session, route)
            if not _of_proxy(exc, route):
                raise failure from exc
        except RuntimeError as exc:  # "Connection closed.": read from a connection aclose() shut
            raise _cut_or_same(exc, session)  # noqa: B904 - the cut names its cause itself
        else:
            return StreamingResponse(resp, provider, session)
        raise failure  # out of the handler: see _of_proxy

    @staticmethod
    def close_stream(stream: StreamingResponse, *, complete: bool) -> None:
        """Return a fully read connection to the pool, or close a half-read one."""
        if complete:
            stream._resp.release()
        else:
            stream._resp.close()

    @property
    def open_connections(self) -> int:
        """Connections held by the pool (for leak tests and /ready)."""
        session = self._session
        if session is None or session.closed or session.connector is None:
            return 0
        connector = session.connector
        acquired = len(getattr(connector, "_acquired", ()))
        idle = sum(len(v) for v in getattr(connector, "_conns", {}).values())
        return acquired + idle

    @property
    def busy_connections(self) -> int:
        """Connections checked out by a request in flight."""
        session = self._session
        if session is None or session.closed or session.connector is None:
            return 0
        return len(getattr(session.connector, "_acquired", ()))

    def seal(self) -> None:
        """Open no pool from now on: a request raises :class:`~uniinfer.errors.RequestCancelledError`.

        For an owner that closes for good (the SDK's clients): a request still in
        flight when it closed (asleep between two retries, say) must not open a
        fresh pool that nothing would close. :meth:`aclose` alone leaves the client
        able to open a new pool on next use.
        """
        self._sealed = True

    async def aclose(self) -> None:
        """Close the pool; requests in flight on it fail with RequestCancelledError."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


def _abandon(session: aiohttp.ClientSession) -> None:
    """Let go of a session whose event loop has ended (``asyncio.run`` returned without ``aclose``).

    Nothing can be awaited on a closed loop: the session is marked closed and its
    connector drops what it can, so the next loop gets a fresh pool instead of
    ``RuntimeError: Event loop is closed``. Sockets left open by the old loop are
    reported by Python as ``ResourceWarning``s, as any unclosed socket is.
    """
    connector = session.connector
    session.detach()
    if connector is not None:
        with contextlib.suppress(Exception):
            connector._close()


def _cut_by_close() -> RequestCancelledError:
    """A request the closing pool cut off: no provider named, it did nothing wrong."""
    return RequestCancelledError(
        "the connection pool was closed (its client or server shutting down) while this request was in flight"
    )


def _cut_or_same(exc: RuntimeError, session: aiohttp.ClientSession) -> BaseException:
    """What to raise for a ``RuntimeError`` from aiohttp: once ``session`` is closed, the cut by
    the close (its cause ``exc``); before, ``exc`` itself (a bug, not a transport failure)."""
    if not session.closed:
        return exc
    cut = _cut_by_close()
    cut.__cause__ = exc
    return cut


def _of_proxy(exc: BaseException, route: Route) -> bool:
    """Whether ``exc`` is the outbound proxy's failure. Its error is then raised outside the
    ``except`` block, with no cause and no context: aiohttp's exception holds the proxy's address
    and its request, ``Proxy-Authorization`` and all, which must not travel with it."""
    import aiohttp

    if route.proxy is None:
        return False
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return True
    return isinstance(exc, aiohttp.ClientConnectorError) and (exc.host, exc.port) == route.proxy_address


def _transport_error(
    exc: BaseException, provider: str, session: aiohttp.ClientSession, route: Route = DIRECT
) -> ProviderConnectionError | ProviderTimeoutError | RequestCancelledError:
    """The error for a failed exchange; once ``session`` is closed, the close cut it off. The
    outbound proxy's failures name neither the proxy nor anything it said."""
    import aiohttp

    if session.closed:
        return _cut_by_close()
    if _of_proxy(exc, route):
        return _proxy_error(exc, provider)
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        # which timer fired: the operator's lead to the setting (providers.<name>.timeout)
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            why = "no connection within timeout.connect"
        elif isinstance(exc, aiohttp.SocketTimeoutError):
            why = "no data from the provider for longer than timeout.read"
        else:
            why = "no complete answer within timeout.total (or what was left of the request's deadline)"
        return ProviderTimeoutError(f"{provider}: timed out: {why}", provider=provider)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ProviderConnectionError(
            f"{provider}: the connection closed before the response was complete", provider=provider
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ProviderConnectionError(f"{provider}: the provider closed the connection", provider=provider)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ProviderConnectionError(
            f"{provider}: cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc.os_error})",
            provider=provider,
        )
    return ProviderConnectionError(f"{provider}: {type(exc).__name__}: {exc}", provider=provider)


def _proxy_error(exc: BaseException, provider: str) -> ProviderConnectionError:
    """The outbound proxy's failure: it refused the gateway (407: its credentials), could not
    reach the provider (its 5xx to the tunnel), or could not itself be reached."""
    import socket

    import aiohttp

    if isinstance(exc, aiohttp.ClientHttpProxyError):
        phrase = _phrase(exc.status)
        if exc.status == 407:
            return OutboundProxyError(
                f"{provider}: the outbound proxy refused the request (407 {phrase})", provider=provider
            )
        return ProviderConnectionError(
            f"{provider}: the outbound proxy could not reach the provider ({exc.status} {phrase})",
            provider=provider,
        )
    os_error = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else None
    if isinstance(os_error, socket.gaierror):
        why = "its host name does not resolve"
    elif os_error is not None and os_error.errno:  # its strerror may quote the proxy's address
        why = os.strerror(os_error.errno).lower()
    else:
        why = "no connection"
    return OutboundProxyError(f"{provider}: the outbound proxy cannot be reached ({why})", provider=provider)


def _phrase(status: int) -> str:
    """The standard reason phrase of ``status`` (never the proxy's own, which may name it)."""
    import http

    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "error"


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, ``retry-after`` (seconds or HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # the asctime form carries no zone; HTTP dates are GMT (RFC 9110)
        when = when.replace(tzinfo=datetime.UTC)
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


class SSEBytesFramer:
    """Incremental Server-Sent Events parser (WHATWG rules), safe at any byte boundary.

    ``feed`` returns the complete events so far as ``(event, data)`` pairs:
    ``event`` is text (``""`` when the stream sent none), ``data`` the event's
    bytes as sent, so an event can be passed on without being decoded and
    encoded again (invalid UTF-8 is left for its consumer to repair, as
    :class:`SSEFramer` does). Lines end with LF, CRLF or a lone CR; ``id``,
    ``retry`` and comments are skipped.
    """

    __slots__ = ("_after_cr", "_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._after_cr = False
        self._event = ""
        self._data: list[bytes] = []

    @property
    def idle(self) -> bool:
        """No part of an event is held: the next bytes start a new one."""
        return not (self._buf or self._data or self._event or self._after_cr)

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        if self._data or self._event or self._after_cr or b"\r" in chunk:
            return self._take(self._lines(chunk), [])
        # The usual case, LF line endings between events: cut whole events
        # at blank lines and take a lone ``data:`` line without a line loop.
        # (The buffer never holds a CR: a line cut at one is taken, not kept.)
        buf = self._buf + chunk if self._buf else chunk
        end = buf.rfind(b"\n\n")
        if end == -1:
            self._buf = buf
            return []
        self._buf = buf[end + 2 :]
        head = buf[:end]
        if head.startswith(b"data: "):
            payloads = head[6:].split(b"\n\ndata: ")
            if head.count(b"\n") == 2 * len(payloads) - 2:  # nothing but one data line per event
                return [("", payload) for payload in payloads]
        events: list[tuple[str, bytes]] = []
        for block in head.split(b"\n\n"):
            if block[:5] == b"data:" and b"\n" not in block:
                events.append(("", block[6:] if block[5:6] == b" " else block[5:]))
            else:
                self._take([*block.split(b"\n"), b""], events)
        return events

    def _take(self, lines: list[bytes], events: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """Add the events that ``lines`` complete to ``events``; keep a partial one."""
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append((self._event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data = self._data = []
                self._event = ""
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line == b"data":
                data.append(b"")
            elif line.startswith(b"event:"):
                value = line[7:] if line[6:7] == b" " else line[6:]
                self._event = value.decode("utf-8", "replace")
            elif line == b"event":
                self._event = ""
        return events

    def close(self) -> list[tuple[str, bytes]]:
        """Flush an event the stream ended without a blank line after."""
        return self.feed(b"\n\n") if self._buf or self._data else []

    def _lines(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        lines: list[bytes] = []
        start = 0
        if self._after_cr:
            # The CR that ended the last feed may be the first half of a CRLF.
            self._after_cr = False
            if buf[:1] == b"\n":
                start = 1
        if b"\r" not in buf:  # the usual case: LF only
            end = buf.find(b"\n", start)
            while end != -1:
                lines.append(buf[start:end])
                start = end + 1
                end = buf.find(b"\n", start)
            self._buf = buf[start:]
            return lines
        size = len(buf)
        while start < size:
            end = buf.find(b"\n", start)
            nxt = end + 1
            cr = buf.find(b"\r", start)
            if cr != -1 and (end == -1 or cr < end):
                end = cr
                if cr == size - 1:
                    self._after_cr = True
                    nxt = size
                else:
                    nxt = cr + 2 if buf[cr + 1] == 0x0A else cr + 1
            if end == -1:
                break
            lines.append(buf[start:end])
            start = nxt
        self._buf = buf[start:]
        return lines


class SSEFramer:
    """:class:`SSEBytesFramer` with each event's data decoded as text.

    The SSE standard decodes with replacement: bad bytes never stop a stream.
    """

    __slots__ = ("_framer",)

    def __init__(self) -> None:
        self._framer = SSEBytesFramer()

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        return [(event, data.decode("utf-8", "replace")) for event, data in self._framer.feed(chunk)]

    def close(self) -> list[tuple[str, str]]:
        """Flush an event the stream ended without a blank line after."""
        return [(event, data.decode("utf-8", "replace")) for event, data in self._framer.close()]


class NDJSONFramer:
    """Incremental newline-delimited JSON framer: returns complete lines."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        *lines, self._buf = buf.split(b"\n")
        return [line for line in lines if line.strip()]

    def close(self) -> list[bytes]:
        rest, self._buf = self._buf, b""
        return [rest] if rest.strip() else []
