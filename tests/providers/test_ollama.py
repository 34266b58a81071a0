"""The Ollama native adapter: translation, parsing, NDJSON streams, and the fake over a real socket."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.fakes.common import run_fake
from tests.fakes.ollama import ollama_app
from tests.providers import support
from uniinfer.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    RateLimitError,
    UnsupportedFeatureError,
)
from uniinfer.http import HttpClient, HttpRequest, Timeouts
from uniinfer.providers.base import Endpoint
from uniinfer.providers.ollama import OllamaAdapter
from uniinfer.providers.registry import default_registry
from uniinfer.types import ChatChunk, ChatRequest, EmbeddingRequest

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
FAKE_MODELS = ["llama3.2", "qwen3-think", "gpt-oss:20b", "nomic-embed-text"]


def adapter_for(url: str = "http://127.0.0.1:11434") -> OllamaAdapter:
    reg = default_registry()
    adapter = reg.create(reg.get("ollama"), Endpoint(base_url=url))
    assert isinstance(adapter, OllamaAdapter)
    return adapter


def chat(**fields: Any) -> ChatRequest:
    fields.setdefault("model", "ollama/llama3.2")
    fields.setdefault("messages", [{"role": "user", "content": "hi"}])
    return ChatRequest.model_validate(fields)


def sent(request: HttpRequest) -> Any:
    return orjson.loads(request.body)


def text_of(chunks: list[ChatChunk], field: str = "content") -> str:
    return "".join(getattr(c.choices[0].delta, field) or "" for c in chunks if c.choices)


# --- request translation ---------------------------------------------------------


def test_basic_request_always_sends_stream_and_maps_options() -> None:
    request = chat(temperature=0.2, top_p=0.9, top_k=40, seed=7, stop="END", max_tokens=64,
                   presence_penalty=0.5, frequency_penalty=0.1)  # fmt: skip
    http = adapter_for("http://h:1/").chat_request(request, "llama3.2", stream=False)
    body = sent(http)
    assert http.url == "http://h:1/api/chat"
    assert http.method == "POST"
    assert "authorization" not in http.headers
    assert body["model"] == "llama3.2"
    assert body["stream"] is False
    assert body["options"] == {
        "temperature": 0.2, "top_p": 0.9, "top_k": 40, "seed": 7, "stop": ["END"],
        "num_predict": 64, "presence_penalty": 0.5, "frequency_penalty": 0.1,
    }  # fmt: skip
    assert "format" not in body
    assert "tools" not in body
    assert "think" not in body
    assert sent(adapter_for().chat_request(chat(), "m", stream=True))["stream"] is True


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    body = sent(adapter_for().chat_request(chat(max_tokens=9, max_completion_tokens=5), "m", stream=False))
    assert body["options"]["num_predict"] == 5


def test_response_format_json_mode_and_schema() -> None:
    adapter = adapter_for()
    json_mode = sent(adapter.chat_request(chat(response_format={"type": "json_object"}), "m", stream=False))
    assert json_mode["format"] == "json"
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    rf = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    assert sent(adapter.chat_request(chat(response_format=rf), "m", stream=False))["format"] == schema
    text = sent(adapter.chat_request(chat(response_format={"type": "text"}), "m", stream=False))
    assert "format" not in text


@pytest.mark.parametrize(
    ("effort", "model", "think"),
    [("high", "qwen3", True), ("minimal", "deepseek-r1", True), ("high", "gpt-oss:20b", "high"),
     ("minimal", "gpt-oss:120b", "low"), ("none", "qwen3", False), ("xhigh", "qwen3", True),
     ("none", "gpt-oss:20b", "low"), ("max", "gpt-oss:20b", "high")],
)  # fmt: skip
def test_reasoning_effort_maps_to_think(effort: str, model: str, think: object) -> None:
    body = sent(adapter_for().chat_request(chat(reasoning_effort=effort), model, stream=False))
    assert body["think"] == think


def test_messages_roles_images_tools_and_history() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": [{"type": "text", "text": "dev rule"}]},
        {"role": "user", "content": [
            {"type": "text", "text": "what is"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
            {"type": "text", "text": "this?"},
        ]},
        {"role": "assistant", "content": None, "reasoning_content": "hmm",
         "tool_calls": [{"id": "call_9", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_9", "content": "11 degrees"},
    ]  # fmt: skip
    body = sent(adapter_for().chat_request(chat(messages=messages, tools=tools), "m", stream=False))
    assert body["tools"] == tools
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": "dev rule"},
        {"role": "user", "content": "what is\nthis?", "images": [PNG_B64]},
        {"role": "assistant", "content": "", "thinking": "hmm",
         "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "11 degrees", "tool_name": "get_weather"},
    ]  # fmt: skip


def test_results_of_two_calls_to_one_function_follow_the_calls_order() -> None:
    # a tool message names only the tool: the model pairs results with calls by position
    messages = support.results_out_of_order()
    body = sent(adapter_for().chat_request(chat(messages=messages), "qwen3", stream=False))
    assert [m["content"] for m in body["messages"] if m["role"] == "tool"] == ["Paris 21C", "Rome 30C"]


def test_http_image_url_is_rejected_naming_the_part() -> None:
    parts = [
        {"type": "text", "text": "x"},
        {"type": "image_url", "image_url": {"url": "https://e.com/a.png"}},
    ]
    request = chat(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": parts}])
    with pytest.raises(InvalidRequestError) as info:
        adapter_for().chat_request(request, "m", stream=False)
    assert info.value.param == "messages[1].content[1].image_url"
    assert "base64" in info.value.message


def test_tool_call_arguments_must_be_a_json_object() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}
    result = {"role": "tool", "tool_call_id": "c1", "content": "done"}
    request = chat(
        messages=[{"role": "user", "content": "a"}, {"role": "assistant", "tool_calls": [call]}, result]
    )
    with pytest.raises(InvalidRequestError) as info:
        adapter_for().chat_request(request, "m", stream=False)
    assert info.value.param == "messages[1].tool_calls[0].function.arguments"


def test_supported_params_exclude_what_ollama_cannot_do() -> None:
    params = OllamaAdapter.supported_params
    assert {
        "temperature",
        "top_k",
        "stop",
        "max_tokens",
        "response_format",
        "tools",
        "tool_choice",  # auto and none only: see test_ollama_tools.py
        "reasoning_effort",
        "logprobs",
        "top_logprobs",
    } <= params
    assert not params & {"n", "logit_bias", "parallel_tool_calls", "user"}
    assert params <= set(ChatRequest.model_fields)


def test_logprobs_are_top_level_fields() -> None:
    adapter = adapter_for()
    body = sent(adapter.chat_request(chat(logprobs=True, top_logprobs=3), "llama3.2", stream=False))
    assert (body["logprobs"], body["top_logprobs"]) == (True, 3)
    assert "logprobs" not in body["options"]
    only = sent(adapter.chat_request(chat(logprobs=True), "llama3.2", stream=True))
    assert only["logprobs"] is True
    assert "top_logprobs" not in only
    assert (
        not {"logprobs", "top_logprobs"} & sent(adapter.chat_request(chat(), "llama3.2", stream=True)).keys()
    )


# --- response parsing --------------------------------------------------------------


def test_parse_chat_logprobs_in_openai_shape() -> None:
    logprobs = [
        {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": [
            {"token": "Hi", "logprob": -0.25, "bytes": [72, 105]}, {"token": "Hello", "logprob": -1.5}]},
        {"token": "!"},  # Go leaves out a zero logprob (omitempty), and bytes
    ]  # fmt: skip
    body = {"message": {"role": "assistant", "content": "Hi!"}, "done": True, "logprobs": logprobs}
    choice = adapter_for().parse_chat(orjson.dumps(body), "llama3.2").choices[0]
    # with thinking, the list also holds its tokens: cut to those that spell the content
    thought = [{"token": "<think>"}, {"token": "Hm"}, {"token": "</think>\n\n"}, *logprobs]
    thinking = {**body, "message": {**body["message"], "thinking": "Hm"}, "logprobs": thought}
    cut = adapter_for().parse_chat(orjson.dumps(thinking), "qwen3").choices[0].logprobs
    assert cut == choice.logprobs
    unspelt = {**thinking, "message": {**thinking["message"], "content": "Hello!"}}
    # no tokens spell it: none rather than the thinking's mixed in
    assert adapter_for().parse_chat(orjson.dumps(unspelt), "qwen3").choices[0].logprobs is None
    for broken_entry in (
        {"token": "Hi", "logprob": "-0.5"},
        {"token": "Hi", "logprob": True},
        {"token": "Hi", "logprob": {"x": 1}},
        {"token": None, "logprob": -0.5},
        {"token": "Hi", "logprob": -0.5, "bytes": [300]},
        "Hi",
    ):
        broken = {**body, "logprobs": [broken_entry]}
        with pytest.raises(ProviderResponseError):
            adapter_for().parse_chat(orjson.dumps(broken), "llama3.2")
    assert choice.logprobs == {
        "content": [
            {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": [
                {"token": "Hi", "logprob": -0.25, "bytes": [72, 105]},
                {"token": "Hello", "logprob": -1.5, "bytes": list(b"Hello")}]},
            {"token": "!", "logprob": 0.0, "bytes": [33], "top_logprobs": []},
        ],
        "refusal": None,
    }  # fmt: skip
    without = {"message": {"role": "assistant", "content": "Hi!"}, "done": True}
    assert adapter_for().parse_chat(orjson.dumps(without), "llama3.2").choices[0].logprobs is None


@pytest.mark.parametrize(
    ("tokens", "content", "expected"),
    [
        # the server trims the content's leading whitespace, which shares a token with its first word
        (["<think>", "Hm", "</think>", "\n\nThe", " answer"], "The answer", ["\n\nThe", " answer"]),
        # a character cut across tokens: its bytes spell it, its texts do not
        (["<think>", "</think>", "Hi", " \ufffd", "\ufffd"], "Hi 😀", ["Hi", " \ufffd", "\ufffd"]),
        # a stop sequence's tokens, cut from the content, after it
        (["<think>", "</think>", "Hi", " END"], "Hi", ["Hi"]),
        # a stop sequence cut inside a token: the token goes with the content it ends
        (["<think>", "</think>", "Hello", " there", ".\n\n"], "Hello there.", ["Hello", " there", ".\n\n"]),
        (["<think>", "Hm", "</think>", "Hello"], "Bye", None),
    ],
)
def test_a_thinking_answer_s_logprobs_are_its_content_s(
    tokens: list[str], content: str, expected: list[str] | None
) -> None:
    emoji = list("😀".encode())

    def entry(token: str) -> dict[str, Any]:
        raw = {" \ufffd": [32, *emoji[:2]], "\ufffd": emoji[2:]}.get(token, list(token.encode()))
        return {"token": token, "logprob": -0.1, "bytes": raw}

    body = {"message": {"role": "assistant", "content": content, "thinking": "Hm"}, "done": True,
            "logprobs": [entry(t) for t in tokens]}  # fmt: skip
    logprobs = adapter_for().parse_chat(orjson.dumps(body), "qwen3").choices[0].logprobs
    got = None if logprobs is None else [e["token"] for e in logprobs["content"]]
    assert got == expected


def test_a_thinking_answer_s_logprobs_before_a_call_are_its_text_s_however_long_the_call() -> None:
    # the call's tokens come after the content's (generated last, held back by the server)
    call = ["<tool_call>", "\n", '{"', "name", '":', ' "', "get", "_weather", '",', ' "arguments', '":',
            ' {"', "location", '":', ' "', "Paris", '"}}', "\n", "</tool_call>"]  # fmt: skip
    tokens = ["Need", " weather", ".", "</think>", "\n\n", "Let", " me", " check", ".", "\n\n", *call]
    body = {
        "message": {"role": "assistant", "thinking": "Need weather.", "content": "Let me check.",
                    "tool_calls": [{"function": {"name": "get_weather", "arguments": {"location": "Paris"}}}]},
        "done": True,
        "logprobs": [{"token": t, "logprob": -0.1, "bytes": list(t.encode())} for t in tokens],
    }  # fmt: skip
    logprobs = adapter_for().parse_chat(orjson.dumps(body), "qwen3").choices[0].logprobs
    assert logprobs is not None
    assert [e["token"] for e in logprobs["content"]] == ["Let", " me", " check", "."]


@pytest.mark.parametrize("thinks", [True, False])
def test_streamed_logprobs_of_tokens_the_server_swallowed_are_not_the_content_s(thinks: bool) -> None:
    """Ollama sends a line with logprobs and no text for each token its parser swallows: gpt-oss's
    channel markers, a thinking tag, a character not yet whole. Only the content's reach the caller."""

    def line(
        content: str = "", thinking: str = "", tokens: tuple[str, ...] = (), done: bool = False
    ) -> bytes:
        message = {"role": "assistant", "content": content, **({"thinking": thinking} if thinking else {})}
        payload: dict[str, Any] = {"model": "gpt-oss:20b", "message": message, "done": done}
        if tokens:
            payload["logprobs"] = [{"token": t, "logprob": -0.1, "bytes": list(t.encode())} for t in tokens]
        return orjson.dumps(payload) + b"\n"

    emoji = "👋".encode()
    split = [{"token": " \ufffd", "logprob": -0.2, "bytes": [32, *emoji[:2]]}]
    rest = [{"token": "\ufffd", "logprob": -0.3, "bytes": list(emoji[2:])}]
    thinking = [
        line(tokens=("<|channel|>",)), line(tokens=("analysis",)), line(tokens=("<|message|>",)),
        line(thinking="User greets", tokens=("User greets",)),
        line(tokens=("<|end|>",)), line(tokens=("<|start|>", "assistant", "<|channel|>", "final", "<|message|>")),
    ] if thinks else []  # fmt: skip
    body = b"".join([
        *thinking,
        line(content="Hello", tokens=("Hello",)),
        orjson.dumps({"message": {"role": "assistant", "content": ""}, "done": False, "logprobs": split}) + b"\n",
        orjson.dumps({"message": {"role": "assistant", "content": " 👋"}, "done": False,
                      "logprobs": rest}) + b"\n",
        line(done=True),
    ])  # fmt: skip
    decoder = adapter_for().stream_decoder("gpt-oss:20b")
    chunks = [*decoder.feed(body), *decoder.close()]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello 👋"
    entries = [
        e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs["content"]
    ]
    assert b"".join(bytes(e["bytes"]) for e in entries) == "Hello 👋".encode()


