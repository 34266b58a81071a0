"""Cohere v2 Chat and Embed: translation to and from the OpenAI-shaped types.

Requests (https://docs.cohere.com/reference/chat, ``POST /v2/chat``, Bearer auth):

- ``system``/``developer`` messages become ``system`` messages; user text and
  ``image_url`` parts pass as content blocks; tool messages keep ``tool_call_id``.
- An assistant turn with ``tool_calls`` carries its text as ``tool_plan``, the
  shape Cohere returns and asks to be sent back (https://docs.cohere.com/docs/tool-use).
- Renames: ``top_p`` -> ``p``, ``top_k`` -> ``k``, ``stop`` -> ``stop_sequences``,
  ``max_completion_tokens``/``max_tokens`` -> ``max_tokens``. ``p`` is clamped to the
  documented 0.01..0.99: OpenAI's ends (0 greedy, 1 no filtering) have no closer value.
  ``temperature`` and the penalties pass unchanged (Cohere's penalties are 0..1, the
  API's own error names the field rather than a silent rescale).
- ``tool_choice``: ``required`` -> ``REQUIRED``, ``none`` -> ``NONE``, ``auto`` omitted;
  a named function has no Cohere equivalent: UnsupportedFeatureError.
- ``response_format``: ``json_object`` -> ``{"type": "json_object"}``, ``json_schema``
  -> ``json_object`` with ``json_schema`` (the ResponseFormatV2 schema).
- ``reasoning_effort`` -> ``thinking: {"type": "enabled", "token_budget": ...}``
  (the Thinking object of the chat reference); ``none`` -> ``{"type": "disabled"}``.
- tools' ``strict`` -> ``strict_tools: true`` when every tool is strict; strict on some
  only is refused (or dropped visibly): Cohere's switch covers every tool.

Responses: text blocks join into ``content``; ``thinking`` blocks and ``tool_plan``
(a "chain-of-thought style reflection and plan") into ``reasoning_content``.
``finish_reason``: COMPLETE/STOP_SEQUENCE -> stop, MAX_TOKENS/TIMEOUT -> length (output
cut short), TOOL_CALL -> tool_calls, v1's ERROR_TOXIC -> content_filter; ERROR ("the
generation failed due to an internal error") raises ProviderError.

Usage: ``usage.tokens`` (what the model processed) -> prompt/completion, exactly as
reported; ``usage.billed_units`` can be lower (the prompt template is not billed) and
is used only when ``tokens`` is absent. ``usage.cached_tokens`` ("prompt tokens that hit
the inference cache", a part of the input) -> ``prompt_tokens_details.cached_tokens``.

Streams (https://docs.cohere.com/docs/streaming, https://docs.cohere.com/reference/chat-stream):
``message-start``, ``content-*``, ``tool-plan-delta``, ``tool-call-start/delta/end``,
``citation-*``, ``message-end`` carrying ``finish_reason`` and ``usage``.

Embed (https://docs.cohere.com/reference/embed, ``POST /v2/embed``): ``texts``,
``input_type`` (required for v3+ models; ``options.embed_input_type``, default
``search_document``), ``embedding_types: ["float"]``, ``dimensions`` -> ``output_dimension``.

Errors (https://docs.cohere.com/reference/errors) are ``{"message": ...}``; 402 (the
account's billing limit) is a ProviderQuotaExceededError, as every provider's 402, 498 (an
invalid token: the SDK's ``InvalidTokenError``) an AuthenticationError, 499 (cancelled
upstream) a ProviderError. "too many tokens: max tokens must be less than or equal to N" is
the caller's ``max_tokens``, not a context overflow. Unknown fields come back as a 422 "unknown field: parameter X
is not a valid field" (github.com/cohere-ai/notebooks/issues/226): X becomes ``param``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict

from uniinfer.errors import (
    AuthenticationError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    UniInferError,
    UnsupportedFeatureError,
    UnsupportedParamError,
)
from uniinfer.framing import SSEFramer
from uniinfer.http import HttpRequest
from uniinfer.providers.base import ProviderAdapter, chunk_id, loads, raise_after
from uniinfer.providers.translation import (
    refuse_legacy_function_call,
    strict_tool_error,
    strict_tools,
    without_strict,
)
from uniinfer.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, Usage
from uniinfer.types.chat import (
    AssistantMessage,
    ChatChoice,
    ChunkChoice,
    ChunkDelta,
    DeveloperMessage,
    FunctionCall,
    FunctionCallDelta,
    ImagePart,
    JSONObjectFormat,
    JSONSchemaFormat,
    Message,
    ResponseMessage,
    SystemMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoiceFunction,
    ToolMessage,
)
from uniinfer.types.embeddings import Embedding, EmbeddingUsage

__all__ = ["THINKING_BUDGETS", "CohereAdapter", "CohereOptions", "CohereStreamDecoder"]

Block = dict[str, Any]

_PARTLY_STRICT = (
    "Cohere's strict_tools constrains every tool of a request, and only some are strict here; "
    "mark all of them strict or none"
)
#: ``reasoning_effort`` -> ``thinking.token_budget`` (any positive integer is accepted).
THINKING_BUDGETS: Mapping[str, int] = {
    "minimal": 512,
    "low": 1024,
    "medium": 4096,
    "high": 16384,
    "xhigh": 24576,
    "max": 31000,  # the docs' recommended most: 32K of output, "at least 1K" left for the answer
}
#: Texts one ``/v2/embed`` call may carry ("Maximum number of texts per call is 96").
MAX_EMBED_TEXTS = 96
_P_RANGE = (0.01, 0.99)  # "min value of 0.01, max value of 0.99" (chat reference, ``p``)
_FINISH: Mapping[str, str] = {
    "COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TIMEOUT": "length",
    "TOOL_CALL": "tool_calls", "ERROR_TOXIC": "content_filter",
}  # fmt: skip
#: Cohere field -> the ChatRequest field a caller set to produce it.
_PARAM_NAMES: Mapping[str, str] = {
    "p": "top_p", "k": "top_k", "stop_sequences": "stop", "thinking": "reasoning_effort",
    "strict_tools": "tools", "texts": "input", "output_dimension": "dimensions",
}  # fmt: skip
_KNOWN_FIELDS = frozenset(
    {"model", "messages", "tools", "tool_choice", "response_format", "max_tokens", "temperature", "seed"}
    | {"frequency_penalty", "presence_penalty", *_PARAM_NAMES}
)
#: Cohere's 400 for a ``max_tokens`` above the model's output limit ("too many tokens: max tokens
#: must be less than or equal to 4096, the maximum output for this model - received 8192"): the
#: caller's param, not a prompt too long for the context (which "too many tokens" alone means).
_MAX_TOKENS_ERROR = "max tokens must be"
_PARAM_PATTERNS = (re.compile(r"parameter ([a-z_]+)"), re.compile(r"^invalid request: ([a-z_]+)\b"))


class CohereOptions(BaseModel):
    """``providers.<name>.options`` for Cohere."""

    model_config = ConfigDict(extra="forbid")
    #: Sent as ``input_type`` with every embed request (required for Embed v3+ models).
    embed_input_type: Literal["search_document", "search_query", "classification", "clustering"] = (
        "search_document"
    )


class CohereAdapter(ProviderAdapter):
    """``POST {base}/v2/chat`` and ``POST {base}/v2/embed`` with Bearer auth."""

    #: ``stream_options`` needs nothing sent: ``message-end`` always carries usage.
    embed_unsupported = frozenset({"user"})  # no field for an end-user id in its embeddings API
    supported_params = frozenset(
        {"temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "stop", "seed"}
        | {"frequency_penalty", "presence_penalty", "tools", "tool_choice", "response_format"}
        | {"reasoning_effort", "stream_options"}
    )
    Options: ClassVar[type[BaseModel] | None] = CohereOptions

    def values_refused(self, request: ChatRequest, model: str) -> tuple[str, ...]:
        """A ``tool_choice`` naming a function (Cohere can only require some call); ``strict`` on
        some tools but not all (Cohere's ``strict_tools`` is one switch for every tool, and
        constraining a tool the client left loose can fail: strict tools need a required
        parameter each)."""
        named = ("tool_choice",) if isinstance(request.tool_choice, ToolChoiceFunction) else ()
        tools = request.tools or ()
        partly = any(t.function.strict for t in tools) and not all(t.function.strict for t in tools)
        refused = named + strict_tools(request) if partly else named
        return (*refused, "response_format") if _format_with_tools(request) else refused

    def without_values(self, request: ChatRequest, model: str, names: tuple[str, ...]) -> ChatRequest:
        """Without the named ``tool_choice`` (the base's) and the tools' ``strict``."""
        strict = tuple(n for n in names if n.startswith("tools["))
        rest = tuple(n for n in names if not n.startswith("tools["))
        request = super().without_values(request, model, rest) if rest else request
        return without_strict(request) if strict else request

    def chat_request(self, request: ChatRequest, model: str, *, stream: bool) -> HttpRequest:
        try:
            payload = _payload(request, model, stream=stream)
        except UnsupportedFeatureError as exc:
            raise UnsupportedFeatureError(
                f"provider '{self.name}' does not support {exc.message}", provider=self.name, param=exc.param
            ) from None
        except UniInferError as exc:
            exc.provider = exc.provider or self.name
            raise
        return HttpRequest(self._url("/chat"), orjson.dumps(payload), self.auth_headers())

    def parse_chat(self, body: bytes, model: str) -> ChatResponse:
        data = loads(body, self.name)
        try:
            response = _response(data, model)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self.shape_error("chat response", body) from exc
        if data.get("finish_reason") == "ERROR":
            raise self._generation_error(None, response.usage)
        return response

    def stream_decoder(self, model: str) -> CohereStreamDecoder:
        return CohereStreamDecoder(self, model)

    def embed_request(self, request: EmbeddingRequest, model: str) -> HttpRequest:
        texts = self.embed_texts(request, model, MAX_EMBED_TEXTS)
        payload: Block = {
            "model": model,
            "texts": texts,
            "input_type": self.options.embed_input_type,
            "embedding_types": ["float"],  # the gateway encodes base64 itself
            # an input beyond the model's length is an error, as on OpenAI (the default, END,
            # embeds its beginning without a word)
            "truncate": "NONE",
        }
        if request.dimensions is not None:
            payload["output_dimension"] = request.dimensions
        return HttpRequest(self._url("/embed"), orjson.dumps(payload), self.auth_headers())

    def parse_embed(self, body: bytes, model: str) -> EmbeddingResponse:
        data = loads(body, self.name)
        try:
            vectors = data["embeddings"]["float"]
            items = [Embedding(index=i, embedding=v) for i, v in enumerate(vectors)]
            meta = data.get("meta") or {}
            counts = meta.get("tokens") or meta.get("billed_units") or {}
            tokens = int(counts.get("input_tokens") or 0)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self.shape_error("embed response", body) from exc
        usage = EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
        return EmbeddingResponse(data=items, model=model, usage=usage)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UniInferError:
        err = super().parse_error(status, headers, body)
        special = {498: AuthenticationError, 499: ProviderError}.get(status)
        if status == 400 and _MAX_TOKENS_ERROR in err.message:
            special = InvalidRequestError
        if special is not None:
            err = special(
                err.message,
                provider=self.name,
                upstream_status=status,
                upstream_body=err.upstream_body,
                retry_after=err.retry_after,
            )
        if err.param is None and isinstance(err, InvalidRequestError):
            message = err.message.removeprefix(f"{self.name}: ")
            err.param = "max_tokens" if _MAX_TOKENS_ERROR in message else _param_of(message)
        return err

    def _url(self, path: str) -> str:
        base = self.endpoint.base_url.rstrip("/")
        return base + (path if base.endswith("/v2") else "/v2" + path)

    def _generation_error(self, detail: Any, usage: Usage | None) -> ProviderError:
        """A failed generation, its tokens (billed all the same) with it."""
        text = f" ({detail})" if isinstance(detail, str) and detail else ""
        error = ProviderError(
            f"{self.name}: the generation failed (finish_reason ERROR){text}", provider=self.name
        )
        error.usage = usage
        return error


# --- request -------------------------------------------------------------------


def _payload(request: ChatRequest, model: str, *, stream: bool) -> Block:
    # ``stream`` is a required field of the v2 chat request body.
    payload: Block = {"model": model, "messages": _messages(request.messages), "stream": stream}
    limit = request.max_completion_tokens or request.max_tokens
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    top_p = None if request.top_p is None else min(max(request.top_p, _P_RANGE[0]), _P_RANGE[1])
    values = {
        "temperature": request.temperature,
        "p": top_p,
        "k": request.top_k,
        "max_tokens": limit,
        "stop_sequences": stop,
        "seed": request.seed,
        "frequency_penalty": request.frequency_penalty,
        "presence_penalty": request.presence_penalty,
        "response_format": _response_format(request),
    }
    payload.update({k: v for k, v in values.items() if v is not None})
    if request.tools:
        payload["tools"] = [_tool(t) for t in request.tools]
        strict = [t.function.strict for t in request.tools]
        if all(strict):
            payload["strict_tools"] = True
        elif any(strict):  # a value refused (CohereAdapter.values_refused): dropped when configured
            raise strict_tool_error("cohere", strict.index(True), model, _PARTLY_STRICT)
        choice = _tool_choice(request)
        if choice is not None:
            payload["tool_choice"] = choice
    intent = request.messages_intent
    if request.reasoning_effort == "none":
        payload["thinking"] = {"type": "disabled"}
    elif intent is not None and intent.thinking_off and request.reasoning_effort is None:
        # an Anthropic client's "thinking off": Cohere's reasoning models think unless told not
        # to (https://docs.cohere.com/docs/reasoning); the others have nothing to turn off
        if "reasoning" in model:
            payload["thinking"] = {"type": "disabled"}
    elif request.reasoning_effort is not None:
        payload["thinking"] = {"type": "enabled", "token_budget": THINKING_BUDGETS[request.reasoning_effort]}
    return payload


def _format_with_tools(request: ChatRequest) -> bool:
    """A JSON answer asked for beside tools, which Cohere's ``response_format`` does not take
    ("not supported when used in combinations with the documents or tools parameters")."""
    return bool(request.tools) and isinstance(request.response_format, JSONSchemaFormat | JSONObjectFormat)


def _response_format(request: ChatRequest) -> Block | None:
    if _format_with_tools(request):  # a value refused (CohereAdapter.values_refused)
        raise UnsupportedParamError(
            "provider 'cohere' does not support 'response_format' together with 'tools' (its API "
            "takes one or the other); send one of them, or set settings.drop_unsupported_params",
            param="response_format",
        )
    fmt = request.response_format
    if isinstance(fmt, JSONSchemaFormat):
        schema = fmt.json_schema.schema_
        return {"type": "json_object", "json_schema": schema} if schema else {"type": "json_object"}
    if isinstance(fmt, JSONObjectFormat):
        return {"type": "json_object"}
    return None  # "text" is the default


def _tool(tool: Tool) -> Block:
    fn = tool.function
    function: Block = {"name": fn.name, "parameters": fn.parameters or {"type": "object", "properties": {}}}
    if fn.description:
        function["description"] = fn.description
    return {"type": "function", "function": function}


def _tool_choice(request: ChatRequest) -> str | None:
    choice = request.tool_choice
    if isinstance(choice, ToolChoiceFunction):  # refused value (CohereAdapter.values_refused)
        raise UnsupportedParamError(
            f"provider 'cohere' does not support forcing a named function (tool_choice "
            f"'{choice.function.name}'): its tool_choice is only REQUIRED or NONE; send 'required', "
            "or set settings.drop_unsupported_params",
            param="tool_choice",
        )
    return {"required": "REQUIRED", "none": "NONE"}.get(choice or "auto")


def _messages(messages: list[Message]) -> list[Block]:
    out: list[Block] = []
    for i, msg in enumerate(messages):
        if isinstance(msg, (SystemMessage, DeveloperMessage)):
            out.append({"role": "system", "content": _text_content(msg.content)})
        elif isinstance(msg, AssistantMessage):
            out.append(_assistant(msg, i))
        elif isinstance(msg, ToolMessage):
            content = _text_content(msg.content)
            out.append({"role": "tool", "tool_call_id": msg.tool_call_id, "content": content})
        else:
            out.append({"role": "user", "content": _user_content(msg.content, i)})
    return out


def _text_content(content: str | list[TextPart]) -> str | list[Block]:
    if isinstance(content, str):
        return content
    return [{"type": "text", "text": p.text} for p in content]


def _user_content(content: str | list[Any], i: int) -> str | list[Block]:
    if isinstance(content, str):
        return content
    blocks: list[Block] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):  # ImageUrl {url, detail}: a data URI or a web URL
            blocks.append({"type": "image_url", "image_url": part.image_url.model_dump(exclude_none=True)})
        else:
            raise UnsupportedFeatureError(f"'{part.type}' content parts", param=f"messages[{i}].content[{j}]")
    return blocks


def _assistant(msg: AssistantMessage, i: int) -> Block:
    refuse_legacy_function_call(msg, i)
    if isinstance(msg.content, list):  # a refusal part is what the model said: its text
        text = "".join(p.text if isinstance(p, TextPart) else p.refusal for p in msg.content)
    else:
        text = msg.content or ""
    if not msg.tool_calls:
        return {"role": "assistant", "content": text}
    calls = [
        {
            "id": c.id,
            "type": "function",
            "function": {"name": c.function.name, "arguments": c.function.arguments},
        }
        for c in msg.tool_calls
    ]
    out: Block = {"role": "assistant", "tool_calls": calls}
    plan = text or msg.reasoning_content
    if plan:
        out["tool_plan"] = plan
    return out


# --- response ------------------------------------------------------------------


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    counts = raw.get("tokens") or raw.get("billed_units") or {}
    cached = raw.get("cached_tokens")
    usage = Usage.of(
        int(counts.get("input_tokens") or 0),
        int(counts.get("output_tokens") or 0),
        cached=None if cached is None else int(cached),
    )
    billed = raw.get("billed_units")
    if isinstance(billed, dict) and billed is not counts:
        # "the billed input and output tokens are the tokens that you're actually billed for"
        # (docs.cohere.com, pricing): cost is priced on them; the counts shown are all tokens
        usage.billed = (int(billed.get("input_tokens") or 0), int(billed.get("output_tokens") or 0))
    return usage


def _finish(reason: Any) -> Any:
    return None if reason is None else _FINISH.get(str(reason), "stop")


def _response(data: Any, model: str) -> ChatResponse:
    message = data["message"]
    texts: list[str] = []
    thoughts: list[str] = []
    for block in message.get("content") or ():
        if block["type"] == "text":
            texts.append(block["text"])
        elif block["type"] == "thinking":
            thoughts.append(block["thinking"])
    if message.get("tool_plan"):
        thoughts.append(message["tool_plan"])
    calls = [
        ToolCall(id=c["id"], function=FunctionCall(name=c["function"]["name"], arguments=_args(c)))
        for c in message.get("tool_calls") or ()
    ]
    out = ResponseMessage(
        content="".join(texts) if texts or not calls else None,
        tool_calls=calls or None,
        reasoning_content="\n".join(thoughts) if thoughts else None,
    )
    choice = ChatChoice(message=out, finish_reason=_finish(data.get("finish_reason")))
    return ChatResponse(id=data["id"], model=model, choices=[choice], usage=_usage(data.get("usage")))


def _args(call: Block) -> str:
    arguments = call["function"].get("arguments")
    return arguments if isinstance(arguments, str) and arguments else "{}"


def _param_of(message: str) -> str | None:
    """The ChatRequest field a Cohere error message names, if any."""
    for pattern in _PARAM_PATTERNS:
        match = pattern.search(message)
        if match and match.group(1) in _KNOWN_FIELDS:
            return _PARAM_NAMES.get(match.group(1), match.group(1))
    return None


# --- stream --------------------------------------------------------------------


class CohereStreamDecoder:
    """Typed SSE events from ``message-start`` to ``message-end``; unknown events are ignored."""

    __slots__ = (
        "_adapter", "_calls", "_created", "_done", "_framer", "_id", "_kinds", "_last", "_model", "_usage",
    )  # fmt: skip

    def __init__(self, adapter: CohereAdapter, model: str) -> None:
        self._adapter = adapter
        self._framer = SSEFramer()
        self._id = chunk_id()
        self._model = model
        self._created = int(time.time())
        self._usage: Usage | None = None
        #: Cohere's tool-call ``index`` -> ours (0, 1, ... in start order)
        self._calls: dict[int, int] = {}
        self._last = -1
        #: content block ``index`` -> its type ("text" or "thinking")
        self._kinds: dict[int, str] = {}
        self._done = False

    def feed(self, data: bytes) -> list[ChatChunk]:
        return self._decode(self._framer.feed(data))

    def close(self) -> list[ChatChunk]:
        try:
            out = self._decode(self._framer.close())
        except ProviderResponseError:
            if self._done:
                raise
            out = []  # the half-received last event of a cut stream
        if not self._done:
            name = self._adapter.name
            raise ProviderConnectionError(f"{name}: the stream ended before message-end", provider=name)
        if self._usage is not None:
            out.append(self._chunk(None, usage=self._usage))
        return out

    def _decode(self, events: list[tuple[str, str]]) -> list[ChatChunk]:
        out: list[ChatChunk] = []
        try:
            for event, data in events:
                payload = loads(data.encode(), self._adapter.name)
                if not isinstance(payload, dict):
                    raise self._adapter.shape_error("stream event", data)
                try:
                    chunk = self._event(str(payload.get("type") or event), payload)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    raise self._adapter.shape_error("stream event", data) from exc
                if chunk is not None:
                    out.append(chunk)
        except UniInferError as exc:
            raise_after(out, exc)  # the events before the error go with it
        return out

    def _event(self, kind: str, payload: Block) -> ChatChunk | None:
        delta = payload.get("delta") or {}
        message = delta.get("message") or {}
        if kind == "message-start":
            self._id = payload.get("id") or self._id
            return self._chunk(ChunkDelta(role="assistant", content=""))
        if kind in ("content-start", "content-delta"):
            return self._content(payload.get("index", 0), message.get("content") or {})
        if kind == "tool-plan-delta":
            plan = message.get("tool_plan")
            return self._chunk(ChunkDelta(reasoning_content=plan)) if plan else None
        if kind in ("tool-call-start", "tool-call-delta"):
            return self._tool_call(kind, payload.get("index"), message["tool_calls"])
        if kind == "message-end":
            return self._end(delta)
        return None  # content-end, tool-call-end, citation-*, debug, and later additions

    def _content(self, index: int, content: Block) -> ChatChunk | None:
        kind = self._kinds.setdefault(index, str(content.get("type") or "text"))
        thinking, text = content.get("thinking"), content.get("text")
        if thinking or (kind == "thinking" and text):
            return self._chunk(ChunkDelta(reasoning_content=thinking or text))
        return self._chunk(ChunkDelta(content=text)) if text else None

    def _tool_call(self, kind: str, index: Any, call: Block) -> ChatChunk | None:
        function = call.get("function") or {}
        if kind == "tool-call-start":
            k = self._last = len(self._calls)
            # an event without ``index`` gets a key no indexed event can have
            self._calls[int(index) if index is not None else -1 - k] = k
            fn = FunctionCallDelta(name=function["name"], arguments=function.get("arguments") or "")
            out = ToolCallDelta(index=k, id=call["id"], type="function", function=fn)
        else:
            k = self._last if index is None else self._calls[int(index)]
            if not function.get("arguments"):
                return None
            out = ToolCallDelta(index=k, function=FunctionCallDelta(arguments=function["arguments"]))
        return self._chunk(ChunkDelta(tool_calls=[out]))

    def _end(self, delta: Block) -> ChatChunk | None:
        self._done = True
        self._usage = _usage(delta.get("usage")) or self._usage
        reason = delta.get("finish_reason")
        if reason == "ERROR":
            raise self._adapter._generation_error(delta.get("error"), self._usage)
        finish = _finish(reason)
        return self._chunk(ChunkDelta(), finish=finish) if finish else None

    def _chunk(
        self, delta: ChunkDelta | None, *, finish: Any = None, usage: Usage | None = None
    ) -> ChatChunk:
        choices = [] if delta is None else [ChunkChoice(delta=delta, finish_reason=finish)]
        return ChatChunk(id=self._id, created=self._created, model=self._model, choices=choices, usage=usage)
