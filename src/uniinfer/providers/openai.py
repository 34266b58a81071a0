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
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict

from uniinfer.errors import (
    ConfigError,
    UnsupportedParamError,
)
from uniinfer.http import HttpRequest
from uniinfer.providers.base import Endpoint, ProviderAdapter, ProviderSpec, loads
from uniinfer.providers.openai_shape import error_status, plain_answer_usage
from uniinfer.providers.openai_stream import OpenAIStreamDecoder, map_finish_reasons
from uniinfer.providers.translation import openai_strict_schema, plain_call_id
from uniinfer.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Usage,
)
from uniinfer.types.chat import OPENAI_ONLY, ToolChoiceFunction

__all__ = ["OpenAIAdapter", "OpenAIStreamDecoder", "map_finish_reasons", "url_placeholders"]

_ALL_PARAMS = frozenset(ChatRequest.model_fields) - {"model", "messages", "stream"}


class RowOptions(BaseModel):
    """``providers.<name>.options`` of an OpenAI-compatible row (names checked by the adapter)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class OpenAIAdapter(ProviderAdapter):
    #: OpenAI's own params (it has no ``top_k``); a row adds the ones its server
    #: accepts beyond them with ``extra_params`` (see :meth:`supported_for`).
    supported_params = _ALL_PARAMS - {"top_k"} - OPENAI_ONLY  # the openai row adds its own
    #: Answers are forwarded in the provider's own JSON (:meth:`chat_json`); a
    #: subclass whose :meth:`parse_chat` rewrites them sets this to False.
    passthrough: ClassVar[bool] = True
    #: An assistant turn's ``audio`` (a previous audio answer by id) goes as it came: the
    #: provider judges it (OpenAI's audio models take it).
    audio_turns: ClassVar[bool] = True

    def __init__(self, spec: ProviderSpec, endpoint: Endpoint, name: str | None = None) -> None:
        super().__init__(spec, endpoint, name)
        self.endpoint = self._fill_base_url(endpoint)
        #: OpenAI's params and the row's extras (forwarded as they are by the request dump)
        self._supported = self.supported_params | spec.extra_params
        #: Whether this row takes OpenAI's own fields (the openai row), parts' breakpoints included
        self._openai_itself = self._supported >= OPENAI_ONLY
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
        _strip_foreign_fields(
            payload["messages"],
            self.spec.reasoning_back,
            keep_cache_control=self.spec.capabilities.prompt_caching,
            keep_breakpoints=self._openai_itself,
        )
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
        if isinstance(data, dict) and data.get("error") and "choices" not in data:
            # an error after a 200 (OpenRouter's, once a request is under way: "the returned HTTP
            # response status will be 200 and any error ... will be emitted in the response
            # body"): classified as its code says, so it falls back where it should
            raise self.parse_error(error_status(data, 502), {}, body)
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
        if not spec.embed_token_ids:
            self.embed_texts(request, model)  # token ids: refused (see ProviderSpec.embed_token_ids)
        payload = request.model_dump(exclude_none=True)
        payload["model"] = model
        payload["encoding_format"] = "float"  # the server encodes base64 itself
        for key in spec.embed_omit:
            payload.pop(key, None)
        _rename(payload, spec.embed_param_renames)
        payload.update(spec.embed_defaults)
        payload.update((k, v) for k, v in self.option_values.items() if k in spec.embed_options)
        return HttpRequest(self.url("/embeddings"), orjson.dumps(payload), self.auth_headers())

    def parse_embed(self, body: bytes, model: str) -> EmbeddingResponse:
        data = loads(body, self.name)
        if isinstance(data, dict) and data.get("usage", {}) is None:
            del data["usage"]  # a server that counts nothing says null: nothing reported, not a 502
        try:
            parsed = EmbeddingResponse.model_validate(data)
        except ValueError as exc:
            raise self.shape_error("embeddings response", body) from exc
        usage = parsed.usage
        if not usage.prompt_tokens and usage.total_tokens:
            usage.prompt_tokens = usage.total_tokens  # Voyage reports total_tokens only
        elif not usage.total_tokens and usage.prompt_tokens:
            usage.total_tokens = usage.prompt_tokens  # input tokens are all an embedding costs
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


def _strip_foreign_fields(
    messages: list[dict[str, Any]],
    reasoning_back: frozenset[str],
    *,
    keep_cache_control: bool,
    keep_breakpoints: bool,
) -> None:
    """Remove what other APIs put in messages and OpenAI rejects as "Unknown parameter".

    A previous turn's reasoning (``reasoning_content``, DeepSeek's convention; OpenRouter's
    ``reasoning_details``) but where the row takes it back (:attr:`ProviderSpec.reasoning_back`:
    ``reasoning_content`` on a turn with tool calls only, as DeepSeek asks), Anthropic-style
    ``cache_control`` on text
    parts, unless the provider honours it (OpenRouter forwards it to Anthropic), and OpenAI's
    own ``prompt_cache_breakpoint`` elsewhere than OpenAI (a hint that no other takes); and
    the Gemini signature in a tool call id (:func:`plain_call_id`: OpenAI caps ids at 40).
    """
    for msg in messages:
        calls = msg.get("tool_calls")
        if "reasoning_content" in msg and not (calls and "reasoning_content" in reasoning_back):
            del msg["reasoning_content"]
        if "reasoning_details" in msg and "reasoning_details" not in reasoning_back:
            del msg["reasoning_details"]
        for call in calls or ():
            call["id"] = plain_call_id(call["id"])
        tool_call_id = msg.get("tool_call_id")
        if tool_call_id is not None:
            msg["tool_call_id"] = plain_call_id(tool_call_id)
        content = msg.get("content")
        if isinstance(content, list) and not (keep_cache_control and keep_breakpoints):
            for part in content:
                if isinstance(part, dict):
                    if not keep_cache_control:
                        part.pop("cache_control", None)
                    if not keep_breakpoints:
                        part.pop("prompt_cache_breakpoint", None)


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