def _line(content: str = "", thinking: str = "", tokens: tuple[Any, ...] = (), **more: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if "calls" in more:
        message["tool_calls"] = more.pop("calls")
    entries = [
        t if isinstance(t, dict) else {"token": t, "logprob": -0.1, "bytes": list(t.encode())} for t in tokens
    ]
    return {
        "model": "m",
        "message": message,
        "done": False,
        **({"logprobs": entries} if entries else {}),
        **more,
    }


def _streamed_and_whole(lines: list[dict[str, Any]]) -> tuple[list[Any], list[Any] | None]:
    """The logprob entries of the lines streamed, and of the answer Ollama builds of them."""
    lines = [*lines, {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True}]
    decoder = adapter_for().stream_decoder("m")
    chunks = [*decoder.feed(b"".join(orjson.dumps(line) + b"\n" for line in lines)), *decoder.close()]
    streamed = [
        e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs["content"]
    ]
    message: dict[str, Any] = {"role": "assistant", "content": "", "thinking": "", "tool_calls": []}
    for line in lines:
        for key in ("content", "thinking"):
            message[key] += line["message"].get(key, "")
        message["tool_calls"] += line["message"].get("tool_calls", [])
    body = {
        "message": message,
        "done": True,
        "logprobs": [e for line in lines for e in line.get("logprobs", [])],
    }
    whole = adapter_for().parse_chat(orjson.dumps(body), "m").choices[0].logprobs
    return streamed, None if whole is None else whole["content"]


CALL = [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]


@pytest.mark.parametrize(
    "lines",
    [
        # the server holds a token's trailing whitespace back to the next line's text
        [_line(thinking="Hm", tokens=("Hm",)), _line(tokens=("</think>",)), _line(tokens=("\n\n",)),
         _line("Hello", tokens=("Hello",)), _line(".", tokens=(".\n\n",)),
         _line("\n\nWorld", tokens=("World",)), _line("!", tokens=("!",))],
        [_line("Hi", tokens=("Hi",)), _line(".", tokens=(".\n\n",)), _line(tokens=("\n",)),
         _line("\n\n\nWorld", tokens=("World",))],
        # a thinking model's call: its tokens, and the call line's own, are no content's
        [_line(thinking="Need weather.", tokens=("Need", " weather", ".")), _line(tokens=("</think>", "\n\n")),
         _line("Let me check.", tokens=("Let", " me", " check", ".")), _line(tokens=("\n\n", "<tool_call>")),
         _line(calls=CALL, tokens=("</tool_call>",))],
        # ... nor those of its arguments that say the content again
        [_line(thinking="Need weather.", tokens=("Need", " weather", ".")), _line(tokens=("</think>", "\n\n")),
         _line("Paris", tokens=({"token": "Paris", "logprob": -2.0, "bytes": list(b"Paris")},)),
         _line(tokens=("\n\n", "<tool_call>", '{"name": "get_weather", "arguments": {"city": "')),
         _line(tokens=({"token": "Paris", "logprob": -0.01, "bytes": list(b"Paris")}, '"}}', "\n")),
         _line(calls=CALL, tokens=("</tool_call>",))],
    ],
)  # fmt: skip
def test_streamed_logprobs_are_those_of_the_answer_whole(lines: list[dict[str, Any]]) -> None:
    streamed, whole = _streamed_and_whole(lines)
    assert whole is not None
    assert streamed == whole
    tokens = [e["token"] for e in whole]
    assert not {"</think>", "<tool_call>", "</tool_call>", "Need"} & set(tokens)  # the content's only
    assert all(e["logprob"] != -0.01 for e in whole)  # the argument's "Paris" is not the content's


def test_parse_chat_content_thinking_and_usage() -> None:
    body = {"model": "qwen3", "message": {"role": "assistant", "content": "Hi!", "thinking": "greet"},
            "done": True, "done_reason": "stop", "prompt_eval_count": 26, "eval_count": 298}  # fmt: skip
    response = adapter_for().parse_chat(orjson.dumps(body), "qwen3")
    choice = response.choices[0]
    assert response.id.startswith("chatcmpl-")
    assert response.model == "qwen3"
    assert (choice.message.content, choice.message.reasoning_content) == ("Hi!", "greet")
    assert choice.finish_reason == "stop"
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (26, 298)
    assert response.usage.total_tokens == 324


def test_parse_chat_tool_calls_with_and_without_ids() -> None:
    calls = [{"function": {"name": "a", "arguments": {"city": "Tokyo"}}},
             {"id": "call_ollama1", "function": {"index": 1, "name": "b", "arguments": {}}}]  # fmt: skip
    body = {
        "message": {"role": "assistant", "content": "", "tool_calls": calls},
        "done": True,
        "done_reason": "stop",
    }
    response = adapter_for().parse_chat(orjson.dumps(body), "m")
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["a", "b"]
    assert calls[0].id.startswith("call_")  # made up: this server gave none
    assert calls[1].id == "call_ollama1"
    assert orjson.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Tokyo"}
    assert response.usage is not None
    assert response.usage.total_tokens == 0


@pytest.mark.parametrize(("reason", "expected"), [("length", "length"), ("stop", "stop"), (None, "stop")])
def test_parse_chat_finish_reasons(reason: str | None, expected: str) -> None:
    body: dict[str, Any] = {"message": {"role": "assistant", "content": "x"}, "done": True}
    if reason:
        body["done_reason"] = reason
    assert adapter_for().parse_chat(orjson.dumps(body), "m").choices[0].finish_reason == expected


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"done": true}'])
def test_parse_chat_garbage_is_a_response_error(body: bytes) -> None:
    with pytest.raises(ProviderResponseError):
        adapter_for().parse_chat(body, "m")


