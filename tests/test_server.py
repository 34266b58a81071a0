"""The HTTP server, driven by the official ``openai`` SDK and raw HTTP, over the OpenAI fake."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import aiohttp
import openai
import pytest
from aiohttp import web
from multidict import CIMultiDict

from tests.server_helpers import serve
from uniinfer.config import Config
from uniinfer.errors import UniInferError, UnsupportedParamError
from uniinfer.server import App, create_app
from uniinfer.server.app import Endpoint, _Watch
from uniinfer.stages import RequestContext
from uniinfer.types import ChatRequest

MASTER = "sk-master-key-for-tests"
MSG = [{"role": "user", "content": "hello there"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def app(config_for: Callable[..., Config]) -> App:
    return create_app(
        config_for(
            "models:\n  chat: {deployments: [up/gpt-4o-mini]}\n"
            "  flaky: {deployments: [up/error-500, up/gpt-4o-mini]}\n",
            master_key=MASTER,
        )
    )


@pytest.fixture
async def base_url(app: App) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=MASTER, max_retries=0) as c:
        yield c


async def test_chat_completion_with_the_openai_sdk(client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(model="chat", messages=MSG)  # type: ignore[arg-type]
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert raw.headers["x-uniinfer-provider"] == "up"
    assert raw.headers["x-uniinfer-model"] == "gpt-4o-mini"
    assert raw.headers["x-uniinfer-attempts"] == "1"
    assert len(raw.headers["x-request-id"]) >= 16


async def test_fallback_is_visible_in_headers(client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(model="flaky", messages=MSG)  # type: ignore[arg-type]
    assert raw.parse().choices[0].message.content == "echo: hello there"
    assert raw.headers["x-uniinfer-attempts"] == "2"
    assert raw.headers["x-uniinfer-fallbacks"] == "up/error-500"


async def test_stream_with_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="chat",
        messages=MSG,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


async def test_stream_without_usage_has_no_usage_chunk(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="chat", messages=MSG, stream=True)  # type: ignore[arg-type]
    chunks = [c async for c in stream]
    assert chunks
    assert all(c.choices and c.usage is None for c in chunks)


async def test_tool_calls_plain_and_streamed(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="up/tool-model",
        messages=MSG,  # type: ignore[arg-type]
        tools=TOOLS,  # type: ignore[arg-type]
    )
    call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"location": "Paris"}  # type: ignore[union-attr]
    assert completion.choices[0].finish_reason == "tool_calls"

    stream = await client.chat.completions.create(
        model="up/tool-model",
        messages=MSG,  # type: ignore[arg-type]
        tools=TOOLS,  # type: ignore[arg-type]
        stream=True,
    )
    args = ""
    async for chunk in stream:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            assert delta.index == 0
            args += delta.function.arguments or "" if delta.function else ""
    assert json.loads(args) == {"location": "Paris"}

    # The answer goes back as a tool message, and the conversation continues.
    follow_up = await client.chat.completions.create(
        model="chat",
        messages=[
            *MSG,
            completion.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'},
        ],  # type: ignore[list-item]
        tools=TOOLS,  # type: ignore[arg-type]
    )
    assert follow_up.choices[0].message.content is not None


async def test_json_mode(client: openai.AsyncOpenAI) -> None:
    json_msg = [{"role": "user", "content": "reply in json please"}]
    completion = await client.chat.completions.create(
        model="chat",
        messages=json_msg,  # type: ignore[arg-type]
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    completion = await client.chat.completions.create(
        model="chat",
        messages=MSG,  # type: ignore[arg-type]
        response_format={"type": "json_schema", "json_schema": {"name": "echo", "schema": schema}},
    )
    assert "echo" in json.loads(completion.choices[0].message.content or "")


async def test_embeddings_float_and_base64(client: openai.AsyncOpenAI, base_url: str) -> None:
    # The SDK asks for base64 by default and decodes it itself.
    result = await client.embeddings.create(model="up/text-embedding-3-small", input=["a b", "c"])
    assert len(result.data) == 2
    assert len(result.data[0].embedding) == 8
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            base_url + "/v1/embeddings",
            json={"model": "up/text-embedding-3-small", "input": "a b", "encoding_format": "float"},
            headers={"Authorization": f"Bearer {MASTER}"},
        ) as resp,
    ):
        floats = (await resp.json())["data"][0]["embedding"]
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            base_url + "/v1/embeddings",
            json={"model": "up/text-embedding-3-small", "input": "a b", "encoding_format": "base64"},
            headers={"Authorization": f"Bearer {MASTER}"},
        ) as resp,
    ):
        encoded = (await resp.json())["data"][0]["embedding"]
    decoded = struct.unpack(f"<{len(floats)}f", base64.b64decode(encoded))
    assert decoded == pytest.approx(floats, rel=1e-6)
    assert result.data[0].embedding == pytest.approx(floats, rel=1e-6)


async def test_models_list(client: openai.AsyncOpenAI) -> None:
    models = [m async for m in client.models.list()]
    ids = {m.id for m in models}
    assert {"chat", "flaky", "up/*", "anthropic/*"} <= ids
    by_id = {m.id: m for m in models}
    assert by_id["up/*"].model_extra == {"available": True}
    assert by_id["anthropic/*"].model_extra == {"available": False}


async def test_models_retrieve(client: openai.AsyncOpenAI) -> None:
    card = await client.models.retrieve("chat")  # a configured name
    assert (card.id, card.object, card.owned_by) == ("chat", "model", "up")
    direct = await client.models.retrieve("up/gpt-4o-mini")  # any model of a configured provider routes
    assert (direct.id, direct.owned_by) == ("up/gpt-4o-mini", "up")
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("no-such-model")
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError, match="ANTHROPIC_API_KEY"):
        await client.models.retrieve("anthropic/claude-sonnet-4-5")  # known provider, no key: says so


async def test_auth_errors_are_openai_shaped(base_url: str) -> None:
    async with openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="sk-wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            await bad.chat.completions.create(model="chat", messages=MSG)  # type: ignore[arg-type]
    assert info.value.status_code == 401
    assert info.value.code == "authentication_failed"
    assert "sk-wrong" not in str(info.value)
    async with aiohttp.ClientSession() as session, session.get(base_url + "/v1/models") as resp:
        assert resp.status == 401
        body = await resp.json()
        assert body["error"]["type"] == "authentication_error"
        assert resp.headers["x-request-id"]
        assert resp.headers["www-authenticate"] == 'Bearer realm="uniinfer"'  # RFC 9110 11.6.1
        # a provider refusing the gateway's own key to it: no challenge for the caller's key
        body = {"model": "up/error-401", "messages": MSG}
        auth = {"Authorization": f"Bearer {MASTER}"}
        async with session.post(base_url + "/v1/chat/completions", json=body, headers=auth) as upstream:
            assert upstream.status == 401
            assert (await upstream.json())["error"]["provider"] == "up"
            assert "www-authenticate" not in upstream.headers


@pytest.mark.parametrize("order", [("good", "bad"), ("bad", "good")])
async def test_two_authorization_lines_are_refused_whichever_comes_first(
    base_url: str, order: tuple[str, str]
) -> None:
    # a proxy in front may read the first line and the gateway the last: neither decides
    keys = {"good": MASTER, "bad": "sk-wrong"}
    lines = CIMultiDict([("Authorization", f"Bearer {keys[k]}") for k in order])
    async with (
        aiohttp.ClientSession() as session,
        session.get(base_url + "/v1/models", headers=lines) as resp,
    ):
        assert resp.status == 401


def test_the_anthropic_and_responses_families_are_not_imported_at_start_up() -> None:
    # their translation layers load with the first request under their paths (App.add_family)
    code = (
        "import sys\n"
        "from uniinfer.config import parse_config\n"
        "from uniinfer.server import create_app\n"
        "app = create_app(parse_config('providers: {}', source='t', env={}))\n"
        "print(sorted(m for m in sys.modules if m.startswith('uniinfer.ingress')))\n"
        "app._route('POST', '/v1/messages')\n"
        "print('uniinfer.ingress.anthropic' in sys.modules, 'uniinfer.ingress.responses' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.splitlines() == ["[]", "True False"]


def test_a_family_that_failed_to_load_is_loaded_again_by_the_next_request(app: App) -> None:
    async def handler(app: App, request: object) -> None:
        return None

    tries: list[int] = []

    def load() -> dict[tuple[str, str], Endpoint]:
        tries.append(1)
        if len(tries) == 1:
            raise OSError(24, "Too many open files")  # the import failed this once
        return {("POST", "/v1/extra"): Endpoint(handler)}

    app.add_family("/v1/extra", load)
    with pytest.raises(OSError, match="Too many open files"):
        app._route("POST", "/v1/extra")
    assert app._route("POST", "/v1/extra").handler is handler  # not a 404 from now on


def test_a_family_loaded_late_keeps_a_route_added_after_create_app(app: App) -> None:
    async def custom(app: App, request: object) -> None:
        return None

    app.add_routes({("POST", "/v1/messages"): Endpoint(custom)})
    assert app._route("POST", "/v1/messages/count_tokens").handler is not custom  # the family loaded
    assert app._route("POST", "/v1/messages").handler is custom  # and left the integrator's route


async def test_the_first_request_to_a_family_not_loaded_yet_gets_that_familys_answer(base_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        # unauthenticated, before anything loaded the Messages family: Anthropic's error shape
        async with session.post(base_url + "/v1/messages", json={}, headers={"x-api-key": "sk-no"}) as resp:
            assert resp.status == 401
            body = await resp.json()
            assert body["type"] == "error"
            assert body["error"]["type"] == "authentication_error"
        async with session.post(base_url + "/v1/messages/batches", json={}) as resp:
            assert resp.status in (401, 404)
            assert (await resp.json())["type"] == "error"
        key = {"authorization": f"Bearer {MASTER}"}
        async with session.get(base_url + "/v1/responses/resp_1", headers=key) as resp:
            assert resp.status == 404
            assert "does not store responses" in (await resp.json())["error"]["message"]
        async with session.get(base_url + "/v1/messages", headers=key) as resp:
            assert resp.status == 405
            assert resp.headers["allow"] == "POST"


async def test_validation_errors_name_the_field(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="chat", messages=MSG, temperature=2.5)  # type: ignore[arg-type]
    assert info.value.param == "temperature"
    assert "temperature" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="chat", messages=[])
    assert info.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="chat",
            messages=[{"role": "tool", "tool_call_id": "call_1", "content": "x"}],
        )
    assert info.value.param == "messages[0].tool_call_id"
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="chat", messages=MSG, max_tokens=0)  # type: ignore[arg-type]
    assert info.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="chat",
            messages=[{"role": "wizard", "content": "x"}],  # type: ignore[list-item, misc]
        )
    assert info.value.param is not None
    assert info.value.param.startswith("messages[0]")


@pytest.mark.parametrize(
    ("path", "fields", "param", "message"),
    [
        (
            "/v1/chat/completions",
            {"max_tokens": True},
            "max_tokens",
            "Invalid type for 'max_tokens': expected an integer, but got a boolean instead.",
        ),
        ("/v1/chat/completions", {"stream": "yes"}, "stream", "expected a boolean, but got a string"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
            "Missing required parameter: 'messages[0].content[0].text'.",
        ),
        (
            "/v1/chat/completions",
            {"tools": [{"type": "custom", "custom": {"name": "g"}}]},
            "tools[0].type",
            "not supported by uniinfer",
        ),
        ("/v1/embeddings", {"input": [True]}, "input[0]", "expected a string, but got a boolean"),
        (
            "/v1/embeddings",
            {"input": "x", "dimensions": "5"},
            "dimensions",
            "expected an integer, but got a string",
        ),
        (
            "/v1/responses",
            {"input": "x", "temperature": "0.5"},
            "temperature",
            "expected a number, but got a string",
        ),
    ],
)
async def test_wrong_types_are_a_400_naming_the_param(
    base_url: str, path: str, fields: dict[str, object], param: str, message: str
) -> None:
    body = {"model": "chat", **({"messages": MSG} if path.endswith("completions") else {}), **fields}
    async with (
        aiohttp.ClientSession() as session,
        session.post(base_url + path, json=body, headers={"Authorization": f"Bearer {MASTER}"}) as resp,
    ):
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["param"] == param
    assert message in error["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        ('{"model": "chat", "messages": []}'.encode("utf-16"), "not UTF-8 text"),
        (b'{"model": "caf\xe9"}', "not UTF-8 text (byte 0xe9 at offset 14)"),
        (b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "bogus": 1}', "bogus"),
    ],
)
async def test_bad_bodies_get_400_without_a_stack_trace(base_url: str, body: bytes, fragment: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            base_url + "/v1/chat/completions",
            data=body,
            headers={"Authorization": f"Bearer {MASTER}", "content-type": "application/json"},
        ) as resp,
    ):
        assert resp.status == 400
        payload = await resp.json()
    assert fragment in payload["error"]["message"]
    assert "Traceback" not in json.dumps(payload)


def _nested(depth: int) -> dict[str, object]:
    """A JSON object ``depth`` levels deep."""
    value: dict[str, object] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "chat", "messages": MSG}),
        ("/v1/messages", {"model": "chat", "max_tokens": 8, "messages": MSG}),
        ("/v1/responses", {"model": "chat", "input": "hi"}),
    ],
)
async def test_json_nested_too_deep_is_a_400_up_to_the_limit_it_is_served(
    base_url: str, path: str, body: dict[str, object]
) -> None:
    from uniinfer.server.wire import MAX_JSON_DEPTH

    def with_tool_schema(depth: int) -> bytes:
        # body -> tools -> [0] -> function -> parameters: the schema nests the rest
        if path == "/v1/chat/completions":
            tool: dict[str, object] = {
                "type": "function",
                "function": {"name": "f", "parameters": _nested(depth - 4)},
            }
        elif path == "/v1/messages":
            tool = {"name": "f", "input_schema": {"type": "object", "properties": _nested(depth - 4)}}
        else:
            tool = {
                "type": "function",
                "name": "f",
                "parameters": {"type": "object", "properties": _nested(depth - 4)},
            }
        return json.dumps({**body, "tools": [tool]}).encode()

    headers = {"Authorization": f"Bearer {MASTER}", "content-type": "application/json"}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            base_url + path, data=with_tool_schema(MAX_JSON_DEPTH), headers=headers
        ) as resp:
            assert resp.status == 200, await resp.text()
        for depth in (MAX_JSON_DEPTH + 1, 300):  # 300: past what the serialisers on the way take
            async with session.post(base_url + path, data=with_tool_schema(depth), headers=headers) as resp:
                assert resp.status == 400
                payload = await resp.json()
            message = payload["error"]["message"]
            assert f"more than {MAX_JSON_DEPTH} levels deep" in message
            if path == "/v1/messages":
                assert payload["type"] == "error"  # Anthropic's shape


@pytest.mark.parametrize(
    ("seconds", "header", "ms"), [(4.4, "5", "4400"), (7, "7", "7000"), (0.2, "1", "200")]
)
def test_retry_after_is_rounded_up_and_given_in_milliseconds_too(
    seconds: float, header: str, ms: str
) -> None:
    from uniinfer.errors import RateLimitError
    from uniinfer.server.wire import error_headers

    headers = dict(error_headers(RateLimitError("slow down", retry_after=seconds)))
    assert headers == {b"retry-after": header.encode(), b"retry-after-ms": ms.encode()}


async def test_a_compressed_body_is_a_415_naming_the_encoding(base_url: str) -> None:
    import gzip

    body = gzip.compress(json.dumps({"model": "chat", "messages": MSG}).encode())
    headers = {
        "Authorization": f"Bearer {MASTER}",
        "content-type": "application/json",
        "content-encoding": "gzip",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(base_url + "/v1/chat/completions", data=body, headers=headers) as resp,
    ):
        assert resp.status == 415
        payload = await resp.json()
    assert payload["error"]["code"] == "unsupported_media_type"
    assert "Content-Encoding 'gzip'" in payload["error"]["message"]


@pytest.mark.parametrize(
    "kind",
    ["text/plain", "application/x-www-form-urlencoded; charset=UTF-8", "Multipart/Form-Data; boundary=x"],
)
async def test_a_body_a_web_page_could_post_anywhere_is_a_415_and_reaches_no_provider(
    base_url: str, kind: str, openai_fake_app: web.Application, config_for: Callable[..., Config]
) -> None:
    """A page in the operator's browser may POST these types to any origin without asking it
    (CORS simple requests): a gateway without a master key refuses them, so no page can spend
    its provider credits by sending JSON as text. JSON, declared or not, is served; and with a
    master key (which such a request cannot carry) a client labelling its JSON so is served."""
    body = json.dumps({"model": "up/m", "messages": MSG}).encode()
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {MASTER}", "content-type": kind}
        async with session.post(base_url + "/v1/chat/completions", data=body, headers=headers) as keyed:
            assert keyed.status == 200  # curl -d with the key: served
        openai_fake_app["requests"].clear()
    async with serve(create_app(config_for())) as keyless, aiohttp.ClientSession() as session:
        base_url = keyless
        for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/messages", "/v1/responses"):
            async with session.post(base_url + path, data=body, headers=headers) as resp:
                assert resp.status == 415, path
                payload = await resp.json()
            assert payload["error"]["type"] in ("unsupported_media_type", "invalid_request_error"), path
            assert "Content-Type: application/json" in payload["error"]["message"]
        assert openai_fake_app["requests"] == []
        for ok in ("application/json", "application/json; charset=utf-8"):
            headers["content-type"] = ok
            async with session.post(base_url + "/v1/chat/completions", data=body, headers=headers) as resp:
                assert resp.status == 200


async def test_a_keyless_gateway_refuses_a_web_page_of_another_origin_whatever_it_sends(
    openai_fake_app: web.Application, config_for: Callable[..., Config]
) -> None:
    """A page can POST a body with no Content-Type at all (a fetch of a Blob, sendBeacon) to any
    origin without asking it; its browser says where it comes from (Origin, Sec-Fetch-Site)."""
    body = json.dumps({"model": "up/m", "messages": MSG}).encode()
    async with serve(create_app(config_for())) as base_url, aiohttp.ClientSession() as session:
        url = base_url + "/v1/chat/completions"
        for page in ({"Origin": "http://evil.test"}, {"Sec-Fetch-Site": "cross-site"}):
            async with session.post(url, data=body, headers={**page, "Content-Type": ""}) as resp:
                assert resp.status == 403, page
                payload = await resp.json()
            assert payload["error"]["code"] == "permission_denied"
            assert "another origin" in payload["error"]["message"]
        assert openai_fake_app["requests"] == []
        same = {"Origin": base_url, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}
        async with session.post(url, data=body, headers=same) as resp:
            assert resp.status == 200  # the gateway's own page, and clients outside a browser
        async with session.get(base_url + "/health", headers={"Origin": "http://evil.test"}) as resp:
            assert resp.status == 200  # nothing to spend there


async def test_an_error_no_retry_mends_tells_the_sdks_not_to_retry_and_says_what_routing_did(
    base_url: str, openai_fake_app: web.Application
) -> None:
    # an account out of quota (a 429 the SDKs retry by themselves) and a provider error (a 502
    # they retry too, but one a retry may mend): only the first says x-should-retry: false
    auth = {"Authorization": f"Bearer {MASTER}"}
    async with aiohttp.ClientSession() as session:
        body = {"model": "up/error-402", "messages": MSG}
        async with session.post(base_url + "/v1/chat/completions", json=body, headers=auth) as resp:
            assert (resp.status, resp.headers.get("x-should-retry")) == (429, "false")
            assert (await resp.json())["error"]["code"] == "insufficient_quota"
            assert resp.headers["x-uniinfer-provider"] == "up"  # the route, as on a success
        body = {"model": "up/error-500", "messages": MSG}
        async with session.post(base_url + "/v1/chat/completions", json=body, headers=auth) as resp:
            assert resp.status == 502
            assert "x-should-retry" not in resp.headers
            assert (resp.headers["x-uniinfer-provider"], resp.headers["x-uniinfer-attempts"]) == ("up", "1")
    openai_fake_app["requests"].clear()


async def test_the_anthropic_sdk_lists_and_retrieves_models_in_its_own_shapes(base_url: str) -> None:
    import anthropic

    async with anthropic.AsyncAnthropic(base_url=base_url, api_key=MASTER, max_retries=0) as claude:
        everything = [m async for m in claude.models.list(limit=1000)]
        ids = [m.id for m in everything]
        assert "up/*" in ids
        assert all(m.type == "model" and m.display_name == m.id and m.created_at for m in everything)
        first = await claude.models.list(limit=2)
        assert ([m.id for m in first.data], first.has_more) == (ids[:2], len(ids) > 2)
        assert first.last_id == ids[1]
        after = await claude.models.list(limit=2, after_id=ids[1])
        assert [m.id for m in after.data] == ids[2:4]
        before = await claude.models.list(limit=1, before_id=ids[2])
        assert [m.id for m in before.data] == [ids[1]]
        one = await claude.models.retrieve("up/gpt-4o-mini")
        assert (one.id, one.type) == ("up/gpt-4o-mini", "model")
        with pytest.raises(anthropic.NotFoundError) as missing:
            await claude.models.retrieve("nope")
        assert missing.value.body["type"] == "error"  # type: ignore[index]
        with pytest.raises(anthropic.BadRequestError):
            await claude.models.list(limit=0)
    headers = {"x-api-key": MASTER, "anthropic-version": "2023-06-01"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(base_url + "/v1/models?limit=%C2%B2", headers=headers) as resp,
    ):
        assert resp.status == 400  # a digit Python reads, not a number
        assert (await resp.json())["type"] == "error"
    async with (
        aiohttp.ClientSession() as session,
        session.get(base_url + "/v1/models?limit=" + "1" * 5000, headers=headers) as resp,
    ):
        assert resp.status == 400  # beyond what int() reads
    # the OpenAI SDK, which sends no anthropic-version, keeps OpenAI's shape
    async with openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=MASTER) as client:
        assert (await client.models.retrieve("up/gpt-4o-mini")).owned_by == "up"


async def test_openai_s_deprecated_function_calling_is_refused_saying_to_use_tools(base_url: str) -> None:
    auth = {"Authorization": f"Bearer {MASTER}"}
    functions = [{"name": "f", "parameters": {"type": "object"}}]
    async with aiohttp.ClientSession() as session:
        body = {"model": "up/gpt-4o-mini", "messages": MSG, "functions": functions}
        async with session.post(base_url + "/v1/chat/completions", json=body, headers=auth) as resp:
            assert resp.status == 400
            error = (await resp.json())["error"]
        assert (error["code"], error["param"]) == ("unsupported_feature", "functions")
        assert "'tools'" in error["message"]
        # the Responses API's tools have another shape: no Chat Completions hint there
        body = {"model": "up/gpt-4o-mini", "input": "hi", "functions": functions}
        async with session.post(base_url + "/v1/responses", json=body, headers=auth) as resp:
            assert resp.status == 400
            error = (await resp.json())["error"]
        assert (error["param"], error["code"]) == ("functions", "invalid_request")
        assert "'tools'" not in error["message"]


def test_a_failure_s_log_line_is_one_line_whatever_the_caller_wrote(caplog: pytest.LogCaptureFixture) -> None:
    from uniinfer.errors import InvalidRequestError
    from uniinfer.server.app import log_failure

    with caplog.at_level("INFO", logger="uniinfer.server"):
        log_failure(
            "r-2", InvalidRequestError("Unrecognized request argument supplied: x\nrequest r-1 failed: 500")
        )
    (record,) = caplog.records
    assert "\n" not in record.getMessage()
    assert "x\\nrequest r-1" in record.getMessage()


async def test_upstream_errors_keep_status_and_retry_after(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="up/error-429", messages=MSG)  # type: ignore[arg-type]
    assert info.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="nope", messages=MSG)  # type: ignore[arg-type]
    with pytest.raises(openai.InternalServerError) as info5:
        await client.chat.completions.create(model="up/error-500", messages=MSG)  # type: ignore[arg-type]
    assert info5.value.status_code == 502


@pytest.mark.parametrize("model", ["up/gpt-4o-mini\r\nx-injected: 1", "up/gpt\x00", "up/gpt\x7f"])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_model_name_with_a_control_character_is_a_404_before_any_upstream_call(
    base_url: str, openai_fake_app: web.Application, model: str, stream: bool
) -> None:
    # The name reaches the x-uniinfer-* headers, which may not hold a control character: the
    # server failed the answer after the provider had served (and billed) it, cutting the connection.
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            base_url + "/v1/chat/completions",
            json={"model": model, "messages": MSG, "stream": stream},
            headers={"Authorization": f"Bearer {MASTER}"},
        ) as resp,
    ):
        assert resp.status == 404
        assert "x-injected" not in resp.headers
        error = (await resp.json())["error"]
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert openai_fake_app["requests"] == []


async def test_mid_stream_failure_is_an_error_event(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="up/cut-model", messages=MSG, stream=True)  # type: ignore[arg-type]
    with pytest.raises(openai.APIError, match="connection closed before the response was complete"):
        async for _ in stream:
            pass


async def test_an_after_stage_failing_once_a_stream_ended_is_logged_not_sent(
    config_for: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    from uniinfer.errors import ProviderError
    from uniinfer.gateway import Gateway

    class Meter:
        async def after(self, ctx: RequestContext) -> None:
            raise ProviderError("the usage store is down")

    gateway = Gateway(
        config_for("models:\n  chat: {deployments: [up/gpt-4o-mini]}\n"), stages={"usage": Meter()}
    )
    async with serve(create_app(gateway=gateway)) as url, aiohttp.ClientSession() as session:
        body = {"model": "chat", "messages": MSG, "stream": True}
        async with session.post(url + "/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
            text = (await resp.read()).decode()
    events = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]) == (
        "echo: hello there"
    )
    assert "error" not in text
    assert "an after-stage failed once the stream ended: the usage store is down" in caplog.text


async def test_dropped_params_header(
    config_for: Callable[..., Config],
) -> None:
    app = create_app(config_for(drop=True))
    async with (
        serve(app) as url,
        openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0) as client,
    ):
        raw = await client.chat.completions.with_raw_response.create(
            model="up/gpt-4o-mini",
            messages=MSG,  # type: ignore[arg-type]
            extra_body={"top_k": 3},
        )
    assert raw.headers["x-uniinfer-dropped-params"] == "top_k"


async def test_request_id_is_echoed_and_body_limit_enforced(base_url: str) -> None:
    headers = {"Authorization": f"Bearer {MASTER}", "x-request-id": "trace-abc.123"}
    async with aiohttp.ClientSession() as session:
        async with session.get(base_url + "/health", headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["x-request-id"] == "trace-abc.123"
        async with session.get(base_url + "/health", headers={"x-request-id": "bad id\twith tab"}) as resp:
            assert resp.headers["x-request-id"] != "bad id\twith tab"
        big = b'{"model": "chat", "messages": [{"role": "user", "content": "' + b"x" * 9_000_000 + b'"}]}'
        async with session.post(base_url + "/v1/chat/completions", data=big, headers=headers) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"]["code"] == "request_too_large"
        async with session.get(base_url + "/v1/nope", headers=headers) as resp:
            assert resp.status == 404
        async with session.get(base_url + "/v1/chat/completions", headers=headers) as resp:
            assert resp.status == 405


async def test_health_and_ready(app: App, base_url: str) -> None:
    # start-up opened the upstream pool, so the first request does not pay for it
    assert app.gateway.http._session is not None
    async with aiohttp.ClientSession() as session:
        async with session.get(base_url + "/health") as resp:
            assert resp.status == 200
        async with session.get(base_url + "/ready") as resp:
            assert resp.status == 200
            assert "up" in (await resp.json())["providers"]
        app.draining = True
        async with session.get(base_url + "/ready") as resp:
            assert resp.status == 503
        app.draining = False


async def _wait_for(predicate: Callable[[], bool]) -> None:
    for _ in range(300):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def _live(*types: type) -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, types))


@pytest.mark.parametrize(
    ("model", "stream"),
    [
        ("chat", False),
        ("chat", True),
        ("flaky", False),  # a 500, then the fallback answers
        ("up/error-500", False),
        ("up/error-500", True),
        ("no-such-model", False),
        ("up/cut", True),  # an error event after the first chunks
    ],
)
async def test_requests_leave_no_garbage_cycles(
    client: openai.AsyncOpenAI, monkeypatch: pytest.MonkeyPatch, model: str, stream: bool
) -> None:
    """A request's objects are freed when it ends, whether it succeeded or failed.

    A reference cycle (a stopped watcher task holding its CancelledError, whose
    traceback holds the watcher; an answered error whose traceback holds the
    frames that hold the request context, which records the error) would keep
    them until the collector ran: at 128 requests in flight its collections
    took up to 100 ms, the latency tail. With the collector off, whatever is
    left is such a cycle. Each request here is looked at for a disconnect
    (under uvicorn by the app's sweep; the other servers' watcher task is
    tested below).
    """
    monkeypatch.setattr("uniinfer.server.app.WATCH_AFTER_SECONDS", 0.0)
    ours = (_Watch, RequestContext, UniInferError)
    gc.collect()
    gc.disable()
    try:
        before = _live(*ours)  # what earlier tests still hold
        for _ in range(3):
            with contextlib.suppress(openai.APIError):
                if stream:
                    async for _chunk in await client.chat.completions.create(
                        model=model, messages=MSG, stream=True
                    ):
                        pass
                else:
                    await client.chat.completions.create(model=model, messages=MSG)
        assert _live(*ours) == before
    finally:
        gc.enable()


async def test_a_watcher_stopped_before_its_first_step_leaves_no_cycle() -> None:
    async def receive() -> dict[str, object]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    task = asyncio.current_task()
    assert task is not None
    gc.collect()
    gc.disable()
    try:
        before = _live(_Watch)
        watch = _Watch(task, receive)
        watch.start()
        watch.stop()  # the response came before the watcher's task first ran
        del watch
        for _ in range(3):
            await asyncio.sleep(0)
        assert _live(_Watch) == before
    finally:
        gc.enable()


@pytest.mark.parametrize("stream", [False, True])
async def test_client_disconnect_cancels_the_upstream_request(app: App, base_url: str, stream: bool) -> None:
    http = app.gateway.http
    body = {"model": "up/slow-5", "messages": MSG, "stream": stream}

    async def call() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                base_url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {MASTER}"}
            ) as resp,
        ):
            await resp.read()

    task = asyncio.create_task(call())
    await _wait_for(lambda: http.busy_connections == 1)
    # uvicorn records the disconnect on the request's cycle, which the sweep reads (an
    # upgrade that drops the flag falls back to a watcher task per request: noticed here)
    assert len(app._sweeper._watched) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _wait_for(lambda: http.busy_connections == 0)
    await _wait_for(lambda: app.in_flight == 0)
    assert not app._sweeper._watched  # nothing of the request is kept
    assert not app._sweeper._cancelled


async def test_under_another_asgi_server_a_watcher_task_cancels_on_disconnect(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose ``receive`` records no ``disconnected`` flag: the portable watcher."""
    monkeypatch.setattr("uniinfer.server.app.WATCH_AFTER_SECONDS", 0.0)
    http = app.gateway.http
    gone = asyncio.Event()
    call, sent = _asgi_call(app, "/v1/chat/completions", {"model": "up/slow-5", "messages": MSG}, gone)
    gc.collect()
    gc.disable()
    try:
        before = _live(_Watch, RequestContext)
        task = asyncio.create_task(call())
        await _wait_for(lambda: http.busy_connections == 1)
        gone.set()
        await asyncio.wait_for(task, 5)  # cancelled by the watcher, not answered after 5 s
        assert sent == []
        assert app.in_flight == 0
        await _wait_for(lambda: http.busy_connections == 0)
        del task
        assert _live(_Watch, RequestContext) == before
    finally:
        gc.enable()


