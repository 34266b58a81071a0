"""The provider protocol: what every adapter states and does.

A provider is described by a :class:`ProviderSpec` (data: name, default base
URL, key variable, :class:`Capabilities`, params it cannot honour) and
implemented by a :class:`ProviderAdapter` whose methods are *pure*: they turn
our types into an :class:`~uniinfer.http.HttpRequest` and the provider's bytes
back into our types. Sending the bytes is the gateway's job (one pooled
client), so every adapter is testable without a socket.

Streams are decoded by a :class:`StreamDecoder`: ``feed(bytes)`` returns the
chunks completed so far (any byte boundary is fine), ``close()`` returns the
rest and, when the provider reported usage, a final usage chunk whose
``choices`` is empty. A stream that ends before the provider's end-of-stream
marker raises :class:`~uniinfer.errors.ProviderConnectionError`.
"""

from __future__ import annotations

import functools
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NoReturn, Protocol

import orjson
from pydantic import BaseModel, ValidationError

from uniinfer.errors import (
    ConfigError,
    ProviderResponseError,
    UniInferError,
    UnsupportedFeatureError,
    error_from_status,
)
from uniinfer.http import HttpClient, HttpRequest, Timeouts, retry_after_seconds
from uniinfer.providers.redaction import credential_headers, redact_secret
from uniinfer.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    StreamItem,
    Usage,
)

