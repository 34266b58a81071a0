"""Claude's signed reasoning on Bedrock, end to end.

A Claude Code-style tool loop with thinking, through the official anthropic SDK and the real
server to the Bedrock fake: the thinking (and redacted thinking) blocks Bedrock signs reach the
client whole, go back to Bedrock unmodified as ``reasoningContent``, and thinking stays on for the
turn that answers the tool (it used to be left out, as if the history could not carry it). The
fake checks every signature it is sent back, as Claude does.
"""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tests.fakes.anthropic import REDACTED_DATA, sign
from tests.fakes.bedrock import stream_events
from tests.providers.bedrock_server import BedrockServer, bedrock_server
from tests.providers.test_bedrock import make_adapter

SONNET = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
THINKING = {"type": "enabled", "budget_tokens": 2048}
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
}
ASK = {"role": "user", "content": "weather in Paris?"}


async def first_turn(server: BedrockServer, model: str, *, streamed: bool) -> list[Any]:
    """The assistant's content blocks for ``ASK``, as the SDK hands them to its caller."""
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": 4096,
        "thinking": THINKING,
        "tools": [WEATHER],
        "messages": [ASK],
    }
    if not streamed:
        return list((await server.anthropic.messages.create(**params)).content)
    async with server.anthropic.messages.stream(**params) as stream:
        return list((await stream.get_final_message()).content)


def answering(content: list[Any], call_id: str) -> list[dict[str, Any]]:
    """The conversation that answers the call, the assistant turn sent back as it came."""
    result = {"type": "tool_result", "tool_use_id": call_id, "content": "21 degrees"}
    return [ASK, {"role": "assistant", "content": content}, {"role": "user", "content": [result]}]


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
async def test_a_tool_loop_keeps_thinking_on_with_its_signed_reasoning_sent_back(streamed: bool) -> None:
    async with bedrock_server() as server:
        model = f"bedrock/tool-{SONNET}"
        content = await first_turn(server, model, streamed=streamed)
        assert [b.type for b in content] == ["thinking", "tool_use"]
        thought = content[0]
        assert thought.thinking == "The user wants an echo."
        assert thought.signature == sign(thought.thinking)  # Bedrock's own, whole

        raw = await server.anthropic.messages.with_raw_response.create(
            model=model,
            max_tokens=4096,
            thinking=THINKING,  # type: ignore[arg-type]
            tools=[WEATHER],  # type: ignore[list-item]
            messages=answering(content, content[1].id),  # type: ignore[arg-type]
        )
        answer = await raw.parse()
        assert "thinking" not in raw.headers.get("x-uniinfer-dropped-params", "")
        assert [b.type for b in answer.content] == ["thinking", "text"]
        sent = server.last()
        assert sent["additionalModelRequestFields"]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
        turn = sent["messages"][1]["content"]
        assert turn[0] == {
            "reasoningContent": {"reasoningText": {"text": thought.thinking, "signature": thought.signature}}
        }
        assert "toolUse" in turn[1]


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
async def test_redacted_reasoning_reaches_the_client_and_goes_back_whole(streamed: bool) -> None:
    async with bedrock_server() as server:
        model = f"bedrock/tool-redact-{SONNET}"
        content = await first_turn(server, model, streamed=streamed)
        assert [b.type for b in content] == ["thinking", "redacted_thinking", "tool_use"]
        assert content[1].data == REDACTED_DATA

        answer = await server.anthropic.messages.create(
            model=model,
            max_tokens=4096,
            thinking=THINKING,  # type: ignore[arg-type]
            tools=[WEATHER],  # type: ignore[list-item]
            messages=answering(content, content[2].id),  # type: ignore[arg-type]
        )
        assert answer.content[0].type == "thinking"
        turn = server.last()["messages"][1]["content"]
        assert turn[1] == {"reasoningContent": {"redactedContent": REDACTED_DATA}}


async def test_changed_reasoning_is_bedrock_s_400_in_anthropic_s_shape() -> None:
    async with bedrock_server() as server:
        model = f"bedrock/tool-{SONNET}"
        content = await first_turn(server, model, streamed=False)
        changed = [
            {"type": "thinking", "thinking": "Something else.", "signature": content[0].signature},
            content[1],
        ]
        with pytest.raises(anthropic.BadRequestError) as caught:
            await server.anthropic.messages.create(
                model=model,
                max_tokens=4096,
                thinking=THINKING,  # type: ignore[arg-type]
                tools=[WEATHER],  # type: ignore[list-item]
                messages=answering(changed, content[1].id),  # type: ignore[arg-type]
            )
        assert "Invalid `signature` in `thinking` block" in str(caught.value)


async def test_an_openai_client_s_tool_loop_still_goes_without_thinking() -> None:
    """OpenAI's shape has no place for a signature: the turn answering a tool goes without
    thinking, and the header says so (as before)."""
    async with bedrock_server() as server:
        model = f"bedrock/tool-{SONNET}"
        tools = [
            {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}}
        ]
        first = await server.openai.chat.completions.create(
            model=model,
            messages=[ASK],  # type: ignore[list-item]
            tools=tools,  # type: ignore[arg-type]
            reasoning_effort="low",
        )
        message = first.choices[0].message
        assert message.tool_calls
        call = message.tool_calls[0]
        raw = await server.openai.chat.completions.with_raw_response.create(
            model=model,
            messages=[  # type: ignore[list-item]
                ASK,
                message.model_dump(
                    exclude_none=True, exclude={"reasoning_content", "annotations", "refusal"}
                ),
                {"role": "tool", "tool_call_id": call.id, "content": "21 degrees"},
            ],
            tools=tools,  # type: ignore[arg-type]
            reasoning_effort="low",
        )
        assert "reasoning_effort" in raw.headers["x-uniinfer-dropped-params"]
        assert "thinking" not in server.last().get("additionalModelRequestFields", {})


@pytest.mark.parametrize(("model", "signs"), [(SONNET, True), ("openai.gpt-oss-120b-1:0", False)])
def test_only_claude_s_streamed_reasoning_is_taken_for_signed_thinking(model: str, signs: bool) -> None:
    message = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "Hm.", "signature": sign("Hm.")}}},
                    {"reasoningContent": {"redactedContent": REDACTED_DATA}},
                    {"text": "Hi."},
                ],
            }
        },
        "stopReason": "end_turn",
        "usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7},
        "metrics": {"latencyMs": 9},
    }
    decoder = make_adapter().stream_decoder(model)
    chunks = [c for frame in stream_events(message) for c in decoder.feed(frame)] + decoder.close()
    signed = [t for c in chunks if c.choices for t in c.choices[0].delta.signed_thinking or ()]
    if signs:
        assert [(t.type, t.signature, t.data) for t in signed] == [
            ("thinking", sign("Hm."), ""),
            ("redacted_thinking", "", REDACTED_DATA),
        ]
    else:
        assert signed == []
    assert "".join(c.choices[0].delta.reasoning_content or "" for c in chunks if c.choices) == "Hm."
