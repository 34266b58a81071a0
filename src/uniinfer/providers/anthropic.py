"""Anthropic Messages API: translation to and from the OpenAI-shaped types.

Requests (https://docs.anthropic.com/en/api/messages):

- ``system`` and ``developer`` messages, wherever they appear, become the
  top-level ``system`` text blocks (``cache_control`` kept).
- ``tool`` messages become ``tool_result`` blocks of a user turn, and
  consecutive same-role turns are merged: the API wants user and assistant
  turns to alternate. A tool message marked ``is_error`` (by the Anthropic
  Messages ingress) is sent with ``is_error: true`` and without the
  ``"Error: "`` the ingress put in its text for other providers.
- Assistant ``reasoning_content`` is not sent back; an assistant message's
  signed thinking blocks (:attr:`~uniinfer.types.chat.AssistantMessage.signed_thinking`,
  which only the Anthropic Messages ingress sets) start its turn, unmodified,
  as the API wants them back in a tool loop
  (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#preserving-thinking-blocks).
- ``max_tokens`` is required upstream: ``max_completion_tokens`` or
  ``max_tokens``, else 4096. ``reasoning_effort`` becomes extended thinking
  with the budget an Anthropic client asked for
  (:attr:`~uniinfer.types.ChatRequest.thinking_budget`), else a fixed budget
  per level (:data:`THINKING_BUDGETS`); since the budget must stay below
  ``max_tokens`` (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking),
  an unset limit becomes budget + 4096 and a smaller one caps the budget.
  With thinking on, the last assistant turn, when it called tools, must start
  with its thinking block: when it has none to send (history from an OpenAI
  client or another provider), thinking is left off, as the API advises, and
  :meth:`AnthropicAdapter.params_left_out` says so (the gateway reports
  ``reasoning_effort`` in ``x-uniinfer-dropped-params``).
- Images become ``image`` blocks; a ``file`` part with inline PDF
  ``file_data`` a ``document`` block (base64 source, ``filename`` as its
  ``title``); a ``file_id`` is refused (Anthropic cannot read OpenAI's files).
- ``temperature`` is passed through unchanged although Anthropic's range is
  0..1 (OpenAI's 0..2): rescaling would silently change its meaning, so the
  API's own 400 names the field instead.

Responses: text blocks are concatenated into ``content``, ``tool_use`` blocks
become ``tool_calls``, ``thinking`` blocks ``reasoning_content``; the
``thinking`` (with their signatures) and ``redacted_thinking`` blocks are also
kept whole, in order, as the message's ``signed_thinking``, never serialised in
OpenAI's format (the Anthropic ingress hands them back to its client). The matched
``stop_sequence`` (``stop_reason: stop_sequence``) is kept on the choice
(:attr:`~uniinfer.types.chat.ChatChoice.stop_sequence`; OpenAI's format has no
place for it, only the Anthropic ingress reads it).

Usage: OpenAI's ``prompt_tokens`` includes cached tokens, Anthropic's
``input_tokens`` excludes both cache reads and cache writes. We normalise
``prompt_tokens = input_tokens + cache_read_input_tokens +
cache_creation_input_tokens`` and keep the two cache numbers, exactly as
reported, in ``prompt_tokens_details.cached_tokens`` / ``cache_write_tokens``.
Anthropic reports no separate thinking count, so ``reasoning_tokens`` stays unset.

Streams (https://docs.anthropic.com/en/docs/build-with-claude/streaming):
named SSE events ``message_start`` ... ``message_stop``; tool calls are
numbered 0, 1, ... in the order their ``tool_use`` blocks start.
``thinking_delta`` is ``reasoning_content``; a ``signature_delta`` is a chunk
whose ``signed_thinking`` carries the signature that completes that thinking,
and a ``redacted_thinking`` block one with the whole block. The first
chunk (``message_start``) is a role chunk without content, as OpenAI's is,
carrying the input counts reported there as ``early_usage``; the final usage
chunk has the totals.

Errors (https://docs.anthropic.com/en/api/errors) have the shape
``{"type": "error", "error": {"type": ..., "message": ...}}``; the field a
400 names (``"temperature: Input should be ..."``) becomes ``param``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from uniinfer.errors import (
    InvalidRequestError,
    ProviderConnectionError,
    ProviderResponseError,
    UniInferError,
    UnsupportedFeatureError,
)
from uniinfer.http import HttpRequest, SSEFramer
from uniinfer.providers.base import ProviderAdapter, chunk_id, loads, raise_after
from uniinfer.types import ChatChunk, ChatRequest, ChatResponse, Usage
from uniinfer.types.chat import (
    AssistantMessage,
    ChatChoice,
    ChunkChoice,
    ChunkDelta,
    DeveloperMessage,
    FilePart,
    FunctionCall,
    FunctionCallDelta,
    ImagePart,
    Message,
    ResponseMessage,
    SignedThinking,
    SystemMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceFunction,
    ToolMessage,
)

__all__ = [
    "API_VERSION",
    "THINKING_BUDGETS",
    "TOOL_ERROR_PREFIX",
    "TOOL_ERROR_TEXT",
    "AnthropicAdapter",
    "AnthropicStreamDecoder",
]

Block = dict[str, Any]

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
#: ``reasoning_effort`` -> ``thinking.budget_tokens`` (the API's minimum is 1024).
THINKING_BUDGETS: Mapping[str, int] = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
_MIN_BUDGET = 1024
#: What the Anthropic Messages ingress puts before the text of a failed tool's result
#: (``is_error``) for providers without the flag; taken off again when sent to Anthropic.
TOOL_ERROR_PREFIX = "Error: "
#: The whole text of a failed tool's result that had none.
TOOL_ERROR_TEXT = "Error"
_THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})
# https://docs.anthropic.com/en/docs/build-with-claude/vision
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# https://docs.anthropic.com/en/docs/build-with-claude/pdf-support
_PDF = "application/pdf"
_FINISH: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
#: Error ``type`` -> the HTTP status the API documents for it (used for stream ``error`` events).
_ERROR_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
#: Anthropic field -> the ChatRequest field a caller set to produce it.
_PARAM_NAMES: Mapping[str, str] = {
    "stop_sequences": "stop",
    "system": "messages",
    "metadata": "user",
    "thinking": "reasoning_effort",
}
_PARAM_PREFIX = re.compile(r"^([a-z_][a-z0-9_]*)(?:\.[\w.]+)?: ")


class AnthropicAdapter(ProviderAdapter):
    """``POST /v1/messages`` with ``x-api-key`` and ``anthropic-version`` headers."""

    #: ``stream_options`` needs nothing sent (usage is always reported); ``user`` and its
    #: successor ``safety_identifier`` become ``metadata.user_id``.
    supported_params = frozenset(
        {"temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "stop", "stream_options"}
        | {"tools", "tool_choice", "parallel_tool_calls", "user", "safety_identifier", "reasoning_effort"}
    )

    def chat_request(self, request: ChatRequest, model: str, *, stream: bool) -> HttpRequest:
        try:
            payload = _payload(request, model, stream=stream)
        except UniInferError as exc:
            exc.provider = exc.provider or self.name
            raise
        return HttpRequest(self._messages_url(), orjson.dumps(payload), self._headers())

    def params_left_out(self, request: ChatRequest, model: str) -> tuple[str, ...]:
        """``reasoning_effort`` when thinking must be left off (see :func:`_thinking_left_out`)."""
        if request.reasoning_effort is None:
            return ()
        try:
            _, turns = _turns(request.messages)
        except UniInferError:
            return ()  # chat_request raises it, with the provider named
        return ("reasoning_effort",) if _thinking_left_out(turns) else ()

    def parse_chat(self, body: bytes, model: str) -> ChatResponse:
        data = loads(body, self.name)
        try:
            return _response(data, model)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProviderResponseError(
                f"{self.name}: unexpected messages response shape",
                provider=self.name,
                upstream_body=self.redact(body[:1024].decode("utf-8", "replace")),
            ) from exc

    def stream_decoder(self, model: str) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(self, model)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UniInferError:
        err = super().parse_error(status, headers, body)
        if err.param is None and isinstance(err, InvalidRequestError):
            err.param = _param_of(err.message.removeprefix(f"{self.name}: "))
        return err

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if self.endpoint.api_key:
            headers["x-api-key"] = self.endpoint.api_key
        headers.update(self.endpoint.headers)
        return headers

    def _messages_url(self) -> str:
        base = self.endpoint.base_url.rstrip("/")
        return base + ("/messages" if base.endswith("/v1") else "/v1/messages")


# --- request -------------------------------------------------------------------


def _payload(request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
    system, turns = _turns(request.messages)
    max_tokens, thinking = _limits(request)
    payload: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": turns}
    if system:
        payload["system"] = system
    if thinking is not None and not _thinking_left_out(turns):
        payload["thinking"] = thinking
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(request, name)
        if value is not None:
            payload[name] = value
    if request.stop is not None:
        payload["stop_sequences"] = [request.stop] if isinstance(request.stop, str) else request.stop
    user_id = request.user or request.safety_identifier
    if user_id:
        payload["metadata"] = {"user_id": user_id}
    if request.tools:
        payload["tools"] = [_tool(t) for t in request.tools]
        choice = _tool_choice(request.tool_choice, request.parallel_tool_calls)
        if choice is not None:
            payload["tool_choice"] = choice
    if stream:
        payload["stream"] = True
    return payload


def _limits(request: ChatRequest) -> tuple[int, Block | None]:
    """``max_tokens`` and the ``thinking`` config, keeping budget < max_tokens."""
    explicit = request.max_completion_tokens or request.max_tokens
    if request.reasoning_effort is None:
        return explicit or DEFAULT_MAX_TOKENS, None
    budget = request.thinking_budget or THINKING_BUDGETS[request.reasoning_effort]
    if explicit is None:
        return budget + DEFAULT_MAX_TOKENS, {"type": "enabled", "budget_tokens": budget}
    if explicit <= _MIN_BUDGET:
        field = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        raise InvalidRequestError(
            f"with 'reasoning_effort', anthropic needs '{field}' above {_MIN_BUDGET} "
            f"(the minimum thinking budget), got {explicit}",
            param=field,
        )
    return explicit, {"type": "enabled", "budget_tokens": min(budget, explicit - 1)}


def _thinking_left_out(turns: list[Block]) -> bool:
    """Whether the last assistant turn called tools without a thinking block to start with.

    With thinking on, the API refuses such a turn: a tool loop must send the
    turn's thinking back, signed and unmodified. History from an OpenAI client
    or another provider has none to send; the API's advice is then to disable
    thinking, so the request is sent without it (and the gateway says so).
    """
    last = next((t for t in reversed(turns) if t["role"] == "assistant"), None)
    if last is None or not any(b["type"] == "tool_use" for b in last["content"]):
        return False
    return last["content"][0]["type"] not in _THINKING_BLOCKS


def _turns(messages: list[Message]) -> tuple[list[Block], list[Block]]:
    """(system blocks, alternating user/assistant turns)."""
    system: list[Block] = []
    turns: list[Block] = []
    for i, msg in enumerate(messages):
        if isinstance(msg, (SystemMessage, DeveloperMessage)):
            system.extend(_text_blocks(msg.content))
            continue
        if isinstance(msg, AssistantMessage):
            role, blocks = "assistant", _assistant_blocks(msg, i)
        elif isinstance(msg, ToolMessage):
            role, blocks = "user", [_tool_result(msg)]
        else:
            role, blocks = "user", _user_blocks(msg.content, i)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _tool_result(msg: ToolMessage) -> Block:
    if msg.is_error:
        return _error_result(msg)
    content = msg.content if isinstance(msg.content, str) else _text_blocks(msg.content)
    return {"type": "tool_result", "tool_use_id": msg.tool_call_id, "content": content}


def _error_result(msg: ToolMessage) -> Block:
    """``is_error: true``, with the text as the client wrote it (see :data:`TOOL_ERROR_PREFIX`)."""
    block: Block = {"type": "tool_result", "tool_use_id": msg.tool_call_id, "is_error": True}
    if isinstance(msg.content, str):
        text = "" if msg.content == TOOL_ERROR_TEXT else msg.content.removeprefix(TOOL_ERROR_PREFIX)
        if text:
            block["content"] = text
        return block
    parts = list(msg.content)
    if parts:
        first = parts[0]
        text = "" if first.text == TOOL_ERROR_TEXT else first.text.removeprefix(TOOL_ERROR_PREFIX)
        parts[0] = first.model_copy(update={"text": text})
    content = _text_blocks(parts)
    if content:
        block["content"] = content
    return block


def _text(part: TextPart) -> Block:
    block: Block = {"type": "text", "text": part.text}
    if part.cache_control is not None:
        block["cache_control"] = part.cache_control
    return block


def _text_blocks(content: str | list[TextPart]) -> list[Block]:
    """Text blocks without empty ones (the API rejects empty text blocks)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [_text(p) for p in content if p.text]


