"""Anthropic Messages answers: the ``message`` object, usage, stop reasons and errors.

``message`` (https://docs.anthropic.com/en/api/messages): content blocks in
the order thinking, text, tool_use, or in the provider's own order when it
kept that (:attr:`~uniinfer.types.chat.ResponseMessage.content_blocks`: a Claude
or Gemini answer with a text after a tool call, say), so that a client
replaying the turn sends back what the model produced. The thinking blocks of an Anthropic
upstream come back as it sent them (``thinking`` with its real ``signature``,
``redacted_thinking`` with its ``data``: the message's
:attr:`~uniinfer.types.chat.ResponseMessage.signed_thinking`), so that a client
can send them back in a tool loop, as the API requires. Other providers'
reasoning (``reasoning_content``) is one thinking block with an empty
``signature``: the SDKs require the field, and no provider but Anthropic can
sign; sent back, such a block becomes reasoning again and its signature is
ignored. ``model`` is the name the caller
asked for (the serving deployment is in the ``x-uniinfer-*`` headers), ``id``
is ``msg_`` plus the upstream id (kept as it is when it already starts so).

Stop reasons: ``length`` -> ``max_tokens``, ``content_filter`` -> ``refusal``,
any tool call -> ``tool_use`` (also when a provider said ``stop``), a stop on
a known sequence -> ``stop_sequence`` with that ``stop_sequence``, everything
else ``end_turn``. Which sequence matched is known only when the provider
says so (Anthropic upstreams do, through
:attr:`~uniinfer.types.chat.ChatChoice.stop_sequence`); OpenAI-shaped answers
say only ``stop``, whether or not a sequence matched, and that reads as
``end_turn`` with a null ``stop_sequence``: the text cannot tell (the
sequence is not part of it), so nothing is guessed.

Tool arguments: a tool call's ``arguments`` become the block's ``input``, so
they must be a JSON object. When the answer was cut by ``max_tokens``
(``length``) they usually are not (``{"location": "Par``): as the API does
for output cut off in a ``tool_use`` block, the answer is still a 200 with
``stop_reason: max_tokens``, the cut block's ``input`` is ``{}`` and the
client retries with a higher ``max_tokens``. Arguments that are not an object
on any other stop are the provider's fault: a 502
:class:`~uniinfer.errors.ProviderResponseError` (streamed: an ``error`` event
in place of ``message_delta``, see :mod:`~uniinfer.ingress.anthropic_stream`).

Usage: uniinfer's ``prompt_tokens`` includes cache reads and writes (see
:mod:`uniinfer.providers.anthropic`), so ``input_tokens = prompt_tokens -
cached - cache_write``, with ``cache_read_input_tokens`` and
``cache_creation_input_tokens`` always present (0 when unreported) and
``output_tokens_details.thinking_tokens`` when reasoning tokens were reported.

Errors (https://docs.anthropic.com/en/api/errors): ``{"type": "error",
"error": {"type", "message"}}``, the type chosen by error class
(:func:`error_type`) while the HTTP status stays the error tree's: an
overloaded provider is ``overloaded_error`` with status 503 (not Anthropic's
529), a timeout ``api_error`` with 504. A context-length error's message
starts with ``prompt is too long:`` as the API's does (agents look for it to
compact their history). When a gateway error names an OpenAI field, the
message is prefixed with the Anthropic field it came from (``thinking:``,
``output_config.format:``, ``tools.0.strict:``...: :func:`messages_field`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from uniinfer.errors import (
    AllTargetsFailedError,
    AuthenticationError,
    ContextLengthExceededError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ProviderOverloadedError,
    ProviderQuotaExceededError,
    ProviderResponseError,
    RateLimitError,
    RequestTooLargeError,
    ServiceUnavailableError,
    UniInferError,
)
from uniinfer.types import ChatRequest, ChatResponse, ToolCall, Usage
from uniinfer.types.chat import AnswerBlock, ResponseMessage

__all__ = [
    "error_body",
    "error_object",
    "error_type",
    "message_id",
    "messages_field",
    "stop_reason",
    "to_message",
    "tool_input",
    "usage_of",
]

Block = dict[str, Any]

#: Error class -> Anthropic error type; the first match wins (subclasses first).
_ERROR_TYPES: tuple[tuple[type[UniInferError], str], ...] = (
    (RequestTooLargeError, "request_too_large"),
    (InvalidRequestError, "invalid_request_error"),
    (AuthenticationError, "authentication_error"),
    (PermissionDeniedError, "permission_error"),
    (NotFoundError, "not_found_error"),
    (ProviderQuotaExceededError, "billing_error"),  # out of credit: no retry helps (its own 402)
    (RateLimitError, "rate_limit_error"),
    (ProviderOverloadedError, "overloaded_error"),
    (ServiceUnavailableError, "overloaded_error"),
)
#: ChatRequest field -> the Anthropic request field it was translated from.
_FIELDS: Mapping[str, str] = {
    "max_completion_tokens": "max_tokens",
    "stop": "stop_sequences",
    "user": "metadata.user_id",
    "reasoning_effort": "thinking",
    "parallel_tool_calls": "tool_choice.disable_parallel_tool_use",
    "response_format": "output_config.format",
    "output_config.effort": "output_config.effort",  # a Messages field (a refused effort level)
    "stream_options": "stream",
}
#: A tool's field in a ChatRequest param path -> the Messages tool field it was translated from
#: (the tool's index is the same: every Messages tool is a custom one, server tools are refused).
_TOOL_PARAM = re.compile(r"tools\[(\d+)\]\.function\.(name|description|parameters|strict)")
_TOOL_FIELDS: Mapping[str, str] = {"parameters": "input_schema"}
_STOP: Mapping[str, str] = {"length": "max_tokens", "content_filter": "refusal"}
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")


def to_message(resp: ChatResponse, requested_model: str) -> Block:
    """The Anthropic ``message`` object for a chat completion (its first choice)."""
    choice = resp.choices[0] if resp.choices else None
    msg = choice.message if choice is not None else None
    calls = (msg.tool_calls or []) if msg is not None else []
    refused = msg is not None and bool(msg.refusal)
    finish = "content_filter" if refused else (choice.finish_reason if choice is not None else None)
    content = _content(msg, cut=finish == "length") if msg is not None else []
    matched = choice.stop_sequence if choice is not None else None
    reason = stop_reason(finish, has_tool_calls=bool(calls), stop_sequence=matched)
    return {
        "id": message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": requested_model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": matched if reason == "stop_sequence" else None,
        "usage": usage_of(resp.usage),
    }


def _content(msg: ResponseMessage, *, cut: bool) -> list[Block]:
    """The message's blocks: in its provider's order when it kept that (``ordered_blocks``),
    else its thinking, its text (the refusal's too), then its tool calls."""
    blocks = msg.ordered_blocks()
    if blocks is None:
        text = (msg.content or "") + (msg.refusal or "")
        blocks = [*(msg.signed_thinking or ()), *((text,) if text else ()), *(msg.tool_calls or ())]
    content: list[Block] = []
    if msg.reasoning_content and not msg.signed_thinking:  # another provider's: unsigned, first
        content.append({"type": "thinking", "thinking": msg.reasoning_content, "signature": ""})
    return content + [_block(b, cut=cut) for b in blocks]


def _block(block: AnswerBlock, *, cut: bool) -> Block:
    if isinstance(block, str):
        return {"type": "text", "text": block}
    if isinstance(block, ToolCall):
        return _tool_use(block, cut=cut)
    return block.block()


def _tool_use(call: ToolCall, *, cut: bool) -> Block:
    """A ``tool_use`` block; ``cut``: the answer ended on ``max_tokens`` (see the module docstring)."""
    value = tool_input(call.function.name, call.function.arguments, cut=cut)
    return {"type": "tool_use", "id": call.id, "name": call.function.name, "input": value}


def tool_input(name: str, arguments: str, *, cut: bool) -> dict[str, Any]:
    """The ``input`` object of a call's JSON ``arguments``: ``{}`` when ``cut`` short and not one.

    Raises :class:`~uniinfer.errors.ProviderResponseError` for arguments that are not
    a JSON object in an answer that was not cut short.
    """
    try:
        value = orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        return value
    if cut:
        return {}
    raise ProviderResponseError(
        f"the model called tool '{name}' with arguments that are not a JSON object",
        upstream_body=arguments[:512],
    )


def stop_reason(finish: str | None, *, has_tool_calls: bool, stop_sequence: str | None = None) -> str:
    """Anthropic's ``stop_reason`` for an OpenAI ``finish_reason`` (see the module docstring)."""
    if finish is not None and finish in _STOP:
        return _STOP[finish]
    if has_tool_calls:
        return "tool_use"
    return "stop_sequence" if stop_sequence is not None and finish == "stop" else "end_turn"


def message_id(upstream_id: str) -> str:
    """``msg_`` + the upstream id (as it is when it already is a message id)."""
    if upstream_id.startswith("msg_"):
        return upstream_id
    tail = _NOT_ID.sub("", upstream_id.removeprefix("chatcmpl-")) or uuid.uuid4().hex
    return f"msg_{tail}"


def usage_of(usage: Usage | None) -> Block:
    """Anthropic usage: ``input_tokens`` excludes the cache reads and writes counted beside it."""
    if usage is None:
        usage = Usage()
    cached, written = usage.cached_tokens, usage.cache_write_tokens
    out: Block = {
        "input_tokens": max(usage.prompt_tokens - cached - written, 0),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": usage.output_tokens,  # thinking included, as Anthropic counts it
    }
    details = usage.completion_tokens_details
    if details is not None and details.reasoning_tokens is not None:
        out["output_tokens_details"] = {"thinking_tokens": details.reasoning_tokens}
    return out


# --- errors ------------------------------------------------------------------------


def error_type(exc: UniInferError) -> str:
    """The Anthropic error type for an error (all-targets-failed: that of the deciding attempt)."""
    if isinstance(exc, AllTargetsFailedError) and exc.deciding is not None:
        return error_type(exc.deciding)
    for cls, name in _ERROR_TYPES:
        if isinstance(exc, cls):
            return name
    return "api_error"


def error_body(exc: UniInferError, chat: ChatRequest | None = None) -> bytes:
    """``{"type": "error", "error": {"type", "message"}}``: the routes' ``render_error``
    (``chat``: the translated request, when there is one, see :func:`messages_field`)."""
    return orjson.dumps(error_object(exc, chat))


def error_object(exc: UniInferError, chat: ChatRequest | None = None) -> Block:
    return {"type": "error", "error": {"type": error_type(exc), "message": _message(exc, chat)}}


def _message(exc: UniInferError, chat: ChatRequest | None) -> str:
    message = exc.message
    if isinstance(exc, ContextLengthExceededError) and not message.startswith("prompt is too long"):
        return f"prompt is too long: {message}"
    field = messages_field(exc.param, chat) if exc.param else None
    if field is not None and not message.startswith(f"{field}:"):
        return f"{field}: {message}"
    return message


def messages_field(param: str, chat: ChatRequest | None = None) -> str | None:
    """The Messages API field a ChatRequest param came from, in the API's path style
    (``response_format`` -> ``output_config.format``, ``tools[0].function.strict`` ->
    ``tools.0.strict``); None when the names are the same or the param has no Messages origin.

    ``reasoning_effort`` stands for ``thinking``, or for ``output_config.effort`` when the
    client set only that: ``chat``, the translated request, tells which. (With both, a
    Claude model that leaves thinking out still gets the effort: ``thinking`` is what is lost.)
    """
    intent = chat.messages_intent if chat is not None else None
    if param == "reasoning_effort" and intent is not None and intent.effort and not intent.thinking:
        return "output_config.effort"
    field = _FIELDS.get(param)
    if field is not None:
        return field
    tool = _TOOL_PARAM.fullmatch(param)
    if tool is None:
        return None
    index, name = tool.groups()
    return f"tools.{index}.{_TOOL_FIELDS.get(name, name)}"
