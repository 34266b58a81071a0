"""The one place that sends bytes to providers.

:class:`HttpClient` owns a single pooled ``aiohttp`` session (created on first
use inside the running loop, closed by :meth:`HttpClient.aclose`). What a failed
exchange becomes in the error tree is :mod:`uniinfer.transport_errors`.

Why aiohttp: measured on these machines, its pooled client costs a fraction of
httpx's per request at high concurrency (see docs/architecture.md).

Outbound proxies come from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``,
``NO_PROXY``), read and checked when the client is made: see
:mod:`uniinfer.outbound_proxy`. A failure through a proxy is raised without
aiohttp's exception chained to it (it may hold the proxy's address, its words and
the request, ``Proxy-Authorization`` and all).

The incremental stream framers (SSE, NDJSON) that the provider decoders build on
are :mod:`uniinfer.framing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from uniinfer.errors import RequestCancelledError, UniInferError
from uniinfer.outbound_proxy import DIRECT, Proxies, Route
from uniinfer.transport_errors import (
    cut_or_same,
    page_error,
    proxy_page,
    retry_after_seconds,
    transport_error,
)

if TYPE_CHECKING:
    import aiohttp
    from aiohttp.abc import AbstractResolver, ResolveResult

__all__ = [
    "HttpClient",
    "HttpRequest",
    "HttpResponse",
    "StreamingResponse",
    "Timeouts",
    "retry_after_seconds",
]


_TIMEOUT_CACHE_LIMIT = 64


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds: to connect, between two reads of the body, and for the whole exchange; and for a
    stream, to its first event when that is to come sooner than ``read`` allows (an attempt
    cut by what its request has left of its deadline: once the stream is under way, ``read``
    applies between its reads, so a started answer may outlive the deadline). ``head`` is
    kept by the stream's opener (:func:`uniinfer.streaming.open_chat_stream`), not here."""

    connect: float = 10.0
    read: float = 120.0
    total: float = 600.0
    head: float | None = None


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

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        provider: str,
        session: aiohttp.ClientSession,
        route: Route = DIRECT,
    ) -> None:
        self._resp = resp
        self._provider = provider
        #: The pool it came from: a read failing once that is closed was cut off by the close.
        self._session = session
        #: How it went out: through a proxy, a failure's aiohttp exception is not chained (see of_proxy).
        self._route = route
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers

    async def read(self) -> bytes:
        """The whole body (used for error responses)."""
        import aiohttp

        try:
            return await self._resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = transport_error(exc, self._provider, self._session, self._route)
            if self._route.proxy is None:
                raise failure from exc
        except RuntimeError as exc:  # "Connection closed.": read from a connection aclose() shut
            raise cut_or_same(exc, self._session)  # noqa: B904 - the cut names its cause itself
        raise failure  # out of the handler: see of_proxy

    async def read_chunk(self) -> bytes:
        """The next piece of the body as it arrives; ``b""`` at its end."""
        import aiohttp

        try:
            return await self._resp.content.readany()
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = transport_error(exc, self._provider, self._session, self._route)
            if self._route.proxy is None:
                raise failure from exc
        except RuntimeError as exc:  # "Connection closed.": read from a connection aclose() shut
            raise cut_or_same(exc, self._session)  # noqa: B904 - the cut names its cause itself
        raise failure  # out of the handler: see of_proxy

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
            failure = transport_error(exc, self._provider, self._session, self._route)
            if self._route.proxy is None:
                raise failure from exc
        except RuntimeError as exc:  # "Connection closed.": read from a connection aclose() shut
            raise cut_or_same(exc, self._session)  # noqa: B904 - the cut names its cause itself
        raise failure  # out of the handler: see of_proxy