def _user_blocks(content: str | list[Any], i: int) -> list[Block]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[Block] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            blocks.append(_text(part))
        elif isinstance(part, ImagePart):
            blocks.append(_image(part.image_url.url, f"messages[{i}].content[{j}]"))
        elif isinstance(part, FilePart):
            blocks.append(_document(part, f"messages[{i}].content[{j}]"))
        else:
            raise UnsupportedFeatureError(
                f"anthropic does not accept '{part.type}' content parts",
                param=f"messages[{i}].content[{j}]",
            )
    return blocks


def _image(url: str, where: str) -> Block:
    """A data: URL becomes a base64 source, an http(s) URL a url source."""
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    header, sep, data = url.partition(",")
    media_type = header.removeprefix("data:").removesuffix(";base64")
    if not (url.startswith("data:") and header.endswith(";base64") and sep and data):
        raise InvalidRequestError(
            f"{where}: an image must be an http(s) URL or a base64 data: URL", param=where
        )
    if media_type not in _IMAGE_TYPES:
        raise InvalidRequestError(
            f"{where}: anthropic accepts {', '.join(sorted(_IMAGE_TYPES))} images, not '{media_type}'",
            param=where,
        )
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _document(part: FilePart, where: str) -> Block:
    """An OpenAI ``file`` part with inline PDF ``file_data``: a ``document`` block (base64 source).

    https://docs.anthropic.com/en/docs/build-with-claude/pdf-support: ``filename``
    becomes the document's ``title``. A ``file_id`` names a file uploaded to
    OpenAI, which Anthropic cannot read.
    """
    file = part.file
    data_url = file.get("file_data")
    if data_url is None:
        what = "a 'file_id' reference" if "file_id" in file else "a file part without 'file_data'"
        raise UnsupportedFeatureError(
            f"{where}.file: anthropic cannot resolve {what}; send the PDF inline as 'file_data' "
            "(a data:application/pdf;base64,... URL)",
            param=f"{where}.file",
        )
    header, sep, data = data_url.partition(",")
    if not (header == f"data:{_PDF};base64" and sep and data):
        raise InvalidRequestError(
            f"{where}.file.file_data: anthropic accepts PDF documents as a "
            f"data:{_PDF};base64,... URL, got {header[:40]!r}",
            param=f"{where}.file.file_data",
        )
    block: Block = {"type": "document", "source": {"type": "base64", "media_type": _PDF, "data": data}}
    if file.get("filename"):
        block["title"] = file["filename"]
    return block


