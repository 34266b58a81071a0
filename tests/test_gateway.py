"""The gateway pipeline against the faithful OpenAI fake: routing, fallback, params, usage, leaks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.fakes.common import run_fake
from tests.stream_helpers import API_KEY, RecordingPool, openai_stream
from uniinfer.config import Config
from uniinfer.errors import (
    AllTargetsFailedError,
    AuthenticationError,
    ContextLengthExceededError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderQuotaExceededError,
    ProviderResponseError,
    RateLimitError,
    UnsupportedFeatureError,
    UnsupportedParamError,
)
from uniinfer.gateway import Gateway
from uniinfer.stages import RequestContext
from uniinfer.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest

MSG = [{"role": "user", "content": "hello there"}]


def chat(model: str, **extra: Any) -> ChatRequest:
    return ChatRequest.model_validate({"model": model, "messages": MSG, **extra})


async def test_chat_through_a_configured_model(gateway: Gateway, openai_fake_app: web.Application) -> None:
    ctx = RequestContext("chat")
    response = await gateway.chat(chat("chat"), ctx)
    assert response.choices[0].message.content == "echo: hello there"
    assert response.usage is not None
    assert response.usage.prompt_tokens == 5  # 2 words + 3 per message, as the fake counts
    sent = openai_fake_app["requests"][-1]["body"]
    assert sent["model"] == "gpt-4o-mini"  # the upstream name, not the alias
    assert ctx.route is not None
    assert (ctx.route.provider, ctx.route.upstream_model, ctx.route.attempts) == ("up", "gpt-4o-mini", 1)


async def test_direct_provider_model_routing(gateway: Gateway) -> None:
    response = await gateway.chat(chat("up/gpt-4.1"))
    assert response.choices[0].message.content == "echo: hello there"


async def test_unknown_model_and_unconfigured_provider(gateway: Gateway) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        await gateway.chat(chat("no-such-model"))
    with pytest.raises(ModelNotFoundError, match="set ANTHROPIC_API_KEY"):
        await gateway.chat(chat("anthropic/claude-sonnet-4-5"))


async def test_fallback_on_retryable_errors_records_the_path(
    config_for: Callable[..., Config], make_gateway: Callable[..., Gateway]
) -> None:
    gw = make_gateway(
        config_for("models:\n  m: {deployments: [up/error-429, up/error-500, up/gpt-4o-mini]}\n")
    )
    ctx = RequestContext("chat")
    response = await gw.chat(chat("m"), ctx)
    assert response.choices[0].message.content == "echo: hello there"
    assert ctx.route is not None
    assert ctx.route.attempts == 3
    assert ctx.route.failed == ["up/error-429", "up/error-500"]


async def test_all_targets_failed_keeps_each_error(
    config_for: Callable[..., Config], make_gateway: Callable[..., Gateway]
) -> None:
    gw = make_gateway(config_for("models:\n  m: {deployments: [up/error-500, up/error-429]}\n"))
    with pytest.raises(AllTargetsFailedError) as info:
        await gw.chat(chat("m"))
    err = info.value
    assert [type(e) for _, e in err.attempts] == [ProviderError, RateLimitError]
    assert err.http_status == 429  # the deciding (last) attempt
    assert err.retry_after == 7.0


async def test_non_retryable_error_does_not_fall_back(
    config_for: Callable[..., Config], make_gateway: Callable[..., Gateway]
) -> None:
    gw = make_gateway(config_for("models:\n  m: {deployments: [up/context-8k, up/gpt-4o-mini]}\n"))
    with pytest.raises(ContextLengthExceededError) as info:
        await gw.chat(chat("m"))
    assert info.value.provider == "up"
    assert info.value.upstream_status == 400


async def test_provider_401_is_an_authentication_error_without_the_key(
    openai_url: str, make_gateway: Callable[..., Gateway]
) -> None:
    from tests.conftest import make_config

    gw = make_gateway(
        make_config(
            f"providers:\n  up: {{type: openai, api_key: sk-wrong-secret-99, base_url: {openai_url}}}\n"
        )
    )
    with pytest.raises(AuthenticationError) as info:
        await gw.chat(chat("up/gpt-4o-mini"))
    err = info.value
    assert "sk-wrong-secret-99" not in err.message
    assert "sk-wrong-secret-99" not in (err.upstream_body or "")


async def test_unsupported_param_is_rejected_naming_param_and_provider(
    config_for: Callable[..., Config], make_gateway: Callable[..., Gateway]
) -> None:
    gw = make_gateway(config_for())
    with pytest.raises(UnsupportedParamError) as info:
        await gw.chat(chat("up/gpt-4o-mini", top_k=5))
    assert info.value.param == "top_k"
    assert info.value.provider == "up"
    assert "top_k" in info.value.message


async def test_unsupported_param_is_dropped_and_reported_when_configured(
    config_for: Callable[..., Config], openai_fake_app: web.Application, make_gateway: Callable[..., Gateway]
) -> None:
    gw = make_gateway(config_for(drop=True))
    ctx = RequestContext("chat")
    await gw.chat(chat("up/gpt-4o-mini", top_k=5, temperature=0.5), ctx)
    assert ctx.route is not None
    assert ctx.route.dropped_params == ("top_k",)
    sent = openai_fake_app["requests"][-1]["body"]
    assert "top_k" not in sent
    assert sent["temperature"] == 0.5


async def test_a_row_s_quirks_reject_params(openai_url: str, make_gateway: Callable[..., Gateway]) -> None:
    from tests.conftest import make_config

    # DeepSeek's row says it rejects `seed` (its docs list no such parameter).
    gw = make_gateway(
        make_config(f"providers:\n  ds: {{type: deepseek, api_key: k, base_url: {openai_url}}}\n")
    )
    with pytest.raises(UnsupportedParamError, match="seed"):
        await gw.chat(chat("ds/deepseek-chat", seed=1))


async def test_missing_capability_is_an_unsupported_feature(
    openai_url: str, make_gateway: Callable[..., Gateway]
) -> None:
    from tests.conftest import make_config

    gw = make_gateway(
        make_config(f"providers:\n  ds: {{type: deepseek, api_key: k, base_url: {openai_url}}}\n")
    )
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    request = ChatRequest.model_validate(
        {"model": "ds/deepseek-chat", "messages": [{"role": "user", "content": [image]}]}
    )
    with pytest.raises(UnsupportedFeatureError) as info:
        await gw.chat(request)
    assert info.value.provider == "ds"
    assert "image input" in info.value.message
    with pytest.raises(UnsupportedFeatureError, match="embeddings"):
        await gw.embed(EmbeddingRequest(model="ds/x", input="hi"))


async def test_a_providers_capabilities_can_be_set_for_its_endpoint(
    openai_url: str, make_gateway: Callable[..., Gateway]
) -> None:
    """A generic OpenAI-compatible server serving a vision model: its row says no images, the
    config says this endpoint takes them (and JSON schemas); another entry of the type keeps the row's."""
    from tests.conftest import FAKE_KEY, make_config
    from uniinfer.errors import ConfigError

    gw = make_gateway(
        make_config(
            "providers:\n"
            f"  vl: {{type: openai_compatible, api_key: {FAKE_KEY}, base_url: {openai_url},"
            " capabilities: {vision: true, json_schema: true}}\n"
            f"  plain: {{type: openai_compatible, api_key: {FAKE_KEY}, base_url: {openai_url}}}\n"
        )
    )
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "what is it?"}, image]}]
    answer = await gw.chat(ChatRequest.model_validate({"model": "vl/qwen-vl", "messages": messages}))
    assert answer.choices[0].message.content
    with pytest.raises(UnsupportedFeatureError, match="image input"):
        await gw.chat(ChatRequest.model_validate({"model": "plain/qwen-vl", "messages": messages}))
    with pytest.raises(ConfigError, match=r"capabilities\.telepathy"):
        make_config(
            f"providers:\n  vl: {{type: openai_compatible, base_url: {openai_url}, capabilities: {{telepathy: true}}}}\n"
        )


async def test_unsupported_feature_falls_back_to_a_capable_deployment(
    openai_url: str, make_gateway: Callable[..., Gateway]
) -> None:
    from tests.conftest import make_config

    gw = make_gateway(
        make_config(
            f"""providers:
  ds: {{type: deepseek, api_key: k, base_url: {openai_url}}}
  up: {{type: openai, api_key: sk-test-upstream-key-1234567890, base_url: {openai_url}}}
models:
  m: {{deployments: [ds/deepseek-chat, up/gpt-4o-mini]}}
"""
        )
    )
    ctx = RequestContext("chat")
    await gw.chat(chat("m", seed=3), ctx)
    assert ctx.route is not None
    assert ctx.route.provider == "up"
    assert ctx.route.failed == ["ds/deepseek-chat"]


