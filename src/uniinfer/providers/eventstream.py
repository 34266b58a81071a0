"""Bedrock's streamed answers: ``application/vnd.amazon.eventstream`` frames to chat chunks.

``ConverseStream`` (like every AWS streaming response) is a sequence of binary
messages, big-endian throughout (https://docs.aws.amazon.com/transcribe/latest/dg/event-stream.html,
https://docs.aws.amazon.com/lexv2/latest/dg/event-stream-encoding.html)::

    total length u32 | headers length u32 | prelude CRC32 u32 | headers | payload | message CRC32 u32

The prelude CRC covers the two lengths, the message CRC every byte before it
(CRC32 as in gzip: :func:`zlib.crc32`). The prelude CRC is checked before the
lengths are trusted, so a corrupted length never makes the decoder wait for
gigabytes. A header is: name length u8, name (UTF-8), value type u8, value::

    0 true, 1 false (no value bytes)  2 byte  3 short  4 int  5 long
    6 bytes, 7 string (u16 length + data)  8 timestamp (i64 ms)  9 UUID (16 bytes)

:class:`EventStreamDecoder` is pure and safe at any byte boundary: ``feed``
takes whatever slice of the body arrived and returns the messages completed by it.

:class:`ConverseStreamDecoder` turns the ConverseStream events
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html)
into OpenAI chunks: ``messageStart`` (the role chunk), ``contentBlockStart``
(sent for tool calls only: a tool call delta with id, name and ``""`` arguments,
numbered 0, 1, ... in start order), ``contentBlockDelta`` (``text``,
``toolUse.input`` argument pieces, ``reasoningContent.text``; Claude's reasoning
``signature``, which completes the reasoning streamed so far, and ``redactedContent``
become a chunk whose ``signed_thinking`` carries them, as the Anthropic adapter's do),
``contentBlockStop``, ``messageStop`` (the finish chunk), then ``metadata``
(usage, emitted by ``close()`` as a final chunk with empty ``choices``).
Bedrock always sends the last two, so a stream missing either was cut: a
ProviderConnectionError. ``exception`` frames raise the error their
``:exception-type`` maps to; a CRC mismatch is a ProviderResponseError.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from uniinfer.errors import ProviderConnectionError, ProviderResponseError, UniInferError
from uniinfer.providers.base import ProviderAdapter, chunk_id, loads, raise_after
from uniinfer.providers.bedrock_response import finish_reason, matched_stop, usage
from uniinfer.types import ChatChunk, Usage
from uniinfer.types.chat import (
    ChunkChoice,
    ChunkDelta,
    FinishReason,
    FunctionCallDelta,
    SignedThinking,
    ToolCallDelta,
)

__all__ = [
    "STREAM_STATUS",
    "ConverseStreamDecoder",
    "EventMessage",
    "EventStreamDecoder",
    "EventStreamError",
    "HeaderValue",
]

Json = dict[str, Any]

HeaderValue = bool | int | bytes | str
_PRELUDE = struct.Struct(">III")
_CRC = struct.Struct(">I")
_OVERHEAD = _PRELUDE.size + _CRC.size  # 16 bytes around headers + payload
# The limits botocore's parser enforces (botocore/eventstream.py).
_MAX_HEADERS = 128 * 1024
_MAX_PAYLOAD = 24 * 1024 * 1024
#: value type -> fixed-size struct of its value
_FIXED: Mapping[int, struct.Struct] = {
    2: struct.Struct(">b"),
    3: struct.Struct(">h"),
    4: struct.Struct(">i"),
    5: struct.Struct(">q"),
    8: struct.Struct(">q"),
}
_LENGTH = struct.Struct(">H")


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (bad CRC, impossible length, bad header).

    ``decoded``: the whole messages the same read held before the fault, still valid."""

    decoded: list[EventMessage]

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.decoded = []


@dataclass(frozen=True, slots=True)
class EventMessage:
    """One decoded message: its headers and its raw payload."""

    headers: Mapping[str, HeaderValue] = field(default_factory=dict)
    payload: bytes = b""

    def header(self, name: str) -> str | None:
        """A string header's value (``:event-type``, ``:message-type``...), else None."""
        value = self.headers.get(name)
        return value if isinstance(value, str) else None


