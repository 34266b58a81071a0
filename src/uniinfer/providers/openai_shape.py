"""Whether a provider's JSON has OpenAI's own shape, so that it can be forwarded as it came.

An OpenAI-format answer or stream event reaches an OpenAI-format caller as
the provider wrote it once it checks out (see "Same format in and out" in
docs/architecture.md): an object with string ``id`` and ``model`` and a
``choices`` list of objects, each with a ``delta`` (an answer: ``message``)
object, one of OpenAI's finish reasons and no usage of its own; an event
also without a top-level usage or error. OpenAI's usage chunk (empty
``choices`` and a usage) is recognised apart, its usage handed back as JSON
for :class:`~uniinfer.types.Usage` to validate.

Each check is one pass of msgspec's typed decoder, which tests these few
fields in C and skips the rest without building it (about 0.5 µs for a
usual event, where ``orjson.loads`` and a walk of the dict took 2.5).
msgspec does not look at the UTF-8 of the strings it skips, so non-ASCII
JSON is also decoded once as UTF-8.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from uniinfer.types.chat import FinishReason

__all__ = ["error_status", "is_plain_chunk", "plain_answer_usage", "plain_run_usage", "usage_chunk_usage"]


class _Object(msgspec.Struct):
    """Any JSON object (its members are skipped, not decoded)."""


class _DeltaChoice(msgspec.Struct):
    delta: _Object
    finish_reason: FinishReason | None = None
    usage: None = None  # Moonshot's place for usage: moved up when modelled


class _PlainChunk(msgspec.Struct):
    id: str
    model: str
    choices: list[_DeltaChoice]
    usage: None = None
    error: None = None


class _UsageChunk(msgspec.Struct):
    id: str
    model: str
    choices: Annotated[list[_DeltaChoice], msgspec.Meta(max_length=0)]
    usage: msgspec.Raw
    error: None = None


class _MessageChoice(msgspec.Struct):
    message: _Object
    finish_reason: FinishReason | None = None
    usage: None = None


_NULL = msgspec.Raw(b"null")


class _PlainAnswer(msgspec.Struct):
    id: str
    model: str
    choices: list[_MessageChoice]
    usage: msgspec.Raw = _NULL


_PLAIN_CHUNK = msgspec.json.Decoder(_PlainChunk)
_USAGE_CHUNK = msgspec.json.Decoder(_UsageChunk)
_PLAIN_ANSWER = msgspec.json.Decoder(_PlainAnswer)


def is_plain_chunk(data: bytes) -> bool:
    """Whether an event is an OpenAI chunk to pass on as it is (on one line, as SSE carries it)."""
    try:
        _PLAIN_CHUNK.decode(data)
    except (msgspec.MsgspecError, RecursionError):  # nested deeper than Python's stack allows
        return False
    return b"\n" not in data and _utf8(data)


def plain_run_usage(events: list[bytes], whole: bytes) -> bytes | None:
    """For a read's events (``whole``: the read), each checked as :func:`is_plain_chunk` and
    :func:`usage_chunk_usage` check it: when all are plain chunks but perhaps the last, which may
    be OpenAI's usage chunk, that chunk's usage JSON (``b"null"``: the last is plain too); None
    when any event is something else. One pass of the typed decoder per event, so each must be
    one whole JSON object (events joined into one array could hide an object split across two);
    the loop is C's (``map``), and ``whole``'s UTF-8 is checked once."""
    *plain, last = events
    try:
        all(map(_PLAIN_CHUNK.decode, plain))  # every one decoded (a Struct is truthy), in C's loop
    except (msgspec.MsgspecError, RecursionError):  # nested too deep here: the general path decides
        return None
    if not _utf8(whole):
        return None
    try:
        _PLAIN_CHUNK.decode(last)
    except RecursionError:
        return None
    except msgspec.MsgspecError:
        usage = usage_chunk_usage(last)
        return None if usage == b"null" else usage  # null after all (a key given twice): modelled
    return b"null"


def usage_chunk_usage(data: bytes) -> bytes | None:
    """The usage JSON of OpenAI's usage chunk; None when the event is not one."""
    return _usage(_USAGE_CHUNK, data)


def plain_answer_usage(body: bytes) -> bytes | None:
    """The usage JSON of an OpenAI answer to pass on (``b"null"`` if it has none); None when it is not one."""
    return _usage(_PLAIN_ANSWER, body)


def _usage(
    decoder: msgspec.json.Decoder[_UsageChunk] | msgspec.json.Decoder[_PlainAnswer], data: bytes
) -> bytes | None:
    try:
        usage = decoder.decode(data).usage
    except (msgspec.MsgspecError, RecursionError):
        return None
    return bytes(usage) if _utf8(data) else None


def _utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def error_status(payload: dict[str, Any], default: int) -> int:
    """The HTTP status an error body sent with a 200 (or as a stream event) means: its
    ``error.code`` when that is one (OpenRouter's ``{"error": {"code": 429, ...}}``), else
    ``default``."""
    error = payload.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599 else default
