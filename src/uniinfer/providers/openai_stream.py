"""OpenAI's chat stream, decoded: ``data: {chunk}`` events ending with ``data: [DONE]``.

A body that ends without ``[DONE]`` is a cut stream, unless its last chunk finished the answer
(or OpenAI's usage chunk, which follows the finish, came): some OpenAI-compatible servers
(Perplexity's, https://github.com/perplexityai/api-discussion/issues/209) end their streams
there, and OpenAI's own SDK reads such a body to its end without complaint.

The decoder of every provider that speaks OpenAI's wire format (:mod:`uniinfer.providers.openai`),
and the base of those whose streams need a rewrite first (Azure's annotations, Mistral's list
content). Plain events are passed on as the provider wrote them once checked
(:mod:`uniinfer.providers.openai_shape`); usage, errors and other vocabularies are modelled.

Wire format: https://platform.openai.com/docs/api-reference/chat-streaming
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from uniinfer.errors import ProviderConnectionError, ProviderResponseError, UniInferError
from uniinfer.framing import SSEBytesFramer
from uniinfer.providers.base import ProviderAdapter, classify, loads, raise_after
from uniinfer.providers.openai_shape import error_status, is_plain_chunk, plain_run_usage, usage_chunk_usage
from uniinfer.types import ChatChunk, RawEvents, StreamItem, Usage

__all__ = ["OpenAIStreamDecoder", "map_finish_reasons"]

_FINISHED = re.compile(rb'"finish_reason":\s*"')


def map_finish_reasons(data: dict[str, Any], mapping: Mapping[str, str]) -> None:
    """Rewrite a provider's ``finish_reason`` vocabulary to OpenAI's, in place."""
    choices = data.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict):
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason in mapping:
                choice["finish_reason"] = mapping[reason]


class OpenAIStreamDecoder:
    """``data: {chunk}`` events ending with ``data: [DONE]``.

    An event that needs nothing rewritten is passed on as
    :class:`~uniinfer.types.RawEvents` once it parsed as a JSON object with
    ``id``, ``model`` and ``choices`` with a ``delta`` and an OpenAI finish
    reason each: the usual content delta is forwarded to an OpenAI-format
    caller without being re-modelled, and the plain events that came
    together go on together, one run of SSE. So is OpenAI's usage chunk
    (empty ``choices``), its usage validated, and held to the end like every
    usage. Other events with usage, errors, and finish reasons to translate
    are modelled.

    A read of whole events (an instant stream's usual read: all of it) is
    checked without the framer or a Python loop over them (:meth:`_whole_events`). A
    subclass that rewrites events (its own ``_decode``: Mistral's list
    content, Azure's annotations) is never checked that way, and relays
    nothing as it came unless it also says, in its own :meth:`pass_on`,
    which events it would leave alone.
    """

    __slots__ = (
        "_adapter", "_done", "_finished", "_framer", "_last", "_map", "_usage", "_usage_event", "one_choice",
    )  # fmt: skip

    #: Whether :meth:`pass_on` may relay a read as it came (see the class docstring).
    _relays: ClassVar[bool] = True
    #: Whether :meth:`feed` may check a read of whole events at once (:meth:`_whole_events`),
    #: which stands for this class's ``_decode``: not for a subclass with its own.
    _one_pass: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_decode" in cls.__dict__:
            cls._one_pass = False
            if "pass_on" not in cls.__dict__:
                cls._relays = False

    def __init__(self, adapter: ProviderAdapter) -> None:
        self._adapter = adapter
        self._map = adapter.spec.finish_reason_map
        self._framer = SSEBytesFramer()
        self._usage: Usage | None = None
        #: The JSON of the usage chunk, when the usage came in one to pass on as it is
        self._usage_event: bytes | None = None
        #: The last event, for the usage chunk's id, created, model and system_fingerprint:
        #: those four of a modelled one, or the SSE of the events it ended (read only if needed).
        self._last: tuple[Any, Any, Any, Any] | bytes | None = None
        #: Whether the last modelled chunk finished a choice (passed-on events: see answered)
        self._finished = False
        #: Whether the request asked for one choice (n > 1: its end needs [DONE], as the last
        #: chunk finishing one choice says nothing of the others)
        self.one_choice = True
        self._done = False

    def pass_on(self, data: bytes) -> bytes | None:
        """``data`` as it came, when it is one whole plain chunk event (None: :meth:`feed` it).

        A provider writes its token stream an event at a time, so this is how
        most reads come; relayed this way one costs its check and nothing else.
        """
        if (
            self._map
            or not self._relays
            or data[:6] != b"data: "
            or data[-2:] != b"\n\n"
            or data.count(b"\n") != 2
            or b"\r" in data
            or not self._framer.idle
            or not is_plain_chunk(data[6:-2])
        ):
            return None
        self._last = data
        return data

    def feed(self, data: bytes) -> list[StreamItem]:
        if self._one_pass and not self._map and self._framer.idle:
            whole = self._whole_events(data)
            if whole is not None:
                return whole
        return self._decode(self._framer.feed(data))

    def _whole_events(self, data: bytes) -> list[StreamItem] | None:
        """A read of whole plain events, perhaps ending with the usage chunk and ``[DONE]`` (how an
        instant stream arrives: all of it in one read), checked and passed on as it came; None
        when it holds anything else, for the general path to frame and decide.

        What it gives is what :meth:`_decode` gives for the same events, without the framing, a
        Python loop over the events, or the run joined again (:func:`plain_run_usage`).
        """
        done = data.endswith(b"\n\ndata: [DONE]\n\n")
        sse = data[:-14] if done else data
        if sse[:6] != b"data: " or sse[-2:] != b"\n\n" or b"\r" in sse:
            return None
        events = sse[6:-2].split(b"\n\ndata: ")
        # one ``data: `` line per event and no other newline (JSON keeps its own escaped)
        if sse.count(b"\n") != 2 * len(events):
            return None
        usage_json = plain_run_usage(events, sse)
        if usage_json is None:
            return None
        if usage_json == b"null":
            self._last = sse
            out: list[StreamItem] = [RawEvents(sse)]
        else:  # the last event is the usage chunk: held to the end, as _decode holds it
            try:
                usage = Usage.model_validate_json(usage_json)
            except ValueError:
                return None  # not a usage: the general path says what is wrong
            cut = sse.rfind(b"\n\ndata: ")
            start = cut + 2 if cut >= 0 else 0  # 0: the usage chunk is the only event
            self._usage, self._usage_event, self._last = usage, sse[start + 6 : -2], sse[start:]
            out = [RawEvents(sse[:start])] if start else []
        self._done = self._done or done
        return out

    def close(self) -> list[StreamItem]:
        name = self._adapter.name
        try:
            out = self._decode(self._framer.close())
        except ProviderResponseError:
            if self._done:
                raise
            out = []  # the half-received last event of a cut stream
        if not self._done and not (self.one_choice and self.answered()):
            raise ProviderConnectionError(f"{name}: the stream ended before [DONE]", provider=name)
        last = self._last
        if self._usage is not None and self._usage_event is not None:
            out.append(RawEvents.of(self._usage_event, usage=self._usage))
        elif self._usage is not None and last is not None:
            if isinstance(last, bytes):
                get = orjson.loads(RawEvents(last).payloads()[-1]).get
                last = (get("id"), get("created"), get("model"), get("system_fingerprint"))
            chunk_id, created, model, fingerprint = last
            out.append(
                ChatChunk(
                    id=chunk_id,
                    # a passed-on event need not carry it (the check reads id and model only)
                    created=created if isinstance(created, int) else int(time.time()),
                    model=model,
                    choices=[],
                    usage=self._usage,
                    system_fingerprint=fingerprint,
                )
            )
        return out

    def answered(self) -> bool:
        """Whether the stream so far ends an answer: its last chunk finished a choice, or OpenAI's
        usage chunk (which comes after every finish) came. (Also what :meth:`pass_on` relayed,
        which no caller sees modelled: see ``ChatStream._answered``.)"""
        if self._usage_event is not None:
            return True
        last = self._last
        if isinstance(last, bytes):  # passed-on events (checked here, not on the way): the last one
            return _FINISHED.search(last, last.rfind(b"\n\ndata: ") + 1) is not None
        return self._finished

    def _decode(self, events: list[tuple[str, bytes]]) -> list[StreamItem]:
        out: list[StreamItem] = []
        #: plain chunks in a row, to pass on as one run
        run: list[bytes] = []
        plain = not self._map
        try:
            for _event, data in events:
                if data == b"[DONE]":
                    self._done = True
                    continue
                # a plain chunk joins the run; anything else is modelled (which also
                # repairs bad UTF-8, or says what is wrong)
                if plain and is_plain_chunk(data):
                    run.append(data)
                    continue
                if run:
                    out.append(self._passed_on(run))
                    run = []
                usage = self._usage_chunk(data)
                if usage is not None:
                    # passed on as it came unless it spans lines (then one is modelled at the end)
                    self._usage, self._last = usage, b"data: " + data + b"\n\n"
                    self._usage_event = data if b"\n" not in data else None
                    continue
                chunk = self._fast(data) or self._slow(data)
                self._last = (chunk.id, chunk.created, chunk.model, chunk.system_fingerprint)
                self._finished = any(choice.finish_reason is not None for choice in chunk.choices)
                if chunk.usage is not None:
                    self._usage, self._usage_event = chunk.usage, None
                    if not chunk.choices:
                        continue
                    # a running usage (Perplexity's on every chunk): what a stream cut here used
                    chunk.usage, chunk.early_usage = None, chunk.usage
                out.append(chunk)
        except UniInferError as exc:
            if run:
                out.append(self._passed_on(run))
            raise_after(out, exc)  # the events before the error go with it
        if run:
            out.append(self._passed_on(run))
        return out

    def _passed_on(self, run: list[bytes]) -> RawEvents:
        """Plain chunks that came in a row, as one run of SSE events."""
        sse = b"data: " + b"\n\ndata: ".join(run) + b"\n\n"
        self._last = sse
        return RawEvents(sse)

    def _usage_chunk(self, data: bytes) -> Usage | None:
        """The usage of OpenAI's usage chunk (``choices: []``), when that is what the event is."""
        usage = usage_chunk_usage(data)
        if usage is None:
            return None
        try:
            return Usage.model_validate_json(usage)
        except ValueError:
            return None  # null, or not a usage: the slow path says what is wrong

    def _fast(self, data: bytes) -> ChatChunk | None:
        """One pydantic pass over the event text, when nothing needs rewriting first.

        Falls back (None) for error events, finish-reason maps, and usage that
        sits inside a choice (a non-null ``usage`` the top level did not take).
        """
        if self._map or b'"error"' in data:
            return None
        try:
            chunk = ChatChunk.model_validate_json(data)
        except ValueError:
            return None
        if chunk.usage is None and _has_usage(data):
            return None
        return chunk

    def _slow(self, data: bytes) -> ChatChunk:
        # The SSE standard decodes with replacement: bad bytes never stop a stream.
        text = data.decode("utf-8", "replace")
        payload = loads(text.encode(), self._adapter.name)
        if isinstance(payload, dict):
            if payload.get("error") is not None:  # some servers send "error": null on every chunk
                raise self._stream_error(payload)
            self._normalise(payload)
        try:
            return ChatChunk.model_validate(payload)
        except ValueError as exc:
            raise self._adapter.shape_error("stream chunk", text) from exc

    def _normalise(self, payload: dict[str, Any]) -> None:
        """Usage inside the last choice (Moonshot) moves up; finish reasons get OpenAI's names; a
        chunk that calls itself ``chat.completion`` (Perplexity's) is a ``chat.completion.chunk``."""
        if payload.get("object") == "chat.completion":
            payload["object"] = "chat.completion.chunk"
        choices = payload.get("choices")
        if payload.get("usage") is None and isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and choice.get("usage") is not None:
                    payload["usage"] = choice.pop("usage")
        if self._map:
            map_finish_reasons(payload, self._map)

    def _stream_error(self, payload: dict[str, Any]) -> Exception:
        message, code = self._adapter.error_message(payload)
        name = self._adapter.name
        return classify(
            error_status(payload, 500),  # OpenRouter's event carries the status it means
            f"{name}: {message or 'error in stream'}",
            code=code,
            provider=name,
            body=orjson.dumps(payload).decode(),
            retry_after=None,
        )


def _has_usage(data: bytes) -> bool:
    """Whether an event's JSON has a ``usage`` key whose value is not null (at any depth).

    Inside a JSON string the quotes would be escaped, so every match is a key.
    """
    at = data.find(b'"usage"')
    while at != -1:
        at += 7
        if not data[at : at + 12].lstrip(b" \t\r\n:").startswith(b"null"):
            return True
        at = data.find(b'"usage"', at)
    return False
