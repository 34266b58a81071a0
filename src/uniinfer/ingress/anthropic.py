"""Anthropic Messages at ingress: the Messages API in front of any model uniinfer serves.

This is the inverse of :mod:`uniinfer.providers.anthropic` (which speaks
Anthropic *to* a provider): requests arrive in Anthropic's shape
(https://docs.anthropic.com/en/api/messages), are validated by
:mod:`~uniinfer.ingress.anthropic_models`, become a
:class:`~uniinfer.types.ChatRequest` here, and answers go back as a ``message``
object or its SSE events (:mod:`~uniinfer.ingress.anthropic_response`,
:mod:`~uniinfer.ingress.anthropic_stream`). Everything the family needs is
importable from this module.

Requests, field by field:

- ``system`` becomes one system message (a string for one plain block, else
  text parts that keep ``cache_control``).
- Consecutive turns of one role are combined first, as the API documents.
  In a user turn, ``tool_result`` blocks become ``tool`` messages, in order and
  *before* the turn's other content (OpenAI wants tool messages right after the
  assistant turn that called); images inside a result follow in the user
  message after them, marked with their result
  (:attr:`~uniinfer.types.chat.ImagePart.of_tool_result`), so that a Claude
  upstream gets them back inside it. ``is_error: true`` prefixes the result text with
  ``"Error: "`` (OpenAI has no such flag) and marks the tool message
  :attr:`~uniinfer.types.ToolMessage.is_error`, so that an Anthropic upstream
  gets the flag and the text as sent; a result's ``cache_control`` moves
  onto its last text.
- Assistant ``tool_use`` blocks become ``tool_calls`` (``input`` as JSON
  ``arguments``), ``thinking`` blocks the turn's ``reasoning_content``
  (providers that take reasoning back use it, the rest drop it). The
  ``thinking`` blocks with a signature and the ``redacted_thinking`` blocks are
  also kept whole, in order, as the message's
  :attr:`~uniinfer.types.AssistantMessage.signed_thinking`: an Anthropic
  upstream gets them back unmodified (its tool loops need them), no other
  provider sees them. A block with an empty signature (uniinfer's rendering of
  another provider's reasoning) is reasoning only. A turn left with neither
  text nor tool calls is dropped. When the turn's blocks are not in OpenAI's
  order (signed thinking, text, then tool calls: a text after a ``tool_use``,
  say), that order is kept too, as its
  :attr:`~uniinfer.types.AssistantMessage.content_blocks`: a Claude (API, Vertex,
  Bedrock) or Gemini upstream gets the turn back as the model produced it, other
  providers OpenAI's shape.
- Images become ``image_url`` parts (``data:`` URLs for base64). Documents:
  a text or content source becomes text (title and context first), a base64
  PDF an OpenAI ``file`` part (``filename`` from ``title``; an Anthropic
  upstream gets it back as a ``document`` block); URL and Files-API sources are refused
  (:class:`~uniinfer.errors.UnsupportedFeatureError`).
- ``cache_control`` breakpoints stay where the client put them for a Claude
  upstream: on text, images, documents (on a document's last part), tools and
  ``tool_use`` blocks (kept on the parts, tools and tool calls, never in the
  OpenAI-shaped body other providers get, which caches by itself or not at all).
- ``stop_sequences`` -> ``stop`` (any number of them: OpenAI's limit of 4 is
  not applied), ``max_tokens`` -> ``max_tokens``,
  ``metadata.user_id`` -> ``user`` (a provider without an end-user field goes
  without it, named in ``x-uniinfer-dropped-params`` as ``metadata.user_id``
  with no setting needed: see :attr:`~uniinfer.types.chat.MessagesIntent.user_id`),
  ``temperature``/``top_p``/``top_k`` as
  they are (``top_k: 0`` means unset), ``stream`` -> ``stream`` with
  ``stream_options.include_usage`` always on (the usage chunk feeds the final
  ``message_delta``).
- The Claude API's own fields, which OpenAI's shape has no place for (``inference_geo``,
  ``speed``, ``service_tier``; a tool's ``eager_input_streaming`` and ``input_examples``), go
  along as :attr:`~uniinfer.types.MessagesIntent.claude_fields`: a Claude API upstream gets them
  as sent. Another provider (Claude on Vertex AI and Bedrock included) goes without those that
  change how the model answers, not what (``speed``, ``service_tier``,
  ``eager_input_streaming``), named in ``x-uniinfer-dropped-params`` with no setting needed
  (``speed: standard``, the default, is no drop); ``inference_geo`` (a data-residency
  requirement) and ``input_examples`` are refused there with a 400 naming them, or dropped
  visibly with ``settings.drop_unsupported_params`` (see :mod:`uniinfer.fitting`).
- ``tool_choice``: ``auto``/``any``/``tool``/``none`` -> ``auto``/``required``/
  the named function/``none``; ``disable_parallel_tool_use`` ->
  ``parallel_tool_calls: false``.
- ``thinking`` -> ``reasoning_effort`` by budget, with the outbound adapter's
  table (:data:`~uniinfer.providers.anthropic.THINKING_BUDGETS`): below 4096
  ``low``, below 16384 ``medium``, else ``high``, so that effort -> budget ->
  effort is stable; ``adaptive`` -> ``medium``. ``output_config.effort`` wins
  when set (``xhigh`` and ``max`` -> ``high``). What was asked goes along as
  :attr:`~uniinfer.types.ChatRequest.messages_intent` (thinking on or off, the
  exact ``budget_tokens``, the effort as sent): a Claude upstream gets thinking
  only when it was asked for, with that budget (``adaptive``: adaptive on the
  models that take it, else enabled with the ``medium`` budget), and
  ``output_config.effort`` as it was, where the model takes that level (else
  refused, or dropped visibly); other providers get the effort level.
- Structured outputs (https://docs.anthropic.com/en/docs/build-with-claude/structured-outputs):
  ``output_config.format`` (or the deprecated beta ``output_format``) -> ``response_format``
  ``{"type": "json_schema", "json_schema": {"name": "output", "schema": ..., "strict": true}}``
  (``strict``: Anthropic always constrains the answer to the schema, OpenAI only when told,
  and only a schema whose objects are closed (``additionalProperties: false``) and list every
  property in ``required``: one with optional properties, which Anthropic allows, or with
  open objects goes with ``strict: false``, the schema guiding
  OpenAI's answer without the guarantee, where strict would be refused outright),
  a custom tool's ``strict`` -> ``function.strict`` (an OpenAI-compatible adapter sends one
  whose schema OpenAI's strict mode refuses as not strict, see
  :attr:`~uniinfer.types.MessagesIntent.anthropic_strict`). The model's provider decides: a Claude
  model with structured outputs gets both back as they were sent, OpenAI and Gemini their own
  structured output, and a provider or model without them refuses with a 400 that names the
  Messages field (``output_config.format``, ``tools.N.strict``; see
  :func:`~uniinfer.ingress.anthropic_response.messages_field`). The JSON comes back as a
  text block.

:func:`estimate_input_tokens` counts a request offline (o200k_base) for
``count_tokens`` when the model is not served by Anthropic itself.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from uniinfer.errors import UnsupportedFeatureError
from uniinfer.ingress.anthropic_models import (
    CacheControl,
    ContentBlock,
    CountTokensRequest,
    CustomTool,
    DocumentBlock,
    ImageBlock,
    InputMessage,
    MessagesRequest,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingAdaptive,
    ThinkingBlock,
    ThinkingDisabled,
    ThinkingEnabled,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolResultBlock,
    ToolUseBlock,
    parse_anthropic,
)
from uniinfer.ingress.anthropic_response import (
    error_body,
    error_type,
    message_id,
    messages_field,
    to_message,
    usage_of,
)
from uniinfer.ingress.anthropic_stream import StreamRenderer
from uniinfer.providers.anthropic_request import THINKING_BUDGETS, TOOL_ERROR_PREFIX, TOOL_ERROR_TEXT
from uniinfer.providers.translation import openai_strict_schema
from uniinfer.tokens import count_text_tokens
from uniinfer.types import (
    AssistantMessage,
    ChatRequest,
    MessagesIntent,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from uniinfer.types.chat import (
    ContentPart,
    FilePart,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    Message,
    SignedThinking,
    TextPart,
    Tool,
    ToolCall,
    TurnBlock,
)
from uniinfer.validation import validation_error

__all__ = [
    "CountTokensRequest",
    "MessagesRequest",
    "StreamRenderer",
    "anthropic_betas",
    "error_body",
    "error_type",
    "estimate_input_tokens",
    "message_id",
    "messages_field",
    "parse_anthropic",
    "reasoning_effort",
    "to_chat_request",
    "to_message",
    "usage_of",
]

#: Turns as (role, [(path of the block, block)]) after combining consecutive same-role messages.
Turn = tuple[str, list[tuple[str, ContentBlock]]]

_EFFORTS = ("low", "medium", "high")
#: The ``json_schema.name`` of the answer's format (Anthropic's has none; OpenAI requires one).
_FORMAT_NAME = "output"
_OUTPUT_EFFORT = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def to_chat_request(req: MessagesRequest | CountTokensRequest, betas: tuple[str, ...] = ()) -> ChatRequest:
    """The OpenAI-shaped request the gateway routes (see the module docstring for each field);
    ``betas``: the client's ``anthropic-beta`` header (:func:`anthropic_betas`)."""
    messages = [*_system(req.system), *_conversation(req.messages)]
    fields: dict[str, Any] = {"model": req.model, "messages": messages}
    custom = [t for t in req.tools or () if isinstance(t, CustomTool)]
    if custom:
        fields["tools"] = [_tool(t) for t in custom]
    fields.update(_tool_choice(req))
    effort = reasoning_effort(req)
    if effort is not None:
        fields["reasoning_effort"] = effort
    fmt = req.json_output_format()
    if fmt is not None:
        # strict: Anthropic constrains decoding to the schema; OpenAI does only when asked to,
        # and only for schemas without optional properties (a strict one it cannot take is a 400)
        spec = {"name": _FORMAT_NAME, "schema": fmt.schema_, "strict": openai_strict_schema(fmt.schema_)}
        fields["response_format"] = {"type": "json_schema", "json_schema": spec}
    if isinstance(req, MessagesRequest):
        fields.update(_generation(req))
    # OpenAI's limit of 4 stop sequences is not Anthropic's (it documents none): set after
    # validation, so that the model's own provider decides (an upstream with a limit says so).
    stop = fields.pop("stop", None)
    try:
        chat = ChatRequest.model_validate(fields)
    except ValidationError as exc:  # a limit of the OpenAI shape the Anthropic one lacks
        raise validation_error(exc, fields) from None
    if stop is not None:
        chat = chat.model_copy(update={"stop": stop})
    intent = _intent(req, betas)
    return chat if intent is None else chat.with_messages_intent(intent)


