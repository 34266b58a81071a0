"""What the provider tests share: feeding a stream decoder byte by byte, reassembling chunks, and
a conversation whose tool results come back out of order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from uniinfer.providers.base import StreamDecoder
from uniinfer.types import ChatChunk, RawEvents, StreamItem


def modelled(items: Iterable[StreamItem]) -> list[ChatChunk]:
    """A decoder's output as chunks (events passed through as JSON are validated here)."""
    return [
        c
        for item in items
        for c in (
            [ChatChunk.model_validate_json(json) for json in item.payloads()]
            if isinstance(item, RawEvents)
            else [item]
        )
    ]


def decode_bytewise(decoder: StreamDecoder, data: bytes) -> list[ChatChunk]:
    """Every chunk ``decoder`` yields when ``data`` arrives one byte at a time, then its close()."""
    chunks = [c for i in range(len(data)) for c in decoder.feed(data[i : i + 1])]
    return modelled([*chunks, *decoder.close()])


def reassemble(chunks: list[ChatChunk]) -> dict[str, Any]:
    """What a client builds from the chunks (the OpenAI accumulation rules)."""
    text, thinking, finish = "", "", None
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            thinking += choice.delta.reasoning_content or ""
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or ():
                slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                slot["id"] += call.id or ""
                if call.function is not None:
                    slot["name"] += call.function.name or ""
                    slot["arguments"] += call.function.arguments or ""
    return {"text": text, "thinking": thinking, "finish": finish, "calls": calls}


def results_out_of_order() -> list[dict[str, Any]]:
    """Two calls to one function (Paris, then Rome), their results sent back Rome first: OpenAI's
    format pairs them by id, so a client may; a provider that pairs by position must reorder."""

    def call(i: str, city: str) -> dict[str, Any]:
        arguments = f'{{"city": "{city}"}}'
        return {"id": i, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}

    return [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "tool_calls": [call("call_A", "Paris"), call("call_B", "Rome")]},
        {"role": "tool", "tool_call_id": "call_B", "content": "Rome 30C"},
        {"role": "tool", "tool_call_id": "call_A", "content": "Paris 21C"},
    ]
