"""Azure OpenAI: the OpenAI wire format behind deployment URLs, ``api-version`` and Azure auth.

Reference: https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference

- URLs: ``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21``
  (and ``/embeddings``); the model name *is* the deployment name. With
  ``use_v1_api`` the v1 API is used instead: ``{endpoint}/openai/v1/chat/completions``
  with the deployment in the body's ``model`` and no ``api-version`` (unless
  ``api_version`` is set explicitly, e.g. ``preview``)
  (https://learn.microsoft.com/en-us/azure/ai-foundry/openai/api-version-lifecycle).
- Auth: the ``api-key`` header, or ``Authorization: Bearer <Microsoft Entra ID token>``.
  The token is obtained and refreshed by uniinfer with the client-credentials grant of
  an app registration (``options.tenant_id``, ``client_id``, ``client_secret``: a service
  principal with the "Cognitive Services OpenAI User" role; scope
  ``https://cognitiveservices.azure.com/.default``; token endpoint
  ``{authority}/{tenant}/oauth2/v2.0/token``,
  https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow),
  cached and refreshed ahead of expiry as :mod:`uniinfer.providers.oauth` does. Or a token
  obtained elsewhere is given as ``options.entra_token``: sent as configured, never
  refreshed (Entra tokens last 60 to 90 minutes), for short runs. No managed identity yet.
- ``stream_options.include_usage`` is sent on api-versions from 2024-09-01 on
  (older ones reject the field, and their streams report no usage), and
  ``max_tokens`` as ``max_completion_tokens`` (the reasoning models refuse
  ``max_tokens``; older api-versions have only it).
- Content filtering (https://learn.microsoft.com/en-us/azure/ai-foundry/openai/concepts/content-filter):
  a filtered prompt is a 400 whose ``error.code`` is ``content_filter`` with
  ``innererror.content_filter_result``: it becomes
  :class:`~uniinfer.errors.ContentFilteredError` naming the filtered categories.
  A filtered completion is a 200 with ``finish_reason: "content_filter"``, passed
  through (a filtered choice may come without a ``message``; it gets an empty one).
- Streams start with an annotation chunk that has empty ``choices``, no ``usage``,
  ``"object": ""`` and ``prompt_filter_results``; with asynchronous filtering,
  chunks whose choices carry only ``content_filter_results`` follow. Both are
  dropped by :class:`AzureStreamDecoder`, so that neither is taken for content
  nor for the usage chunk (which has empty choices *and* ``usage``). An
  annotation-only choice that carries a ``finish_reason`` is kept: it is how
  asynchronous filtering blocks an answer already under way (``content_filter``,
  https://learn.microsoft.com/en-us/azure/ai-foundry/openai/concepts/content-streaming,
  "Sample response stream (blocked by filters)"), so it goes on with an empty
  ``delta`` and the stream's id, created and model in place of its empty ones.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from uniinfer.errors import ConfigError, ContentFilteredError, UniInferError
from uniinfer.http import HttpClient, HttpRequest, Timeouts
from uniinfer.providers.base import Endpoint, ProviderSpec, chunk_id, loads, merge_headers
from uniinfer.providers.oauth import TokenSource
from uniinfer.providers.openai import OpenAIAdapter, OpenAIStreamDecoder
from uniinfer.providers.redaction import redact_secret
from uniinfer.types import ChatRequest, ChatResponse, EmbeddingRequest, RawEvents, StreamItem

__all__ = ["ENTRA_SCOPE", "AzureOpenAIAdapter", "AzureOptions", "AzureStreamDecoder", "EntraTokenSource"]

#: The scope of Azure OpenAI (Azure AI services) for an Entra access token.
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"

DEFAULT_API_VERSION = "2024-10-21"
#: First api-version that accepts ``stream_options`` (2024-09-01-preview; GA in 2024-10-21).
_STREAM_USAGE_SINCE = "2024-09-01"
#: First api-version with ``max_completion_tokens``, which the reasoning models (o-series, GPT-5)
#: require and others take as the same limit: from it on ``max_tokens`` is sent under that name.
_COMPLETION_LIMIT_SINCE = "2024-09-01"
_DATED = re.compile(r"^\d{4}-\d{2}-\d{2}")
_PLACEHOLDER = "YOUR-RESOURCE"


class AzureOptions(BaseModel):
    """``providers.<name>.options`` of an Azure OpenAI provider."""

    model_config = ConfigDict(extra="forbid")
    api_version: str = Field(default=DEFAULT_API_VERSION, pattern=r"^[A-Za-z0-9.-]+$")
    #: Use ``/openai/v1/...`` with the deployment in ``model`` instead of deployment URLs.
    use_v1_api: bool = False
    #: A Microsoft Entra ID access token, sent as ``Authorization: Bearer`` instead of ``api-key``:
    #: as configured, never refreshed (it expires after 60 to 90 minutes; see the module docs).
    entra_token: SecretStr | None = None
    #: An app registration's client credentials: uniinfer fetches and refreshes the token.
    tenant_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]+$")
    client_id: str | None = Field(default=None, min_length=1)
    client_secret: SecretStr | None = None
    #: Where tokens come from: Microsoft's public cloud, or a national cloud's
    #: (https://login.microsoftonline.us, https://login.chinacloudapi.cn).
    authority: str = Field(default="https://login.microsoftonline.com", pattern=r"^https?://[^\s/?#]+/?$")
    scope: str = Field(default=ENTRA_SCOPE, min_length=1)

    @model_validator(mode="after")
    def _one_way_in(self) -> AzureOptions:
        credentials = (self.tenant_id, self.client_id, self.client_secret)
        given = sum(value is not None for value in credentials)
        if given not in (0, 3):
            raise ValueError("set tenant_id, client_id and client_secret together (Entra client credentials)")
        if given and self.entra_token is not None:
            raise ValueError("set either entra_token or the client credentials, not both")
        if given and not self.client_secret.get_secret_value():  # type: ignore[union-attr]
            raise ValueError("client_secret is empty")
        if not given and {"authority", "scope"} & self.model_fields_set:
            raise ValueError(
                "authority and scope go with the client credentials (tenant_id, client_id, client_secret)"
            )
        host = urlsplit(self.authority).hostname or ""
        if self.authority.startswith("http://") and host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("authority must be https:// (the client secret is posted to it)")
        return self


class AzureOpenAIAdapter(OpenAIAdapter):
    """OpenAI Chat Completions and embeddings on an Azure OpenAI resource."""

    Options = AzureOptions

    def __init__(self, spec: ProviderSpec, endpoint: Endpoint, name: str | None = None) -> None:
        super().__init__(spec, endpoint, name)
        opts: AzureOptions = self.options
        if _PLACEHOLDER in endpoint.base_url:
            raise ConfigError(
                f"providers.{self.name}.base_url: set your Azure OpenAI endpoint "
                "(https://<resource>.openai.azure.com)"
            )
        self._entra = opts.entra_token.get_secret_value() if opts.entra_token else None
        self.tokens: EntraTokenSource | None = None
        if opts.client_secret is not None and opts.tenant_id and opts.client_id:
            self.tokens = EntraTokenSource(
                tenant_id=opts.tenant_id,
                client_id=opts.client_id,
                client_secret=opts.client_secret.get_secret_value(),
                authority=opts.authority,
                scope=opts.scope,
                provider=self.name,
                timeouts=endpoint.timeouts,
            )
        if not self._entra and self.tokens is None and not endpoint.api_key:
            raise ConfigError(
                f"provider '{self.name}' needs an API key (providers.{self.name}.api_key or "
                f"AZURE_OPENAI_API_KEY), Entra client credentials (options.tenant_id, client_id, "
                f"client_secret) or providers.{self.name}.options.entra_token"
            )
        base = endpoint.base_url.rstrip("/")
        self._root = base.removesuffix("/openai/v1").removesuffix("/openai")
        self._v1 = opts.use_v1_api
        explicit = "api_version" in opts.model_fields_set
        self._query = "" if self._v1 and not explicit else f"?api-version={quote(opts.api_version)}"
        dated = _DATED.match(opts.api_version)
        self._stream_usage = dated is None or dated.group() >= _STREAM_USAGE_SINCE
        if dated is None or dated.group() >= _COMPLETION_LIMIT_SINCE:
            self.param_renames = {**self.param_renames, "max_tokens": "max_completion_tokens"}
        else:  # "Unrecognized request argument supplied: max_completion_tokens" there
            self.param_renames = {**self.param_renames, "max_completion_tokens": "max_tokens"}

    # --- requests ---------------------------------------------------------------------

    def deployment_url(self, model: str, operation: str) -> str:
        """The URL of ``operation`` (``chat/completions``, ``embeddings``) for deployment ``model``."""
        if self._v1:
            return f"{self._root}/openai/v1/{operation}{self._query}"
        return f"{self._root}/openai/deployments/{quote(model, safe='')}/{operation}{self._query}"

    def chat_request(self, request: ChatRequest, model: str, *, stream: bool) -> HttpRequest:
        built = super().chat_request(request, model, stream=stream)
        body = built.body
        if stream and not self._stream_usage:
            payload = orjson.loads(body)
            payload.pop("stream_options", None)
            body = orjson.dumps(payload)
        return replace(built, url=self.deployment_url(model, "chat/completions"), body=body)

    def embed_request(self, request: EmbeddingRequest, model: str) -> HttpRequest:
        return replace(super().embed_request(request, model), url=self.deployment_url(model, "embeddings"))

    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer`` with an Entra ID token, else ``api-key``; configured headers win."""
        headers = {"content-type": "application/json"}
        if self.tokens is not None:
            headers["authorization"] = self.tokens.authorization()
        elif self._entra:
            headers["authorization"] = f"Bearer {self._entra}"
        elif self.endpoint.api_key:
            headers["api-key"] = self.endpoint.api_key
        return merge_headers(headers, self.endpoint.headers)

    # --- responses --------------------------------------------------------------------

    def parse_chat(self, body: bytes, model: str) -> ChatResponse:
        if b'"content_filter"' not in body:
            return super().parse_chat(body, model)
        data = loads(body, self.name)
        choices = data.get("choices") if isinstance(data, dict) else None
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict) and choice.get("message") is None:
                choice["message"] = {"role": "assistant", "content": None}  # a filtered choice
        try:
            return ChatResponse.model_validate(data)
        except ValueError as exc:
            raise self.shape_error("chat response", body) from exc

    def stream_decoder(self, model: str) -> AzureStreamDecoder:
        return AzureStreamDecoder(self, model)

    # --- errors -----------------------------------------------------------------------

    async def prepare_credentials(self, http: HttpClient) -> None:
        """Fetch or refresh the Entra access token, when the client credentials are configured."""
        if self.tokens is not None:
            await self.tokens.ensure(http)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UniInferError:
        if status == 401 and self.tokens is not None:
            self.tokens.refused()  # revoked, or expired early: the next request fetches another
        err = super().parse_error(status, headers, body)
        if isinstance(err, ContentFilteredError):
            categories = _filtered_categories(body)
            if categories:
                err.message = f"{err.message} (filtered: {', '.join(categories)})"
                err.args = (err.message,)
        return err

    def redact(self, text: str) -> str:
        text = redact_secret(super().redact(text), self._entra)
        return text if self.tokens is None else self.tokens.redact(text)