__all__ = [
    "Capabilities",
    "Endpoint",
    "PartialStreamError",
    "ProviderAdapter",
    "ProviderSpec",
    "StreamDecoder",
    "StreamUsage",
    "chunk_id",
    "classify",
    "loads",
    "merge_headers",
    "raise_after",
]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider can do; a request needing more gets UnsupportedFeatureError."""

    chat: bool = True
    streaming: bool = True
    tools: bool = True
    vision: bool = False
    json_mode: bool = True
    json_schema: bool = False
    embeddings: bool = False
    reasoning: bool = False
    #: Honours explicit ``cache_control`` breakpoints on content parts.
    prompt_caching: bool = False

    def names(self) -> list[str]:
        return [name for name in self.__slots__ if getattr(self, name)]


#: How an OpenAI-compatible provider reports usage in streams:
#: ``"stream_options"`` only when asked (``stream_options.include_usage``, OpenAI's way);
#: ``"always"`` without being asked (and the option is not sent: some reject it);
#: ``"never"`` not at all (the gateway cannot learn a stream's usage).
StreamUsage = Literal["stream_options", "always", "never"]


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A provider as data: one row of the registry.

    The fields after ``description`` declare an OpenAI-compatible provider's
    quirks; :class:`~uniinfer.providers.openai.OpenAIAdapter` handles each
    generically, and ``docs/providers.md`` lists them.
    """

    name: str
    #: "module:Class" of the adapter, imported on first use.
    adapter: str
    base_url: str
    #: Conventional environment variable holding the API key (None: no key).
    api_key_env: str | None
    capabilities: Capabilities = field(default_factory=Capabilities)
    #: Chat params of the adapter's protocol that this provider rejects.
    unsupported_params: frozenset[str] = frozenset()
    #: Whether requests need a key (local servers do not).
    key_required: bool = True
    #: A server on this machine (Ollama, vLLM...): the embedded default enables it.
    local: bool = False
    #: Whether the embedded default enables it when ``api_key_env`` is set (False
    #: for providers that need more than a key: a region, an endpoint, a project).
    auto_enable: bool = True
    docs_url: str = ""
    description: str = ""
    #: Whether streams ask for usage with ``stream_options`` (see :data:`StreamUsage`).
    stream_usage: StreamUsage = "stream_options"
    #: The provider's ``finish_reason`` values mapped to OpenAI's (e.g. ``"eos" -> "stop"``).
    finish_reason_map: Mapping[str, str] = field(default_factory=dict, hash=False)
    #: Chat params sent under another name (e.g. ``max_completion_tokens -> max_tokens``).
    param_renames: Mapping[str, str] = field(default_factory=dict, hash=False)
    #: Embedding params sent under another name (e.g. ``dimensions -> output_dimension``).
    embed_param_renames: Mapping[str, str] = field(default_factory=dict, hash=False)
    #: Embedding fields the provider does not know and that are never sent
    #: (``encoding_format``: floats are every provider's default).
    embed_omit: frozenset[str] = frozenset()
    #: ``providers.<name>.options`` copied into every embeddings request (e.g. ``input_type``).
    embed_options: frozenset[str] = frozenset()
    #: Fields every embeddings request carries unless an option of :attr:`embed_options` sets
    #: them: OpenAI's behaviour where the provider's default differs (Voyage truncates an
    #: over-long input unless told not to; OpenAI refuses it).
    embed_defaults: Mapping[str, object] = field(default_factory=dict, hash=False)
    #: Whether embeddings take token ids (OpenAI's tokenizer's, as clients such as LangChain send
    #: them): OpenAI's API and Azure's only. Another server would read them in its own model's
    #: vocabulary (vLLM: a 200 with vectors of meaningless text); there they are refused.
    embed_token_ids: bool = False
    #: Chat params outside the adapter's protocol that this provider accepts, sent as they
    #: are (``top_k`` on local servers; OpenAI's API has no such field).
    extra_params: frozenset[str] = frozenset()
    #: Whether a named function works as ``tool_choice`` (False: the server reads only
    #: "auto", "none" and "required", so a named one is refused, or dropped visibly).
    named_tool_choice: bool = True
    #: Whether messages carry OpenAI's ``name`` (a participant's name) to the provider
    #: (False: a named message is refused, or the names dropped visibly; see fitting).
    message_names: bool = True
    #: Which previous-turn reasoning fields an assistant message takes back: ``reasoning_content``
    #: on a turn with tool calls (DeepSeek's and Kimi's thinking models require it there: a 400
    #: "The reasoning_content in the thinking mode must be passed back"), OpenRouter's
    #: ``reasoning_details``. Every other provider gets neither (OpenAI refuses them).
    reasoning_back: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how one configured provider is reached."""

    base_url: str
    #: Left out of ``repr`` (as ``options``, which may hold a token or a private key): an
    #: endpoint printed in a log or a traceback must not show a secret.
    api_key: str | None = field(default=None, repr=False)
    #: Configured headers (also left out: a tenant token, a proxy's key).
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: Provider-specific settings (``providers.<name>.options``), checked by the
    #: adapter's ``Options`` model: a region, an API version, a credentials file.
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)


class StreamDecoder(Protocol):
    """Turns a provider's stream bytes, fed as they arrive, into OpenAI chunks.

    A decoder of a provider that already speaks OpenAI's format may return
    events as :class:`~uniinfer.types.RawEvents` (passed through as they came),
    and may offer ``pass_on(data) -> bytes | None``: a read handed back as it
    came when it is one such event (None: ``feed`` it), which the server's
    SSE relay uses (``ChatStream.sse_batches``).

    A stream that fails (an error event, bad data, an early end) raises a
    :class:`~uniinfer.errors.UniInferError`; one that fails after events it
    decoded in the same call raises :class:`PartialStreamError` with them
    (:func:`raise_after` does it in a decoding loop's ``except``), so that
    nothing which arrived before the failure is lost.
    """

    def feed(self, data: bytes) -> Sequence[StreamItem]: ...

    def close(self) -> Sequence[StreamItem]: ...


class PartialStreamError(Exception):
    """A decoder met ``error`` after decoding ``items`` in the same call: hand them out, then fail.

    Internal to the stream machinery; callers of the gateway only ever see ``error``.
    """

    def __init__(self, items: Sequence[StreamItem], error: UniInferError) -> None:
        super().__init__(error.message)
        self.items = items
        self.error = error


def raise_after(items: Sequence[StreamItem], error: UniInferError) -> NoReturn:
    """For a decoder's ``except UniInferError``: fail with ``error`` after ``items``.

    Raises :class:`PartialStreamError` carrying the items decoded before the
    error in the same call, or the error itself when there are none.
    """
    if items:
        raise PartialStreamError(items, error) from error
    raise error


def chunk_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def loads(body: bytes, provider: str) -> Any:
    """Parse a provider's JSON body; garbage is a ProviderResponseError, not a crash."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProviderResponseError(
            f"{provider}: the provider answered with invalid JSON ({exc})",
            provider=provider,
            upstream_body=body[:512].decode("utf-8", "replace"),
        ) from exc