async def test_usage_is_normalised_and_metered(gateway: Gateway) -> None:
    response = await gateway.chat(chat("up/cached-reason-model"))
    usage = response.usage
    assert usage is not None
    assert usage.cached_tokens == usage.prompt_tokens // 2
    assert usage.reasoning_tokens == 5
    totals = gateway.usage.totals["up/cached-reason-model"]
    assert totals.requests == 1
    assert totals.cached_tokens == usage.cached_tokens
    assert totals.reasoning_tokens == 5


async def test_stream_yields_chunks_and_hides_usage_unless_asked(gateway: Gateway) -> None:
    stream = await gateway.stream(chat("chat", stream=True))
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there"
    assert all(c.choices for c in chunks)  # no usage chunk: the caller did not ask
    # ... but the gateway still learned the usage (it injected include_usage upstream).
    assert gateway.usage.totals["up/gpt-4o-mini"].prompt_tokens == 5
    assert gateway.http.busy_connections == 0


async def test_stream_final_usage_chunk_when_asked(gateway: Gateway) -> None:
    request = chat("chat", stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in await gateway.stream(request)]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 3
    assert chunks[-2].choices[0].finish_reason == "stop"


async def test_stream_tool_call_deltas_reassemble(gateway: Gateway) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    chunks = [c async for c in await gateway.stream(chat("up/tool-model", stream=True, tools=tools))]
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert {d.index for d in deltas} == {0}
    assert deltas[0].function is not None
    assert deltas[0].function.name == "get_weather"
    args = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert args == '{"location": "Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_stream_falls_back_before_the_first_chunk(
    config_for: Callable[..., Config], make_gateway: Callable[..., Gateway]
) -> None:
    gw = make_gateway(config_for("models:\n  m: {deployments: [up/error-429, up/drop, up/gpt-4o-mini]}\n"))
    ctx = RequestContext("chat")
    chunks = [c async for c in await gw.stream(chat("m", stream=True), ctx)]
    assert chunks
    assert ctx.route is not None
    assert ctx.route.failed == ["up/error-429", "up/drop"]
    assert gw.http.busy_connections == 0


async def test_a_stream_served_by_the_fallback_counts_as_served(
    config_for: Callable[..., Config], make_gateway: Callable[..., Gateway]
) -> None:
    # the first target answers 200, then fails before its first event; the second serves
    gw = make_gateway(config_for("models:\n  m: {deployments: [up/cutfirst, up/gpt-4o-mini]}\n"))
    for i in range(6):  # past the circuit breaker's minimum of failures, were they counted
        ctx = RequestContext("chat")
        stream = await gw.stream(chat("m", stream=True), ctx)
        chunks = [c async for c in stream]
        assert chunks
        assert not stream.failed
        assert ctx.error is None
        assert ctx.route is not None
        if i == 0:  # (later, the failing target's own circuit opens and it is skipped)
            assert ctx.route.failed == ["up/cutfirst"]
    served = gw.usage.totals["up/gpt-4o-mini"]
    assert (served.requests, served.errors) == (6, 0)
    assert gw.router.states["up/gpt-4o-mini"].breaker.state.value == "closed"


async def test_cut_stream_raises_after_the_first_chunk_and_releases(gateway: Gateway) -> None:
    stream = await gateway.stream(chat("up/cut-model", stream=True))
    with pytest.raises(ProviderConnectionError):
        async for _ in stream:
            pass
    assert gateway.http.busy_connections == 0
    assert gateway.usage.totals["up/cut-model"].errors == 1


async def test_abandoned_stream_closes_its_connection_and_is_recorded_as_cancelled(gateway: Gateway) -> None:
    from uniinfer.errors import RequestCancelledError

    ctx = RequestContext("chat")
    stream = await gateway.stream(chat("chat", stream=True), ctx)
    await stream.__anext__()
    assert gateway.http.busy_connections == 1
    await stream.aclose()
    await stream.aclose()  # idempotent
    assert gateway.http.busy_connections == 0
    assert isinstance(ctx.error, RequestCancelledError)  # not a clean zero-token success
    assert gateway.usage.totals["up/gpt-4o-mini"].errors == 1
    assert not stream.failed  # the caller left: no failure of the deployment's
    assert gateway.router.states["up/gpt-4o-mini"].breaker.state.value == "closed"


async def test_a_stream_closed_at_its_answers_finish_still_meters_its_usage(gateway: Gateway) -> None:
    """Clients stop reading at the finish_reason (the answer is whole); the usage chunk comes
    after it. Read on for a moment, it is metered and the stream counts as whole (it was an
    error with no tokens, though the provider billed them)."""
    from uniinfer.errors import RequestCancelledError

    ctx = RequestContext("chat")
    stream = await gateway.stream(chat("up/whole-finish", stream=True), ctx)  # one event a read
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].finish_reason:
            break
    await stream.aclose()
    assert ctx.error is None
    assert ctx.usage is not None
    assert ctx.usage.completion_tokens > 0
    totals = gateway.usage.totals["up/whole-finish"]
    assert (totals.errors, totals.prompt_tokens > 0) == (0, True)
    assert (gateway.http.busy_connections, gateway.http.open_connections) == (0, 1)  # read to its end: pooled
    # the same through the server's relay, where each event goes on as it came (never modelled)
    ctx = RequestContext("chat")
    stream = await gateway.stream(chat("up/whole-relay", stream=True), ctx)
    async for body in stream.sse_batches():
        if b'"finish_reason":"stop"' in body:
            break
    await stream.aclose()
    assert (ctx.error, ctx.usage is not None) == (None, True)
    # closed before the finish, the caller left mid-answer: closed at once, nothing read for it
    ctx = RequestContext("chat")
    stream = await gateway.stream(chat("up/whole-left", stream=True), ctx)
    await stream.__anext__()
    await stream.aclose()
    assert isinstance(ctx.error, RequestCancelledError)


async def test_a_stream_closed_by_another_task_ends_its_reader_without_blaming_the_provider(
    gateway: Gateway,
) -> None:
    """A "stop" button closes the stream while a task iterates it: the reader's loop ends (as a
    closed generator's); it raised ProviderConnectionError, naming the provider, which did nothing."""
    stream = await gateway.stream(chat("up/stall-x", stream=True))  # half its events, then nothing

    async def read() -> int:
        return len([chunk async for chunk in stream])

    reader = asyncio.create_task(read())
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not stream._pending:  # handed out what came: waiting on the upstream
            break
    await stream.aclose()
    assert await asyncio.wait_for(reader, 5) > 0
    assert [chunk async for chunk in stream] == []  # and iterating it later: nothing, no error
    assert not stream.failed
    assert gateway.http.busy_connections == 0


@pytest.mark.parametrize("kind", ["chat", "stream", "embeddings"])
async def test_a_cancelled_request_leaks_no_connection_and_is_recorded_as_cancelled(
    gateway: Gateway, kind: str
) -> None:
    from uniinfer.errors import RequestCancelledError

    ctx = RequestContext("embeddings" if kind == "embeddings" else "chat")
    if kind == "chat":
        task = asyncio.create_task(gateway.chat(chat("up/slow-5"), ctx))
    elif kind == "stream":
        task = asyncio.create_task(gateway.stream(chat("up/slow-5", stream=True), ctx))
    else:
        task = asyncio.create_task(gateway.embed(EmbeddingRequest(model="up/slow-5", input="hi"), ctx))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if gateway.http.busy_connections:
            break
    assert gateway.http.busy_connections == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gateway.http.busy_connections == 0
    assert isinstance(ctx.error, RequestCancelledError)  # usage and routing see the abandoned request
    assert gateway.usage.totals["up/slow-5"].errors == 1
    assert gateway.usage.totals["up/slow-5"].errors == 1  # the abandoned request is still metered
    await gateway.aclose()
    assert gateway.http.open_connections == 0


async def test_embeddings(gateway: Gateway) -> None:
    response = await gateway.embed(EmbeddingRequest(model="up/text-embedding-3-small", input=["a", "b c"]))
    assert [d.index for d in response.data] == [0, 1]
    assert all(isinstance(d.embedding, list) and len(d.embedding) == 8 for d in response.data)
    assert response.usage.prompt_tokens > 0