class EventStreamDecoder:
    """Incremental decoder: ``feed`` returns the complete messages so far."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of a message that has not been completed yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[EventMessage]:
        self._buf += data
        messages: list[EventMessage] = []
        start = 0
        try:
            while len(self._buf) - start >= _PRELUDE.size:
                total = _check_prelude(self._buf, start)
                if len(self._buf) - start < total:
                    break
                messages.append(_message(memoryview(self._buf)[start : start + total]))
                start += total
        except EventStreamError as exc:
            exc.decoded = messages  # the messages before the fault go with it
            raise
        if start:
            del self._buf[:start]
        return messages


def _check_prelude(buf: bytearray, start: int) -> int:
    """The total length of the message at ``start``, once its prelude proved sane."""
    total, headers_len, crc = _PRELUDE.unpack_from(buf, start)
    if zlib.crc32(buf[start : start + 8]) != crc:
        raise EventStreamError("prelude CRC mismatch: the event stream is corrupted")
    if headers_len > _MAX_HEADERS or total < _OVERHEAD + headers_len:
        raise EventStreamError(f"impossible lengths in prelude (total {total}, headers {headers_len})")
    if total - _OVERHEAD - headers_len > _MAX_PAYLOAD:
        raise EventStreamError(f"payload of {total - _OVERHEAD - headers_len} bytes exceeds the limit")
    return int(total)


def _message(frame: memoryview) -> EventMessage:
    (crc,) = _CRC.unpack_from(frame, len(frame) - _CRC.size)
    if zlib.crc32(frame[: -_CRC.size]) != crc:
        raise EventStreamError("message CRC mismatch: the event stream is corrupted")
    (headers_len,) = _CRC.unpack_from(frame, 4)
    body_start = _PRELUDE.size + headers_len
    headers = _headers(bytes(frame[_PRELUDE.size : body_start]))
    return EventMessage(headers, bytes(frame[body_start : -_CRC.size]))


def _headers(data: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    pos = 0
    try:
        while pos < len(data):
            size = data[pos]
            name = data[pos + 1 : pos + 1 + size].decode("utf-8")
            pos += 1 + size
            value, pos = _value(data, data[pos], pos + 1)
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"malformed event stream headers ({exc})") from exc
    if pos != len(data):
        raise EventStreamError("event stream headers overrun their declared length")
    return headers


def _value(data: bytes, kind: int, pos: int) -> tuple[HeaderValue, int]:
    """The header value of type ``kind`` at ``pos`` and the position after it."""
    if kind in (0, 1):
        return kind == 0, pos
    fixed = _FIXED.get(kind)
    if fixed is not None:
        return int(fixed.unpack_from(data, pos)[0]), pos + fixed.size
    if kind in (6, 7):
        (length,) = _LENGTH.unpack_from(data, pos)
        raw = data[pos + 2 : pos + 2 + length]
        if len(raw) != length:
            raise EventStreamError("event stream header value is truncated")
        return (raw.decode("utf-8") if kind == 7 else raw), pos + 2 + length
    if kind == 9:
        raw = data[pos : pos + 16]
        if len(raw) != 16:
            raise EventStreamError("event stream UUID header is truncated")
        return raw, pos + 16
    raise EventStreamError(f"unknown event stream header value type {kind}")


#: Stream ``:exception-type`` (a ConverseStreamOutput member) -> the HTTP status it documents.
STREAM_STATUS: Mapping[str, int] = {
    "validationException": 400,
    "throttlingException": 429,
    "modelStreamErrorException": 424,
    "internalServerException": 500,
    "serviceUnavailableException": 503,
}


# --- stream ------------------------------------------------------------------------------


class ConverseStreamDecoder:
    """Event-stream frames -> OpenAI chunks; tool calls numbered 0, 1, ... as their blocks start."""

    __slots__ = (
        "_adapter",
        "_blocks",
        "_created",
        "_done",
        "_frames",
        "_id",
        "_model",
        "_signs",
        "_unfed",
        "_usage",
    )

    def __init__(self, adapter: ProviderAdapter, model: str) -> None:
        self._adapter = adapter
        self._frames = EventStreamDecoder()
        self._id = chunk_id()
        self._model = model
        #: Claude signs its reasoning (no other model's is taken for signed thinking)
        self._signs = "anthropic." in model
        self._created = int(time.time())
        #: contentBlockIndex -> tool call index
        self._blocks: dict[int, int] = {}
        #: the tool blocks no input has come for yet: a call without arguments streams none
        self._unfed: set[int] = set()
        self._done = False  # messageStop seen
        self._usage: Usage | None = None  # metadata seen

    def feed(self, data: bytes) -> list[ChatChunk]:
        name = self._adapter.name
        fault: EventStreamError | None = None
        try:
            messages = self._frames.feed(data)
        except EventStreamError as exc:
            fault, messages = exc, exc.decoded
        out: list[ChatChunk] = []
        try:
            for m in messages:
                chunk = self._message(m)
                if chunk is not None:
                    out.append(chunk)
            if fault is not None:
                raise ProviderResponseError(f"{name}: {fault}", provider=name) from fault
        except UniInferError as exc:
            raise_after(out, exc)  # the events before the error go with it
        return out

    def close(self) -> list[ChatChunk]:
        name = self._adapter.name
        if self._frames.pending:
            raise ProviderConnectionError(
                f"{name}: the stream ended in the middle of an event", provider=name
            )
        if not self._done or self._usage is None:
            missing = "the metadata event" if self._done else "messageStop"
            raise ProviderConnectionError(f"{name}: the stream ended before {missing}", provider=name)
        return [self._chunk(None, usage=self._usage)]

    def _message(self, message: EventMessage) -> ChatChunk | None:
        kind = message.header(":message-type")
        if kind in ("exception", "error"):
            raise self._stream_error(message)
        if kind != "event":
            return None
        payload = loads(message.payload, self._adapter.name) if message.payload else {}
        if not isinstance(payload, dict):
            raise self._bad(message)
        try:
            return self._event(message.header(":event-type"), payload)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._bad(message) from exc

    def _event(self, event: str | None, payload: Json) -> ChatChunk | None:
        if event == "messageStart":
            return self._chunk(ChunkDelta(role="assistant", content=""))
        if event == "contentBlockStart":
            return self._block_start(payload["contentBlockIndex"], payload["start"])
        if event == "contentBlockDelta":
            return self._block_delta(payload["contentBlockIndex"], payload["delta"])
        if event == "messageStop":
            self._done = True
            finish = finish_reason(payload["stopReason"], self._adapter.name)
            return self._chunk(ChunkDelta(), finish=finish, stop_sequence=matched_stop(payload))
        if event == "contentBlockStop":
            return self._block_stop(payload["contentBlockIndex"])
        if event == "metadata":
            self._usage = usage(payload["usage"])
        return None  # event types added later

    def _block_start(self, index: int, start: Json) -> ChatChunk | None:
        use = start.get("toolUse")
        if not isinstance(use, dict):
            return None
        k = self._blocks[index] = len(self._blocks)
        self._unfed.add(index)
        function = FunctionCallDelta(name=use["name"], arguments="")
        call = ToolCallDelta(index=k, id=use["toolUseId"], type="function", function=function)
        return self._chunk(ChunkDelta(tool_calls=[call]))

    def _block_stop(self, index: int) -> ChatChunk | None:
        """A tool call that streamed no input (a tool without parameters: ConverseStream sends
        the block's start and stop only) gets ``{}``, as its answer unstreamed has."""
        if index not in self._unfed:
            return None
        self._unfed.discard(index)
        call = ToolCallDelta(index=self._blocks[index], function=FunctionCallDelta(arguments="{}"))
        return self._chunk(ChunkDelta(tool_calls=[call]))

    def _block_delta(self, index: int, delta: Json) -> ChatChunk | None:
        if delta.get("text"):
            return self._chunk(ChunkDelta(content=delta["text"]))
        piece = (delta.get("toolUse") or {}).get("input")
        if piece and index in self._blocks:
            self._unfed.discard(index)
            call = ToolCallDelta(index=self._blocks[index], function=FunctionCallDelta(arguments=piece))
            return self._chunk(ChunkDelta(tool_calls=[call]))
        reasoning = delta.get("reasoningContent") or {}
        if reasoning.get("text"):
            return self._chunk(ChunkDelta(reasoning_content=reasoning["text"]))
        if not self._signs:
            return None
        if reasoning.get("signature"):  # the reasoning block is complete: its signature comes last
            signed = SignedThinking(type="thinking", signature=str(reasoning["signature"]))
            return self._chunk(ChunkDelta(signed_thinking=[signed]))
        if reasoning.get("redactedContent"):
            redacted = SignedThinking(type="redacted_thinking", data=str(reasoning["redactedContent"]))
            return self._chunk(ChunkDelta(signed_thinking=[redacted]))
        return None  # citations

    def _chunk(
        self,
        delta: ChunkDelta | None,
        *,
        finish: FinishReason | None = None,
        usage: Usage | None = None,
        stop_sequence: str | None = None,
    ) -> ChatChunk:
        choices = (
            []
            if delta is None
            else [ChunkChoice(delta=delta, finish_reason=finish, stop_sequence=stop_sequence)]
        )
        return ChatChunk(id=self._id, created=self._created, model=self._model, choices=choices, usage=usage)

    def _bad(self, message: EventMessage) -> ProviderResponseError:
        name = self._adapter.name
        return ProviderResponseError(
            f"{name}: unexpected {message.header(':event-type')} event shape",
            provider=name,
            upstream_body=message.payload[:512].decode("utf-8", "replace"),
        )

    def _stream_error(self, message: EventMessage) -> UniInferError:
        """``exception`` frames name a modeled error; ``error`` frames carry code and message headers."""
        member = message.header(":exception-type") or message.header(":error-code") or ""
        member = member[:1].lower() + member[1:]
        body = message.payload
        if message.header(":message-type") == "error":
            body = orjson.dumps({"message": message.header(":error-message") or "stream error"})
        headers = {"x-amzn-errortype": member[:1].upper() + member[1:]}
        return self._adapter.parse_error(STREAM_STATUS.get(member, 500), headers, body)
