"""Anthropic Messages API: the request body built from a ChatRequest.

https://docs.anthropic.com/en/api/messages:

- ``system`` and ``developer`` messages, wherever they appear, become the
  top-level ``system`` text blocks (``cache_control`` kept).
- ``tool`` messages become ``tool_result`` blocks of a user turn, and
  consecutive same-role turns are merged: the API wants user and assistant
  turns to alternate. A tool message marked ``is_error`` (by the Anthropic
  Messages ingress) is sent with ``is_error: true`` and without the
  ``"Error: "`` the ingress put in its text for other providers.
- Assistant ``reasoning_content`` is not sent back; an assistant message's
  signed thinking blocks (:attr:`~uniinfer.types.chat.AssistantMessage.signed_thinking`,
  which only the Anthropic Messages ingress sets) start its turn, unmodified,
  as the API wants them back in a tool loop
  (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#preserving-thinking-blocks).
  When the ingress kept the turn's block order
  (:attr:`~uniinfer.types.chat.AssistantMessage.content_blocks`: a text after a
  tool call, say), the turn is sent in that order instead, as the model produced it.
- ``max_tokens`` is required upstream: ``max_completion_tokens`` or
  ``max_tokens``, else 4096. ``reasoning_effort`` becomes extended thinking
  with the budget an Anthropic client asked for, else a fixed budget per level
  (:func:`thinking_budget`); from Opus 4.7 on, which refuses budgets, it is
  adaptive thinking with ``output_config.effort`` at that level
  (:mod:`uniinfer.providers.claude_models`), as is an Anthropic client's
  adaptive thinking on Opus and Sonnet 4.6. An Anthropic client's
  ``output_config.effort`` is sent as it is, and turns thinking on only with
  ``thinking`` (:func:`output_effort`,
  https://docs.anthropic.com/en/docs/build-with-claude/effort). Since the budget must stay below
  ``max_tokens`` (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking),
  an unset limit becomes budget + 4096 and a smaller one caps the budget.
  With thinking on, the last assistant turn, when it called tools, must start
  with its thinking block: when it has none to send (history from an OpenAI
  client or another provider), thinking is left off, as the API advises, and
  :func:`thinking_left_out` says so (the adapter's ``params_left_out``: the
  gateway reports ``reasoning_effort`` in ``x-uniinfer-dropped-params``).
- Images become ``image`` blocks; a ``file`` part with inline PDF
  ``file_data`` a ``document`` block (base64 source, ``filename`` as its
  ``title``); a ``file_id`` is refused (Anthropic cannot read OpenAI's files).
- ``temperature`` is passed through unchanged although Anthropic's range is
  0..1 (OpenAI's 0..2): rescaling would silently change its meaning, so the
  API's own 400 names the field instead.
- Structured outputs (https://docs.anthropic.com/en/docs/build-with-claude/structured-outputs),
  for models with them (:func:`~uniinfer.providers.claude_models.structured_outputs`): ``response_format``
  ``json_schema`` becomes ``output_config: {"format": {"type": "json_schema",
  "schema": ...}}`` (the generally available shape: no beta header; the beta's
  top-level ``output_format`` is deprecated), and a tool's ``strict: true`` is
  sent as the tool's ``strict``. The schema goes as the caller wrote it: the
  API refuses what it cannot compile (numeric and string-length constraints,
  ``additionalProperties`` other than ``false``, recursive schemas...) with a
  400 naming ``output_config.format`` or the tool. ``json_schema.strict: false``
  cannot be expressed (the API always constrains). ``json_object`` has no
  equivalent (an object schema must list its properties) and is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import orjson

from uniinfer.errors import InvalidRequestError, UniInferError, UnsupportedFeatureError, UnsupportedParamError
from uniinfer.providers.claude_models import (
    EFFORT_PARAM,
    THINKING_CONFLICTS,
    effort_error,
    effort_refused,
    sampling_conflict_error,
    sampling_conflicts,
    thinking_conflict_error,
    thinking_conflicts,
    thinks_adaptively,
)
from uniinfer.providers.translation import (
    add_turn,
    data_url,
    images_into_results,
    inline_file_data,
    marked_result_image,
    refuse_legacy_function_call,
    strict_tool_error,
    turn_in_order,
    without_strict,
    word_call_id,
)
from uniinfer.types import ChatRequest
from uniinfer.types.chat import (
    AssistantMessage,
    AssistantPart,
    DeveloperMessage,
    FilePart,
    ImagePart,
    JSONObjectFormat,
    Message,
    SignedThinking,
    SystemMessage,
    TextFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceFunction,
    ToolMessage,
    TurnBlock,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "THINKING_BUDGETS",
    "TOOL_ERROR_PREFIX",
    "TOOL_ERROR_TEXT",
    "adaptive_thinking",
    "enabled_thinking",
    "messages_payload",
    "output_effort",
    "thinking_budget",
    "thinking_left_out",
    "without_effort",
    "without_refused",
]

Block = dict[str, Any]

DEFAULT_MAX_TOKENS = 4096
#: ``reasoning_effort`` -> ``thinking.budget_tokens`` (the API's minimum is 1024; ``none`` is no
#: thinking). ``max``: the largest budget that leaves the default answer (4,096 tokens) room
#: within every Claude model's output limit (32,000 on Opus 4 and 4.1).
THINKING_BUDGETS: Mapping[str, int] = {
    "minimal": 1024,
    "low": 1024,
    "medium": 4096,
    "high": 16384,
    "xhigh": 24576,
    "max": 27904,
}
_MIN_BUDGET = 1024
#: What the Anthropic Messages ingress puts before the text of a failed tool's result
#: (``is_error``) for providers without the flag; taken off again when sent to Anthropic.
TOOL_ERROR_PREFIX = "Error: "
#: The whole text of a failed tool's result that had none.
TOOL_ERROR_TEXT = "Error"
_THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})
# https://docs.anthropic.com/en/docs/build-with-claude/vision
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# https://docs.anthropic.com/en/docs/build-with-claude/pdf-support
_PDF = "application/pdf"
#: ``reasoning_effort`` -> ``output_config.effort``, for a model that thinks adaptively.
_EFFORT_OF: Mapping[str, str] = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
    "max": "max",
}


#: The next level down, for an OpenAI client's ``xhigh``/``max`` on a model without it.
_LOWER: Mapping[str, str] = {"max": "xhigh", "xhigh": "high"}


def without_effort(request: ChatRequest) -> ChatRequest:
    """``request`` without its ``output_config.effort`` (thinking, if asked for, stays)."""
    intent = request.messages_intent
    if intent is None or intent.effort is None:
        return request
    if not intent.thinking:  # the effort was all reasoning_effort said
        request = request.model_copy(update={"reasoning_effort": None})
    return request.with_messages_intent(dataclasses.replace(intent, effort=None))


def without_refused(request: ChatRequest, names: tuple[str, ...]) -> ChatRequest:
    """``request`` without what a Claude adapter's ``values_refused`` named: the effort
    (:data:`~uniinfer.providers.claude_models.EFFORT_PARAM`), blank stop sequences, tools'
    ``strict``, and what cannot go with thinking (:func:`thinking_conflicts`: the thinking
    itself, or sampling)."""
    if EFFORT_PARAM in names:
        request = without_effort(request)
    if STOP_PARAM in names:
        kept = [s for s in _stops(request) if s.strip()]
        request = request.model_copy(update={"stop": kept or None})
    plain = [name for name in names if name in THINKING_CONFLICTS]
    if plain:
        request = request.model_copy(update=dict.fromkeys(plain))
    if any(name not in (EFFORT_PARAM, STOP_PARAM) and name not in THINKING_CONFLICTS for name in names):
        request = without_strict(request)
    return request


#: ``stop`` when it holds a sequence Claude refuses: empty or whitespace only ("stop_sequences:
#: each stop sequence must contain non-whitespace"), such as OpenAI clients' common ``"\n"``.
STOP_PARAM = "stop"


def blank_stops(request: ChatRequest) -> tuple[str, ...]:
    """``(STOP_PARAM,)`` when ``request`` asks for a stop sequence Claude cannot take."""
    return (STOP_PARAM,) if any(not s.strip() for s in _stops(request)) else ()


def _stops(request: ChatRequest) -> list[str]:
    stop = request.stop
    return [] if stop is None else [stop] if isinstance(stop, str) else list(stop)


def thinking_budget(request: ChatRequest) -> int | None:
    """The extended-thinking budget ``request`` asks a Claude model for (None: thinking off).

    An Anthropic Messages client's own choice decides (:class:`~uniinfer.types.MessagesIntent`):
    thinking only when it turned thinking on, with its exact ``budget_tokens``, so that an
    ``output_config.effort`` alone stays effort. Otherwise ``reasoning_effort`` is thinking,
    a fixed budget per level (:data:`THINKING_BUDGETS`).
    """
    effort, intent = request.reasoning_effort, request.messages_intent
    if effort is None or effort == "none" or (intent is not None and not intent.thinking):
        return None
    return (intent.budget if intent is not None else None) or THINKING_BUDGETS[effort]


def output_effort(request: ChatRequest, model: str) -> str | None:
    """``output_config.effort`` for the Claude ``model``: as an Anthropic Messages client set it;
    for an OpenAI client's ``reasoning_effort``, its level where ``model`` thinks adaptively
    (effort is what steers adaptive thinking). None once ``reasoning_effort``, which the
    ingress sets beside an effort, was dropped."""
    effort, intent = request.reasoning_effort, request.messages_intent
    if effort is None or effort == "none":
        return None
    if intent is not None:
        return intent.effort
    if not thinks_adaptively(request, model):
        return None
    level = _EFFORT_OF[effort]
    while level in _LOWER and effort_refused(level, model):  # an OpenAI client's level: the nearest
        level = _LOWER[level]
    return level


def thinking_left_out(request: ChatRequest) -> bool:
    """Whether :func:`messages_payload` leaves ``reasoning_effort`` out (see :func:`_thinking_left_out`)."""
    if thinking_budget(request) is None:
        return False
    try:
        _, turns = _turns(request.messages)
    except UniInferError:
        return False  # messages_payload raises it, with the provider named
    return _thinking_left_out(turns)


def messages_payload(
    request: ChatRequest,
    model: str,
    *,
    stream: bool,
    structured: bool,
    claude_fields: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The Messages body. ``structured``: whether ``model`` takes structured outputs (then
    ``response_format`` json_schema and tools' ``strict`` are sent; else they are refused,
    naming the param: the gateway refuses or drops them before, see
    :meth:`~uniinfer.providers.anthropic.AnthropicAdapter.values_refused`). ``claude_fields``:
    those of a Messages client's Claude API fields the upstream takes
    (:attr:`~uniinfer.types.MessagesIntent.claude_fields`), sent where they came from."""
    system, turns = _turns(request.messages)
    max_tokens, thinking = _limits(request, model)
    payload: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": turns}
    if system:
        payload["system"] = system
    left_out = thinking is not None and _thinking_left_out(turns)
    if thinking is not None and not left_out:
        conflicts = thinking_conflicts(request, thinking_on=True)
        if conflicts:  # a value refused (AnthropicAdapter.values_refused): dropped when configured
            raise thinking_conflict_error("anthropic", model, conflicts[0])
        payload["thinking"] = thinking
    if sampling_conflicts(request, model):  # a value refused (values_refused): dropped when configured
        raise sampling_conflict_error("anthropic", model)
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(request, name)
        if value is not None:
            payload[name] = value
    if request.stop is not None:
        if blank_stops(request):  # a value refused (values_refused): dropped when configured
            raise UnsupportedParamError(
                f"anthropic: a stop sequence of only whitespace ({_stops(request)!r}) cannot be sent "
                f"to model '{model}' (Claude refuses it); leave it out, or set "
                "settings.drop_unsupported_params (then it is dropped)",
                param="stop",
            )
        payload["stop_sequences"] = _stops(request)
    user_id = request.user or request.safety_identifier
    if user_id:
        payload["metadata"] = {"user_id": user_id}
    output: dict[str, Any] = {}
    fmt = _output_format(request, model, structured)
    if fmt is not None:
        output["format"] = fmt
    # an OpenAI client's effort stood for the thinking a tool loop leaves out: it goes too
    effort = None if left_out and request.messages_intent is None else output_effort(request, model)
    if effort is not None:
        if effort_refused(effort, model):
            raise effort_error("anthropic", model, effort)
        output["effort"] = effort
    if output:
        payload["output_config"] = output
    if request.tools:
        payload["tools"] = [_tool(t, i, model, structured) for i, t in enumerate(request.tools)]
        choice = _tool_choice(request.tool_choice, request.parallel_tool_calls)
        if choice is not None:
            payload["tool_choice"] = choice
    if stream:
        payload["stream"] = True
    intent = request.messages_intent
    if intent is not None and intent.claude_fields and claude_fields:
        _put_claude_fields(payload, intent.claude_fields, claude_fields)
    return payload