# --- stream decoding ---------------------------------------------------------------

STREAM = b"".join(
    orjson.dumps(line) + b"\n"
    for line in [
        {"model": "m", "message": {"role": "assistant", "content": "", "thinking": "Hmm, "}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "", "thinking": "ok."}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "Grüße "}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "🌍"}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "f", "arguments": {"x": 1}}},
            {"id": "call_abc", "function": {"name": "g", "arguments": {}}}]}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "h", "arguments": {"y": "ü"}}}]}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
         "prompt_eval_count": 11, "eval_count": 7},
    ]
)  # fmt: skip


def test_stream_decoder_byte_by_byte() -> None:
    decoder = adapter_for().stream_decoder("m")
    chunks = [c for i in range(len(STREAM)) for c in decoder.feed(STREAM[i : i + 1])]
    chunks += decoder.close()
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
    assert text_of(chunks, "reasoning_content") == "Hmm, ok."
    assert text_of(chunks) == "Grüße 🌍"
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert [(d.index, d.function.name if d.function else None) for d in deltas] == [
        (0, "f"),
        (1, "g"),
        (2, "h"),
    ]
    assert deltas[1].id == "call_abc"
    assert all(d.id and d.id.startswith("call_") for d in deltas)
    assert len({d.id for d in deltas}) == 3
    assert deltas[2].function is not None
    assert orjson.loads(deltas[2].function.arguments or "") == {"y": "ü"}
    finish, usage = chunks[-2], chunks[-1]
    assert finish.choices[0].finish_reason == "tool_calls"
    assert [c for c in chunks if c.choices and c.choices[0].finish_reason] == [finish]
    assert usage.choices == []
    assert usage.usage is not None
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (11, 7)