class AzureStreamDecoder(OpenAIStreamDecoder):
    """The OpenAI decoder, minus Azure's content-filter annotation chunks (but not their finish)."""

    __slots__ = ("_model",)

    def __init__(self, adapter: AzureOpenAIAdapter, model: str) -> None:
        super().__init__(adapter)
        #: The deployment asked for: the model of a blocking finish that comes before any chunk.
        self._model = model

    def pass_on(self, data: bytes) -> bytes | None:
        """As the OpenAI decoder's, for an event that is no annotation and holds none.

        A blocking finish is rewritten (its id and object are empty), so it is never relayed
        as it came: :func:`_without_annotations` gives back other bytes for it.
        """
        json = data[6:-2]
        return super().pass_on(data) if _without_annotations(json) is json else None

    def _decode(self, events: list[tuple[str, bytes]]) -> list[StreamItem]:
        kept: list[tuple[str, bytes]] = []
        envelope = partial(self._envelope, kept)
        for event, data in events:
            cleaned = _without_annotations(data, envelope)
            if cleaned is not None:
                kept.append((event, cleaned))
        return super()._decode(kept)

    def _envelope(self, kept: list[tuple[str, bytes]]) -> dict[str, Any]:
        """The id, created, model (and system_fingerprint) of the stream's latest chunk.

        For a blocking finish, whose own are empty: the chunks kept from this read come
        first (the OpenAI decoder has not seen them yet), then the last one it saw; a
        stream blocked before any chunk gets a new id, the time and the deployment.
        """
        for _event, data in reversed(kept):
            found = _envelope_in(data)
            if found is not None:
                return found
        last = self._last
        if isinstance(last, bytes):
            found = _envelope_in(RawEvents(last).payloads()[-1])
        else:
            found = _envelope_of(*last) if last is not None else None
        return found or {"id": chunk_id(), "created": int(time.time()), "model": self._model}