def anthropic_betas(header: str | None) -> tuple[str, ...]:
    """The features an ``anthropic-beta`` header turns on (comma-separated, as the SDKs send them)."""
    if not header:
        return ()
    return tuple(dict.fromkeys(b for b in (part.strip() for part in header.split(",")) if b))


def _intent(req: MessagesRequest | CountTokensRequest, betas: tuple[str, ...]) -> MessagesIntent | None:
    """The thinking (on or off), effort, strict tools, betas and end-user id asked for, as asked
    (None when none)."""
    effort = req.output_config.effort if req.output_config is not None else None
    thinking = isinstance(req.thinking, ThinkingEnabled | ThinkingAdaptive)
    strict = any(isinstance(t, CustomTool) and t.strict for t in req.tools or ())
    off = isinstance(req.thinking, ThinkingDisabled)
    user_id = isinstance(req, MessagesRequest) and req.metadata is not None and bool(req.metadata.user_id)
    claude = _claude_fields(req)
    if effort is None and not (thinking or strict or betas or off or user_id or claude):
        return None
    budget = req.thinking.budget_tokens if isinstance(req.thinking, ThinkingEnabled) else None
    adaptive = isinstance(req.thinking, ThinkingAdaptive)
    display = req.thinking.display if isinstance(req.thinking, ThinkingEnabled | ThinkingAdaptive) else None
    return MessagesIntent(
        thinking,
        budget,
        adaptive,
        display,
        effort=effort,
        anthropic_strict=strict,
        betas=betas,
        thinking_off=off,
        user_id=user_id,
        claude_fields=claude,
    )