async def test_beyond_max_concurrent_requests_a_request_is_shed_with_retry_after(
    config_for: Callable[..., Config],
) -> None:
    config = config_for(master_key=MASTER)
    config = config.model_copy(
        update={"server": config.server.model_copy(update={"max_concurrent_requests": 1})}
    )
    app = create_app(config)
    auth = {"Authorization": f"Bearer {MASTER}", "x-api-key": MASTER}
    async with serve(app) as url, aiohttp.ClientSession() as session:

        async def post(
            path: str, body: dict[str, object]
        ) -> tuple[int, Mapping[str, str], dict[str, object]]:
            async with session.post(url + path, json=body, headers=auth) as resp:
                return resp.status, resp.headers.copy(), await resp.json()

        held = asyncio.create_task(post("/v1/chat/completions", {"model": "up/slow-1", "messages": MSG}))
        await _wait_for(lambda: app.in_flight == 1)

        status, headers, body = await post(
            "/v1/chat/completions", {"model": "up/gpt-4o-mini", "messages": MSG}
        )
        assert (status, headers["Retry-After"]) == (503, "1")
        error = body["error"]
        assert isinstance(error, dict)
        assert error["code"] == "service_unavailable"
        assert "max_concurrent_requests" in error["message"]
        assert headers["x-request-id"]

        status, _, body = await post(
            "/v1/messages", {"model": "up/gpt-4o-mini", "max_tokens": 8, "messages": MSG}
        )
        assert status == 503
        assert body["type"] == "error"  # Anthropic's shape on an Anthropic path

        async with session.get(url + "/health") as resp:
            assert resp.status == 200  # probes are never shed
        async with session.get(url + "/ready") as resp:
            assert resp.status == 200

        status, _, _ = await held
        assert status == 200  # the request in flight was not disturbed
        assert app.in_flight == 0
        status, _, body = await post("/v1/chat/completions", {"model": "up/gpt-4o-mini", "messages": MSG})
        assert status == 200  # capacity is back once it ended


