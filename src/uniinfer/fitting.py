"""Fitting a request to the deployment it is about to go to: what that provider can take.

A capability the provider lacks (chat, streaming, tools, image input, JSON mode, structured
output for that model) is a 400 ``unsupported_feature``. A param it cannot honour, by name
(the protocol's :attr:`~uniinfer.providers.base.ProviderAdapter.supported_params` for the
model, the row's ``unsupported_params``) or by value
(:meth:`~uniinfer.providers.base.ProviderAdapter.values_refused`), is a 400
``unsupported_param`` naming it, unless ``settings.drop_unsupported_params`` says to take it
out; the names then reach the caller in ``x-uniinfer-dropped-params``, with those the adapter
leaves out of this request on its own (``params_left_out``). Nothing is dropped silently, and
``n`` above 1 never is (an answer with one choice where several were asked for has another
shape). Both
errors are target mismatches: the router goes on to the group's next deployment.

OpenAI's ``messages[].name`` (a participant's name on a system, developer, user or assistant
message) is such a param for the providers whose row says they cannot carry it
(:attr:`~uniinfer.providers.base.ProviderSpec.message_names`): refused as ``messages[i].name``
(the first named message), or taken off every message and reported once, as
``messages[].name`` (a header must not grow with the conversation).

A param set to OpenAI's default asks for what a provider without it does anyway (``n: 1``, one
choice; ``parallel_tool_calls: true``, calls allowed side by side, not required to be;
``logprobs: false``; penalties of 0; ``response_format`` ``text``; ``store: false``): honoured
everywhere by leaving it out, neither refused nor named as a drop (:data:`_DEFAULTS`).
OpenAI's prompt-cache hints (``prompt_cache_key``, ``prompt_cache_retention``) say how to cache,
not what to answer, and clients such as Codex send them on every request: where a provider takes
none, they are left out whatever the setting and named in ``x-uniinfer-dropped-params``.

One param is left out whatever the setting: an Anthropic Messages client's
``metadata.user_id`` (sent as ``user``), for a provider without an end-user field. It
identifies the caller to the provider's abuse detection and changes nothing in the answer, and
Claude Code sends it on every request: refusing it would refuse that client everywhere but on
OpenAI and Claude. It is named in ``x-uniinfer-dropped-params`` as ``metadata.user_id``.

An Anthropic Messages client's Claude API fields
(:attr:`~uniinfer.types.MessagesIntent.claude_fields`) go to an adapter that takes them
(:attr:`~uniinfer.providers.base.ProviderAdapter.claude_fields`: the Claude API's). For any
other, those that change how the model answers, not what (``speed``, ``service_tier``, a tool's
``eager_input_streaming``) are left out whatever the setting and named, as ``metadata.user_id``
is (``speed: standard``, the default, is honoured everywhere); the others (``inference_geo``, a
data-residency requirement, and a tool's ``input_examples``) are params it cannot honour: a 400
naming them, or dropped and named with ``settings.drop_unsupported_params``.

The usual request asks for nothing out of the ordinary, and one subset test against the
deployment's accepted fields (computed once per deployment) answers it; only a deployment that
cannot carry names looks at the messages, once, for one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from uniinfer.errors import UnsupportedFeatureError, UnsupportedParamError
from uniinfer.providers.base import ProviderAdapter
from uniinfer.routing.group import Target
from uniinfer.types import ChatRequest, EmbeddingRequest
from uniinfer.types.chat import (
    ImagePart,
    JSONObjectFormat,
    JSONSchemaFormat,
    Message,
    UserMessage,
)

__all__ = ["MESSAGE_NAME", "USER_ID", "RequestFitter", "check_features"]

#: Fields every chat request has, whatever the provider.
_ALWAYS = frozenset({"model", "messages", "stream"})
#: Deployments whose accepted request fields are kept (direct ``provider/model`` names are open-ended).
_ALLOWED_CACHE_LIMIT = 4096
#: How ``x-uniinfer-dropped-params`` names the participant names taken off a request's messages.
MESSAGE_NAME = "messages[].name"
#: How it names an Anthropic Messages client's end-user id left out.
USER_ID = "metadata.user_id"
#: Claude API fields that change how a model answers, not what (see the module's docs).
_MANNER = frozenset({"speed", "service_tier", "eager_input_streaming"})


class RequestFitter:
    """Checks requests against their targets; drops what they cannot take when ``drop``."""

    def __init__(self, *, drop: bool) -> None:
        self._drop = drop
        self._allowed: dict[str, frozenset[str]] = {}

    def chat(self, request: ChatRequest, target: Target) -> tuple[ChatRequest, tuple[str, ...]]:
        """The request as it may go to ``target``, and the params dropped or left out."""
        fitted, dropped = self._fit_chat(request, target)
        left_out = target.adapter.params_left_out(fitted, target.model)
        if fitted.max_tokens is not None and fitted.max_completion_tokens is not None:
            left_out += ("max_tokens",)  # both sent: its successor wins, in every adapter
        return fitted, (dropped + left_out) if left_out else dropped

    def _fit_chat(self, request: ChatRequest, target: Target) -> tuple[ChatRequest, tuple[str, ...]]:
        adapter = target.adapter
        check_features(request, adapter, target.model)
        allowed = self._allowed.get(target.label)
        if allowed is None:
            allowed = (adapter.supported_for(target.model) - adapter.unsupported()) | _ALWAYS
            if len(self._allowed) < _ALLOWED_CACHE_LIMIT:
                self._allowed[target.label] = allowed
        # values it cannot honour: taken out here when configured, else its chat_request refuses them
        refused = adapter.values_refused(request, target.model) if self._drop else ()
        # participant names, which most native wire formats have no place for (one look, then)
        named = () if adapter.spec.message_names else _named(request.messages)
        manner, claude = _claude_fields(request, adapter)
        if not refused and not named and not claude and request.model_fields_set <= allowed:
            return request, manner  # the usual case: nothing to check one by one
        present = {
            name
            for name in request.model_fields_set
            if name not in _ALWAYS and getattr(request, name) is not None
        }
        rejected = (present - adapter.supported_for(target.model)) | (present & adapter.unsupported())
        if "reasoning_effort" in rejected and request.reasoning_effort == "none":
            # no reasoning asked for, from a provider without it: honoured as it is, not a drop
            rejected.discard("reasoning_effort")
            request = request.model_copy(update={"reasoning_effort": None})
        defaults = {name for name in rejected & _DEFAULTS.keys() if _DEFAULTS[name](getattr(request, name))}
        if defaults:  # OpenAI's default, what the provider does anyway: honoured, not a drop
            rejected -= defaults
            request = request.model_copy(update=dict.fromkeys(defaults))
        left = manner
        hints = rejected & _CACHE_HINTS
        if hints:  # OpenAI's prompt-cache hints: left out whatever the setting (see the module's docs)
            rejected -= hints
            request = request.model_copy(update=dict.fromkeys(hints))
            left += tuple(sorted(hints))
        if "user" in rejected and (intent := request.messages_intent) is not None and intent.user_id:
            rejected.discard("user")  # left out, whatever the setting (see the module's docs)
            request = request.model_copy(update={"user": None})
            left += (USER_ID,)
        if not rejected and not refused and not named and not claude:
            return request, left
        names = tuple(sorted(rejected))
        if "n" in rejected and (request.n or 1) > 1:
            # several choices asked for: an answer with one has another shape, not fewer details
            raise UnsupportedParamError(
                f"provider '{adapter.name}' does not support the parameter n={request.n} (model "
                f"'{request.model}'): it answers with one choice; send n=1 or route to a provider that "
                "takes n (this one is not dropped: the answer's shape would change)",
                param="n",
                provider=adapter.name,
            )
        if not self._drop:
            shown = names + claude + ((f"messages[{named[0]}].name",) if named else ())
            raise UnsupportedParamError(
                f"provider '{adapter.name}' does not support the parameter(s) {', '.join(shown)} "
                f"(model '{request.model}'{_names_note(named)}); remove them or set "
                "settings.drop_unsupported_params",
                param=shown[0],
                provider=adapter.name,
            )
        update: dict[str, Any] = dict.fromkeys(names)
        if named:
            update["messages"] = _without_names(request.messages, named)
            names += (MESSAGE_NAME,)
        fitted = request.model_copy(update=update) if update else request
        if refused:
            fitted = adapter.without_values(fitted, target.model, refused)
        # a param refused by name may be refused by value too (Opus 4.7's temperature): named once;
        # the Claude fields need no taking out: only an adapter that takes them reads them
        return fitted, tuple(dict.fromkeys(names + claude + refused + left))

    def embeddings(
        self, request: EmbeddingRequest, adapter: ProviderAdapter
    ) -> tuple[EmbeddingRequest, tuple[str, ...]]:
        """The embedding request as it may go to ``adapter``, and the params dropped."""
        if not adapter.spec.capabilities.embeddings:
            raise adapter.feature_error("embeddings")
        names = tuple(sorted(n for n in adapter.embed_params_refused() if getattr(request, n) is not None))
        if not names:
            return request, ()
        if not self._drop:
            raise UnsupportedParamError(
                f"provider '{adapter.name}' does not support the parameter(s) {', '.join(names)} "
                f"for embeddings (model '{request.model}'); remove them or set "
                "settings.drop_unsupported_params",
                param=names[0],
                provider=adapter.name,
            )
        return request.model_copy(update=dict.fromkeys(names)), names


#: Values of a param that ask for OpenAI's default, what a provider without the param does anyway:
#: honoured by leaving it out (clients send them on every request: LangChain ``n: 1``, Codex
#: ``parallel_tool_calls: true``, many apps their penalties at 0), never refused or named as a drop.
_DEFAULTS: Mapping[str, Callable[[Any], bool]] = {
    "n": lambda n: n == 1,  # one choice
    "parallel_tool_calls": lambda allowed: allowed is True,  # allowed, not required
    "logprobs": lambda asked: asked is False,
    "frequency_penalty": lambda penalty: penalty == 0,
    "presence_penalty": lambda penalty: penalty == 0,
    "response_format": lambda fmt: fmt.type == "text",
    "store": lambda stored: stored is False,
}

#: OpenAI's prompt-cache hints: left out where a provider takes none (see the module's docs).
_CACHE_HINTS = frozenset({"prompt_cache_key", "prompt_cache_retention"})


def check_features(request: ChatRequest, adapter: ProviderAdapter, model: str) -> None:
    """Raise UnsupportedFeatureError for a capability the provider does not declare (structured
    output: for ``model``, see :meth:`ProviderAdapter.structured_outputs`)."""
    caps = adapter.spec.capabilities
    if not caps.chat:
        raise adapter.feature_error("chat completions")
    if request.stream and not caps.streaming:
        raise adapter.feature_error("streaming", "stream")
    if request.tools and not caps.tools:
        raise adapter.feature_error("tools")
    fmt = request.response_format
    if isinstance(fmt, JSONObjectFormat) and not caps.json_mode:
        raise adapter.feature_error("JSON mode (response_format json_object)", "response_format")
    if isinstance(fmt, JSONSchemaFormat) and not adapter.structured_outputs(model):
        raise UnsupportedFeatureError(
            f"provider '{adapter.name}' does not support structured output (response_format "
            f"json_schema) for model '{model}'; route to a model that has it",
            provider=adapter.name,
            param="response_format",
        )
    if not caps.vision and _has_images(request):
        raise adapter.feature_error("image input", "messages")
    if not adapter.audio_turns:
        turn = _audio_turn(request.messages)
        if turn is not None:  # a previous audio answer by its id: OpenAI's to look up, no one else's
            raise adapter.feature_error("a previous audio answer in the history", f"messages[{turn}].audio")


def _audio_turn(messages: list[Message]) -> int | None:
    """The index of the first assistant turn that refers to a previous audio answer (``audio``)."""
    for i, msg in enumerate(messages):
        if "audio" in msg.__pydantic_fields_set__ and msg.__dict__["audio"] is not None:
            return i
    return None


def _claude_fields(request: ChatRequest, adapter: ProviderAdapter) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The Claude API fields of a Messages client that ``adapter`` does not send: (left out
    whatever the setting, refused unless dropped), as Messages paths."""
    intent = request.messages_intent
    if intent is None or not intent.claude_fields:
        return (), ()
    manner: list[str] = []
    refused: list[str] = []
    for path, value in intent.claude_fields:
        name = path.rpartition(".")[2]
        if name in adapter.claude_fields or (name == "speed" and value == "standard"):
            continue
        (manner if name in _MANNER else refused).append(path)
    return tuple(manner), tuple(refused)


