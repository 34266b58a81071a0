"""Bytes on the wire: ASGI responses, SSE framing and request-validation errors.

Kept apart from routing so that the OpenAI ingress here and later ingresses
(Anthropic ``/v1/messages``, Responses) share one way of answering.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NoReturn

import orjson

from uniinfer.errors import AllTargetsFailedError, InvalidRequestError, UniInferError
from uniinfer.stages import Route

__all__ = [
    "MAX_JSON_DEPTH",
    "SSE_DONE",
    "SSE_HEADERS",
    "Headers",
    "Message",
    "Receive",
    "Send",
    "check_depth",
    "error_headers",
    "json_body",
    "openai_error_body",
    "route_headers",
    "send_bytes",
    "sse_event",
]

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]
Headers = list[tuple[bytes, bytes]]

JSON = b"application/json"
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


async def send_bytes(
    send: Send, status: int, body: bytes, headers: Headers, content_type: bytes = JSON
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def openai_error_body(error: UniInferError) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}``."""
    return orjson.dumps(error.to_openai())


#: How deeply a request's JSON may nest. orjson reads up to 1,024 levels, but the
#: serialisers on the way to the upstream stop near 250 (pydantic's and orjson's
#: own limits): deeper input is refused up front, well below that, with a 400.
MAX_JSON_DEPTH = 128


def json_body(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object; anything else is a 400 saying what is wrong."""
    if not body:
        raise InvalidRequestError("The request body is empty; send a JSON object.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            text = body.decode()
        except UnicodeDecodeError as bad:
            raise InvalidRequestError(
                f"The request body is not UTF-8 text (byte 0x{body[bad.start]:02x} at offset {bad.start}); "
                "send JSON as UTF-8."
            ) from None
        _beyond_doubles(text, exc)
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    check_depth(body, data)
    return data


def _beyond_doubles(text: str, exc: orjson.JSONDecodeError) -> NoReturn:
    """The 400 for a body orjson refused: valid JSON with a number outside what orjson holds
    (``1e400``, or an integer so long that its float overflows: RFC 8259 allows them; a shorter
    integer beyond 64 bits orjson reads as a float, which integer fields refuse) is read by the
    standard library to name where the number is; else the parse error. No upstream's JSON encoder takes such a number (a free-form field, a tool's
    schema, would reach it as ``null`` or rounded), so it is a 400 naming its field."""
    if "number" not in str(exc):
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}") from None
    _refuse_unsendable(data, "")
    # no such number left (a duplicate key took its place): the reader's own words, as nothing
    # read this way may go on (a lone surrogate escape after it, which orjson refuses, would)
    raise InvalidRequestError(f"The request body is not valid JSON: {exc}") from None


def _refuse_unsendable(value: Any, path: str) -> None:
    """A 400 naming the first number no encoder on the way takes, depth first: the one orjson
    stopped at, as the walk meets values in the text's order (so nothing after it, such as a
    lone surrogate escape the standard library reads and orjson refuses, gets further). Only on
    this rare path."""
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_unsendable(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_unsendable(item, f"{path}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequestError(
            f"'{path[:200]}': the number is too large for a 64-bit float", param=path[:200]
        )
    elif isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        raise InvalidRequestError(f"'{path[:200]}': the integer does not fit in 64 bits", param=path[:200])


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def check_depth(raw: bytes | str, data: dict[str, Any]) -> None:
    """A 400 when ``data`` (parsed from ``raw``) nests deeper than :data:`MAX_JSON_DEPTH`.

    Free unless ``raw`` holds more brackets than the limit (two counts in C);
    only then is the parsed value walked.
    """
    if isinstance(raw, bytes):
        brackets = raw.count(b"{") + raw.count(b"[")
    else:
        brackets = raw.count("{") + raw.count("[")
    if brackets > MAX_JSON_DEPTH and _deeper_than(data, MAX_JSON_DEPTH):
        raise InvalidRequestError(
            f"The request body nests JSON objects and arrays more than {MAX_JSON_DEPTH} levels deep."
        )


def _deeper_than(data: dict[str, Any] | list[Any], limit: int) -> bool:
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, dict | list):
                if depth == limit:
                    return True
                stack.append((child, depth + 1))
    return False


def route_headers(request_id: str, route: Route | None) -> Headers:
    """``x-request-id`` and the ``x-uniinfer-*`` headers that tell what routing did."""
    headers: Headers = [(b"x-request-id", request_id.encode())]
    if route is None or route.provider is None:
        return headers
    if route.attempts == 1 and not (
        route.failed
        or route.dropped_params
        or route.fallback_groups
        or route.retries
        or route.rule
        or route.profile
        or route.experiment
    ):
        # the usual answer: the group's first choice, first try (its headers are kept)
        key = (route.provider, route.upstream_model, route.group)
        usual = _USUAL.get(key)
        if usual is None:
            usual = _route_headers(route)
            if len(_USUAL) < _USUAL_LIMIT:
                _USUAL[key] = usual
        headers += usual
        return headers
    headers += _route_headers(route)
    return headers


#: The x-uniinfer-* headers of first-try answers, by (provider, upstream model, group).
_USUAL: dict[tuple[str, str | None, str | None], Headers] = {}
_USUAL_LIMIT = 4096


def _route_headers(route: Route) -> Headers:
    headers: Headers = [
        (b"x-uniinfer-provider", (route.provider or "").encode()),
        (b"x-uniinfer-model", (route.upstream_model or "").encode()),
        (b"x-uniinfer-attempts", str(route.attempts).encode()),
    ]
    for name, values in (
        (b"x-uniinfer-fallbacks", route.failed),
        (b"x-uniinfer-dropped-params", route.dropped_params),
        (b"x-uniinfer-fallback-groups", route.fallback_groups),
    ):
        if values:
            headers.append((name, ",".join(values).encode()))
    if route.retries:
        headers.append((b"x-uniinfer-retries", str(route.retries).encode()))
    for name, value in (
        (b"x-uniinfer-group", route.group),
        (b"x-uniinfer-rule", route.rule),
        (b"x-uniinfer-profile", route.profile),
        (b"x-uniinfer-experiment", route.experiment),
        (b"x-uniinfer-variant", route.variant),
    ):
        if value is not None:
            headers.append((name, value.encode()))
    return headers


def error_headers(error: UniInferError) -> Headers:
    """``Retry-After`` in whole seconds, rounded up (a client that waits that long is not early),
    and ``retry-after-ms``, which the official OpenAI and Anthropic SDKs read first; and
    ``x-should-retry: false`` for an error no retry mends answered with a status those SDKs
    retry by themselves (a 429 out of quota, a 502 unreadable answer: they were sent again, and
    a quota's cooldown held the caller for its Retry-After to end with the same error)."""
    headers: Headers = []
    status = error.http_status
    # every deployment failing is as retryable as the attempt that decides its status (a 429)
    decides = error.deciding if isinstance(error, AllTargetsFailedError) else None
    if not (decides or error).retryable and (status in (408, 409, 429) or status >= 500):
        headers.append((b"x-should-retry", b"false"))
    if error.retry_after is None:
        return headers
    headers += [
        (b"retry-after", str(max(1, math.ceil(error.retry_after))).encode()),
        (b"retry-after-ms", str(max(1, round(error.retry_after * 1000))).encode()),
    ]
    return headers


def sse_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