async def test_stages_run_in_slot_order_and_can_answer(
    config_for: Callable[..., Config], make_gateway: Callable[..., Gateway]
) -> None:
    seen: list[str] = []

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        async def before(self, ctx: RequestContext) -> None:
            seen.append(f"before:{self.name}")

        async def after(self, ctx: RequestContext) -> None:
            seen.append(f"after:{self.name}")

    gw = make_gateway(config_for(), stages={"limits": Recorder("limits"), "identity": Recorder("identity")})
    await gw.chat(chat("up/gpt-4o-mini"))
    assert seen == ["before:identity", "before:limits", "after:limits", "after:identity"]
    from uniinfer.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown pipeline stage"):
        Gateway(config_for(), stages={"caching": Recorder("x")})


async def test_a_stage_can_answer_without_calling_a_provider(
    config_for: Callable[..., Config], make_gateway: Callable[..., Gateway], openai_fake_app: web.Application
) -> None:
    from uniinfer.types import ChatResponse, Usage
    from uniinfer.types.chat import ChatChoice, ResponseMessage

    canned = ChatResponse(
        id="cached-1",
        model="cache",
        choices=[ChatChoice(message=ResponseMessage(content="from cache"), finish_reason="stop")],
        usage=Usage.of(4, 2),
    )

    class Cache:
        async def before(self, ctx: RequestContext) -> ChatResponse:
            return canned

    gw = make_gateway(config_for(), stages={"cache": Cache()})
    assert (await gw.chat(chat("up/gpt-4o-mini"))).choices[0].message.content == "from cache"
    request = chat("up/gpt-4o-mini", stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in await gw.stream(request)]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "from cache"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage == canned.usage
    assert openai_fake_app["requests"] == []


async def test_provider_plugin_from_an_entry_point(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, openai_url: str, make_gateway: Callable[..., Gateway]
) -> None:
    """A package outside uniinfer registers a provider through the `uniinfer.providers` entry point."""
    from tests.conftest import make_config
    from uniinfer.providers.registry import BUILTIN_PROVIDERS, Registry, _entry_point_specs

    (tmp_path / "acme_provider.py").write_text(
        "from uniinfer.providers.base import Capabilities, ProviderSpec\n"
        "SPEC = ProviderSpec('acme', 'uniinfer.providers.openai:OpenAIAdapter',\n"
        f"    '{openai_url}', 'ACME_API_KEY', Capabilities())\n"
    )
    dist = tmp_path / "acme_provider-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-provider\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[uniinfer.providers]\nacme = acme_provider:SPEC\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    registry = Registry([*BUILTIN_PROVIDERS, *_entry_point_specs()])
    assert "acme" in registry
    config = make_config("providers:\n  acme: {api_key: sk-test-upstream-key-1234567890}\n")
    gw = make_gateway(config, registry=registry)
    response = await gw.chat(chat("acme/gpt-4o-mini"))
    assert response.choices[0].message.content == "echo: hello there"

    (dist / "entry_points.txt").write_text("[uniinfer.providers]\nbroken = acme_provider:MISSING\n")
    from uniinfer.errors import ConfigError

    with pytest.raises(ConfigError, match="plug-in 'broken'"):
        _entry_point_specs()


async def test_chat_json_answers_like_chat_and_meters_the_same(gateway: Gateway) -> None:
    ctx = RequestContext("chat")
    body = await gateway.chat_json(chat("chat"), ctx)
    modelled = await gateway.chat(chat("chat"))
    answer = ChatResponse.model_validate_json(body)
    assert answer.choices[0].message.content == modelled.choices[0].message.content == "echo: hello there"
    assert ctx.usage is not None
    assert ctx.usage == answer.usage == modelled.usage
    assert gateway.usage.totals["up/gpt-4o-mini"].requests == 2


async def test_json_batches_carry_every_chunk_as_openai_json(gateway: Gateway) -> None:
    stream = await gateway.stream(chat("chat", stream=True, stream_options={"include_usage": True}))
    batches = [batch async for batch in stream.json_batches()]
    chunks = [ChatChunk.model_validate_json(data) for batch in batches for data in batch]
    assert all(batches)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert gateway.usage.totals["up/gpt-4o-mini"].requests == 1  # the stream ran its after-stages


async def test_json_batches_hand_out_what_is_decoded_together() -> None:
    from uniinfer.stages import RequestContext
    from uniinfer.streaming import ChatStream, response_to_chunks

    response = ChatResponse.model_validate(
        {"id": "r", "model": "m", "choices": [{"message": {"role": "assistant", "content": "hi"}}]}
    )
    ctx = RequestContext("chat")

    async def done(_: RequestContext) -> None:
        return None

    stream = ChatStream.of_response(response, ctx, done, include_usage=False)
    batches = [batch async for batch in stream.json_batches()]
    assert [len(b) for b in batches] == [len(response_to_chunks(response))]  # all ready: one write


@pytest.mark.parametrize("include_usage", [False, True])
async def test_modelled_chunks_carry_usage_null_when_usage_was_asked_for(include_usage: bool) -> None:
    # the spec: with include_usage, every chunk has `usage`, null but on the last
    import orjson

    from uniinfer.stages import RequestContext
    from uniinfer.streaming import ChatStream

    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    response = ChatResponse.model_validate(
        {
            "id": "r",
            "model": "m",
            "choices": [{"message": {"role": "assistant", "content": "hi"}}],
            "usage": usage,
        }
    )

    async def done(_: RequestContext) -> None:
        return None

    stream = ChatStream.of_response(response, RequestContext("chat"), done, include_usage=include_usage)
    written = [orjson.loads(data) async for batch in stream.json_batches() for data in batch]
    if include_usage:
        assert [c["usage"] for c in written[:-1]] == [None] * (len(written) - 1)
        assert written[-1]["usage"]["total_tokens"] == 4
    else:
        assert all("usage" not in c for c in written)


async def test_a_passed_through_chunk_of_the_wrong_shape_fails_the_stream_for_sdk_callers(
    gateway: Gateway,
) -> None:
    from uniinfer.errors import ProviderResponseError
    from uniinfer.types import RawEvents

    stream = await gateway.stream(chat("chat", stream=True))
    stream._pending.appendleft(RawEvents.of(b'{"id":"x","model":"m","choices":[{"delta":5}]}'))
    with pytest.raises(ProviderResponseError, match="unexpected stream chunk shape"):
        await stream.__anext__()
    assert stream.failed


async def test_batches_hand_out_the_chunks_before_one_of_the_wrong_shape_then_fail() -> None:
    from uniinfer.errors import ProviderResponseError

    event = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":%s}}]}\n\n'
    # the middle event passes the pass-through check but is no chunk: content must be text
    reads = [event % b'"a"' + event % b"5" + event % b'"c"' + b"data: [DONE]\n\n"]
    done: list[RequestContext] = []

    async def on_done(ctx: RequestContext) -> None:
        done.append(ctx)

    stream = openai_stream(reads, on_done=on_done)
    seen = []

    async def read_all() -> None:
        async for batch in stream.batches():
            seen.append(([c.choices[0].delta.content for c in batch], stream.drained))

    with pytest.raises(ProviderResponseError, match="unexpected stream chunk shape"):
        await read_all()
    assert seen == [(["a"], False)]  # not drained: a handler does not end its response before the error
    assert stream.failed
    assert len(done) == 1
    assert done[0].error is not None


async def test_a_read_of_plain_events_is_written_on_as_it_came_in_one_piece() -> None:
    event = b'data: {"id":"c","model":"m","x_own":1,"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n'
    reads = [event % b"a", event % b"b" + event % b"c" + b"data: [DONE]\n\n"]
    stream = openai_stream(reads)
    written = [body async for body in stream.sse_batches()]
    assert written == [event % b"a", event % b"b" + event % b"c"]  # [DONE] is the server's to write
    assert not stream.failed


async def test_reads_of_one_event_each_are_relayed_as_they_came_and_the_rest_decoded_in_order() -> None:
    from uniinfer.errors import ProviderError

    event = b'data: {"id":"c","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n'
    usage = (
        b'data: {"id":"c","created":1,"model":"m","choices":[],'
        b'"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\n\n'
    )
    half = event % b"c"
    reads = [event % b"a", event % b"b", half[:30], half[30:], usage, b"data: [DONE]\n\n"]
    ctx = RequestContext("chat")
    stream = openai_stream(reads, include_usage=True, ctx=ctx)
    written = [body async for body in stream.sse_batches()]
    assert written == [event % b"a", event % b"b", half, usage]  # a split event joined, usage last
    assert ctx.usage is not None
    assert ctx.usage.total_tokens == 3  # metered though the events before it were relayed

    error = b'data: {"error":{"message":"upstream broke","type":"server_error","code":null}}\n\n'
    stream = openai_stream([event % b"a", error, event % b"z"])
    written = []

    async def read_all() -> None:
        async for body in stream.sse_batches():
            written.append(body)

    with pytest.raises(ProviderError, match="upstream broke"):
        await read_all()
    assert written == [event % b"a"]  # the error is an error, not relayed as an event
    assert stream.failed