#: The Claude API's own request and tool fields (see :attr:`MessagesIntent.claude_fields`).
_CLAUDE_REQUEST_FIELDS = ("inference_geo", "speed", "service_tier")
_CLAUDE_TOOL_FIELDS = ("eager_input_streaming", "input_examples")


def _claude_fields(req: MessagesRequest | CountTokensRequest) -> tuple[tuple[str, Any], ...]:
    fields: list[tuple[str, Any]] = []
    if isinstance(req, MessagesRequest):
        fields += ((n, v) for n in _CLAUDE_REQUEST_FIELDS if (v := getattr(req, n)) is not None)
    # server tools are refused before: a custom tool's index is its index in the request
    for i, tool in enumerate(t for t in req.tools or () if isinstance(t, CustomTool)):
        fields += ((f"tools.{i}.{n}", v) for n in _CLAUDE_TOOL_FIELDS if (v := getattr(tool, n)) is not None)
    return tuple(fields)


def reasoning_effort(req: MessagesRequest | CountTokensRequest) -> str | None:
    """``output_config.effort`` if set, else the thinking budget's effort (None: no thinking)."""
    if req.output_config is not None and req.output_config.effort is not None:
        return _OUTPUT_EFFORT[req.output_config.effort]
    if isinstance(req.thinking, ThinkingEnabled):
        budget = req.thinking.budget_tokens
        return max((e for e in _EFFORTS if THINKING_BUDGETS[e] <= budget), key=_EFFORTS.index)
    if isinstance(req.thinking, ThinkingAdaptive):
        return "medium"
    return None


