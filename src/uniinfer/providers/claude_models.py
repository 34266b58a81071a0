"""What each Claude model takes, by name: the tables of the models that differ, and their checks.

The Claude API's models differ in what a request may ask of them, and the docs say which:
structured outputs (https://docs.anthropic.com/en/docs/build-with-claude/structured-outputs),
the effort parameter and its levels (https://docs.anthropic.com/en/docs/build-with-claude/effort),
and, from Opus 4.7 on, thinking only adaptively and no sampling params
(https://docs.anthropic.com/en/docs/build-with-claude/adaptive-thinking). Each table holds the
*older* models, a closed set, as name prefixes (Claude API ids, Vertex AI ids with ``@date``,
and the Claude part of Bedrock ids): a name outside them is a newer model, which has what the
newest have. A name that is not a Claude one at all (an Anthropic-compatible server's own
model) keeps the older behaviour for thinking and sampling. And what no Claude model takes
beside extended thinking (:func:`thinking_conflicts`). Used by the Claude API adapter, Vertex
AI's Claude models and Bedrock's.
"""

from __future__ import annotations

from collections.abc import Mapping

from uniinfer.errors import UnsupportedParamError
from uniinfer.types import ChatRequest
from uniinfer.types.chat import ToolChoiceFunction

__all__ = [
    "ADAPTIVE_TOO",
    "BEFORE_OPUS_4_7",
    "BOTH_SAMPLERS",
    "EFFORT_PARAM",
    "NO_EFFORT",
    "NO_STRUCTURED_OUTPUTS",
    "NO_THINKING",
    "THINKING_CONFLICTS",
    "effort_error",
    "effort_refused",
    "sampling_conflict_error",
    "sampling_conflicts",
    "structured_outputs",
    "takes_sampling",
    "thinking_conflict_error",
    "thinking_conflicts",
    "thinks",
    "thinks_adaptively",
    "value_conflicts",
]

#: Model-name prefixes of the Claude API models without structured outputs (JSON outputs and
#: strict tools). The docs list the models with them: Claude Sonnet 4.5, Haiku 4.5, Opus 4.5 and
#: every later model (Opus 4.6, Sonnet 4.6, Opus 4.7...); the models without are a closed set,
#: the older ones (Opus 4.1 had them only in the 2025-11-13 beta, not generally available).
NO_STRUCTURED_OUTPUTS: tuple[str, ...] = (
    "claude-instant",
    "claude-2",
    "claude-3",  # 3, 3.5 and 3.7
    "claude-sonnet-4-0",  # Sonnet 4: the alias and the dated id
    "claude-sonnet-4-2025",
    "claude-opus-4-0",  # Opus 4
    "claude-opus-4-2025",
    "claude-opus-4-1",  # Opus 4.1
    "claude-sonnet-4@",  # Sonnet 4 and Opus 4 as Vertex AI names them (claude-sonnet-4@20250514)
    "claude-opus-4@",
    "claude-v2",  # Claude 2 as Bedrock names it (anthropic.claude-v2:1)
)


#: Model-name prefixes of the Claude models without the effort parameter (``output_config.effort``,
#: https://docs.anthropic.com/en/docs/build-with-claude/effort): the docs list Opus 4.5 and every
#: later model (Sonnet 4.6, Opus 4.6, ...); the models before them are a closed set.
NO_EFFORT: tuple[str, ...] = (*NO_STRUCTURED_OUTPUTS, "claude-sonnet-4-5", "claude-haiku-4-5")
#: Effort levels that only later models take, and the models with effort that lack them: ``max``
#: came with Opus 4.6 and Sonnet 4.6, ``xhigh`` with Opus 4.7 and Sonnet 5.
_EFFORT_LACKING: Mapping[str, tuple[str, ...]] = {
    "max": ("claude-opus-4-5",),
    "xhigh": ("claude-opus-4-5", "claude-opus-4-6", "claude-sonnet-4-6", "claude-mythos-preview"),
}
#: How a refused effort is named (a Messages field: only an Anthropic client can send one).
EFFORT_PARAM = "output_config.effort"