def _envelope_in(data: bytes) -> dict[str, Any] | None:
    """:func:`_envelope_of` the chunk event ``data``; None for ``[DONE]`` or an annotation."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None  # [DONE], or bad data the OpenAI decoder reports
    if not isinstance(payload, dict):
        return None
    get = payload.get
    return _envelope_of(get("id"), get("created"), get("model"), get("system_fingerprint"))


def _envelope_of(chunk: Any, created: Any, model: Any, fingerprint: Any) -> dict[str, Any] | None:
    """A chunk's id, created, model and system_fingerprint, as JSON fields; None when it names none."""
    if not isinstance(chunk, str) or not chunk or not isinstance(model, str) or not model:
        return None
    found: dict[str, Any] = {
        "id": chunk,
        "created": created if isinstance(created, int) and created > 0 else int(time.time()),
        "model": model,
    }
    if isinstance(fingerprint, str):
        found["system_fingerprint"] = fingerprint
    return found


def _without_annotations(data: bytes, envelope: Callable[[], dict[str, Any]] | None = None) -> bytes | None:
    """The event's data without annotation-only choices; None when nothing else is left.

    Dropped: a chunk with empty ``choices`` and no ``usage`` (``prompt_filter_results``),
    and choices without a ``delta`` (``content_filter_results`` of asynchronous filtering),
    unless they carry a ``finish_reason``: asynchronous filtering blocks an answer with
    such a choice (``content_filter``), in an event whose id, object and model are empty.
    That choice is kept with an empty ``delta``, and the event gets ``envelope()`` (the
    stream's id, created and model) when its own id is empty. Anything unparsable is
    left for the OpenAI decoder to report.
    """
    if data == b"[DONE]" or b'"choices"' not in data:
        return data
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
        return data
    choices = payload["choices"]
    content = [c for c in choices if not isinstance(c, dict) or "delta" in c or c.get("finish_reason")]
    if not content and payload.get("usage") is None:
        return None
    finishes = [c for c in content if isinstance(c, dict) and "delta" not in c]
    if len(content) == len(choices) and not finishes:
        return data
    for choice in finishes:
        choice["delta"] = {}
    if finishes and not payload.get("id"):
        payload.update(envelope() if envelope is not None else {})
        payload["object"] = "chat.completion.chunk"
    payload["choices"] = content
    return orjson.dumps(payload)