def _put_claude_fields(payload: Block, fields: tuple[tuple[str, Any], ...], taken: frozenset[str]) -> None:
    """Each field the upstream takes at its place: the request's top level, or its tool's."""
    for path, value in fields:
        where, _, name = path.rpartition(".")
        if name not in taken:
            continue  # the gateway left it out, or refused it, before (uniinfer.fitting)
        target = payload["tools"][int(where.split(".")[1])] if where else payload
        target[name] = value


def _limits(request: ChatRequest, model: str) -> tuple[int, Block | None]:
    """``max_tokens`` and the ``thinking`` config, keeping budget < max_tokens (adaptive
    thinking has no budget: an unset limit leaves it the budget's room all the same)."""
    explicit = request.max_completion_tokens or request.max_tokens
    budget = thinking_budget(request)
    if budget is None:
        return explicit or DEFAULT_MAX_TOKENS, None
    if thinks_adaptively(request, model):
        return explicit or budget + DEFAULT_MAX_TOKENS, adaptive_thinking(request)
    if explicit is None:
        return budget + DEFAULT_MAX_TOKENS, enabled_thinking(request, budget)
    if explicit <= _MIN_BUDGET:
        field = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        raise InvalidRequestError(
            f"with 'reasoning_effort', anthropic needs '{field}' above {_MIN_BUDGET} "
            f"(the minimum thinking budget), got {explicit}",
            param=field,
        )
    return explicit, enabled_thinking(request, min(budget, explicit - 1))


