"""OpenAI Chat Completions and every provider that speaks its wire format.

Request building is a near pass-through: the validated :class:`ChatRequest`
is dumped without unset fields, the upstream model name substituted, and
streams always ask for ``stream_options.include_usage`` so the gateway can
account for every stream (the gateway strips the usage chunk again when the
caller did not ask for it).

Providers that put usage on the last content chunk (instead of a separate
chunk with empty ``choices``) are normalised: the decoder holds usage back
and emits it as one final chunk with ``choices: []``.

Wire format: https://platform.openai.com/docs/api-reference/chat/create and
https://platform.openai.com/docs/api-reference/chat-streaming
"""

from __future__ import annotations

from typing import Any

import orjson

from uniinfer.errors import ProviderConnectionError, ProviderResponseError
from uniinfer.http import HttpRequest, SSEFramer
from uniinfer.providers.base import ProviderAdapter, classify, loads
from uniinfer.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, Usage

__all__ = ["OpenAIAdapter", "OpenAIStreamDecoder"]

_ALL_PARAMS = frozenset(ChatRequest.model_fields) - {"model", "messages", "stream"}


class OpenAIAdapter(ProviderAdapter):
    supported_params = _ALL_PARAMS - {"top_k"}

    def chat_request(self, request: ChatRequest, model: str, *, stream: bool) -> HttpRequest:
        payload: dict[str, Any] = request.model_dump(mode="json", exclude_none=True, by_alias=True)
        payload["model"] = model
        _strip_foreign_fields(payload["messages"], keep_cache_control=self.spec.capabilities.prompt_caching)
        if stream:
            payload["stream"] = True
            options = payload.get("stream_options") or {}
            options["include_usage"] = True
            payload["stream_options"] = options
        else:
            payload.pop("stream", None)
            payload.pop("stream_options", None)
        return HttpRequest(self.url("/chat/completions"), orjson.dumps(payload), self.auth_headers())

    def parse_chat(self, body: bytes, model: str) -> ChatResponse:
        data = loads(body, self.name)
        try:
            return ChatResponse.model_validate(data)
        except ValueError as exc:
            raise ProviderResponseError(
                f"{self.name}: unexpected chat response shape",
                provider=self.name,
                upstream_body=self.redact(body[:1024].decode("utf-8", "replace")),
            ) from exc

    def stream_decoder(self, model: str) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(self)

    def embed_request(self, request: EmbeddingRequest, model: str) -> HttpRequest:
        if not self.spec.capabilities.embeddings:
            raise self.feature_error("embeddings")
        payload = request.model_dump(exclude_none=True)
        payload["model"] = model
        payload["encoding_format"] = "float"  # the server encodes base64 itself
        return HttpRequest(self.url("/embeddings"), orjson.dumps(payload), self.auth_headers())

    def parse_embed(self, body: bytes, model: str) -> EmbeddingResponse:
        data = loads(body, self.name)
        try:
            return EmbeddingResponse.model_validate(data)
        except ValueError as exc:
            raise ProviderResponseError(
                f"{self.name}: unexpected embeddings response shape", provider=self.name
            ) from exc


def _strip_foreign_fields(messages: list[dict[str, Any]], *, keep_cache_control: bool) -> None:
    """Remove what other APIs put in messages and OpenAI rejects as "Unknown parameter".

    ``reasoning_content`` (a previous turn's reasoning, DeepSeek's convention, which
    DeepSeek itself refuses as input) and Anthropic-style ``cache_control`` on text
    parts, unless the provider honours it (OpenRouter forwards it to Anthropic).
    """
    for msg in messages:
        msg.pop("reasoning_content", None)
        content = msg.get("content")
        if not keep_cache_control and isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    part.pop("cache_control", None)


class OpenAIStreamDecoder:
    """``data: {chunk}`` events ending with ``data: [DONE]``."""

    __slots__ = ("_adapter", "_done", "_framer", "_last", "_usage")

    def __init__(self, adapter: ProviderAdapter) -> None:
        self._adapter = adapter
        self._framer = SSEFramer()
        self._usage: Usage | None = None
        self._last: ChatChunk | None = None
        self._done = False

    def feed(self, data: bytes) -> list[ChatChunk]:
        return self._decode(self._framer.feed(data))

    def close(self) -> list[ChatChunk]:
        name = self._adapter.name
        try:
            out = self._decode(self._framer.close())
        except ProviderResponseError:
            if self._done:
                raise
            out = []  # the half-received last event of a cut stream
        if not self._done:
            raise ProviderConnectionError(f"{name}: the stream ended before [DONE]", provider=name)
        if self._usage is not None and self._last is not None:
            out.append(
                ChatChunk(
                    id=self._last.id,
                    created=self._last.created,
                    model=self._last.model,
                    choices=[],
                    usage=self._usage,
                    system_fingerprint=self._last.system_fingerprint,
                )
            )
        return out

    def _decode(self, events: list[tuple[str, str]]) -> list[ChatChunk]:
        out: list[ChatChunk] = []
        for _event, data in events:
            if data == "[DONE]":
                self._done = True
                continue
            payload = loads(data.encode(), self._adapter.name)
            if isinstance(payload, dict) and "error" in payload:
                raise self._stream_error(payload)
            try:
                chunk = ChatChunk.model_validate(payload)
            except ValueError as exc:
                raise ProviderResponseError(
                    f"{self._adapter.name}: unexpected stream chunk shape",
                    provider=self._adapter.name,
                    upstream_body=data[:512],
                ) from exc
            self._last = chunk
            if chunk.usage is not None:
                self._usage = chunk.usage
                if not chunk.choices:
                    continue
                chunk.usage = None
            out.append(chunk)
        return out

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
