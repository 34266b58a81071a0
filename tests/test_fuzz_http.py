"""Whatever a client sends, the server answers in its API's shape: a 2xx or 4xx, never a 500.

Property-based (hypothesis): a valid request of each API family (Chat Completions,
embeddings, Anthropic Messages, Responses) with one random mutation (a value replaced by
any JSON, a field removed, an unknown field added), and bodies that are not requests at
all (JSON as Python's ``json`` writes it: integers of any size). The gateway runs on uvicorn over the OpenAI and Anthropic fakes in a background
thread; requests go over a real socket with a blocking client, as hypothesis drives
synchronous tests. A failure prints the smallest body that broke it.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.contract.harness import contract_config, find_fake, provider_entry
from tests.fakes.common import run_fake
from tests.server_helpers import serve
from uniinfer.providers.registry import default_registry
from uniinfer.server import create_app

#: The statuses a client's request may get here: answered, or refused for what it sent.
CLIENT_STATUSES = frozenset({200, 400, 404, 405, 413, 415, 422})

JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


class Server:
    """The gateway and its fakes, on an event loop in a thread of their own."""

    def __init__(self) -> None:
        self.host = ""
        self.port = 0
        self.models: dict[str, str] = {}
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Server:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the gateway did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by __enter__
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        registry = default_registry()
        openai_fake, anthropic_fake = find_fake(registry.get("openai")), find_fake(registry.get("anthropic"))
        async with run_fake(openai_fake.app()) as openai_url, run_fake(anthropic_fake.app()) as anthropic_url:
            config = contract_config(
                {
                    "openai": provider_entry("openai", openai_fake, openai_url),
                    "anthropic": provider_entry("anthropic", anthropic_fake, anthropic_url),
                }
            )
            self.models = {
                "openai": f"openai/{openai_fake.chat_model}",
                "embed": f"openai/{openai_fake.embed_model}",
                "claude": "anthropic/claude-sonnet-4-5",
                "claude-effort": "anthropic/claude-opus-4-6",
            }
            async with serve(create_app(config)) as base:
                url = urlsplit(base)
                self.host, self.port = url.hostname or "", url.port or 0
                self._ready.set()
                await self._stop.wait()

    def post(self, path: str, body: bytes) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request("POST", path, body=body, headers={"content-type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.getheader("content-type") or "", resp.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server() as running:
        yield running


def valid_requests(models: dict[str, str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """A request each API family answers with 200 (the mutations start from these)."""
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "array", "items": {"type": "integer"}}},
        "required": ["a", "b"],
        "additionalProperties": False,
    }
    return {
        "chat": (
            "/v1/chat/completions",
            {
                "model": models["openai"],
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
                "temperature": 0.5,
                "max_tokens": 20,
                "tools": [tool],
                "stream": False,
            },
        ),
        "chat-to-claude": (
            "/v1/chat/completions",
            {"model": models["claude"], "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20},
        ),
        "chat-strict": (
            "/v1/chat/completions",
            {
                "model": models["openai"],
                "messages": [{"role": "user", "content": "json please"}],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "out", "schema": schema, "strict": True},
                },
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": schema, "strict": True}}
                ],
            },
        ),
        "chat-stream": (
            "/v1/chat/completions",
            {
                "model": models["openai"],
                "messages": [{"role": "user", "content": "hi"}],
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        ),
        "embeddings": ("/v1/embeddings", {"model": models["embed"], "input": ["a", "b"]}),
        "messages": (
            "/v1/messages",
            {
                "model": models["claude"],
                "max_tokens": 20,
                "system": "Be brief.",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            },
        ),
        "messages-stream": (
            "/v1/messages",
            {
                "model": models["claude"],
                "max_tokens": 20,
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
        ),
        "messages-structured": (
            "/v1/messages",
            {
                "model": models["openai"],
                "max_tokens": 4096,
                "messages": [{"role": "user", "content": "hi"}],
                "thinking": {"type": "enabled", "budget_tokens": 1024},
                "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": schema}},
                "tools": [{"name": "f", "input_schema": schema, "strict": True}],
            },
        ),
        "messages-structured-to-claude": (
            "/v1/messages",
            {
                "model": models["claude-effort"],
                "max_tokens": 4096,
                "messages": [{"role": "user", "content": "hi"}],
                "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": schema}},
                "tools": [{"name": "f", "input_schema": schema, "strict": True}],
            },
        ),
        "messages-to-openai": (
            "/v1/messages",
            {"model": models["openai"], "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]},
        ),
        "responses": (
            "/v1/responses",
            {
                "model": models["openai"],
                "input": [{"role": "user", "content": "hi"}],
                "max_output_tokens": 20,
            },
        ),
    }


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document (the root excluded)."""
    out: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        out.append((*prefix, key))
        out += _paths(child, (*prefix, key))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with one to three mutations."""
    doc = orjson.loads(orjson.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if paths:
            _mutate(draw, doc, draw(st.sampled_from(paths)))
    return doc


def _mutate(draw: st.DrawFn, doc: Any, path: tuple[Any, ...]) -> None:
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    action = draw(st.sampled_from(["replace", "remove", "add"]))
    if action == "replace":
        parent[key] = draw(JSON)
    elif action == "remove":
        del parent[key]
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=8))] = draw(JSON)
    else:
        parent.append(draw(JSON))


def check_answer(family: str, status: int, kind: str, body: bytes) -> None:
    assert status in CLIENT_STATUSES, (status, body[:500])
    assert b"Traceback" not in body
    if status == 200:
        if kind.startswith("text/event-stream"):  # a stream ends with its API's last event
            last = body.rstrip().rsplit(b"\n\n", 1)[-1]
            assert last.startswith((b"data: [DONE]", b"event: message_stop", b"event: error")), body[-300:]
        return
    assert kind.startswith("application/json"), kind
    error = orjson.loads(body)
    if family.startswith("messages"):
        assert error["type"] == "error"
        assert isinstance(error["error"]["message"], str)
        assert error["error"]["type"]
    else:
        assert set(error["error"]) >= {"message", "type", "param", "code"}
        assert isinstance(error["error"]["message"], str)
        assert error["error"]["message"]


#: The same examples on every run (CI must not pass or fail by chance); UNIINFER_FUZZ_EXPLORE=1
#: draws new ones each run, to look for more (what it finds becomes a fixed test).
FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,
    derandomize=not os.environ.get("UNIINFER_FUZZ_EXPLORE"),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize(
    "family",
    [
        "chat",
        "chat-strict",
        "chat-stream",
        "chat-to-claude",
        "embeddings",
        "messages",
        "messages-stream",
        "messages-structured",
        "messages-structured-to-claude",
        "messages-to-openai",
        "responses",
    ],
)
@FUZZ
@given(data=st.data())
def test_a_mutated_request_gets_an_answer_or_a_client_error(
    server: Server, family: str, data: st.DataObject
) -> None:
    path, base = valid_requests(server.models)[family]
    body = data.draw(mutated(base), label="body")
    status, kind, answer = server.post(path, json.dumps(body).encode())
    check_answer(family, status, kind, answer)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings", "/v1/messages", "/v1/responses"])
@FUZZ
@given(body=JSON.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=64))
def test_a_body_that_is_not_a_request_is_a_client_error(server: Server, path: str, body: bytes) -> None:
    status, kind, answer = server.post(path, body)
    assert status != 200 or body.strip().startswith(b"{"), body
    check_answer("messages" if path == "/v1/messages" else "openai", status, kind, answer)