#: The Claude API models before Opus 4.7, a closed set: their extended thinking takes a token
#: budget (``{"type": "enabled", "budget_tokens": N}``) and they take the sampling params
#: (``temperature``, ``top_p``, ``top_k``). Opus 4.7 and later refuse both (400): they think
#: adaptively (``{"type": "adaptive"}``), steered by ``output_config.effort``
#: (https://docs.anthropic.com/en/docs/build-with-claude/adaptive-thinking).
BEFORE_OPUS_4_7: tuple[str, ...] = (*NO_EFFORT, "claude-opus-4-5", "claude-opus-4-6", "claude-sonnet-4-6")
#: Those of them that take adaptive thinking too (sent when an Anthropic client asks for it).
ADAPTIVE_TOO: tuple[str, ...] = ("claude-opus-4-6", "claude-sonnet-4-6")


def _after_opus_4_6(model: str) -> bool:
    """Whether ``model`` is a Claude model from Opus 4.7 on: a ``claude`` name outside
    :data:`BEFORE_OPUS_4_7`. (Another name, an Anthropic-compatible server's own model, keeps
    the older behaviour.)"""
    name = model.lower()
    return name.startswith("claude") and not name.startswith(BEFORE_OPUS_4_7)


#: The Claude models that take ``temperature`` and ``top_p`` together, a closed set: those
#: before Opus 4.1. From Opus 4.1 on (Sonnet 4.5, Haiku 4.5, Opus 4.5, the 4.6 models) the API
#: answers a request with both "temperature and top_p cannot both be specified for this model"
#: (the docs' migration guide to Claude 4.5: "use only temperature or top_p, not both").
BOTH_SAMPLERS: tuple[str, ...] = tuple(p for p in NO_STRUCTURED_OUTPUTS if p != "claude-opus-4-1")


def sampling_conflicts(request: ChatRequest, model: str) -> tuple[str, ...]:
    """``("top_p",)`` when ``request`` sets ``temperature`` and ``top_p`` and the Claude
    ``model`` takes only one of them (see :data:`BOTH_SAMPLERS`); ``temperature`` is kept
    when the gateway drops what a model refuses. A name that is not a Claude one takes both."""
    if request.temperature is None or request.top_p is None:
        return ()
    name = model.lower()
    return ("top_p",) if name.startswith("claude") and not name.startswith(BOTH_SAMPLERS) else ()


#: The Claude models without extended thinking, a closed set: it came with Claude 3.7 Sonnet
#: (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking, "Supported
#: models"); the models before it answer ``thinking`` with a 400.
NO_THINKING: tuple[str, ...] = (
    "claude-instant",
    "claude-2",
    "claude-v2",  # Claude 2 as Bedrock names it
    "claude-3-haiku",
    "claude-3-sonnet",
    "claude-3-opus",
    "claude-3-5",  # 3.5 Sonnet and 3.5 Haiku
)


def thinks(model: str) -> bool:
    """Whether the Claude ``model`` has extended thinking (not those of :data:`NO_THINKING`)."""
    return not model.lower().startswith(NO_THINKING)


def takes_sampling(model: str) -> bool:
    """Whether ``model`` takes ``temperature``, ``top_p`` and ``top_k`` (not Opus 4.7 and later)."""
    return not _after_opus_4_6(model)


def thinks_adaptively(request: ChatRequest, model: str) -> bool:
    """Whether ``model`` (its Claude API name) gets adaptive thinking for ``request``: always from
    Opus 4.7 on; on Opus and Sonnet 4.6 when an Anthropic client asked for it. (A client's own
    ``budget_tokens`` is sent as it is, where the model takes one or not.)"""
    intent = request.messages_intent
    if intent is not None and intent.budget is not None:
        return False
    if _after_opus_4_6(model):
        return True
    return intent is not None and intent.adaptive and model.lower().startswith(ADAPTIVE_TOO)


def effort_refused(effort: str, model: str) -> bool:
    """Whether the Claude ``model`` (its Claude API name) lacks the effort level ``effort``."""
    name = model.lower()
    return name.startswith(NO_EFFORT) or name.startswith(_EFFORT_LACKING.get(effort, ()))