async def _written_and_handed_out(reads: list[bytes], provider: str) -> tuple[list[Any], list[Any]]:
    """The events ``sse_batches`` writes and the chunks ``json_batches`` hands out, as JSON."""
    import orjson

    stream = openai_stream(list(reads), provider=provider)
    sse = b"".join([body async for body in stream.sse_batches()])
    written = [orjson.loads(e[6:]) for e in sse.removesuffix(b"\n\n").split(b"\n\n")]
    stream = openai_stream(list(reads), provider=provider)
    handed_out = [orjson.loads(json) async for batch in stream.json_batches() for json in batch]
    return written, handed_out


async def test_the_relay_rewrites_mistral_list_content_as_the_decoder_does() -> None:
    # Magistral's reasoning arrives as list content: no OpenAI client can read it as it came
    from tests.fakes.mistral import events

    answer = {
        "id": "x",
        "created": 1,
        "model": "magistral-small-latest",
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "tool_calls": None,
                    "content": [
                        {"type": "thinking", "thinking": [{"type": "text", "text": "Because."}]},
                        {"type": "text", "text": "Hi"},
                    ],
                },
            }
        ],
    }
    written, handed_out = await _written_and_handed_out(events(answer), "mistral")  # an event a read
    assert written == handed_out
    assert not any(isinstance(c["choices"][0]["delta"].get("content"), list) for c in written)
    assert "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in written) == "Because."


async def test_the_relay_drops_azure_annotation_chunks_as_the_decoder_does() -> None:
    chunk = (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"g",'
        b'"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}\n\n'
    )
    annotation = (
        b'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":'
        b'[{"prompt_index":0,"content_filter_results":{}}]}\n\n'
    )
    reads = [chunk % b"a", annotation, chunk % b"b", b"data: [DONE]\n\n"]
    written, handed_out = await _written_and_handed_out(reads, "azure")
    assert written == handed_out
    assert [c["choices"][0]["delta"]["content"] for c in written] == ["a", "b"]


async def test_usage_after_passed_on_events_without_created_ends_the_stream_cleanly() -> None:
    # the pass-through check reads id and model only; the usage chunk built at the end needs created
    event = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n'
    with_usage = (
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"b"}}],'
        b'"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\n\n'
    )
    ctx = RequestContext("chat")
    stream = openai_stream(
        [event % b"a", with_usage, event % b"c", b"data: [DONE]\n\n"], include_usage=True, ctx=ctx
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 3
    assert ctx.usage is not None
    assert not stream.failed


async def test_nothing_comes_out_of_a_stream_after_a_chunk_of_the_wrong_shape() -> None:
    from uniinfer.errors import ProviderResponseError

    event = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":%s}}]}\n\n'
    # the bad chunk first in a run, more chunks behind it in the same read
    stream = openai_stream([event % b"5" + event % b'"b"' + event % b'"c"' + b"data: [DONE]\n\n"])
    for _ in range(3):  # a caller that catches the error and tries again gets it again, not "b"
        with pytest.raises(ProviderResponseError, match="unexpected stream chunk shape"):
            await stream.__anext__()
    assert stream.failed


async def test_an_event_whose_json_spans_data_lines_is_written_on_one_line() -> None:
    # SSE joins an event's data lines with a newline: written on as one line, that newline
    # would cut it in two (the second half a field line the client drops)
    split = b'data: {"id":"c","created":1,"model":"m",\ndata: "choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
    usage = b'data: {"id":"c","created":1,"model":"m","choices":[],\ndata: "usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n'
    stream = openai_stream([split, usage, b"data: [DONE]\n\n"], include_usage=True)
    written = b"".join([body async for body in stream.sse_batches()])
    events = written.removesuffix(b"\n\n").split(b"\n\n")
    assert all(e.startswith(b"data: ") and b"\n" not in e for e in events)
    chunks = [ChatChunk.model_validate_json(e[6:]) for e in events]
    assert chunks[0].choices[0].delta.content == "a"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 2


async def test_sdk_callers_get_the_chunks_of_a_read_before_one_of_the_wrong_shape_then_the_error() -> None:
    from uniinfer.errors import ProviderResponseError

    event = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":%s}}]}\n\n'
    stream = openai_stream([event % b'"a"' + event % b'"b"' + event % b"5" + event % b'"d"'])
    got = [(await stream.__anext__()).choices[0].delta.content for _ in range(2)]
    assert got == ["a", "b"]
    with pytest.raises(ProviderResponseError, match="unexpected stream chunk shape"):
        await stream.__anext__()
    assert stream.failed


async def test_a_stream_whose_end_comes_with_its_last_events_is_drained_without_another_read() -> None:

    event = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n'
    reads = [event % b"a", event % b"b" + event % b"c" + b"data: [DONE]\n\n"]
    done: list[RequestContext] = []

    async def on_done(ctx: RequestContext) -> None:
        done.append(ctx)

    pool = RecordingPool()
    stream = openai_stream(reads, pool=pool, on_done=on_done)
    seen = []
    async for batch in stream.json_batches():
        seen.append((len(batch), stream.drained))
    assert seen == [(1, False), (2, True)]  # the caller can end its response with the last batch
    assert len(done) == 1  # the after-stages ran once, when iteration reached the end
    assert pool.closed == [True]  # read to its end: the connection goes back to the pool


@pytest.mark.parametrize("end", ["with the last events", "in a read of its own"])
async def test_a_stream_cut_before_its_end_marker_hands_out_every_event_before_the_error(end: str) -> None:
    from uniinfer.errors import ProviderConnectionError

    event = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n'
    reads = [event % b"a", event % b"b" + event % b"c"]  # no [DONE]: the body ended early
    if end == "in a read of its own":
        reads.append(b"")
    stream = openai_stream(reads)
    texts = []

    async def read_all() -> None:
        async for chunk in stream:
            texts.append(chunk.choices[0].delta.content)

    with pytest.raises(ProviderConnectionError, match=r"ended before \[DONE\]"):
        await read_all()
    assert texts == ["a", "b", "c"]  # nothing that arrived is lost to the error after it
    assert stream.failed


async def test_a_stream_cut_within_its_first_read_fails_before_it_is_handed_out() -> None:
    """Nothing has reached the caller yet, so the failure goes to the fallback loop."""
    from uniinfer.errors import ProviderConnectionError

    event = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
    pool = RecordingPool()
    stream = openai_stream([event], pool=pool)
    with pytest.raises(ProviderConnectionError, match=r"ended before \[DONE\]"):
        await stream._prime()
    assert pool.closed == [False]  # a failed stream's connection is not reused


async def test_a_stream_whose_generation_fails_mid_way_meters_the_tokens_billed_for_it() -> None:
    """Cohere's ``finish_reason: ERROR`` ends a stream the caller has read from with the
    counts Cohere bills: they are the request's usage, not lost with the failure."""
    from uniinfer.errors import ProviderError

    def event(data: dict[str, Any]) -> bytes:
        return b"event: %s\ndata: %s\n\n" % (data["type"].encode(), orjson.dumps(data))

    start = event({"type": "message-start", "id": "m1", "delta": {"message": {"role": "assistant"}}})
    text = event({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "hi"}}}})
    tokens = {"tokens": {"input_tokens": 12, "output_tokens": 3}}
    end = event({"type": "message-end", "delta": {"finish_reason": "ERROR", "usage": tokens}})
    ctx = RequestContext("chat")
    stream = openai_stream([start + text, end], ctx=ctx, provider="cohere")
    with pytest.raises(ProviderError, match="generation failed"):
        async for _ in stream:
            pass
    assert ctx.usage is not None
    assert (ctx.usage.prompt_tokens, ctx.usage.completion_tokens) == (12, 3)


async def test_a_stream_closed_before_its_kept_failure_is_raised_leaves_no_reference_cycle() -> None:
    import gc

    from uniinfer.streaming import ChatStream

    event = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n'

    def live() -> int:
        return sum(isinstance(o, ChatStream) for o in gc.get_objects())

    gc.collect()
    gc.disable()
    try:
        before = live()
        stream = openai_stream([event % b"a", event % b"b"])  # the second read ends the body, no [DONE]
        assert (await stream.__anext__()).choices[0].delta.content == "a"
        assert (await stream.__anext__()).choices[0].delta.content == "b"  # the failure waits behind it
        await stream.aclose()  # the caller leaves before reaching it
        assert stream.failed
        del stream
        assert live() == before  # freed by reference counting alone
    finally:
        gc.enable()


