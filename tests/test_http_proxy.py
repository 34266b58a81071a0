"""Outbound proxies from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``).

Which proxy an upstream URL takes is a pure decision, tested case by case; end to end, the
official openai SDK talks to the gateway, which reaches a provider under a name only the proxy
can resolve (``openai.fake.test``) through a forwarding proxy on 127.0.0.1 that records what it
was sent: the request line in absolute form and the proxy's credentials as
``Proxy-Authorization``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import make_config
from tests.fakes.common import run_fake
from tests.fakes.openai import openai_app
from tests.server_helpers import serve
from uniinfer.errors import ConfigError, OutboundProxyError, ProviderConnectionError
from uniinfer.http import HttpClient, HttpRequest, Timeouts
from uniinfer.outbound_proxy import Proxies, Route
from uniinfer.server import create_app
from uniinfer.transport_errors import transport_error

PROXIES = {"https": "http://proxy.corp:3128", "http": "http://proxy.corp:3129"}


def route(url: str, proxies: dict[str, str]) -> Route:
    return Proxies(proxies).route(url)


@pytest.mark.parametrize(
    ("url", "proxies", "expected"),
    [
        ("https://api.openai.com/v1/chat/completions", PROXIES, "http://proxy.corp:3128"),
        ("http://vllm.internal:8000/v1/chat/completions", PROXIES, "http://proxy.corp:3129"),
        ("https://api.openai.com/v1", {"http": "http://p:1"}, None),  # no proxy for https
        ("https://api.openai.com/v1", {"all": "socks5h://127.0.0.1:7890"}, None),  # ALL_PROXY: not read
        (
            "https://api.openai.com/v1",
            {"https": "proxy.corp:3128"},
            "http://proxy.corp:3128",
        ),  # as curl takes it
        # NO_PROXY: a host, a domain (bare, with a dot or *.), with a port, an address, a network, everything
        ("https://api.openai.com/v1", {**PROXIES, "no": "api.openai.com"}, None),
        ("https://api.openai.com/v1", {**PROXIES, "no": "openai.com"}, None),
        ("https://api.openai.com/v1", {**PROXIES, "no": " .openai.com , x"}, None),
        ("https://api.openai.com/v1", {**PROXIES, "no": "*.openai.com"}, None),
        ("https://api.openai.com/v1", {**PROXIES, "no": "api.openai.com:443"}, None),
        ("https://notopenai.com/v1", {**PROXIES, "no": "openai.com"}, "http://proxy.corp:3128"),
        ("http://10.1.2.3:8000/v1", {**PROXIES, "no": "10.0.0.0/8"}, None),
        ("http://11.1.2.3:8000/v1", {**PROXIES, "no": "10.0.0.0/8"}, "http://proxy.corp:3129"),
        ("http://[fd00::5]:8000/v1", {**PROXIES, "no": "fd00::/8"}, None),
        ("http://[2001:db8::1]:8000/v1", {**PROXIES, "no": "2001:db8:0::1"}, None),  # the same address
        ("http://[2001:db8::1]:8000/v1", {**PROXIES, "no": "[2001:db8::1]:8000"}, None),
        ("http://10.1.2.3:8000/v1", {**PROXIES, "no": "10.1.2.3"}, None),
        ("http://10.1.2.30:8000/v1", {**PROXIES, "no": "10.1.2.3"}, "http://proxy.corp:3129"),
        ("https://api.openai.com/v1", {**PROXIES, "no": "*"}, None),
        # a loopback host is reached directly, whatever the environment says
        ("http://127.0.0.1:11434/api/chat", PROXIES, None),
        ("http://127.3.2.1:11434/api/chat", PROXIES, None),
        ("http://localhost:11434/api/chat", PROXIES, None),
        ("http://[::1]:8000/v1", PROXIES, None),
        ("http://[::ffff:127.0.0.1]:8000/v1", PROXIES, None),  # IPv4-mapped loopback
        # an internationalised name, in NO_PROXY or in the URL, in either form
        ("https://api.bücher.example/v1", {**PROXIES, "no": "xn--bcher-kva.example"}, None),
        ("https://api.xn--bcher-kva.example/v1", {**PROXIES, "no": "bücher.example"}, None),
        ("https://api.bücher.example/v1", {**PROXIES, "no": "bücher.example"}, None),
        ("https://api.bücher.example/v1", {**PROXIES, "no": "andere.example"}, "http://proxy.corp:3128"),
        (
            "https://api.openai.com/v1",
            {"https": "http://prøxy.example:3128"},
            "http://xn--prxy-hra.example:3128",
        ),
    ],
)
def test_which_proxy_a_url_takes(url: str, proxies: dict[str, str], expected: str | None) -> None:
    decided = route(url, proxies)
    assert decided.proxy == expected
    assert (decided.proxy_headers, decided.request_headers) == (None, None)


def test_proxy_credentials_go_as_proxy_authorization_not_in_the_url() -> None:
    auth = {"Proxy-Authorization": "Basic " + base64.b64encode(b"svc:p@ss").decode()}
    proxies = {"https": "http://svc:p%40ss@proxy.corp:3128", "http": "http://svc:p%40ss@proxy.corp:3128"}
    tunnel = route("https://api.openai.com/v1", proxies)  # on the CONNECT
    assert (tunnel.proxy, tunnel.proxy_headers, tunnel.request_headers) == (
        "http://proxy.corp:3128",
        auth,
        None,
    )
    forwarded = route("http://vllm.internal/v1", proxies)  # on the request the proxy forwards
    assert (forwarded.proxy, forwarded.proxy_headers, forwarded.request_headers) == (
        "http://proxy.corp:3128",
        None,
        auth,
    )
    assert forwarded.headers({"Authorization": "Bearer k"}) == {"Authorization": "Bearer k", **auth}
    # a password without a user goes too (as ":password")
    empty_user = route("https://api.openai.com/v1", {"https": "http://:pw@proxy.corp:3128"})
    assert empty_user.proxy_headers == {"Proxy-Authorization": "Basic " + base64.b64encode(b":pw").decode()}


@pytest.mark.parametrize(
    "value",
    [
        "http://svc:s3cret@proxy.corp:99999",  # port out of range
        "http://svc:s3cret@[::1:3128",  # broken IPv6
        "http://svc:s3cret@:3128",  # no host
        "socks5h://svc:s3cret@127.0.0.1:7890",  # not an HTTP proxy
        "http://s%3Avc:s3cret@proxy.corp:3128",  # a colon in the user name cannot go in Basic auth
        "http://svc:s3cret@proxy corp:3128",  # a space in the host
        "http://svc:s3cret@proxy.corp:0",  # port 0
    ],
)
def test_an_unusable_proxy_is_a_config_error_at_start_naming_the_variable_not_its_value(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Proxies({"https": value})
    assert "HTTPS_PROXY" in caught.value.message
    assert "s3cret" not in caught.value.message
    assert "svc" not in caught.value.message


def test_the_environment_is_read_when_the_client_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("NO_PROXY", "internal.example")
    assert not Proxies()  # NO_PROXY alone: nothing to look up per request
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    client = HttpClient()
    monkeypatch.setenv("HTTPS_PROXY", "http://changed:1")  # later changes do not apply
    assert (
        client._proxies.route("https://api.openai.com/v1/chat/completions").proxy == "http://proxy.corp:3128"
    )
    assert client._proxies.route("https://llm.internal.example/v1").proxy is None
    assert not HttpClient(proxies={})._proxies


@dataclass
class PipeProxy:
    """A forwarding proxy: every connection is piped to ``target`` (an HTTP server, which takes the
    absolute-form requests a client sends a proxy); what clients sent is kept."""

    target: int
    port: int = 0
    sent: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if keep:
                        self.sent.append(data)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    def requests(self) -> bytes:
        return b"".join(self.sent)


@contextlib.asynccontextmanager
async def pipe_proxy(target: int) -> AsyncIterator[PipeProxy]:
    proxy = PipeProxy(target)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    async with server:
        yield proxy
        server.close()


def _clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


async def test_a_provider_is_reached_through_the_environment_s_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxy_env(monkeypatch)
    async with run_fake(openai_app(api_key="sk-o")) as url:
        fake_port = int(url.rsplit(":", 1)[1].split("/")[0])
        async with pipe_proxy(fake_port) as proxy:
            monkeypatch.setenv("HTTP_PROXY", f"http://svc:s3cret-pass@127.0.0.1:{proxy.port}")
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # for the openai SDK (httpx reads it too)
            upstream = f"http://openai.fake.test:{fake_port}/v1"  # only the proxy knows this name
            config = make_config(f"providers:\n  openai: {{base_url: '{upstream}', api_key: sk-o}}\n")
            async with serve(create_app(config)) as base:
                client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
                async with client:
                    messages = [{"role": "user", "content": "hello there"}]
                    answer = await client.chat.completions.create(
                        model="openai/gpt-4o-mini", messages=messages
                    )  # type: ignore[arg-type]
                    assert answer.choices[0].message.content == "echo: hello there"
                    stream = await client.chat.completions.create(
                        model="openai/gpt-4o-mini",
                        messages=messages,  # type: ignore[arg-type]
                        stream=True,
                    )
                    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == (
                        "echo: hello there"
                    )
    sent = proxy.requests()
    assert sent.count(f"POST http://openai.fake.test:{fake_port}/v1/chat/completions HTTP/1.1".encode()) == 2
    credentials = base64.b64encode(b"svc:s3cret-pass").decode()
    assert f"Proxy-Authorization: Basic {credentials}".lower().encode() in sent.lower()


async def test_a_proxy_that_is_down_is_an_outbound_proxy_error_naming_neither_it_nor_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clear_proxy_env(monkeypatch)
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    monkeypatch.setenv("HTTPS_PROXY", f"http://svc:s3cret-pass@127.0.0.1:{port}")
    body, text = await _refused_request()
    assert body["code"] == "outbound_proxy_error", body
    assert body["message"] == "openai: the outbound proxy cannot be reached (connection refused)"
    for secret in ("s3cret", "svc", str(port)):
        assert secret not in text


@dataclass
class AnsweringProxy:
    """A proxy that answers every request (a CONNECT, for an https URL) with ``status``, its own
    reason phrase and a page that names it and its user, as squid's do; ``status`` 0: with a line
    that is no HTTP status line, naming it too; -1: never (it holds the connection open)."""

    status: int
    seen: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.seen.append(await reader.readuntil(b"\r\n\r\n"))
        if self.status < 0:
            await reader.read()  # until the client hangs up
            return
        page = b"<html>Generated by proxy.corp.internal:3128 (squid/5.7); client svc</html>"
        if self.status == 0:
            writer.write(b"GARBAGE from proxy.corp.internal (squid/5.7) for svc\r\n\r\n")
        else:
            writer.write(f"HTTP/1.1 {self.status} Denied by proxy.corp.internal\r\n".encode())
            writer.write(b"Proxy-Authenticate: Basic\r\nContent-Type: text/html\r\n")
            writer.write(f"Content-Length: {len(page)}\r\nConnection: close\r\n\r\n".encode() + page)
        await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def answering_proxy(status: int) -> AsyncIterator[tuple[AnsweringProxy, int]]:
    proxy = AnsweringProxy(status)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    async with server:
        yield proxy, server.sockets[0].getsockname()[1]


SECRETS = ("s3cret", "svc", "proxy.corp.internal", "squid")


async def test_a_407_is_an_outbound_proxy_error_naming_nothing_of_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A proxy refusing the gateway: the caller learns neither its address, nor its words, nor
    its credentials; the group's retries try again (another deployment may go direct)."""
    _clear_proxy_env(monkeypatch)
    async with answering_proxy(407) as (proxy, port):
        monkeypatch.setenv("HTTPS_PROXY", f"http://svc:s3cret-pass@127.0.0.1:{port}")
        body, text = await _refused_request(retries=1)
    assert body["code"] == "outbound_proxy_error", body
    assert "407 Proxy Authentication Required" in body["message"]
    for secret in (*SECRETS, str(port)):
        assert secret not in text
    assert len(proxy.seen) == 2  # a connection failure: retried
    assert proxy.seen[0].startswith(b"CONNECT api.openai.com:443 HTTP/1.1")
    credentials = base64.b64encode(b"svc:s3cret-pass")
    assert b"proxy-authorization: basic " + credentials.lower() in proxy.seen[0].lower()


