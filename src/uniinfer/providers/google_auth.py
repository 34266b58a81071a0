"""Google service-account access tokens (the OAuth 2.0 JWT bearer flow), fetched asynchronously.

The flow (https://developers.google.com/identity/protocols/oauth2/service-account#httprest,
RFC 7523 section 2.1):

1. sign a JWT (RS256, ``kid`` = the key's ``private_key_id``) whose claims are
   ``iss`` = the service account's ``client_email``, ``scope`` =
   ``https://www.googleapis.com/auth/cloud-platform``, ``aud`` = the token URI,
   ``iat`` = now and ``exp`` = now + 3600 s (the maximum Google accepts);
2. ``POST`` it to the token URI as a form:
   ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>``;
3. the answer is ``{"access_token", "expires_in", "token_type": "Bearer"}``; a
   refusal is ``{"error": "invalid_grant", "error_description": ...}``.

Signing uses google-auth's public API (``google.auth.crypt.RSASigner`` and
``google.auth.jwt.encode``); the exchange goes through the gateway's pooled
:class:`~uniinfer.http.HttpClient`, so no thread and no second HTTP stack.

:class:`ServiceAccountTokenSource` caches the token and refreshes it when less
than five minutes remain (half its lifetime for short-lived tokens). Refreshes
are single-flight: concurrent requests wait for the one refresh in progress
and share its outcome. A failed refresh while the old token is still valid
keeps serving the old token and retries a little later. Expiry is judged by
two clocks, and a token is expired when either says so: the monotonic one
(never set back) and the wall clock (which, unlike the monotonic one, runs on
while the machine sleeps: a laptop waking up must not take an hour-old token
for a fresh one). When the API refuses a token anyway (revoked, or a clock
mistaken), :meth:`ServiceAccountTokenSource.refused` drops it, so that the
next request fetches another instead of failing until the refresh point.

Credentials are read from the provider's options only (``credentials_file``,
which may be ``env:GOOGLE_APPLICATION_CREDENTIALS`` resolved by the config
layer, or ``credentials_json``); this module never reads the environment.
Errors name the provider and never contain the private key, the assertion
or a token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any, cast
from urllib.parse import urlencode

import orjson
from google.auth import crypt, jwt

from uniinfer.errors import (
    AuthenticationError,
    ConfigError,
    ProviderConnectionError,
    ProviderResponseError,
    ProviderTimeoutError,
    UniInferError,
    error_from_status,
)
from uniinfer.http import HttpClient, HttpRequest, Timeouts
from uniinfer.providers.redaction import redact_secret

__all__ = [
    "CLOUD_PLATFORM_SCOPE",
    "DEFAULT_TOKEN_URI",
    "JWT_BEARER_GRANT",
    "ServiceAccountTokenSource",
    "load_service_account",
]

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Refresh when fewer seconds than this remain (capped at half the token's lifetime).
REFRESH_MARGIN = 300.0
#: Lifetime of the signed assertion: Google's maximum.
ASSERTION_LIFETIME = 3600
#: After a failed refresh while the old token still works, wait this long before trying again.
RETRY_AFTER_FAILURE = 10.0
#: Never hand out a token with less than this left: the request could arrive after it expired.
MIN_VALIDITY = 5.0
#: ``expires_in`` is optional in RFC 6749; Google always sends it, its documented lifetime is 1 h.
DEFAULT_LIFETIME = 3600.0

Json = dict[str, Any]

#: The token source and token that :meth:`ServiceAccountTokenSource.ensure` last handed to this
#: task (the request it prepares), for :meth:`ServiceAccountTokenSource.refused` to know which
#: token the API refused: another request may have refreshed it since.
_HANDED: ContextVar[tuple[ServiceAccountTokenSource, str] | None] = ContextVar(
    "uniinfer_google_token", default=None
)


def load_service_account(
    *, credentials_file: str | None, credentials_json: str | None, provider: str
) -> Json:
    """The parsed service-account key, checked; ConfigError names the option, never its content."""
    where = f"providers.{provider}.options"
    if credentials_json:
        raw: str | bytes = credentials_json
        source = f"{where}.credentials_json"
    elif credentials_file:
        source = f"{where}.credentials_file ({credentials_file})"
        try:
            with open(credentials_file, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the file: {exc.strerror}") from None
    else:
        raise ConfigError(
            f"{where}: set credentials_file (for example 'env:GOOGLE_APPLICATION_CREDENTIALS') "
            "or credentials_json to a service-account key"
        )
    try:
        info = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ConfigError(f"{source}: not valid JSON") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        kind = info.get("type") if isinstance(info, dict) else None
        raise ConfigError(
            f'{source}: expected a service-account key ("type": "service_account"), got {kind!r}'
        )
    missing = [k for k in ("client_email", "private_key") if not isinstance(info.get(k), str) or not info[k]]
    if missing:
        raise ConfigError(f"{source}: the key has no {' or '.join(missing)}")
    return info


class ServiceAccountTokenSource:
    """Access tokens for one service account: cached, refreshed ahead of expiry, single-flight.

    ``clock`` (monotonic seconds) and ``wall_clock`` (Unix seconds) both decide
    expiry (a token is expired once either says so) and are injectable for tests;
    ``wall_clock`` also dates the assertion, as the token endpoint checks
    ``iat``/``exp`` against real time.
    """

    def __init__(
        self,
        info: Mapping[str, Any],
        *,
        provider: str,
        token_uri: str | None = None,
        scopes: Iterable[str] = (CLOUD_PLATFORM_SCOPE,),
        timeouts: Timeouts | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.email = str(info["client_email"])
        self.project_id: str | None = info.get("project_id") or None
        self.token_uri = token_uri or str(info.get("token_uri") or DEFAULT_TOKEN_URI)
        self.scope = " ".join(scopes)
        self._signer = _signer(info, provider)
        self._timeouts = timeouts or Timeouts()
        self._clock = clock
        self._wall_clock = wall_clock
        self._token: str | None = None
        self._previous: str | None = None
        #: When the token expires and when to refresh it, by ``clock`` ...
        self._expires_at = 0.0
        self._refresh_at = 0.0
        #: ... and by ``wall_clock`` (which runs on while the machine sleeps).
        self._expires_wall = 0.0
        self._refresh_wall = 0.0
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        #: Finished refresh attempts; a waiter compares it to learn that the refresh it queued behind failed.
        self._finished = 0
        self._error: UniInferError | None = None
        #: Tokens obtained from the token endpoint (for metrics and tests).
        self.refreshes = 0

    # --- the token ------------------------------------------------------------------

    @property
    def token(self) -> str | None:
        """The cached token while it is still usable by both clocks, else None."""
        if (
            self._token is not None
            and self._clock() < self._expires_at - MIN_VALIDITY
            and self._wall_clock() < self._expires_wall - MIN_VALIDITY
        ):
            return self._token
        return None

    def _fresh(self) -> str | None:
        """The cached token while neither clock has reached its refresh point, else None."""
        if (
            self._token is not None
            and self._clock() < self._refresh_at
            and self._wall_clock() < self._refresh_wall
        ):
            return self._token
        return None

    def authorization(self) -> str:
        """``Bearer <token>`` for a request header (after :meth:`ensure` was awaited)."""
        token = self.token
        if token is None:
            raise AuthenticationError(
                f"{self.provider}: no valid access token; prepare_credentials() must run before a request",
                provider=self.provider,
            )
        return f"Bearer {token}"

    async def ensure(self, http: HttpClient) -> str:
        """A usable token; a new one is fetched (single-flight) once less than the margin remains.

        The token is also noted as this task's (the request it prepares), for :meth:`refused`.
        """
        token = self._fresh() or await self._ensure(http)
        _HANDED.set((self, token))
        return token

    def refused(self) -> None:
        """The API refused the token this task's request carried (a 401): drop it if it is still
        the cached one, so that the next :meth:`ensure` fetches another.

        A token refreshed since (by another request) is kept: the refusal was of the old one.
        Unknown which token the request carried (no :meth:`ensure` in this task), the cached
        one goes: at worst, one exchange too many. The token stays known to :meth:`redact`.
        """
        handed = _HANDED.get()
        used = handed[1] if handed is not None and handed[0] is self else self._token
        if used is not None and used == self._token:
            self._expires_at = self._refresh_at = self._expires_wall = self._refresh_wall = 0.0

    async def _ensure(self, http: HttpClient) -> str:
        finished = self._finished
        async with self._get_lock():
            fresh = self._fresh()
            if fresh is not None:
                return fresh
            if self._finished != finished and self._error is not None:
                raise self._error  # the refresh this call waited for failed: share its outcome
            self._error = None  # a cancelled attempt leaves no error: its waiters try again
            try:
                return await self._refresh(http)
            except UniInferError as exc:
                self._error = exc
                # the clocks read again: a slow refresh may have outlived the old token
                old = self.token
                if old is None:
                    raise  # the refresh's own error (often retryable), not a missing token later
                self._retry_later()
                return old
            finally:
                self._finished += 1

    def _retry_later(self) -> None:
        """After a failed refresh while the token still works: try again in a little while."""
        last = self._expires_at - MIN_VALIDITY
        self._refresh_at = min(self._clock() + RETRY_AFTER_FAILURE, last)
        last_wall = self._expires_wall - MIN_VALIDITY
        self._refresh_wall = min(self._wall_clock() + RETRY_AFTER_FAILURE, last_wall)

    def redact(self, text: str) -> str:
        """``text`` without the current or the previous access token (requests may still carry it)."""
        for token in (self._token, self._previous):
            text = redact_secret(text, token)
        return text

    # --- the exchange ----------------------------------------------------------------

    def assertion(self) -> str:
        """A freshly signed JWT for the token endpoint."""
        now = int(self._wall_clock())
        claims = {
            "iss": self.email,
            "scope": self.scope,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        encoded = cast(bytes, jwt.encode(self._signer, claims))  # type: ignore[no-untyped-call]
        return encoded.decode("ascii")

    async def _refresh(self, http: HttpClient) -> str:
        assertion = self.assertion()
        form = urlencode({"grant_type": JWT_BEARER_GRANT, "assertion": assertion}).encode()
        headers = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}
        started, started_wall = self._clock(), self._wall_clock()
        try:
            resp = await http.send(HttpRequest(self.token_uri, form, headers), self._timeouts, self.provider)
        except (ProviderConnectionError, ProviderTimeoutError) as exc:
            detail = exc.message.removeprefix(f"{self.provider}: ")
            raise type(exc)(
                f"{self.provider}: token endpoint {self.token_uri}: {detail}", provider=self.provider
            ) from exc
        text = resp.body.decode("utf-8", "replace").replace(assertion, "[redacted]")
        if resp.status != 200:
            raise self._exchange_error(resp.status, text)
        token, lifetime = self._parse(text)
        self._previous, self._token = self._token, token
        margin = min(REFRESH_MARGIN, lifetime / 2)
        self._expires_at, self._expires_wall = started + lifetime, started_wall + lifetime
        self._refresh_at, self._refresh_wall = self._expires_at - margin, self._expires_wall - margin
        self.refreshes += 1
        return token

    def _parse(self, text: str) -> tuple[str, float]:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            data = None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise ProviderResponseError(
                f"{self.provider}: the token endpoint answered without an access_token",
                provider=self.provider,
                upstream_body=text[:200] if data is None else None,
            )
        expires_in = data.get("expires_in") if isinstance(data, dict) else None
        if isinstance(expires_in, str) and expires_in.isdigit():
            expires_in = int(expires_in)
        if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
            expires_in = DEFAULT_LIFETIME
        return token, float(expires_in)

    def _exchange_error(self, status: int, text: str) -> UniInferError:
        """4xx: the credentials were refused (AuthenticationError); 429/5xx: retryable provider errors."""
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            data = None
        detail = text[:200] or f"HTTP {status}"
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            description = data.get("error_description")
            detail = f"{data['error']}: {description}" if description else data["error"]
        message = f"{self.provider}: the token endpoint refused the service account {self.email} ({detail})"
        if status == 429 or status >= 500:
            return error_from_status(status, message, provider=self.provider, body=text)
        return AuthenticationError(
            message, provider=self.provider, upstream_status=status, upstream_body=text
        )

    def _get_lock(self) -> asyncio.Lock:
        """One lock per event loop (an asyncio.Lock must not be shared across loops)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock


def _signer(info: Mapping[str, Any], provider: str) -> crypt.Signer:
    """The RSA signer of the key; a malformed key is a ConfigError that does not quote it."""
    try:
        return cast(crypt.Signer, crypt.RSASigner.from_service_account_info(info))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, IndexError) as exc:
        raise ConfigError(
            f"providers.{provider}.options: the service account's private_key is not a valid RSA key "
            f"({type(exc).__name__})"
        ) from None