#: A content event, then the provider's in-stream error event, in each wire format.
_CONTENT_THEN_ERROR = {
    "openai": (
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"kept"}}]}\n\n',
        b'data: {"error":{"message":"upstream broke","type":"server_error","code":null}}\n\n',
    ),
    "anthropic": (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","model":"m",'
        b'"usage":{"input_tokens":3,"output_tokens":0}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"kept"}}\n\n',
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"upstream broke"}}\n\n',
    ),
    "gemini": (
        b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"kept"}]},"index":0}],'
        b'"modelVersion":"m","responseId":"r1"}\n\n',
        b'data: {"error":{"code":503,"message":"upstream broke","status":"UNAVAILABLE"}}\n\n',
    ),
    "ollama": (
        b'{"model":"m","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"kept"},'
        b'"done":false}\n',
        b'{"error":"upstream broke"}\n',
    ),
    # Cohere's stream has no error event: data that is not an event fails it the same way
    "cohere": (
        b'event: content-delta\ndata: {"type":"content-delta","index":0,'
        b'"delta":{"message":{"content":{"text":"kept"}}}}\n\n',
        b"event: content-delta\ndata: [1, 2]\n\n",
    ),
}
_ERROR_MESSAGE = {"cohere": "unexpected stream event shape"}


@pytest.mark.parametrize("provider", _CONTENT_THEN_ERROR)
async def test_an_error_event_in_the_read_of_earlier_events_comes_after_them(provider: str) -> None:
    from uniinfer.errors import UniInferError

    content, error = _CONTENT_THEN_ERROR[provider]
    stream = openai_stream([content, content + error], provider=provider)  # the error shares a read
    texts = []

    async def read_all() -> None:
        async for chunk in stream:
            texts.extend(c.delta.content for c in chunk.choices if c.delta.content)

    with pytest.raises(UniInferError, match=_ERROR_MESSAGE.get(provider, "upstream broke")):
        await read_all()
    assert texts == ["kept", "kept"]  # the second read's event came out before its error
    assert stream.failed


async def test_an_error_echoing_the_provider_key_reaches_no_caller(gateway: Gateway) -> None:
    from uniinfer.errors import ProviderResponseError

    adapter = gateway.router.group("chat").members[0].target.adapter
    key = adapter.endpoint.api_key
    assert key

    def leaky(body: bytes, model: str) -> bytes:  # a provider that echoes what it was sent
        raise ProviderResponseError(
            f"up: odd answer to Bearer {key}", provider="up", upstream_body=f"[{key}]"
        )

    adapter.chat_json = leaky  # type: ignore[method-assign]
    ctx = RequestContext("chat")
    with pytest.raises(ProviderError) as info:
        await gateway.chat_json(chat("chat"), ctx)
    for error in (info.value, ctx.error):
        assert error is not None
        assert key not in str(error)
        assert key not in (error.upstream_body or "")
        assert "[redacted]" in str(error)


@pytest.mark.parametrize(
    ("provider", "event"),
    [
        ("openai", b'data: {"error":{"message":"boom Bearer %s","type":"server_error"}}\n\n'),
        (
            "anthropic",
            b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"boom %s"}}\n\n',
        ),
    ],
)
async def test_a_mid_stream_error_echoing_the_provider_key_reaches_no_caller(
    provider: str, event: bytes
) -> None:
    first = {
        "openai": b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n',
        "anthropic": (
            b'event: message_start\ndata: {"type":"message_start","message":{"id":"m1","type":"message",'
            b'"role":"assistant","model":"m","content":[],"stop_reason":null,"usage":{"input_tokens":1,'
            b'"output_tokens":0}}}\n\n'
            b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
            b'"content_block":{"type":"text","text":""}}\n\n'
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            b'"delta":{"type":"text_delta","text":"a"}}\n\n'
        ),
    }[provider]
    ctx = RequestContext("chat")
    stream = openai_stream([first, event % API_KEY.encode()], ctx=ctx, provider=provider)
    with pytest.raises(ProviderError) as info:
        async for _ in stream:
            pass
    for error in (info.value, ctx.error):
        assert error is not None
        assert API_KEY not in str(error)
        assert API_KEY not in (error.upstream_body or "")


@pytest.mark.parametrize("provider", ["cohere", "voyage"])  # a native adapter, and a row that omits it
@pytest.mark.parametrize("drop", [False, True])
async def test_an_embedding_param_the_provider_has_no_field_for_is_refused_or_dropped_visibly(
    make_gateway: Callable[..., Gateway], drop: bool, provider: str
) -> None:
    from tests.conftest import make_config

    config = make_config(
        f"providers:\n  co: {{type: {provider}, api_key: sk-co-0123456789, base_url: 'http://127.0.0.1:9'}}\n"
        f"settings: {{drop_unsupported_params: {str(drop).lower()}}}\n"
    )
    request = EmbeddingRequest(model="co/embed-v4.0", input="hi", user="user-1")
    if not drop:
        with pytest.raises(UnsupportedParamError) as info:  # refused before anything is sent
            await make_gateway(config).embed(request)
        assert (info.value.param, info.value.provider) == ("user", "co")
        return
    dropping = make_gateway(config)
    adapter = dropping.router.group("co/embed-v4.0").members[0].target.adapter
    prepared, dropped = dropping.fit.embeddings(request, adapter)
    assert (prepared.user, dropped) == (None, ("user",))  # dropped, and said so in the route


async def test_embeddings_come_from_one_model_never_a_mix_of_two(
    openai_url: str, make_gateway: Callable[..., Gateway]
) -> None:
    # vectors of two models are not comparable: a group's embeddings come from the model it
    # lists first, whatever fails (another model's answer would corrupt the caller's index)
    from tests.conftest import make_config
    from uniinfer.errors import ProviderConnectionError, UnsupportedFeatureError

    config = make_config(
        f"""providers:
  gm: {{type: gemini, api_key: AIza-test-0123456789, base_url: 'http://127.0.0.1:9'}}
  up: {{type: openai, api_key: sk-test-upstream-key-1234567890, base_url: {openai_url}}}
  dead: {{type: openai, api_key: sk-test-upstream-key-1234567890, base_url: 'http://127.0.0.1:9/v1'}}
models:
  vectors: {{deployments: [gm/text-embedding-004, up/text-embedding-3-small]}}
  same: {{deployments: [dead/text-embedding-3-small, up/text-embedding-3-small], fallbacks: {{default: [vectors]}}}}
  lone: {{deployments: [dead/text-embedding-3-large], fallbacks: {{default: [vectors]}}}}
"""
    )
    gateway = make_gateway(config)
    ctx = RequestContext("embeddings")
    with pytest.raises(UnsupportedFeatureError, match="token ids"):  # Gemini cannot take them
        await gateway.embed(EmbeddingRequest(model="vectors", input=[[1, 2, 3]]), ctx)
    assert ctx.route is not None
    assert ctx.route.attempts == 1  # the OpenAI model, another model, was not asked
    with pytest.raises(ProviderConnectionError):  # the first model unreachable: no other model's
        await gateway.embed(EmbeddingRequest(model="vectors", input="hi"), RequestContext("embeddings"))
    # a fallback group without the model is not tried, nor said to be
    ctx = RequestContext("embeddings")
    with pytest.raises(ProviderConnectionError):
        await gateway.embed(EmbeddingRequest(model="lone", input="hi"), ctx)
    assert ctx.route is not None
    assert (ctx.route.group, ctx.route.fallback_groups) == ("lone", [])
    # deployments of one model stand in for each other (a fallback group's other model does not)
    ctx = RequestContext("embeddings")
    response = await gateway.embed(EmbeddingRequest(model="same", input="hi"), ctx)
    assert len(response.data) == 1
    assert ctx.route is not None
    assert (ctx.route.provider, ctx.route.failed) == ("up", ["dead/text-embedding-3-small"])


async def test_token_ids_reach_only_openai_s_own_tokenizer(
    openai_url: str, make_gateway: Callable[..., Gateway]
) -> None:
    # another OpenAI-compatible server reads token ids in its own model's vocabulary (vLLM: a 200
    # with vectors of meaningless text): refused there, sent to OpenAI (and Azure)
    from tests.conftest import make_config
    from uniinfer.errors import UnsupportedFeatureError

    config = make_config(
        f"providers:\n  up: {{type: openai, api_key: sk-test-upstream-key-1234567890, base_url: {openai_url}}}\n"
        f"  vl: {{type: vllm, base_url: {openai_url}}}\n"
    )
    gateway = make_gateway(config)
    ids = EmbeddingRequest(model="up/text-embedding-3-small", input=[[9906, 1917]])
    assert len((await gateway.embed(ids)).data) == 1
    with pytest.raises(UnsupportedFeatureError, match="token ids"):
        await gateway.embed(ids.model_copy(update={"model": "vl/bge-m3"}))