def effort_error(provider: str, model: str, effort: str) -> UnsupportedParamError:
    """The 400 for an effort level ``model`` lacks (:func:`effort_refused`)."""
    return UnsupportedParamError(
        f"{provider}: model '{model}' does not take {EFFORT_PARAM} '{effort}' "
        "(https://docs.anthropic.com/en/docs/build-with-claude/effort); leave it out, or set "
        "settings.drop_unsupported_params",
        param=EFFORT_PARAM,
    )


def structured_outputs(model: str) -> bool:
    """Whether the Claude API gives ``model`` structured outputs (see :data:`NO_STRUCTURED_OUTPUTS`)."""
    return not model.lower().startswith(NO_STRUCTURED_OUTPUTS)


#: What the Messages API refuses beside extended thinking (a 400): forced tool use, and
#: sampling changes; ``top_p`` only from 0.95 on
#: (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking).
THINKING_CONFLICTS = frozenset({"reasoning_effort", "temperature", "top_k", "top_p"})
_MIN_TOP_P_WITH_THINKING = 0.95


def thinking_conflicts(request: ChatRequest, thinking_on: bool) -> tuple[str, ...]:
    """What cannot go with the thinking ``request`` turns on (``thinking_on``: it is sent).

    ``tool_choice`` forcing a tool (``required`` or named) rules thinking out: then
    ``reasoning_effort`` is what goes (the forced call is the application's structure).
    Otherwise a ``temperature`` other than 1, any ``top_k`` and a ``top_p`` below 0.95
    each go. Refused before sending, naming the param, or dropped visibly when
    configured, where the API would answer a 400 ("Thinking may not be enabled when
    tool_choice forces tool use", "temperature may only be set to 1 when thinking is enabled").
    """
    if not thinking_on:
        return ()
    choice = request.tool_choice
    if request.tools and (choice == "required" or isinstance(choice, ToolChoiceFunction)):
        return ("reasoning_effort",)
    found = []
    if request.temperature is not None and request.temperature != 1:
        found.append("temperature")
    if request.top_k is not None:
        found.append("top_k")
    if request.top_p is not None and request.top_p < _MIN_TOP_P_WITH_THINKING:
        found.append("top_p")
    return tuple(found)


def value_conflicts(request: ChatRequest, model: str, thinking_on: bool) -> tuple[str, ...]:
    """What a Claude ``model`` refuses of ``request`` by value, each name once: what cannot go
    with the thinking it turns on (:func:`thinking_conflicts`), and ``top_p`` beside
    ``temperature`` (:func:`sampling_conflicts`)."""
    found = thinking_conflicts(request, thinking_on)
    return found + tuple(name for name in sampling_conflicts(request, model) if name not in found)


def sampling_conflict_error(provider: str, model: str) -> UnsupportedParamError:
    """The 400 for ``temperature`` beside ``top_p`` where ``model`` takes one (:func:`sampling_conflicts`)."""
    return UnsupportedParamError(
        f"{provider}: 'temperature' and 'top_p' cannot both be set for model '{model}' (Claude "
        "Opus 4.1 and later models take one of them); leave one out, or set "
        "settings.drop_unsupported_params (then top_p is dropped)",
        param="top_p",
        provider=provider,
    )


def thinking_conflict_error(provider: str, model: str, name: str) -> UnsupportedParamError:
    """The 400 for a param :func:`thinking_conflicts` found (the gateway's, before sending)."""
    if name == "reasoning_effort":
        why = "thinking cannot be on while tool_choice forces a tool ('required' or a named one)"
        fix = "use tool_choice 'auto', or leave reasoning_effort out"
    else:
        allowed = {"temperature": " (only 1, its default)", "top_p": " (only from 0.95 to 1)"}
        why = f"'{name}' cannot be set with thinking on{allowed.get(name, '')}"
        fix = f"leave '{name}' out, or reasoning_effort"
    return UnsupportedParamError(
        f"{provider}: {why} for model '{model}'; {fix}, or set settings.drop_unsupported_params",
        param=name,
        provider=provider,
    )
