"""The provider contract: every registered provider type, through a real Gateway, against its fake.

For each type in ``default_registry()`` (see :mod:`tests.contract.harness` for
how its fake is found) every capability the registry declares must work —
chat, streaming (``chat.completion.chunk`` chunks, a final usage chunk with
empty ``choices`` when asked, usage recorded by the gateway even when not),
tools (plain and streamed), JSON mode, JSON schema, image input, embeddings —
errors must map (429 -> RateLimitError keeping Retry-After, a wrong key ->
AuthenticationError that never shows the key), and everything it does *not*
declare must fail with a typed UnsupportedFeatureError naming provider and
feature, or, for params, UnsupportedParamError / a visible drop.

A registered type without a fake fails here (ImportError), it is never skipped.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.contract.harness import (
    OPENAI_ADAPTER,
    Harness,
    adapter_of,
    harness,
    provider_types,
    rejected_params,
)
from uniinfer.errors import (
    AuthenticationError,
    RateLimitError,
    UnsupportedFeatureError,
    UnsupportedParamError,
)
from uniinfer.providers.registry import default_registry
from uniinfer.stages import RequestContext
from uniinfer.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest

#: Gaps in a fake (not in its adapter) the contract found; strict, so fixing the fake
#: turns the XPASS into a failure that asks for the entry to go.
FAKE_GAPS: dict[tuple[str, str], str] = {}


def providers(check: str, names: list[str] | None = None) -> list[Any]:
    """Provider types as params, marking the known fake gaps for ``check``."""
    return [
        pytest.param(n, marks=pytest.mark.xfail(reason=FAKE_GAPS[n, check], strict=True))
        if (n, check) in FAKE_GAPS
        else n
        for n in (names if names is not None else PROVIDERS)
    ]


PROVIDERS = provider_types()
CHAT_PROVIDERS = [n for n in PROVIDERS if default_registry().get(n).capabilities.chat]

HELLO = [{"role": "user", "content": "hello there"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}
#: A 1x1 transparent PNG.
PIXEL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "echo",
        "schema": {
            "type": "object",
            "properties": {"echo": {"type": "string"}},
            "required": ["echo"],
            "additionalProperties": False,
        },
    },
}
#: A valid value for every optional ChatRequest field (the unsupported-param checks send them).
SAMPLES: dict[str, dict[str, Any]] = {
    "temperature": {"temperature": 0.5},
    "top_p": {"top_p": 0.9},
    "n": {"n": 2},
    "stream_options": {},  # only with stream=True; every adapter asks for usage itself
    "stop": {"stop": ["\n\n"]},
    "max_tokens": {"max_tokens": 50},
    "max_completion_tokens": {"max_completion_tokens": 50},
    "presence_penalty": {"presence_penalty": 0.5},
    "frequency_penalty": {"frequency_penalty": 0.5},
    "logit_bias": {"logit_bias": {"50256": -100}},
    "logprobs": {"logprobs": True},
    "top_logprobs": {"logprobs": True, "top_logprobs": 2},
    "user": {"user": "user-1"},
    "safety_identifier": {"safety_identifier": "user-1-hash"},
    "metadata": {"metadata": {"team": "contract"}},
    "seed": {"seed": 7},
    "tools": {"tools": [WEATHER]},
    "tool_choice": {"tools": [WEATHER], "tool_choice": "auto"},
    "parallel_tool_calls": {"tools": [WEATHER], "parallel_tool_calls": False},
    "response_format": {"response_format": {"type": "text"}},
    "reasoning_effort": {"reasoning_effort": "low"},
    "service_tier": {"service_tier": "auto"},
    "store": {"store": True},
    "modalities": {"modalities": ["text"]},
    "audio": {"audio": {"voice": "alloy", "format": "wav"}},
    "prediction": {"prediction": {"type": "content", "content": "hello"}},
    "web_search_options": {"web_search_options": {}},
    "verbosity": {"verbosity": "low"},
    "prompt_cache_key": {"prompt_cache_key": "contract"},
    "prompt_cache_retention": {"prompt_cache_retention": "24h"},
    "moderation": {"moderation": {"model": "omni-moderation-latest"}},
    "prompt_cache_options": {"prompt_cache_options": {"ttl": "30m"}},
    "top_k": {"top_k": 5},
}


def request(h: Harness, model: str | None = None, **fields: Any) -> ChatRequest:
    fields.setdefault("messages", HELLO)
    return ChatRequest.model_validate({"model": model or h.model(), **fields})


async def collect(h: Harness, req: ChatRequest) -> list[ChatChunk]:
    async with await h.gateway.stream(req) as stream:
        return [chunk async for chunk in stream]


async def call(h: Harness, prefix: str = "") -> object:
    """One plain request: chat, or embeddings for an embedding-only provider."""
    if h.spec.capabilities.chat:
        return await h.gateway.chat(request(h, h.model(prefix or None)))
    model = h.embed_model(f"{prefix}-" if prefix else "")
    return await h.gateway.embed(EmbeddingRequest(model=model, input="hi"))


def feature_error(exc: pytest.ExceptionInfo[UnsupportedFeatureError], h: Harness, words: str) -> None:
    """The error names the provider and the feature (chat itself, for a provider without chat)."""
    assert exc.value.provider == h.name
    assert f"provider '{h.name}'" in exc.value.message
    assert (words if h.spec.capabilities.chat else "chat completions") in exc.value.message


def text_of(response: ChatResponse) -> str:
    content = response.choices[0].message.content
    assert content is not None
    return content


# --- chat -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
async def test_chat(name: str) -> None:
    async with harness(name) as h:
        if not h.spec.capabilities.chat:
            with pytest.raises(UnsupportedFeatureError) as exc:
                await h.gateway.chat(request(h))
            feature_error(exc, h, "chat")
            return
        response = await h.gateway.chat(request(h))
        assert text_of(response) == "echo: hello there"
        assert response.choices[0].finish_reason == "stop"
        assert response.usage is not None
        assert response.usage.prompt_tokens > 0
        assert response.usage.completion_tokens > 0
        assert h.usage_of(h.model()) == (response.usage.prompt_tokens, response.usage.completion_tokens)


# --- streaming -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
async def test_stream(name: str) -> None:
    async with harness(name) as h:
        asked = request(h, stream=True, stream_options={"include_usage": True})
        if not (h.spec.capabilities.chat and h.spec.capabilities.streaming):
            with pytest.raises(UnsupportedFeatureError) as exc:
                await h.gateway.stream(asked)
            feature_error(exc, h, "streaming")
            return
        chunks = await collect(h, asked)
        assert all(c.object == "chat.completion.chunk" for c in chunks)
        assert len({c.id for c in chunks}) == 1
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello there"
        reasons = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
        assert reasons == ["stop"]
        if h.spec.stream_usage == "never":  # documented: the gateway cannot learn the usage
            assert all(c.usage is None for c in chunks)
            return
        *body, last = chunks
        assert last.choices == []
        assert last.usage is not None
        assert last.usage.prompt_tokens > 0
        assert last.usage.completion_tokens > 0
        assert all(c.usage is None for c in body)

        # Not asked: no usage chunk reaches the caller, but the gateway still records the usage.
        before = h.usage_of(h.model())
        quiet = await collect(h, request(h, stream=True))
        assert all(c.usage is None and c.choices for c in quiet)
        after = h.usage_of(h.model())
        assert after[0] - before[0] == last.usage.prompt_tokens
        assert after[1] - before[1] == last.usage.completion_tokens


# --- tools ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
async def test_tools_plain_and_streamed(name: str) -> None:
    async with harness(name) as h:
        model = h.model(f"tool-{h.fake.chat_model}")
        ask = request(h, model, tools=[WEATHER], messages=[{"role": "user", "content": "weather in Paris?"}])
        if not (h.spec.capabilities.chat and h.spec.capabilities.tools):
            with pytest.raises(UnsupportedFeatureError) as exc:
                await h.gateway.chat(ask)
            feature_error(exc, h, "tools")
            return
        response = await h.gateway.chat(ask)
        calls = response.choices[0].message.tool_calls
        assert calls
        assert calls[0].function.name == "get_weather"
        arguments = json.loads(calls[0].function.arguments)
        assert isinstance(arguments, dict)
        assert arguments
        assert response.choices[0].finish_reason == "tool_calls"
        if not h.spec.capabilities.streaming:
            return

        chunks = await collect(h, ask.model_copy(update={"stream": True}))
        deltas = [d for c in chunks for ch in c.choices for d in ch.delta.tool_calls or ()]
        assert deltas
        assert {d.index for d in deltas} == {0}  # one call, one stable index
        assert len({d.id for d in deltas if d.id}) == 1
        name_parts = "".join(d.function.name or "" for d in deltas if d.function)
        streamed = "".join(d.function.arguments or "" for d in deltas if d.function)
        assert name_parts == "get_weather"
        assert json.loads(streamed) == arguments
        assert [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason] == ["tool_calls"]


# --- structured output -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", providers("json"))
async def test_json_mode(name: str) -> None:
    async with harness(name) as h:
        ask = request(
            h,
            response_format={"type": "json_object"},
            messages=[{"role": "user", "content": "answer in json: hello"}],
        )
        if not (h.spec.capabilities.chat and h.spec.capabilities.json_mode):
            with pytest.raises(UnsupportedFeatureError) as exc:
                await h.gateway.chat(ask)
            feature_error(exc, h, "JSON mode")
            return
        assert isinstance(json.loads(text_of(await h.gateway.chat(ask))), dict)


@pytest.mark.parametrize("name", providers("json"))
async def test_json_schema(name: str) -> None:
    async with harness(name) as h:
        ask = request(h, response_format=SCHEMA, messages=[{"role": "user", "content": "answer in json: hi"}])
        if not (h.spec.capabilities.chat and h.spec.capabilities.json_schema):
            with pytest.raises(UnsupportedFeatureError) as exc:
                await h.gateway.chat(ask)
            feature_error(exc, h, "json_schema")
            return
        answer = json.loads(text_of(await h.gateway.chat(ask)))
        assert isinstance(answer, dict)
        assert isinstance(answer.get("echo"), str)


# --- vision ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
async def test_vision(name: str) -> None:
    async with harness(name) as h:
        parts = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": PIXEL}}]
        ask = request(h, messages=[{"role": "user", "content": parts}])
        if not (h.spec.capabilities.chat and h.spec.capabilities.vision):
            with pytest.raises(UnsupportedFeatureError) as exc:
                await h.gateway.chat(ask)
            feature_error(exc, h, "image input")
            return
        assert text_of(await h.gateway.chat(ask)) == "echo: what is this"


# --- embeddings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
async def test_embeddings(name: str) -> None:
    async with harness(name) as h:
        ask = EmbeddingRequest(model=h.embed_model(), input=["one two", "three"])
        if not h.spec.capabilities.embeddings:
            with pytest.raises(UnsupportedFeatureError) as exc:
                await h.gateway.embed(ask)
            assert exc.value.provider == h.name
            assert "embeddings" in exc.value.message
            return
        response = await h.gateway.embed(ask)
        assert [d.index for d in response.data] == [0, 1]
        vectors = [d.embedding for d in response.data]
        assert all(isinstance(v, list) and v and all(isinstance(x, float) for x in v) for v in vectors)
        assert vectors[0] != vectors[1]
        assert response.usage.total_tokens >= response.usage.prompt_tokens >= 0
        if h.spec.adapter == OPENAI_ADAPTER:  # every OpenAI-compatible row reports embedding usage
            assert response.usage.prompt_tokens > 0


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
async def test_rate_limit_keeps_retry_after(name: str) -> None:
    async with harness(name) as h:
        with pytest.raises(RateLimitError) as exc:
            await call(h, "error-429")
        assert exc.value.provider == h.name
        assert h.http.last is not None
        sent = {k.lower(): v for k, v in h.http.last.headers.items()}.get("retry-after")
        if sent is not None:
            assert exc.value.retry_after == float(sent)


@pytest.mark.parametrize("name", PROVIDERS)
async def test_wrong_key_is_an_authentication_error_without_the_key(name: str) -> None:
    wrong = "sk-wrong-key-abcdefghijklmnopqrstuvwxyz-0123456789"
    async with harness(name) as probe:
        if probe.fake.api_key is None:  # a local server, or credentials in options: no key needed
            assert await call(probe)
            return
    async with harness(name, api_key=wrong) as h:
        with pytest.raises(AuthenticationError) as exc:
            await call(h)
        assert exc.value.provider == h.name
        # nor a masked form of it (OpenAI's 401 shows the first 8 and last 4 characters)
        for shown in (wrong, wrong[:8], wrong[-4:]):
            assert shown not in exc.value.message
            assert shown not in (exc.value.upstream_body or "")
            assert shown not in str(exc.value)


# --- params -------------------------------------------------------------------------------------------------


def test_samples_cover_every_chat_param() -> None:
    assert set(SAMPLES) == set(ChatRequest.model_fields) - {"model", "messages", "stream"}


@pytest.mark.parametrize("name", CHAT_PROVIDERS)
async def test_unsupported_params_are_rejected_or_visibly_dropped(name: str) -> None:
    async with harness(name) as strict, harness(name, drop=True) as lenient:
        caps = strict.spec.capabilities
        for param in sorted(rejected_params(adapter_of(strict.gateway, name), strict.fake.chat_model)):
            fields = SAMPLES[param]
            if "tools" in fields and not caps.tools:
                continue  # a tools request fails on the feature first (test_tools_plain_and_streamed)
            if param == "response_format":  # the sample is OpenAI's default (text): honoured everywhere
                ctx = RequestContext("chat")
                assert text_of(await strict.gateway.chat(request(strict, **fields), ctx))
                assert ctx.route is not None
                assert param not in ctx.route.dropped_params
                continue
            if param in ("prompt_cache_key", "prompt_cache_retention"):
                # a caching hint: left out and named whatever the setting (Codex sends it always)
                ctx = RequestContext("chat")
                assert text_of(await strict.gateway.chat(request(strict, **fields), ctx))
                assert ctx.route is not None
                assert param in ctx.route.dropped_params
                continue
            with pytest.raises(UnsupportedParamError) as exc:
                await strict.gateway.chat(request(strict, **fields))
            assert exc.value.provider == name
            assert param in exc.value.message

            ctx = RequestContext("chat")
            if param == "n":  # several choices are never dropped: one would be another shape
                with pytest.raises(UnsupportedParamError):
                    await lenient.gateway.chat(request(lenient, **fields), ctx)
                continue
            response = await lenient.gateway.chat(request(lenient, **fields), ctx)
            assert text_of(response)
            assert ctx.route is not None
            assert param in ctx.route.dropped_params


#: OpenAI's participant names (``messages[].name``); the first named message is ``messages[1]``.
NAMED = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "hello there", "name": "participant_a"},
    {"role": "assistant", "content": "Hello.", "name": "participant_b"},
    {"role": "user", "content": "hello again", "name": "participant_a"},
]
NAMES = ["participant_a", "participant_b"]


@pytest.mark.parametrize("name", CHAT_PROVIDERS)
async def test_message_names_are_sent_refused_or_visibly_dropped(name: str) -> None:
    """Sent as they are where the provider takes them; elsewhere a 400 naming the first named
    message and the provider, or, when dropping, gone from the upstream request and reported."""
    async with harness(name) as strict, harness(name, drop=True) as lenient:
        ctx = RequestContext("chat")
        if strict.spec.message_names:
            assert text_of(await strict.gateway.chat(request(strict, messages=NAMED), ctx))
            sent = strict.app["requests"][-1]["body"]
            assert [m.get("name") for m in sent["messages"]] == [None, *NAMES, NAMES[0]]
            assert ctx.route is not None
            assert ctx.route.dropped_params == ()
            return
        with pytest.raises(UnsupportedParamError) as exc:
            await strict.gateway.chat(request(strict, messages=NAMED))
        assert exc.value.param == "messages[1].name"
        assert exc.value.provider == name
        assert f"provider '{name}'" in exc.value.message
        assert "messages[1].name" in exc.value.message

        response = await lenient.gateway.chat(request(lenient, messages=NAMED), ctx)
        assert text_of(response)
        assert ctx.route is not None
        assert ctx.route.dropped_params == ("messages[].name",)
        sent = json.dumps(lenient.app["requests"][-1], default=str)
        assert "hello again" in sent
        assert not any(n in sent for n in NAMES)


def test_only_formats_with_participant_names_carry_them() -> None:
    """The native adapters' formats have no ``name`` on a message; OpenAI's and Azure's have."""
    carriers = {
        n
        for n in CHAT_PROVIDERS
        if default_registry().get(n).adapter != OPENAI_ADAPTER and default_registry().get(n).message_names
    }
    assert carriers == {"azure"}
    assert not default_registry().get("groq").message_names  # a documented 400