@pytest.mark.parametrize(
    "end",
    [STREAM.index(b'"done":true'), STREAM.rindex(b"\n", 0, STREAM.index(b'"done":true')) + 1],
    ids=["cut-mid-line", "cut-between-lines"],
)
def test_stream_without_done_line_is_a_connection_error(end: int) -> None:
    decoder = adapter_for().stream_decoder("m")
    assert decoder.feed(STREAM[:end])  # the complete lines before the cut still decode
    with pytest.raises(ProviderConnectionError, match="done"):
        decoder.close()


def test_stream_final_line_without_trailing_newline_is_accepted() -> None:
    decoder = adapter_for().stream_decoder("m")
    chunks = decoder.feed(STREAM.rstrip(b"\n")) + decoder.close()
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 18


def test_stream_line_with_null_error_is_content() -> None:
    line = {"model": "m", "message": {"role": "assistant", "content": "hi"}, "done": False, "error": None}
    decoder = adapter_for().stream_decoder("m")
    chunks = decoder.feed(orjson.dumps(line) + b"\n")
    assert text_of(chunks) == "hi"


@pytest.mark.parametrize(
    ("line", "error"),
    [({"error": "model 'x' not found", "status": 404}, ModelNotFoundError),
     ({"error": "an error was encountered while running the model"}, ProviderError)],
)  # fmt: skip
def test_stream_error_line_raises_the_mapped_error(line: dict[str, Any], error: type[Exception]) -> None:
    decoder = adapter_for().stream_decoder("m")
    decoder.feed(STREAM.split(b"\n")[0] + b"\n")
    with pytest.raises(error) as info:
        decoder.feed(orjson.dumps(line) + b"\n")
    assert line["error"] in str(info.value)


