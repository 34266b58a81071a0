"""Vertex AI over real sockets: service-account auth, Gemini and Claude models, embeddings, errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.conftest import make_config
from tests.fakes.common import run_fake
from tests.fakes.gemini import signature_of
from tests.fakes.google_token import TEST_PROJECT, TokenState, service_account_key
from tests.fakes.vertex import vertex_app
from uniinfer.errors import (
    AuthenticationError,
    ConfigError,
    ContextLengthExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    PermissionDeniedError,
    ProviderConnectionError,
    RateLimitError,
    UniInferError,
    UnsupportedFeatureError,
    UnsupportedParamError,
)
from uniinfer.gateway import Gateway
from uniinfer.http import HttpClient, Timeouts
from uniinfer.providers.base import Endpoint, ProviderAdapter
from uniinfer.providers.oauth import REFUSED_AGAIN_AFTER
from uniinfer.providers.registry import default_registry
from uniinfer.providers.vertex import VERTEX_ANTHROPIC_VERSION, VertexAdapter, vertex_root
from uniinfer.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    MessagesIntent,
)

CLAUDE = "claude-sonnet-4-5@20250929"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


def make(base_url: str, **options: Any) -> VertexAdapter:
    reg = default_registry()
    adapter = reg.create(reg.get("vertex"), Endpoint(base_url=base_url, options=options))
    assert isinstance(adapter, VertexAdapter)
    return adapter


def chat(**fields: Any) -> ChatRequest:
    fields.setdefault("model", "vertex/m")
    fields.setdefault("messages", [{"role": "user", "content": "hello there"}])
    return ChatRequest.model_validate(fields)


class Fake:
    def __init__(self, app: web.Application, url: str, http: HttpClient) -> None:
        self.app, self.url, self.http = app, url, http
        self.key_json = service_account_key().key_json(url + "/token")
        self.adapter = make(url + "/v1", project=TEST_PROJECT, credentials_json=self.key_json)

    @property
    def tokens(self) -> TokenState:
        state: TokenState = self.app["google_token"]
        return state

    @property
    def requests(self) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = self.app["requests"]
        return seen

    async def complete(
        self, request: ChatRequest, model: str, adapter: ProviderAdapter | None = None
    ) -> ChatResponse:
        adapter = adapter or self.adapter
        await adapter.prepare_credentials(self.http)
        resp = await self.http.send(adapter.chat_request(request, model, stream=False), Timeouts(), "vertex")
        if resp.status != 200:
            raise adapter.parse_error(resp.status, resp.headers, resp.body)
        return adapter.parse_chat(resp.body, model)

    async def stream(self, request: ChatRequest, model: str) -> list[ChatChunk]:
        await self.adapter.prepare_credentials(self.http)
        upstream = self.adapter.chat_request(request, model, stream=True)
        s = await self.http.open_stream(upstream, Timeouts(), "vertex")
        done = False
        try:
            if s.status != 200:
                raise self.adapter.parse_error(s.status, s.headers, await s.read())
            decoder = self.adapter.stream_decoder(model)
            out: list[ChatChunk] = []
            async for data in s.iter_bytes():
                out += decoder.feed(data)
            out += decoder.close()
            done = True
            return out
        finally:
            HttpClient.close_stream(s, complete=done)

    async def embed(self, request: EmbeddingRequest, model: str) -> EmbeddingResponse:
        await self.adapter.prepare_credentials(self.http)
        resp = await self.http.send(self.adapter.embed_request(request, model), Timeouts(), "vertex")
        if resp.status != 200:
            raise self.adapter.parse_error(resp.status, resp.headers, resp.body)
        return self.adapter.parse_embed(resp.body, model)


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    app = vertex_app()
    async with run_fake(app) as url:
        http = HttpClient()
        try:
            yield Fake(app, url, http)
        finally:
            await http.aclose()


def text_of(chunks: list[ChatChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "location", "root"),
    [
        ("https://us-central1-aiplatform.googleapis.com/v1", "us-central1", "https://us-central1-aiplatform.googleapis.com/v1"),
        ("https://us-central1-aiplatform.googleapis.com/v1/", "europe-west4", "https://europe-west4-aiplatform.googleapis.com/v1"),
        ("https://us-central1-aiplatform.googleapis.com/v1", "global", "https://aiplatform.googleapis.com/v1"),
        ("https://us-central1-aiplatform.googleapis.com/v1", "eu", "https://aiplatform.eu.rep.googleapis.com/v1"),
        ("https://proxy.example/vertex/v1/", "global", "https://proxy.example/vertex/v1"),
    ],
)  # fmt: skip
def test_root_follows_location_only_for_the_default_base_url(base_url: str, location: str, root: str) -> None:
    assert vertex_root(base_url, location) == root


def test_project_defaults_to_the_key_and_credentials_may_be_a_file(tmp_path: Path) -> None:
    path = tmp_path / "sa.json"
    path.write_text(service_account_key().key_json("https://oauth2.googleapis.com/token"))
    adapter = make(
        "https://us-central1-aiplatform.googleapis.com/v1",
        location="europe-west4",
        credentials_file=str(path),
    )
    assert (adapter.project, adapter.location) == (TEST_PROJECT, "europe-west4")
    assert adapter.tokens.token_uri == "https://oauth2.googleapis.com/token"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "GOOGLE_APPLICATION_CREDENTIALS"),
        ({"credentials_json": "{}", "colour": "blue"}, "colour"),
        ({"credentials_json": "{}", "location": "us-central1/../x"}, "location"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        make("https://us-central1-aiplatform.googleapis.com/v1", **options)


def test_an_endpoint_printed_does_not_show_the_service_account_key() -> None:
    key_json = service_account_key().key_json("https://t/token")
    adapter = make("https://x/v1", credentials_json=key_json)
    assert "PRIVATE KEY" in key_json
    assert "PRIVATE KEY" not in repr(adapter.endpoint)


def test_an_api_key_is_refused_rather_than_ignored() -> None:
    reg = default_registry()
    key = service_account_key().key_json("https://t/token")
    with pytest.raises(ConfigError, match="service account"):
        reg.create(
            reg.get("vertex"),
            Endpoint(base_url="https://x/v1", api_key="AIza-x", options={"credentials_json": key}),
        )


def test_a_key_without_project_needs_the_option() -> None:
    key = json.loads(service_account_key().key_json("https://t/token"))
    del key["project_id"]
    with pytest.raises(ConfigError, match=r"options\.project"):
        make("https://x/v1", credentials_json=json.dumps(key))


def test_requests_cannot_be_built_before_credentials_are_prepared() -> None:
    adapter = make("https://x/v1", credentials_json=service_account_key().key_json("https://t/token"))
    with pytest.raises(AuthenticationError, match="prepare_credentials"):
        adapter.chat_request(chat(), "gemini-2.5-flash", stream=False)


# --- Gemini models -----------------------------------------------------------------------


async def test_gemini_chat_uses_the_publisher_url_and_a_bearer_token(fake: Fake) -> None:
    result = await fake.complete(chat(), "gemini-2.5-flash")
    assert result.choices[0].message.content == "echo: hello there"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (2, 3)
    (seen,) = fake.requests
    assert seen["path"] == (
        f"/v1/projects/{TEST_PROJECT}/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
    )
    assert seen["headers"]["authorization"] == f"Bearer {fake.tokens.issued[0]}"
    assert "x-goog-api-key" not in seen["headers"]


async def test_gemini_stream_over_sse_with_usage_last(fake: Fake) -> None:
    chunks = await fake.stream(
        chat(messages=[{"role": "user", "content": "héllo wörld"}]), "gemini-2.5-flash"
    )
    assert text_of(chunks) == "echo: héllo wörld"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 2 + 3
    assert fake.requests[0]["query"] == {"alt": "sse"}
    assert fake.requests[0]["path"].endswith(":streamGenerateContent")


async def test_gemini_tool_round_trip(fake: Fake) -> None:
    first = chat(tools=[WEATHER], tool_choice="required")
    result = await fake.complete(first, "tool-gemini")
    calls = result.choices[0].message.tool_calls
    assert calls is not None
    assert result.choices[0].finish_reason == "tool_calls"
    assert orjson.loads(calls[0].function.arguments) == {"location": "Paris"}
    follow = chat(
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "hello there"},
            {"role": "assistant", "tool_calls": [c.model_dump() for c in calls]},
            {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temp": 21}'},
        ],
    )
    answer = await fake.complete(follow, "gemini-2.5-flash")
    assert answer.choices[0].finish_reason == "stop"


async def test_gemini_3_tool_loop_keeps_thought_signatures(fake: Fake) -> None:
    """Vertex's Gemini 3 models 400 a follow-up without the call's signature; streamed and not."""
    model = "gemini-3-pro-tool"  # the fake answers with a signed call
    first = chat(tools=[WEATHER], reasoning_effort="minimal")
    result = await fake.complete(first, model)
    assert result.choices[0].message.tool_calls is not None
    calls = [c.model_dump() for c in result.choices[0].message.tool_calls]
    chunks = await fake.stream(first, model)
    streamed = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    calls += [
        {"id": d.id, "type": "function", "function": d.function.model_dump()} for d in streamed if d.function
    ]
    for call in calls:
        follow = chat(
            tools=[WEATHER],
            reasoning_effort="minimal",
            messages=[
                {"role": "user", "content": "hello there"},
                {"role": "assistant", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call["id"], "content": '{"temp": 21}'},
            ],
        )
        answer = await fake.complete(follow, model)  # the fake validates the signature
        assert answer.choices[0].finish_reason == "tool_calls"
    sent = fake.requests[-1]["body"]
    call = sent["contents"][1]["parts"][0]
    assert call["thoughtSignature"] == signature_of(call["functionCall"])
    assert {**call["functionCall"], "id": None} == {
        "name": "get_weather",
        "args": {"location": "Paris"},
        "id": None,
    }
    assert sent["contents"][2]["parts"][0]["functionResponse"]["id"] == call["functionCall"]["id"]
    assert sent["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "low", "includeThoughts": True}


async def test_gemini_refuses_params_only_claude_takes(fake: Fake) -> None:
    with pytest.raises(UnsupportedParamError) as info:
        fake.adapter.chat_request(chat(user="u-1"), "gemini-2.5-flash", stream=False)
    assert (info.value.param, info.value.provider) == ("user", "vertex")
    assert "gemini-2.5-flash" in info.value.message


# --- Claude models ------------------------------------------------------------------------


async def test_claude_chat_goes_to_raw_predict_without_model_and_with_the_vertex_version(fake: Fake) -> None:
    result = await fake.complete(chat(max_tokens=50), CLAUDE)
    assert result.choices[0].message.content == "echo: hello there"
    assert result.usage is not None
    assert result.usage.completion_tokens == 3
    (seen,) = fake.requests
    assert seen["path"].endswith(f"/publishers/anthropic/models/{CLAUDE}:rawPredict")
    assert "model" not in seen["body"]
    assert seen["body"]["anthropic_version"] == VERTEX_ANTHROPIC_VERSION
    assert seen["body"]["max_tokens"] == 50
    headers = seen["headers"]
    assert headers["authorization"] == f"Bearer {fake.tokens.issued[0]}"
    assert not {"x-api-key", "anthropic-version", "x-goog-api-key"} & headers.keys()


async def test_claude_gets_none_of_the_claude_apis_own_fields(fake: Fake) -> None:
    # fast mode, data residency...: the Claude API's, not Vertex AI's (the gateway's fitting
    # leaves them out or refuses them, see uniinfer.fitting; the adapter never sends them)
    fields = (("speed", "fast"), ("inference_geo", "us"), ("tools.0.input_examples", [{"location": "x"}]))
    request = chat(max_tokens=50, tools=[WEATHER]).with_messages_intent(
        MessagesIntent(False, claude_fields=fields)
    )
    await fake.complete(request, CLAUDE)
    body = fake.requests[0]["body"]
    assert not {"speed", "inference_geo"} & body.keys()
    assert "input_examples" not in body["tools"][0]


async def test_claude_stream_with_tool_call_deltas(fake: Fake) -> None:
    chunks = await fake.stream(chat(tools=[WEATHER], tool_choice="required"), CLAUDE)
    assert fake.requests[0]["path"].endswith(":streamRawPredict")
    assert fake.requests[0]["body"]["stream"] is True
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert deltas[0].id
    assert deltas[0].function
    assert deltas[0].function.name == "get_weather"
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert orjson.loads(arguments) == {"location": "Paris"}
    assert {d.index for d in deltas} == {0}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None


async def test_claude_refuses_params_only_gemini_takes(fake: Fake) -> None:
    for field, value in (("seed", 1), ("response_format", {"type": "json_object"}), ("n", 2)):
        with pytest.raises(UnsupportedParamError) as info:
            fake.adapter.chat_request(chat(**{field: value}), CLAUDE, stream=False)
        assert info.value.param == field
        assert CLAUDE in info.value.message


async def test_claude_says_when_it_leaves_thinking_out_of_an_open_tool_loop(fake: Fake) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    history = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    request = chat(messages=history, reasoning_effort="low", tools=[WEATHER])
    # the gateway's x-uniinfer-dropped-params: as for Anthropic's own API (the same translation)
    assert fake.adapter.params_left_out(request, CLAUDE) == ("reasoning_effort",)
    assert fake.adapter.params_left_out(request, "gemini-2.5-flash") == ()


async def test_sampling_params_follow_the_claude_model(fake: Fake) -> None:
    """Opus 4.7 and later refuse temperature, top_p and top_k (400): the gateway refuses or drops them."""
    sampling = {"temperature", "top_p", "top_k"}
    assert sampling <= fake.adapter.supported_for(CLAUDE)
    assert not sampling & fake.adapter.supported_for("claude-opus-4-7@20260416")
    assert sampling - {"top_k"} <= fake.adapter.supported_for("gemini-2.5-flash")
    with pytest.raises(UnsupportedParamError) as info:
        fake.adapter.chat_request(chat(temperature=0.2), "claude-opus-4-7", stream=False)
    assert info.value.param == "temperature"


async def test_strict_tools_are_a_claude_value_to_refuse_or_drop_and_gemini_s_to_keep(fake: Fake) -> None:
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    request = chat(tools=[strict])
    # Vertex's Claude models have no structured outputs here: refused, or dropped when configured
    assert fake.adapter.values_refused(request, CLAUDE) == ("tools[0].function.strict",)
    assert not fake.adapter.structured_outputs(CLAUDE)
    with pytest.raises(UnsupportedParamError):
        fake.adapter.chat_request(request, CLAUDE, stream=False)
    dropped = fake.adapter.without_values(request, CLAUDE, ("tools[0].function.strict",))
    await fake.adapter.prepare_credentials(fake.http)
    assert (
        "strict"
        not in orjson.loads(fake.adapter.chat_request(dropped, CLAUDE, stream=False).body)["tools"][0]
    )
    assert fake.adapter.values_refused(request, "gemini-2.5-flash") == ()
    assert fake.adapter.structured_outputs("gemini-2.5-flash")


async def test_a_strict_tool_left_to_gemini_goes_to_v1beta1_where_validated_calls_are(fake: Fake) -> None:
    # VALIDATED (constrained calls, AUTO's strict twin) is not in v1's FunctionCallingConfig.Mode
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    answer = await fake.complete(chat(tools=[strict]), "gemini-2.5-flash")
    assert answer.choices
    seen = fake.requests[-1]
    assert seen["path"].startswith("/v1beta1/projects/")
    assert seen["body"]["toolConfig"]["functionCallingConfig"]["mode"] == "VALIDATED"
    await fake.complete(chat(tools=[WEATHER]), "gemini-2.5-flash")  # the rest stays on v1
    assert fake.requests[-1]["path"].startswith("/v1/projects/")


async def test_claude_validation_errors_keep_anthropic_detail(fake: Fake) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await fake.complete(chat(temperature=1.5), CLAUDE)
    assert info.value.param == "temperature"
    assert info.value.upstream_status == 400


# --- embeddings ---------------------------------------------------------------------------


async def test_embeddings_via_predict_with_token_count_usage(fake: Fake) -> None:
    request = EmbeddingRequest(model="e", input=["one two", "three"], dimensions=4)
    result = await fake.embed(request, "text-embedding-005")
    assert [len(d.embedding) for d in result.data] == [4, 4]
    assert [d.index for d in result.data] == [0, 1]
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (3, 3)
    (seen,) = fake.requests
    assert seen["path"].endswith("/publishers/google/models/text-embedding-005:predict")
    assert seen["body"] == {
        "instances": [{"content": "one two"}, {"content": "three"}],
        "parameters": {"autoTruncate": False, "outputDimensionality": 4},
    }


async def test_an_embedding_task_type_from_the_provider_s_options(fake: Fake) -> None:
    documents = make(
        fake.url + "/v1",
        project=TEST_PROJECT,
        credentials_json=fake.key_json,
        embed_task_type="RETRIEVAL_DOCUMENT",
    )
    fake.adapter = documents
    await fake.embed(EmbeddingRequest(model="e", input=["a", "b"]), "text-embedding-005")
    (seen,) = fake.requests
    assert seen["body"]["instances"] == [
        {"content": "a", "task_type": "RETRIEVAL_DOCUMENT"},
        {"content": "b", "task_type": "RETRIEVAL_DOCUMENT"},
    ]


async def test_an_input_beyond_the_embedding_model_s_length_is_an_error_not_cut_silently(fake: Fake) -> None:
    # Vertex's default embeds the first 2048 tokens and says so only in statistics.truncated
    long = " ".join(["word"] * 3000)
    with pytest.raises(ContextLengthExceededError, match="input token count is 3000"):
        await fake.embed(EmbeddingRequest(model="e", input=[long]), "text-embedding-005")


async def test_gemini_embedding_takes_one_input_per_request(fake: Fake) -> None:
    single = await fake.embed(EmbeddingRequest(model="e", input="just one"), "gemini-embedding-001")
    assert len(single.data) == 1
    assert single.usage.prompt_tokens == 2
    with pytest.raises(UnsupportedFeatureError, match="at most 1 input"):
        fake.adapter.embed_request(EmbeddingRequest(model="e", input=["a", "b"]), "gemini-embedding-001")
    with pytest.raises(UnsupportedFeatureError, match="token ids"):
        fake.adapter.embed_request(EmbeddingRequest(model="e", input=[1, 2, 3]), "text-embedding-005")


# --- auth and errors ----------------------------------------------------------------------


async def test_one_token_serves_many_requests_and_a_hundred_concurrent_ones(fake: Fake) -> None:
    fake.tokens.delay = 0.1
    results = await asyncio.gather(*(fake.complete(chat(), "gemini-2.5-flash") for _ in range(100)))
    assert all(r.choices[0].message.content == "echo: hello there" for r in results)
    await fake.complete(chat(), CLAUDE)
    assert fake.tokens.exchanges == 1
    assert {r["headers"]["authorization"] for r in fake.requests} == {f"Bearer {fake.tokens.issued[0]}"}


async def test_a_revoked_token_is_an_authentication_error_that_hides_it(fake: Fake) -> None:
    await fake.adapter.prepare_credentials(fake.http)
    token = fake.tokens.issued[0]
    fake.tokens.expire_all()
    with pytest.raises(AuthenticationError) as info:
        await fake.complete(chat(), "gemini-2.5-flash")
    assert info.value.provider == "vertex"
    assert token not in str(info.value)
    assert token not in (info.value.upstream_body or "")
    assert fake.adapter.redact(f"x {token} y") == "x [redacted] y"


@pytest.mark.parametrize("model", ["error-429", "claude-error-429"])
async def test_quota_errors_are_rate_limits_for_both_families(fake: Fake, model: str) -> None:
    with pytest.raises(RateLimitError) as info:
        await fake.complete(chat(max_tokens=10), model)
    assert info.value.retry_after == 7
    assert info.value.provider == "vertex"


async def test_another_project_is_permission_denied_and_unknown_methods_not_found(fake: Fake) -> None:
    other = make(fake.url + "/v1", project="someone-else", credentials_json=fake.key_json)
    with pytest.raises(PermissionDeniedError):
        await fake.complete(chat(), "gemini-2.5-flash", adapter=other)
    err = fake.adapter.parse_error(
        404, {}, b'{"error": {"code": 404, "message": "Publisher Model not found", "status": "NOT_FOUND"}}'
    )
    assert isinstance(err, ModelNotFoundError)


def test_error_shapes_are_told_apart() -> None:
    adapter = make("https://x/v1", credentials_json=service_account_key().key_json("https://t/token"))
    claude = adapter.parse_error(
        529, {}, b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    )
    assert claude.message == "vertex: Overloaded"
    wrapped = adapter.parse_error(
        429, {}, b'[{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}]'
    )
    assert isinstance(wrapped, RateLimitError)
    assert isinstance(adapter.parse_error(500, {}, b"<html>"), UniInferError)


async def test_dropped_connections_and_cut_streams(fake: Fake) -> None:
    with pytest.raises(ProviderConnectionError):
        await fake.complete(chat(), "drop-model")
    with pytest.raises(ProviderConnectionError):
        await fake.stream(chat(), "cut-model")


# --- through the gateway ------------------------------------------------------------------


async def test_gateway_prepares_credentials_for_chat_stream_and_embeddings(fake: Fake) -> None:
    config = make_config(
        f"""
