"""Anthropic Messages API: translation to and from the OpenAI-shaped types.

Requests: see :mod:`uniinfer.providers.anthropic_request` (the Messages body
built from a ChatRequest).

Responses: text blocks are concatenated into ``content``, ``tool_use`` blocks
become ``tool_calls``, ``thinking`` blocks ``reasoning_content``; the
``thinking`` (with their signatures) and ``redacted_thinking`` blocks are also
kept whole, in order, as the message's ``signed_thinking``, never serialised in
OpenAI's format (the Anthropic ingress hands them back to its client). When the
blocks come in an order that shape loses (a text after a tool call, thinking
after a text), they are also kept in that order as the message's
:attr:`~uniinfer.types.chat.ResponseMessage.content_blocks` (never serialised
either; adjacent texts joined, as a stream shows them), so that the Anthropic
ingress answers them as they came. The matched
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

Structured outputs (https://docs.anthropic.com/en/docs/build-with-claude/structured-outputs):
decided per model in one place, the table
:data:`~uniinfer.providers.claude_models.NO_STRUCTURED_OUTPUTS` (the older models; Claude
Sonnet 4.5, Haiku 4.5, Opus 4.5 and every later model have them), read through
:meth:`AnthropicAdapter.structured_outputs`. For a model with them, ``response_format``
json_schema is sent as ``output_config.format`` and a tool's ``strict: true`` as the tool's
``strict``; the answer is an ordinary text block holding the JSON, streamed as text deltas
(``stop_reason`` ``refusal`` -> ``content_filter``, ``max_tokens`` -> ``length``: the JSON may
then be cut or not match). For a model without, nothing is sent: the gateway's
``uniinfer.fitting.check_features`` refuses json_schema (400 ``unsupported_feature``, ``param``
``response_format``, naming provider and model), :meth:`AnthropicAdapter.supported_for` leaves
``response_format`` out (so ``text`` is refused, or dropped visibly, as before), and a
``strict`` tool is a value it cannot honour (:meth:`AnthropicAdapter.values_refused`): a 400
``unsupported_param`` naming ``tools[i].function.strict``, or with
``settings.drop_unsupported_params`` the tool sent without it and the drop named in
``x-uniinfer-dropped-params``. ``json_object`` has no faithful equivalent and stays refused for
every model (the row declares no JSON mode). The table is the Claude API's: Claude on Vertex
AI, whose model list differs, overrides :meth:`AnthropicAdapter.structured_outputs` to none.

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
    ProviderQuotaExceededError,
    ProviderResponseError,
    UniInferError,
)
from uniinfer.framing import SSEFramer
from uniinfer.http import HttpRequest
from uniinfer.providers.anthropic_request import (
    blank_stops,
    messages_payload,
    output_effort,
    thinking_budget,
    thinking_left_out,
    without_refused,
)
from uniinfer.providers.base import ProviderAdapter, chunk_id, loads, raise_after
from uniinfer.providers.claude_models import (
    EFFORT_PARAM,
    effort_refused,
    structured_outputs,
    takes_sampling,
    thinks,
    value_conflicts,
)
from uniinfer.providers.translation import add_answer_text, answer_order, strict_tools
from uniinfer.types import ChatChunk, ChatRequest, ChatResponse, Usage
from uniinfer.types.chat import (
    AnswerBlock,
    ChatChoice,
    ChunkChoice,
    ChunkDelta,
    FunctionCall,
    FunctionCallDelta,
    ResponseMessage,
    SignedThinking,
    ToolCall,
    ToolCallDelta,
)

__all__ = ["API_VERSION", "AnthropicAdapter", "AnthropicStreamDecoder", "with_betas"]

Block = dict[str, Any]

API_VERSION = "2023-06-01"
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
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
#: Anthropic field -> the ChatRequest field a caller set to produce it.
_PARAM_NAMES: Mapping[str, str] = {
    "stop_sequences": "stop",
    "system": "messages",
    "metadata": "user",
    "thinking": "reasoning_effort",
    "output_config": "response_format",
}
#: How Anthropic's 400 for an account out of credit begins ("Your credit balance is too low to
#: access the Anthropic API. Please go to Plans & Billing..."; the documented 402 billing_error
#: is not what comes): an account's state, for another deployment to serve, not the caller's fault.
_NO_CREDIT = "credit balance is too low"
_PARAM_PREFIX = re.compile(r"^([a-z_][a-z0-9_]*)(?:\.[\w.]+)?: ")


class AnthropicAdapter(ProviderAdapter):
    """``POST /v1/messages`` with ``x-api-key`` and ``anthropic-version`` headers."""

    #: ``stream_options`` needs nothing sent (usage is always reported); ``user`` and its
    #: successor ``safety_identifier`` become ``metadata.user_id``.
    supported_params = frozenset(
        {"max_tokens", "max_completion_tokens", "stop", "stream_options"}
        | {"tools", "tool_choice", "parallel_tool_calls", "user", "safety_identifier", "reasoning_effort"}
    )
    claude_fields = frozenset(
        {"inference_geo", "speed", "service_tier", "eager_input_streaming", "input_examples"}
    )
    #: The sampling params, which the models before Opus 4.7 take.
    _sampling = frozenset({"temperature", "top_p", "top_k"})
    per_model_params = frozenset({"response_format"}) | _sampling
    per_model_note = (
        "`response_format` `json_schema` and tools' `strict` (structured outputs) for Claude Sonnet 4.5, "
        "Haiku 4.5, Opus 4.5 and later models; for older models refused (a `strict` tool: or "
        "dropped visibly, with `settings.drop_unsupported_params`). `reasoning_effort` is extended "
        "thinking with a token budget up to Opus 4.6, and from Opus 4.7 on (which refuses budgets) "
        "adaptive thinking with `output_config.effort` at that level. `temperature`, `top_p` and "
        "`top_k` up to Opus 4.6 only: Opus 4.7 and later refuse them."
    )

    def supported_for(self, model: str) -> frozenset[str]:
        """``response_format`` only for models with structured outputs, the sampling params only
        for the models before Opus 4.7, ``reasoning_effort`` only for those with extended
        thinking (from Claude 3.7 Sonnet on; see the module docstring)."""
        params = self.supported_params | self._sampling if takes_sampling(model) else self.supported_params
        if not thinks(model):
            params -= {"reasoning_effort"}
        return params | {"response_format"} if self.structured_outputs(model) else params

    def structured_outputs(self, model: str) -> bool:
        """Whether ``model`` has structured outputs on the Claude API (:data:`NO_STRUCTURED_OUTPUTS`)."""
        return structured_outputs(model)

    def values_refused(self, request: ChatRequest, model: str) -> tuple[str, ...]:
        """A tool's ``strict: true`` for a model without structured outputs; an effort level
        (``output_config.effort``) the model lacks; what cannot go with the thinking asked
        for (:func:`~uniinfer.providers.anthropic_request.thinking_conflicts`); ``top_p``
        beside ``temperature`` where the model takes one of them (:func:`value_conflicts`)."""
        strict = () if not request.tools or self.structured_outputs(model) else strict_tools(request)
        effort = output_effort(request, model)
        refused = (*strict, EFFORT_PARAM) if effort is not None and effort_refused(effort, model) else strict
        thinking_on = thinking_budget(request) is not None and not thinking_left_out(request)
        return refused + value_conflicts(request, model, thinking_on) + blank_stops(request)

    def without_values(self, request: ChatRequest, model: str, names: tuple[str, ...]) -> ChatRequest:
        """The tools without ``strict``, and the request without the effort, as named."""
        return without_refused(request, names)

    def chat_request(self, request: ChatRequest, model: str, *, stream: bool) -> HttpRequest:
        try:
            payload = messages_payload(
                request,
                model,
                stream=stream,
                structured=self.structured_outputs(model),
                claude_fields=self.claude_fields,
            )
        except UniInferError as exc:
            exc.provider = exc.provider or self.name
            raise
        return HttpRequest(self._messages_url(), orjson.dumps(payload), self._headers(request))

    def params_left_out(self, request: ChatRequest, model: str) -> tuple[str, ...]:
        """``reasoning_effort`` when thinking must be left off (an open tool loop without signed thinking)."""
        return ("reasoning_effort",) if thinking_left_out(request) else ()

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
        if type(err) is InvalidRequestError and _NO_CREDIT in err.message:
            # an account out of credit is answered with a 400, not the documented 402
            return ProviderQuotaExceededError(
                err.message, provider=err.provider, upstream_status=status, upstream_body=err.upstream_body
            )
        if err.param is None and isinstance(err, InvalidRequestError):
            err.param = _param_of(err.message.removeprefix(f"{self.name}: "))
        return err

    def _headers(self, request: ChatRequest) -> dict[str, str]:
        """Key, version and the betas (:func:`with_betas`)."""
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if self.endpoint.api_key:
            headers["x-api-key"] = self.endpoint.api_key
        headers.update(self.endpoint.headers)
        return with_betas(headers, request)

    def _messages_url(self) -> str:
        base = self.endpoint.base_url.rstrip("/")
        return base + ("/messages" if base.endswith("/v1") else "/v1/messages")


def with_betas(headers: dict[str, str], request: ChatRequest) -> dict[str, str]:
    """``headers`` whose ``anthropic-beta`` names the configured features and the client's.

    An Anthropic Messages client's ``anthropic-beta`` (1M context, a beta tool...) turns
    those features on upstream too, as it would on the Claude API directly.
    """
    intent = request.messages_intent
    if intent is None or not intent.betas:
        return headers
    configured = next((v for k, v in headers.items() if k.lower() == "anthropic-beta"), "")
    merged = {k: v for k, v in headers.items() if k.lower() != "anthropic-beta"}
    betas = dict.fromkeys([*(b.strip() for b in configured.split(",")), *intent.betas])
    merged["anthropic-beta"] = ",".join(b for b in betas if b)
    return merged


# --- response ------------------------------------------------------------------


def _usage(raw: Mapping[str, Any]) -> Usage:
    cache_read = raw.get("cache_read_input_tokens")
    cache_write = raw.get("cache_creation_input_tokens")
    prompt = int(raw.get("input_tokens") or 0) + int(cache_read or 0) + int(cache_write or 0)
    # the writes by lifetime (an hour's are priced above five minutes'), where it says
    by_ttl = raw.get("cache_creation")
    hour = by_ttl.get("ephemeral_1h_input_tokens") if isinstance(by_ttl, dict) else None
    return Usage.of(
        prompt,
        int(raw.get("output_tokens") or 0),
        cached=cache_read,
        cache_write=cache_write,
        cache_write_1h=hour if isinstance(hour, int) and hour else None,
    )


def _finish(stop_reason: Any) -> Any:
    return None if stop_reason is None else _FINISH.get(str(stop_reason), "stop")


def _response(data: Any, model: str) -> ChatResponse:
    texts: list[str] = []
    thoughts: list[str] = []
    signed: list[SignedThinking] = []
    calls: list[ToolCall] = []
    blocks: list[AnswerBlock] = []  # all of them, in order
    for block in data["content"]:
        kind = block["type"]
        if kind == "text":
            texts.append(block["text"])
            add_answer_text(blocks, block["text"])
        elif kind == "thinking":
            thoughts.append(block["thinking"])
            signed.append(
                SignedThinking(type="thinking", thinking=block["thinking"], signature=block["signature"])
            )
            blocks.append(signed[-1])
        elif kind == "redacted_thinking":
            signed.append(SignedThinking(type="redacted_thinking", data=block["data"]))
            blocks.append(signed[-1])
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            function = FunctionCall(name=block["name"], arguments=arguments)
            calls.append(ToolCall(id=block["id"], function=function))
            blocks.append(calls[-1])
    text = "".join(texts)
    message = ResponseMessage(
        content=text if texts or not calls else None,
        tool_calls=calls or None,
        reasoning_content="".join(thoughts) if thoughts else None,
        signed_thinking=signed or None,
        # kept only when OpenAI's shape (thinking, text, tool calls) loses their order
        content_blocks=answer_order(blocks, text, calls, signed),
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
    """The ChatRequest field behind ``"<anthropic field>[.path]: ..."``, if the message names one
    (``output_config.effort``, which no ChatRequest field is, by that name)."""
    match = _PARAM_PREFIX.match(message)
    if match is None:
        return None
    if message.startswith(f"{EFFORT_PARAM}:") or message.startswith(f"{EFFORT_PARAM}."):
        return EFFORT_PARAM
    return _PARAM_NAMES.get(match.group(1), match.group(1))


# --- stream --------------------------------------------------------------------


class AnthropicStreamDecoder:
    """Named SSE events from ``message_start`` to ``message_stop``; ``ping`` and unknown events ignored."""

    __slots__ = ("_adapter", "_argued", "_blocks", "_created", "_done", "_framer", "_id", "_model", "_usage")

    def __init__(self, adapter: ProviderAdapter, model: str) -> None:
        self._adapter = adapter
        self._framer = SSEFramer()
        self._id = chunk_id()
        self._model = model
        self._created = int(time.time())
        self._usage: dict[str, Any] = {}
        #: content block index -> tool call index (0, 1, ... in start order)
        self._blocks: dict[int, int] = {}
        #: Tool-use blocks (by their index) that have streamed some JSON.
        self._argued: set[int] = set()
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
            # the cumulative counts so far: what is recorded if the stream ends before message_stop
            out.early_usage = _usage(self._usage)
            return out
        if kind == "content_block_stop":
            return self._block_stop(payload["index"])
        if kind == "message_stop":
            self._done = True
        elif kind == "error":
            raise self._stream_error(payload)
        return None  # ping, and event types added later

    def _block_stop(self, index: int) -> ChatChunk | None:
        """A tool call that streamed no JSON (a tool without input: one empty
        ``partial_json``) gets ``{}``, as its non-streamed answer and OpenAI's give it."""
        if index not in self._blocks or index in self._argued:
            return None
        call = ToolCallDelta(index=self._blocks[index], function=FunctionCallDelta(arguments="{}"))
        return self._chunk(ChunkDelta(tool_calls=[call]))

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
            self._argued.add(index)
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
