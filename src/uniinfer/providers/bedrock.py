"""AWS Bedrock: Converse / ConverseStream chat and InvokeModel embeddings, SigV4-signed.

The Converse translation lives in :mod:`uniinfer.providers.bedrock_converse` (the
request) and :mod:`uniinfer.providers.bedrock_response` (the answer), the binary stream
framing in :mod:`uniinfer.providers.eventstream`; this module holds what is AWS-specific
around them.

Credentials: a Bedrock API key (``api_key``, e.g. ``env:AWS_BEARER_TOKEN_BEDROCK``,
https://docs.aws.amazon.com/bedrock/latest/userguide/api-keys.html) is sent as
``Authorization: Bearer``. Otherwise requests are SigV4-signed
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html) for
service ``bedrock`` in ``options.region`` (unset: the region the AWS SDKs would use,
:func:`resolve_region`), with ``options`` keys when given,
else the standard AWS chain through botocore (environment, shared files and
``options.profile``, SSO, container and instance roles). The chain may do
blocking I/O, so :meth:`BedrockAdapter.prepare_credentials` resolves it once in
a worker thread and refreshes expiring credentials (less than
:data:`REFRESH_WINDOW` seconds left) the same way, single-flight; building a
request is then pure CPU.

URLs: the registry's default base URL means ``https://bedrock-runtime.{region}.amazonaws.com``;
any other ``base_url`` is used as configured (a VPC endpoint, a proxy, a test
fake). The model id is percent-encoded as one path segment: ``/`` (in ARNs)
becomes ``%2F``, but ``:`` and the other sub-delimiters, legal in a path
(RFC 3986 §3.3), stay literal: aiohttp (yarl) decodes ``%3A`` before sending,
and the signature must cover exactly the path on the wire (AWS signs the
received path, URI-encoded once more).

Embeddings (``POST /model/{modelId}/invoke``,
https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html,
https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed.html):
Amazon Titan (``amazon.titan-embed*``) embeds one ``inputText`` per request,
and a request here is one HTTP call, so Titan takes exactly one input; Cohere
(``cohere.embed*``) takes up to 96 ``texts`` (``input_type`` ``options.embed_input_type``,
``search_document`` by default: a second provider entry with ``search_query`` embeds queries).
Usage is Titan's ``inputTextTokenCount``; Cohere's body reports none (Bedrock
puts the count in a response header, which adapters do not see), so it is 0.

Errors are ``{"message": ...}`` with the type in ``x-amzn-ErrorType``
(``ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/``;
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html#API_runtime_Converse_Errors),
mapped by type before status: a 403 is AuthenticationError for bad keys or
signatures, PermissionDeniedError for a missing model grant. Bedrock sends no
``Retry-After``, so a throttle's ``retry_after`` stays None. AWS echoes the
canonical request (session token included) in signature errors, so keys and
tokens are redacted from every error.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

import orjson
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import ReadOnlyCredentials  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from uniinfer.errors import (
    AuthenticationError,
    ConfigError,
    ContextLengthExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderOverloadedError,
    ProviderTimeoutError,
    RateLimitError,
    UniInferError,
    UnsupportedParamError,
)
from uniinfer.http import HttpClient, HttpRequest, retry_after_seconds
from uniinfer.providers.anthropic_request import (
    output_effort,
    thinking_budget,
    without_refused,
)
from uniinfer.providers.base import Endpoint, ProviderAdapter, ProviderSpec, classify, loads, merge_headers
from uniinfer.providers.bedrock_converse import cache_left_out, converse_payload, thinking_left_out
from uniinfer.providers.bedrock_models import (
    claude_name,
    effort_refused_on_bedrock,
    structured_outputs,
    unsupported_for,
)
from uniinfer.providers.bedrock_response import converse_response
from uniinfer.providers.claude_models import EFFORT_PARAM, thinking_conflicts, value_conflicts
from uniinfer.providers.eventstream import ConverseStreamDecoder
from uniinfer.providers.redaction import redact_secret
from uniinfer.providers.translation import strict_tools
from uniinfer.types import ChatRequest, ChatResponse, Embedding, EmbeddingRequest
from uniinfer.types.embeddings import EmbeddingResponse, EmbeddingUsage

__all__ = ["REFRESH_WINDOW", "BedrockAdapter", "BedrockOptions"]

Json = dict[str, Any]

#: Expiring credentials are refreshed when they have less than this many seconds left.
REFRESH_WINDOW = 300
#: A failed credential-chain lookup is not repeated for this long (IMDS probes are slow).
_CHAIN_RETRY_AFTER = 30.0
_SERVICE = "bedrock"
#: Characters left literal in the model id path segment (those yarl would decode anyway).
_SEGMENT_SAFE = "!$&'()*,;=:@"
_COHERE_MAX_TEXTS = 96
_AUTH_TYPES = (
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
)
#: ``x-amzn-ErrorType`` -> error class; unknown types fall back to the status table.
_ERRORS: Mapping[str, type[UniInferError]] = {
    "ValidationException": InvalidRequestError,
    "AccessDeniedException": PermissionDeniedError,
    **dict.fromkeys(_AUTH_TYPES, AuthenticationError),
    "ResourceNotFoundException": ModelNotFoundError,
    **dict.fromkeys(
        ("ThrottlingException", "ModelNotReadyException", "ServiceQuotaExceededException"), RateLimitError
    ),
    "ModelTimeoutException": ProviderTimeoutError,
    **dict.fromkeys(
        ("ModelErrorException", "ModelStreamErrorException", "InternalServerException"), ProviderError
    ),
    "ServiceUnavailableException": ProviderOverloadedError,
}
# "Input is too long for requested model." is a ValidationException
_TOO_LONG = ("too long", "context window", "too many tokens")
#: The constraint path a ValidationException names -> the ChatRequest field behind it.
_PARAMS: Mapping[str, str] = {
    "inferenceConfig.temperature": "temperature",
    "inferenceConfig.topP": "top_p",
    "inferenceConfig.maxTokens": "max_tokens",
    "inferenceConfig.stopSequences": "stop",
    "toolConfig": "tools",
    "outputConfig": "response_format",
    "messages": "messages",
    "system": "messages",
}
_AT_PATH = re.compile(r"\bat '([\w.]+)'")


_REGION = r"^[a-z]{2}(-[a-z]+)+-\d+$"
#: The region when none is configured anywhere (AWS's SDKs would fail; the CLI's long default).
DEFAULT_REGION = "us-east-1"


class BedrockOptions(BaseModel):
    """``providers.<name>.options`` of a Bedrock provider (no keys: the AWS credential chain)."""

    model_config = ConfigDict(extra="forbid")
    #: Unset: ``AWS_REGION``, then botocore's (``AWS_DEFAULT_REGION``, the profile's ``region``
    #: in ``~/.aws/config``), then ``us-east-1`` (see :func:`resolve_region`).
    region: str | None = Field(default=None, pattern=_REGION)
    access_key_id: str | None = Field(default=None, min_length=1)
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    #: A named profile (``~/.aws/config``) for the credential chain.
    profile: str | None = Field(default=None, min_length=1)
    #: Cohere embeddings' ``input_type``: documents to search by default; a provider entry
    #: with ``search_query`` embeds the queries (as the ``cohere`` provider's option).
    embed_input_type: Literal["search_document", "search_query", "classification", "clustering"] = (
        "search_document"
    )

    @model_validator(mode="after")
    def _consistent(self) -> BedrockOptions:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError(
                "set access_key_id and secret_access_key together, or neither to use the AWS credential chain"
            )
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("session_token needs access_key_id and secret_access_key")
        if self.profile is not None and self.access_key_id is not None:
            raise ValueError("set either profile or access_key_id/secret_access_key, not both")
        return self


class BedrockAdapter(ProviderAdapter):
    """``/model/{modelId}/converse``, ``/converse-stream`` and ``/invoke`` (embeddings)."""

    #: ``stream_options`` needs nothing sent: the stream's ``metadata`` event always has usage.
    embed_unsupported = frozenset({"user"})  # no field for an end-user id in its embeddings API
    supported_params = frozenset(
        {"temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "stop", "stream_options"}
        | {"tools", "tool_choice", "reasoning_effort"}
    )
    per_model_params = frozenset({"response_format"})
    per_model_note = (
        "`response_format` `json_schema` and tools' `strict` (structured outputs, `outputConfig`) for "
        "Claude Sonnet 4.5, Haiku 4.5, Opus 4.5 and later Claude models and OpenAI gpt-oss models; for "
        "other models refused (a `strict` tool: or dropped visibly, with "
        "`settings.drop_unsupported_params`). Prompt-cache breakpoints (`cache_control`) become "
        "`cachePoint` blocks for Claude 3.5 Haiku, 3.7 Sonnet, Sonnet 4, Opus 4 and later Claude "
        "models (one-hour TTL from Sonnet 4.5, Haiku 4.5 and Opus 4.5 on) and for Amazon Nova Micro, "
        "Lite, Pro and Premier (not on tools); elsewhere they are left out and named in "
        "`x-uniinfer-dropped-params`. `file` parts (PDF, CSV, DOC(X), XLS(X), HTML, TXT, Markdown) "
        "become `document` blocks with a valid, unique name made from `filename`. Without "
        "`options.region`, the region is the one the AWS SDKs would use (`AWS_REGION`, "
        "`AWS_DEFAULT_REGION`, the profile's `region` in `~/.aws/config`), else `us-east-1`. "
        "Cohere embeddings take `options.embed_input_type` (`search_document` by default)."
    )
    Options = BedrockOptions

    def __init__(self, spec: ProviderSpec, endpoint: Endpoint, name: str | None = None) -> None:
        super().__init__(spec, endpoint, name)
        self.region: str = self.options.region or resolve_region(self.options.profile)
        self._credentials = _Credentials(self.name, self.options)
        base = endpoint.base_url.rstrip("/")
        default = base == spec.base_url.rstrip("/")
        self.base_url = f"https://bedrock-runtime.{self.region}.amazonaws.com" if default else base

    def supported_for(self, model: str) -> frozenset[str]:
        """``top_k`` and ``reasoning_effort`` only for the model families that take them,
        ``response_format`` only for models with structured outputs."""
        params = self.supported_params - unsupported_for(model)
        return params | self.per_model_params if structured_outputs(model) else params

    def structured_outputs(self, model: str) -> bool:
        """Whether ``model`` has structured outputs on Bedrock (``bedrock_models.STRUCTURED_OUTPUTS``)."""
        return structured_outputs(model)

    def values_refused(self, request: ChatRequest, model: str) -> tuple[str, ...]:
        """A tool's ``strict: true`` for a model without structured outputs; an effort level
        (``output_config.effort``) the Claude model lacks; what else a Claude model refuses by
        value (:func:`~uniinfer.providers.claude_models.value_conflicts`)."""
        strict = () if not request.tools or structured_outputs(model) else strict_tools(request)
        claude = "anthropic." in model
        effort = output_effort(request, claude_name(model)) if claude else None
        refused = effort is not None and effort_refused_on_bedrock(effort, model)
        names = (*strict, EFFORT_PARAM) if refused else strict
        thinking_on = claude and thinking_budget(request) is not None and not thinking_left_out(request)
        if not claude:
            return names + thinking_conflicts(request, thinking_on)
        return names + value_conflicts(request, claude_name(model), thinking_on)

    def without_values(self, request: ChatRequest, model: str, names: tuple[str, ...]) -> ChatRequest:
        """The tools without ``strict``, and the request without the effort, as named."""
        return without_refused(request, names)

    def params_left_out(self, request: ChatRequest, model: str) -> tuple[str, ...]:
        """``reasoning_effort`` while a tool loop is open (Claude would need signed thinking back);
        ``cache_control`` breakpoints (or their one-hour TTL) where the model takes none
        (``bedrock_models.PROMPT_CACHING``): a cost hint, left out rather than refused."""
        thinking = ("reasoning_effort",) if thinking_left_out(request) else ()
        return thinking + cache_left_out(request, model)

    async def prepare_credentials(self, http: HttpClient) -> None:
        """Resolve (once) or refresh (near expiry) SigV4 credentials; nothing to do with an API key."""
        if not self.endpoint.api_key:
            await self._credentials.ensure()

    # --- chat -------------------------------------------------------------------------

    def chat_request(self, request: ChatRequest, model: str, *, stream: bool) -> HttpRequest:
        try:
            payload = converse_payload(request, model)
        except UniInferError as exc:
            exc.provider = exc.provider or self.name
            raise
        return self._post(model, "converse-stream" if stream else "converse", orjson.dumps(payload))

    def parse_chat(self, body: bytes, model: str) -> ChatResponse:
        data = loads(body, self.name)
        try:
            return converse_response(data, model, self.name)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self.shape_error("converse response", body) from exc

    def stream_decoder(self, model: str) -> ConverseStreamDecoder:
        return ConverseStreamDecoder(self, model)

    # --- embeddings -----------------------------------------------------------------------

    def embed_request(self, request: EmbeddingRequest, model: str) -> HttpRequest:
        try:
            texts = self.embed_texts(request, model, _embed_limit(model))
            payload = _embed_payload(texts, request, model, self.options.embed_input_type)
        except UniInferError as exc:
            exc.provider = self.name
            raise
        return self._post(model, "invoke", orjson.dumps(payload), {"accept": "application/json"})

    def parse_embed(self, body: bytes, model: str) -> EmbeddingResponse:
        data = loads(body, self.name)
        try:
            vectors, tokens = _vectors(data)
            items = [Embedding(index=i, embedding=v) for i, v in enumerate(vectors)]
        except (KeyError, TypeError, ValueError) as exc:
            raise self.shape_error("embeddings response", body) from exc
        usage = EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
        return EmbeddingResponse(data=items, model=model, usage=usage)

    # --- errors ---------------------------------------------------------------------------

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UniInferError:
        """Map by ``x-amzn-ErrorType`` first, then by status."""
        text = self.redact(body.decode("utf-8", "replace"))
        payload = _json_or_none(body)
        kind = _error_type(headers, payload)
        message = self.redact(_error_text(payload) or text[:200] or f"HTTP {status}")
        detail = f"{self.name}: {kind}: {message}" if kind else f"{self.name}: {message}"
        retry = retry_after_seconds(headers)
        cls = _ERRORS.get(kind or "")
        if cls is None:
            return classify(status, detail, code=kind, provider=self.name, body=text, retry_after=retry)
        if cls is InvalidRequestError and any(m in message.lower() for m in _TOO_LONG):
            cls = ContextLengthExceededError
        param = _param_of(message) if issubclass(cls, InvalidRequestError) else None
        return cls(
            detail,
            provider=self.name,
            upstream_status=status,
            upstream_body=text,
            retry_after=retry,
            param=param,
        )

    def redact(self, text: str) -> str:
        """Also hide the AWS keys and session token in use."""
        text = super().redact(text)
        for secret in self._credentials.secrets():
            text = redact_secret(text, secret)
        return text

    # --- helpers --------------------------------------------------------------------------

    def _post(
        self, model: str, action: str, body: bytes, extra: Mapping[str, str] | None = None
    ) -> HttpRequest:
        url = f"{self.base_url}/model/{quote(model, safe=_SEGMENT_SAFE)}/{action}"
        headers = {"content-type": "application/json", **(extra or {})}
        key = self.endpoint.api_key
        if key:
            headers["authorization"] = f"Bearer {key}"
            return HttpRequest(url, body, merge_headers(headers, self.endpoint.headers))
        headers = merge_headers(headers, self.endpoint.headers)
        return HttpRequest(url, body, _sign(url, body, headers, self._credentials.frozen(), self.region))


# --- credentials and signing ----------------------------------------------------------


class _Credentials:
    """SigV4 credentials: the options' keys, or the AWS chain resolved and refreshed off the loop."""

    def __init__(self, provider: str, options: BedrockOptions) -> None:
        self._provider = provider
        self._profile = options.profile
        self._lock = asyncio.Lock()
        self._source: Any = None  # botocore Credentials / RefreshableCredentials from the chain
        self._frozen: Any = None  # botocore ReadOnlyCredentials: what requests are signed with
        self._failure: tuple[float, str] | None = None
        if options.access_key_id is not None and options.secret_access_key is not None:
            token = options.session_token.get_secret_value() if options.session_token else None
            secret = options.secret_access_key.get_secret_value()
            self._frozen = ReadOnlyCredentials(options.access_key_id, secret, token)

    def _stale(self) -> bool:
        if self._frozen is None:
            return True
        refresh_needed = getattr(self._source, "refresh_needed", None)  # only RefreshableCredentials
        return refresh_needed is not None and bool(refresh_needed(REFRESH_WINDOW))

    async def ensure(self) -> None:
        """Single-flight: concurrent requests wait for one lookup or refresh (each in a thread)."""
        if not self._stale():
            return
        async with self._lock:
            if not self._stale():
                return
            if self._source is None:
                self._source = await self._resolve()
            try:
                # botocore refreshes here: its mandatory window (10 min) is wider than ours
                self._frozen = await asyncio.to_thread(self._source.get_frozen_credentials)
            except Exception as exc:  # any refresh failure (STS, IMDS, SSO) means no usable keys
                raise self._error(f"refreshing AWS credentials failed ({type(exc).__name__}: {exc})") from exc

    async def _resolve(self) -> Any:
        if self._failure is not None and time.monotonic() - self._failure[0] < _CHAIN_RETRY_AFTER:
            raise self._error(self._failure[1])
        try:
            source = await asyncio.to_thread(_chain, self._profile)
        except Exception as exc:  # ProfileNotFound, CredentialRetrievalError, SSO errors...
            reason = f"the AWS credential chain failed ({type(exc).__name__}: {exc})"
        else:
            if source is not None:
                self._failure = None
                return source
            reason = "no AWS credentials found"
        self._failure = (time.monotonic(), reason)
        raise self._error(reason)

    def _error(self, reason: str) -> AuthenticationError:
        return AuthenticationError(
            f"{self._provider}: {reason}; set providers.{self._provider}.options.access_key_id and "
            "secret_access_key, an api_key (a Bedrock API key, e.g. env:AWS_BEARER_TOKEN_BEDROCK), or "
            "credentials for the standard AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
            "or options.profile, an instance or task role)",
            provider=self._provider,
        )

    def frozen(self) -> Any:
        if self._frozen is None:
            raise AuthenticationError(
                f"{self._provider}: AWS credentials are not resolved yet "
                "(await prepare_credentials() before building requests)",
                provider=self._provider,
            )
        return self._frozen

    def secrets(self) -> list[str]:
        frozen = self._frozen
        if frozen is None:
            return []
        return [s for s in (frozen.secret_key, frozen.token, frozen.access_key) if s]