# --- errors ----------------------------------------------------------------------------


def test_error_mapping() -> None:
    adapter = adapter_for()
    missing = adapter.parse_error(404, {}, b'{"error":"model \\"x\\" not found, try pulling it first"}')
    assert type(missing) is ModelNotFoundError
    assert "try pulling it first" in missing.message
    wrong_url = adapter.parse_error(404, {}, b"404 page not found")
    assert type(wrong_url) is NotFoundError
    assert "base URL" in wrong_url.message
    no_think = adapter.parse_error(400, {}, b'{"error":"\\"llama3.2\\" does not support thinking"}')
    assert isinstance(no_think, UnsupportedFeatureError)
    assert no_think.upstream_status == 400
    assert no_think.param == "reasoning_effort"  # what the caller sent that asked for it
    assert type(adapter.parse_error(400, {}, b'{"error":"invalid format"}')) is InvalidRequestError
    crashed = adapter.parse_error(500, {}, b'{"error":"llama runner process has terminated"}')
    assert type(crashed) is ProviderError
    assert "runner" in crashed.message


# --- embeddings and model discovery (pure) -----------------------------------------------


def test_embed_request_sends_dimensions_only_when_asked() -> None:
    adapter = adapter_for()
    plain = adapter.embed_request(EmbeddingRequest(model="e", input=["a", "b"]), "nomic-embed-text")
    assert plain.url.endswith("/api/embed")
    # truncate false: an input beyond the context is an error, as on OpenAI (Ollama cuts it)
    assert sent(plain) == {"model": "nomic-embed-text", "input": ["a", "b"], "truncate": False}
    sized = adapter.embed_request(EmbeddingRequest(model="e", input="a", dimensions=4), "e")
    assert sent(sized) == {"model": "e", "input": "a", "dimensions": 4, "truncate": False}
    with pytest.raises(UnsupportedFeatureError) as info:
        adapter.embed_request(EmbeddingRequest(model="e", input=[1, 2, 3]), "e")
    assert info.value.param == "input"


