"""The OpenAI Responses API family (stateless): ``POST /v1/responses``, JSON and SSE, to any provider.

The body is translated to a Chat request (:mod:`uniinfer.ingress.responses`),
routed by the gateway like any chat request and answered as a ``response``
object or as typed Responses stream events. uniinfer stores nothing, so the
routes that read stored responses (``GET /v1/responses/{id}``, its
``input_items``, ``DELETE``, ``cancel``...) answer 404 saying so.

Errors have the OpenAI shape, with ``param`` naming the Responses field
(``max_output_tokens``, not ``max_completion_tokens``); ``Retry-After`` and the
``x-uniinfer-*`` routing headers are sent as for Chat Completions.
"""

from __future__ import annotations

import asyncio
import dataclasses

import orjson

from uniinfer.errors import NotFoundError, UniInferError, forget_traceback
from uniinfer.ingress.responses import (
    ResponsesRequest,
    ResponsesStreamRenderer,
    parse_responses_request,
    rename_error,
    responses_param,
    to_chat_request,
    to_response,
)
from uniinfer.ingress.responses_stream import sse
from uniinfer.server.app import App, Endpoint, Request
from uniinfer.server.wire import SSE_HEADERS, Headers, json_body, route_headers, send_bytes
from uniinfer.stages import RequestContext, Route
from uniinfer.types import ChatRequest

__all__ = ["ROUTES"]


async def responses(app: App, request: Request) -> None:
    """``POST /v1/responses``: one response, or its stream of events."""
    req = parse_responses_request(json_body(request.body))
    chat = to_chat_request(req)
    ctx = request.context("chat")
    if req.stream:
        await stream_response(app, request, req, chat, ctx)
        return
    try:
        answer = await app.gateway.chat(chat, ctx)
    except UniInferError as exc:
        raise rename_error(exc) from None
    body = orjson.dumps(to_response(answer, req))
    await send_bytes(request.send, 200, body, _headers(request, ctx))


async def stream_response(
    app: App, request: Request, req: ResponsesRequest, chat: ChatRequest, ctx: RequestContext
) -> None:
    """Server-sent events; a failure after the first byte is ``response.failed``, then the end."""
    try:
        stream = await app.gateway.stream(chat, ctx)
    except UniInferError as exc:
        raise rename_error(exc) from None
    renderer = ResponsesStreamRenderer(req)
    send = request.send
    try:
        await send(
            {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + _headers(request, ctx)}
        )
        ended = False
        try:
            async for batch in stream.batches():
                events = [event for chunk in batch for event in renderer.feed(chunk)]
                if stream.drained:  # the last events: the closing ones go in the same write
                    await send(
                        {"type": "http.response.body", "body": sse(events + renderer.finish(ctx.usage))}
                    )
                    ended = True
                elif events:
                    await send({"type": "http.response.body", "body": sse(events), "more_body": True})
            if ended:
                return
            tail = renderer.finish(ctx.usage)
        except (UniInferError, asyncio.CancelledError) as caught:  # incl. the cut at shutdown
            error = app.in_band(caught, request.request_id)
            forget_traceback(error)
            tail = renderer.fail(error)
        await send({"type": "http.response.body", "body": sse(tail)})
    finally:
        await stream.aclose()


def _headers(request: Request, ctx: RequestContext) -> Headers:
    """Route headers, with dropped parameters named as the Responses API names them."""
    route: Route | None = ctx.route
    if route is not None and route.dropped_params:
        names = tuple(dict.fromkeys(responses_param(p) for p in route.dropped_params))
        route = dataclasses.replace(route, dropped_params=names)
    return route_headers(request.request_id, route)


async def stored_response(app: App, request: Request) -> None:
    """Every route that reads or changes a stored response: uniinfer stores none."""
    rest = request.path.removeprefix("/v1/responses").strip("/")
    response_id = rest.split("/", 1)[0]
    if not response_id or response_id in ("input_tokens", "compact"):
        raise NotFoundError(
            f"{request.path} is not supported by uniinfer's Responses API (only POST /v1/responses)."
        )
    raise NotFoundError(
        f"Response with id '{response_id}' not found: uniinfer does not store responses (stateless "
        "Responses API). Keep the output you need and send it back as input items."
    )


ROUTES = {
    ("POST", "/v1/responses"): Endpoint(responses),
    # Under /v1/responses/: retrieve, input_items, delete, cancel... (prefix routes are per method).
    ("GET", "/v1/responses"): Endpoint(stored_response, prefix=True),
    ("DELETE", "/v1/responses"): Endpoint(stored_response, prefix=True),
    ("POST", "/v1/responses/"): Endpoint(stored_response, prefix=True),
}