def _bounded_resolver(seconds: float) -> AbstractResolver:
    """aiohttp's default resolver, each lookup bounded by ``seconds``: a resolver that does not
    answer (no route to the DNS server) would hold a request for all of ``timeout.total``,
    as no socket timeout covers it. Past the bound it is a connect timeout (the lookup's thread
    runs on to the system resolver's own limit, its result unused)."""
    import aiohttp

    class BoundedResolver(aiohttp.ThreadedResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            try:
                async with asyncio.timeout(seconds):
                    return await super().resolve(host, port, family)
            except TimeoutError:
                raise aiohttp.ConnectionTimeoutError(f"no address for {host} within {seconds:g} s") from None

    return BoundedResolver()


class HttpClient:
    """A pooled async HTTP client shared by every provider of a gateway."""

    def __init__(
        self,
        *,
        limit: int = 1000,
        limit_per_host: int = 0,
        keepalive: float = 30.0,
        proxies: Mapping[str, str] | None = None,
        dns_timeout: float = 10.0,
    ) -> None:
        """``proxies``: scheme (``http``, ``https``, and ``no`` for the hosts to reach directly)
        to proxy URL; by default the environment's (:mod:`uniinfer.outbound_proxy`; an unusable
        one is a ConfigError here). ``dns_timeout``: how long a host name's lookup may take
        (aiohttp's socket timeouts start after it; the gateway passes its longest
        ``timeout.connect``)."""
        self._limit = limit
        self._dns_timeout = dns_timeout
        self._limit_per_host = limit_per_host
        self._keepalive = keepalive
        self._proxies = Proxies(proxies)
        #: Whether any request may go through a proxy (an attribute read per request, no call)
        self._proxied = bool(self._proxies)
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
        loop = asyncio.get_running_loop()
        if session is not None and session._loop is loop and not session.closed:
            return session  # every request but the first: one comparison
        if session is not None and session._loop is not loop and not session._loop.is_closed():
            # aiohttp's own error says nothing of it ("Timeout context manager should be used
            # inside a task")
            raise RuntimeError(
                "uniinfer: this gateway's connection pool belongs to another running event loop; a "
                "Gateway serves one loop at a time (give a Client and an AsyncClient a gateway each)"
            )
        # none yet, closed, or of a loop that is gone: a new one
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
            resolver=_bounded_resolver(self._dns_timeout),
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

    def _timeout(self, timeouts: Timeouts, route: Route = DIRECT) -> aiohttp.ClientTimeout:
        """aiohttp's timeout for ``timeouts``; through a proxy, ``timeout.connect`` also bounds the
        proxy's answer to CONNECT (aiohttp's socket timeouts do not: a proxy that accepts the
        connection and never answers would hold the request for all of ``timeout.total``)."""
        key = id(timeouts) if route.proxy is None else -id(timeouts)
        hit = self._timeouts.get(key)
        if hit is not None and hit[0] is timeouts:
            return hit[1]
        import aiohttp

        made = aiohttp.ClientTimeout(
            total=timeouts.total,
            connect=None if route.proxy is None else timeouts.connect,
            sock_connect=timeouts.connect,
            # a read timer is rearmed on every read; when the total comes first anyway
            # (a first attempt's timeouts cut to the request's deadline) it is left out
            sock_read=timeouts.read if timeouts.read < timeouts.total else None,
        )
        # configured timeouts are few and live as long as the gateway; one-offs cut to a
        # later attempt's deadline can only fill the bounded cache (the object held here
        # keeps its id unique)
        if len(self._timeouts) < _TIMEOUT_CACHE_LIMIT:
            self._timeouts[key] = (timeouts, made)
        return made

    async def send(self, request: HttpRequest, timeouts: Timeouts, provider: str) -> HttpResponse:
        """Send a request and read the whole response."""
        import aiohttp

        session = self._get_session()
        route = self._proxies.route(request.url) if self._proxied else DIRECT
        failure: UniInferError
        try:
            async with session.request(
                request.method,
                request.url,
                data=request.body if request.method != "GET" else None,
                headers=route.headers(request.headers),
                timeout=self._timeout(timeouts, route),
                proxy=route.proxy,
                proxy_headers=route.proxy_headers,
            ) as resp:
                body = await resp.read()
                if route.forwarded and proxy_page(resp.status, resp.headers):
                    failure = page_error(resp.status, resp.headers, provider)
                else:
                    return HttpResponse(resp.status, resp.headers, body)
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = transport_error(exc, provider, session, route)
            if route.proxy is None:
                raise failure from exc
        except RuntimeError as exc:  # "Connection closed.": read from a connection aclose() shut
            raise cut_or_same(exc, session)  # noqa: B904 - the cut names its cause itself
        raise failure  # out of the handler: see of_proxy

    async def open_stream(self, request: HttpRequest, timeouts: Timeouts, provider: str) -> StreamingResponse:
        """Send a request and return once the status and headers have arrived.

        The caller must ``close_stream(resp)`` on every path (a
        :class:`~uniinfer.streaming.ChatStream` does when it ends, fails or is
        closed), which returns the connection to the pool or closes it.
        """
        import aiohttp

        session = self._get_session()
        route = self._proxies.route(request.url) if self._proxied else DIRECT
        try:
            opening = session.request(
                request.method,
                request.url,
                data=request.body,
                headers=route.headers(request.headers),
                timeout=self._timeout(timeouts, route),
                proxy=route.proxy,
                proxy_headers=route.proxy_headers,
            )
            resp = await opening  # timeouts.head is the caller's (streaming.open_chat_stream)
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = transport_error(exc, provider, session, route)
            if route.proxy is None:
                raise failure from exc
        except RuntimeError as exc:  # "Connection closed.": read from a connection aclose() shut
            raise cut_or_same(exc, session)  # noqa: B904 - the cut names its cause itself
        else:
            if not (route.forwarded and proxy_page(resp.status, resp.headers)):
                return StreamingResponse(resp, provider, session, route)
            resp.close()
            failure = page_error(resp.status, resp.headers, provider)
        raise failure  # out of the handler: see of_proxy

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