async def test_vectors_of_two_sizes_or_another_size_than_asked_are_refused(
    make_gateway: Callable[..., Gateway],
) -> None:
    # a server that ignores dimensions (llama.cpp's) answers its model's full size: it would not
    # fit the caller's index (a target mismatch: it cannot take dimensions, and it is no failure
    # of its health); vectors of two sizes in one answer are a bad answer
    from tests.conftest import make_config
    from tests.fakes.common import run_fake
    from uniinfer.errors import UnsupportedParamError

    sizes = {"a": [2, 1], "b": [2, 2]}

    async def answer(request: web.Request) -> web.Response:
        body = await request.json()
        vectors = [[0.5] * n for n in sizes[body["input"][0]]]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return web.json_response({"object": "list", "data": data, "model": "m", "usage": None})

    app = web.Application()
    app.router.add_post("/v1/embeddings", answer)
    async with run_fake(app) as base:
        gateway = make_gateway(
            make_config(
                f"providers:\n  lc: {{type: llamacpp, base_url: '{base}/v1'}}\n"
                "routing:\n  circuit_breaker: {min_requests: 2, failure_rate: 0.5}\n"
            )
        )
        with pytest.raises(ProviderResponseError, match="2 dimensions in one answer"):
            await gateway.embed(EmbeddingRequest(model="lc/m", input=["a", "x"]))
        for _ in range(3):
            with pytest.raises(UnsupportedParamError, match="does not take 'dimensions'") as info:
                await gateway.embed(EmbeddingRequest(model="lc/m", input=["b", "x"], dimensions=4))
            assert info.value.param == "dimensions"
        assert len((await gateway.embed(EmbeddingRequest(model="lc/m", input=["b", "x"]))).data) == 2


