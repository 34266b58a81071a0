"""A fake Google OAuth 2.0 token endpoint for service accounts (the JWT bearer flow).

It checks what https://oauth2.googleapis.com/token checks
(https://developers.google.com/identity/protocols/oauth2/service-account#httprest):
a form body with ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and
an ``assertion`` JWT whose RS256 signature verifies with the public key of the
service account named by ``iss`` (and ``kid``), whose ``aud`` is this endpoint's
URL, whose ``scope`` is set, and whose ``iat``/``exp`` span at most one hour
around now. Refusals have Google's shape:
``{"error": "invalid_grant", "error_description": "Invalid JWT Signature."}``.

Issued tokens (``ya29.fake-...``) are recorded with their expiry in
``app["google_token"]`` (a :class:`TokenState`), so other fakes can check a
``Bearer`` token and tests can count exchanges, slow the endpoint down or make
it fail.

The RSA keys are generated in memory by :func:`service_account_key` for tests
only; they are not, and never were, real credentials.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import exceptions as google_exceptions
from google.auth import jwt

__all__ = [
    "JWT_BEARER",
    "TEST_PROJECT",
    "ServiceAccountKey",
    "TokenState",
    "add_token_routes",
    "service_account_key",
    "token_app",
]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TEST_PROJECT = "fake-project"
_SHORT_LIVED = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)


@dataclass(frozen=True)
class ServiceAccountKey:
    """A test service account: its key file content (minus ``token_uri``) and its public key."""

    info: dict[str, str]
    public_pem: bytes

    @property
    def email(self) -> str:
        return self.info["client_email"]

    def key_json(self, token_uri: str) -> str:
        """The service-account JSON a user would download, pointing at ``token_uri``."""
        return orjson.dumps({**self.info, "token_uri": token_uri}).decode()


@functools.cache
def service_account_key(name: str = "uniinfer-test", project: str = TEST_PROJECT) -> ServiceAccountKey:
    """A throwaway service account with a fresh 2048-bit RSA key (test-only, generated in memory)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": secrets.token_hex(20),
        "private_key": private_pem,
        "client_email": f"{name}@{project}.iam.gserviceaccount.com",
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
    }
    return ServiceAccountKey(info, public_pem)


@dataclass
class TokenState:
    """What the token endpoint issued, and knobs for tests."""

    keys: dict[str, ServiceAccountKey]
    expires_in: int = 3599
    #: Seconds to wait before answering (to pile concurrent requests up).
    delay: float = 0.0
    #: Answer every exchange with this status (e.g. 503) instead of a token.
    fail_status: int | None = None
    #: Exchanges attempted (including refused ones).
    exchanges: int = 0
    #: Tokens issued, oldest first.
    issued: list[str] = field(default_factory=list)
    #: Claims of every verified assertion.
    claims: list[dict[str, Any]] = field(default_factory=list)
    _expiry: dict[str, float] = field(default_factory=dict)

    def valid(self, token: str) -> bool:
        """Whether ``token`` was issued here and has not expired (real time)."""
        return self._expiry.get(token, 0.0) > time.monotonic()

    def expire_all(self) -> None:
        self._expiry.clear()

    def issue(self) -> str:
        token = f"ya29.fake-{secrets.token_urlsafe(24)}"
        self._expiry[token] = time.monotonic() + self.expires_in
        self.issued.append(token)
        return token


class _RefusalError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status

    def response(self) -> web.Response:
        body = {"error": self.error, "error_description": self.description}
        return web.json_response(body, status=self.status, dumps=lambda o: orjson.dumps(o).decode())


def add_token_routes(
    app: web.Application, keys: list[ServiceAccountKey], *, path: str = "/token", expires_in: int = 3599
) -> TokenState:
    """Serve the token endpoint at ``path`` of ``app``; its state is ``app["google_token"]``."""
    state = TokenState({k.email: k for k in keys}, expires_in=expires_in)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["google_token"] = state

    async def token(request: web.Request) -> web.StreamResponse:
        state.exchanges += 1
        if state.delay:
            await asyncio.sleep(state.delay)
        if state.fail_status is not None:
            return _RefusalError("internal_failure", "Backend error.", state.fail_status).response()
        try:
            claims = await _verify(request, state)
        except _RefusalError as refusal:
            return refusal.response()
        state.claims.append(claims)
        body = {"access_token": state.issue(), "expires_in": state.expires_in, "token_type": "Bearer"}
        return web.json_response(body)

    app.router.add_post(path, token)
    return state


def token_app(keys: list[ServiceAccountKey] | None = None, *, expires_in: int = 3599) -> web.Application:
    """A server with only the token endpoint, at ``/token``."""
    app = web.Application()
    add_token_routes(app, keys or [service_account_key()], expires_in=expires_in)
    return app


async def _verify(request: web.Request, state: TokenState) -> dict[str, Any]:
    if request.content_type != "application/x-www-form-urlencoded":
        raise _RefusalError(
            "invalid_request", "Invalid Content-Type; expected application/x-www-form-urlencoded"
        )
    form = await request.post()
    grant_type = form.get("grant_type")
    if grant_type != JWT_BEARER:
        raise _RefusalError("unsupported_grant_type", f"Invalid grant_type: {grant_type or ''}")
    assertion = form.get("assertion")
    if not isinstance(assertion, str) or not assertion:
        raise _RefusalError("invalid_request", "Missing required parameter: assertion")
    try:
        header = jwt.decode_header(assertion)
        unverified = jwt.decode(assertion, verify=False)
    except (ValueError, google_exceptions.GoogleAuthError) as exc:
        raise _RefusalError("invalid_grant", "Invalid JWT: malformed token.") from exc
    key = state.keys.get(str(unverified.get("iss")))
    if key is None:
        raise _RefusalError("invalid_grant", "Invalid grant: account not found")
    if header.get("alg") != "RS256" or header.get("kid") != key.info["private_key_id"]:
        raise _RefusalError("invalid_grant", "Invalid JWT Signature.")
    iat, exp = unverified.get("iat"), unverified.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int) or not 0 < exp - iat <= 3600:
        raise _RefusalError("invalid_grant", _SHORT_LIVED)
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion, certs=key.public_pem, audience=str(request.url), clock_skew_in_seconds=10
        )
    except (ValueError, google_exceptions.GoogleAuthError) as exc:
        text = str(exc).lower()
        if "signature" in text:
            raise _RefusalError("invalid_grant", "Invalid JWT Signature.") from exc
        if "audience" in text:
            raise _RefusalError("invalid_grant", "Invalid JWT: Failed audience check.") from exc
        raise _RefusalError("invalid_grant", _SHORT_LIVED) from exc
    if not str(claims.get("scope", "")).strip():
        raise _RefusalError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    return claims