def _assistant_blocks(msg: AssistantMessage, i: int) -> list[Block]:
    if msg.function_call is not None:
        raise InvalidRequestError(
            f"messages[{i}].function_call: the legacy function_call is not supported; use tool_calls",
            param=f"messages[{i}].function_call",
        )
    # Signed thinking first, as the API returned it and wants it back.
    blocks: list[Block] = [b.block() for b in msg.signed_thinking or ()]
    if isinstance(msg.content, str):
        blocks += _text_blocks(msg.content)
    elif msg.content is not None:
        blocks += [_text(p) for p in msg.content if isinstance(p, TextPart) and p.text]
    for k, call in enumerate(msg.tool_calls or ()):
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.function.name, "input": _arguments(call, i, k)}
        )
    return blocks


def _arguments(call: ToolCall, i: int, k: int) -> Any:
    raw = call.function.arguments
    try:
        value = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f"messages[{i}].tool_calls[{k}].function.arguments must be a JSON object, got {raw[:80]!r}",
            param=f"messages[{i}].tool_calls",
        )
    return value


def _tool(tool: Tool) -> Block:
    fn = tool.function
    block: Block = {"name": fn.name}
    if fn.description:
        block["description"] = fn.description
    block["input_schema"] = fn.parameters or {"type": "object", "properties": {}}
    return block