def test_models_request_is_a_get_of_tags() -> None:
    request = adapter_for("http://box:11434").models_request()
    assert (request.method, request.url, request.body) == ("GET", "http://box:11434/api/tags", b"")
    with pytest.raises(ProviderResponseError):
        adapter_for().parse_models(b'{"nope": 1}')


# --- against the fake over a real socket ------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, web.Application]]:
    app = ollama_app(FAKE_MODELS)
    async with run_fake(app) as url:
        yield url, app


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    http = HttpClient()
    yield http
    await http.aclose()


async def stream_chat(
    client: HttpClient, adapter: OllamaAdapter, request: ChatRequest, model: str
) -> list[ChatChunk]:
    resp = await client.open_stream(adapter.chat_request(request, model, stream=True), Timeouts(), "ollama")
    complete = False
    try:
        assert resp.status == 200, await resp.read()
        assert resp.headers["content-type"].startswith("application/x-ndjson")
        decoder = adapter.stream_decoder(model)
        chunks = [c async for data in resp.iter_bytes() for c in decoder.feed(data)]
        chunks += decoder.close()
        complete = True
        return chunks
    finally:
        HttpClient.close_stream(resp, complete=complete)


async def test_chat_non_stream_via_fake(server: tuple[str, web.Application], client: HttpClient) -> None:
    url, app = server
    adapter = adapter_for(url)
    request = chat(messages=[{"role": "user", "content": "hello there"}], max_tokens=50, stop=["zz"])
    resp = await client.send(adapter.chat_request(request, "llama3.2", stream=False), Timeouts(), "ollama")
    assert resp.status == 200
    response = adapter.parse_chat(resp.body, "llama3.2")
    assert response.choices[0].message.content == "echo: hello there"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (2, 3)
    assert app["requests"][-1]["stream"] is False
    assert app["requests"][-1]["options"] == {"num_predict": 50, "stop": ["zz"]}


async def test_the_context_window_and_keep_alive_are_the_providers_options(
    server: tuple[str, web.Application], client: HttpClient
) -> None:
    """Ollama's default context window is small and it cuts a longer prompt silently: a provider
    entry sets ``num_ctx`` (and ``keep_alive``) for its chats and embeddings."""
    from uniinfer.errors import ConfigError
    from uniinfer.types import EmbeddingRequest

    url, app = server
    reg = default_registry()
    options = {"num_ctx": 32768, "keep_alive": "30m"}
    adapter = reg.create(reg.get("ollama"), Endpoint(base_url=url, options=options))
    request = chat(messages=[{"role": "user", "content": "hello there"}], temperature=0.2)
    resp = await client.send(adapter.chat_request(request, "llama3.2", stream=False), Timeouts(), "ollama")
    assert resp.status == 200, resp.body
    sent_body = app["requests"][-1]
    assert (sent_body["options"], sent_body["keep_alive"]) == ({"temperature": 0.2, "num_ctx": 32768}, "30m")
    embed = adapter.embed_request(EmbeddingRequest(model="e", input="hi"), "nomic-embed-text")
    assert (sent(embed)["options"], sent(embed)["keep_alive"]) == ({"num_ctx": 32768}, "30m")
    assert "keep_alive" not in sent(adapter_for(url).chat_request(request, "llama3.2", stream=False))
    for bad in ({"num_ctx": 0}, {"keep_alive": "forever"}, {"context": 8192}):
        with pytest.raises(ConfigError):
            reg.create(reg.get("ollama"), Endpoint(base_url=url, options=bad))


async def test_chat_stream_via_fake(server: tuple[str, web.Application], client: HttpClient) -> None:
    url, _ = server
    adapter = adapter_for(url)
    request = chat(messages=[{"role": "user", "content": "Grüße an die 🌍 und alle"}])
    chunks = await stream_chat(client, adapter, request, "llama3.2")
    assert text_of(chunks) == "echo: Grüße an die 🌍 und alle"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 7


async def test_length_and_json_mode_via_fake(server: tuple[str, web.Application], client: HttpClient) -> None:
    adapter = adapter_for(server[0])
    short = await stream_chat(client, adapter, chat(messages=[{"role": "user", "content": "a b c d"}],
                                                    max_tokens=2), "llama3.2")  # fmt: skip
    assert text_of(short) == "echo: a"  # whole words: the space before "b" is b's
    assert short[-2].choices[0].finish_reason == "length"
    stopped = await stream_chat(client, adapter, chat(messages=[{"role": "user", "content": "a b c d"}],
                                                      stop=["c d"]), "llama3.2")  # fmt: skip
    assert text_of(stopped) == "echo: a b "  # cut before the stop sequence, which is left out
    assert stopped[-2].choices[0].finish_reason == "stop"
    request = chat(response_format={"type": "json_object"})
    resp = await client.send(adapter.chat_request(request, "llama3.2", stream=False), Timeouts(), "ollama")
    content = adapter.parse_chat(resp.body, "llama3.2").choices[0].message.content
    assert orjson.loads(content or "") == {"echo": "hi"}


