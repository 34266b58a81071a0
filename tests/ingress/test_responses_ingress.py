"""The Responses API ingress as pure translation: requests to Chat, answers and streams back.

Every response object and stream event is validated strictly against the
installed ``openai`` SDK's models (required fields, types, literals), not just
constructed leniently as the SDK does at run time.
"""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel

from uniinfer.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderQuotaExceededError,
    RateLimitError,
    UnsupportedFeatureError,
    UnsupportedParamError,
)
from uniinfer.ingress.responses import (
    ResponsesStreamRenderer,
    parse_responses_request,
    rename_error,
    responses_param,
    to_chat_request,
    to_response,
)
from uniinfer.ingress.responses_stream import sse
from uniinfer.types import ChatChunk, ChatResponse
from uniinfer.types.chat import AssistantMessage, ImagePart, SystemMessage, ToolMessage, UserMessage

PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": None}

_EVENT_TYPES: dict[str, type[BaseModel]] = {
    get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in get_args(get_args(ResponseStreamEvent)[0])
}


def event_model(event: dict[str, Any]) -> BaseModel:
    """Validate one event strictly as the SDK's model for its type."""
    return _EVENT_TYPES[event["type"]].model_validate(event)


def request(**fields: Any) -> Any:
    return parse_responses_request({"model": "m", "input": "hi", **fields})


def chat_of(**fields: Any) -> Any:
    return to_chat_request(request(**fields))


# --- requests --------------------------------------------------------------------------------


def test_string_input_and_instructions_become_system_and_user_messages() -> None:
    chat = chat_of(instructions="Be brief.", input="hello")
    assert [type(m) for m in chat.messages] == [SystemMessage, UserMessage]
    assert chat.messages[0].content == "Be brief."
    assert chat.messages[1].content == "hello"
    assert chat.model_fields_set == {"model", "messages"}  # nothing else reaches the provider


def test_items_become_messages_with_calls_merged_and_reasoning_dropped() -> None:
    chat = chat_of(
        input=[
            {"role": "user", "content": "weather?"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "think"}]},
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}],
            },
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "c1",
                "name": "get_weather",
                "arguments": "{}",
            },
            {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": '{"a": 1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "rain"}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "and this?"},
                    {"type": "input_image", "image_url": PNG, "detail": "low"},
                ],
            },
        ]
    )
    user, assistant, out1, out2, last = chat.messages
    assert isinstance(user, UserMessage)
    assert isinstance(assistant, AssistantMessage)
    assert assistant.content == "Checking."
    assert [(c.id, c.function.arguments) for c in assistant.tool_calls or ()] == [
        ("c1", "{}"),
        ("c2", '{"a": 1}'),
    ]
    assert isinstance(out1, ToolMessage)
    assert (out1.tool_call_id, out1.content) == ("c1", "sunny")
    assert isinstance(out2, ToolMessage)
    assert out2.content[0].text == "rain"  # type: ignore[union-attr]
    assert isinstance(last, UserMessage)
    image = last.content[1]  # type: ignore[index]
    assert isinstance(image, ImagePart)
    assert (image.image_url.url, image.image_url.detail) == (PNG, "low")


def test_text_between_the_calls_of_one_turn_is_that_turn_s_as_the_output_had_it() -> None:
    """Claude writes text between its calls; a client sends the output items back with the
    outputs after them all: one assistant turn, its order kept (a 400 before)."""

    def said(text: str) -> dict[str, Any]:
        return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}

    chat = chat_of(
        input=[
            {"role": "user", "content": "weather and time?"},
            said("Let me check."),
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            said("And also:"),
            {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "c2", "output": "noon"},
            said("Sunny, at noon."),
        ]
    )
    _user, turn, out1, out2, answer = chat.messages
    assert isinstance(turn, AssistantMessage)
    assert [p.text for p in turn.content] == ["Let me check.", "And also:"]  # type: ignore[union-attr]
    assert [c.id for c in turn.tool_calls or ()] == ["c1", "c2"]
    order = turn.content_blocks or []
    assert [getattr(b, "text", None) or b.id for b in order] == ["Let me check.", "c1", "And also:", "c2"]  # type: ignore[union-attr]
    assert (out1.tool_call_id, out2.tool_call_id) == ("c1", "c2")  # type: ignore[union-attr]
    assert isinstance(answer, AssistantMessage)
    assert answer.content == "Sunny, at noon."  # a new turn once the calls are answered


