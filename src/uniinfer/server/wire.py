"""Bytes on the wire: ASGI responses, SSE framing and request-validation errors.

Kept apart from routing so that the OpenAI ingress here and later ingresses
(Anthropic ``/v1/messages``, Responses) share one way of answering.
"""

from __future__ import annotations

import array
import base64
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from uniinfer.errors import UniInferError
from uniinfer.types import EmbeddingResponse

__all__ = [
    "Headers",
    "Send",
    "error_body",
    "float_embeddings_to_base64",
    "send_bytes",
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