class ProviderAdapter(ABC):
    """Pure translation between uniinfer's types and one provider's wire format."""

    #: ChatRequest fields this protocol can express (``model`` and ``messages`` implied).
    supported_params: ClassVar[frozenset[str]]
    #: Fields it can express for some models only (:meth:`supported_for` decides), and what
    #: docs/providers.md says about them.
    per_model_params: ClassVar[frozenset[str]] = frozenset()
    per_model_note: ClassVar[str] = ""
    #: EmbeddingRequest fields this protocol cannot express (see :meth:`embed_params_refused`).
    embed_unsupported: ClassVar[frozenset[str]] = frozenset()
    #: The Claude API's own fields an Anthropic Messages client may send that this adapter
    #: sends on as they came (:attr:`~uniinfer.types.MessagesIntent.claude_fields`, by name:
    #: ``inference_geo``, ``input_examples``...); none but the Claude API's adapter.
    claude_fields: ClassVar[frozenset[str]] = frozenset()
    #: The typed model of ``providers.<name>.options`` (None: the provider takes none).
    Options: ClassVar[type[BaseModel] | None] = None
    #: Whether an assistant turn may refer to a previous audio answer by its id (OpenAI's audio
    #: conversations): the OpenAI format's; every other adapter would lose the turn.
    audio_turns: ClassVar[bool] = False

    def __init__(self, spec: ProviderSpec, endpoint: Endpoint, name: str | None = None) -> None:
        self.spec = spec
        self.endpoint = endpoint
        #: The configured provider name (``providers.<name>``), used in errors and routes.
        self.name = name or spec.name
        self.options: Any = self._check_options(endpoint.options)

    def _check_options(self, options: Mapping[str, Any]) -> BaseModel | None:
        if self.Options is None:
            if options:
                raise ConfigError(
                    f"providers.{self.name}.options: provider '{self.spec.name}' takes no options"
                )
            return None
        try:
            return self.Options.model_validate(dict(options))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(options)'}: {e['msg']}"
                for e in exc.errors(include_input=False)
            )
            raise ConfigError(f"providers.{self.name}.options: {problems}") from None

    async def prepare_credentials(self, http: HttpClient) -> None:
        """Make sure credentials are fresh before a request is built (default: nothing to do).

        Providers with expiring tokens (Vertex AI, Bedrock's AWS chain) refresh here, through
        the shared async client and ahead of expiry, so the pure builders below
        can stay synchronous and the hot path never blocks.
        """
        return None

    def unsupported(self) -> frozenset[str]:
        """Params a request may carry that this provider cannot honour."""
        return self.spec.unsupported_params

    def supported_for(self, model: str) -> frozenset[str]:
        """The params this adapter can express for ``model`` (providers hosting several
        wire formats, like Vertex AI, narrow it per model family)."""
        return self.supported_params

    def embed_params_refused(self) -> frozenset[str]:
        """EmbeddingRequest fields a caller may set that this provider cannot be sent: the
        protocol's, and those its row omits (``encoding_format`` aside: the server encodes
        base64 itself). The gateway refuses them, or drops them visibly when configured to."""
        return self.embed_unsupported | (self.spec.embed_omit - {"encoding_format"})

    def structured_outputs(self, model: str) -> bool:
        """Whether ``model`` answers to a JSON schema (``response_format`` json_schema): the
        row's capability, narrowed per model where a provider's models differ (Anthropic's)."""
        return self.spec.capabilities.json_schema

    def values_refused(self, request: ChatRequest, model: str) -> tuple[str, ...]:
        """Params of ``request`` this provider takes, but not with the values given, for
        ``model`` (Ollama: a forced ``tool_choice``; a Claude model without structured
        outputs: a tool's ``strict``), as param paths. :meth:`chat_request` refuses exactly
        these (a 400 ``unsupported_param`` saying why); with
        ``settings.drop_unsupported_params`` the gateway asks first, takes them out
        (:meth:`without_values`) and names them in ``x-uniinfer-dropped-params``."""
        return ()

    def without_values(self, request: ChatRequest, model: str, names: tuple[str, ...]) -> ChatRequest:
        """``request`` without what :meth:`values_refused` named: by default those fields unset."""
        return request.model_copy(update=dict.fromkeys(names))

    def params_left_out(self, request: ChatRequest, model: str) -> tuple[str, ...]:
        """Params of ``request`` that :meth:`chat_request` will leave out although this
        adapter supports them in general (Anthropic: thinking in a tool loop whose
        history has no signed thinking to send back). The gateway reports them in
        ``x-uniinfer-dropped-params``; none by default."""
        return ()

    # --- chat -----------------------------------------------------------------

    @abstractmethod
    def chat_request(self, request: ChatRequest, model: str, *, stream: bool) -> HttpRequest:
        """Build the upstream request (streams always ask for usage where the protocol can)."""

    @abstractmethod
    def parse_chat(self, body: bytes, model: str) -> ChatResponse: ...

    def chat_json(self, body: bytes, model: str) -> tuple[bytes, Usage | None] | None:
        """The answer as OpenAI ``chat.completion`` JSON to forward as it is, and its usage.

        For providers that already answer in OpenAI's format; ``None`` (the
        default) means the answer must be modelled by :meth:`parse_chat`.
        """
        return None

    @abstractmethod
    def stream_decoder(self, model: str) -> StreamDecoder: ...

    # --- embeddings -------------------------------------------------------------

    def embed_request(self, request: EmbeddingRequest, model: str) -> HttpRequest:
        raise self.feature_error("embeddings")

    def parse_embed(self, body: bytes, model: str) -> EmbeddingResponse:
        raise self.feature_error("embeddings")

    # --- model discovery ----------------------------------------------------------

    def models_request(self) -> HttpRequest | None:
        """A request listing the models the server has (local servers); None: not offered."""
        return None

    def parse_models(self, body: bytes) -> list[str]:
        """Model names from the answer to :meth:`models_request`."""
        return []

    # --- errors -----------------------------------------------------------------

    def error_message(self, payload: Any) -> tuple[str | None, str | None]:
        """(message, provider error code/type) from a decoded error body."""
        if isinstance(payload, dict):
            err = payload.get("error", payload)
            if isinstance(err, dict):
                message = err.get("message")
                code = err.get("code") or err.get("type")
                return (str(message) if message else None, str(code) if code else None)
            if isinstance(err, str):
                return err, None
        return None, None

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UniInferError:
        """Map an upstream error response to the error tree, keeping the body for debugging."""
        text = self.redact(body.decode("utf-8", "replace"))
        try:
            payload = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            payload = None
        message, code = self.error_message(payload)
        if message:
            message = self.redact(message)
        detail = message or text[:200] or f"HTTP {status}"
        return classify(
            status,
            f"{self.name}: {detail}",
            code=code,
            provider=self.name,
            body=text,
            retry_after=retry_after_seconds(headers),
            param=_error_param(payload),
        )

    def shape_error(self, what: str, body: bytes | str) -> ProviderResponseError:
        """An answer that is not the shape this provider's API documents (its start kept, redacted)."""
        text = body[:1024].decode("utf-8", "replace") if isinstance(body, bytes) else body[:1024]
        return ProviderResponseError(
            f"{self.name}: unexpected {what} shape", provider=self.name, upstream_body=self.redact(text)
        )

    def redact(self, text: str) -> str:
        """Remove our own credentials from text a provider echoed back (e.g. in a 401), also
        masked: the key, and the configured headers' values that are credentials (see
        :func:`credential_headers`)."""
        text = redact_secret(text, self.endpoint.api_key)
        for value in self._header_secrets:
            text = redact_secret(text, value)
        return text

    @functools.cached_property
    def _header_secrets(self) -> tuple[str, ...]:
        return credential_headers(self.endpoint.headers)

    def scrub(self, error: UniInferError) -> None:
        """Redact our credentials from an error's message and upstream body, in place.

        Every error that leaves this provider passes here (the router's attempt,
        a stream's failure), so a secret a provider echoes reaches no caller and
        no log, whichever path built the error.
        """
        message = self.redact(error.message)
        if message != error.message:
            error.message = message
            error.args = (message,)
        if error.upstream_body is not None:
            error.upstream_body = self.redact(error.upstream_body)

    def feature_error(self, feature: str, param: str | None = None) -> UnsupportedFeatureError:
        """A 400 saying this provider lacks ``feature``; ``param``: the request field that asked
        for it (the feature's own name when none is given)."""
        return UnsupportedFeatureError(
            f"provider '{self.name}' does not support {feature}",
            provider=self.name,
            param=param or feature,
        )

    def embed_texts(self, request: EmbeddingRequest, model: str, limit: int | None = None) -> list[str]:
        """The texts to embed; token ids, or more texts than one request to ``model`` may carry
        (``limit``), are a 400 ``unsupported_feature`` naming ``input``: a target mismatch, so a
        group goes on to its next deployment."""
        texts = request.texts
        if texts is None:
            raise UnsupportedFeatureError(
                f"provider '{self.name}' embeds text only, not token ids", provider=self.name, param="input"
            )
        if limit is not None and len(texts) > limit:
            raise UnsupportedFeatureError(
                f"provider '{self.name}' embeds at most {limit} input(s) per request with model "
                f"'{model}', got {len(texts)}; send them in separate requests",
                provider=self.name,
                param="input",
            )
        return texts

    # --- helpers for subclasses -------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """JSON content type and Bearer auth; configured headers win, whatever their case."""
        headers = {"content-type": "application/json"}
        if self.endpoint.api_key:
            headers["authorization"] = f"Bearer {self.endpoint.api_key}"
        return merge_headers(headers, self.endpoint.headers)

    def url(self, path: str) -> str:
        return self.endpoint.base_url.rstrip("/") + path


