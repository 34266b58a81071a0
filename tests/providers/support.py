"""What the provider tests share: feeding a stream decoder byte by byte, and reassembling chunks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from uniinfer.providers.base import StreamDecoder
from uniinfer.types import ChatChunk, RawChunk, StreamItem


def modelled(items: Iterable[StreamItem]) -> list[ChatChunk]:
    """A decoder's output as chunks (events passed through as JSON are validated here)."""
    return [item.chunk() if isinstance(item, RawChunk) else item for item in items]


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