async def test_tool_calls_via_fake_fill_the_declared_schema(
    server: tuple[str, web.Application], client: HttpClient
) -> None:
    """The arguments are an instance of each tool's parameters (required ones, strings from the prompt)."""
    adapter = adapter_for(server[0])
    params = {
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"},
            "note": {"type": "string"},
        },
        "required": ["location", "unit", "days"],
        "additionalProperties": False,
    }
    tools = [{"type": "function", "function": {"name": n, "parameters": params}} for n in ("weather", "time")]
    request = chat(messages=[{"role": "user", "content": "weather in Paris?"}], tools=tools)
    resp = await client.send(
        adapter.chat_request(request, "tool-preamble-parallel", stream=False), Timeouts(), "ollama"
    )
    message = adapter.parse_chat(resp.body, "tool-preamble-parallel").choices[0].message
    assert message.content == "Let me check."
    calls = message.tool_calls or []
    assert [c.function.name for c in calls] == ["weather", "time"]
    for call in calls:
        assert orjson.loads(call.function.arguments) == {"location": "Paris", "unit": "celsius", "days": 1}


async def test_tool_and_thinking_streams_via_fake(
    server: tuple[str, web.Application], client: HttpClient
) -> None:
    adapter = adapter_for(server[0])
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    chunks = await stream_chat(client, adapter, chat(tools=tools), "tool-model")
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert len(deltas) == 1
    assert re.fullmatch(r"call_[0-9a-f]{8}", deltas[0].id or "")  # the server's own id, passed on
    assert deltas[0].index == 0
    assert deltas[0].function is not None
    assert deltas[0].function.name == "lookup"
    assert orjson.loads(deltas[0].function.arguments or "") == {}  # no required properties
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    thinking = await stream_chat(client, adapter, chat(reasoning_effort="high"), "qwen3-think")
    assert text_of(thinking, "reasoning_content") == "The user said hi."
    assert text_of(thinking) == "echo: hi"
    oss = await stream_chat(client, adapter, chat(reasoning_effort="low"), "gpt-oss:20b")
    assert text_of(oss) == "echo: hi"
    assert server[1]["requests"][-1]["think"] == "low"


async def test_logprobs_of_thinking_text_and_a_held_back_call_via_fake(
    server: tuple[str, web.Application], client: HttpClient
) -> None:
    """The content's logprobs arrive, on the chunk of the line that carried them, and not the
    thinking's (OpenAI's logprobs are the content's); the line of logprobs the server sends while
    it holds back a call is a chunk of its own."""
    adapter = adapter_for(server[0])
    thinking = await stream_chat(client, adapter, chat(logprobs=True, reasoning_effort="high"), "qwen3-think")
    entries = [
        e for c in thinking if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs["content"]
    ]
    assert "".join(e["token"] for e in entries) == "echo: hi"
    for chunk in thinking:
        if chunk.choices and chunk.choices[0].delta.content:
            assert chunk.choices[0].logprobs is not None
        if chunk.choices and chunk.choices[0].delta.reasoning_content:
            assert chunk.choices[0].logprobs is None
    whole = await client.send(
        adapter.chat_request(chat(logprobs=True, top_logprobs=2), "qwen3-think", stream=False),
        Timeouts(),
        "ollama",
    )
    content = adapter.parse_chat(whole.body, "qwen3-think").choices[0].logprobs
    assert content is not None
    assert [e["token"] for e in content["content"]] == [e["token"] for e in entries]
    assert all(len(e["top_logprobs"]) == 2 for e in content["content"])

    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    chunks = await stream_chat(client, adapter, chat(tools=tools, logprobs=True), "tool-model")
    held, call = chunks[-4], chunks[-3]
    assert held.choices[0].delta.tool_calls is None
    assert held.choices[0].logprobs is not None
    assert held.choices[0].logprobs["content"]
    assert call.choices[0].delta.tool_calls
    assert chunks[-2].choices[0].finish_reason == "tool_calls"


async def test_image_round_trip_via_fake(server: tuple[str, web.Application], client: HttpClient) -> None:
    url, app = server
    adapter = adapter_for(url)
    parts = [{"type": "text", "text": "look"},
             {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}]  # fmt: skip
    resp = await client.send(
        adapter.chat_request(chat(messages=[{"role": "user", "content": parts}]), "llama3.2", stream=False),
        Timeouts(),
        "ollama",
    )
    assert resp.status == 200
    assert app["requests"][-1]["messages"][0]["images"] == [PNG_B64]


