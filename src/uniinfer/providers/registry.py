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
from uniinfer.types.chat import OPENAI_ONLY

__all__ = ["BUILTIN_PROVIDERS", "ENTRY_POINT_GROUP", "Registry", "default_registry"]

ENTRY_POINT_GROUP = "uniinfer.providers"

_OPENAI = "uniinfer.providers.openai:OpenAIAdapter"
_CHAT = Capabilities(tools=True, json_mode=True)
_EMBED_ONLY = Capabilities(chat=False, streaming=False, tools=False, json_mode=False, embeddings=True)
#: For providers that only know the older name of OpenAI's output limit.
_MAX_TOKENS = {"max_completion_tokens": "max_tokens"}

BUILTIN_PROVIDERS: tuple[ProviderSpec, ...] = (
    # --- native adapters ---------------------------------------------------------
    ProviderSpec(
        "openai",
        _OPENAI,
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
        Capabilities(vision=True, json_schema=True, embeddings=True, reasoning=True),
        # max_tokens is deprecated for max_completion_tokens, the same limit for other models,
        # which the reasoning models (o-series, GPT-5) require: they refuse max_tokens (400).
        param_renames={"max_tokens": "max_completion_tokens"},
        extra_params=OPENAI_ONLY,
        embed_token_ids=True,
        docs_url="https://platform.openai.com/docs/api-reference/chat",
        description="OpenAI",
    ),
    ProviderSpec(
        "anthropic",
        "uniinfer.providers.anthropic:AnthropicAdapter",
        "https://api.anthropic.com",
        "ANTHROPIC_API_KEY",
        Capabilities(vision=True, json_mode=False, reasoning=True, prompt_caching=True),
        message_names=False,  # its messages have no participant name
        docs_url="https://docs.anthropic.com/en/api/messages",
        description="Anthropic Messages API",
    ),
    ProviderSpec(
        "gemini",
        "uniinfer.providers.gemini:GeminiAdapter",
        "https://generativelanguage.googleapis.com/v1beta",
        "GEMINI_API_KEY",
        Capabilities(vision=True, json_schema=True, embeddings=True, reasoning=True),
        message_names=False,  # its messages have no participant name
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
        message_names=False,  # its messages have no participant name
        docs_url="https://github.com/ollama/ollama/blob/main/docs/api.md",
        description="Ollama native API (local)",
    ),
    ProviderSpec(
        "bedrock",
        "uniinfer.providers.bedrock:BedrockAdapter",
        "https://bedrock-runtime.us-east-1.amazonaws.com",
        # A Bedrock API key (bearer) by convention; otherwise AWS credentials from
        # options or the standard AWS chain (env, profile, role) sign with SigV4.
        "AWS_BEARER_TOKEN_BEDROCK",
        Capabilities(vision=True, json_mode=False, embeddings=True, reasoning=True, prompt_caching=True),
        key_required=False,
        auto_enable=False,
        message_names=False,  # its messages have no participant name
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
        message_names=False,  # its messages have no participant name
        docs_url="https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference",
        description="Google Vertex AI (Gemini and Anthropic models)",
    ),
    ProviderSpec(
        "azure",
        "uniinfer.providers.azure:AzureOpenAIAdapter",
        "https://YOUR-RESOURCE.openai.azure.com",
        "AZURE_OPENAI_API_KEY",
        Capabilities(vision=True, json_schema=True, embeddings=True, reasoning=True),
        # an api-key, or an Entra ID token in options.entra_token (the adapter requires one)
        key_required=False,
        auto_enable=False,
        embed_token_ids=True,
        docs_url="https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference",
        description="Azure OpenAI (deployments, api-version, api-key or Entra ID token)",
    ),
    ProviderSpec(
        "cohere",
        "uniinfer.providers.cohere:CohereAdapter",
        "https://api.cohere.com",
        "CO_API_KEY",
        Capabilities(vision=True, json_schema=True, embeddings=True, reasoning=True),
        message_names=False,  # its messages have no participant name
        docs_url="https://docs.cohere.com/reference/chat",
        description="Cohere v2 chat and embed",
    ),
    ProviderSpec(
        "mistral",
        "uniinfer.providers.mistral:MistralAdapter",
        "https://api.mistral.ai/v1",
        "MISTRAL_API_KEY",
        Capabilities(vision=True, json_schema=True, embeddings=True, reasoning=True),
        message_names=False,  # a name on a system, user or assistant message is a 422
        docs_url="https://docs.mistral.ai/api/",
        description="Mistral AI",
    ),
    # --- OpenAI-compatible rows ----------------------------------------------------
    # Each quirk below cites the provider's docs; tests/contract/ runs every row
    # against the OpenAI fake impersonating it (tests/fakes/openai.py row_fake).
    ProviderSpec(
        "groq",
        _OPENAI,
        "https://api.groq.com/openai/v1",
        "GROQ_API_KEY",
        Capabilities(vision=True, json_schema=True),
        # https://console.groq.com/docs/openai#currently-unsupported-openai-features; "If N is
        # supplied, it must be equal to 1" (its chat reference)
        unsupported_params=frozenset({"logprobs", "top_logprobs", "logit_bias", "audio", "modalities", "n"}),
        # messages[].name is a 400 too (same page).
        message_names=False,
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
        # The API reference knows max_tokens only.
        param_renames=_MAX_TOKENS,
        # "For turns that do perform tool calls, the reasoning_content must be fully passed back
        # to the API in all subsequent requests" (https://api-docs.deepseek.com/guides/thinking_mode)
        reasoning_back=frozenset({"reasoning_content"}),
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
        # Llama models finish with "eos" (https://github.com/openai/openai-dotnet/pull/267).
        finish_reason_map={"eos": "stop"},
        # https://docs.together.ai/reference/chat-completions-1 documents max_tokens only.
        param_renames=_MAX_TOKENS,
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
        # an assistant turn's reasoning_details go back as they came ("preserving reasoning
        # blocks", https://openrouter.ai/docs/use-cases/reasoning-tokens), and its
        # reasoning_content in a tool loop, as the models behind it may need it
        reasoning_back=frozenset({"reasoning_content", "reasoning_details"}),
        docs_url="https://openrouter.ai/docs/api-reference/chat-completion",
        description="OpenRouter",
    ),
    ProviderSpec(
        "fireworks",
        _OPENAI,
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
        Capabilities(vision=True, json_schema=True, embeddings=True),
        unsupported_params=frozenset({"audio", "modalities", "store", "web_search_options"}),
        # "Usage stats are returned on streaming responses too, in the final chunk":
        # no stream_options needed (https://docs.fireworks.ai/tools-sdks/openai-compatibility).
        stream_usage="always",
        docs_url="https://docs.fireworks.ai/tools-sdks/openai-compatibility",
        description="Fireworks AI",
    ),
    ProviderSpec(
        "perplexity",
        _OPENAI,
        "https://api.perplexity.ai",
        "PERPLEXITY_API_KEY",
        # Sonar answers from web search: no function calling; structured output is
        # response_format json_schema (https://docs.perplexity.ai/guides/structured-outputs).
        Capabilities(tools=False, vision=True, json_mode=False, json_schema=True, reasoning=True),
        # https://docs.perplexity.ai/api-reference/chat-completions-post lists the params it takes.
        unsupported_params=frozenset(
            {"n", "stop", "seed", "logit_bias", "logprobs", "top_logprobs", "parallel_tool_calls"}
            | {"service_tier", "audio", "modalities", "prediction", "store", "tool_choice"}
        ),
        # Its reference names the output limit max_tokens.
        param_renames=_MAX_TOKENS,
        # Every streamed chunk carries usage; the API has no stream_options.
        stream_usage="always",
        docs_url="https://docs.perplexity.ai/guides/chat-completions-guide",
        description="Perplexity Sonar (web-grounded answers)",
    ),
    ProviderSpec(
        "cerebras",
        _OPENAI,
        "https://api.cerebras.ai/v1",
        "CEREBRAS_API_KEY",
        Capabilities(json_schema=True, reasoning=True),
        # "Currently unsupported OpenAI features" (400 when sent):
        # https://inference-docs.cerebras.ai/resources/openai
        unsupported_params=frozenset(
            {"frequency_penalty", "presence_penalty", "logit_bias", "parallel_tool_calls", "service_tier"}
        ),
        docs_url="https://inference-docs.cerebras.ai/resources/openai",
        description="Cerebras Inference",
    ),
    ProviderSpec(
        "sambanova",
        _OPENAI,
        "https://api.sambanova.ai/v1",
        "SAMBANOVA_API_KEY",
        Capabilities(vision=True, embeddings=True),
        # "Currently unsupported OpenAI features ... will be ignored": presence_penalty,
        # frequency_penalty, logit_bias; n (1-8) and seed are supported.
        # https://docs.sambanova.ai/docs/en/features/openai-compatibility
        unsupported_params=frozenset({"presence_penalty", "frequency_penalty", "logit_bias"}),
        docs_url="https://docs.sambanova.ai/docs/en/features/openai-compatibility",
        description="SambaNova Cloud",
    ),
    ProviderSpec(
        "nvidia",
        _OPENAI,
        "https://integrate.api.nvidia.com/v1",
        "NVIDIA_API_KEY",
        Capabilities(vision=True, json_schema=True, embeddings=True),
        # Retrieval embedding models (nv-embedqa-*) need input_type "query" or "passage".
        embed_options=frozenset({"input_type", "truncate"}),
        docs_url="https://docs.api.nvidia.com/nim/reference/llm-apis",
        description="NVIDIA NIM (build.nvidia.com)",
    ),
    ProviderSpec(
        "huggingface",
        _OPENAI,
        "https://router.huggingface.co/v1",
        "HF_TOKEN",
        Capabilities(vision=True, json_schema=True),
        # Text Generation Inference (behind the router's hf-inference provider) answered
        # "eos_token" / "stop_sequence" before it adopted OpenAI's "stop":
        # https://github.com/huggingface/text-generation-inference/pull/2344
        finish_reason_map={"eos_token": "stop", "stop_sequence": "stop"},
        docs_url="https://huggingface.co/docs/inference-providers/index",
        description="Hugging Face Inference Providers (router)",
    ),
    ProviderSpec(
        "cloudflare",
        _OPENAI,
        # {account_id} comes from providers.cloudflare.options.account_id (or give base_url).
        "https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/v1",
        "CLOUDFLARE_API_KEY",
        # The OpenAI-compatible endpoint documents chat (with tools) and embeddings; JSON
        # mode is documented for the native API only, so it is not declared here.
        Capabilities(json_mode=False, embeddings=True),
        # Its text-generation models document max_tokens (no max_completion_tokens).
        param_renames=_MAX_TOKENS,
        auto_enable=False,  # needs the account id as well as the key
        docs_url="https://developers.cloudflare.com/workers-ai/configuration/open-ai-compatibility/",
        description="Cloudflare Workers AI",
    ),
    ProviderSpec(
        "moonshot",
        _OPENAI,
        "https://api.moonshot.ai/v1",
        "MOONSHOT_API_KEY",
        # Streams put usage inside the last choice; the decoder lifts it out (no flag needed).
        Capabilities(vision=True, reasoning=True),
        # The chat reference documents max_tokens only.
        param_renames=_MAX_TOKENS,
        # Kimi's thinking models keep a tool loop's reasoning_content, as DeepSeek's do
        # (https://platform.moonshot.ai/docs/guide/use-kimi-k2-thinking-model)
        reasoning_back=frozenset({"reasoning_content"}),
        docs_url="https://platform.moonshot.ai/docs/api/chat",
        description="Moonshot AI (Kimi)",
    ),
    ProviderSpec(
        "dashscope",
        _OPENAI,
        "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        "DASHSCOPE_API_KEY",
        # Streams report usage with stream_options.include_usage, as OpenAI's do.
        Capabilities(vision=True, embeddings=True, reasoning=True),
        # The compatible mode documents max_tokens as the output limit.
        param_renames=_MAX_TOKENS,
        docs_url="https://www.alibabacloud.com/help/en/model-studio/compatibility-of-openai-with-dashscope",
        description="Alibaba Cloud Model Studio (Qwen, international)",
    ),
    ProviderSpec(
        "deepinfra",
        _OPENAI,
        # "The api_base is https://api.deepinfra.com/v1/openai" (chat and embeddings).
        "https://api.deepinfra.com/v1/openai",
        "DEEPINFRA_API_KEY",
        Capabilities(vision=True, json_schema=True, embeddings=True),
        docs_url="https://deepinfra.com/docs/advanced/openai_api",
        description="DeepInfra",
    ),
    ProviderSpec(
        "vllm",
        _OPENAI,
        "http://127.0.0.1:8000/v1",
        "VLLM_API_KEY",
        Capabilities(vision=True, json_schema=True, embeddings=True),
        # Its ChatCompletionRequest (vllm/entrypoints/openai/protocol.py) accepts unknown fields
        # and only logs "present in the request but ignored"; parallel_tool_calls and user are
        # fields it documents as ignored. Each would be silently lost, so they are refused.
        unsupported_params=frozenset(
            {"audio", "modalities", "prediction", "store", "web_search_options", "service_tier"}
            | {"metadata", "verbosity", "parallel_tool_calls", "user", "safety_identifier"}
            | {"prompt_cache_key", "prompt_cache_retention"}
        ),
        # top_k is one of its "extra parameters" (the chat-completion sampling params of
        # ChatCompletionRequest, same file).
        extra_params=frozenset({"top_k"}),
        key_required=False,
        local=True,
        docs_url="https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html",
        description="vLLM OpenAI-compatible server (local)",
    ),
    ProviderSpec(
        "lmstudio",
        _OPENAI,
        "http://127.0.0.1:1234/v1",
        None,
        Capabilities(vision=True, json_mode=False, json_schema=True, embeddings=True),
        # Its chat completions docs list the "supported payload parameters": model, top_p, top_k,
        # messages, temperature, max_tokens, stream, stop, presence_penalty, frequency_penalty,
        # logit_bias, repeat_penalty, seed (https://lmstudio.ai/docs/developer/openai-compat/
        # chat-completions); tools, tool_choice, response_format json_schema and
        # stream_options.include_usage are added by its API changelog (0.3.6, 0.3.15, 0.3.18).
        # The server (closed source) takes other fields without a word: logprobs is accepted
        # and never answered (https://github.com/lmstudio-ai/lms/issues/60). So every other
        # OpenAI param is refused, reasoning_effort aside (recent builds check its values).
        unsupported_params=frozenset(
            {"audio", "modalities", "prediction", "store", "web_search_options", "service_tier"}
            | {"metadata", "verbosity", "parallel_tool_calls", "user", "safety_identifier"}
            | {"prompt_cache_key", "prompt_cache_retention", "n", "logprobs", "top_logprobs"}
        ),
        # The documented output limit is max_tokens only.
        param_renames=_MAX_TOKENS,
        extra_params=frozenset({"top_k"}),
        key_required=False,
        local=True,
        docs_url="https://lmstudio.ai/docs/app/api/endpoints/openai",
        description="LM Studio (local)",
    ),
    ProviderSpec(
        "llamacpp",
        _OPENAI,
        "http://127.0.0.1:8080/v1",
        None,
        Capabilities(vision=True, json_schema=True, embeddings=True),
        # oaicompat_chat_params_parse (tools/server/server-common.cpp) copies every body field
        # into the task params and params_from_json_cmpl (server-task.cpp) reads the ones it
        # knows, so an unknown field is dropped without an error. Read there: temperature,
        # top_p, top_k, max_tokens / max_completion_tokens, n, stop, seed, the penalties,
        # logit_bias, logprobs / top_logprobs, stream_options.include_usage; in the parse
        # itself: response_format, tools, tool_choice, parallel_tool_calls, modalities, and
        # reasoning_effort goes to the chat template (README). Nothing reads these:
        unsupported_params=frozenset(
            {"audio", "prediction", "store", "web_search_options", "service_tier", "metadata"}
            | {"verbosity", "user", "safety_identifier", "prompt_cache_key", "prompt_cache_retention"}
        ),
        extra_params=frozenset({"top_k"}),
        # tool_choice is read as a string (json_value(body, "tool_choice", "auto")): an object
        # fails the type check and becomes "auto" with only a logged warning.
        named_tool_choice=False,
        key_required=False,
        local=True,
        docs_url="https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md",
        description="llama.cpp server (llama-server, local)",
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
    # --- embedding-only rows ------------------------------------------------------------
    ProviderSpec(
        "voyage",
        _OPENAI,
        "https://api.voyageai.com/v1",
        "VOYAGE_API_KEY",
        _EMBED_ONLY,
        # https://docs.voyageai.com/reference/embeddings-api: output_dimension, no user
        # field, encoding_format null (floats) or "base64" only; usage is total_tokens.
        embed_param_renames={"dimensions": "output_dimension"},
        embed_omit=frozenset({"encoding_format", "user"}),
        embed_options=frozenset({"input_type", "truncation"}),
        # "truncation: true (default)": an over-long input is cut without a word; OpenAI refuses it
        embed_defaults={"truncation": False},
        docs_url="https://docs.voyageai.com/reference/embeddings-api",
        description="Voyage AI embeddings",
    ),
    ProviderSpec(
        "jina",
        _OPENAI,
        "https://api.jina.ai/v1",
        "JINA_API_KEY",
        _EMBED_ONLY,
        # https://jina.ai/embeddings/: embedding_type (not encoding_format), task, late_chunking.
        embed_omit=frozenset({"encoding_format", "user"}),
        embed_options=frozenset({"task", "late_chunking", "normalized"}),
        docs_url="https://jina.ai/embeddings/",
        description="Jina AI embeddings",
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