async def test_probes_and_refused_requests_never_take_a_slot_of_max_concurrent_requests(
    config_for: Callable[..., Config],
) -> None:
    # a probe whose declared body never comes, and a caller without the key, held open: neither
    # may shut out the authenticated requests (the limit was counted before either was known)
    config = config_for(master_key=MASTER)
    config = config.model_copy(
        update={"server": config.server.model_copy(update={"max_concurrent_requests": 1})}
    )
    app = create_app(config)
    async with serve(app) as url, aiohttp.ClientSession() as session:
        host, port = url.removeprefix("http://").split(":")
        held = []
        for head in (
            b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(head)
            await writer.drain()
            held.append((reader, writer))
        try:
            assert await held[1][0].readuntil(b" 401 ")  # the stranger is refused at once
            body = {"model": "up/gpt-4o-mini", "messages": MSG}
            auth = {"Authorization": f"Bearer {MASTER}"}
            async with session.post(url + "/v1/chat/completions", json=body, headers=auth) as resp:
                assert resp.status == 200
            assert app.in_flight == 0
        finally:
            for _, writer in held:
                writer.close()


async def test_method_not_allowed_speaks_the_path_s_api_family(base_url: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(base_url + "/v1/messages", headers={"x-api-key": MASTER}) as resp,
    ):
        assert resp.status == 405
        body = await resp.json()
    assert body["type"] == "error"  # Anthropic's shape on an Anthropic path
    assert "GET" in body["error"]["message"]
    assert resp.headers["Allow"] == "POST"  # RFC 9110: a 405 says what is allowed


@pytest.mark.parametrize(
    ("path", "anthropic_shape"),
    [("/v1/messages/batches", True), ("/v1/messages/count_tokens/x", True), ("/v1/nothing", False)],
)
async def test_an_unknown_path_answers_in_its_api_family_s_shape(
    base_url: str, path: str, anthropic_shape: bool
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(base_url + path, headers={"x-api-key": MASTER}, json={}) as resp,
    ):
        assert resp.status == 404
        body = await resp.json()
    assert (body.get("type") == "error") is anthropic_shape  # the anthropic SDK reads this shape
    assert path in body["error"]["message"]


async def test_head_is_a_get_without_its_body(base_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.head(base_url + "/health") as resp:  # load balancers' health checks
            assert resp.status == 200
            assert await resp.read() == b""
        auth = {"Authorization": f"Bearer {MASTER}"}
        async with session.head(base_url + "/v1/models", headers=auth) as resp:
            assert resp.status == 200
        async with session.head(base_url + "/v1/models") as resp:
            assert resp.status == 401  # the GET's auth applies
        async with session.head(base_url + "/v1/chat/completions", headers=auth) as resp:
            assert resp.status == 405
            assert resp.headers["Allow"] == "POST"
        async with session.delete(base_url + "/v1/models", headers=auth) as resp:
            assert resp.headers["Allow"] == "GET, HEAD"


def _asgi_call(
    app: App, path: str, body: dict[str, object], gone: asyncio.Event
) -> tuple[Callable[[], Awaitable[None]], list[dict[str, object]]]:
    """An authenticated POST straight on the ASGI app, under a server without uvicorn's
    ``disconnected`` flag (the client leaves when ``gone`` is set), and what it sent."""
    inbox = [{"type": "http.request", "body": json.dumps(body).encode()}]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        if inbox:
            return inbox.pop()
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"authorization", f"Bearer {MASTER}".encode())],
        "query_string": b"",
    }
    return lambda: app(scope, receive, send), sent