def test_parameters_are_mapped_to_chat_names() -> None:
    chat = chat_of(
        max_output_tokens=64,
        temperature=0.2,
        top_p=0.9,
        parallel_tool_calls=False,
        user="u1",
        reasoning={"effort": "low", "summary": "auto"},
        text={"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        metadata={"k": "v"},
        store=False,
        stream=True,
    )
    assert chat.max_completion_tokens == 64
    assert (chat.temperature, chat.top_p, chat.parallel_tool_calls, chat.user) == (0.2, 0.9, False, "u1")
    assert chat.reasoning_effort == "low"
    assert chat.response_format.json_schema.schema_ == {"type": "object"}  # type: ignore[union-attr]
    assert chat.response_format.json_schema.strict is True  # type: ignore[union-attr]
    assert chat.tools is not None
    assert chat.tools[0].function.name == "get_weather"
    assert chat.tool_choice.function.name == "get_weather"  # type: ignore[union-attr]
    assert chat.include_usage  # streams always ask for usage
    assert chat.metadata is None
    assert chat.store is None  # echoed only, never sent


def test_allowed_tools_restricts_the_tool_list() -> None:
    other = {**WEATHER, "name": "get_time"}
    chat = chat_of(
        tools=[WEATHER, other],
        tool_choice={
            "type": "allowed_tools",
            "mode": "required",
            "tools": [{"type": "function", "name": "get_time"}],
        },
    )
    assert [t.function.name for t in chat.tools or ()] == ["get_time"]
    assert chat.tool_choice == "required"


def test_tool_options_without_tools_are_not_sent() -> None:
    chat = chat_of(tool_choice="auto", parallel_tool_calls=False)
    assert chat.model_fields_set == {"model", "messages"}


@pytest.mark.parametrize("effort", ["none", "minimal", "xhigh", "max"])
def test_every_reasoning_effort_level_passes_on(effort: str) -> None:
    # "none" is not "the provider's default" (GPT-5's is medium): it goes as it is
    assert chat_of(reasoning={"effort": effort}).reasoning_effort == effort


def test_text_format_text_sends_nothing() -> None:
    chat = chat_of(text={"format": {"type": "text"}, "verbosity": "low"})
    assert chat.response_format is None
    assert chat.verbosity == "low"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"store": True}, "store"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"background": True}, "background"),
        ({"truncation": "auto"}, "truncation"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [WEATHER], "tool_choice": {"type": "file_search"}}, "tool_choice.type"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f1"}]}]},
            "input[0].content[0].file_id",
        ),
        (
            {
                "input": [
                    {
                        "type": "function_call_output",
                        "call_id": "c",
                        "output": [{"type": "input_image", "image_url": PNG}],
                    }
                ]
            },
            "input[0].call_id",  # checked first: no call to answer
        ),
    ],
)
def test_what_needs_state_or_hosted_features_is_refused_naming_the_field(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        chat_of(**fields)
    assert info.value.param == param
    assert info.value.http_status == 400


def test_stateless_refusals_explain_what_to_do() -> None:
    with pytest.raises(UnsupportedFeatureError, match="send the earlier turns") as info:
        chat_of(previous_response_id="resp_1")
    assert info.value.code == "unsupported_feature"
    with pytest.raises(UnsupportedFeatureError, match="Set 'store' to false"):
        chat_of(store=True)
    # Codex's apply_patch (a free-form custom tool) runs on the client: declared as a function
    # tool, it works on every provider (it said hosted tools run on OpenAI's servers)
    custom: Any = {"type": "custom", "name": "apply_patch", "description": "Apply a patch"}
    with pytest.raises(UnsupportedFeatureError, match="declare it as a function tool") as tool:
        chat_of(tools=[custom])
    assert tool.value.param == "tools[0].type"


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ({"tempreature": 1}, "Unknown parameter: 'tempreature'.", "tempreature"),
        (
            {"tools": [{"type": "function", "function": {"name": "f"}}]},
            "Missing required parameter: 'tools[0].name'.",  # a Chat-style tool, as the real API says
            "tools[0].name",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text", "text": "x", "extra": 1}]}]},
            "Unknown parameter: 'input[0].content[0].extra'.",
            "input[0].content[0].extra",
        ),
        (
            {"input": [{"type": "functon_call"}]},
            "'functon_call' is not a known input item type",
            "input[0].type",
        ),
        ({"max_output_tokens": 8}, "greater than or equal to 16", "max_output_tokens"),
        (
            {"input": None},
            "Invalid type for 'input': expected one of a string or an array of objects, but got null instead.",
            "input",
        ),
        (
            {"stream": "yes"},
            "Invalid type for 'stream': expected a boolean, but got a string instead.",
            "stream",
        ),
        ({"temperature": "0.5"}, "expected a number, but got a string instead.", "temperature"),
        ({"max_output_tokens": True}, "expected an integer, but got a boolean instead.", "max_output_tokens"),
        (
            {"parallel_tool_calls": "no"},
            "expected a boolean, but got a string instead.",
            "parallel_tool_calls",
        ),
        (
            {"tools": [{"type": "function", "name": "f", "strict": "yes"}]},
            "Invalid type for 'tools[0].strict': expected a boolean, but got a string instead.",
            "tools[0].strict",
        ),
        (
            {"input": [{"role": "user", "content": 5}]},
            "expected one of a string or an array of objects, but got an integer instead.",
            "input[0].content",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
            "Missing required parameter: 'input[0].content[0].text'.",
            "input[0].content[0].text",
        ),
        (
            {"tool_choice": {"type": "function"}},
            "Missing required parameter: 'tool_choice.name'.",
            "tool_choice.name",
        ),
        (
            {"text": {"format": {"type": "json_schema"}}},
            "Missing required parameter: 'text.format.name'.",
            "text.format.name",
        ),
    ],
)
def test_invalid_requests_name_the_field(body: dict[str, Any], message: str, param: str) -> None:
    with pytest.raises(InvalidRequestError, match=message.replace("(", r"\(").replace("[", r"\[")) as info:
        request(**body)
    assert info.value.param == param


