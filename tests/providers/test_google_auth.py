"""Service-account tokens: loading keys, the signed JWT exchange against a verifying fake, caching,
refresh ahead of expiry, single-flight under concurrency, and errors that never leak secrets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.fakes.common import run_fake
from tests.fakes.google_token import TokenState, service_account_key, token_app
from uniinfer.errors import (
    AuthenticationError,
    ConfigError,
    ProviderConnectionError,
    ProviderOverloadedError,
    ProviderResponseError,
)
from uniinfer.http import HttpClient
from uniinfer.providers.google_auth import (
    CLOUD_PLATFORM_SCOPE,
    REFRESH_MARGIN,
    RETRY_AFTER_FAILURE,
    ServiceAccountTokenSource,
    load_service_account,
)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class WallClock:
    """Real time, shifted by ``offset`` seconds (the token endpoint checks assertions against real time)."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


Served = tuple[TokenState, str, HttpClient]


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    app = token_app(expires_in=3599)
    async with run_fake(app) as url:
        http = HttpClient()
        try:
            yield app["google_token"], url + "/token", http
        finally:
            await http.aclose()


def source(
    token_uri: str, clock: Clock | None = None, wall_clock: WallClock | None = None, **info: str
) -> ServiceAccountTokenSource:
    key = json.loads(service_account_key().key_json(token_uri))
    key.update(info)
    return ServiceAccountTokenSource(
        key, provider="vx", clock=clock or Clock(), wall_clock=wall_clock or WallClock()
    )


# --- loading keys ----------------------------------------------------------------------


def test_load_from_json_text_and_from_file(tmp_path: Path) -> None:
    text = service_account_key().key_json("https://oauth2.googleapis.com/token")
    path = tmp_path / "sa.json"
    path.write_text(text)
    from_text = load_service_account(credentials_file=None, credentials_json=text, provider="vx")
    from_file = load_service_account(credentials_file=str(path), credentials_json=None, provider="vx")
    assert from_text == from_file
    assert from_text["client_email"] == service_account_key().email


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "GOOGLE_APPLICATION_CREDENTIALS"),
        ("{not json", "not valid JSON"),
        ('{"type": "authorized_user", "refresh_token": "1//secret"}', "'authorized_user'"),
        ('{"type": "service_account", "client_email": "a@b"}', "no private_key"),
    ],
)
def test_unusable_keys_are_config_errors_naming_the_option(text: str | None, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_service_account(credentials_file=None, credentials_json=text, provider="vx")
    assert expected in info.value.message
    assert "providers.vx.options" in info.value.message
    assert "1//secret" not in info.value.message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"credentials_file .*cannot read"):
        load_service_account(
            credentials_file=str(tmp_path / "nope.json"), credentials_json=None, provider="vx"
        )


def test_a_malformed_private_key_is_not_quoted() -> None:
    bad = "-----BEGIN PRIVATE KEY-----\nMIIEvSECRETSECRET\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ConfigError) as info:
        source("https://t/token", private_key=bad)
    assert "SECRETSECRET" not in str(info.value)
    assert "not a valid RSA key" in str(info.value)


# --- the exchange ----------------------------------------------------------------------


async def test_exchange_sends_a_signed_assertion_the_fake_verifies(served: Served) -> None:
    state, uri, http = served
    tokens = source(uri)
    token = await tokens.ensure(http)
    assert token == state.issued[0]
    assert tokens.token == token
    assert tokens.authorization() == f"Bearer {token}"
    (claims,) = state.claims
    assert claims["iss"] == service_account_key().email
    assert claims["aud"] == uri
    assert claims["scope"] == CLOUD_PLATFORM_SCOPE
    assert claims["exp"] - claims["iat"] == 3600


async def test_token_is_cached_until_the_refresh_margin(served: Served) -> None:
    state, uri, http = served
    clock = Clock()
    tokens = source(uri, clock)
    first = await tokens.ensure(http)
    clock.now += 3599 - REFRESH_MARGIN - 1  # just outside the margin: still cached
    assert await tokens.ensure(http) == first
    assert state.exchanges == 1
    clock.now += 2  # now < 5 minutes remain: refreshed
    second = await tokens.ensure(http)
    assert second != first
    assert state.exchanges == 2
    assert tokens.refreshes == 2
    assert (
        tokens.redact(f"{first} {second}") == "[redacted] [redacted]"
    )  # in-flight requests carry the old one