async def _run_cut(
    app: App, path: str, body: dict[str, object], *, draining: bool
) -> list[dict[str, object]]:
    """Start a slow request straight on the ASGI app, cancel it as a server's shutdown does."""
    http = app.gateway.http
    call, sent = _asgi_call(app, path, body, asyncio.Event())
    task = asyncio.create_task(call())
    await _wait_for(lambda: http.busy_connections == 1)
    if body.get("stream"):  # a stream under way: its head sent once the upstream's first event came
        await _wait_for(lambda: bool(sent))
    app.draining = draining
    try:
        task.cancel("timeout graceful shutdown exceeded")
        await asyncio.wait_for(task, 5)
    finally:
        app.draining = False
        await _wait_for(lambda: http.busy_connections == 0)
    assert app.in_flight == 0
    return sent


async def test_a_request_cut_at_shutdown_answers_503_in_its_apis_shape(app: App) -> None:
    """Past the grace period the server cancels what is left: a 503, not a traceback and a plain 500.

    (Here through the portable path, a server without uvicorn's ``disconnected`` flag;
    tests/test_lifecycle.py cuts requests of the real ``uniinfer serve``.)
    """
    chat = {"model": "up/slow-5", "messages": MSG}
    sent = await _run_cut(app, "/v1/chat/completions", chat, draining=True)
    assert sent[0]["status"] == 503
    assert (b"retry-after", b"1") in sent[0]["headers"]  # type: ignore[operator]
    assert json.loads(sent[1]["body"])["error"]["code"] == "service_unavailable"  # type: ignore[arg-type]

    messages = {"model": "up/slow-5", "max_tokens": 10, "messages": MSG}
    sent = await _run_cut(app, "/v1/messages", messages, draining=True)
    assert sent[0]["status"] == 503
    error = json.loads(sent[1]["body"])  # type: ignore[arg-type]
    assert error["type"] == "error"
    assert error["error"]["type"] == "overloaded_error"

    # A stream under way says why it ends, in its API's error event (no cut connection)
    stalled = {"model": "up/stall", "messages": MSG, "stream": True}
    sent = await _run_cut(app, "/v1/chat/completions", stalled, draining=True)
    body = b"".join(m.get("body", b"") for m in sent)  # type: ignore[misc]
    assert sent[0]["status"] == 200
    assert sent[-1] == {"type": "http.response.body", "body": b""}  # ended, not abandoned
    assert b'"code":"service_unavailable"' in body.rsplit(b"\n\n", 2)[-2]
    assert b"[DONE]" not in body
    sent = await _run_cut(
        app, "/v1/messages", {**messages, "model": "up/stall", "stream": True}, draining=True
    )
    body = b"".join(m.get("body", b"") for m in sent)  # type: ignore[misc]
    assert b"event: error" in body
    assert b"overloaded_error" in body
    sent = await _run_cut(
        app, "/v1/responses", {"model": "up/stall", "input": "hi", "stream": True}, draining=True
    )
    body = b"".join(m.get("body", b"") for m in sent)  # type: ignore[misc]
    assert b"event: response.failed" in body

    # not shutting down, a cancellation is not turned into an answer
    with pytest.raises(asyncio.CancelledError):
        await _run_cut(app, "/v1/chat/completions", chat, draining=False)