@pytest.mark.parametrize("n", [None, 1, 2])
async def test_a_stream_that_ends_after_its_finish_without_done_is_whole_for_one_choice_only(
    make_gateway: Callable[..., Gateway], n: int | None
) -> None:
    # Perplexity ends its streams without [DONE]; with several choices, one finishing says
    # nothing of the others (the stream may be cut mid-answer): then [DONE] is needed
    from tests.conftest import make_config
    from tests.fakes.common import run_fake
    from uniinfer.errors import ProviderConnectionError

    async def answer(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        choice = {"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}
        await resp.write(b"data: " + json.dumps({**chunk, "choices": [choice]}).encode() + b"\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    async with run_fake(app) as base:
        gateway = make_gateway(
            make_config(f"providers:\n  pp: {{type: openai_compatible, base_url: '{base}/v1'}}\n")
        )
        request = chat("pp/m", stream=True, **({} if n is None else {"n": n}))
        if (n or 1) == 1:
            stream = await gateway.stream(request, RequestContext("chat"))
            assert [c async for c in stream]
        else:  # the body, all of it, came before the first chunk was handed out: no stream
            with pytest.raises(ProviderConnectionError, match=r"before \[DONE\]"):
                await gateway.stream(request, RequestContext("chat"))


async def test_an_answer_with_fewer_embeddings_than_inputs_is_a_bad_response(
    make_gateway: Callable[..., Gateway],
) -> None:
    # one vector for two inputs: handed on, it would pair vectors with the wrong texts
    from tests.conftest import make_config
    from tests.fakes.common import run_fake

    async def short(request: web.Request) -> web.Response:
        vector = {"object": "embedding", "index": 0, "embedding": [0.5]}
        return web.json_response({"object": "list", "model": "m", "data": [vector], "usage": None})

    fake = web.Application()
    fake.router.add_post("/v1/embeddings", short)
    async with run_fake(fake) as url:
        config = make_config(
            f"providers:\n  up: {{type: openai, api_key: sk-test-1234567890, base_url: '{url}/v1'}}\n"
            "routing: {retry: {max_retries: 0}}\n"
        )
        gw = make_gateway(config)
        with pytest.raises(ProviderResponseError, match="1 embeddings for 2 inputs"):
            await gw.embed(EmbeddingRequest(model="up/m", input=["a", "b"]))
        assert len((await gw.embed(EmbeddingRequest(model="up/m", input=[[1, 2]]))).data) == 1


async def test_an_account_out_of_quota_is_told_apart_from_a_rate_limit_and_falls_back(
    openai_url: str, make_gateway: Callable[..., Gateway]
) -> None:
    # OpenAI's 429 insufficient_quota: billing, which no wait fixes; its own code for the caller,
    # no retry round on that deployment, and the group's next deployment answers
    from tests.conftest import make_config
    from tests.fakes.common import run_fake

    async def broke(request: web.Request) -> web.Response:
        error = {"message": "You exceeded your current quota.", "type": "insufficient_quota", "param": None}
        return web.json_response({"error": {**error, "code": "insufficient_quota"}}, status=429)

    fake = web.Application()
    fake.router.add_post("/v1/chat/completions", broke)
    async with run_fake(fake) as url:
        config = make_config(
            f"""providers:
  broke: {{type: openai, api_key: sk-test-broke-1234567890, base_url: '{url}/v1'}}
  up: {{type: openai, api_key: sk-test-upstream-key-1234567890, base_url: {openai_url}}}
models:
  alone: {{deployments: [broke/gpt-4o-mini]}}
  pair: {{deployments: [broke/gpt-4o-mini, up/gpt-4o-mini]}}
routing: {{retry: {{max_retries: 2, initial_backoff_seconds: 5}}}}
"""
        )
        gw = make_gateway(config)
        with pytest.raises(ProviderQuotaExceededError) as info:
            await asyncio.wait_for(gw.chat(chat("alone")), 2)  # no 5 s retry round
        body = info.value.to_openai()["error"]
        assert (info.value.http_status, body["code"], body["type"]) == (
            429,
            "insufficient_quota",
            "insufficient_quota",
        )
        gw = make_gateway(config)  # a fresh one: "broke" now waits out its cooldown in the first
        ctx = RequestContext("chat")
        answer = await gw.chat(chat("pair"), ctx)
        assert answer.choices[0].message.content
        assert ctx.route is not None
        assert (ctx.route.provider, ctx.route.attempts) == ("up", 2)
        # it sent no Retry-After, and is not tried first again at once: a circuit's cooldown
        ctx = RequestContext("chat")
        await gw.chat(chat("pair"), ctx)
        assert ctx.route is not None
        assert (ctx.route.provider, ctx.route.attempts) == ("up", 1)


async def test_embedding_tokens_are_metered_and_count_against_the_deployment(gateway: Gateway) -> None:
    ctx = RequestContext("embeddings")
    response = await gateway.embed(
        EmbeddingRequest(model="up/text-embedding-3-small", input=["a b", "c"]), ctx
    )
    assert response.usage is not None
    assert response.usage.prompt_tokens > 0
    assert ctx.usage is not None
    assert (ctx.usage.prompt_tokens, ctx.usage.total_tokens) == (
        response.usage.prompt_tokens,
        response.usage.total_tokens,
    )
    totals = gateway.usage.totals["up/text-embedding-3-small"]
    assert totals.prompt_tokens == response.usage.prompt_tokens
    state = gateway.router.states["up/text-embedding-3-small"]
    assert state.window.totals()[1] == response.usage.total_tokens  # what tpm and usage_headroom see


async def test_routing_state_and_usage_stay_bounded_whatever_model_names_callers_send(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from uniinfer import stages
    from uniinfer.routing import router as router_module

    monkeypatch.setattr(router_module, "_DIRECT_CACHE_LIMIT", 3)
    monkeypatch.setattr(stages, "MAX_METERED_MODELS", 4)
    configured = set(gateway.router.states)  # the configured deployments' (kept)
    for i in range(8):
        await gateway.chat(chat(f"up/gpt-4o-mini-{i}"))
    router = gateway.router
    assert len(router._direct) == 3  # the newest three direct routes
    assert set(router.states) - configured == {f"up/gpt-4o-mini-{i}" for i in (5, 6, 7)}
    assert len(gateway.usage.totals) == 5  # four names kept apart, the rest added up
    assert gateway.usage.totals[stages.OTHER_MODELS].requests == 4
    await gateway.chat(chat("chat"))  # a configured group still routes, its state intact
    assert configured <= set(router.states)
    # the least recently used goes first: a name in steady use keeps its state (an open
    # circuit, say) however many others come and go
    kept = router.states["up/gpt-4o-mini-5"]
    for i in range(8, 14):
        await gateway.chat(chat("up/gpt-4o-mini-5"))
        await gateway.chat(chat(f"up/gpt-4o-mini-{i}"))
    assert router.states["up/gpt-4o-mini-5"] is kept  # never dropped and made again


def test_a_model_name_is_at_most_256_characters() -> None:
    from uniinfer.errors import InvalidRequestError
    from uniinfer.types.chat import MAX_MODEL_NAME
    from uniinfer.validation import parse_request

    assert parse_request(ChatRequest, {"model": "m" * MAX_MODEL_NAME, "messages": MSG}).model
    with pytest.raises(InvalidRequestError) as info:
        parse_request(ChatRequest, {"model": "m" * (MAX_MODEL_NAME + 1), "messages": MSG})
    assert info.value.param == "model"
    with pytest.raises(InvalidRequestError):
        parse_request(EmbeddingRequest, {"model": "m" * (MAX_MODEL_NAME + 1), "input": "hi"})


async def test_a_stream_ending_after_its_direct_route_was_forgotten_frees_only_its_own_slot(
    gateway: Gateway,
) -> None:
    # a direct route's state can be dropped (bounded memory) while one of its streams is open;
    # the stream's end must not take the in-flight count of the state made again since
    stream = await gateway.stream(chat("up/gpt-4o-mini-direct", stream=True))
    old = gateway.router.states["up/gpt-4o-mini-direct"]
    assert old.in_flight == 1
    gateway.router._forget_oldest_direct()
    gateway.router.group("up/gpt-4o-mini-direct")  # a request for it again: a fresh state
    fresh = gateway.router.states["up/gpt-4o-mini-direct"]
    assert fresh is not old
    async with stream:
        _ = [c async for c in stream]
    assert (old.in_flight, fresh.in_flight) == (0, 0)
    assert fresh.window.totals() == (0, 0)  # its tokens went to the state that served it


async def test_max_tokens_beside_max_completion_tokens_is_named_as_left_out(gateway: Gateway) -> None:
    # both limits sent: the successor wins (as every adapter reads them), and the caller hears so
    ctx = RequestContext("chat")
    await gateway.chat(chat("up/gpt-4o-mini", max_tokens=5, max_completion_tokens=50), ctx)
    assert ctx.route is not None
    assert ctx.route.dropped_params == ("max_tokens",)


def test_cost_prices_cache_reads_and_writes_apart_where_configured() -> None:
    # Anthropic's answer: input 100, cache reads 10,000, cache writes 2,000, output 50, as
    # uniinfer normalises it (prompt_tokens counts all three); $3 / $15, reads 0.1x, writes 1.25x
    from uniinfer.stages import Route
    from uniinfer.types.usage import Usage

    usage = Usage.of(100 + 10_000 + 2_000, 50, cached=10_000, cache_write=2_000)
    route = Route("m", prices=(3.0, 15.0, 0.30, 3.75, None))
    assert route.cost(usage) == pytest.approx((100 * 3 + 10_000 * 0.30 + 2_000 * 3.75 + 50 * 15) / 1e6)
    route.prices = (3.0, 15.0, None, None, None)  # unset: the input price, as before
    assert route.cost(usage) == pytest.approx((12_100 * 3 + 50 * 15) / 1e6)
    assert Route("m").cost(usage) is None  # unpriced
    # of the writes, 1,500 kept for an hour (Anthropic: 2x the input price, where 5 minutes are 1.25x)
    hour = Usage.of(100 + 10_000 + 2_000, 50, cached=10_000, cache_write=2_000, cache_write_1h=1_500)
    route.prices = (3.0, 15.0, 0.30, 3.75, 6.0)
    expected = 100 * 3 + 10_000 * 0.30 + 500 * 3.75 + 1_500 * 6.0 + 50 * 15
    assert route.cost(hour) == pytest.approx(expected / 1e6)
    route.prices = (3.0, 15.0, 0.30, 3.75, None)  # unset: the write price
    assert route.cost(hour) == route.cost(usage)


async def test_a_deployment_s_cache_prices_reach_the_cost_of_its_answers(
    openai_url: str, make_gateway: Callable[..., Gateway]
) -> None:
    from tests.conftest import make_config

    config = make_config(
        f"""providers:
  up: {{type: openai, api_key: sk-test-upstream-key-1234567890, base_url: {openai_url}}}
models:
  priced:
    deployments:
      - {{provider: up, model: cached-model, input_cost_per_mtok: 2.5, output_cost_per_mtok: 10,
          cached_input_cost_per_mtok: 1.25}}
"""
    )
    ctx = RequestContext("chat")
    await make_gateway(config).chat(chat("priced"), ctx)
    assert ctx.route is not None
    assert ctx.usage is not None
    assert ctx.route.prices == (2.5, 10.0, 1.25, None, None)
    cached = ctx.usage.cached_tokens
    assert cached > 0  # the fake caches half a "cached" model's prompt
    expected = (
        (ctx.usage.prompt_tokens - cached) * 2.5 + cached * 1.25 + ctx.usage.completion_tokens * 10
    ) / 1e6
    assert ctx.route.cost(ctx.usage) == pytest.approx(expected)


def test_n_is_never_dropped_and_json_mode_names_response_format() -> None:
    # one choice where two were asked for is another shape (choices[1] would be missing)
    from uniinfer.errors import UnsupportedFeatureError, UnsupportedParamError
    from uniinfer.fitting import RequestFitter
    from uniinfer.providers.base import Endpoint
    from uniinfer.providers.registry import default_registry
    from uniinfer.routing.group import Target

    registry = default_registry()
    adapter = registry.create(registry.get("anthropic"), Endpoint(base_url="http://127.0.0.1:9", api_key="k"))
    target = Target("anthropic", "claude-sonnet-4-5", adapter)
    with pytest.raises(UnsupportedParamError) as info:
        RequestFitter(drop=True).chat(chat("m", n=2), target)
    assert info.value.param == "n"
    # n=1 asks for what every provider answers (LangChain sends it): honoured, not a drop, and
    # not refused without drop_unsupported_params either
    for drop in (True, False):
        fitted, dropped = RequestFitter(drop=drop).chat(chat("m", n=1), target)
        assert (fitted.n, dropped) == (None, ())
    # Codex's fixed shape: parallel calls allowed (honoured everywhere) and a cache key (a hint,
    # left out and named whatever the setting); each was a 400 on Claude, Gemini and Ollama
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    codex = chat("m", tools=[weather], parallel_tool_calls=True, prompt_cache_key="session-1")
    endpoint = Endpoint(base_url="http://127.0.0.1:9", api_key="k")
    gemini = Target("gemini", "gemini-2.5-flash", registry.create(registry.get("gemini"), endpoint))
    for where in (target, gemini):
        fitted, dropped = RequestFitter(drop=False).chat(codex, where)
        assert (fitted.prompt_cache_key, dropped) == (None, ("prompt_cache_key",)), where.provider
    assert fitted.parallel_tool_calls is None  # Gemini has no such switch: allowed is what it does
    with pytest.raises(UnsupportedParamError):  # calls one at a time: a behaviour asked for, refused
        RequestFitter(drop=False).chat(chat("m", tools=[weather], parallel_tool_calls=False), gemini)
    groq = registry.create(registry.get("groq"), Endpoint(base_url="http://127.0.0.1:9", api_key="k"))
    with pytest.raises(UnsupportedParamError) as on_groq:  # "If N is supplied, it must be equal to 1"
        RequestFitter(drop=True).chat(chat("m", n=2), Target("groq", "llama", groq))
    assert on_groq.value.param == "n"
    with pytest.raises(UnsupportedFeatureError) as refused:
        RequestFitter(drop=True).chat(chat("m", response_format={"type": "json_object"}), target)
    assert refused.value.param == "response_format"


@pytest.mark.parametrize(
    "defaults",
    [
        {"logprobs": False},
        {"frequency_penalty": 0, "presence_penalty": 0.0},
        {"response_format": {"type": "text"}},
        {"store": False},
    ],
)
def test_a_param_at_openai_s_default_is_honoured_where_the_provider_lacks_it(
    defaults: dict[str, Any],
) -> None:
    # what the provider does anyway (apps send their penalties at 0 on every request): no 400, no drop
    from uniinfer.errors import UniInferError, UnsupportedParamError
    from uniinfer.fitting import RequestFitter
    from uniinfer.providers.base import Endpoint
    from uniinfer.providers.registry import default_registry
    from uniinfer.routing.group import Target

    registry = default_registry()
    adapter = registry.create(registry.get("anthropic"), Endpoint(base_url="http://127.0.0.1:9", api_key="k"))
    target = Target("anthropic", "claude-3-5-sonnet-20241022", adapter)
    for drop in (True, False):
        fitted, dropped = RequestFitter(drop=drop).chat(chat("m", **defaults), target)
        assert dropped == ()
        assert all(getattr(fitted, name) is None for name in defaults)
    asked = {
        "logprobs": True,
        "frequency_penalty": 0.5,
        "response_format": {"type": "json_object"},
        "store": True,
    }
    name = next(iter(defaults))
    with pytest.raises(UniInferError) as refused:  # anything else is still asked for, and refused
        RequestFitter(drop=False).chat(chat("m", **{name: asked[name]}), target)
    assert refused.value.param == name
    if name != "response_format":
        assert isinstance(refused.value, UnsupportedParamError)


@pytest.mark.parametrize(
    ("provider", "first", "counts"),
    [
        # Anthropic: the input counts of message_start
        (
            "anthropic",
            b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","model":"m",'
            b'"usage":{"input_tokens":3,"cache_read_input_tokens":1000,"output_tokens":1}}}\n\n'
            b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
            b'"content_block":{"type":"text","text":"kept"}}\n\n',
            (1003, 1),
        ),
        # Gemini: the running usageMetadata of the events so far
        (
            "gemini",
            b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"kept"}]},"index":0}],'
            b'"usageMetadata":{"promptTokenCount":1200,"candidatesTokenCount":2,"thoughtsTokenCount":300,'
            b'"totalTokenCount":1502},"modelVersion":"m","responseId":"r1"}\n\n',
            (1200, 302),
        ),
    ],
)
async def test_a_stream_its_caller_leaves_is_metered_at_what_the_provider_reported_so_far(
    provider: str, first: bytes, counts: tuple[int, int]
) -> None:
    # the provider billed the prompt (and what it wrote): a cut stream metered 0 tokens
    ctx = RequestContext("chat")
    stream = openai_stream([first, b""], provider=provider, ctx=ctx)
    assert (await stream.__anext__()).choices
    await stream.aclose()
    assert ctx.usage is not None
    assert (ctx.usage.prompt_tokens, ctx.usage.completion_tokens) == counts


