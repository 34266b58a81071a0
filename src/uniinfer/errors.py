"""The one error tree of uniinfer.

Every error a caller can see is a :class:`UniInferError`. Each class carries a
stable ``code`` (the ``error.code`` of the OpenAI-shaped body), the HTTP
``status`` the server answers with, and the OpenAI ``type`` string. Instances
add what a caller needs to act: the ``param`` at fault, the ``provider`` that
failed, the upstream status and body, and ``retry_after`` in seconds.

::

    UniInferError
    ├── InvalidRequestError                 400 invalid_request
    │   ├── UnsupportedParamError           400 unsupported_param
    │   ├── UnsupportedFeatureError         400 unsupported_feature
    │   ├── ContextLengthExceededError      400 context_length_exceeded
    │   ├── ContentFilteredError            400 content_filtered
    │   ├── RequestTooLargeError            413 request_too_large
    │   └── UnsupportedMediaTypeError       415 unsupported_media_type
    ├── AuthenticationError                 401 authentication_failed
    ├── PermissionDeniedError               403 permission_denied
    ├── ModelNotFoundError                  404 model_not_found
    ├── NotFoundError                       404 not_found
    │   └── MethodNotAllowedError           405 method_not_allowed
    ├── RateLimitError                      429 rate_limited
    ├── ProviderError                       502 provider_error
    │   ├── ProviderConnectionError         502 provider_connection_error
    │   ├── ProviderTimeoutError            504 provider_timeout
    │   ├── ProviderOverloadedError         503 provider_overloaded
    │   └── ProviderResponseError           502 provider_bad_response
    ├── AllTargetsFailedError               (status of the deciding attempt) all_targets_failed
    ├── ServiceUnavailableError             503 service_unavailable
    ├── RequestCancelledError               499 request_cancelled
    └── ConfigError                         500 config_error

Mapping an upstream status to a class is a table (:data:`STATUS_TO_ERROR`),
not a chain of ``if``s. ``docs/errors.md`` is generated from this module by
``python -m uniinfer.errors`` and a test fails when it is stale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from uniinfer.types.usage import Usage

__all__ = [
    "STATUS_TO_ERROR",
    "AllTargetsFailedError",
    "AuthenticationError",
    "ConfigError",
    "ContentFilteredError",
    "ContextLengthExceededError",
    "InvalidRequestError",
    "MethodNotAllowedError",
    "ModelNotFoundError",
    "NotFoundError",
    "OutboundProxyError",
    "PermissionDeniedError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderOverloadedError",
    "ProviderQuotaExceededError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "RateLimitError",
    "RequestCancelledError",
    "RequestTooLargeError",
    "ServiceUnavailableError",
    "UniInferError",
    "UnsupportedFeatureError",
    "UnsupportedMediaTypeError",
    "UnsupportedParamError",
    "error_from_code",
    "error_from_status",
    "forget_traceback",
]

# Upstream bodies are kept for debugging, but never without bound.
_MAX_UPSTREAM_BODY = 4096


class UniInferError(Exception):
    """Base of every uniinfer error."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    #: One line for docs/errors.md: what the caller should do about it.
    hint: ClassVar[str] = "A bug in uniinfer; report it with the request id."
    #: Whether a router may try the same request on another target.
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        provider: str | None = None,
        upstream_status: int | None = None,
        upstream_body: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.provider = provider
        self.upstream_status = upstream_status
        self.upstream_body = upstream_body[:_MAX_UPSTREAM_BODY] if upstream_body is not None else None
        self.retry_after = retry_after

    @property
    def http_status(self) -> int:
        """The status the server answers with (an instance may refine it)."""
        return self.status

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI-shaped error body: ``{"error": {message, type, param, code}}``."""
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        if self.provider is not None:
            error["provider"] = self.provider
        return {"error": error}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, provider={self.provider!r})"


class InvalidRequestError(UniInferError):
    """The request is malformed or breaks a documented limit."""

    code = "invalid_request"
    status = 400
    type = "invalid_request_error"
    hint = "Fix the field named in `param`; the message says which limit it broke."


class UnsupportedParamError(InvalidRequestError):
    """The routed provider cannot honour a parameter the request set."""

    code = "unsupported_param"
    hint = (
        "Remove the parameter, route to a provider that supports it, or set "
        "`settings.drop_unsupported_params: true` (drops are reported in the "
        "`x-uniinfer-dropped-params` header)."
    )


class UnsupportedFeatureError(InvalidRequestError):
    """The routed provider does not offer a feature (streaming, tools, embeddings...)."""

    code = "unsupported_feature"
    hint = "Route the request to a provider whose capabilities include the feature (`uniinfer models`)."


class ContextLengthExceededError(InvalidRequestError):
    """The prompt plus the requested completion exceed the model's context window."""

    code = "context_length_exceeded"
    hint = "Shorten the conversation or lower `max_tokens`, or use a model with a larger context."


