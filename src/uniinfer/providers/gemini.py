"""Google Gemini (AI Studio) ``generateContent`` / ``embedContent`` adapter.

Wire format: https://ai.google.dev/api/generate-content (``generateContent``,
``streamGenerateContent?alt=sse``), https://ai.google.dev/gemini-api/docs/function-calling,
https://ai.google.dev/gemini-api/docs/structured-output, https://ai.google.dev/gemini-api/docs/thinking,
https://ai.google.dev/api/embeddings and https://ai.google.dev/gemini-api/docs/troubleshooting
(errors are ``google.rpc.Status``: ``{"error": {"code", "message", "status", "details"}}``).

The key travels in the ``x-goog-api-key`` header, never in the ``?key=`` query
parameter, so it cannot land in URLs, access logs or error messages.

Requests are built by :mod:`uniinfer.providers.gemini_request` (pure functions).

Usage normalisation (``usageMetadata`` -> :class:`Usage`, never recounted):

- ``prompt_tokens`` = ``promptTokenCount`` (which already includes cached
  tokens) + ``toolUsePromptTokenCount`` (server-side tool input, when present);
- ``cached_tokens`` = ``cachedContentTokenCount``;
- ``completion_tokens`` = ``candidatesTokenCount`` + ``thoughtsTokenCount``:
  Gemini counts thinking apart from the answer, OpenAI's completion tokens
  include reasoning tokens; ``reasoning_tokens`` = ``thoughtsTokenCount``;
- ``total_tokens`` = ``totalTokenCount`` exactly as reported.

Thought signatures on ``functionCall`` parts (Gemini 3) come back inside the tool
call id, streamed or not; see :mod:`uniinfer.providers.gemini_request`.

A candidate's text parts are joined into ``content`` and its ``functionCall``
parts become ``tool_calls``; when a text follows a call, the parts' order is also
kept as the message's :attr:`~uniinfer.types.chat.ResponseMessage.content_blocks`
(never serialised), for the Anthropic Messages ingress.

``finishReason`` (the ``FinishReason`` enum of the API reference) -> OpenAI's:

- ``STOP`` -> ``stop`` (``tool_calls`` when the candidate called functions),
  ``MAX_TOKENS`` -> ``length``;
- withheld by Google's policies -> ``content_filter``: ``SAFETY``, ``RECITATION``,
  ``BLOCKLIST``, ``PROHIBITED_CONTENT``, ``SPII``, ``LANGUAGE`` (flagged for an
  unsupported language), the ``IMAGE_*`` ones, and ``OTHER`` / ``NO_IMAGE`` /
  unknown values: generation was stopped by Google, not ended by the model, and
  OpenAI's set has no closer value than ``content_filter`` (never a clean ``stop``);
- the model failed to produce a usable call or response -> a retryable
  :class:`~uniinfer.errors.ProviderError` (the router may retry or fall back; the
  same request often succeeds): ``MALFORMED_FUNCTION_CALL``, ``UNEXPECTED_TOOL_CALL``,
  ``TOO_MANY_TOOL_CALLS``, ``MALFORMED_RESPONSE``;
- ``MISSING_THOUGHT_SIGNATURE`` -> :class:`~uniinfer.errors.InvalidRequestError`
  (the conversation lacks a signature; retrying it cannot help).

Streams carry one ``GenerateContentResponse`` per SSE event and no end marker:
the body simply ends, so a stream counts as complete only when every candidate
reported a ``finishReason``. Usage (the last ``usageMetadata``) is emitted by
``close()`` as one final chunk with empty ``choices``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict

from uniinfer.errors import (
    AuthenticationError,
    ContentFilteredError,
    ContextLengthExceededError,
    InvalidRequestError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    UniInferError,
    UnsupportedParamError,
)
from uniinfer.framing import SSEFramer
from uniinfer.http import HttpRequest, retry_after_seconds
from uniinfer.providers.base import ProviderAdapter, chunk_id, classify, loads, raise_after
from uniinfer.providers.gemini_request import (
    EmbedTaskType,
    call_id,
    chat_payload,
    embed_item,
    model_path,
    signs_calls,
)
from uniinfer.providers.translation import add_answer_text, answer_order, logprobs_of, token_logprob
from uniinfer.types import ChatChunk, ChatRequest, ChatResponse, Embedding, EmbeddingRequest, Usage, chat
from uniinfer.types.chat import (
    AnswerBlock,
    ChatChoice,
    ChunkChoice,
    ChunkDelta,
    FinishReason,
    FunctionCall,
    ToolCall,
)
from uniinfer.types.embeddings import EmbeddingResponse, EmbeddingUsage

__all__ = ["GeminiAdapter", "GeminiStreamDecoder"]

#: Texts one ``batchEmbedContents`` call may carry ("at most 100 requests can be in one batch").
MAX_BATCH_EMBED = 100

Json = dict[str, Any]

_FINISH: dict[str, FinishReason] = {
    "FINISH_REASON_UNSPECIFIED": "stop",  # "unused" per the enum's docs
    "STOP": "stop",
    "MAX_TOKENS": "length",
}
#: finishReason -> what went wrong, raised as a retryable ProviderError.
_FAILED = {
    "MALFORMED_FUNCTION_CALL": "the model produced a malformed function call",
    "UNEXPECTED_TOOL_CALL": "the model called a tool that the request did not make available",
    "TOO_MANY_TOOL_CALLS": "the model made too many tool calls in a row",
    "MALFORMED_RESPONSE": "the model produced a malformed response",
}
# google.rpc.Code names -> HTTP status (https://ai.google.dev/gemini-api/docs/troubleshooting)
_RPC_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
# "The input token count (N) exceeds the maximum number of tokens allowed (M)."
_CONTEXT_MARKERS = ("token count", "exceeds the maximum number of tokens")
#: 400s refusing a param for this model only, by Google's words, and the param: the API takes the
#: field but some models do not ("Penalty is not enabled for models/gemini-2.5-flash",
#: "Logprobs is not enabled for models/gemini-2.5-pro", googleapis/python-genai#1921; "Tool use
#: with a response mime type: 'application/json' is unsupported" before Gemini 3). An
#: ``unsupported_param``, so that the group's next deployment is tried.
_REFUSED_FOR_MODEL = (
    ("penalty is not enabled", "presence_penalty"),  # which penalty, the words do not say
    ("logprobs is not enabled", "logprobs"),
    ("tool use with a response mime type", "response_format"),
)


class GeminiOptions(BaseModel):
    """``providers.<name>.options`` for the Gemini API."""

    model_config = ConfigDict(extra="forbid")
    #: Sent as every embedding's ``taskType`` (what the vectors are for: a retrieval query and
    #: the documents it looks for are embedded apart); unset, the model's default.
    embed_task_type: EmbedTaskType | None = None


class GeminiAdapter(ProviderAdapter):
    """OpenAI chat/embeddings <-> Gemini ``generateContent`` / ``embedContent``."""

    embed_unsupported = frozenset({"user"})  # no field for an end-user id in its embeddings API
    Options: ClassVar[type[BaseModel] | None] = GeminiOptions
    supported_params = (
        frozenset({"temperature", "top_p", "top_k", "seed", "presence_penalty", "frequency_penalty"})
        | frozenset({"max_tokens", "max_completion_tokens", "stop", "n", "logprobs", "top_logprobs"})
        | frozenset({"response_format", "tools", "tool_choice", "stream_options", "reasoning_effort"})
    )

    def auth_headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.endpoint.api_key:
            headers["x-goog-api-key"] = self.endpoint.api_key
        headers.update(self.endpoint.headers)
        return headers

    # --- chat ---------------------------------------------------------------------

    def chat_request(self, request: ChatRequest, model: str, *, stream: bool) -> HttpRequest:
        # Usage arrives on every stream event without asking, so stream_options needs no field.
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        body = orjson.dumps(chat_payload(request, self.name, model))
        return HttpRequest(self.url(f"/{model_path(model)}:{action}"), body, self.auth_headers())

    def parse_chat(self, body: bytes, model: str) -> ChatResponse:
        data = self._object(body)
        candidates = data.get("candidates")
        if not candidates or not isinstance(candidates, list):
            raise self._no_candidates(data)
        signed = signs_calls(model) or signs_calls(str(data.get("modelVersion") or ""))
        usage = _usage(data.get("usageMetadata"))
        try:
            choices = self._choices(candidates, signed, body)
        except ProviderError as exc:  # a failed generation, billed all the same
            exc.usage = usage
            raise
        return ChatResponse(
            id=_response_id(data),
            model=str(data.get("modelVersion") or model),
            choices=choices,
            usage=usage,
        )

    def _choices(self, candidates: list[Any], signed: bool, body: bytes) -> list[ChatChoice]:
        choices: list[ChatChoice] = []
        for pos, cand in enumerate(candidates):
            if not isinstance(cand, dict):
                raise self.shape_error("candidate", body)
            text, thought, calls = _split_parts(cand.get("content"))
            tool_calls = [ToolCall(id=_id(c, signed), function=_function(c)) for c in calls] or None
            message = chat.ResponseMessage(
                content=text if text or not tool_calls else None,
                tool_calls=tool_calls,
                reasoning_content=thought or None,
                content_blocks=_in_order(cand["content"], text, tool_calls) if tool_calls else None,
            )
            choices.append(
                ChatChoice(
                    index=_index(cand, pos),
                    message=message,
                    finish_reason=_finish(cand, bool(calls), self.name) or "stop",
                    logprobs=_logprobs(cand.get("logprobsResult")),
                )
            )
        return choices

    def stream_decoder(self, model: str) -> GeminiStreamDecoder:
        return GeminiStreamDecoder(self, model)

    # --- embeddings -----------------------------------------------------------------

    def embed_request(self, request: EmbeddingRequest, model: str) -> HttpRequest:
        texts = self.embed_texts(request, model, MAX_BATCH_EMBED)
        path = model_path(model)
        task = self.options.embed_task_type if isinstance(self.options, GeminiOptions) else None
        if len(texts) == 1:
            url, payload = self.url(f"/{path}:embedContent"), embed_item(texts[0], request.dimensions, task)
        else:
            items = [{"model": path, **embed_item(t, request.dimensions, task)} for t in texts]
            url, payload = self.url(f"/{path}:batchEmbedContents"), {"requests": items}
        return HttpRequest(url, orjson.dumps(payload), self.auth_headers())

    def parse_embed(self, body: bytes, model: str) -> EmbeddingResponse:
        data = self._object(body)
        single, batch = data.get("embedding"), data.get("embeddings")
        vectors = [single] if isinstance(single, dict) else batch
        if not isinstance(vectors, list):
            raise self.shape_error("embeddings response", body)
        try:
            items = [
                Embedding(index=i, embedding=v.get("values") if isinstance(v, dict) else None)
                for i, v in enumerate(vectors)
            ]
        except ValueError as exc:
            raise self.shape_error("embedding", body) from exc
        # The Gemini API reports no token counts for embeddings (EmbedContentResponse has
        # only ``embedding``), so usage stays 0 unless a response ever carries usageMetadata.
        meta = data.get("usageMetadata")
        tokens = _int(meta.get("promptTokenCount")) if isinstance(meta, dict) else None
        usage = EmbeddingUsage(prompt_tokens=tokens or 0, total_tokens=tokens or 0)
        return EmbeddingResponse(data=items, model=model, usage=usage)

    # --- errors -----------------------------------------------------------------------

    def error_message(self, payload: Any) -> tuple[str | None, str | None]:
        """(message, ``google.rpc`` status name such as ``RESOURCE_EXHAUSTED``)."""
        err = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(err, dict):
            return super().error_message(payload)
        message, status = err.get("message"), err.get("status") or err.get("code")
        return (str(message) if message else None, str(status) if status else None)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UniInferError:
        try:
            payload = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            payload = None
        return self.rpc_error(status, payload, body.decode("utf-8", "replace"), retry_after_seconds(headers))

    def rpc_error(self, status: int, payload: Any, raw: str, retry_after: float | None) -> UniInferError:
        """Map a ``google.rpc.Status`` body (HTTP error or stream event) to the error tree."""
        text = self.redact(raw)
        message, code = self.error_message(payload)
        detail = self.redact(message) if message else (text[:200] or f"HTTP {status}")
        msg = f"{self.name}: {detail}"
        details = _details(payload)
        if retry_after is None:
            retry_after = _retry_delay(details)
        kwargs: dict[str, Any] = {"provider": self.name, "upstream_status": status, "upstream_body": text}
        # A wrong key is a 400 INVALID_ARGUMENT whose ErrorInfo reason is API_KEY_INVALID.
        if code == "UNAUTHENTICATED" or any(d.get("reason") == "API_KEY_INVALID" for d in details):
            return AuthenticationError(msg, **kwargs)
        if code == "FAILED_PRECONDITION":  # e.g. free tier not offered in the caller's region
            return PermissionDeniedError(msg, **kwargs)
        if status == 400:
            lowered = detail.lower()
            if any(m in lowered for m in _CONTEXT_MARKERS):
                return ContextLengthExceededError(msg, **kwargs)
            param = next((param for marker, param in _REFUSED_FOR_MODEL if marker in lowered), None)
            if param is not None:
                return UnsupportedParamError(msg, param=param, **kwargs)
        return classify(status, msg, code=code, provider=self.name, body=text, retry_after=retry_after)

    # --- helpers ------------------------------------------------------------------------

    def _object(self, body: bytes) -> Json:
        data = loads(body, self.name)
        if not isinstance(data, dict):
            raise self.shape_error("response", body)
        if isinstance(data.get("error"), dict):
            raise self.rpc_error(_status_of(data), data, body.decode("utf-8", "replace"), None)
        return data

    def _no_candidates(self, data: Json) -> UniInferError:
        feedback = data.get("promptFeedback")
        reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
        body = self.redact(orjson.dumps(data).decode())
        if reason:
            return ContentFilteredError(
                f"{self.name}: the prompt was blocked ({reason})", provider=self.name, upstream_body=body
            )
        return ProviderResponseError(
            f"{self.name}: the response has no candidates", provider=self.name, upstream_body=body
        )


class GeminiStreamDecoder:
    """``data: {GenerateContentResponse}`` events; complete once every candidate finished."""

    __slots__ = (
        "_adapter",
        "_calls",
        "_created",
        "_finished",
        "_framer",
        "_id",
        "_model",
        "_signed",
        "_usage",
    )

    def __init__(self, adapter: GeminiAdapter, model: str) -> None:
        self._adapter = adapter
        self._model = model
        self._signed = signs_calls(model)  # tool call ids carry thought signatures
        self._framer = SSEFramer()
        self._id: str | None = None
        self._created = int(time.time())
        self._usage: Usage | None = None
        #: candidate index -> tool calls emitted so far (the next ToolCallDelta index)
        self._calls: dict[int, int] = {}
        self._finished: set[int] = set()

    def feed(self, data: bytes) -> list[ChatChunk]:
        return self._decode(self._framer.feed(data))

    def close(self) -> list[ChatChunk]:
        out = self._decode(self._framer.close())
        if not self._finished or self._calls.keys() - self._finished:
            name = self._adapter.name
            raise ProviderConnectionError(f"{name}: the stream ended before a finishReason", provider=name)
        if self._usage is not None:
            out.append(self._chunk([], usage=self._usage))
        return out

    def _decode(self, events: list[tuple[str, str]]) -> list[ChatChunk]:
        out: list[ChatChunk] = []
        try:
            for _event, data in events:
                payload = loads(data.encode(), self._adapter.name)
                if not isinstance(payload, dict):
                    raise self._adapter.shape_error("stream event", data)
                if isinstance(payload.get("error"), dict):
                    raise self._adapter.rpc_error(_status_of(payload), payload, data, None)
                if self._id is None:
                    self._id = _response_id(payload)
                self._model = str(payload.get("modelVersion") or self._model)
                self._signed = self._signed or signs_calls(self._model)
                usage = _usage(payload.get("usageMetadata"))
                self._usage = usage or self._usage
                candidates = payload.get("candidates")
                if not candidates:
                    feedback = payload.get("promptFeedback")
                    if isinstance(feedback, dict) and feedback.get("blockReason"):
                        raise self._adapter._no_candidates(payload)
                    continue  # usage, or feedback that blocks nothing: the candidates come after
                before = len(out)
                for pos, cand in enumerate(candidates if isinstance(candidates, list) else ()):
                    if isinstance(cand, dict):
                        self._candidate(cand, _index(cand, pos), out)
                if usage is not None and len(out) > before:  # the counts so far (see early_usage)
                    out[-1].early_usage = usage
        except UniInferError as exc:
            if isinstance(exc, ProviderError) and exc.usage is None:
                exc.usage = self._usage  # a failed generation's tokens, billed all the same
            raise_after(out, exc)  # the events before the error go with it
        return out

    def _candidate(self, cand: Json, index: int, out: list[ChatChunk]) -> None:
        """Append ``cand``'s chunks to ``out`` (before a failed finishReason raises)."""
        text, thought, calls = _split_parts(cand.get("content"))
        first = index not in self._calls
        done = self._calls.setdefault(index, 0)
        deltas = [
            chat.ToolCallDelta(
                index=done + k,
                id=_id(part, self._signed),
                type="function",
                function=chat.FunctionCallDelta(name=fn.name, arguments=fn.arguments),
            )
            for k, (part, fn) in enumerate((c, _function(c)) for c in calls)
        ]
        self._calls[index] = done + len(deltas)
        if first or text or thought or deltas:
            delta = ChunkDelta(
                role="assistant" if first else None,
                content=text or None,
                reasoning_content=thought or None,
                tool_calls=deltas or None,
            )
            logprobs = _logprobs(cand.get("logprobsResult"))
            out.append(self._chunk([ChunkChoice(index=index, delta=delta, logprobs=logprobs)]))
        reason = _finish(cand, self._calls[index] > 0, self._adapter.name)
        if reason is not None:
            self._finished.add(index)
            out.append(self._chunk([ChunkChoice(index=index, delta=ChunkDelta(), finish_reason=reason)]))

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatChunk:
        return ChatChunk(
            id=self._id or chunk_id(), created=self._created, model=self._model, choices=choices, usage=usage
        )


