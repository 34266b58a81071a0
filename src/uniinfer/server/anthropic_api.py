"""The Anthropic API family: ``POST /v1/messages`` (JSON and SSE) and ``POST /v1/messages/count_tokens``.

The official ``anthropic`` SDK (``base_url`` = the server, ``api_key`` = the
master key, sent as ``x-api-key``) and the tools built on it reach every
model uniinfer serves: requests are translated by
:mod:`uniinfer.ingress.anthropic` and go through the same gateway as the
OpenAI routes. The ``anthropic-version`` header is accepted and not required;
the features an ``anthropic-beta`` header names reach a Claude API upstream in
its own ``anthropic-beta`` (with any configured for the provider) on the Claude
API only (Vertex AI takes only some of them and refuses others with a 400;
Bedrock takes betas in the body, not passed; other providers have no such
switch; a beta an operator wants there is configured in the provider's
``headers``); query strings
(``?beta=true``) are ignored.

Errors have Anthropic's shape (:func:`~uniinfer.ingress.anthropic.error_body`)
and keep ``retry-after``; answers and errors after routing carry the
``x-request-id`` and ``x-uniinfer-*`` headers.

``count_tokens`` answers ``{"input_tokens": N}``. When the model routes to a
provider of type ``anthropic`` (the first deployment of its group), the
request is forwarded to that provider's own ``/v1/messages/count_tokens``
with the adapter's headers (``x-uniinfer-token-count: provider``); otherwise,
or when that endpoint does not exist there (404), the count is an offline
estimate (``x-uniinfer-token-count: estimated``).

``create_app`` registers :data:`ROUTES` as a family loaded on the first request under
``/v1/messages`` (:meth:`~uniinfer.server.app.App.add_family`): this module and the
translation layer are imported then, not at start-up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
from typing import Any

import orjson

from uniinfer.errors import ProviderResponseError, UniInferError, forget_traceback
from uniinfer.http import HttpRequest
from uniinfer.ingress.anthropic import (
    CountTokensRequest,
    MessagesRequest,
    StreamRenderer,
    anthropic_betas,
    error_body,
    error_type,
    estimate_input_tokens,
    messages_field,
    parse_anthropic,
    to_chat_request,
    to_message,
)
from uniinfer.routing.group import Member
from uniinfer.server.app import App, Endpoint, Request, log_failure
from uniinfer.server.wire import SSE_HEADERS, Headers, error_headers, json_body, route_headers, send_bytes
from uniinfer.stages import RequestContext, Route
from uniinfer.tokens import encoding_loaded
from uniinfer.types import ChatRequest, MessagesIntent

__all__ = ["ROUTES"]

_COUNT_HEADER = b"x-uniinfer-token-count"


async def messages(app: App, request: Request) -> None:
    """``POST /v1/messages``."""
    req = parse_anthropic(MessagesRequest, json_body(request.body))
    chat = to_chat_request(req, _betas(request))
    ctx = request.context("chat")
    if req.stream:
        await _stream(app, request, req, chat, ctx)
        return
    try:
        response = await app.gateway.chat(chat, ctx)
        body = orjson.dumps(to_message(response, req.model))  # an answer it cannot render is one too
    except UniInferError as exc:
        await _send_error(request, exc, ctx.route, chat)
        return
    await send_bytes(request.send, 200, body, _headers(request, ctx.route, chat))


async def _stream(
    app: App, request: Request, req: MessagesRequest, chat: ChatRequest, ctx: RequestContext
) -> None:
    try:
        stream = await app.gateway.stream(chat, ctx)
    except UniInferError as exc:
        await _send_error(request, exc, ctx.route, chat)
        return
    send = request.send
    renderer = StreamRenderer(req.model)
    try:
        headers = SSE_HEADERS + _headers(request, ctx.route, chat)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        ended = False
        try:
            async for batch in stream.batches():
                data = b"".join([renderer.feed(chunk) for chunk in batch])
                if stream.drained:  # the last events: the closing ones go in the same write
                    await send({"type": "http.response.body", "body": data + renderer.finish()})
                    ended = True
                elif data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
        except (UniInferError, asyncio.CancelledError) as caught:
            # Mid-stream failure (or the cut at shutdown): an Anthropic error event, then the end.
            error = app.in_band(caught, request.request_id)
            forget_traceback(error)
            await send({"type": "http.response.body", "body": renderer.error(error), "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        if not ended:
            await send({"type": "http.response.body", "body": renderer.finish()})
    finally:
        await stream.aclose()


def _headers(request: Request, route: Route | None, chat: ChatRequest) -> Headers:
    """Route headers, with dropped parameters named as the Messages API names them (what the
    caller sent: :func:`~uniinfer.ingress.anthropic_response.messages_field`)."""
    if route is not None and route.dropped_params:
        names = tuple(dict.fromkeys(messages_field(p, chat) or p for p in route.dropped_params))
        route = dataclasses.replace(route, dropped_params=names)
    return [*route_headers(request.request_id, route), _request_id(request)]


def _request_id(request: Request) -> tuple[bytes, bytes]:
    """Anthropic's own ``request-id`` header, which its SDKs read (``message._request_id``)."""
    return (b"request-id", request.request_id.encode())


#: Bodies up to this size are counted on the event loop (a millisecond or so).
_COUNT_INLINE_BYTES = 64 * 1024


