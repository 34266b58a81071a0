"""Bytes on the wire: ASGI responses, SSE framing and request-validation errors.

Kept apart from routing so that the OpenAI ingress here and later ingresses
(Anthropic ``/v1/messages``, Responses) share one way of answering.
"""

from __future__ import annotations

import array
import base64
import sys
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import orjson
from pydantic import ValidationError

from uniinfer.errors import InvalidRequestError, UniInferError
from uniinfer.types import EmbeddingResponse

__all__ = [
    "Headers",
    "Send",
    "error_body",
    "float_embeddings_to_base64",
    "send_bytes",
    "validation_error",
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


def error_body(error: UniInferError) -> bytes:
    return orjson.dumps(error.to_openai())


def error_headers(error: UniInferError) -> Headers:
    if error.retry_after is None:
        return []
    return [(b"retry-after", str(max(1, round(error.retry_after))).encode())]


def sse_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def validation_error(exc: ValidationError, data: Any) -> InvalidRequestError:
    """The first validation failure as an OpenAI-style 400 naming the field."""
    err = exc.errors(include_url=False, include_input=False)[0]
    ctx = err.get("ctx") or {}
    cause = ctx.get("error")
    param = getattr(cause, "param", None) or param_path(err["loc"], data)
    if err["type"] == "extra_forbidden":
        return InvalidRequestError(f"Unrecognized request argument supplied: {param}", param=param)
    if err["type"] == "missing":
        return InvalidRequestError(f"Missing required parameter: '{param}'.", param=param)
    message = str(err["msg"]).removeprefix("Value error, ")
    if param:
        message = f"Invalid value for '{param}': {message}"
    return InvalidRequestError(message, param=param or None)


def param_path(loc: Sequence[int | str], data: Any) -> str:
    """``('messages', 0, 'user', 'content')`` -> ``messages[0].content``.

    Pydantic puts discriminator tags (``user``, ``image_url``...) into error
    locations; walking the actual input keeps only the parts the caller wrote.
    """
    out = ""
    for part in loc:
        if isinstance(part, int) and isinstance(data, list):
            out += f"[{part}]"
            data = data[part] if 0 <= part < len(data) else None
        elif isinstance(data, dict) and part in data:
            out += f".{part}" if out else str(part)
            data = data[part]
        elif (isinstance(data, dict) or data is None) and _is_field_name(part, data):
            # a missing key, still worth naming (tags of union members are skipped)
            out += f".{part}" if out else str(part)
            data = None
    return out


def _is_field_name(part: int | str, data: Any) -> bool:
    # Tags are the discriminator value of the object we are in; fields are not.
    if isinstance(part, int):
        return False
    return not (isinstance(data, dict) and (data.get("role") == part or data.get("type") == part))


def float_embeddings_to_base64(response: EmbeddingResponse) -> EmbeddingResponse:
    """Encode float vectors as base64 little-endian float32, like OpenAI's ``encoding_format``."""
    data = []
    for item in response.data:
        if isinstance(item.embedding, list):
            arr = array.array("f", item.embedding)
            if sys.byteorder == "big":
                arr.byteswap()
            item = item.model_copy(update={"embedding": base64.b64encode(arr.tobytes()).decode()})
        data.append(item)
    return response.model_copy(update={"data": data})
