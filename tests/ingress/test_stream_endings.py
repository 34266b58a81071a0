"""Every API family ends a stream in the write that carries its last events when it can.

When the upstream's end arrives with its last events (aiohttp has the whole
body), the closing events (``[DONE]``, Anthropic's ``message_stop``, the
Responses API's ``response.completed``) and the end of the body go out with
them in one write: no extra read of the upstream just to learn it ended, no
extra write to the client. When the end arrives on its own, the closing
events follow in a write of their own. Driven through the ASGI app with a
recording ``send`` and an upstream whose reads are scripted, so the cut is
exactly the one under test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.conftest import make_config
from tests.stream_helpers import RecordingPool, openai_stream
from uniinfer.server import App, create_app
from uniinfer.stages import RequestContext
from uniinfer.streaming import ChatStream
from uniinfer.types import ChatRequest

_EVENT = b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[%s]}\n\n'
_TEXT = b'{"index":0,"delta":{"content":"%s"},"finish_reason":null}'
_STOP = b'{"index":0,"delta":{},"finish_reason":"stop"}'
_USAGE = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
)
_DONE = b"data: [DONE]\n\n"

#: The upstream's body in reads: the end comes with the last events, or in a read of its own.
ENDS_WITH_LAST_EVENTS = [
    _EVENT % (_TEXT % b"Hel"),
    _EVENT % (_TEXT % b"lo") + _EVENT % _STOP + _USAGE + _DONE,
]
ENDS_ALONE = [*ENDS_WITH_LAST_EVENTS, b""]
#: The body ends with events but before the answer's finish (and ``[DONE]``): cut short. (A body
#: that ends after the finish, without ``[DONE]``, is whole: Perplexity's end so.)
CUT_WITH_LAST_EVENTS = [ENDS_WITH_LAST_EVENTS[0], _EVENT % (_TEXT % b"lo")]


def _app(reads: list[bytes], pool: RecordingPool) -> App:
    """The app with its gateway's streams read from ``reads``."""
    app = create_app(
        make_config("providers:\n  up: {type: openai, api_key: sk-x, base_url: 'http://127.0.0.1:9/v1'}\n")
    )
    gateway = app.gateway

    async def stream(chat: ChatRequest, ctx: RequestContext) -> ChatStream:
        return openai_stream(
            reads, pool=pool, on_done=gateway._finish, ctx=ctx, include_usage=chat.include_usage
        )

    gateway.stream = stream  # type: ignore[method-assign]
    return app


async def _bodies(app: App, path: str, payload: dict[str, Any]) -> list[tuple[bytes, bool]]:
    """The response's body writes: (bytes, more_body)."""
    sent: list[dict[str, Any]] = []
    body = orjson.dumps(payload)
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    await app(scope, receive, send)
    assert (sent[0]["type"], sent[0]["status"]) == ("http.response.start", 200), sent
    return [(m["body"], m.get("more_body", False)) for m in sent[1:]]


#: How each family's error event starts.
ERROR_EVENTS = {
    "openai": b'data: {"error":',
    "anthropic": b"event: error\n",
    "responses": b"event: response.failed\n",
}

FAMILIES: dict[str, tuple[str, dict[str, Any], Callable[[bytes], bool]]] = {
    "openai": (
        "/v1/chat/completions",
        {"model": "up/m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        lambda body: body.endswith(b"data: [DONE]\n\n"),
    ),
    "anthropic": (
        "/v1/messages",
        {"model": "up/m", "stream": True, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
        lambda body: body.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n'),
    ),
    "responses": (
        "/v1/responses",
        {"model": "up/m", "stream": True, "input": "hi"},
        lambda body: b"event: response.completed\n" in body,
    ),
}


@pytest.mark.parametrize("family", FAMILIES)
async def test_the_closing_events_go_with_the_last_ones_when_the_end_came_with_them(family: str) -> None:
    path, payload, closes = FAMILIES[family]
    pool = RecordingPool()
    writes = await _bodies(_app(ENDS_WITH_LAST_EVENTS, pool), path, payload)
    # the first read's events; then the second read's, the closing events and the end, at once
    assert [more for _, more in writes] == [True, False]
    assert b'"lo"' in writes[1][0]
    assert closes(writes[1][0])
    assert pool.closed == [True]  # read to its end: the connection goes back to the pool


@pytest.mark.parametrize("family", FAMILIES)
async def test_the_closing_events_follow_on_their_own_when_the_end_came_alone(family: str) -> None:
    path, payload, closes = FAMILIES[family]
    pool = RecordingPool()
    writes = await _bodies(_app(ENDS_ALONE, pool), path, payload)
    assert [more for _, more in writes] == [True, True, False]
    assert b'"lo"' in writes[1][0]
    assert not closes(writes[1][0])
    assert closes(writes[2][0])
    assert pool.closed == [True]


@pytest.mark.parametrize("family", FAMILIES)
async def test_a_stream_cut_with_its_last_events_sends_them_then_the_error(family: str) -> None:
    path, payload, closes = FAMILIES[family]
    pool = RecordingPool()
    writes = await _bodies(_app(CUT_WITH_LAST_EVENTS, pool), path, payload)
    body = b"".join(data for data, _ in writes)
    assert b'"lo"' in body  # the events that came with the cut reach the caller
    assert body.index(b'"lo"') < body.index(ERROR_EVENTS[family])  # then the error
    assert not closes(body)  # and no closing events that would call the answer whole
    assert [more for _, more in writes][-1] is False
    assert pool.closed == [False]  # a cut stream's connection is not reused


#: A read whose middle event passes the pass-through check but is no chunk (content must be text).
WRONG_SHAPE_MID_READ = [
    _EVENT % (_TEXT % b"Hel")
    + _EVENT % b'{"index":0,"delta":{"content":5},"finish_reason":null}'
    + _EVENT % (_TEXT % b"lo")
    + _DONE
]


@pytest.mark.parametrize("family", ["anthropic", "responses"])  # the families that model each chunk
async def test_a_chunk_of_the_wrong_shape_ends_the_stream_after_the_ones_before_it(family: str) -> None:
    path, payload, closes = FAMILIES[family]
    writes = await _bodies(_app(WRONG_SHAPE_MID_READ, RecordingPool()), path, payload)
    body = b"".join(data for data, _ in writes)
    assert b'"Hel"' in body  # decoded in the same read as the bad event: still sent
    assert body.index(b'"Hel"') < body.index(ERROR_EVENTS[family])
    assert b'"lo"' not in body
    assert not closes(body)
    assert [more for _, more in writes][-1] is False
