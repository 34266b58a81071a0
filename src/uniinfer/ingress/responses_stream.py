"""Chat chunks in, Responses API stream events out (part of :mod:`uniinfer.ingress.responses`).

:class:`ResponsesStreamRenderer` turns the gateway's ``chat.completion.chunk``
stream into the typed events of the Responses API, in the real API's order,
each with an increasing ``sequence_number``::

    response.created, response.in_progress
    per output item:  response.output_item.added
      reasoning       response.reasoning_summary_part.added, ..._text.delta*, ..._text.done, ..._part.done
      message         response.content_part.added, response.output_text.delta* (or refusal.delta*),
                      response.output_text.done (refusal.done), response.content_part.done
      function call   response.function_call_arguments.delta*, response.function_call_arguments.done
                      response.output_item.done
    response.completed (or response.incomplete when the output was cut), with usage

An item closes when the next one starts (reasoning, text and each tool call
are separate items), so each item's events are contiguous. A failure mid-way
closes the open item as ``incomplete`` and ends with ``response.failed``
carrying the error. The final ``response`` object is built by the same
builders as a non-streamed one (:mod:`uniinfer.ingress.responses_output`).
:func:`sse` frames events as ``event: <type>`` / ``data: <json>``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from uniinfer.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    ProviderQuotaExceededError,
    RateLimitError,
    UniInferError,
)
from uniinfer.ingress.responses_output import (
    envelope,
    function_call_item,
    message_item,
    new_id,
    output_text_part,
    reasoning_item,
    response_status,
    usage_of,
)
from uniinfer.ingress.responses_request import ResponsesRequest
from uniinfer.types import ChatChunk, ToolCallDelta, Usage
from uniinfer.types.chat import AnyFinishReason, ChunkDelta, SignedThinking

__all__ = ["ResponsesStreamRenderer", "sse"]

log = logging.getLogger("uniinfer.ingress.responses")

Json = dict[str, Any]
PartKind = Literal["output_text", "refusal"]


@dataclass(slots=True)
class _Part:
    kind: PartKind
    index: int
    text: str = ""

    def as_json(self) -> Json:
        return (
            output_text_part(self.text)
            if self.kind == "output_text"
            else {"type": "refusal", "refusal": self.text}
        )


@dataclass(slots=True)
class _Item:
    kind: Literal["reasoning", "message", "function_call"]
    index: int
    id: str
    #: reasoning text, or a function call's arguments
    text: str = ""
    parts: list[_Part] = field(default_factory=list)
    call_id: str = ""
    name: str = ""
    status: str = "in_progress"
    #: a reasoning item's signed thinking (Claude's), its ``encrypted_content`` when done, and
    #: where in ``text`` the thinking not yet signed starts (a signature comes without its text)
    signed: list[SignedThinking] = field(default_factory=list)
    unsigned_from: int = 0

    def as_json(self) -> Json:
        if self.kind == "reasoning":
            return reasoning_item(self.id, self.text, self.signed)
        if self.kind == "message":
            return message_item(self.id, [p.as_json() for p in self.parts], self.status)
        return function_call_item(self.id, self.call_id, self.name, self.text, self.status)


class ResponsesStreamRenderer:
    """One streamed response: :meth:`feed` each chunk, then :meth:`finish` or :meth:`fail`.

    Every method returns the events to send, as dicts; :func:`sse` frames them.
    """

    def __init__(self, req: ResponsesRequest, response_id: str | None = None) -> None:
        self._req = req
        self.id = response_id or new_id("resp")
        self._created = int(time.time())
        self._model = req.model
        self._service_tier: str | None = None
        self._seq = 0
        self._started = False
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}
        #: tool call index -> the provider's id of its latest call (None: it gave none)
        self._call_ids: dict[int, str | None] = {}
        self._finish: AnyFinishReason | None = None
        self._usage: Usage | None = None

    # --- input ----------------------------------------------------------------------------

    def feed(self, chunk: ChatChunk) -> list[Json]:
        """The events one chunk makes (``response.created`` and ``in_progress`` before the first)."""
        events = self._start(chunk.model)
        if chunk.usage is not None:
            self._usage = chunk.usage
        self._service_tier = chunk.service_tier or self._service_tier
        for choice in chunk.choices:
            if choice.index == 0:  # Responses has one output; uniinfer never asks for n > 1
                events += self._delta(choice.delta)
                self._finish = choice.finish_reason or self._finish
        return events

    def finish(self, usage: Usage | None = None) -> list[Json]:
        """Close the open item and end with ``response.completed`` (or ``response.incomplete``).

        ``usage`` stands in when no chunk carried usage (the gateway's own count).
        """
        events = self._start(self._model)
        status, details = response_status(self._finish)
        item_status = "completed" if status == "completed" else "incomplete"
        if not any(item.kind != "reasoning" for item in self._items):
            events += self._text("output_text", "")  # like a non-streamed answer: always a message
        events += self._close(item_status)
        body = self._body(status)
        body["incomplete_details"] = details
        body["usage"] = usage_of(self._usage or usage)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return [*events, self._event(kind, response=body)]

    def fail(self, error: UniInferError) -> list[Json]:
        """The open item closed as ``incomplete``, then ``response.failed`` carrying ``error``."""
        events = [*self._start(self._model), *self._close("incomplete")]
        body = self._body("failed")
        body["error"] = {"code": _error_code(error), "message": error.message}
        body["usage"] = usage_of(self._usage)
        return [*events, self._event("response.failed", response=body)]

    # --- items ----------------------------------------------------------------------------

    def _delta(self, delta: ChunkDelta) -> list[Json]:
        events: list[Json] = []
        if delta.reasoning_content:
            events += self._reasoning(delta.reasoning_content)
        if delta.signed_thinking:  # the signature ends its thinking: the reasoning item carries it
            item = self._open if self._open is not None and self._open.kind == "reasoning" else None
            if item is None:  # redacted thinking (no text), or text already closed: a reasoning item
                item = next((i for i in reversed(self._items) if i.kind == "reasoning"), None)
            if item is None:
                events += self._close("completed")
                item = self._add("reasoning", events)
            for block in delta.signed_thinking:
                if block.type == "thinking" and not block.thinking:  # its text came as the deltas
                    block = block.model_copy(update={"thinking": item.text[item.unsigned_from :]})
                item.signed.append(block)
                item.unsigned_from = len(item.text)
        if delta.content:
            events += self._text("output_text", delta.content)
        if delta.refusal:
            events += self._text("refusal", delta.refusal)
        for call in delta.tool_calls or ():
            events += self._tool(call)
        return events

    def _reasoning(self, delta: str) -> list[Json]:
        events: list[Json] = []
        item = self._open
        if item is None or item.kind != "reasoning":
            events += self._close("completed")
            item = self._add("reasoning", events)
            events.append(
                self._summary_event("response.reasoning_summary_part.added", item, part=_summary(""))
            )
        item.text += delta
        events.append(self._summary_event("response.reasoning_summary_text.delta", item, delta=delta))
        return events

    def _text(self, kind: PartKind, delta: str) -> list[Json]:
        events: list[Json] = []
        item = self._open
        if item is None or item.kind != "message":
            events += self._close("completed")
            item = self._add("message", events)
        part = next((p for p in item.parts if p.kind == kind), None)
        if part is None:
            part = _Part(kind, len(item.parts))
            item.parts.append(part)
            events.append(self._part_event("response.content_part.added", item, part, part=part.as_json()))
        if delta:
            part.text += delta
            if kind == "output_text":
                events.append(
                    self._part_event("response.output_text.delta", item, part, delta=delta, logprobs=[])
                )
            else:
                events.append(self._part_event("response.refusal.delta", item, part, delta=delta))
        return events

    def _tool(self, call: ToolCallDelta) -> list[Json]:
        events: list[Json] = []
        fn = call.function
        item = self._calls.get(call.index)
        given = self._call_ids.get(call.index)
        if item is not None and call.id and given and call.id != given:
            item = None  # another call at the same index (servers that number every call 0)
        if item is None:
            events += self._close("completed")
            item = self._calls[call.index] = self._add(
                "function_call",
                events,
                call_id=call.id or new_id("call"),
                name=(fn.name if fn else None) or "",
            )
            self._call_ids[call.index] = call.id
        elif call.id and not given:
            self._call_ids[call.index] = call.id
        elif fn is not None and fn.name and not item.name:
            item.name = fn.name
        if fn is not None and fn.arguments:
            item.text += fn.arguments
            if item is self._open:
                events.append(
                    self._item_event("response.function_call_arguments.delta", item, delta=fn.arguments)
                )
            else:  # no adapter interleaves calls; the final response still has all arguments
                log.warning("arguments for tool call %d arrived after its item closed", call.index)
        return events

    def _add(
        self, kind: Literal["reasoning", "message", "function_call"], events: list[Json], **extra: str
    ) -> _Item:
        prefix = {"reasoning": "rs", "message": "msg"}.get(kind, "fc")
        item = _Item(
            kind,
            len(self._items),
            new_id(prefix),
            call_id=extra.get("call_id", ""),
            name=extra.get("name", ""),
        )
        self._items.append(item)
        self._open = item
        events.append(self._event("response.output_item.added", output_index=item.index, item=item.as_json()))
        return item

    def _close(self, status: str) -> list[Json]:
        """The done events of the open item, if any."""
        item, self._open = self._open, None
        if item is None:
            return []
        item.status = status
        events: list[Json]
        if item.kind == "reasoning":
            events = [
                self._summary_event("response.reasoning_summary_text.done", item, text=item.text),
                self._summary_event("response.reasoning_summary_part.done", item, part=_summary(item.text)),
            ]
        elif item.kind == "message":
            events = [e for part in item.parts for e in self._part_done(item, part)]
        else:
            events = [
                self._item_event(
                    "response.function_call_arguments.done", item, name=item.name, arguments=item.text
                )
            ]
        events.append(self._event("response.output_item.done", output_index=item.index, item=item.as_json()))
        return events

    def _part_done(self, item: _Item, part: _Part) -> list[Json]:
        if part.kind == "output_text":
            done = self._part_event("response.output_text.done", item, part, text=part.text, logprobs=[])
        else:
            done = self._part_event("response.refusal.done", item, part, refusal=part.text)
        return [done, self._part_event("response.content_part.done", item, part, part=part.as_json())]

    # --- envelope and events ----------------------------------------------------------------

    def _start(self, model: str) -> list[Json]:
        if self._started:
            return []
        self._started = True
        self._model = model or self._model
        return [
            self._event("response.created", response=self._body("in_progress")),
            self._event("response.in_progress", response=self._body("in_progress")),
        ]

    def _body(self, status: str) -> Json:
        body = envelope(self._req, self.id, self._created, self._model, status, self._service_tier)
        body["output"] = [item.as_json() for item in self._items]
        return body

    def _event(self, kind: str, **fields: Any) -> Json:
        event = {"type": kind, **fields, "sequence_number": self._seq}
        self._seq += 1
        return event

    def _item_event(self, kind: str, item: _Item, **fields: Any) -> Json:
        return self._event(kind, item_id=item.id, output_index=item.index, **fields)

    def _part_event(self, kind: str, item: _Item, at: _Part, **fields: Any) -> Json:
        return self._item_event(kind, item, content_index=at.index, **fields)

    def _summary_event(self, kind: str, item: _Item, **fields: Any) -> Json:
        return self._item_event(kind, item, summary_index=0, **fields)


def _summary(text: str) -> Json:
    return {"type": "summary_text", "text": text}


def _error_code(error: UniInferError) -> str:
    """The spec's ``ResponseErrorCode`` closest to a uniinfer error; and the two codes OpenAI's
    own failed responses carry beyond it, which clients act on (Codex compacts its history on
    ``context_length_exceeded`` and stops retrying on ``insufficient_quota``)."""
    if isinstance(error, ContextLengthExceededError):
        return "context_length_exceeded"
    if isinstance(error, ProviderQuotaExceededError):
        return "insufficient_quota"
    if isinstance(error, RateLimitError):
        return "rate_limit_exceeded"
    if isinstance(error, InvalidRequestError):
        return "invalid_prompt"
    return "server_error"


def sse(events: Iterable[Json]) -> bytes:
    """Events framed for the wire: ``event: <type>\\ndata: <json>\\n\\n`` each."""
    return b"".join(
        b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
        for event in events
    )
