"""Quirks of OpenAI-compatible rows, declared as data on ProviderSpec and handled
generically by OpenAIAdapter: one test (at least) per quirk, pure (no socket).

The contract suite (tests/contract/) runs the same quirks end to end against the
OpenAI fake impersonating each row.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from tests.providers.support import modelled
from uniinfer.errors import AuthenticationError, ConfigError, ProviderConnectionError, RateLimitError
from uniinfer.http import HttpRequest
from uniinfer.providers.base import Capabilities, Endpoint, ProviderSpec
from uniinfer.providers.openai import OpenAIAdapter, url_placeholders
from uniinfer.providers.registry import default_registry
from uniinfer.types import ChatChunk, ChatRequest, EmbeddingRequest

OPENAI = "uniinfer.providers.openai:OpenAIAdapter"


def row(name: str = "acme", **quirks: Any) -> ProviderSpec:
    """A synthetic OpenAI-compatible row with the given quirks."""
    return ProviderSpec(name, OPENAI, "https://api.acme.test/v1", "ACME_API_KEY", **quirks)


def adapter_for(spec: ProviderSpec, base_url: str | None = None, **options: object) -> OpenAIAdapter:
    return OpenAIAdapter(spec, Endpoint(base_url or spec.base_url, api_key="k-1", options=options))


def registered(name: str, **options: object) -> OpenAIAdapter:
    registry = default_registry()
    spec = registry.get(name)
    adapter = registry.create(spec, Endpoint(spec.base_url, api_key="k-1", options=options))
    assert isinstance(adapter, OpenAIAdapter)
    return adapter


def body(req: HttpRequest) -> dict[str, Any]:
    data = orjson.loads(req.body)
    assert isinstance(data, dict)
    return data


def chat(**fields: Any) -> ChatRequest:
    fields.setdefault("model", "m")
    fields.setdefault("messages", [{"role": "user", "content": "hi"}])
    return ChatRequest.model_validate(fields)


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": "c-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": choices,
        **extra,
    }


def decode(adapter: OpenAIAdapter, data: bytes) -> list[ChatChunk]:
    decoder = adapter.stream_decoder("m")
    return modelled([*decoder.feed(data), *decoder.close()])


USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


# --- stream_usage ---------------------------------------------------------------------------


def test_stream_usage_stream_options_asks_for_usage_and_keeps_other_options() -> None:
    req = adapter_for(row()).chat_request(
        chat(stream=True, stream_options={"include_usage": False}), "m", stream=True
    )
    assert body(req)["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("mode", ["always", "never"])
def test_stream_usage_always_and_never_send_no_stream_options(mode: str) -> None:
    adapter = adapter_for(row(stream_usage=mode))
    sent = body(
        adapter.chat_request(chat(stream=True, stream_options={"include_usage": True}), "m", stream=True)
    )
    assert sent["stream"] is True
    assert "stream_options" not in sent


def test_rows_declaring_always_send_no_stream_options() -> None:
    for name in ("fireworks", "perplexity"):
        assert registered(name).spec.stream_usage == "always"
        assert "stream_options" not in body(registered(name).chat_request(chat(), "m", stream=True))


def test_usage_on_the_finish_chunk_becomes_a_final_usage_chunk() -> None:
    # "always" providers (Fireworks) put usage on the last content chunk.
    data = sse(
        chunk([{"index": 0, "delta": {"role": "assistant", "content": "hey"}}]),
        chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}], usage=USAGE),
    )
    chunks = decode(adapter_for(row(stream_usage="always")), data)
    assert [c.choices[0].finish_reason for c in chunks if c.choices] == [None, "stop"]
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 7


def test_usage_in_every_chunk_keeps_the_last_one() -> None:
    # Perplexity sends a running usage on every chunk; the last is the total.
    data = sse(
        chunk([{"index": 0, "delta": {"content": "a"}}], usage={**USAGE, "completion_tokens": 1}),
        chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}], usage=USAGE),
    )
    chunks = decode(adapter_for(row(stream_usage="always")), data)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2
    assert sum(1 for c in chunks if c.usage is not None) == 1
    # each running usage is what a stream cut there used (recorded if it ends early)
    assert [c.early_usage.completion_tokens for c in chunks[:-1] if c.early_usage] == [1, 2]


def test_a_perplexity_stream_as_it_comes_is_whole_without_done() -> None:
    # Perplexity's chunks call themselves "chat.completion", repeat the answer so far in a
    # "message", carry a running usage, and the body ends with no [DONE]
    # (https://github.com/perplexityai/api-discussion/issues/209).
    def event(content: str, finish: str | None, completion: int) -> dict[str, Any]:
        usage = {"prompt_tokens": 5, "completion_tokens": completion, "total_tokens": 5 + completion}
        delta = {"role": "assistant", "content": content}
        choice = {"index": 0, "finish_reason": finish, "message": delta, "delta": delta}
        return {
            **chunk([choice]),
            "object": "chat.completion",
            "usage": usage,
            "citations": ["https://a.test"],
        }

    data = b"".join(
        b"data: " + orjson.dumps(e) + b"\n\n" for e in (event("Hi", None, 1), event("", "stop", 2))
    )
    chunks = decode(registered("perplexity"), data)
    assert [c.object for c in chunks] == ["chat.completion.chunk"] * 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices] == [None, "stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2


@pytest.mark.parametrize(
    "events",
    [
        [chunk([{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}])],  # passed on
        [chunk([{"index": 0, "delta": {"content": "a"}}]), chunk([], usage=USAGE)],  # the usage chunk
        [chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}], usage=USAGE)],  # modelled
    ],
)
def test_a_stream_whose_answer_finished_is_whole_without_done(events: list[dict[str, Any]]) -> None:
    data = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    for reads in ([data], [data[:9], data[9:]]):  # whole, and framed
        decoder = adapter_for(row()).stream_decoder("m")
        chunks = modelled([*(item for read in reads for item in decoder.feed(read)), *decoder.close()])
        assert chunks


def test_a_stream_of_several_choices_needs_done() -> None:
    # n=2: the last chunk finishing one choice says nothing of the other (cut mid-answer)
    from uniinfer.providers.openai_stream import OpenAIStreamDecoder

    data = b"".join(
        b"data: " + orjson.dumps(e) + b"\n\n"
        for e in (
            chunk([{"index": 1, "delta": {"content": "b"}}]),
            chunk([{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}]),
        )
    )
    decoder = adapter_for(row()).stream_decoder("m")
    assert isinstance(decoder, OpenAIStreamDecoder)
    decoder.one_choice = False
    decoder.feed(data)
    assert decoder.answered()  # a caller stopping here is read on for the usage, as for one choice
    with pytest.raises(ProviderConnectionError, match=r"ended before \[DONE\]"):
        decoder.close()


@pytest.mark.parametrize(
    "events",
    [
        [chunk([{"index": 0, "delta": {"content": "a"}}])],
        [chunk([{"index": 0, "delta": {"content": "a"}}], usage=USAGE)],  # a running usage only
        [
            chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
            chunk([{"index": 0, "delta": {"content": "b"}}]),
        ],
    ],
)
def test_a_stream_cut_before_its_finish_is_still_an_error(events: list[dict[str, Any]]) -> None:
    data = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    decoder = adapter_for(row()).stream_decoder("m")
    decoder.feed(data)
    with pytest.raises(ProviderConnectionError, match=r"ended before \[DONE\]"):
        decoder.close()


def test_usage_inside_the_last_choice_is_lifted() -> None:
    # Moonshot (Kimi) puts usage in choices[0] of the last chunk.
    data = sse(
        chunk([{"index": 0, "delta": {"content": "a"}}]),
        chunk([{"index": 0, "delta": {}, "finish_reason": "stop", "usage": USAGE}]),
    )
    chunks = decode(registered("moonshot"), data)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 5


# --- finish_reason_map ----------------------------------------------------------------------


def test_finish_reason_map_in_responses_and_streams() -> None:
    adapter = registered("together")
    assert adapter.spec.finish_reason_map == {"eos": "stop"}
    response = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "eos"}],
    }
    assert adapter.parse_chat(orjson.dumps(response), "m").choices[0].finish_reason == "stop"
    chunks = decode(adapter, sse(chunk([{"index": 0, "delta": {"content": "hi"}, "finish_reason": "eos"}])))
    assert chunks[0].choices[0].finish_reason == "stop"


def test_huggingface_maps_tgi_finish_reasons() -> None:
    adapter = registered("huggingface")
    data = sse(
        chunk([{"index": 0, "delta": {"content": "a"}, "finish_reason": "eos_token"}]),
        chunk([{"index": 1, "delta": {"content": "b"}, "finish_reason": "stop_sequence"}]),
        chunk([{"index": 2, "delta": {"content": "c"}, "finish_reason": "length"}]),
    )
    assert [c.choices[0].finish_reason for c in decode(adapter, data)] == ["stop", "stop", "length"]


def test_without_a_map_a_foreign_finish_reason_is_passed_on_as_it_came() -> None:
    # a row's known ones are mapped (above); one nobody mapped is the server's word, and the
    # answer is still an answer (it was a 502, its content lost)
    response = {
        "id": "x",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "eos"}],
    }
    parsed = adapter_for(row()).parse_chat(orjson.dumps(response), "m")
    assert (parsed.choices[0].message.content, parsed.choices[0].finish_reason) == ("hi", "eos")


# --- param_renames --------------------------------------------------------------------------


def test_param_renames_move_max_completion_tokens_to_max_tokens() -> None:
    adapter = registered("deepseek")
    sent = body(adapter.chat_request(chat(max_completion_tokens=9), "m", stream=False))
    assert sent["max_tokens"] == 9
    assert "max_completion_tokens" not in sent
    # Both given: max_completion_tokens (which the spec has replace max_tokens) wins, as with every
    # other adapter, whatever name the row sends it under.
    for row, name in (
        ("deepseek", "max_tokens"),
        ("groq", "max_completion_tokens"),
        ("openai", "max_completion_tokens"),
    ):
        sent = body(
            registered(row).chat_request(chat(max_completion_tokens=9, max_tokens=4), "m", stream=False)
        )
        assert {k: v for k, v in sent.items() if k.startswith("max")} == {name: 9}
    # Rows without the rename send OpenAI's name.
    assert body(registered("groq").chat_request(chat(max_completion_tokens=9), "m", stream=False)) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 9,
    }


def test_renamed_params_are_params_the_protocol_has() -> None:
    for spec in default_registry():
        if spec.adapter == OPENAI:
            assert set(spec.param_renames) <= OpenAIAdapter.supported_params, spec.name
            assert set(spec.finish_reason_map.values()) <= {"stop", "length", "tool_calls", "content_filter"}
            assert set(spec.embed_param_renames) | spec.embed_omit <= set(EmbeddingRequest.model_fields)


# --- embeddings quirks ----------------------------------------------------------------------


def test_voyage_embeddings_rename_omit_and_options() -> None:
    adapter = registered("voyage", input_type="document")
    sent = body(
        adapter.embed_request(EmbeddingRequest(model="e", input="hi", dimensions=256, user="u1"), "voyage-3")
    )
    assert sent == {
        "model": "voyage-3",
        "input": "hi",
        "output_dimension": 256,
        "input_type": "document",
        "truncation": False,  # an over-long input is an error, as on OpenAI, not cut silently
    }
    truncating = registered("voyage", truncation=True).embed_request(
        EmbeddingRequest(model="e", input="hi"), "v"
    )
    assert body(truncating)["truncation"] is True  # the operator's choice


def test_plain_rows_send_openai_embedding_fields() -> None:
    sent = body(
        registered("together").embed_request(EmbeddingRequest(model="e", input="hi", dimensions=8), "x")
    )
    assert sent == {"model": "x", "input": "hi", "dimensions": 8, "encoding_format": "float"}


def test_embedding_usage_with_total_tokens_only_counts_as_prompt_tokens() -> None:
    voyage = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}]}
    parsed = registered("voyage").parse_embed(
        orjson.dumps({**voyage, "model": "v", "usage": {"total_tokens": 4}}), "v"
    )
    assert (parsed.usage.prompt_tokens, parsed.usage.total_tokens) == (4, 4)


@pytest.mark.parametrize(("usage", "counts"), [(None, (0, 0)), ({"prompt_tokens": 7}, (7, 7))])
def test_embedding_usage_null_or_without_a_total_is_what_was_reported(
    usage: dict[str, int] | None, counts: tuple[int, int]
) -> None:
    # a server that counts nothing (null) is no shape error; prompt tokens alone are the total
    answer = {
        "object": "list",
        "model": "m",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}],
    }
    parsed = registered("openai_compatible").parse_embed(orjson.dumps({**answer, "usage": usage}), "m")
    assert (parsed.usage.prompt_tokens, parsed.usage.total_tokens) == counts


def test_unknown_options_name_what_the_row_takes() -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) colour .*takes: input_type, truncation"):
        registered("voyage", colour="red")
    with pytest.raises(ConfigError, match="takes no options"):
        registered("groq", input_type="x")


# --- {placeholders} in the base URL --------------------------------------------------------


def test_cloudflare_account_id_fills_the_base_url() -> None:
    adapter = registered("cloudflare", account_id="acc-123")
    req = adapter.chat_request(chat(), "@cf/meta/llama-3.1-8b-instruct", stream=False)
    assert req.url == "https://api.cloudflare.com/client/v4/accounts/acc-123/ai/v1/chat/completions"
    assert url_placeholders(default_registry().get("cloudflare").base_url) == ["account_id"]
    assert default_registry().get("cloudflare").auto_enable is False


def test_missing_placeholder_option_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"providers\.cloudflare\.options\.account_id"):
        registered("cloudflare")


def test_a_complete_base_url_needs_no_placeholder_option() -> None:
    spec = default_registry().get("cloudflare")
    adapter = adapter_for(spec, "https://gateway.ai.cloudflare.com/v1/acc/gw/workers-ai/v1")
    assert (
        adapter.url("/embeddings") == "https://gateway.ai.cloudflare.com/v1/acc/gw/workers-ai/v1/embeddings"
    )


def test_config_validation_reports_the_missing_account_id() -> None:
    from uniinfer.config import parse_config
    from uniinfer.gateway import Gateway

    config = parse_config("providers:\n  cloudflare: {api_key: k}\n", env={})
    with pytest.raises(ConfigError, match="account_id"):
        Gateway(config)
    text = "providers:\n  cf: {type: cloudflare, api_key: k, options: {account_id: env:CF_ACC}}\n"
    config = parse_config(text, env={"CF_ACC": "a1"})
    assert Gateway(config)._adapters["cf"].endpoint.base_url.endswith("/accounts/a1/ai/v1")


# --- errors in FastAPI's shape (Voyage, Jina) --------------------------------------------------


def test_detail_error_bodies_are_read() -> None:
    adapter = registered("jina")
    exc = adapter.parse_error(401, {}, b'{"detail": "Invalid API key k-1 provided"}')
    assert isinstance(exc, AuthenticationError)
    assert exc.message == "jina: Invalid API key [redacted] provided"
    exc = adapter.parse_error(429, {"retry-after": "3"}, b'{"detail": [{"msg": "slow down"}]}')
    assert isinstance(exc, RateLimitError)
    assert exc.retry_after == 3.0
    assert "slow down" in exc.message


# --- embedding-only rows -------------------------------------------------------------------------


def test_embedding_only_rows_declare_embeddings_alone() -> None:
    for name in ("voyage", "jina"):
        caps = default_registry().get(name).capabilities
        assert caps.names() == ["embeddings"], name


def test_quirk_fields_default_to_openai_behaviour() -> None:
    spec = ProviderSpec("row", "uniinfer.providers.openai:OpenAIAdapter", "https://h.test/v1", None)
    assert spec.stream_usage == "stream_options"
    assert not spec.finish_reason_map
    assert not spec.param_renames
    assert not spec.embed_param_renames
    assert spec.embed_omit == spec.embed_options == frozenset()
    assert Capabilities() == dataclasses.replace(Capabilities())