# --- response parsing -------------------------------------------------------------------


def _split_parts(content: Any) -> tuple[str, str, list[Json]]:
    """(answer text, thought text, ``functionCall`` parts) of one candidate's content."""
    parts = content.get("parts") if isinstance(content, dict) else None
    text: list[str] = []
    thought: list[str] = []
    calls: list[Json] = []
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("functionCall"), dict):
            calls.append(part)
        elif isinstance(part.get("text"), str):
            (thought if part.get("thought") else text).append(part["text"])
    return "".join(text), "".join(thought), calls


def _in_order(content: Json, text: str, calls: list[ToolCall]) -> list[AnswerBlock] | None:
    """The answer's text and ``calls`` in the order of its parts, when OpenAI's shape (the
    ``text``, then the calls) loses it, else None. Adjacent text parts are one text (a stream
    joins them too); thoughts are the reasoning, which comes first."""
    blocks: list[AnswerBlock] = []
    pending = iter(calls)
    for part in content["parts"]:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("functionCall"), dict):
            blocks.append(next(pending))
        elif isinstance(part.get("text"), str) and not part.get("thought"):
            add_answer_text(blocks, part["text"])
    return answer_order(blocks, text, calls)


def _function(part: Json) -> FunctionCall:
    call = part["functionCall"]
    return FunctionCall(
        name=str(call.get("name", "")), arguments=orjson.dumps(call.get("args") or {}).decode()
    )