_CONTEXT_MARKERS = (
    "context_length",
    "context length",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "exceed context limit",  # Anthropic: "input length and `max_tokens` exceed context limit: ..."
    "input is too long",  # Anthropic, Bedrock: "Input is too long for requested model."
    "context size",  # llama.cpp: "request (N tokens) exceeds the available context size (M tokens)"
    "max_new_tokens` must be <=",  # TGI, Together: "`inputs` tokens + `max_new_tokens` must be <= N"
    "maximum prompt length",  # xAI
    "input_too_large",  # xAI's newer code
)
_FILTER_MARKERS = ("content_filter", "content_policy", "safety", "blocked")


def merge_headers(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` updated by ``extra``, matching names case-insensitively (HTTP header names are)."""
    if not extra:
        return dict(base)
    overridden = {name.lower() for name in extra}
    merged = {k: v for k, v in base.items() if k.lower() not in overridden}
    merged.update(extra)
    return merged


def _error_param(payload: Any) -> str | None:
    """The ``param`` an OpenAI-style error body names, if any."""
    err = payload.get("error") if isinstance(payload, dict) else None
    param = err.get("param") if isinstance(err, dict) else None
    return param if isinstance(param, str) and param else None


def classify(
    status: int,
    message: str,
    *,
    code: str | None,
    provider: str,
    body: str | None,
    retry_after: float | None,
    param: str | None = None,
) -> UniInferError:
    """The status table, refined by the provider's own error code for 400s."""
    from uniinfer.errors import (
        ContentFilteredError,
        ContextLengthExceededError,
        ProviderQuotaExceededError,
        RateLimitError,
    )

    if status == 429 and code == ProviderQuotaExceededError.code:  # OpenAI's, and those who copy it
        return ProviderQuotaExceededError(
            message, provider=provider, upstream_status=status, upstream_body=body, retry_after=retry_after
        )
    if status == 413 and code == "rate_limit_exceeded":  # Groq's tokens-per-minute limit: a rate limit
        return RateLimitError(
            message, provider=provider, upstream_status=status, upstream_body=body, retry_after=retry_after
        )
    if status in (400, 413, 422):
        hay = f"{code or ''} {message}".lower()
        if any(m in hay for m in _CONTEXT_MARKERS):
            return ContextLengthExceededError(
                message, provider=provider, upstream_status=status, upstream_body=body, param=param
            )
        if any(m in (code or "").lower() for m in _FILTER_MARKERS):
            return ContentFilteredError(
                message, provider=provider, upstream_status=status, upstream_body=body, param=param
            )
    return error_from_status(
        status, message, provider=provider, body=body, retry_after=retry_after, param=param
    )
