"""The OpenAI API family: ``/v1/chat/completions`` (JSON and SSE), ``/v1/embeddings``, ``/v1/models``."""

from __future__ import annotations

import asyncio

from uniinfer.errors import UniInferError, forget_traceback
from uniinfer.server.app import App, Endpoint, Request
from uniinfer.server.wire import (
    SSE_DONE,
    SSE_HEADERS,
    json_body,
    openai_error_body,
    route_headers,
    send_bytes,
    sse_event,
)
from uniinfer.stages import RequestContext
from uniinfer.types import ChatRequest, EmbeddingRequest
from uniinfer.validation import parse_request

__all__ = ["ROUTES"]


async def chat(app: App, request: Request) -> None:
    data = json_body(request.body)
    chat = parse_request(ChatRequest, data)
    ctx = request.context("chat")
    if chat.stream:
        await stream_chat(app, request, chat, ctx)
        return
    body = await app.gateway.chat_json(chat, ctx)
    await send_bytes(request.send, 200, body, route_headers(request.request_id, ctx.route))


async def stream_chat(app: App, request: Request, chat: ChatRequest, ctx: RequestContext) -> None:
    stream = await app.gateway.stream(chat, ctx)
    send = request.send
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": SSE_HEADERS + route_headers(request.request_id, ctx.route),
            }
        )
        ended = False
        try:
            async for body in stream.sse_batches():
                if stream.drained:  # the last events: [DONE] and the end go in the same write
                    await send({"type": "http.response.body", "body": body + SSE_DONE})
                    ended = True
                else:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
        except (UniInferError, asyncio.CancelledError) as caught:
            # Mid-stream failure (or the cut at shutdown): an OpenAI-style error event, then the end.
            exc = app.in_band(caught, request.request_id)
            forget_traceback(exc)
            await send(
                {"type": "http.response.body", "body": sse_event(openai_error_body(exc)), "more_body": True}
            )
            await send({"type": "http.response.body", "body": b""})
            return
        if not ended:
            await send({"type": "http.response.body", "body": SSE_DONE})
    finally:
        await stream.aclose()


async def embeddings(app: App, request: Request) -> None:
    data = json_body(request.body)
    embed = parse_request(EmbeddingRequest, data)
    ctx = request.context("embeddings")
    response = await app.gateway.embed(embed, ctx)
    body = response.model_dump_json().encode()
    await send_bytes(request.send, 200, body, route_headers(request.request_id, ctx.route))


async def models(app: App, request: Request) -> None:
    """``GET /v1/models``, and ``GET /v1/models/{model}`` (the model id may hold a ``/``); in
    Anthropic's shapes for an Anthropic client (:mod:`uniinfer.server.anthropic_models`)."""
    if b"anthropic-version" in request.headers:
        from uniinfer.server import anthropic_models  # with the Anthropic family's modules

        await anthropic_models.models(app, request)
        return
    name = request.path.removeprefix("/v1/models").removeprefix("/")
    if name:
        body = (await app.gateway.retrieve_model(name)).model_dump_json().encode()
    else:
        body = (await app.gateway.discover_models()).model_dump_json().encode()
    await send_bytes(request.send, 200, body, [(b"x-request-id", request.request_id.encode())])


ROUTES = {
    ("POST", "/v1/chat/completions"): Endpoint(chat),
    ("POST", "/v1/embeddings"): Endpoint(embeddings),
    ("GET", "/v1/models"): Endpoint(models, prefix=True),
}