def _id(part: Json, signed: bool) -> str:
    """The tool call id of a ``functionCall`` part, carrying its signature when ``signed`` and
    Gemini's own id of the call when it gave one (both go back with the call and its result)."""
    signature = part.get("thoughtSignature") if signed else None
    own = part["functionCall"].get("id")
    return call_id(signature if isinstance(signature, str) else None, own if isinstance(own, str) else None)


def _finish(cand: Json, has_calls: bool, provider: str) -> FinishReason | None:
    """OpenAI's finish_reason for a candidate's ``finishReason`` (None while unfinished)."""
    reason = cand.get("finishReason")
    if not reason:
        return None
    reason = str(reason)
    note = cand.get("finishMessage")
    detail = f" ({reason}: {note})" if isinstance(note, str) and note else f" ({reason})"
    if reason in _FAILED:
        raise ProviderError(f"{provider}: {_FAILED[reason]}{detail}", provider=provider)
    if reason == "MISSING_THOUGHT_SIGNATURE":
        message = "a function call in the conversation lacks the thought signature Gemini gave it"
        raise InvalidRequestError(f"{provider}: {message}{detail}", param="messages", provider=provider)
    mapped = _FINISH.get(reason, "content_filter")
    return "tool_calls" if mapped == "stop" and has_calls else mapped


