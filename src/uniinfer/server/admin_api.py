"""Operations routes: liveness, readiness, routing dry runs, experiment feedback and reports."""

from __future__ import annotations

import orjson

from uniinfer.errors import InvalidRequestError, NotFoundError, ServiceUnavailableError
from uniinfer.server.app import App, Endpoint, Request
from uniinfer.server.wire import json_body, send_bytes
from uniinfer.types import ChatRequest
from uniinfer.validation import parse_request

__all__ = ["ROUTES"]


async def route_explain(app: App, request: Request) -> None:
    """Dry run of routing for a chat request body: nothing is sent upstream."""
    chat = parse_request(ChatRequest, json_body(request.body))
    ctx = request.context("chat")
    body = orjson.dumps(app.gateway.router.explain(chat, ctx))
    await send_bytes(request.send, 200, body, [(b"x-request-id", request.request_id.encode())])


#: The largest feedback score, either way (a rating, a reward: far below where sums overflow).
MAX_SCORE = 1e6


async def feedback(app: App, request: Request) -> None:
    """``{"request_id", "score"}``: user feedback on an answer, attributed to its experiment variant."""
    data = json_body(request.body)
    request_id, score = data.get("request_id"), data.get("score")
    if not isinstance(request_id, str) or not request_id:
        raise InvalidRequestError("'request_id' must be the x-request-id of an answer", param="request_id")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not abs(score) <= MAX_SCORE:
        # bounded: scores near the float range made the report's statistics overflow (a 500)
        raise InvalidRequestError(
            f"'score' must be a number from -{MAX_SCORE:g} to {MAX_SCORE:g}", param="score"
        )
    if not app.gateway.router.experiments.feedback(request_id, float(score)):
        raise NotFoundError(
            f"request '{request_id}' is not part of an experiment (or too old to remember)",
            param="request_id",
        )
    await send_bytes(
        request.send, 200, b'{"recorded":true}', [(b"x-request-id", request.request_id.encode())]
    )


async def experiments(app: App, request: Request) -> None:
    """``GET /v1/experiments`` lists them; ``GET /v1/experiments/<name>`` reports one."""
    store = app.gateway.router.experiments
    name = request.path.removeprefix("/v1/experiments").strip("/")
    if not name:
        body = orjson.dumps({"object": "list", "data": store.experiments()})
    elif name not in store.experiments():
        raise NotFoundError(f"no experiment named '{name}'", param="name")
    else:
        body = orjson.dumps(store.report(name).to_dict())
    await send_bytes(request.send, 200, body, [(b"x-request-id", request.request_id.encode())])


async def health(app: App, request: Request) -> None:
    await send_bytes(request.send, 200, b'{"status":"ok"}', [(b"x-request-id", request.request_id.encode())])


async def ready(app: App, request: Request) -> None:
    if app.draining:
        raise ServiceUnavailableError("the gateway is shutting down")
    providers = [p.name for p in app.gateway.provider_status() if p.available]
    body = orjson.dumps({"status": "ready", "providers": providers})
    await send_bytes(request.send, 200, body, [(b"x-request-id", request.request_id.encode())])


ROUTES = {
    ("POST", "/v1/route/explain"): Endpoint(route_explain),
    ("POST", "/v1/feedback"): Endpoint(feedback),
    ("GET", "/v1/experiments"): Endpoint(experiments, prefix=True),
    ("GET", "/health"): Endpoint(health, public=True),
    ("GET", "/ready"): Endpoint(ready, public=True),
}