def _named(messages: list[Message]) -> Sequence[int]:
    """The indexes of the messages with a participant ``name``.

    The usual conversation names nobody: one pass over the fields each message was given
    (pydantic's own set, the cheapest test there is) says so. Values are read from the
    fields themselves (``__dict__``), since tool messages have no ``name`` and a failed
    attribute lookup costs microseconds; an explicit ``null`` is no name.
    """
    for msg in messages:
        if "name" in msg.__pydantic_fields_set__:
            break
    else:
        return ()
    return [i for i, msg in enumerate(messages) if msg.__dict__.get("name") is not None]


def _names_note(named: Sequence[int]) -> str:
    """What ``messages[i].name`` stands for in an error, and how many messages set one."""
    if not named:
        return ""
    return "; messages[].name: a message's participant name" + (
        f", set on {len(named)} messages" if len(named) > 1 else ""
    )


def _without_names(messages: list[Message], named: Sequence[int]) -> list[Message]:
    """``messages`` with the participant names at ``named`` taken off (copies; the rest shared)."""
    out = list(messages)
    for i in named:
        out[i] = out[i].model_copy(update={"name": None})
    return out


def _has_images(request: ChatRequest) -> bool:
    for msg in request.messages:
        if (
            isinstance(msg, UserMessage)
            and isinstance(msg.content, list)
            and any(isinstance(part, ImagePart) for part in msg.content)
        ):
            return True
    return False