async def test_a_request_cut_at_shutdown_while_its_body_is_still_coming_answers_503(app: App) -> None:
    # its body half sent when the grace period ends: a 503 in its API's shape, not the ASGI
    # server's plain-text 500 and a logged traceback
    sent: list[dict[str, object]] = []
    first = {"type": "http.request", "body": b'{"model": "up/m", ', "more_body": True}
    inbox = [first]
    stalled = asyncio.Event()

    async def receive() -> dict[str, object]:
        if inbox:
            return inbox.pop()
        stalled.set()
        await asyncio.Event().wait()  # the rest never comes
        raise AssertionError("unreachable")

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [(b"authorization", f"Bearer {MASTER}".encode()), (b"content-length", b"100")],
        "query_string": b"",
    }
    task = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(stalled.wait(), 5)
    app.draining = True
    try:
        task.cancel("timeout graceful shutdown exceeded")
        await asyncio.wait_for(task, 5)
    finally:
        app.draining = False
    assert sent[0]["status"] == 503
    assert json.loads(sent[1]["body"])["error"]["code"] == "service_unavailable"  # type: ignore[arg-type]
    assert app.in_flight == 0


async def test_openai_s_own_fields_reach_openai_and_are_refused_by_the_rows(
    client: openai.AsyncOpenAI, openai_fake_app: web.Application
) -> None:
    # moderation, prompt_cache_options and a part's prompt_cache_breakpoint (the SDK's typed
    # arguments): forwarded to OpenAI as sent; an OpenAI-compatible row refuses them by name
    part = {"type": "text", "text": "hello there", "prompt_cache_breakpoint": {"mode": "explicit"}}
    own = {"moderation": {"model": "omni-moderation-latest"}, "prompt_cache_options": {"ttl": "30m"}}
    await client.chat.completions.create(
        model="up/gpt-4o-mini",
        messages=[{"role": "user", "content": [part]}],  # type: ignore[list-item]
        extra_body=own,
    )
    sent = openai_fake_app["requests"][-1]["body"]
    assert (sent["moderation"], sent["prompt_cache_options"]) == (
        own["moderation"],
        own["prompt_cache_options"],
    )
    assert sent["messages"][0]["content"][0]["prompt_cache_breakpoint"] == {"mode": "explicit"}
    # the row's refusal is the fitter's, checked without a server
    from uniinfer.fitting import RequestFitter
    from uniinfer.providers.base import Endpoint
    from uniinfer.providers.registry import default_registry
    from uniinfer.routing.group import Target

    registry = default_registry()
    adapter = registry.create(registry.get("groq"), Endpoint(base_url="http://127.0.0.1:9", api_key="k"))
    request = ChatRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **own}
    )
    with pytest.raises(UnsupportedParamError) as info:
        RequestFitter(drop=False).chat(request, Target("groq", "m", adapter))
    assert info.value.param == "moderation"
    plain = ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": [part]}]})
    body = json.loads(adapter.chat_request(plain, "m", stream=False).body)
    assert "prompt_cache_breakpoint" not in body["messages"][0]["content"][0]