def resolve_region(profile: str | None) -> str:
    """The region of an AWS client configured with none (read once, at start-up), as the AWS
    SDKs read it: ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's ``region`` in the shared
    config file (``options.profile``, else ``AWS_PROFILE``, else ``default``; the file at
    ``AWS_CONFIG_FILE``, else ``~/.aws/config``), then :data:`DEFAULT_REGION`. A value that is
    no region name is a :class:`~uniinfer.errors.ConfigError` naming where it came from."""
    from botocore.configloader import load_config  # type: ignore[import-untyped] # botocore's parser of it
    from botocore.exceptions import ConfigNotFound, ConfigParseError  # type: ignore[import-untyped]

    for where in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        found = os.environ.get(where)
        if found:
            break
    else:
        name = profile or os.environ.get("AWS_PROFILE") or "default"
        where = f"the region of AWS profile '{name}'"
        path = os.path.expanduser(os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config")
        try:
            profiles = load_config(path).get("profiles", {})
        except (ConfigNotFound, ConfigParseError):  # no file, or none botocore can read: no region there
            profiles = {}
        found = (profiles.get(name) or {}).get("region")
    if not found:
        return DEFAULT_REGION
    if not isinstance(found, str) or not re.fullmatch(_REGION, found):
        raise ConfigError(f"bedrock: {where} is no AWS region name; set options.region")
    return found


def _chain(profile: str | None) -> Any:
    """The standard chain (env, shared files, SSO, container, IMDS): blocking I/O, run in a thread."""
    import botocore.session  # type: ignore[import-untyped]

    session = botocore.session.get_session()
    if profile is not None:
        session.set_config_variable("profile", profile)
    return session.get_credentials()


def _sign(url: str, body: bytes, headers: Mapping[str, str], credentials: Any, region: str) -> dict[str, str]:
    """SigV4 headers for ``url`` as sent (host, path and body), scoped to ``region``/``bedrock``.

    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
    """
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    SigV4Auth(credentials, _SERVICE, region).add_auth(request)
    return {str(k): str(v) for k, v in request.headers.items()}


# --- embeddings ---------------------------------------------------------------------------


def _embed_limit(model: str) -> int | None:
    """Texts per InvokeModel call: Titan one (``inputText``), Cohere 96."""
    return 1 if "titan-embed" in model else _COHERE_MAX_TEXTS if "cohere.embed" in model else None


def _embed_payload(texts: list[str], request: EmbeddingRequest, model: str, input_type: str) -> Json:
    if "titan-embed" in model:
        payload: Json = {"inputText": texts[0]}
        if request.dimensions is not None:
            # Titan Text v2 takes dimensions; the multimodal model embeddingConfig's length; Text
            # G1 none ("The only available field is inputText"): each per the Bedrock user guide
            if "titan-embed-image" in model:
                payload["embeddingConfig"] = {"outputEmbeddingLength": request.dimensions}
            elif "titan-embed-text-v1" in model or "titan-embed-g1" in model:
                raise UnsupportedParamError(
                    f"Amazon Titan Text Embeddings G1 has a fixed size; 'dimensions' is not supported "
                    f"(model '{model}'; Titan Text Embeddings V2 takes it)",
                    param="dimensions",
                )
            else:
                payload["dimensions"] = request.dimensions
        return payload
    if "cohere.embed" in model:
        payload = {"texts": texts, "input_type": input_type}
        if request.dimensions is not None:
            if "embed-v4" not in model:  # v3's size is fixed; v4 takes 256, 512, 1024 or 1536
                raise UnsupportedParamError(
                    f"Cohere embed v3 models on Bedrock have a fixed size; 'dimensions' is not supported "
                    f"(model '{model}'; Cohere Embed v4 takes it)",
                    param="dimensions",
                )
            payload["output_dimension"] = request.dimensions
        return payload
    raise InvalidRequestError(
        "bedrock embeddings support Amazon Titan (amazon.titan-embed-*) and Cohere (cohere.embed-*) "
        f"models, not '{model}'",
        param="model",
    )


def _vectors(data: Any) -> tuple[list[Any], int]:
    """(vectors, input tokens) of a Titan or Cohere response body."""
    if isinstance(data, dict) and "embedding" in data:
        tokens = data.get("inputTextTokenCount")
        return [data["embedding"]], tokens if isinstance(tokens, int) else 0
    vectors = data["embeddings"]
    if isinstance(vectors, dict):  # embedding_types requested: {"float": [[...]]}
        vectors = vectors["float"]
    if not isinstance(vectors, list):
        raise TypeError("embeddings is not a list")
    return vectors, 0


# --- errors -------------------------------------------------------------------------------


def _json_or_none(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def _error_type(headers: Mapping[str, str], payload: Any) -> str | None:
    """``ThrottlingException`` from ``x-amzn-ErrorType`` (or a body ``__type``)."""
    raw = next((v for k, v in headers.items() if k.lower() == "x-amzn-errortype"), None)
    if raw is None and isinstance(payload, dict):
        raw = payload.get("__type")
    if not isinstance(raw, str) or not raw:
        return None
    return raw.split(":", 1)[0].rsplit("#", 1)[-1]


def _error_text(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return None
    message = payload.get("message") or payload.get("Message")
    return str(message) if message else None


def _param_of(message: str) -> str | None:
    """The ChatRequest field behind ``"Value ... at 'inferenceConfig.temperature' failed ..."``."""
    match = _AT_PATH.search(message)
    if match is None:
        return None
    path = match.group(1)
    return next((p for prefix, p in _PARAMS.items() if path == prefix or path.startswith(prefix + ".")), None)
