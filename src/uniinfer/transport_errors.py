"""How a failed exchange with a provider becomes an error of the tree.

A refused or dropped connection is a :class:`~uniinfer.errors.ProviderConnectionError`, an
exceeded connect, read or total timeout a :class:`~uniinfer.errors.ProviderTimeoutError`; a
request cut off because the pool itself was closed under it (its client closed) a
:class:`~uniinfer.errors.RequestCancelledError`: the caller's doing, so the router neither
retries it, nor falls back, nor holds it against the deployment.

Through an outbound proxy (:mod:`uniinfer.outbound_proxy`): a proxy that cannot be reached or
refuses the gateway (407, another 4xx) is an :class:`~uniinfer.errors.OutboundProxyError`, one
that cannot reach the provider (its 5xx to the tunnel; a forwarding proxy's own 5xx page) a
:class:`~uniinfer.errors.ProviderConnectionError`. None of them names the proxy or repeats what
it said, and :mod:`uniinfer.http` raises them without aiohttp's exception chained (its request
holds ``Proxy-Authorization``). Also here: ``Retry-After``, read from an answer's headers.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from uniinfer.errors import (
    OutboundProxyError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RequestCancelledError,
)
from uniinfer.outbound_proxy import DIRECT, Route

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "cut_by_close",
    "cut_or_same",
    "of_proxy",
    "page_error",
    "proxy_page",
    "retry_after_seconds",
    "transport_error",
]


def cut_by_close() -> RequestCancelledError:
    """A request the closing pool cut off: no provider named, it did nothing wrong."""
    return RequestCancelledError(
        "the connection pool was closed (its client or server shutting down) while this request was in flight"
    )


def cut_or_same(exc: RuntimeError, session: aiohttp.ClientSession) -> BaseException:
    """What to raise for a ``RuntimeError`` from aiohttp: once ``session`` is closed, the cut by
    the close (its cause ``exc``); before, ``exc`` itself (a bug, not a transport failure)."""
    if not session.closed:
        return exc
    cut = cut_by_close()
    cut.__cause__ = exc
    return cut


def of_proxy(exc: BaseException, route: Route) -> bool:
    """Whether ``exc`` is the outbound proxy's failure (not reaching it, or its answer to CONNECT).

    Any failure of a request that went through a proxy is raised outside the ``except`` block,
    with no cause and no context: aiohttp's exception may hold the proxy's address, what it said
    and the request, ``Proxy-Authorization`` and all, none of which may travel with the error.
    """
    import aiohttp

    if route.proxy is None:
        return False
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return True
    return isinstance(exc, aiohttp.ClientConnectorError) and (exc.host, exc.port) == route.proxy_address


def transport_error(
    exc: BaseException, provider: str, session: aiohttp.ClientSession, route: Route = DIRECT
) -> ProviderConnectionError | ProviderTimeoutError | RequestCancelledError:
    """The error for a failed exchange; once ``session`` is closed, the close cut it off. The
    outbound proxy's failures name neither the proxy nor anything it said."""
    import aiohttp

    if session.closed:
        return cut_by_close()
    if of_proxy(exc, route):
        return _proxy_error(exc, provider)
    if route.proxy is not None:
        proxied = _through_proxy_error(exc, provider)
        if proxied is not None:
            return proxied
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


def _through_proxy_error(exc: BaseException, provider: str) -> ProviderConnectionError | None:
    """A failure of a request that went through the proxy, whose exception may quote the proxy
    (a malformed answer to CONNECT, say): said without it. None: the usual error says nothing of
    the proxy (a read timeout, a body cut short)."""
    import aiohttp

    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # connect: the proxy, CONNECT included
        return OutboundProxyError(
            f"{provider}: no connection through the outbound proxy within timeout.connect", provider=provider
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ProviderConnectionError(
            f"{provider}: the outbound proxy or the provider closed the connection", provider=provider
        )
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError, aiohttp.ClientPayloadError)):
        return None
    if isinstance(exc, aiohttp.ClientConnectorError):  # to the provider, through the tunnel (TLS)
        return ProviderConnectionError(
            f"{provider}: cannot connect to {exc.host}:{exc.port} through the outbound proxy "
            f"({type(exc).__name__})",
            provider=provider,
        )
    return ProviderConnectionError(
        f"{provider}: the exchange through the outbound proxy failed ({type(exc).__name__})",
        provider=provider,
    )


