"""Every provider uniinfer knows, as data, plus plug-ins from entry points.

Native providers name their adapter module; OpenAI-compatible providers are
rows that reuse :class:`~uniinfer.providers.openai.OpenAIAdapter` with their
own base URL, key variable and quirks. Adding one is adding a row (and its
test); nothing in the gateway, router or server changes.

Plug-ins from outside the package register a :class:`ProviderSpec` (or a list
of them) under the ``uniinfer.providers`` entry-point group.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from functools import cache

from uniinfer.errors import ConfigError
from uniinfer.providers.base import Capabilities, Endpoint, ProviderAdapter, ProviderSpec

__all__ = ["BUILTIN_PROVIDERS", "ENTRY_POINT_GROUP", "Registry", "default_registry"]

ENTRY_POINT_GROUP = "uniinfer.providers"

_OPENAI = "uniinfer.providers.openai:OpenAIAdapter"
_CHAT = Capabilities(tools=True, json_mode=True)

BUILTIN_PROVIDERS: tuple[ProviderSpec, ...] = (
    # --- native adapters ---------------------------------------------------------
    ProviderSpec(
        "openai",
        _OPENAI,
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
        Capabilities(vision=True, json_schema=True, embeddings=True, reasoning=True),
        docs_url="https://platform.openai.com/docs/api-reference/chat",
        description="OpenAI",
    ),
    ProviderSpec(
        "anthropic",
        "uniinfer.providers.anthropic:AnthropicAdapter",
        "https://api.anthropic.com",
        "ANTHROPIC_API_KEY",
        Capabilities(vision=True, json_mode=False, reasoning=True, prompt_caching=True),
        docs_url="https://docs.anthropic.com/en/api/messages",
        description="Anthropic Messages API",
    ),
    ProviderSpec(
        "gemini",
        "uniinfer.providers.gemini:GeminiAdapter",
        "https://generativelanguage.googleapis.com/v1beta",
        "GEMINI_API_KEY",
        Capabilities(vision=True, json_schema=True, embeddings=True, reasoning=True),
        docs_url="https://ai.google.dev/api/generate-content",
        description="Google Gemini (AI Studio)",
    ),
    ProviderSpec(
        "ollama",
        "uniinfer.providers.ollama:OllamaAdapter",
        "http://127.0.0.1:11434",
        None,
        Capabilities(vision=True, json_schema=True, embeddings=True, reasoning=True),
        key_required=False,
        local=True,
        docs_url="https://github.com/ollama/ollama/blob/main/docs/api.md",
        description="Ollama native API (local)",
    ),
    ProviderSpec(
        "bedrock",
        "uniinfer.providers.bedrock:BedrockAdapter",
        "https://bedrock-runtime.us-east-1.amazonaws.com",
        None,  # AWS credentials: options, or the standard AWS chain (env, profile, role)
        Capabilities(vision=True, json_mode=False, embeddings=True, reasoning=True),
        key_required=False,
        auto_enable=False,
        docs_url="https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html",
        description="AWS Bedrock (Converse, ConverseStream, Titan/Cohere embeddings)",
    ),
    ProviderSpec(
        "vertex",
        "uniinfer.providers.vertex:VertexAdapter",
        "https://us-central1-aiplatform.googleapis.com/v1",
        None,  # a service account (options.credentials_file or GOOGLE_APPLICATION_CREDENTIALS)
        Capabilities(vision=True, json_schema=True, embeddings=True, reasoning=True, prompt_caching=True),
        key_required=False,
        auto_enable=False,
        docs_url="https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference",
        description="Google Vertex AI (Gemini and Anthropic models)",
    ),
    ProviderSpec(
        "azure",
        "uniinfer.providers.azure:AzureOpenAIAdapter",
        "https://YOUR-RESOURCE.openai.azure.com",
        "AZURE_OPENAI_API_KEY",
        Capabilities(vision=True, json_schema=True, embeddings=True, reasoning=True),
        auto_enable=False,
        docs_url="https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference",
        description="Azure OpenAI (deployments, api-version, api-key or Entra ID token)",
    ),
    ProviderSpec(
        "cohere",
        "uniinfer.providers.cohere:CohereAdapter",
        "https://api.cohere.com",
        "CO_API_KEY",
        Capabilities(vision=True, json_schema=True, embeddings=True, reasoning=True),
        docs_url="https://docs.cohere.com/reference/chat",
        description="Cohere v2 chat and embed",
    ),
    ProviderSpec(
        "mistral",
        "uniinfer.providers.mistral:MistralAdapter",
        "https://api.mistral.ai/v1",
        "MISTRAL_API_KEY",
        Capabilities(vision=True, json_schema=True, embeddings=True, reasoning=True),
        docs_url="https://docs.mistral.ai/api/",
        description="Mistral AI",
    ),
    # --- OpenAI-compatible rows ----------------------------------------------------
    ProviderSpec(
        "groq",
        _OPENAI,
        "https://api.groq.com/openai/v1",
        "GROQ_API_KEY",
        Capabilities(vision=True, json_schema=True),
        # https://console.groq.com/docs/openai#currently-unsupported-openai-features
        unsupported_params=frozenset({"logprobs", "top_logprobs", "logit_bias", "audio", "modalities"}),
        docs_url="https://console.groq.com/docs/openai",
        description="Groq",
    ),
    ProviderSpec(
        "xai",
        _OPENAI,
        "https://api.x.ai/v1",
        "XAI_API_KEY",
        Capabilities(vision=True, json_schema=True, reasoning=True),
        docs_url="https://docs.x.ai/docs/api-reference",
        description="xAI Grok",
    ),
    ProviderSpec(
        "deepseek",
        _OPENAI,
        "https://api.deepseek.com",
        "DEEPSEEK_API_KEY",
        Capabilities(reasoning=True),
        # https://api-docs.deepseek.com/api/create-chat-completion
        unsupported_params=frozenset({"n", "logit_bias", "seed", "audio", "modalities", "prediction"}),
        docs_url="https://api-docs.deepseek.com/api/create-chat-completion",
        description="DeepSeek",
    ),
    ProviderSpec(
        "together",
        _OPENAI,
        "https://api.together.xyz/v1",
        "TOGETHER_API_KEY",
        Capabilities(vision=True, json_schema=True, embeddings=True),
        unsupported_params=frozenset({"audio", "modalities", "prediction", "store"}),
        docs_url="https://docs.together.ai/reference/chat-completions-1",
        description="Together AI",
    ),
    ProviderSpec(
        "openrouter",
        _OPENAI,
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
        # OpenRouter forwards cache_control breakpoints to Anthropic and Gemini models.
        Capabilities(vision=True, json_schema=True, reasoning=True, prompt_caching=True),
        docs_url="https://openrouter.ai/docs/api-reference/chat-completion",
        description="OpenRouter",
    ),
    ProviderSpec(
        "vllm",
        _OPENAI,
        "http://127.0.0.1:8000/v1",
        "VLLM_API_KEY",
        Capabilities(vision=True, json_schema=True, embeddings=True),
        unsupported_params=frozenset({"audio", "modalities", "prediction", "store", "web_search_options"}),
        key_required=False,
        local=True,
        docs_url="https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html",
        description="vLLM OpenAI-compatible server (local)",
    ),
    ProviderSpec(
        "openai_compatible",
        _OPENAI,
        "http://127.0.0.1:8080/v1",
        None,
        _CHAT,
        key_required=False,
        description="Any other OpenAI-compatible endpoint (set base_url)",
    ),
)


class Registry:
    """Provider specs by name, with their adapter classes imported on first use."""

    def __init__(self, specs: Iterable[ProviderSpec]) -> None:
        self._specs: dict[str, ProviderSpec] = {}
        for spec in specs:
            self._specs[spec.name] = spec
        self._classes: dict[str, type[ProviderAdapter]] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[ProviderSpec]:
        return iter(self._specs.values())

    @property
    def specs(self) -> Mapping[str, ProviderSpec]:
        return self._specs

    def get(self, name: str) -> ProviderSpec:
        spec = self._specs.get(name)
        if spec is None:
            known = ", ".join(sorted(self._specs))
            raise ConfigError(f"unknown provider type '{name}' (known: {known})")
        return spec

    def adapter_class(self, spec: ProviderSpec) -> type[ProviderAdapter]:
        cls = self._classes.get(spec.adapter)
        if cls is None:
            module_name, _, attr = spec.adapter.partition(":")
            try:
                loaded = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(
                    f"provider '{spec.name}': cannot load adapter '{spec.adapter}' ({exc})"
                ) from exc
            if not (isinstance(loaded, type) and issubclass(loaded, ProviderAdapter)):
                raise ConfigError(f"provider '{spec.name}': '{spec.adapter}' is not a ProviderAdapter")
            cls = self._classes[spec.adapter] = loaded
        return cls

    def create(self, spec: ProviderSpec, endpoint: Endpoint, name: str | None = None) -> ProviderAdapter:
        """An adapter for ``spec`` at ``endpoint``, named as configured (default: the spec's name)."""
        return self.adapter_class(spec)(spec, endpoint, name)


def _entry_point_specs() -> list[ProviderSpec]:
    from importlib.metadata import entry_points

    found: list[ProviderSpec] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            value = ep.load()
        except Exception as exc:  # a broken plug-in must name itself, not crash start-up
            raise ConfigError(f"provider plug-in '{ep.name}' ({ep.value}) failed to load: {exc}") from exc
        specs = value if isinstance(value, (list, tuple)) else [value]
        for spec in specs:
            if not isinstance(spec, ProviderSpec):
                raise ConfigError(f"provider plug-in '{ep.name}' must export a ProviderSpec")
            found.append(spec)
    return found


@cache
def default_registry() -> Registry:
    """Built-in providers plus installed plug-ins (read once per process)."""
    return Registry([*BUILTIN_PROVIDERS, *_entry_point_specs()])
