"""Google Vertex AI: Gemini models and Anthropic's Claude models, with service-account auth.

One provider, two wire formats, chosen by model name:

- ``claude*`` models are Anthropic's (publisher ``anthropic``): the Messages
  API body at ``:rawPredict`` / ``:streamRawPredict``, with no ``model`` field
  (the URL names the model) and ``"anthropic_version": "vertex-2023-10-16"``
  in the body instead of the ``anthropic-version`` header
  (https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude,
  https://docs.anthropic.com/en/api/claude-on-vertex-ai). Translation is
  :class:`~uniinfer.providers.anthropic.AnthropicAdapter`'s.
- every other model is Google's (publisher ``google``): ``:generateContent`` /
  ``:streamGenerateContent?alt=sse``, the same JSON as the Gemini API
  (https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference).
  Translation is :class:`~uniinfer.providers.gemini.GeminiAdapter`'s.

URLs are ``{root}/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}``.
The root is the configured ``base_url``, except that the registry's default
(``https://us-central1-aiplatform.googleapis.com/v1``) follows ``location``:
``https://{location}-aiplatform.googleapis.com/v1``, and ``global``, ``us``
and ``eu`` use ``aiplatform.googleapis.com`` and the ``.rep`` multi-region hosts.

Auth is ``Authorization: Bearer <access token>`` from a service-account key
(:mod:`uniinfer.providers.google_auth`), refreshed by :meth:`prepare_credentials`.
A 401 (``UNAUTHENTICATED``: the token was revoked, or expired while the machine
slept) drops the token the request carried, so the next request fetches a new
one: that request fails, the following ones do not.
The project defaults to the key's ``project_id``.

Params: ``supported_params`` is the union of both families' sets, because the
gateway checks params before the model is known to the adapter. A request whose
model family cannot express a param it sets (``seed`` or ``response_format``
for Claude, ``user`` or ``parallel_tool_calls`` for Gemini) raises
:class:`~uniinfer.errors.UnsupportedParamError` naming the param and the
provider: :meth:`VertexAdapter.supported_for` tells the gateway the family's
set, so ``settings.drop_unsupported_params`` drops them visibly instead when
it is on (``chat_request`` checks again for direct callers of the adapter).

Embeddings use ``:predict`` (https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api):
``{"instances": [{"content": text}], "parameters": {"outputDimensionality": n}}`` ->
``predictions[].embeddings.{values, statistics.token_count}``; usage is the sum
of the token counts. ``gemini-embedding-*`` models take one instance per request;
others up to 250.

Errors: Vertex answers platform errors (auth, quota, unknown model) as
``google.rpc.Status`` for both families, and Claude's own errors in Anthropic's
shape (``{"type": "error", ...}``); :meth:`VertexAdapter.parse_error` tells them
apart by the body.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from uniinfer.errors import (
    ConfigError,
    UniInferError,
    UnsupportedParamError,
)
from uniinfer.http import HttpClient, HttpRequest, retry_after_seconds
from uniinfer.providers.anthropic import AnthropicAdapter
from uniinfer.providers.base import (
    Endpoint,
    ProviderAdapter,
    ProviderSpec,
    StreamDecoder,
    loads,
    merge_headers,
)
from uniinfer.providers.gemini import GeminiAdapter
from uniinfer.providers.gemini_request import EmbedTaskType
from uniinfer.providers.google_auth import ServiceAccountTokenSource, load_service_account
from uniinfer.types import ChatRequest, ChatResponse, Embedding, EmbeddingRequest, EmbeddingResponse
from uniinfer.types.embeddings import EmbeddingUsage

__all__ = ["VERTEX_ANTHROPIC_VERSION", "VertexAdapter", "VertexOptions", "vertex_root"]

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
DEFAULT_ROOT = "https://us-central1-aiplatform.googleapis.com/v1"
#: ``:predict`` limits (https://cloud.google.com/vertex-ai/generative-ai/docs/embeddings/get-text-embeddings).
MAX_EMBED_INSTANCES = 250
_MULTI_REGION_ROOTS = {
    "global": "https://aiplatform.googleapis.com/v1",
    "us": "https://aiplatform.us.rep.googleapis.com/v1",
    "eu": "https://aiplatform.eu.rep.googleapis.com/v1",
}
_ALWAYS = frozenset({"model", "messages", "stream"})


class VertexOptions(BaseModel):
    """``providers.<name>.options`` of a Vertex AI provider."""

    # the example is docs/providers.md's snippet: one of the two credentials is required
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"credentials_file": "env:GOOGLE_APPLICATION_CREDENTIALS"}]},
    )
    #: Google Cloud project id (default: the service account's ``project_id``).
    project: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.:_-]+$")
    location: str = Field(default="us-central1", pattern=r"^[a-z0-9-]+$")
    #: Path of a service-account key file (e.g. ``env:GOOGLE_APPLICATION_CREDENTIALS``).
    credentials_file: str | None = None
    #: The service-account key itself, as JSON text.
    credentials_json: SecretStr | None = None
    #: Token endpoint override (default: the key's ``token_uri``).
    token_uri: str | None = None
    #: Sent as every embedding instance's ``task_type`` (see the Gemini API's ``embed_task_type``).
    embed_task_type: EmbedTaskType | None = None


def vertex_root(base_url: str, location: str) -> str:
    """The API root: ``base_url`` as configured, or the regional host when it is the row default."""
    base = base_url.rstrip("/")
    if base != DEFAULT_ROOT:
        return base
    return _MULTI_REGION_ROOTS.get(location, f"https://{location}-aiplatform.googleapis.com/v1")


def is_claude(model: str) -> bool:
    """Whether ``model`` is served by the ``anthropic`` publisher."""
    return model.lower().startswith("claude")


class _VertexGemini(GeminiAdapter):
    """Gemini translation at a Vertex publisher URL, with Bearer auth instead of ``x-goog-api-key``."""

    def __init__(self, spec: ProviderSpec, endpoint: Endpoint, name: str, tokens: ServiceAccountTokenSource):
        super().__init__(spec, endpoint, name)
        self._tokens = tokens

    def auth_headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "authorization": self._tokens.authorization()}
        return merge_headers(headers, self.endpoint.headers)

    def redact(self, text: str) -> str:
        return self._tokens.redact(super().redact(text))

    def chat_request(self, request: ChatRequest, model: str, *, stream: bool) -> HttpRequest:
        """Strict tools left to the model ask for ``VALIDATED`` calls, which Vertex AI's ``v1``
        does not have (its ``FunctionCallingConfig.Mode``: AUTO, ANY, NONE): that request goes to
        ``v1beta1``, the same resource path, where it is (google-genai's default version)."""
        built = super().chat_request(request, model, stream=stream)
        if b'"mode":"VALIDATED"' in built.body and "/v1/projects/" in built.url:
            return dataclasses.replace(built, url=built.url.replace("/v1/projects/", "/v1beta1/projects/", 1))
        return built


class _VertexClaude(AnthropicAdapter):
    """Anthropic translation sent to ``:rawPredict`` / ``:streamRawPredict``."""

    #: The Claude API's fast mode, data residency, service tiers and beta tool options are its
    #: own (Vertex AI has regional endpoints instead): the gateway leaves out or refuses them.
    claude_fields = frozenset()

    def __init__(self, spec: ProviderSpec, endpoint: Endpoint, name: str, tokens: ServiceAccountTokenSource):
        super().__init__(spec, endpoint, name)
        self._tokens = tokens

    def structured_outputs(self, model: str) -> bool:
        # Vertex AI's Claude models and dates differ from the Claude API's table; until they
        # are known here, json_schema and strict tools are refused (or strict dropped visibly)
        return False

    def chat_request(self, request: ChatRequest, model: str, *, stream: bool) -> HttpRequest:
        payload = orjson.loads(super().chat_request(request, model, stream=stream).body)
        payload.pop("model", None)  # the URL names the model (Anthropic's Vertex SDK drops it too)
        payload["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
        method = "streamRawPredict" if stream else "rawPredict"
        url = self.url(f"/models/{quote(model, safe='@')}:{method}")
        return HttpRequest(url, orjson.dumps(payload), self._headers(request))

    def _headers(self, request: ChatRequest) -> dict[str, str]:
        # no client betas: Vertex AI takes only some of the Claude API's (an unknown one is a 400)
        headers = {"content-type": "application/json", "authorization": self._tokens.authorization()}
        return merge_headers(headers, self.endpoint.headers)

    def redact(self, text: str) -> str:
        return self._tokens.redact(super().redact(text))


class VertexAdapter(ProviderAdapter):
    """Vertex AI: Gemini (``generateContent``) and Claude (``rawPredict``) models, embeddings via ``predict``."""

    supported_params = (
        GeminiAdapter.supported_params | AnthropicAdapter.supported_params | AnthropicAdapter.per_model_params
    )
    embed_unsupported = GeminiAdapter.embed_unsupported
    Options = VertexOptions

    def __init__(self, spec: ProviderSpec, endpoint: Endpoint, name: str | None = None) -> None:
        super().__init__(spec, endpoint, name)
        opts: VertexOptions = self.options
        if endpoint.api_key:
            raise ConfigError(
                f"providers.{self.name}.api_key: Vertex AI authenticates with a service account "
                "(options.credentials_file or options.credentials_json), not an API key"
            )
        secret = opts.credentials_json.get_secret_value() if opts.credentials_json else None
        info = load_service_account(
            credentials_file=opts.credentials_file, credentials_json=secret, provider=self.name
        )
        self.tokens = ServiceAccountTokenSource(
            info, provider=self.name, token_uri=opts.token_uri, timeouts=endpoint.timeouts
        )
        project = opts.project or self.tokens.project_id
        if not project or not re.fullmatch(r"[A-Za-z0-9.:_-]+", project):
            raise ConfigError(
                f"providers.{self.name}.options.project: set the Google Cloud project "
                "(the service-account key names none)"
            )
        self.project, self.location = project, opts.location
        root = vertex_root(endpoint.base_url, opts.location)
        publishers = f"{root}/projects/{project}/locations/{opts.location}/publishers"
        self._gemini = _VertexGemini(spec, self._inner(f"{publishers}/google"), self.name, self.tokens)
        self._claude = _VertexClaude(spec, self._inner(f"{publishers}/anthropic"), self.name, self.tokens)

    def _inner(self, base_url: str) -> Endpoint:
        e = self.endpoint
        return Endpoint(base_url=base_url, api_key=None, headers=e.headers, timeouts=e.timeouts)

    async def prepare_credentials(self, http: HttpClient) -> None:
        """Fetch or refresh the access token (shared by every request of this provider)."""
        await self.tokens.ensure(http)

    def family(self, model: str) -> ProviderAdapter:
        """The adapter whose wire format ``model`` speaks."""
        return self._claude if is_claude(model) else self._gemini

    def supported_for(self, model: str) -> frozenset[str]:
        """The chosen family's params for ``model``, so the gateway rejects (or drops) the others."""
        return self.family(model).supported_for(model)

    def params_left_out(self, request: ChatRequest, model: str) -> tuple[str, ...]:
        return self.family(model).params_left_out(request, model)

    def structured_outputs(self, model: str) -> bool:
        return self.family(model).structured_outputs(model)

    def values_refused(self, request: ChatRequest, model: str) -> tuple[str, ...]:
        return self.family(model).values_refused(request, model)

    def without_values(self, request: ChatRequest, model: str, names: tuple[str, ...]) -> ChatRequest:
        return self.family(model).without_values(request, model, names)

    # --- chat -------------------------------------------------------------------------

    def chat_request(self, request: ChatRequest, model: str, *, stream: bool) -> HttpRequest:
        family = self.family(model)
        self._check_params(request, family, model)
        return family.chat_request(request, model, stream=stream)

    def parse_chat(self, body: bytes, model: str) -> ChatResponse:
        return self.family(model).parse_chat(body, model)

    def stream_decoder(self, model: str) -> StreamDecoder:
        return self.family(model).stream_decoder(model)

    def _check_params(self, request: ChatRequest, family: ProviderAdapter, model: str) -> None:
        present = {
            name
            for name in request.model_fields_set - _ALWAYS
            if name in self.supported_params and getattr(request, name) is not None
        }
        rejected = sorted(present - family.supported_for(model))
        if rejected:
            kind = "Anthropic (rawPredict)" if family is self._claude else "Gemini (generateContent)"
            raise UnsupportedParamError(
                f"provider '{self.name}' cannot send {', '.join(rejected)} to {kind} model '{model}'; "
                "remove the parameter(s) or route to another model",
                param=rejected[0],
                provider=self.name,
            )

    # --- embeddings ---------------------------------------------------------------------

    def embed_request(self, request: EmbeddingRequest, model: str) -> HttpRequest:
        limit = 1 if model.startswith("gemini-embedding") else MAX_EMBED_INSTANCES
        texts = self.embed_texts(request, model, limit)
        # an input beyond the model's length is an error, as on OpenAI: by default Vertex embeds
        # its first tokens and says so only in statistics.truncated (the TextEmbeddingPredictionParams)
        parameters: dict[str, Any] = {"autoTruncate": False}
        if request.dimensions is not None:
            parameters["outputDimensionality"] = request.dimensions
        task = self.options.embed_task_type
        payload: dict[str, Any] = {
            "instances": [
                {"content": text, "task_type": task} if task else {"content": text} for text in texts
            ],
            "parameters": parameters,
        }
        url = self._gemini.url(f"/models/{quote(model, safe='@')}:predict")
        return HttpRequest(url, orjson.dumps(payload), self._gemini.auth_headers())

    def parse_embed(self, body: bytes, model: str) -> EmbeddingResponse:
        data = loads(body, self.name)
        predictions = data.get("predictions") if isinstance(data, dict) else None
        if not isinstance(predictions, list):
            raise self.shape_error("embeddings response", body)
        items: list[Embedding] = []
        tokens = 0
        try:
            for index, prediction in enumerate(predictions):
                embeddings = prediction["embeddings"]
                items.append(Embedding(index=index, embedding=embeddings["values"]))
                stats = embeddings.get("statistics") or {}
                tokens += int(stats.get("token_count") or 0)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self.shape_error("embedding", body) from exc
        return EmbeddingResponse(
            data=items, model=model, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
        )

    # --- errors -------------------------------------------------------------------------

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UniInferError:
        """Anthropic-shaped bodies (``"type": "error"``) as Claude errors, the rest as ``google.rpc``.

        A 401 also drops the access token that was refused (see :meth:`ServiceAccountTokenSource.refused`):
        kept, it would fail every request until its refresh point, up to an hour away.
        """
        if status == 401:
            self.tokens.refused()
        try:
            payload = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            payload = None
        if isinstance(payload, dict) and payload.get("type") == "error":
            return self._claude.parse_error(status, headers, body)
        if isinstance(payload, list) and len(payload) == 1 and isinstance(payload[0], dict):
            # streamGenerateContent without alt=sse wraps its error in a JSON array.
            raw = body.decode("utf-8", "replace")
            return self._gemini.rpc_error(status, payload[0], raw, retry_after_seconds(headers))
        return self._gemini.parse_error(status, headers, body)

    def redact(self, text: str) -> str:
        return self.tokens.redact(super().redact(text))
