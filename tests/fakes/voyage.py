"""A fake of Voyage AI's embeddings API: ``POST /v1/embeddings``.

Wire format from https://docs.voyageai.com/reference/embeddings-api:

- request: ``input`` (a string or up to 1,000 non-empty strings), ``model``,
  optional ``input_type`` (``null``, ``"query"``, ``"document"``), ``truncation``
  (bool), ``output_dimension`` (256, 512, 1024 or 2048), ``output_dtype``
  (``"float"``...), ``encoding_format`` (``null`` or ``"base64"``);
- response: ``{"object": "list", "data": [{"object": "embedding", "embedding",
  "index"}], "model", "usage": {"total_tokens"}}`` (no ``prompt_tokens``);
- errors: ``{"detail": "<message>"}`` (FastAPI's shape), 401 for a missing or
  wrong ``Authorization: Bearer`` key, 429 with ``Retry-After``.

Deliberately stricter than Voyage: a field it does not document (OpenAI's
``dimensions`` or ``user``) is a 400 here, so an adapter that forgets a rename
cannot pass. Failure modes by model name come from :mod:`tests.fakes.common`;
tokens are whitespace-separated words. Requests are recorded in
``app["requests"]`` (the decoded bodies).
"""

from __future__ import annotations

import asyncio
import base64
import struct
import warnings
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.common import FakeProvider, abort, mode_of
from tests.fakes.openai import embedding_vector

__all__ = ["API_KEY", "fake_provider", "voyage_app"]

API_KEY = "pa-fake-voyage-0123456789"
DEFAULT_DIMENSION = 1024
_FIELDS = frozenset(
    {"input", "model", "input_type", "truncation", "output_dimension", "output_dtype", "encoding_format"}
)
_DIMENSIONS = (256, 512, 1024, 2048)


class _RejectError(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> web.Response:
        return web.json_response({"detail": self.detail}, status=self.status, headers=self.headers)


def voyage_app(api_key: str = API_KEY) -> web.Application:
    """The fake; adapters use ``<server>/v1`` as the base URL."""
    app = web.Application()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["requests"] = []

    async def embeddings(request: web.Request) -> web.StreamResponse:
        try:
            _check_key(request, api_key)
            body = _decode(await request.read())
            app["requests"].append(body)
            return await _embed(request, body)
        except _RejectError as exc:
            return exc.response()

    app.router.add_post("/v1/embeddings", embeddings)
    return app


def _check_key(request: web.Request, api_key: str) -> None:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise _RejectError(
            401, "No API key provided. Please provide an API key via the Authorization header."
        )
    if key.strip() != api_key:
        raise _RejectError(401, "Provided API key is invalid.")


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _RejectError(400, "Request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _RejectError(400, "Request body must be a JSON object.")
    return body


def _inputs(body: dict[str, Any]) -> list[str]:
    value = body.get("input")
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(t, str) and t for t in items):
        raise _RejectError(
            400, "'input' must be a non-empty string or a non-empty list of non-empty strings."
        )
    if len(items) > 1000:
        raise _RejectError(400, f"The list of inputs has {len(items)} items; the maximum is 1000.")
    return items


def _validate(body: dict[str, Any]) -> tuple[list[str], int, str | None]:
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise _RejectError(400, f"Unexpected argument(s): {', '.join(unknown)}.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _RejectError(400, "'model' is required.")
    items = _inputs(body)
    if body.get("input_type") not in (None, "query", "document"):
        raise _RejectError(400, "'input_type' must be null, 'query' or 'document'.")
    dims = body.get("output_dimension")
    if dims is not None and dims not in _DIMENSIONS:
        raise _RejectError(400, f"'output_dimension' must be one of {list(_DIMENSIONS)}, got {dims!r}.")
    fmt = body.get("encoding_format")
    if fmt not in (None, "base64"):
        raise _RejectError(400, f"'encoding_format' must be null or 'base64', got {fmt!r}.")
    return items, dims or DEFAULT_DIMENSION, fmt


async def _embed(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    items, dims, fmt = _validate(body)
    model = str(body["model"])
    mode = mode_of(model)
    if mode.delay:
        await asyncio.sleep(mode.delay)
    if mode.drop:
        abort(request)
    if mode.status is not None:
        headers = {"Retry-After": "7"} if mode.status == 429 else None
        detail = "Rate limit exceeded." if mode.status == 429 else f"Fake failure {mode.status}."
        raise _RejectError(mode.status, detail, headers)
    data = []
    for index, text in enumerate(items):
        vector = embedding_vector(model, f"{body.get('input_type')}:{text}", dims)
        encoded: Any = vector
        if fmt == "base64":
            encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "embedding": encoded, "index": index})
    tokens = sum(len(t.split()) for t in items)
    return web.json_response(
        {"object": "list", "data": data, "model": model, "usage": {"total_tokens": tokens}},
        dumps=lambda obj: orjson.dumps(obj).decode(),
    )


def fake_provider() -> FakeProvider:
    """How the contract suite (tests/contract/) runs the ``voyage`` type against this fake."""
    return FakeProvider(
        "voyage",
        voyage_app,
        base_path="/v1",
        api_key=API_KEY,
        options=lambda url: {"input_type": "document"},
        embed_model="voyage-3.5",
    )