async def test_short_lived_tokens_refresh_at_half_their_lifetime(served: Served) -> None:
    state, uri, http = served
    state.expires_in = 120
    clock = Clock()
    tokens = source(uri, clock)
    await tokens.ensure(http)
    clock.now += 59
    await tokens.ensure(http)
    assert state.exchanges == 1
    clock.now += 2
    await tokens.ensure(http)
    assert state.exchanges == 2


async def test_an_expired_token_is_never_handed_out(served: Served) -> None:
    _, uri, http = served
    clock = Clock()
    tokens = source(uri, clock)
    await tokens.ensure(http)
    clock.now += 3599
    assert tokens.token is None
    with pytest.raises(AuthenticationError, match="prepare_credentials"):
        tokens.authorization()


async def test_one_refresh_for_a_hundred_concurrent_requests(served: Served) -> None:
    state, uri, http = served
    state.delay = 0.2
    tokens = source(uri)
    got = await asyncio.gather(*(tokens.ensure(http) for _ in range(100)))
    assert state.exchanges == 1
    assert set(got) == {state.issued[0]}


async def test_concurrent_waiters_share_a_failed_refresh_then_the_next_call_retries(served: Served) -> None:
    state, uri, http = served
    state.delay, state.fail_status = 0.1, 503
    tokens = source(uri)
    results = await asyncio.gather(*(tokens.ensure(http) for _ in range(20)), return_exceptions=True)
    assert state.exchanges == 1
    assert all(isinstance(r, ProviderOverloadedError) for r in results)
    state.fail_status = None
    assert await tokens.ensure(http) == state.issued[0]
    assert state.exchanges == 2


async def test_a_failed_refresh_keeps_serving_the_still_valid_token(served: Served) -> None:
    state, uri, http = served
    clock = Clock()
    tokens = source(uri, clock)
    old = await tokens.ensure(http)
    clock.now += 3599 - 60  # inside the refresh window, one minute left
    state.fail_status = 500
    assert await tokens.ensure(http) == old
    assert await tokens.ensure(http) == old
    assert state.exchanges == 2  # the failure is not retried on every request
    clock.now += RETRY_AFTER_FAILURE
    state.fail_status = None
    assert await tokens.ensure(http) != old
    assert state.exchanges == 3


async def test_a_refresh_that_fails_after_the_old_token_expired_raises_its_own_error(served: Served) -> None:
    # the old token had 9 s left when the refresh began; the failing refresh took longer: its
    # (retryable) error is the outcome, not the expired token and a confusing error later
    state, uri, http = served
    clock = Clock()
    tokens = source(uri, clock)
    await tokens.ensure(http)
    clock.now += 3599 - 9
    state.fail_status, state.delay = 503, 0.3

    async def expire_meanwhile() -> None:
        await asyncio.sleep(0.1)
        clock.now += 20

    ticker = asyncio.create_task(expire_meanwhile())
    with pytest.raises(ProviderOverloadedError, match="token endpoint refused"):
        await tokens.ensure(http)
    await ticker
    assert tokens.token is None


async def test_a_token_expired_while_the_machine_slept_is_not_handed_out(served: Served) -> None:
    # the monotonic clock stands still while a machine sleeps; the wall clock runs on
    state, uri, http = served
    state.expires_in = 600
    clock, wall = Clock(), WallClock(offset=-700)  # fetched 700 s ago by the wall clock
    tokens = source(uri, clock, wall)
    old = await tokens.ensure(http)
    wall.offset = 0  # woken up: the monotonic clock says no time passed
    assert tokens.token is None
    with pytest.raises(AuthenticationError, match="prepare_credentials"):
        tokens.authorization()
    assert await tokens.ensure(http) != old
    assert state.exchanges == 2


async def test_the_wall_clock_also_brings_the_refresh_forward(served: Served) -> None:
    state, uri, http = served
    wall = WallClock(offset=-(3599 - REFRESH_MARGIN + 1))
    tokens = source(uri, Clock(), wall)
    old = await tokens.ensure(http)
    wall.offset = 0
    assert tokens.token == old  # still valid, but inside the refresh margin by the wall clock
    assert await tokens.ensure(http) != old
    assert state.exchanges == 2