def _tool_choice(choice: ToolChoice | None, parallel: bool | None) -> Block | None:
    if isinstance(choice, ToolChoiceFunction):
        out: Block = {"type": "tool", "name": choice.function.name}
    elif choice is not None:
        out = {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
    elif parallel is False:
        out = {"type": "auto"}
    else:
        return None
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


# --- response ------------------------------------------------------------------


def _usage(raw: Mapping[str, Any]) -> Usage:
    cache_read = raw.get("cache_read_input_tokens")
    cache_write = raw.get("cache_creation_input_tokens")
    prompt = int(raw.get("input_tokens") or 0) + int(cache_read or 0) + int(cache_write or 0)
    return Usage.of(prompt, int(raw.get("output_tokens") or 0), cached=cache_read, cache_write=cache_write)


def _finish(stop_reason: Any) -> Any:
    return None if stop_reason is None else _FINISH.get(str(stop_reason), "stop")


def _response(data: Any, model: str) -> ChatResponse:
    texts: list[str] = []
    thoughts: list[str] = []
    signed: list[SignedThinking] = []
    calls: list[ToolCall] = []
    for block in data["content"]:
        kind = block["type"]
        if kind == "text":
            texts.append(block["text"])
        elif kind == "thinking":
            thoughts.append(block["thinking"])
            signed.append(
                SignedThinking(type="thinking", thinking=block["thinking"], signature=block["signature"])
            )
        elif kind == "redacted_thinking":
            signed.append(SignedThinking(type="redacted_thinking", data=block["data"]))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            function = FunctionCall(name=block["name"], arguments=arguments)
            calls.append(ToolCall(id=block["id"], function=function))
    message = ResponseMessage(
        content="".join(texts) if texts or not calls else None,
        tool_calls=calls or None,
        reasoning_content="".join(thoughts) if thoughts else None,
        signed_thinking=signed or None,
    )
    usage = data.get("usage")
    choice = ChatChoice(
        message=message,
        finish_reason=_finish(data.get("stop_reason")),
        stop_sequence=_stop_sequence(data),
    )
    return ChatResponse(
        id=data["id"],
        model=data.get("model") or model,
        choices=[choice],
        usage=_usage(usage) if isinstance(usage, dict) else None,
    )


def _stop_sequence(message: Mapping[str, Any]) -> str | None:
    """The stop sequence that matched (``stop_reason: stop_sequence``), else None."""
    matched = message.get("stop_sequence")
    return matched if message.get("stop_reason") == "stop_sequence" and isinstance(matched, str) else None


def _param_of(message: str) -> str | None:
    """The ChatRequest field behind ``"<anthropic field>[.path]: ..."``, if the message names one."""
    match = _PARAM_PREFIX.match(message)
    return _PARAM_NAMES.get(match.group(1), match.group(1)) if match else None


# --- stream --------------------------------------------------------------------


class AnthropicStreamDecoder:
    """Named SSE events from ``message_start`` to ``message_stop``; ``ping`` and unknown events ignored."""

    __slots__ = ("_adapter", "_blocks", "_created", "_done", "_framer", "_id", "_model", "_usage")

    def __init__(self, adapter: ProviderAdapter, model: str) -> None:
        self._adapter = adapter
        self._framer = SSEFramer()
        self._id = chunk_id()
        self._model = model
        self._created = int(time.time())
        self._usage: dict[str, Any] = {}
        #: content block index -> tool call index (0, 1, ... in start order)
        self._blocks: dict[int, int] = {}
        self._done = False

    def feed(self, data: bytes) -> list[ChatChunk]:
        return self._decode(self._framer.feed(data))

    def close(self) -> list[ChatChunk]:
        out = self._decode(self._framer.close())
        if not self._done:
            name = self._adapter.name
            raise ProviderConnectionError(f"{name}: the stream ended before message_stop", provider=name)
        if self._usage:
            out.append(self._chunk(None, usage=_usage(self._usage)))
        return out

    def _decode(self, events: list[tuple[str, str]]) -> list[ChatChunk]:
        out: list[ChatChunk] = []
        try:
            for _event, data in events:
                payload = loads(data.encode(), self._adapter.name)
                if not isinstance(payload, dict):
                    raise self._bad(data)
                try:
                    chunk = self._event(payload)
                except (KeyError, TypeError, ValueError) as exc:
                    raise self._bad(data) from exc
                if chunk is not None:
                    out.append(chunk)
        except UniInferError as exc:
            raise_after(out, exc)  # the events before the error go with it
        return out

    def _event(self, payload: dict[str, Any]) -> ChatChunk | None:
        kind = payload.get("type")
        if kind == "message_start":
            message = payload["message"]
            self._id = message.get("id") or self._id
            self._model = message.get("model") or self._model
            self._add_usage(message.get("usage"))
            # No content: OpenAI's role chunk carries none either, and an empty string would make
            # a tool-call-only answer read content '' streamed but None otherwise.
            first = self._chunk(ChunkDelta(role="assistant"))
            if self._usage:  # the input counts, known now; the totals come with the last chunk
                first.early_usage = _usage(self._usage)
            return first
        if kind == "content_block_start":
            return self._block_start(payload["index"], payload["content_block"])
        if kind == "content_block_delta":
            return self._block_delta(payload["index"], payload["delta"])
        if kind == "message_delta":
            self._add_usage(payload.get("usage"))
            reason = _finish(payload["delta"].get("stop_reason"))
            if not reason:
                return None
            out = self._chunk(ChunkDelta(), finish=reason)
            out.choices[0].stop_sequence = _stop_sequence(payload["delta"])
            return out
        if kind == "message_stop":
            self._done = True
        elif kind == "error":
            raise self._stream_error(payload)
        return None  # ping, content_block_stop, and event types added later

    def _block_start(self, index: int, block: dict[str, Any]) -> ChatChunk | None:
        kind = block.get("type")
        if kind == "tool_use":
            k = self._blocks[index] = len(self._blocks)
            call = ToolCallDelta(
                index=k,
                id=block["id"],
                type="function",
                function=FunctionCallDelta(name=block["name"], arguments=""),
            )
            return self._chunk(ChunkDelta(tool_calls=[call]))
        if kind == "text" and block.get("text"):
            return self._chunk(ChunkDelta(content=block["text"]))
        if kind == "thinking" and block.get("thinking"):
            return self._chunk(ChunkDelta(reasoning_content=block["thinking"]))
        if kind == "redacted_thinking":
            redacted = SignedThinking(type="redacted_thinking", data=block["data"])
            return self._chunk(ChunkDelta(signed_thinking=[redacted]))
        return None

    def _block_delta(self, index: int, delta: dict[str, Any]) -> ChatChunk | None:
        kind = delta.get("type")
        if kind == "text_delta":
            return self._chunk(ChunkDelta(content=delta["text"]))
        if kind == "thinking_delta":
            return self._chunk(ChunkDelta(reasoning_content=delta["thinking"]))
        if kind == "signature_delta":  # the thinking block is complete: its signature comes last
            signed = SignedThinking(type="thinking", signature=delta["signature"])
            return self._chunk(ChunkDelta(signed_thinking=[signed]))
        if kind == "input_json_delta" and delta["partial_json"] and index in self._blocks:
            call = ToolCallDelta(
                index=self._blocks[index], function=FunctionCallDelta(arguments=delta["partial_json"])
            )
            return self._chunk(ChunkDelta(tool_calls=[call]))
        return None  # citations_delta

    def _add_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})

    def _chunk(
        self, delta: ChunkDelta | None, *, finish: Any = None, usage: Usage | None = None
    ) -> ChatChunk:
        choices = [] if delta is None else [ChunkChoice(delta=delta, finish_reason=finish)]
        return ChatChunk(id=self._id, created=self._created, model=self._model, choices=choices, usage=usage)

    def _bad(self, data: str) -> ProviderResponseError:
        name = self._adapter.name
        return ProviderResponseError(
            f"{name}: unexpected stream event shape", provider=name, upstream_body=data[:512]
        )

    def _stream_error(self, payload: dict[str, Any]) -> UniInferError:
        """An ``error`` event: mapped as if it had come with its documented status."""
        error = payload.get("error")
        kind = error.get("type") if isinstance(error, dict) else None
        status = _ERROR_STATUS.get(str(kind), 500)
        return self._adapter.parse_error(status, {}, orjson.dumps(payload))
