"""Ollama's native API: ``/api/chat``, ``/api/embed`` and ``/api/tags``.

Wire format: https://github.com/ollama/ollama/blob/main/docs/api.md

- ``stream`` defaults to *true* on Ollama, so it is always sent explicitly.
- Sampling settings live in ``options`` (Modelfile parameter names:
  ``temperature``, ``top_p``, ``top_k``, ``seed``, ``stop``, ``num_predict``,
  ``presence_penalty``, ``frequency_penalty``); unknown keys are ignored by
  the server, so only these are sent.
- ``format`` is ``"json"`` (JSON mode) or a JSON schema (structured outputs).
- ``think`` is ``true``/``false``, or ``"low"|"medium"|"high"`` for gpt-oss
  only: the server answers 400 ``think value "high" is not supported for this
  model`` for a level on any other model (server/routes.go, ChatHandler). So
  ``reasoning_effort`` becomes the level for gpt-oss models (``none`` and
  ``minimal`` ``low``, above ``high`` ``high``: gpt-oss always thinks) and
  ``true`` elsewhere, ``false`` for ``none`` (and for an Anthropic client that
  turned thinking off).
- Images are base64 strings only (``messages[].images``); Ollama never
  fetches URLs, so an http(s) image URL is rejected here with a clear error.
- Tool calls carry their arguments as a JSON *object*; results go back as
  ``role: "tool"`` messages with ``tool_name``. Recent servers give each call
  an ``id`` (``call_xxxxxxxx``); older ones do not, and a fresh ``call_<random>``
  is made: ids must stay unique across the turns of a conversation (a tool loop
  that moves to Anthropic or Bedrock is refused duplicate tool-use ids).
- ``/api/chat`` has no ``tool_choice``: the model decides, which is ``"auto"``;
  ``"none"`` is honoured by not sending the tools; ``"required"`` or a named
  function cannot be expressed and is refused (400 naming the param).
- Streams are NDJSON: one chat object per line, the last with ``done: true``,
  ``done_reason`` and the token counts; a failure mid-stream is a line
  ``{"error": "...", "status"?: N}``.
- ``logprobs`` and ``top_logprobs`` (0-20) are top-level fields (Ollama 0.12.11+);
  each answer line carries ``logprobs`` for the tokens it generated, a whole
  answer all of them, as ``[{token, logprob, bytes, top_logprobs}]``: OpenAI's
  entries already, put in ``choices[].logprobs.content``. They cover every
  token the model generated, a thinking model's thinking too, which OpenAI's
  ``logprobs.content`` does not: a stream line of thinking keeps its logprobs to
  itself, and where thinking and content share a line or a whole answer, the
  list is cut to the tokens that spell the content (compared as UTF-8, leading
  whitespace and a few trailing tokens, a stop sequence's, allowed); where no
  such cut exists the logprobs are left out rather than mixed. Without thinking
  every token is the answer's, a tool call's included. A stream line with
  logprobs and no text (tokens the server's parser swallowed: a thinking tag,
  gpt-oss's channel markers, a call it holds back, a character not yet whole)
  is held until a line with text says whose they are; a thinking model's call
  and end lines carry none (:mod:`uniinfer.providers.ollama_logprobs`). A server older than 0.12.11 ignores both
  fields (Go's decoder skips unknown ones): its answers then carry
  ``logprobs: null``.
- Errors are ``{"error": "message"}`` with the HTTP status.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from uniinfer.errors import (
    InvalidRequestError,
    NotFoundError,
    ProviderConnectionError,
    ProviderResponseError,
    UniInferError,
    UnsupportedFeatureError,
    UnsupportedParamError,
)
from uniinfer.framing import NDJSONFramer
from uniinfer.http import HttpRequest
from uniinfer.providers import ollama_logprobs
from uniinfer.providers.base import ProviderAdapter, chunk_id, classify, loads, raise_after
from uniinfer.providers.translation import call_ordered, data_url, refuse_legacy_function_call
from uniinfer.types import (
    AssistantMessage,
    ChatChoice,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChunkChoice,
    ChunkDelta,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    FunctionCall,
    Message,
    ResponseMessage,
    ToolCall,
    ToolCallDelta,
    ToolMessage,
    Usage,
)
from uniinfer.types.chat import FinishReason, FunctionCallDelta, ImagePart, TextPart, UserMessage

__all__ = ["OllamaAdapter", "OllamaStreamDecoder"]

#: ChatRequest fields passed straight into ``options`` under the same name.
_SAME_NAME_OPTIONS = ("temperature", "top_p", "top_k", "seed", "presence_penalty", "frequency_penalty")


class OllamaOptions(BaseModel):
    """``providers.<name>.options`` for Ollama (https://docs.ollama.com/api, "parameters")."""

    model_config = ConfigDict(extra="forbid")
    #: The context window, in tokens (``options.num_ctx``): Ollama's default is small (a few
    #: thousand tokens) and it cuts a longer prompt without a word, system prompt and tools first.
    num_ctx: int | None = Field(default=None, ge=1)
    #: How long the model stays loaded after a request (``keep_alive``): a duration ("10m",
    #: "1h"), seconds, 0 to unload at once, a negative number to keep it loaded.
    keep_alive: (
        Annotated[str, StringConstraints(pattern=r"^-?\d+(\.\d+)?(ns|us|ms|s|m|h)?$")] | int | None
    ) = None


class OllamaAdapter(ProviderAdapter):
    """Ollama ``/api/chat`` and ``/api/embed``; model discovery via ``/api/tags``."""

    Options: ClassVar[type[BaseModel] | None] = OllamaOptions

    embed_unsupported = frozenset({"user"})  # no field for an end-user id in its embeddings API
    supported_params: ClassVar[frozenset[str]] = frozenset(
        {
            *_SAME_NAME_OPTIONS,
            "stop",
            "max_tokens",
            "max_completion_tokens",
            "response_format",
            "tools",
            "tool_choice",
            "stream_options",
            "reasoning_effort",
            "logprobs",
            "top_logprobs",
        }
    )

    # --- chat -----------------------------------------------------------------

    def chat_request(self, request: ChatRequest, model: str, *, stream: bool) -> HttpRequest:
        payload: dict[str, Any] = {
            "model": model,
            "messages": self._messages(request.messages),
            "stream": stream,
            "options": _options(request),
        }
        self._settings(payload)
        fmt = _format(request)
        if fmt is not None:
            payload["format"] = fmt
        if request.tools and self._tools_sent(request):
            payload["tools"] = [t.model_dump(mode="json", exclude_none=True) for t in request.tools]
        if request.reasoning_effort is not None:
            payload["think"] = _think(request.reasoning_effort, model)
        elif (intent := request.messages_intent) is not None and intent.thinking_off:
            payload["think"] = _think("none", model)  # thinking models think unless told not to
        if request.logprobs:
            payload["logprobs"] = True
            if request.top_logprobs:
                payload["top_logprobs"] = request.top_logprobs
        return HttpRequest(self.url("/api/chat"), orjson.dumps(payload), self.auth_headers())

    def values_refused(self, request: ChatRequest, model: str) -> tuple[str, ...]:
        """A ``tool_choice`` that forces a call (``"required"`` or a named function)."""
        choice = request.tool_choice
        return () if choice is None or choice in ("auto", "none") else ("tool_choice",)

    def _tools_sent(self, request: ChatRequest) -> bool:
        """Whether the tools go out: ``tool_choice`` "auto" (Ollama's only behaviour) or unset
        sends them, "none" leaves them out; forcing a call cannot be expressed."""
        choice = request.tool_choice
        if choice is None or choice == "auto":
            return True
        if choice == "none":
            return False
        forced = "required" if choice == "required" else f"function '{choice.function.name}'"
        raise UnsupportedParamError(
            f"provider '{self.name}' cannot force a tool call (tool_choice {forced}): Ollama's "
            "/api/chat lets the model decide; use tool_choice 'auto' or 'none', or omit it, or set "
            "settings.drop_unsupported_params",
            provider=self.name,
            param="tool_choice",
        )

    def parse_chat(self, body: bytes, model: str) -> ChatResponse:
        data = loads(body, self.name)
        message = data.get("message") if isinstance(data, dict) else None
        if not isinstance(message, dict):
            raise self._shape_error("chat response", body)
        calls = [_tool_call(raw) for raw in _list(message.get("tool_calls"))]
        content = message.get("content") or ""
        try:
            # a thinking answer's are cut to its content's; a call's tokens follow those
            thinking = message.get("thinking")
            spelling = content if thinking else None
            after = str(thinking) if thinking and calls else None
            logprobs = ollama_logprobs.logprobs(data.get("logprobs"), spelling, after)
        except ValueError:
            raise self._shape_error("chat response", body) from None
        return ChatResponse(
            id=chunk_id(),
            model=model,
            choices=[
                ChatChoice(
                    message=ResponseMessage(
                        content=content if content or not calls else None,
                        tool_calls=calls or None,
                        reasoning_content=message.get("thinking") or None,
                    ),
                    finish_reason=_finish_reason(data.get("done_reason"), bool(calls)),
                    logprobs=logprobs,
                )
            ],
            usage=_usage(data),
        )

    def stream_decoder(self, model: str) -> OllamaStreamDecoder:
        return OllamaStreamDecoder(self, model)

    # --- embeddings -------------------------------------------------------------

    def embed_request(self, request: EmbeddingRequest, model: str) -> HttpRequest:
        self.embed_texts(request, model)
        # truncate: an input beyond the context is an error, as on OpenAI (Ollama cuts it by default)
        payload: dict[str, Any] = {"model": model, "input": request.input, "truncate": False}
        if request.dimensions is not None:
            payload["dimensions"] = request.dimensions
        self._settings(payload)
        return HttpRequest(self.url("/api/embed"), orjson.dumps(payload), self.auth_headers())

    def _settings(self, payload: dict[str, Any]) -> None:
        """The provider's configured ``num_ctx`` (into ``options``) and ``keep_alive``."""
        settings: OllamaOptions = self.options
        if settings.num_ctx is not None:
            payload.setdefault("options", {})["num_ctx"] = settings.num_ctx
        if settings.keep_alive is not None:
            payload["keep_alive"] = settings.keep_alive

    def parse_embed(self, body: bytes, model: str) -> EmbeddingResponse:
        data = loads(body, self.name)
        vectors = data.get("embeddings") if isinstance(data, dict) else None
        if not isinstance(vectors, list):
            raise self._shape_error("embeddings response", body)
        tokens = int(data.get("prompt_eval_count") or 0)
        return EmbeddingResponse(
            data=[Embedding(index=i, embedding=v) for i, v in enumerate(vectors)],
            model=model,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        )

    # --- model discovery --------------------------------------------------------

    def models_request(self) -> HttpRequest:
        """``GET /api/tags``: the models installed on the server."""
        return HttpRequest(self.url("/api/tags"), b"", self.auth_headers(), method="GET")

    def parse_models(self, body: bytes) -> list[str]:
        """Model names (``name:tag``) from an ``/api/tags`` body."""
        data = loads(body, self.name)
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list):
            raise self._shape_error("model list", body)
        names = (m.get("name") or m.get("model") for m in models if isinstance(m, dict))
        return [str(n) for n in names if n]

    # --- errors -------------------------------------------------------------------

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UniInferError:
        """The base mapping, refined for Ollama's capability and routing errors."""
        error = super().parse_error(status, headers, body)
        text = error.message.lower()
        if status == 400 and "does not support" in text:
            # e.g. '"llama3.2" does not support thinking' / '... does not support tools'
            param = "reasoning_effort" if "thinking" in text else "tools" if "tools" in text else None
            return UnsupportedFeatureError(
                error.message,
                provider=self.name,
                param=param,
                upstream_status=status,
                upstream_body=error.upstream_body,
            )
        if status == 404 and "model" not in text:
            # gin's plain "404 page not found": the base URL is wrong, not the model
            return NotFoundError(
                f"{error.message} (is the base URL an Ollama server, without /v1?)",
                provider=self.name,
                upstream_status=status,
                upstream_body=error.upstream_body,
            )
        return error

    def stream_error(self, payload: dict[str, Any]) -> UniInferError:
        """A ``{"error": ..., "status"?: N}`` line inside a stream."""
        message, code = self.error_message(payload)
        status = payload.get("status")
        return classify(
            status if isinstance(status, int) and status >= 400 else 500,
            f"{self.name}: {message or 'error in stream'}",
            code=code,
            provider=self.name,
            body=orjson.dumps(payload).decode(),
            retry_after=None,
        )

    def _shape_error(self, what: str, body: bytes | str) -> ProviderResponseError:
        text = body if isinstance(body, str) else body[:1024].decode("utf-8", "replace")
        return ProviderResponseError(
            f"{self.name}: unexpected {what} shape", provider=self.name, upstream_body=self.redact(text)
        )

    # --- messages -------------------------------------------------------------

    def _messages(self, messages: list[Message]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        tool_names: dict[str, str] = {}
        for i, msg in call_ordered(messages):  # results pair with calls by position here
            if isinstance(msg, UserMessage):
                out.append(self._user(i, msg))
            elif isinstance(msg, AssistantMessage):
                out.append(_assistant(i, msg))
                tool_names.update({c.id: c.function.name for c in msg.tool_calls or ()})
            elif isinstance(msg, ToolMessage):
                item = {"role": "tool", "content": _text(msg.content)}
                if msg.tool_call_id in tool_names:
                    item["tool_name"] = tool_names[msg.tool_call_id]
                out.append(item)
            else:  # system and developer
                out.append({"role": "system", "content": _text(msg.content)})
        return out

    def _user(self, i: int, msg: UserMessage) -> dict[str, Any]:
        if isinstance(msg.content, str):
            return {"role": "user", "content": msg.content}
        texts: list[str] = []
        images: list[str] = []
        for j, part in enumerate(msg.content):
            if isinstance(part, TextPart):
                texts.append(part.text)
            elif isinstance(part, ImagePart):
                images.append(self._image(part.image_url.url, f"messages[{i}].content[{j}].image_url"))
            else:
                raise UnsupportedFeatureError(
                    f"provider '{self.name}' accepts text and image parts only, not '{part.type}'",
                    provider=self.name,
                    param=f"messages[{i}].content[{j}]",
                )
        item: dict[str, Any] = {"role": "user", "content": "\n".join(texts)}
        if images:
            item["images"] = images
        return item

    def _image(self, url: str, param: str) -> str:
        parsed = data_url(url)
        if parsed is not None:
            return parsed[1]
        raise InvalidRequestError(
            f"{param}: Ollama accepts only base64 images; send a 'data:<mime>;base64,...' URL "
            f"instead of '{url[:60]}'",
            provider=self.name,
            param=param,
        )


def _text(content: str | list[Any] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(str(getattr(p, "text", None) or getattr(p, "refusal", "")) for p in content)


def _assistant(i: int, msg: AssistantMessage) -> dict[str, Any]:
    refuse_legacy_function_call(msg, i)
    item: dict[str, Any] = {"role": "assistant", "content": _text(msg.content)}
    if msg.reasoning_content:
        item["thinking"] = msg.reasoning_content
    if msg.tool_calls:
        item["tool_calls"] = [
            {"function": {"name": c.function.name, "arguments": _arguments(c.function.arguments, i, k)}}
            for k, c in enumerate(msg.tool_calls)
        ]
    return item


def _arguments(raw: str, i: int, k: int) -> dict[str, Any]:
    """OpenAI sends arguments as a JSON string; Ollama wants the object."""
    if not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        param = f"messages[{i}].tool_calls[{k}].function.arguments"
        raise InvalidRequestError(f"{param} must be a JSON object", param=param)
    return value


def _options(request: ChatRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in _SAME_NAME_OPTIONS:
        value = getattr(request, name)
        if value is not None:
            options[name] = value
    if request.stop is not None:
        options["stop"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    limit = request.max_completion_tokens or request.max_tokens
    if limit is not None:
        options["num_predict"] = limit
    return options


def _format(request: ChatRequest) -> str | dict[str, Any] | None:
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_schema" and fmt.json_schema.schema_:
        return fmt.json_schema.schema_
    return "json"


def _think(effort: str, model: str) -> bool | str:
    """``think``: off for ``none``; gpt-oss takes levels (it cannot stop thinking: ``low``)."""
    if "gpt-oss" in model.lower():
        return _GPT_OSS_LEVEL.get(effort, effort)
    return effort != "none"


_GPT_OSS_LEVEL = {"none": "low", "minimal": "low", "xhigh": "high", "max": "high"}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _tool_call(raw: Any) -> ToolCall:
    """One Ollama tool call (arguments as an object) as an OpenAI ToolCall (arguments as JSON text).

    A server too old to give the call an id gets a fresh one: ``call_<index>`` would repeat
    in every turn of a tool loop, and ids must be unique across a conversation.
    """
    raw = raw if isinstance(raw, dict) else {}
    function = raw.get("function") if isinstance(raw.get("function"), dict) else {}
    arguments = function.get("arguments")
    return ToolCall(
        id=str(raw.get("id") or f"call_{uuid.uuid4().hex[:24]}"),
        function=FunctionCall(
            name=str(function.get("name", "")),
            arguments=arguments if isinstance(arguments, str) else orjson.dumps(arguments or {}).decode(),
        ),
    )


def _finish_reason(done_reason: Any, has_tool_calls: bool) -> FinishReason:
    if done_reason == "length":
        return "length"
    return "tool_calls" if has_tool_calls else "stop"


def _usage(data: Mapping[str, Any]) -> Usage:
    return Usage.of(int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0))


class OllamaStreamDecoder:
    """NDJSON chat lines to ChatChunks; the ``done: true`` line ends the stream."""

    __slots__ = (
        "_adapter",
        "_created",
        "_done",
        "_framer",
        "_held",
        "_id",
        "_model",
        "_spoke",
        "_started",
        "_thought",
        "_tools",
        "_usage",
    )

    def __init__(self, adapter: OllamaAdapter, model: str) -> None:
        self._adapter = adapter
        self._model = model
        self._framer = NDJSONFramer()
        self._id = chunk_id()
        self._created = int(time.time())
        self._started = False
        self._tools = 0
        self._done = False
        self._usage: Usage | None = None
        #: Logprobs of lines without text, until a line with text says whose they are
        self._held: list[Any] = []
        #: Whether the model has thought (then only the tokens that spell the content are its)
        self._thought = False
        #: Whether its content has begun (its first line cut to its tokens, the later ones not)
        self._spoke = False

    def feed(self, data: bytes) -> list[ChatChunk]:
        return self._decode(self._framer.feed(data))

    def close(self) -> list[ChatChunk]:
        try:
            out = self._decode(self._framer.close())
        except ProviderResponseError as exc:
            if self._done:
                raise
            raise self._cut() from exc  # a half-written last line: the connection was cut
        if not self._done:
            raise self._cut()
        out.append(self._chunk([], usage=self._usage))
        return out

    def _cut(self) -> ProviderConnectionError:
        name = self._adapter.name
        return ProviderConnectionError(f"{name}: the stream ended before its done line", provider=name)

    def _decode(self, lines: list[bytes]) -> list[ChatChunk]:
        out: list[ChatChunk] = []
        try:
            for line in lines:
                payload = loads(line, self._adapter.name)
                if not isinstance(payload, dict):
                    raise self._adapter._shape_error("stream line", line.decode("utf-8", "replace"))
                if payload.get("error") is not None:
                    raise self._adapter.stream_error(payload)
                if self._done:
                    continue
                out.extend(self._line(payload))
        except UniInferError as exc:
            raise_after(out, exc)  # the events before the error go with it
        return out

    def _line(self, payload: dict[str, Any]) -> list[ChatChunk]:
        message = payload.get("message") or {}
        if not isinstance(message, dict):
            raise self._adapter._shape_error("stream line", orjson.dumps(payload).decode())
        calls = [self._tool_delta(raw) for raw in _list(message.get("tool_calls"))]
        delta = ChunkDelta(
            content=message.get("content") or None,
            reasoning_content=message.get("thinking") or None,
            tool_calls=calls or None,
        )
        raw = payload.get("logprobs")
        said = delta.content or delta.reasoning_content or calls
        if not said and not payload.get("done") and isinstance(raw, list) and raw:
            # tokens the server's parser swallowed (a thinking tag, gpt-oss's channel markers, a
            # call it holds back): whose they are, the next line with text tells
            self._held += raw
            return []
        held, self._held = self._held, []
        if delta.reasoning_content:
            self._thought = True
        try:
            # OpenAI's logprobs are the content's: a thinking model's thinking, the tokens between
            # it and the content, and its call's and end's tokens are left out; the content's
            # first line is cut to its tokens, and from then on every content line's are its own
            # (the server may move a token's text to the next line, never to another token)
            out: list[ChatChunk] = []
            if delta.content:
                raw = held + raw if held and isinstance(raw, list) else held or raw
                cut = (
                    delta.content if delta.reasoning_content or (self._thought and not self._spoke) else None
                )
                logprobs = ollama_logprobs.logprobs(raw, cut)
                self._spoke = True
            elif delta.reasoning_content:
                logprobs = None
            else:  # a call, or the end: its tokens (and those held) only a model that never thought
                logprobs = ollama_logprobs.logprobs(raw)
                if held:
                    early = ollama_logprobs.logprobs(held)
                    if not self._thought:
                        out.append(self._choice(ChunkDelta(), logprobs=early))
                if self._thought:
                    logprobs = None
        except ValueError:
            raise self._adapter._shape_error("stream line", orjson.dumps(payload).decode()) from None
        if said or logprobs:
            out.append(self._choice(delta, logprobs=logprobs))
        if payload.get("done"):
            self._done = True
            self._usage = _usage(payload)
            reason = _finish_reason(payload.get("done_reason"), self._tools > 0)
            out.append(self._choice(ChunkDelta(), reason))
        return out

    def _tool_delta(self, raw: Any) -> ToolCallDelta:
        call = _tool_call(raw)
        self._tools += 1
        return ToolCallDelta(
            index=self._tools - 1,
            id=call.id,
            type="function",
            function=FunctionCallDelta(name=call.function.name, arguments=call.function.arguments),
        )

    def _choice(
        self, delta: ChunkDelta, finish: FinishReason | None = None, logprobs: dict[str, Any] | None = None
    ) -> ChatChunk:
        if not self._started:
            delta.role = "assistant"
            self._started = True
        return self._chunk([ChunkChoice(delta=delta, finish_reason=finish, logprobs=logprobs)])

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatChunk:
        return ChatChunk(id=self._id, created=self._created, model=self._model, choices=choices, usage=usage)