def test_missing_input_is_named() -> None:
    with pytest.raises(InvalidRequestError, match="Missing required parameter: 'input'"):
        parse_responses_request({"model": "m"})


@pytest.mark.parametrize(
    ("items", "message", "param"),
    [
        (
            [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}],
            "No tool output found for function call c1.",
            "input",
        ),
        (
            [
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"role": "user", "content": "next"},
            ],
            "No tool output found for function call c1.",
            "input",
        ),
        (
            [{"type": "function_call_output", "call_id": "nope", "output": "x"}],
            "No tool call found for function call output with call_id nope.",
            "input[0].call_id",
        ),
        (
            [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}],
            "Invalid value: 'output_text'",
            "input[0].content[0].type",
        ),
        (
            [{"role": "system", "content": [{"type": "input_image", "image_url": PNG}]}],
            "Supported values are: 'input_text'",
            "input[0].content[0].type",
        ),
    ],
)
def test_items_that_do_not_pair_up_are_refused(items: list[Any], message: str, param: str) -> None:
    with pytest.raises(InvalidRequestError, match=message.replace(".", r"\.")) as info:
        chat_of(input=items)
    assert info.value.param == param


CALL = {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": [CALL, CALL]}, "input[1].call_id"),
        (
            {
                "input": [
                    CALL,
                    {
                        "type": "function_call_output",
                        "call_id": "c1",
                        "output": [{"type": "input_image", "image_url": PNG}],
                    },
                ]
            },
            "input[1].output[0].type",
        ),
        (
            {"input": [{"role": "assistant", "content": [{"type": "input_image", "image_url": PNG}]}]},
            "input[0].content[0].type",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_url": "https://x/a.pdf"}]}]},
            "input[0].content[0].file_url",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "auto",
                    "tools": [{"type": "function", "name": "nope"}],
                },
            },
            "tool_choice.tools[0].name",
        ),
        ({"input": []}, "input"),
    ],
)
def test_more_requests_that_cannot_be_served_name_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        chat_of(**fields)
    assert info.value.param == param