def _filtered_categories(body: bytes) -> list[str]:
    """``category (severity)`` for each filtered category of a content-filter error."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    error = payload.get("error") if isinstance(payload, dict) else None
    inner = error.get("innererror") if isinstance(error, dict) else None
    result = inner.get("content_filter_result") if isinstance(inner, dict) else None
    if not isinstance(result, dict):
        return []
    out = []
    for category, verdict in result.items():
        if isinstance(verdict, dict) and verdict.get("filtered"):
            severity = verdict.get("severity")
            out.append(f"{category} ({severity})" if isinstance(severity, str) else str(category))
    return out


class EntraTokenSource(TokenSource):
    """Access tokens of an app registration, by Entra ID's client-credentials grant: the form
    ``grant_type=client_credentials``, ``client_id``, ``client_secret``, ``scope`` posted to
    ``{authority}/{tenant}/oauth2/v2.0/token``; cached and refreshed as every
    :class:`~uniinfer.providers.oauth.TokenSource` is."""

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        authority: str,
        scope: str,
        provider: str,
        timeouts: Timeouts | None = None,
    ) -> None:
        super().__init__(
            provider=provider,
            token_uri=f"{authority.rstrip('/')}/{tenant_id}/oauth2/v2.0/token",
            timeouts=timeouts,
        )
        self.who = f"the app {client_id} of tenant {tenant_id}"
        self._form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            "scope": scope,
        }
        self._secret = client_secret

    def grant(self) -> tuple[dict[str, str], tuple[str, ...]]:
        return self._form, (self._secret,)

    def redact(self, text: str) -> str:
        return redact_secret(super().redact(text), self._secret)
