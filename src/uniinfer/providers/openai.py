"""OpenAI Chat Completions and every provider that speaks its wire format.

Request building is a near pass-through: the validated :class:`ChatRequest`
is dumped without unset fields, the upstream model name substituted, and
streams always ask for ``stream_options.include_usage`` so the gateway can
account for every stream (the gateway strips the usage chunk again when the
caller did not ask for it).

Providers that put usage on the last content chunk (instead of a separate
chunk with empty ``choices``), or inside the last choice (Moonshot), are
normalised: the decoder holds usage back and emits it as one final chunk with
``choices: []``.

OpenAI-compatible rows declare their quirks as data on
:class:`~uniinfer.providers.base.ProviderSpec` and this adapter handles each
generically: ``stream_usage`` (whether to ask for usage with
``stream_options``), ``finish_reason_map`` (a non-OpenAI vocabulary such as
``"eos"``), ``param_renames`` / ``embed_param_renames`` (a param under another
name), ``extra_params`` (params beyond OpenAI's that the server takes, such as
``top_k``), ``embed_omit`` and ``embed_options``, and ``{placeholders}`` in the base
URL filled from ``providers.<name>.options`` (Cloudflare's ``{account_id}``).

Wire format: https://platform.openai.com/docs/api-reference/chat/create and
https://platform.openai.com/docs/api-reference/chat-streaming
"""

from __future__ import annotations

import dataclasses
import string
import time
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict

from uniinfer.errors import (
    ConfigError,
    ProviderConnectionError,
    ProviderResponseError,
    UniInferError,
    UnsupportedParamError,
)
from uniinfer.framing import SSEBytesFramer
from uniinfer.http import HttpRequest
from uniinfer.providers.base import Endpoint, ProviderAdapter, ProviderSpec, classify, loads, raise_after
from uniinfer.providers.openai_shape import (
    is_plain_chunk,
    plain_answer_usage,
    plain_run_usage,
    usage_chunk_usage,
)
from uniinfer.providers.translation import openai_strict_schema, plain_call_id
from uniinfer.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    RawEvents,
    StreamItem,
    Usage,
)
from uniinfer.types.chat import ToolChoiceFunction

__all__ = ["OpenAIAdapter", "OpenAIStreamDecoder", "map_finish_reasons", "url_placeholders"]

_ALL_PARAMS = frozenset(ChatRequest.model_fields) - {"model", "messages", "stream"}