class ContentFilteredError(InvalidRequestError):
    """The provider refused the content under its safety policy."""

    code = "content_filtered"
    hint = "Rephrase the request; the upstream body says which policy applied."


class RequestTooLargeError(InvalidRequestError):
    """The request body is larger than ``server.max_body_bytes``."""

    code = "request_too_large"
    status = 413
    hint = (
        "Send a smaller body, or raise `server.max_body_bytes` in the config; with `provider` set, "
        "the provider refused the size."
    )


class UnsupportedMediaTypeError(InvalidRequestError):
    """The request body is encoded in a way uniinfer does not read (a ``Content-Encoding``)."""

    code = "unsupported_media_type"
    status = 415
    hint = "Send the JSON body uncompressed, as UTF-8, without a `Content-Encoding` header."


class AuthenticationError(UniInferError):
    """Missing or wrong credentials: the caller's key, or the gateway's key for a provider."""

    code = "authentication_failed"
    status = 401
    type = "authentication_error"
    hint = (
        "Send `Authorization: Bearer <key>`. When `provider` is set, the gateway's "
        "own key for that provider was rejected: fix it in the config."
    )


class PermissionDeniedError(UniInferError):
    """The credentials are valid but may not do this."""

    code = "permission_denied"
    status = 403
    type = "permission_error"
    hint = "Use a key that is allowed this model or operation."


class NotFoundError(UniInferError):
    """No such route or resource."""

    code = "not_found"
    status = 404
    type = "invalid_request_error"
    hint = "Check the URL path and method against the API reference."


class MethodNotAllowedError(NotFoundError):
    """The route exists but not for this HTTP method."""

    code = "method_not_allowed"
    status = 405
    hint = "Use the method the API reference gives for this path (POST for completions)."


class ModelNotFoundError(NotFoundError):
    """The model name maps to no configured model or known provider."""

    code = "model_not_found"
    hint = "List the served models with `GET /v1/models` or `uniinfer models`, or use `provider/model`."


class RateLimitError(UniInferError):
    """A rate limit was hit; ``retry_after`` says when to try again, when known."""

    code = "rate_limited"
    status = 429
    type = "rate_limit_error"
    hint = "Wait `retry_after` seconds (the `Retry-After` header) and retry, or add a fallback target."
    retryable = True


class ProviderQuotaExceededError(RateLimitError):
    """The provider's account is out of quota or credit (OpenAI's ``insufficient_quota``): no
    wait will help; the group goes on to its next deployment, which may bill elsewhere."""

    code = "insufficient_quota"
    type = "insufficient_quota"
    hint = (
        "Check the provider account's plan and billing (the gateway's key, not yours), or route "
        "the model to another deployment."
    )
    retryable = False