def test_other_roles_and_parts() -> None:
    chat = chat_of(
        instructions="",
        input=[
            {"role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
            {"role": "system", "content": "sys"},
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_file",
                        "filename": "a.pdf",
                        "file_data": "data:application/pdf;base64,AA==",
                    }
                ],
            },
            {"role": "assistant", "content": "plain"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"role": "user", "content": [{"type": "input_image", "image_url": PNG, "detail": "original"}]},
        ],
    )
    developer, system, user, plain, refused, image = chat.messages
    assert (developer.role, developer.content[0].text) == ("developer", "rules")  # type: ignore[index,union-attr]
    assert (system.role, system.content) == ("system", "sys")
    assert user.content[0].file == {"filename": "a.pdf", "file_data": "data:application/pdf;base64,AA=="}  # type: ignore[index,union-attr]
    assert (plain.content, refused.refusal) == ("plain", "No.")  # type: ignore[union-attr]
    assert image.content[0].image_url.detail == "high"  # type: ignore[index,union-attr]


def test_chat_parameter_names_become_responses_names_in_errors() -> None:
    assert responses_param("max_completion_tokens") == "max_output_tokens"
    assert responses_param("response_format.json_schema.name") == "text.format.json_schema.name"
    assert responses_param("tools[1].function.name") == "tools[1].name"
    assert responses_param("messages[3].content") == "input"
    assert responses_param("structured output (response_format json_schema)") == "text.format"
    error = rename_error(
        UnsupportedParamError("provider 'a' does not support the parameter(s) verbosity", param="verbosity")
    )
    assert (error.param, error.message) == (
        "text.verbosity",
        "provider 'a' does not support the parameter(s) text.verbosity",
    )
    # any error the gateway itself raised, in its message too
    error = rename_error(
        InvalidRequestError(
            "thinking needs 'max_completion_tokens' above 1024", param="max_completion_tokens"
        )
    )
    assert (error.param, error.message) == (
        "max_output_tokens",
        "thinking needs 'max_output_tokens' above 1024",
    )
    upstream = rename_error(
        InvalidRequestError("max_tokens: too big", param="max_tokens", upstream_status=400)
    )
    assert (upstream.param, upstream.message) == (
        "max_output_tokens",
        "max_tokens: too big",
    )  # the provider's own words, the field the client sent


# --- responses -----------------------------------------------------------------------------------