async def test_a_refused_token_is_dropped_and_the_next_request_gets_another(served: Served) -> None:
    state, uri, http = served
    tokens = source(uri)
    old = await tokens.ensure(http)
    tokens.refused()  # the API answered 401 to a request carrying it
    assert tokens.token is None
    new = await tokens.ensure(http)
    assert new != old
    assert state.exchanges == 2
    assert tokens.redact(f"{old} {new}") == "[redacted] [redacted]"


async def test_a_late_refusal_of_an_old_token_keeps_the_new_one(served: Served) -> None:
    # a request sent with the old token is refused after another request refreshed it: the
    # refusal is of the old token, so the new one stays (no exchange per late 401)
    state, uri, http = served
    clock = Clock()
    tokens = source(uri, clock)
    sent = asyncio.Event()
    refreshed = asyncio.Event()

    async def old_request() -> str:
        token = await tokens.ensure(http)
        sent.set()
        await refreshed.wait()
        tokens.refused()  # its 401 comes back now
        return token

    request = asyncio.create_task(old_request())
    await sent.wait()
    clock.now += 3599  # the old token expired; the next request refreshes it
    new = await tokens.ensure(http)
    refreshed.set()
    old = await request
    assert old != new
    assert tokens.token == new
    assert await tokens.ensure(http) == new
    assert state.exchanges == 2
    tokens.refused()  # a refusal of the token this task was handed drops it
    assert tokens.token is None


async def test_unknown_account_is_an_authentication_error_without_secrets(served: Served) -> None:
    _, uri, http = served
    stranger = json.loads(service_account_key("stranger").key_json(uri))
    tokens = ServiceAccountTokenSource(stranger, provider="vx")
    with pytest.raises(AuthenticationError) as info:
        await tokens.ensure(http)
    err = info.value
    assert err.provider == "vx"
    assert "account not found" in err.message
    assert stranger["client_email"] in err.message
    for text in (err.message, err.upstream_body or ""):
        assert "PRIVATE KEY" not in text
        assert "eyJ" not in text  # no JWT


async def test_a_wrong_key_fails_the_signature_check(served: Served) -> None:
    _, uri, http = served
    other = service_account_key("other").info["private_key"]
    with pytest.raises(AuthenticationError, match="Invalid JWT Signature"):
        await source(uri, private_key=other).ensure(http)


async def test_an_unreachable_token_endpoint_names_it(served: Served) -> None:
    _, _, http = served
    tokens = source("http://127.0.0.1:9/token")
    with pytest.raises(ProviderConnectionError, match=r"vx: token endpoint http://127\.0\.0\.1:9/token"):
        await tokens.ensure(http)


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"token_type": "Bearer"}'])
async def test_an_answer_without_a_token_is_a_response_error(body: bytes) -> None:
    app = web.Application()

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app.router.add_post("/token", answer)
    async with run_fake(app) as url:
        http = HttpClient()
        try:
            with pytest.raises(ProviderResponseError, match="without an access_token"):
                await source(url + "/token").ensure(http)
        finally:
            await http.aclose()


async def test_missing_expires_in_defaults_to_an_hour_and_redact_hides_the_token() -> None:
    app = web.Application()

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "ya29.tok"})

    app.router.add_post("/token", answer)
    async with run_fake(app) as url:
        http = HttpClient()
        clock = Clock()
        try:
            tokens = source(url + "/token", clock)
            assert await tokens.ensure(http) == "ya29.tok"
            clock.now += 3600 - REFRESH_MARGIN - 1
            assert tokens.token == "ya29.tok"
            assert tokens.redact("bad token ya29.tok here") == "bad token [redacted] here"
        finally:
            await http.aclose()


async def test_a_cancelled_refresh_lets_its_waiters_try_again(served: Served) -> None:
    state, uri, http = served
    state.delay = 0.2
    tokens = source(uri)
    first = asyncio.create_task(tokens.ensure(http))
    await asyncio.sleep(0.05)  # the first call is now waiting on the token endpoint
    waiters = [asyncio.create_task(tokens.ensure(http)) for _ in range(5)]
    await asyncio.sleep(0)
    first.cancel()
    got = await asyncio.gather(*waiters)
    assert len(set(got)) == 1
    assert state.exchanges == 2
