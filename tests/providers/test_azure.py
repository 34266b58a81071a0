"""Azure OpenAI over real sockets: deployment and v1 URLs, api-version, api-key and Entra ID auth,
content filtering, Azure's annotation chunks in streams, embeddings and errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.conftest import make_config
from tests.fakes.azure import API_KEY, CLIENT_ID, CLIENT_SECRET, ENTRA_TOKEN, TENANT_ID, azure_app
from tests.fakes.common import run_fake
from tests.providers.support import decode_bytewise, modelled
from uniinfer.errors import (
    AuthenticationError,
    ConfigError,
    ContentFilteredError,
    ModelNotFoundError,
    RateLimitError,
)
from uniinfer.gateway import Gateway
from uniinfer.http import HttpClient, HttpRequest, Timeouts
from uniinfer.providers.azure import AzureOpenAIAdapter
from uniinfer.providers.base import Endpoint
from uniinfer.providers.registry import default_registry
from uniinfer.stages import RequestContext
from uniinfer.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    RawEvents,
    StreamItem,
)

SAFE = {"hate": {"filtered": False, "severity": "safe"}}


def make(base_url: str, api_key: str | None = API_KEY, **options: Any) -> AzureOpenAIAdapter:
    reg = default_registry()
    adapter = reg.create(reg.get("azure"), Endpoint(base_url=base_url, api_key=api_key, options=options))
    assert isinstance(adapter, AzureOpenAIAdapter)
    return adapter


def chat(**fields: Any) -> ChatRequest:
    fields.setdefault("model", "azure/m")
    fields.setdefault("messages", [{"role": "user", "content": "hello there"}])
    return ChatRequest.model_validate(fields)


class Fake:
    def __init__(self, app: web.Application, url: str, http: HttpClient) -> None:
        self.app, self.url, self.http = app, url, http
        self.adapter = make(url)

    @property
    def requests(self) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = self.app["requests"]
        return seen

    async def complete(
        self, request: ChatRequest, model: str, adapter: AzureOpenAIAdapter | None = None
    ) -> ChatResponse:
        adapter = adapter or self.adapter
        resp = await self.http.send(adapter.chat_request(request, model, stream=False), Timeouts(), "azure")
        if resp.status != 200:
            raise adapter.parse_error(resp.status, resp.headers, resp.body)
        return adapter.parse_chat(resp.body, model)

    async def stream(
        self, request: ChatRequest, model: str, adapter: AzureOpenAIAdapter | None = None
    ) -> list[ChatChunk]:
        adapter = adapter or self.adapter
        s = await self.http.open_stream(
            adapter.chat_request(request, model, stream=True), Timeouts(), "azure"
        )
        done = False
        try:
            if s.status != 200:
                raise adapter.parse_error(s.status, s.headers, await s.read())
            decoder = adapter.stream_decoder(model)
            items: list[StreamItem] = []
            async for data in s.iter_bytes():
                items += decoder.feed(data)
            out = modelled([*items, *decoder.close()])
            done = True
            return out
        finally:
            HttpClient.close_stream(s, complete=done)

    async def embed(self, request: EmbeddingRequest, model: str) -> EmbeddingResponse:
        resp = await self.http.send(self.adapter.embed_request(request, model), Timeouts(), "azure")
        if resp.status != 200:
            raise self.adapter.parse_error(resp.status, resp.headers, resp.body)
        return self.adapter.parse_embed(resp.body, model)


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    app = azure_app()
    async with run_fake(app) as url:
        http = HttpClient()
        try:
            yield Fake(app, url, http)
        finally:
            await http.aclose()


def text_of(chunks: list[ChatChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --- configuration and URLs ----------------------------------------------------------------


def test_the_placeholder_endpoint_and_missing_credentials_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        make("https://YOUR-RESOURCE.openai.azure.com")
    with pytest.raises(ConfigError, match="entra_token"):
        make("https://r.openai.azure.com", api_key=None)
    with pytest.raises(ConfigError, match="deployment"):
        make("https://r.openai.azure.com", deployment="x")


def test_an_endpoint_printed_shows_neither_the_key_nor_the_entra_token() -> None:
    key, token = "azure-key-0123456789abcdef", "eyJ0eXAi.entra-secret"
    endpoint = Endpoint(base_url="https://r.openai.azure.com", api_key=key, options={"entra_token": token})
    adapter = default_registry().create(default_registry().get("azure"), endpoint)
    for text in (repr(endpoint), repr(adapter.endpoint), str(endpoint)):
        assert "https://r.openai.azure.com" in text
        assert key not in text
        assert token not in text


def test_deployment_and_v1_urls() -> None:
    plain = make("https://r.openai.azure.com/openai/")
    assert plain.deployment_url("gpt 4o", "chat/completions") == (
        "https://r.openai.azure.com/openai/deployments/gpt%204o/chat/completions?api-version=2024-10-21"
    )
    v1 = make("https://r.openai.azure.com", use_v1_api=True)
    assert v1.deployment_url("gpt-4o", "embeddings") == "https://r.openai.azure.com/openai/v1/embeddings"
    preview = make("https://r.openai.azure.com/openai/v1", use_v1_api=True, api_version="preview")
    assert preview.deployment_url("gpt-4o", "chat/completions") == (
        "https://r.openai.azure.com/openai/v1/chat/completions?api-version=preview"
    )


def test_entra_token_replaces_the_api_key_and_is_redacted() -> None:
    adapter = make("https://r.openai.azure.com", api_key=None, entra_token=ENTRA_TOKEN)
    headers = adapter.chat_request(chat(), "gpt-4o", stream=False).headers
    assert headers["authorization"] == f"Bearer {ENTRA_TOKEN}"
    assert "api-key" not in headers
    assert ENTRA_TOKEN not in adapter.redact(f"token {ENTRA_TOKEN} rejected")
    keyed = make("https://r.openai.azure.com").chat_request(chat(), "gpt-4o", stream=False).headers
    assert keyed["api-key"] == API_KEY
    assert "authorization" not in keyed


def test_streams_ask_for_usage_only_on_api_versions_that_accept_it() -> None:
    def options(**opts: Any) -> Any:
        request: HttpRequest = make("https://r.openai.azure.com", **opts).chat_request(
            chat(), "m", stream=True
        )
        return orjson.loads(request.body).get("stream_options")

    assert options() == {"include_usage": True}
    assert options(api_version="2024-12-01-preview") == {"include_usage": True}
    assert options(api_version="2024-06-01") is None


def test_the_output_limit_goes_as_max_completion_tokens_where_the_api_version_has_it() -> None:
    """Reasoning deployments (o-series, GPT-5) refuse max_tokens; api-versions from 2024-09-01
    take max_completion_tokens, the same limit for every chat model; older ones only max_tokens."""

    def limit(name: str = "max_tokens", **opts: Any) -> Any:
        request: HttpRequest = make("https://r.openai.azure.com", **opts).chat_request(
            chat(**{name: 7}), "m", stream=False
        )
        body = orjson.loads(request.body)
        return {k: body[k] for k in ("max_tokens", "max_completion_tokens") if k in body}

    assert limit() == {"max_completion_tokens": 7}
    assert limit(api_version="2025-04-01-preview") == {"max_completion_tokens": 7}
    assert limit(use_v1_api=True) == {"max_completion_tokens": 7}
    assert limit(api_version="2024-06-01") == {"max_tokens": 7}
    # and those refuse max_completion_tokens as an unrecognized argument: it goes as max_tokens
    assert limit("max_completion_tokens", api_version="2024-06-01") == {"max_tokens": 7}
    assert limit("max_completion_tokens") == {"max_completion_tokens": 7}


# --- chat and streams ----------------------------------------------------------------------


async def test_chat_on_a_deployment_url_with_api_key(fake: Fake) -> None:
    result = await fake.complete(chat(), "gpt-4o-mini")
    assert result.choices[0].message.content == "echo: hello there"
    assert result.usage is not None
    assert result.usage.prompt_tokens == 5
    (seen,) = fake.requests
    assert seen["path"] == "/openai/deployments/gpt-4o-mini/chat/completions"
    assert seen["query"] == {"api-version": "2024-10-21"}
    assert seen["headers"]["api-key"] == API_KEY
    assert "authorization" not in seen["headers"]


async def test_stream_drops_the_prompt_filter_chunk_and_keeps_usage_last(fake: Fake) -> None:
    chunks = await fake.stream(chat(), "gpt-4o-mini")
    assert text_of(chunks) == "echo: hello there"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c for c in chunks[:-1] if not c.choices] == []
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert fake.requests[0]["body"]["stream_options"] == {"include_usage": True}


async def test_stream_drops_async_filter_annotations(fake: Fake) -> None:
    chunks = await fake.stream(chat(), "gpt-4o-async")
    assert text_of(chunks) == "echo: hello there"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[-1].usage is not None


async def test_old_api_versions_stream_without_stream_options(fake: Fake) -> None:
    old = make(fake.url, api_version="2024-06-01")
    chunks = await fake.stream(chat(), "gpt-4o-mini", adapter=old)
    assert text_of(chunks) == "echo: hello there"
    assert "stream_options" not in fake.requests[0]["body"]
    assert all(c.usage is None for c in chunks)


async def test_entra_id_token_and_the_v1_api(fake: Fake) -> None:
    adapter = make(fake.url, api_key=None, entra_token=ENTRA_TOKEN, use_v1_api=True)
    result = await fake.complete(chat(), "gpt-4o-mini", adapter=adapter)
    assert result.choices[0].message.content == "echo: hello there"
    (seen,) = fake.requests
    assert seen["path"] == "/openai/v1/chat/completions"
    assert seen["query"] == {}
    assert seen["body"]["model"] == "gpt-4o-mini"
    assert seen["headers"]["authorization"] == f"Bearer {ENTRA_TOKEN}"


async def test_entra_client_credentials_fetch_refresh_and_drop_a_refused_token(fake: Fake) -> None:
    """An app registration's client credentials: uniinfer fetches the Entra token (one exchange
    for concurrent requests), sends it as Bearer, and fetches another once Azure refuses it (a
    fixed entra_token expired after an hour, failing every request)."""
    from uniinfer.errors import AuthenticationError, ConfigError
    from uniinfer.gateway import Gateway

    options = f"{{tenant_id: {TENANT_ID}, client_id: {CLIENT_ID}, client_secret: '{CLIENT_SECRET}', authority: '{fake.url}'}}"
    gw = Gateway(
        make_config(f"providers:\n  az: {{type: azure, base_url: '{fake.url}', options: {options}}}\n")
    )
    try:
        answers = await asyncio.gather(*(gw.chat(chat(model="az/gpt-4o-mini")) for _ in range(5)))
        assert {a.choices[0].message.content for a in answers} == {"echo: hello there"}
        assert fake.app["entra"]["exchanges"] == 1  # single-flight, then cached
        (token,) = fake.app["entra"]["issued"]
        assert all(r["headers"]["authorization"] == f"Bearer {token}" for r in fake.requests)
        assert "api-key" not in fake.requests[-1]["headers"]
        fake.app["entra"]["issued"].clear()  # revoked
        with pytest.raises(AuthenticationError) as refused:
            await gw.chat(chat(model="az/gpt-4o-mini"))
        assert token not in refused.value.message
        await gw.chat(chat(model="az/gpt-4o-mini"))  # the next request fetches a new token
        assert fake.app["entra"]["exchanges"] == 2
        # refused again at once (a wrong scope, another tenant's resource): no token fetched per
        # request, which would only load Entra (each of these failed with an exchange before)
        fake.app["entra"]["issued"].clear()
        for _ in range(5):
            with pytest.raises(AuthenticationError):
                await gw.chat(chat(model="az/gpt-4o-mini"))
        assert fake.app["entra"]["exchanges"] == 2
    finally:
        await gw.aclose()

    # a wrong secret is an authentication error naming the app, never the secret
    bad = options.replace(CLIENT_SECRET, "wrong~secret~value")
    gw = Gateway(make_config(f"providers:\n  az: {{type: azure, base_url: '{fake.url}', options: {bad}}}\n"))
    try:
        with pytest.raises(AuthenticationError, match=f"the app {CLIENT_ID}.*AADSTS7000215") as info:
            await gw.chat(chat(model="az/gpt-4o-mini"))
        assert "wrong~secret~value" not in str(info.value.to_openai())
    finally:
        await gw.aclose()
    with pytest.raises(ConfigError, match="together"):
        make(fake.url, api_key=None, tenant_id=TENANT_ID, client_id=CLIENT_ID)
    with pytest.raises(ConfigError, match="not both"):
        make(
            fake.url,
            tenant_id=TENANT_ID,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            entra_token=ENTRA_TOKEN,
        )
    credentials = {"tenant_id": TENANT_ID, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    for bad, words in (
        ({**credentials, "authority": "http://login.example.com"}, "must be https"),  # the secret in clear
        ({**credentials, "client_secret": ""}, "client_secret is empty"),
        ({"authority": "https://login.microsoftonline.us"}, "go with the client credentials"),
    ):
        with pytest.raises(ConfigError, match=words):
            make(fake.url, **bad)
    sovereign = make(fake.url, api_key=None, **credentials, authority="https://login.microsoftonline.us/")
    assert sovereign.tokens is not None
    assert sovereign.tokens.token_uri == f"https://login.microsoftonline.us/{TENANT_ID}/oauth2/v2.0/token"


async def test_tool_calls_stream_through(fake: Fake) -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    chunks = await fake.stream(chat(tools=[tool]), "tool-deployment")
    args = "".join(
        d.function.arguments or ""
        for c in chunks
        if c.choices
        for d in c.choices[0].delta.tool_calls or ()
        if d.function
    )
    assert orjson.loads(args) == {"location": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]


# --- content filtering ----------------------------------------------------------------------


async def test_a_filtered_prompt_is_a_content_filtered_error_naming_the_category(fake: Fake) -> None:
    with pytest.raises(ContentFilteredError) as info:
        await fake.complete(chat(), "filtered-gpt")
    err = info.value
    assert "violence (medium)" in err.message
    assert "content management policy" in err.message
    assert (err.provider, err.upstream_status, err.param) == ("azure", 400, "prompt")
    with pytest.raises(ContentFilteredError):
        await fake.stream(chat(), "filtered-gpt")


async def test_a_filtered_completion_passes_through_as_finish_reason(fake: Fake) -> None:
    result = await fake.complete(chat(), "filtered-output-gpt")
    assert result.choices[0].finish_reason == "content_filter"
    assert result.choices[0].message.content is None
    chunks = await fake.stream(chat(), "filtered-output-gpt")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["content_filter"]


@pytest.mark.parametrize("whole", [False, True], ids=["bytewise", "one read"])
def test_decoder_drops_annotations_at_any_byte_boundary(whole: bool) -> None:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    events = [
        {"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": [{}]},
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]},
        {
            **base,
            "choices": [
                {"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"},
                {"index": 1, "finish_reason": None, "content_filter_results": SAFE},
            ],
        },
        {
            "choices": [{"index": 0, "content_filter_offsets": {}}],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
        },
        {**base, "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}},
    ]
    data = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    decoder = make("https://r.openai.azure.com").stream_decoder("gpt-4o")
    out = modelled([*decoder.feed(data), *decoder.close()]) if whole else decode_bytewise(decoder, data)
    assert [len(c.choices) for c in out] == [1, 1, 0]
    assert text_of(out) == "Hi!"
    assert out[-1].usage is not None
    assert out[-1].usage.total_tokens == 3


def test_an_instant_stream_in_one_read_loses_its_prompt_annotation_too() -> None:
    # Azure's first event annotates the prompt (empty choices, no usage): the OpenAI decoder's
    # one-pass check of a whole read would take it for a plain chunk; Azure's drops it
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    events = [
        {"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": [{}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]},
    ]
    data = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    decoder = make("https://r.openai.azure.com").stream_decoder("gpt-4o")
    out = modelled([*decoder.feed(data), *decoder.close()])
    assert [len(c.choices) for c in out] == [1]
    assert text_of(out) == "Hi"


#: The docs' "Sample response stream (blocked by filters)" (concepts/content-streaming), as sent:
#: asynchronous filtering blocks the answer with an annotation-only choice, no model finish chunk.
_ANNOTATION = {"id": "", "object": "", "created": 0, "model": ""}
_BLOCKED_ID = {
    "id": "chatcmpl-8JCbt5d4luUIhYCI7YH4dQK7hnHx2",
    "object": "chat.completion.chunk",
    "created": 1699587397,
    "model": "gpt-35-turbo",
}
_OFFSETS = {"check_offset": 65, "start_offset": 65, "end_offset": 1056}
_PROMPT_ANNOTATION = {
    **_ANNOTATION,
    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": SAFE}],
    "choices": [],
    "usage": None,
}
_BLOCK = {
    **_ANNOTATION,
    "choices": [
        {
            "index": 0,
            "finish_reason": "content_filter",
            "content_filter_results": {"protected_material_text": {"detected": True, "filtered": True}},
            "content_filter_offsets": _OFFSETS,
        }
    ],
    "usage": None,
}


def _sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _blocked_sample() -> bytes:
    def delta(d: dict[str, Any]) -> dict[str, Any]:
        return {**_BLOCKED_ID, "choices": [{"index": 0, "finish_reason": None, "delta": d}], "usage": None}

    safe = {
        "index": 0,
        "finish_reason": None,
        "content_filter_results": SAFE,
        "content_filter_offsets": _OFFSETS,
    }
    return _sse(
        _PROMPT_ANNOTATION,
        delta({"role": "assistant"}),
        *(delta({"content": piece}) for piece in ("Hey", " Jude", ",", " better")),
        {**_ANNOTATION, "choices": [safe], "usage": None},
        _BLOCK,
    )


@pytest.mark.parametrize("whole", [False, True], ids=["bytewise", "one read"])
def test_an_asynchronous_filter_block_ends_the_stream_with_content_filter(whole: bool) -> None:
    data = _blocked_sample()
    decoder = make("https://r.openai.azure.com").stream_decoder("gpt-35-turbo")
    out = modelled([*decoder.feed(data), *decoder.close()]) if whole else decode_bytewise(decoder, data)
    assert text_of(out) == "Hey Jude, better"
    assert [c.choices[0].finish_reason for c in out] == [None] * 5 + ["content_filter"]
    last = out[-1]
    assert last.choices[0].delta.model_dump(exclude_none=True) == {}
    # the block's own id, created and model are empty: the stream's go in their place
    assert (last.id, last.created, last.model, last.object) == (
        "chatcmpl-8JCbt5d4luUIhYCI7YH4dQK7hnHx2",
        1699587397,
        "gpt-35-turbo",
        "chat.completion.chunk",
    )


def test_a_block_before_any_chunk_gets_an_id_and_the_deployment() -> None:
    decoder = make("https://r.openai.azure.com").stream_decoder("gpt-4o")
    (out,) = modelled([*decoder.feed(_sse(_PROMPT_ANNOTATION, _BLOCK)), *decoder.close()])
    assert out.id.startswith("chatcmpl-")
    assert out.model == "gpt-4o"
    assert out.created > 0
    assert out.choices[0].finish_reason == "content_filter"


def test_the_block_is_never_relayed_as_it_came() -> None:
    # the server relays a read holding one plain event as it came (pass_on): the block's empty
    # id and object must not reach the caller that way
    decoder = make("https://r.openai.azure.com").stream_decoder("gpt-35-turbo")
    events = [e + b"\n\n" for e in _blocked_sample().split(b"\n\n") if e]
    out: list[StreamItem] = []
    for event in events:
        relayed = decoder.pass_on(event)
        out += [RawEvents(relayed)] if relayed is not None else decoder.feed(event)
    chunks = modelled([*out, *decoder.close()])
    assert decoder.pass_on(events[-2]) is None  # the block
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert {c.id for c in chunks} == {"chatcmpl-8JCbt5d4luUIhYCI7YH4dQK7hnHx2"}


async def test_a_stream_blocked_by_the_asynchronous_filter_says_content_filter(fake: Fake) -> None:
    chunks = await fake.stream(chat(), "gpt-4o-blocked")
    assert "echo: hello there".startswith(text_of(chunks))
    assert text_of(chunks) != "echo: hello there"  # the answer was cut by the block
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["content_filter"]
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].usage is not None


# --- embeddings and errors -------------------------------------------------------------------


async def test_embeddings_on_the_deployment_url(fake: Fake) -> None:
    result = await fake.embed(
        EmbeddingRequest(model="e", input=["a b", "c"], dimensions=4), "text-embedding-3-small"
    )
    assert [len(d.embedding) for d in result.data] == [4, 4]
    assert result.usage.prompt_tokens == 3
    (seen,) = fake.requests
    assert seen["path"] == "/openai/deployments/text-embedding-3-small/embeddings"
    assert seen["query"] == {"api-version": "2024-10-21"}


async def test_api_version_missing_or_unknown_is_resource_not_found(fake: Fake) -> None:
    resp = await fake.http.send(
        HttpRequest(
            fake.url + "/openai/deployments/gpt-4o-mini/chat/completions",
            orjson.dumps({"messages": [{"role": "user", "content": "hi"}]}),
            {"api-key": API_KEY, "content-type": "application/json"},
        ),
        Timeouts(),
        "azure",
    )
    assert resp.status == 404
    assert isinstance(fake.adapter.parse_error(resp.status, resp.headers, resp.body), ModelNotFoundError)
    with pytest.raises(ModelNotFoundError, match="Resource not found"):
        await fake.complete(chat(), "gpt-4o-mini", adapter=make(fake.url, api_version="2023-01-01"))


async def test_unknown_deployment_and_rate_limits(fake: Fake) -> None:
    with pytest.raises(ModelNotFoundError, match="deployment for this resource does not exist"):
        await fake.complete(chat(), "missing-gpt")
    with pytest.raises(RateLimitError) as info:
        await fake.complete(chat(), "error-429")
    assert info.value.retry_after == 7


async def test_wrong_credentials_are_authentication_errors_without_the_secret(fake: Fake) -> None:
    wrong_key = "azure-wrong-key-9876543210fedcba"
    with pytest.raises(AuthenticationError) as info:
        await fake.complete(chat(), "gpt-4o-mini", adapter=make(fake.url, api_key=wrong_key))
    assert "invalid subscription key" in info.value.message
    assert wrong_key not in str(info.value)
    wrong_token = "eyJ.wrong-entra-token"
    with pytest.raises(AuthenticationError) as info:
        await fake.complete(
            chat(), "gpt-4o-mini", adapter=make(fake.url, api_key=None, entra_token=wrong_token)
        )
    assert wrong_token not in str(info.value)
    assert wrong_token not in (info.value.upstream_body or "")


# --- through the gateway ---------------------------------------------------------------------


async def test_gateway_stream_never_shows_the_annotation_chunk_and_records_usage(fake: Fake) -> None:
    config = make_config(
        f"""