async def test_upstream_errors_via_fake(server: tuple[str, web.Application], client: HttpClient) -> None:
    adapter = adapter_for(server[0])

    async def error_for(model: str, **fields: Any) -> Exception:
        resp = await client.send(
            adapter.chat_request(chat(**fields), model, stream=False), Timeouts(), "ollama"
        )
        assert resp.status >= 400
        return adapter.parse_error(resp.status, resp.headers, resp.body)

    missing = await error_for("mistral")
    assert isinstance(missing, ModelNotFoundError)
    assert 'model "mistral" not found' in str(missing)
    limited = await error_for("error-429")
    assert isinstance(limited, RateLimitError)
    assert limited.retry_after == 7
    assert type(await error_for("error-500")) is ProviderError
    no_think = await error_for("llama3.2", reasoning_effort="high")
    assert isinstance(no_think, UnsupportedFeatureError)
    assert "does not support thinking" in str(no_think)


async def test_cut_stream_is_a_connection_error(
    server: tuple[str, web.Application], client: HttpClient
) -> None:
    request = chat(messages=[{"role": "user", "content": "one two three four five six"}])
    with pytest.raises(ProviderConnectionError):
        await stream_chat(client, adapter_for(server[0]), request, "cut-model")


async def test_embeddings_via_fake(server: tuple[str, web.Application], client: HttpClient) -> None:
    adapter = adapter_for(server[0])
    request = EmbeddingRequest(model="e", input=["why is the sky blue", "grass"], dimensions=5)
    resp = await client.send(adapter.embed_request(request, "nomic-embed-text"), Timeouts(), "ollama")
    assert resp.status == 200
    result = adapter.parse_embed(resp.body, "nomic-embed-text")
    assert [e.index for e in result.data] == [0, 1]
    assert all(isinstance(e.embedding, list) and len(e.embedding) == 5 for e in result.data)
    assert result.data[0].embedding != result.data[1].embedding
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (6, 6)
    missing = await client.send(adapter.embed_request(request, "bge-m3"), Timeouts(), "ollama")
    assert isinstance(adapter.parse_error(missing.status, missing.headers, missing.body), ModelNotFoundError)


async def test_model_discovery_via_fake(server: tuple[str, web.Application], client: HttpClient) -> None:
    adapter = adapter_for(server[0])
    resp = await client.send(adapter.models_request(), Timeouts(), "ollama")
    assert resp.status == 200
    assert adapter.parse_models(resp.body) == [
        "llama3.2:latest", "qwen3-think:latest", "gpt-oss:20b", "nomic-embed-text:latest"
    ]  # fmt: skip


async def test_fake_validates_like_ollama(server: tuple[str, web.Application], client: HttpClient) -> None:
    url, _ = server

    async def post(body: dict[str, Any]) -> tuple[int, Any]:
        resp = await client.send(HttpRequest(f"{url}/api/chat", orjson.dumps(body)), Timeouts(), "ollama")
        return resp.status, orjson.loads(resp.body)

    user = {"role": "user", "content": "hi"}
    status, body = await post({"model": "llama3.2", "messages": [], "stream": False})
    assert (status, body["done_reason"]) == (200, "load")
    status, body = await post({"model": "llama3.2", "messages": [{**user, "images": ["not base64!"]}]})
    assert status == 400
    assert "base64" in body["error"]
    assert (await post({"model": "llama3.2", "messages": [{"role": "developer", "content": "x"}]}))[0] == 400
    assert (await post({"model": "llama3.2", "messages": [user], "options": {"stop": "x"}}))[0] == 500
    ok = {"model": "llama3.2", "messages": [user], "stream": False, "options": {"mirostat_x": 1}}
    assert (await post(ok))[0] == 200  # unknown options are ignored
    status, body = await post({"model": "qwen3-think", "messages": [user], "think": "high"})
    assert status == 400
    assert "not supported for this model" in body["error"]
    status, body = await post({"model": "llama3.2", "messages": [user], "logprobs": True, "top_logprobs": 21})
    assert (status, body["error"]) == (400, "top_logprobs must be between 0 and 20")


async def test_ollama_not_running_is_a_retryable_connection_error(client: HttpClient) -> None:
    # A bound but never listening socket refuses connections and keeps the port ours.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        adapter = adapter_for(f"http://127.0.0.1:{port}")
        with pytest.raises(ProviderConnectionError) as info:
            await client.send(adapter.models_request(), Timeouts(connect=2.0), "ollama")
    assert info.value.retryable is True
    assert f"127.0.0.1:{port}" in info.value.message


@pytest.mark.parametrize("message", ["hi", ["hi"], 3])
def test_stream_line_whose_message_is_not_an_object_is_a_response_error(message: object) -> None:
    decoder = adapter_for().stream_decoder("m")
    with pytest.raises(ProviderResponseError):
        decoder.feed(orjson.dumps({"model": "m", "message": message, "done": False}) + b"\n")


async def test_the_fake_s_404_is_ollama_s_model_not_found(
    server: tuple[str, web.Application], client: HttpClient
) -> None:
    adapter = adapter_for(server[0])
    request = adapter.chat_request(chat(), "error-404", stream=False)
    resp = await client.send(request, Timeouts(), "ollama")
    error = adapter.parse_error(resp.status, resp.headers, resp.body)
    assert isinstance(error, ModelNotFoundError), error
    assert "not found, try pulling it first" in error.message