class ProviderError(UniInferError):
    """The provider answered with an error uniinfer has no finer class for."""

    code = "provider_error"
    status = 502
    type = "api_error"
    hint = "A provider-side failure; `upstream_status` and the upstream body say more. Retry later."
    retryable = True
    #: The tokens of an answer the provider produced and billed, refused as this error (a 200
    #: saying the generation failed: Gemini's ``MALFORMED_FUNCTION_CALL``, Mistral's and
    #: Cohere's ``error`` finish): metered against the deployment that produced them.
    usage: Usage | None = None

    def __init__(self, message: str, *, status: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self._status = status

    @property
    def http_status(self) -> int:
        return self._status if self._status is not None else self.status


class ProviderConnectionError(ProviderError):
    """The provider could not be reached, or dropped the connection (also mid-stream)."""

    code = "provider_connection_error"
    hint = "Check that the provider's base URL is reachable from the gateway; add a fallback target."


class OutboundProxyError(ProviderConnectionError):
    """The gateway's outbound proxy could not be reached or refused it (407, or another 4xx).

    Its message names neither the proxy nor its credentials. Retryable as any connection
    failure: a group goes on to its next deployment, which may be reached directly.
    """

    code = "outbound_proxy_error"
    hint = (
        "Check the gateway's HTTPS_PROXY / HTTP_PROXY (address, credentials) and NO_PROXY "
        "(docs/configuration.md, Outbound proxy)."
    )


class ProviderTimeoutError(ProviderError):
    """The provider did not answer within the configured connect, read or total timeout."""

    code = "provider_timeout"
    status = 504
    hint = "Raise the provider's `timeout` in the config, or add a faster fallback target."


class ProviderOverloadedError(ProviderError):
    """The provider is temporarily overloaded (HTTP 503/529)."""

    code = "provider_overloaded"
    status = 503
    hint = "Retry after `retry_after` seconds or fall back to another target."


class ProviderResponseError(ProviderError):
    """The provider answered with a body uniinfer could not parse."""

    code = "provider_bad_response"
    hint = "The upstream body is kept in the error; report it if the provider's format changed."
    retryable = False


class AllTargetsFailedError(UniInferError):
    """Every deployment for the model failed; ``attempts`` holds each attempt's error."""

    code = "all_targets_failed"
    status = 502
    type = "api_error"
    hint = "Each attempt's error is listed in the message; fix or add targets."

    #: The status a remote gateway answered with (:meth:`reported`), where there are no attempts.
    _reported_status: int | None = None
    #: The attempt that decides the status (:func:`_deciding`); None: no attempts.
    _last: UniInferError | None = None

    def __init__(self, model: str, attempts: Sequence[tuple[str, UniInferError]]) -> None:
        self.attempts = list(attempts)
        detail = "; ".join(f"{target}: [{err.code}] {err.message}" for target, err in self.attempts)
        last = _deciding(self.attempts)
        super().__init__(
            f"All {len(self.attempts)} attempts over {len({t for t, _ in self.attempts})} targets "
            f"for model '{model}' failed: {detail}",
            provider=last.provider if last else None,
            upstream_status=last.upstream_status if last else None,
            retry_after=last.retry_after if last else None,
        )
        self._last = last

    @classmethod
    def reported(
        cls, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> AllTargetsFailedError:
        """The error as a remote gateway reported it: its message lists the attempts, which are
        not rebuilt; its status and ``retry_after`` are kept."""
        error = cls.__new__(cls)
        UniInferError.__init__(error, message, retry_after=retry_after)
        error.attempts = []
        error._reported_status = status
        return error

    @property
    def deciding(self) -> UniInferError | None:
        """The attempt whose status, kind and ``retry_after`` the caller gets (see :func:`_deciding`)."""
        return self._last

    @property
    def http_status(self) -> int:
        # The last attempt decides (see _deciding): a caller who can wait out a 429 should see 429.
        if self._last is not None:
            return self._last.http_status
        return self._reported_status or self.status


def _deciding(attempts: Sequence[tuple[str, UniInferError]]) -> UniInferError | None:
    """The attempt whose status and ``retry_after`` the caller gets: the last one, passing over
    deployments that could not take the request at all (an unsupported param or feature, refused
    before anything was sent): behind them, a 429 the caller could wait out would be a final 400."""
    for _, error in reversed(attempts):
        if not isinstance(error, (UnsupportedParamError, UnsupportedFeatureError)):
            return error
    return attempts[-1][1] if attempts else None


class ServiceUnavailableError(UniInferError):
    """The gateway is draining for shutdown, or at ``server.max_concurrent_requests``."""

    code = "service_unavailable"
    status = 503
    type = "api_error"
    hint = "Retry on another replica or in a moment."
    retryable = True


class RequestCancelledError(UniInferError):
    """The caller went away (or cancelled) before the answer; the upstream call was cancelled."""

    code = "request_cancelled"
    status = 499
    type = "api_error"
    hint = "Nothing to do: recorded so usage and routing statistics see the abandoned request."


class ConfigError(UniInferError):
    """The configuration is invalid; the message names the key and the file."""

    code = "config_error"
    status = 500
    type = "api_error"
    hint = "Run `uniinfer config validate FILE` and fix what it names."


#: Upstream HTTP status -> error class. Anything else >= 500 is a ProviderError.
STATUS_TO_ERROR: Mapping[int, type[UniInferError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: ProviderQuotaExceededError,  # Payment Required: Anthropic's billing_error, and others'
    403: PermissionDeniedError,
    404: ModelNotFoundError,
    407: OutboundProxyError,  # only a proxy sends it (forwarding a plain-http request)
    408: ProviderTimeoutError,
    413: RequestTooLargeError,
    422: InvalidRequestError,
    429: RateLimitError,
    # Groq's flex tier when it is full ("capacity_exceeded": "add jittered backoff and retries")
    498: ProviderOverloadedError,
    503: ProviderOverloadedError,
    504: ProviderTimeoutError,
    529: ProviderOverloadedError,
}


def forget_traceback(exc: BaseException) -> None:
    """Drop the tracebacks of an error that has been answered, and of the errors behind it.

    A traceback holds the frames the error passed through, and they hold the
    request's objects, among them the request context, which records the error:
    a reference cycle per failed request that only the garbage collector frees,
    in pauses that grow with the requests in flight. The server calls this where
    an error ends, once it has been rendered to the caller (and, for an
    unexpected one, logged).
    """
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        error.__traceback__ = None
        pending += [e for e in (error.__cause__, error.__context__) if e is not None]


def error_from_status(
    status: int,
    message: str,
    *,
    provider: str,
    body: str | None = None,
    retry_after: float | None = None,
    param: str | None = None,
) -> UniInferError:
    """Build the error for an upstream HTTP status (the table above, then the 5xx default)."""
    cls = STATUS_TO_ERROR.get(status)
    kwargs: dict[str, Any] = {
        "provider": provider,
        "upstream_status": status,
        "upstream_body": body,
        "retry_after": retry_after,
        "param": param,
    }
    if cls is None:
        cls = ProviderError if status >= 500 else InvalidRequestError
    if cls is OutboundProxyError:  # the proxy's page may name it and its user: none of it kept
        message = f"{provider}: the outbound proxy refused the request (407 Proxy Authentication Required)"
        kwargs["upstream_body"] = None
    return cls(message, **kwargs)


def error_from_code(
    code: str,
    message: str,
    *,
    param: str | None = None,
    status: int | None = None,
    retry_after: float | None = None,
) -> UniInferError:
    """The error class for a wire ``code`` (e.g. from a remote gateway's error body), with the
    ``retry_after`` it reported (and, for ``all_targets_failed``, its status)."""
    if code == AllTargetsFailedError.code:
        return AllTargetsFailedError.reported(message, status=status, retry_after=retry_after)
    for cls in catalogue():
        if cls.code == code:
            return cls(message, param=param, retry_after=retry_after)
    return UniInferError(message, param=param, retry_after=retry_after)


def catalogue() -> list[type[UniInferError]]:
    """Every error class, in tree order (depth first)."""
    out: list[type[UniInferError]] = []

    def walk(cls: type[UniInferError]) -> None:
        out.append(cls)
        for sub in cls.__subclasses__():
            if sub.__module__ == __name__:
                walk(sub)

    walk(UniInferError)
    return out


def render_markdown() -> str:
    """The text of ``docs/errors.md``."""
    lines = [
        "# Error codes",
        "",
        "<!-- Generated by `python -m uniinfer.errors > docs/errors.md`; a test fails when stale. -->",
        "",
        "Every error uniinfer returns has the OpenAI shape",
        '`{"error": {"message", "type", "param", "code"}}` (plus `provider` when a provider',
        "failed), except on `/v1/messages`, which answers in Anthropic's shape,",
        '`{"type": "error", "error": {"type", "message"}}` (no `code`). The HTTP status is the',
        "class's, except for `all_targets_failed`: the last attempt's (a caller who can wait",
        "out a 429 sees 429). Retryable errors may be retried or fallen back from by the router;",
        "`retry_after` is also sent as the `Retry-After` header (whole seconds, rounded up)",
        "and as `retry-after-ms` (which the official OpenAI and Anthropic SDKs read first).",
        "",
        "| code | HTTP | type | class | retryable | what it means | what to do |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cls in catalogue():
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        lines.append(
            f"| `{cls.code}` | {cls.status} | `{cls.type}` | `{cls.__name__}` | "
            f"{'yes' if cls.retryable else 'no'} | {doc} | {cls.hint} |"
        )
    lines += [
        "",
        "Upstream statuses map to classes by table (`uniinfer.errors.STATUS_TO_ERROR`):",
        "",
        "| upstream status | class |",
        "| --- | --- |",
    ]
    for status, cls in sorted(STATUS_TO_ERROR.items()):
        lines.append(f"| {status} | `{cls.__name__}` |")
    lines.append("| other 5xx | `ProviderError` (502) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - exercised via the docs test
    print(render_markdown(), end="")
