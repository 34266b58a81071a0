"""Mistral AI: the OpenAI wire format with Mistral's documented differences.

Chat (https://docs.mistral.ai/api/#tag/chat, ``POST /v1/chat/completions``):

- ``seed`` -> ``random_seed``; ``max_completion_tokens`` -> ``max_tokens``;
  ``tool_choice: "required"`` -> ``"any"`` (Mistral's ToolChoiceEnum is auto, none,
  any, required; ``any`` is the documented one); a named function passes unchanged.
- ``reasoning_effort`` -> Mistral's ``reasoning_effort``
  (https://docs.mistral.ai/capabilities/reasoning/adjustable): ``minimal`` -> ``none``
  ("the model thinks minimally"), the others unchanged (models accept different sets;
  the API's 422 names the field).
- Mistral forbids unknown fields (422 ``extra_forbidden``), so nothing Mistral lacks is
  sent: ``stream_options`` never (usage always comes on the last stream chunk), and
  ``logit_bias``, ``logprobs``, ``user``, ``metadata``... are not in ``supported_params``,
  so the gateway rejects or drops them first. Messages lose ``refusal``,
  ``reasoning_content`` and ``cache_control``; ``developer`` becomes ``system``. A
  participant ``name`` (no field of Mistral's system, user or assistant messages) is
  refused by the gateway, or dropped visibly (the row's ``message_names=False``), before
  it gets here; the adapter takes it off too, for callers that use it directly.
- Tool-call ids must match ``^[a-zA-Z0-9]{9}$`` ("Tool call id was call_x but must be
  a-z, A-Z, 0-9, with a length of 9", seen in github.com/langchain-ai/langchain/pull/24668).
  Other providers' ids in the history are mapped to 9 base62 characters of their
  SHA-256, the same in the assistant turn and the tool message, collision-free within
  the request; ids that already comply (Mistral's own) are kept.
- Tool results followed by a user or system message get an empty assistant turn between
  them, which Mistral requires (:func:`_bridged`).
- A trailing assistant message is a prefix to continue: it gets ``prefix: true``
  ("Expected last role User or Tool (or Assistant with prefix True)").
- ``options.safe_prompt`` (bool) is sent as ``safe_prompt``.

Finish reasons (Mistral's ``FinishReason``: stop, length, model_length, error,
tool_calls): ``model_length`` (the model's context was full) -> ``length``;
``error`` (the generation failed) is a :class:`~uniinfer.errors.ProviderError`, so the
router may retry or fall back, as for Cohere's ``ERROR``.

Responses: reasoning models answer with ``content`` as a list of chunks
(``{"type": "thinking", "thinking": [{"type": "text", ...}]}``, ``{"type": "text"}``),
in full responses and stream deltas alike; text chunks join into ``content``, thinking
into ``reasoning_content``.

Embeddings (https://docs.mistral.ai/api/#tag/embeddings): ``dimensions`` ->
``output_dimension``; ``user`` is not sent.

Errors: ``{"object": "error", "message": "...", "type": ..., "code": ...}``; validation
failures are 422 with a FastAPI ``detail`` list (nested in ``message`` or at the top
level), whose first ``loc`` becomes ``param`` in ChatRequest terms (``random_seed`` ->
``seed``, ``["body", "messages", 0, "user", "name"]`` -> ``messages[0].name``).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict

from uniinfer.errors import InvalidRequestError, ProviderError, UniInferError, UnsupportedFeatureError
from uniinfer.http import HttpRequest
from uniinfer.providers.base import loads, raise_after
from uniinfer.providers.openai import OpenAIAdapter, OpenAIStreamDecoder, map_finish_reasons
from uniinfer.types import ChatRequest, ChatResponse, EmbeddingRequest, StreamItem, Usage

__all__ = ["MistralAdapter", "MistralOptions", "MistralStreamDecoder", "mistral_tool_id"]

Block = dict[str, Any]

_ID = re.compile(r"^[a-zA-Z0-9]{9}$")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Mistral's reasoning models document ``none`` and ``high``: ``minimal`` goes as ``none`` and
#: the levels above ``high`` as ``high``; ``low`` and ``medium`` go as they are (Mistral decides).
_REASONING: Mapping[str, str] = {"minimal": "none", "xhigh": "high", "max": "high"}
_RENAMES: Mapping[str, str] = {"seed": "random_seed", "max_completion_tokens": "max_tokens"}
#: Mistral field -> the ChatRequest field a caller set to produce it.
_PARAM_NAMES: Mapping[str, str] = {"random_seed": "seed"}
_DROPPED_MESSAGE_FIELDS = ("name", "refusal", "reasoning_content", "reasoning_details")
#: Where a list-shaped ``content`` may appear in a stream chunk.
_LIST_CONTENT = re.compile(rb'"content"\s*:\s*\[')
_FINISH_REASONS: Mapping[str, str] = {"model_length": "length"}
_MODEL_LENGTH = re.compile(rb'"finish_reason"\s*:\s*"model_length"')
_ERROR_FINISH = re.compile(rb'"finish_reason"\s*:\s*"error"')


class MistralOptions(BaseModel):
    """``providers.<name>.options`` for Mistral."""

    model_config = ConfigDict(extra="forbid")
    #: "Whether to inject a safety prompt before all conversations" (sent when set).
    safe_prompt: bool | None = None


class MistralAdapter(OpenAIAdapter):
    """``POST {base}/chat/completions`` and ``/embeddings`` with Mistral's vocabulary."""

    passthrough = False  # answers may carry list-shaped content, flattened by parse_chat

    embed_unsupported = frozenset({"user"})  # no field for an end-user id in its embeddings API
    supported_params = frozenset(
        {"temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "n"}
        | {"presence_penalty", "frequency_penalty", "tools", "tool_choice", "parallel_tool_calls"}
        | {"response_format", "prediction", "reasoning_effort", "stream_options", "prompt_cache_key"}
    )
    Options: ClassVar[type[BaseModel] | None] = MistralOptions

    def chat_request(self, request: ChatRequest, model: str, *, stream: bool) -> HttpRequest:
        self._check_parts(request)
        payload: Block = request.model_dump(mode="json", exclude_none=True, by_alias=True)
        payload.pop("stream_options", None)  # not accepted; usage comes on the last chunk anyway
        for ours, theirs in _RENAMES.items():
            if ours in payload:
                payload[theirs] = payload.pop(ours)
        if payload.get("tool_choice") == "required":
            payload["tool_choice"] = "any"
        effort = payload.get("reasoning_effort")
        if effort is not None:
            payload["reasoning_effort"] = _REASONING.get(effort, effort)
        payload["model"] = model
        payload["messages"] = _messages(payload["messages"])
        for tool in payload.get("tools") or ():
            # OpenAI's function without arguments may leave its parameters out; Mistral's may not
            tool["function"].setdefault("parameters", {"type": "object", "properties": {}})
        if self.options.safe_prompt is not None:
            payload["safe_prompt"] = self.options.safe_prompt
        if stream:
            payload["stream"] = True
        else:
            payload.pop("stream", None)
        return HttpRequest(self.url("/chat/completions"), orjson.dumps(payload), self.auth_headers())

    def _check_parts(self, request: ChatRequest) -> None:
        """Files and audio in OpenAI's shape have no counterpart in Mistral's chat: its
        ``file`` chunk names an uploaded file by id, its ``input_audio`` is a bare string."""
        for i, msg in enumerate(request.messages):
            if not isinstance(msg.content, list):
                continue
            for j, part in enumerate(msg.content):
                if part.type in ("file", "input_audio"):
                    raise UnsupportedFeatureError(
                        f"provider '{self.name}' does not support '{part.type}' content parts in chat",
                        provider=self.name,
                        param=f"messages[{i}].content[{j}]",
                    )

    def parse_chat(self, body: bytes, model: str) -> ChatResponse:
        data = loads(body, self.name)
        try:
            for choice in data.get("choices") or ():
                _flatten(choice.get("message"))
                if choice.get("finish_reason") == "error":
                    raise self.generation_error(data)
            map_finish_reasons(data, _FINISH_REASONS)
            return ChatResponse.model_validate(data)
        except (ValueError, AttributeError, TypeError) as exc:
            raise self.shape_error("chat response", body) from exc

    def stream_decoder(self, model: str) -> MistralStreamDecoder:
        return MistralStreamDecoder(self)

    def generation_error(self, payload: Any) -> ProviderError:
        """A failed generation, with the tokens of ``payload`` (its answer or stream event, which
        Mistral bills all the same) where it reports them."""
        error = ProviderError(f"{self.name}: the generation failed (finish_reason error)", provider=self.name)
        usage = payload.get("usage") if isinstance(payload, dict) else None
        if isinstance(usage, dict):
            with contextlib.suppress(ValueError):  # unreadable counts: the failure still is reported
                error.usage = Usage.model_validate(usage)
        return error

    def embed_request(self, request: EmbeddingRequest, model: str) -> HttpRequest:
        texts = self.embed_texts(request, model)
        payload: Block = {"model": model, "input": texts, "encoding_format": "float"}
        if request.dimensions is not None:
            payload["output_dimension"] = request.dimensions
        return HttpRequest(self.url("/embeddings"), orjson.dumps(payload), self.auth_headers())

    def error_message(self, payload: Any) -> tuple[str | None, str | None]:
        detail = _detail(payload)
        if detail:
            first = detail[0]
            where = _param(first.get("loc"))
            text = str(first.get("msg") or "invalid request")
            return (f"{where}: {text}" if where else text), str(first.get("type") or "validation_error")
        if isinstance(payload, dict) and isinstance(payload.get("message"), str):
            code = payload.get("type") or payload.get("code")
            return payload["message"], str(code) if code else None
        return super().error_message(payload)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UniInferError:
        err = super().parse_error(status, headers, body)
        if err.param is None and isinstance(err, InvalidRequestError):
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError:
                return err
            detail = _detail(payload)
            if detail:
                err.param = _param(detail[0].get("loc"))
            elif "tool call id" in err.message.lower() or "function calls and responses" in err.message:
                err.param = "messages"
        return err


# --- request -------------------------------------------------------------------


def mistral_tool_id(original: str, salt: int = 0) -> str:
    """9 base62 characters derived from ``original`` (``salt`` resolves a collision)."""
    seed = original if not salt else f"{original}\0{salt}"
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    chars = []
    for _ in range(9):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return "".join(chars)


class _ToolIds:
    """Original id -> Mistral-valid id, consistent and collision-free within one request."""

    def __init__(self, messages: list[Block]) -> None:
        self._map: dict[str, str] = {}
        # Compliant ids are kept, so they are claimed before any mapped id is chosen.
        self._used = {i for i in _ids(messages) if _ID.match(i)}

    def __call__(self, original: str) -> str:
        known = self._map.get(original)
        if known is not None:
            return known
        mapped, salt = original, 0
        if not _ID.match(original):
            while (mapped := mistral_tool_id(original, salt)) in self._used:
                salt += 1
            self._used.add(mapped)
        self._map[original] = mapped
        return mapped


def _ids(messages: list[Block]) -> list[str]:
    found = [str(m["tool_call_id"]) for m in messages if m.get("role") == "tool"]
    for msg in messages:
        found += [str(c["id"]) for c in msg.get("tool_calls") or ()]
    return found


def _messages(messages: list[Block]) -> list[Block]:
    """Messages as Mistral's schema accepts them (see the module docstring)."""
    ids = _ToolIds(messages)
    for msg in messages:
        for name in _DROPPED_MESSAGE_FIELDS:
            msg.pop(name, None)
        if msg["role"] == "developer":
            msg["role"] = "system"
        if isinstance(msg.get("content"), list):
            for part in msg["content"]:
                # prompt-cache marks: Anthropic's, OpenAI's (Mistral caches by prompt_cache_key)
                part.pop("cache_control", None)
                part.pop("prompt_cache_breakpoint", None)
        for call in msg.get("tool_calls") or ():
            call["id"] = ids(call["id"])
        if msg["role"] == "tool":
            msg["tool_call_id"] = ids(msg["tool_call_id"])
    last = messages[-1]
    if last["role"] == "assistant" and not last.get("tool_calls"):
        last["prefix"] = True
    return _bridged(messages)


def _bridged(messages: list[Block]) -> list[Block]:
    """An assistant turn between tool results and a message that is not the assistant's.

    Mistral refuses a user (or system) message right after tool results ("Unexpected role
    'user' after role 'tool'", code 3230), where OpenAI and Anthropic take it: a client that
    speaks again before the model has answered the results, and every Anthropic Messages
    client whose user turn holds results and text (the ingress makes that tool messages, then
    a user message). The turn is the shortest acknowledgement (:data:`_BRIDGE`): an empty one is
    refused too ("Assistant message must have either content or tool_calls, but not none").
    """
    out: list[Block] = []
    for msg in messages:
        if out and out[-1]["role"] == "tool" and msg["role"] not in ("tool", "assistant"):
            out.append({"role": "assistant", "content": _BRIDGE})
        out.append(msg)
    return out


#: What the model "said" between tool results and the next user message (see :func:`_bridged`).
_BRIDGE = "Ok."


# --- response ------------------------------------------------------------------


def _flatten(message: Any) -> None:
    """List-shaped ``content`` -> ``content`` text plus ``reasoning_content``, in place.

    The ``""`` content Mistral sends beside tool calls becomes None, as OpenAI sends it.
    """
    if isinstance(message, dict) and message.get("tool_calls") and message.get("content") == "":
        message["content"] = None
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return
    texts: list[str] = []
    thoughts: list[str] = []
    for chunk in message["content"]:
        if chunk.get("type") == "text":
            texts.append(str(chunk.get("text") or ""))
        elif chunk.get("type") == "thinking":
            inner = chunk.get("thinking")
            parts = inner if isinstance(inner, list) else [{"text": inner}]
            thoughts += [str(p.get("text") or "") for p in parts if isinstance(p, dict)]
    message["content"] = "".join(texts) if texts else None
    if thoughts:
        message["reasoning_content"] = (message.get("reasoning_content") or "") + "".join(thoughts)


def _detail(payload: Any) -> list[Block]:
    """The FastAPI ``detail`` list of a 422, wherever this version of the API put it."""
    if not isinstance(payload, dict):
        return []
    for found in (payload.get("detail"), payload.get("message")):
        if isinstance(found, dict):
            found = found.get("detail")
        if isinstance(found, list) and found and all(isinstance(d, dict) for d in found):
            return found
    return []


def _param(loc: Any) -> str | None:
    """``["body", "messages", 0, "user", "name"]`` -> ``messages[0].name``; Mistral names ours."""
    if not isinstance(loc, list):
        return None
    parts = [p for p in loc if p != "body"]
    out = ""
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i >= 2 and parts[i - 2] == "messages" and isinstance(parts[i - 1], int):
            continue  # the role tag pydantic puts after a message index
        else:
            out += f".{part}" if out else _PARAM_NAMES.get(str(part), str(part))
    return out or None


# --- stream --------------------------------------------------------------------


class MistralStreamDecoder(OpenAIStreamDecoder):
    """OpenAI chunks, with list-shaped delta ``content`` flattened first."""

    __slots__ = ()

    def _decode(self, events: list[tuple[str, bytes]]) -> list[StreamItem]:
        events = [(event, _mistral_finish(_flat_event(data))) for event, data in events]
        for i, (_, data) in enumerate(events):
            if _ERROR_FINISH.search(data):  # the events before it, then the failure
                adapter = self._adapter
                assert isinstance(adapter, MistralAdapter)
                failed = adapter.generation_error(_payload(data))
                raise_after(super()._decode(events[:i]), failed)
        return super()._decode(events)


def _payload(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _mistral_finish(data: bytes) -> bytes:
    """``model_length`` -> ``length`` (before the pass-through check, which knows only OpenAI's reasons)."""
    return _MODEL_LENGTH.sub(b'"finish_reason":"length"', data) if b"model_length" in data else data


def _flat_event(data: bytes) -> bytes:
    if not _LIST_CONTENT.search(data):
        return data
    try:
        payload = orjson.loads(data)
        for choice in payload.get("choices") or ():
            _flatten(choice.get("delta"))
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return data  # the parent names the bad chunk
    return orjson.dumps(payload)