def _index(cand: Json, pos: int) -> int:
    index = cand.get("index")  # proto3 JSON omits 0
    return index if isinstance(index, int) else pos


def _response_id(data: Json) -> str:
    rid = data.get("responseId")
    return f"chatcmpl-{rid}" if isinstance(rid, str) and rid else chunk_id()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _usage(meta: Any) -> Usage | None:
    if not isinstance(meta, dict):
        return None
    thoughts = _int(meta.get("thoughtsTokenCount"))
    prompt = (_int(meta.get("promptTokenCount")) or 0) + (_int(meta.get("toolUsePromptTokenCount")) or 0)
    return Usage.of(
        prompt,
        (_int(meta.get("candidatesTokenCount")) or 0) + (thoughts or 0),
        cached=_int(meta.get("cachedContentTokenCount")),
        reasoning=thoughts,
        total=_int(meta.get("totalTokenCount")),
    )


def _logprob_entry(entry: Any) -> Json:
    token = str(entry.get("token", "")) if isinstance(entry, dict) else ""
    logprob = entry.get("logProbability", 0.0) if isinstance(entry, dict) else 0.0
    return token_logprob(token, logprob)


def _logprobs(result: Any) -> Json | None:
    """Gemini ``logprobsResult`` -> OpenAI ``{"content": [{token, logprob, top_logprobs}]}``."""
    if not isinstance(result, dict):
        return None
    chosen = result.get("chosenCandidates") or []
    tops = result.get("topCandidates") or []
    content = []
    for i, entry in enumerate(chosen):
        top = tops[i].get("candidates", []) if i < len(tops) and isinstance(tops[i], dict) else []
        content.append({**_logprob_entry(entry), "top_logprobs": [_logprob_entry(t) for t in top]})
    return logprobs_of(content)


# --- errors -------------------------------------------------------------------------------


def _details(payload: Any) -> list[Json]:
    err = payload.get("error") if isinstance(payload, dict) else None
    details = err.get("details") if isinstance(err, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _retry_delay(details: list[Json]) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "7s"``)."""
    for detail in details:
        delay = detail.get("retryDelay")
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo") and isinstance(delay, str):
            try:
                return max(float(delay.removesuffix("s")), 0.0)
            except ValueError:
                return None
    return None


def _status_of(payload: Json) -> int:
    """HTTP status of an error that arrived in a 200 body (stream event)."""
    err = payload["error"]
    code = err.get("code")
    if isinstance(code, int) and 400 <= code <= 599:
        return code
    return _RPC_STATUS.get(str(err.get("status")), 500)