def chat_response(message: dict[str, Any], finish: str = "stop", **usage: Any) -> ChatResponse:
    return ChatResponse.model_validate(
        {
            "id": "chatcmpl-1",
            "model": "gpt-test-2025",
            "choices": [{"message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, **usage},
        }
    )


def test_text_answer_is_a_completed_response_with_usage_and_echoed_parameters() -> None:
    req = request(instructions="Be brief.", temperature=0.5, metadata={"k": "v"}, tools=[WEATHER])
    body = to_response(
        chat_response(
            {"content": "Hello!"},
            prompt_tokens_details={"cached_tokens": 4},
            completion_tokens_details={"reasoning_tokens": 2},
        ),
        req,
    )
    response = Response.model_validate(body)
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text == "Hello!"
    assert response.model == "gpt-test-2025"
    assert (response.instructions, response.temperature, response.top_p) == ("Be brief.", 0.5, 1.0)
    assert response.metadata == {"k": "v"}
    assert response.tool_choice == "auto"
    assert response.tools[0].name == "get_weather"  # type: ignore[union-attr]
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (
        10,
        5,
        15,
    )
    assert response.usage.input_tokens_details.cached_tokens == 4
    assert response.usage.output_tokens_details.reasoning_tokens == 2
    assert body["output"][0]["content"][0] == {
        "type": "output_text",
        "text": "Hello!",
        "annotations": [],
        "logprobs": [],
    }


def test_reasoning_and_tool_calls_become_items() -> None:
    body = to_response(
        chat_response(
            {
                "content": None,
                "reasoning_content": "Need the weather.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            "tool_calls",
        ),
        request(tools=[WEATHER]),
    )
    response = Response.model_validate(body)
    reasoning, call = response.output
    assert reasoning.type == "reasoning"
    assert reasoning.id.startswith("rs_")
    assert reasoning.summary[0].text == "Need the weather."
    assert call.type == "function_call"
    assert call.id is not None
    assert call.id.startswith("fc_")
    assert (call.call_id, call.name, call.arguments, call.status) == (
        "call_1",
        "get_weather",
        "{}",
        "completed",
    )
    assert response.output_text == ""


def test_cut_answer_is_incomplete() -> None:
    response = Response.model_validate(
        to_response(chat_response({"content": "Once upon"}, "length"), request())
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"  # type: ignore[union-attr]
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"loc'}}
    cut_call = Response.model_validate(
        to_response(chat_response({"tool_calls": [call]}, "length"), request())
    )
    assert [(item.type, item.status) for item in cut_call.output] == [
        ("function_call", "incomplete")
    ]  # as streamed


def test_an_empty_image_url_is_named_as_missing_not_as_a_file_id() -> None:
    image = {"type": "input_image", "image_url": "", "detail": "auto"}
    with pytest.raises(InvalidRequestError, match="non-empty 'image_url'") as info:
        chat_of(input=[{"role": "user", "content": [image]}])
    assert info.value.param == "input[0].content[0].image_url"


def test_refusal_is_a_refusal_part() -> None:
    body = to_response(chat_response({"content": None, "refusal": "I can't."}), request())
    assert body["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't."}]
    Response.model_validate(body)


# --- streams -------------------------------------------------------------------------------------


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict[str, Any] | None = None
) -> ChatChunk:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return ChatChunk.model_validate({"id": "c", "model": "gpt-test-2025", "choices": choices, "usage": usage})


USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def render(chunks: list[ChatChunk], **fields: Any) -> list[dict[str, Any]]:
    renderer = ResponsesStreamRenderer(request(**fields))
    events = [e for c in chunks for e in renderer.feed(c)]
    events += renderer.finish()
    for event in events:
        event_model(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_text_stream_events_in_order() -> None:
    events = render(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
            chunk(usage=USAGE),
        ]
    )
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0]["response"]["status"] == "in_progress"
    assert events[0]["response"]["output"] == []
    item_id = events[2]["item"]["id"]
    assert all(e["item_id"] == item_id for e in events[3:8])
    assert events[6]["text"] == "Hello"
    final = Response.model_validate(events[-1]["response"])
    assert final.id == events[0]["response"]["id"]
    assert final.output_text == "Hello"
    assert final.usage is not None
    assert final.usage.input_tokens == 7
    assert final.status == "completed"


def test_reasoning_then_text_then_tool_calls_are_separate_items() -> None:
    events = render(
        [
            chunk({"reasoning_content": "Hmm"}),
            chunk({"content": "Let me check."}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"location":'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]}),
            chunk(
                {
                    "tool_calls": [
                        {"index": 1, "id": "call_b", "function": {"name": "get_weather", "arguments": "{}"}}
                    ]
                }
            ),
            chunk({}, "tool_calls"),
        ],
        tools=[WEATHER],
    )
    added = [e["item"]["type"] for e in events if e["type"] == "response.output_item.added"]
    assert added == ["reasoning", "message", "function_call", "function_call"]
    # each item's events are contiguous: done before the next one is added
    kinds = [e["type"] for e in events if e["type"].startswith("response.output_item")]
    assert kinds == ["response.output_item.added", "response.output_item.done"] * 4
    assert [e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta"] == ["Hmm"]
    args = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["name"], e["arguments"]) for e in args] == [
        ("get_weather", '{"location": "Paris"}'),
        ("get_weather", "{}"),
    ]
    final = Response.model_validate(events[-1]["response"])
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call", "function_call"]
    assert final.output[2].call_id == "call_a"  # type: ignore[union-attr]
    assert json.loads(final.output[2].arguments) == {"location": "Paris"}  # type: ignore[union-attr]


def test_stream_calls_a_server_numbers_alike_are_told_apart_by_their_ids() -> None:
    """Ollama's /v1, sglang and others give every parallel call index 0: each id is a call."""

    def call(**fields: Any) -> ChatChunk:
        return chunk({"tool_calls": [{"index": 0, **fields}]})

    events = render(
        [
            call(id="call_a", function={"name": "get_weather", "arguments": '{"a":'}),
            call(function={"arguments": " 1}"}),
            call(id="call_b", function={"name": "get_weather", "arguments": '{"b": 2}'}),
            chunk({}, "tool_calls"),
        ],
        tools=[WEATHER],
    )
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [e["arguments"] for e in done] == ['{"a": 1}', '{"b": 2}']
    final = Response.model_validate(events[-1]["response"])
    assert [(item.call_id, item.arguments) for item in final.output] == [  # type: ignore[union-attr]
        ("call_a", '{"a": 1}'),
        ("call_b", '{"b": 2}'),
    ]


def test_stream_cut_by_the_token_limit_ends_incomplete() -> None:
    events = render([chunk({"content": "Once"}), chunk({}, "length")])
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-2]["item"]["status"] == "incomplete"


