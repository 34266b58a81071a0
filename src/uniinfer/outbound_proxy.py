"""Which outbound proxy a request to a provider goes through: the environment's.

As curl and Python's urllib read them: ``HTTPS_PROXY`` for ``https://`` URLs, ``HTTP_PROXY`` for
``http://`` ones (lower-case names win, and an empty one turns the variable off), ``NO_PROXY`` for
the hosts reached directly: host names, domains (``corp.example``, ``.corp.example`` and
``*.corp.example`` each cover it and every host under it), ``host:port`` (the port is ignored), IP
addresses, networks (``10.0.0.0/8``) or ``*``; an internationalised name matches in either form
(``bücher.example`` or ``xn--bcher-kva.example``). As in Go's net/http, a loopback host
(``localhost``, ``127.0.0.0/8``, ``::1``) is always reached directly, and ``ALL_PROXY`` is not read
(desktops often point it at a SOCKS proxy, which aiohttp cannot use). A proxy URL without a port
means 80 (443 for ``https://``), as in Python and Go (curl takes 1080).

The variables are checked once, when :class:`Proxies` is made (``uniinfer serve``'s start-up,
an SDK client's construction): a proxy URL that is not ``http(s)://host[:port]`` is a
:class:`~uniinfer.errors.ConfigError` naming the variable, never a failure of each request.
Credentials in the URL go as ``Proxy-Authorization``, which no message repeats. Pure: no I/O.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from uniinfer.errors import ConfigError

__all__ = ["DIRECT", "Proxies", "Route", "loopback"]

#: Variables by the scheme of the URLs they serve.
_VARIABLES = {"https": "HTTPS_PROXY", "http": "HTTP_PROXY"}
#: Upstream URLs whose route is kept; URLs are per provider, path and model, so few.
_CACHE_LIMIT = 4096
#: A host name or IP address as yarl gives it (no spaces, no brackets, no controls).
_HOST = re.compile(r"[A-Za-z0-9._:%-]+")


@dataclass(frozen=True, slots=True)
class Route:
    """How a request to one upstream URL goes out: directly, or through ``proxy``.

    The proxy's credentials go as ``Proxy-Authorization``: on the tunnel's ``CONNECT`` for an
    https URL (``proxy_headers``), on the request itself for a plain-http one, which the proxy
    forwards (``request_headers``; aiohttp sends ``proxy_headers`` only on a tunnel).
    """

    proxy: str | None = None
    proxy_headers: Mapping[str, str] | None = None
    request_headers: Mapping[str, str] | None = None
    #: The proxy's (host, port), to tell its connection failures from the provider's.
    proxy_address: tuple[str, int] | None = None
    #: A plain-http request the proxy forwards (no tunnel): its answer may be the proxy's own.
    forwarded: bool = False

    def headers(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        """A request's headers with what this route adds."""
        return headers if self.request_headers is None else {**headers, **self.request_headers}


#: Straight to the provider.
DIRECT = Route()


class Proxies:
    """The proxies of the environment (or of ``proxies``: scheme to URL, ``no`` the NO_PROXY list)."""

    __slots__ = ("_no_proxy", "_routes", "_through")

    def __init__(self, proxies: Mapping[str, str] | None = None) -> None:
        found = urllib.request.getproxies_environment() if proxies is None else proxies
        #: The route through the proxy for each scheme that has one.
        self._through = {
            scheme: _through(found[scheme], scheme) for scheme in _VARIABLES if found.get(scheme)
        }
        self._no_proxy = found.get("no", "") if self._through else ""
        self._routes: dict[str, Route] = {}

    def __bool__(self) -> bool:
        """Whether any request may go through a proxy (else nothing need be looked up)."""
        return bool(self._through)

    def route(self, url: str) -> Route:
        """How a request to ``url`` goes out, decided once per URL."""
        hit = self._routes.get(url)
        if hit is not None:
            return hit
        found = self._decide(url)
        if len(self._routes) < _CACHE_LIMIT:
            self._routes[url] = found
        return found

    def _decide(self, url: str) -> Route:
        from yarl import URL

        target = URL(url)
        through = self._through.get(target.scheme)
        host = target.raw_host or ""  # IDNA-encoded, as on the wire (``xn--``)
        if through is None or loopback(host) or _bypassed(host, self._no_proxy):
            return DIRECT
        return through


def _through(proxy: str, scheme: str) -> Route:
    """The route through ``proxy`` (the variable's value) for URLs of ``scheme``; a
    ConfigError naming the variable (never its value: it may hold a password) if unusable."""
    import aiohttp
    from yarl import URL

    variable = _VARIABLES[scheme]
    if "://" not in proxy:  # "proxy.corp:3128", as curl and Go take it
        proxy = "http://" + proxy
    try:
        parsed = URL(proxy)
        port = parsed.port  # parses it: out of range raises
        credentials = parsed.user is not None or parsed.password is not None
        auth = aiohttp.encode_basic_auth(parsed.user or "", parsed.password or "") if credentials else None
    except (ValueError, TypeError):  # their messages may quote the URL, password and all
        raise _unusable(variable, "it cannot be parsed as one") from None
    if parsed.scheme not in ("http", "https"):
        raise _unusable(variable, f"a {parsed.scheme} proxy; uniinfer speaks to HTTP(S) proxies only")
    host = parsed.raw_host or ""  # IDNA-encoded, as aiohttp connects to it
    if not host or not _HOST.fullmatch(host) or not port:
        raise _unusable(variable, "no valid host and port")
    bare = str(parsed.with_user(None).with_path("").with_query(None).with_fragment(None))
    address = (host, port)
    forwarded = scheme == "http"
    if auth is None:
        return Route(bare, proxy_address=address, forwarded=forwarded)
    headers = {"Proxy-Authorization": auth}
    if scheme == "https":
        return Route(bare, proxy_headers=headers, proxy_address=address)
    return Route(bare, request_headers=headers, proxy_address=address, forwarded=True)


def _unusable(variable: str, why: str) -> ConfigError:
    return ConfigError(
        f"the environment's {variable} (or {variable.lower()}) is not a usable proxy URL ({why}): "
        "give http://[user:password@]host[:port], or unset it"
    )


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` names ``host``: ``*``, the host itself, a domain it is under, its
    address, or a network (CIDR) its address is in; ports are ignored."""
    host = host.lower().rstrip(".")
    address = _address(host)
    for entry in (_ascii(e.strip().lower()) for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            with contextlib.suppress(ValueError):
                if address is not None and address in ipaddress.ip_network(entry, strict=False):
                    return True
            continue
        name = entry
        if name.startswith("["):  # [::1] or [::1]:8080
            name = name[1:].partition("]")[0]
        elif name.count(":") == 1:  # host:port (a bare IPv6 address has more colons)
            name = name.partition(":")[0]
        named = _address(name)
        if named is not None:
            if named == address:
                return True
            continue
        name = name.removeprefix("*.").strip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _ascii(entry: str) -> str:
    """A NO_PROXY entry as host names go on the wire: an internationalised name IDNA-encoded
    (``bücher.example``: ``xn--bcher-kva.example``); one that cannot be, as it is (it matches no host)."""
    if entry.isascii():
        return entry
    try:
        return entry.encode("idna").decode("ascii")
    except UnicodeError:
        return entry


def loopback(host: str) -> bool:
    """Whether ``host`` is this machine: ``localhost``, ``127.0.0.0/8``, ``::1`` (also IPv4-mapped)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    address = _address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address is not None and address.is_loopback
