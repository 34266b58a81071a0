"""Interleaved text and tool calls keep their order on Bedrock Converse and in Gemini requests.

Bedrock's answer (Converse content blocks) keeps the order OpenAI's flat message loses as
``ResponseMessage.content_blocks``; an assistant turn the Anthropic Messages ingress kept in its
client's order (``AssistantMessage.content_blocks``) goes to Bedrock (``toolUse`` / ``text``
blocks, cache points right after what they close) and to Gemini (``text`` / ``functionCall``
parts, thought signatures on their calls) in that order while it still is the message's
(:func:`uniinfer.providers.translation.turn_in_order`), else in OpenAI's.
"""

from __future__ import annotations

from typing import Any

import orjson

from tests.fakes.bedrock import validate
from tests.providers.test_bedrock import converse, make_adapter, parse, sent
from tests.providers.test_bedrock_cache import LEGACY, POINT, SONNET_45
from uniinfer.ingress.anthropic import MessagesRequest, parse_anthropic, to_chat_request
from uniinfer.providers.gemini_request import call_id, chat_payload
from uniinfer.providers.translation import turn_in_order
from uniinfer.types import ChatRequest
from uniinfer.types.chat import AssistantMessage, RefusalPart, SignedThinking

SCHEMA = {"type": "object", "properties": {"location": {"type": "string"}}}
TOOLS = [{"name": "get_weather", "input_schema": SCHEMA}, {"name": "now", "input_schema": SCHEMA}]
PARIS = {"location": "Paris"}
EPHEMERAL = {"type": "ephemeral"}


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **extra}


def use(id_: str, name: str = "get_weather", **extra: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": id_, "name": name, "input": PARIS, **extra}


def messages_request(*blocks: dict[str, Any], **fields: Any) -> ChatRequest:
    """What the Messages ingress makes of a tool loop whose assistant turn is ``blocks``."""
    ids = [b["id"] for b in blocks if b["type"] == "tool_use"]
    results = [{"type": "tool_result", "tool_use_id": i, "content": "sunny"} for i in ids]
    turns = [
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": list(blocks)},
        {"role": "user", "content": results},
    ]
    body = {"model": "m", "max_tokens": 256, "messages": turns, "tools": TOOLS, **fields}
    request = to_chat_request(parse_anthropic(MessagesRequest, body))
    assert isinstance(request.messages[1], AssistantMessage)
    return request


def rewritten(request: ChatRequest, **update: Any) -> ChatRequest:
    """``request`` with its assistant turn changed as a stage might (its order left stale)."""
    turn = request.messages[1].model_copy(update=update)
    return request.model_copy(update={"messages": [request.messages[0], turn, *request.messages[2:]]})


# --- the shared check ---------------------------------------------------------------------------


def test_an_order_holds_while_it_still_is_the_turn() -> None:
    request = messages_request(
        text("Let me check."), use("toolu_1"), text("And also:"), use("toolu_2", "now")
    )
    turn = request.messages[1]
    assert isinstance(turn, AssistantMessage)
    assert isinstance(turn.content, list)
    assert turn.tool_calls is not None
    order = [turn.content[0], turn.tool_calls[0], turn.content[1], turn.tool_calls[1]]
    assert turn_in_order(turn) == order
    # in OpenAI's order already: nothing kept, nothing to follow
    plain = messages_request(text("Let me check."), use("toolu_1")).messages[1]
    assert isinstance(plain, AssistantMessage)
    assert turn_in_order(plain) is None
    # rewritten on the way: a text, a call dropped, a refusal part added
    for stale in (
        turn.model_copy(update={"content": "[redacted]"}),
        turn.model_copy(update={"tool_calls": turn.tool_calls[:1]}),
        turn.model_copy(update={"content": [*turn.content, RefusalPart(type="refusal", refusal="no")]}),
    ):
        assert turn_in_order(stale) is None


# --- Bedrock: the answer ------------------------------------------------------------------------


#: Converse answers in OpenAI's order (reasoning, text, then the calls).
IN_OPENAI_ORDER: list[list[dict[str, Any]]] = [
    [{"text": "Hello"}, {"text": " world"}],
    [
        {"reasoningContent": {"reasoningText": {"text": "Need weather.", "signature": "sig"}}},
        {"text": "Let me "},
        {"text": "check."},
        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {}}},
        {"text": ""},
        {"toolUse": {"toolUseId": "tooluse_2", "name": "now", "input": {}}},
    ],
    [{"toolUse": {"toolUseId": "tooluse_1", "name": "now", "input": {}}}],
]


def test_a_bedrock_answer_keeps_its_interleaved_blocks_in_order() -> None:
    body = converse(
        [
            {"reasoningContent": {"reasoningText": {"text": "Weather first.", "signature": "sig"}}},
            {"text": "Let me check."},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": PARIS}},
            {"text": "And "},
            {"text": "also:"},  # adjacent texts are one, as a stream shows them
            {"text": ""},
            {"toolUse": {"toolUseId": "tooluse_2", "name": "now", "input": {}}},
            {"text": "Done."},
        ],
        stop="tool_use",
    )
    response = make_adapter().parse_chat(body, SONNET_45)
    msg = response.choices[0].message
    calls = msg.tool_calls or []
    assert (msg.content, msg.reasoning_content) == ("Let me check.And also:Done.", "Weather first.")
    assert [c.id for c in calls] == ["tooluse_1", "tooluse_2"]
    # Claude's signed reasoning is carried, in its place (to go back in a tool loop)
    signed = SignedThinking(type="thinking", thinking="Weather first.", signature="sig")
    assert msg.signed_thinking == [signed]
    assert msg.content_blocks == [signed, "Let me check.", calls[0], "And also:", calls[1], "Done."]
    # no other model's reasoning is taken for Claude's signed thinking
    assert parse(body).choices[0].message.signed_thinking is None
    # OpenAI's JSON is unchanged: the joined text and both calls, no new field
    dumped = orjson.loads(response.model_dump_json())["choices"][0]["message"]
    assert set(dumped) == {"role", "content", "refusal", "tool_calls", "reasoning_content", "annotations"}
    # blocks in OpenAI's order (reasoning, text, then the calls) need no second copy
    for plain in IN_OPENAI_ORDER:
        assert parse(converse(plain)).choices[0].message.content_blocks is None