providers:
  gcp:
    type: vertex
    base_url: {fake.url}/v1
    options:
      project: {TEST_PROJECT}
      credentials_json: '{fake.key_json}'
"""
    )
    gateway = Gateway(config)
    try:
        answer = await gateway.chat(chat(model="gcp/gemini-2.5-flash"))
        assert answer.choices[0].message.content == "echo: hello there"
        chunks = [c async for c in await gateway.stream(chat(model=f"gcp/{CLAUDE}", stream=True))]
        assert text_of(chunks) == "echo: hello there"
        embedded = await gateway.embed(EmbeddingRequest(model="gcp/text-embedding-005", input="a b c"))
        assert embedded.usage.prompt_tokens == 3
        assert fake.tokens.exchanges == 1
    finally:
        await gateway.aclose()


@pytest.mark.parametrize("model", ["gemini-2.5-flash", CLAUDE])
async def test_gateway_recovers_after_one_401_when_the_token_is_no_longer_accepted(
    fake: Fake, model: str
) -> None:
    # Vertex stops accepting the cached token (revoked, or expired while the machine slept and the
    # monotonic clock stood still): the request that meets the 401 fails, the next ones work again
    config = make_config(
        f"""
providers:
  gcp:
    type: vertex
    base_url: {fake.url}/v1
    options:
      project: {TEST_PROJECT}
      credentials_json: '{fake.key_json}'