async def test_a_number_beyond_a_double_is_refused_naming_its_field(base_url: str) -> None:
    # valid JSON (RFC 8259 sets no limit): "number is infinity" with no param was the answer
    body = b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e400}'
    headers = {"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(base_url + "/v1/chat/completions", data=body, headers=headers) as resp,
    ):
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["param"] == "temperature"
    # an integer beyond 64 bits, where a field takes no bound: refused naming it (was a 500:
    # no JSON encoder for the upstream request takes it)
    huge = (
        b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1'
        + b"0" * 400
        + b"}"
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(base_url + "/v1/chat/completions", data=huge, headers=headers) as resp,
    ):
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == "max_tokens"
    async with (
        aiohttp.ClientSession() as session,
        session.post(base_url + "/v1/chat/completions", data=b'{"a": NaN}', headers=headers) as resp,
    ):
        assert resp.status == 400
        assert "not valid JSON" in (await resp.json())["error"]["message"]
    # in a free-form field (a tool's schema, web_search_options) no validation bounds it: it reached
    # the provider as null, or rounded; and beside such a number a lone surrogate escape, which only
    # the fallback reader takes, was a 500 when the upstream request was encoded
    start = b'{"model": "chat", "messages": [{"role": "user", "content": '
    cases = {
        start + b'"hi"}], "web_search_options": {"x": 1e400}}': ("web_search_options.x", "64-bit float"),
        start + b'"hi"}], "web_search_options": {"x": [1, 2' + b"0" * 400 + b"]}}": (
            "web_search_options.x[1]",
            "64 bits",
        ),
        b'{"web_search_options": {"x": 1e400}, "model": "chat", "messages": [{"role": "user", "content": "a\\ud800b"}]}': (
            "web_search_options.x",
            "64-bit float",
        ),
        b'{"temperature": 1e400, "model": "chat", "messages": [{"role": "user", "content": "a\\ud800b"}]}': (
            "temperature",
            "64-bit float",
        ),
        b'{"n": 1e400, "model": "chat", "messages": [{"role": "user", "content": "a\\udc00b"}], "seed": 1}': (
            "n",
            "64-bit float",
        ),
    }
    async with aiohttp.ClientSession() as session:
        for data, (param, words) in cases.items():
            async with session.post(base_url + "/v1/chat/completions", data=data, headers=headers) as resp:
                assert resp.status == 400, data
                error = (await resp.json())["error"]
            assert (error["param"], words in error["message"]) == (param, True), error