@pytest.mark.parametrize(
    "name", [n for n in CHAT_PROVIDERS if default_registry().get(n).param_renames], ids=str
)
async def test_renamed_params_reach_the_provider_under_its_name(name: str) -> None:
    async with harness(name) as h:
        limits = {"max_completion_tokens", "max_tokens"}
        for ours, theirs in h.spec.param_renames.items():
            assert {ours, theirs} == limits  # the one rename rows use: the output limit, either way
            response = await h.gateway.chat(request(h, **{ours: 1}))
            assert response.choices[0].finish_reason == "length"
            assert text_of(response) == "echo:"
            sent = h.app["requests"][-1]["body"]
            assert sent[theirs] == 1
            assert ours not in sent


@pytest.mark.parametrize(
    "name", [n for n in PROVIDERS if default_registry().get(n).embed_param_renames], ids=str
)
async def test_renamed_embedding_params_reach_the_provider(name: str) -> None:
    async with harness(name) as h:
        response = await h.gateway.embed(EmbeddingRequest(model=h.embed_model(), input="hi", dimensions=256))
        assert len(response.data[0].embedding) == 256
        sent = h.app["requests"][-1]
        body = sent.get("body", sent)
        for ours, theirs in h.spec.embed_param_renames.items():
            assert ours not in body
            assert theirs in body
        for option, value in h.fake.options(h.url).items():
            assert body[option] == value  # embed_options are sent with every request


def test_every_registered_type_is_in_the_suite() -> None:
    assert len(PROVIDERS) >= 30
    rows = [n for n in PROVIDERS if default_registry().get(n).adapter == OPENAI_ADAPTER]
    assert {"openai", "groq", "together", "cloudflare", "voyage", "jina"} <= set(rows)
