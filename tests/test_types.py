"""Request validation limits: what a caller gets told when a request is wrong."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from uniinfer.errors import InvalidRequestError, UnsupportedFeatureError
from uniinfer.ingress import responses_request
from uniinfer.ingress.anthropic_models import MessagesRequest
from uniinfer.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    FunctionDefinition,
    Tool,
    Usage,
    UserMessage,
    chat,
    embeddings,
)
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
        ({"tool_choice": "auto"}, "tool_choice"),  # OpenAI: only allowed when 'tools' are specified
        ({"tools": []}, "tools"),  # OpenAI: an empty array is refused
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
    assert err.param == "messages[0].role"
    assert err.message.startswith("Invalid value for 'messages[0].role': ")
    assert "'user'" in err.message


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


def test_every_tool_call_is_answered_once_before_the_conversation_goes_on() -> None:
    """OpenAI refuses a call left unanswered ("did not have response messages"), as Claude and
    Gemini do: a 400 naming the assistant message before any provider is asked."""
    two = {"role": "assistant", "tool_calls": [CALL, {**CALL, "id": "call_2"}]}
    one_result = {"role": "tool", "tool_call_id": "call_1", "content": "ok"}
    cases = {
        "unanswered before the next user turn": (
            [USER, two, one_result, USER],
            "messages[1].tool_calls",
            "'call_2'",
        ),
        "unanswered at the end": (
            [USER, {"role": "assistant", "tool_calls": [CALL]}],
            "messages[1].tool_calls",
            "'call_1'",
        ),
        "answered twice": (
            [USER, two, one_result, one_result],
            "messages[3].tool_call_id",
            "answered before",
        ),
        "one id for two calls": (
            [USER, {"role": "assistant", "tool_calls": [CALL, CALL]}],
            "messages[1].tool_calls",
            "one id",
        ),
    }
    for name, (messages, param, words) in cases.items():
        with pytest.raises(InvalidRequestError) as info:
            parse_request(ChatRequest, {"model": "m", "messages": messages})
        assert (info.value.param, words in info.value.message) == (param, True), name
    # the calls answered in another order than made are fine
    answered = [USER, two, {**one_result, "tool_call_id": "call_2"}, one_result, USER]
    assert len(parse_request(ChatRequest, {"model": "m", "messages": answered}).messages) == 5
    # and an id the caller made huge is not echoed whole
    huge = [USER, {"role": "assistant", "tool_calls": [{**CALL, "id": "x" * 100_000}]}]
    with pytest.raises(InvalidRequestError) as info:
        parse_request(ChatRequest, {"model": "m", "messages": huge})
    assert len(info.value.message) < 400


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
    ["", [], [""], ["x"] * 2049, [-1], [[2**64]], [2**32]],  # and token ids no tokenizer has
)
def test_embedding_input_limits(value: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(EmbeddingRequest, {"model": "m", "input": value})
    assert (info.value.param or "").startswith("input")


def test_embedding_texts() -> None:
    assert EmbeddingRequest(model="m", input="a").texts == ["a"]
    assert EmbeddingRequest(model="m", input=["a", "b"]).texts == ["a", "b"]
    assert EmbeddingRequest(model="m", input=[1, 2]).texts is None


# --- strict types: a wrong JSON type is a 400, never a silent conversion ----------------------


@pytest.mark.parametrize(
    ("fields", "param", "expected", "got"),
    [
        ({"max_tokens": True}, "max_tokens", "an integer", "a boolean"),
        ({"max_tokens": 5.0}, "max_tokens", "an integer", "a decimal"),
        ({"max_completion_tokens": False}, "max_completion_tokens", "an integer", "a boolean"),
        ({"stream": "yes"}, "stream", "a boolean", "a string"),
        ({"stream": "off"}, "stream", "a boolean", "a string"),
        ({"stream": 1}, "stream", "a boolean", "an integer"),
        ({"temperature": "0.5"}, "temperature", "a number", "a string"),
        ({"temperature": True}, "temperature", "a number", "a boolean"),
        ({"n": "2"}, "n", "an integer", "a string"),
        ({"seed": "42"}, "seed", "an integer", "a string"),
        ({"logprobs": "false"}, "logprobs", "a boolean", "a string"),
        ({"parallel_tool_calls": "no", "tools": [TOOL]}, "parallel_tool_calls", "a boolean", "a string"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "strict": "yes"}}]},
            "tools[0].function.strict",
            "a boolean",
            "a string",
        ),
        (
            {"stream": True, "stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
            "a boolean",
            "an integer",
        ),
        ({"model": 5}, "model", "a string", "an integer"),
        ({"user": 1}, "user", "a string", "an integer"),
        ({"metadata": {"team": 1}}, "metadata.team", "a string", "an integer"),
        ({"logit_bias": {"50256": "1"}}, "logit_bias.50256", "an integer", "a string"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "messages[0].content[0].text",
            "a string",
            "an integer",
        ),
        ({"messages": ["hi"]}, "messages[0]", "an object", "a string"),
    ],
)
def test_wrong_types_are_refused_not_converted(
    fields: dict[str, Any], param: str, expected: str, got: str
) -> None:
    err = bad(**fields)
    assert err.param == param
    assert err.message == f"Invalid type for '{param}': expected {expected}, but got {got} instead."


def test_numbers_accept_integers_and_the_sdk_builds_requests_from_python_values() -> None:
    request = parse_request(ChatRequest, {"model": "m", "messages": [USER], "temperature": 1, "top_p": 0})
    assert request.temperature == 1.0
    built = ChatRequest(
        model="m",
        messages=[UserMessage(role="user", content="hi")],
        tools=[Tool(function=FunctionDefinition(name="f", strict=True))],
        max_tokens=5,
    )
    assert parse_request(ChatRequest, built.model_dump(exclude_none=True, by_alias=True)) == built


@pytest.mark.parametrize(
    ("value", "param", "message"),
    [
        ([True], "input[0]", "expected a string, but got a boolean instead"),
        ([1, "2"], "input[1]", "expected an integer, but got a string instead"),  # token ids: all integers
        (["a", 1], "input[1]", "expected a string, but got an integer instead"),
        ([[1, "a"]], "input[0][1]", "expected an integer, but got a string instead"),
        (
            None,
            "input",
            "expected one of a string, an array of strings, an array of integers or an array of arrays "
            "of integers, but got null instead",
        ),
    ],
)
def test_embedding_input_types(value: Any, param: str, message: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(EmbeddingRequest, {"model": "m", "input": value})
    assert info.value.param == param
    assert info.value.message == f"Invalid type for '{param}': {message}."


@pytest.mark.parametrize("value", [[], [""], [[]], [[1], []], ""])
def test_embedding_input_must_not_be_empty(value: Any) -> None:
    # an empty token array is as empty as an empty string (the spec: minItems 1 on both levels)
    with pytest.raises(InvalidRequestError) as info:
        parse_request(EmbeddingRequest, {"model": "m", "input": value})
    assert info.value.param == "input"


@pytest.mark.parametrize(("value", "got"), [("5", "a string"), (True, "a boolean"), (5.5, "a decimal")])
def test_embedding_dimensions_must_be_an_integer(value: Any, got: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(EmbeddingRequest, {"model": "m", "input": "x", "dimensions": value})
    assert info.value.message == f"Invalid type for 'dimensions': expected an integer, but got {got} instead."


def test_every_request_model_is_strict_and_response_models_stay_lenient() -> None:
    request_models = [
        m
        for module in (chat, embeddings, responses_request)
        for m in vars(module).values()
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == module.__name__
        if m.model_config.get("extra") == "forbid"
    ]
    assert ChatRequest in request_models
    assert [m for m in request_models if not m.model_config.get("strict")] == []
    # answers keep what uniinfer does not model (a re-modelled chunk loses nothing), leniently
    for model in (ChatChunk, ChatResponse, Usage):
        assert (model.model_config.get("extra"), model.model_config.get("strict")) == ("allow", None)
    # an upstream that sends a count as a string still parses
    assert Usage.model_validate({"prompt_tokens": "5", "completion_tokens": 1}).prompt_tokens == 5


# --- errors name the field the caller wrote, from the union member they meant -------------------


def _user(content: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        (_user([{"type": "text"}]), "messages[0].content[0].text", "Missing required parameter"),
        (_user([{"type": "image_url", "image_url": {}}]), "messages[0].content[0].image_url.url", "Missing"),
        (
            _user([{"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "max"}}]),
            "messages[0].content[0].image_url.detail",
            "Input should be 'auto', 'low' or 'high'",
        ),
        (
            {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]},
            "messages[0].content[0].type",
            "Input should be 'text'",
        ),
        (
            _user([{"type": "video"}]),
            "messages[0].content[0].type",
            "'text', 'image_url', 'input_audio' or 'file'",
        ),
        (_user([{"text": "x"}]), "messages[0].content[0].type", "Missing required parameter"),
        (_user(None), "messages[0].content", "expected one of a string or an array of objects, but got null"),
        (
            _user(5),
            "messages[0].content",
            "expected one of a string or an array of objects, but got an integer",
        ),
        ({"messages": [{"content": "x"}]}, "messages[0].role", "Missing required parameter"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema", "Missing required"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": [1]}}},
            "response_format.json_schema.schema",
            "expected an object, but got an array",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
            "Missing required parameter",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "strict": True, "x": 1},
                }
            },
            "response_format.json_schema.x",
            "Unrecognized request argument",
        ),
        ({"tools": [{"type": "function"}]}, "tools[0].function", "Missing required parameter"),
        ({"tool_choice": {"type": "function"}}, "tool_choice.function", "Missing required parameter"),
        ({"tool_choice": "always"}, "tool_choice", "Input should be 'none', 'auto' or 'required'"),
        ({"stop": 5}, "stop", "expected one of a string or an array of strings, but got an integer"),
        ({"stop": ["a", 1]}, "stop[1]", "expected a string, but got an integer"),
    ],
)
def test_errors_name_the_part_the_caller_wrote(fields: dict[str, Any], param: str, message: str) -> None:
    err = bad(**fields)
    assert err.param == param
    assert message in err.message
    assert f"'{param}'" in err.message or param in err.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "custom", "custom": {"name": "grammar"}}]}, "tools[0].type"),
        (
            {
                "tools": [TOOL],
                "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}},
            },
            "tool_choice.type",
        ),
        ({"tool_choice": {"type": "custom", "custom": {"name": "grammar"}}}, "tool_choice.type"),
    ],
)
def test_spec_features_uniinfer_does_not_serve_say_so(fields: dict[str, Any], param: str) -> None:
    err = bad(**fields)
    assert isinstance(err, UnsupportedFeatureError)
    assert err.http_status == 400
    assert err.param == param
    assert "not supported by uniinfer" in err.message


@pytest.mark.parametrize("effort", ["none", "minimal", "low", "medium", "high", "xhigh", "max"])
def test_every_reasoning_effort_of_the_spec_is_accepted(effort: str) -> None:
    request = ChatRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": effort}
    )
    assert request.reasoning_effort == effort


def test_an_unknown_reasoning_effort_is_refused_naming_it() -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(
            ChatRequest,
            {"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "extreme"},
        )
    assert info.value.param == "reasoning_effort"


def test_reasoning_is_read_under_either_name_servers_use() -> None:
    # vLLM (since 0.11.2) and OpenRouter write `reasoning`; DeepSeek and most others `reasoning_content`
    body = {
        "id": "c",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "4", "reasoning": "2+2"}}],
    }
    assert ChatResponse.model_validate(body).choices[0].message.reasoning_content == "2+2"
    chunk = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"reasoning": "2+"}}]}
    assert ChatChunk.model_validate(chunk).choices[0].delta.reasoning_content == "2+"
    both = {**body["choices"][0]["message"], "reasoning_content": "first"}  # type: ignore[index]
    assert (
        ChatResponse.model_validate({**body, "choices": [{"index": 0, "message": both}]})
        .choices[0]
        .message.reasoning_content
        == "first"
    )
    # and an assistant turn sent back as the openai SDK dumps such an answer
    request = parse_request(
        ChatRequest,
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4", "reasoning": "2+2"},
                {"role": "user", "content": "and 3+3?"},
            ],
        },
    )
    assert request.messages[1].reasoning_content == "2+2"  # type: ignore[union-attr]
    # servers that write both (vLLM 0.11 to 0.13): accepted, the first name's text kept; a null
    # first name does not hide the second's
    both_turn = {"role": "assistant", "content": "4", "reasoning": "2+2", "reasoning_content": "2+2"}
    request = parse_request(
        ChatRequest, {"model": "m", "messages": [{"role": "user", "content": "?"}, both_turn]}
    )
    assert request.messages[1].reasoning_content == "2+2"  # type: ignore[union-attr]
    nulled = {"index": 0, "delta": {"reasoning_content": None, "reasoning": "2+"}}
    assert ChatChunk.model_validate({**chunk, "choices": [nulled]}).choices[0].delta.reasoning_content == "2+"


def test_answers_carry_the_fields_the_spec_requires_even_when_null() -> None:
    # CreateChatCompletionStreamResponse: choices[].finish_reason is required (nullable);
    # CreateChatCompletionResponse: choices[].logprobs and message.refusal too
    import orjson

    chunk = ChatChunk.model_validate(
        {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "4"}}]}
    )
    written = orjson.loads(chunk.model_dump_json(exclude_none=True))
    assert written["choices"][0] == {"index": 0, "delta": {"content": "4"}, "finish_reason": None}
    answer = ChatResponse.model_validate(
        {
            "id": "c",
            "model": "m",
            "choices": [{"index": 0, "message": {"content": "4"}, "finish_reason": "stop"}],
        }
    )
    choice = orjson.loads(answer.model_dump_json(exclude_none=True))["choices"][0]
    assert (choice["logprobs"], choice["message"]["refusal"], choice["message"]["content"]) == (
        None,
        None,
        "4",
    )


def test_logit_bias_is_integers_from_minus_100_to_100_as_sent() -> None:
    # the spec's additionalProperties: integer; -100 reached OpenAI as -100.0 and 2.5 or 500 passed
    request = parse_request(ChatRequest, {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                          "logit_bias": {"50256": -100, "11": 5}})  # fmt: skip
    assert request.model_dump(exclude_none=True)["logit_bias"] == {"50256": -100, "11": 5}
    assert isinstance(request.model_dump()["logit_bias"]["50256"], int)
    for bad in (2.5, 500, -101):
        with pytest.raises(InvalidRequestError) as info:
            parse_request(ChatRequest, {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                        "logit_bias": {"50256": bad}})  # fmt: skip
        assert (info.value.param or "").startswith("logit_bias")


MANY = 200_000


@pytest.mark.parametrize(
    ("model", "body", "param"),
    [
        (ChatRequest, {"model": "m", "messages": [USER], "stop": [1] * MANY}, "stop"),
        (ChatRequest, {"model": "m", "messages": [{"role": "x", "content": "a"}] * MANY}, "messages[0].role"),
        (
            ChatRequest,
            {"model": "m", "messages": [USER], "logit_bias": {str(i): 999 for i in range(MANY)}},
            "logit_bias.0",
        ),
        (EmbeddingRequest, {"model": "m", "input": [True] * MANY}, "input"),
        (responses_request.ResponsesRequest, {"model": "m", "input": [{"type": "nope"}] * MANY}, "input[0]"),
        (
            MessagesRequest,
            {"model": "m", "max_tokens": 1, "messages": [USER], "stop_sequences": [1] * MANY},
            "stop",
        ),
    ],
    ids=["stop", "messages", "logit_bias", "embeddings", "responses", "anthropic"],
)
def test_a_list_of_many_bad_items_is_refused_at_its_first(
    model: type[BaseModel], body: dict[str, Any], param: str
) -> None:
    """Only the first problem is reported: a body of a million bad items must not make pydantic
    build an error for each (in every member of a union), which held the event loop for seconds."""
    from pydantic import ValidationError

    with pytest.raises(InvalidRequestError) as info:
        parse_request(model, body)
    assert (info.value.param or "").startswith(param)
    with pytest.raises(ValidationError) as raw:
        model.model_validate(body)
    assert raw.value.error_count() <= 4  # the first bad item of each union member, not all of them


def test_a_refused_answer_appended_as_the_openai_sdk_dumps_it_is_a_refusal_turn() -> None:
    from openai.types.chat import ChatCompletionMessage

    from uniinfer.types.chat import AssistantMessage, RefusalPart

    answer = ChatCompletionMessage(role="assistant", content=None, refusal="I can't help with that.")
    request = parse_request(ChatRequest, {"model": "m", "messages": [USER, answer.model_dump(), USER]})
    turn = request.messages[1]
    assert isinstance(turn, AssistantMessage)
    # the spec's refusal part: every provider's translation carries it (as text where there is no such part)
    assert turn.content == [RefusalPart(type="refusal", refusal="I can't help with that.")]
    assert turn.refusal is None
    # and a previous audio answer referred to by its id (OpenAI's audio conversations)
    audio = {"role": "assistant", "audio": {"id": "audio_abc123"}}
    assert parse_request(ChatRequest, {"model": "m", "messages": [USER, audio, USER]}).messages[1].audio == {
        "id": "audio_abc123"
    }
    with pytest.raises(InvalidRequestError, match="needs 'content' or 'tool_calls'"):
        parse_request(ChatRequest, {"model": "m", "messages": [USER, {"role": "assistant"}, USER]})


def test_errors_quote_no_more_than_a_short_piece_of_what_the_caller_sent() -> None:
    n = 1_000_000
    cases = [
        {"k" * n: 1},  # an unknown field
        {"logit_bias": {"9" * n: 1000}},
        {"metadata": {"m" * n: 1}},
        {
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "n" * n}},
        },
    ]
    for extra in cases:
        with pytest.raises(InvalidRequestError) as info:
            parse_request(ChatRequest, {"model": "m", "messages": [USER], **extra})
        assert len(info.value.message) < 300, extra.keys()
        assert len(info.value.param or "") < 100


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"metadata": {"k" * 65: "v"}}, "metadata."),
        ({"metadata": {"k": "v" * 513}}, "metadata.k"),
        ({"safety_identifier": "s" * 65}, "safety_identifier"),
    ],
)
def test_the_specs_length_limits_on_metadata_and_the_safety_identifier(
    extra: dict[str, Any], param: str
) -> None:
    # OpenAI refuses them ("Metadata": keys up to 64 characters, values up to 512): said before sending
    with pytest.raises(InvalidRequestError) as info:
        parse_request(ChatRequest, {"model": "m", "messages": [USER], **extra})
    assert (info.value.param or "").startswith(param)
    within = {"metadata": {"k" * 64: "v" * 512}, "safety_identifier": "s" * 64}
    assert parse_request(ChatRequest, {"model": "m", "messages": [USER], **within}).safety_identifier
