"""OAuth 2.0 access tokens from a token endpoint, cached and refreshed ahead of expiry.

What every such source shares (Google's service-account JWT grant for Vertex AI,
Microsoft Entra ID's client-credentials grant for Azure OpenAI), apart from the
form it posts: the token is cached and refreshed when less than five minutes
remain (half its lifetime for short-lived tokens); refreshes are single-flight
(concurrent requests wait for the one in progress and share its outcome); a
failed refresh while the old token is still valid keeps serving the old token
and retries a little later. Expiry is judged by two clocks, and a token is
expired when either says so: the monotonic one (never set back) and the wall
clock (which, unlike the monotonic one, runs on while the machine sleeps: a
laptop waking up must not take an hour-old token for a fresh one). When the API
refuses a token anyway (revoked, or a clock mistaken), :meth:`TokenSource.refused`
drops it, so that the next request fetches another instead of failing until the
refresh point.

The exchange goes through the gateway's pooled :class:`~uniinfer.http.HttpClient`
(no thread, no second HTTP stack). A refusal is RFC 6749's ``{"error",
"error_description"}``: a 4xx is an :class:`~uniinfer.errors.AuthenticationError`
(the credentials were refused), a 429 or 5xx a retryable provider error. Errors
name the provider and never contain a secret of the grant or a token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlencode

import orjson

from uniinfer.errors import (
    AuthenticationError,
    ProviderConnectionError,
    ProviderResponseError,
    ProviderTimeoutError,
    UniInferError,
    error_from_status,
)
from uniinfer.http import HttpClient, HttpRequest, Timeouts
from uniinfer.providers.redaction import redact_secret

__all__ = [
    "DEFAULT_LIFETIME",
    "MIN_VALIDITY",
    "REFRESH_MARGIN",
    "REFUSED_AGAIN_AFTER",
    "RETRY_AFTER_FAILURE",
    "TokenSource",
]

#: Refresh when fewer seconds than this remain (capped at half the token's lifetime).
REFRESH_MARGIN = 300.0
#: After a failed refresh while the old token still works, wait this long before trying again.
RETRY_AFTER_FAILURE = 10.0
#: Never hand out a token with less than this left: the request could arrive after it expired.
MIN_VALIDITY = 5.0
#: ``expires_in`` is optional in RFC 6749; when it is missing, the common lifetime of 1 h.
DEFAULT_LIFETIME = 3600.0
#: After a refused token was dropped, a refusal within this many seconds keeps the new one.
REFUSED_AGAIN_AFTER = 30.0

#: The token source and token that :meth:`TokenSource.ensure` last handed to this task (the
#: request it prepares), for :meth:`TokenSource.refused` to know which token the API refused:
#: another request may have refreshed it since.
_HANDED: ContextVar[tuple[TokenSource, str] | None] = ContextVar("uniinfer_oauth_token", default=None)


class TokenSource:
    """Access tokens from one token endpoint: cached, refreshed ahead of expiry, single-flight.

    A subclass says what it posts (:meth:`grant`: the form, and the secrets in it, kept out
    of errors) and who asks (:attr:`who`, for messages). ``clock`` (monotonic seconds) and
    ``wall_clock`` (Unix seconds) both decide expiry and are injectable for tests.
    """

    #: Whose credentials these are, for messages: "the service account x@y".
    who = "the client"

    def __init__(
        self,
        *,
        provider: str,
        token_uri: str,
        timeouts: Timeouts | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.token_uri = token_uri
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
        #: When :meth:`refused` last dropped a token (by ``clock``).
        self._dropped_at = -REFUSED_AGAIN_AFTER

    def grant(self) -> tuple[dict[str, str], tuple[str, ...]]:
        """The form to post for a token, and the secrets in it (kept out of every error)."""
        raise NotImplementedError

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

        A token refreshed since (by another request) is kept: the refusal was of the old one;
        so is one refused within :data:`REFUSED_AGAIN_AFTER` of the last drop (see there).
        Unknown which token the request carried (no :meth:`ensure` in this task), the cached
        one goes: at worst, one exchange too many. The token stays known to :meth:`redact`.
        """
        handed = _HANDED.get()
        used = handed[1] if handed is not None and handed[0] is self else self._token
        if used is None or used != self._token:
            return
        now = self._clock()
        if now - self._dropped_at < REFUSED_AGAIN_AFTER:
            # refused again soon after a token was dropped: the new one is refused too (a wrong
            # scope, another tenant's resource), and fetching one per request would only load
            # the token endpoint; the next drop waits a while
            return
        self._dropped_at = now
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

    async def _refresh(self, http: HttpClient) -> str:
        form, secrets = self.grant()
        body = urlencode(form).encode()
        headers = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}
        started, started_wall = self._clock(), self._wall_clock()
        try:
            resp = await http.send(HttpRequest(self.token_uri, body, headers), self._timeouts, self.provider)
        except (ProviderConnectionError, ProviderTimeoutError) as exc:
            detail = exc.message.removeprefix(f"{self.provider}: ")
            raise type(exc)(
                f"{self.provider}: token endpoint {self.token_uri}: {detail}", provider=self.provider
            ) from exc
        text = resp.body.decode("utf-8", "replace")
        for secret in secrets:
            text = redact_secret(text, secret)
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
        expires_in: Any = data.get("expires_in") if isinstance(data, dict) else None
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
        message = f"{self.provider}: the token endpoint refused {self.who} ({detail})"
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