class RowOptions(BaseModel):
    """``providers.<name>.options`` of an OpenAI-compatible row (names checked by the adapter)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class OpenAIAdapter(ProviderAdapter):
    #: OpenAI's own params (it has no ``top_k``); a row adds the ones its server
    #: accepts beyond them with ``extra_params`` (see :meth:`supported_for`).
    supported_params = _ALL_PARAMS - {"top_k"}
    #: Answers are forwarded in the provider's own JSON (:meth:`chat_json`); a
    #: subclass whose :meth:`parse_chat` rewrites them sets this to False.
    passthrough: ClassVar[bool] = True

    def __init__(self, spec: ProviderSpec, endpoint: Endpoint, name: str | None = None) -> None:
        super().__init__(spec, endpoint, name)
        self.endpoint = self._fill_base_url(endpoint)
        #: OpenAI's params and the row's extras (forwarded as they are by the request dump)
        self._supported = self.supported_params | spec.extra_params
        #: Params sent under another name: the row's (a subclass may add its own)
        self.param_renames: Mapping[str, str] = spec.param_renames

    def supported_for(self, model: str) -> frozenset[str]:
        return self._supported

    def values_refused(self, request: ChatRequest, model: str) -> tuple[str, ...]:
        """A named ``tool_choice`` where the row says the server reads only the strings."""
        named = isinstance(request.tool_choice, ToolChoiceFunction)
        return ("tool_choice",) if named and not self.spec.named_tool_choice else ()

    # --- options and the base URL ---------------------------------------------------

    def _check_options(self, options: Mapping[str, Any]) -> BaseModel | None:
        """Options are the base URL's placeholders and the row's ``embed_options``; nothing else.

        A subclass with its own ``Options`` model (a native adapter built on this
        one) gets the usual typed check instead.
        """
        allowed = set(url_placeholders(self.spec.base_url)) | self.spec.embed_options
        if self.Options is not None or not allowed:
            return super()._check_options(options)
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigError(
                f"providers.{self.name}.options: unknown option(s) {', '.join(unknown)} "
                f"(provider '{self.spec.name}' takes: {', '.join(sorted(allowed))})"
            )
        return RowOptions.model_validate(dict(options))

    @property
    def option_values(self) -> dict[str, Any]:
        """The configured row options as a plain mapping (empty for a typed ``Options`` model)."""
        options = self.options
        return dict(options.model_extra or {}) if isinstance(options, RowOptions) else {}

    def _fill_base_url(self, endpoint: Endpoint) -> Endpoint:
        """Fill ``{placeholders}`` of the base URL (e.g. ``{account_id}``) from the options."""
        names = url_placeholders(endpoint.base_url)
        if not names:
            return endpoint
        values = self.option_values
        missing = [n for n in names if not str(values.get(n) or "")]
        if missing:
            raise ConfigError(
                f"provider '{self.name}' needs providers.{self.name}.options.{missing[0]} "
                f"(its base URL is {endpoint.base_url}), or a complete base_url"
            )
        url = endpoint.base_url.format_map({n: str(values[n]) for n in names})
        return dataclasses.replace(endpoint, base_url=url)

    # --- chat ---------------------------------------------------------------------------

    def chat_request(self, request: ChatRequest, model: str, *, stream: bool) -> HttpRequest:
        choice = request.tool_choice
        if isinstance(choice, ToolChoiceFunction) and not self.spec.named_tool_choice:
            raise UnsupportedParamError(
                f"provider '{self.name}' cannot force a named tool (tool_choice function "
                f"'{choice.function.name}'): it reads only 'auto', 'none' and 'required'; use one "
                "of those, or set settings.drop_unsupported_params",
                provider=self.name,
                param="tool_choice",
            )
        payload: dict[str, Any] = request.model_dump(mode="json", exclude_none=True, by_alias=True)
        payload["model"] = model
        intent = request.messages_intent
        if intent is not None and intent.anthropic_strict:
            _loosen_strict_tools(payload.get("tools") or ())
        _strip_foreign_fields(payload["messages"], keep_cache_control=self.spec.capabilities.prompt_caching)
        if "max_completion_tokens" in payload:  # its successor wins, as with every other adapter
            payload.pop("max_tokens", None)
        _rename(payload, self.param_renames)
        if stream:
            payload["stream"] = True
            self._stream_options(payload)
        else:
            payload.pop("stream", None)
            payload.pop("stream_options", None)
        return HttpRequest(self.url("/chat/completions"), orjson.dumps(payload), self.auth_headers())

    def _stream_options(self, payload: dict[str, Any]) -> None:
        """Ask for usage where the provider needs asking; elsewhere send no ``stream_options``.

        The gateway strips the usage chunk again when the caller did not ask for it.
        """
        if self.spec.stream_usage != "stream_options":
            payload.pop("stream_options", None)
            return
        options = payload.get("stream_options") or {}
        options["include_usage"] = True
        payload["stream_options"] = options

    def parse_chat(self, body: bytes, model: str) -> ChatResponse:
        if not self.spec.finish_reason_map:
            try:  # the common case: pydantic parses the bytes directly, in one pass
                return ChatResponse.model_validate_json(body)
            except ValueError:
                pass  # not JSON, or not the expected shape: explained below
        data = loads(body, self.name)
        if self.spec.finish_reason_map and isinstance(data, dict):
            map_finish_reasons(data, self.spec.finish_reason_map)
        try:
            return ChatResponse.model_validate(data)
        except ValueError as exc:
            raise self.shape_error("chat response", body) from exc

    def chat_json(self, body: bytes, model: str) -> tuple[bytes, Usage | None] | None:
        """The provider's own JSON once it checks out as a ``chat.completion``.

        Checked: a JSON object with string ``id`` and ``model``, a ``choices``
        list of objects each with a ``message`` object and one of OpenAI's
        finish reasons, and a ``usage`` that validates. Anything else, and rows
        that rewrite answers (a finish-reason vocabulary), go through
        :meth:`parse_chat`, which says what is wrong.
        """
        if not self.passthrough or self.spec.finish_reason_map:
            return None
        usage = plain_answer_usage(body)
        if usage is None:
            return None
        if usage == b"null":
            return body, None
        try:
            return body, Usage.model_validate_json(usage)
        except ValueError:
            return None

    def stream_decoder(self, model: str) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(self)

    # --- embeddings -------------------------------------------------------------------

    def embed_request(self, request: EmbeddingRequest, model: str) -> HttpRequest:
        if not self.spec.capabilities.embeddings:
            raise self.feature_error("embeddings")
        spec = self.spec
        payload = request.model_dump(exclude_none=True)
        payload["model"] = model
        payload["encoding_format"] = "float"  # the server encodes base64 itself
        for key in spec.embed_omit:
            payload.pop(key, None)
        _rename(payload, spec.embed_param_renames)
        payload.update((k, v) for k, v in self.option_values.items() if k in spec.embed_options)
        return HttpRequest(self.url("/embeddings"), orjson.dumps(payload), self.auth_headers())

    def parse_embed(self, body: bytes, model: str) -> EmbeddingResponse:
        data = loads(body, self.name)
        try:
            parsed = EmbeddingResponse.model_validate(data)
        except ValueError as exc:
            raise self.shape_error("embeddings response", body) from exc
        usage = parsed.usage
        if not usage.prompt_tokens and usage.total_tokens:
            usage.prompt_tokens = usage.total_tokens  # Voyage reports total_tokens only
        return parsed

    # --- model discovery ----------------------------------------------------------------

    def models_request(self) -> HttpRequest | None:
        """``GET /models`` of a local server (vLLM, LM Studio, llama.cpp...): what it has loaded."""
        if not self.spec.local:
            return None  # a hosted catalogue is long and changes on its own; routing needs no list
        return HttpRequest(self.url("/models"), b"", self.auth_headers(), method="GET")

    def parse_models(self, body: bytes) -> list[str]:
        data = loads(body, self.name)
        models = data.get("data") if isinstance(data, dict) else None
        if not isinstance(models, list):
            raise self.shape_error("model list", body)
        return [m["id"] for m in models if isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"]]

    # --- errors -------------------------------------------------------------------------

    def error_message(self, payload: Any) -> tuple[str | None, str | None]:
        """OpenAI's ``{"error": {...}}``, or FastAPI's ``{"detail": ...}`` (Voyage, Jina)."""
        if isinstance(payload, dict) and "error" not in payload and "detail" in payload:
            detail = payload["detail"]
            return (detail if isinstance(detail, str) else orjson.dumps(detail).decode()), None
        return super().error_message(payload)


def map_finish_reasons(data: dict[str, Any], mapping: Mapping[str, str]) -> None:
    """Rewrite a provider's ``finish_reason`` vocabulary to OpenAI's, in place."""
    choices = data.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict):
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason in mapping:
                choice["finish_reason"] = mapping[reason]


def url_placeholders(url: str) -> list[str]:
    """The ``{name}`` fields of a base URL, in order (``[]`` for a plain URL)."""
    return [name for _, name, _, _ in string.Formatter().parse(url) if name]


def _rename(payload: dict[str, Any], renames: Mapping[str, str]) -> None:
    """Move each renamed field to its new name; a field already given under that name wins
    (``max_tokens`` and ``max_completion_tokens`` never both reach here)."""
    for old, new in renames.items():
        if old in payload:
            value = payload.pop(old)
            payload.setdefault(new, value)


def _strip_foreign_fields(messages: list[dict[str, Any]], *, keep_cache_control: bool) -> None:
    """Remove what other APIs put in messages and OpenAI rejects as "Unknown parameter".

    ``reasoning_content`` (a previous turn's reasoning, DeepSeek's convention, which
    DeepSeek itself refuses as input) and Anthropic-style ``cache_control`` on text
    parts, unless the provider honours it (OpenRouter forwards it to Anthropic); and
    the Gemini signature in a tool call id (:func:`plain_call_id`: OpenAI caps ids at 40).
    """
    for msg in messages:
        msg.pop("reasoning_content", None)
        calls = msg.get("tool_calls")
        for call in calls or ():
            call["id"] = plain_call_id(call["id"])
        tool_call_id = msg.get("tool_call_id")
        if tool_call_id is not None:
            msg["tool_call_id"] = plain_call_id(tool_call_id)
        content = msg.get("content")
        if not keep_cache_control and isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    part.pop("cache_control", None)


def _loosen_strict_tools(tools: Iterable[dict[str, Any]]) -> None:
    """``strict: false`` for the strict tools whose schema OpenAI's strict mode refuses.

    An Anthropic client's strict tool may have optional properties, which Anthropic allows
    and OpenAI refuses (400) in strict mode: the schema then guides the arguments without
    the guarantee, as it does with every model that has no strict mode.
    """
    for tool in tools:
        function = tool["function"]
        if function.get("strict") and not openai_strict_schema(function.get("parameters")):
            function["strict"] = False


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

    __slots__ = ("_adapter", "_done", "_framer", "_last", "_map", "_usage", "_usage_event")

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
        if not self._done:
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
                if chunk.usage is not None:
                    self._usage, self._usage_event = chunk.usage, None
                    if not chunk.choices:
                        continue
                    chunk.usage = None
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
        """Usage inside the last choice (Moonshot) moves up; finish reasons get OpenAI's names."""
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
            500,
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