def enabled_thinking(request: ChatRequest, budget: int) -> Block:
    """``{"type": "enabled", "budget_tokens": budget}``, with the client's ``display`` if set."""
    intent = request.messages_intent
    thinking: Block = {"type": "enabled", "budget_tokens": budget}
    if intent is not None and intent.display is not None:
        thinking["display"] = intent.display
    return thinking


def adaptive_thinking(request: ChatRequest) -> Block:
    """``{"type": "adaptive"}``, with its ``display`` (:func:`_display`)."""
    adaptive: Block = {"type": "adaptive"}
    display = _display(request)
    if display is not None:
        adaptive["display"] = display
    return adaptive


def _display(request: ChatRequest) -> str | None:
    """``thinking.display`` for adaptive thinking: as an Anthropic client set it (or not); for an
    OpenAI client ``summarized``: from Opus 4.7 on the default is ``omitted`` (thinking blocks
    without their text), and it reads the thinking as ``reasoning_content``."""
    intent = request.messages_intent
    return intent.display if intent is not None else "summarized"


def _thinking_left_out(turns: list[Block]) -> bool:
    """Whether the last assistant turn called tools without a thinking block to start with.

    With thinking on, the API refuses such a turn: a tool loop must send the
    turn's thinking back, signed and unmodified. History from an OpenAI client
    or another provider has none to send; the API's advice is then to disable
    thinking, so the request is sent without it (and the gateway says so).
    """
    last = next((t for t in reversed(turns) if t["role"] == "assistant"), None)
    if last is None or not any(b["type"] == "tool_use" for b in last["content"]):
        return False
    return last["content"][0]["type"] not in _THINKING_BLOCKS