providers:
  az:
    type: azure
    base_url: {fake.url}
    api_key: {API_KEY}
    options: {{api_version: "2024-10-21"}}
"""
    )
    gateway = Gateway(config)
    try:
        ctx = RequestContext("chat")
        chunks = [c async for c in await gateway.stream(chat(model="az/gpt-4o-mini", stream=True), ctx)]
        assert chunks
        assert all(c.choices for c in chunks)  # no annotation chunk, no usage chunk (not asked for)
        assert text_of(chunks) == "echo: hello there"
        assert ctx.usage is not None
        assert ctx.usage.total_tokens == 8
    finally:
        await gateway.aclose()


@pytest.mark.parametrize(
    "model", ["gpt-4o-blocked", "whole-blocked"], ids=["split reads", "one event a read"]
)
async def test_gateway_stream_ends_a_blocked_answer_with_content_filter(fake: Fake, model: str) -> None:
    config = make_config(
        f"""
providers:
  az:
    type: azure
    base_url: {fake.url}
    api_key: {API_KEY}
"""
    )
    gateway = Gateway(config)
    try:
        stream = await gateway.stream(chat(model=f"az/{model}", stream=True), RequestContext("chat"))
        sse = b"".join([batch async for batch in stream.sse_batches()])
        chunks = [ChatChunk.model_validate_json(e.removeprefix(b"data: ")) for e in sse.split(b"\n\n") if e]
        assert all(c.id and c.model and c.created for c in chunks)  # no empty annotation envelope
        assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == [
            "content_filter"
        ]
        assert chunks[-1].choices[0].finish_reason == "content_filter"
        assert "echo: hello there".startswith(text_of(chunks))
    finally:
        await gateway.aclose()