def test_empty_stream_still_answers_with_a_message() -> None:
    events = render([chunk({"role": "assistant"}), chunk({}, "stop")])
    final = Response.model_validate(events[-1]["response"])
    assert final.output_text == ""
    assert final.output[0].type == "message"


def test_usage_falls_back_to_the_gateway_count() -> None:
    renderer = ResponsesStreamRenderer(request())
    renderer.feed(chunk({"content": "x"}, "stop"))
    from uniinfer.types import Usage

    final = renderer.finish(Usage.of(4, 1))[-1]["response"]
    assert final["usage"]["total_tokens"] == 5


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ProviderConnectionError("connection closed before the response was complete"), "server_error"),
        (RateLimitError("slow down"), "rate_limit_exceeded"),
    ],
)
def test_mid_stream_failure_is_response_failed(error: Any, code: str) -> None:
    renderer = ResponsesStreamRenderer(request())
    events = renderer.feed(chunk({"content": "Hel"})) + renderer.fail(error)
    for event in events:
        event_model(event)
    assert [e["type"] for e in events[-2:]] == ["response.output_item.done", "response.failed"]
    assert events[-2]["item"]["status"] == "incomplete"
    failed = Response.model_validate(events[-1]["response"])
    assert failed.status == "failed"
    assert failed.error is not None
    assert (failed.error.code, failed.error.message) == (code, error.message)
    assert failed.output_text == "Hel"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ContextLengthExceededError("prompt too long"), "context_length_exceeded"),
        (ProviderQuotaExceededError("out of credit"), "insufficient_quota"),
    ],
)
def test_a_failure_clients_act_on_keeps_openais_own_code(error: Any, code: str) -> None:
    # beyond the spec's enum, as OpenAI's own failed responses carry them: Codex compacts its
    # history on the first and stops retrying on the second (both were "invalid_prompt" / "rate_limit_exceeded")
    renderer = ResponsesStreamRenderer(request())
    events = renderer.feed(chunk({"content": "Hel"})) + renderer.fail(error)
    assert events[-1]["response"]["error"]["code"] == code


def test_sse_framing_names_each_event() -> None:
    renderer = ResponsesStreamRenderer(request())
    frames = sse(renderer.feed(chunk({"content": "x"}))).decode().split("\n\n")
    assert frames[-1] == ""
    for frame in frames[:-1]:
        event_line, data_line = frame.split("\n")
        assert event_line == "event: " + json.loads(data_line.removeprefix("data: "))["type"]