def _turns(messages: list[Message]) -> tuple[list[Block], list[Block]]:
    """(system blocks, alternating user/assistant turns)."""
    system: list[Block] = []
    turns: list[Block] = []
    for i, msg in enumerate(messages):
        if isinstance(msg, (SystemMessage, DeveloperMessage)):
            system.extend(_text_blocks(msg.content))
            continue
        if isinstance(msg, AssistantMessage):
            role, blocks = "assistant", _assistant_blocks(msg, i)
        elif isinstance(msg, ToolMessage):
            role, blocks = "user", [_tool_result(msg)]
        else:
            role, blocks = "user", _user_blocks(msg.content, i)
        add_turn(turns, role, blocks)
    for turn in turns:
        if turn["role"] == "user":
            _images_into_results(turn["content"])
    if turns and turns[-1]["role"] == "assistant":
        _trim_prefill(turns)
    return system, turns


def _trim_prefill(turns: list[Block]) -> None:
    """A final assistant turn (a prefill the answer continues) without trailing whitespace,
    which the API refuses ("final assistant content cannot end with trailing whitespace")."""
    blocks = turns[-1]["content"]
    last = blocks[-1]
    if last.get("type") != "text":
        return
    text = last["text"].rstrip()
    if text:
        last["text"] = text
        return
    blocks.pop()
    if not blocks:
        turns.pop()


def _images_into_results(blocks: list[Block]) -> None:
    """A tool result's images back inside it (:func:`~uniinfer.providers.translation.images_into_results`)."""
    results = {b["tool_use_id"]: b for b in blocks if b.get("type") == "tool_result"}
    images_into_results(blocks, results, _result_blocks, word_call_id)