@functools.cache
def _counter() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread big counts run in: not the loop's default executor, which aiohttp's DNS
    lookups and the AWS credential chain share (a few big counts held chats' lookups for seconds)."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="uniinfer-count")


async def count_tokens(app: App, request: Request) -> None:
    """``POST /v1/messages/count_tokens``: forwarded to Anthropic, or estimated."""
    data = json_body(request.body)
    req = parse_anthropic(CountTokensRequest, data)
    chat = to_chat_request(req, _betas(request))
    ctx = request.context("chat")
    member = app.gateway.router.decide(req.model, chat, ctx).group.members[0]
    if app.config.provider_type(member.target.provider) == "anthropic":
        try:
            counted = await _upstream_count(app, member, chat, data)
        except UniInferError as exc:
            if not exc.retryable:  # the request's fault (a 400, a 401): the caller's to hear
                raise
            counted = None  # the provider unavailable for now (5xx, 429, unreachable): estimated
        if counted is not None:
            route = Route(req.model, member.target.provider, member.target.model, attempts=1)
            headers = [
                *route_headers(request.request_id, route),
                _request_id(request),
                (_COUNT_HEADER, b"provider"),
            ]
            await send_bytes(request.send, 200, orjson.dumps({"input_tokens": counted}), headers)
            return
    if len(request.body) > _COUNT_INLINE_BYTES or not encoding_loaded():
        # megabytes of text take the encoder seconds, and loading it a fifth of one: not on the
        # event loop, which every other request waits for (the encoder releases the GIL), and
        # one at a time, in a thread of their own
        estimate = await asyncio.get_running_loop().run_in_executor(_counter(), estimate_input_tokens, req)
    else:
        estimate = estimate_input_tokens(req)
    body = orjson.dumps({"input_tokens": estimate})
    headers = [
        (b"x-request-id", request.request_id.encode()),
        _request_id(request),
        (_COUNT_HEADER, b"estimated"),
    ]
    await send_bytes(request.send, 200, body, headers)


async def _upstream_count(app: App, member: Member, chat: ChatRequest, data: dict[str, Any]) -> int | None:
    """The provider's own count; None when it has no count_tokens endpoint (404)."""
    target = member.target
    adapter = target.adapter
    http = app.gateway.http
    await adapter.prepare_credentials(http)
    # The adapter's own request gives the URL and headers (key, version, configured extras): of a
    # bare request, as what the adapter would refuse in this one (an effort level the model lacks)
    # is the provider's to judge here, and the body sent is the client's own.
    template = adapter.chat_request(_bare(chat), target.model, stream=False)
    url = template.url.rstrip("/") + "/count_tokens"
    payload = orjson.dumps({**_current(data), "model": target.model})
    resp = await http.send(HttpRequest(url, payload, template.headers), member.timeouts, target.provider)
    if resp.status == 404:
        return None
    if resp.status >= 400:
        raise adapter.parse_error(resp.status, resp.headers, resp.body)
    try:
        counted = orjson.loads(resp.body)["input_tokens"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        counted = None
    if not isinstance(counted, int):
        raise ProviderResponseError(
            f"{target.provider}: unexpected count_tokens response",
            provider=target.provider,
            upstream_body=resp.body[:512].decode("utf-8", "replace"),
        )
    return counted


def _bare(chat: ChatRequest) -> ChatRequest:
    """A request with nothing of ``chat``'s but its model and its betas (headers)."""
    bare = ChatRequest.model_validate({"model": chat.model, "messages": [{"role": "user", "content": "."}]})
    intent = chat.messages_intent
    return bare.with_messages_intent(MessagesIntent(False, betas=intent.betas)) if intent else bare


def _current(data: dict[str, Any]) -> dict[str, Any]:
    """The client's body with the deprecated beta ``output_format`` as ``output_config.format``,
    as ``/v1/messages`` reads it (the count endpoint may refuse the old name)."""
    if "output_format" not in data:
        return data
    data = dict(data)
    config = dict(data.get("output_config") or {})
    config.setdefault("format", data.pop("output_format"))
    data.pop("output_format", None)
    return {**data, "output_config": config}


def _betas(request: Request) -> tuple[str, ...]:
    """The client's ``anthropic-beta`` features (the Claude API gets them; see :class:`MessagesIntent`)."""
    header = request.headers.get(b"anthropic-beta")
    return anthropic_betas(header.decode("latin-1")) if header else ()


async def _send_error(request: Request, exc: UniInferError, route: Route | None, chat: ChatRequest) -> None:
    """An error before any byte was sent, with the routing headers of what was tried."""
    log_failure(request.request_id, exc)
    headers: Headers = [*route_headers(request.request_id, route), _request_id(request), *error_headers(exc)]
    status = exc.http_status
    if error_type(exc) == "billing_error":  # Anthropic's own answer to an account out of credit
        status = 402
        if (b"x-should-retry", b"false") not in headers:  # the Anthropic SDKs' retry decision
            headers.append((b"x-should-retry", b"false"))
    try:
        await send_bytes(request.send, status, error_body(exc, chat), headers)
    finally:
        forget_traceback(exc)


ROUTES = {
    ("POST", "/v1/messages"): Endpoint(messages, render_error=error_body),
    ("POST", "/v1/messages/count_tokens"): Endpoint(count_tokens, render_error=error_body),
}
