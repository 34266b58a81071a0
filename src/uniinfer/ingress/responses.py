"""The OpenAI Responses API (stateless) over uniinfer's Chat Completions core: pure translation.

``POST /v1/responses`` bodies are parsed by :mod:`~uniinfer.ingress.responses_request`,
turned into a :class:`~uniinfer.types.ChatRequest` by :func:`to_chat_request`
and routed like any chat request, to any provider. The answer comes back as a
``response`` object (:func:`to_response`) or, streamed, as the typed events of
:class:`~uniinfer.ingress.responses_stream.ResponsesStreamRenderer`.

Requests, field by field:

- ``instructions`` -> a leading system message; string ``input`` -> one user
  message; ``message`` items -> messages of their role (``input_text`` -> text,
  ``input_image`` -> ``image_url`` parts, ``input_file`` -> ``file`` parts,
  replayed ``output_text`` / ``refusal`` -> assistant text / refusal);
  ``function_call`` items -> assistant ``tool_calls`` (consecutive ones, and
  one right after an assistant message, merged into that one message);
  ``function_call_output`` -> ``tool`` messages, each answering a call of the
  assistant turn just before it (like the real API, a call without an output,
  or an output without a call, is a 400);
- ``reasoning`` items are accepted and dropped: reasoning cannot be handed
  back to an arbitrary provider (the encrypted content is OpenAI's own);
- ``tools`` (flat function tools) -> Chat ``tools``; ``tool_choice`` as is,
  ``allowed_tools`` -> the tool list restricted to those names plus its mode;
  ``text.format`` -> ``response_format``; ``text.verbosity`` -> ``verbosity``;
  ``max_output_tokens`` -> ``max_completion_tokens``; ``reasoning.effort`` ->
  ``reasoning_effort``, every level (each adapter maps it to what its provider has);
  ``parallel_tool_calls`` and ``tool_choice`` ``auto``/``none`` only along with
  tools (Chat refuses them alone); ``temperature``, ``top_p``, ``user``,
  ``safety_identifier``, ``prompt_cache_key``, ``prompt_cache_retention`` and
  ``service_tier`` as is. What a provider cannot honour is refused or dropped
  by the gateway as for Chat, the error naming the Responses field.
- echoed only: ``metadata``, ``max_tool_calls`` (only hosted tools count),
  ``reasoning.summary``; ignored: ``include`` values other than logprobs
  (there is no encrypted reasoning to include), ``stream_options``.
- refused with a 400 naming the field (:func:`check_supported`): ``store: true``,
  ``previous_response_id``, ``conversation``, ``prompt`` (all need stored
  state; an omitted ``store`` is taken as false), ``background``,
  ``truncation: auto``, log probabilities,
  hosted and custom tools, and the other items and options of hosted features.

Responses carry the request's parameters back as the real API does, with its
defaults for what was not sent (``temperature`` 1, ``tool_choice`` "auto"...);
function tools are echoed with ``strict`` as sent (the real API defaults it to
true; uniinfer passes it on only when set). ``finish_reason: length`` makes a
response ``incomplete`` (``max_output_tokens``), ``content_filter`` likewise.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from uniinfer.errors import InvalidRequestError, UniInferError, UnsupportedFeatureError
from uniinfer.ingress.responses_input import to_messages
from uniinfer.ingress.responses_output import to_response
from uniinfer.ingress.responses_request import (
    AllowedToolsChoice,
    FunctionChoice,
    FunctionTool,
    OtherChoice,
    OtherTool,
    ResponsesRequest,
    TextFormatJSONObject,
    TextFormatJSONSchema,
    parse_responses_request,
)
from uniinfer.ingress.responses_stream import ResponsesStreamRenderer
from uniinfer.types import ChatRequest
from uniinfer.types.chat import (
    FunctionDefinition,
    JSONObjectFormat,
    JSONSchemaFormat,
    JSONSchemaSpec,
    StreamOptions,
    Tool,
    ToolChoiceFunction,
)

__all__ = [
    "ResponsesRequest",
    "ResponsesStreamRenderer",
    "check_supported",
    "parse_responses_request",
    "rename_error",
    "responses_param",
    "to_chat_request",
    "to_response",
]

Json = dict[str, Any]


# --- request: Responses -> Chat ---------------------------------------------------------------


def to_chat_request(req: ResponsesRequest) -> ChatRequest:
    """The Chat Completions request that answers ``req`` (raises a 400 for what cannot be served)."""
    check_supported(req)
    try:
        fields: Json = {"model": req.model, "messages": to_messages(req)}
        fields.update(_options(req))
        fields.update(_tools(req))
        if req.stream:
            fields["stream"] = True
            fields["stream_options"] = StreamOptions(include_usage=True)
        return ChatRequest.model_validate(fields)
    except ValidationError as exc:  # a rule of Chat's models; name the Responses field
        err = exc.errors(include_url=False, include_input=False)[0]
        cause = (err.get("ctx") or {}).get("error")
        param = getattr(cause, "param", None)
        message = str(err["msg"]).removeprefix("Value error, ")
        raise InvalidRequestError(message, param=responses_param(param) if param else None) from None


def _options(req: ResponsesRequest) -> Json:
    out: Json = {
        name: getattr(req, name)
        for name in (
            "temperature", "top_p", "user", "safety_identifier",
            "prompt_cache_key", "prompt_cache_retention", "service_tier",
        )
        if getattr(req, name) is not None
    }  # fmt: skip
    if req.max_output_tokens is not None:
        out["max_completion_tokens"] = req.max_output_tokens
    effort = req.reasoning.effort if req.reasoning else None
    if effort is not None:
        out["reasoning_effort"] = effort
    text = req.text
    if text is not None and text.verbosity is not None:
        out["verbosity"] = text.verbosity
    fmt = text.format if text else None
    if isinstance(fmt, TextFormatJSONObject):
        out["response_format"] = JSONObjectFormat(type="json_object")
    elif isinstance(fmt, TextFormatJSONSchema):
        spec = JSONSchemaSpec(
            name=fmt.name, description=fmt.description, schema=fmt.schema_, strict=fmt.strict
        )
        out["response_format"] = JSONSchemaFormat(type="json_schema", json_schema=spec)
    return out


def _tools(req: ResponsesRequest) -> Json:
    tools = [t for t in req.tools or () if isinstance(t, FunctionTool)]
    choice = req.tool_choice
    out: Json = {}
    if isinstance(choice, AllowedToolsChoice):
        allowed = _allowed_names(choice, {t.name for t in tools})
        tools = [t for t in tools if t.name in allowed]
        out["tool_choice"] = choice.mode
    elif isinstance(choice, FunctionChoice):
        out["tool_choice"] = ToolChoiceFunction.model_validate(
            {"type": "function", "function": {"name": choice.name}}
        )
    elif choice == "required" or (isinstance(choice, str) and tools):
        out["tool_choice"] = choice  # "auto" and "none" without tools say nothing Chat would accept
    if tools:
        if req.parallel_tool_calls is not None:
            out["parallel_tool_calls"] = req.parallel_tool_calls
        out["tools"] = [
            Tool(
                function=FunctionDefinition(
                    name=t.name, description=t.description, parameters=t.parameters, strict=t.strict
                )
            )
            for t in tools
        ]
    return out


def _allowed_names(choice: AllowedToolsChoice, declared: set[str]) -> set[str]:
    names: set[str] = set()
    for i, tool in enumerate(choice.tools):
        where = f"tool_choice.tools[{i}]"
        if tool.type != "function":
            raise UnsupportedFeatureError(f"Tool type '{tool.type}' is not supported.", param=f"{where}.type")
        if tool.name not in declared:
            raise InvalidRequestError(f"Tool '{tool.name}' is not in 'tools'.", param=f"{where}.name")
        names.add(tool.name)
    return names


# --- what is known but not served ---------------------------------------------------------

_STATELESS = (
    "uniinfer keeps no conversation state (stateless Responses API): send the earlier turns, "
    "including a previous response's output items, in 'input'"
)
#: Fields that need state uniinfer does not keep: refused whenever set.
_STATEFUL = {
    "previous_response_id": f"'previous_response_id' cannot be resolved: {_STATELESS}.",
    "conversation": f"'conversation' is not supported: {_STATELESS}.",
    "prompt": "Stored prompt templates ('prompt') are not supported: send 'instructions' and 'input'.",
}
#: Features with no counterpart behind uniinfer: refused whenever set.
_UNSERVED = {
    "context_management": "server-side context management (compaction)",
    "moderation": "moderation policies",
    "prompt_cache_options": "prompt cache options",
    "access_programs": "access programs",
    "background_options": "background options",
    "image": "image options",
}


def check_supported(req: ResponsesRequest) -> None:
    """Refuse, naming the field, what the request asks for that a stateless gateway cannot do."""
    if req.store:
        raise _unsupported(
            f"Stored responses are not supported ('store': true): {_STATELESS}. "
            "Set 'store' to false or leave it out.",
            "store",
        )
    for name, message in _STATEFUL.items():
        if getattr(req, name) is not None:
            raise _unsupported(message, name)
    if req.background:
        raise _unsupported("Background responses are not supported; leave 'background' unset.", "background")
    for name, what in _UNSERVED.items():
        if getattr(req, name) is not None:
            raise _unsupported(f"'{name}': {what} are not supported by uniinfer.", name)
    if req.truncation == "auto":
        raise _unsupported(
            "'truncation': 'auto' is not supported; uniinfer never drops input items.", "truncation"
        )
    if req.top_logprobs or (req.include and "message.output_text.logprobs" in req.include):
        param = "top_logprobs" if req.top_logprobs else "include"
        raise _unsupported("Log probabilities are not supported by the Responses ingress.", param)
    _check_tools(req)


#: Tool types the client runs itself (Codex's free-form ``apply_patch`` is a ``custom`` tool).
_CLIENT_TOOLS = frozenset({"custom", "local_shell", "shell", "apply_patch"})


def _check_tools(req: ResponsesRequest) -> None:
    for i, tool in enumerate(req.tools or ()):
        if isinstance(tool, OtherTool):
            why = (
                "a client-side tool of this type has no counterpart at other providers: declare it "
                "as a function tool (type 'function', with a JSON schema for its input)"
                if tool.type in _CLIENT_TOOLS
                else "OpenAI's hosted tools run on OpenAI's servers"
            )
            raise _unsupported(
                f"Tool type '{tool.type}' is not supported: uniinfer routes to any provider and offers "
                f"only function tools ({why}).",
                f"tools[{i}].type",
            )
        if tool.defer_loading:
            raise _unsupported("Deferred tool loading is not supported.", f"tools[{i}].defer_loading")
    if isinstance(req.tool_choice, OtherChoice):
        raise _unsupported(
            f"tool_choice type '{req.tool_choice.type}' is not supported: only function tools are.",
            "tool_choice.type",
        )


def _unsupported(message: str, param: str) -> UnsupportedFeatureError:
    return UnsupportedFeatureError(message, param=param)


# --- errors: Chat parameter names -> Responses parameter names --------------------------------

_PARAM_NAMES = {
    "max_completion_tokens": "max_output_tokens",
    "max_tokens": "max_output_tokens",
    "response_format": "text.format",
    "verbosity": "text.verbosity",
    "reasoning_effort": "reasoning.effort",
    "messages": "input",
}
#: Chat parameter names as words in the gateway's own messages ("does not support ... response_format").
_PARAM_WORDS = re.compile(r"\b(" + "|".join(n for n in _PARAM_NAMES if n != "messages") + r")\b")


def responses_param(param: str) -> str:
    """``max_completion_tokens`` -> ``max_output_tokens``, ``tools[0].function.name`` -> ``tools[0].name``.

    A feature description (``"JSON mode (response_format json_object)"``) becomes the field it names.
    """
    if " " in param:
        found = _PARAM_WORDS.search(param)
        return _PARAM_NAMES[found.group(1)] if found else param
    head = re.split(r"[.\[]", param, maxsplit=1)[0]
    if head == "messages":
        return "input"
    if head == "tools":
        return param.replace(".function.", ".").replace(".function", "")
    return _PARAM_NAMES.get(head, head) + param[len(head) :]


def rename_error(exc: UniInferError) -> UniInferError:
    """Name the Responses fields in an error about Chat fields (in place): its ``param`` always,
    its message when the gateway wrote it (a provider's error keeps the provider's own words)."""
    if exc.param is not None:
        exc.param = responses_param(exc.param)
    if exc.upstream_status is not None:
        return exc
    message = _PARAM_WORDS.sub(lambda m: _PARAM_NAMES[m.group(1)], exc.message)
    if message != exc.message:
        exc.message = message
        exc.args = (message,)
    return exc
