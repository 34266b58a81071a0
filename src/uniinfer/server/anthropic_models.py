"""``GET /v1/models`` as Anthropic's Models API answers it, for the ``anthropic`` SDK.

A request carrying ``anthropic-version`` (every Anthropic SDK and Claude Code send it; the
OpenAI SDKs never do) gets Anthropic's shapes (https://docs.anthropic.com/en/api/models-list):
a page ``{"data": [{"type": "model", "id", "display_name", "created_at"}], "has_more",
"first_id", "last_id"}`` cut by ``limit`` (1 to 1,000, default 20), ``after_id`` and
``before_id``; one model (``GET /v1/models/{id}``) as one such object; errors as
``{"type": "error", ...}``. The models are the ones ``/v1/models`` lists (and
:meth:`~uniinfer.gateway.Gateway.retrieve_model` finds); their display name is their id.
"""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import parse_qs

import orjson

from uniinfer.errors import InvalidRequestError, UniInferError, forget_traceback
from uniinfer.ingress.anthropic_response import error_body
from uniinfer.server.app import App, Request, log_failure
from uniinfer.server.wire import error_headers, send_bytes
from uniinfer.types import ModelCard

__all__ = ["models"]

_DEFAULT_LIMIT = 20
_MAX_LIMIT = 1000


async def models(app: App, request: Request) -> None:
    """``GET /v1/models`` and ``GET /v1/models/{model}`` in Anthropic's shapes."""
    rid = request.request_id.encode()
    try:
        name = request.path.removeprefix("/v1/models").removeprefix("/")
        if name:
            body = orjson.dumps(_model(await app.gateway.retrieve_model(name)))
        else:
            cards = (await app.gateway.discover_models()).data
            body = orjson.dumps(_page(cards, parse_qs(request.query.decode("latin-1"))))
    except UniInferError as exc:
        log_failure(request.request_id, exc)
        headers = [(b"x-request-id", rid), (b"request-id", rid), *error_headers(exc)]
        try:
            await send_bytes(request.send, exc.http_status, error_body(exc), headers)
        finally:
            forget_traceback(exc)
        return
    await send_bytes(request.send, 200, body, [(b"x-request-id", rid), (b"request-id", rid)])


def _model(card: ModelCard) -> dict[str, Any]:
    created = datetime.datetime.fromtimestamp(card.created, datetime.UTC)
    return {
        "type": "model",
        "id": card.id,
        "display_name": card.id,
        "created_at": created.isoformat().replace("+00:00", "Z"),
    }


def _page(cards: list[ModelCard], query: dict[str, list[str]]) -> dict[str, Any]:
    limit = _limit(query.get("limit", [None])[-1])
    ids = [card.id for card in cards]
    after, before = query.get("after_id", [None])[-1], query.get("before_id", [None])[-1]
    if before is not None:  # the page that ends just before it
        end = ids.index(before) if before in ids else 0
        chosen, has_more = cards[max(0, end - limit) : end], end > limit
    else:
        start = ids.index(after) + 1 if after is not None and after in ids else 0
        if after is not None and after not in ids:
            start = len(ids)  # nothing after a model this list does not have
        chosen, has_more = cards[start : start + limit], start + limit < len(cards)
    data = [_model(card) for card in chosen]
    return {
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def _limit(raw: str | None) -> int:
    if raw is None:
        return _DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdecimal() and len(raw) <= 4) or not 1 <= int(raw) <= _MAX_LIMIT:
        raise InvalidRequestError(f"limit: Input should be an integer from 1 to {_MAX_LIMIT}", param="limit")
    return int(raw)
