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

:class:`ServiceAccountTokenSource` is a :class:`~uniinfer.providers.oauth.TokenSource`:
cached, refreshed ahead of expiry, single-flight, expired by either clock, and dropped
when the API refuses it (see that module).

Credentials are read from the provider's options only (``credentials_file``,
which may be ``env:GOOGLE_APPLICATION_CREDENTIALS`` resolved by the config
layer, or ``credentials_json``); this module never reads the environment.
Errors name the provider and never contain the private key, the assertion
or a token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import orjson
from google.auth import crypt, jwt

from uniinfer.errors import ConfigError
from uniinfer.http import Timeouts
from uniinfer.providers.oauth import (  # re-exported: the names this module always had
    DEFAULT_LIFETIME,
    MIN_VALIDITY,
    REFRESH_MARGIN,
    RETRY_AFTER_FAILURE,
    TokenSource,
)

__all__ = [
    "CLOUD_PLATFORM_SCOPE",
    "DEFAULT_LIFETIME",
    "DEFAULT_TOKEN_URI",
    "JWT_BEARER_GRANT",
    "MIN_VALIDITY",
    "REFRESH_MARGIN",
    "RETRY_AFTER_FAILURE",
    "ServiceAccountTokenSource",
    "load_service_account",
]

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Lifetime of the signed assertion: Google's maximum.
ASSERTION_LIFETIME = 3600

Json = dict[str, Any]


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


class ServiceAccountTokenSource(TokenSource):
    """Access tokens for one service account (see :class:`~uniinfer.providers.oauth.TokenSource`
    for the caching, refreshing and expiry). ``wall_clock`` also dates the assertion, as the
    token endpoint checks ``iat``/``exp`` against real time."""

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
        super().__init__(
            provider=provider,
            token_uri=token_uri or str(info.get("token_uri") or DEFAULT_TOKEN_URI),
            timeouts=timeouts,
            clock=clock,
            wall_clock=wall_clock,
        )
        self.email = str(info["client_email"])
        self.who = f"the service account {self.email}"
        self.project_id: str | None = info.get("project_id") or None
        self.scope = " ".join(scopes)
        self._signer = _signer(info, provider)

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

    def grant(self) -> tuple[dict[str, str], tuple[str, ...]]:
        assertion = self.assertion()
        return {"grant_type": JWT_BEARER_GRANT, "assertion": assertion}, (assertion,)


def _signer(info: Mapping[str, Any], provider: str) -> crypt.Signer:
    """The RSA signer of the key; a malformed key is a ConfigError that does not quote it."""
    try:
        return cast(crypt.Signer, crypt.RSASigner.from_service_account_info(info))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, IndexError) as exc:
        raise ConfigError(
            f"providers.{provider}.options: the service account's private_key is not a valid RSA key "
            f"({type(exc).__name__})"
        ) from None