def _proxy_error(exc: BaseException, provider: str) -> ProviderConnectionError:
    """The outbound proxy's failure: it refused the gateway (407: its credentials; another 4xx: its
    policy), could not reach the provider (its 5xx to the tunnel), or could not itself be reached
    (or its TLS, for an https:// proxy, failed)."""
    import socket

    import aiohttp

    if isinstance(exc, aiohttp.ClientHttpProxyError):
        phrase = _phrase(exc.status)
        if 400 <= exc.status < 500:
            return OutboundProxyError(
                f"{provider}: the outbound proxy refused the request ({exc.status} {phrase})",
                provider=provider,
            )
        return ProviderConnectionError(
            f"{provider}: the outbound proxy could not reach the provider ({exc.status} {phrase})",
            provider=provider,
        )
    if isinstance(exc, aiohttp.ClientSSLError):  # an https:// proxy URL
        untrusted = isinstance(exc, aiohttp.ClientConnectorCertificateError)
        why = (
            "TLS: its certificate is not trusted"
            if untrusted
            else "TLS handshake failed; is it an https:// proxy?"
        )
        return OutboundProxyError(
            f"{provider}: the outbound proxy cannot be reached ({why})", provider=provider
        )
    os_error = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else None
    if isinstance(os_error, socket.gaierror):
        why = "its host name does not resolve"
    elif os_error is not None and os_error.errno:  # its strerror may quote the proxy's address
        why = os.strerror(os_error.errno).lower()
    else:
        why = "no connection"
    return OutboundProxyError(f"{provider}: the outbound proxy cannot be reached ({why})", provider=provider)


#: Statuses a forwarding proxy answers with a page of its own when it cannot reach the provider.
_PROXY_STATUSES = frozenset({502, 503, 504})


def proxy_page(status: int, headers: Mapping[str, str]) -> bool:
    """Whether a plain-http answer through a forwarding proxy is a gateway error that is not the
    provider's JSON: most likely the proxy's own page, which may name it (host, software)."""
    return status in _PROXY_STATUSES and "json" not in headers.get("Content-Type", "")


def page_error(status: int, headers: Mapping[str, str], provider: str) -> ProviderConnectionError:
    """The error for :func:`proxy_page`: its status, nothing of the page."""
    return ProviderConnectionError(
        f"{provider}: {status} {_phrase(status)} from the outbound proxy or the provider (its page is "
        "not repeated)",
        provider=provider,
        upstream_status=status,
        retry_after=retry_after_seconds(headers),
    )


def _phrase(status: int) -> str:
    """The standard reason phrase of ``status`` (never the proxy's own, which may name it)."""
    import http

    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "error"


#: The longest wait a Retry-After may ask for (a day): beyond, a deployment would be out of
#: service for good on one header.
MAX_RETRY_AFTER = 86_400.0


def _seconds(value: float) -> float:
    """A wait from a header's number: ``nan`` is none, and nothing beyond :data:`MAX_RETRY_AFTER`."""
    if value != value:  # nan
        raise ValueError("not a number")
    return min(max(value, 0.0), MAX_RETRY_AFTER)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, ``retry-after`` (seconds or HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return _seconds(float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return _seconds(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # the asctime form carries no zone; HTTP dates are GMT (RFC 9110)
        when = when.replace(tzinfo=datetime.UTC)
    return _seconds(when.timestamp() - (time.time() if now is None else now))