"""
    )
    gateway = Gateway(config)
    try:
        request = chat(model=f"gcp/{model}", max_tokens=20)
        assert (await gateway.chat(request)).choices[0].message.content == "echo: hello there"
        fake.tokens.expire_all()
        with pytest.raises(AuthenticationError):
            await gateway.chat(request)
        assert fake.tokens.exchanges == 1
        assert (await gateway.chat(request)).choices[0].message.content == "echo: hello there"
        chunks = [
            c async for c in await gateway.stream(chat(model=f"gcp/{model}", max_tokens=20, stream=True))
        ]
        assert text_of(chunks) == "echo: hello there"
        assert fake.tokens.exchanges == 2
        source = gateway._adapters["gcp"].tokens  # type: ignore[attr-defined]
        source._dropped_at -= (
            REFUSED_AGAIN_AFTER  # a while later (a refusal soon after a drop keeps the token)
        )
        fake.tokens.expire_all()  # streams meet the 401 before their first chunk: the same
        with pytest.raises(AuthenticationError):
            await gateway.stream(chat(model=f"gcp/{model}", max_tokens=20, stream=True))
        assert (await gateway.chat(request)).choices[0].message.content == "echo: hello there"
        assert fake.tokens.exchanges == 3
        assert len(fake.requests) == 6  # each failed request was sent once, not repeated
    finally:
        await gateway.aclose()


async def test_gemini_structured_output_is_sent_as_json_schema(fake: Fake) -> None:
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    request = chat(response_format={"type": "json_schema", "json_schema": {"name": "e", "schema": schema}})
    result = await fake.complete(request, "gemini-2.5-flash")
    assert orjson.loads(result.choices[0].message.content or "") == {"echo": "hello there"}
    config = fake.requests[0]["body"]["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}


def test_supported_params_follow_the_model_family() -> None:
    """The gateway asks per model, so it can reject or visibly drop a family's missing params."""
    key = service_account_key().key_json("https://oauth2.googleapis.com/token")
    adapter = make("http://127.0.0.1:1/v1", credentials_json=key)
    assert "seed" in adapter.supported_for("gemini-2.5-flash")
    assert "seed" not in adapter.supported_for("claude-sonnet-4-5")
    assert "top_k" in adapter.supported_for("claude-sonnet-4-5")