def _result_blocks(result: Block) -> list[Block]:
    content = result.get("content", [])
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content)


def _tool_result(msg: ToolMessage) -> Block:
    if msg.is_error:
        return _error_result(msg)
    block: Block = {"type": "tool_result", "tool_use_id": word_call_id(msg.tool_call_id)}
    content = msg.content if isinstance(msg.content, str) else _text_blocks(msg.content)
    # a tool that printed nothing: a result without content (the API refuses a blank one)
    if content if isinstance(content, list) else content.strip():
        block["content"] = content
    return block


def _error_result(msg: ToolMessage) -> Block:
    """``is_error: true``, with the text as the client wrote it (see :data:`TOOL_ERROR_PREFIX`)."""
    block: Block = {"type": "tool_result", "tool_use_id": word_call_id(msg.tool_call_id), "is_error": True}
    if isinstance(msg.content, str):
        text = "" if msg.content == TOOL_ERROR_TEXT else msg.content.removeprefix(TOOL_ERROR_PREFIX)
        if text:
            block["content"] = text
        return block
    parts = list(msg.content)
    if parts:
        first = parts[0]
        text = "" if first.text == TOOL_ERROR_TEXT else first.text.removeprefix(TOOL_ERROR_PREFIX)
        parts[0] = first.model_copy(update={"text": text})
    content = _text_blocks(parts)
    if content:
        block["content"] = content
    return block


def _text(part: TextPart) -> Block:
    return _cached({"type": "text", "text": part.text}, part)


def _cached(block: Block, item: TextPart | ImagePart | FilePart | ToolCall | Tool) -> Block:
    """``block`` with ``item``'s prompt-cache breakpoint, when it has one."""
    if item.cache_control is not None:
        block["cache_control"] = item.cache_control
    return block


def _text_blocks(content: str | list[TextPart]) -> list[Block]:
    """Text blocks without blank ones (the API refuses a text block that is empty or only
    whitespace: "text content blocks must contain non-whitespace text")."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    return [_text(p) for p in content if p.text.strip()]


def _user_blocks(content: str | list[Any], i: int) -> list[Block]:
    """A user turn's blocks, blank texts left out; a turn with nothing else is refused (left
    out, the turn before would answer in its place: an assistant turn last is a prefill)."""
    blocks = _user_content(content, i)
    if not blocks:
        raise InvalidRequestError(
            f"messages[{i}].content: Claude takes no blank user message; send some text, an image or a file",
            param=f"messages[{i}].content",
        )
    return blocks


def _user_content(content: str | list[Any], i: int) -> list[Block]:
    if isinstance(content, str):
        return _text_blocks(content)
    blocks: list[Block] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            if part.text.strip():  # blank text: nothing to say, and refused (see _text_blocks)
                blocks.append(_text(part))
        elif isinstance(part, ImagePart):
            image = _cached(_image(part.image_url.url, f"messages[{i}].content[{j}]"), part)
            blocks.append(marked_result_image(image, part))
        elif isinstance(part, FilePart):
            blocks.append(_cached(_document(part, f"messages[{i}].content[{j}]"), part))
        else:
            raise UnsupportedFeatureError(
                f"anthropic does not accept '{part.type}' content parts",
                param=f"messages[{i}].content[{j}]",
            )
    return blocks


def _image(url: str, where: str) -> Block:
    """A data: URL becomes a base64 source, an http(s) URL a url source."""
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    parsed = data_url(url)
    if parsed is None:
        raise InvalidRequestError(
            f"{where}: an image must be an http(s) URL or a base64 data: URL", param=where
        )
    media_type, data = parsed
    if media_type not in _IMAGE_TYPES:
        raise InvalidRequestError(
            f"{where}: anthropic accepts {', '.join(sorted(_IMAGE_TYPES))} images, not '{media_type}'",
            param=where,
        )
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _document(part: FilePart, where: str) -> Block:
    """An OpenAI ``file`` part with inline PDF ``file_data``: a ``document`` block (base64 source).

    https://docs.anthropic.com/en/docs/build-with-claude/pdf-support: ``filename``
    becomes the document's ``title``. A ``file_id`` names a file uploaded to
    OpenAI, which Anthropic cannot read.
    """
    file = part.file
    url = inline_file_data(part, where, "anthropic", "the PDF", _PDF)
    parsed = data_url(url)
    if parsed is None or parsed[0] != _PDF:
        raise InvalidRequestError(
            f"{where}.file.file_data: anthropic accepts PDF documents as a "
            f"data:{_PDF};base64,... URL, got {url.partition(',')[0][:40]!r}",
            param=f"{where}.file.file_data",
        )
    block: Block = {"type": "document", "source": {"type": "base64", "media_type": _PDF, "data": parsed[1]}}
    if file.get("filename"):
        block["title"] = file["filename"]
    return block


def _assistant_blocks(msg: AssistantMessage, i: int) -> list[Block]:
    refuse_legacy_function_call(msg, i)
    ordered = turn_in_order(msg)
    if ordered is not None:
        return _ordered_blocks(ordered, i)
    # Signed thinking first, as the API returned it and wants it back.
    blocks: list[Block] = [b.block() for b in msg.signed_thinking or ()]
    if isinstance(msg.content, str):
        blocks += _text_blocks(msg.content)
    elif msg.content is not None:
        blocks += [_text(p) for p in _text_parts(msg.content) if p.text.strip()]
    blocks += [_tool_use(call, i, k) for k, call in enumerate(msg.tool_calls or ())]
    return blocks


def _ordered_blocks(ordered: list[TurnBlock], i: int) -> list[Block]:
    """The turn's blocks in the order its client sent them (empty texts left out)."""
    blocks: list[Block] = []
    calls = 0
    for item in ordered:
        if isinstance(item, SignedThinking):
            blocks.append(item.block())
        elif isinstance(item, ToolCall):
            blocks.append(_tool_use(item, i, calls))
            calls += 1
        elif item.text.strip():
            blocks.append(_text(item))
    return blocks