def _generation(req: MessagesRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {"max_tokens": req.max_tokens}
    for name in ("temperature", "top_p"):
        value = getattr(req, name)
        if value is not None:
            fields[name] = value
    if req.top_k:
        fields["top_k"] = req.top_k
    if req.stop_sequences:
        fields["stop"] = req.stop_sequences
    if req.metadata is not None and req.metadata.user_id:
        fields["user"] = req.metadata.user_id
    if req.stream:
        fields["stream"] = True
        fields["stream_options"] = {"include_usage": True}
    return fields


# --- messages ----------------------------------------------------------------------


def _system(blocks: list[TextBlock] | None) -> list[Message]:
    parts = [_text_part(b) for b in blocks or () if b.text]
    return [SystemMessage(role="system", content=_texts(parts))] if parts else []


def _conversation(messages: list[InputMessage]) -> list[Message]:
    out: list[Message] = []
    for role, blocks in _turns(messages):
        out.extend(_assistant_turn(blocks) if role == "assistant" else _user_turn(blocks))
    return out


def _turns(messages: list[InputMessage]) -> list[Turn]:
    turns: list[Turn] = []
    for i, msg in enumerate(messages):
        blocks = [(f"messages.{i}.content.{j}", block) for j, block in enumerate(msg.content)]
        if turns and turns[-1][0] == msg.role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((msg.role, blocks))
    return turns


def _user_turn(blocks: list[tuple[str, ContentBlock]]) -> list[Message]:
    results: list[Message] = []
    result_images: list[ContentPart] = []
    parts: list[ContentPart] = []
    for where, block in blocks:
        if isinstance(block, ToolResultBlock):
            images: list[ContentPart] = [
                _image_part(b).model_copy(update={"of_tool_result": (block.tool_use_id, k)})
                for k, b in enumerate(block.content)
                if isinstance(b, ImageBlock)
            ]
            # a document in the result (a PDF a tool read) follows the tool messages, as images
            # do where a tool message holds only text; Claude gets it in the turn after them
            for k, b in enumerate(block.content):
                if isinstance(b, DocumentBlock):
                    images += _document_parts(b, f"{where}.content[{k}]")
            # the result's cache breakpoint goes on its last block, an image, a document or a text
            media_last = bool(images) and not isinstance(block.content[-1], TextBlock)
            if media_last and block.cache_control is not None:
                images[-1] = _cached(images[-1], block.cache_control)
            results.append(_tool_message(block, cache=not media_last))
            result_images += images
        elif isinstance(block, TextBlock):
            parts.append(_text_part(block))
        elif isinstance(block, ImageBlock):
            parts.append(_image_part(block))
        elif isinstance(block, DocumentBlock):
            parts += _document_parts(block, where)
    content = result_images + parts
    if content:
        results.append(UserMessage(role="user", content=_collapse(content)))
    return results


def _assistant_turn(blocks: list[tuple[str, ContentBlock]]) -> list[Message]:
    texts: list[TextPart] = []
    thoughts: list[str] = []
    signed: list[SignedThinking] = []
    calls: list[ToolCall] = []
    order: list[TurnBlock] = []
    for _, block in blocks:
        item: TurnBlock | None = None
        if isinstance(block, TextBlock):
            item = _text_part(block)
            texts.append(item)
        elif isinstance(block, ThinkingBlock):
            thoughts.append(block.thinking)
            if block.signature:  # empty: another provider's reasoning, which nobody can verify
                item = SignedThinking(type="thinking", thinking=block.thinking, signature=block.signature)
                signed.append(item)
        elif isinstance(block, RedactedThinkingBlock):
            item = SignedThinking(type="redacted_thinking", data=block.data)
            signed.append(item)
        elif isinstance(block, ToolUseBlock):
            arguments = orjson.dumps(block.input).decode()
            call = ToolCall(id=block.id, function=FunctionCall(name=block.name, arguments=arguments))
            item = _cached(call, block.cache_control)
            calls.append(item)
        if item is not None:
            order.append(item)
    if not texts and not calls:
        return []
    message = AssistantMessage(
        role="assistant",
        content=_texts(texts) if texts else None,
        tool_calls=calls or None,
        reasoning_content="".join(thoughts) or None,
    )
    # model_copy: the fields are not ones a client may set (they refuse validated input)
    update: dict[str, Any] = {"signed_thinking": signed} if signed else {}
    if order != [*signed, *texts, *calls]:  # OpenAI's shape loses the order (see the module docstring)
        update["content_blocks"] = order
    return [message.model_copy(update=update) if update else message]


def _tool_message(block: ToolResultBlock, *, cache: bool = True) -> ToolMessage:
    parts = [_text_part(b) for b in block.content if isinstance(b, TextBlock)]
    if block.is_error and parts:
        parts[0] = parts[0].model_copy(update={"text": f"{TOOL_ERROR_PREFIX}{parts[0].text}"})
    elif block.is_error:
        parts = [TextPart(type="text", text=TOOL_ERROR_TEXT)]
    if cache and block.cache_control is not None and parts:
        parts[-1] = _cached(parts[-1], block.cache_control)
    message = ToolMessage(role="tool", tool_call_id=block.tool_use_id, content=_texts(parts) if parts else "")
    # model_copy: the field is not one a client may set (it refuses validated input)
    return message.model_copy(update={"is_error": True}) if block.is_error else message


def _text_part(block: TextBlock) -> TextPart:
    return TextPart(type="text", text=block.text, cache_control=_cache(block.cache_control))


def _cache(cache: Any) -> dict[str, Any] | None:
    return cache.model_dump(exclude_none=True) if cache is not None else None


_Cacheable = TypeVar("_Cacheable", bound=BaseModel)


def _cached(item: _Cacheable, cache: CacheControl | None) -> _Cacheable:
    """``item`` with the block's prompt-cache breakpoint (the Claude adapter sends it back there)."""
    if cache is None:
        return item
    return item.model_copy(update={"cache_control": cache.model_dump(exclude_none=True)})


def _image_part(block: ImageBlock) -> ImagePart:
    source = block.source
    url = source.url if source.type == "url" else f"data:{source.media_type};base64,{source.data}"
    part = ImagePart.model_validate({"type": "image_url", "image_url": {"url": url}})
    return _cached(part, block.cache_control)


def _document_parts(block: DocumentBlock, where: str) -> list[ContentPart]:
    """A document's parts; its cache breakpoint on the last, where the cached prefix ends."""
    parts = _document_content(block, where)
    if block.cache_control is not None and parts:
        parts[-1] = _cached(parts[-1], block.cache_control)
    return parts


def _document_content(block: DocumentBlock, where: str) -> list[ContentPart]:
    source = block.source
    intro = [t for t in (block.title, block.context) if t]
    if source.type == "text":
        return [TextPart(type="text", text="\n\n".join([*intro, source.data]))]
    if source.type == "content":
        head: list[ContentPart] = [TextPart(type="text", text="\n\n".join(intro))] if intro else []
        return head + [_text_part(b) if isinstance(b, TextBlock) else _image_part(b) for b in source.content]
    if source.type == "base64":
        file = {
            "filename": block.title or "document.pdf",
            "file_data": f"data:{source.media_type};base64,{source.data}",
        }
        return [FilePart(type="file", file=file)]
    raise UnsupportedFeatureError(
        f"{where}.source.type: document sources of type '{source.type}' are not supported by uniinfer; "
        "send the document inline (a base64 PDF or a text source)",
        param=f"{where}.source.type",
    )


def _texts(parts: list[TextPart]) -> str | list[TextPart]:
    """One plain text part as a string (what every provider takes), else the parts."""
    if len(parts) == 1 and parts[0].cache_control is None:
        return parts[0].text
    return parts


def _collapse(parts: list[ContentPart]) -> str | list[ContentPart]:
    if len(parts) == 1 and isinstance(parts[0], TextPart) and parts[0].cache_control is None:
        return parts[0].text
    return parts


# --- tools ----------------------------------------------------------------------------


def _tool(tool: CustomTool) -> Tool:
    function = FunctionDefinition(
        name=tool.name,
        description=tool.description,
        parameters=tool.input_schema.model_dump(),
        strict=tool.strict,
    )
    return _cached(Tool(type="function", function=function), tool.cache_control)


def _tool_choice(req: MessagesRequest | CountTokensRequest) -> dict[str, Any]:
    choice = req.tool_choice
    if choice is None:
        return {}
    fields: dict[str, Any] = {}
    if isinstance(choice, ToolChoiceTool):
        fields["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif isinstance(choice, ToolChoiceAny):
        fields["tool_choice"] = "required"
    elif isinstance(choice, ToolChoiceAuto):
        fields["tool_choice"] = "auto"
    elif isinstance(choice, ToolChoiceNone):
        fields["tool_choice"] = "none"
    if getattr(choice, "disable_parallel_tool_use", None):
        fields["parallel_tool_calls"] = False
    return fields


# --- token estimate ------------------------------------------------------------------

#: Tokens charged per message and once per request (role markers), as OpenAI's chat format does.
_PER_MESSAGE = 3
_PER_REQUEST = 3
#: An image or a PDF whose size is not decoded: the cost of a ~1.15 megapixel image
#: (https://docs.anthropic.com/en/docs/build-with-claude/vision: pixels / 750, capped near 1600).
_OPAQUE_TOKENS = 1600


def estimate_input_tokens(req: MessagesRequest | CountTokensRequest) -> int:
    """An offline estimate (o200k_base) of the input tokens of ``req``.

    System text, every message's blocks, tool definitions as JSON, plus
    :data:`_PER_MESSAGE` per message; images and PDFs count
    :data:`_OPAQUE_TOKENS` each. Other models' tokenizers differ: an estimate.
    """
    total = _PER_REQUEST + sum(count_text_tokens(b.text) for b in req.system or ())
    for msg in req.messages:
        total += _PER_MESSAGE + sum(_block_tokens(b) for b in msg.content)
    for tool in req.tools or ():
        total += count_text_tokens(orjson.dumps(tool.model_dump(exclude_none=True, by_alias=True)).decode())
    return total


def _block_tokens(block: Any) -> int:
    if isinstance(block, TextBlock):
        return count_text_tokens(block.text)
    if isinstance(block, ThinkingBlock):
        return count_text_tokens(block.thinking)
    if isinstance(block, ToolUseBlock):
        return count_text_tokens(block.name + orjson.dumps(block.input).decode())
    if isinstance(block, ToolResultBlock):
        return sum(_block_tokens(b) for b in block.content)
    if isinstance(block, DocumentBlock):
        return _document_tokens(block)
    if isinstance(block, ImageBlock):
        return _OPAQUE_TOKENS
    return 0  # redacted thinking: encrypted, its size unknown


def _document_tokens(block: DocumentBlock) -> int:
    source = block.source
    intro = sum(count_text_tokens(t) for t in (block.title, block.context) if t)
    if source.type == "text":
        return intro + count_text_tokens(source.data)
    if source.type == "content":
        return intro + sum(_block_tokens(b) for b in source.content)
    return intro + _OPAQUE_TOKENS
