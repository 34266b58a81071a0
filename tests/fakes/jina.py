"""A fake of Jina AI's embeddings API: ``POST /v1/embeddings``.

Wire format from https://jina.ai/embeddings/ (API reference at
https://api.jina.ai/redoc):

- request: ``model``, ``input`` (a string or a list of strings), optional
  ``task`` (``retrieval.query``, ``retrieval.passage``, ``text-matching``,
  ``classification``, ``separation``), ``dimensions``, ``normalized``,
  ``late_chunking``, ``truncate`` and ``embedding_type`` (``float``, ``base64``,
  ``binary``, ``ubinary``; not OpenAI's ``encoding_format``);
- response: OpenAI's shape with ``usage: {"total_tokens", "prompt_tokens"}``;
- errors: ``{"detail": "<message>"}``; an unknown field is FastAPI's 422
  ``{"detail": [{"type": "extra_forbidden", "loc": ["body", <field>], ...}]}``;
  401 for a missing or wrong key, 429 with ``Retry-After``.

Failure modes by model name come from :mod:`tests.fakes.common`. Requests are
recorded in ``app["requests"]`` (the decoded bodies).
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.common import FakeProvider, abort, mode_of
from tests.fakes.openai import embedding_vector

__all__ = ["API_KEY", "fake_provider", "jina_app"]

API_KEY = "jina_fake0123456789abcdef"
DEFAULT_DIMENSION = 1024
_FIELDS = frozenset(
    {"model", "input", "task", "dimensions", "normalized", "late_chunking", "truncate", "embedding_type"}
)
_TASKS = ("retrieval.query", "retrieval.passage", "text-matching", "classification", "separation")


class _RejectError(Exception):
    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> web.Response:
        return web.json_response({"detail": self.detail}, status=self.status, headers=self.headers)


def jina_app(api_key: str = API_KEY) -> web.Application:
    """The fake; adapters use ``<server>/v1`` as the base URL."""
    app = web.Application()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["requests"] = []

    async def embeddings(request: web.Request) -> web.StreamResponse:
        try:
            _check_key(request, api_key)
            try:
                body = orjson.loads(await request.read())
            except orjson.JSONDecodeError:
                raise _RejectError(400, "Invalid JSON in the request body") from None
            app["requests"].append(body)
            return await _embed(request, body)
        except _RejectError as exc:
            return exc.response()

    app.router.add_post("/v1/embeddings", embeddings)
    return app


def _check_key(request: web.Request, api_key: str) -> None:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise _RejectError(401, "Missing API key: send 'Authorization: Bearer <your key>'")
    if key.strip() != api_key:
        raise _RejectError(401, "Invalid API key, please get a new one at https://jina.ai/embeddings/")


def _validate(body: Any) -> tuple[list[str], int]:
    if not isinstance(body, dict):
        raise _RejectError(400, "The request body must be a JSON object")
    extra = [
        {"type": "extra_forbidden", "loc": ["body", k], "msg": "Extra inputs are not permitted", "input": v}
        for k, v in body.items()
        if k not in _FIELDS
    ]
    if extra:
        raise _RejectError(422, extra)
    value = body.get("input")
    items = [value] if isinstance(value, str) else value
    if not isinstance(body.get("model"), str) or not isinstance(items, list) or not items:
        raise _RejectError(400, "'model' and a non-empty 'input' are required")
    if not all(isinstance(t, str) and t for t in items):
        raise _RejectError(400, "'input' items must be non-empty strings")
    if body.get("task") not in (None, *_TASKS):
        raise _RejectError(400, f"'task' must be one of {list(_TASKS)}")
    if body.get("embedding_type", "float") != "float":
        raise _RejectError(400, "this fake only answers embedding_type 'float'")
    dims = body.get("dimensions") or DEFAULT_DIMENSION
    if not isinstance(dims, int) or dims < 1:
        raise _RejectError(400, "'dimensions' must be a positive integer")
    return items, dims


async def _embed(request: web.Request, body: Any) -> web.StreamResponse:
    items, dims = _validate(body)
    model = str(body["model"])
    mode = mode_of(model)
    if mode.delay:
        await asyncio.sleep(mode.delay)
    if mode.drop:
        abort(request)
    if mode.status is not None:
        headers = {"Retry-After": "7"} if mode.status == 429 else None
        raise _RejectError(mode.status, f"Fake failure {mode.status}", headers)
    data = [
        {"object": "embedding", "index": i, "embedding": embedding_vector(model, text, dims)}
        for i, text in enumerate(items)
    ]
    tokens = sum(len(t.split()) for t in items)
    return web.json_response(
        {
            "model": model,
            "object": "list",
            "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
            "data": data,
        },
        dumps=lambda obj: orjson.dumps(obj).decode(),
    )


def fake_provider() -> FakeProvider:
    """How the contract suite (tests/contract/) runs the ``jina`` type against this fake."""
    return FakeProvider(
        "jina",
        jina_app,
        base_path="/v1",
        api_key=API_KEY,
        options=lambda url: {"task": "retrieval.passage"},
        embed_model="jina-embeddings-v3",
    )