def test_reasoning_reported_beside_the_completion_is_metered_and_priced_as_output() -> None:
    # xAI: "The reasoning token count is outputted in the reasoning_tokens field, separated from
    # the completion_tokens" (total 837 = 663 + 50 + 124); OpenAI's completion includes it
    from uniinfer.stages import Route
    from uniinfer.types.usage import Usage

    xai = Usage.of(663, 50, reasoning=124, total=837)
    openai_like = Usage.of(663, 174, reasoning=124)
    assert (xai.output_tokens, openai_like.output_tokens) == (174, 174)
    route = Route("m", prices=(0.2, 0.5, None, None, None))
    assert route.cost(xai) == route.cost(openai_like) == pytest.approx((663 * 0.2 + 174 * 0.5) / 1e6)
    # and what an Anthropic Messages client reads as output_tokens (thinking included)
    from uniinfer.ingress.anthropic_response import usage_of

    assert usage_of(xai)["output_tokens"] == usage_of(openai_like)["output_tokens"] == 174


@pytest.mark.parametrize(
    "reported",
    [
        {"prompt_cache_hit_tokens": 4800, "prompt_cache_miss_tokens": 200},  # DeepSeek
        {"cached_tokens": 4800},  # Moonshot, at the top level
        {"prompt_tokens_details": {"cached_tokens": 4800}},  # OpenAI's
    ],
)
def test_cache_hits_are_read_where_each_provider_reports_them(reported: dict[str, Any]) -> None:
    # https://api-docs.deepseek.com/guides/kv_cache: prompt_cache_hit_tokens; they priced at full
    from uniinfer.stages import Route
    from uniinfer.types.usage import Usage

    usage = Usage.model_validate(
        {"prompt_tokens": 5000, "completion_tokens": 10, "total_tokens": 5010, **reported}
    )
    assert usage.cached_tokens == 4800
    route = Route("m", prices=(0.28, 0.42, 0.028, None, None))
    assert route.cost(usage) == pytest.approx((200 * 0.28 + 4800 * 0.028 + 10 * 0.42) / 1e6)


async def test_a_gateway_used_from_a_second_running_loop_says_so(gateway: Gateway) -> None:
    await gateway.chat(chat("chat"))  # its pool now belongs to this loop

    def elsewhere() -> str:
        try:
            asyncio.run(gateway.chat(chat("chat")))
        except RuntimeError as exc:
            return str(exc)
        return "served"

    message = await asyncio.to_thread(elsewhere)
    assert "belongs to another running event loop" in message  # not aiohttp's "Timeout context manager..."
    await gateway.chat(chat("chat"))  # and this loop's requests go on


async def _finish_then_wait(request: web.Request) -> web.StreamResponse:
    """An OpenAI-format stream whose usage chunk comes long after its finish."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    for delta, finish in (({"role": "assistant", "content": "hi"}, None), ({}, "stop")):
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        await resp.write(b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n")
    await asyncio.sleep(5)
    return resp


@pytest.mark.parametrize("case", ["closed under a waiting reader", "cancelled while draining"])
async def test_a_stream_closed_at_its_finish_is_closed_whatever_happens_meanwhile(case: str) -> None:
    """Reading on for the usage chunk must not get in the way of closing: another task waiting
    in a read (aclose raised "readany() called while another coroutine is already waiting" and
    left the stream open), or the close itself cancelled (the stream stayed open, unrecorded)."""
    from tests.conftest import make_config

    app = web.Application()
    app.router.add_post("/v1/chat/completions", _finish_then_wait)
    async with run_fake(app) as base:
        gw = Gateway(make_config(f"providers:\n  up: {{type: openai_compatible, base_url: '{base}/v1'}}\n"))
        try:
            stream = await gw.stream(chat("up/m", stream=True))
            async for c in stream:
                if c.choices and c.choices[0].finish_reason:
                    break
            if case == "closed under a waiting reader":
                reader = asyncio.create_task(stream.__anext__())  # waits for the usage chunk
                await asyncio.sleep(0.05)
                await asyncio.wait_for(stream.aclose(), 3)
                with pytest.raises(StopAsyncIteration):
                    await asyncio.wait_for(reader, 3)
            else:
                closer = asyncio.create_task(stream.aclose())
                await asyncio.sleep(0.1)  # in the drain
                closer.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await closer
            assert stream._done
            assert gw.http.busy_connections == 0
            assert gw.router.states["up/m"].in_flight == 0
        finally:
            await gw.aclose()


def test_a_turn_of_a_refusal_or_a_previous_audio_answer_reaches_only_who_can_take_it() -> None:
    """A refused answer (content null, its refusal) is the refusal's text for providers without
    a refusal part (Cohere's answer to an empty turn was a 400); a previous audio answer by its
    id is OpenAI's to look up: elsewhere the turn was lost without a word, now it is an
    unsupported feature naming it (a target mismatch: the group's next deployment serves it)."""
    import orjson

    from uniinfer.errors import UnsupportedFeatureError
    from uniinfer.fitting import RequestFitter
    from uniinfer.providers.base import Endpoint
    from uniinfer.providers.registry import default_registry
    from uniinfer.routing.group import Target

    registry = default_registry()

    def adapter(name: str) -> Any:
        return registry.create(registry.get(name), Endpoint(base_url="http://127.0.0.1:9", api_key="k"))

    user = {"role": "user", "content": "hi"}
    refused = chat("m", messages=[user, {"role": "assistant", "content": None, "refusal": "I can't."}, user])
    cohere = orjson.loads(adapter("cohere").chat_request(refused, "command-a", stream=False).body)
    assert cohere["messages"][1] == {"role": "assistant", "content": "I can't."}
    audio = chat("m", messages=[user, {"role": "assistant", "audio": {"id": "audio_1"}}, user])
    for name in ("anthropic", "gemini", "cohere", "ollama"):
        with pytest.raises(UnsupportedFeatureError) as info:
            RequestFitter(drop=True).chat(audio, Target(name, "m", adapter(name)))
        assert info.value.param == "messages[1].audio"
    fitted, _ = RequestFitter(drop=False).chat(
        audio, Target("openai", "gpt-4o-audio-preview", adapter("openai"))
    )
    assert fitted.messages[1].audio == {"id": "audio_1"}
