"""Request validation limits: what a caller gets told when a request is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from uniinfer.errors import InvalidRequestError
from uniinfer.types import ChatRequest, EmbeddingRequest
from uniinfer.validation import parse_request

USER = {"role": "user", "content": "hi"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
TOOL = {"type": "function", "function": {"name": "f"}}


def bad(**fields: Any) -> InvalidRequestError:
    body = {"model": "m", "messages": [USER], **fields}
    with pytest.raises(InvalidRequestError) as info:
        parse_request(ChatRequest, body)
    return info.value


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.01}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"n": 0}, "n"),
        ({"messages": []}, "messages"),
        ({"model": ""}, "model"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"metadata": {str(i): "v" for i in range(17)}}, "metadata"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"messages": [{"role": "tool", "tool_call_id": "x", "content": "r"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "assistant"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_limits_name_the_field(fields: dict[str, Any], param: str) -> None:
    err = bad(**fields)
    assert err.param is not None
    assert err.param.startswith(param)
    assert err.http_status == 400
    assert param.split("[")[0].split(".")[0] in err.message


def test_invalid_role_is_named() -> None:
    err = bad(messages=[{"role": "wizard", "content": "x"}])
    assert err.param == "messages[0]"
    assert "wizard" in err.message or "role" in err.message


def test_tool_messages_must_answer_the_preceding_assistant_calls() -> None:
    good = {
        "model": "m",
        "messages": [
            USER,
            {"role": "assistant", "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ],
    }
    assert parse_request(ChatRequest, good).messages[2].role == "tool"
    stale = {
        **good,
        "messages": [*good["messages"], USER, {"role": "tool", "tool_call_id": "call_1", "content": "again"}],
    }
    with pytest.raises(InvalidRequestError) as info:
        parse_request(ChatRequest, stale)
    assert info.value.param == "messages[4].tool_call_id"


def test_full_featured_request_round_trips() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                    },
                ],
            },
        ],
        "tools": [TOOL],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}},
        },
        "stream": True,
        "stream_options": {"include_usage": True},
        "n": 2,
        "stop": "END",
        "seed": 7,
        "logprobs": True,
        "top_logprobs": 2,
        "user": "u-1",
        "metadata": {"team": "a"},
    }
    request = parse_request(ChatRequest, body)
    assert request.include_usage
    assert request.model_dump(mode="json", exclude_none=True, by_alias=True) == body


@pytest.mark.parametrize(
    "value",
    ["", [], [""], ["x"] * 2049],
)
def test_embedding_input_limits(value: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(EmbeddingRequest, {"model": "m", "input": value})
    assert info.value.param == "input"


def test_embedding_texts() -> None:
    assert EmbeddingRequest(model="m", input="a").texts == ["a"]
    assert EmbeddingRequest(model="m", input=["a", "b"]).texts == ["a", "b"]
    assert EmbeddingRequest(model="m", input=[1, 2]).texts is None