async def test_a_proxy_s_error_travels_without_aiohttp_s_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp's exception holds the proxy's request, Proxy-Authorization and all: the error
    raised has neither cause nor context."""
    _clear_proxy_env(monkeypatch)
    async with answering_proxy(407) as (_, port):
        client = HttpClient(proxies={"https": f"http://svc:s3cret-pass@127.0.0.1:{port}"})
        try:
            for call in (client.send, client.open_stream):
                with pytest.raises(OutboundProxyError) as caught:
                    await call(HttpRequest("https://api.openai.com/v1/models", b""), Timeouts(), "openai")
                assert caught.value.__cause__ is None
                assert caught.value.__context__ is None
        finally:
            await client.aclose()


async def test_a_proxy_that_cannot_reach_the_provider_is_a_connection_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clear_proxy_env(monkeypatch)
    async with answering_proxy(503) as (_, port):
        monkeypatch.setenv("HTTPS_PROXY", f"http://svc:s3cret-pass@127.0.0.1:{port}")
        body, text = await _refused_request()
    assert body["code"] == "provider_connection_error", body
    assert "could not reach the provider (503 Service Unavailable)" in body["message"]
    for secret in (*SECRETS, str(port)):
        assert secret not in text


async def test_a_407_forwarding_plain_http_keeps_nothing_of_the_proxy_s_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """For an http:// provider the proxy's 407 comes back as the answer: the error keeps none of
    its page."""
    _clear_proxy_env(monkeypatch)
    async with answering_proxy(407) as (_, port):
        monkeypatch.setenv("HTTP_PROXY", f"http://svc:s3cret-pass@127.0.0.1:{port}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # for the openai SDK
        body, text = await _refused_request(
            provider="vllm: {base_url: 'http://vllm.internal:8000/v1'}", model="vllm/m"
        )
    assert body["code"] == "outbound_proxy_error", body
    for secret in (*SECRETS, str(port)):
        assert secret not in text


async def _client_failure(
    proxies: dict[str, str], url: str, timeouts: Timeouts | None = None
) -> list[BaseException]:
    """What ``send`` and ``open_stream`` of a client with ``proxies`` raise for ``url``."""
    client = HttpClient(proxies=proxies)
    raised: list[BaseException] = []
    try:
        for call in (client.send, client.open_stream):
            with pytest.raises(ProviderConnectionError) as caught:
                await call(HttpRequest(url, b"{}"), timeouts or Timeouts(), "openai")
            raised.append(caught.value)
    finally:
        await client.aclose()
    return raised


def _says_nothing_of_the_proxy(error: BaseException, port: int) -> None:
    assert error.__cause__ is None
    assert error.__context__ is None
    text = f"{error} {getattr(error, 'upstream_body', '')}"
    for secret in (*SECRETS, str(port), "GARBAGE"):
        assert secret not in text, text


@pytest.mark.parametrize(
    "url", ["https://api.openai.com/v1/chat/completions", "http://vllm.internal:8000/v1"]
)
async def test_a_proxy_answering_nonsense_is_an_error_that_repeats_none_of_it(url: str) -> None:
    async with answering_proxy(0) as (_, port):
        proxy = f"http://svc:s3cret-pass@127.0.0.1:{port}"
        for error in await _client_failure({"https": proxy, "http": proxy}, url):
            _says_nothing_of_the_proxy(error, port)
            assert "through the outbound proxy" in str(error)


async def test_a_proxy_that_never_answers_connect_is_given_timeout_connect_not_the_total() -> None:
    async with answering_proxy(-1) as (_, port):
        started = asyncio.get_running_loop().time()
        errors = await _client_failure(
            {"https": f"http://127.0.0.1:{port}"},
            "https://api.openai.com/v1/chat/completions",
            Timeouts(connect=0.3, read=30, total=60),
        )
    assert asyncio.get_running_loop().time() - started < 10  # not 2 x 60 s
    for error in errors:
        assert isinstance(error, OutboundProxyError)
        assert str(error) == "openai: no connection through the outbound proxy within timeout.connect"
        _says_nothing_of_the_proxy(error, port)


async def test_a_proxy_refusing_by_policy_is_an_outbound_proxy_error() -> None:
    async with answering_proxy(403) as (_, port):
        errors = await _client_failure({"https": f"http://127.0.0.1:{port}"}, "https://api.openai.com/v1")
    for error in errors:
        assert isinstance(error, OutboundProxyError)
        assert str(error) == "openai: the outbound proxy refused the request (403 Forbidden)"


async def test_an_https_proxy_url_for_a_plain_proxy_says_tls_failed_not_a_system_error() -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # as a plain HTTP proxy answers the TLS hello it cannot read
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(plain, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        errors = await _client_failure({"https": f"https://127.0.0.1:{port}"}, "https://api.openai.com/v1")
    for error in errors:
        assert isinstance(error, OutboundProxyError)
        assert "TLS" in str(error)
        assert "not permitted" not in str(error)


async def test_a_forwarding_proxy_s_own_5xx_page_is_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    """For an http:// provider a proxy that cannot reach it answers with its own page (naming its
    host and software): the caller gets the status, retried and fallen back as a connection error."""
    _clear_proxy_env(monkeypatch)
    async with answering_proxy(502) as (proxy, port):
        monkeypatch.setenv("HTTP_PROXY", f"http://svc:s3cret-pass@127.0.0.1:{port}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # for the openai SDK
        body, text = await _refused_request(
            retries=1, provider="vllm: {base_url: 'http://vllm.internal:8000/v1'}", model="vllm/m"
        )
    assert body["code"] == "provider_connection_error", body
    assert body["message"] == (
        "vllm: 502 Bad Gateway from the outbound proxy or the provider (its page is not repeated)"
    )
    for secret in (*SECRETS, str(port)):
        assert secret not in text
    assert len(proxy.seen) == 2  # retried


def test_the_cli_reaches_a_gateway_on_this_machine_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    """``uniinfer experiments`` sends the master key: never to a proxy for a local gateway."""
    import http.server
    import threading

    from uniinfer.cli.app import _get

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            return None

    with contextlib.closing(socket.socket()) as closed:  # a proxy that is not there
        closed.bind(("127.0.0.1", 0))
        proxy_port = closed.getsockname()[1]
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert _get(f"http://127.0.0.1:{server.server_port}/v1/experiments/x", "sk-master") == (200, b"{}")
    finally:
        server.shutdown()
        server.server_close()


def test_the_proxy_s_own_connection_failures_are_told_from_the_provider_s() -> None:
    """A proxy host that does not resolve is the proxy's failure (aiohttp reports it as a DNS
    error, not a proxy one); the provider's host failing the same way is not."""
    route = Proxies({"https": "http://proxy.corp:3128"}).route("https://api.openai.com/v1")
    key = SimpleNamespace(host="proxy.corp", port=3128, ssl=True)
    dns = aiohttp.ClientConnectorDNSError(key, socket.gaierror(-2, "Name or service not known"))  # type: ignore[arg-type]
    session = SimpleNamespace(closed=False)  # what the mapping reads of it
    error = transport_error(dns, "openai", session, route)  # type: ignore[arg-type]
    assert isinstance(error, OutboundProxyError)
    assert error.message == "openai: the outbound proxy cannot be reached (its host name does not resolve)"
    provider_key = SimpleNamespace(host="api.openai.com", port=443, ssl=True)
    other = aiohttp.ClientConnectorDNSError(provider_key, socket.gaierror(-2, "Name or service not known"))  # type: ignore[arg-type]
    provider_error = transport_error(other, "openai", session, route)  # type: ignore[arg-type]
    assert not isinstance(provider_error, OutboundProxyError)
    assert "api.openai.com" in provider_error.message  # the provider's host is no secret


async def _refused_request(
    retries: int = 0, *, provider: str = "openai: {api_key: sk-o}", model: str = "openai/gpt-4o-mini"
) -> tuple[dict[str, Any], str]:
    """The error body and text a chat request to ``provider`` (through the proxy) gets."""
    config = make_config(f"providers:\n  {provider}\nrouting: {{retry: {{max_retries: {retries}}}}}\n")
    async with serve(create_app(config)) as base:
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        async with client:
            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": "hi"}],  # type: ignore[list-item]
                )
    body = caught.value.body
    assert isinstance(body, dict)
    return body, caught.value.response.text
