"""What each Bedrock model takes, by model id: structured outputs, prompt caching, sampling params.

Tables keyed by model id prefix (the first matching row decides; a model matching
none has none of the feature), read through the lookups below, which accept a model
id, a cross-Region inference profile id (``us.anthropic.claude-...``) or an ARN
(``.../foundation-model/<id>``, ``.../inference-profile/<id>``). Used by the
Converse translation (:mod:`uniinfer.providers.bedrock_converse`) and the adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from uniinfer.providers.claude_models import effort_refused, takes_sampling, thinks

__all__ = [
    "HOUR_CACHE",
    "NO_CACHING",
    "PROMPT_CACHING",
    "STRUCTURED_OUTPUTS",
    "PromptCaching",
    "claude_name",
    "effort_refused_on_bedrock",
    "model_id",
    "prompt_caching",
    "structured_outputs",
    "unsupported_for",
]


#: Which Bedrock models have structured outputs (``outputConfig.textFormat`` and strict tools),
#: by model id without its cross-Region inference profile prefix (``us.``, ``global.``...) or ARN
#: path: the first matching prefix decides, a model matching none has none (an application
#: inference profile or provisioned-throughput ARN names no model: route to the model id).
#: Claude: Sonnet 4.5, Haiku 4.5, Opus 4.5, Opus 4.6 and later
#: (https://docs.aws.amazon.com/bedrock/latest/userguide/claude-messages-structured-outputs.html),
#: not the older models; OpenAI's open-weight gpt-oss models (model-cards.html). AWS lists more
#: open-weight models on each model card; a row per family once its card is checked.
STRUCTURED_OUTPUTS: tuple[tuple[str, bool], ...] = (
    ("anthropic.claude-instant", False),
    ("anthropic.claude-v2", False),
    ("anthropic.claude-3", False),  # 3, 3.5 and 3.7
    ("anthropic.claude-sonnet-4-2025", False),  # Sonnet 4
    ("anthropic.claude-opus-4-2025", False),  # Opus 4
    ("anthropic.claude-opus-4-1", False),  # Opus 4.1
    ("anthropic.claude", True),
    ("openai.gpt-oss-", True),
)


#: Cross-Region inference profile prefixes of model ids (``us.anthropic.claude-...``).
_PROFILE_PREFIXES = frozenset({"us", "us-gov", "eu", "apac", "jp", "au", "ca", "global"})


_EVERYWHERE = frozenset({"system", "messages", "tools"})


_NOT_TOOLS = frozenset({"system", "messages"})


#: Which Bedrock models take cache checkpoints (``cachePoint``), and where: ``system``,
#: ``messages``, ``tools``. By model id as for :data:`STRUCTURED_OUTPUTS`, the first matching
#: prefix decides, a model matching none takes none. Claude 3.5 Haiku, 3.7 Sonnet, Sonnet 4, Opus
#: 4 and every later Claude model; not Claude 3, 3.5 Sonnet (v2 only for the customers of its
#: preview: sending it to the others fails the request) or older; Amazon Nova Micro, Lite, Pro and
#: Premier, not on tools (https://docs.aws.amazon.com/bedrock/latest/userguide/prompt-caching.html,
#: "Supported models"). Other families (Nova 2, open-weight models): a row each once AWS lists them.
PROMPT_CACHING: tuple[tuple[str, frozenset[str]], ...] = (
    ("anthropic.claude-3-5-haiku", _EVERYWHERE),
    ("anthropic.claude-3-7-sonnet", _EVERYWHERE),
    ("anthropic.claude-3", frozenset()),
    ("anthropic.claude-instant", frozenset()),
    ("anthropic.claude-v2", frozenset()),
    ("anthropic.claude", _EVERYWHERE),
    ("amazon.nova-micro", _NOT_TOOLS),
    ("amazon.nova-lite", _NOT_TOOLS),
    ("amazon.nova-pro", _NOT_TOOLS),
    ("amazon.nova-premier", _NOT_TOOLS),
)


#: Which of them take one-hour checkpoints (``cachePoint.ttl: "1h"``): Claude Sonnet 4.5, Haiku
#: 4.5, Opus 4.5 and later (the 5-minute default is every caching model's).
HOUR_CACHE: tuple[tuple[str, bool], ...] = (
    ("anthropic.claude-3", False),
    ("anthropic.claude-instant", False),
    ("anthropic.claude-v2", False),
    ("anthropic.claude-sonnet-4-2025", False),  # Sonnet 4
    ("anthropic.claude-opus-4-2025", False),  # Opus 4
    ("anthropic.claude-opus-4-1", False),  # Opus 4.1
    ("anthropic.claude", True),
)


def claude_name(model: str) -> str:
    """The Claude API name in a Bedrock model id, profile id or ARN (``claude-opus-4-6-v1`` of
    ``us.anthropic.claude-opus-4-6-v1``), for the Claude model tables; empty for other models."""
    return model.lower().rpartition("/")[2].partition("anthropic.")[2]


def effort_refused_on_bedrock(effort: str, model: str) -> bool:
    """Whether the Bedrock Claude ``model`` lacks the effort level (by its Claude name)."""
    name = claude_name(model)
    return bool(name) and effort_refused(effort, name)


def model_id(model: str) -> str:
    """The model id in a Bedrock model id, cross-Region profile id or ARN, for the model tables."""
    name = model.lower().rpartition("/")[2]  # an ARN: .../foundation-model/<id>, .../inference-profile/<id>
    profile, dot, rest = name.partition(".")
    return rest if dot and profile in _PROFILE_PREFIXES else name


def structured_outputs(model: str) -> bool:
    """Whether ``model`` has structured outputs on Bedrock (see :data:`STRUCTURED_OUTPUTS`)."""
    name = model_id(model)
    return next((has for prefix, has in STRUCTURED_OUTPUTS if name.startswith(prefix)), False)


@dataclass(frozen=True, slots=True)
class PromptCaching:
    """Where a model takes cache checkpoints (``system``, ``messages``, ``tools``; none: no prompt
    caching) and whether one-hour ones."""

    places: frozenset[str] = frozenset()
    hour: bool = False

    def point(self, cache: Mapping[str, Any]) -> dict[str, Any]:
        """The ``cachePoint`` of a ``cache_control`` breakpoint (its one-hour TTL where the model
        has it; five minutes is the default, not sent)."""
        if self.hour and cache.get("ttl") == "1h":
            return {"type": "default", "ttl": "1h"}
        return {"type": "default"}


NO_CACHING = PromptCaching()


def prompt_caching(model: str) -> PromptCaching:
    """Where ``model`` takes cache checkpoints on Bedrock (:data:`PROMPT_CACHING`, :data:`HOUR_CACHE`)."""
    name = model_id(model)
    places = next((p for prefix, p in PROMPT_CACHING if name.startswith(prefix)), frozenset[str]())
    if not places:
        return NO_CACHING
    return PromptCaching(places, next((h for prefix, h in HOUR_CACHE if name.startswith(prefix)), False))


def unsupported_for(model: str) -> frozenset[str]:
    """Params the model's family has no field for (they travel in additionalModelRequestFields);
    for Claude from Opus 4.7 on, the sampling params, which it refuses; before Claude 3.7
    Sonnet, ``reasoning_effort`` (no extended thinking)."""
    if "anthropic." in model:
        name = claude_name(model)
        lacking = frozenset() if takes_sampling(name) else frozenset({"temperature", "top_p", "top_k"})
        return lacking if thinks(name) else lacking | {"reasoning_effort"}
    if "amazon.nova" in model:
        return frozenset({"reasoning_effort"})
    return frozenset({"top_k", "reasoning_effort"})
