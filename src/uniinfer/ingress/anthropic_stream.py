"""Anthropic Messages streaming: OpenAI-shaped chunks in, Anthropic SSE events out.

The sequence is the real API's
(https://docs.anthropic.com/en/docs/build-with-claude/streaming)::

    message_start, ping,
    (content_block_start, content_block_delta..., content_block_stop) per block,
    message_delta, message_stop

Blocks are numbered 0, 1, ... in order of appearance; a block of another
kind (text, thinking, or a tool call of a new index) closes the open one.
``reasoning_content`` streams as a ``thinking`` block (``thinking_delta``).
When the thinking was signed (an Anthropic upstream: the chunk's
:attr:`~uniinfer.types.chat.ChunkDelta.signed_thinking`), its signature comes
as a ``signature_delta`` just before the block's ``content_block_stop``, as
the API streams it, and a ``redacted_thinking`` block comes whole in its
``content_block_start``; other providers' thinking keeps an empty
``signature`` and gets no ``signature_delta`` (see
:mod:`~uniinfer.ingress.anthropic_response`). ``content`` streams as a ``text`` block
(``text_delta``), each tool call as a ``tool_use`` block whose arguments
stream as ``input_json_delta`` ``partial_json``. A provider that interleaves
the arguments of parallel calls is the one case the sequence cannot follow:
arguments for an already closed tool block are still sent, with that block's
index, so that a client assembling by index (the SDKs do) loses nothing.

Usage is known only at the end for most providers: ``message_start`` says
what is known then, and the final ``message_delta`` carries the full usage
(``input_tokens``, both cache counts and ``output_tokens``). An upstream that
reports its input counts when its stream begins (Anthropic, in its own
``message_start``: :attr:`~uniinfer.types.ChatChunk.early_usage`) has them
in ours too; for the others ``message_start`` counts zeros, which the format
allows. Current SDKs take every count present in ``message_delta`` as the
cumulative total, so ``get_final_message().usage`` is right either way.

The stop reason and ``stop_sequence``, and tool arguments that are not a JSON
object, follow :mod:`~uniinfer.ingress.anthropic_response`: arguments cut by
``max_tokens`` stream as they came (the answer ends with ``max_tokens``);
on any other stop, an ``error`` event takes the place of ``message_delta``,
as the non-streamed answer is a 502.

A failure mid-stream is an ``error`` event with the Anthropic error object,
after which the stream ends (no ``message_stop``), as the API does.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from uniinfer.errors import ProviderResponseError, UniInferError
from uniinfer.ingress.anthropic_response import error_object, message_id, stop_reason, tool_input, usage_of
from uniinfer.types import ChatChunk, ToolCallDelta, Usage
from uniinfer.types.chat import SignedThinking

__all__ = ["StreamRenderer", "sse"]

Block = dict[str, Any]

_EMPTY_THINKING: Block = {"type": "thinking", "thinking": "", "signature": ""}


def sse(payload: Block) -> bytes:
    """One named SSE event: ``event: <type>`` and the JSON payload."""
    kind: str = payload["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class StreamRenderer:
    """Feed :class:`~uniinfer.types.ChatChunk` objects; get the Anthropic SSE bytes to send.

    ``feed`` for each chunk, then ``finish`` once the chunks ended, or
    ``error`` when the stream failed. Only the first choice is rendered
    (Anthropic answers have one).
    """

    __slots__ = (
        "_arguments",
        "_early_usage",
        "_finish",
        "_ids",
        "_model",
        "_next",
        "_open",
        "_started",
        "_stop_sequence",
        "_tools",
        "_usage",
    )

    def __init__(self, model: str) -> None:
        """``model``: the name the caller asked for, echoed in ``message_start``."""
        self._model = model
        self._started = False
        self._next = 0  # index of the next content block
        #: (kind, block index) of the open block; kind is "text", "thinking", "redacted_thinking"
        #: or "tool_use".
        self._open: tuple[str, int] | None = None
        #: tool call index -> the content block index of its (latest) call
        self._tools: dict[int, int] = {}
        #: tool call index -> the id of its latest call
        self._ids: dict[int, str | None] = {}
        #: content block index of a call -> (name, argument pieces), checked to be a JSON object
        #: at the end
        self._arguments: dict[int, tuple[str, list[str]]] = {}
        self._finish: str | None = None
        self._stop_sequence: str | None = None
        self._usage: Usage | None = None
        self._early_usage: Usage | None = None

    def feed(self, chunk: ChatChunk) -> bytes:
        """The events one chunk adds (possibly none)."""
        if not self._started:
            self._early_usage = chunk.early_usage
        out = [] if self._started else self._start(chunk.id, chunk.early_usage or chunk.usage)
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta.reasoning_content:
                out += self._append("thinking", delta.reasoning_content)
            for signed in delta.signed_thinking or ():
                out += self._signed(signed)
            for text in (delta.content, delta.refusal):
                if text:
                    out += self._append("text", text)
            for call in delta.tool_calls or ():
                out += self._tool(call)
            if delta.refusal:
                self._finish = "content_filter"
            elif choice.finish_reason is not None and self._finish != "content_filter":
                self._finish = choice.finish_reason
                self._stop_sequence = choice.stop_sequence
        return b"".join(out)

    def finish(self) -> bytes:
        """Close the open block, then ``message_delta`` (stop reason, usage) and ``message_stop``."""
        out = [] if self._started else self._start(f"msg_{uuid.uuid4().hex[:24]}", None)
        out += self._close()
        try:
            self._check_arguments()
        except ProviderResponseError as exc:
            out.append(self.error(exc))
            return b"".join(out)
        reason = stop_reason(
            self._finish, has_tool_calls=bool(self._tools), stop_sequence=self._stop_sequence
        )
        delta = {
            "stop_reason": reason,
            "stop_sequence": self._stop_sequence if reason == "stop_sequence" else None,
        }
        usage = usage_of(self._usage or self._early_usage)
        out.append(sse({"type": "message_delta", "delta": delta, "usage": usage}))
        out.append(sse({"type": "message_stop"}))
        return b"".join(out)

    def _check_arguments(self) -> None:
        """Raise as :func:`~uniinfer.ingress.anthropic_response.tool_input` does for the non-streamed answer."""
        cut = self._finish == "length"
        for name, pieces in self._arguments.values():
            tool_input(name, "".join(pieces), cut=cut)

    @staticmethod
    def error(exc: UniInferError) -> bytes:
        """The ``error`` event for a failure mid-stream."""
        return sse(error_object(exc))

    # --- blocks --------------------------------------------------------------------

    def _start(self, upstream_id: str, usage: Usage | None) -> list[bytes]:
        self._started = True
        message: Block = {
            "id": message_id(upstream_id),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_of(usage),
        }
        return [sse({"type": "message_start", "message": message}), sse({"type": "ping"})]

    def _append(self, kind: str, text: str) -> list[bytes]:
        """Text or thinking: continue the open block of that kind, or open one."""
        out: list[bytes] = []
        if self._open is None or self._open[0] != kind:
            out = self._begin(kind, {"type": "text", "text": ""} if kind == "text" else _EMPTY_THINKING)
        assert self._open is not None
        field = "text" if kind == "text" else "thinking"
        out.append(self._delta(self._open[1], {"type": f"{field}_delta", field: text}))
        return out

    def _signed(self, block: SignedThinking) -> list[bytes]:
        """A signature completes the open thinking block (an empty one when no text was shown);
        a redacted block comes whole. Either way the block is closed after it."""
        if block.type == "redacted_thinking":
            return self._begin("redacted_thinking", block.block()) + self._close()
        thinking = self._open is not None and self._open[0] == "thinking"
        out = [] if thinking else self._begin("thinking", _EMPTY_THINKING)
        assert self._open is not None
        out.append(self._delta(self._open[1], {"type": "signature_delta", "signature": block.signature}))
        return out + self._close()

    def _tool(self, call: ToolCallDelta) -> list[bytes]:
        out: list[bytes] = []
        index = self._tools.get(call.index)
        known = self._ids.get(call.index)
        if index is not None and call.id and known and call.id != known:
            index = None  # another call at the same index (servers that number every call 0)
        function = call.function
        if index is None:
            name = (function.name if function else None) or ""
            block = {
                "type": "tool_use",
                "id": call.id or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": name,
                "input": {},
            }
            out = self._begin("tool_use", block)
            index = self._tools[call.index] = self._next - 1
            self._ids[call.index] = call.id
            self._arguments[index] = (name, [])
        elif call.id and not known:
            self._ids[call.index] = call.id
        arguments = function.arguments if function else None
        if arguments:
            self._arguments[index][1].append(arguments)
            out.append(self._delta(index, {"type": "input_json_delta", "partial_json": arguments}))
        return out

    def _begin(self, kind: str, block: Block) -> list[bytes]:
        out = self._close()
        index, self._next = self._next, self._next + 1
        self._open = (kind, index)
        out.append(sse({"type": "content_block_start", "index": index, "content_block": block}))
        return out

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        index = self._open[1]
        self._open = None
        return [sse({"type": "content_block_stop", "index": index})]

    @staticmethod
    def _delta(index: int, delta: Block) -> bytes:
        return sse({"type": "content_block_delta", "index": index, "delta": delta})