def _text_parts(content: list[AssistantPart]) -> list[TextPart]:
    """The turn's text, its refusals as text (what the model said: dropped, the turn vanished)."""
    return [p if isinstance(p, TextPart) else TextPart(type="text", text=p.refusal) for p in content]


def _tool_use(call: ToolCall, i: int, k: int) -> Block:
    """The ``tool_use`` block of ``messages[i].tool_calls[k]``."""
    use = {"type": "tool_use", "id": word_call_id(call.id), "name": call.function.name}
    use["input"] = _arguments(call, i, k)
    return _cached(use, call)


def _arguments(call: ToolCall, i: int, k: int) -> Any:
    raw = call.function.arguments
    try:
        value = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f"messages[{i}].tool_calls[{k}].function.arguments must be a JSON object, got {raw[:80]!r}",
            param=f"messages[{i}].tool_calls",
        )
    return value


_NEED_STRUCTURED = "structured outputs need Claude Sonnet 4.5, Haiku 4.5, Opus 4.5 or a later model"


def _output_format(request: ChatRequest, model: str, structured: bool) -> Block | None:
    """``output_config.format`` for ``response_format`` (None: nothing to send)."""
    fmt = request.response_format
    if fmt is None or isinstance(fmt, TextFormat):
        return None
    if isinstance(fmt, JSONObjectFormat):
        raise UnsupportedFeatureError(
            "anthropic does not support JSON mode (response_format json_object): its structured "
            "outputs need a schema; send response_format json_schema",
            param="response_format",
        )
    if not structured:
        raise UnsupportedFeatureError(
            f"anthropic does not support structured output (response_format json_schema) for model "
            f"'{model}': {_NEED_STRUCTURED}",
            param="response_format",
        )
    schema = fmt.json_schema.schema_
    if schema is None:
        raise InvalidRequestError(
            "response_format.json_schema.schema: anthropic needs the JSON schema of the answer",
            param="response_format",
        )
    return {"type": "json_schema", "schema": schema}


def _tool(tool: Tool, i: int, model: str, structured: bool) -> Block:
    fn = tool.function
    block: Block = {"name": fn.name}
    if fn.description:
        block["description"] = fn.description
    block["input_schema"] = fn.parameters or {"type": "object", "properties": {}}
    if fn.strict:
        if not structured:  # a value refused (AnthropicAdapter.values_refused): dropped when configured
            raise strict_tool_error("anthropic", i, model, _NEED_STRUCTURED)
        block["strict"] = True
    return _cached(block, tool)


def _tool_choice(choice: ToolChoice | None, parallel: bool | None) -> Block | None:
    if isinstance(choice, ToolChoiceFunction):
        out: Block = {"type": "tool", "name": choice.function.name}
    elif choice is not None:
        out = {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
    elif parallel is False:
        out = {"type": "auto"}
    else:
        return None
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out