# --- Bedrock: the request -----------------------------------------------------------------------


def converse_use(id_: str, name: str = "get_weather") -> dict[str, Any]:
    return {"toolUse": {"toolUseId": id_, "name": name, "input": PARIS}}


def test_a_turn_reaches_bedrock_in_its_client_s_order_with_its_cache_points() -> None:
    long_id = "toolu_" + "x" * 70  # over Bedrock's 64: shortened, the same as its result's
    request = messages_request(
        text("Let me check."),
        use("toolu_1", cache_control=EPHEMERAL),
        text("   "),  # blank: Converse refuses it
        text("And also:", cache_control=EPHEMERAL),
        use(long_id, "now"),
    )
    body = sent(request, SONNET_45)
    validate(body, SONNET_45)  # as Bedrock checks it (the fake's rules)
    turn, results = body["messages"][1]["content"], body["messages"][2]["content"]
    word_id = results[1]["toolResult"]["toolUseId"]
    assert word_id != long_id
    assert turn == [
        {"text": "Let me check."},
        converse_use("toolu_1"),
        POINT,  # right after the block it closes
        {"text": "And also:"},
        POINT,
        converse_use(word_id, "now"),
    ]
    # without caching (a model that takes no cache point), the same order and no cache point
    assert [next(iter(b)) for b in sent(request, LEGACY)["messages"][1]["content"]] == [
        "text",
        "toolUse",
        "text",
        "toolUse",
    ]
    # an order a stage made stale is not followed: OpenAI's, the text, then the calls
    stale = sent(rewritten(request, content="[redacted]"), LEGACY)["messages"][1]["content"]
    assert stale == [{"text": "[redacted]"}, converse_use("toolu_1"), converse_use(word_id, "now")]
    # Claude's signed thinking goes back to Claude on Bedrock where it stood (interleaved),
    # when the request thinks
    turn = (
        use("toolu_1"),
        {"type": "thinking", "thinking": "And the time.", "signature": "sig"},
        text("And also:"),
        use("toolu_2", "now"),
    )
    signed = messages_request(*turn, thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=4096)
    assert sent(signed)["messages"][1]["content"] == [
        converse_use("toolu_1"),
        {"reasoningContent": {"reasoningText": {"text": "And the time.", "signature": "sig"}}},
        {"text": "And also:"},
        converse_use("toolu_2", "now"),
    ]
    # nor when the request does not think (Claude would ignore it; no other model takes thinking,
    # see test_bedrock_thinking.py for reasoning taken only from Claude)
    without = [converse_use("toolu_1"), {"text": "And also:"}, converse_use("toolu_2", "now")]
    assert sent(signed.model_copy(update={"reasoning_effort": None}))["messages"][1]["content"] == without


# --- Gemini: the request ------------------------------------------------------------------------


def model_parts(request: ChatRequest, model: str = "gemini-2.5-flash") -> list[dict[str, Any]]:
    contents = chat_payload(request, "gemini", model)["contents"]
    assert contents[1]["role"] == "model"
    parts: list[dict[str, Any]] = contents[1]["parts"]
    return parts


def test_a_turn_reaches_gemini_in_its_client_s_order_signatures_on_their_calls() -> None:
    signed_id = call_id("c2lnbmF0dXJl")  # Gemini 3's signature, carried in the first call's id
    request = messages_request(
        text("Let me check."), use(signed_id), text("And also:"), use("toolu_2", "now")
    )
    weather = {"functionCall": {"name": "get_weather", "args": PARIS}, "thoughtSignature": "c2lnbmF0dXJl"}
    now = {"functionCall": {"name": "now", "args": PARIS}}
    assert model_parts(request, "gemini-3-flash-preview") == [
        {"text": "Let me check."},
        weather,
        {"text": "And also:"},
        now,
    ]
    # a Gemini 3 step whose first call has no signature gets the dummy on that call only
    unsigned = messages_request(
        text("Let me check."), use("toolu_1"), text("And also:"), use("toolu_2", "now")
    )
    parts = model_parts(unsigned, "gemini-3-flash-preview")
    assert [p.get("thoughtSignature") for p in parts] == [
        None,
        "skip_thought_signature_validator",
        None,
        None,
    ]
    # stale: OpenAI's shape, the text joined first
    assert model_parts(rewritten(request, content="[redacted]")) == [
        {"text": "[redacted]"},
        weather,
        now,
    ]


def test_gemini_gets_adjacent_texts_as_one_part_and_no_signed_thinking() -> None:
    request = messages_request(
        use("toolu_1"),
        text("Sunny. "),
        {"type": "thinking", "thinking": "And the time.", "signature": "sig"},
        text("Now the time:"),
        use("toolu_2", "now"),
    )
    assert model_parts(request) == [
        {"functionCall": {"name": "get_weather", "args": PARIS}},
        {"text": "Sunny. Now the time:"},
        {"functionCall": {"name": "now", "args": PARIS}},
    ]
